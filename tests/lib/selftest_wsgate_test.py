"""selftest_wsgate_test.py — checks the e2e test library itself, without
wsgate: the Standard Webhooks test vector, JWT round trips through the
openssl CLI (and forgeries failing), the recording Backend's scripting, and
WsClient against a minimal RFC 6455 server written here.

Run: python3 tests/lib/selftest_wsgate_test.py   (stdlib + openssl only)
"""

import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsgate_test as w  # noqa: E402


class Signatures(unittest.TestCase):
    def test_standard_webhooks_vector(self):
        # The example of the Standard Webhooks specification.
        sig = w.sign_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                             "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                             b'{"test": 2432232314}')
        self.assertEqual(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        hdrs = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330", "webhook-signature": "v1,bad " + sig}
        self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, hdrs, b'{"test": 2432232314}'))
        self.assertFalse(w.verify_webhook(w.DEFAULT_WHSEC, hdrs, b'{"test": 2432232315}'))
        self.assertFalse(w.verify_webhook("whsec_" + base64.b64encode(b"x" * 24).decode(),
                                          hdrs, b'{"test": 2432232314}'))
        self.assertFalse(w.verify_webhook(w.DEFAULT_WHSEC, hdrs, b'{"test": 2432232314}',
                                          tolerance_s=300))


