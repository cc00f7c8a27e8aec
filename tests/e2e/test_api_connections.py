# SPDX-License-Identifier: MIT
"""test_api_connections.py — the control API against the real binary with
real WebSocket clients: sends (text, binary, JSON; 410 for unknown; held
while a slow authorizer still holds the handshake), connection read/list
with pagination, forced disconnect, subscribe + publish to members only with
exclude, broadcast with a route filter, user send/disconnect, batch, and the
registry's edge_lost disconnects after a restart."""
import base64
import http.client
import json
import threading
import time
import urllib.parse

import wsgate_test as w


class ApiCase(w.GatewayTestCase):
    routes = ("/chat", "/game")

    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([w.route(p, self.be.url) for p in self.routes])
        self.api = self.gw.control()
        self.known = set()

    def open(self, path="/chat", **kw):
        """A client and its connection id (from the connect webhook)."""
        ws = self.client(self.gw.edge_url + path, **kw)
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e["connection_id"]
                                not in self.known, 15)
        self.known.add(ev["connection_id"])
        return ws, ev["connection_id"]

    def registered(self, cid):
        w.wait_until(lambda: self.api.get("/v1/connections/" + cid).status == 200, 10,
                     what="registry knows " + cid)


class Sends(ApiCase):
    def test_text_binary_json_frames(self):
        ws, cid = self.open()
        r = self.api.send(cid, "hello")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(ws.recv(5), (w.OP_TEXT, "hello"))
        r = self.api.send(cid, b"\x00\xffbin", "application/octet-stream")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(ws.recv(5), (w.OP_BINARY, b"\x00\xffbin"))
        self.assertEqual(self.api.send(cid, {"data": "json text"}).status, 200)
        self.assertEqual(ws.recv(5), (w.OP_TEXT, "json text"))
        b64 = base64.b64encode(b"\x01\x02").decode()
        self.assertEqual(self.api.send(cid, {"data_base64": b64}).status, 200)
        self.assertEqual(ws.recv(5), (w.OP_BINARY, b"\x01\x02"))

    def test_unknown_connection_410(self):
        r = self.api.send("no-such-connection", "x")
        self.assertEqual(r.status, 410, r)
        self.assertEqual(r.headers["content-type"], "application/problem+json")
        self.assertEqual(r.json["status"], 410)
        for k in ("type", "title", "detail"):
            self.assertIn(k, r.json)

    def test_concurrent_keepalive_sends(self):
        """Many sends in flight at once over keep-alive connections (answers
        resumed in batches): each gets its own status and body, every frame
        arrives, and a 410 among them stays a 410."""
        clients = [self.open() for _ in range(3)]
        tok = self.gw.api_token("send")
        url = urllib.parse.urlsplit(self.gw.api_url)
        results, errors = [], []

        def worker(k):
            try:
                hc = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
                for i in range(40):
                    cid = "no-such-conn" if i % 10 == 9 else clients[(k + i) % 3][1]
                    hc.request("POST", "/v1/connections/%s/messages" % cid, "m-%d-%d" % (k, i),
                               {"Authorization": "Bearer " + tok, "Content-Type": "text/plain"})
                    r = hc.getresponse()
                    results.append((cid, r.status, r.getheader("Content-Type"), r.read()))
                hc.close()
            except Exception as e:  # reported below, on the test's thread
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 8 * 40)
        for cid, status, ctype, body in results:
            if cid == "no-such-conn":
                self.assertEqual((status, ctype), (410, "application/problem+json"))
                self.assertEqual(json.loads(body)["status"], 410)
            else:
                self.assertEqual((status, ctype, json.loads(body)), (200, "application/json",
                                                                      {"queued": True}))
        got = set()
        for ws, cid in clients:
            for _ in range(sum(1 for c, *_ in results if c == cid)):
                got.add(ws.recv(10)[1])
        self.assertEqual(got, {"m-%d-%d" % (k, i) for k in range(8) for i in range(40)
                               if i % 10 != 9})

    def test_closed_connection_410(self):
        ws, cid = self.open()
        ws.close()
        w.wait_until(lambda: self.api.send(cid, "late").status == 410, 10, what="410 after close")

    def test_get_list_delete(self):
        ws, cid = self.open()
        self.registered(cid)
        self.assertEqual(self.api.put("/v1/channels/room%2F1/connections/" + cid).status, 204)
        c = self.api.get("/v1/connections/" + cid).json
        self.assertEqual((c["id"], c["route"]), (cid, "/chat"))
        self.assertIn("room/1", c["channels"])
        for k in ("user", "context", "edge", "remote_addr", "connected_at_ms",
                  "last_active_at_ms"):
            self.assertIn(k, c)
        r = self.api.delete("/v1/connections/%s?code=4001&reason=bye" % cid)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(ws.wait_closed(10), (4001, "bye"))
        ev = self.be.wait_event(lambda e: e["type"] == "disconnect", 15)
        self.assertEqual(ev["initiator"], "api")
        self.assertEqual(self.api.delete("/v1/connections/" + cid).status, 410)
        w.wait_until(lambda: self.api.get("/v1/connections/" + cid).status == 410, 10)
        self.assertEqual(self.api.delete("/v1/connections/x?code=1001").status, 400)

    def test_pagination(self):
        ids = [self.open()[1] for _ in range(5)]
        for cid in ids:
            self.registered(cid)
        seen, cursor, pages = [], None, 0
        while pages < 20:  # 5 connections in pages of 2: a cursor that repeats fails below
            q = "?limit=2" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
            r = self.api.get("/v1/connections" + q)
            self.assertEqual(r.status, 200, r)
            self.assertLessEqual(len(r.json["items"]), 2)
            seen += [c["id"] for c in r.json["items"]]
            pages += 1
            cursor = r.json["next_cursor"]
            if not cursor:
                break
        self.assertFalse(cursor, "still a next_cursor after %d pages" % pages)
        self.assertEqual(sorted(seen), sorted(ids))
        self.assertGreaterEqual(pages, 3)
        self.assertEqual(self.api.get("/v1/connections?route=/game").json["items"], [])
        self.assertEqual(self.api.get("/v1/connections?limit=0").status, 400)
        self.assertEqual(self.api.get("/v1/connections?cursor=garbage").status, 400)


