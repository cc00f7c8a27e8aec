# SPDX-License-Identifier: MIT
"""test_subs_order.py — one ordered writer of subscriptions (standalone).

docs/contract.md §3: response actions apply in order; §4: the control API's
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

import threading
import time

import subs_agree as sa
import wsgate_test as w

class SubsOrderStandalone(sa.SubsOrderBase, w.GatewayTestCase):
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


class SubsOrderSlowStore(sa.SubsOrderBase, w.GatewayTestCase):
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
