# SPDX-License-Identifier: MIT
"""test_edge_protocol.py — RFC 6455 and HTTP framing rules the edge holds
clients to, through the real binary with raw sockets and raw frames:

- a client frame without the mask bit (RFC 6455 §5.1) closes the
  connection with 1002 and never reaches the backend; the frames sent
  before it are delivered, nothing after it is: in its own write, in the
  same write as earlier frames, in the same write as the request, split a
  byte at a time, as a control frame, as a continuation; a masked frame
  whose key is all zeros is still accepted;
- a message whose first fragment is empty arrives whole (this was a
  memcpy to NULL, fatal in the sanitizer build), and so does an empty
  message;
- close frames: a 1-byte payload is answered 1002, a reason that is not
  UTF-8 1007, a code the client may not send 1002; valid codes are echoed;
  what the disconnect event says in each case;
- a request with more than one Origin, Host, Sec-WebSocket-Key,
  Sec-WebSocket-Version or Authorization header is refused with 400
  before any event, whatever the order of the values.

Env: WSGATE_BIN, PYTHONPATH=tests/lib (WSGATE_BIN may be the ASan/UBSan
build: a sanitizer report in the gateway's log fails the test).
"""

import base64
import os
import struct
import time
import unittest
import urllib.parse

import test_edge_request as req_tests  # raw requests on raw sockets
import wsgate_test as w

raw_request, read_head = req_tests.raw_request, req_tests.read_head


