# SPDX-License-Identifier: MIT
"""test_backend_stream.py — backend streams (docs/webhooks.md "Backend streams"):
a route whose backend is a ws:// URL gets its events over one WebSocket the
dispatcher opens to the backend, and the backend acts at any time over it.

- the handshake carries Authorization: Bearer <JWT>, HS256 with the route's
  webhook key (and not with another key);
- connect, messages and disconnect arrive in order, one text frame each,
  with the webhook envelope (id, type, connection_id, route, seq, ...);
- actions from the backend (send, subscribe + publish, close) reach the
  client at any time, not in reply to an event;
- a bad frame gets {"error":{"status":400,...}} and changes nothing; an
  action for a connection no edge holds gets a 410 error frame naming it;
- a backend restart: the unacknowledged event comes again with the same id,
  then the rest, nothing lost, order kept;
- a gateway killed -9 with an event unacknowledged: after the restart the
  stream gets it again with the same id, then the rest, then the
  connection's one disconnect (edge_lost);
- an event never acknowledged within delivery.timeout is sent again with
  the same id, and dead-lettered after delivery.max_attempts, as a webhook;
  the next event of the connection then flows;
- a backend that stops reading its socket: the gateway's memory stays
  bounded while it does, the clients stay connected, and once it reads
  again every event arrives, in order per connection;
- delivery.batch_max above 1: a connection's backlog goes several events
  to a frame, {"events":[...]} (at most batch_max), in order, acked by id in
  one ack frame; a frame acknowledged in part is sent again whole, same
  ids, after delivery.timeout, and the next frame waits for it;
- a backend that never acknowledges: delivery stops at
  delivery.max_concurrency events in flight, the gateway's memory stays
  bounded, the clients stay connected.

The backend is tests/lib/wsgate_stream.py's StreamBackend. Env: WSGATE_BIN,
PYTHONPATH=tests/lib.
"""

import base64
import json
import re
import ssl
import tempfile
import time

import wsgate_test as w
from wsgate_jwt import verify_jwt
from wsgate_tls import TestCA
from wsgate_util import DEFAULT_WHSEC
from wsgate_stream import StreamBackend, api_token
from wsgate_ws import OP_BINARY, OP_TEXT

KEY = base64.b64decode(DEFAULT_WHSEC[len("whsec_"):])


