# SPDX-License-Identifier: MIT
"""cases_api.py — bad input on the control API (docs/contract.md §4, RFC 9110/9112,
issue 13 items 1, 2, 3, 5, 6): one standalone gateway with one connected
client; each case sends a request (through urllib, or byte for byte on a
raw socket where urllib would not send it), observes the status and
Content-Type, and checks that the client received nothing it should not.

The API runs with api.max_connections 300 (the issue's probe: 310
slow-drip sockets against 300 slots) and api.connection_timeout 2 s, so
that the slow-client cases stay short; everything else is default.

Threads: main thread, except the slowloris case's probe thread (it only
records statuses in a list).
"""

import socket
import threading
import time

import wsgate_test as w
from rel import (Scope, alive, describe_responses, drain, group, http_head, parse_responses,
                 raw_connect, raw_exchange)

CONN_LIMIT = 300
IDLE_TIMEOUT_S = 2


def setup(opts):
    fx = Scope(opts)
    fx.be = fx.backend()
    fx.gw = fx.gateway([w.route("/chat", fx.be.url)], shared=True,
                       config={"api": {"max_connections": CONN_LIMIT,
                                       "connection_timeout": "%ds" % IDLE_TIMEOUT_S}})
    fx.api = fx.gw.control()
    connect_client(fx)
    return fx


def connect_client(fx):
    tag = "api%d" % len(fx.be.snapshot())  # unique: a reconnect must not find the old one
    fx.ws = fx.client(fx.gw.edge_url + "/chat", query={"tag": tag})
    ev = fx.be.wait_event(lambda e: e["type"] == "connect" and
                          e.get("query", {}).get("tag") == tag, timeout=15)
    fx.cid = ev["connection_id"]
    w.wait_until(lambda: fx.api.get("/v1/connections/" + fx.cid).status == 200, 10)


def fixture_check(fx):
    """After each case: the shared gateway (restarted if it died) and a
    client that is still open (reconnected otherwise)."""
    problems = Scope.check(fx)
    if fx.ws.closed.is_set():
        problems.append("the client was disconnected (%s)" % fx.ws.close_code)
        connect_client(fx)
    return problems


G = group("api", "Bad input on the control API (contract §4)",
          "One `wsgate standalone` (api.max_connections %d, api.connection_timeout %d s, "
          "default 1 MiB body limit) with one connected client; requests through urllib or "
          "byte for byte on a raw socket." % (CONN_LIMIT, IDLE_TIMEOUT_S),
          lambda opts: _with_check(setup(opts)), asan=True)


def _with_check(fx):
    fx.check = lambda: fixture_check(fx)
    return fx


def msgs_path(fx):
    return "/v1/connections/%s/messages" % fx.cid


def client_got(fx, seconds=0.4):
    got = drain(fx.ws, seconds)
    return got, ("; the client received %r" % got[:3] if got else "; the client received nothing")


def status_case(fx, r, want, problem=True):
    """Observed status (and Content-Type); ok when it is `want` and, with
    problem=True, an RFC 9457 document."""
    ctype = r.headers.get("content-type", "-")
    got, note = client_got(fx)
    ok = r.status == want and not got and (not problem or ctype == "application/problem+json")
    return "HTTP %d (%s)%s" % (r.status, ctype, note), ok


@G.case("no token", "HTTP 401 with WWW-Authenticate: Bearer, problem+json")
def no_token(fx, sc):
    r = w.ControlApi(fx.gw.api_url).post(msgs_path(fx), "x")
    obs, ok = status_case(fx, r, 401)
    return obs, ok and r.headers.get("www-authenticate", "").startswith("Bearer")


@G.case("token without the scope (read token sends)", "HTTP 403, nothing sent")
def wrong_scope(fx, sc):
    return status_case(fx, fx.gw.control("read").send(fx.cid, "x"), 403)


@G.case("malformed JSON body", "HTTP 400, nothing sent")
def bad_json(fx, sc):
    return status_case(fx, fx.api.post(msgs_path(fx), b"{nope",
                                       content_type="application/json"), 400)


