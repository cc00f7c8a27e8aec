# SPDX-License-Identifier: MIT
"""test_subs_property.py — property: whatever the interleaving of control
API subscribe/unsubscribe calls, webhook subscribe/unsubscribe actions and
client disconnects, once everything is answered the store (the API's
listings) and the edges (channel publish delivery) agree.

Each run replays ROUNDS random steps drawn from a seeded generator (the
seed is printed; WSGATE_PROP_SEED=<n> replays one). A step fires up to
three operations at once: PUT or DELETE /v1/channels/{ch}/connections/{id},
a client message whose webhook reply is a random list of subscribe and
unsubscribe actions (ending with a send the test waits for), or closing a
client (a new one takes its place). At the end, for every open connection
and channel, both listings and delivery agree (tests/lib/subs_agree.py),
and no closed connection is listed anywhere. Bounded: ROUNDS steps, every
wait bounded.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import os
import random
import sys
import threading
import time

import subs_agree as sa
import wsgate_test as w

ROUNDS = 80
CLIENTS = 4
CHANNELS = ("p0", "p1", "p2")


class SubsProperty(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.answers = {}
        self.be = self.backend()
        self.be.handler = self.answer
        self.gw = self.gateway([w.route("/chat", self.be.url)], config={"edge": {"threads": 2}})
        self.n = 0

    def answer(self, req):
        for e in req.events():
            if e.get("type") == "message" and e.get("data") in self.answers:
                return w.Response(200, {"actions": self.answers[e["data"]]})
        return None

    def open(self):
        self.n += 1
        tag = "t%d" % self.n
        ws = self.client(self.gw.edge_url + "/chat?tag=" + tag)
        ev = self.be.wait_event(lambda e: e["type"] == "connect" and
                                e.get("query", {}).get("tag") == tag, 15)
        return {"ws": ws, "id": ev["connection_id"], "acks": set()}

    def step(self, rnd, k, clients, closed):
        """One operation on a random client; returns a thread or None."""
        c = rnd.choice(clients)
        kind = rnd.random()
        if kind < 0.45:
            method = rnd.choice(("PUT", "DELETE"))
            path = "/v1/channels/%s/connections/%s" % (rnd.choice(CHANNELS), sa.q(c["id"]))

            def call():
                st = self.gw.control().request(method, path).status
                if st not in (204, 410):  # 410: the client was closed meanwhile
                    self.errors.append("%s %s: %s" % (method, path, st))
            return threading.Thread(target=call)
        if kind < 0.9:
            acts = [{"action": rnd.choice(("subscribe", "unsubscribe")),
                     "channel": rnd.choice(CHANNELS)} for _ in range(rnd.randint(1, 4))]
            word = "act-%d" % k
            self.answers[word] = acts + [{"action": "send", "data": "ack-" + word}]
            c["acks"].add("ack-" + word)
            c["ws"].send_text(word)
            return None
        clients.remove(c)
        closed.append(c)
        c["ws"].close()
        clients.append(self.open())
        return None

    def drain_acks(self, c):
        deadline = time.monotonic() + 30
        while c["acks"]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: actions never acknowledged: %r" % (c["id"], c["acks"]))
            c["acks"].discard(c["ws"].recv_text(left))

    def test_random_interleavings_agree(self):
        seed = int(os.environ.get("WSGATE_PROP_SEED") or random.randrange(1 << 30))
        sys.stderr.write("\nsubs property seed: %d (WSGATE_PROP_SEED=%d replays it)\n"
                         % (seed, seed))
        rnd = random.Random(seed)
        clients = [self.open() for _ in range(CLIENTS)]
        closed = []
        self.errors = []
        k = 0
        for _ in range(ROUNDS):
            ts = []
            for _ in range(rnd.randint(1, 3)):
                k += 1
                t = self.step(rnd, k, clients, closed)
                if t:
                    ts.append(t)
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
                self.assertFalse(t.is_alive(), "an API call did not return (seed %d)" % seed)
        self.assertEqual(self.errors, [], "seed %d" % seed)
        for c in clients:
            self.drain_acks(c)
        api = self.gw.control()
        for c in clients:
            for ch in CHANNELS:
                try:
                    sa.consistent(api, c["ws"], c["id"], ch)
                except AssertionError as e:
                    raise AssertionError("seed %d: %s" % (seed, e))
        gone = {c["id"] for c in closed}

        def none_listed():
            for ch in CHANNELS:
                r = api.get("/v1/channels/%s/connections?limit=1000" % ch)
                if gone & set(r.json["items"]):
                    return False
            return True
        w.wait_until(none_listed, 15, 0.1, "closed connections unlisted (seed %d)" % seed)


if __name__ == "__main__":
    w.main()
