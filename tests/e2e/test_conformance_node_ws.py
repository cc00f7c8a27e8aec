# SPDX-License-Identifier: MIT
"""test_conformance_node_ws.py — Node's `ws` package (a client nobody here
wrote; installed by npm into tests/conformance/node_modules at test time)
against the real binary, each case checked from both ends (what the client
saw, what the backend got, what the control API made the client see):

- text and binary messages both ways;
- a fragmented message from the client arrives whole;
- ping/pong both ways: the client's ping is answered with its payload, the
  edge's pings reach the client (ws answers them itself);
- close codes both ways: the client's 4001 "bye" reaches the disconnect
  event (initiator client), the API's 4002 "kicked" reaches the client;
- a browser-style token: protocols ["bearer.<jwt>"] opens (ws, like
  browsers, fails a 101 that names none of its offers), the user is the
  token's; a route listing subprotocols answers the listed one, and one
  offered only others is refused 400;
- permessage-deflate: a route without compression declines ws's offer
  (`extensions` is ""); messages below and above the edge's 256-byte
  compression threshold (EDGE_PMD_MIN) go through both ways either way.

The whole case list runs three times (subclasses change only the hooks):
- NodeWsConformance: ws:// on routes without compression;
- NodeWsConformanceDeflate: every route `compression: on` and ws compressing
  every message it sends (threshold 0, fragments included): the 101 names
  permessage-deflate; a client that offers nothing still gets plain frames;
- NodeWsConformanceTls: wss:// (edge.tls) with a leaf of a test CA made by
  openssl at test time, given to ws as its only trusted CA (`ca`), TLS
  verification on; a client trusting another CA fails the handshake and
  reaches no backend.

npm missing, or the install failing, fails the test (no skip).

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import base64
import time

import wsgate_test as w
from wsgate_clients import NodeWs
from wsgate_tls import TestCA

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}


class NodeWsConformance(w.GatewayTestCase):
    # Hooks for a TLS or compression variant of this suite (a subclass):
    # ROUTE_EXTRA is merged into every route (routes[].compression),
    # GATEWAY_CONFIG into the config (edge.tls); edge_url() gives the URL
    # the clients use (wss://...), CA (PEM text) is the test CA they trust
    # and CLIENT_DEFLATE is ws's perMessageDeflate option for them.
    ROUTE_EXTRA = {}
    CA = None
    GATEWAY_CONFIG = {}
    CLIENT_DEFLATE = True

    def edge_url(self):
        return self.gw.edge_url

    def setUp(self):
        super().setUp()
        self.be = self.backend()
        pings = {"ping_interval": "300ms", "idle_timeout": "10s"}
        self.gw = self.gateway([
            w.route("/chat", self.be.url, limits=pings, **self.ROUTE_EXTRA),
            w.route("/jwt", self.be.url, jwt=JWT, **self.ROUTE_EXTRA),
            w.route("/listed", self.be.url, jwt=JWT, subprotocols=["chat.v1"],
                    **self.ROUTE_EXTRA),
        ], config=self.GATEWAY_CONFIG)
        self.node = NodeWs()
        self.addCleanup(self.node.close)
        self.url = self.edge_url()

    def open(self, cid, path, protocols=None, deflate=None):
        self.node.open(cid, self.url + path + "?tag=" + cid, protocols, ca=self.CA,
                       per_message_deflate=self.CLIENT_DEFLATE if deflate is None else deflate)
        opened = self.node.wait(cid, "open")
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e["query"].get("tag") == cid)
        return opened, ev["connection_id"], ev

    def message_events(self, cid, n):
        return self.be.wait_events(lambda e: e["type"] == "message" and e["connection_id"] == cid,
                                   n)

    def test_text_and_binary_both_ways(self):
        _, cid, _ = self.open("c1", "/chat")
        blob = bytes([0, 1, 2, 254, 255]) * 20
        self.node.cmd(op="send", id="c1", text="héllo")
        self.node.cmd(op="send", id="c1", b64=base64.b64encode(blob).decode())
        evs = self.message_events(cid, 2)
        self.assertEqual(evs[0]["data"], "héllo")
        self.assertEqual((evs[1].get("binary"), base64.b64decode(evs[1]["data_base64"])),
                         (True, blob))
        api = self.gw.control()
        self.assertEqual(api.send(cid, "to node", content_type="text/plain").status, 200)
        self.assertEqual(api.send(cid, blob, content_type="application/octet-stream").status, 200)
        self.assertEqual(self.node.wait("c1", "message")["text"], "to node")
        got = self.node.wait("c1", "message", lambda e: "b64" in e)
        self.assertEqual(base64.b64decode(got["b64"]), blob)

    def test_fragmented_message_arrives_whole(self):
        _, cid, _ = self.open("f1", "/chat")
        for part, fin in (("frag", False), ("men", False), ("ted", True)):
            self.node.cmd(op="send", id="f1", text=part, fin=fin)
        self.assertEqual(self.message_events(cid, 1)[0]["data"], "fragmented")

    def test_ping_pong_both_ways(self):
        self.open("p1", "/chat")
        self.node.cmd(op="ping", id="p1", data="are you there")
        self.assertEqual(self.node.wait("p1", "pong")["data"], "are you there")
        self.node.wait("p1", "ping", timeout=5)  # the edge's, every 300 ms
        self.node.drain(1.0)  # ws answered those pings: the idle timer never fires
        self.assertEqual([e for e in self.node.events("p1") if e["ev"] == "close"], [])

    def test_close_codes_both_ways(self):
        _, cid, _ = self.open("k1", "/chat")
        self.node.cmd(op="close", id="k1", code=4001, reason="bye")
        closed = self.node.wait("k1", "close")
        self.assertEqual((closed["code"], closed["reason"]), (4001, "bye"), "echoed")
        d = self.be.wait_event(lambda e: e["type"] == "disconnect" and e["connection_id"] == cid)
        self.assertEqual((d["code"], d["reason"], d["initiator"]), (4001, "bye", "client"))

        _, cid2, _ = self.open("k2", "/chat")
        r = self.gw.control().delete("/v1/connections/%s?code=4002&reason=kicked" % cid2)
        self.assertEqual(r.status, 204, r)
        closed = self.node.wait("k2", "close")
        self.assertEqual((closed["code"], closed["reason"]), (4002, "kicked"))

    def test_bearer_subprotocol_token(self):
        tok = w.mint_jwt(w.client_claims("node-user"))
        opened, _, ev = self.open("b1", "/jwt", ["bearer." + tok])
        self.assertEqual(opened["protocol"], "bearer." + tok)
        self.assertEqual(ev["user"], "node-user")
        self.assertIsNone(ev["subprotocol"])
        opened, _, ev = self.open("b2", "/listed", ["bearer." + tok, "chat.v1"])
        self.assertEqual((opened["protocol"], ev["subprotocol"]), ("chat.v1", "chat.v1"))
        self.node.open("b3", self.url + "/listed", ["bearer." + tok, "chat.v2"], ca=self.CA,
                       per_message_deflate=self.CLIENT_DEFLATE)
        bad = self.node.wait("b3", "unexpected-response")
        self.assertEqual(bad["status"], 400)
        self.assertIn("chat.v1", bad["body"])
        self.assertNotIn(tok, self.gw.logs())

    def check_compression(self, cl, deflate):
        """A client with ws's perMessageDeflate option `deflate` on /chat:
        the 101 names permessage-deflate exactly when the route has
        compression on and the client offered it; text and binary messages
        below, at and above the edge's 256-byte threshold go through both
        ways intact."""
        _, cid, _ = self.open(cl, "/chat", deflate=deflate)
        ext = self.node.wait(cl, "open")["extensions"]
        if self.ROUTE_EXTRA.get("compression") == "on" and deflate is not False:
            self.assertIn("permessage-deflate", ext)
        else:
            self.assertEqual(ext, "")
        api = self.gw.control()
        texts = [("compressible %d " % n * 3000)[:n] for n in (1, 255, 256, 257, 30000)]
        blob = bytes(range(256)) * 8
        for t in texts:
            self.node.cmd(op="send", id=cl, text=t)
        self.node.cmd(op="send", id=cl, b64=base64.b64encode(blob).decode())
        evs = self.message_events(cid, len(texts) + 1)
        self.assertEqual([e["data"] for e in evs[:-1]], texts)
        self.assertEqual(base64.b64decode(evs[-1]["data_base64"]), blob)
        for t in texts:
            self.assertEqual(api.send(cid, t, content_type="text/plain").status, 200)
        self.assertEqual(api.send(cid, blob, content_type="application/octet-stream").status, 200)
        got = self.node.wait(cl, "message", lambda e: "b64" in e)  # sent last, arrives last
        self.assertEqual(base64.b64decode(got["b64"]), blob)
        self.assertEqual([e["text"] for e in self.node.events(cl)
                          if e["ev"] == "message" and "text" in e], texts)

    def test_permessage_deflate_offered(self):
        self.check_compression("z-on", self.CLIENT_DEFLATE)

    def test_permessage_deflate_not_offered(self):
        self.check_compression("z-off", False)


class NodeWsConformanceDeflate(NodeWsConformance):
    """Every case with compression on: routes `compression: on`, ws
    offering permessage-deflate and deflating even 1-byte messages."""

    ROUTE_EXTRA = {"compression": "on"}
    CLIENT_DEFLATE = {"threshold": 0}  # ws compresses every message it sends


class NodeWsConformanceTls(NodeWsConformance):
    """Every case over wss://, ws trusting only a test CA (verification on)."""

    def setUp(self):
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)  # runs after the gateway stopped
        ca = TestCA(self.tmp.path)
        cert, key = ca.issue("edge")
        with open(ca.pem) as f:
            self.CA = f.read()
        self.GATEWAY_CONFIG = {"edge": {"tls": {"cert_file": cert, "key_file": key}}}
        super().setUp()

    def edge_url(self):
        return "wss://127.0.0.1:%d" % self.gw.edge_port

    def test_other_ca_refused(self):
        other = TestCA(self.tmp.path, name="other")
        with open(other.pem) as f:
            self.node.open("x1", self.url + "/chat?tag=x1", ca=f.read())
        self.assertIn("certificate", self.node.wait("x1", "error")["message"])
        self.node.drain(0.5)
        self.assertNotIn("open", [e["ev"] for e in self.node.events("x1")])
        reached = [e for e in self.be.events() if (e.get("query") or {}).get("tag") == "x1"]
        self.assertEqual(reached, [])


if __name__ == "__main__":
    w.main()