def send_raw_body(fx, n):
    """POST n bytes to the client's messages on a raw socket (the server may
    answer and close before reading it all)."""
    head = http_head("POST", msgs_path(fx), [
        ("Authorization", "Bearer " + fx.gw.api_token("send")),
        ("Content-Type", "text/plain"), ("Content-Length", str(n))])
    s = raw_connect(fx.gw.api_port, timeout=10)
    try:
        try:
            s.sendall(head)
            chunk = b"x" * 65536
            left = n
            while left > 0:
                s.sendall(chunk[:left])
                left -= min(left, len(chunk))
        except OSError:
            pass
        buf = b""
        s.settimeout(5)
        try:
            while b"\r\n\r\n" not in buf:
                c = s.recv(65536)
                if not c:
                    break
                buf += c
        except OSError:
            pass
        return parse_responses(buf)
    finally:
        s.close()


@G.case("body of 1 MiB + 1 byte", "HTTP 413 problem+json, nothing sent")
def body_too_big(fx, sc):
    resps = send_raw_body(fx, 1024 * 1024 + 1)
    got, note = client_got(fx)
    if not resps:
        return "no answer" + note, False
    st, h, _ = resps[0]
    ctype = h.get("content-type", "-")
    return ("HTTP %d (%s)%s" % (st, ctype, note),
            st == 413 and ctype == "application/problem+json" and not got)


def channel_case(fx, ch_escaped, want=400):
    r = fx.api.put("/v1/channels/%s/connections/%s" % (ch_escaped, fx.cid))
    subs = fx.api.get("/v1/connections/" + fx.cid).json or {}
    obs, ok = status_case(fx, r, want)
    chans = subs.get("channels", [])
    return obs + "; channels of the connection: %r" % chans[:3], ok and not chans


@G.case("channel name of 256 bytes", "HTTP 400, no subscription")
def channel_long(fx, sc):
    return channel_case(fx, "c" * 256)


@G.case("channel name with a control character (%01)", "HTTP 400, no subscription")
def channel_ctl(fx, sc):
    return channel_case(fx, "a%01b")


@G.case("channel name with NUL (%00)", "HTTP 400, no subscription")
def channel_nul(fx, sc):
    return channel_case(fx, "a%00b")


@G.case("unknown connection", "HTTP 410 problem+json")
def unknown_conn(fx, sc):
    return status_case(fx, fx.api.send("NoSuchConnectionId0000", "x"), 410)


@G.case("unsupported media type (application/xml)", "HTTP 415, nothing sent")
def bad_media(fx, sc):
    return status_case(fx, fx.api.post(msgs_path(fx), b"<x/>",
                                       content_type="application/xml"), 415)


def batch_case(fx, ctype, data):
    try:
        r = fx.api.post("/v1/batch", {"requests": [
            {"method": "POST", "path": msgs_path(fx), "body": data, "content_type": ctype}]})
    except OSError as e:
        why = alive(fx.gw)
        return "request failed (%s); %s" % (e, why or "gateway up"), False
    got = drain(fx.ws, 1.0)
    items = [x.get("status") for x in (r.json or {}).get("results", [])]
    why = alive(fx.gw)
    obs = "HTTP %d, item statuses %r; client received %r; %s" % (
        r.status, items, got[:2], why or "gateway up")
    return obs, r.status == 200 and items == [200] and got == [data] and not why


@G.case("batch item with content_type text/plain",
        "HTTP 200, item 200, the client receives the message, gateway up")
def batch_ctype_short(fx, sc):
    return batch_case(fx, "text/plain", "batched short")


@G.case("batch item with a 4 KiB content_type (text/plain; x=aaa…)",
        "HTTP 200, item 200, the client receives the message, gateway up (no crash)")
def batch_ctype_long(fx, sc):
    return batch_case(fx, "text/plain; x=" + "a" * 4096, "batched long")


