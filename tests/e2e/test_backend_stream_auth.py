# SPDX-License-Identifier: MIT
"""test_backend_stream_auth.py — authorization of a backend stream's actions
(docs/webhooks.md "Backend streams", "Authorization"): with api.auth.jwt
configured, a backend presents a control-API token over its stream
({"auth":"<JWT>"}) and each action needs the scope of the matching control-API
endpoint, verified by the API's own code.

- no token yet: every action gets a 401 error frame naming it, and nothing
  reaches the client;
- a bad token (garbage, another key) gets 401 and leaves the stream without
  one (a good one before it stays);
- a token with only `send`: send reaches the client; publish, close,
  subscribe get 403 and change nothing; a token limited to channels gets 403
  for another channel;
- a token past its exp (leeway 0): 401 until a new auth frame;
- a new stream connection (backend restart) starts without a token;
- without api.auth.jwt the stream acts as before: no token needed, an auth
  frame is accepted and changes nothing.

The backend is tests/lib/wsgate_stream.py's StreamBackend. Env: WSGATE_BIN,
PYTHONPATH=tests/lib.
"""

import time

import wsgate_test as w
from wsgate_jwt import mint_jwt
from wsgate_stream import StreamBackend, api_token


class StreamAuth(w.GatewayTestCase):
    def start(self, gateway=w.Gateway, config=None):
        self.be = StreamBackend()  # no token unless a test sends one
        self.addCleanup(self.be.stop)
        d = {"backoff_initial": "100ms", "backoff_max": "500ms"}
        gw = gateway(routes=[w.route("/chat", self.be.url, delivery=d)], config=config,
                     start=False)
        self._gateways.append(gw)
        self.addCleanup(self._close_gateway, gw)
        gw.start()
        self.gw = gw
        self.ws = self.client(gw.edge_url + "/chat")
        self.cid = self.be.wait_events(lambda e: e["type"] == "connect", 1)[0]["connection_id"]

    def auth(self, token):
        self.be.send({"auth": token})

    def errors(self, n, timeout=15):
        return self.be.wait(lambda: (lambda l: l if len(l) >= n else None)(
            [r["error"] for r in self.be.replies if "error" in r]), timeout)

    def test_no_token_then_a_token(self):
        self.start()
        self.be.send({"action": "send", "connection_id": self.cid, "data": "refused"})
        self.be.send({"action": "publish", "channel": "c", "data": "refused"})
        errs = self.errors(2)
        self.assertEqual([(e["status"], e["action"]) for e in errs],
                         [(401, "send"), (401, "publish")], errs)
        self.assertEqual(errs[0]["connection_id"], self.cid)
        self.assertIn("auth", errs[0]["detail"])
        self.auth(api_token("send"))
        self.be.send({"action": "send", "connection_id": self.cid, "data": "allowed"})
        self.assertEqual(self.ws.recv_text(), "allowed")  # nothing of the refused one first

    def test_bad_tokens(self):
        self.start()
        self.auth("not.a.token")
        self.auth(mint_jwt({"sub": "x", "scope": "admin", "exp": int(time.time()) + 300},
                           "HS256", "another key, not the api.auth.jwt secret......"))
        self.be.send({"action": "send", "connection_id": self.cid, "data": "refused"})
        errs = self.errors(3)
        self.assertEqual([(e["status"], e["action"]) for e in errs],
                         [(401, "auth"), (401, "auth"), (401, "send")], errs)
        self.assertTrue(errs[1]["detail"].startswith("invalid token"), errs[1])
        # a good token, then a bad one: the good one stays
        self.auth(api_token("send"))
        self.auth("garbage")
        self.be.send({"action": "send", "connection_id": self.cid, "data": "still allowed"})
        self.assertEqual(self.ws.recv_text(), "still allowed")
        self.assertEqual([e["action"] for e in self.errors(4)][3], "auth")

    def test_scopes(self):
        self.start()
        self.auth(api_token("send"))
        self.be.send({"action": "send", "connection_id": self.cid, "data": "one"})
        self.assertEqual(self.ws.recv_text(), "one")
        self.be.send({"action": "subscribe", "connection_id": self.cid, "channel": "room.1"})
        self.be.send({"action": "publish", "channel": "room.1", "data": "to the room"})
        self.be.send({"action": "close", "connection_id": self.cid, "code": 4000})
        errs = self.errors(3)
        self.assertEqual([(e["status"], e["action"]) for e in errs],
                         [(403, "subscribe"), (403, "publish"), (403, "close")], errs)
        self.assertIn("'subscribe' scope", errs[0]["detail"])
        self.assertIn("'publish' scope", errs[1]["detail"])
        self.assertIn("'disconnect' scope", errs[2]["detail"])
        self.be.send({"action": "send", "connection_id": self.cid, "data": "two"})
        self.assertEqual(self.ws.recv_text(), "two")  # not closed, nothing else came
        # channels claim: the API's rule
        self.auth(api_token("subscribe publish", channels=["room.*"]))
        self.be.send({"action": "subscribe", "connection_id": self.cid, "channel": "lobby"})
        err = self.errors(4)[3]
        self.assertEqual((err["status"], err["action"]), (403, "subscribe"), err)
        self.assertIn("outside this token's channels", err["detail"])
        self.be.send({"action": "subscribe", "connection_id": self.cid, "channel": "room.1"})
        self.be.send({"action": "publish", "channel": "room.1", "data": "to the room"})
        self.assertEqual(self.ws.recv_text(), "to the room")
        self.auth(api_token("admin"))
        self.be.send({"action": "close", "connection_id": self.cid, "code": 4000, "reason": "bye"})
        self.assertEqual(self.ws.wait_closed(), (4000, "bye"))
        self.assertEqual(len(self.errors(4)), 4)

    def test_expired_token(self):
        self.start(config={"api": {"auth": {"jwt": {"leeway": "0s"}}}})
        self.auth(api_token("send", ttl=2))
        self.be.send({"action": "send", "connection_id": self.cid, "data": "in time"})
        self.assertEqual(self.ws.recv_text(), "in time")
        exp = int(time.time()) + 2
        time.sleep(max(0, exp + 1.2 - time.time()))
        self.be.send({"action": "send", "connection_id": self.cid, "data": "late"})
        err = self.errors(1)[0]
        self.assertEqual((err["status"], err["action"]), (401, "send"), err)
        self.assertIn("expired", err["detail"])
        self.auth(api_token("send"))
        self.be.send({"action": "send", "connection_id": self.cid, "data": "renewed"})
        self.assertEqual(self.ws.recv_text(), "renewed")

    def test_new_stream_connection_starts_without_a_token(self):
        self.start()
        self.auth(api_token("send"))
        port = self.be.port
        self.be.stop()
        be2 = StreamBackend(port=port)
        self.addCleanup(be2.stop)
        be2.peer(20)
        be2.send({"action": "send", "connection_id": self.cid, "data": "refused"})
        err = be2.wait(lambda: next((r["error"] for r in be2.replies if "error" in r), None))
        self.assertEqual((err["status"], err["action"]), (401, "send"), err)
        be2.send({"auth": api_token("send")})
        be2.send({"action": "send", "connection_id": self.cid, "data": "again"})
        self.assertEqual(self.ws.recv_text(), "again")

    def test_without_api_auth_no_token_is_needed(self):
        self.start(w.OpenApiGateway)
        self.be.send({"action": "send", "connection_id": self.cid, "data": "open"})
        self.assertEqual(self.ws.recv_text(), "open")
        self.auth("anything: nothing to verify it with")
        self.be.send({"action": "close", "connection_id": self.cid, "code": 4000, "reason": "x"})
        self.assertEqual(self.ws.wait_closed(), (4000, "x"))
        time.sleep(w.scaled(0.3))
        self.assertEqual(self.be.replies, [], "an auth frame or action was refused")


if __name__ == "__main__":
    w.main()
