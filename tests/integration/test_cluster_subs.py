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

import subs_agree as sa
import test_cluster_basic as cb
import wsgate_test as w


class ClusterSubsOrder(sa.SubsOrderBase, cb.ClusterTestCase):
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


if __name__ == "__main__":
    w.main()
