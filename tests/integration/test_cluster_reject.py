# SPDX-License-Identifier: MIT
"""test_cluster_reject.py — one_connection_per_user: reject across edges
(docs/contract.md §2, "works across edges in cluster mode"), with a real nats-server
and PostgreSQL and two edges (the Cluster of test_cluster_basic.py).

- a user connected on edge 0 is refused 409 on edge 1; the refused attempt
  gets no connect webhook and the first connection keeps working both ways;
  once the first connection closes the user connects on edge 1;
- two handshakes of a new user started together on edge 0 and edge 1: one
  101 and one 409, for several users;
- the same with an authorizer naming the user (the claim waits for its
  answer on the held socket);
- the claim in NATS (the KeyValue bucket wsgate_users, read directly) names
  the connection and its edge while it is open and is dropped when it
  closes or is aborted, and a user claims again over the delete marker;
- a released claim leaves nothing behind: the key's claim and its delete
  marker are purged (the bucket keeps one message per user claimed now, not
  one per user who ever was), and the user claims again afterwards;
- kill -9 of the edge holding the user: the dead edge's claim is left
  behind, the user connects on the other edge (the claim is taken over and
  names the new connection) and is then held there, also against the
  restarted edge.

Every process is stopped by PID; every wait is bounded.
"""

import base64
import hashlib
import json
import socket
import threading
import time
import urllib.parse

import wsgate_test as w
from test_cluster_basic import Cluster, ClusterTestCase, q

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}
CLAIMS_BUCKET = "wsgate_users"  # bus/bus_nats_users.c, default prefix


def _untok(t):
    """Reverses bus_nats.c nb_tok(): "i" + plain name, or "x" + hex."""
    return t[1:] if t[0] == "i" else bytes.fromhex(t[1:]).decode()


