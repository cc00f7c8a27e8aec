# SPDX-License-Identifier: MIT
"""test_edge_subprotocols.py — Sec-WebSocket-Protocol negotiation (docs/contract.md §2,
docs/edge.md "Subprotocols"), through the real binary with raw-socket clients:

- a route with `subprotocols: [..]` answers the first protocol the client
  offered that it lists (the client's order, not the route's), and the
  connect event carries it;
- a client that offered protocols of which the route lists none gets 400
  with the accepted list in the body (no event, no token in the body);
- a client that offered nothing gets a 101 without the header;
- a client that offered only bearer.<token> entries gets the first of them
  echoed byte for byte (what browsers need to accept the 101); the token
  authenticates like ?token= and Authorization, a bad one is 401, and it
  reaches neither a log nor the connect event (subprotocol null);
- a route without a list answers the first offered non-bearer entry;
- an authorizer answer may choose another offered protocol; one the client
  did not offer fails closed (503).

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import socket
import time

import wsgate_test as w

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}


class EdgeSubprotocols(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.az = self.authorizer()
        self.gw = self.gateway([
            w.route("/listed", self.be.url, subprotocols=["chat.v2", "chat.v1"]),
            w.route("/jwt", self.be.url, jwt=JWT, subprotocols=["chat.v1"]),
            w.route("/any", self.be.url, jwt=JWT),
            w.route("/az", self.be.url, subprotocols=["v1", "v2"],
                    auth={"authorizer": self.az.url, "authorizer_timeout": "2s"}),
        ])
        self.url = self.gw.edge_url

    def connect_event(self, conn_pred=lambda e: True):
        return self.be.wait_event(lambda e: e["type"] == "connect" and conn_pred(e))

    def test_first_offered_that_the_route_lists(self):
        ws = self.client(self.url + "/listed", subprotocols=["other", "chat.v1", "chat.v2"])
        self.assertEqual(ws.subprotocol, "chat.v1", "the client's order decides, not the route's")
        self.assertEqual(self.connect_event()["subprotocol"], "chat.v1")
        ws.send_text("hi")
        self.assertEqual(self.be.wait_event(lambda e: e["type"] == "message")["data"], "hi")
        ws.close()

    def test_none_of_the_offered_is_400_with_the_accepted_list(self):
        tok = w.mint_jwt(w.client_claims("x"))
        for path, offer in (("/listed", ["chat.v3", "json"]),
                            ("/jwt", ["bearer." + tok, "chat.v9"])):
            with self.subTest(path):
                st, hdrs, body = w.WsClient.refused(self.url + path, subprotocols=offer)
                self.assertEqual(st, 400)
                text = body.decode()
                self.assertIn("subprotocol", text)
                want = "chat.v2, chat.v1" if path == "/listed" else "chat.v1"
                self.assertIn(want, text, "the accepted list, in the route's order")
                self.assertNotIn(tok, text)
                self.assertNotIn("sec-websocket-protocol", hdrs)
        time.sleep(0.3)
        self.assertEqual(self.be.events(), [], "a refused handshake publishes nothing")
        self.assertNotIn(tok, self.gw.logs())

    def test_nothing_offered_is_admitted_without_the_header(self):
        st, hdrs, ws, _ = w.WsClient.handshake(self.url + "/listed")
        self.assertEqual(st, 101)
        self.addCleanup(ws.abort)
        self.assertNotIn("sec-websocket-protocol", hdrs)
        self.assertIsNone(self.connect_event()["subprotocol"])

    def raw_handshake(self, path, protocol_header):
        """A handshake written byte by byte on a plain socket: (status line,
        every Sec-WebSocket-Protocol header line of the answer)."""
        s = socket.create_connection(("127.0.0.1", self.gw.edge_port), timeout=w.scaled(10))
        self.addCleanup(s.close)
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n"
                   % (path, protocol_header)).encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        lines = buf.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        return lines[0], [ln.split(":", 1)[1].strip() for ln in lines[1:]
                          if ln.lower().startswith("sec-websocket-protocol:")]

    def test_bearer_only_is_echoed_and_authenticates(self):
        tok = w.mint_jwt(w.client_claims("browser"))
        status, protos = self.raw_handshake("/any", "bearer." + tok)
        self.assertIn(" 101 ", status + " ")
        self.assertEqual(protos, ["bearer." + tok], "exactly the offered entry, once")
        ev = self.connect_event()
        self.assertEqual(ev["user"], "browser", "the bearer entry authenticates")
        self.assertIsNone(ev["subprotocol"], "the token never reaches the backend")
        # two bearer entries: the first is echoed, on a route with a list too
        tok2 = w.mint_jwt(w.client_claims("browser2"))
        ws = self.client(self.url + "/jwt", subprotocols=["bearer." + tok2, "bearer.x"])
        self.assertEqual(ws.subprotocol, "bearer." + tok2)
        self.assertEqual(self.connect_event(lambda e: e["user"] == "browser2")["subprotocol"],
                         None)
        st, _, _ = w.WsClient.refused(self.url + "/any", subprotocols=["bearer.not-a-jwt"])
        self.assertEqual(st, 401)
        time.sleep(0.2)
        logs = self.gw.logs()
        for t in (tok, tok2):
            self.assertNotIn(t, logs)
            self.assertNotIn(t.split(".")[2], str(self.be.events()))

    def test_bearer_beside_a_listed_protocol(self):
        tok = w.mint_jwt(w.client_claims("both"))
        ws = self.client(self.url + "/jwt", subprotocols=["bearer." + tok, "chat.v1"])
        self.assertEqual(ws.subprotocol, "chat.v1")
        ev = self.connect_event()
        self.assertEqual((ev["user"], ev["subprotocol"]), ("both", "chat.v1"))

    def test_route_without_a_list_answers_the_first_offered(self):
        tok = w.mint_jwt(w.client_claims("free"))
        ws = self.client(self.url + "/any", subprotocols=["bearer." + tok, "b", "a"])
        self.assertEqual(ws.subprotocol, "b")

    def test_authorizer_chooses_among_the_offered(self):
        self.az.allow(user="zed", subprotocol="v2")
        ws = self.client(self.url + "/az", subprotocols=["v1", "v2"])
        self.assertEqual(ws.subprotocol, "v2")
        self.assertEqual(self.connect_event()["subprotocol"], "v2")
        self.assertEqual(self.az.snapshot()[-1].json["subprotocols"], ["v1", "v2"])
        self.az.allow(user="zed", subprotocol="v3")
        st, _, _ = w.WsClient.refused(self.url + "/az", subprotocols=["v1", "v2"])
        self.assertEqual(st, 503, "a protocol the client did not offer fails closed")
        self.assertTrue(self.gw.find_log("authorizer chose a subprotocol the client did not "
                                         "offer"))
        self.az.allow(user="zed")  # no choice: the edge's
        ws = self.client(self.url + "/az", subprotocols=["v2", "v1"])
        self.assertEqual(ws.subprotocol, "v2")


if __name__ == "__main__":
    w.main()
