# SPDX-License-Identifier: MIT
"""test_edge_frames.py — limits and close codes on open connections
(docs/contract.md §2, §6), through the real binary:

- text and binary messages become message events (data / data_base64 +
  binary:true) with seq counting from 1; large ones are reassembled intact;
- max_message_bytes closes with 1009, also when the size is only reached
  across fragments; invalid UTF-8 in text closes with 1007 (also split
  across fragments is fine when valid);
- the rate limit closes with 1008;
- a client that never reads while the backend floods it with send actions
  is closed with 1008 "slow consumer" (memory stays bounded);
- idle_timeout: a client that answers no ping is closed with 1001; one that
  answers pings stays open; max_lifetime closes with 1001;
- every close publishes one disconnect event with code, reason, initiator;
- SIGTERM: every client gets 1001 "going away", the process exits 0 and
  their disconnect events (initiator server) reach the backend (before exit,
  or after a restart: they were durable).

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import base64
import time

import wsgate_test as w


class EdgeFrames(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([
            w.route("/chat", self.be.url, limits={
                "max_message_bytes": 1000,
                "rate_limit": {"messages_per_second": 5, "burst": 5}}),
            w.route("/idle", self.be.url, limits={"ping_interval": "500ms",
                                                  "idle_timeout": "1500ms"}),
            w.route("/short", self.be.url, limits={"max_lifetime": "1s"}),
            w.route("/slow", self.be.url, limits={"max_outbound_bytes": 65536}),
        ])
        self.url = self.gw.edge_url

    def disconnect_of(self, ws_events_pred):
        return self.be.wait_event(lambda e: e["type"] == "disconnect" and ws_events_pred(e))

    def conn_id(self, pred=lambda e: True):
        return self.be.wait_event(lambda e: e["type"] == "connect" and pred(e))["connection_id"]

    def test_text_and_binary_events(self):
        ws = self.client(self.url + "/chat")
        ws.send_text("héllo")
        ws.send_binary(b"\x00\xffbin")
        ws.send_fragmented(w.OP_TEXT, ["frag".encode(), "mé".encode()[:2], "mé".encode()[2:]])
        evs = self.be.wait_events(lambda e: e["type"] == "message", 3)
        self.assertEqual(evs[0]["data"], "héllo")
        self.assertEqual(base64.b64decode(evs[1]["data_base64"]), b"\x00\xffbin")
        self.assertIs(evs[1]["binary"], True)
        self.assertEqual(evs[2]["data"], "fragmé")
        self.assertEqual([e["seq"] for e in evs], [2, 3, 4])
        self.assertEqual(ws.close(), (1000, ""))
        ev = self.disconnect_of(lambda e: True)
        self.assertEqual((ev["code"], ev["initiator"], ev["seq"]), (1000, "client", 5))

    def test_large_messages_reassembled(self):
        ws = self.client(self.url + "/slow")  # default max_message_bytes (128 KiB)
        text = "ab€" * 20000  # 100,000 bytes of UTF-8, read by lws in 512-byte pieces
        blob = bytes(range(256)) * 400
        ws.send_text(text)
        ws.send_binary(blob)
        ws.send_fragmented(w.OP_TEXT, [text[:20000].encode(), text[20000:].encode()])
        evs = self.be.wait_events(lambda e: e["type"] == "message", 3)
        self.assertEqual(evs[0]["data"], text)
        self.assertEqual(base64.b64decode(evs[1]["data_base64"]), blob)
        self.assertEqual(evs[2]["data"], text)
        ws.close()

    def test_too_big_single_and_fragmented(self):
        ws = self.client(self.url + "/chat")
        ws.send_text("x" * 1001)
        self.assertEqual(ws.wait_closed(5)[0], 1009)
        ws2 = self.client(self.url + "/chat")
        ws2.send_fragmented(w.OP_BINARY, [b"a" * 600, b"b" * 600])
        self.assertEqual(ws2.wait_closed(5)[0], 1009)
        evs = self.be.wait_events(lambda e: e["type"] == "disconnect", 2)
        self.assertEqual([(e["code"], e["initiator"]) for e in evs], [(1009, "server")] * 2)
        self.assertEqual([e for e in self.be.events() if e["type"] == "message"], [])

    def test_invalid_utf8_1007(self):
        ws = self.client(self.url + "/chat")
        ws.send_frame(w.OP_TEXT, b"ok \xc3\x28")
        self.assertEqual(ws.wait_closed(5)[0], 1007)
        ev = self.disconnect_of(lambda e: True)
        self.assertEqual(ev["code"], 1007)

    def test_rate_limit_1008(self):
        ws = self.client(self.url + "/chat")
        for i in range(12):
            try:
                ws.send_text("m%d" % i)
            except OSError:
                break
        self.assertEqual(ws.wait_closed(5)[0], 1008)
        ev = self.disconnect_of(lambda e: True)
        self.assertEqual((ev["code"], ev["initiator"]), (1008, "server"))
        n = len([e for e in self.be.events() if e["type"] == "message"])
        self.assertLessEqual(n, 6)

    def test_slow_consumer_1008(self):
        chunk = "z" * 8000
        self.be.handler = lambda req: (
            w.Response(200, {"actions": [{"action": "send", "data": chunk}] * 50})
            if any(e.get("data") == "flood" for e in req.events()) else None)
        ws = self.client(self.url + "/slow", rcvbuf=4096)
        ws.pause_reading()
        for _ in range(6):
            ws.send_text("flood")
        ev = self.be.wait_event(lambda e: e["type"] == "disconnect", timeout=20)
        self.assertEqual((ev["code"], ev["reason"]), (1008, "slow consumer"))
        ws.resume_reading()
        ws.wait_closed(10)
        self.assertIn(ws.close_code, (1008, 1006))
        metrics = self.gw.control().get("/metrics").body.decode()
        self.assertRegex(metrics, r"(?m)^wsgate_slow_consumer_closes_total [1-9]")

    def test_idle_timeout_and_pongs(self):
        mute = self.client(self.url + "/idle", auto_pong=False)
        talker = self.client(self.url + "/idle")
        self.assertEqual(mute.wait_closed(6), (1001, "idle timeout"))
        self.assertTrue(mute.pings, "the edge pinged before giving up")
        self.assertFalse(talker.closed.is_set(), "pongs keep a connection alive")
        ev = self.disconnect_of(lambda e: e["code"] == 1001)
        self.assertEqual(ev["initiator"], "timeout")
        talker.close()

    def test_max_lifetime(self):
        ws = self.client(self.url + "/short")
        ws.send_text("alive")
        self.assertEqual(ws.wait_closed(5)[0], 1001)

    def test_sigterm_drains(self):
        clients = [self.client(self.url + "/chat") for _ in range(3)]
        self.be.wait_events(lambda e: e["type"] == "connect", 3)
        status = self.gw.stop(timeout=15)
        self.assertEqual(status, 0)
        for ws in clients:
            self.assertEqual(ws.wait_closed(5), (1001, "going away"))
        # The disconnect events were made durable before exit; the dispatcher
        # delivers them before it stops or, at the latest, after a restart.
        def disconnects():
            return [e for e in w.dedupe(self.be.events()) if e["type"] == "disconnect"]
        try:
            w.wait_until(lambda: len(disconnects()) >= 3, 3, 0.05, "disconnects before exit")
        except AssertionError:
            self.gw.start()
            w.wait_until(lambda: len(disconnects()) >= 3, 15, 0.05, "disconnects after restart")
        evs = disconnects()
        self.assertEqual(len(evs), 3)
        self.assertEqual({(e["code"], e["reason"], e["initiator"]) for e in evs},
                         {(1001, "going away", "server")})


if __name__ == "__main__":
    w.main()
