# SPDX-License-Identifier: MIT
"""cases_edge.py — bad input on the client side (docs/contract.md §2, RFC 6455,
issue 13 item 6): one standalone gateway with a route per limit, raw-socket
WebSocket clients, a recording backend. Each case observes the HTTP status
of the handshake or the close frame the client got, and what reached the
backend.

Threads: main thread only (see rel.py).
"""

import struct
import time

import wsgate_test as w
from rel import (Scope, alive, close_of, delivered, group, handshake_status, messages_of,
                 raw_connect)
import wsgate_ws

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}


def setup(opts):
    fx = Scope(opts)
    fx.be = fx.backend()
    fx.flood = fx.backend()
    chunk = "z" * 8000
    fx.flood.handler = lambda req: (
        w.Response(200, {"actions": [{"action": "send", "data": chunk}] * 50})
        if any(e.get("data") == "flood" for e in req.events()) else None)
    be = fx.be.url
    fx.gw = fx.gateway([
        # the first route's handshake_timeout is the one lws-wide timeout
        w.route("/open", be, limits={"handshake_timeout": "1s"}),
        w.route("/jwt", be, jwt=JWT),
        w.route("/origin", be, allowed_origins=["https://app.example"]),
        w.route("/small", be, limits={"max_message_bytes": 1000}),
        w.route("/rate", be, limits={"rate_limit": {"messages_per_second": 5, "burst": 5}}),
        w.route("/slow", fx.flood.url, limits={"max_outbound_bytes": 65536}),
    ], shared=True)
    fx.url = fx.gw.edge_url
    return fx


G = group("edge", "Bad input on the edge (contract §2)",
          "One `wsgate standalone` with a route per limit (`/small`: max_message_bytes 1000, "
          "`/rate`: 5 messages/s burst 5, `/slow`: max_outbound_bytes 64 KiB, `/jwt`: HS256, "
          "`/origin`: allowed_origins, handshake_timeout 1 s); raw-socket clients.", setup,
          asan=True)


def status_case(fx, path, want, **kw):
    st = handshake_status(fx.url + path, **kw)
    return "HTTP %s" % st, st == want


@G.case("unknown path", "HTTP 404 before any upgrade")
def unknown_path(fx, sc):
    return status_case(fx, "/nowhere", 404)


@G.case("plain GET on a route path", "HTTP 426 Upgrade Required")
def plain_get(fx, sc):
    st, hdrs, _ = w.http_request(fx.gw.http_edge_url + "/open")
    return "HTTP %d, Upgrade: %s" % (st, hdrs.get("upgrade", "-")), st == 426


@G.case("Sec-WebSocket-Version: 8", "HTTP 426 naming version 13")
def wrong_version(fx, sc):
    st, hdrs, ws, _ = w.WsClient.handshake(fx.url + "/open", version="8")
    if ws:
        ws.abort()
    v = hdrs.get("sec-websocket-version", "-")
    return "HTTP %d, Sec-WebSocket-Version: %s" % (st, v), st == 426 and v == "13"


@G.case("malformed Sec-WebSocket-Key", "HTTP 400")
def bad_key(fx, sc):
    return status_case(fx, "/open", 400, key="not-base64-of-16-bytes")


@G.case("17 KiB request header", "HTTP 431")
def big_headers(fx, sc):
    return status_case(fx, "/open", 431, headers={"X-Big": "a" * 17000})


@G.case("70 query arguments", "HTTP 414")
def many_args(fx, sc):
    return status_case(fx, "/open", 414, query={"a%d" % i: "1" for i in range(70)})


