# SPDX-License-Identifier: MIT
"""test_cluster_stream.py — backend streams in cluster mode (docs/webhooks.md
"Backend streams"), with a real nats-server and PostgreSQL: the Cluster of
test_cluster_basic.py (2 edges, 2 APIs, 2 dispatchers) whose one route's
backend is a ws:// stream (tests/lib/wsgate_stream.py's StreamBackend).

- each dispatcher opens its own stream to the backend; the two split the
  partitions (8 leases each), so both streams carry events, and each
  connection's events come on one stream only (its partition's holder),
  in order (seq 1..n, the data as sent), once each;
- an action sent on either stream reaches a client on either edge: a send,
  a subscribe then a publish reaching subscribers on both edges, a close
  with code and reason (then exactly one disconnect event);
- kill -9 of a dispatcher while clients on both edges keep sending: the
  other dispatcher takes its partitions (lease TTL 3 s, consumer restarted
  at the ack floor) and every message is delivered on the survivor's stream,
  in order per connection by first delivery, any repeat with the same event
  id; nothing is lost.

- protocol ws-api-gateway: a seed backend's action addressed by user reaches
  the user's client whichever dispatcher's stream it is sent on (the other
  dispatcher finds the user through the registry).

Every process is stopped by PID; every wait is bounded.
"""

import time
import uuid

import wsgate_test as w
from test_cluster_basic import ClusterTestCase
from test_cluster_faults import lease_holders
from wsgate_stream import StreamBackend, api_token


