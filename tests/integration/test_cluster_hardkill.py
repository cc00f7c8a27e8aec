# SPDX-License-Identifier: MIT
"""test_cluster_hardkill.py — hard faults of the servers a cluster depends
on and of its API role, through the real binaries (the Cluster of
test_cluster_basic.py: a real nats-server with JetStream, a real
PostgreSQL, 2 edges, 2 APIs, 2 dispatchers on free loopback ports).
test_cluster_outages.py stops the same servers gracefully; here they crash.
Labels "integration" and "faults" (about two minutes on a loaded 2-core
box); the long variants are in tests/faults/ (`make test-faults` only).

- kill -9 of nats-server for 2 s under load (20 clients, 10 per edge,
  sending 100 frames/s per edge, driven by Fleet of test_cluster_outages.py),
  then a start on the same port and JetStream store dir.
  Then (NatsOutageMixin.restart_under_load): every frame of a connection not
  closed 1013 is delivered, in order per connection (by first delivery); a
  connection closed 1013 got a prefix of its frames; any duplicate repeats
  its event id and webhook-id; no edge_lost disconnect (no edge died: an
  API that hears nothing, not even its own ping's answer, must not declare
  edges lost); edges, APIs and dispatchers reconnect by themselves and new
  connections on both edges get commands and webhooks.
- nats-server hung (SIGSTOP, its sockets stay open) for 8 s under load,
  then SIGCONT: no API declares an edge lost (each hears no answer to its
  own ping meanwhile), open connections keep their rows and work. And
  again with cluster.ack_wait 4 s, with every check of the kill -9 case:
  a connection closed 1013 got a gapless prefix of its frames.
- kill -9 of the PostgreSQL postmaster under load, then a start on the same
  port and data dir (crash recovery): meanwhile the control-API calls that
  need the store answer 503 with Retry-After; no frame lost; afterwards the
  connections table holds exactly the live connections (connects and
  disconnects of the outage included) and the subscriptions are intact.
- kill -9 of one API: the other takes its registry partitions (lease TTL
  3 s) and writes the rows of new connects and disconnects; an edge killed
  afterwards still gets its edge_lost sweep (one disconnect per connection).
- SIGTERM of an edge while 10 clients on each edge send: it exits 0, its
  clients get close 1001 and exactly one disconnect each (server, 1001,
  last, after a gapless prefix of their frames), rows removed; the other
  edge's clients are untouched (every frame delivered, no disconnect).

Every process is stopped by PID (nats-server gets SIGCONT before its
SIGTERM; PostgreSQL's orphans are waited for);
every wait is bounded.
"""

import json
import time

import wsgate_test as w
from test_cluster_basic import ClusterTestCase, q
from test_cluster_faults import lease_holders
from test_cluster_outages import (NatsOutageMixin, add_fleets, assert_unavailable,
                                  check_duplicates, check_fleet_deliveries, churn_during_outage)

EDGE_TIMEOUT_S = 3  # cluster.edge_timeout of Cluster's config


class NatsKill9Test(NatsOutageMixin, ClusterTestCase):
    def interrupt_nats(self):
        self.cl.nats.kill9()

    def test_nats_kill9_under_load(self):
        self.restart_under_load(2)


class NatsHungTest(ClusterTestCase):
    per_edge = 10

    def test_nats_sigstop_8s_no_edge_declared_lost(self):
        # Under load: after SIGCONT the edges' heartbeats queue behind their
        # backlog of events, which is when a registry that did not notice the
        # hang swept. Frame delivery: NatsHungLongerThanAckWaitTest.
        clients = [self.client(e) for e in (0, 1, 0, 1)]
        fleets, ids = [], []
        try:
            add_fleets(self, fleets, ids, "h")
            for fl in fleets:
                fl.start()
            time.sleep(1)
            self.cl.nats.pause()
            try:
                time.sleep(8)  # past cluster.edge_timeout (3 s) without heartbeats
            finally:
                self.cl.nats.resume()
            time.sleep(EDGE_TIMEOUT_S + 1.5)  # when a wrong sweep would have run
            for fl in fleets:
                fl.stop()
                self.assertIsNone(fl.error)
            for api in self.cl.apis:
                self.assertNotIn('"edge lost"', api.text(), "%s declared an edge lost" % api.name)
            # the dispatchers caught up: every closed client's disconnect came
            fleet_ids = [ids[e][c.idx] for e, fl in enumerate(fleets) for c in fl.conns
                         if c.close_code is not None]
            for cid in fleet_ids:
                self.be.wait_events(lambda ev, c=cid: ev["connection_id"] == c and
                                    ev["type"] == "disconnect", 1, timeout=60)
            lost = [e for e in self.be.events() if e["type"] == "disconnect" and
                    e.get("initiator") == "edge_lost"]
            self.assertEqual(lost, [], "edge_lost disconnects while no edge died")
            for e, fl in enumerate(fleets):
                for c in fl.conns:
                    if c.close_code is None:
                        self.assertEqual(self.cl.conn_row(ids[e][c.idx]), "edge-%d" % e)
            for e, (ws, cid) in zip((0, 1, 0, 1), clients):
                self.assertEqual(self.cl.conn_row(cid), "edge-%d" % e)
                self.assertEqual(self.cl.api(e).send(cid, "still here").status, 200)
                self.assertEqual(ws.recv_text(10), "still here")
                ws.send_text("after the hang")
                self.be.wait_events(lambda ev, c=cid: ev["connection_id"] == c and
                                    ev["type"] == "message", 1, timeout=30)
            for i in (0, 1):
                self.assertEqual(self.cl.api(i).get("/readyz").status, 200)
            closed = sum(c.close_code is not None for fl in fleets for c in fl.conns)
            print("nats-server SIGSTOP 8 s under load (edge_timeout 3 s): no edge declared "
                  "lost; %d of 20 sending clients closed 1013, the others and 4 idle ones "
                  "kept their rows and work" % closed)
        finally:
            for fl in fleets:
                fl.close()


