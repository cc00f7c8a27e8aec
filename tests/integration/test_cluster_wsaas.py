# SPDX-License-Identifier: MIT
"""test_cluster_wsaas.py — route `protocol: wsaas` in cluster mode (the
Cluster of test_cluster_basic.py: nats-server, PostgreSQL, 2 edges, 2 APIs,
2 dispatchers): the client's Authorization goes on every request of its
connection whichever dispatcher carries it (docs/compat.md).

The seed sent it on every PUT and DELETE; wsgate's edge writes it into each
event of the connection, so a dispatcher that takes a partition over
mid-connection (its holder stopped, or a new process) has it without
having seen the connect. Checked: clients on both edges connect and send;
dispatcher 0 stops (all partitions go to dispatcher 1), they send again;
dispatcher 0 starts again and dispatcher 1 stops (every partition now on a
process that saw none of the connects), they send again and close: every
PUT and every DELETE carries the client's own Authorization, in order.

Env: WSGATE_BIN, PYTHONPATH=tests/lib (and tests/e2e, added here), nats-server
and PostgreSQL (scripts/deps.sh).
"""

import os
import sys

import wsgate_test as w
from test_cluster_basic import ClusterTestCase

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from test_compat_wsaas import WsaasBackend  # noqa: E402

CLIENTS = 6


class ClusterWsaasTest(ClusterTestCase):

    @classmethod
    def make_backend(cls):
        return WsaasBackend()

    @classmethod
    def routes(cls):
        return [w.route("/ws", cls.be.url, protocol="wsaas",
                        delivery={"max_attempts": 1000, "backoff_initial": "100ms",
                                  "backoff_max": "500ms"})]

    def send_all(self, clients, word):
        for auth, ws in clients:
            ws.send_text("%s %s" % (word, auth))
        for auth, _ in clients:
            self.be.wait("PUT", auth, len(self.sent[auth]) + 1, timeout=60)
            self.sent[auth].append(("%s %s" % (word, auth)).encode())

    def test_authorization_on_every_request_whichever_dispatcher(self):
        self.sent = {}
        clients = []
        for k in range(CLIENTS):
            auth = "Bearer wsaas-%d" % k
            ws = w.WsClient.connect(self.cl.edge_url(k % 2, "/ws"),
                                    headers={"Authorization": auth})
            self._clients.append(ws)
            clients.append((auth, ws))
            self.be.wait("POST", auth, timeout=30)
            self.sent[auth] = []
        self.send_all(clients, "first")
        d0, d1 = self.cl.dispatchers
        self.assertEqual(d0.stop(), 0)
        self.send_all(clients, "second")
        d0.start()
        d0.wait_ready()
        self.assertEqual(d1.stop(), 0)
        self.send_all(clients, "third")  # d0, new, saw no connect
        for _, ws in clients:
            ws.close()
        for auth, _ in clients:
            self.be.wait("DELETE", auth, timeout=60)
        for auth, _ in clients:
            puts = self.be.seen("PUT", auth)
            self.assertEqual([r["body"] for r in puts], self.sent[auth],
                             "%s: every message once, in order, with its Authorization" % auth)
        unauth = [r["method"] for r in self.be.seen() if "authorization" not in r["headers"]]
        self.assertEqual(unauth, [], "requests without the client's Authorization")
        d1.start()
        d1.wait_ready()


if __name__ == "__main__":
    w.main()
