# SPDX-License-Identifier: MIT
"""test_edge_commands.py — what reaches an open connection from the control
API through the bus and the edge (docs/contract.md §2, §4):

- a send arrives as a text or binary frame, in order; to an unknown
  connection it is 410;
- a forced disconnect closes with the given code and reason, after the
  frames queued before it, and the disconnect event says initiator "api";
- subscribe / unsubscribe and the `channels` claim decide who gets a
  channel publish; `exclude` skips one connection;
- a broadcast with ?route= reaches only that route's connections;
- deliveries are counted in wsgate_publish_deliveries_total.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import re

import wsgate_test as w

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}


class EdgeCommands(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([w.route("/a", self.be.url, jwt=JWT),
                                w.route("/b", self.be.url, jwt=JWT)])
        self.api = self.gw.control()

    def open(self, path, user, **claims):
        tok = w.mint_jwt(w.client_claims(user, **claims))
        ws = self.client(self.gw.edge_url + path, query={"token": tok})
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e["user"] == user)
        return ws, ev["connection_id"]

    def expect_nothing(self, ws, wait=0.4):
        with self.assertRaises(AssertionError):
            ws.recv(wait)

    def test_send_and_forced_close(self):
        ws, cid = self.open("/a", "ann")
        self.assertEqual(self.api.send(cid, "one").status, 200)
        self.assertEqual(self.api.send(cid, b"\x01\x02", "application/octet-stream").status, 200)
        self.assertEqual(ws.recv(5), (w.OP_TEXT, "one"))
        self.assertEqual(ws.recv(5), (w.OP_BINARY, b"\x01\x02"))
        self.assertEqual(self.api.send("AAAAAAAAAAAAAAAAAAAAAA", "x").status, 410)
        r = self.api.delete("/v1/connections/%s?code=4000&reason=bye" % cid)
        self.assertEqual(r.status, 204)
        self.assertEqual(ws.wait_closed(5), (4000, "bye"))
        ev = self.be.wait_event(lambda e: e["type"] == "disconnect")
        self.assertEqual((ev["code"], ev["reason"], ev["initiator"]), (4000, "bye", "api"))

    def test_queued_frames_flushed_before_close(self):
        ws, cid = self.open("/a", "flush")
        for i in range(20):
            self.assertEqual(self.api.send(cid, "m%d" % i).status, 200)
        self.assertEqual(self.api.delete("/v1/connections/%s?code=4001&reason=done" % cid).status,
                         204)
        self.assertEqual([ws.recv_text(5) for _ in range(20)], ["m%d" % i for i in range(20)])
        self.assertEqual(ws.wait_closed(5), (4001, "done"))

    def test_channels_exclude_and_broadcast(self):
        a1, id1 = self.open("/a", "u1", channels=["lobby"])
        a2, id2 = self.open("/a", "u2")
        b1, id3 = self.open("/b", "u3")
        self.assertEqual(self.api.put("/v1/channels/room/connections/%s" % id2).status, 204)
        self.assertEqual(self.api.put("/v1/channels/room/connections/%s" % id3).status, 204)
        self.assertEqual(self.api.post("/v1/channels/lobby/messages", "hello lobby").status, 202)
        self.assertEqual(a1.recv_text(5), "hello lobby")
        r = self.api.post("/v1/channels/room/messages?exclude=%s" % id2, "room only")
        self.assertEqual(r.status, 202)
        self.assertEqual(b1.recv_text(5), "room only")
        self.expect_nothing(a2)
        self.expect_nothing(a1, 0.1)
        self.assertEqual(self.api.delete("/v1/channels/room/connections/%s" % id3).status, 204)
        self.api.post("/v1/channels/room/messages", "after leave")
        self.assertEqual(a2.recv_text(5), "after leave")
        self.expect_nothing(b1)
        self.assertEqual(self.api.post("/v1/broadcast?route=/b", "to b").status, 202)
        self.assertEqual(b1.recv_text(5), "to b")
        self.expect_nothing(a1, 0.1)
        self.expect_nothing(a2, 0.1)
        self.api.post("/v1/broadcast", "to all")
        for ws in (a1, a2, b1):
            self.assertEqual(ws.recv_text(5), "to all")
        # counted by the loop once the frame is written: the client may read
        # it a moment before the counter moves
        def delivered():
            metrics = self.api.get("/metrics").body.decode()
            m = re.search(r"^wsgate_publish_deliveries_total (\d+)", metrics, re.M)
            self.assertIsNotNone(m, metrics[:500])
            return int(m.group(1)) >= 7
        w.wait_until(delivered, 5, 0.05, "wsgate_publish_deliveries_total >= 7")


if __name__ == "__main__":
    w.main()
