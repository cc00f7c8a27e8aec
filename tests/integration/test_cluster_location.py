# SPDX-License-Identifier: MIT
"""test_cluster_location.py — in cluster mode the control API knows where
connections live without asking PostgreSQL on a send (real nats-server,
PostgreSQL, 2 edges, 2 APIs, 1 dispatcher; test_cluster_basic.Cluster).

Each API watches every connect and disconnect event as it is published
(control-api/api_edge_cache.c); the store's row is read only after a miss.
PostgreSQL logs every statement here (log_statement = all), so "no store
read" is counted in the server's own log, not only in wsgate's metrics.

Checked here:
- sends to connections opened after the APIs started, through both APIs,
  make no `connections` read at all (PostgreSQL's log), and the APIs count
  location cache hits and no store read;
- a closed connection answers 410 from both APIs and a send to the new
  connection that replaced it (same user, other edge) reaches only it;
- an API started after the connections opened misses, reads the store once
  per connection, then hits; a connection with neither cache entry nor row
  still gets the send through the any-edge command; an unknown id is 410.
"""

import os
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsgate_test as w  # noqa: E402
from test_cluster_basic import ClusterTestCase, Node  # noqa: E402

CONN_READ = "FROM connections c WHERE c.id"  # store_conn_get (store/store_conn.c)


def q(s):
    return urllib.parse.quote(s, safe="")


def sample(text, name):
    """The value of sample `name` (with its labels) in Prometheus text, or 0."""
    for line in text.splitlines():
        parts = line.rsplit(" ", 1)
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return 0.0


class ClusterLocationTest(ClusterTestCase):
    n_edges = 2
    n_apis = 2
    n_dispatchers = 1

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cl.pg.psql("ALTER SYSTEM SET log_statement = 'all'")
        cls.cl.pg.psql("SELECT pg_reload_conf()")
        # every session takes the setting at its next statement; wait until
        # the server logs them (a probe statement of our own shows up)
        w.wait_until(lambda: (cls.cl.pg.psql("SELECT 'probe-location-log'"),
                              "probe-location-log" in cls.pg_log())[1], 15, 0.1,
                     "log_statement in effect")

    @classmethod
    def pg_log(cls):
        with open(cls.cl.pg.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def conn_reads_since(self, offset):
        return self.pg_log()[offset:].count(CONN_READ)

    def metrics(self, api):
        r = self.cl.api(api).get("/metrics")
        self.assertEqual(r.status, 200, r.body)
        return r.body.decode() if isinstance(r.body, bytes) else r.body

    def test_sends_make_no_store_read(self):
        wa, ida = self.client(0)
        wb, idb = self.client(1)
        before = [self.metrics(i) for i in (0, 1)]
        mark = len(self.pg_log())
        for n in range(10):
            for api in (0, 1):
                for ws, cid in ((wa, ida), (wb, idb)):
                    text = "m%d to %s via %d" % (n, cid, api)
                    r = self.cl.api(api).send(cid, text)
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(ws.recv_text(10), text)
        # a statement the API runs after the sends is logged after them
        self.assertEqual(self.cl.api(0).get("/v1/connections/%s" % q(ida)).status, 200)
        w.wait_until(lambda: self.conn_reads_since(mark) >= 1, 10, 0.05, "GET logged")
        self.assertEqual(self.conn_reads_since(mark), 1,
                         "sends read the connections table:\n" +
                         "\n".join(l for l in self.pg_log()[mark:].splitlines()
                                   if CONN_READ in l))
        for api in (0, 1):
            after = self.metrics(api)
            hits = 'wsgate_api_location_cache_lookups_total{result="hit"}'
            reads = "wsgate_api_location_store_reads_total"
            self.assertGreaterEqual(sample(after, hits) - sample(before[api], hits), 20, after)
            self.assertEqual(sample(after, reads) - sample(before[api], reads), 0, after)

    def test_closed_connection_and_its_successor(self):
        wa, ida = self.client(0)
        for api in (0, 1):  # both APIs use their entry for it
            self.assertEqual(self.cl.api(api).send(ida, "first %d" % api).status, 200)
            self.assertEqual(wa.recv_text(10), "first %d" % api)
        wa.close()
        w.wait_until(lambda: self.cl.conn_row(ida) is None, 15, 0.05, "row of %s removed" % ida)
        wb, idb = self.client(1)  # its successor, on the other edge
        wc, idc = self.client(0)  # a bystander on the old edge
        for api in (0, 1):
            self.assertEqual(self.cl.api(api).send(ida, "late").status, 410)
            r = self.cl.api(api).send(idb, "to b %d" % api)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(wb.recv_text(10), "to b %d" % api)
            r = self.cl.api(api).delete("/v1/connections/%s" % q(ida))
            self.assertEqual(r.status, 410, r.body)
        time.sleep(0.3)
        self.assertEqual(wc.pending(), 0)
        self.assertEqual(wb.pending(), 0)

    def test_cold_api_misses_then_hits_and_falls_back(self):
        wa, ida = self.client(0)
        wb, idb = self.client(1)
        wc, idc = self.client(1)
        # neither a cache entry (the API below starts after its connect)
        # nor a row (as before the registry records it)
        self.cl.pg.psql("DELETE FROM connections WHERE id = '%s'" % idc)
        port = w.free_port()
        cold = Node(self.cl, "api-cold", "api",
                    dict(self.cl.env, WSGATE_API_LISTEN="127.0.0.1:%d" % port), port)
        self.cl.apis.append(cold)  # stopped with the cluster
        cold.start()
        cold.wait_ready()
        k = len(self.cl.apis) - 1
        mark = len(self.pg_log())
        for n in range(3):  # one store read per connection, then hits
            for ws, cid in ((wa, ida), (wb, idb)):
                r = self.cl.api(k).send(cid, "cold %d" % n)
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(ws.recv_text(10), "cold %d" % n)
        reads = "wsgate_api_location_store_reads_total"
        self.assertEqual(sample(self.metrics(k), reads), 2)
        w.wait_until(lambda: self.conn_reads_since(mark) >= 2, 10, 0.05, "reads logged")
        self.assertEqual(self.conn_reads_since(mark), 2)
        # no row: the any-edge command finds the edge holding it. It asks
        # the edges this API knows by their heartbeats (every 500 ms here):
        # give a new API three beats to know both
        time.sleep(w.scaled(1.5))
        r = self.cl.api(k).send(idc, "any edge")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(wc.recv_text(10), "any edge")
        self.assertEqual(self.cl.api(k).send("NoSuchConnectionId0000", "x").status, 410)
        self.assertEqual(sample(self.metrics(k), reads), 4)
        self.assertEqual(wa.pending() + wb.pending(), 0)


if __name__ == "__main__":
    w.main()
