"""test_cluster_faults.py — cluster mode under process crashes (kill -9),
with a real nats-server and PostgreSQL (the Cluster of
test_cluster_basic.py: 2 edges, 2 APIs, 2 dispatchers, free loopback ports).

- kill -9 of a dispatcher while clients on both edges keep sending: once the
  other dispatcher takes over the dead one's partitions (after the lease
  TTL), every message is delivered, in order per connection (by first
  delivery), and any duplicate carries the same event id and webhook-id;
- kill -9 of an edge: each of its connections gets exactly one disconnect
  event (initiator edge_lost, code 1006, the next seq) once its heartbeats
  are older than cluster.edge_timeout; its rows leave the store; the other
  edge's connections are untouched.

Every process is stopped by PID; every wait is bounded.
"""

import threading
import time
import unittest

import wsgate_test as w
from test_cluster_basic import ClusterTestCase, q

EDGE_TIMEOUT_S = 3  # cluster.edge_timeout of Cluster's config


class EdgeCrashTest(ClusterTestCase):
    def lose_edge(self, edge_index, doomed, survivor_ws, survivor):
        """kill -9 edge edge_index; checks one edge_lost disconnect per doomed
        connection and that the survivor (on edge 0) is untouched."""
        self.assertEqual(self.cl.edges[edge_index].kill9(), -9)
        killed_at = time.monotonic()
        for cid in doomed:
            self.be.wait_events(lambda e, c=cid: e["connection_id"] == c and
                                e["type"] == "disconnect", 1, timeout=EDGE_TIMEOUT_S + 20)
        waited = time.monotonic() - killed_at
        time.sleep(EDGE_TIMEOUT_S + 1.5)  # room for a second (wrong) disconnect
        by_conn = w.events_by_connection(w.dedupe(self.be.events()))
        for cid in doomed:
            evs = by_conn[cid]
            discs = [e for e in evs if e["type"] == "disconnect"]
            self.assertEqual(len(discs), 1, discs)
            self.assertEqual(discs[0]["initiator"], "edge_lost")
            self.assertEqual(discs[0]["code"], 1006)
            self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)), evs)
            self.assertIsNone(self.cl.conn_row(cid))
            self.assertEqual(self.cl.api(0).send(cid, "x").status, 410)
        self.assertEqual(self.cl.conn_row(survivor), "edge-0")
        self.assertEqual(self.cl.api(1).send(survivor, "still here").status, 200)
        self.assertEqual(survivor_ws.recv_text(10), "still here")
        self.assertFalse([e for e in by_conn[survivor] if e["type"] == "disconnect"])
        return waited

    def edge_known(self, edge_id):
        return edge_id in self.cl.pg.psql("SELECT id FROM edges").split()

    def test_kill9_edge_gives_one_edge_lost_disconnect_each(self):
        survivor_ws, survivor = self.client(0)
        doomed = [self.client(1)[1] for _ in range(3)]
        for cid in doomed:
            self.assertEqual(self.cl.conn_row(cid), "edge-1")
        w.wait_until(lambda: self.edge_known("edge-1"), 10, 0.05, "edge-1 in the edges table")
        waited = self.lose_edge(1, doomed, survivor_ws, survivor)
        print("edge_lost disconnects of 3 connections within %.1f s of kill -9 "
              "(edge_timeout %d s)" % (waited, EDGE_TIMEOUT_S))

    def test_kill9_edge_before_any_heartbeat_was_recorded(self):
        # An edge can die before a registry saw one of its heartbeats (its
        # first beat went out before the APIs subscribed, or was lost): its
        # connect events alone must make its connections losable.
        edge = self.cl.add_edge(start=True, env={"WSGATE_EDGE_HEARTBEAT_INTERVAL": "1m"})
        idx = self.cl.edges.index(edge)
        survivor_ws, survivor = self.client(0)
        w.wait_until(lambda: self.edge_known("edge-%d" % idx), 10, 0.05, "first heartbeat")
        self.cl.pg.psql("DELETE FROM edges WHERE id = 'edge-%d'" % idx)  # as if never seen
        doomed = [self.client(idx)[1] for _ in range(2)]
        self.lose_edge(idx, doomed, survivor_ws, survivor)


class DispatcherCrashTest(ClusterTestCase):
    def test_kill9_dispatcher_loses_nothing(self):
        self.be.respond(200, delay=0.01)  # keep deliveries in flight
        clients = [self.client(edge) for edge in (0, 1, 0, 1)]
        n_msgs = 150
        stop = threading.Event()

        def sender(ws, cid):
            for k in range(n_msgs):
                if stop.is_set():
                    return
                ws.send_text("%s #%d" % (cid, k))
                time.sleep(0.01)

        threads = [threading.Thread(target=sender, args=c, daemon=True) for c in clients]
        for t in threads:
            t.start()
        ids = {cid for _, cid in clients}
        self.be.wait_for(lambda rs: sum(1 for r in rs for e in r.events()
                                        if e.get("connection_id") in ids and
                                        e["type"] == "message") >= 100 or None,
                         timeout=30, what="100 messages before the kill")
        # dispatchers[0] started first (Cluster waits for it before starting
        # the next) and took every partition lease: it is the one delivering
        self.assertEqual(self.cl.dispatchers[0].kill9(), -9)
        at_kill = len({e["id"] for e in self.be.events() if e.get("connection_id") in ids})
        self.assertLess(at_kill, len(clients) * (n_msgs + 1), "the kill came too late")
        for t in threads:
            t.join(60)
        stop.set()
        # the survivor takes the partitions when the dead one's leases expire
        # (1.5 x AckWait = 45 s by default)
        def all_delivered(rs):
            got = {(e["connection_id"], e["seq"]) for r in rs for e in r.events()
                   if e.get("connection_id") in ids}
            return len(got) >= len(clients) * (n_msgs + 1) or None

        self.be.wait_for(all_delivered, timeout=150, what="every message, once at least")
        self.check_deliveries(clients, n_msgs)

    def check_deliveries(self, clients, n_msgs):
        ids = {cid for _, cid in clients}
        seen = {}  # event id -> (conn, seq, webhook-id)
        dupes = 0
        for r in self.be.snapshot():
            for e in r.events():
                if e.get("connection_id") not in ids:
                    continue
                key = (e["connection_id"], e["seq"])
                prev = seen.get(e["id"])
                got = (key, r.headers.get("webhook-id"))
                if prev is not None:
                    dupes += 1
                    self.assertEqual(prev, got, "a duplicate must repeat id and webhook-id")
                seen[e["id"]] = got
        # one event id per (connection, seq): a retry never gets a new id
        keys = [v[0] for v in seen.values()]
        self.assertEqual(len(keys), len(set(keys)), "two event ids for one (connection, seq)")
        by_conn = w.events_by_connection(w.dedupe(self.be.events()))
        for _, cid in clients:
            evs = by_conn[cid]
            self.assertEqual(evs[0]["type"], "connect")
            self.assertEqual([e["seq"] for e in evs], list(range(1, n_msgs + 2)))
            self.assertEqual([e["data"] for e in evs[1:]],
                             ["%s #%d" % (cid, k) for k in range(n_msgs)])
        print("dispatcher kill -9: %d messages from %d connections, all delivered in order, "
              "%d duplicate deliveries (same ids)" % (n_msgs * len(clients), len(clients), dupes))


if __name__ == "__main__":
    unittest.main(verbosity=2)