class Channels(ApiCase):
    def test_subscribe_publish_members_only_and_exclude(self):
        a, ida = self.open()
        b, idb = self.open()
        c, _ = self.open()
        for cid in (ida, idb):
            r = self.api.put("/v1/channels/news/connections/" + cid)
            self.assertEqual(r.status, 204, r)
        self.assertEqual(self.api.put("/v1/channels/news/connections/" + ida).status, 204)
        self.assertEqual(self.api.put("/v1/channels/news/connections/gone").status, 410)
        r = self.api.post("/v1/channels/news/messages", "extra")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(a.recv_text(5), "extra")
        self.assertEqual(b.recv_text(5), "extra")
        r = self.api.post("/v1/channels/news/messages?exclude=" + ida, "not for a")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(b.recv_text(5), "not for a")
        m = self.api.get("/v1/channels/news/connections?limit=1")
        self.assertEqual(m.status, 200)
        self.assertEqual(len(m.json["items"]), 1)
        m2 = self.api.get("/v1/channels/news/connections?limit=1&cursor=" +
                          urllib.parse.quote(m.json["next_cursor"]))
        self.assertEqual(sorted(m.json["items"] + m2.json["items"]), sorted([ida, idb]))
        ch = self.api.get("/v1/channels?prefix=ne").json["items"]
        self.assertEqual(ch, [{"channel": "news", "members": 2}])
        self.assertEqual(self.api.delete("/v1/channels/news/connections/" + ida).status, 204)
        self.assertEqual(self.api.delete("/v1/channels/news/connections/" + ida).status, 204)
        self.api.post("/v1/channels/news/messages", "after leave")
        self.assertEqual(b.recv_text(5), "after leave")
        time.sleep(0.5)
        self.assertEqual(a.pending(), 0)
        self.assertEqual(c.pending(), 0)

    def test_broadcast_route_filter(self):
        chat, _ = self.open("/chat")
        game, _ = self.open("/game")
        self.assertEqual(self.api.post("/v1/broadcast?route=/game", "g only").status, 202)
        self.assertEqual(game.recv_text(5), "g only")
        self.assertEqual(self.api.post("/v1/broadcast", b"\x07", content_type=(
            "application/octet-stream")).status, 202)
        self.assertEqual(chat.recv(5), (w.OP_BINARY, b"\x07"))
        self.assertEqual(game.recv(5), (w.OP_BINARY, b"\x07"))
        self.assertEqual(chat.pending(), 0)


