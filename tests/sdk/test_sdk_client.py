# SPDX-License-Identifier: MIT
"""test_sdk_client.py — libwsgate's control-API client against the real
gateway (standalone): sdk_client_check calls every endpoint through the SDK
(send text and binary, connection info, 100 sends from four threads on one
client, subscribe/unsubscribe, members, channels, publish with exclude,
broadcast, list pages and cursor iteration, per-user send and disconnect,
batch, dead letters list and replay, health, 410 gone and 403 problem
details, forced disconnect) and checks each answer; this test then checks
what the two WebSocket clients received, in order, and that the replayed
dead letter reached the backend again with the same id. It also verifies
and parses real webhooks with the SDK (and a tampered one is refused).

Env: WSGATE_BIN, SDK_CLIENT_CHECK (the built tests/sdk/sdk_client_check),
PYTHONPATH=tests/lib.
"""

import os
import subprocess
import tempfile
import time

import wsgate_test as w

CHECK = os.environ.get("SDK_CLIENT_CHECK", "")
# sdk_alloc_check replaces malloc, as ASan does: "none" in a sanitizer build
ALLOC_CHECK = os.environ.get("SDK_ALLOC_CHECK", "")


def run_check(tc, *args, timeout=120):
    p = subprocess.run([CHECK] + list(args), capture_output=True, text=True,
                       timeout=w.scaled(timeout))
    if p.returncode != 0:
        tc.fail("sdk_client_check %s failed (%d):\n%s\n%s"
                % (args[0], p.returncode, p.stdout, p.stderr))
    return p.stdout


def exercise(tc, be, api_url, api_secret, edge_urls, wait_dead_letter, ordered,
             check_replay=True):
    """alice on edge_urls[0] and bob on edge_urls[1] (route /chat, JWT);
    one dead letter; then sdk_client_check calls everything through
    api_url and the clients must have received what it sent. ordered:
    False in cluster mode, where a channel publish and a broadcast travel
    on different NATS subjects and may overtake each other."""
    tc.assertTrue(os.access(CHECK, os.X_OK), "SDK_CLIENT_CHECK not built: %r" % CHECK)
    be.handler = lambda req: (400 if any(e.get("data") == "dlq" for e in req.events())
                              else None)
    ids, clients = {}, {}
    for user, url in zip(("alice", "bob"), edge_urls):
        tok = w.mint_jwt(w.client_claims(user), "HS256", w.DEFAULT_CLIENT_SECRET)
        ws = w.WsClient.connect(url + "/chat", query={"token": tok})
        tc.addCleanup(ws.abort)
        clients[user] = ws
        ev = be.wait_event(lambda e, u=user: e["type"] == "connect" and e["user"] == u, 20)
        ids[user] = ev["connection_id"]
    a, b = clients["alice"], clients["bob"]

    # the SDK verifies and parses a webhook the gateway really sent
    req = [r for r in be.snapshot() if r.json and r.json.get("type") == "connect"][0]
    with tempfile.NamedTemporaryFile() as f:
        f.write(req.body)
        f.flush()
        out = run_check(tc, "verify", w.DEFAULT_WHSEC, req.headers["webhook-id"],
                        req.headers["webhook-timestamp"], req.headers["webhook-signature"],
                        f.name)
    tc.assertEqual(out.split()[0], "1")
    tc.assertIn(out.split()[1], ids.values())

    a.send_text("dlq")  # the backend answers 400: a dead letter
    dead = be.wait_event(lambda e: e.get("data") == "dlq", 20)
    wait_dead_letter()

    out = run_check(tc, api_url, api_secret, ids["alice"], ids["bob"])
    tc.assertIn("ALL OK", out)

    got_a = [a.recv(10)[1] for _ in range(2 + 100 + 4)]
    tc.assertEqual(got_a[:2], ["t1", b"\x00\x01\xff"])
    tc.assertEqual(got_a[2:102], ["par"] * 100)
    if ordered:
        tc.assertEqual(got_a[102:], ["p1", "b1", "bt", "bp"])
    else:
        tc.assertEqual(sorted(got_a[102:]), ["b1", "bp", "bt", "p1"])
    tc.assertEqual(a.wait_closed(10), (4000, "bye"))
    got_b = [b.recv(10)[1] for _ in range(2)]
    tc.assertEqual(got_b if ordered else sorted(got_b), ["b1", "u1"])
    tc.assertEqual(b.wait_closed(10), (4001, "bye bob"))
    if check_replay:
        wait_replayed(be, dead)


def wait_replayed(be, dead):
    """The replay delivered the same event (same id) once more."""
    be.wait_for(lambda rs: [r for r in rs for e in r.events() if e["id"] == dead["id"]][1:],
                20, "the replayed dead letter")


class SdkClient(w.GatewayTestCase):
    def test_every_call(self):
        be = self.backend()
        jwt = {"alg": "HS256", "secret": w.DEFAULT_CLIENT_SECRET}
        gw = self.gateway([w.route("/chat", be.url, jwt=jwt)])
        exercise(self, be, gw.api_url, gw.api_secret, [gw.edge_url, gw.edge_url],
                 lambda: gw.wait_log("event dead-lettered"), ordered=True)

    def test_token_renewed_before_exp(self):
        """A client with a 10 s token (renewed when under 2 s are left)
        calls at 0, 4 and 9 s: the first two carry one token, the third a
        new one that expires later; every token verifies with the secret."""
        be = self.backend()
        be.respond(200, b'{"items":[],"next_cursor":null}',
                   {"Content-Type": "application/json"})
        run_check(self, "refresh", "http://127.0.0.1:%d" % be.port, w.DEFAULT_API_SECRET,
                       timeout=60)
        reqs = be.snapshot()
        toks = [r.headers["authorization"].split(" ", 1)[1] for r in reqs]
        self.assertEqual(len(toks), 3)
        # each token valid when its request arrived (not when checked: a slow
        # run, e.g. under ASan, may check after the first one's exp)
        wall = time.time() - time.monotonic()
        claims = [w.verify_jwt(t, "HS256", w.DEFAULT_API_SECRET, now=wall + r.time)
                  for t, r in zip(toks, reqs)]
        self.assertEqual(toks[0], toks[1])
        self.assertNotEqual(toks[1], toks[2])
        self.assertGreater(claims[2]["exp"], claims[0]["exp"])
        self.assertEqual(claims[0]["scope"], "read")

    def test_allocation_failures_of_client_calls(self):
        """Every control-API call with its 1st, 2nd, ... allocation failed
        (libcurl's and jansson's included): a status, never a crash or a
        leak (sdk_alloc_check.c)."""
        if ALLOC_CHECK == "none":
            self.assertIn("ASAN_OPTIONS", os.environ, "SDK_ALLOC_CHECK=none outside ASan")
            return  # ASan's allocator and the malloc hook exclude each other
        self.assertTrue(os.access(ALLOC_CHECK, os.X_OK), "SDK_ALLOC_CHECK: %r" % ALLOC_CHECK)
        gw = self.gateway([w.route("/chat", self.backend().url)])
        tok_ws = self.client(gw.edge_url + "/chat")  # one connection for the iteration
        src = os.environ.get("WSGATE_SOURCE_DIR", ".")
        p = subprocess.run([ALLOC_CHECK, os.path.join(src, "tests", "data"), gw.api_url,
                            gw.api_secret], capture_output=True, text=True,
                           timeout=w.scaled(240))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("ALL OK", p.stdout)
        tok_ws.close()


if __name__ == "__main__":
    w.main()
