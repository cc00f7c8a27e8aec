# SPDX-License-Identifier: MIT
"""test_api_auth_errors.py — control-API authentication (401 with
WWW-Authenticate, 403 per scope and per channels-claim glob), bad input
(400/413/415/404/405) that changes nothing, healthz/readyz/metrics, the
OpenAPI document covering exactly the routes the server answers, and
dead-letter list + replay delivered again."""
import json
import re
import time
import urllib.parse

import wsgate_test as w

SCOPE_OF = [  # (method, path template, body, scope that allows it)
    ("GET", "/v1/connections", None, "read"),
    ("GET", "/v1/connections/{id}", None, "read"),
    ("DELETE", "/v1/connections/{id}", None, "disconnect"),
    ("POST", "/v1/connections/{id}/messages", "x", "send"),
    ("GET", "/v1/channels", None, "read"),
    ("GET", "/v1/channels/c/connections", None, "read"),
    ("PUT", "/v1/channels/c/connections/{id}", None, "subscribe"),
    ("DELETE", "/v1/channels/c/connections/{id}", None, "subscribe"),
    ("POST", "/v1/channels/c/messages", "x", "publish"),
    ("POST", "/v1/broadcast", "x", "publish"),
    ("POST", "/v1/users/u/messages", "x", "send"),
    ("DELETE", "/v1/users/u", None, "disconnect"),
    ("GET", "/v1/dead-letters", None, "read"),
    ("POST", "/v1/dead-letters/{id}/replay", None, "admin"),
    ("GET", "/v1/stats", None, "admin"),
]


