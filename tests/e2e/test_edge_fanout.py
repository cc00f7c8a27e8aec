# SPDX-License-Identifier: MIT
"""test_edge_fanout.py — a channel with more members than the edge writes
alone (ws-edge/edge_fanout.c: from 512 writable members half of them go out
on a helper thread), through the real binary with real WebSocket clients:

- every member gets every frame, whole and in publish order, text and
  binary, small and larger than 125 and 65,535 bytes (all three header
  sizes of RFC 6455 §5.2);
- members that do not read (a tiny receive buffer), one in each half, get
  every frame whole and in order once they read (no slow-consumer close:
  the queue limit is above what is sent). (On loopback the kernel takes
  even 300 kB at once, so the helper's part-written path is not reached
  here: that needs megabytes per socket.)
- ?exclude= skips one member; deliveries are counted.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import re

import wsgate_test as w

JWT = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}
MEMBERS = 600  # above EDGE_FANOUT_MIN (512)


SIZES = (40, 300000, 3000, 70000, 40, 3000)


def payload(i):
    """Message i: all three frame-header lengths, and a large frame while
    every member is still writable (so the helper writes it to its half)."""
    size = SIZES[i]
    head = ("m%03d:" % i).encode()
    return head + bytes([97 + i % 26]) * (size - len(head))


class EdgeFanout(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        # one loop: the helper only exists when CPUs outnumber the loops
        self.gw = self.gateway([w.route("/a", self.be.url, jwt=JWT,
                                        # idle_timeout 0: clients read one after
                                        # another, and answer pings only when read
                                        # (past 60 s on a loaded machine)
                                        limits={"max_outbound_bytes": 16 << 20,
                                                "idle_timeout": 0})],
                               config={"edge": {"threads": 1}})
        self.api = self.gw.control()

    def connect_many(self, n, **kw):
        def query(i):
            return {"token": w.mint_jwt(w.client_claims("u%d" % i, channels=["big"]))}
        return self.clients(self.gw.edge_url + "/a", n, query, **kw)

    def deliveries(self):
        metrics = self.api.get("/metrics").body.decode()
        m = re.search(r"^wsgate_publish_deliveries_total (\d+)", metrics, re.M)
        self.assertIsNotNone(m, metrics[:500])
        return int(m.group(1))

    def test_every_member_gets_every_frame_whole_and_in_order(self):
        def slow_reader(user):
            tok = w.mint_jwt(w.client_claims(user, channels=["big"]))
            ws = self.client(self.gw.edge_url + "/a", query={"token": tok}, rcvbuf=4096)
            ws.pause_reading()
            return ws

        # members are written in join order, the first half by the service
        # thread, the second by the helper: a slow reader in each half
        slows = [slow_reader("slow-first")]
        clients = self.connect_many(MEMBERS - 2)
        slows.append(slow_reader("slow-last"))
        # the edge has them all once the registry saw every connect
        self.be.wait_events(lambda e: e["type"] == "connect", MEMBERS, timeout=60)
        before = self.deliveries()
        n = len(SIZES)
        for i in range(n):
            ctype = "application/octet-stream" if i % 2 else "text/plain"
            r = self.api.post("/v1/channels/big/messages", payload(i), content_type=ctype)
            self.assertEqual(r.status, 202, r.body[:200])
        for k, ws in enumerate(clients):
            for i in range(n):
                op, data = ws.recv(30)
                want_op = w.OP_BINARY if i % 2 else w.OP_TEXT
                got = data if isinstance(data, bytes) else data.encode()
                self.assertEqual((op, got[:5]), (want_op, payload(i)[:5]), "client %d" % k)
                self.assertEqual(got, payload(i), "client %d message %d" % (k, i))
            self.assertEqual(ws.protocol_errors, [])
        for k, slow in enumerate(slows):
            slow.resume_reading()
            for i in range(n):
                op, data = slow.recv(30)
                got = data if isinstance(data, bytes) else data.encode()
                self.assertEqual(got, payload(i), "slow reader %d, message %d" % (k, i))
            self.assertEqual(slow.protocol_errors, [])
            self.assertFalse(slow.closed.is_set(), slow.close_code)
        self.assertEqual(self.deliveries() - before, n * MEMBERS)

        # exclude one member of the many
        ex = self.be.wait_event(lambda e: e["type"] == "connect" and e["user"] == "u0")
        r = self.api.post("/v1/channels/big/messages?exclude=%s" % ex["connection_id"], "last")
        self.assertEqual(r.status, 202)
        for ws in clients[1:] + slows:
            self.assertEqual(ws.recv_text(30), "last")
        with self.assertRaises(AssertionError):
            clients[0].recv(0.5)


if __name__ == "__main__":
    w.main()
