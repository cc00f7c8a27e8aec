# SPDX-License-Identifier: MIT
"""cases_security.py — attacks on authentication and on backend selection
(docs/contract.md §2-§4, issue 13 item 4): JWT algorithm confusion and `none` on the
edge and on the control API (both pinned to RS256 here), and SSRF through
routing-service answers and backend redirects. A routing service answers
per message with the attack URL; the case then checks what every target
server actually received, and that the connection's next message still
flows.

Threads: main thread only.
"""

import posixpath
import socket
import time
import urllib.parse

import wsgate_test as w
from rel import Scope, delivered, group, handshake_status

FAST = {"max_attempts": 1, "backoff_initial": "50ms", "backoff_max": "100ms", "timeout": "2s"}


def port_pair():
    """(A, B) free ports with B = 10*A + d: a URL naming port B starts with
    the string "http://127.0.0.1:A" (the "other port" prefix trick)."""
    for a in range(2000 + (int(time.time()) % 400) * 11, 6553):
        try:
            with socket.socket() as s1:
                s1.bind(("127.0.0.1", a))
                for d in range(10):
                    try:
                        with socket.socket() as s2:
                            s2.bind(("127.0.0.1", a * 10 + d))
                        return a, a * 10 + d
                    except OSError:
                        continue
        except OSError:
            continue
    raise RuntimeError("no free port pair")


def setup(opts):
    fx = Scope(opts)
    fx.keys = w.KeyPair("RS256", fx.tmp.path)
    fx.good = fx.backend()            # route /ssrf: backend http://127.0.0.1:P/events
    fx.evil = fx.backend()            # a host nobody allowed
    a, b = port_pair()
    fx.hostonly = fx.backend(port=a)  # route /ssrf2: allowed prefix http://127.0.0.1:A
    fx.evil_port = fx.backend(port=b)
    fx.redirector = fx.backend()
    fx.redirector.respond(307, b"", {"Location": fx.evil.url})
    fx.rs = fx.backend(w.RoutingService)
    fx.answers = {}
    fx.rs.choose(lambda ev: fx.answers.get((ev or {}).get("data"), None) or
                 fx.route_default.get((ev or {}).get("route"), fx.good.url))
    fx.route_default = {"/ssrf": fx.good.url, "/ssrf2": fx.hostonly.url}
    rs_jwt = {"alg": "RS256", "public_key_file": fx.keys.public_path}
    fx.gw = fx.gateway([
        w.route("/rs", fx.good.url, jwt=rs_jwt),
        w.route("/ssrf", fx.good.url, routing_service=fx.rs.url, delivery=FAST),
        w.route("/ssrf2", fx.hostonly.url, routing_service=fx.rs.url, delivery=FAST,
                allowed_backends=["http://127.0.0.1:%d" % a]),
        w.route("/redir", fx.redirector.url, delivery=FAST),
    ], shared=True, cls=rs_api_gateway(rs_jwt))
    return fx


def rs_api_gateway(api_jwt):
    """A Gateway whose control API takes api_jwt instead of the HS256 default
    (a deep merge would keep the default's secret beside the public key)."""
    class RsApiGateway(w.Gateway):
        def build_config(self):
            c = super().build_config()
            c["api"]["auth"]["jwt"] = dict(api_jwt)
            return c
    return RsApiGateway


G = group("security", "Security",
          "One `wsgate standalone`; client JWTs and control-API tokens pinned to RS256; "
          "routes whose routing service answers with attack URLs (`/ssrf`: backend "
          "`http://127.0.0.1:P/events`, nothing else allowed; `/ssrf2`: allowed_backends "
          "`http://127.0.0.1:A` without a path); delivery.max_attempts 1.", setup, asan=True)


def claims():
    return w.client_claims("mallory", scope="admin")


@G.case("client JWT: HS256 token keyed with the RS256 public key (alg confusion)",
        "HTTP 401 (a good RS256 token: 101)")
def edge_confusion(fx, sc):
    forged = w.mint_jwt(claims(), "HS256", fx.keys.public_pem)
    good = w.mint_jwt(claims(), "RS256", fx.keys)
    st = handshake_status(fx.gw.edge_url + "/rs", headers={"Authorization": "Bearer " + forged})
    ctl = handshake_status(fx.gw.edge_url + "/rs", headers={"Authorization": "Bearer " + good})
    return "forged: HTTP %s; good: HTTP %s" % (st, ctl), st == 401 and ctl == 101


@G.case("client JWT with alg none", "HTTP 401")
def edge_none(fx, sc):
    st = handshake_status(fx.gw.edge_url + "/rs",
                          headers={"Authorization": "Bearer " + w.forge_none(claims())})
    return "HTTP %s" % st, st == 401


