# SPDX-License-Identifier: MIT
"""test_sdk_chat.py — the chat example (sdk-c/examples/chat) through the
real gateway with two raw WebSocket clients: join a room, chat both ways
(fan-out through channel publish), /who lists the room through the control
API, a second room does not hear the first, /kick closes the other user's
connection with 4001, and the page and the token endpoint are served.

Env: WSGATE_BIN, CHAT_BIN (the built wsgate-chat), PYTHONPATH=tests/lib.
"""

import json
import urllib.request

import wsgate_test as w
from chat_fixture import start_chat


class SdkChat(w.GatewayTestCase):
    def recv_msg(self, ws, want_type):
        """The next message of want_type (skipping the welcome line)."""
        for _ in range(10):
            m = json.loads(ws.recv_text(10))
            if m.get("type") == want_type:
                return m
        self.fail("no %s message" % want_type)

    def join(self, chat, user, room):
        tok = chat.token(user)
        self.assertTrue(tok["ws"].endswith("/chat"))
        ws = self.client(tok["ws"], query={"token": tok["token"]})
        ws.send_text(json.dumps({"action": "join", "room": room}))
        self.assertEqual(self.recv_msg(ws, "joined")["room"], room)
        return ws

    def test_chat(self):
        chat = start_chat(self)
        with urllib.request.urlopen(chat.url + "/", timeout=5) as r:
            self.assertIn(b'["bearer." + token]', r.read())
        alice = self.join(chat, "alice", "x")
        bob = self.join(chat, "bob", "x")
        carol = self.join(chat, "carol", "y")

        alice.send_text(json.dumps({"action": "say", "text": "hi bob"}))
        for ws in (alice, bob):
            m = self.recv_msg(ws, "chat")
            self.assertEqual((m["from"], m["text"]), ("alice", "hi bob"))
        bob.send_text("hello alice")  # plain text is said in the room too
        for ws in (alice, bob):
            m = self.recv_msg(ws, "chat")
            self.assertEqual((m["from"], m["text"]), ("bob", "hello alice"))

        alice.send_text("/who")
        self.assertEqual(sorted(self.recv_msg(alice, "who")["users"]), ["alice", "bob"])

        # bob moves to y: x no longer reaches him, y does
        bob.send_text(json.dumps({"action": "join", "room": "y"}))
        self.assertEqual(self.recv_msg(bob, "joined")["room"], "y")
        alice.send_text("/who")
        self.assertEqual(self.recv_msg(alice, "who")["users"], ["alice"])
        carol.send_text("in y")
        self.assertEqual(self.recv_msg(bob, "chat")["text"], "in y")
        self.assertEqual(self.recv_msg(carol, "chat")["text"], "in y")

        alice.send_text("/kick bob")
        self.assertEqual(self.recv_msg(alice, "info")["text"], "kicked")
        self.assertEqual(bob.wait_closed(10), (4001, "kicked by alice"))
        self.assertEqual(alice.pending(), 0, "alice heard another room")


if __name__ == "__main__":
    w.main()
