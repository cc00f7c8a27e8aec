# SPDX-License-Identifier: MIT
"""test_durability_kill9.py — accepted client messages survive kill -9 of
wsgate standalone and are delivered after restart, in order per connection,
and every connection that died with the process gets exactly one
disconnect event (docs/contract.md §1, §3).

1. The backend is down (connections refused). 20 clients connect and send
   50 messages each, then a ping each: the pong proves the edge has read
   (and handed to the bus) every message before it.
2. Barrier: a client on a second route, whose backend is up, connects; its
   connect event reaching that backend proves the durable queue committed
   every event published before it.
3. The 20 clients keep sending; wsgate gets SIGKILL mid-stream.
4. wsgate restarts on the same files and ports; the backend comes up.
5. For each connection, deduplicated by event id: connect, then messages
   m0..m(k-1) with k >= 50 and k <= what the client sent, no gap, no
   reordering, seq consecutive; a duplicate always has the same id and the
   same body; exactly one disconnect event (initiator edge_lost), after
   the last message; the registry stops listing them.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import threading
import time

import wsgate_test as w

N_CLIENTS = 20
PHASE1 = 50
PHASE2 = 100  # at most this many more each, cut short by the kill


class DurabilityKill9(w.GatewayTestCase):
    def test_kill9_loses_no_accepted_message(self):
        be = self.backend(start=False)  # down: connection refused
        barrier_be = self.backend()
        delivery = {"backoff_initial": "50ms", "backoff_max": "500ms", "max_attempts": 1000,
                    "max_age": "0", "timeout": "5s"}
        limits = {"rate_limit": {"messages_per_second": 0, "burst": 1000}}
        gw = self.gateway([w.route("/chat", be.url, delivery=delivery, limits=limits),
                           w.route("/barrier", barrier_be.url)],
                          config={"cluster": {"edge_timeout": "2s"}})

        clients = [w.WsClient.connect(gw.edge_url + "/chat") for _ in range(N_CLIENTS)]
        for c in clients:
            self.addCleanup(c.abort)
        sent = [0] * N_CLIENTS
        for j in range(PHASE1):
            for i, c in enumerate(clients):
                c.send_text("c%02d-m%03d" % (i, j))
                sent[i] += 1
        for i, c in enumerate(clients):
            c.ping(b"p%d" % i)
        for i, c in enumerate(clients):
            w.wait_until(lambda c=c, i=i: (b"p%d" % i) in c.pongs, 30, what="pong %d" % i)

        barrier = self.client(gw.edge_url + "/barrier")
        barrier_be.wait_event(lambda e: e["type"] == "connect", 30)

        stop = threading.Event()

        def keep_sending(i, c):
            for j in range(PHASE1, PHASE1 + PHASE2):
                if stop.is_set():
                    return
                try:
                    c.send_text("c%02d-m%03d" % (i, j))
                except OSError:
                    return
                sent[i] += 1
                time.sleep(0.002)
        threads = [threading.Thread(target=keep_sending, args=(i, c), daemon=True)
                   for i, c in enumerate(clients)]
        for t in threads:
            t.start()
        w.wait_until(lambda: sum(sent) >= N_CLIENTS * PHASE1 + N_CLIENTS * 10, 30,
                     what="phase-2 sending")
        gw.kill9()
        stop.set()
        for t in threads:
            t.join(10)
        for c in clients:
            c.wait_closed(10)
        barrier.abort()

        gw.restart()
        be.start()

        def all_disconnected(rs):
            conns = {e["connection_id"] for r in rs for e in r.events()
                     if e.get("type") == "disconnect"}
            return len(conns) >= N_CLIENTS
        # Messages are judged even when the disconnects do not come, so a
        # failure says which of the two guarantees broke.
        try:
            be.wait_for(all_disconnected, 90, "a disconnect for each of the 20 connections")
            disc_err = None
        except AssertionError as e:
            disc_err = e
        # let any in-flight duplicate retries land before judging
        time.sleep(1.0)

        raw = be.events()
        bodies = {}
        for e in raw:
            if e["id"] in bodies:
                self.assertEqual(bodies[e["id"]], e, "same webhook id, different event")
            bodies[e["id"]] = e
        for r in be.snapshot():
            self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, r.headers, r.body))
        by = w.events_by_connection(w.dedupe(raw))
        self.assertEqual(len(by), N_CLIENTS, sorted(by))
        client_of = {}
        for cid, evs in by.items():
            self.assertEqual(evs[0]["type"], "connect", evs[:2])
            msgs = [e for e in evs if e["type"] == "message"]
            self.assertGreater(len(msgs), 0)
            i = int(msgs[0]["data"][1:3])
            self.assertNotIn(i, client_of, "two connections claim client %d" % i)
            client_of[i] = cid
            want = ["c%02d-m%03d" % (i, j) for j in range(len(msgs))]
            self.assertEqual([e["data"] for e in msgs], want,
                             "connection %s: lost or reordered messages" % cid)
            self.assertGreaterEqual(len(msgs), PHASE1,
                                    "client %d: accepted messages lost" % i)
            self.assertLessEqual(len(msgs), sent[i])
            self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
        if disc_err is not None:
            raise disc_err
        for cid, evs in by.items():
            discs = [e for e in evs if e["type"] == "disconnect"]
            self.assertEqual(len(discs), 1, discs)
            self.assertIs(evs[-1], discs[0], "disconnect is not the last event")
            self.assertEqual(discs[0]["initiator"], "edge_lost")
            # arrival order: nothing of this connection arrives after its
            # disconnect
            self.assertEqual([e["type"] for e in raw if e["connection_id"] == cid][-1],
                             "disconnect")
        # no second disconnect event (with another id) arrives later
        time.sleep(2.0)
        discs = {}
        for e in be.events():
            if e["type"] == "disconnect":
                discs.setdefault(e["connection_id"], set()).add(e["id"])
        self.assertTrue(all(len(v) == 1 for v in discs.values()), discs)
        # and the registry no longer lists the dead connections
        api = gw.control()

        def forgotten():
            r = api.get("/v1/connections?route=/chat")
            return r.status == 200 and r.json is not None and not r.json.get("items")
        w.wait_until(forgotten, 30, 0.2, "the registry to drop the lost connections")


if __name__ == "__main__":
    w.main()