class Users(ApiCase):
    routes = ("/chat",)

    def setUp(self):
        w.GatewayTestCase.setUp(self)
        self.be = self.backend()
        self.gw = self.gateway([w.route("/chat", self.be.url, jwt={
            "alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET})])
        self.api = self.gw.control()
        self.known = set()

    def user(self, sub):
        tok = w.mint_jwt(w.client_claims(sub))
        return self.open(query={"token": tok})

    def test_user_send_and_disconnect(self):
        a1, i1 = self.user("alice")
        a2, i2 = self.user("alice")
        bob, ib = self.user("bob")
        for cid in (i1, i2, ib):
            self.registered(cid)
        r = self.api.post("/v1/users/alice/messages", "hi alice")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json["connections"], 2)
        self.assertEqual(a1.recv_text(5), "hi alice")
        self.assertEqual(a2.recv_text(5), "hi alice")
        users = {c["id"]: c["user"] for c in self.api.get("/v1/connections?user=alice").json[
            "items"]}
        self.assertEqual(users, {i1: "alice", i2: "alice"})
        self.assertEqual(self.api.delete("/v1/users/alice?code=4002").status, 204)
        self.assertEqual(a1.wait_closed(10)[0], 4002)
        self.assertEqual(a2.wait_closed(10)[0], 4002)
        time.sleep(0.3)
        self.assertFalse(bob.closed.is_set())
        self.assertEqual(bob.pending(), 0)


    def test_token_channels_recorded_by_registry(self):
        tok = w.mint_jwt(w.client_claims("carol", channels=["news", "room/7"]))
        ws, cid = self.open(query={"token": tok})
        self.registered(cid)
        c = self.api.get("/v1/connections/" + cid).json
        self.assertEqual((c["user"], sorted(c["channels"])), ("carol", ["news", "room/7"]))
        m = self.api.get("/v1/channels/room%2F7/connections").json["items"]
        self.assertEqual(m, [cid])


class Batch(ApiCase):
    def test_batch_per_item_results(self):
        ws, cid = self.open()
        r = self.api.post("/v1/batch", {"requests": [
            {"method": "POST", "path": "/v1/connections/%s/messages" % cid, "body": "one"},
            {"method": "POST", "path": "/v1/connections/nope/messages", "body": "x"},
            {"method": "PUT", "path": "/v1/channels/b/connections/" + cid},
            {"method": "POST", "path": "/v1/channels/b/messages", "body": {"data": "two"}},
            {"method": "GET", "path": "/v1/nothing"},
            {"method": "POST", "path": "/v1/batch", "body": {"requests": []}},
        ]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([x["status"] for x in r.json["results"]], [200, 410, 204, 202, 404, 400])
        self.assertEqual(r.json["results"][0]["body"], {"queued": True})
        self.assertEqual(ws.recv_text(5), "one")
        self.assertEqual(ws.recv_text(5), "two")
        self.assertEqual(self.api.post("/v1/batch", "{").status, 415)
        self.assertEqual(self.api.post("/v1/batch", b"{", content_type="application/json").status,
                         400)


class SlowAuthorizer(w.GatewayTestCase):
    def test_send_during_handshake_is_held(self):
        be = self.backend()
        auth = w.Authorizer()
        self.addCleanup(auth.stop)
        auth.allow(user="slow", delay=1.5)
        gw = self.gateway([w.route("/chat", be.url, auth={"authorizer": auth.url})])
        api = gw.control()
        import threading
        box = {}
        t = threading.Thread(target=lambda: box.update(ws=w.WsClient.connect(gw.edge_url +
                                                                             "/chat")))
        t.start()
        req = auth.wait_requests(1, 10)[0]
        cid = req.headers.get("wsgate-connection-id") or req.json.get("connection_id")
        self.assertTrue(cid, req.json)
        r = api.send(cid, "early")
        self.assertEqual(r.status, 200, r)
        t.join(15)
        ws = box["ws"]
        self.addCleanup(ws.abort)
        self.assertEqual(ws.recv_text(5), "early")


class Restart(ApiCase):
    def test_edge_lost_after_kill9(self):
        ws, cid = self.open()
        self.registered(cid)
        self.gw.kill9()
        ws.abort()
        self.gw.start()
        ev = self.be.wait_event(lambda e: e["type"] == "disconnect" and
                                e["connection_id"] == cid, 20)
        self.assertEqual((ev["initiator"], ev["code"]), ("edge_lost", 1006))
        self.assertEqual(ev["route"], "/chat")
        self.assertTrue(ev["id"].startswith("evt_"))
        self.assertGreater(ev["seq"], 1)
        self.assertRegex(ev["timestamp"], w.RFC3339_MS)
        api = self.gw.control()
        self.assertEqual(api.get("/v1/connections/" + cid).status, 410)
        time.sleep(1)
        n = [e for e in self.be.events() if e["type"] == "disconnect" and
             e["connection_id"] == cid]
        self.assertEqual(len(w.dedupe(n)), 1)


    def test_graceful_restart_one_disconnect(self):
        ws, cid = self.open()
        self.registered(cid)
        self.gw.stop()
        self.gw.start()
        self.be.wait_event(lambda e: e["type"] == "disconnect" and e["connection_id"] == cid, 20)
        time.sleep(3.5)  # past the registry's grace before it sweeps a previous run
        n = [e for e in w.dedupe(self.be.events()) if e["type"] == "disconnect" and
             e["connection_id"] == cid]
        self.assertEqual(len(n), 1, n)
        self.assertEqual(n[0]["initiator"], "server")
        self.assertEqual(self.gw.control().get("/v1/connections/" + cid).status, 410)

if __name__ == "__main__":
    w.main()
