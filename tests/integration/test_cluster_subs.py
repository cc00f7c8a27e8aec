# SPDX-License-Identifier: MIT
"""test_cluster_subs.py — one ordered writer of subscriptions, cluster mode
(nats-server, PostgreSQL, two edges, two APIs, two dispatchers: the
Cluster of test_cluster_basic.py).

The checks of tests/e2e/test_subs_order.py (tests/lib/subs_agree.py), on
either edge: subscribe/unsubscribe lists in one connect or message reply,
then `GET /v1/channels/room9/connections`, `GET /v1/connections/{id}`
channels and publish delivery agree; API subscribe/unsubscribe calls back
to back are listed at once — also by the other API process, whose
registry may not be the one that recorded them — and concurrent PUT/DELETE
pairs leave listing and delivery in agreement.

Env: WSGATE_BIN, PYTHONPATH=tests/lib, nats-server and
PostgreSQL (scripts/deps.sh).
"""

import threading
import time

import subs_agree as sa
import test_cluster_basic as cb
import wsgate_test as w


class ClusterSubsBase(sa.SubsOrderBase, cb.ClusterTestCase):
    """A cluster whose backend answers with self.answers (no tests here)."""

    answers = {}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.be.handler = lambda req: sa.SubsOrderBase.answer(cls, req)

    def api(self, i=0):
        return self.cl.api(i)

    def open(self, tag, edge=0):
        ws = w.WsClient.connect(self.cl.edge_url(edge) + "?tag=" + tag)
        self._clients.append(ws)
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and
                                e.get("query", {}).get("tag") == tag, 15)
        cid = ev["connection_id"]
        w.wait_until(lambda: self.cl.conn_row(cid) == "edge-%d" % edge, 15, 0.05,
                     "connections row of %s" % cid)
        return ws, cid


class ClusterSubsOrder(ClusterSubsBase):
    answers = {}

    def test_connect_reply_lists(self):
        for i, name in enumerate(("sub_unsub", "unsub_sub", "sub_unsub_sub", "sub_sub_unsub")):
            with self.subTest(name=name):
                self.check_connect_actions(name, edge=i % 2)

    def test_message_reply_lists(self):
        for i, name in enumerate(("sub_unsub", "unsub_sub", "sub_unsub_sub", "warm_sub_unsub")):
            with self.subTest(name=name):
                self.check_message_actions(name, edge=i % 2)

    def test_api_back_to_back_read_through_either_api(self):
        self.check_api_back_to_back(edge=0, other_api=self.cl.api(1))
        self.check_api_back_to_back(edge=1, other_api=self.cl.api(0))

    def test_api_concurrent(self):
        self.check_api_concurrent(rounds=6, edge=1)


class ClusterSubsSlowStore(ClusterSubsBase):
    """Every subscription write of the store sleeps DELAY_MS first
    (WSGATE_TEST_STORE_DELAY_MS, test-only). One API, so every command
    reply of it arrives on the same NATS connection."""

    DELAY_MS = 1500
    n_apis = 1
    node_env = {"WSGATE_TEST_STORE_DELAY_MS": str(DELAY_MS)}
    # the registry records heartbeats between its runs, and a run of
    # several slowed writes lasts longer than the usual 3 s edge timeout
    extra_config = {"cluster": {"edge_timeout": "30s"}}
    answers = {}
    settle = 2 * DELAY_MS / 1000.0

    def test_slow_store_does_not_delay_other_replies(self):
        """While the store takes DELAY_MS for a subscribe, a send through the
        same API to a connection on the same edge is answered (the edge's
        reply comes back on the same NATS thread) and arrives well before."""
        wa, ida = self.open("slow-a%d" % next(self._tags), 0)
        wb, idb = self.open("slow-b%d" % next(self._tags), 0)
        res = {}

        def put():
            res["put"] = self.api().put("/v1/channels/room9/connections/" + sa.q(idb)).status

        t = threading.Thread(target=put)
        t.start()
        time.sleep(0.3)  # the subscribe was applied and waits for the store
        t0 = time.monotonic()
        r = self.api().send(ida, "ping", content_type="text/plain")
        answered = time.monotonic() - t0
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(wa.recv_text(10), "ping")
        in_flight = t.is_alive()
        t.join(30)
        self.assertEqual(res.get("put"), 204)
        self.assertLess(answered, self.DELAY_MS / 2000.0, "a command reply waited for the store")
        self.assertTrue(in_flight, "the subscribe was answered before its store write")
        sa.agree(self.api(), wb, idb, "room9", True, now=True, settle=0)

    def test_message_reply_sub_sub_unsub(self):
        self.check_message_actions("sub_sub_unsub", edge=1)


if __name__ == "__main__":
    w.main()
