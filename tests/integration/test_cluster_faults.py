# SPDX-License-Identifier: MIT
"""test_cluster_faults.py — cluster mode under process crashes (kill -9),
with a real nats-server and PostgreSQL (the Cluster of
test_cluster_basic.py: 2 edges, 2 APIs, 2 dispatchers, free loopback ports).

- kill -9 of a dispatcher mid-stream of 10,000 messages from 100
  connections (50 per edge, each edge's sockets driven by one Fleet thread
  of test_cluster_outages.py), with the default cluster.ack_wait (30 s) and
  cluster.lease_ttl (3 s): the test first checks both in JetStream (the
  consumers' AckWait, the lease bucket's TTL) and that the two dispatchers
  split the 16 partition leases 8/8. The other dispatcher takes the dead
  one's partitions once their leases expire and restarts their consumers at
  the ack floor, so what the dead one had fetched and not acked goes again
  at once instead of after AckWait: every message is delivered within 20 s
  of the last one sent (well under the 30 s AckWait the dead one's events
  would otherwise wait), in order per connection (by first delivery), and
  any duplicate carries the same event id and webhook-id. The longest
  silence of a connection after the kill is printed;
- kill -9 of an edge: each of its connections gets exactly one disconnect
  event (initiator edge_lost, code 1006, the next seq) once its heartbeats
  are older than cluster.edge_timeout; its rows leave the store; the other
  edge's connections are untouched;
- an edge stalled (SIGSTOP) past cluster.edge_timeout is declared lost the
  same way; once it runs again it closes those clients with 1012 and their
  disconnects carry the edge_lost ids: one disconnect each, nothing after;
- a pull request another NATS connection sends to a connection's partition
  consumer (as a late request of a former lease holder would reach the
  server) takes one of its events; the dispatcher holding the partition
  sees its consumer's deliveries jump, restarts the consumer at the ack
  floor, and the backend gets every message in order, the taken one well
  before AckWait (30 s);
- cluster.ack_wait is refused by the config check when a route's webhook
  attempt (delivery.timeout, plus the routing call) does not end within it.

Every process is stopped by PID; every wait is bounded.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
import unittest

import wsgate_test as w
from test_cluster_basic import ClusterTestCase
from test_cluster_outages import Fleet, check_duplicates, map_fleet_ids, ws_connect_ids

EDGE_TIMEOUT_S = 3  # cluster.edge_timeout of Cluster's config


class EdgeCrashTest(ClusterTestCase):
    def lose_edge(self, edge_index, doomed, survivor_ws, survivor):
        """kill -9 edge edge_index; checks one edge_lost disconnect per doomed
        connection and that the survivor (on edge 0) is untouched. Every
        doomed connection gets a send through each API first, so the APIs
        remember its edge (control-api/api_edge_cache.c): once the edge is
        lost, a send must still answer 410, not go to the dead edge."""
        for cid in doomed:
            for api in (0, 1):
                self.assertEqual(self.cl.api(api).send(cid, "before").status, 200)
        self.assertEqual(self.cl.edges[edge_index].kill9(), -9)
        killed_at = time.monotonic()
        for cid in doomed:
            self.be.wait_events(lambda e, c=cid: e["connection_id"] == c and
                                e["type"] == "disconnect", 1, timeout=EDGE_TIMEOUT_S + 20)
        waited = time.monotonic() - killed_at
        # at once (well within the APIs' 10 s memory of the edge): 410
        for cid in doomed:
            w.wait_until(lambda c=cid: self.cl.conn_row(c) is None, 10, 0.05, "row of %s" % cid)
            for api in (0, 1):
                self.assertEqual(self.cl.api(api).send(cid, "x").status, 410)
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
            for api in (0, 1):
                self.assertEqual(self.cl.api(api).send(cid, "x").status, 410)
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

    def test_stalled_edge_comes_back_and_closes_its_lost_clients(self):
        # An edge stalled (SIGSTOP) longer than cluster.edge_timeout is declared
        # lost: one edge_lost disconnect per connection, rows deleted. Once it
        # runs again and NATS hears it, it closes those clients (1012) instead
        # of keeping connections nobody can reach, and their own disconnects
        # carry the edge_lost ids: still exactly one disconnect each, nothing
        # after it. The edge serves new clients.
        edge = self.cl.add_edge(start=True)
        idx = self.cl.edges.index(edge)
        w.wait_until(lambda: self.edge_known("edge-%d" % idx), 10, 0.05, "first heartbeat")
        clients = [self.client(idx) for _ in range(3)]
        survivor_ws, survivor = self.client(0)
        os.kill(edge.pid, signal.SIGSTOP)
        try:
            for _, cid in clients:
                self.be.wait_events(lambda e, c=cid: e["connection_id"] == c and
                                    e["type"] == "disconnect", 1, timeout=EDGE_TIMEOUT_S + 20)
            for _, cid in clients:
                w.wait_until(lambda c=cid: self.cl.conn_row(c) is None, 10, 0.05, "row of %s" % cid)
        finally:
            os.kill(edge.pid, signal.SIGCONT)
        for ws, cid in clients:
            w.wait_until(lambda c=ws: c.closed.is_set(), 20, 0.05,
                         "the lost edge closes %s once it runs again" % cid)
            self.assertEqual(ws.close_code, 1012, cid)
        fresh_ws, fresh = self.client(idx)
        self.assertEqual(self.cl.api(1).send(fresh, "after").status, 200)
        self.assertEqual(fresh_ws.recv_text(10), "after")
        time.sleep(2)  # room for a second (wrong) disconnect
        by_conn = w.events_by_connection(w.dedupe(self.be.events()))
        for _, cid in clients:
            evs = by_conn[cid]
            discs = [e for e in evs if e["type"] == "disconnect"]
            self.assertEqual(len(discs), 1, discs)
            self.assertEqual(evs[-1]["type"], "disconnect", evs)
            self.assertEqual(self.cl.api(0).send(cid, "x").status, 410)
            self.assertIsNone(self.cl.conn_row(cid))
        self.assertFalse([e for e in by_conn[survivor] if e["type"] == "disconnect"])
        self.assertFalse([e for e in by_conn[fresh] if e["type"] == "disconnect"])
        self.assertEqual(self.cl.conn_row(fresh), "edge-%d" % idx)


def lease_values(cl, group="dispatch"):
    """Partition -> the value of its lease key i<group>.<p> in the lease
    bucket of Cluster cl (None: no key, or a delete marker). Also used by
    test_cluster_handover.py."""
    out = {}
    for p in range(16):
        req = json.dumps({"last_by_subj": "$KV.wsgate_leases.i%s.%d" % (group, p)}).encode()
        resp = json.loads(cl.nats.request("$JS.API.STREAM.MSG.GET.KV_wsgate_leases", req))
        msg = resp.get("message")
        if not msg or b"KV-Operation" in base64.b64decode(msg.get("hdrs") or ""):
            out[p] = None
        else:
            out[p] = base64.b64decode(msg.get("data") or "").decode()
    return out


def lease_holders(cl, group="dispatch"):
    """instance -> number of partition leases it holds (a deleted lease or
    "free", one given back: nobody). Also used by
    tests/reliability/cases_cluster.py and test_cluster_rebalance.py."""
    held = {}
    for who in lease_values(cl, group).values():
        if who not in (None, "free"):
            held[who] = held.get(who, 0) + 1
    return held


class Tally:
    """Incremental view of a Backend's events for big runs (Backend.wait_for
    re-reads every request on each arrival): poll() folds in what arrived
    since the last call."""

    def __init__(self, be, ids):
        self.be, self.ids, self.done = be, ids, 0
        self.keys = set()  # (connection, seq) delivered at least once
        self.messages = 0  # message deliveries, retries included
        self.since = None  # mark(): connection -> when a new event of it came
        self.marked = 0.0

    def mark(self):
        """Starts noting, per connection, when its first new event arrives."""
        self.poll()
        self.since, self.marked = {}, time.monotonic()

    def poll(self):
        rs = self.be.snapshot()
        now = time.monotonic()
        for r in rs[self.done:]:
            for e in r.events():
                cid = e.get("connection_id")
                if cid in self.ids:
                    key = (cid, e["seq"])
                    if self.since is not None and key not in self.keys:
                        self.since.setdefault(cid, now)
                    self.keys.add(key)
                    self.messages += e["type"] == "message"
        self.done = len(rs)
        return self

    def silence(self):
        """The longest wait of a connection for a new event since mark()."""
        return max((t - self.marked for t in self.since.values()), default=0.0)


class DispatcherCrashTest(ClusterTestCase):
    per_edge = 50  # connections per edge: 100 in all
    per_conn = 100  # messages per connection: 10,000 in all

    def test_kill9_dispatcher_loses_nothing(self):
        # the defaults reached JetStream: the consumers' AckWait (30 s) and
        # the lease bucket's TTL (3 s)
        def consumer(p):
            return json.loads(self.cl.nats.request(
                "$JS.API.CONSUMER.INFO.WSGATE_EVENTS.idispatch_%d" % p))
        for p in range(16):
            w.wait_until(lambda p=p: "config" in consumer(p), 15, 0.1, "consumer %d" % p)
            info = consumer(p)
            self.assertEqual(info["config"].get("ack_wait"), 30 * 10**9, info)
        info = json.loads(self.cl.nats.request("$JS.API.STREAM.INFO.KV_wsgate_leases"))
        self.assertEqual(info["config"]["max_age"], 3 * 10**9, info)
        # the two dispatchers split the 16 partitions (the first took them
        # all, then gave back what is above its share when the second came)
        w.wait_until(lambda: sorted(self.lease_holders().values()) == [8, 8], 60, 0.5,
                     "8 partition leases per dispatcher")
        self.be.respond(200, delay=0.005)  # keep deliveries in flight
        fleets, ids = [], []
        try:
            for e in (0, 1):
                fl = Fleet(self.cl.edge_url(e), self.per_edge, "d%d" % e,
                           per_conn=self.per_conn, rate=400)
                fleets.append(fl)
                got = ws_connect_ids(self.be, self.cl.edges[e].port, self.per_edge,
                                     self._taken(), timeout=60)
                ids.append(map_fleet_ids(self, fl, got, timeout=60))
            for fl in fleets:
                fl.start()
            all_ids = {cid for m in ids for cid in m}
            tally = Tally(self.be, all_ids)
            total = len(all_ids) * (self.per_conn + 1)
            w.wait_until(lambda: tally.poll().messages >= 2000, 120, 0.2,
                         "2000 messages before the kill")
            # each dispatcher delivers half of the partitions: kill one
            tally.mark()
            self.assertEqual(self.cl.dispatchers[0].kill9(), -9)
            at_kill = len(tally.keys)
            self.assertLess(at_kill, total, "the kill came too late")
            def sending():  # polled meanwhile: silence() reads when events came
                tally.poll()
                return any(fl.running() for fl in fleets)
            w.wait_until(lambda: not sending(), 180, 0.1, "the fleets to finish sending")
            for fl in fleets:
                self.assertIsNone(fl.error)
                for c in fl.conns:
                    self.assertIsNone(c.close_code, "a client was closed")
                    self.assertEqual(c.sent, self.per_conn)
            # the survivor takes the dead one's partitions once their leases
            # expire, and what the dead one had out goes again at once: not
            # after AckWait (30 s), nor 1.5 x it (the lease TTL before)
            w.wait_until(lambda: len(tally.poll().keys) >= total, 20, 0.2,
                         "every message, once at least, well before AckWait")
            time.sleep(1)  # late duplicates, if any, are checked too
            self.check_deliveries(fleets, ids)
            print("dispatcher kill -9: the longest silence of a connection after the kill "
                  "was %.1f s" % tally.silence())
        finally:
            for fl in fleets:
                fl.close()

    def lease_holders(self):
        return lease_holders(self.cl)

    def check_deliveries(self, fleets, ids):
        all_ids = {cid for m in ids for cid in m}
        dupes = check_duplicates(self, all_ids)
        by_conn = w.events_by_connection(w.dedupe(self.be.events()))
        for f, fl in enumerate(fleets):
            for c in fl.conns:
                evs = by_conn[ids[f][c.idx]]  # in order of first delivery
                self.assertEqual(evs[0]["type"], "connect")
                self.assertEqual([e["seq"] for e in evs], list(range(1, self.per_conn + 2)))
                self.assertEqual([e["data"] for e in evs[1:]],
                                 [fl.data(c, k) for k in range(self.per_conn)])
        print("dispatcher kill -9: %d messages from %d connections, all delivered in order, "
              "%d duplicate deliveries (same ids)"
              % (self.per_conn * len(all_ids), len(all_ids), dupes))


def partition_of(conn_id, partitions=16):
    """The bus's partition of a connection: FNV-1a 64 of its id, mod."""
    h = 1469598103934665603
    for c in conn_id.encode():
        h = ((h ^ c) * 1099511628211) % (1 << 64)
    return h % partitions


