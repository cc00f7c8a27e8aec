# SPDX-License-Identifier: MIT
"""test_edge_handshake.py — what the edge decides before the 101 (docs/contract.md §2),
through the real binary with a raw RFC 6455 client:

- unknown path 404, plain GET on a route 426 with Upgrade: websocket;
- every refused token kind answers 401 (expired, wrong alg, alg none, bad
  signature, wrong iss, wrong aud, missing) and publishes no event;
- a token is taken from Authorization: Bearer, ?token= or a
  Sec-WebSocket-Protocol entry bearer.<token>; that entry is echoed only
  when nothing else was offered (test_edge_subprotocols.py has the rules);
- the connect event: sub -> user, channels claim, context claims, headers
  without Authorization/Cookie, query without token, seq 1;
- allowed_origins (403), edge.max_connections_per_ip (429),
  edge.max_connections (503);
- one_connection_per_user: replace closes the older socket with 4409,
  reject refuses the newer handshake with 409.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import time

import wsgate_test as w

ISS, AUD = "https://issuer.example", "wsgate-clients"
JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET, "issuer": ISS, "audience": AUD,
       "context_claims": ["plan"]}


def good_claims(sub="alice", **extra):
    return w.client_claims(sub, iss=ISS, aud=AUD, **extra)


class EdgeHandshake(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([
            w.route("/chat", self.be.url, jwt=JWT),
            w.route("/open", self.be.url, allowed_origins=["https://app.example"]),
            w.route("/solo", self.be.url, jwt=JWT, one_connection_per_user="reject"),
            w.route("/last", self.be.url, jwt=JWT, one_connection_per_user="replace"),
        ], config={"edge": {"max_connections_per_ip": 4}})
        self.url = self.gw.edge_url

    def refused(self, path, **kw):
        st, hdrs, ws, body = w.WsClient.handshake(self.url + path, **kw)
        if ws:
            ws.abort()
        return st, hdrs, body

    def test_unknown_path_404_and_plain_get_426(self):
        st, _, body = self.refused("/nope")
        self.assertEqual(st, 404)
        self.assertTrue(body)
        st, hdrs, body = w.http_request(self.gw.http_edge_url + "/open")
        self.assertEqual(st, 426)
        self.assertEqual(hdrs.get("upgrade", hdrs.get("Upgrade", "")).lower(), "websocket")
        st, _, _ = w.http_request(self.gw.http_edge_url + "/elsewhere")
        self.assertEqual(st, 404)

    def test_every_bad_token_is_401(self):
        good = w.mint_jwt(good_claims())
        bad = {
            "expired": w.mint_jwt(w.expired_claims(iss=ISS, aud=AUD)),
            "wrong alg": w.mint_jwt(good_claims(), alg="HS512",
                                    key=w.DEFAULT_CLIENT_SECRET * 2),
            "alg none": w.forge_none(good_claims()),
            "alg relabelled": w.forge_alg(good, "HS384"),
            "bad signature": w.forge_tampered(good, sub="mallory"),
            "wrong key": w.mint_jwt(good_claims(), key="another-secret-another-secret-000"),
            "wrong iss": w.mint_jwt(w.client_claims(iss="https://evil.example", aud=AUD)),
            "wrong aud": w.mint_jwt(w.client_claims(iss=ISS, aud="someone-else")),
            "garbage": "not.a.jwt",
        }
        for why, tok in bad.items():
            with self.subTest(why):
                st, _, _ = self.refused("/chat", headers={"Authorization": "Bearer " + tok})
                self.assertEqual(st, 401, why)
        st, _, _ = self.refused("/chat")
        self.assertEqual(st, 401, "missing token")
        time.sleep(0.3)
        self.assertEqual(self.be.events(), [], "a refused handshake publishes nothing")
        self.assertNotIn(good.split(".")[2], self.gw.logs())

    def test_channels_claim_with_an_unaddressable_name_is_401(self):
        # A name the control API refuses (control character, empty, over 255
        # bytes) could never be published to or left: the token is refused.
        for why, chans in {"control char": ["lobby", "bad\u0001"], "empty": [""],
                           "too long": ["x" * 256]}.items():
            with self.subTest(why):
                tok = w.mint_jwt(good_claims("dora", channels=chans))
                st, _, _ = self.refused("/chat", headers={"Authorization": "Bearer " + tok})
                self.assertEqual(st, 401, why)
        time.sleep(0.3)
        self.assertEqual(self.be.events(), [], "a refused handshake publishes nothing")

    def test_token_from_header_query_and_subprotocol(self):
        tok = w.mint_jwt(good_claims("hdr"))
        ws = self.client(self.url + "/chat", headers={"Authorization": "Bearer " + tok})
        qtok = w.mint_jwt(good_claims("qry"))
        wq = self.client(self.url + "/chat", query={"token": qtok, "room": "7"})
        stok = w.mint_jwt(good_claims("sub"))
        ws2 = self.client(self.url + "/chat", subprotocols=["bearer." + stok, "chat.v2"])
        self.assertEqual(ws2.subprotocol, "chat.v2")
        ws3 = self.client(self.url + "/chat", subprotocols=["bearer." + w.mint_jwt(
            good_claims("only"))])
        self.assertTrue(ws3.subprotocol.startswith("bearer."),
                        "a bearer-only offer is echoed (browsers need one of their offers)")
        evs = self.be.wait_events(lambda e: e["type"] == "connect", 4)
        users = {e["user"]: e for e in evs}
        self.assertEqual(set(users), {"hdr", "qry", "sub", "only"})
        self.assertEqual(users["qry"]["query"], {"room": "7"})
        self.assertEqual(users["sub"]["subprotocol"], "chat.v2")
        self.assertNotIn(qtok, self.gw.logs(), "query tokens never reach a log")
        for x in (ws, wq, ws2, ws3):
            x.close()

    def test_connect_event_fields(self):
        tok = w.mint_jwt(good_claims("carol", channels=["lobby", "news"], plan="pro",
                                     secret_claim="x"))
        ws = self.client(self.url + "/chat", query={"token": tok, "a": "b"},
                         headers={"Cookie": "sid=1", "User-Agent": "e2e"})
        ev = self.be.wait_event(lambda e: e["type"] == "connect")
        self.assertEqual(ev["seq"], 1)
        self.assertEqual(ev["user"], "carol")
        self.assertEqual(ev["route"], "/chat")
        self.assertEqual(sorted(ev["channels"]), ["lobby", "news"])
        self.assertEqual(ev["context"], {"plan": "pro"})
        self.assertEqual(ev["query"], {"a": "b"})
        self.assertEqual(ev["remote_addr"], "127.0.0.1")
        self.assertTrue(ev["id"].startswith("evt_"))
        self.assertRegex(ev["timestamp"], w.RFC3339_MS)
        self.assertEqual(len(ev["connection_id"]), 22)
        low = {k.lower() for k in ev["headers"]}
        self.assertNotIn("authorization", low)
        self.assertNotIn("cookie", low)
        self.assertEqual(ev["headers"].get("user-agent"), "e2e")
        self.assertTrue(self.gw.find_log("client connected", conn=ev["connection_id"],
                                         route="/chat", user="carol"))
        ws.close()

    def test_origin_and_per_ip_limit(self):
        st, _, _ = self.refused("/open", origin="https://evil.example")
        self.assertEqual(st, 403)
        st, _, _ = self.refused("/open")
        self.assertEqual(st, 403, "no Origin header with allowed_origins set")
        held = [self.client(self.url + "/open", origin="https://app.example") for _ in range(4)]
        st, _, _ = self.refused("/open", origin="https://app.example")
        self.assertEqual(st, 429)
        held[0].close()
        w.wait_until(lambda: self.try_open(), 5, 0.1, "a slot freed by a close")
        for x in held[1:]:
            x.close()

    def try_open(self):
        st, _, ws, _ = w.WsClient.handshake(self.url + "/open", origin="https://app.example")
        if ws:
            ws.close()
        return st == 101

    def test_one_connection_per_user(self):
        tok = w.mint_jwt(good_claims("dora"))
        first = self.client(self.url + "/solo", query={"token": tok})
        st, _, _ = self.refused("/solo", query={"token": tok})
        self.assertEqual(st, 409)
        first.close()
        w.wait_until(lambda: self.try_solo(tok), 5, 0.1, "the user's slot freed")

        old = self.client(self.url + "/last", query={"token": tok})
        new = self.client(self.url + "/last", query={"token": tok})
        self.assertEqual(old.wait_closed(5), (4409, "replaced"))
        new.send_text("still here")
        self.be.wait_event(lambda e: e.get("data") == "still here")
        ev = self.be.wait_event(lambda e: e["type"] == "disconnect" and e["code"] == 4409)
        self.assertEqual(ev["initiator"], "server")
        new.close()

    def try_solo(self, tok):
        st, _, ws, _ = w.WsClient.handshake(self.url + "/solo", query={"token": tok})
        if ws:
            ws.close()
        return st == 101


class EdgeCapacity(w.GatewayTestCase):
    def test_max_connections_503(self):
        be = self.backend()
        gw = self.gateway([w.route("/c", be.url)], config={"edge": {"max_connections": 2}})
        held = [self.client(gw.edge_url + "/c") for _ in range(2)]
        st, _, ws, body = w.WsClient.handshake(gw.edge_url + "/c")
        self.assertEqual(st, 503, body)
        metrics = gw.control().get("/metrics").body.decode()
        self.assertRegex(metrics, r"(?m)^wsgate_handshakes_rejected_total [1-9]")
        self.assertRegex(metrics, r"(?m)^wsgate_connections 2$")
        held[0].close()
        w.wait_until(lambda: w.WsClient.handshake(gw.edge_url + "/c")[0] == 101, 5, 0.1,
                     "a slot freed")


if __name__ == "__main__":
    w.main()
