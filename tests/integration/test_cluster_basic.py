# SPDX-License-Identifier: MIT
"""test_cluster_basic.py — cluster mode end to end: a real nats-server
(JetStream, tests/lib/natsserver.py), a real PostgreSQL (tests/lib/
pgserver.py), `wsgate migrate`, then two edges, two control APIs and two
dispatchers (`wsgate edge|api|dispatch`), all on free loopback ports, with a
recording backend (tests/lib/wsgate_test.py).

Checked here:
- a publish through either API reaches members on both edges (subscribed
  through either API, whichever edge holds the connection);
- a send through either API reaches a connection on either edge (the API
  knows the edge from the connect event, or else from the store's
  `connections` row written by the registry);
- a forced disconnect through one API closes a connection on the other
  edge, with the code and reason asked for and one `api` disconnect event;
- webhooks for messages from clients on both edges arrive complete and in
  per-connection order (connect first, seq 1..n, data in sent order).

The Cluster class here is also used by test_cluster_faults.py. Every
process is started by this file and stopped by its PID (SIGTERM, then
SIGKILL after a bound); every wait is bounded. Each wsgate role is a
WatchedProcess (tests/lib/wsgate_proc.py): a role that crashes, exits by
itself or writes a sanitizer report fails the test that sees it, and one
that does not exit 0 on SIGTERM at the end fails the class.
"""

import json
import os
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

from natsserver import NatsServer
from pgserver import PgServer
import wsgate_test as w

ROLES = ("edge", "api", "dispatch")


class Node(w.WatchedProcess):
    """One `wsgate ROLE --config FILE` process with WSGATE_* overrides."""

    def __init__(self, cluster, name, role, env, port=None, host="127.0.0.1", netns=None):
        self.watch_init("%s (wsgate %s)" % (name, role))
        self.cluster = cluster
        self.name = name
        self.role = role
        self.env = dict(env)
        self.port = port
        self.host = host    # where its listeners are (127.0.0.1, or an address in netns)
        self.netns = netns  # run inside this network namespace (`ip netns exec`: same PID)
        self.ops_port = None
        if role in ("edge", "dispatch"):  # /healthz /readyz /metrics on ops.listen
            self.ops_port = w.free_port()
            self.env.setdefault("WSGATE_OPS_LISTEN", "%s:%d" % (host, self.ops_port))
        self.proc = None
        self.log_path = cluster.tmp.join(name + ".log")
        self._offset = 0

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self):
        if self.proc is not None:
            self.judge("self")  # it ended without stop() or kill9()
        e = {k: v for k, v in os.environ.items()
             if not k.startswith("WSGATE_") and k not in ("LOG_LEVEL", "LOG_FORMAT")}
        e.update(LOG_LEVEL=self.cluster.log_level, LOG_FORMAT="json")
        e.update(self.env)
        with open(self.log_path, "ab") as out:
            self._offset = out.tell()
            main = threading.current_thread() is threading.main_thread()
            wrap = ["ip", "netns", "exec", self.netns] if self.netns else []
            self.proc = subprocess.Popen(
                wrap + [w.WSGATE_BIN, self.role, "--config", self.cluster.config_path],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=e,
                cwd=self.cluster.tmp.path, preexec_fn=w._pdeathsig if main else None)
        w.track(self.proc)

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + w.scaled(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s during start-up:\n%s"
                                     % (self.name, self.proc.returncode, self.tail()))
            if '"wsgate ready"' in self.text(since_start=True) and \
                    (self.port is None or w.port_open(self.port, self.host)) and \
                    (self.ops_port is None or w.port_open(self.ops_port, self.host)):
                return
            time.sleep(0.05)
        raise AssertionError("%s not ready within %.0fs:\n%s" % (self.name, timeout, self.tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20.0):
        """SIGTERM by PID, SIGKILL after timeout; returns the exit status."""
        return super().stop(timeout)

    def log_paths(self):
        return [self.log_path]

    def logs_tail(self, n=60):
        return self.tail(n)

    def text(self, since_start=False):
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self._offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, n=40):
        return "\n".join(self.text().splitlines()[-n:])