class StrayPull:
    """A plain NATS connection that sends one pull request (batch 1,
    expires 20 s) to a consumer and counts what it is handed, never acking:
    what a former holder's request read late by the server does."""

    def __init__(self, nats, consumer):
        self.got = 0
        self.sock = socket.create_connection((nats.host, nats.port), timeout=30)
        inbox = b"_INBOX.stray%d" % os.getpid()
        req = b'{"batch":1,"expires":20000000000}'
        self.sock.recv(65536)  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\n'
                          b"SUB %s 1\r\nPUB $JS.API.CONSUMER.MSG.NEXT.WSGATE_EVENTS.%s %s %d\r\n"
                          b"%s\r\nPING\r\n" % (inbox, consumer.encode(), inbox, len(req), req))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    if line.startswith(b"HMSG "):
                        self.got += 1
                    elif line.startswith(b"PING"):
                        self.sock.sendall(b"PONG\r\n")
        except OSError:
            return

    def close(self):
        self.sock.close()


class StrayPullTest(ClusterTestCase):
    def test_event_taken_by_another_pull_comes_first_again(self):
        # after the dispatchers split the partitions: the first lease rounds
        # give half of them back, and a partition being given back that is
        # held waits out its hold (AckWait + 2 s) instead of a restart
        w.wait_until(lambda: sorted(lease_holders(self.cl).values()) == [8, 8], 60, 0.5,
                     "8 partition leases per dispatcher")
        ws, cid = self.client(0)
        consumer = "idispatch_%d" % partition_of(cid)
        def messages():
            evs = w.events_by_connection(w.dedupe(self.be.events())).get(cid, [])
            return [e["data"] for e in evs if e["type"] == "message"]
        ws.send_text("m1")
        w.wait_until(lambda: messages() == ["m1"], 15, 0.05, "m1 delivered")
        stray = StrayPull(self.cl.nats, consumer)
        try:
            time.sleep(0.3)  # the request waits at the server
            ws.send_text("m2")
            w.wait_until(lambda: stray.got == 1, 15, 0.05, "the stray pull taking m2")
            ws.send_text("m3")
            ws.send_text("m4")
            # AckWait is 30 s: m2 comes again at once, first, or not in time
            w.wait_until(lambda: len(messages()) >= 4, 20, 0.1, "m2..m4 delivered")
            self.assertEqual(messages(), ["m1", "m2", "m3", "m4"])
            evs = w.events_by_connection(w.dedupe(self.be.events()))[cid]
            self.assertEqual([e["seq"] for e in evs], [1, 2, 3, 4, 5])
            held = [n for n in self.cl.dispatchers
                    if "deliveries of its consumer went elsewhere" in n.text()]
            self.assertEqual(len(held), 1, "one dispatcher held the partition")
            print("stray pull: it took m2; the holder restarted partition %d's consumer, "
                  "m1..m4 delivered in order" % partition_of(cid))
        finally:
            stray.close()


