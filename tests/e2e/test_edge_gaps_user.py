# SPDX-License-Identifier: MIT
"""test_edge_gaps_user.py — one_connection_per_user under concurrency
(docs/contract.md §2), through the real binary:

- `reject`: N handshakes of one user started at the same moment get exactly
  one 101 and N-1 409s — on the direct path, on the path that holds the
  socket (a subprotocol was offered), and with a slow authorizer naming the
  user, where every handshake is in flight at once, also while every lws
  header table is taken so that lws defers the re-adopted requests (the
  case that admitted them all before the reservation);
- the reservation taken at handshake acceptance is released when that
  handshake fails (authorizer refusal, client gone) or its socket closes;
- `replace` under the same burst: every handshake gets its 101 and exactly
  one connection of the user stays open, the others are closed 4409.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import socket
import threading
import time

import wsgate_test as w

N = 8
JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}


def burst(url, n=N, **kw):
    """n handshakes released together; returns [(status, client or None)]."""
    gate = threading.Barrier(n)
    out = [None] * n

    def one(i):
        try:
            gate.wait(10)
            st, _, ws, _ = w.WsClient.handshake(url, timeout=15, **kw)
            out[i] = (st, ws)
        except Exception as exc:  # recorded, asserted below
            out[i] = (repr(exc), None)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


class UserReject(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.az = self.authorizer()
        self.gw = self.gateway([
            w.route("/solo", self.be.url, jwt=JWT, one_connection_per_user="reject"),
            w.route("/solo-az", self.be.url, one_connection_per_user="reject",
                    auth={"authorizer": self.az.url, "authorizer_timeout": "5s"}),
            w.route("/last", self.be.url, jwt=JWT, one_connection_per_user="replace"),
        ])
        self.url = self.gw.edge_url

    def check_one_winner(self, results):
        statuses = sorted(st for st, _ in results)
        for _, ws in results:
            if ws:
                self.addCleanup(ws.abort)
        self.assertEqual(statuses, [101] + [409] * (len(results) - 1), statuses)
        return next(ws for st, ws in results if st == 101)

    def admitted(self, path, **kw):
        st, _, ws, _ = w.WsClient.handshake(self.url + path, **kw)
        if ws:
            ws.close()
        return st == 101

    def test_burst_direct_path(self):
        tok = w.mint_jwt(w.client_claims("ann"))
        for _ in range(3):  # repeated: a race that is only sometimes lost still fails
            winner = self.check_one_winner(burst(self.url + "/solo", query={"token": tok}))
            winner.close()
            w.wait_until(lambda: self.admitted("/solo", query={"token": tok}), 5, 0.1,
                         "the user's slot freed")

    def test_burst_held_path_subprotocol(self):
        tok = w.mint_jwt(w.client_claims("ben"))
        for _ in range(3):
            winner = self.check_one_winner(burst(self.url + "/solo", query={"token": tok},
                                                 subprotocols=["v1"]))
            self.assertEqual(winner.headers.get("sec-websocket-protocol"), "v1")
            winner.close()
            w.wait_until(lambda: self.admitted("/solo", query={"token": tok}), 5, 0.1,
                         "the user's slot freed")

    def test_burst_slow_authorizer(self):
        # Every handshake is held while the authorizer sleeps, so all N are in
        # flight together and their answers (same user) arrive together.
        self.az.allow(user="cleo", delay=0.6)
        winner = self.check_one_winner(burst(self.url + "/solo-az"))
        self.assertGreaterEqual(len(self.az.snapshot()), N)
        winner.send_text("from the winner")
        ev = self.be.wait_event(lambda e: e.get("data") == "from the winner")
        self.assertEqual(ev["user"], "cleo")
        # Only the winner ever reached the backend with a connect event.
        connects = [e for e in self.be.events() if e["type"] == "connect"
                    and e["route"] == "/solo-az"]
        self.assertEqual(len({e["connection_id"] for e in connects}), 1)
        winner.close()
        w.wait_until(lambda: self.admitted("/solo-az"), 5, 0.1, "the user's slot freed")

    def test_burst_when_lws_defers_the_adoption(self):
        # With every lws header table taken (edge: 1024) a held handshake
        # that is handed back to lws waits for one, so the N answers for one
        # user are admitted one by one, later: the reservation must decide,
        # not the set of open sockets. (Without it all N got their 101.)
        self.az.allow(user="gus", delay=3.0)
        res = {}
        t = threading.Thread(target=lambda: res.setdefault("r", burst(self.url + "/solo-az")),
                             daemon=True)
        t.start()
        w.wait_until(lambda: len(self.az.snapshot()) >= N, 10, 0.05, "all handshakes held")
        hogs = []
        try:
            for _ in range(1100):  # partial requests: each holds a header table
                s = socket.create_connection(("127.0.0.1", self.gw.edge_port), timeout=10)
                hogs.append(s)
                s.sendall(b"GET /solo-az HTTP/1.1\r\nHost: x\r\n")
            w.wait_until(lambda: self.az.in_flight == 0, 15, 0.05, "the authorizer answered")
            time.sleep(0.3)
        finally:
            for s in hogs:
                s.close()
        t.join(30)
        self.check_one_winner(res["r"]).close()

    def test_failed_handshake_releases_the_user(self):
        # A refused authorizer answer leaves no reservation behind.
        self.az.deny(403)
        st, _, _ = w.WsClient.refused(self.url + "/solo-az")
        self.assertEqual(st, 403)
        self.az.allow(user="dan")
        self.assertTrue(self.admitted("/solo-az"))
        # A client that vanishes while held leaves no reservation either.
        self.az.allow(user="dan", delay=1.0)
        def vanish():
            try:
                w.WsClient.handshake(self.url + "/solo-az", timeout=0.3)
            except OSError:
                pass  # expected: the client gives up before the answer
        gone = threading.Thread(target=vanish, daemon=True)
        gone.start()
        gone.join(5)
        self.az.allow(user="dan")
        w.wait_until(lambda: self.admitted("/solo-az"), 5, 0.1, "the user admitted again")
        # A JWT user held by the subprotocol path, refused 409 by an open one.
        tok = w.mint_jwt(w.client_claims("eve"))
        first = self.client(self.url + "/solo", query={"token": tok})
        st, _, _ = w.WsClient.refused(self.url + "/solo", query={"token": tok},
                                      subprotocols=["v1"])
        self.assertEqual(st, 409)
        first.close()
        w.wait_until(lambda: self.admitted("/solo", query={"token": tok},
                                           subprotocols=["v1"]), 5, 0.1, "eve's slot freed")

    def test_replace_burst_keeps_one(self):
        tok = w.mint_jwt(w.client_claims("fay"))
        results = burst(self.url + "/last", query={"token": tok})
        self.assertEqual([st for st, _ in results], [101] * N)
        clients = [ws for _, ws in results]
        for ws in clients:
            self.addCleanup(ws.abort)

        def settled():
            closed = [ws for ws in clients if ws.closed.is_set()]
            return len(closed) == N - 1 and closed
        closed = w.wait_until(settled, 10, 0.1, "all but one replaced")
        for ws in closed:
            self.assertEqual((ws.close_code, ws.close_reason), (4409, "replaced"))
        (alive,) = [ws for ws in clients if not ws.closed.is_set()]
        alive.send_text("last one standing")
        self.be.wait_event(lambda e: e.get("data") == "last one standing")
        alive.close()


if __name__ == "__main__":
    w.main()
