# SPDX-License-Identifier: MIT
"""test_conformance_chromium.py — a real browser against the real binary:
Debian's headless Chromium loads a page (tests/conformance/browser_ws.html,
served by this test on loopback) that does what a web app does, opening
`new WebSocket(url, ["bearer." + token])` — browsers cannot set an
Authorization header — then sending and receiving a message and closing.

- the 101 must name one of the page's offers, else Chromium fails the
  connection (close 1006, "error"): the edge echoes the bearer entry;
- the backend sees the token's user, the page's message, and a clean 1000
  close; the control API's message reaches the page;
- the token reaches no log;
- over ws:// and over wss:// (edge.tls with a leaf of a test CA made by
  openssl at test time). Chromium trusts that one leaf through
  --ignore-certificate-errors-spki-list=<base64 SHA-256 of its public key>
  (honoured only with --user-data-dir, which every run has); certificate
  checking stays on for anything else, and without the flag the same page
  fails to connect and reaches no backend;
- with `compression: on` on the route (Chromium always offers
  permessage-deflate) the page's ws.extensions names permessage-deflate and
  ~8 KB messages go through both ways; without it, extensions is "".

Chromium missing fails the test (scripts/deps.sh installs it), no skip.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import os

import wsgate_test as w
from wsgate_clients import CONFORMANCE_DIR, Chromium, PageServer
from wsgate_tls import TestCA, spki_sha256_b64

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}


class ChromiumConformance(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)

    def start_gateway(self, config=None, **route):
        self.gw = self.gateway([w.route("/app", self.be.url, jwt=JWT, **route)], config=config)

    def start_tls_gateway(self, **route):
        """edge.tls with a test CA's leaf; returns the Chromium flag that
        trusts that leaf's key (and nothing else)."""
        cert, key = TestCA(self.tmp.path).issue("edge")
        self.start_gateway({"edge": {"tls": {"cert_file": cert, "key_file": key}}}, **route)
        return "--ignore-certificate-errors-spki-list=" + spki_sha256_b64(cert)

    def wss_url(self):
        return "wss://127.0.0.1:%d" % self.gw.edge_port

    def open_page(self, edge_url, extra_flags, user, pad=0):
        """Chromium runs the page against edge_url + "/app"; returns the
        page, the browser, the token and the page's first step."""
        page = PageServer(os.path.join(CONFORMANCE_DIR, "browser_ws.html"))
        self.addCleanup(page.stop)
        token = w.mint_jwt(w.client_claims(user))
        chrome = Chromium(page.url({"ws": edge_url + "/app", "token": token, "pad": pad}),
                          self.tmp.path, extra_flags)
        self.addCleanup(chrome.stop)
        first = page.wait(lambda r: r.get("step") in ("open", "close", "error", "throw"),
                          60, "open or close")
        return page, chrome, token, first

    def run_page(self, edge_url, extra_flags=(), user="browser-user", pad=0):
        """Chromium runs the page against edge_url + "/app" (pad: see
        browser_ws.html); returns the page's first step ("open") once it
        closed."""
        page, chrome, token, first = self.open_page(edge_url, extra_flags, user, pad)
        padding = " padding" * pad
        try:
            self.assertEqual(first.get("step"), "open",
                             "Chromium did not open the WebSocket: %r" % page.results)
            self.assertEqual(first["protocol"], "bearer." + token)
            ev = self.be.wait_event(lambda e: e["type"] == "connect" and e["user"] == user)
            cid = ev["connection_id"]
            self.assertIsNone(ev["subprotocol"])
            self.assertEqual(self.be.wait_event(
                lambda e: e["type"] == "message" and e["connection_id"] == cid)["data"],
                "from chromium" + padding)
            r = self.gw.control().send(cid, "to chromium" + padding, content_type="text/plain")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(page.wait(lambda r: r.get("step") == "message")["data"],
                             "to chromium" + padding)
            closed = page.wait(lambda r: r.get("step") == "close")
            self.assertEqual((closed["code"], closed["clean"]), (1000, True))
            d = self.be.wait_event(lambda e: e["type"] == "disconnect" and
                                   e["connection_id"] == cid)
            self.assertEqual((d["code"], d["reason"], d["initiator"]), (1000, "done", "client"))
        except AssertionError:
            print("--- chromium log ---\n" + chrome.log_tail())
            raise
        self.assertNotIn(token, self.gw.logs())
        self.assertNotIn(token.split(".")[2], str(self.be.events()))
        return first

    def test_bearer_subprotocol_over_ws(self):
        self.start_gateway()
        self.assertEqual(self.run_page(self.gw.edge_url)["extensions"], "")

    def test_bearer_subprotocol_over_wss(self):
        pin = self.start_tls_gateway()
        self.assertEqual(self.run_page(self.wss_url(), [pin])["extensions"], "")

    def test_wss_untrusted_certificate_fails(self):
        self.start_tls_gateway()
        page, _, _, first = self.open_page(self.wss_url(), [], "untrusting-user")
        self.assertIn(first.get("step"), ("error", "close"), page.results)
        closed = page.wait(lambda r: r.get("step") == "close")
        self.assertEqual((closed["code"], closed["clean"]), (1006, False))
        self.assertEqual([e for e in self.be.events() if e.get("user") == "untrusting-user"], [])

    def test_compression_on(self):
        self.start_gateway(compression="on")
        first = self.run_page(self.gw.edge_url, pad=1000)  # 8 KB each way
        self.assertIn("permessage-deflate", first["extensions"])


if __name__ == "__main__":
    w.main()
