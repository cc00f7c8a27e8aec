# SPDX-License-Identifier: MIT
"""cases_cluster.py — kill -9 and SIGTERM of each cluster role (docs/contract.md §1-§3):
one Cluster of tests/integration/test_cluster_basic.py (a real nats-server
with JetStream, a real PostgreSQL, `wsgate migrate`, 2 edges, 2 APIs, 2
dispatchers on loopback ports; cluster.edge_timeout 3 s, cluster.ack_wait
4 s; a dead dispatcher's partition leases expire after cluster.lease_ttl,
3 s by default). Each case
stops or kills one process by PID, judges what clients and the backend saw,
and starts the process again for the next case.

Threads: main thread only (nats-server and PostgreSQL die with the thread
that started them).
"""

import itertools
import signal
import subprocess
import time

import wsgate_test as w
from rel import Scope, connection_problems, exit_text, group, process_problems, wait_for
from test_cluster_basic import Cluster
from test_cluster_faults import lease_holders

EDGE_TIMEOUT_S = 3
GRACE_S = 3
DELIVERY = {"timeout": "3s", "backoff_initial": "50ms", "backoff_max": "500ms",
            "max_attempts": 1000, "max_age": "0"}
_tags = itertools.count()


def setup(opts):
    fx = Scope(opts)
    fx.be = fx.backend()
    fx.cl = Cluster([w.route("/chat", fx.be.url, delivery=DELIVERY,
                             limits={"rate_limit": {"messages_per_second": 0, "burst": 1000}})],
                    config={"cluster": {"ack_wait": "4s"},
                            "edge": {"shutdown_grace": "%ds" % GRACE_S}})
    fx.own(fx.cl, fx.cl.close)
    fx.cl.start()
    fx.check = lambda: check(fx)
    return fx


def check(fx):
    """Problems the library's process judge saw since the last case (a node
    that crashed, exited by itself or wrote a sanitizer report; cases start
    again what they stop): reported, and the node started again."""
    problems = []
    for n in fx.cl.nodes():
        n.check_alive()
        problems += process_problems(n)
        restart(n)
    return problems


def restart(node):
    if node.running():
        return
    node.start()
    node.wait_ready(60)


G = group("cluster", "Faults (cluster)",
          "One cluster: nats-server (JetStream) + PostgreSQL + 2 edges, 2 APIs, 2 dispatchers; "
          "cluster.edge_timeout %d s, ack_wait 4 s, lease_ttl 3 s (the default), "
          "edge.shutdown_grace %d s. Each case starts again what it stopped."
          % (EDGE_TIMEOUT_S, GRACE_S), setup)


def connect(fx, sc, edge):
    """A client on edge `edge`; returns (ws, tag, connection id) once the
    registry recorded it on that edge."""
    tag = "k%03d" % next(_tags)
    ws = sc.client(fx.cl.edge_url(edge), query={"tag": tag})
    ev = fx.be.wait_event(lambda e: e["type"] == "connect" and
                          e.get("query", {}).get("tag") == tag, timeout=20)
    cid = ev["connection_id"]
    w.wait_until(lambda: fx.cl.conn_row(cid) == "edge-%d" % edge, 20, 0.05,
                 "connections row of %s" % cid)
    return ws, tag, cid


def events_of(fx, cid):
    """Events of cid the backend acknowledged (2xx), first delivery of each."""
    return [e for e in w.dedupe(fx.be.events(answered_2xx=True))
            if e.get("connection_id") == cid]


def send_and_sync(clients, m):
    for j in range(m):
        for ws, tag, _ in clients:
            ws.send_text("%s-m%03d" % (tag, j))
    for i, (ws, _, _) in enumerate(clients):
        ws.ping(b"p%d" % i)
    if not wait_for(lambda: all((b"p%d" % i) in c[0].pongs for i, c in enumerate(clients)), 30):
        raise AssertionError("no pong within 30 s")


def judge(fx, clients, m, initiator=None, code=None):
    """Problems: each connection has its m messages in order and, when
    initiator is given, exactly one disconnect with it (and code), last;
    without, no disconnect."""
    problems = []
    for _, tag, cid in clients:
        problems += connection_problems(tag, events_of(fx, cid), m, initiator, code)
    return problems


def sigterm(node, bound):
    """SIGTERM by PID; (exit status, seconds until it exited)."""
    t0 = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    try:
        node.proc.wait(timeout=bound)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - t0
    return node.stop(), took


def recv_or_none(ws, timeout=10):
    try:
        return ws.recv_text(timeout)
    except (AssertionError, w.WsClosed):
        return None


def survivor_ok(fx, ws, cid):
    r = fx.cl.api(1).send(cid, "survivor")
    got = recv_or_none(ws)
    return r.status == 200 and got == "survivor" and not [
        e for e in events_of(fx, cid) if e["type"] == "disconnect"]


