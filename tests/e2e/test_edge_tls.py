# SPDX-License-Identifier: MIT
"""test_edge_tls.py — wss:// on the edge (edge.tls), through the real binary
with a CA made by the openssl CLI at test time and Python's ssl module:

- a wss:// client authenticates (JWT), its frames become events and the
  control API's sends reach it, large messages both ways, TLS 1.2+ with an
  AEAD cipher; a plain ws:// request on the TLS port gets no 101;
- a first frame written in the request's TLS record, before the 101, is
  read (admitted at once and after the authorizer; over several records),
  and an unmasked one there closes 1002 with nothing after it delivered;
- close codes: the client's 1000 and the server's 1009 (too big) and
  1002 (an unmasked client frame, checked on the plaintext OpenSSL
  decrypted, as on ws://), each with its disconnect event;
- a publish to more TLS members than the edge writes alone (600 > 512, the
  fan-out helper's threshold, edge.threads 1 so the helper exists): every
  member decrypts every frame whole and in order (the helper never writes
  TLS sockets, ws-edge/edge_fanout.c direct_ok);
- SIGHUP reloads the certificate: a connection made before keeps working,
  one made after sees the new certificate; a broken file keeps the old one;
- TLS session resumption (docs/tls.md): a client offering the ticket of an
  earlier connection resumes (no certificate, no signature) and works both
  ways; after a SIGHUP reload (new ticket keys) the same offer falls back to
  a full handshake that still succeeds.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import os
import shutil
import signal
import ssl

import wsgate_test as w
from wsgate_tls import TestCA, peer_cn

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}
MEMBERS = 600  # above EDGE_FANOUT_MIN (512)


def token(user, **kw):
    return w.mint_jwt(w.client_claims(user, **kw))


class EdgeTls(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.ca = TestCA(self.tmp.path)
        self.cert, self.key = self.ca.issue("edge", cn="edge-one")
        # the files the gateway reads; replaced in place by the reload test
        self.cert_file = self.tmp.join("live.pem")
        self.key_file = self.tmp.join("live.key")
        shutil.copy(self.cert, self.cert_file)
        shutil.copy(self.key, self.key_file)
        self.ctx = self.ca.client_context()
        self.be = self.backend()

    def start(self, threads=2, routes=(), **limits):
        self.gw = self.gateway(
            [w.route("/chat", self.be.url, jwt=JWT,
                     limits=dict({"max_message_bytes": 200000,
                                  "max_outbound_bytes": 16 << 20}, **limits))] + list(routes),
            config={"edge": {"threads": threads,
                             "tls": {"cert_file": self.cert_file, "key_file": self.key_file}}})
        self.url = "wss://127.0.0.1:%d/chat" % self.gw.edge_port
        self.api = self.gw.control()

    def wss(self, user="alice", **kw):
        return self.client(self.url, query={"token": token(user, **kw)}, ssl_context=self.ctx)

    def conn_of(self, user):
        return self.be.wait_event(lambda e: e["type"] == "connect"
                                  and e["user"] == user)["connection_id"]

    def disconnect_of(self, conn):
        return self.be.wait_event(lambda e: e["type"] == "disconnect"
                                  and e["connection_id"] == conn)

    def test_wss_both_ways_and_close(self):
        self.start()
        ws = self.wss("alice")
        version = ws.sock.version()
        self.assertIn(version, ("TLSv1.2", "TLSv1.3"))
        cipher = ws.sock.cipher()[0]
        self.assertTrue("GCM" in cipher or "CHACHA20" in cipher, cipher)
        conn = self.conn_of("alice")
        big = "x" * 150000
        ws.send_text("hello over tls")
        ws.send_text(big)
        evs = self.be.wait_events(lambda e: e["type"] == "message", 2)
        self.assertEqual([e["data"] for e in evs], ["hello over tls", big])
        self.assertEqual(self.api.send(conn, "from the api").status, 200)
        self.assertEqual(ws.recv_text(10), "from the api")
        blob = os.urandom(100000)
        r = self.api.send(conn, blob, content_type="application/octet-stream")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(ws.recv(10), (w.OP_BINARY, blob))
        self.assertEqual(ws.close(), (1000, ""))
        ev = self.disconnect_of(conn)
        self.assertEqual((ev["code"], ev["initiator"]), (1000, "client"))

    def test_frame_written_with_the_request_is_read(self):
        """A client that writes its first frame in the request's TLS record,
        before reading the 101, admitted at once (JWT) and after the
        authorizer: the edge reads the request 1 KiB at a time, so most of
        the frame waits decrypted inside OpenSSL, which no read event from
        the kernel announces; the edge must read it once lws has the socket
        (before, it stayed there on both paths until the client sent more)."""
        az = self.authorizer()
        az.allow(user="held")
        self.start(routes=[w.route("/az", self.be.url, auth={"authorizer": az.url})])
        base = "wss://127.0.0.1:%d" % self.gw.edge_port
        for path, query in (("/chat", {"token": token("early")}), ("/az", {"token": "opaque"})):
            text = path + " " + "e" * 6000
            ws = self.client(base + path, query=query, ssl_context=self.ctx,
                             early=w.WsClient.frame(w.OP_TEXT, text))
            self.be.wait_event(lambda e, t=text: e.get("data") == t)
            ws.send_text(path + " after")
            self.be.wait_event(lambda e, t=path + " after": e.get("data") == t)
        # more than one record: the first one's rest from OpenSSL, the others
        # from the socket
        big = "B" * 40000
        self.client(base + "/chat", query={"token": token("big")}, ssl_context=self.ctx,
                    early=w.WsClient.frame(w.OP_TEXT, "first") + w.WsClient.frame(w.OP_TEXT, big))
        self.be.wait_event(lambda e: e.get("data") == big)
        # what OpenSSL held is checked for unmasked frames like the rest, and
        # every frame before one is delivered: "a" ends in the edge's first
        # read, the next runs on into the bytes OpenSSL held
        ws = self.client(base + "/chat", query={"token": token("unmasked")}, ssl_context=self.ctx,
                         early=w.WsClient.frame(w.OP_TEXT, "a")
                         + w.WsClient.frame(w.OP_TEXT, "m" * 2000)
                         + w.WsClient.frame(w.OP_TEXT, "leak", mask=False)
                         + w.WsClient.frame(w.OP_TEXT, "after"))
        self.assertEqual(ws.wait_closed(10)[0], 1002)
        conn = self.conn_of("unmasked")
        self.assertEqual(self.disconnect_of(conn)["code"], 1002)
        data = [e.get("data") for e in self.be.events()
                if e["type"] == "message" and e["connection_id"] == conn]
        self.assertEqual(data, ["a", "m" * 2000])

    def test_plain_request_on_tls_port_gets_no_upgrade(self):
        self.start()
        with self.assertRaises(Exception):
            w.WsClient.connect("ws://127.0.0.1:%d/chat" % self.gw.edge_port,
                               query={"token": token("plain")}, timeout=3)
        # the port still serves TLS clients afterwards
        ws = self.wss("after")
        ws.send_text("fine")
        self.be.wait_event(lambda e: e.get("data") == "fine")

    def test_server_close_codes_over_tls(self):
        self.start(max_message_bytes=1000)
        ws = self.wss("big")
        conn = self.conn_of("big")
        ws.send_text("y" * 1001)
        self.assertEqual(ws.wait_closed(10)[0], 1009)
        self.assertEqual(self.disconnect_of(conn)["code"], 1009)

        ws2 = self.wss("unmasked")
        conn2 = self.conn_of("unmasked")
        ws2.send_text("before")
        self.be.wait_event(lambda e: e.get("data") == "before")
        ws2.send_raw(w.WsClient.frame(w.OP_TEXT, "leak", mask=False)
                     + w.WsClient.frame(w.OP_TEXT, "after"))
        self.assertEqual(ws2.wait_closed(10)[0], 1002)
        ev = self.disconnect_of(conn2)
        self.assertEqual((ev["code"], ev["initiator"]), (1002, "server"))
        data = [e.get("data") for e in self.be.events()
                if e["type"] == "message" and e["connection_id"] == conn2]
        self.assertEqual(data, ["before"])

    def test_publish_fan_out_to_many_tls_members(self):
        self.start(threads=1)  # one loop: the fan-out helper runs (2 CPUs)
        def query(i):
            return {"token": token("m%d" % i, channels=["big"])}
        clients = self.clients(self.url, MEMBERS, query, ssl_context=self.ctx)
        self.be.wait_events(lambda e: e["type"] == "connect", MEMBERS, timeout=90)
        sizes = (40, 3000, 70000, 40)
        payloads = [(("p%d:" % i) + chr(97 + i) * (n - 3)).encode() for i, n in enumerate(sizes)]
        for i, p in enumerate(payloads):
            ctype = "application/octet-stream" if i % 2 else "text/plain"
            r = self.api.post("/v1/channels/big/messages", p, content_type=ctype)
            self.assertEqual(r.status, 202, r.body[:200])
        for k, ws in enumerate(clients):
            for i, p in enumerate(payloads):
                op, data = ws.recv(30)
                got = data if isinstance(data, bytes) else data.encode()
                self.assertEqual(op, w.OP_BINARY if i % 2 else w.OP_TEXT, "member %d" % k)
                self.assertEqual(got, p, "member %d message %d" % (k, i))
            self.assertEqual(ws.protocol_errors, [])

    def test_sighup_reloads_certificate_without_dropping(self):
        self.start()
        old = self.wss("old")
        self.assertEqual(peer_cn(old.sock), "edge-one")
        conn = self.conn_of("old")
        # a broken file: the reload fails, the old certificate stays
        with open(self.cert_file, "w") as f:
            f.write("not a certificate\n")
        os.kill(self.gw.pid, signal.SIGHUP)
        self.gw.wait_log("certificates not reloaded", timeout=10)
        self.assertEqual(peer_cn(self.wss("during").sock), "edge-one")
        # the renewed pair
        cert2, key2 = self.ca.issue("edge2", cn="edge-two")
        shutil.copy(cert2, self.cert_file)
        shutil.copy(key2, self.key_file)
        os.kill(self.gw.pid, signal.SIGHUP)
        self.gw.wait_log("edge: certificates reloaded", timeout=10)
        new = self.wss("new")
        self.assertEqual(peer_cn(new.sock), "edge-two")
        self.assertTrue(self.gw.running())
        # the connection made before still works both ways
        self.assertFalse(old.closed.is_set())
        old.send_text("still here")
        self.be.wait_event(lambda e: e.get("data") == "still here")
        self.assertEqual(self.api.send(conn, "and back").status, 200)
        self.assertEqual(old.recv_text(10), "and back")


    def test_session_resumes_and_reload_falls_back_to_full(self):
        self.start()
        first = self.wss("first")
        self.assertFalse(first.sock.session_reused)
        ticket = first.sock.session  # TLS 1.3: the ticket came before the 101
        self.assertTrue(ticket.has_ticket)
        again = self.client(self.url, query={"token": token("again")}, ssl_context=self.ctx,
                            ssl_session=ticket)
        self.assertTrue(again.sock.session_reused)
        conn = self.conn_of("again")
        again.send_text("resumed")
        self.be.wait_event(lambda e: e.get("data") == "resumed")
        self.assertEqual(self.api.send(conn, "back").status, 200)
        self.assertEqual(again.recv_text(10), "back")
        # a reload makes a new context, with new ticket keys: the old ticket
        # is not accepted, and the handshake goes on in full
        os.kill(self.gw.pid, signal.SIGHUP)
        self.gw.wait_log("edge: certificates reloaded", timeout=10)
        after = self.client(self.url, query={"token": token("after")}, ssl_context=self.ctx,
                            ssl_session=again.sock.session)
        self.assertFalse(after.sock.session_reused)
        after.send_text("full again")
        self.be.wait_event(lambda e: e.get("data") == "full again")


class EdgeTlsConfig(w.GatewayTestCase):
    def run_with(self, tls, cmd):
        gw = w.Gateway(routes=[w.route("/chat")], start=False, config={"edge": {"tls": tls}})
        self.addCleanup(gw.close)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
        return w.run_wsgate([cmd, "--config", gw.config_path], env=env, timeout=30,
                            universal_newlines=True)

    def test_bad_tls_settings_are_refused(self):
        tmp = w.TempDir()
        self.addCleanup(tmp.cleanup)
        ca = TestCA(tmp.path)
        cert, key = ca.issue("edge")
        r = self.run_with({"cert_file": cert}, "check-config")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("edge.tls.key_file", r.stderr)
        self.assertIn("both or neither", r.stderr)
        r = self.run_with({"cert_file": cert, "key_file": tmp.join("missing.key")},
                          "check-config")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("cannot read", r.stderr)
        # a key that does not belong to the certificate stops start-up
        _, other_key = ca.issue("other")
        r = self.run_with({"cert_file": cert, "key_file": other_key}, "standalone")
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("edge.tls: cannot use private key", r.stdout + r.stderr)
        self.assertIn("mismatch", r.stdout + r.stderr)


if __name__ == "__main__":
    w.main()