class AckWaitConfigTest(unittest.TestCase):
    """cluster.ack_wait is checked against every route's webhook attempt."""

    def check(self, ack_wait, timeout, routing=None, nats="nats://127.0.0.1:4222"):
        w.require_binary()
        tmp = w.TempDir(prefix="wsgate-ackwait-")
        try:
            r = w.route("/chat", "http://127.0.0.1:9/hook", delivery={"timeout": timeout})
            if routing:
                r["routing_service"] = routing
            cfg = {"nats": nats, "store": "postgres://x@127.0.0.1/db",
                   "cluster": {"ack_wait": ack_wait}, "routes": [r]}
            path = tmp.join("c.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            p = w.run_wsgate(["check-config", "--config", path], stderr=subprocess.STDOUT,
                             timeout=30)
            return p.returncode, p.stdout.decode(errors="replace")
        finally:
            tmp.cleanup()

    def test_ack_wait_must_exceed_the_webhook_attempt(self):
        rc, out = self.check("5s", "10s")
        self.assertEqual(rc, 2, out)
        self.assertIn("routes[0].delivery.timeout: 10s must be below cluster.ack_wait (5s)", out)
        rc, out = self.check("5s", "5s")  # equal is not below
        self.assertEqual(rc, 2, out)
        rc, out = self.check("11s", "10s")
        self.assertEqual(rc, 0, out)
        # the routing-service call (at most 2 s) is part of the attempt
        rc, out = self.check("11s", "10s", routing="http://127.0.0.1:9/route")
        self.assertEqual(rc, 2, out)
        self.assertIn("10s (+ 2s routing-service call) must be below cluster.ack_wait (11s)",
                      out)
        rc, out = self.check("13s", "10s", routing="http://127.0.0.1:9/route")
        self.assertEqual(rc, 0, out)
        # standalone (no nats): no AckWait, no check
        rc, out = self.check("5s", "10s", nats="")
        self.assertEqual(rc, 0, out)
        # bounds of the key itself
        rc, out = self.check("500ms", "100ms")
        self.assertEqual(rc, 2, out)
        self.assertIn("cluster.ack_wait", out)

if __name__ == "__main__":
    w.main()
