"""test_edge_protocol.py — RFC 6455 and HTTP framing rules the edge holds
clients to, through the real binary with raw sockets and raw frames:

- a message whose first fragment is empty arrives whole (this was a
  memcpy to NULL, fatal in the sanitizer build), and so does an empty
  message;
- a request with more than one Origin, Host, Sec-WebSocket-Key,
  Sec-WebSocket-Version or Authorization header is refused with 400
  before any event, whatever the order of the values.

Env: WSGATE_BIN, PYTHONPATH=tests/lib (WSGATE_BIN may be the ASan/UBSan
build: a sanitizer report in the gateway's log fails the test).
"""

import base64
import os
import time
import unittest
import urllib.parse

import test_edge_request as req_tests  # raw requests on raw sockets
import wsgate_test as w

raw_request, read_head = req_tests.raw_request, req_tests.read_head


class EdgeProtocol(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([
            w.route("/chat", self.be.url),
            w.route("/open", self.be.url, allowed_origins=["https://app.example"]),
            w.route("/jwt", self.be.url, jwt={"alg": "HS256",
                                              "secret": w.DEFAULT_CLIENT_SECRET}),
        ])
        self.url = self.gw.edge_url
        u = urllib.parse.urlsplit(self.url)
        self.addr = (u.hostname, u.port)

    # -- helpers
    sock = req_tests.EdgeRequest.sock  # a raw socket to the edge, closed after the test

    # -- 2: empty fragments
    def test_empty_first_fragment_then_continuation(self):
        ws = self.client(self.url + "/chat")
        ws.send_frame(w.OP_TEXT, b"", fin=False)
        ws.send_frame(w.OP_CONT, b"abc", fin=True)
        ws.send_frame(w.OP_BINARY, b"", fin=False)
        ws.send_frame(w.OP_CONT, b"", fin=False)
        ws.send_frame(w.OP_CONT, b"\x00xyz", fin=True)
        ws.send_frame(w.OP_TEXT, b"")
        ws.send_fragmented(w.OP_TEXT, [b"", b""])
        ws.send_text("next")
        evs = self.be.wait_events(lambda e: e["type"] == "message", 5)
        self.assertEqual(evs[0]["data"], "abc")
        self.assertEqual(base64.b64decode(evs[1]["data_base64"]), b"\x00xyz")
        self.assertEqual([e.get("data") for e in evs[2:]], ["", "", "next"])
        self.assertEqual(ws.close(), (1000, ""))

    # -- 4: headers that must appear once
    def status_of(self, data):
        s = self.sock()
        s.sendall(data)
        return read_head(s)[0]

    def test_repeated_singleton_headers_400(self):
        key2 = base64.b64encode(os.urandom(16)).decode()
        tok = w.mint_jwt(w.client_claims("eve"))
        other = w.mint_jwt(w.client_claims("mallory"))
        cases = [
            ("/open", ["Origin: https://app.example", "Origin: https://evil.example"]),
            ("/open", ["Origin: https://evil.example", "Origin: https://app.example"]),
            ("/open", ["Origin: https://app.example", "Origin: https://app.example"]),
            ("/chat", ["Origin: https://a.example", "Origin: https://b.example"]),
            ("/chat", ["Host: elsewhere"]),
            ("/chat", ["Sec-WebSocket-Key: " + key2]),
            ("/chat", ["Sec-WebSocket-Version: 8"]),
            ("/chat", ["sec-websocket-version: 13"]),
            ("/jwt", ["Authorization: Bearer " + tok, "Authorization: Bearer " + other]),
        ]
        for path, extra in cases:
            self.assertEqual(self.status_of(raw_request(path, extra=extra)), 400, (path, extra))
        time.sleep(0.3)
        self.assertEqual(self.be.events(), [], "no refused request made an event")
        # one of each is fine
        self.assertEqual(self.status_of(raw_request("/open", extra=["Origin: https://app.example"])), 101)
        self.assertEqual(self.status_of(raw_request("/jwt", extra=["Authorization: Bearer " + tok])), 101)
        self.be.wait_events(lambda e: e["type"] == "connect", 2)


if __name__ == "__main__":
    unittest.main()
