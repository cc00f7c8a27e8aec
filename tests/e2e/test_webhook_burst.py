# SPDX-License-Identifier: MIT
"""test_webhook_burst.py — one connection sending faster than one webhook at a
time can be delivered: every message still arrives, once per id, in order.

Regression test for a dispatcher loop (epoll + curl_multi_socket_action) that
left a request with no socket watched and no timer armed, so a single fast
connection stalled with thousands of events held; only the benchmark caught
it. The client sends N text frames unpaced; the backend must receive all N
message events of that connection with seq 2..N+1 in order (duplicates only
as the same event id), with batch_max 1 and with batching on.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import os

import wsgate_test as w

# 20,000 unpaced frames reproduced the stall (3,000 did not); BURST_N overrides.
N = int(os.environ.get("BURST_N", "20000"))


class WebhookBurst(w.GatewayTestCase):
    def burst(self, batch_max, n=None):
        n = n or N
        be = self.backend()
        route = w.route("/chat", be.url, required=False,
                        limits={"rate_limit": {"messages_per_second": 100000, "burst": 100000}},
                        delivery={"batch_max": batch_max})
        gw = self.gateway([route])
        ws = self.client(gw.edge_url + "/chat")
        for i in range(n):
            ws.send_text("m%d" % i)
        msgs = be.wait_events(lambda e: e.get("type") == "message", n, timeout=180)
        first = {}
        for e in msgs:
            first.setdefault(e["id"], e)
        got = sorted(first.values(), key=lambda e: e["seq"])
        self.assertEqual(len(got), n, "every message exactly once by id")
        self.assertEqual([e["seq"] for e in got], list(range(2, n + 2)))
        self.assertEqual([e["data"] for e in got], ["m%d" % i for i in range(n)])
        # arrival order of first deliveries is seq order (one connection, in order)
        arrival = []
        for e in msgs:
            if e["id"] not in arrival:
                arrival.append(e["id"])
        self.assertEqual(arrival, [e["id"] for e in got])
        ws.close(1000)

    def test_unpaced_single_connection(self):
        self.burst(1)

    def test_unpaced_single_connection_batched(self):
        self.burst(16, n=3000)


if __name__ == "__main__":
    w.main()