@G.case("request never completed", "HTTP 408 after handshake_timeout (1 s), then closed")
def handshake_timeout(fx, sc):
    s = sc.socket(raw_connect(fx.gw.edge_port, timeout=15))
    s.sendall(b"GET /open HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    t0 = time.monotonic()
    try:
        st, _, _ = wsgate_ws._read_http_head(s, t0 + 12)
    except (ConnectionError, OSError) as e:
        return "no answer (%s) after %.1f s" % (type(e).__name__, time.monotonic() - t0), False
    took = time.monotonic() - t0
    return "HTTP %d after %.1f s" % (st, took), st == 408 and took < 6


def token_case(fx, token, want=401):
    hdrs = {"Authorization": "Bearer " + token} if token else {}
    st = handshake_status(fx.url + "/jwt", headers=hdrs)
    return "HTTP %s" % st, st == want


@G.case("JWT with a bad signature", "HTTP 401")
def jwt_bad_sig(fx, sc):
    return token_case(fx, w.forge_tampered(w.mint_jwt(w.client_claims()), sub="mallory"))


@G.case("expired JWT", "HTTP 401")
def jwt_expired(fx, sc):
    return token_case(fx, w.mint_jwt(w.expired_claims()))


@G.case("JWT with alg none", "HTTP 401")
def jwt_none(fx, sc):
    return token_case(fx, w.forge_none(w.client_claims()))


@G.case("JWT signed with another algorithm (HS512 on an HS256 route)", "HTTP 401")
def jwt_other_alg(fx, sc):
    return token_case(fx, w.mint_jwt(w.client_claims(), "HS512", w.DEFAULT_CLIENT_SECRET * 2))


@G.case("no token on a JWT route", "HTTP 401")
def jwt_missing(fx, sc):
    return token_case(fx, None)


@G.case("valid JWT (control: the route admits good tokens)", "HTTP 101")
def jwt_good(fx, sc):
    return token_case(fx, w.mint_jwt(w.client_claims()), 101)


@G.case("Origin not in allowed_origins", "HTTP 403")
def wrong_origin(fx, sc):
    return status_case(fx, "/origin", 403, origin="https://evil.example")


@G.case("two Origin headers, the allowed one first",
        "refused (HTTP 400 or 403): an ambiguous Origin is never trusted")
def two_origins(fx, sc):
    st = handshake_status(fx.url + "/origin", origin="https://app.example",
                          extra_request_lines=["Origin: https://evil.example"])
    return "HTTP %s" % st, st in (400, 403)


def tagged(sc, url, tag, **kw):
    return sc.client(url, query={"tag": tag}, **kw)


def sent_data(fx, data):
    return [e for e in messages_of(fx.be) if e.get("data") == data]


@G.case("message over max_message_bytes", "close 1009; nothing delivered")
def too_big(fx, sc):
    ws = tagged(sc, fx.url + "/small", "big")
    ws.send_text("B" * 1001)
    code, text = close_of(ws)
    time.sleep(0.3)
    got = sent_data(fx, "B" * 1001)
    return text + ("; delivered to the backend" if got else ""), code == 1009 and not got


@G.case("invalid UTF-8 in a text message", "close 1007; nothing delivered")
def bad_utf8(fx, sc):
    ws = tagged(sc, fx.url + "/open", "utf8")
    ws.send_text(b"bad \xc3\x28 utf8")
    code, text = close_of(ws)
    got = [e for e in messages_of(fx.be) if "utf8" in str(e.get("data"))]
    return text + ("; delivered to the backend" if got else ""), code == 1007 and not got


@G.case("messages over the rate limit", "close 1008")
def rate_limit(fx, sc):
    ws = tagged(sc, fx.url + "/rate", "rate")
    for i in range(30):
        try:
            ws.send_text("r%d" % i)
        except OSError:
            break
    code, text = close_of(ws)
    return text, code == 1008


@G.case("client that never reads while the backend floods it",
        "close 1008 \"slow consumer\" (disconnect event with that code and reason)")
def slow_consumer(fx, sc):
    ws = tagged(sc, fx.url + "/slow", "slow", rcvbuf=4096)
    ws.pause_reading()
    for _ in range(6):
        ws.send_text("flood")
    try:
        ev = fx.flood.wait_event(lambda e: e["type"] == "disconnect", timeout=20)
    except AssertionError:
        return "no disconnect within 20 s", False
    return ("disconnect event: code %s reason %r" % (ev.get("code"), ev.get("reason")),
            (ev.get("code"), ev.get("reason")) == (1008, "slow consumer"))


@G.case("unmasked client frame (RFC 6455 §5.1)", "close 1002; the frame is not delivered")
def unmasked(fx, sc):
    ws = tagged(sc, fx.url + "/open", "unmasked")
    ws.send_frame(w.OP_TEXT, "unmasked-frame", mask=False)
    code, text = close_of(ws)
    time.sleep(0.3)
    got = sent_data(fx, "unmasked-frame")
    return text + ("; delivered to the backend" if got else "; not delivered"), \
        code == 1002 and not got


@G.case("close frame with a 1-byte payload (RFC 6455 §5.5.1)", "close 1002")
def close_one_byte(fx, sc):
    ws = tagged(sc, fx.url + "/open", "close1")
    ws.send_frame(w.OP_CLOSE, b"\x03")
    code, text = close_of(ws)
    return text, code == 1002


@G.case("close reason that is not UTF-8 (RFC 6455 §7.1.6)", "close 1007")
def close_bad_reason(fx, sc):
    ws = tagged(sc, fx.url + "/open", "close-utf8")
    ws.send_frame(w.OP_CLOSE, struct.pack("!H", 1000) + b"bye \xff\xfe")
    code, text = close_of(ws)
    return text, code == 1007


@G.case("empty first fragment, then a continuation",
        "the message is delivered whole; the connection stays open; no crash")
def empty_fragment(fx, sc):
    ws = tagged(sc, fx.url + "/open", "frag")
    ws.send_frame(w.OP_TEXT, b"", fin=False)
    ws.send_frame(w.OP_CONT, b"after-empty", fin=True)
    got = delivered(fx.be, "after-empty", 5)
    open_ = not ws.closed.is_set()
    why = alive(fx.gw)
    obs = "%s; connection %s; %s" % ("delivered" if got else "not delivered within 5 s",
                                     "open" if open_ else "closed (%s)" % ws.close_code,
                                     why or "gateway up")
    return obs, got and open_ and not why


@G.case("the gateway after every case above (control)",
        "still serves: a new client's message is delivered")
def still_serves(fx, sc):
    ws = tagged(sc, fx.url + "/open", "after")
    ws.send_text("edge still serves")
    ok = delivered(fx.be, "edge still serves")
    return ("delivered" if ok else "not delivered within 10 s"), ok

