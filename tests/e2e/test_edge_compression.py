# SPDX-License-Identifier: MIT
"""test_edge_compression.py — RFC 7692 permessage-deflate on a route with
`compression: on` (ws-edge/edge_pmd.c), through the real binary with a
client that deflates and inflates with Python's zlib (no context takeover):

- the 101 answers the offer with "permessage-deflate;
  server_no_context_takeover; client_no_context_takeover"; a route with
  compression off, or a client that offers nothing, gets no extension, and
  an RSV1 frame there fails the connection (lws 4.1 drops it) unread;
- compressed client messages (text, binary, one after another: no context
  kept) reach the backend inflated; uncompressed ones still work;
- a decompression bomb (a few hundred bytes inflating past
  max_message_bytes) is closed 1009 and nothing reaches the backend;
  undecodable compressed data is closed 1007;
- sends and publishes of 256 bytes and more arrive compressed (RSV1),
  shorter ones plain; a publish to 600 compressed members (the fan-out
  path) reaches every member intact, with plain members in the same
  channel getting plain frames;
- also over wss:// (TLS and compression together).

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import json

import wsgate_test as w
from wsgate_tls import TestCA

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}
OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def token(user, **kw):
    return w.mint_jwt(w.client_claims(user, **kw))


class EdgeCompression(w.GatewayTestCase):
    def start(self, config=None):
        self.be = self.backend()
        self.gw = self.gateway(
            [w.route("/z", self.be.url, jwt=JWT, compression="on",
                     limits={"max_message_bytes": 100000, "max_outbound_bytes": 16 << 20}),
             w.route("/plain", self.be.url, jwt=JWT)],
            config=dict({"edge": {"threads": 1}}, **(config or {})))
        self.api = self.gw.control()

    def conn(self, path, user, offer=True, url=None, **kw):
        return self.client((url or self.gw.edge_url) + path,
                           query={"token": token(user, **kw)}, headers=OFFER if offer else None)

    def conn_id(self, user):
        return self.be.wait_event(lambda e: e["type"] == "connect"
                                  and e["user"] == user)["connection_id"]

    def test_negotiation(self):
        self.start()
        ws = self.conn("/z", "zed")
        self.assertEqual(ws.extensions, ANSWER)
        self.assertIsNone(self.conn("/z", "none", offer=False).extensions)
        plain = self.conn("/plain", "plain")
        self.assertIsNone(plain.extensions)
        # RSV1 where nothing was negotiated: lws 4.1 fails the connection
        # (drops it without a close frame: 1006 for the client), nothing of
        # it reaches the backend
        conn = self.conn_id("plain")
        plain.send_deflated(w.OP_TEXT, "x" * 300)
        self.assertIn(plain.wait_closed(10)[0], (1002, 1006))
        self.be.wait_event(lambda e: e["type"] == "disconnect" and e["connection_id"] == conn)
        self.assertEqual([e for e in self.be.events()
                          if e["type"] == "message" and e["connection_id"] == conn], [])

    def test_client_messages_inflated(self):
        self.start()
        ws = self.conn("/z", "c")
        text = json.dumps({"action": "say", "text": "héllo " * 200})
        ws.send_deflated(w.OP_TEXT, text)
        ws.send_deflated(w.OP_TEXT, text)  # the same again: no context taken over
        ws.send_deflated(w.OP_BINARY, bytes(range(256)) * 10)
        ws.send_text("plain still works")
        evs = self.be.wait_events(lambda e: e["type"] == "message", 4)
        self.assertEqual(evs[0]["data"], text)
        self.assertEqual(evs[1]["data"], text)
        import base64
        self.assertEqual(base64.b64decode(evs[2]["data_base64"]), bytes(range(256)) * 10)
        self.assertEqual(evs[3]["data"], "plain still works")
        self.assertFalse(ws.closed.is_set())

    def test_decompression_bomb_closes_1009(self):
        self.start()
        ws = self.conn("/z", "bomb")
        conn = self.conn_id("bomb")
        bomb = w.WsClient.deflate_payload(b"\0" * 5000000)  # 5 MB of zeros
        self.assertLess(len(bomb), 10000)  # far below max_message_bytes
        ws.send_frame(w.OP_BINARY, bomb, rsv=4)
        self.assertEqual(ws.wait_closed(10)[0], 1009)
        ev = self.be.wait_event(lambda e: e["type"] == "disconnect"
                                and e["connection_id"] == conn)
        self.assertEqual((ev["code"], ev["initiator"]), (1009, "server"))
        self.assertEqual([e for e in self.be.events()
                          if e["type"] == "message" and e["connection_id"] == conn], [])
        bad = self.conn("/z", "bad")
        bad.send_frame(w.OP_TEXT, b"\xff\xff\xff\xff not deflate", rsv=4)
        self.assertEqual(bad.wait_closed(10)[0], 1007)

    def test_server_messages_compressed_above_threshold(self):
        self.start()
        ws = self.conn("/z", "s")
        conn = self.conn_id("s")
        small, big = "s" * 100, json.dumps({"k": "v" * 2000})
        self.assertEqual(self.api.send(conn, small).status, 200)
        self.assertEqual(self.api.send(conn, big).status, 200)
        self.assertEqual(ws.recv_text(10), small)
        self.assertEqual(ws.recv_text(10), big)
        self.assertEqual(ws.compressed_received, 1)  # only the big one
        self.assertEqual(ws.protocol_errors, [])

    def test_publish_to_many_compressed_members(self):
        self.start()
        members = 600  # above the fan-out helper's 512
        def query(i):
            return {"token": token("m%d" % i, channels=["room"])}
        zs = self.clients(self.gw.edge_url + "/z", members, query, headers=OFFER)
        plains = [self.conn("/plain", "p%d" % i, channels=["room"]) for i in range(3)]
        self.be.wait_events(lambda e: e["type"] == "connect", members + 3, timeout=90)
        payloads = [json.dumps({"n": i, "body": "abc" * (100 + 2000 * i)}) for i in range(3)]
        for p in payloads:
            r = self.api.post("/v1/channels/room/messages", p, content_type="text/plain")
            self.assertEqual(r.status, 202, r.body[:200])
        for k, ws in enumerate(zs):
            for p in payloads:
                self.assertEqual(ws.recv_text(30), p, "member %d" % k)
            self.assertEqual(ws.compressed_received, len(payloads), "member %d" % k)
            self.assertEqual(ws.protocol_errors, [])
        for ws in plains:
            for p in payloads:
                self.assertEqual(ws.recv_text(30), p)
            self.assertEqual(ws.compressed_received, 0)
            self.assertEqual(ws.protocol_errors, [])

    def test_over_tls(self):
        tmp = w.TempDir()
        self.addCleanup(tmp.cleanup)
        ca = TestCA(tmp.path)
        cert, key = ca.issue("edge")
        self.start({"edge": {"threads": 1, "tls": {"cert_file": cert, "key_file": key}}})
        url = "wss://127.0.0.1:%d" % self.gw.edge_port
        ws = self.client(url + "/z", query={"token": token("t")}, headers=OFFER,
                         ssl_context=ca.client_context())
        self.assertEqual(ws.extensions, ANSWER)
        conn = self.conn_id("t")
        ws.send_deflated(w.OP_TEXT, "tls " * 100)
        self.assertEqual(self.be.wait_event(lambda e: e["type"] == "message")["data"],
                         "tls " * 100)
        self.assertEqual(self.api.send(conn, "back " * 100).status, 200)
        self.assertEqual(ws.recv_text(10), "back " * 100)
        self.assertEqual(ws.compressed_received, 1)


if __name__ == "__main__":
    w.main()
