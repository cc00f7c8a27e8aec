# SPDX-License-Identifier: MIT
"""test_sdk_cluster.py — the same SDK client run as test_sdk_client.py,
against a cluster: nats-server, PostgreSQL, two edges, one control API and
one dispatcher (test_cluster_basic.py's Cluster), with alice on one edge
and bob on the other. Every control-API call of libwsgate must give the
same answers as in standalone mode, and the clients the same frames (a
channel publish and a broadcast may arrive in either order: they travel on
different NATS subjects).

A replayed dead letter must reach the backend again in cluster mode too:
JetStream drops a message whose Nats-Msg-Id it saw within its 120 s
window, so a replay is published with its own Nats-Msg-Id and keeps the
event's id in Wsg-Id (bus/bus_nats_ev.c); before that, the replay was
answered 202 and lost.

Env: WSGATE_BIN, SDK_CLIENT_CHECK, PYTHONPATH=tests/lib:tests/sdk.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "integration"))

import wsgate_test as w  # noqa: E402
from test_cluster_basic import Cluster  # noqa: E402
from test_sdk_client import exercise  # noqa: E402


class SdkCluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        w.require_binary()
        cls.be = w.Backend()
        cls.cl = Cluster([w.route("/chat", cls.be.url, jwt={"alg": "HS256",
                                                            "secret": w.DEFAULT_CLIENT_SECRET})],
                         n_edges=2, n_apis=1, n_dispatchers=1)
        try:
            cls.cl.start()
        except BaseException:
            cls.cl.close()
            cls.be.stop()
            raise
        cls.api_url = "http://127.0.0.1:%d" % cls.cl.apis[0].port

    @classmethod
    def tearDownClass(cls):
        try:
            cls.cl.close()
        finally:
            cls.be.stop()

    def run(self, result=None):
        out = super().run(result)
        if result is not None and any(t is self for t, _ in result.errors + result.failures):
            sys.stderr.write("\n--- cluster logs ---\n%s\n" % self.cl.logs())
        return out

    def dead_letters_logged(self):
        return self.cl.dispatchers[0].text().count("event dead-lettered")

    def dead_letter_waiter(self):
        """A function waiting for one more dead letter than there is now."""
        n = self.dead_letters_logged()
        return lambda: w.wait_until(lambda: self.dead_letters_logged() > n, 20, 0.1,
                                    "the dead letter")

    def test_every_call_in_cluster_mode(self):
        self.be.clear()
        exercise(self, self.be, self.api_url, w.DEFAULT_API_SECRET,
                 [self.cl.edge_url(0, ""), self.cl.edge_url(1, "")], self.dead_letter_waiter(),
                 ordered=False)
        self.cl.check()


if __name__ == "__main__":
    w.main()
