# SPDX-License-Identifier: MIT
"""test_cluster_failover.py — dispatcher fail-over and partition sharing in
cluster mode, through the real binaries (the Cluster of
test_cluster_basic.py: nats-server, PostgreSQL, here 1 edge, 1 API and 2
dispatchers on free loopback ports, with the DEFAULT lease and AckWait
settings), 20 clients sending 10 frames/s each:

- kill -9 of a dispatcher holding partitions: every connection delivers
  again within 20 s (the default 3 s lease makes it about 4 s; before, the
  45 s lease and 30 s AckWait made it about a minute), every frame is
  delivered, in order per connection (by first delivery), and a duplicate
  repeats the event id and webhook-id;
- SIGTERM of a dispatcher: it exits 0 and hands its partitions over (the
  same checks; the gap is printed);
- two dispatchers share the 16 partitions 8/8 within 15 s of starting and
  both deliver under load (wsgate_webhook_requests_total on each one's ops
  /metrics); a third one started under load holds leases within 15 s and
  delivers webhooks too; nothing lost, order kept.

The measured gaps are printed; the bounds are generous (never a tight
wall-clock assertion). Every process is stopped by PID; every wait is
bounded.
"""

import re
import time
import unittest
import urllib.request

import wsgate_test as w
from test_cluster_basic import ClusterTestCase, Node
from test_cluster_faults import check_duplicates, lease_holders
from test_cluster_outages import Fleet, check_fleet_deliveries, map_fleet_ids, ws_connect_ids

CLIENTS = 20
RATE = 10.0 * CLIENTS  # frames/s in all: 10 per client
RESUME_BOUND_S = 20  # every connection delivers again within this of the fault


def webhook_requests(node):
    """wsgate_webhook_requests_total on a dispatcher's ops /metrics."""
    url = "http://127.0.0.1:%d/metrics" % node.ops_port
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^wsgate_webhook_requests_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


class FailoverTestCase(ClusterTestCase):
    n_edges = n_apis = 1
    n_dispatchers = 2
    per_conn = 120  # 12 s of sending at 10 frames/s

    def start_fleet(self, tag):
        fl = Fleet(self.cl.edge_url(0), CLIENTS, tag, per_conn=self.per_conn, rate=RATE)
        self.addCleanup(fl.close)
        got = ws_connect_ids(self.be, self.cl.edges[0].port, CLIENTS, self._taken(), timeout=60)
        ids = map_fleet_ids(self, fl, got, timeout=60)
        fl.start()
        return fl, ids

    def first_deliveries(self, ids):
        """{connection id: [(seq, monotonic time of its first delivery)]} by seq."""
        wanted, first = set(ids), {}
        for r in self.be.snapshot():
            for e in r.events():
                key = (e.get("connection_id"), e.get("seq"))
                if key[0] in wanted and key not in first:
                    first[key] = r.time
        out = {}
        for (cid, seq), t in first.items():
            out.setdefault(cid, []).append((seq, t))
        return {cid: sorted(v) for cid, v in out.items()}

    def resumed_after(self, ids, t0):
        """Connections with a first delivery after t0."""
        return {cid for cid, v in self.first_deliveries(ids).items() if v[-1][1] > t0}

    def finish(self, fl, ids, what, fault_at):
        """Waits for every frame; checks order, duplicates, and prints the
        longest pause of any connection's first deliveries."""
        fl.join(120)
        self.assertIsNone(fl.error)
        total = len(ids) * (self.per_conn + 1)
        w.wait_until(lambda: sum(len(v) for v in self.first_deliveries(ids).values()) >= total,
                     60, 0.2, "every frame delivered once at least")
        time.sleep(1)  # late duplicates are checked too
        delivered, closed = check_fleet_deliveries(self, [fl], [ids], self.be.events())
        self.assertEqual(closed, 0)
        self.assertEqual(delivered, len(ids) * self.per_conn)
        dupes = check_duplicates(self, set(ids))
        gap, who = 0.0, None
        for cid, v in self.first_deliveries(ids).items():
            for (_, a), (_, b) in zip(v, v[1:]):
                if b - a > gap:
                    gap, who = b - a, cid
        print("%s: %d frames from %d connections delivered in order, %d duplicate deliveries "
              "(same ids); longest pause of one connection %.1f s (%s), fault at +%.1f s"
              % (what, delivered, len(ids), dupes, gap, who, fault_at))
        self.assertLess(gap, RESUME_BOUND_S * w.TIME_SCALE)

    def wait_both_hold(self, timeout):
        w.wait_until(lambda: len(lease_holders(self.cl)) == 2, timeout, 0.2,
                     "both dispatchers holding partition leases")

    def fault_under_load(self, tag, fault):
        """Clients send; after ~2 s of deliveries fault(dispatcher 0); every
        connection must deliver again within RESUME_BOUND_S."""
        self.wait_both_hold(60)
        self.be.respond(200, delay=0.005)  # keep deliveries in flight
        started = time.monotonic()
        fl, ids = self.start_fleet(tag)
        w.wait_until(lambda: sum(len(v) for v in self.first_deliveries(ids).values())
                     >= CLIENTS * 20, 60, 0.1, "deliveries before the fault")
        fault(self.cl.dispatchers[0])
        at = time.monotonic()
        w.wait_until(lambda: len(self.resumed_after(ids, at + 0.5)) == len(ids), RESUME_BOUND_S,
                     0.1, "every connection delivering again after the fault")
        print("%s: every connection delivering again %.1f s after the fault"
              % (tag, time.monotonic() - at))
        self.finish(fl, ids, tag, at - started)