@G.case("token limited to channels room.* posts /v1/broadcast",
        "HTTP 403 (a broadcast also reaches connections outside the claim); nothing sent")
def broadcast_scope(fx, sc):
    tok = fx.gw.api_token("publish", channels=["room.*"])
    r = w.ControlApi(fx.gw.api_url, tok).post("/v1/broadcast", "to everyone")
    return status_case(fx, r, 403)


def smuggle_case(fx, first_headers, first_body, want):
    """A framing-ambiguous send followed on the same connection by a plain
    pipelined send. Expected: `want`, the connection closed, the pipelined
    request never run, nothing delivered."""
    tok = fx.gw.api_token("send")
    first = http_head("POST", msgs_path(fx), [("Authorization", "Bearer " + tok),
                                               ("Content-Type", "text/plain")] + first_headers,
                      first_body)
    second = http_head("POST", msgs_path(fx), [("Authorization", "Bearer " + tok),
                                                ("Content-Type", "text/plain"),
                                                ("Content-Length", "9")], b"pipelined")
    buf, closed, _ = raw_exchange(fx.gw.api_port, first + second, timeout=6, quiet=1.5)
    resps = parse_responses(buf)
    got, note = client_got(fx, 0.6)
    sts = [st for st, _, _ in resps]
    ok = sts == [want] and closed and not got
    return describe_responses(resps, closed) + note, ok


@G.case("Content-Length and Transfer-Encoding: chunked, then a pipelined request",
        "HTTP 400 and close (RFC 9112 §6.1); the pipelined request is not run")
def cl_and_te(fx, sc):
    return smuggle_case(fx, [("Content-Length", "4"), ("Transfer-Encoding", "chunked")],
                        b"6\r\nsmugl1\r\n0\r\n\r\n", 400)


@G.case("two differing Content-Length headers",
        "HTTP 400 and close (RFC 9112 §6.3); nothing run")
def dup_cl(fx, sc):
    return smuggle_case(fx, [("Content-Length", "5"), ("Content-Length", "6")], b"hello!", 400)


@G.case("\"Transfer-Encoding :\" (space before the colon)",
        "HTTP 400 and close (RFC 9112 §5.1); nothing run")
def te_space(fx, sc):
    return smuggle_case(fx, [("Transfer-Encoding ", "chunked")],
                        b"6\r\nspaced\r\n0\r\n\r\n", 400)


@G.case("unknown transfer coding (Transfer-Encoding: foo)",
        "HTTP 501 and close (RFC 9112 §6.1); nothing run")
def te_unknown(fx, sc):
    return smuggle_case(fx, [("Transfer-Encoding", "foo")], b"6\r\nfoobar\r\n0\r\n\r\n", 501)


def long_uri(fx, n):
    data = http_head("GET", "/v1/connections/" + "a" * n,
                     [("Authorization", "Bearer " + fx.gw.api_token("read"))])
    buf, closed, err = raw_exchange(fx.gw.api_port, data, timeout=6)
    resps = parse_responses(buf)
    if not resps:
        return "no answer%s" % (" (%s)" % err if err else ""), False
    st, h, _ = resps[0]
    return (describe_responses(resps[:1], closed),
            st == 414 and h.get("content-type") == "application/problem+json")


@G.case("request line of 12,000 bytes", "HTTP 414 as application/problem+json")
def long_uri_12k(fx, sc):
    return long_uri(fx, 12000)


@G.case("request line of 70,000 bytes", "HTTP 414 as application/problem+json")
def long_uri_70k(fx, sc):
    return long_uri(fx, 70000)


@G.case("headers dripped one byte every 0.5 s (below the %d s idle timeout)" % IDLE_TIMEOUT_S,
        "the request is cut (408 or close) at a total deadline within 15 s, not kept alive by "
        "the drip (HAProxy's timeout http-request, typically 10 s)", timeout=60)