class NatsHungLongerThanAckWaitTest(NatsOutageMixin, ClusterTestCase):
    """nats-server hung (SIGSTOP) under load for 8 s, twice cluster.ack_wait,
    then SIGCONT: every check of NatsOutageMixin.restart_under_load, above
    all that a connection closed 1013 got a gapless prefix of its frames (a
    gap here was DEFECT 2 of docs/reliability.md)."""
    # AckWait 4 s: a webhook attempt (delivery.timeout) must end within it
    extra_config = {"cluster": {"ack_wait": "4s"}}
    route_options = {"delivery": {"timeout": "3s"}}
    first_wait = 4 + 2 + 15

    def interrupt_nats(self):
        self.cl.nats.pause()

    def resume_nats(self):
        self.cl.nats.resume()

    def test_nats_sigstop_8s_twice_ack_wait(self):
        consumer = json.loads(self.cl.nats.request(
            "$JS.API.CONSUMER.INFO.WSGATE_EVENTS.idispatch_0"))
        self.assertEqual(consumer["config"]["ack_wait"], 4 * 10**9, consumer)
        self.restart_under_load(8)


class PostgresKill9Test(ClusterTestCase):
    pg_fast = False  # a committed row must survive the crash (pgserver.py)
    per_edge = 5

    def rows(self):
        return set(self.cl.pg.psql("SELECT id FROM connections").split())

    def subs(self, channel):
        return set(self.cl.pg.psql("SELECT connection_id FROM subscriptions WHERE channel = '%s'"
                                   % channel).split())

    def test_postgres_kill9_under_load(self):
        fleets, ids = [], []
        try:
            add_fleets(self, fleets, ids, "p")
            fleet_ids = {cid for m in ids for cid in m}
            wa, ida = self.client(0)
            wb, idb = self.client(1)
            subscribed = {ida, ids[0][0], ids[1][0], ids[1][1]}
            for n, cid in enumerate(sorted(subscribed)):
                r = self.cl.api(n % 2).put("/v1/channels/hk/connections/%s" % q(cid))
                self.assertEqual(r.status, 204, r.body)
            w.wait_until(lambda: self.rows() == fleet_ids | {ida, idb}, 20, 0.1,
                         "the connections table before the kill")
            self.assertEqual(self.subs("hk"), subscribed)
            for fl in fleets:
                fl.start()
            tally = lambda: sum(1 for e in self.be.events()  # noqa: E731
                                if e.get("connection_id") in fleet_ids)
            w.wait_until(lambda: tally() >= 100, 30, 0.2, "100 events before the kill")
            self.cl.pg.kill9()
            killed_at = time.monotonic()
            try:
                for i in (0, 1):
                    api = self.cl.api(i)
                    assert_unavailable(self, api.get("/v1/connections/%s" % q(ida)),
                                       "GET connection via api%d" % i)
                    assert_unavailable(self, api.get("/v1/channels/hk/connections"),
                                       "members via api%d" % i)
                    assert_unavailable(self, api.send("NoSuchConnectionId0000", "x"),
                                       "send to an unknown connection via api%d" % i)
                    self.assertEqual(api.get("/healthz").status, 200)
                # a connect on each edge and a disconnect while the store is away
                fresh, new_ids = churn_during_outage(self, (wb, idb))
                # past cluster.edge_timeout: no edge may be declared lost for it
                time.sleep(max(0.0, EDGE_TIMEOUT_S + 1 - (time.monotonic() - killed_at)))
                assert_unavailable(self, self.cl.api(0).get("/v1/connections/%s" % q(ida)),
                                   "still down")
                down_s = time.monotonic() - killed_at
            finally:
                self.cl.pg.start()  # same port and data dir: crash recovery
            for i in (0, 1):
                w.wait_until(lambda i=i: self.cl.api(i).get("/readyz").status == 200, 30, 0.2,
                             "api%d ready again" % i)
            time.sleep(2)  # the fleets keep sending with the store back
            for fl in fleets:
                fl.stop()
                self.assertIsNone(fl.error)
                for c in fl.conns:
                    self.assertIsNone(c.close_code, "a client was closed")
            sent = sum(c.sent for fl in fleets for c in fl.conns)
            w.wait_until(lambda: len({(e["connection_id"], e["seq"]) for e in self.be.events()
                                      if e.get("connection_id") in fleet_ids and
                                      e["type"] == "message"}) >= sent, 60, 0.2,
                         "every frame of the fleets")
            time.sleep(1)  # late duplicates are checked too
            delivered, closed = check_fleet_deliveries(self, fleets, ids, self.be.events())
            dupes = check_duplicates(self, fleet_ids)
            # the registry: exactly the live connections, subscriptions intact
            live = fleet_ids | {ida} | set(new_ids)
            w.wait_until(lambda: self.rows() == live, 30, 0.2,
                         "connections table == the live connections")
            self.assertEqual(self.subs("hk"), subscribed)
            for i in (0, 1):
                r = self.cl.api(i).get("/v1/channels/hk/connections")
                self.assertEqual(r.status, 200, r.body)
                listed = json.dumps(r.json)
                for cid in live:
                    self.assertEqual(cid in listed, cid in subscribed, (cid, r.body))
            self.assertEqual(self.cl.api(1).post("/v1/channels/hk/messages", "after").status,
                             202)
            self.assertEqual(wa.recv_text(10), "after")
            for cid, ws in zip(new_ids, fresh):
                self.assertEqual(self.cl.api(0).send(cid, "new").status, 200)
                self.assertEqual(ws.recv_text(10), "new")
            time.sleep(EDGE_TIMEOUT_S + 1.5)  # no connection declared lost afterwards
            self.assertEqual(self.rows(), live)
            lost = [e for e in self.be.events() if e["type"] == "disconnect" and
                    e.get("initiator") == "edge_lost"]
            self.assertEqual(lost, [])
            print("postgres kill -9 (down %.1f s): %d frames sent by %d connections, %d "
                  "delivered in order, %d duplicate deliveries (same ids); %d rows == live "
                  "connections, %d subscriptions intact"
                  % (down_s, sent, len(fleet_ids), delivered, dupes, len(live), len(subscribed)))
        finally:
            for fl in fleets:
                fl.close()


