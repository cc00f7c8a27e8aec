# SPDX-License-Identifier: MIT
"""test_cluster_handover.py — dispatchers hand partitions over under load
without losing or reordering anything (cluster mode, the Cluster of
test_cluster_basic.py: nats-server, PostgreSQL, 1 edge, 1 API and 2
dispatchers on free loopback ports, with the DEFAULT lease and AckWait
settings), 20 clients sending 10 frames/s each:

- SIGTERM of a dispatcher holding partitions: it exits 0, and by then each
  of its partition leases is marked "free" (it handed everything it had
  out back, Nak'ed, first) or already taken by the other one — not deleted
  or left to expire, which made the survivor wait for its next lease round
  (up to 15 s) or the lease TTL (45 s); every connection delivers again
  within 10 s of the SIGTERM;
- sharing: two dispatchers split the 16 partitions 8/8 (the second gets
  its share about a second after the first one's first lease round); a
  third one started under load holds at least 4 leases once the others'
  rounds came, and delivers webhooks.
In both: every frame delivered, in order per connection (by first
delivery), and a duplicate repeats the event id and webhook-id.

The measured gaps are printed; the bounds are generous (never a tight
wall-clock assertion). Every process is stopped by PID; every wait is
bounded. A kill -9 still fails over after the lease TTL
(test_cluster_faults.py, with a short AckWait).

Env: WSGATE_BIN, PYTHONPATH=tests/lib, nats-server and PostgreSQL
(scripts/deps.sh).
"""

import re
import sys
import time
import urllib.request

import wsgate_test as w
from test_cluster_basic import ClusterTestCase, Node
from test_cluster_faults import check_duplicates, lease_holders, lease_values
from test_cluster_outages import Fleet, check_fleet_deliveries, map_fleet_ids, ws_connect_ids

CLIENTS = 20
RATE = 10.0 * CLIENTS  # frames/s in all: 10 per client
RESUME_BOUND_S = 10  # every connection delivers again within this of the SIGTERM
LEASE_ROUND_S = 15  # a third of the default lease TTL (45 s)


def webhook_requests(node):
    """wsgate_webhook_requests_total on a dispatcher's ops /metrics."""
    url = "http://127.0.0.1:%d/metrics" % node.ops_port
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^wsgate_webhook_requests_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


class HandoverTestCase(ClusterTestCase):
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

    def finish(self, fl, ids, what):
        """Waits for every frame; checks order and duplicates; prints the
        longest pause of any connection's first deliveries."""
        fl.join(120)
        self.assertIsNone(fl.error)
        total = len(ids) * (self.per_conn + 1)
        w.wait_until(lambda: sum(len(v) for v in self.first_deliveries(ids).values()) >= total,
                     90, 0.2, "every frame delivered once at least")
        time.sleep(1)  # late duplicates are checked too
        try:
            delivered, closed = check_fleet_deliveries(self, [fl], [ids], self.be.events())
        except AssertionError:
            self.dump_out_of_order(ids)
            raise
        self.assertEqual(closed, 0)
        self.assertEqual(delivered, len(ids) * self.per_conn)
        dupes = check_duplicates(self, set(ids))
        gap, who = 0.0, None
        for cid, v in self.first_deliveries(ids).items():
            for (_, a), (_, b) in zip(v, v[1:]):
                if b - a > gap:
                    gap, who = b - a, cid
        print("%s: %d frames from %d connections delivered in order, %d duplicate deliveries "
              "(same ids); longest pause of one connection %.1f s (%s)"
              % (what, delivered, len(ids), dupes, gap, who))
        return gap

    def dump_out_of_order(self, ids):
        """Every delivery (time, seq, headers) of connections whose first
        deliveries are out of seq order, to stderr."""
        firsts = self.first_deliveries(ids)
        for cid, v in firsts.items():
            by_time = [seq for seq, _ in sorted(v, key=lambda x: x[1])]
            if by_time == sorted(by_time):
                continue
            sys.stderr.write("--- deliveries of %s (t: monotonic) ---\n" % cid)
            for r in self.be.snapshot():
                for e in r.events():
                    if e.get("connection_id") == cid:
                        sys.stderr.write("t=%.3f seq=%s id=%s %s\n" % (
                            r.time, e.get("seq"), e.get("id"),
                            {k: v for k, v in r.headers.items()
                             if k.lower().startswith(("webhook-", "wsgate-"))}))

    def wait_split(self, n, least, timeout):
        """Until n dispatchers hold leases, each at least `least`."""
        w.wait_until(lambda: len(lease_holders(self.cl)) == n and
                     min(lease_holders(self.cl).values()) >= least, timeout, 0.2,
                     "%d dispatchers sharing the partitions, each %d at least" % (n, least))


class SigtermHandoverTest(HandoverTestCase):
    def test_sigterm_hands_partitions_over_at_once(self):
        self.wait_split(2, 8, 2 * LEASE_ROUND_S + 30)
        self.be.respond(200, delay=0.005)  # keep deliveries in flight
        fl, ids = self.start_fleet("sigterm")
        w.wait_until(lambda: sum(len(v) for v in self.first_deliveries(ids).values())
                     >= CLIENTS * 20, 60, 0.1, "deliveries before the SIGTERM")
        stopping = self.cl.dispatchers[0]
        before = lease_holders(self.cl)
        at = time.monotonic()
        self.assertEqual(stopping.stop(), 0)
        # none of the stopped one's leases is left deleted or to expire: each
        # is free or already the survivor's (checked at its exit)
        values = lease_values(self.cl)
        survivor = [v for v in values.values() if v not in (None, "free")]
        self.assertEqual(len(set(survivor)), 1, values)
        self.assertNotIn(None, values.values(), values)
        w.wait_until(lambda: len(self.first_deliveries(ids)) == len(ids) and
                     all(v[-1][1] > at + 0.5 for v in self.first_deliveries(ids).values()),
                     RESUME_BOUND_S, 0.1, "every connection delivering again after the SIGTERM")
        print("sigterm: every connection delivering again %.1f s after it; leases before %s, "
              "at its exit %s" % (time.monotonic() - at, sorted(before.values()), values))
        self.finish(fl, ids, "sigterm")


class SharingTest(HandoverTestCase):
    per_conn = 400  # 40 s of sending: room for a third dispatcher to join

    def test_a_third_dispatcher_takes_partitions_under_load(self):
        t0 = time.monotonic()
        self.wait_split(2, 8, 2 * LEASE_ROUND_S + 30)
        print("two dispatchers 8/8 %.1f s after the check began" % (time.monotonic() - t0))
        d0, d1 = self.cl.dispatchers
        before = [webhook_requests(d) for d in (d0, d1)]
        self.be.respond(200, delay=0.005)
        fl, ids = self.start_fleet("share")
        w.wait_until(lambda: all(webhook_requests(d) >= b + 50 for d, b in zip((d0, d1), before)),
                     30, 0.2, "both dispatchers delivering under load")
        third = Node(self.cl, "dispatch2", "dispatch", dict(self.cl.env))
        self.cl.dispatchers.append(third)
        third.start()
        third.wait_ready()
        t1 = time.monotonic()
        self.wait_split(3, 4, 2 * LEASE_ROUND_S + 30)
        took = time.monotonic() - t1
        w.wait_until(lambda: webhook_requests(third) >= 20, 30, 0.2,
                     "the third dispatcher delivering")
        print("third dispatcher: leases %s within %.1f s"
              % (sorted(lease_holders(self.cl).values()), took))
        self.finish(fl, ids, "share")


if __name__ == "__main__":
    w.main()