def drip_deadline(fx, sc):
    s = sc.socket(raw_connect(fx.gw.api_port, timeout=2))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    line = b"X-Drip: " + b"d" * 200
    i = 0
    while time.monotonic() - t0 < 25:
        try:
            s.sendall(line[i % len(line):i % len(line) + 1])
        except OSError:
            break
        i += 1
        s.settimeout(0.5)
        try:
            data = s.recv(4096)
            took = time.monotonic() - t0
            what = describe_responses(parse_responses(data), not data)
            return "%s after %.1f s (%d bytes dripped)" % (what, took, i), took <= 15
        except socket.timeout:
            continue
        except OSError as e:
            took = time.monotonic() - t0
            return "connection reset after %.1f s (%s)" % (took, e), took <= 15
    return "still open after %.0f s (%d bytes dripped, no answer)" % (
        time.monotonic() - t0, i), False


class Dripper:
    """Slow-drip sockets from 127.0.0.1 that reconnect when closed, as an
    attacker would (one byte per socket every second)."""

    def __init__(self, port, n):
        self.port, self.n = port, n
        self.socks = [None] * n
        self.next = [0.0] * n
        self.reconnects = 0

    def tick(self):
        now = time.monotonic()
        for i in range(self.n):
            if now < self.next[i]:
                continue
            self.next[i] = now + 1.0
            s = self.socks[i]
            try:
                if s is None:
                    s = raw_connect(self.port, timeout=1)
                    s.setblocking(False)
                    s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    self.socks[i] = s
                    self.reconnects += 1
                else:
                    s.send(b"X")
            except OSError:
                if s is not None:
                    s.close()
                self.socks[i] = None

    def open_count(self):
        return sum(1 for s in self.socks if s is not None)

    def close(self):
        for s in self.socks:
            if s is not None:
                s.close()


@G.case("slowloris: %d drip-feeding sockets from 127.0.0.1" % (CONN_LIMIT + 10),
        "/healthz from another address (127.0.0.2) answers 200 within 3 s every time "
        "(one address cannot take every slot; HAProxy's timeout http-request)", timeout=120)
def slowloris(fx, sc):
    dr = Dripper(fx.gw.api_port, CONN_LIMIT + 10)
    sc.own(dr, dr.close)
    probes, stop = [], threading.Event()

    def probe():
        while not stop.wait(1.0):
            t0 = time.monotonic()
            try:
                s = raw_connect(fx.gw.api_port, source="127.0.0.2", timeout=3)
                try:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    buf = b""
                    while b"\r\n\r\n" not in buf and time.monotonic() - t0 < 3:
                        s.settimeout(max(0.05, 3 - (time.monotonic() - t0)))
                        c = s.recv(4096)
                        if not c:
                            break
                        buf += c
                finally:
                    s.close()
                r = parse_responses(buf)
                probes.append(r[0][0] if r else "closed")
            except OSError as e:
                probes.append(type(e).__name__)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4:  # the drippers take their slots first
        dr.tick()
        time.sleep(0.05)
    th = threading.Thread(target=probe, daemon=True)
    th.start()
    try:
        while time.monotonic() - t0 < 16:
            dr.tick()
            time.sleep(0.05)
    finally:
        stop.set()
        th.join(5)
    held = dr.open_count()
    dr.close()
    ok_n = sum(1 for p in probes if p == 200)
    after = w.http_request(fx.gw.api_url + "/healthz", timeout=5)[0]
    obs = ("%d of %d probes answered 200 (others: %s); %d drip sockets open at the end, "
           "%d connects; /healthz after: %d" % (
               ok_n, len(probes), sorted({str(p) for p in probes if p != 200}) or "-", held,
               dr.reconnects, after))
    return obs, bool(probes) and ok_n == len(probes) and after == 200


@G.case("the API after every case above (control)", "a send reaches the client")
def api_still_serves(fx, sc):
    r = fx.api.send(fx.cid, "api still serves")
    got = drain(fx.ws, 1.0)
    return "HTTP %d; client received %r" % (r.status, got[:2]), \
        r.status == 200 and got == ["api still serves"]