class ApiKill9Test(ClusterTestCase):
    def test_other_api_takes_over_registry_and_sweeps(self):
        # both APIs hold registry partitions before the kill
        w.wait_until(lambda: len(lease_holders(self.cl, "registry")) == 2, 30, 0.2,
                     "registry partitions split between the two APIs")
        before = lease_holders(self.cl, "registry")
        survivor_ws, survivor = self.client(0)
        doomed = [self.client(1) for _ in range(2)]
        self.assertEqual(self.cl.apis[0].kill9(), -9)
        killed_at = time.monotonic()
        w.wait_until(lambda: list(lease_holders(self.cl, "registry").values()) == [16], 15,
                     0.2, "one API holding all 16 registry partitions")
        took = time.monotonic() - killed_at
        # rows of new connects appear, rows of disconnects leave (self.client
        # waits for the row): 10 connections cover both APIs' former partitions
        # but for a chance of 2^-10
        fresh = [self.client(e % 2, timeout=20) for e in range(10)]
        for ws, cid in fresh[:6]:
            ws.close()
        for ws, cid in fresh[:6]:
            w.wait_until(lambda c=cid: self.cl.conn_row(c) is None, 20, 0.1,
                         "row of %s removed" % cid)
        for ws, cid in fresh[6:]:
            self.assertEqual(self.cl.conn_row(cid), "edge-%d" % (fresh.index((ws, cid)) % 2))
        # edge-1 dies: the surviving API alone must sweep it
        doomed += [(ws, cid) for ws, cid in fresh[6:] if self.cl.conn_row(cid) == "edge-1"]
        doomed_ids = [cid for _, cid in doomed]
        self.assertEqual(self.cl.edges[1].kill9(), -9)
        for cid in doomed_ids:
            self.be.wait_events(lambda e, c=cid: e["connection_id"] == c and
                                e["type"] == "disconnect", 1, timeout=EDGE_TIMEOUT_S + 20)
            w.wait_until(lambda c=cid: self.cl.conn_row(c) is None, 10, 0.1,
                         "row of %s removed" % cid)
        time.sleep(EDGE_TIMEOUT_S + 1.5)  # room for a second (wrong) disconnect
        by_conn = w.events_by_connection(w.dedupe(self.be.events()))
        for cid in doomed_ids:
            discs = [e for e in by_conn[cid] if e["type"] == "disconnect"]
            self.assertEqual([(d["initiator"], d["code"]) for d in discs], [("edge_lost", 1006)])
            self.assertEqual([e["seq"] for e in by_conn[cid]],
                             list(range(1, len(by_conn[cid]) + 1)))
            self.assertEqual(self.cl.api(1).send(cid, "x").status, 410)
        self.assertEqual(self.cl.conn_row(survivor), "edge-0")
        self.assertEqual(self.cl.api(1).send(survivor, "still here").status, 200)
        self.assertEqual(survivor_ws.recv_text(10), "still here")
        self.assertFalse([e for e in by_conn[survivor] if e["type"] == "disconnect"])
        print("api kill -9: registry leases %s -> all 16 on the other API %.1f s later; "
              "rows of 10 connects and 6 disconnects written; %d connections of the "
              "killed edge got one edge_lost each"
              % (sorted(before.values()), took, len(doomed_ids)))


