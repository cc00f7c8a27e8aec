# SPDX-License-Identifier: MIT
"""test_webhook_routing.py — picking a backend per message (docs/contract.md §3).

- rules, first match wins: {"json": "action", "equals": "join"} and
  {"regex": "^PING"}; anything else goes to the route's default backend;
- a routing service answers {"backend", "headers"} per message: the event
  goes there with those headers;
- a routing-service answer outside allowed_backends is refused: that
  backend never receives a request, and the connection's next message is
  still delivered.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import json

import wsgate_test as w


def data_of(backend):
    return [e["data"] for e in w.dedupe(backend.events()) if e.get("type") == "message"]


class WebhookRouting(w.GatewayTestCase):
    def test_rules(self):
        default, join, ping = self.backend(), self.backend(), self.backend()
        rules = [{"json": "action", "equals": "join", "backend": join.url},
                 {"regex": "^PING", "backend": ping.url}]
        gw = self.gateway([w.route("/chat", default.url, rules=rules,
                                   allowed_backends=[join.url_for("/"), ping.url_for("/")])])
        ws = self.client(gw.edge_url + "/chat")
        msgs = ['{"action":"join","room":"r1"}', "PING 1", "hello", '{"action":"leave"}',
                "not PING", '{"action":"join"}', "PINGPONG"]
        for m in msgs:
            ws.send_text(m)
        default.wait_events(lambda e: e.get("data") == "not PING", 1, 20)
        join.wait_events(lambda e: e.get("type") == "message", 2, 20)
        ping.wait_events(lambda e: e.get("type") == "message", 2, 20)
        self.assertEqual(data_of(join), [msgs[0], msgs[5]])
        self.assertEqual(data_of(ping), ["PING 1", "PINGPONG"])
        self.assertEqual(data_of(default), ["hello", '{"action":"leave"}', "not PING"])
        for be in (default, join, ping):
            for r in be.snapshot():
                self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, r.headers, r.body))
        # order per connection holds across backends
        seqs = sorted(e["seq"] for be in (join, ping, default) for e in w.dedupe(be.events())
                      if e.get("type") == "message")
        self.assertEqual(seqs, list(range(2, 2 + len(msgs))))
        ws.close()

    def test_routing_service_and_allowed_backends(self):
        default, chosen, evil = self.backend(), self.backend(), self.backend()
        rs = w.RoutingService()
        self.addCleanup(rs.stop)

        def choose(body):
            text = json.dumps(body)
            if "to-chosen" in text:
                return chosen.url, {"X-Shard": "7"}
            if "to-evil" in text:
                return evil.url
            return default.url
        rs.choose(choose)
        gw = self.gateway([w.route("/chat", default.url, routing_service=rs.url,
                                   allowed_backends=[chosen.url_for("/")],
                                   delivery={"backoff_initial": "50ms",
                                             "backoff_max": "200ms", "max_attempts": 3})])
        ws = self.client(gw.edge_url + "/chat")
        ws.send_text("to-chosen 1")
        ws.send_text("to-evil")
        ws.send_text("to-default")
        ws.send_text("to-chosen 2")
        chosen.wait_events(lambda e: e.get("data") == "to-chosen 2", 1, 20)
        default.wait_events(lambda e: e.get("data") == "to-default", 1, 20)
        self.assertEqual(data_of(chosen), ["to-chosen 1", "to-chosen 2"])
        for r in chosen.snapshot():
            if any(e.get("type") == "message" for e in r.events()):
                self.assertEqual(r.headers.get("x-shard"), "7")
                self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, r.headers, r.body))
        self.assertEqual(evil.snapshot(), [], "a backend outside allowed_backends was called")
        self.assertNotIn("to-evil", [d for d in data_of(chosen)])
        self.assertGreaterEqual(len(rs.snapshot()), 3)
        ws.close()


if __name__ == "__main__":
    w.main()
