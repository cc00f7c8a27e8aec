# SPDX-License-Identifier: MIT
"""test_webhook_batch.py — delivery.batch_max (docs/contract.md §3 "Batching").

While the backend refuses (503) a connection's first event, the client
sends 20 more messages. Once the backend accepts, the queued events arrive
in requests of at most batch_max events, as {"events": [...]}, in order,
with consecutive seq and no gap, each request signed as one body; a 2xx
acknowledges the whole batch (no acknowledged event is sent again).
With batch_max 1 (default) every request carries one event.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import threading

import wsgate_test as w

BATCH = 5
FAST = {"backoff_initial": "50ms", "backoff_max": "300ms", "max_attempts": 200, "max_age": "0"}


class WebhookBatch(w.GatewayTestCase):
    def run_burst(self, batch_max, n_msgs=20):
        gate = threading.Event()
        be = self.backend()
        be.handler = lambda req: None if gate.is_set() else 503
        d = dict(FAST, batch_max=batch_max)
        gw = self.gateway([w.route("/chat", be.url, delivery=d)])
        ws = self.client(gw.edge_url + "/chat")
        be.wait_requests(2, 20)  # the connect event is being retried
        for i in range(n_msgs):
            ws.send_text("m%02d" % i)
        ws.close()
        # The close handshake means the edge has read every message; one more
        # refused attempt gives the queue behind the refused head time to be
        # committed before the backend starts accepting.
        seen = len(be.snapshot())
        be.wait_requests(seen + 1, 20)
        gate.set()
        be.wait_for(lambda rs: any(e["type"] == "disconnect" for r in rs
                                   if r.response and r.response.status == 200
                                   for e in r.events()), 30, "the disconnect acked")
        return be

    def check_stream(self, be, n_msgs):
        acked = [r for r in be.snapshot() if r.response and r.response.status == 200]
        evs = [e for r in acked for e in r.events()]
        ids = [e["id"] for e in evs]
        self.assertEqual(len(ids), len(set(ids)), "an acknowledged event was sent again")
        self.assertEqual([e["seq"] for e in evs], list(range(1, n_msgs + 3)))
        self.assertEqual([e["data"] for e in evs[1:-1]], ["m%02d" % i for i in range(n_msgs)])
        for r in be.snapshot():
            self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, r.headers, r.body),
                            "batch body not signed as one: %r" % r.headers)
        return acked

    def test_batches_of_at_most_batch_max(self):
        be = self.run_burst(BATCH)
        acked = self.check_stream(be, 20)
        sizes = [len(r.events()) for r in acked]
        self.assertTrue(all(1 <= n <= BATCH for n in sizes), sizes)
        self.assertTrue(any(n > 1 for n in sizes), "no request carried a batch: %r" % sizes)
        for r in acked:
            if len(r.events()) > 1:
                self.assertIsInstance(r.json, dict)
                self.assertIsInstance(r.json.get("events"), list)
                seqs = [e["seq"] for e in r.events()]
                self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))
                self.assertEqual(len({e["connection_id"] for e in r.events()}), 1)

    def test_batch_max_1_sends_single_events(self):
        be = self.run_burst(1, 8)
        acked = self.check_stream(be, 8)
        for r in acked:
            self.assertEqual(len(r.events()), 1)
            self.assertEqual(r.json["id"], r.headers["webhook-id"])


if __name__ == "__main__":
    w.main()
