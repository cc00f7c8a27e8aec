# SPDX-License-Identifier: MIT
"""test_listen.py — edge.listen and api.listen accept the same address forms
(common/listen.c), through the real binary:

- both on IPv6 loopback ("[::1]:port"): a WebSocket client connects over
  IPv6, its connect event names remote_addr "::1", a control-API send over
  IPv6 reaches it (api.listen used to refuse a bracketed address that
  check-config accepted);
- ":port" listens on every IPv4 address;
- an address that does not resolve stops start-up with the key named and a
  non-zero exit, for either key.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import socket
import unittest

import wsgate_test as w

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Listen(w.GatewayTestCase):
    def start(self, edge_listen, api_listen):
        """A gateway on the given listen values; waits for its ready line."""
        be = getattr(self, "be", None) or self.backend()
        self.be = be
        gw = w.Gateway([w.route("/a", be.url, jwt=JWT)], start=False,
                       config={"edge": {"listen": edge_listen}, "api": {"listen": api_listen}})
        self.addCleanup(gw.close)
        gw._spawn()
        return gw

    def wait_ready(self, gw):
        w.wait_until(lambda: gw.find_log("wsgate ready") or gw.proc.poll() is not None, 15,
                     0.05, "wsgate ready or exited")
        self.assertIsNone(gw.proc.poll(), gw.logs_tail())

    @unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback here")
    def test_both_on_ipv6_loopback(self):
        ep, ap = w.free_port(), w.free_port()
        gw = self.start("[::1]:%d" % ep, "[::1]:%d" % ap)
        self.wait_ready(gw)
        tok = w.mint_jwt(w.client_claims("six"))
        ws = self.client("ws://[::1]:%d/a" % ep, query={"token": tok})
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and e["user"] == "six")
        self.assertEqual(ev["remote_addr"], "::1")
        api = w.ControlApi("http://[::1]:%d" % ap, gw.api_token("send"))
        r = api.post("/v1/connections/%s/messages" % ev["connection_id"], "over six")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(ws.recv_text(10), "over six")

    def test_port_alone_is_every_ipv4_address(self):
        ep, ap = w.free_port(), w.free_port()
        gw = self.start(":%d" % ep, ":%d" % ap)
        self.wait_ready(gw)
        ws = self.client("ws://127.0.0.1:%d/a" % ep,
                         query={"token": w.mint_jwt(w.client_claims("four"))})
        ws.send_text("over four")
        self.be.wait_event(lambda e: e.get("data") == "over four")
        self.assertEqual(w.ControlApi("http://127.0.0.1:%d" % ap).get("/healthz").status, 200)

    def test_unresolvable_address_stops_start_up(self):
        for edge, api, key in (("nosuchhost.invalid:%d" % w.free_port(), "127.0.0.1:%d"
                                % w.free_port(), "edge.listen"),
                               ("127.0.0.1:%d" % w.free_port(), "nosuchhost.invalid:%d"
                                % w.free_port(), "api.listen")):
            gw = self.start(edge, api)
            gw.expect_exit("an unresolvable %s stops start-up" % key, codes=[1])
            self.assertNotEqual(gw.proc.wait(15), 0)
            self.assertIn("%s: 'nosuchhost.invalid:" % key, gw.logs())


if __name__ == "__main__":
    w.main()