def claim_key(route, user):
    digest = hashlib.sha256(route.encode() + b"\0" + user.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def claim_of(nats_url, route, user):
    """(connection id, edge id) of the user's claim in the claims bucket, or
    None (never claimed, or released: a delete marker). Read with one
    $JS.API.STREAM.MSG.GET request (last message of the key's subject) over
    a raw NATS connection; the key is base64url(SHA-256(route NUL user))."""
    key = claim_key(route, user)
    req = json.dumps({"last_by_subj": "$KV.%s.%s" % (CLAIMS_BUCKET, key)}).encode()
    u = urllib.parse.urlsplit(nats_url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        f = s.makefile("rb")
        f.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.claim 1\r\n'
                  b"PUB $JS.API.STREAM.MSG.GET.KV_%s _INBOX.claim %d\r\n%s\r\n"
                  % (CLAIMS_BUCKET.encode(), len(req), req))
        while True:
            line = f.readline()
            if not line:
                raise AssertionError("NATS closed the connection")
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise AssertionError(line.decode(errors="replace"))
            elif line.startswith(b"MSG "):
                resp = json.loads(f.read(int(line.split()[-1]) + 2))
                break
    if "error" in resp:
        if resp["error"].get("code") == 404:
            return None
        raise AssertionError(resp)
    msg = resp["message"]
    if b"KV-Operation: DEL" in base64.b64decode(msg.get("hdrs") or ""):
        return None
    f = base64.b64decode(msg.get("data") or "").decode().split(" ")
    assert f[0] == "wsgu1" and _untok(f[1]) == route and _untok(f[2]) == user, f
    return _untok(f[3]), _untok(f[4])


class ClusterRejectTest(ClusterTestCase):
    n_apis = n_dispatchers = 1

    @classmethod
    def setUpClass(cls):
        w.require_binary()
        cls.be = w.Backend()
        cls.az = w.Authorizer()
        routes = [w.route("/one", cls.be.url, jwt=JWT, one_connection_per_user="reject"),
                  w.route("/one-az", cls.be.url, one_connection_per_user="reject",
                          auth={"authorizer": cls.az.url, "authorizer_timeout": "5s"})]
        cls.cl = Cluster(routes, cls.n_edges, cls.n_apis, cls.n_dispatchers)
        try:
            cls.cl.start()
        except BaseException:
            try:
                cls.cl.close()
            finally:
                cls.be.stop()
                cls.az.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.az.stop()

    def url(self, edge, user, path="/one"):
        """user None: no token (the authorizer names the user)."""
        url = self.cl.edge_url(edge, path)
        return url if user is None else url + "?token=" + q(w.mint_jwt(w.client_claims(user)))

    def handshake(self, edge, user, path="/one"):
        """(status, client or None); a client is aborted at tearDown."""
        st, _, ws, _ = w.WsClient.handshake(self.url(edge, user, path), timeout=15)
        if ws:
            self._clients.append(ws)
        return st, ws

    def connect(self, edge, user):
        """An open connection of user on edge and its id (from the connect
        webhook), once the registry recorded it."""
        st, ws = self.handshake(edge, user)
        self.assertEqual(st, 101, "user %s on edge %d" % (user, edge))
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e.get("user") == user and
                                e["connection_id"] not in self._taken(), timeout=15)
        cid = ev["connection_id"]
        self._taken().add(cid)
        w.wait_until(lambda: self.cl.conn_row(cid) == "edge-%d" % edge, 15, 0.05,
                     "connections row of %s" % cid)
        return ws, cid

    def connects_of(self, user):
        return {e["connection_id"] for e in self.be.events()
                if e["type"] == "connect" and e.get("user") == user}

    def admitted_eventually(self, edge, user, what):
        """Retries the handshake (bounded) until it gets its 101."""
        got = []

        def attempt():
            st, ws = self.handshake(edge, user)
            got.append(st)
            return ws

        ws = w.wait_until(attempt, 20, 0.2, what)
        self.assertTrue(all(st in (101, 409, 503) for st in got), got)
        return ws

    def claim(self, user, route="/one"):
        return claim_of(self.cl.nats.url, route, user)

    def test_claims_follow_the_connection(self):
        self.assertIsNone(self.claim("rita"))
        ws, cid = self.connect(0, "rita")
        self.assertEqual(self.claim("rita"), (cid, "edge-0"))
        ws.close()
        w.wait_until(lambda: self.claim("rita") is None, 20, 0.05, "rita's claim dropped")
        ws, cid2 = self.connect(1, "rita")  # claimed over the delete marker
        self.assertEqual(self.claim("rita"), (cid2, "edge-1"))
        ws.abort()
        w.wait_until(lambda: self.claim("rita") is None, 20, 0.05, "dropped after an abort")

    def claim_messages(self, user, route="/one"):
        """How many messages (claims, delete markers) the bucket keeps for
        user's key."""
        subj = "$KV.%s.%s" % (CLAIMS_BUCKET, claim_key(route, user))
        info = json.loads(self.cl.nats.request("$JS.API.STREAM.INFO.KV_%s" % CLAIMS_BUCKET,
                                               json.dumps({"subjects_filter": subj}).encode()))
        return (info.get("state", {}).get("subjects") or {}).get(subj, 0)

    def test_released_claims_leave_nothing_behind(self):
        for round_ in range(2):
            ws, cid = self.connect(round_, "kate")
            self.assertEqual(self.claim("kate"), (cid, "edge-%d" % round_))
            self.assertEqual(self.claim_messages("kate"), 1)
            ws.close()
            w.wait_until(lambda: self.claim_messages("kate") == 0, 20, 0.05,
                         "kate's claim and its delete marker purged")
            self.assertIsNone(self.claim("kate"))

    def test_held_on_one_edge_refused_on_the_other(self):
        first, id1 = self.connect(0, "ulla")
        for _ in range(3):
            st, ws = self.handshake(1, "ulla")
            self.assertEqual(st, 409)
            self.assertIsNone(ws)
        # also refused on the edge that holds it (the local index)
        self.assertEqual(self.handshake(0, "ulla")[0], 409)
        # the first connection is untouched, both ways
        self.assertEqual(self.cl.api(0).send(id1, "still yours").status, 200)
        self.assertEqual(first.recv_text(10), "still yours")
        first.send_text("from the first")
        self.be.wait_event(lambda e: e["type"] == "message" and e["connection_id"] == id1 and
                           e.get("data") == "from the first", timeout=15)
        # another user is not affected on either edge
        self.connect(1, "vera")
        time.sleep(1.0)  # room for a wrong connect webhook of a refused attempt
        self.assertEqual(self.connects_of("ulla"), {id1})
        self.assertEqual(first.pending(), 0)
        # once the first connection ends the user connects on the other edge
        first.close()
        second = self.admitted_eventually(1, "ulla", "ulla admitted on edge 1")
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e.get("user") == "ulla" and
                                e["connection_id"] != id1, timeout=15)
        id2 = ev["connection_id"]
        w.wait_until(lambda: self.cl.conn_row(id2) == "edge-1", 15, 0.05, "row of the second")
        # and now it is edge 0 that refuses
        self.assertEqual(self.handshake(0, "ulla")[0], 409)
        self.assertEqual(self.cl.api(0).send(id2, "moved").status, 200)
        self.assertEqual(second.recv_text(10), "moved")

    def race(self, user, path="/one"):
        """One handshake of user on each edge, released together."""
        gate = threading.Barrier(2)
        out = [None, None]

        def one(edge):
            try:
                gate.wait(10)
                out[edge] = self.handshake(edge, user, path)[0]
            except Exception as exc:  # recorded, asserted by the caller
                out[edge] = repr(exc)

        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in (0, 1)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        return out

    def test_simultaneous_handshakes_on_both_edges_one_wins(self):
        for i in range(6):  # repeated: a race lost only sometimes still fails
            user = "racer-%d" % i
            out = self.race(user)
            self.assertEqual(sorted(out), [101, 409], (user, out))
        for i in range(6):
            evs = self.be.wait_events(lambda e, u="racer-%d" % i: e["type"] == "connect" and
                                      e.get("user") == u, 1, timeout=15)
            self.assertEqual(len(w.dedupe(evs)), 1, evs)

    def test_simultaneous_handshakes_with_an_authorizer_one_wins(self):
        # the authorizer names the user; its answer is slow enough that both
        # handshakes are held at the same time
        for i in range(3):
            user = "az-%d" % i
            self.az.allow(user=user, delay=0.3)
            out = self.race(None, "/one-az")
            self.assertEqual(sorted(out), [101, 409], (user, out))

    def test_zz_kill9_of_the_holding_edge_frees_the_user(self):
        # last in this class: edge 1 is restarted at the end
        ws, cid = self.connect(1, "kim")
        self.assertEqual(self.handshake(0, "kim")[0], 409)
        self.assertEqual(self.cl.edges[1].kill9(), -9)
        self.assertEqual(self.claim("kim"), (cid, "edge-1"))  # left behind by the dead edge
        self.admitted_eventually(0, "kim", "kim admitted on edge 0 after edge 1 died")
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e.get("user") == "kim" and
                                e["connection_id"] != cid, timeout=15)
        self.assertEqual(self.claim("kim"), (ev["connection_id"], "edge-0"))  # taken over
        # the taken-over claim holds: a third attempt is refused
        self.assertEqual(self.handshake(0, "kim")[0], 409)
        self.cl.edges[1].start()
        self.cl.edges[1].wait_ready()
        self.assertEqual(self.handshake(1, "kim")[0], 409)


if __name__ == "__main__":
    w.main()