class Kill9HolderTest(FailoverTestCase):
    def test_kill9_of_a_partition_holder_fails_over_in_seconds(self):
        def kill(node):
            self.assertEqual(node.kill9(), -9)
        self.fault_under_load("kill9", kill)


class SigtermHandOverTest(FailoverTestCase):
    def test_sigterm_hands_partitions_over(self):
        def term(node):
            self.assertEqual(node.stop(), 0)
        self.fault_under_load("sigterm", term)


class SharingTest(FailoverTestCase):
    per_conn = 200  # 20 s of sending: room for a third dispatcher to join

    def test_every_dispatcher_works_and_a_third_takes_partitions(self):
        t0 = time.monotonic()
        w.wait_until(lambda: sorted(lease_holders(self.cl).values()) == [8, 8], 15, 0.2,
                     "two dispatchers sharing the partitions 8/8")
        print("two dispatchers 8/8 within %.1f s" % (time.monotonic() - t0))
        d0, d1 = self.cl.dispatchers
        before = [webhook_requests(d) for d in (d0, d1)]
        self.be.respond(200, delay=0.005)
        fl, ids = self.start_fleet("share")
        w.wait_until(lambda: all(webhook_requests(d) >= b + 50 for d, b in zip((d0, d1), before)),
                     20, 0.2, "both dispatchers delivering under load")
        third = Node(self.cl, "dispatch2", "dispatch", dict(self.cl.env))
        self.cl.dispatchers.append(third)
        third.start()
        third.wait_ready()
        t1 = time.monotonic()
        w.wait_until(lambda: len(lease_holders(self.cl)) == 3 and
                     min(lease_holders(self.cl).values()) >= 4, 15, 0.2,
                     "the third dispatcher holding partition leases")
        took = time.monotonic() - t1
        w.wait_until(lambda: webhook_requests(third) >= 20, 15, 0.2,
                     "the third dispatcher delivering")
        print("third dispatcher: leases %s within %.1f s, delivering within %.1f s"
              % (sorted(lease_holders(self.cl).values()), took, time.monotonic() - t1))
        self.finish(fl, ids, "share", t1 - t0)


if __name__ == "__main__":
    w.main()
