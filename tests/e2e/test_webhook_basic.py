# SPDX-License-Identifier: MIT
"""test_webhook_basic.py — connect, message and disconnect events reach the
backend with the envelope, headers and signature of docs/contract.md §3.

One client (JWT in the query string, a context claim, extra query and
header) connects, sends a text and a binary message and closes with 1000.
The backend must receive, in order:
  connect (seq 1; remote_addr, headers, query without the token,
  subprotocol), message (seq 2, data), message (seq 3, data_base64 +
  binary), disconnect (seq 4, code, reason, initiator "client"),
each POSTed as application/json with webhook-id == body id,
webhook-timestamp near now, wsgate-connection-id, wsgate-event, and a
webhook-signature that our own HMAC implementation verifies (and that a
wrong secret does not).
Also: each connection counts its own seq; a token in a bearer.<token>
subprotocol never reaches the backend; a forced disconnect through the
control API reports its code, reason and initiator "api"; a client that
stops answering pings is closed 1001 with initiator "timeout"; an
anonymous route's events carry user null.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import base64
import calendar
import json
import re
import time

import wsgate_test as w

SECRET = w.DEFAULT_WHSEC
WRONG = "whsec_" + base64.b64encode(b"not-the-right-key-at-all").decode()
CLIENT_SECRET = w.DEFAULT_CLIENT_SECRET
CONN_ID = re.compile(r"^[A-Za-z0-9_-]{22,}$")


class WebhookBasic(w.GatewayTestCase):
    def start(self, **route_extra):
        self.be = self.backend()
        jwt = {"alg": "HS256", "secret": CLIENT_SECRET, "context_claims": ["tenant"]}
        self.gw = self.gateway([w.route("/chat", self.be.url, jwt=jwt, **route_extra)])

    def token(self, sub="alice"):
        return w.mint_jwt(w.client_claims(sub, tenant="acme"), "HS256", CLIENT_SECRET)

    def wait_conn_events(self, n, timeout=15):
        evs = self.be.wait_events(lambda e: True, n, timeout)
        return evs

    def test_envelope_headers_and_signature(self):
        self.start()
        tok = self.token()
        t0 = time.time()
        ws = self.client(self.gw.edge_url + "/chat", query={"token": tok, "room": "42"},
                         headers={"X-Trace": "trace-1"})
        ws.send_text("hello")
        ws.send_binary(b"\x00\x01\xfe\xff")
        self.assertEqual(ws.close(1000, "bye")[0], 1000)
        reqs = self.be.wait_for(
            lambda rs: rs if sum(len(r.events()) for r in rs) >= 4 else None, 20,
            "4 events")
        t1 = time.time()
        evs = [e for r in reqs for e in r.events()]
        self.assertEqual([e["type"] for e in evs], ["connect", "message", "message",
                                                    "disconnect"], evs)
        self.assertEqual([e["seq"] for e in evs], [1, 2, 3, 4])
        cid = evs[0]["connection_id"]
        self.assertRegex(cid, CONN_ID)
        ids = set()
        for e in evs:
            self.assertTrue(isinstance(e["id"], str) and e["id"].startswith("evt_"), e)
            ids.add(e["id"])
            self.assertEqual(e["connection_id"], cid)
            self.assertEqual(e["route"], "/chat")
            self.assertEqual(e["user"], "alice")
            self.assertEqual(e["context"], {"tenant": "acme"})
            self.assertRegex(e["timestamp"], w.RFC3339_MS)
            ts = calendar.timegm(time.strptime(e["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
            self.assertLess(abs(ts - (t0 + t1) / 2), 120, e["timestamp"])
        self.assertEqual(len(ids), 4, "event ids must be unique")
        stamps = [e["timestamp"] for e in evs]
        self.assertEqual(stamps, sorted(stamps))

        conn = evs[0]
        self.assertTrue(conn["remote_addr"].startswith("127.0.0.1"), conn)
        self.assertIsInstance(conn["headers"], dict)
        query_text = json.dumps(conn["query"])
        self.assertIn("room", query_text)
        self.assertIn("42", query_text)
        self.assertNotIn("token", query_text)
        self.assertIn("subprotocol", conn)
        self.assertIsNone(conn["subprotocol"])
        for r in reqs:
            self.assertNotIn(tok.encode(), r.body, "the token must never reach the backend")

        self.assertEqual(evs[1]["data"], "hello")
        self.assertFalse(evs[1].get("binary", False))
        self.assertNotIn("data_base64", evs[1])
        self.assertEqual(evs[2].get("binary"), True)
        self.assertEqual(base64.b64decode(evs[2]["data_base64"]), b"\x00\x01\xfe\xff")
        self.assertNotIn("data", evs[2])

        disc = evs[3]
        self.assertEqual((disc["code"], disc["reason"], disc["initiator"]),
                         (1000, "bye", "client"))

        for r in reqs:
            self.assertEqual(r.method, "POST")
            self.assertEqual(r.path, "/events")
            self.assertTrue(r.headers.get("content-type", "").startswith("application/json"))
            e = r.events()[0]
            self.assertEqual(len(r.events()), 1)
            self.assertEqual(r.headers["webhook-id"], e["id"])
            self.assertEqual(r.headers["wsgate-connection-id"], cid)
            self.assertEqual(r.headers["wsgate-event"], e["type"])
            self.assertLess(abs(int(r.headers["webhook-timestamp"]) - time.time()), 120)
            self.assertTrue(w.verify_webhook(SECRET, r.headers, r.body, tolerance_s=300),
                            "signature does not verify: %r" % r.headers)
            self.assertFalse(w.verify_webhook(WRONG, r.headers, r.body))
            self.assertFalse(w.verify_webhook(SECRET, r.headers, r.body + b" "))

    def test_each_connection_counts_its_own_seq(self):
        self.start()
        a = self.client(self.gw.edge_url + "/chat", query={"token": self.token("alice")})
        b = self.client(self.gw.edge_url + "/chat",
                        headers={"Authorization": "Bearer " + self.token("bob")})
        for i in range(5):
            a.send_text("a%d" % i)
            b.send_text("b%d" % i)
        a.close()
        b.close()
        evs = self.be.wait_events(lambda e: True, 14, 20)
        by = w.events_by_connection(w.dedupe(evs))
        self.assertEqual(len(by), 2)
        for cid, es in by.items():
            self.assertEqual([e["seq"] for e in es], list(range(1, 8)))
            user = es[0]["user"]
            self.assertIn(user, ("alice", "bob"))
            self.assertEqual([e["data"] for e in es[1:6]],
                             ["%s%d" % (user[0], i) for i in range(5)])
            self.assertEqual(es[-1]["type"], "disconnect")

    def test_bearer_subprotocol_token_not_forwarded(self):
        self.start()
        tok = self.token("carol")
        ws = self.client(self.gw.edge_url + "/chat", subprotocols=["bearer." + tok])
        ws.send_text("hi")
        ev = self.be.wait_event(lambda e: e["type"] == "message", 15)
        self.assertEqual((ev["user"], ev["data"]), ("carol", "hi"))
        conn = self.be.wait_event(lambda e: e["type"] == "connect", 5)
        self.assertNotIn(tok, json.dumps(conn))
        ws.close()

    def disconnect_of(self, cid, timeout=15):
        return self.be.wait_event(lambda e: e["type"] == "disconnect" and
                                  e["connection_id"] == cid, timeout)

    def test_disconnect_by_api_and_by_timeout(self):
        self.start(limits={"ping_interval": "200ms", "idle_timeout": "1s"})
        ws = self.client(self.gw.edge_url + "/chat", query={"token": self.token()})
        cid = self.be.wait_event(lambda e: e["type"] == "connect", 15)["connection_id"]
        r = self.gw.control().delete("/v1/connections/%s?code=4001&reason=kicked" % cid)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(ws.wait_closed(10), (4001, "kicked"))
        d = self.disconnect_of(cid)
        self.assertEqual((d["code"], d["reason"], d["initiator"]), (4001, "kicked", "api"))

        silent = self.client(self.gw.edge_url + "/chat", query={"token": self.token("bob")},
                             auto_pong=False)
        cid2 = self.be.wait_event(lambda e: e["type"] == "connect" and e["user"] == "bob",
                                  15)["connection_id"]
        self.assertEqual(silent.wait_closed(15)[0], 1001)
        self.assertTrue(silent.pings, "the gateway never pinged")
        d = self.disconnect_of(cid2)
        self.assertEqual((d["code"], d["initiator"]), (1001, "timeout"))
        evs = [e for e in w.dedupe(self.be.events()) if e["connection_id"] == cid2]
        self.assertEqual([e["type"] for e in evs], ["connect", "disconnect"])

    def test_anonymous_route(self):
        self.be = self.backend()
        self.gw = self.gateway([w.route("/open", self.be.url)])
        ws = self.client(self.gw.edge_url + "/open")
        ws.send_text("anon")
        ev = self.be.wait_event(lambda e: e["type"] == "message", 15)
        self.assertIsNone(ev["user"])
        self.assertEqual((ev["route"], ev["data"], ev["seq"]), ("/open", "anon", 2))
        self.assertEqual(ev["context"], {})
        ws.close()

    def test_text_that_needs_escaping_arrives_unchanged(self):
        # the envelope is written as text (ws-edge/edge_json.c): every
        # character JSON must escape, a NUL, non-ASCII and 4-byte UTF-8
        self.be = self.backend()
        self.gw = self.gateway([w.route("/open", self.be.url)])
        ws = self.client(self.gw.edge_url + "/open")
        texts = ['q"b\\s/\n\r\t\b\f\x01\x1f\x7f', "nul\x00inside", "caf\u00e9 \U0001F600 </script>",
                 "", "x" * 70000]
        for t in texts:
            ws.send_text(t)
        evs = self.be.wait_events(lambda e: e["type"] == "message", len(texts), 15)
        self.assertEqual([e["data"] for e in sorted(evs, key=lambda e: e["seq"])], texts)
        ws.close()


if __name__ == "__main__":
    w.main()
