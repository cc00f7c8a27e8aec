# SPDX-License-Identifier: MIT
"""test_compat_grip.py — route `protocol: grip` (docs/compat.md): a backend
written against Pushpin's WebSocket-over-HTTP protocol and GRIP, not
against wsgate, runs unchanged behind the gateway.

The backend here is what runs behind Pushpin today: it reads
application/websocket-events, verifies Grip-Sig (HS256, iss "pushpin", exp),
answers OPEN with OPEN plus a GRIP control message subscribing the
connection to "room", echoes TEXT and BINARY, closes on request, and
publishes through Pushpin's `POST /publish/` API.

- OPEN -> OPEN + c:subscribe; TEXT echoed; a /publish/ item (text and
  content-bin) reaches the subscribed client; Connection-Id is the same on
  every request of a connection; Grip-Sig verifies.
- Set-Meta-* on an answer comes back as Meta-* on the connection's later
  requests; an empty value removes it.
- BINARY frames both ways.
- the client's close -> the backend sees CLOSE with the code and reason.
- the backend's CLOSE closes the client with its code and reason.
- an answer to OPEN without OPEN, and a 403 to OPEN, refuse the connection
  (closed 1008: wsgate's connect webhook runs after the upgrade).
- an answer that is not websocket-events fails the attempt: retried, then
  dead-lettered (wsgate's rules); the connection keeps working.
- /publish/ needs the publish scope; a bad item publishes nothing.
- check-config refuses an unknown protocol; aws and wsaas are accepted.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import subprocess
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import wsgate_test as w

# What a Pushpin backend is configured with (its sig_key): the route's
# webhook secret, decoded (docs/compat.md).
SIG_KEY = base64.b64decode(w.DEFAULT_WHSEC[len("whsec_"):])


# ---- Pushpin's contract, written from its documentation ------------------

def decode_events(body):
    """application/websocket-events -> [(type, content bytes or None)]."""
    out, i = [], 0
    while i < len(body):
        eol = body.index(b"\r\n", i)
        head = body[i:eol].decode("ascii")
        i = eol + 2
        if " " in head:
            typ, size = head.split(" ", 1)
            n = int(size, 16)
            content = body[i:i + n]
            if body[i + n:i + n + 2] != b"\r\n":
                raise ValueError("bad framing")
            i += n + 2
            out.append((typ, content))
        else:
            out.append((head, None))
    return out


def encode_events(events):
    out = b""
    for typ, content in events:
        if content is None:
            out += typ.encode() + b"\r\n"
        else:
            out += b"%s %x\r\n%s\r\n" % (typ.encode(), len(content), content)
    return out


def control(msg):
    return ("TEXT", b"c:" + json.dumps(msg).encode())


def b64url_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def validate_sig(token, key):
    """pygripcontrol's validate_sig: HS256 signature and exp."""
    try:
        h, p, s = token.split(".")
        if json.loads(b64url_dec(h)).get("alg") != "HS256":
            return None
        mac = hmac.new(key, (h + "." + p).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(mac, b64url_dec(s)):
            return None
        claims = json.loads(b64url_dec(p))
        return claims if claims.get("exp", 0) >= time.time() else None
    except (ValueError, KeyError):
        return None


class PushpinBackend:
    """A WebSocket-over-HTTP backend on a free loopback port. Records every
    request; answers by path: /ws (the app), /refuse-empty (200 without
    OPEN), /refuse-403."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # dicts: path, headers, events, sig
        self.garbage_for = set()  # TEXT contents answered with a bad body
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                try:
                    events = decode_events(body)
                except ValueError:
                    events = None
                rec = {"path": self.path, "headers": {k.lower(): v for k, v in
                                                      self.headers.items()},
                       "events": events,
                       "sig": validate_sig(self.headers.get("Grip-Sig", ""), SIG_KEY)}
                with outer.lock:
                    outer.requests.append(rec)
                status, hdrs, out = outer.answer(rec)
                self.send_response(status)
                for k, v in hdrs.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", w.free_port()), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, rec):
        hdrs = {"Content-Type": "application/websocket-events"}
        if rec["sig"] is None or rec["events"] is None:
            return 400, {}, b"bad request\n"
        if rec["path"] == "/refuse-403":
            return 403, {}, b"no\n"
        if rec["path"] == "/refuse-empty":
            return 200, hdrs, b""
        out = []
        for typ, content in rec["events"]:
            if typ == "OPEN":
                hdrs["Sec-WebSocket-Extensions"] = "grip"
                hdrs["Set-Meta-User"] = "alice"
                out += [("OPEN", None), control({"type": "subscribe", "channel": "room"})]
            elif typ == "TEXT" and content in self.garbage_for:
                return 200, hdrs, b"this is not websocket-events"
            elif typ == "TEXT" and content == b"forget":
                hdrs["Set-Meta-User"] = ""  # Pushpin: an empty value unsets it
                out.append((typ, content))
            elif typ == "TEXT" and content.startswith(b"close-me"):
                out.append(("CLOSE", struct.pack("!H", 4002) + b"done"))
            elif typ in ("TEXT", "BINARY"):
                out.append((typ, content))
            elif typ == "CLOSE":
                out.append(("CLOSE", content))
        return 200, hdrs, encode_events(out)

    def seen(self, pred):
        with self.lock:
            return [r for r in self.requests if pred(r)]

    def wait_event(self, typ, content=None, path="/ws", timeout=10.0):
        def find():
            for r in self.seen(lambda r: r["path"] == path and r["events"]):
                for t, c in r["events"]:
                    if t == typ and (content is None or c == content):
                        return r, c
            return None
        return w.wait_until(find, timeout, what="%s %r at the backend" % (typ, content))


class GripCompat(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = PushpinBackend()
        self.addCleanup(self.be.stop)
        fast = {"max_attempts": 2, "backoff_initial": "100ms", "backoff_max": "200ms"}
        self.gw = self.gateway([
            w.route("/chat", self.be.url + "/ws", protocol="grip", delivery=fast),
            w.route("/refuse-empty", self.be.url + "/refuse-empty", protocol="grip",
                    delivery=fast),
            w.route("/refuse-403", self.be.url + "/refuse-403", protocol="grip",
                    delivery=fast)])

    def open(self):
        """A client past OPEN, subscribed to "room" (its echo proves that
        the subscribe, sent before it to the same edge, was applied)."""
        ws = self.client(self.gw.edge_url + "/chat")
        rec, _ = self.be.wait_event("OPEN")
        ws.send_text("sync")
        self.assertEqual(ws.recv_text(), "sync")
        return ws

    def publish(self, body, scope="publish", **claims):
        api = w.ControlApi(self.gw.api_url, self.gw.api_token(scope, **claims))
        return api.post("/publish/", body)

    def test_open_subscribe_echo_and_publish(self):
        ws = self.open()
        rec, _ = self.be.wait_event("OPEN")
        h = rec["headers"]
        self.assertEqual(h["content-type"], "application/websocket-events")
        self.assertIn("grip", h["sec-websocket-extensions"])
        self.assertTrue(h.get("connection-id"))
        self.assertEqual(rec["sig"]["iss"], "pushpin")
        self.assertLessEqual(rec["sig"]["exp"], time.time() + 3600 + 5)
        echo, _ = self.be.wait_event("TEXT", b"sync")
        self.assertEqual(echo["headers"]["connection-id"], h["connection-id"])
        self.assertIsNotNone(echo["sig"])
        ws.send_text("hello")
        self.assertEqual(ws.recv_text(), "hello")
        r = self.publish({"items": [{"channel": "room",
                                     "formats": {"ws-message": {"content": "news"}}}]})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(ws.recv_text(), "news")
        r = self.publish({"items": [{"channel": "room", "formats": {
            "ws-message": {"content-bin": base64.b64encode(b"\x00\xffbin").decode()}}}]})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(ws.recv(), (2, b"\x00\xffbin"))

    def test_meta_set_by_backend_comes_back(self):
        ws = self.open()
        rec, _ = self.be.wait_event("OPEN")
        self.assertNotIn("meta-user", rec["headers"])
        rec, _ = self.be.wait_event("TEXT", b"sync")
        self.assertEqual(rec["headers"].get("meta-user"), "alice")
        ws.send_text("forget")
        self.assertEqual(ws.recv_text(), "forget")
        ws.send_text("after")
        self.assertEqual(ws.recv_text(), "after")
        rec, _ = self.be.wait_event("TEXT", b"after")
        self.assertNotIn("meta-user", rec["headers"])

    def test_binary_both_ways(self):
        ws = self.open()
        ws.send_binary(b"\x00\x01\xfe\xff")
        self.be.wait_event("BINARY", b"\x00\x01\xfe\xff")
        self.assertEqual(ws.recv(), (2, b"\x00\x01\xfe\xff"))

    def test_client_close_reaches_backend(self):
        ws = self.open()
        ws.close(4001, "bye")
        _, content = self.be.wait_event("CLOSE")
        self.assertEqual(content, struct.pack("!H", 4001) + b"bye")

    def test_backend_close(self):
        ws = self.open()
        ws.send_text("close-me")
        self.assertEqual(ws.wait_closed(), (4002, "done"))

    def test_refused_without_open(self):
        ws = self.client(self.gw.edge_url + "/refuse-empty")
        self.assertEqual(ws.wait_closed(15), (1008, "refused by backend"))

    def test_refused_with_403(self):
        ws = self.client(self.gw.edge_url + "/refuse-403")
        self.assertEqual(ws.wait_closed(15), (1008, "refused by backend"))

    def test_bad_answer_is_retried_then_dead_lettered(self):
        ws = self.open()
        self.be.garbage_for.add(b"garbage please")
        ws.send_text("garbage please")
        api = self.gw.control()
        items = w.wait_until(lambda: api.dead_letters().json["items"], 20, what="a dead letter")
        self.assertEqual(len(self.be.seen(lambda r: r["events"] and
                                          ("TEXT", b"garbage please") in r["events"])), 2)
        self.assertIn("websocket-events", items[0].get("last_error", ""))
        ws.send_text("still here")  # the next event goes on
        self.assertEqual(ws.recv_text(), "still here")

    def test_publish_auth_and_bad_items(self):
        ws = self.open()
        item = {"channel": "room", "formats": {"ws-message": {"content": "x"}}}
        self.assertEqual(self.publish({"items": [item]}, scope="send").status, 403)
        self.assertEqual(self.publish({"items": [item]}, channels=["other.*"]).status, 403)
        bad = {"channel": "room", "formats": {"ws-message": {"content-bin": "***"}}}
        self.assertEqual(self.publish({"items": [item, bad]}).status, 400)
        self.assertEqual(self.publish({"items": "no"}).status, 400)
        ok = {"channel": "room", "formats": {"ws-message": {"content": "after"}}}
        self.assertEqual(self.publish({"items": [ok]}).status, 200)
        self.assertEqual(ws.recv_text(), "after")  # nothing of the refused ones came first


class GripCheckConfig(unittest.TestCase):
    def check(self, protocol):
        with w.TempDir() as tmp:
            path = tmp.join("c.yaml")
            with open(path, "w") as f:
                json.dump({"store": "sqlite://" + tmp.join("x.db"),
                           "routes": [w.route("/g", "http://127.0.0.1:9/x",
                                              protocol=protocol)]}, f)
            return subprocess.run([w.WSGATE_BIN, "check-config", "--config", path],
                                  capture_output=True, text=True, timeout=w.scaled(30))

    def test_protocols(self):
        p = self.check("grip")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.check("pushpin")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("routes[0].protocol: unknown value 'pushpin'", p.stderr)
        p = self.check("aws")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.check("wsaas")
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    w.main()