class Auth(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.gw = self.gateway([w.route("/chat")])

    def test_401_without_or_with_bad_token(self):
        anon = w.ControlApi(self.gw.api_url)
        for tok in (None, "garbage", w.mint_jwt({"scope": "admin", "exp": 1}, "HS256",
                                                 self.gw.api_secret),
                    w.mint_jwt({"scope": "admin", "exp": int(time.time()) + 60}, "HS256",
                               "wrong-secret-wrong-secret-wrong-secret!!"),
                    w.forge_none({"scope": "admin", "exp": int(time.time()) + 60})):
            r = anon.request("GET", "/v1/connections", token=tok)
            self.assertEqual(r.status, 401, (tok, r))
            self.assertTrue(r.headers["www-authenticate"].startswith("Bearer"))
            self.assertEqual(r.headers["content-type"], "application/problem+json")

    def test_verified_token_cache_is_exact_and_expires(self):
        anon = w.ControlApi(self.gw.api_url)
        good = self.gw.api_token("read", ttl=2)
        self.assertEqual(anon.request("GET", "/v1/channels", token=good).status, 200)
        # same header and signature, other claims: never served from the cache
        forged = w.forge_tampered(good, scope="admin")
        self.assertEqual(anon.request("GET", "/v1/channels", token=forged).status, 401)
        self.assertEqual(anon.request("POST", "/v1/broadcast", "x", token=good).status, 403)
        self.assertEqual(anon.request("GET", "/v1/channels", token=good + "x").status, 401)
        exp = w.decode_jwt(good)[1]["exp"]
        time.sleep(max(0, exp + 5 + 1.2 - time.time()))  # past exp and the 5 s leeway
        r = anon.request("GET", "/v1/channels", token=good)
        self.assertEqual(r.status, 401, r)

    def test_403_per_scope(self):
        scopes = ["send", "publish", "subscribe", "disconnect", "read"]
        for method, path, body, need in SCOPE_OF:
            p = path.replace("{id}", "nope")
            for s in scopes:
                r = self.gw.control(s).request(method, p, body)
                if s == need:
                    self.assertNotIn(r.status, (401, 403), (method, p, s, r))
                else:
                    self.assertEqual(r.status, 403, (method, p, s, r))
            r = self.gw.control("admin").request(method, p, body)
            self.assertNotIn(r.status, (401, 403), (method, p, "admin", r))

    def test_channels_claim_globs(self):
        tok = self.gw.api_token("publish subscribe", channels=["room.*", "lobby"])
        api = w.ControlApi(self.gw.api_url, tok)
        self.assertEqual(api.post("/v1/channels/room.1/messages", "x").status, 202)
        self.assertEqual(api.post("/v1/channels/room.a.b/messages", "x").status, 202)
        self.assertEqual(api.post("/v1/channels/lobby/messages", "x").status, 202)
        self.assertEqual(api.post("/v1/channels/other/messages", "x").status, 403)
        self.assertEqual(api.put("/v1/channels/other/connections/x").status, 403)
        self.assertEqual(api.delete("/v1/channels/other/connections/x").status, 403)
        self.assertEqual(api.put("/v1/channels/room.9/connections/x").status, 410)
        r = api.post("/v1/batch", {"requests": [
            {"method": "POST", "path": "/v1/channels/room.1/messages", "body": "a"},
            {"method": "POST", "path": "/v1/channels/secret/messages", "body": "a"},
            {"method": "GET", "path": "/v1/connections"}]})
        self.assertEqual([x["status"] for x in r.json["results"]], [202, 403, 403])


class BadInput(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([w.route("/chat", self.be.url)],
                               config={"api": {"max_body_bytes": 4096}})
        self.api = self.gw.control()
        self.ws = self.client(self.gw.edge_url + "/chat")
        self.cid = self.be.wait_event(lambda e: e["type"] == "connect", 15)["connection_id"]
        w.wait_until(lambda: self.api.get("/v1/connections/" + self.cid).status == 200, 10)

    def state(self):
        return (self.api.get("/v1/connections/" + self.cid).json,
                self.api.get("/v1/channels").json)

    def test_bad_input_changes_nothing(self):
        before = self.state()
        long_ch = urllib.parse.quote("c" * 256)
        cases = [
            (self.api.post("/v1/connections/%s/messages" % self.cid, b"{nope",
                           content_type="application/json"), 400),
            (self.api.post("/v1/connections/%s/messages" % self.cid, {"data": 1}), 400),
            (self.api.post("/v1/connections/%s/messages" % self.cid, {"data_base64": "!!"}),
             400),
            (self.api.post("/v1/connections/%s/messages" % self.cid, {"data": "a",
                                                                        "data_base64": ""}), 400),
            (self.api.post("/v1/connections/%s/messages" % self.cid, "x" * 5000), 413),
            (self.api.post("/v1/channels/c/messages", b"x" * 100000,
                           content_type="application/octet-stream"), 413),
            (self.api.post("/v1/connections/%s/messages" % self.cid, b"<x/>",
                           content_type="application/xml"), 415),
            (self.api.post("/v1/connections/%s/messages" % self.cid, b"\xff\xfe",
                           content_type="text/plain"), 400),
            (self.api.put("/v1/channels/%s/connections/%s" % (long_ch, self.cid)), 400),
            (self.api.put("/v1/channels/a%%01b/connections/%s" % self.cid), 400),
            (self.api.put("/v1/channels/a%%FFb/connections/%s" % self.cid), 400),
            (self.api.post("/v1/channels/%s/messages" % long_ch, "x"), 400),
            (self.api.get("/v1/nothing"), 404),
            (self.api.request("PATCH", "/v1/connections/" + self.cid), 405),
        ]
        for r, want in cases:
            self.assertEqual(r.status, want, r)
            self.assertEqual(r.headers["content-type"], "application/problem+json", r)
            self.assertEqual(r.json["status"], want)
        r = self.api.request("PATCH", "/v1/connections/" + self.cid)
        self.assertEqual(r.headers["allow"], "GET, HEAD, DELETE")
        time.sleep(0.3)
        self.assertEqual(self.ws.pending(), 0)
        self.assertEqual(self.state(), before)
        ok = "c" * 255
        self.assertEqual(self.api.put("/v1/channels/%s/connections/%s" % (ok, self.cid)).status,
                         204)
        self.assertEqual(self.api.put("/v1/channels/%s/connections/%s" % (
            urllib.parse.quote("ünï cødé.*>"), self.cid)).status, 204)


    def test_chunked_body_over_limit_413(self):
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.api_port, timeout=10)
        conn.putrequest("POST", "/v1/connections/%s/messages" % self.cid)
        conn.putheader("Authorization", "Bearer " + self.gw.api_token("send"))
        conn.putheader("Content-Type", "text/plain")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for _ in range(8):  # 8 KiB in 1 KiB chunks, the limit is 4096
                conn.send(b"400\r\n" + b"x" * 1024 + b"\r\n")
            conn.send(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before reading everything
        r = conn.getresponse()
        self.assertEqual(r.status, 413)
        conn.close()
        time.sleep(0.3)
        self.assertEqual(self.ws.pending(), 0)
        self.assertEqual(self.api.send(self.cid, "small").status, 200)
        self.assertEqual(self.ws.recv_text(5), "small")


class Ops(w.GatewayTestCase):
    def test_health_ready_metrics(self):
        gw = self.gateway([w.route("/chat")])
        st, h, body = w.http_request(gw.api_url + "/healthz")
        self.assertEqual(st, 200)
        st, h, body = w.http_request(gw.api_url + "/readyz")
        self.assertEqual(st, 200, body)
        gw.control().get("/v1/connections")
        st, h, body = w.http_request(gw.api_url + "/metrics")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/plain"))
        m = re.search(rb"^wsgate_api_requests_total (\d+)", body, re.M)
        self.assertTrue(m and int(m.group(1)) >= 1, body[:500])
        w.wait_until(lambda: re.search(rb"^wsgate_store_up 1$", w.http_request(
            gw.api_url + "/metrics")[2], re.M), 5, what="wsgate_store_up 1")

    def test_state_report(self):
        gw = self.gateway([w.route("/chat")], config={"log": {"report_interval": "1s"}})
        rec = gw.wait_log("state report", 10)[0]
        for k in ("connections", "channels", "events_pending"):
            self.assertIn(k, rec)

    def test_openapi_matches_routes(self):
        gw = self.gateway([w.route("/chat")])
        st, h, body = w.http_request(gw.api_url + "/v1/openapi.json")
        self.assertEqual(st, 200)
        doc = json.loads(body)
        self.assertEqual(doc["openapi"][:3], "3.1")
        api = gw.control()
        documented = []
        for path, ops in doc["paths"].items():
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            for method in ops:
                documented.append((method.upper(), re.compile(
                    "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")))
                r = api.request(method.upper(), concrete, "x" if method == "post" else None)
                self.assertNotEqual(r.status, 405, (method, path, r))
                if r.status == 404:
                    self.assertNotEqual(r.json["type"], "https://wsgate.dev/problems/no-route",
                                        (method, path))
        # every route the server answers (the full table above) is documented
        for method, path, _, _ in SCOPE_OF + [("POST", "/v1/batch", None, ""),
                                              ("GET", "/v1/openapi.json", None, "")]:
            p = path.replace("{id}", "x")
            self.assertTrue(any(m == method and rx.match(p) for m, rx in documented),
                            (method, path))
        # and something undocumented is not answered
        r = api.get("/v1/undocumented")
        self.assertEqual((r.status, r.json["type"]), (404, "https://wsgate.dev/problems/no-route"))
        for p in ("/healthz", "/readyz", "/metrics", "/v1/openapi.json", "/v1/batch"):
            self.assertIn(p, doc["paths"])


class DeadLetters(w.GatewayTestCase):
    def test_list_and_replay(self):
        state = {"reject": True}
        be = self.backend()
        be.handler = lambda req: (w.Response(422) if state["reject"] and any(
            e.get("data") == "dl-me" for e in req.events()) else None)
        gw = self.gateway([w.route("/chat", be.url, delivery={"max_attempts": 2})])
        api = gw.control()
        ws = self.client(gw.edge_url + "/chat")
        ws.send_text("dl-me")
        items = w.wait_until(lambda: api.dead_letters().json["items"], 20, what="a dead letter")
        dl = items[0]
        self.assertEqual(dl["event"]["data"], "dl-me")
        self.assertEqual(dl["last_status"], 422)
        self.assertEqual(gw.control("read").replay(dl["id"]).status, 403)
        state["reject"] = False
        r = api.replay(dl["id"])
        self.assertEqual(r.status, 202, r)
        again = be.wait_for(lambda rs: [x for x in rs if any(
            e.get("data") == "dl-me" for e in x.events())][1:], 20, "the replayed event")
        self.assertEqual(again[-1].json["id"], dl["id"])
        w.wait_until(lambda: api.dead_letters().json["items"] == [], 10, what="dead letter gone")
        self.assertEqual(api.replay(dl["id"]).status, 404)


if __name__ == "__main__":
    w.main()