def sanitized(pid):
    """True under AddressSanitizer: its quarantine keeps freed memory, so RSS
    measures what was allocated, not what is held (as test_overload.py)."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def assert_rss_bounded(tc, pid, rss0, bound_kib=64 * 1024):
    grown = rss_kib(pid) - rss0
    if not sanitized(pid):
        tc.assertLess(grown, bound_kib, "gateway RSS grew by %d KiB" % grown)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class BackendStream(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def stream_backend(self, **kw):
        kw.setdefault("auth", api_token())
        be = StreamBackend(**kw)
        self.addCleanup(be.stop)
        return be

    def start(self, be, **delivery):
        d = {"backoff_initial": "100ms", "backoff_max": "500ms", "max_attempts": 1000}
        d.update(delivery)
        self.gw = self.gateway([w.route("/chat", be.url, delivery=d)])
        return self.gw

    def test_handshake_jwt_and_ordered_envelopes(self):
        be = self.stream_backend()
        self.start(be)
        ws = self.client(self.gw.edge_url + "/chat")
        for i in range(5):
            ws.send_text("m%d" % i)
        self.assertEqual(ws.close(), (1000, ""))
        evs = be.wait_events(lambda e: True, 7)
        self.assertEqual([e["type"] for e in evs],
                         ["connect"] + ["message"] * 5 + ["disconnect"], evs)
        self.assertEqual([e.get("data") for e in evs[1:6]], ["m%d" % i for i in range(5)])
        cid = evs[0]["connection_id"]
        for k, e in enumerate(evs):
            self.assertTrue(e["id"].startswith("evt_"), e)
            self.assertEqual(e["connection_id"], cid)
            self.assertEqual(e["route"], "/chat")
            self.assertEqual(e["seq"], k + 1)
            self.assertIn("timestamp", e)
        self.assertEqual(len({e["id"] for e in evs}), 7)
        tok = be.tokens[0]
        claims = verify_jwt(tok, "HS256", KEY)
        self.assertEqual(claims["sub"], "/chat")
        self.assertEqual(claims["iss"], "wsgate")
        self.assertLessEqual(claims["exp"], time.time() + 120)
        with self.assertRaises(ValueError):
            verify_jwt(tok, "HS256", b"another key, not the route's secret")

    def test_wss_backend(self):
        ca = TestCA(self.tmp.name)
        cert, key = ca.issue("backend")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        be = self.stream_backend(tls=ctx)
        # the dispatcher verifies the backend's certificate with OpenSSL's
        # default trust store, pointed at the test CA
        self.gw = self.gateway([w.route("/chat", be.url)], env={"SSL_CERT_FILE": ca.pem})
        ws = self.client(self.gw.edge_url + "/chat")
        ws.send_text("over tls")
        evs = be.wait_events(lambda e: e["type"] == "message", 1)
        self.assertEqual(evs[0]["data"], "over tls")
        verify_jwt(be.tokens[0], "HS256", KEY)
        be.send({"action": "send", "connection_id": evs[0]["connection_id"], "data": "back"})
        self.assertEqual(ws.recv_text(15), "back")

    def test_wss_backend_untrusted_is_refused(self):
        ca = TestCA(self.tmp.name)
        cert, key = ca.issue("backend")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        be = self.stream_backend(tls=ctx)
        self.gw = self.gateway([w.route("/chat", be.url)],
                               env={"SSL_CERT_FILE": "/nonexistent/ca.pem"})
        ws = self.client(self.gw.edge_url + "/chat")
        ws.send_text("must not leave")
        self.gw.wait_log("backend stream down", timeout=15, route="/chat")
        time.sleep(1)
        self.assertEqual(be.events, [])
        self.assertEqual(be.tokens, [])  # no handshake over an unverified TLS session

    def test_actions_at_any_time(self):
        be = self.stream_backend()
        self.start(be)
        ws = self.client(self.gw.edge_url + "/chat")
        cid = be.wait_events(lambda e: e["type"] == "connect", 1)[0]["connection_id"]
        time.sleep(0.3)  # nothing pending: what follows answers no event
        be.send({"action": "send", "connection_id": cid, "data": "push-1"})
        self.assertEqual(ws.recv_text(15), "push-1")
        be.send({"action": "send", "connection_id": cid, "data_base64": "AAE="})
        self.assertEqual(ws.recv(15), (OP_BINARY, b"\x00\x01"))
        be.send({"action": "subscribe", "connection_id": cid, "channel": "room1"})
        be.send({"action": "send", "connection_id": cid, "data": "joined"})
        self.assertEqual(ws.recv_text(15), "joined")
        be.send({"action": "publish", "channel": "room1", "data": "to the room"})
        self.assertEqual(ws.recv_text(15), "to the room")
        be.send({"action": "close", "connection_id": cid, "code": 4001, "reason": "bye"})
        self.assertEqual(ws.wait_closed(15), (4001, "bye"))
        disc = be.wait_events(lambda e: e["type"] == "disconnect", 1)[0]
        self.assertEqual((disc["code"], disc.get("reason")), (4001, "bye"))
        self.assertEqual(be.replies, [])

    def test_bad_frames_answered_and_change_nothing(self):
        be = self.stream_backend()
        self.start(be)
        ws = self.client(self.gw.edge_url + "/chat")
        cid = be.wait_events(lambda e: e["type"] == "connect", 1)[0]["connection_id"]
        bad = ["this is not json{", {"hello": "world"}, {"action": "send", "data": "no id"},
               {"action": "explode", "connection_id": cid},
               {"action": "send", "connection_id": cid},
               {"action": "close", "connection_id": cid, "code": 1006},
               {"action": "subscribe", "connection_id": cid, "channel": ""},
               {"ack": 5}, {"ack": []}, b"\x01\x02"]
        for f in bad:
            be.send(f)
        got = be.wait(lambda: be.replies if len(be.replies) >= len(bad) else None)
        for r in got:
            self.assertEqual(r["error"]["status"], 400, r)
            self.assertTrue(r["error"]["detail"], r)
        be.send({"action": "send", "connection_id": cid, "data": "still fine"})
        self.assertEqual(ws.recv_text(15), "still fine")  # nothing came before it
        self.assertFalse(ws.closed.is_set())
        ws.send_text("after")
        be.wait_events(lambda e: e.get("data") == "after", 1)
        self.assertEqual(len(be.replies), len(bad))

    def test_action_for_unknown_connection_gets_410(self):
        be = self.stream_backend()
        self.start(be)
        ws = self.client(self.gw.edge_url + "/chat")
        cid = be.wait_events(lambda e: e["type"] == "connect", 1)[0]["connection_id"]
        be.send({"action": "send", "connection_id": "no-such-connection", "data": "x"})
        err = be.wait(lambda: be.replies[0] if be.replies else None)["error"]
        self.assertEqual((err["status"], err["action"], err["connection_id"]),
                         (410, "send", "no-such-connection"), err)
        be.send({"action": "send", "connection_id": cid, "data": "real"})
        self.assertEqual(ws.recv_text(15), "real")
        self.assertEqual(len(be.replies), 1, be.replies)

    def test_backend_restart_redelivers_same_ids_in_order(self):
        be = self.stream_backend(ack=False)
        # an ack timeout far beyond the waits below: the resend is the
        # stream's drop, not a timeout
        self.start(be, timeout="120s")
        ws = self.client(self.gw.edge_url + "/chat")
        conn = be.wait_events(lambda e: e["type"] == "connect", 1)[0]
        be.peer().send_text(json.dumps({"ack": conn["id"]}))
        for i in range(3):
            ws.send_text("a%d" % i)
        first = be.wait_events(lambda e: e["type"] == "message", 1)[0]
        self.assertEqual(first["data"], "a0")
        time.sleep(0.5)  # one event of a connection in flight: a1 waits for a0's ack
        self.assertEqual([e.get("data") for e in be.events if e["type"] == "message"], ["a0"])
        port = be.port
        be.stop()
        for i in range(3, 6):
            ws.send_text("a%d" % i)
        time.sleep(1.0)  # the dispatcher retries against a closed port
        be2 = self.stream_backend(port=port)
        msgs = be2.wait_events(lambda e: e["type"] == "message", 6, timeout=20)
        self.assertEqual(msgs[0]["id"], first["id"])  # the unacked event again, same id
        seen = []
        for e in msgs:
            if e["id"] not in [s["id"] for s in seen]:
                seen.append(e)
        self.assertEqual([e["data"] for e in seen], ["a%d" % i for i in range(6)])
        self.assertEqual([e["seq"] for e in seen], list(range(2, 8)))
        self.assertEqual(be2.replies, [])
        ws.close()

    def test_gateway_kill9_redelivers_same_ids(self):
        be = self.stream_backend(ack=False)
        self.start(be)
        ws = self.client(self.gw.edge_url + "/chat")
        conn = be.wait_events(lambda e: e["type"] == "connect", 1)[0]
        be.peer().send_text(json.dumps({"ack": conn["id"]}))
        for i in range(3):
            ws.send_text("k%d" % i)
        first = be.wait_events(lambda e: e["type"] == "message", 1)[0]
        self.assertEqual(first["data"], "k0")
        # k1 and k2 are owed only once durable (connect + 3 messages accepted)
        api = self.gw.control()

        def accepted():
            text = api.get("/metrics").body.decode()
            m = re.search(r"^wsgate_events_accepted_total (\d+)", text, re.M)
            return m is not None and int(m.group(1)) >= 4
        w.wait_until(accepted, 10, 0.02, "the three messages made durable before the kill")
        n_before = len(be.events)
        be.ack = True
        self.gw.restart(kill=True)
        evs = be.wait(lambda: (lambda l: l if any(e["type"] == "disconnect" for e in l) else None)(
            be.events[n_before:]), timeout=60)
        # the acked connect may come again too (its done may not have been
        # durable before the kill: at-least-once), with its own id
        again = [e for e in evs if e["type"] == "connect"]
        self.assertTrue(all(e["id"] == conn["id"] for e in again), again)
        evs = [e for e in evs if e["type"] != "connect"]
        self.assertEqual(evs[0]["id"], first["id"])  # the unacked event again, same id
        seen = []
        for e in evs:
            if e["id"] not in [s["id"] for s in seen]:
                seen.append(e)
        self.assertEqual([e["type"] for e in seen], ["message"] * 3 + ["disconnect"], seen)
        self.assertEqual([e.get("data") for e in seen[:3]], ["k0", "k1", "k2"])
        self.assertEqual(seen[3]["connection_id"], conn["connection_id"])
        self.assertEqual(seen[3].get("initiator"), "edge_lost")

    def test_unacked_event_retried_then_dead_lettered(self):
        be = self.stream_backend(ack=False)
        self.start(be, timeout="300ms", max_attempts=3, backoff_initial="100ms",
                   backoff_max="200ms")
        ws = self.client(self.gw.edge_url + "/chat")
        conn = be.wait_events(lambda e: e["type"] == "connect", 1)[0]
        be.peer().send_text(json.dumps({"ack": conn["id"]}))
        ws.send_text("ignored")
        ws.send_text("next")
        tries = be.wait_events(lambda e: e.get("data") == "ignored", 3)
        self.assertEqual({e["id"] for e in tries}, {tries[0]["id"]})  # the same id each time
        api = self.gw.control()
        dead = w.wait_until(lambda: [d for d in api.dead_letters().json["items"]
                                     if d["id"] == tries[0]["id"]], 20, 0.1, "the dead letter")[0]
        self.assertEqual(dead["attempts"], 3, dead)
        self.assertIn("no ack", dead.get("last_error", ""), dead)
        nxt = be.wait_events(lambda e: e.get("data") == "next", 1)[0]
        be.peer().send_text(json.dumps({"ack": nxt["id"]}))
        time.sleep(0.5)
        self.assertEqual(len([e for e in be.events if e.get("data") == "ignored"]), 3)
        self.assertFalse(ws.closed.is_set())

    def backlog(self, be, ws, n):
        """With be not acking: the connect arrives, then n messages queue
        behind it (in the dispatcher) until the connect is acknowledged."""
        conn = be.wait_events(lambda e: e["type"] == "connect", 1)[0]
        for i in range(n):
            ws.send_text("b%d" % i)
        time.sleep(w.scaled(1.0))  # the messages reach the dispatcher's queue
        return conn

    def test_batch_max_sends_a_backlog_several_events_per_frame(self):
        be = self.stream_backend(ack=False)
        self.start(be, batch_max=4)
        ws = self.client(self.gw.edge_url + "/chat")
        conn = self.backlog(be, ws, 10)
        be.ack = True  # from now on each frame's ids in one {"ack":[...]}
        be.send({"ack": conn["id"]})
        got = be.wait_events(lambda e: e["type"] == "message", 10)
        self.assertEqual([e["data"] for e in got], ["b%d" % i for i in range(10)])
        sizes = [len(f) for f in be.frames[1:]]
        self.assertEqual(sum(sizes), 10, be.frames)
        self.assertLessEqual(max(sizes), 4, sizes)
        self.assertGreater(max(sizes), 1, "the backlog went one event per frame: %r" % sizes)
        self.assertEqual(len({e["id"] for e in be.events}), 11)  # none sent twice
        self.assertEqual([e["seq"] for e in be.events], list(range(1, 12)))
        self.assertEqual(ws.close(), (1000, ""))
        be.wait_events(lambda e: e["type"] == "disconnect", 1)

    def test_batch_acked_in_part_goes_again_whole(self):
        be = self.stream_backend(ack=False)
        # longer than the backlog's wait: the connect's one ack finds it in flight
        self.start(be, batch_max=3, timeout="%dms" % (w.scaled(3.0) * 1000))
        ws = self.client(self.gw.edge_url + "/chat")
        conn = self.backlog(be, ws, 4)
        be.send({"ack": conn["id"]})

        def frames(n):  # the first n frames of messages, or None
            f = [f for f in be.frames if conn["id"] not in f]
            return f[:n] if len(f) >= n else None
        first = be.wait(lambda: frames(1))[0]
        self.assertEqual(len(first), 3, be.frames)
        be.send({"ack": first[:2]})  # not the third: the frame is not done
        again = be.wait(lambda: frames(2), 10)[1]
        self.assertEqual(again, first)  # the same frame, the same ids
        be.ack = True
        be.send({"ack": again})
        last = be.wait_events(lambda e: e.get("data") == "b3", 1)[0]
        self.assertEqual(frames(3), [first, first, [last["id"]]])
        self.assertEqual([e["data"] for e in be.events if e["type"] == "message"],
                         ["b0", "b1", "b2"] * 2 + ["b3"])

    def test_backend_that_stops_reading(self):
        be = self.stream_backend()
        self.start(be, max_concurrency=4)
        clients = [self.client(self.gw.edge_url + "/chat") for _ in range(10)]
        be.wait_events(lambda e: e["type"] == "connect", 10)
        be.peer().pause_reading()
        rss0 = rss_kib(self.gw.pid)
        big = "y" * 65536
        for i in range(20):
            for ws in clients:
                ws.send_text("%02d" % i + big)
        time.sleep(3)
        assert_rss_bounded(self, self.gw.pid, rss0)
        for ws in clients:
            self.assertFalse(ws.closed.is_set())
        be.peer().resume_reading()
        msgs = be.wait_events(lambda e: e["type"] == "message", 200, timeout=60)
        by_conn = {}
        for e in msgs:
            seen = by_conn.setdefault(e["connection_id"], [])
            if e["id"] not in [x["id"] for x in seen]:
                seen.append(e)
        self.assertEqual(len(by_conn), 10)
        for evs in by_conn.values():
            self.assertEqual([e["data"][:2] for e in evs], ["%02d" % i for i in range(20)])

    def test_never_acking_backend_bounds_delivery(self):
        be = self.stream_backend(ack=False)
        self.start(be, max_concurrency=3, timeout="10m")
        clients = [self.client(self.gw.edge_url + "/chat") for _ in range(8)]
        be.wait_events(lambda e: True, 3)
        rss0 = rss_kib(self.gw.pid)
        payload = "x" * 2000
        for _ in range(100):
            for ws in clients:
                ws.send_text(payload)
        time.sleep(3)
        ids = {e["id"] for e in be.events}
        self.assertEqual(len(ids), 3, [(e["type"], e["connection_id"]) for e in be.events])
        self.assertTrue(all(e["type"] == "connect" for e in be.events), be.events)
        for ws in clients:
            self.assertFalse(ws.closed.is_set())
        assert_rss_bounded(self, self.gw.pid, rss0)
        # acknowledging lets the next events through, in order per connection
        be.ack = True
        for e in list(be.events):
            be.peer().send_text(json.dumps({"ack": e["id"]}))
        be.wait_events(lambda e: e["type"] == "message", 10, timeout=30)


if __name__ == "__main__":
    w.main()