class Cluster:
    """nats-server + PostgreSQL + migrate + n edges, APIs and dispatchers.

    routes: route dicts (wsgate_test.route()). Attributes: .edges .apis
    .dispatchers (lists of Node), .nats, .pg, .config_path, .tmp.
    edge_url(i), api(i) (a ControlApi with an admin token)."""

    def __init__(self, routes, n_edges=2, n_apis=2, n_dispatchers=2, config=None,
                 log_level="info", env=None, pg_fast=True, nats_host="127.0.0.1"):
        w.require_binary()
        self.tmp = w.TempDir(prefix="wsgate-cluster-")
        self.routes = routes
        self.extra = config or {}
        self.log_level = log_level
        self.env = dict(env or {})  # WSGATE_* given to every node (e.g. test-only knobs)
        self.counts = (n_edges, n_apis, n_dispatchers)
        self.pg_fast = pg_fast  # False: every commit durable (a kill -9 of PostgreSQL)
        self.nats_host = nats_host  # the address nats-server listens on
        self.nats = self.pg = None
        self.edges, self.apis, self.dispatchers = [], [], []
        self.config_path = self.tmp.join("cluster.json")

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def nodes(self):
        return self.edges + self.apis + self.dispatchers

    def start(self):
        self.nats = NatsServer(host=self.nats_host)
        self.nats.start()
        self.pg = PgServer(fast=self.pg_fast)
        self.pg.start()
        cfg = {
            "api": {"auth": {"jwt": {"alg": "HS256", "secret": w.DEFAULT_API_SECRET}}},
            "store": self.pg.url,
            "nats": self.nats.url,
            "edge": {"heartbeat_interval": "500ms", "shutdown_grace": "3s"},
            "cluster": {"edge_timeout": "3s"},
            "log": {"level": self.log_level, "format": "json", "report_interval": "0"},
            "routes": self.routes,
        }
        cfg = w._deep_merge(cfg, self.extra)
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.config = cfg
        r = w.run_wsgate(["migrate", "--config", self.config_path],
                         stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise AssertionError("wsgate migrate failed: " + r.stdout.decode(errors="replace"))
        n_edges, n_apis, n_disp = self.counts
        for i in range(n_edges):
            self.add_edge()
        for i in range(n_apis):
            port = w.free_port()
            self.apis.append(Node(self, "api%d" % i, "api",
                                  dict(self.env, WSGATE_API_LISTEN="127.0.0.1:%d" % port), port))
        for i in range(n_disp):
            self.dispatchers.append(Node(self, "dispatch%d" % i, "dispatch", dict(self.env)))
        for n in self.apis:
            n.start()
        for n in self.dispatchers:  # one by one: the first takes every partition
            n.start()
            n.wait_ready()
        for n in self.nodes():
            n.wait_ready()

    def add_edge(self, start=False, env=None, host="127.0.0.1", netns=None):
        """Starts edge number len(edges) (id edge-N) listening on host (inside
        network namespace netns if given); start=True waits until ready."""
        i = len(self.edges)
        port = w.free_port()
        e = dict(self.env, WSGATE_EDGE_LISTEN="%s:%d" % (host, port), WSGATE_EDGE_ID="edge-%d" % i)
        e.update(env or {})
        n = Node(self, "edge%d" % i, "edge", e, port, host, netns)
        self.edges.append(n)
        n.start()
        if start:
            n.wait_ready()
        return n

    def close(self):
        """Stops everything; then raises AssertionError if a wsgate role had
        a problem not reported yet (see check())."""
        for n in self.nodes():
            try:
                n.stop()
            except Exception:
                n.kill9()
        for n in self.nodes():
            n.scan_logs()
        if self.pg:
            self.pg.close()
        if self.nats:
            self.nats.close()
        self.tmp.cleanup()
        w.fail_on_problems(self.nodes())

    def check(self):
        """Raises AssertionError if a role crashed, exited by itself or
        logged a sanitizer report since the last check."""
        for n in self.nodes():
            n.check_alive()
        w.fail_on_problems(self.nodes())

    def logs(self, n=30):
        return "\n".join("--- %s (pid %s) ---\n%s" % (x.name, x.pid, x.tail(n))
                         for x in self.nodes())

    def edge_url(self, i, path="/chat"):
        return "ws://%s:%d%s" % (self.edges[i].host, self.edges[i].port, path)

    def token(self, scope="admin", ttl=600):
        return w.mint_jwt({"sub": "it", "scope": scope, "exp": int(time.time()) + ttl},
                          "HS256", w.DEFAULT_API_SECRET)

    def api(self, i):
        return w.ControlApi("http://127.0.0.1:%d" % self.apis[i].port, self.token())

    def store_dump(self):
        """edges, connections and busy sessions of the store, for post-mortems."""
        out = []
        for sql in ("SELECT * FROM edges", "SELECT id, edge_id FROM connections",
                    "SELECT pid, state, wait_event_type, wait_event, left(query, 120) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"):
            try:
                out.append(sql + ":\n" + self.pg.psql(sql))
            except Exception as e:  # a dump must not hide the failure
                out.append("%s: %s" % (sql, e))
        return "\n".join(out)

    def conn_row(self, conn_id):
        """(edge_id,) of the store's connections row, or None."""
        out = self.pg.psql("SELECT edge_id FROM connections WHERE id = '%s'"
                           % conn_id.replace("'", "''")).strip()
        return out or None


def q(s):
    return urllib.parse.quote(s, safe="")


class ClusterTestCase(unittest.TestCase):
    """One cluster per test class (started in setUpClass); on a failure the
    tail of every node's log goes to stderr."""

    n_edges = n_apis = n_dispatchers = 2
    extra_config = None
    node_env = None  # WSGATE_* for every node
    route_options = {}  # merged into every route (e.g. delivery={...})
    pg_fast = True  # Cluster(pg_fast=...)
    nats_host = "127.0.0.1"  # Cluster(nats_host=...)

    @classmethod
    def make_backend(cls):
        """The backend the class's routes deliver to (stopped at the end)."""
        return w.Backend()

    @classmethod
    def routes(cls):
        return [w.route("/chat", cls.be.url, **cls.route_options),
                w.route("/solo", cls.be.url, jwt={"alg": "HS256", "secret":
                                                  w.DEFAULT_CLIENT_SECRET},
                        one_connection_per_user="replace", **cls.route_options)]

    @classmethod
    def setUpClass(cls):
        w.require_binary()
        cls.be = cls.make_backend()
        cls.cl = Cluster(cls.routes(), cls.n_edges, cls.n_apis, cls.n_dispatchers, cls.extra_config,
                         env=cls.node_env, pg_fast=cls.pg_fast, nats_host=cls.nats_host)
        try:
            cls.cl.start()
            cls.cluster_started()
        except BaseException:
            try:
                cls.cl.close()
            finally:
                cls.be.stop()
            raise

    @classmethod
    def cluster_started(cls):
        """Called once the class's cluster runs (setUpClass cleans up if it
        fails): e.g. cls.cl.add_edge(...) for an edge set up differently."""

    @classmethod
    def tearDownClass(cls):
        try:
            cls.cl.close()
        finally:
            cls.be.stop()

    def setUp(self):
        self._clients = []
        self.addCleanup(self.cl.check)  # the first cleanup runs last

    def tearDown(self):
        for c in self._clients:
            c.abort()
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is not None and any(t is self for t, _ in result.errors + result.failures):
            sys.stderr.write("\n--- cluster logs (%s) ---\n%s\n" % (self.id(), self.cl.logs()))
            sys.stderr.write("--- store ---\n%s\n" % self.cl.store_dump())


    def client(self, edge, timeout=15):
        """A client on edge `edge`; returns (ws, connection id) once the
        registry has written its connections row (each wait bounded by
        timeout seconds)."""
        ws = w.WsClient.connect(self.cl.edge_url(edge))
        self._clients.append(ws)
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e["route"] == "/chat" and
                                e.get("headers", {}).get("host", "").endswith(
                                    ":%d" % self.cl.edges[edge].port) and
                                e["connection_id"] not in self._taken(), timeout=timeout)
        cid = ev["connection_id"]
        self._taken().add(cid)
        w.wait_until(lambda: self.cl.conn_row(cid) == "edge-%d" % edge, timeout, 0.05,
                     "connections row of %s on edge-%d" % (cid, edge))
        return ws, cid

    _taken_ids = set()

    def _taken(self):
        return type(self)._taken_ids


