# SPDX-License-Identifier: MIT
"""test_edge_token_expiry.py — an open connection ends when its token does
(docs/contract.md §2, §6; docs/edge.md "Token expiry"), through the real binary:

- a JWT with exp 2 s ahead: the client is closed with 1008 "token expired"
  (initiator server) and the backend gets a disconnect event saying so;
  it delivered messages until then;
- the JWT leeway (clock skew allowed at the handshake) is honoured too;
- a token with a later exp and an anonymous connection stay open;
- `limits.close_on_token_expiry: false` keeps a 2-second token open;
- an authorizer answer's `expires_at` (Unix seconds) replaces the JWT's:
  2 s ahead closes 1008, in the past is 401, not a number is 503.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import time

import wsgate_test as w

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET, "leeway": "0s"}


class EdgeTokenExpiry(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.az = self.authorizer()
        fast = {"ping_interval": "0", "idle_timeout": "0"}
        self.gw = self.gateway([
            w.route("/exp", self.be.url, jwt=JWT, limits=fast),
            w.route("/skew", self.be.url, jwt=dict(JWT, leeway="2s"), limits=fast),
            w.route("/keep", self.be.url, jwt=JWT, limits=dict(fast, close_on_token_expiry=False)),
            w.route("/open", self.be.url, limits=fast),
            w.route("/az", self.be.url, limits=fast,
                    auth={"authorizer": self.az.url, "authorizer_timeout": "2s"}),
        ])
        self.url = self.gw.edge_url

    def token(self, sub, ttl):
        return w.mint_jwt(w.client_claims(sub, ttl=ttl))

    def conn_id(self, user):
        return self.be.wait_event(lambda e: e["type"] == "connect" and e["user"] == user)[
            "connection_id"]

    def disconnect_of(self, cid):
        return self.be.wait_event(lambda e: e["type"] == "disconnect" and
                                  e["connection_id"] == cid, 15)

    def test_expired_jwt_closes_1008_with_a_disconnect_event(self):
        t0 = time.time()
        ws = self.client(self.url + "/exp", query={"token": self.token("short", 2)})
        long = self.client(self.url + "/exp", query={"token": self.token("long", 300)})
        anon = self.client(self.url + "/open")
        cid = self.conn_id("short")
        ws.send_text("before")
        self.be.wait_event(lambda e: e["type"] == "message" and e["data"] == "before")
        self.assertEqual(ws.wait_closed(15), (1008, "token expired"))
        self.assertGreaterEqual(time.time() - t0, 1.0, "closed at its exp, not at once")
        d = self.disconnect_of(cid)
        self.assertEqual((d["code"], d["reason"], d["initiator"]),
                         (1008, "token expired", "server"))
        self.assertTrue(self.gw.find_log("token expired", conn=cid))
        time.sleep(w.scaled(1.0))
        for other in (long, anon):
            self.assertFalse(other.closed.is_set(), "a later exp / no token stays open")
            other.send_text("still")
        self.be.wait_events(lambda e: e["type"] == "message" and e["data"] == "still", 2)

    def test_leeway_extends_the_token(self):
        t0 = time.time()
        ws = self.client(self.url + "/skew", query={"token": self.token("skew", 1)})
        self.assertEqual(ws.wait_closed(15), (1008, "token expired"))
        self.assertGreaterEqual(time.time() - t0, 2.0, "exp + leeway, as at the handshake")

    def test_option_off_keeps_the_connection(self):
        ws = self.client(self.url + "/keep", query={"token": self.token("kept", 2)})
        self.conn_id("kept")
        time.sleep(3.5)
        self.assertFalse(ws.closed.is_set(), "close_on_token_expiry: false")
        ws.send_text("after exp")
        self.be.wait_event(lambda e: e["type"] == "message" and e["data"] == "after exp")
        self.assertEqual([e for e in self.be.events() if e["type"] == "disconnect"], [])

    def test_authorizer_expires_at(self):
        self.az.respond(200, {"allow": True, "user": "azu", "expires_at": int(time.time()) + 2})
        ws = self.client(self.url + "/az")
        cid = self.conn_id("azu")
        self.assertEqual(ws.wait_closed(15), (1008, "token expired"))
        self.assertEqual(self.disconnect_of(cid)["code"], 1008)
        self.az.respond(200, {"allow": True, "user": "old", "expires_at": int(time.time()) - 5})
        st, _, _ = w.WsClient.refused(self.url + "/az")
        self.assertEqual(st, 401, "an expiry already past")
        self.az.respond(200, {"allow": True, "user": "bad", "expires_at": "soon"})
        st, _, _ = w.WsClient.refused(self.url + "/az")
        self.assertEqual(st, 503, "expires_at that is not a number fails closed")
        self.az.respond(200, {"allow": True, "user": "none", "expires_at": None})
        ws = self.client(self.url + "/az")
        time.sleep(2.5)
        self.assertFalse(ws.closed.is_set(), "no expiry given: stays")


if __name__ == "__main__":
    w.main()