def edge_case(fx, sc, kill):
    sws, _, sid = connect(fx, sc, 0)
    doomed = [connect(fx, sc, 1) for _ in range(3)]
    send_and_sync(doomed, 5)
    node = fx.cl.edges[1]
    try:
        if kill:
            status, took = node.kill9(), 0.0
        else:
            status, took = sigterm(node, GRACE_S + 20)
        codes = set()
        for ws, _, _ in doomed:
            try:
                codes.add(ws.wait_closed(5)[0])
            except AssertionError:
                codes.add("open")
        wait_for(lambda: all(any(e["type"] == "disconnect" for e in events_of(fx, c))
                             for _, _, c in doomed), EDGE_TIMEOUT_S + 30, 0.2)
        time.sleep(EDGE_TIMEOUT_S + 1.5)  # room for a second (wrong) disconnect
        problems = judge(fx, doomed, 5, "edge_lost" if kill else "server",
                         None if kill else 1001)
        surv = survivor_ok(fx, sws, sid)
    finally:
        restart(node)
    return status, took, sorted(codes, key=str), problems, surv


@G.case("kill -9 of an edge",
        "each of its connections gets exactly one disconnect (edge_lost) after "
        "edge_timeout, with every message before it; the other edge's client is untouched",
        timeout=150)
def edge_kill9(fx, sc):
    status, _, codes, problems, surv = edge_case(fx, sc, kill=True)
    obs = "%s; 3 connections: %s; survivor on edge-0 %s" % (
        exit_text(status), "; ".join(problems) or "5 messages each, one edge_lost disconnect "
        "each", "untouched" if surv else "AFFECTED")
    return obs, not problems and surv


@G.case("SIGTERM of an edge",
        "exit 0 within shutdown_grace (%d s); its clients get close 1001; exactly one "
        "disconnect (server, 1001) each, no later edge_lost; other edge untouched" % GRACE_S,
        timeout=150)
def edge_sigterm(fx, sc):
    status, took, codes, problems, surv = edge_case(fx, sc, kill=False)
    obs = "%s after %.1f s; client close codes %s; %s; survivor %s" % (
        exit_text(status), took, codes, "; ".join(problems) or
        "5 messages each, one server/1001 disconnect each", "untouched" if surv else "AFFECTED")
    return obs, status == 0 and took <= GRACE_S + 1 and codes == [1001] and not problems \
        and surv


def api_case(fx, sc, kill):
    ws, _, cid = connect(fx, sc, 0)
    node = fx.cl.apis[0]
    try:
        status, took = (node.kill9(), 0.0) if kill else sigterm(node, 20)
        r1 = fx.cl.api(1).send(cid, "via api1")
        got1 = recv_or_none(ws) if r1.status == 200 else None
    finally:
        restart(node)
    r0 = fx.cl.api(0).send(cid, "via api0 again")
    got0 = recv_or_none(ws) if r0.status == 200 else None
    open_ = not ws.closed.is_set()
    obs = "%s%s; other API: HTTP %d, client got %r; restarted API: HTTP %d, client got %r; " \
          "client %s" % (exit_text(status), "" if kill else " after %.1f s" % took, r1.status,
                         got1, r0.status, got0, "still open" if open_ else "CLOSED")
    ok = got1 == "via api1" and got0 == "via api0 again" and open_
    return obs, ok and (kill or status == 0)


@G.case("kill -9 of an API", "the other API keeps serving; the restarted one serves; no client "
        "is disconnected")
def api_kill9(fx, sc):
    return api_case(fx, sc, kill=True)


@G.case("SIGTERM of an API", "exit 0; the other API keeps serving; the restarted one serves; "
        "no client is disconnected")
def api_sigterm(fx, sc):
    return api_case(fx, sc, kill=False)


def dispatcher_case(fx, sc, kill):
    clients = [connect(fx, sc, e) for e in (0, 1, 0, 1)]
    split = wait_for(lambda: (lambda h: h if len(h) == 2 else None)(lease_holders(fx.cl)), 40,
                     0.5) or lease_holders(fx.cl)
    node = fx.cl.dispatchers[0]
    # 503 (not a stopped server: libcurl's kept-alive connections would
    # still be served): events pile up in every partition
    fx.be.respond(503)
    try:
        send_and_sync(clients, 10)
        time.sleep(0.5)
        status, took = (node.kill9(), 0.0) if kill else sigterm(node, 20)
    finally:
        fx.be.respond(200)
    t0 = time.monotonic()
    done = wait_for(lambda: not judge(fx, clients, 10), 90, 0.2)
    waited = time.monotonic() - t0
    time.sleep(1.0)
    problems = judge(fx, clients, 10)
    restart(node)
    obs = "leases before: %s; %s%s; %s" % (
        sorted(split.values()), exit_text(status), "" if kill else " after %.1f s" % took,
        "4 connections × 10 messages delivered in order %.0f s later" % waited if done and
        not problems else "; ".join(problems))
    return obs, not problems and len(split) == 2 and (kill or status == 0)


@G.case("kill -9 of a dispatcher (backend answering 503: events pending in every partition)",
        "the other dispatcher takes its partitions (lease TTL 3 s); every message delivered in "
        "order per connection", timeout=200)
def dispatcher_kill9(fx, sc):
    return dispatcher_case(fx, sc, kill=True)


@G.case("SIGTERM of a dispatcher (backend answering 503: events pending)",
        "exit 0; the other dispatcher takes over; every message delivered in order",
        timeout=200)
def dispatcher_sigterm(fx, sc):
    return dispatcher_case(fx, sc, kill=False)
