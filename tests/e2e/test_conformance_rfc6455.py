# SPDX-License-Identifier: MIT
"""test_conformance_rfc6455.py — the protocol cases of Autobahn|Testsuite's
sections 1-7 and 9 (framing, pings, reserved bits, opcodes, fragmentation,
UTF-8, close handling, limits), each with the behaviour RFC 6455 asks of a
server, sent on a raw socket to the real binary.

Autobahn echoes; wsgate forwards to a backend, so each case is judged by:
- `deliver`: the messages the backend gets from that connection, in order;
- `pongs`: the pong payloads the client gets back;
- `close`: the close codes the server may answer with (None: the
  connection stays open — the test then sends a marker message, waits for
  it at the backend and closes with 1000, which must be echoed). 1006 in a
  set means "the TCP connection may end without a close frame" (RFC 6455
  §7.1.7 lets a server fail a connection either way).

A case the edge answers differently from the RFC is listed with what it
does and `deviation`, and docs/spec-deviations.md says why. The table in
docs/edge.md ("Conformance") is written from this file's results by
tests/conformance/rfc6455_table.py (WSGATE_CONFORMANCE_RESULTS=<json>).
Cases already covered in depth elsewhere (unmasked frames:
test_edge_protocol.py; close-frame rules: the same; limits:
test_edge_frames.py) appear here once each, for the table.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import json
import os
import struct
import time

import wsgate_test as w

T, B, C, PING, PONG, CLOSE = 1, 2, 0, 9, 10, 8
LIMIT = 1 << 20  # routes[].limits.max_message_bytes for section 9


def f(op, payload=b"", fin=True, rsv=0, mask=True):
    return w.WsClient.frame(op, payload, fin=fin, mask=mask, rsv=rsv)


def close_frame(code=None, reason=b""):
    return f(CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def chunks(data, n):
    """data cut into writes of n bytes (a frame split across TCP segments)."""
    return [data[i:i + n] for i in range(0, len(data), n)]


KOSME = "κόσμε".encode()
FAIL = (1002, 1006)  # "Fail the WebSocket Connection" (§7.1.7)


LATEST_PONG = ("deviation: one pong for the pings read together, the first one's payload "
               "(lws 4.1; §5.5.3 allows answering only the most recent)")


def case(cid, what, send, rfc, deliver=(), pongs=(), close=None, note="", latest_pong=False):
    """send: bytes, or a list of writes. latest_pong: pings read together may
    get one pong (RFC 6455 §5.5.3; lws 4.1 answers the first of them)."""
    return {"id": cid, "what": what, "send": send if isinstance(send, list) else [send],
            "rfc": rfc, "deliver": list(deliver), "pongs": list(pongs), "close": close,
            "note": note or (LATEST_PONG if latest_pong else ""), "latest_pong": latest_pong}


def pongs_ok(got, want, latest_pong):
    """got answers want: all of them, or (latest_pong) a non-empty
    subsequence in order (one pong may answer several pings)."""
    if got == want:
        return True
    if not latest_pong or not got:
        return False
    it = iter(want)
    return all(any(p == q for q in it) for p in got)


def section_1():
    out = []
    for i, n in enumerate((0, 125, 126, 127, 128, 65535, 65536)):
        out.append(case("1.1.%d" % (i + 1), "text, %d bytes" % n, f(T, b"*" * n),
                        "§5.2 lengths 7/16/64-bit", [(T, "*" * n)]))
        out.append(case("1.2.%d" % (i + 1), "binary, %d bytes" % n, f(B, b"\xfe" * n),
                        "§5.2", [(B, b"\xfe" * n)]))
    out.append(case("1.1.8", "text, 65536 bytes in 997-byte writes",
                    chunks(f(T, b"*" * 65536), 997), "§5.2", [(T, "*" * 65536)]))
    out.append(case("1.3.1", "text, unmasked", f(T, b"x", mask=False), "§5.1: close 1002",
                    close=FAIL))
    return out


def section_2():
    p125 = bytes(range(125))
    return [
        case("2.1", "ping, no payload", f(PING), "§5.5.2: pong, same payload", pongs=[b""]),
        case("2.2", "ping, text payload", f(PING, b"Hello, world!"), "§5.5.2",
             pongs=[b"Hello, world!"]),
        case("2.3", "ping, binary payload", f(PING, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"),
             "§5.5.2", pongs=[b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff"]),
        case("2.4", "ping, 125 bytes", f(PING, p125), "§5.5", pongs=[p125]),
        case("2.5", "ping, 126 bytes", f(PING, b"\xfe" * 126),
             "§5.5: control payload > 125: fail", close=FAIL),
        case("2.6", "ping, 125 bytes, 1-byte writes", chunks(f(PING, p125), 1), "§5.5",
             pongs=[p125]),
        case("2.7", "unsolicited pong, no payload", f(PONG), "§5.5.3: ignored"),
        case("2.8", "unsolicited pong, payload", f(PONG, b"unsolicited"), "§5.5.3: ignored"),
        case("2.9", "unsolicited pong, then ping", f(PONG, b"u") + f(PING, b"p"), "§5.5.3",
             pongs=[b"p"]),
        case("2.10", "10 pings", b"".join(f(PING, b"p%d" % i) for i in range(10)), "§5.5.2",
             pongs=[b"p%d" % i for i in range(10)], latest_pong=True),
        case("2.11", "10 pings, 1-byte writes",
             chunks(b"".join(f(PING, b"q%d" % i) for i in range(10)), 1), "§5.5.2",
             pongs=[b"q%d" % i for i in range(10)], latest_pong=True),
    ]


def section_3():
    return [
        case("3.1", "text, RSV1", f(T, b"x", rsv=4), "§5.2: no extension: fail", close=FAIL),
        case("3.2", "text, then text with RSV2", f(T, b"a") + f(T, b"x", rsv=2), "§5.2",
             [(T, "a")], close=FAIL),
        case("3.3", "text, then text with RSV3, then ping", f(T, b"a") + f(T, b"x", rsv=1) +
             f(PING, b"p"), "§5.2", [(T, "a")], close=FAIL),
        case("3.4", "binary, RSV1+RSV2", f(B, b"\x00", rsv=6), "§5.2", close=FAIL),
        case("3.5", "ping, RSV1+RSV3", f(PING, b"p", rsv=5), "§5.2", close=FAIL),
        case("3.6", "close, RSV all", f(CLOSE, struct.pack("!H", 1000), rsv=7), "§5.2",
             close=FAIL),
    ]


def section_4():
    out = []
    for i, op in enumerate((3, 4, 5, 6, 7)):
        out.append(case("4.1.%d" % (i + 1), "reserved non-control opcode %d%s" %
                        (op, ", after a text" if i % 2 else ""),
                        (f(T, b"a") if i % 2 else b"") + f(op, b"x"),
                        "§5.2: unknown opcode: fail", [(T, "a")] if i % 2 else [], close=FAIL))
    for i, op in enumerate((11, 12, 13, 14, 15)):
        out.append(case("4.2.%d" % (i + 1), "reserved control opcode %d%s" %
                        (op, ", after a text" if i % 2 else ""),
                        (f(T, b"a") if i % 2 else b"") + f(op, b"x"),
                        "§5.2", [(T, "a")] if i % 2 else [], close=FAIL))
    return out


def section_5():
    frag = lambda parts, op=T: b"".join(  # noqa: E731
        f(op if i == 0 else C, p, fin=i == len(parts) - 1) for i, p in enumerate(parts))
    return [
        case("5.1", "ping in 2 fragments", f(PING, b"a", fin=False) + f(C, b"b"),
             "§5.5: control frames are not fragmented", close=FAIL),
        case("5.2", "pong in 2 fragments", f(PONG, b"a", fin=False) + f(C, b"b"), "§5.5",
             close=FAIL),
        case("5.3", "text in 2 fragments", frag([b"frag", b"ment"]), "§5.4",
             [(T, "fragment")]),
        case("5.4", "text in 2 fragments, 1-byte writes", chunks(frag([b"frag", b"ment"]), 1),
             "§5.4", [(T, "fragment")]),
        case("5.5", "text in 2 fragments, a ping between", f(T, b"frag", fin=False) +
             f(PING, b"mid") + f(C, b"ment"), "§5.4: control frames may be interleaved",
             [(T, "fragment")], pongs=[b"mid"]),
        case("5.6", "text in 5 fragments, a ping after each but the last",
             b"".join(f(T if i == 0 else C, b"%d" % i, fin=i == 4) +
                      (f(PING, b"p%d" % i) if i < 4 else b"") for i in range(5)), "§5.4",
             [(T, "01234")], pongs=[b"p%d" % i for i in range(4)], latest_pong=True),
        case("5.7", "binary in 3 fragments", frag([b"\x00", b"\x01", b"\x02"], B), "§5.4",
             [(B, b"\x00\x01\x02")]),
        case("5.8", "continuation (fin) with nothing to continue", f(C, b"x"),
             "§5.4: fail", close=FAIL),
        case("5.9", "continuation (not fin) with nothing to continue, then text",
             f(C, b"x", fin=False) + f(T, b"y"), "§5.4: fail", close=FAIL),
        case("5.10", "a message, then a stray continuation", frag([b"a", b"b"]) + f(C, b"x"),
             "§5.4: fail", [(T, "ab")], close=FAIL),
        case("5.11", "text (not fin), then a new text", f(T, b"a", fin=False) + f(T, b"b"),
             "§5.4: a new data frame inside a message: fail", close=FAIL),
        case("5.12", "text (not fin), then binary", f(T, b"a", fin=False) + f(B, b"b"),
             "§5.4: fail", close=FAIL),
        case("5.13", "empty fragments", frag([b"", b"", b""]), "§5.4", [(T, "")]),
        case("5.14", "text in 100 fragments of 1 byte", frag([b"x"] * 100), "§5.4",
             [(T, "x" * 100)]),
    ]


def section_6():
    valid = [("6.1", "empty text", b""), ("6.2", "κόσμε", KOSME),
             ("6.3", "U+0080, U+07FF, U+0800, U+FFFF (boundaries)",
              "\u0080\u07ff\u0800\uffff".encode()),
             ("6.4", "U+10000 and U+10FFFF", "\U00010000\U0010ffff".encode()),
             ("6.5", "U+FEFF, U+FFFE (noncharacters are valid UTF-8)",
              "\ufeff\ufffe".encode())]
    invalid = [("6.10", "lone continuation byte 0x80", b"\x80"),
               ("6.11", "0xC0 0x80 (overlong NUL)", b"\xc0\x80"),
               ("6.12", "0xE0 0x80 0xAF (overlong /)", b"\xe0\x80\xaf"),
               ("6.13", "0xF0 0x80 0x80 0xAF (overlong /)", b"\xf0\x80\x80\xaf"),
               ("6.14", "0xED 0xA0 0x80 (surrogate U+D800)", b"\xed\xa0\x80"),
               ("6.15", "0xF4 0x90 0x80 0x80 (above U+10FFFF)", b"\xf4\x90\x80\x80"),
               ("6.16", "0xFE, 0xFF", b"\xfe\xff"),
               ("6.17", "truncated sequence at the end (κόσμ + 0xCE)", KOSME[:-1]),
               ("6.18", "valid text, then 0xED 0xA0 0x80 in the middle",
                b"ab\xed\xa0\x80cd")]
    out = [case(c, "text: " + d, f(T, p), "§8.1: valid", [(T, p.decode())])
           for c, d, p in valid]
    out += [case(c, "text: " + d, f(T, p), "§8.1: invalid UTF-8: close 1007", close=(1007,))
            for c, d, p in invalid]
    out += [
        case("6.6", "κόσμε split inside a code point, 2 fragments",
             f(T, KOSME[:3], fin=False) + f(C, KOSME[3:]), "§8.1: the message is what counts",
             [(T, "κόσμε")]),
        case("6.7", "κόσμε one byte per fragment", b"".join(
            f(T if i == 0 else C, KOSME[i:i + 1], fin=i == len(KOSME) - 1)
            for i in range(len(KOSME))), "§8.1", [(T, "κόσμε")]),
        case("6.19", "invalid sequence across 2 fragments (0xED | 0xA0 0x80)",
             f(T, b"a\xed", fin=False) + f(C, b"\xa0\x80"), "§8.1: close 1007", close=(1007,)),
        case("6.20", "invalid first fragment, then the final one (fail fast)",
             f(T, b"\xc0\x80", fin=False) + f(C, b"ok"),
             "§8.1: close 1007 (as soon as seen, or at the message end)", close=(1007,),
             note="closed at the end of the message (Autobahn: non-strict)"),
    ]
    return out


def section_7():
    codes_ok = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999)
    codes_bad = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)
    out = [
        case("7.1.1", "text, then close 1000", f(T, b"Hello") + close_frame(1000),
             "§5.5.1: echo", [(T, "Hello")], close=(1000,)),
        case("7.1.2", "close, then close", close_frame(1000) + close_frame(1000),
             "§5.5.1: nothing after the close", close=(1000,)),
        case("7.1.3", "close, then ping", close_frame(1000) + f(PING, b"late"),
             "§5.5.1: no pong after the close", close=(1000,)),
        case("7.1.4", "close, then text", close_frame(1000) + f(T, b"late"),
             "§5.5.1: not delivered", close=(1000,)),
        case("7.1.5", "text (not fin), close, continuation", f(T, b"a", fin=False) +
             close_frame(1000) + f(C, b"b"), "§5.5.1: the message never completes",
             close=(1000,)),
        case("7.3.1", "close, no payload", close_frame(), "§5.5.1: close, no code (1005)",
             close=(1005, 1000)),
        case("7.3.2", "close, 1-byte payload", f(CLOSE, b"\x03"), "§5.5.1: fail",
             close=(1002,)),
        case("7.3.3", "close 1000, no reason", close_frame(1000), "§5.5.1", close=(1000,)),
        case("7.3.4", "close 1000 with a reason", close_frame(1000, b"bye"), "§5.5.1",
             close=(1000,)),
        case("7.3.5", "close 1000, 123-byte reason", close_frame(1000, b"r" * 123), "§5.5",
             close=(1000,)),
        case("7.3.6", "close 1000, 124-byte reason (126-byte payload)",
             close_frame(1000, b"r" * 124), "§5.5: control payload > 125: fail", close=FAIL),
        case("7.5.1", "close 1000, reason not UTF-8", close_frame(1000, b"\xce\xba\xe1\xbd"),
             "§8.1: close 1007", close=(1007,)),
    ]
    out += [case("7.7.%d" % (i + 1), "close %d" % c, close_frame(c), "§7.4: echoed",
                 close=(c,)) for i, c in enumerate(codes_ok)]
    out += [case("7.9.%d" % (i + 1), "close %d" % c, close_frame(c),
                 "§7.4: not a code a client may send: close 1002", close=(1002,))
            for i, c in enumerate(codes_bad)]
    out.append(case("7.9.13", "close 1012 (IANA after RFC 6455)", close_frame(1012),
                    "§7.4.2 registry: may be echoed", close=(1012, 1002),
                    note="deviation: lws 4.1 rewrites it to 1002 before the edge sees it"))
    return out


def section_9():
    big = lambda n: b"*" * n  # noqa: E731
    frag = lambda data, n, op=T: b"".join(  # noqa: E731
        f(op if i == 0 else C, data[i:i + n], fin=i + n >= len(data))
        for i in range(0, len(data), n))
    return [
        case("9.1.1", "text, 64 KiB", f(T, big(65536)), "§5.2", [(T, "*" * 65536)]),
        case("9.1.2", "text, 256 KiB", f(T, big(262144)), "§5.2", [(T, "*" * 262144)]),
        case("9.1.3", "text, 1 MiB (the route's max_message_bytes)", f(T, big(LIMIT)),
             "§5.2", [(T, "*" * LIMIT)]),
        case("9.2.1", "binary, 1 MiB", f(B, b"\x01" * LIMIT), "§5.2", [(B, b"\x01" * LIMIT)]),
        case("9.3.1", "text, 1 MiB in 64-byte fragments", frag(big(LIMIT), 65536 // 1024),
             "§5.4", [(T, "*" * LIMIT)]),
        case("9.3.2", "text, 256 KiB in 4 KiB writes", chunks(f(T, big(262144)), 4096), "§5.2",
             [(T, "*" * 262144)]),
        case("9.4.1", "binary, 1 MiB in 4 fragments", frag(b"\x02" * LIMIT, LIMIT // 4, B),
             "§5.4", [(B, b"\x02" * LIMIT)]),
        case("9.5.1", "text, 1 MiB + 1", f(T, big(LIMIT + 1)), "§7.4.1: too big: close 1009",
             close=(1009,)),
        case("9.5.2", "text, 1 MiB + 1 in fragments", frag(big(LIMIT + 1), 65536),
             "§7.4.1: close 1009", close=(1009,)),
    ]


SECTIONS = [("1", "Framing", section_1), ("2", "Pings and pongs", section_2),
            ("3", "Reserved bits", section_3), ("4", "Opcodes", section_4),
            ("5", "Fragmentation", section_5), ("6", "UTF-8", section_6),
            ("7", "Close handling", section_7), ("9", "Limits", section_9)]


class Rfc6455Conformance(w.GatewayTestCase):
    results = []

    @classmethod
    def tearDownClass(cls):
        out = os.environ.get("WSGATE_CONFORMANCE_RESULTS")
        if out:
            with open(out, "w") as fh:
                json.dump(cls.results, fh, indent=1)

    def setUp(self):
        super().setUp()
        self.be = self.backend()
        limits = {"max_message_bytes": LIMIT, "rate_limit": {"messages_per_second": 0},
                  "ping_interval": "0", "idle_timeout": "20s"}
        self.gw = self.gateway([w.route("/c", self.be.url, limits=limits)])

    def conn_of(self, tag):
        return self.be.wait_event(lambda e: e["type"] == "connect" and
                                  e["query"].get("case") == tag)["connection_id"]

    def messages_of(self, cid):
        out = []
        for e in self.be.events():
            if e["type"] == "message" and e["connection_id"] == cid:
                if e.get("binary"):
                    import base64
                    out.append((B, base64.b64decode(e["data_base64"])))
                else:
                    out.append((T, e["data"]))
        return out

    def run_case(self, c):
        ws = w.WsClient.connect(self.gw.edge_url + "/c", query={"case": c["id"]})
        self.addCleanup(ws.abort)
        cid = self.conn_of(c["id"])
        for piece in c["send"]:
            try:
                ws.send_raw(piece)
            except OSError:
                break  # the edge closed while we were still writing
        if c["close"] is None:
            ws.send_text("END")
            self.be.wait_event(lambda e: e["type"] == "message" and e["connection_id"] == cid
                               and e.get("data") == "END")
            want = 1 if c["latest_pong"] else len(c["pongs"])
            w.wait_until(lambda: len(ws.pongs) >= want, 5, 0.02, "pongs")
            got_close = ws.close(1000)[0]
            ok_close = got_close == 1000
        else:
            got_close = ws.wait_closed(10)[0]
            ok_close = got_close in c["close"]
        self.be.wait_event(lambda e: e["type"] == "disconnect" and e["connection_id"] == cid)
        msgs = [m for m in self.messages_of(cid) if m != (T, "END")]
        actual = {"close": got_close, "deliver": len(msgs), "pongs": len(ws.pongs)}
        pong_ok = pongs_ok(ws.pongs, c["pongs"], c["latest_pong"])
        ok = ok_close and msgs == c["deliver"] and pong_ok
        self.results.append({"id": c["id"], "what": c["what"], "rfc": c["rfc"],
                             "expect_close": c["close"], "actual": actual, "ok": ok,
                             "note": c["note"]})
        self.assertTrue(ok_close, "%s: close %s, expected %s" % (c["id"], got_close,
                                                                 c["close"] or "open + 1000"))
        self.assertEqual(msgs, c["deliver"], c["id"])
        self.assertTrue(pong_ok, "%s: pongs %r, expected %r" % (c["id"], ws.pongs, c["pongs"]))


def _add(sec, name, fn):
    def test(self):
        for c in fn():
            with self.subTest(c["id"]):
                n = len(self.results)
                try:
                    self.run_case(c)
                except Exception:
                    if len(self.results) == n:  # it broke before it was judged
                        self.results.append({
                            "id": c["id"], "what": c["what"], "rfc": c["rfc"],
                            "expect_close": c["close"], "ok": False, "note": c["note"],
                            "actual": {"close": None, "deliver": 0, "pongs": 0}})
                    raise
    test.__name__ = "test_section_%s_%s" % (sec, name.lower().replace(" ", "_"))
    setattr(Rfc6455Conformance, test.__name__, test)


for _sec, _name, _fn in SECTIONS:
    _add(_sec, _name, _fn)


if __name__ == "__main__":
    w.main()
