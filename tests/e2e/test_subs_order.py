"""test_subs_order.py — one ordered writer of subscriptions (standalone).

SPEC.md §3: response actions apply in order; §4: the control API's
membership listings. After any mix of subscribe/unsubscribe — actions in
one connect or message reply, API calls back to back or at the same time —
`GET /v1/channels/{ch}/connections`, `GET /v1/connections/{id}` channels
and channel publish delivery must agree (tests/lib/subs_agree.py):

- [subscribe, unsubscribe] leaves the connection out of room9 everywhere,
  [unsubscribe, subscribe] and [subscribe, unsubscribe, subscribe] in it,
  both as a connect reply and as a message reply (the dispatcher once
  recorded the edge's replies newest first: the store said the opposite of
  the edge for the first two);
- a subscribe/unsubscribe the API answered is listed at once (read your
  writes), and concurrent PUT/DELETE pairs leave listing and delivery in
  agreement.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import itertools
import threading
import time

import subs_agree as sa
import wsgate_test as w

SUB = {"action": "subscribe", "channel": "room9"}
UNSUB = {"action": "unsubscribe", "channel": "room9"}
LISTS = {"sub_unsub": ([SUB, UNSUB], False),
         "unsub_sub": ([UNSUB, SUB], True),
         "sub_unsub_sub": ([SUB, UNSUB, SUB], True),
         "sub_sub_unsub": ([SUB, SUB, UNSUB], False),
         "unsub_unsub_sub": ([UNSUB, UNSUB, SUB], True),
         "warm_sub_unsub": ([dict(SUB, channel="warm"), SUB, UNSUB], False)}


class SubsOrderBase:
    """Mixin: self.be (a Backend whose handler is self.answer), self.api(),
    self.open(tag) -> (ws, connection id)."""

    _tags = itertools.count(1)

    def answer(self, req):
        for e in req.events():
            key = None
            if e.get("type") == "connect":
                key = "connect:" + str(e.get("query", {}).get("tag"))
            elif e.get("type") == "message":
                key = "message:" + str(e.get("data"))
            if key in self.answers:
                return w.Response(200, {"actions": self.answers[key]})
        return None

    settle = 0.3

    def ready(self, acts, word):
        return list(acts) + [{"action": "send", "data": word}]

    def check_connect_actions(self, name, edge=0):
        acts, member = LISTS[name]
        tag = "c%d" % next(self._tags)
        self.answers["connect:" + tag] = self.ready(acts, "ready-" + tag)
        ws, cid = self.open(tag, edge)
        self.assertEqual(ws.recv_text(15), "ready-" + tag)
        sa.agree(self.api(), ws, cid, "room9", member, settle=self.settle)

    def check_message_actions(self, name, edge=0):
        acts, member = LISTS[name]
        tag = "m%d" % next(self._tags)
        self.answers["message:go-" + tag] = self.ready(acts, "ready-" + tag)
        ws, cid = self.open(tag, edge)
        ws.send_text("go-" + tag)
        self.assertEqual(ws.recv_text(15), "ready-" + tag)
        sa.agree(self.api(), ws, cid, "room9", member, settle=self.settle)

    def check_api_back_to_back(self, edge=0, other_api=None):
        ws, cid = self.open("a%d" % next(self._tags), edge)
        api = self.api()
        api2 = other_api or api
        path = "/v1/channels/room9/connections/" + sa.q(cid)
        for _ in range(3):
            r = api.put(path)
            self.assertEqual(r.status, 204, r.body)
            sa.agree(api2, ws, cid, "room9", True, now=True, settle=0)
            r = api.delete(path)
            self.assertEqual(r.status, 204, r.body)
            sa.agree(api2, ws, cid, "room9", False, now=True, settle=0)
            r = api.put(path)
            r2 = api.delete(path)
            self.assertEqual((r.status, r2.status), (204, 204), (r.body, r2.body))
            sa.agree(api2, ws, cid, "room9", False, now=True, settle=0)

    def check_api_concurrent(self, rounds=15, edge=0):
        ws, cid = self.open("p%d" % next(self._tags), edge)
        path = "/v1/channels/room9/connections/" + sa.q(cid)
        for i in range(rounds):
            res = {}

            def call(m):
                res[m] = self.api().request(m, path).status

            ts = [threading.Thread(target=call, args=(m,)) for m in ("PUT", "DELETE")]
            if i % 2:
                ts.reverse()
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
            self.assertEqual(res, {"PUT": 204, "DELETE": 204})
            sa.consistent(self.api(), ws, cid, "room9")


class SubsOrderStandalone(SubsOrderBase, w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.answers = {}
        self.be = self.backend()
        self.be.handler = self.answer
        self.gw = self.gateway([w.route("/chat", self.be.url)])

    def api(self):
        return self.gw.control()

    def open(self, tag, edge=0):
        ws = self.client(self.gw.edge_url + "/chat?tag=" + tag)
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and
                                e.get("query", {}).get("tag") == tag, 15)
        return ws, ev["connection_id"]

    def test_connect_reply_sub_unsub(self):
        self.check_connect_actions("sub_unsub")

    def test_connect_reply_unsub_sub(self):
        self.check_connect_actions("unsub_sub")

    def test_connect_reply_sub_unsub_sub(self):
        self.check_connect_actions("sub_unsub_sub")

    def test_message_reply_sub_unsub(self):
        self.check_message_actions("sub_unsub")

    def test_message_reply_unsub_sub(self):
        self.check_message_actions("unsub_sub")

    def test_message_reply_sub_unsub_sub(self):
        self.check_message_actions("sub_unsub_sub")

    def test_api_back_to_back(self):
        self.check_api_back_to_back()

    def test_api_concurrent(self):
        self.check_api_concurrent()


class SubsOrderSlowStore(SubsOrderBase, w.GatewayTestCase):
    """A store made slow on purpose (WSGATE_TEST_STORE_DELAY_MS, test-only:
    every subscription write sleeps first), one edge loop."""

    DELAY_MS = 1500
    settle = 2 * DELAY_MS / 1000.0

    def setUp(self):
        super().setUp()
        self.answers = {}
        self.be = self.backend()
        self.be.handler = self.answer
        self.gw = self.gateway([w.route("/chat", self.be.url)], config={"edge": {"threads": 1}},
                               env={"WSGATE_TEST_STORE_DELAY_MS": str(self.DELAY_MS)})

    api = SubsOrderStandalone.api
    open = SubsOrderStandalone.open

    def test_slow_store_does_not_delay_frames_of_the_loop(self):
        """While the store takes DELAY_MS for a subscribe, a send to another
        connection of the same (only) edge loop arrives well before that."""
        wa, ida = self.open("slow-a")
        wb, idb = self.open("slow-b")
        res = {}

        def put():
            res["put"] = self.api().put("/v1/channels/room9/connections/" + sa.q(idb)).status

        t = threading.Thread(target=put)
        t.start()
        time.sleep(0.3)  # the subscribe reached the edge and waits for the store
        t0 = time.monotonic()
        r = self.api().send(ida, "ping", content_type="text/plain")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(wa.recv_text(10), "ping")
        took = time.monotonic() - t0
        in_flight = t.is_alive()
        t.join(30)
        self.assertEqual(res.get("put"), 204)
        # the store write lasts DELAY_MS: an edge loop waiting for it would
        # have held the frame for most of that
        self.assertLess(took, self.DELAY_MS / 2000.0, "the edge loop waited for the store")
        self.assertTrue(in_flight, "the subscribe was answered before its store write")
        sa.agree(self.api(), wb, idb, "room9", True, now=True, settle=0)

    def test_connect_reply_sub_sub_unsub(self):
        self.check_connect_actions("sub_sub_unsub")

    def test_connect_reply_unsub_unsub_sub(self):
        self.check_connect_actions("unsub_unsub_sub")

    def test_message_reply_sub_sub_unsub(self):
        self.check_message_actions("sub_sub_unsub")

    def test_message_reply_sub_unsub_after_another(self):
        self.check_message_actions("warm_sub_unsub")


if __name__ == "__main__":
    w.main()
