# SPDX-License-Identifier: MIT
"""test_cluster_netns_cut.py — one edge cut off from NATS for 30 s by a
network namespace and an nftables rule, then healed, through the real
binaries (the Cluster of tests/integration/test_cluster_basic.py: a real
nats-server with JetStream, a real PostgreSQL, 2 APIs, 2 dispatchers, edge-0
on 127.0.0.1 and edge-1 inside its own network namespace). Labels "faults"
and "long": `make test-faults`, not `make test` (it needs root for `ip netns`
and nftables, which an unprivileged CI container does not have; 1-2 minutes).

The namespace (`wsgcut<pid>`) gets one end of a veth pair, 169.254.N.2/30;
the host keeps the other, 169.254.N.1/30 (link-local: never routed off the
box). nats-server listens on 169.254.N.1 only and every process, on the
host or in the namespace, reaches it there; PostgreSQL stays on 127.0.0.1
(an edge never talks to the store). Clients reach edge-1 at 169.254.N.2
from the host. The cut is a table `inet wsgcut` in the namespace dropping
TCP to and from the NATS port in both directions (a partition: no RST, no
FIN gets through); the heal deletes the table.

What users see is printed and asserted (docs/reliability.md, "Hard faults
of a cluster", holds the results):
- edge-0's clients (control): every frame delivered in order, sends 200;
- the cut edge keeps serving (a new client gets its 101), says /readyz 503
  before the cut ends, and closes every sending client 1013 within the cut
  (its frames cannot be made durable: never a silent drop); its idle
  clients stay connected;
- the control API's answers for sends to the cut edge's connections: 504
  ("the edge did not answer") or 503 while the edge may be alive, 410 once
  the registry declared the edge lost (edge_lost disconnect, rows deleted),
  which it must do within the cut (cluster.edge_timeout 15 s);
- after the heal: the edge is ready again and a new client of it gets
  sends; every connection the registry lists is really open (no ghost
  row); every frame of a connection not closed 1013 delivered in order (up
  to its first disconnect);
- `one_connection_per_user: reject`: the user of a connection on the cut
  edge tries again on edge-0 during the cut. Correct: refused (503: the
  claim cannot be decided while its holder does not answer; or 409) as
  long as the old connection may be open, or admitted only if the old one
  is closed; so at no time after the heal do two open connections of that
  user both receive sends.
These are test_1_what_users_see. test_2_lost_connections_closed_after_the_heal
checks that every connection the registry declared lost is closed by the
edge once it is back (1012) and gets nothing after its edge_lost disconnect
(no second disconnect, no message): the edge fences itself (docs/cluster.md,
"an edge declared lost that comes back").

Every process is stopped by PID; the namespace, its veth pair and its nft
table are removed in a finally (and leftovers of a dead run of this test,
found by the prefix and a PID no longer alive, at the start); every wait
is bounded.
"""

import os
import selectors
import shutil
import subprocess
import time

import wsgate_test as w
from test_cluster_basic import ClusterTestCase, q
from test_cluster_outages import Fleet, check_duplicates, map_fleet_ids, ws_connect_ids

PREFIX = "wsgcut"  # netns and veth names: wsgcut<pid>, wsgcut<pid>h, wsgcut<pid>n
CUT_S = 30
EDGE_TIMEOUT_S = 15  # the product's default cluster.edge_timeout
JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}


def run(*argv, check=True):
    r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                  r.stderr.decode(errors="replace")))
    return r.stdout.decode(errors="replace")