class ClusterBasicTest(ClusterTestCase):
    def test_publish_through_either_api_reaches_both_edges(self):
        wa, ida = self.client(0)
        wb, idb = self.client(1)
        # subscribe each through the other API (API 1 for the client on
        # edge 0, API 0 for the one on edge 1)
        r = self.cl.api(1).put("/v1/channels/room/connections/%s" % q(ida))
        self.assertEqual(r.status, 204, r.body)
        r = self.cl.api(0).put("/v1/channels/room/connections/%s" % q(idb))
        self.assertEqual(r.status, 204, r.body)
        for i in (0, 1):
            text = "news via api %d" % i
            r = self.cl.api(i).post("/v1/channels/room/messages", text)
            self.assertEqual(r.status, 202, r.body)
            self.assertEqual(wa.recv_text(10), text)
            self.assertEqual(wb.recv_text(10), text)
        # members are listed by either API
        for i in (0, 1):
            r = self.cl.api(i).get("/v1/channels/room/connections")
            self.assertEqual(r.status, 200, r.body)
            listed = json.dumps(r.json)
            self.assertIn(ida, listed)
            self.assertIn(idb, listed)
        # exclude works across edges
        r = self.cl.api(0).post("/v1/channels/room/messages?exclude=%s" % q(ida), "not a")
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(wb.recv_text(10), "not a")
        time.sleep(0.5)
        self.assertEqual(wa.pending(), 0)

    def test_broadcast_through_either_api_reaches_both_edges(self):
        wa, ida = self.client(0)
        wb, idb = self.client(1)
        for i in (0, 1):
            r = self.cl.api(i).post("/v1/broadcast?route=/chat", "all %d" % i)
            self.assertEqual(r.status, 202, r.body)
            self.assertEqual(wa.recv_text(10), "all %d" % i)
            self.assertEqual(wb.recv_text(10), "all %d" % i)

    def test_send_to_a_connection_on_either_edge(self):
        wa, ida = self.client(0)
        wb, idb = self.client(1)
        for api in (0, 1):
            for ws, cid in ((wa, ida), (wb, idb)):
                text = "to %s via api %d" % (cid, api)
                r = self.cl.api(api).send(cid, text)
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(ws.recv_text(10), text)
        r = self.cl.api(0).get("/v1/connections/%s" % q(idb))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json.get("edge"), "edge-1", r.body)
        # a connection that is gone answers 410 from every API
        wb.close()
        w.wait_until(lambda: self.cl.conn_row(idb) is None, 15, 0.05, "row of %s removed" % idb)
        for api in (0, 1):
            self.assertEqual(self.cl.api(api).send(idb, "late").status, 410)

    def test_commands_before_the_registry_recorded_the_connection(self):
        # The registry writes the connections row from the connect event, in
        # parallel with the dispatcher delivering the connect webhook: a
        # backend that answers its connect webhook by calling the API may
        # come first. Simulated by removing the row: the API must still
        # reach the connection, on whichever edge holds it.
        wb, idb = self.client(1)
        self.cl.pg.psql("DELETE FROM connections WHERE id = '%s'" % idb)
        r = self.cl.api(0).send(idb, "early")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(wb.recv_text(10), "early")
        r = self.cl.api(1).put("/v1/channels/early/connections/%s" % q(idb))
        self.assertEqual(r.status, 204, r.body)
        self.assertEqual(self.cl.api(0).post("/v1/channels/early/messages", "ch").status, 202)
        self.assertEqual(wb.recv_text(10), "ch")
        r = self.cl.api(1).delete("/v1/connections/%s?code=4003&reason=early" % q(idb))
        self.assertEqual(r.status, 204, r.body)
        self.assertEqual(wb.wait_closed(10), (4003, "early"))
        # an id no edge holds is still 410
        self.assertEqual(self.cl.api(0).send("NoSuchConnectionId0000", "x").status, 410)

    def test_one_connection_per_user_replace_across_edges(self):
        tok = w.mint_jwt(w.client_claims("solo-user"))
        first = w.WsClient.connect(self.cl.edge_url(0, "/solo"), query={"token": tok})
        self._clients.append(first)
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e["route"] == "/solo",
                                timeout=15)
        id1 = ev["connection_id"]
        w.wait_until(lambda: self.cl.conn_row(id1) == "edge-0", 15, 0.05, "row of the first")
        second = w.WsClient.connect(self.cl.edge_url(1, "/solo"), query={"token": tok})
        self._clients.append(second)
        self.assertEqual(first.wait_closed(10), (4409, "replaced"))
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e["route"] == "/solo" and
                                e["connection_id"] != id1, timeout=15)
        id2 = ev["connection_id"]
        w.wait_until(lambda: self.cl.conn_row(id2) == "edge-1", 15, 0.05, "row of the second")
        self.assertEqual(self.cl.api(0).send(id2, "you stay").status, 200)
        self.assertEqual(second.recv_text(10), "you stay")
        evs = self.be.wait_events(lambda e: e["type"] == "disconnect" and
                                  e["connection_id"] == id1, 1, timeout=15)
        self.assertEqual(len(w.dedupe(evs)), 1, evs)
        self.assertEqual((evs[0]["code"], evs[0]["initiator"]), (4409, "server"))

    def test_forced_disconnect_across_edges(self):
        wa, ida = self.client(0)
        wb, idb = self.client(1)
        r = self.cl.api(0).delete("/v1/connections/%s?code=4001&reason=bye" % q(idb))
        self.assertEqual(r.status, 204, r.body)
        self.assertEqual(wb.wait_closed(10), (4001, "bye"))
        r = self.cl.api(1).delete("/v1/connections/%s?code=4002&reason=later" % q(ida))
        self.assertEqual(r.status, 204, r.body)
        self.assertEqual(wa.wait_closed(10), (4002, "later"))
        for cid, code in ((idb, 4001), (ida, 4002)):
            evs = self.be.wait_events(lambda e, c=cid: e["type"] == "disconnect" and
                                      e["connection_id"] == c, 1, timeout=15)
            self.assertEqual(len(w.dedupe(evs)), 1, evs)
            self.assertEqual(evs[0]["initiator"], "api")
            self.assertEqual(evs[0]["code"], code)
        w.wait_until(lambda: self.cl.conn_row(ida) is None and self.cl.conn_row(idb) is None,
                     15, 0.05, "rows removed")

    def test_webhooks_from_both_edges_in_order(self):
        n_msgs = 40
        clients = [self.client(edge) for edge in (0, 1, 0, 1)]
        for k in range(n_msgs):
            for ws, cid in clients:
                ws.send_text("%s #%d" % (cid, k))
        for ws, cid in clients:
            evs = self.be.wait_events(lambda e, c=cid: e["connection_id"] == c and
                                      e["type"] == "message", n_msgs, timeout=30)
        by_conn = w.events_by_connection(w.dedupe(self.be.events(answered_2xx=True)))
        for ws, cid in clients:
            evs = by_conn[cid]
            self.assertEqual(evs[0]["type"], "connect")
            self.assertEqual([e["seq"] for e in evs], list(range(1, n_msgs + 2)))
            self.assertEqual([e["data"] for e in evs[1:]],
                             ["%s #%d" % (cid, k) for k in range(n_msgs)])


if __name__ == "__main__":
    w.main()