def frame(op, payload=b"", fin=True, mask=True, mask_key=None):
    return w.WsClient.frame(op, payload, fin=fin, mask=mask, mask_key=mask_key)


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

    def opened(self, data=b""):
        """A client whose request (and data after it, in the same write) was
        sent on a raw socket and answered 101."""
        s = self.sock()
        s.sendall(raw_request("/chat") + data)
        st, _, rest = read_head(s)
        self.assertEqual(st, 101)
        ws = w.WsClient(s, rest)
        self.addCleanup(ws.abort)
        return ws

    def events_of(self, conn, kind):
        return [e for e in self.be.events()
                if e["connection_id"] == conn and e["type"] == kind]

    def disconnect_of(self, conn):
        return self.be.wait_event(lambda e: e["type"] == "disconnect"
                                  and e["connection_id"] == conn)

    def last_conn(self, n):
        """The id of the n-th connect event (1-based)."""
        evs = self.be.wait_events(lambda e: e["type"] == "connect", n)
        return evs[n - 1]["connection_id"]

    def assert_unmasked_refused(self, ws, conn, delivered):
        """ws sent `delivered` as masked text messages, then an unmasked
        frame (and maybe more): closed 1002, exactly `delivered` reached the
        backend, the disconnect event says 1002 from the server."""
        code, _ = ws.wait_closed(10)
        self.assertEqual(code, 1002)
        ev = self.disconnect_of(conn)
        self.assertEqual((ev["code"], ev["initiator"]), (1002, "server"))
        self.assertEqual([e["data"] for e in self.events_of(conn, "message")], delivered)

    # -- 1: unmasked client frames
    def test_unmasked_frame_closes_1002_and_is_not_forwarded(self):
        ws = self.client(self.url + "/chat")
        conn = self.last_conn(1)
        ws.send_text("before")
        self.be.wait_event(lambda e: e.get("data") == "before")
        ws.send_raw(frame(w.OP_TEXT, "leak", mask=False))
        self.assert_unmasked_refused(ws, conn, ["before"])

    def test_unmasked_frame_after_others_in_one_write(self):
        ws = self.client(self.url + "/chat")
        conn = self.last_conn(1)
        ws.send_raw(frame(w.OP_TEXT, "one") + frame(w.OP_TEXT, "two" * 300)
                    + frame(w.OP_TEXT, "leak", mask=False) + frame(w.OP_TEXT, "after"))
        self.assert_unmasked_refused(ws, conn, ["one", "two" * 300])

    def test_unmasked_frame_in_the_request_write(self):
        ws = self.opened(frame(w.OP_TEXT, "early") + frame(w.OP_BINARY, b"leak", mask=False)
                         + frame(w.OP_TEXT, "after"))
        self.assert_unmasked_refused(ws, self.last_conn(1), ["early"])
        ws2 = self.opened(frame(w.OP_TEXT, "leak", mask=False))
        self.assert_unmasked_refused(ws2, self.last_conn(2), [])

    def test_unmasked_frame_a_byte_at_a_time(self):
        ws = self.client(self.url + "/chat")
        conn = self.last_conn(1)
        ws.send_text("first")
        self.be.wait_event(lambda e: e.get("data") == "first")
        for b in frame(w.OP_TEXT, "leak", mask=False):
            try:
                ws.send_raw(bytes([b]))
            except OSError:
                break
            time.sleep(0.02)
        self.assert_unmasked_refused(ws, conn, ["first"])

    def test_unmasked_control_and_continuation_frames(self):
        ws = self.client(self.url + "/chat")
        ws.send_raw(frame(w.OP_PING, b"p", mask=False))
        self.assert_unmasked_refused(ws, self.last_conn(1), [])
        ws2 = self.client(self.url + "/chat")
        ws2.send_raw(frame(w.OP_TEXT, "par", fin=False)
                     + frame(w.OP_CONT, "tial", mask=False))
        self.assert_unmasked_refused(ws2, self.last_conn(2), [])

    def test_masked_with_a_zero_key_is_accepted(self):
        ws = self.client(self.url + "/chat")
        ws.send_raw(frame(w.OP_TEXT, "zero key", mask_key=b"\0\0\0\0")
                    + frame(w.OP_TEXT, "big" * 30000 + "!", mask_key=b"\0\1\2\3"))
        evs = self.be.wait_events(lambda e: e["type"] == "message", 2)
        self.assertEqual([e["data"] for e in evs], ["zero key", "big" * 30000 + "!"])
        self.assertEqual(ws.close(), (1000, ""))

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

    # -- 3: close frames
    def run_close(self, payload):
        ws = self.client(self.url + "/chat")
        ws.send_text("id?")
        conn = self.be.wait_event(lambda e: e.get("data") == "id?" and
                                  e["connection_id"] not in self.seen)["connection_id"]
        self.seen.add(conn)
        ws.close_sent = True
        ws.send_raw(frame(w.OP_CLOSE, payload))
        code, reason = ws.wait_closed(10)
        return code, reason, self.disconnect_of(conn)

    def test_close_frame_rules(self):
        self.seen = set()
        # refused by the edge: the disconnect event says what the edge sent
        bad = [(b"\x03", 1002, "close frame of one byte"),
               (struct.pack("!H", 1000) + b"bad \xc3\x28", 1007, "invalid utf-8 in close reason"),
               (struct.pack("!H", 5000) + b"x", 1002, "invalid close code"),
               (struct.pack("!H", 65535), 1002, "invalid close code")]
        for payload, want, why in bad:
            code, reason, ev = self.run_close(payload)
            self.assertEqual((code, reason), (want, why), payload)
            self.assertEqual((ev["code"], ev["reason"], ev["initiator"]), (want, why, "server"))
        # codes a client may never send: lws 4.1 answers 1002 itself and gives
        # the edge the frame with its code already replaced by 1002
        for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999):
            code, _, ev = self.run_close(struct.pack("!H", c) + b"x")
            self.assertEqual(code, 1002, c)
            self.assertEqual((ev["code"], ev["reason"], ev["initiator"]), (1002, "x", "client"))
        for c in (1000, 1001, 1003, 1007, 1011, 3000, 4000, 4999):
            code, reason, ev = self.run_close(struct.pack("!H", c) + "bye é".encode())
            self.assertEqual((code, reason), (c, "bye é"))
            self.assertEqual((ev["code"], ev["reason"], ev["initiator"]), (c, "bye é", "client"))
        code, _, ev = self.run_close(b"")
        self.assertEqual(code, 1005)  # an empty close is answered with an empty close
        self.assertEqual((ev["code"], ev["initiator"]), (1005, "client"))

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
    w.main()
