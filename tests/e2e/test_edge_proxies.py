# SPDX-License-Identifier: MIT
"""test_edge_proxies.py — edge.trusted_proxies (docs/contract.md §2 TLS, §6): behind
a TLS-terminating proxy the client address comes from X-Forwarded-For, and
only when the TCP peer is a trusted proxy. Through the real binary, with a
raw client on 127.0.0.1 playing the proxy:

- trusted peer: the header's address is the connect event's remote_addr,
  the authorizer request's, the `remote` of the "client connected" and
  "handshake refused" log lines, and the key of edge.max_connections_per_ip
  (two forwarded addresses are not limited together, one forwarded address
  is, and a close frees its slot);
- the walk from the right skips trusted hops and ignores what the client
  wrote to their left; several headers are one list, in order;
- a malformed header from a trusted peer: the peer's address, still
  admitted, with a log line;
- untrusted peer (trusted_proxies empty, or not covering 127.0.0.1): the
  header is ignored, so a client cannot spoof its way past the per-IP limit;
- a bad CIDR in edge.trusted_proxies or api.trusted_proxies stops
  check-config with FILE:LINE, the key and why.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import os

import wsgate_test as w

XFF = "X-Forwarded-For"


def refused_status(url, **kw):
    st, _, ws, body = w.WsClient.handshake(url, **kw)
    if ws:
        ws.abort()
    return st, body


class TrustedProxy(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.az = self.authorizer()
        self.gw = self.gateway([
            w.route("/chat", self.be.url),
            w.route("/az", self.be.url, auth={"authorizer": self.az.url,
                                              "authorizer_timeout": "2s"}),
        ], config={"edge": {"trusted_proxies": ["127.0.0.1/32", "10.0.0.0/8", "::1"],
                            "max_connections_per_ip": 2}})
        self.url = self.gw.edge_url + "/chat"

    def connect_event(self, ws_count_before, **kw):
        ws = self.client(self.url, **kw)
        evs = self.be.wait_events(lambda e: e["type"] == "connect", ws_count_before + 1)
        return ws, evs[-1]

    def test_forwarded_address_is_remote_addr(self):
        ws, ev = self.connect_event(0, headers={XFF: "198.51.100.7"})
        self.assertEqual(ev["remote_addr"], "198.51.100.7")
        self.assertTrue(self.gw.find_log("client connected", conn=ev["connection_id"],
                                         remote="198.51.100.7"))
        # IPv6, written as inet_ntop writes it
        ws6, ev6 = self.connect_event(1, headers={XFF: "2001:DB8:0::0:1"})
        self.assertEqual(ev6["remote_addr"], "2001:db8::1")
        # no header: the peer itself
        ws0, ev0 = self.connect_event(2)
        self.assertEqual(ev0["remote_addr"], "127.0.0.1")
        for x in (ws, ws6, ws0):
            x.close()

    def test_authorizer_sees_the_forwarded_address(self):
        self.az.allow(user="ann")
        ws = self.client(self.gw.edge_url + "/az", headers={XFF: "203.0.113.44"})
        self.assertEqual(self.az.snapshot()[-1].json["remote_addr"], "203.0.113.44")
        ev = self.be.wait_event(lambda e: e["type"] == "connect")
        self.assertEqual(ev["remote_addr"], "203.0.113.44")
        ws.close()

    def test_chain_with_trusted_hops(self):
        # client-written junk and a spoofed address to the left of the real
        # client are never looked at; 10.x hops are trusted proxies
        ws, ev = self.connect_event(0, headers={XFF: "6.6.6.6, bogus, 203.0.113.9, 10.1.2.3"})
        self.assertEqual(ev["remote_addr"], "203.0.113.9")
        # two headers: one list, in order (the last header's entries are nearest)
        ws2, ev2 = self.connect_event(1, extra_request_lines=[
            XFF + ": 6.6.6.6, 203.0.113.10", XFF + ": 10.0.0.1,10.0.0.2"])
        self.assertEqual(ev2["remote_addr"], "203.0.113.10")
        # every hop trusted: the leftmost
        ws3, ev3 = self.connect_event(2, headers={XFF: "10.9.9.9, 10.0.0.1"})
        self.assertEqual(ev3["remote_addr"], "10.9.9.9")
        for x in (ws, ws2, ws3):
            x.close()

    def test_garbage_header_means_the_peer(self):
        for n, bad in enumerate(["not-an-ip", "198.51.100.7:5555", "[2001:db8::1]",
                                 "198.51.100.7, 10.0.0.1, garbage"]):
            with self.subTest(bad):
                ws, ev = self.connect_event(n, headers={XFF: bad})
                self.assertEqual(ev["remote_addr"], "127.0.0.1", bad)
                ws.close()
        self.assertTrue(self.gw.find_log("X-Forwarded-For ignored", remote="127.0.0.1"))

    def test_per_ip_limit_counts_the_forwarded_address(self):
        a = [self.client(self.url, headers={XFF: "198.51.100.1"}) for _ in range(2)]
        st, body = refused_status(self.url, headers={XFF: "198.51.100.1"})
        self.assertEqual(st, 429, body)
        self.assertTrue(self.gw.wait_log("handshake refused", remote="198.51.100.1"))
        # the same address reached through another trusted hop is the same client
        st, body = refused_status(self.url, headers={XFF: "198.51.100.1, 10.0.0.7"})
        self.assertEqual(st, 429, body)
        # another forwarded address, and the proxy itself, have their own slots
        b = [self.client(self.url, headers={XFF: "198.51.100.2"}) for _ in range(2)]
        own = self.client(self.url)
        # a close frees the slot of the address it was counted under
        a[0].close()
        w.wait_until(lambda: self.opens(headers={XFF: "198.51.100.1"}), 5, 0.1,
                     "198.51.100.1's slot freed by its close")
        for x in a[1:] + b + [own]:
            x.close()

    def opens(self, **kw):
        st, _, ws, _ = w.WsClient.handshake(self.url, **kw)
        if ws:
            ws.close()
        return st == 101


class UntrustedPeer(w.GatewayTestCase):
    """A client talking to the edge directly cannot choose its address."""

    def check_ignored(self, trusted):
        be = self.backend()
        edge = {"max_connections_per_ip": 2}
        if trusted is not None:
            edge["trusted_proxies"] = trusted
        gw = self.gateway([w.route("/chat", be.url)], config={"edge": edge})
        url = gw.edge_url + "/chat"
        held = [self.client(url, headers={XFF: "198.51.100.%d" % i}) for i in (1, 2)]
        evs = be.wait_events(lambda e: e["type"] == "connect", 2)
        self.assertEqual([e["remote_addr"] for e in evs], ["127.0.0.1", "127.0.0.1"])
        st, body = refused_status(url, headers={XFF: "198.51.100.3"})
        self.assertEqual(st, 429, "spoofed addresses share the peer's slots: %r" % body)
        for x in held:
            x.close()

    def test_no_trusted_proxies(self):
        self.check_ignored(None)

    def test_empty_list(self):
        self.check_ignored([])

    def test_list_not_covering_the_peer(self):
        self.check_ignored(["10.0.0.0/8", "127.0.0.2/32", "::1/128"])


class ConfigCheck(w.GatewayTestCase):
    def check_bad(self, yaml_text, line, key, why):
        tmp = w.TempDir()
        self.addCleanup(tmp.cleanup)
        path = tmp.write("bad.yaml", yaml_text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
        p = w.run_wsgate(["check-config", "--config", path], env=env, timeout=30,
                         universal_newlines=True)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("%s:%d: %s" % (path, line, key), p.stderr)
        self.assertIn(why, p.stderr)

    def test_bad_cidrs_are_refused_with_where_and_why(self):
        self.check_bad("edge:\n  listen: 127.0.0.1:18080\n  trusted_proxies:\n"
                       "    - 10.0.0.0/8\n    - 10.0.0.300/32\n",
                       5, "edge.trusted_proxies", "'10.0.0.300/32' is not an IP address")
        self.check_bad("edge:\n  trusted_proxies: [10.1.2.0/8]\n", 2, "edge.trusted_proxies",
                       "host bits set below the prefix (the block is 10.0.0.0/8)")
        self.check_bad("api:\n  trusted_proxies: [\"2001:db8::/129\"]\n", 2,
                       "api.trusted_proxies", "prefix length must be 0..128")
        self.check_bad("api:\n  trusted_proxies: [proxy.example]\n", 2,
                       "api.trusted_proxies", "'proxy.example' is not an IP address")


if __name__ == "__main__":
    w.main()