class EdgeSigtermTest(ClusterTestCase):
    per_edge = 10

    def test_sigterm_of_an_edge_under_load(self):
        fleets, ids = [], []
        try:
            add_fleets(self, fleets, ids, "t")
            all_ids = {cid for m in ids for cid in m}
            for fl in fleets:
                fl.start()
            w.wait_until(lambda: sum(1 for e in self.be.events() if e.get("connection_id") in
                                     all_ids) >= 200, 30, 0.2, "200 events before the SIGTERM")
            t0 = time.monotonic()
            status = self.cl.edges[1].stop()  # SIGTERM by PID (SIGKILL after 20 s)
            took = time.monotonic() - t0
            self.assertEqual(status, 0, self.cl.edges[1].tail())
            w.wait_until(lambda: all(c.closed for c in fleets[1].conns), 10, 0.1,
                         "edge-1's clients closed")
            time.sleep(1)  # edge-0's clients keep sending
            for fl in fleets:
                fl.stop()
                self.assertIsNone(fl.error)
            self.assertEqual([c.close_code for c in fleets[1].conns], [1001] * self.per_edge)
            self.assertEqual([c.close_code for c in fleets[0].conns], [None] * self.per_edge)
            sent0 = sum(c.sent for c in fleets[0].conns)
            w.wait_until(lambda: len({(e["connection_id"], e["seq"]) for e in self.be.events()
                                      if e.get("connection_id") in set(ids[0]) and
                                      e["type"] == "message"}) >= sent0, 30, 0.2,
                         "every frame of edge-0's clients")
            for cid in ids[1]:
                self.be.wait_events(lambda e, c=cid: e["connection_id"] == c and
                                    e["type"] == "disconnect", 1, timeout=15)
            time.sleep(EDGE_TIMEOUT_S + 1.5)  # room for a second (wrong) disconnect
            by_conn = w.events_by_connection(w.dedupe(self.be.events()))
            delivered = 0
            for f, fl in enumerate(fleets):
                for c in fl.conns:
                    evs = by_conn[ids[f][c.idx]]
                    self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)), evs)
                    msgs = [e["data"] for e in evs if e["type"] == "message"]
                    discs = [(e["initiator"], e["code"]) for e in evs
                             if e["type"] == "disconnect"]
                    if f == 0:  # untouched
                        self.assertEqual(msgs, [fl.data(c, k) for k in range(c.sent)])
                        self.assertEqual(discs, [])
                        continue
                    self.assertEqual(msgs, [fl.data(c, k) for k in range(len(msgs))])
                    self.assertEqual(discs, [("server", 1001)])
                    self.assertEqual(evs[-1]["type"], "disconnect")
                    # the registry consumes the same events on its own: it may
                    # trail the webhook (its partitions split 8/8 in the first
                    # lease rounds, when this runs); a row kept is a failure
                    w.wait_until(lambda cid=ids[f][c.idx]: self.cl.conn_row(cid) is None, 30,
                                 0.1, "the row of %s removed" % ids[f][c.idx])
                    delivered += len(msgs)
            print("edge SIGTERM under load: exit 0 after %.1f s; its %d clients closed 1001, "
                  "one server/1001 disconnect each, last, after %d of their %d frames; "
                  "edge-0's %d clients untouched (%d frames, all delivered)"
                  % (took, self.per_edge, delivered, sum(c.sent for c in fleets[1].conns),
                     self.per_edge, sent0))
        finally:
            for fl in fleets:
                fl.close()


if __name__ == "__main__":
    w.main()
