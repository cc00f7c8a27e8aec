# SPDX-License-Identifier: MIT
"""test_cluster_ops.py — the ops listener of the edge and dispatch roles
(docs/contract.md §7: /healthz, /readyz, /metrics on ops.listen), through the binary
in cluster mode (nats-server + PostgreSQL + one edge, one API, one
dispatcher):

- /healthz answers 200 and /readyz 200 on both roles once they run;
- /metrics is Prometheus text with the role's metrics, and they move: the
  edge counts the connection and the frame of a client, the dispatcher the
  webhook requests and their latency, and both report NATS (and the
  dispatcher the store) as up;
- other paths are 404, other methods 405;
- during an edge drain (SIGTERM with edge.shutdown_grace while a client is
  connected; NATS paused so that the drain waits for the disconnect event's
  acknowledgement) /readyz answers 503 "draining" while /healthz and
  /metrics still answer; the client gets 1001, the edge exits 0 once NATS
  goes on, and the backend gets one disconnect event;
- with NATS down, the edge's and the dispatcher's /readyz answer 503 "bus
  down" (and /healthz 200); back to 200 once NATS is back (last: the
  cluster's event delivery takes a while to resume after that);
- the API role's GET /v1/stats (the dashboard's summary, docs/dashboard.md)
  counts the edge's connection from PostgreSQL under that edge's id, its
  live tail has the registry's connect, and its own process counters stay
  at 0 frames and 0 webhooks (the API process handles neither).
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wsgate_test as w  # noqa: E402
from test_cluster_basic import ClusterTestCase  # noqa: E402


def ops(node, path, method="GET"):
    status, headers, body = w.http_request("http://127.0.0.1:%d%s" % (node.ops_port, path),
                                           method=method, timeout=5)
    return status, headers, body.decode("utf-8", "replace")


def metric(text, name):
    """The value of an unlabelled sample `name` in Prometheus text, or None."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


