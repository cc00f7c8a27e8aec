# SPDX-License-Identifier: MIT
"""test_webhook_actions.py — response actions (docs/contract.md §3): a 2xx JSON body
{"actions": [...]} is applied to the event's connection, in order.

- send (text, and binary via data_base64) reaches the client in order;
- actions answered to the connect event reach the client once the socket
  is open (held, not lost);
- subscribe / unsubscribe change what a channel publish (control API)
  delivers to the client;
- close {code 4000, reason} closes the client with exactly that, and the
  disconnect event reports code 4000;
- an empty body, a non-JSON body, a body without "actions", an unknown
  action and a malformed action do nothing harmful: the connection stays
  open and later actions still work.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import base64

import wsgate_test as w


class WebhookActions(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.answers = {}  # message data -> Response
        self.be = self.backend()
        self.be.handler = self.answer
        self.gw = self.gateway([w.route("/chat", self.be.url)])

    def answer(self, req):
        for e in req.events():
            if e.get("type") == "connect" and "connect" in self.answers:
                return self.answers["connect"]
            if e.get("type") == "message" and e.get("data") in self.answers:
                return self.answers[e["data"]]
        return None

    def actions(self, key, *acts):
        self.answers[key] = w.Response(200, {"actions": list(acts)})

    def connect(self):
        return self.client(self.gw.edge_url + "/chat")

    def test_send_actions_in_order(self):
        self.actions("go", {"action": "send", "data": "one"},
                     {"action": "send", "data_base64": base64.b64encode(b"\x00\x01").decode()},
                     {"action": "send", "data": "two"})
        self.actions("again", {"action": "send", "data": "three"})
        ws = self.connect()
        ws.send_text("go")
        ws.send_text("again")
        self.assertEqual(ws.recv(15), (w.OP_TEXT, "one"))
        self.assertEqual(ws.recv(5), (w.OP_BINARY, b"\x00\x01"))
        self.assertEqual(ws.recv(5), (w.OP_TEXT, "two"))
        self.assertEqual(ws.recv(15), (w.OP_TEXT, "three"))
        self.assertEqual(ws.close(), (1000, ""))

    def test_connect_actions_reach_new_socket(self):
        self.actions("connect", {"action": "send", "data": "welcome"})
        ws = self.connect()
        self.assertEqual(ws.recv_text(15), "welcome")
        ws.close()

    def test_close_action(self):
        self.actions("quit", {"action": "send", "data": "last words"},
                     {"action": "close", "code": 4000, "reason": "kicked"})
        ws = self.connect()
        ws.send_text("quit")
        self.assertEqual(ws.recv_text(15), "last words")
        self.assertEqual(ws.wait_closed(15), (4000, "kicked"))
        disc = self.be.wait_event(lambda e: e["type"] == "disconnect", 15)
        self.assertEqual(disc["code"], 4000)
        self.assertEqual(disc.get("reason"), "kicked")

    def test_subscribe_unsubscribe(self):
        self.actions("join", {"action": "subscribe", "channel": "room1"},
                     {"action": "send", "data": "joined"})
        self.actions("leave", {"action": "unsubscribe", "channel": "room1"},
                     {"action": "send", "data": "left"})
        ws = self.connect()
        ws.send_text("join")
        self.assertEqual(ws.recv_text(15), "joined")
        api = self.gw.control()
        r = api.post("/v1/channels/room1/messages", "news-1", content_type="text/plain")
        self.assertIn(r.status, (200, 202), r)
        self.assertEqual(ws.recv_text(10), "news-1")
        ws.send_text("leave")
        self.assertEqual(ws.recv_text(15), "left")
        r = api.post("/v1/channels/room1/messages", "news-2", content_type="text/plain")
        self.assertIn(r.status, (200, 202), r)
        # a marker sent after the publish proves news-2 was not queued before it
        self.actions("marker", {"action": "send", "data": "marker"})
        ws.send_text("marker")
        self.assertEqual(ws.recv_text(15), "marker")
        ws.close()

    def test_bad_bodies_ignored(self):
        self.answers["empty"] = w.Response(200, b"")
        self.answers["notjson"] = w.Response(200, b"this is not json{",
                                             {"Content-Type": "application/json"})
        self.answers["noactions"] = w.Response(200, {"hello": "world"})
        self.answers["notlist"] = w.Response(200, {"actions": "send"})
        self.actions("unknown", {"action": "explode"}, {"action": "send", "data": "after-unknown"})
        self.actions("malformed", {"action": "send"}, {"action": "close", "code": "x"},
                     {"action": "subscribe"}, 17)
        self.actions("ok", {"action": "send", "data": "still here"})
        ws = self.connect()
        for k in ("empty", "notjson", "noactions", "notlist", "malformed", "unknown", "ok"):
            ws.send_text(k)
        got = []
        while "still here" not in got:
            got.append(ws.recv_text(20))
        self.assertFalse(ws.closed.is_set())
        self.assertEqual(got.count("still here"), 1)
        self.assertTrue(set(got) <= {"after-unknown", "still here"}, got)
        self.be.wait_event(lambda e: e.get("data") == "ok", 5)
        self.assertEqual(ws.close(), (1000, ""))


if __name__ == "__main__":
    w.main()