class ClusterStreamTest(ClusterTestCase):
    @classmethod
    def make_backend(cls):
        return StreamBackend(auth=api_token())

    @classmethod
    def routes(cls):
        delivery = {"backoff_initial": "100ms", "backoff_max": "500ms", "max_attempts": 1000}
        return [w.route("/chat", cls.be.url, delivery=delivery)]

    def connect(self, edge):
        """A client on edge `edge` with a unique tag; returns (ws, id) once
        its connect event reached the stream and its row the store."""
        tag = uuid.uuid4().hex[:12]
        ws = w.WsClient.connect(self.cl.edge_url(edge) + "?tag=" + tag)
        self._clients.append(ws)
        ev = self.be.wait_events(lambda e: e["type"] == "connect" and
                                 e.get("query", {}).get("tag") == tag, 1, timeout=30)[0]
        cid = ev["connection_id"]
        w.wait_until(lambda: self.cl.conn_row(cid) == "edge-%d" % edge, 20, 0.05,
                     "connections row of %s on edge-%d" % (cid, edge))
        return ws, cid

    def first_deliveries(self, cid):
        """(seq, data, stream index) of cid's events, by first delivery."""
        seen, out = set(), []
        with self.be.lock:
            pairs = list(zip(self.be.events, self.be.sources))
        for e, src in pairs:
            if e["connection_id"] == cid and e["id"] not in seen:
                seen.add(e["id"])
                out.append((e["seq"], e.get("data"), src))
        return out

    def same_ids(self, cids):
        """Every repeat of an event carries the same (connection, seq)."""
        by_id = {}
        with self.be.lock:
            evs = list(self.be.events)
        for e in evs:
            if e["connection_id"] in cids:
                key = (e["connection_id"], e["seq"])
                self.assertEqual(by_id.setdefault(e["id"], key), key, e)
        keys = list(by_id.values())
        self.assertEqual(len(keys), len(set(keys)), "two ids for one (connection, seq)")
        return len(evs) - len(by_id)

    def test_a_each_connection_on_one_stream_in_order(self):
        # both dispatchers hold a stream, and their 8 partitions each (the
        # first took all 16, then gave 8 back: a connection's events move
        # to the other stream at such a hand-over, cleanly, so wait for it)
        self.be.wait(lambda: len(self.be.peers) >= 2, 30)
        w.wait_until(lambda: sorted(lease_holders(self.cl).values()) == [8, 8], 60, 0.2,
                     "8 partition leases per dispatcher")
        clients = [self.connect(e) for e in (0, 1) for _ in range(8)]
        for k in range(20):
            for ws, _ in clients:
                ws.send_text("m%d" % k)
        cids = [cid for _, cid in clients]
        for cid in cids:
            self.be.wait(lambda c=cid: len(self.first_deliveries(c)) >= 21, 30)
        used = set()
        for cid in cids:
            got = self.first_deliveries(cid)
            self.assertEqual([s for s, _, _ in got], list(range(1, 22)), cid)
            self.assertEqual([d for _, d, _ in got[1:]], ["m%d" % k for k in range(20)])
            streams = {src for _, _, src in got}
            self.assertEqual(len(streams), 1, "%s's events came on streams %s" % (cid, streams))
            used |= streams
        self.assertEqual(len(used), 2, "16 connections' events all came on one stream")
        self.assertEqual(self.same_ids(set(cids)), 0, "repeats without a fault")

    def test_b_actions_on_either_stream_reach_either_edge(self):
        self.be.wait(lambda: len(self.be.peers) >= 2, 30)
        (w0, c0), (w1, c1) = self.connect(0), self.connect(1)
        live = [len(self.be.peers) - 2, len(self.be.peers) - 1]  # the two dispatchers'
        for peer in live[-2:]:  # each stream, each edge
            for ws, cid in ((w0, c0), (w1, c1)):
                self.be.send({"action": "send", "connection_id": cid,
                              "data": "via-%d" % peer}, peer=peer)
                self.assertEqual(ws.recv_text(15), "via-%d" % peer)
        for cid in (c0, c1):
            self.be.send({"action": "subscribe", "connection_id": cid, "channel": "lobby"},
                         peer=live[-1])
        # a subscribe is applied by the edge: a send after it on the same
        # stream arrives after it, so the publish finds both members
        for ws, cid in ((w0, c0), (w1, c1)):
            self.be.send({"action": "send", "connection_id": cid, "data": "in"}, peer=live[-1])
            self.assertEqual(ws.recv_text(15), "in")
        self.be.send({"action": "publish", "channel": "lobby", "data": "to all"}, peer=live[-2])
        self.assertEqual(w0.recv_text(15), "to all")
        self.assertEqual(w1.recv_text(15), "to all")
        self.be.send({"action": "close", "connection_id": c1, "code": 4002, "reason": "bye"},
                     peer=live[-2])
        self.assertEqual(w1.wait_closed(15), (4002, "bye"))
        disc = self.be.wait_events(lambda e: e["type"] == "disconnect" and
                                   e["connection_id"] == c1, 1)[0]
        self.assertEqual((disc["code"], disc.get("reason")), (4002, "bye"))
        time.sleep(1)  # room for a second (wrong) disconnect
        self.assertEqual(len({e["id"] for e in self.be.events
                              if e["type"] == "disconnect" and e["connection_id"] == c1}), 1)
        self.assertEqual(self.be.replies, [], "error frames for valid actions")

    def test_c_dispatcher_kill9_loses_nothing(self):
        self.be.wait(lambda: len(self.be.peers) >= 2, 30)
        clients = [self.connect(e) for e in (0, 1) for _ in range(6)]
        cids = [cid for _, cid in clients]
        n = 60
        for k in range(n // 2):
            for ws, _ in clients:
                ws.send_text("k%d" % k)
        # some of every connection delivered, then kill one dispatcher with
        # events in flight, and keep sending
        for cid in cids:
            self.be.wait(lambda c=cid: len(self.first_deliveries(c)) >= 5, 30)
        self.assertEqual(self.cl.dispatchers[0].kill9(), -9)
        for k in range(n // 2, n):
            for ws, _ in clients:
                ws.send_text("k%d" % k)
            time.sleep(0.02)
        for cid in cids:
            self.be.wait(lambda c=cid: len(self.first_deliveries(c)) >= n + 1, 30)
        for cid in cids:
            got = self.first_deliveries(cid)
            self.assertEqual([s for s, _, _ in got], list(range(1, n + 2)), cid)
            self.assertEqual([d for _, d, _ in got[1:]], ["k%d" % k for k in range(n)])
        dupes = self.same_ids(set(cids))
        print("backend stream, dispatcher kill -9: %d messages from %d connections delivered "
              "in order, %d repeats (same ids)" % (n * len(cids), len(cids), dupes))
        self.cl.dispatchers[0].start()  # for the cluster's own checks
        self.cl.dispatchers[0].wait_ready(60)


class ClusterSeedStreamTest(ClusterTestCase):
    """protocol ws-api-gateway with two dispatchers: a backend written for
    the seed addresses users, not connections, and may answer on either
    dispatcher's stream; a user whose events another dispatcher carries is
    found through the registry."""

    @classmethod
    def make_backend(cls):
        return StreamBackend(ack=False, event_key="event")

    @classmethod
    def routes(cls):
        delivery = {"backoff_initial": "100ms", "backoff_max": "500ms", "max_attempts": 1000}
        return [w.route("/seed", cls.be.url, protocol="ws-api-gateway", delivery=delivery,
                        one_connection_per_user="replace",
                        jwt={"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET})]

    def test_actions_by_user_on_either_stream(self):
        self.be.wait(lambda: len(self.be.peers) >= 2, 30)
        w.wait_until(lambda: sorted(lease_holders(self.cl).values()) == [8, 8], 60, 0.2,
                     "8 partition leases per dispatcher")
        live = [len(self.be.peers) - 2, len(self.be.peers) - 1]
        users = ["u%d-%s" % (k, uuid.uuid4().hex[:6]) for k in range(6)]
        clients = {}
        for k, u in enumerate(users):
            tok = w.mint_jwt(w.client_claims(u))
            ws = w.WsClient.connect(self.cl.edge_url(k % 2, "/seed") + "?token=" + tok)
            self._clients.append(ws)
            clients[u] = ws
        for u in users:
            self.be.wait_events(lambda e, u=u: e.get("event") == "open" and e.get("user") == u,
                                1, timeout=30)
            w.wait_until(lambda u=u: u in self.cl.pg.psql(
                "SELECT user_id FROM connections WHERE route = '/seed'"), 20, 0.05,
                "the registry's row of %s" % u)
        with self.be.lock:
            came_on = {e["user"]: src for e, src in zip(self.be.events, self.be.sources)
                       if e.get("event") == "open"}
        print("streams carrying the users' events: %s" % sorted(came_on.values()))
        for u in users:
            for peer in live:  # each user's own stream and the other dispatcher's
                self.be.send({"action": "send", "user": u, "data": "to %s via %d" % (u, peer)},
                             peer=peer)
                self.assertEqual(clients[u].recv_text(15), "to %s via %d" % (u, peer))
        self.assertEqual(self.be.replies, [], "error frames for users the other stream carries")


if __name__ == "__main__":
    w.main()