def tool(name):
    """The path of a tool this test cannot do without: missing is a failure."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        raise AssertionError("%s not found: scripts/deps.sh --faults installs it" % name)
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class NetnsCut:
    """A network namespace with a veth pair to the host; cut()/heal() add and
    delete the nft table that drops its TCP to and from one host port."""

    def __init__(self):
        self.ip, self.nft = tool("ip"), tool("nft")
        self.ns = "%s%d" % (PREFIX, os.getpid())
        self.host_if, self.ns_if = self.ns + "h", self.ns + "n"
        used = run(self.ip, "-4", "-o", "addr")
        n = next(n for n in [os.getpid() % 200 + 20] + list(range(20, 250))
                 if "169.254.%d." % n not in used)
        self.host_addr, self.ns_addr = "169.254.%d.1" % n, "169.254.%d.2" % n
        self.made = False

    @classmethod
    def clean_leftovers(cls):
        """Removes namespaces and veths of runs of this test whose process is
        gone (a kill -9 of the test: its finally never ran)."""
        ip = tool("ip")
        for line in run(ip, "netns", "list").splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(PREFIX) and name[len(PREFIX):].isdigit() and \
                    not _pid_alive(int(name[len(PREFIX):])):
                cls._delete_ns(ip, name)
        for line in run(ip, "-o", "link", "show").splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            pid = name[len(PREFIX):-1]
            if name.startswith(PREFIX) and pid.isdigit() and not _pid_alive(int(pid)):
                run(ip, "link", "del", name, check=False)

    @staticmethod
    def _delete_ns(ip, name):
        for pid in run(ip, "netns", "pids", name, check=False).split():
            try:
                os.kill(int(pid), 9)  # only processes of a dead run of this test live there
            except (ProcessLookupError, ValueError):
                pass
        run(ip, "netns", "del", name, check=False)

    def up(self):
        self.made = True
        ip, ns = self.ip, self.ns
        run(ip, "netns", "add", ns)
        run(ip, "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if,
            "netns", ns)
        run(ip, "addr", "add", self.host_addr + "/30", "dev", self.host_if)
        run(ip, "link", "set", self.host_if, "up")
        run(ip, "-n", ns, "addr", "add", self.ns_addr + "/30", "dev", self.ns_if)
        run(ip, "-n", ns, "link", "set", self.ns_if, "up")
        run(ip, "-n", ns, "link", "set", "lo", "up")

    def cut(self, port):
        rules = ("table inet wsgcut {\n"
                 " chain out { type filter hook output priority 0; policy accept;\n"
                 "  ip daddr %s tcp dport %d drop; }\n"
                 " chain in { type filter hook input priority 0; policy accept;\n"
                 "  ip saddr %s tcp sport %d drop; }\n"
                 "}\n" % (self.host_addr, port, self.host_addr, port))
        r = subprocess.run([self.ip, "netns", "exec", self.ns, self.nft, "-f", "-"],
                           input=rules.encode(), capture_output=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError("nft: %s" % r.stderr.decode(errors="replace"))

    def heal(self):
        run(self.ip, "netns", "exec", self.ns, self.nft, "delete", "table", "inet", "wsgcut")

    def rules(self):
        return run(self.ip, "netns", "exec", self.ns, self.nft, "list", "ruleset")

    def down(self):
        if self.made:
            self._delete_ns(self.ip, self.ns)  # its veth end goes with it, and the nft table
            run(self.ip, "link", "del", self.host_if, check=False)
            self.made = False


def drain(fleet, timeout):
    """Reads what the edge still sends to fleet's connections (a stopped
    Fleet reads nothing) until each is closed or timeout seconds passed."""
    deadline = time.monotonic() + w.scaled(timeout)
    with selectors.DefaultSelector() as sel:
        for c in fleet.conns:
            if not c.closed:
                sel.register(c.sock, selectors.EVENT_READ, c)
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                fleet._read(key.data)
                if key.data.closed:
                    sel.unregister(key.fileobj)


class NetnsCutTest(ClusterTestCase):
    n_edges = 1  # edge-0 on 127.0.0.1; edge-1 is added inside the namespace
    extra_config = {"cluster": {"edge_timeout": "%ds" % EDGE_TIMEOUT_S}}

    @classmethod
    def routes(cls):
        return [w.route("/chat", cls.be.url),
                w.route("/probe", cls.be.url),  # a handshake on the cut edge
                w.route("/one", cls.be.url, jwt=JWT, one_connection_per_user="reject")]

    @classmethod
    def setUpClass(cls):
        NetnsCut.clean_leftovers()
        cls.net = NetnsCut()
        cls.nats_host = cls.net.host_addr
        try:
            cls.net.up()
            super().setUpClass()
        except BaseException:
            cls.net.down()
            raise

    @classmethod
    def cluster_started(cls):
        cls.cl.add_edge(start=True, host=cls.net.ns_addr, netns=cls.net.ns)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.net.down()

    # ---- helpers ------------------------------------------------------------

    def fleet(self, edge, n, tag, rate):
        fl = Fleet(self.cl.edge_url(edge), n, tag, rate=rate)
        self._fleets.append(fl)
        got = ws_connect_ids(self.be, self.cl.edges[edge].port, n, self._taken())
        return fl, map_fleet_ids(self, fl, got)

    def user_connect(self, edge, user):
        """(status, client or None) of a handshake of user on /one."""
        url = self.cl.edge_url(edge, "/one") + "?token=" + q(w.mint_jwt(w.client_claims(user)))
        st, _, ws, _ = w.WsClient.handshake(url, timeout=15)
        if ws:
            self._clients.append(ws)
        return st, ws

    def conn_of_user(self, user, taken=()):
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e.get("user") == user and
                                e["connection_id"] not in taken, timeout=30)
        return ev["connection_id"]

    def rows(self):
        out = self.cl.pg.psql("SELECT id, edge_id FROM connections")
        return dict(ln.split("|") for ln in out.split() if "|" in ln)

    def edge_ready(self, i):
        n = self.cl.edges[i]
        try:
            r = w.ControlApi("http://%s:%d" % (n.host, n.ops_port), timeout=3).get("/readyz")
        except OSError:  # not answering is not ready
            return False
        return r.status == 200

    # ---- the scenario: run once, judged by the two tests below --------------

    _outcome_cache = None

    def scenario(self):
        """Runs the cut once for the class; returns (seen, problems, defects):
        what users saw, broken promises, and the known defect's findings.
        An exception of the run is raised again in every test."""
        cls = type(self)
        if cls._outcome_cache is None:
            self._fleets = []
            try:
                cls._outcome_cache = ("ok", self.run_cut())
            except BaseException as e:
                cls._outcome_cache = ("error", e)
                raise
            finally:
                for fl in self._fleets:
                    fl.close()
        kind, val = cls._outcome_cache
        if kind == "error":
            raise AssertionError("the cut scenario failed: %r" % (val,))
        return val

    def test_1_what_users_see(self):
        seen, problems, defects = self.scenario()
        self.assertEqual(problems, [], "\n".join(problems))

    def test_2_lost_connections_closed_after_the_heal(self):
        # DEFECT 4, fixed (docs/reliability.md, "Hard faults of a cluster", row
        # 7): the registry declares the cut edge lost (one edge_lost
        # disconnect per connection, rows deleted); once back, the edge closes
        # those clients (1012) and nothing of theirs follows the edge_lost
        # disconnect (their own disconnects carry its id).
        seen, problems, defects = self.scenario()
        self.assertEqual(defects, [], "\n".join(defects))

    def run_cut(self):
        seen, problems, defects = {}, [], []
        idle = [self.client(1) for _ in range(3)]  # idle clients on the cut edge
        ctl_ws, ctl_id = self.client(0)
        self._probe = None  # the client of the handshake on edge-1 during the cut
        fl0, ids0 = self.fleet(0, 5, "a", 50)
        fl1, ids1 = self.fleet(1, 5, "b", 50)
        old_ws = self.user_connect(1, "uma")[1]
        self.assertIsNotNone(old_ws, "uma on edge-1 before the cut")
        old_id = self.conn_of_user("uma")
        w.wait_until(lambda: self.rows().get(old_id) == "edge-1", 20, 0.1, "uma's row")
        for fl in (fl0, fl1):
            fl.start()
        time.sleep(2)
        self.net.cut(self.cl.nats.port)
        try:
            new_ws = self.during_cut(seen, problems, idle, (ctl_ws, ctl_id), fl1,
                                     set(ids1) | {old_id})
        finally:
            self.net.heal()
        healed = time.monotonic()
        w.wait_until(lambda: self.edge_ready(1), 60, 0.5, "edge-1 ready after the heal")
        seen["edge-1 ready after the heal (s)"] = round(time.monotonic() - healed, 1)
        time.sleep(5)  # clients keep sending with the edge back
        for fl in (fl0, fl1):
            fl.stop()
            self.assertIsNone(fl.error)
        drain(fl1, 20)  # a close the edge sends late is still seen
        seen["edge-1 sending clients' close codes after the heal"] = [
            c.close_code for c in fl1.conns]
        time.sleep(2)
        self.after_heal(seen, problems, defects, idle + [(ctl_ws, ctl_id)], (old_ws, old_id),
                        new_ws, (fl0, ids0), (fl1, ids1))
        for k, v in seen.items():
            print("%s: %s" % (k, v))
        for p in problems:
            print("PROBLEM: " + p)
        for p in defects:
            print("KNOWN DEFECT: " + p)
        return seen, problems, defects

    def during_cut(self, seen, problems, idle, ctl, fl1, cut_ids):
        """CUT_S seconds of sends, a user's retry and probes while edge-1 is
        cut off; returns uma's client on edge-0 if she got one."""
        t0 = time.monotonic()
        at = lambda: round(time.monotonic() - t0, 1)  # noqa: E731
        sends, ctl_st, uma_tries, ready1 = [], [], [], []
        new_ws = fresh1 = first_lost = rows_gone = None
        cut_ids = cut_ids | {cid for _, cid in idle}
        k = 0
        while time.monotonic() - t0 < CUT_S:
            k += 1
            r = self.cl.api(k % 2).send(idle[k % 3][1], "during %d" % k)
            sends.append((at(), r.status, r.headers.get("retry-after")))
            if r.status == 503 and r.headers.get("retry-after") is None:
                problems.append("503 without Retry-After for a send to the cut edge")
            if r.status not in (503, 504, 410):
                problems.append("a send to the cut edge answered %d: %s" % (r.status, r.body))
            r = self.cl.api(k % 2).send(ctl[1], "ctl %d" % k)
            ctl_st.append(r.status)
            try:
                self.assertEqual(ctl[0].recv_text(10), "ctl %d" % k)
            except AssertionError as e:
                problems.append("edge-0's client missed a send during the cut: %s" % e)
            st = self.edge_ready(1)
            if not ready1 or ready1[-1][1] != st:
                ready1.append((at(), st))
            if fresh1 is None and at() >= 8:  # does the cut edge still serve its clients?
                fresh1 = self.probe_handshake(1, at)
            if new_ws is None and at() >= 3:
                st, ws = self.user_connect(0, "uma")
                uma_tries.append((at(), st))
                if st not in (101, 409, 503):
                    problems.append("uma's retry on edge-0 answered %s" % st)
                new_ws = ws
            if first_lost is None and any(e.get("initiator") == "edge_lost"
                                          for e in self.be.events()):
                first_lost = at()
            if rows_gone is None and not cut_ids & set(self.rows()):
                rows_gone = at()
            time.sleep(0.5)
        seen["api sends to an idle edge-1 client during the cut (s, status, Retry-After)"] = sends
        seen["edge_lost first seen by the backend at (s)"] = first_lost
        seen["every edge-1 row gone at (s)"] = rows_gone
        seen["uma on edge-0 during the cut (s, status)"] = uma_tries
        seen["edge-1 /readyz during the cut (s, 200?)"] = ready1
        seen["a new handshake on edge-1 during the cut (s, status, took s)"] = fresh1
        seen["edge-1 sending clients closed during the cut"] = sorted(
            c.close_code for c in fl1.conns if c.close_code is not None)
        seen["edge-1 idle clients open at the heal"] = [not ws.closed.is_set() for ws, _ in idle]
        if set(ctl_st) != {200}:
            problems.append("sends to edge-0's client during the cut: %s" % ctl_st)
        if not isinstance(fresh1[1], int) or fresh1[1] != 101:
            problems.append("the cut edge did not serve a new client during the cut: %s"
                            % (fresh1,))
        if [c.close_code for c in fl1.conns] != [1013] * len(fl1.conns):
            problems.append("the cut edge's sending clients were not all closed 1013 within "
                            "the cut (%d s, PubAck timeout 5 s): %s"
                            % (CUT_S, [c.close_code for c in fl1.conns]))
        if ready1[-1][1]:
            problems.append("the cut edge's /readyz still said ready at the end of the cut")
        if first_lost is None:
            problems.append("the registry did not declare the cut edge lost within %d s "
                            "(cluster.edge_timeout %d s)" % (CUT_S, EDGE_TIMEOUT_S))
        return new_ws

    def probe_handshake(self, edge, at):
        t = at()
        try:
            st, _, ws, _ = w.WsClient.handshake(self.cl.edge_url(edge, "/probe"), timeout=10)
            if ws:
                self._clients.append(ws)
                self._probe = ws
        except OSError as e:
            st = "no answer (%s)" % type(e).__name__
        return (t, st, round(at() - t, 1))

    def after_heal(self, seen, problems, defects, idle, old, new_ws, *fleets):
        old_ws, old_id = old
        is_open = lambda ws: ws is not None and not ws.closed.is_set()  # noqa: E731
        open_ids = {cid for ws, cid in idle if is_open(ws)}
        for fl, ids in fleets:
            open_ids |= {ids[c.idx] for c in fl.conns if not c.closed}
        if is_open(old_ws):
            open_ids.add(old_id)
        new_id = self.conn_of_user("uma", {old_id}) if new_ws is not None else None
        if is_open(new_ws):
            open_ids.add(new_id)
        lost = {e["connection_id"] for e in self.be.events()
                if e["type"] == "disconnect" and e.get("initiator") == "edge_lost"}
        seen["edge-1 idle clients after the heal (close code or open)"] = [
            ws.close_code if ws.closed.is_set() else "open" for ws, _ in idle[:3]]
        seen["uma's old connection on edge-1 after the heal"] = (
            "open" if is_open(old_ws) else old_ws.close_code)
        # the edge is back: a new client of it gets sends and its webhooks
        try:
            ws, new1 = self.client(1, timeout=30)
            open_ids.add(new1)
            for api in (0, 1):
                self.assertEqual(self.cl.api(api).send(new1, "back %d" % api).status, 200)
                self.assertEqual(ws.recv_text(10), "back %d" % api)
        except AssertionError as e:
            problems.append("a new client of the healed edge: %s" % e)
        after = []
        for ws, cid in idle[:3]:
            r = self.cl.api(0).send(cid, "after heal")
            after.append(r.status)
        seen["api sends to edge-1's idle connections after the heal"] = after
        # the probe's connection, if open
        for e in self.be.events():
            if e["type"] == "connect" and e["route"] == "/probe" and is_open(self._probe):
                open_ids.add(e["connection_id"])
        rows = self.rows()
        ghosts = sorted(set(rows) - open_ids)
        seen["rows after the heal"] = "%d listed, ghosts %s" % (len(rows), ghosts)
        if ghosts:
            problems.append("the registry lists connections that are not open: %s" % ghosts)
        zombies = sorted(lost & open_ids)
        seen["connections declared lost still open after the heal"] = len(zombies)
        if zombies:
            defects.append("declared lost (edge_lost sent, rows deleted) yet open after "
                           "the heal: %s" % zombies)
        self.check_split_brain(seen, problems, (old_ws, old_id), (new_ws, new_id))
        self.check_events(seen, problems, defects, fleets,
                          [c for _, c in idle] + [old_id], lost)

    def check_split_brain(self, seen, problems, old, new):
        """uma: never two open connections that both receive a send."""
        both = [(ws, cid) for ws, cid in (old, new) if ws is not None and
                not ws.closed.is_set()]
        got = []
        if both:
            self.cl.api(1).post("/v1/users/uma/messages", "to uma")
            for ws, cid in both:  # by id too: a connection without a row gets these
                self.cl.api(0).send(cid, "uma %s" % cid)
                try:
                    while True:
                        got.append((cid, ws.recv_text(3)))
                except Exception:  # noqa: BLE001 (nothing more, or closed)
                    pass
        receivers = {cid for cid, _ in got}
        seen["uma's open connections after the heal, receiving sends"] = "%d open, %d receive" % (
            len(both), len(receivers))
        if len(receivers) > 1:
            problems.append("split brain: two open connections of uma receive sends: %s" % got)

    def check_events(self, seen, problems, defects, fleets, others, lost):
        def settled(rs):
            have = {}
            for r in rs:
                for e in r.events():
                    if e["type"] == "message":
                        have.setdefault(e["connection_id"], set()).add(e["seq"])
            return all(len(have.get(ids[c.idx], ())) >= c.sent for fl, ids in fleets
                       for c in fl.conns if c.close_code is None and
                       ids[c.idx] not in lost) or None
        try:
            self.be.wait_for(settled, timeout=60, what="every frame of the open connections")
        except AssertionError as e:
            problems.append(str(e)[:300])
        time.sleep(1)  # late redeliveries land before the check
        by_conn = w.events_by_connection(w.dedupe(self.be.events()))
        all_ids = set(others)
        for fl, ids in fleets:
            all_ids |= set(ids)
        after_disc, multi_disc = [], []
        for cid in all_ids:
            evs = by_conn.get(cid, [])
            discs = [i for i, e in enumerate(evs) if e["type"] == "disconnect"]
            if len(discs) > 1:
                multi_disc.append((cid, [(evs[i]["initiator"], evs[i]["code"]) for i in discs]))
            if discs and discs[0] != len(evs) - 1:
                after_disc.append((cid, len(evs) - 1 - discs[0]))
        seen["connections with more than one disconnect"] = len(multi_disc)
        seen["connections with events after their disconnect"] = len(after_disc)
        (defects if lost else problems).extend(
            ["%s got more than one disconnect: %s" % d for d in multi_disc] +
            ["%s got %d events after its disconnect" % d for d in after_disc])
        self.check_frames(seen, problems, defects, fleets, by_conn, lost, all_ids)

    def check_frames(self, seen, problems, defects, fleets, by_conn, lost, all_ids):
        """Every frame of a connection not closed 1013 delivered, in order;
        a connection closed 1013 got a prefix (up to its first disconnect)."""
        delivered = 0
        for f, (fl, ids) in enumerate(fleets):
            for c in fl.conns:
                cid = ids[c.idx]
                evs = by_conn.get(cid, [])
                first = next((i for i, e in enumerate(evs) if e["type"] == "disconnect"),
                             len(evs))
                got = [e["data"] for e in evs[:first] if e["type"] == "message"]
                delivered += len(got)
                seqs = [e["seq"] for e in evs[:first]]
                if got != [fl.data(c, k) for k in range(len(got))] or \
                        seqs != list(range(1, len(seqs) + 1)):
                    problems.append("%s: frames out of order, foreign or with a gap "
                                    "(seqs %s..%s)" % (cid, seqs[:3], seqs[-3:]))
                if c.close_code not in (None, 1013):
                    problems.append("%s (fleet %d) closed with %s" % (cid, f, c.close_code))
                if c.close_code is None and len(got) != c.sent:
                    (defects if cid in lost else problems).append(
                        "%s (open, fleet %d) got %d of its %d frames before its first "
                        "disconnect" % (cid, f, len(got), c.sent))
        sent = sum(c.sent for fl, _ in fleets for c in fl.conns)
        seen["frames"] = "%d sent, %d delivered before a disconnect" % (sent, delivered)
        try:
            seen["duplicate deliveries (same ids)"] = check_duplicates(self, all_ids)
        except AssertionError as e:
            (defects if lost else problems).append("duplicates: %s" % e)


if __name__ == "__main__":
    w.main()