def api_status(fx, token):
    return w.ControlApi(fx.gw.api_url, token).get("/v1/connections").status


@G.case("control-API token: HS256 keyed with the RS256 public key (alg confusion)",
        "HTTP 401 (a good RS256 token: 200)")
def api_confusion(fx, sc):
    st = api_status(fx, w.mint_jwt(claims(), "HS256", fx.keys.public_pem))
    ctl = api_status(fx, w.mint_jwt(claims(), "RS256", fx.keys))
    return "forged: HTTP %d; good: HTTP %d" % (st, ctl), st == 401 and ctl == 200


@G.case("control-API token with alg none", "HTTP 401")
def api_none(fx, sc):
    st = api_status(fx, w.forge_none(claims()))
    return "HTTP %d" % st, st == 401


def normalized(path):
    p = posixpath.normpath(urllib.parse.unquote(path))
    return p if p != "." else "/"


def ssrf_case(fx, sc, route, tag, url_of, targets):
    """The routing service answers url_of(fx) for message `tag`; then a
    plain message follows. targets: {name: (backend, path predicate of a
    forbidden request)}."""
    fx.answers[tag] = url_of(fx)
    before = {n: len(be.snapshot()) for n, (be, _) in targets.items()}
    ws = sc.client(fx.gw.edge_url + route)
    ws.send_text(tag)
    ws.send_text("after " + tag)
    default = fx.good if route == "/ssrf" else fx.hostonly
    flowed = delivered(default, "after " + tag, 15)
    time.sleep(0.3)
    hits = []
    for name, (be, bad) in targets.items():
        for r in be.snapshot()[before[name]:]:
            if bad(r.path) and any(e.get("data") == tag for e in r.events()):
                n = normalized(r.path)
                hits.append("%s got %s%s" % (name, r.path, "" if n == r.path else
                                             " (%s once decoded)" % n))
    obs = "%s; next message %s" % ("; ".join(hits) if hits else "no request reached a "
                                   "forbidden target", "delivered" if flowed else
                                   "NOT delivered within 15 s")
    return obs, not hits and flowed


def outside_events(path):
    n = normalized(path)
    return not (n == "/events" or n.startswith("/events/"))


# (case, expected, route, message tag, the routing service's answer,
#  {target name: (fixture attribute of its server, is a request there forbidden?)})
SSRF = [
    ("routing service answers http://127.0.0.1:P/events/../admin",
     "refused: nothing reaches a path outside /events", "/ssrf", "ssrf-dotdot",
     lambda f: f.good.url_for("/events/../admin/delete-all"),
     {"backend": ("good", outside_events)}),
    ("routing service answers …/events/%2e%2e/admin",
     "refused: nothing reaches a path outside /events (percent-decoded)", "/ssrf", "ssrf-pct",
     lambda f: f.good.url_for("/events/%2e%2e/admin"), {"backend": ("good", outside_events)}),
    ("routing service answers …/eventsX/steal (no path boundary)",
     "refused: /eventsX is not under /events", "/ssrf", "ssrf-boundary",
     lambda f: f.good.url_for("/eventsX/steal"), {"backend": ("good", outside_events)}),
    ("routing service answers http://127.0.0.1:A@127.0.0.1:E/events (userinfo)",
     "refused: host E receives nothing", "/ssrf2", "ssrf-userinfo",
     lambda f: "http://127.0.0.1:%d@127.0.0.1:%d/events" % (f.hostonly.port, f.evil.port),
     {"evil host": ("evil", lambda p: True)}),
    ("routing service answers http://127.0.0.1:A<digit>/events (other port, same prefix)",
     "refused: the other port receives nothing", "/ssrf2", "ssrf-port",
     lambda f: f.evil_port.url, {"other port": ("evil_port", lambda p: True)}),
]

for _name, _expected, _route, _tag, _url_of, _targets in SSRF:
    G.case(_name, _expected)(
        lambda fx, sc, r=_route, t=_tag, u=_url_of, tg=_targets: ssrf_case(
            fx, sc, r, t, u, {n: (getattr(fx, a), bad) for n, (a, bad) in tg.items()}))


@G.case("backend answers 307 to another host", "the redirect is not followed: that host "
        "receives nothing")
def redirect(fx, sc):
    before = len(fx.evil.snapshot())
    ws = sc.client(fx.gw.edge_url + "/redir")
    ws.send_text("redirect me")
    try:
        fx.redirector.wait_event(lambda e: e.get("data") == "redirect me", timeout=10)
    except AssertionError:
        return "the backend never got the event", False
    time.sleep(1.0)
    hits = fx.evil.snapshot()[before:]
    return ("the other host got %d request(s)" % len(hits) if hits else
            "backend asked; the other host got nothing"), not hits
