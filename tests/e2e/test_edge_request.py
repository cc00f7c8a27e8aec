# SPDX-License-Identifier: MIT
"""test_edge_request.py — the edge reads each client's HTTP request itself
(ws-edge/edge_accept.c, edge_request.c) before lws sees the socket, through
the real binary over raw sockets:

- a request arriving a byte at a time, and one whose first frame arrives in
  the same write as the request, are upgraded and their frames delivered;
- Upgrade / Connection tokens are found in any of a repeated header;
- the path is percent-decoded and "/x/../" collapsed before routing; query
  arguments are decoded ('+' is a space) in the connect event;
- bad input is refused with a status and changes nothing: garbage 400, a
  bad escape 400, headers over 16 KiB 431, over 64 headers 431, over 64
  query arguments 414, a missing
  or malformed Sec-WebSocket-Key 400, version 8 426 naming version 13, a
  POST on a route 426; the gateway serves the next client as before;
- a request left incomplete is answered 408 after handshake_timeout;
- with 1,024 requests being read on a loop, the next socket makes the
  oldest go with 408 (long before its timeout) and the loop keeps serving;
- an authorized route (the authorizer) still admits and refuses while other
  clients are held open.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import base64
import os
import re
import resource
import socket
import time
import urllib.parse

import wsgate_test as w
import wsgate_ws


def raw_request(path, host="x", key=None, version="13", extra=()):
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s HTTP/1.1" % path, "Host: " + host, "Upgrade: websocket",
             "Connection: Upgrade"]
    if key:
        lines.append("Sec-WebSocket-Key: " + key)
    if version:
        lines.append("Sec-WebSocket-Version: " + version)
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_head(sock, timeout=10.0):
    """(status, headers, rest) of the response, or (None, {}, b"") when the
    socket closed first."""
    try:
        return wsgate_ws._read_http_head(sock, time.monotonic() + timeout)
    except ConnectionError:
        return None, {}, b""


class EdgeRequest(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.az = self.authorizer()
        self.gw = self.gateway([
            w.route("/chat", self.be.url, limits={"handshake_timeout": "1s"}),
            w.route("/authz", self.be.url, auth={"authorizer": self.az.url}),
        ])
        u = urllib.parse.urlsplit(self.gw.edge_url)
        self.addr = (u.hostname, u.port)

    def sock(self):
        s = socket.create_connection(self.addr, timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.addCleanup(s.close)
        return s

    def answer(self, data, pieces=None):
        s = self.sock()
        if pieces:
            for i in range(0, len(data), pieces):
                s.sendall(data[i:i + pieces])
        else:
            s.sendall(data)
        return s, read_head(s)

    def still_serves(self):
        ws = self.client(self.gw.edge_url + "/chat")
        ws.send_text("still here")
        self.be.wait_event(lambda e: e.get("type") == "message" and e.get("data") == "still here")

    def test_request_a_byte_at_a_time(self):
        req = raw_request("/x/../chat?room=a%20b+c&e=%E2%82%AC&flag", host="example.test")
        s, (st, hdrs, rest) = self.answer(req, pieces=1)
        self.assertEqual(st, 101)
        self.assertTrue(hdrs.get("sec-websocket-accept"))
        ev = self.be.wait_event(lambda e: e.get("type") == "connect")
        self.assertEqual(ev["route"], "/chat")
        self.assertEqual(ev["query"], {"room": "a b c", "e": "\u20ac", "flag": ""})
        self.assertEqual(ev["headers"].get("host"), "example.test")
        client = w.WsClient(s, rest)
        client.send_text("one")
        self.be.wait_event(lambda e: e.get("type") == "message" and e.get("data") == "one")

    def test_upgrade_named_in_a_repeated_header(self):
        req = raw_request("/chat").replace(b"Connection: Upgrade\r\n",
                                           b"Connection: keep-alive\r\nConnection: Upgrade\r\n")
        s, (st, _, _) = self.answer(req)
        self.assertEqual(st, 101)

    def test_first_frame_in_the_same_write(self):
        frame = w.WsClient.frame(w.OP_TEXT, "early")
        s, (st, _, rest) = self.answer(raw_request("/chat") + frame)
        self.assertEqual(st, 101)
        ev = self.be.wait_event(lambda e: e.get("type") == "message")
        self.assertEqual(ev["data"], "early")
        self.assertEqual(ev["seq"], 2)

    def test_bad_requests_are_refused_and_change_nothing(self):
        cases = [
            (b"HELLO THERE\r\n\r\n", 400),
            (raw_request("/ch%zzat"), 400),
            (raw_request("/ch%00at"), 400),
            (raw_request("/chat", extra=["X-Big: " + "a" * 17000]), 431),
            (raw_request("/chat", extra=["X-H%d: v" % i for i in range(70)]), 431),
            (raw_request("/chat?" + "&".join("a%d=1" % i for i in range(70))), 414),
            (raw_request("/chat", key=""), 400),
            (raw_request("/chat", key="not-base64-of-16-bytes"), 400),
            (raw_request("/chat", version="8"), 426),
            (b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", 426),
            (raw_request("/nowhere"), 404),
        ]
        for data, want in cases:
            s, (st, hdrs, _) = self.answer(data)
            self.assertEqual(st, want, data[:60])
            if want == 426 and b"Version: 8" in data:
                self.assertEqual(hdrs.get("sec-websocket-version"), "13")
            s.settimeout(5)
            self.assertEqual(s.recv(4096 * 8) if st != 431 else b"", b"")  # then closed
        time.sleep(0.3)
        self.assertEqual(self.be.events(), [], "no refused request made an event")
        self.still_serves()
        _, _, body = w.http_request(self.gw.api_url + "/metrics")
        m = re.search(r"^wsgate_handshakes_rejected_total (\d+)", body.decode(), re.M)
        self.assertIsNotNone(m, body[:300])
        self.assertGreaterEqual(int(m.group(1)), len(cases))

    def test_incomplete_request_times_out_408(self):
        s = self.sock()
        s.sendall(raw_request("/chat")[:40])
        st, _, _ = read_head(s, timeout=15)
        self.assertEqual(st, 408)
        self.still_serves()

    def test_authorizer_while_clients_are_held(self):
        held = self.clients(self.gw.edge_url + "/chat", 50, lambda i: {"n": str(i)})
        self.az.allow(user="u")
        ok = self.client(self.gw.edge_url + "/authz", query={"ok": "1"},
                         subprotocols=["v1"])
        self.assertEqual(ok.subprotocol, "v1")
        ok.send_text("admitted")
        ev = self.be.wait_event(lambda e: e.get("data") == "admitted")
        self.assertEqual(ev["user"], "u")
        self.az.deny(403)
        st, _, _ = w.WsClient.refused(self.gw.edge_url + "/authz", query={"ok": "0"})
        self.assertEqual(st, 403)
        for c in held:
            self.assertIsNone(c.close_code)


class PendingRequests(w.GatewayTestCase):
    def test_oldest_request_being_read_makes_room(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 1400:
            self.skipTest("needs 1,400 open files")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1400), hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        be = self.backend()
        gw = self.gateway([w.route("/chat", be.url, limits={"handshake_timeout": "60s"})],
                          config={"edge": {"threads": 1}})
        u = urllib.parse.urlsplit(gw.edge_url)
        partial = raw_request("/chat")[:30]
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        first = socket.create_connection((u.hostname, u.port), timeout=10)
        socks.append(first)
        first.sendall(partial)
        for _ in range(1023):  # the loop now reads 1,024 requests
            s = socket.create_connection((u.hostname, u.port), timeout=10)
            s.sendall(partial)
            socks.append(s)
        ws = self.client(gw.edge_url + "/chat")  # the 1,025th socket
        st, _, _ = read_head(first, timeout=20)
        self.assertEqual(st, 408, "the oldest request goes, long before its 60 s timeout")
        ws.send_text("served")
        be.wait_event(lambda e: e.get("data") == "served")


if __name__ == "__main__":
    w.main()
