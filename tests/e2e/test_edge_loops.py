# SPDX-License-Identifier: MIT
"""test_edge_loops.py — an edge with several service threads (edge.threads:
each its own lws context on the shared port, SO_REUSEPORT), through the real
binary with real WebSocket clients and a real backend:

- the kernel spreads connections over the loops, and a connection lives on
  the loop its id hashes to (the high half of FNV-1a 64 of the id, modulo the
  loop count: what routes commands, acks and authorizer verdicts to it);
- a channel publish reaches every member on every loop once, ?exclude= skips
  one; a control-API send reaches exactly the connection addressed; API
  disconnects close each with its code and reach the backend;
- what spans loops: edge.max_connections and max_connections_per_ip count
  every loop's connections (a slot given back is usable from any loop);
  one_connection_per_user `replace` closes the older connection on whichever
  loop holds it (4409), `reject` refuses a second handshake (409) whichever
  loop it lands on;
- a second process cannot join a port the first listens on (SO_REUSEPORT
  would let it; the edge checks with a plain bind first);
- the soft open-file limit is lowered to what the configured connection
  limits can use (lws walks a table that long on every close);
- out of file descriptors (the process's limit lowered while it runs):
  accepting pauses instead of spinning (logged), and once clients leave, new
  connections are accepted again;
- SIGTERM closes the connections of every loop with 1001 and makes each
  one's disconnect event durable: exactly one per connection reaches the
  backend (after a restart for those not delivered before exit).

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import os
import resource
import signal
import socket

import wsgate_test as w

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}
LOOPS = 4  # more than this machine's cores is allowed: threads, not CPUs
N = 48  # clients: all on one loop of 4 has probability 4 * 4**-48


def fnv1a64(s):
    h = 1469598103934665603
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def loop_of(conn_id):
    return (fnv1a64(conn_id) >> 32) % LOOPS


class EdgeLoops(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([
            w.route("/a", self.be.url, jwt=JWT),
            w.route("/last", self.be.url, jwt=JWT, one_connection_per_user="replace"),
            w.route("/solo", self.be.url, jwt=JWT, one_connection_per_user="reject"),
        ], config={"edge": {"threads": LOOPS, "max_connections": N + 8,
                            "max_connections_per_ip": N + 4}})
        self.api = self.gw.control()

    def tok(self, user, **kw):
        return {"token": w.mint_jwt(w.client_claims(user, **kw))}

    def connect_many(self, n, path="/a", channels=("room",)):
        return self.clients(self.gw.edge_url + path, n,
                            lambda i: self.tok("u%d" % i, channels=list(channels)))

    def metric(self, name):
        text = self.api.get("/metrics").body.decode()
        line = next(l for l in text.splitlines() if l.startswith(name + " "))
        return int(float(line.split()[1]))

    def conn_ids(self, n):
        """user -> connection id, from the connect events."""
        evs = self.be.wait_events(lambda e: e["type"] == "connect", n, timeout=30)
        return {e["user"]: e["connection_id"] for e in evs}

    def test_spread_publish_send_disconnect(self):
        clients = self.connect_many(N)
        ids = self.conn_ids(N)
        # every loop's thread exists; connections sit on the loop their id hashes to
        loops = {}
        for rec in self.gw.find_log("client connected"):
            loops[rec["conn"]] = rec["loop"]
        self.assertEqual(set(loops), set(ids.values()))
        for cid, loop in loops.items():
            self.assertEqual(loop, loop_of(cid), cid)
        self.assertGreater(len(set(loops.values())), 1, "the kernel used one loop only")
        with open("/proc/%d/task/%d/comm" % (self.gw.pid, self.gw.pid)) as f:
            main = f.read().strip()
        names = []
        for t in os.listdir("/proc/%d/task" % self.gw.pid):
            with open("/proc/%d/task/%s/comm" % (self.gw.pid, t)) as f:
                names.append(f.read().strip())
        for i in range(1, LOOPS):
            self.assertIn("edge-loop-%d" % i, names)
        self.assertIn(main, names)

        # a publish reaches every member of every loop once; exclude skips one
        before = self.metric("wsgate_publishes_total"), self.metric("wsgate_publish_deliveries_total")
        r = self.api.post("/v1/channels/room/messages", "to all")
        self.assertEqual(r.status, 202, r.body)
        ex = ids["u0"]
        r = self.api.post("/v1/channels/room/messages?exclude=%s" % ex, "not u0")
        self.assertEqual(r.status, 202, r.body)
        for i, ws in enumerate(clients):
            self.assertEqual(ws.recv_text(10), "to all", i)
            if i:
                self.assertEqual(ws.recv_text(10), "not u0", i)
        # counted once per publish (not once per loop), deliveries per member
        w.wait_until(lambda: self.metric("wsgate_publish_deliveries_total") - before[1]
                     == 2 * N - 1, 10, 0.05, "deliveries counted")
        self.assertEqual(self.metric("wsgate_publishes_total") - before[0], 2)
        # a send reaches exactly the connection addressed, whichever loop
        for i in range(N):
            r = self.api.post("/v1/connections/%s/messages" % ids["u%d" % i], "just u%d" % i)
            self.assertEqual(r.status, 200, (i, r.status, r.body))
        for i, ws in enumerate(clients):
            self.assertEqual(ws.recv_text(10), "just u%d" % i)
        self.assertEqual([ws.pending() for ws in clients], [0] * N)
        # frames from every loop become events; disconnects by API close each
        for i, ws in enumerate(clients):
            ws.send_text("from u%d" % i)
        self.be.wait_events(lambda e: e.get("data", "").startswith("from u"), N, timeout=30)
        for i in range(N):
            r = self.api.delete("/v1/connections/%s?code=4001&reason=bye" % ids["u%d" % i])
            self.assertIn(r.status, (202, 204), (i, r.status, r.body))
        for i, ws in enumerate(clients):
            ws.wait_closed(10)
            self.assertEqual((ws.close_code, ws.close_reason), (4001, "bye"), i)
        gone = self.be.wait_events(lambda e: e["type"] == "disconnect", N, timeout=30)
        self.assertEqual({e["connection_id"] for e in gone}, set(ids.values()))
        self.assertEqual({e["initiator"] for e in gone}, {"api"})

    def admitted(self, path, user):
        st, _, ws, _ = w.WsClient.handshake(self.gw.edge_url + path, query=self.tok(user))
        if ws:
            ws.close()
        return st == 101

    def test_limits_span_loops(self):
        # per address: N + 4 connections from 127.0.0.1 on any loop, then 429
        clients = self.connect_many(N + 4, channels=())
        for _ in range(4):  # each lands on a loop of the kernel's choosing
            st, _, _ = w.WsClient.refused(self.gw.edge_url + "/a", query=self.tok("x"))
            self.assertEqual(st, 429)
        # a slot given back is usable whichever loop takes the next one
        clients.pop().close()
        w.wait_until(lambda: self.admitted("/a", "y"), 10, 0.1, "the freed slot reused")

    def test_max_connections_spans_loops(self):
        self.gw.stop()
        self.gw.extra_config["edge"]["max_connections_per_ip"] = 0
        self.gw.extra_config["edge"]["max_connections"] = 10
        self.gw.restart(rewrite_config=True)
        self.connect_many(10, channels=())
        for _ in range(4):
            st, _, _ = w.WsClient.refused(self.gw.edge_url + "/a", query=self.tok("x"))
            self.assertEqual(st, 503)

    def test_replace_and_reject_across_loops(self):
        tok = self.tok("pat")
        prev = None
        for i in range(8):  # each on a loop of the kernel's choosing
            ws = self.client(self.gw.edge_url + "/last", query=tok)
            if prev:
                prev.wait_closed(10)
                self.assertEqual((prev.close_code, prev.close_reason), (4409, "replaced"), i)
            prev = ws
        prev.send_text("still here")
        self.be.wait_event(lambda e: e.get("data") == "still here")
        self.assertFalse(prev.closed.is_set())

        holder = self.client(self.gw.edge_url + "/solo", query=self.tok("sol"))
        for _ in range(8):
            st, _, _ = w.WsClient.refused(self.gw.edge_url + "/solo", query=self.tok("sol"))
            self.assertEqual(st, 409)
        holder.close()
        w.wait_until(lambda: self.admitted("/solo", "sol"), 10, 0.1, "sol's slot freed")

    def test_port_in_use_is_refused(self):
        other = w.Gateway([w.route("/a", self.be.url, jwt=JWT)], start=False,
                          config={"edge": {"threads": LOOPS}})
        self.addCleanup(other.close)
        other.expect_exit("its edge port is taken: start-up must fail", codes=[1])
        other.edge_port = self.gw.edge_port
        other.write_config()
        other._spawn()
        with self.assertRaises(w.GatewayError):
            other.wait_ready(15)
        self.assertIn("address in use", other.logs())
        # the first gateway still has the port to itself
        ws = self.client(self.gw.edge_url + "/a", query=self.tok("z"))
        ws.send_text("still mine")
        self.be.wait_event(lambda e: e.get("data") == "still mine")

    def test_out_of_file_descriptors_pauses_and_recovers(self):
        pid = self.gw.pid
        in_use = len(os.listdir("/proc/%d/fd" % pid))
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 12, hard))
        opened, waiting = [], []
        try:
            for i in range(30):  # more than the limit leaves room for
                s = socket.create_connection(("127.0.0.1", self.gw.edge_port), timeout=5)
                waiting.append(s)  # the kernel queues what the edge cannot accept
            self.gw.wait_log("edge: cannot accept", timeout=15)
            # the edge is still serving within its limit: one that got in works
            for s in waiting:
                s.close()
            waiting = []
            w.wait_until(lambda: self.admitted("/a", "after"), 15, 0.2,
                         "a connection accepted once descriptors are free again")
            for i in range(5):
                opened.append(self.client(self.gw.edge_url + "/a", query=self.tok("ok%d" % i)))
            opened[-1].send_text("fine")
            self.be.wait_event(lambda e: e.get("data") == "fine", timeout=15)
        finally:
            for s in waiting:
                s.close()
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))

    def test_open_file_limit_fits_the_configured_limits(self):
        # lws walks a table as long as the open-file limit on every close
        # (docs/edge.md "Loops"): the soft limit is lowered to what the
        # configured limits can use (edge + API connections + 8,192), never
        # raised; the hard limit stays.
        def limits(pid):
            with open("/proc/%d/limits" % pid) as f:
                line = next(l for l in f if l.startswith("Max open files"))
            return [int(x) for x in line.split()[3:5]]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = 1000 + 100 + 8192
        if hard <= need:
            self.skipTest("the hard open-file limit here (%d) is below %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the gateway inherits it
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        gw = self.gateway([w.route("/a", self.be.url, jwt=JWT)],
                          config={"edge": {"max_connections": 1000},
                                  "api": {"max_connections": 100}})
        self.assertEqual(limits(gw.pid), [need, hard])
        gw.wait_log("open-file limit lowered", to=need)
        ws = self.client(gw.edge_url + "/a", query=self.tok("lim"))
        ws.send_text("within the limit")
        self.be.wait_event(lambda e: e.get("data") == "within the limit")

    def test_sigterm_drains_every_loop(self):
        clients = self.connect_many(N, channels=())
        ids = self.conn_ids(N)
        self.gw.proc.send_signal(signal.SIGTERM)
        for i, ws in enumerate(clients):
            ws.wait_closed(15)
            self.assertEqual(ws.close_code, 1001, i)
        self.gw.proc.wait(30)
        self.assertEqual(self.gw.proc.returncode, 0, self.gw.logs_tail())
        # every loop's disconnects were made durable before exit: those the
        # dispatcher had no time to deliver go out after a restart
        self.gw.restart()
        w.wait_until(lambda: len({e["connection_id"] for e in self.be.events()
                                  if e["type"] == "disconnect"}) == N, 30, 0.1,
                     "%d disconnects" % N)
        gone = [e for e in w.dedupe(self.be.events()) if e["type"] == "disconnect"]
        self.assertEqual(sorted(e["connection_id"] for e in gone), sorted(ids.values()))
        self.assertEqual({(e["code"], e["initiator"]) for e in gone}, {(1001, "server")})


if __name__ == "__main__":
    w.main()