class ClusterOpsTest(ClusterTestCase):
    n_edges = n_apis = n_dispatchers = 1
    # longer than the drain test's look at the edge while NATS is paused
    extra_config = {"edge": {"shutdown_grace": "20s"}}

    def wait_ready(self, node, want=200, timeout=20):
        last = []

        def check():
            last[:] = ops(node, "/readyz")
            return last[0] == want
        try:
            w.wait_until(check, timeout, 0.05, "%s /readyz %d" % (node.name, want))
        except AssertionError as e:
            raise AssertionError("%s; last answer %r" % (e, last))
        return last

    def test_a_health_ready_and_errors(self):
        for node in (self.cl.edges[0], self.cl.dispatchers[0]):
            st, h, body = ops(node, "/healthz")
            self.assertEqual(st, 200, body)
            self.assertIn('"ok"', body)
            st, h, body = self.wait_ready(node)
            self.assertIn('"ready"', body)
            self.assertEqual(h.get("content-type"), "application/json")
            st, h, body = ops(node, "/nope")
            self.assertEqual(st, 404, body)
            st, h, body = ops(node, "/readyz", method="POST")
            self.assertEqual(st, 405, body)

    def test_b_metrics_of_each_role_move(self):
        edge, disp = self.cl.edges[0], self.cl.dispatchers[0]
        ws, cid = self.client(0)
        ws.send_text("hello ops")
        self.be.wait_event(lambda e: e["type"] == "message" and e["connection_id"] == cid)
        st, h, text = ops(edge, "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h.get("content-type", "").startswith("text/plain; version=0.0.4"))
        self.assertEqual(metric(text, "wsgate_connections"), 1.0, text)
        self.assertGreaterEqual(metric(text, "wsgate_frames_in_total"), 1.0)
        self.assertGreaterEqual(metric(text, "wsgate_bytes_in_total"), len("hello ops"))
        self.assertGreaterEqual(metric(text, "wsgate_events_accepted_total"), 2.0)  # connect+msg
        self.assertEqual(metric(text, "wsgate_bus_up"), 1.0)
        for name in ("wsgate_slow_consumer_closes_total", "wsgate_publish_deliveries_total",
                     "wsgate_frames_out_total"):
            self.assertIsNotNone(metric(text, name), name)

        def disp_counted():
            t = ops(disp, "/metrics")[2]
            return (metric(t, "wsgate_webhook_requests_total") or 0) >= 2 and t
        text = w.wait_until(disp_counted, 10, 0.05, "dispatcher webhook counters")
        self.assertGreaterEqual(metric(text, "wsgate_webhook_responses_2xx_total"), 2.0)
        self.assertGreaterEqual(metric(text, "wsgate_webhook_duration_seconds_count"), 2.0)
        self.assertEqual(metric(text, "wsgate_bus_up"), 1.0)
        self.assertEqual(metric(text, "wsgate_store_up"), 1.0)
        for name in ("wsgate_webhook_retries_total", "wsgate_dead_letters_total",
                     "wsgate_webhook_responses_5xx_total", "wsgate_webhook_errors_total"):
            self.assertIsNotNone(metric(text, name), name)
        ws.close()

    def test_b2_stats_of_the_api_role(self):
        ws, cid = self.client(0)
        api = self.cl.api(0)
        edge_id = w.wait_until(lambda: self.cl.conn_row(cid), 20, 0.1, "the connection's row")

        def counted():
            r = api.get("/v1/stats")
            self.assertEqual(r.status, 200, r)
            return r.json["connections"]["total"] == 1 and r.json
        s = w.wait_until(counted, 20, 0.1, "/v1/stats counting the connection")
        self.assertEqual(s["mode"], "cluster")
        self.assertEqual(s["connections"]["by_route_edge"],
                         [{"route": "/chat", "edge": edge_id, "connections": 1}])
        self.assertTrue(any(e["kind"] == "connect" and cid in e["text"] for e in s["events"]),
                        s["events"])
        ws.send_text("hello stats")
        self.be.wait_event(lambda e: e["type"] == "message" and e["connection_id"] == cid)
        c = api.get("/v1/stats?events_after=%d" % s["events_last"]).json["process"]
        self.assertEqual((c["gauges"]["connections"], c["counters"]["frames_in_total"],
                          c["counters"]["webhook_requests_total"]), (0, 0, 0))
        self.assertEqual(api.get("/v1/stats", token=self.cl.token("read")).status, 403)
        ws.close()

    def test_c_edge_drain_answers_503_while_serving(self):
        edge = self.cl.edges[0]
        ws, cid = self.client(0)
        # NATS paused: the edge's drain waits for its disconnect event to be
        # acknowledged, so the drain lasts until NATS goes on
        nats = self.cl.nats.proc
        nats.send_signal(signal.SIGSTOP)
        try:
            edge.proc.send_signal(signal.SIGTERM)
            st, h, body = self.wait_ready(edge, 503, timeout=10)
            self.assertIn("draining", body)
            w.wait_until(lambda: ws.close_code is not None, 10, 0.05, "close frame")
            self.assertEqual(ws.close_code, 1001)
            time.sleep(0.5)
            self.assertIsNone(edge.proc.poll(), "the edge ended its drain before NATS acked")
            self.assertEqual(ops(edge, "/healthz")[0], 200)
            self.assertEqual(ops(edge, "/metrics")[0], 200)
            self.assertIn("draining", ops(edge, "/readyz")[2])
        finally:
            nats.send_signal(signal.SIGCONT)
        edge.proc.wait(timeout=w.scaled(30))
        self.assertEqual(edge.proc.returncode, 0)
        evs = self.be.wait_events(lambda e: e["type"] == "disconnect" and
                                  e["connection_id"] == cid, 1, timeout=20)
        self.assertEqual(len(w.dedupe(evs)), 1, evs)
        self.cl.add_edge(start=True)  # for the test after this one
        self.wait_ready(self.cl.edges[-1])

    def test_d_not_ready_while_nats_is_down(self):
        edge, disp = self.cl.edges[-1], self.cl.dispatchers[0]
        self.cl.nats.stop()
        try:
            for node in (edge, disp):
                st, h, body = self.wait_ready(node, 503, timeout=30)
                self.assertIn("bus down", body)
                self.assertEqual(h.get("content-type"), "application/problem+json")
                self.assertEqual(ops(node, "/healthz")[0], 200)
                self.assertEqual(metric(ops(node, "/metrics")[2], "wsgate_bus_up"), 0.0)
        finally:
            self.cl.nats.start()
        for node in (edge, disp):
            self.wait_ready(node, 200, timeout=60)


if __name__ == "__main__":
    w.main()
