# SPDX-License-Identifier: MIT
"""test_api_hardening.py — the control API against an attacker, through the
binary: batch items with a content_type (once a use-after-free), slow-drip
clients cut at a total deadline and one address unable to take every
connection slot, a channels-limited token unable to broadcast, HTTP/1.1
framing refused as RFC 9112 and HAProxy refuse it (Content-Length with
Transfer-Encoding, differing Content-Lengths, whitespace before a colon,
unknown transfer codings; the connection closed so nothing pipelined after
runs), NUL and control characters in channel names (400 wherever a channel
name is taken) and 414 as a problem document.

Raw-socket helpers live here: they must send what no HTTP library sends."""
import json
import select
import socket
import threading
import time

import wsgate_test as w

PROBLEM = "application/problem+json"


def read_responses(sock, timeout=10.0):
    """Reads from sock until the server closes it (or timeout). Returns
    (responses, closed): each response (status, headers with lower-case
    names, body bytes), framed by Content-Length; closed is True when the
    server ended the connection."""
    buf, closed = b"", False
    sock.settimeout(0.2)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buf += chunk
    out = []
    while b"\r\n\r\n" in buf:
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        buf = rest[n:]
    return out, closed


def exchange(port, data, timeout=10.0):
    """Sends raw bytes on a fresh connection and reads as read_responses."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        return read_responses(s, timeout)
    finally:
        s.close()


class ApiCase(w.GatewayTestCase):
    """A gateway, one WebSocket client subscribed to channel "c" and known
    to the registry; self.api is an admin client."""
    config = {}

    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([w.route("/chat", self.be.url)], config=self.config)
        self.api = self.gw.control()
        self.ws = self.client(self.gw.edge_url + "/chat")
        self.cid = self.be.wait_event(lambda e: e["type"] == "connect", 15)["connection_id"]
        w.wait_until(lambda: self.api.get("/v1/connections/" + self.cid).status == 200, 10)
        self.assertEqual(self.api.put("/v1/channels/c/connections/" + self.cid).status, 204)
        self.token = self.gw.api_token("admin")
        self.auth = "Authorization: Bearer %s\r\n" % self.token

    def assert_nothing_delivered(self):
        """Nothing reached the client: a send made now is the first frame it
        gets (a frame sent earlier would arrive before it)."""
        self.assertEqual(self.api.send(self.cid, "marker").status, 200)
        self.assertEqual(self.ws.recv(10), (w.OP_TEXT, "marker"))

    def assert_problem(self, resp, status):
        st, headers, body = resp
        self.assertEqual(st, status, resp)
        self.assertEqual(headers.get("content-type"), PROBLEM, resp)
        self.assertEqual(json.loads(body)["status"], status)


class BatchContentType(ApiCase):
    def test_item_content_type_is_honoured(self):
        """An item's content_type (short, or long enough that a freed copy
        of it is unmapped) decides how its body is sent; the gateway lives."""
        long_ct = "application/octet-stream; p=" + "x" * 200000
        path = "/v1/connections/%s/messages" % self.cid
        items = [
            {"method": "POST", "path": path, "body": "short", "content_type":
             "application/octet-stream"},
            {"method": "POST", "path": path, "body": "long", "content_type": long_ct},
            {"method": "POST", "path": path, "body": '{"data":"json"}',
             "content_type": "application/json"},
            {"method": "POST", "path": path, "body": "text", "content_type":
             "text/plain; charset=utf-8"},
            {"method": "POST", "path": path, "body": "<x/>", "content_type": "application/xml"},
            {"method": "POST", "path": path, "body": "x", "content_type": 5},
            {"method": "POST", "path": "/v1/channels/c/messages", "body": "pub",
             "content_type": "application/octet-stream"},
        ]
        for _ in range(3):  # a use-after-free may need a few rounds to bite
            r = self.api.post("/v1/batch", {"requests": items})
            self.assertEqual(r.status, 200, r)
            self.assertEqual([x["status"] for x in r.json["results"]],
                             [200, 200, 200, 200, 415, 400, 202])
            self.assertEqual([self.ws.recv(10) for _ in range(5)], [
                (w.OP_BINARY, b"short"), (w.OP_BINARY, b"long"), (w.OP_TEXT, "json"),
                (w.OP_TEXT, "text"), (w.OP_BINARY, b"pub")])
        self.assertTrue(self.gw.running())
        self.assertEqual(w.http_request(self.gw.api_url + "/healthz")[0], 200)


class ChannelsClaim(ApiCase):
    """contract §4: a channels claim limits publish and subscribe to matching
    channels. A broadcast reaches every connection, in any channel or
    none, so a token with the claim (any claim, even ["*"]) cannot
    broadcast. Connection- and user-addressed operations are governed by
    their scopes (send, disconnect), not by the claim."""

    def test_channels_limited_token_cannot_broadcast(self):
        for scope, channels in (("publish", ["room.*"]), ("admin", ["room.*"]),
                                ("publish", ["*"]), ("publish", [])):
            api = w.ControlApi(self.gw.api_url, self.gw.api_token(scope, channels=channels))
            for path in ("/v1/broadcast", "/v1/broadcast?route=/chat"):
                r = api.post(path, "to everyone")
                self.assertEqual(r.status, 403, (scope, channels, path, r))
                self.assertEqual(r.headers["content-type"], PROBLEM)
            r = api.post("/v1/batch", {"requests": [
                {"method": "POST", "path": "/v1/broadcast", "body": "to everyone"}]})
            self.assertEqual([x["status"] for x in r.json["results"]], [403], r)
        self.assert_nothing_delivered()
        # the same token still publishes where its claim allows
        api = w.ControlApi(self.gw.api_url, self.gw.api_token("publish", channels=["c"]))
        self.assertEqual(api.post("/v1/channels/c/messages", "in c").status, 202)
        self.assertEqual(self.ws.recv_text(10), "in c")
        # a token without the claim broadcasts
        self.assertEqual(self.gw.control("publish").post("/v1/broadcast", "all").status, 202)
        self.assertEqual(self.ws.recv_text(10), "all")

    def test_user_send_follows_the_send_scope(self):
        api = w.ControlApi(self.gw.api_url, self.gw.api_token("send", channels=["room.*"]))
        r = api.post("/v1/users/nobody/messages", "x")
        self.assertEqual((r.status, r.json), (202, {"connections": 0}))


class Framing(ApiCase):
    def head(self, path="/v1/channels/c/messages", extra=""):
        return ("POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: text/plain\r\n%s"
                % (path, self.auth, extra))

    def pipelined_send(self):
        body = "smuggled"
        return ("POST /v1/connections/%s/messages HTTP/1.1\r\nHost: x\r\n%s"
                "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                % (self.cid, self.auth, len(body), body))

    def refused(self, raw, status):
        """raw gets one problem answer with status, the connection is closed
        and nothing (neither it nor the request pipelined after it) ran."""
        resps, closed = exchange(self.gw.api_port, (raw + self.pipelined_send()).encode())
        self.assertEqual(len(resps), 1, resps)
        self.assert_problem(resps[0], status)
        self.assertTrue(closed, "connection left open after %d" % status)
        self.assert_nothing_delivered()

    def test_content_length_with_transfer_encoding(self):
        self.refused(self.head(extra="Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
                     + "1\r\na\r\n0\r\n\r\n", 400)
        self.refused(self.head(extra="Transfer-Encoding: chunked\r\nContent-Length: 13\r\n\r\n")
                     + "1\r\na\r\n0\r\n\r\n", 400)

    def test_differing_content_lengths(self):
        self.refused(self.head(extra="Content-Length: 1\r\nContent-Length: 2\r\n\r\n") + "ab", 400)
        # the same value twice is one length (RFC 9112 §6.3)
        resps, _ = exchange(self.gw.api_port, (self.head(
            extra="Content-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
            + "ab").encode())
        self.assertEqual([x[0] for x in resps], [202])
        self.assertEqual(self.ws.recv_text(10), "ab")

    def test_whitespace_before_colon(self):
        self.refused(self.head(extra="Transfer-Encoding : chunked\r\n\r\n")
                     + "1\r\na\r\n0\r\n\r\n", 400)
        self.refused(self.head(extra="Content-Length\t: 1\r\n\r\n") + "a", 400)

    def test_transfer_codings(self):
        self.refused(self.head(extra="Transfer-Encoding: gzip\r\n\r\n") + "abc", 501)
        self.refused(self.head(extra="Transfer-Encoding: gzip, chunked\r\n\r\n")
                     + "1\r\na\r\n0\r\n\r\n", 501)
        self.refused(self.head(extra="Transfer-Encoding: chunked;x=1\r\n\r\n")
                     + "1\r\na\r\n0\r\n\r\n", 501)
        self.refused(self.head(extra="Transfer-Encoding: chunked, chunked\r\n\r\n")
                     + "1\r\na\r\n0\r\n\r\n", 400)
        self.refused(self.head(extra="Transfer-Encoding: chunked \r\n\r\n")
                     + "1\r\na\r\n0\r\n\r\n", 400)
        self.refused(self.head(extra="Transfer-Encoding: chunked\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n") + "1\r\na\r\n0\r\n\r\n", 400)
        # chunked alone is fine
        resps, _ = exchange(self.gw.api_port, (self.head(
            extra="Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            + "2\r\nok\r\n0\r\n\r\n").encode())
        self.assertEqual([x[0] for x in resps], [202])
        self.assertEqual(self.ws.recv_text(10), "ok")


class Names(ApiCase):
    def test_nul_and_control_characters_in_channel_names(self):
        bad = ["a%00b", "%00", "a%01b", "a%1Fb", "a%7Fb", "a%0Ab"]
        before = self.api.get("/v1/channels").json
        for ch in bad:
            for method, path in (("PUT", "/v1/channels/%s/connections/" + self.cid),
                                 ("DELETE", "/v1/channels/%s/connections/" + self.cid),
                                 ("GET", "/v1/channels/%s/connections"),
                                 ("POST", "/v1/channels/%s/messages"),
                                 ("GET", "/v1/connections?channel=%s"),
                                 ("GET", "/v1/channels?prefix=%s")):
                r = self.api.request(method, path % ch, "x" if method == "POST" else None)
                self.assertEqual(r.status, 400, (method, path % ch, r))
                self.assertEqual(r.headers["content-type"], PROBLEM)
        raw = ["a\u0001b", "a\u001fb", "a\u007fb"]
        items = [{"method": "POST", "path": "/v1/channels/%s/messages" % ch, "body": "x"}
                 for ch in bad]
        items += [{"method": m, "path": "/v1/channels/%s/%s" % (ch, rest), "body": "x"}
                  for ch in raw for m, rest in (("POST", "messages"),
                                                ("PUT", "connections/" + self.cid))]
        r = self.api.post("/v1/batch", {"requests": items})
        self.assertEqual([x["status"] for x in r.json["results"]], [400] * len(items), r)
        # \u0000 anywhere in a batch makes the whole batch malformed JSON to us
        r = self.api.post("/v1/batch", {"requests": [
            {"method": "POST", "path": "/v1/channels/a\u0000b/messages", "body": "x"}]})
        self.assertEqual((r.status, r.headers["content-type"]), (400, PROBLEM), r)
        self.assert_nothing_delivered()
        self.assertEqual(self.api.get("/v1/channels").json, before)
        # NUL elsewhere in a path is a malformed request too, not a missing resource
        self.assertEqual(self.api.post("/v1/connections/x%00y/messages", "x").status, 400)

    def test_414_is_a_problem_document(self):
        for n in (8193, 12000):
            st, headers, body = w.http_request(self.gw.api_url + "/v1/channels/" + "a" * n
                                               + "/connections", headers={
                                                   "Authorization": "Bearer " + self.token})
            self.assertEqual(st, 414, n)
            self.assertEqual(headers["content-type"], PROBLEM)
            self.assertEqual(json.loads(body)["status"], 414)
        # past the 16 KiB connection pool libmicrohttpd answers itself (docs/api.md)
        st, _, _ = w.http_request(self.gw.api_url + "/v1/channels/" + "a" * 20000)
        self.assertEqual(st, 414)
        # at the limit the request is routed (a channel name that long is a 400)
        target = "/v1/channels/" + "a" * (8192 - len("/v1/channels/") - len("/connections")) \
                 + "/connections"
        self.assertEqual(len(target), 8192)
        st, _, body = w.http_request(self.gw.api_url + target,
                                     headers={"Authorization": "Bearer " + self.token})
        self.assertEqual(st, 400, body)
        # a request-target with a space in it is malformed
        resps, closed = exchange(self.gw.api_port,
                                 ("GET /v1/channels/a b/connections HTTP/1.1\r\nHost: x\r\n%s\r\n"
                                  % self.auth).encode())
        self.assert_problem(resps[0], 400)
        self.assertTrue(closed)


class Drippers:
    """n sockets that each send head, then one byte every `every` seconds
    (a slowloris client), from source address `source`. Records when the
    server closed each (None while open). Stopped by close()."""

    def __init__(self, port, n, head=b"", source="127.0.0.1", every=0.5):
        self.socks, self.closed_at = [], [None] * n
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((source, 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", port))
            s.setblocking(False)
            self.socks.append(s)
        self.head, self.every = head, every
        self._stop = threading.Event()
        for i in range(n):
            self._send(i, head)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, i, data):
        if self.closed_at[i] is not None or not data:
            return
        try:
            self.socks[i].send(data)
        except OSError:
            self.closed_at[i] = time.monotonic()

    def _poll_closed(self):
        open_ = [s for i, s in enumerate(self.socks) if self.closed_at[i] is None]
        if not open_:
            return
        readable, _, _ = select.select(open_, [], [], 0)
        for s in readable:
            i = self.socks.index(s)
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                self.closed_at[i] = time.monotonic()

    def _run(self):
        while not self._stop.wait(self.every):
            self._poll_closed()
            for i in range(len(self.socks)):
                self._send(i, b"x")

    def n_closed(self):
        return sum(1 for t in self.closed_at if t is not None)

    def close(self):
        self._stop.set()
        self.thread.join(10)
        for s in self.socks:
            s.close()


class SlowDrip(w.GatewayTestCase):
    def drippers(self, *a, **kw):
        d = Drippers(*a, **kw)
        self.addCleanup(d.close)
        return d

    def test_cut_at_the_total_deadline(self):
        """Dripping one byte every 0.5 s (well inside the idle timeout) no
        longer holds a connection: the request line is due within
        api.connection_timeout (3 s here), the head and body within
        api.request_timeout (default 10 s), counted from its start, not from
        the last byte."""
        gw = self.gateway([w.route("/chat")], config={"api": {"connection_timeout": "3s"}})
        head = b"POST /v1/channels/c/messages HTTP/1.1\r\nHost: x\r\nX-Drip: "
        in_head = self.drippers(gw.api_port, 10, head)
        in_line = self.drippers(gw.api_port, 10, b"GET /healthz")
        # a client that is slow but within its deadline is served
        s = socket.create_connection(("127.0.0.1", gw.api_port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.5)
        s.sendall(b"Host: x\r\n\r\n")
        s.settimeout(10)
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
        # kept alive, idle for less than connection_timeout, then served again
        time.sleep(1.0)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
        w.wait_until(lambda: in_line.n_closed() == 10, 15,
                     what="every connection dripping its request line closed")
        w.wait_until(lambda: in_head.n_closed() == 10, 30,
                     what="every connection dripping its head closed")
        self.assertEqual(w.http_request(gw.api_url + "/healthz")[0], 200)
        metrics = w.http_request(gw.api_url + "/metrics")[2].decode()
        closes = [ln for ln in metrics.splitlines()
                  if ln.startswith("wsgate_api_deadline_closes_total ")]
        self.assertEqual(len(closes), 1, metrics[-2000:])
        self.assertGreaterEqual(int(closes[0].split()[1]), 20)

    def test_body_cut_at_the_request_deadline(self):
        """A complete head, then a body dripped one byte every 0.5 s: cut
        once api.request_timeout (its default, 10 s) has passed since the
        request began, never kept alive by the drip."""
        gw = self.gateway([w.route("/chat")])
        tok = gw.api_token("publish")
        head = ("POST /v1/channels/c/messages HTTP/1.1\r\nHost: x\r\n"
                "Authorization: Bearer %s\r\nContent-Type: text/plain\r\n"
                "Content-Length: 200\r\n\r\n" % tok).encode()
        body = self.drippers(gw.api_port, 5, head)
        w.wait_until(lambda: body.n_closed() == 5, 25,
                     what="every connection dripping its body closed")
        self.assertEqual(w.http_request(gw.api_url + "/healthz")[0], 200)

    def test_one_address_cannot_take_every_slot(self):
        """The probe of issue 13 with default limits: 310 slow-drip sockets
        from one address against api.max_connections 300. The default
        api.max_connections_per_ip leaves slots for everyone else, so
        /healthz and an API call from another address answer meanwhile."""
        gw = self.gateway([w.route("/chat")], config={"api": {"max_connections": 300}})
        head = b"POST /v1/channels/c/messages HTTP/1.1\r\nHost: x\r\nX-Drip: "
        drip = self.drippers(gw.api_port, 310, head, source="127.0.0.2", every=1.0)
        time.sleep(1.5)  # every drip socket accepted or refused by now
        st, _, body = w.http_request(gw.api_url + "/healthz", timeout=5)
        self.assertEqual(st, 200, body)
        r = w.ControlApi(gw.api_url, gw.api_token("read"), timeout=5).get("/v1/channels")
        self.assertEqual(r.status, 200, r)
        self.assertGreaterEqual(drip.n_closed(), 310 - 256, "per-IP limit not applied")


if __name__ == "__main__":
    w.main()
