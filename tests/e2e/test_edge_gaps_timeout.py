# SPDX-License-Identifier: MIT
"""test_edge_gaps_timeout.py — routes[].limits.handshake_timeout with routes
that disagree, through the real binary (docs/edge.md, "Handshake timeouts"):

- until its request headers are complete a socket has no route, so the
  strictest route's timeout applies (not whichever route is listed first):
  a client that never finishes its headers is dropped well before the
  lenient route's 30 s;
- a handshake held for the authorizer is timed by its own route: on the
  lenient route a 2 s authorizer is waited for (101), on the strict route
  the same answer comes too late (503).

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import socket
import time

import wsgate_test as w


class HandshakeTimeouts(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.az = self.authorizer()
        auth = {"authorizer": self.az.url, "authorizer_timeout": "20s"}
        self.gw = self.gateway([
            w.route("/lenient", self.be.url, auth=auth, limits={"handshake_timeout": "30s"}),
            w.route("/strict", self.be.url, auth=auth, limits={"handshake_timeout": "1s"}),
        ])

    def test_unfinished_headers_get_the_strictest_timeout(self):
        s = socket.create_connection(("127.0.0.1", self.gw.edge_port), timeout=20)
        self.addCleanup(s.close)
        s.sendall(b"GET /lenient HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")  # never ends
        started = time.monotonic()
        try:
            data = s.recv(4096)
            while data:
                data = s.recv(4096)
        except ConnectionResetError:
            pass
        except socket.timeout:
            self.fail("the edge still holds a socket that never finished its headers")
        # lws counts whole seconds and checks once a second: 1 s becomes ~2 s.
        # lws's own header timeout (10 s) or the first route's 30 s would not.
        self.assertLess(time.monotonic() - started, 6)

    def test_held_handshake_is_timed_by_its_route(self):
        self.az.allow(user="hal", delay=2.5)
        st, _, ws, _ = w.WsClient.handshake(self.gw.edge_url + "/lenient", timeout=20)
        self.assertEqual(st, 101)
        ws.close()
        st, _, ws, body = w.WsClient.handshake(self.gw.edge_url + "/strict", timeout=20)
        if ws:
            ws.abort()
        self.assertEqual(st, 503, body)


if __name__ == "__main__":
    w.main()
