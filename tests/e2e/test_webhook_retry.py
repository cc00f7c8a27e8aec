# SPDX-License-Identifier: MIT
"""test_webhook_retry.py — at-least-once delivery in order per connection,
retries and dead letters (docs/contract.md §3).

- 503 several times: every retry carries the same webhook-id and body id;
  the connection's next event arrives only after the retried one was
  acknowledged; another connection keeps flowing meanwhile.
- 429 with Retry-After: 1 — the retry does not come before about a second.
- a timed-out request is retried with the same id.
- 400: not retried, dead-lettered (store file, or the control API once it
  exists), and the connection's next event is delivered.
- max_attempts exhausted on 503: exactly max_attempts tries, then a dead
  letter, then the next event.
- a dead letter replayed through the control API is delivered again, with
  its original id, once the backend accepts it.
- delivery.max_concurrency bounds the requests in flight to one backend,
  while different connections still proceed in parallel.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import json
import threading

import wsgate_test as w

FAST = {"backoff_initial": "50ms", "backoff_max": "200ms"}


class WebhookRetry(w.GatewayTestCase):
    def start(self, delivery=None, handler=None):
        self.be = self.backend()
        self.be.handler = handler
        d = dict(FAST)
        d.update(delivery or {})
        self.gw = self.gateway([w.route("/chat", self.be.url, delivery=d)])

    def connect(self):
        return self.client(self.gw.edge_url + "/chat")

    def attempts(self, data):
        """Requests carrying the message event whose data is data."""
        return [r for r in self.be.snapshot()
                if any(e.get("data") == data for e in r.events())]

    def dead_letter(self, event_id, timeout=20):
        """The dead letter of event_id, from the control API when it answers,
        else from the store file."""
        def find():
            api = self.gw.control()
            try:
                r = api.dead_letters()
            except OSError:
                r = None
            if r is not None and r.status == 200 and r.json is not None:
                items = r.json.get("items", r.json.get("dead_letters", [])) \
                    if isinstance(r.json, dict) else r.json
                for it in items:
                    if it.get("id") == event_id:
                        return it
            for row in self.gw.store().dead_letters():
                if row["id"] == event_id:
                    return row
            return None
        return w.wait_until(find, timeout, 0.1, "dead letter %s" % event_id)

    def test_503_same_id_order_kept_others_flow(self):
        released = threading.Event()

        def handler(req):
            evs = req.events()
            if evs and evs[0].get("data") == "stall" and not released.is_set():
                return 503
            return None
        self.start({"max_attempts": 200, "max_age": "0"}, handler)
        a = self.connect()
        b = self.connect()
        a.send_text("stall")
        a.send_text("after")
        # the stalled event is retried while b's events keep arriving
        w.wait_until(lambda: len(self.attempts("stall")) >= 3, 20, what="3 attempts of stall")
        for i in range(5):
            b.send_text("b%d" % i)
        self.be.wait_events(lambda e: e.get("data") == "b4", 1, 15)
        self.assertEqual(self.attempts("after"), [], "event N+1 sent before N was acked")
        released.set()
        self.be.wait_events(lambda e: e.get("data") == "after", 1, 15)

        stalls = self.attempts("stall")
        ids = {r.headers["webhook-id"] for r in stalls}
        body_ids = {r.json["id"] for r in stalls}
        self.assertEqual(len(ids), 1, ids)
        self.assertEqual(ids, body_ids)
        self.assertTrue(all(json.loads(r.body)["seq"] == 2 for r in stalls))
        acked = [r for r in stalls if r.response and r.response.status == 200]
        self.assertEqual(len(acked), 1)
        first_after = self.attempts("after")[0]
        self.assertGreaterEqual(first_after.time, acked[0].answered_at)
        for r in stalls:
            self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, r.headers, r.body))
        b_data = [e["data"] for e in w.dedupe(self.be.events())
                  if e.get("type") == "message" and e["data"].startswith("b")]
        self.assertEqual(b_data, ["b0", "b1", "b2", "b3", "b4"])

    def test_429_retry_after_honoured(self):
        count = {"n": 0}

        def handler(req):
            evs = req.events()
            if evs and evs[0].get("data") == "limited":
                count["n"] += 1
                if count["n"] == 1:
                    return w.Response(429, headers={"Retry-After": "1"})
            return None
        self.start({"max_attempts": 20}, handler)
        ws = self.connect()
        ws.send_text("limited")
        w.wait_until(lambda: len(self.attempts("limited")) >= 2, 20, what="a retry")
        first, second = self.attempts("limited")[:2]
        self.assertEqual(first.headers["webhook-id"], second.headers["webhook-id"])
        self.assertGreaterEqual(second.time - first.answered_at, 0.9,
                                "retried before Retry-After: 1 elapsed")

    def test_timeout_is_retried_with_same_id(self):
        count = {"n": 0}

        def handler(req):
            evs = req.events()
            if evs and evs[0].get("data") == "slow":
                count["n"] += 1
                if count["n"] == 1:
                    return w.Response(200, delay=3.0)
            return None
        self.start({"timeout": "300ms", "max_attempts": 20}, handler)
        ws = self.connect()
        ws.send_text("slow")
        ws.send_text("next")
        self.be.wait_events(lambda e: e.get("data") == "next", 1, 20)
        slow = self.attempts("slow")
        self.assertGreaterEqual(len(slow), 2)
        self.assertEqual(len({r.headers["webhook-id"] for r in slow}), 1)
        first_next = self.attempts("next")[0]
        self.assertGreater(first_next.time, slow[1].time)

    def test_400_dead_lettered_next_delivered(self):
        self.start({"max_attempts": 10},
                   lambda req: 400 if any(e.get("data") == "poison" for e in req.events())
                   else None)
        ws = self.connect()
        ws.send_text("poison")
        ws.send_text("fine")
        self.be.wait_events(lambda e: e.get("data") == "fine", 1, 20)
        poison = self.attempts("poison")
        self.assertEqual(len(poison), 1, "a 400 must not be retried")
        dl = self.dead_letter(poison[0].json["id"])
        if "last_status" in dl:
            self.assertEqual(dl["last_status"], 400)
        self.assertIn("poison", json.dumps(dl))
        self.assertEqual(ws.close(), (1000, ""))

    def test_401_dead_letter_names_the_webhook_secret(self):
        # a backend whose secret differs answers 401 to every webhook: the
        # operator must learn why from the warn line and the dead letter
        self.start({"max_attempts": 10},
                   lambda req: 401 if any(e.get("data") == "unsigned" for e in req.events())
                   else None)
        ws = self.connect()
        ws.send_text("unsigned")
        refused = w.wait_until(lambda: self.attempts("unsigned"), 20, what="the attempt")
        dl = self.dead_letter(refused[0].json["id"])
        self.assertIn("webhook_secret", json.dumps(dl))
        w.wait_until(lambda: "event dead-lettered" in self.gw.logs(), 10, what="the warn line")
        line = [x for x in self.gw.logs().splitlines() if "event dead-lettered" in x][0]
        self.assertIn("HTTP 401: the backend refused the request", line)
        self.assertIn("webhook_secret", line)

    def test_max_attempts_exhausted(self):
        self.start({"max_attempts": 3},
                   lambda req: 503 if any(e.get("data") == "doomed" for e in req.events())
                   else None)
        ws = self.connect()
        ws.send_text("doomed")
        ws.send_text("survivor")
        self.be.wait_events(lambda e: e.get("data") == "survivor", 1, 30)
        doomed = self.attempts("doomed")
        self.assertEqual(len(doomed), 3)
        self.assertEqual(len({r.headers["webhook-id"] for r in doomed}), 1)
        self.assertGreaterEqual(self.attempts("survivor")[0].time, doomed[-1].answered_at)
        dl = self.dead_letter(doomed[0].json["id"])
        if "attempts" in dl:
            self.assertEqual(dl["attempts"], 3)
        if "last_status" in dl:
            self.assertEqual(dl["last_status"], 503)

    def test_dead_letter_replay(self):
        state = {"reject": True}
        self.start({"max_attempts": 10},
                   lambda req: 422 if state["reject"] and any(
                       e.get("data") == "replay-me" for e in req.events()) else None)
        ws = self.connect()
        ws.send_text("replay-me")
        first = self.be.wait_for(lambda rs: [r for r in rs if any(
            e.get("data") == "replay-me" for e in r.events())], 20, "the rejected event")[0]
        eid = first.json["id"]
        self.dead_letter(eid)
        state["reject"] = False
        r = self.gw.control().replay(eid)
        self.assertEqual(r.status, 202, r)
        w.wait_until(lambda: len(self.attempts("replay-me")) >= 2, 20, what="the replay")
        again = self.attempts("replay-me")[1]
        self.assertEqual(again.headers["webhook-id"], eid)
        self.assertEqual(again.json["id"], eid)
        self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, again.headers, again.body))
        r = self.gw.control().replay("evt_does_not_exist")
        self.assertIn(r.status, (404, 410), r)

    def test_max_concurrency_bounds_parallelism(self):
        self.start({"max_concurrency": 2})
        self.be.respond(200, b"", delay=0.4)
        clients = [self.connect() for _ in range(6)]
        for i, c in enumerate(clients):
            c.send_text("par%d" % i)
        self.be.wait_events(lambda e: str(e.get("data", "")).startswith("par"), 6, 60)
        self.assertLessEqual(self.be.max_in_flight, 2)
        self.assertEqual(self.be.max_in_flight, 2,
                         "different connections were not delivered in parallel")


if __name__ == "__main__":
    w.main()