class Jwt(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = w.TempDir()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_hs(self):
        for alg in ("HS256", "HS384", "HS512"):
            t = w.mint_jwt(w.client_claims("bob"), alg, "k" * 32)
            self.assertEqual(w.verify_jwt(t, alg, "k" * 32)["sub"], "bob")
            with self.assertRaises(ValueError):
                w.verify_jwt(t, alg, "j" * 32)
            with self.assertRaises(ValueError):
                w.verify_jwt(w.forge_tampered(t, sub="eve"), alg, "k" * 32)
            with self.assertRaises(ValueError):
                w.verify_jwt(w.forge_alg(t, "HS256" if alg != "HS256" else "HS512"), alg,
                             "k" * 32)
        with self.assertRaises(ValueError):
            w.verify_jwt(w.mint_jwt(w.expired_claims(), "HS256", "k" * 32), "HS256", "k" * 32)
        with self.assertRaises(ValueError):
            w.verify_jwt(w.forge_none(w.client_claims()), "HS256", "k" * 32)

    def test_rs_es(self):
        for alg in ("RS256", "ES256", "ES384", "ES512"):
            kp = w.KeyPair(alg, self.tmp.path)
            t = w.mint_jwt(w.client_claims("carol"), alg, kp)
            if alg.startswith("ES"):
                self.assertEqual(len(w.b64url_decode(t.split(".")[2])), 2 * w._EC_SIZE[alg])
            self.assertEqual(w.verify_jwt(t, alg, kp)["sub"], "carol")
            with self.assertRaises(ValueError):
                w.verify_jwt(w.forge_tampered(t, sub="eve"), alg, kp)
            other = w.KeyPair(alg, self.tmp.path)
            with self.assertRaises(ValueError):
                w.verify_jwt(t, alg, other)

    def test_der_raw_round_trip(self):
        raw = bytes([0x80] + [1] * 31) + bytes([0] * 31 + [5])
        self.assertEqual(w.ecdsa_der_to_raw(w.ecdsa_raw_to_der(raw), 32), raw)


class BackendPolicy(unittest.TestCase):
    def post(self, url, body=b"{}"):
        req = urllib.request.Request(url, data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, dict(r.getheaders()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def test_script_handler_default(self):
        with w.Backend() as be:
            be.script(503, w.Response(429, headers={"Retry-After": "1"}))
            be.handler = lambda req: 400 if req.json == {"bad": 1} else None
            self.assertEqual(self.post(be.url)[0], 503)
            st, h, _ = self.post(be.url)
            self.assertEqual((st, h.get("Retry-After")), (429, "1"))
            self.assertEqual(self.post(be.url, b'{"bad": 1}')[0], 400)
            be.respond(200, {"actions": []})
            st, _, body = self.post(be.url, b'{"type":"message"}')
            self.assertEqual((st, json.loads(body)), (200, {"actions": []}))
            self.assertEqual(len(be.wait_requests(4)), 4)
            self.assertEqual(be.events(), [{"type": "message"}])
            self.assertEqual(be.events(answered_2xx=True), [{"type": "message"}])

    def test_down_then_up(self):
        be = w.Backend(start=False)
        with self.assertRaises(urllib.error.URLError):
            self.post(be.url)
        be.start()
        try:
            self.assertEqual(self.post(be.url)[0], 200)
        finally:
            be.stop()


def _server_frame(op, payload, fin=True):
    return w.WsClient.frame(op, payload, fin=fin, mask=False)


class MiniServer:
    """Accepts one WebSocket, echoes data messages, pings once, closes with
    4000 on the text "bye" and answers 403 to paths other than /ok."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.received = []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        s, _ = self.ls.accept()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head = buf.decode()
        if not head.startswith("GET /ok"):
            s.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nX-Why: origin\r\n\r\nno")
            s.close()
            return
        key = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
               if ln.lower().startswith("sec-websocket-key")][0]
        acc = base64.b64encode(hashlib.sha1((key + w.WS_GUID).encode()).digest()).decode()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                   "Sec-WebSocket-Protocol: chat\r\n\r\n" % acc).encode())
        s.sendall(_server_frame(w.OP_PING, b"hi"))
        rbuf = b""
        while True:
            while True:
                fr = self.parse(rbuf)
                if fr:
                    break
                d = s.recv(65536)
                if not d:
                    return
                rbuf += d
            (fin, op, payload), rbuf = fr
            self.received.append((fin, op, payload))
            if op in (w.OP_TEXT, w.OP_BINARY):
                msg_op, msg = op, payload
            elif op == w.OP_CONT:
                msg += payload
            if op in (w.OP_TEXT, w.OP_BINARY, w.OP_CONT) and fin:
                op, payload = msg_op, msg
                if payload == b"bye":
                    s.sendall(_server_frame(w.OP_CLOSE, struct.pack("!H", 4000) + b"done"))
                elif payload == b"frag":
                    s.sendall(_server_frame(w.OP_TEXT, b"fr", fin=False))
                    s.sendall(_server_frame(w.OP_CONT, b"ag", fin=True))
                else:
                    s.sendall(_server_frame(op, payload))
            if op == w.OP_CLOSE:
                s.close()
                return

    @staticmethod
    def parse(b):
        if len(b) < 2:
            return None
        n, i = b[1] & 127, 2
        if n == 126:
            n, i = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            n, i = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < i + 4 + n:
            return None
        mk = b[i:i + 4]
        payload = w._mask(b[i + 4:i + 4 + n], mk)
        return (b[0] >> 7, b[0] & 15, payload), b[i + 4 + n:]


class WsClientAgainstMiniServer(unittest.TestCase):
    def server(self):
        srv = MiniServer()
        self.addCleanup(srv.ls.close)
        return srv

    def test_refused(self):
        srv = self.server()
        st, hdrs, body = w.WsClient.refused("ws://127.0.0.1:%d/no" % srv.port)
        self.assertEqual((st, hdrs.get("x-why"), body), (403, "origin", b"no"))

    def test_session(self):
        srv = self.server()
        ws = w.WsClient.connect("ws://127.0.0.1:%d/ok" % srv.port, query={"token": "t"},
                                subprotocols=["chat"], origin="http://x")
        self.assertEqual(ws.subprotocol, "chat")
        ws.send_text("héllo")
        self.assertEqual(ws.recv(), (w.OP_TEXT, "héllo"))
        ws.send_binary(b"\x00\xff" * 40000)
        self.assertEqual(ws.recv(), (w.OP_BINARY, b"\x00\xff" * 40000))
        ws.send_fragmented(w.OP_TEXT, ["ab", "cd", "ef"])
        self.assertEqual(ws.recv_text(), "abcdef")
        ws.send_text("frag")
        self.assertEqual(ws.recv_text(), "frag")
        w.wait_until(lambda: ws.pings == [b"hi"], 5, what="ping")
        w.wait_until(lambda: any(op == w.OP_PONG for _, op, _ in srv.received), 5, what="pong")
        ws.send_text("bye")
        self.assertEqual(ws.wait_closed(5), (4000, "done"))
        with self.assertRaises(w.WsClosed):
            ws.recv(1)
        ws.abort()


if __name__ == "__main__":
    unittest.main(verbosity=2)
