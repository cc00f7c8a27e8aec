# SPDX-License-Identifier: MIT
"""test_webhook_routing_ssrf.py — a routing service cannot steer events
outside allowed_backends (docs/contract.md §3 "Routing": no SSRF).

The route allows the prefix http://127.0.0.1:P/events (no trailing slash).
The backend on P has two handlers: /events and below it take events; any
other path (the "admin" handler, matched the way a framework would after
decoding %2e/%2f and resolving dot segments) must never be reached.

- answers that leave the prefix after parsing (dot segments, %2e%2e, %2f,
  /eventsX, userinfo, another port or scheme, upper-case variants of the
  same tricks) dead-letter the event with "routing service named a backend
  outside allowed_backends" (docs/webhooks.md) and call nobody;
- answers within it are delivered to the path libcurl sends, which is the
  path that was checked: dot segments resolved, scheme compared without
  case;
- the connection's later messages are still delivered, in order.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import posixpath
import urllib.parse

import wsgate_test as w

REFUSED = "routing service named a backend outside allowed_backends"


def normalized(path):
    """What a decoding backend framework makes of a raw request path."""
    p = posixpath.normpath(urllib.parse.unquote(path))
    return p if p.startswith("/") else "/" + p


class RoutingSsrf(w.GatewayTestCase):
    def test_answers_outside_the_prefix_are_dead_lettered(self):
        default, target, other = self.backend(), self.backend(), self.backend()
        admin_calls = []

        def handler(req):
            if normalized(req.path) == "/events" or normalized(req.path).startswith("/events/"):
                return None  # the events handler: the default 200
            admin_calls.append(req.path)  # the second handler: must stay unreached
            return w.Response(200, {"deleted": "everything"})
        target.handler = handler
        base = "127.0.0.1:%d" % target.port
        refused = {
            "dotdot": "http://%s/events/../admin/delete-all" % base,
            "dotdot-end": "http://%s/events/.." % base,
            "pct-dots": "http://%s/events/%%2e%%2e/admin/delete-all" % base,
            "pct-dots-upper": "http://%s/events/%%2E%%2E/admin/delete-all" % base,
            "pct-dot-mixed": "http://%s/events/.%%2e/admin/delete-all" % base,
            "pct-slash": "http://%s/events%%2f..%%2fadmin/delete-all" % base,
            "backslash": "http://%s/events/..%%5cadmin/delete-all" % base,
            "sibling": "http://%s/eventsX/admin" % base,
            "userinfo-host": "http://%s@127.0.0.1:%d/events" % (base, other.port),
            "userinfo-same-host": "http://admin:x@%s/events/x" % base,
            "other-port": "http://127.0.0.1:%d/events" % other.port,
            "other-scheme": "https://%s/events" % base,
            "upper-dotdot": "HTTP://%s/events/../admin/delete-all" % base,
            "upper-path": "http://%s/EVENTS/../admin" % base,
            "not-a-url": "http://%s:99999/events" % base,
        }
        allowed = {
            "exact": ("http://%s/events" % base, "/events"),
            "below": ("http://%s/events/ok" % base, "/events/ok"),
            "resolved": ("http://%s/events/a/../resolved" % base, "/events/resolved"),
            "upper-scheme": ("HTTP://%s/events/upper" % base, "/events/upper"),
        }
        answers = dict(refused)
        answers.update({k: v[0] for k, v in allowed.items()})
        rs = w.RoutingService()
        self.addCleanup(rs.stop)
        rs.choose(lambda ev: answers.get(ev.get("data"), default.url))
        gw = self.gateway([w.route("/chat", default.url, routing_service=rs.url,
                                   allowed_backends=[target.url_for("/events")],
                                   delivery={"backoff_initial": "50ms", "backoff_max": "200ms",
                                             "max_attempts": 3})])
        ws = self.client(gw.edge_url + "/chat")
        names = list(refused) + list(allowed) + ["last"]
        for name in names:
            ws.send_text(name)
        default.wait_events(lambda e: e.get("data") == "last", 1, 30)
        target.wait_events(lambda e: e.get("type") == "message", len(allowed), 20)

        self.assertEqual(admin_calls, [], "an answer outside the prefix reached another path")
        self.assertEqual(other.snapshot(), [], "an answer reached another port or host")
        got = {}
        for r in target.snapshot():
            for e in r.events():
                got.setdefault(e.get("data"), set()).add(r.path)
        self.assertEqual(got, {k: {v[1]} for k, v in allowed.items()})
        dead = w.StoreReader(gw.db_path).dead_letters()
        self.assertEqual(sorted(d["event_json"]["data"] for d in dead), sorted(refused))
        for d in dead:
            self.assertEqual(d["last_error"], REFUSED, d["event_json"]["data"])
        self.assertEqual([e["data"] for e in w.dedupe(default.events())
                          if e.get("type") == "message"], ["last"])
        ws.close()


if __name__ == "__main__":
    w.main()
