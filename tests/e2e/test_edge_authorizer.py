# SPDX-License-Identifier: MIT
"""test_edge_authorizer.py — the authorizer webhook before the 101 (docs/contract.md §2):

- a signed (Standard Webhooks, route secret) POST with connection_id, path,
  query without token, the configured headers (never Cookie/Authorization),
  remote address, offered subprotocols and the JWT's user;
- 2xx {"allow":true,...} admits with its user, context, channels and chosen
  subprotocol; its 401 and 403 reach the client; 5xx, garbage, allow:false
  and a timeout give 403/503 (fail closed);
- combined with JWT: a bad token is refused before the authorizer is asked;
- the authorizer does not block the edge: other clients connect and talk
  while an authorizer request hangs;
- commands addressed to a connection whose handshake is in flight are held
  and applied once it opens (control API send while the authorizer thinks).

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import socket
import threading
import time
import urllib.parse

import wsgate_test as w


class EdgeAuthorizer(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.az = self.authorizer()
        auth = {"authorizer": self.az.url, "authorizer_timeout": "1s",
                "authorizer_headers": ["X-Tenant", "Cookie"]}
        self.gw = self.gateway([
            w.route("/az", self.be.url, auth=auth),
            w.route("/both", self.be.url, auth=auth,
                    jwt={"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}),
            w.route("/free", self.be.url),
        ])
        self.url = self.gw.edge_url

    def status(self, path="/az", **kw):
        st, _, ws, _ = w.WsClient.handshake(self.url + path, **kw)
        if ws:
            ws.close()
        return st

    def test_request_is_signed_and_complete(self):
        self.az.allow(user="bob")
        ws = self.client(self.url + "/az", query={"token": "opaque-secret", "room": "1"},
                         headers={"X-Tenant": "acme", "Cookie": "sid=2"},
                         subprotocols=["v1", "v2"])
        req = self.az.snapshot()[-1]
        self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, req.headers, req.body))
        body = req.json
        self.assertEqual(len(body["connection_id"]), 22)
        self.assertEqual(body["path"], "/az")
        self.assertEqual(body["query"], {"room": "1"})
        self.assertEqual(body["headers"].get("x-tenant"), "acme")
        self.assertNotIn("cookie", body["headers"])
        self.assertEqual(body["remote_addr"], "127.0.0.1")
        self.assertEqual(body["subprotocols"], ["v1", "v2"])
        ev = self.be.wait_event(lambda e: e["type"] == "connect")
        self.assertEqual(ev["connection_id"], body["connection_id"])
        self.assertEqual(ev["user"], "bob")
        self.assertNotIn("opaque-secret", self.gw.logs())
        ws.close()

    def test_allow_sets_user_context_channels_subprotocol(self):
        self.az.allow(user="zoe", context={"tier": 3}, channels=["room-9"], subprotocol="v2")
        ws = self.client(self.url + "/az", subprotocols=["v1", "v2"])
        self.assertEqual(ws.subprotocol, "v2")
        ev = self.be.wait_event(lambda e: e["type"] == "connect")
        self.assertEqual((ev["user"], ev["context"], ev["channels"], ev["subprotocol"]),
                         ("zoe", {"tier": 3}, ["room-9"], "v2"))
        ws.send_text("hi")
        msg = self.be.wait_event(lambda e: e["type"] == "message")
        self.assertEqual((msg["user"], msg["context"], msg["seq"]), ("zoe", {"tier": 3}, 2))
        ws.close()

    def test_answer_with_an_unaddressable_channel_is_503(self):
        # a channel name the control API refuses: a bad answer, fail closed
        for chans in (["ok", "bad\u0007"], [""], ["x" * 256]):
            with self.subTest(chans=chans[-1][:8]):
                self.az.allow(user="yan", channels=chans)
                self.assertEqual(self.status(), 503)
        time.sleep(0.3)
        self.assertEqual(self.be.events(), [], "a refused handshake publishes nothing")

    def test_refusals_fail_closed(self):
        cases = [(w.Response(401, {"allow": False}), 401), (w.Response(403, b""), 403),
                 (w.Response(200, {"allow": False}), 403), (w.Response(500, b"oops"), 503),
                 (w.Response(200, b"not json"), 503), (w.Response(200, {"user": "x"}), 503),
                 (w.Response(302, b"", {"Location": "http://127.0.0.1:9/"}), 503),
                 (w.Response(200, {"allow": True}, delay=2.5), 503)]
        for resp, want in cases:
            with self.subTest(resp=resp):
                self.az.handler = lambda req, r=resp: r
                self.assertEqual(self.status(), want)
        self.az.handler = None
        self.az.stop()
        self.assertEqual(self.status(), 503, "authorizer down")
        time.sleep(0.3)
        self.assertEqual([e for e in self.be.events() if e["type"] == "connect"], [])

    def status_line(self, path, upgrade=True):
        """The first line of the edge's answer to a raw handshake on path."""
        u = urllib.parse.urlsplit(self.url)
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (u.hostname, u.port)]
        if upgrade:
            lines += ["Upgrade: websocket", "Connection: Upgrade",
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
        with socket.create_connection((u.hostname, u.port), timeout=w.scaled(10)) as s:
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = b""
            while b"\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
        return head.split(b"\r\n", 1)[0].decode("latin-1")

    def test_status_lines_carry_their_own_reason(self):
        # one table of reason phrases (common/http.c): every refusal's status
        # line names its own status, whatever the authorizer answered
        cases = [(401, "HTTP/1.1 401 Unauthorized"), (403, "HTTP/1.1 403 Forbidden"),
                 (418, "HTTP/1.1 503 Service Unavailable"),
                 (451, "HTTP/1.1 503 Service Unavailable")]
        for code, want in cases:
            with self.subTest(authorizer=code):
                self.az.handler = lambda req, c=code: w.Response(c, b"")
                self.assertEqual(self.status_line("/az"), want)
        self.az.handler = None
        self.assertEqual(self.status_line("/nowhere"), "HTTP/1.1 404 Not Found")
        self.assertEqual(self.status_line("/free", upgrade=False),
                         "HTTP/1.1 426 Upgrade Required")

    def test_jwt_checked_before_authorizer(self):
        self.az.allow(user="az-user")
        self.assertEqual(self.status("/both", query={"token": "bad.token.here"}), 401)
        self.assertEqual(self.az.snapshot(), [], "a bad token never reaches the authorizer")
        tok = w.mint_jwt(w.client_claims("jwt-user"))
        ws = self.client(self.url + "/both", headers={"Authorization": "Bearer " + tok})
        self.assertEqual(self.az.snapshot()[-1].json.get("user"), "jwt-user")
        ws.close()

    def test_request_body_escapes_strings(self):
        # the body is written by hand (edge_handshake.c authz_body): quotes,
        # backslashes, control characters and non-ASCII must survive as JSON
        self.az.allow(user="az-user")
        user = 'q"b\\s\tctl\u00e9\u2603'
        tok = w.mint_jwt(w.client_claims(user))
        ws = self.client(self.url + "/both", headers={"Authorization": "Bearer " + tok})
        self.assertEqual(self.az.snapshot()[-1].json.get("user"), user)
        ws.close()

    def test_slow_authorizer_does_not_block_others(self):
        self.az.allow(user="slow", delay=0.8)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("st", self.status()))
        t.start()
        w.wait_until(lambda: self.az.snapshot(), 5, 0.02, "authorizer asked")
        other = self.client(self.url + "/free")
        other.send_text("while waiting")
        self.be.wait_event(lambda e: e.get("data") == "while waiting", timeout=5)
        self.assertTrue(t.is_alive(), "the slow handshake is still pending")
        t.join(5)
        self.assertEqual(result.get("st"), 101)
        other.close()

    def test_commands_held_during_handshake(self):
        api = self.gw.control()
        replies = []

        def decide(req):
            cid = req.json["connection_id"]
            th = threading.Thread(target=lambda: replies.append(api.send(cid, "early")))
            th.start()
            time.sleep(0.5)  # the send is in flight while we think
            return w.Response(200, {"allow": True, "user": "held"})
        self.az.handler = decide
        ws = self.client(self.url + "/az")
        self.assertEqual(ws.recv_text(5), "early")
        w.wait_until(lambda: replies, 5, 0.05, "the send answered")
        self.assertEqual(replies[0].status, 200)
        ws.close()


if __name__ == "__main__":
    w.main()
