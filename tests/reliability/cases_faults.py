# SPDX-License-Identifier: MIT
"""cases_faults.py — faults around a standalone gateway (docs/contract.md §1-§3,
issue 13): kill -9 and SIGTERM of the process, a backend that is down,
failing, slow or hanging, an authorizer that is down, failing or slow, and
a full disk under the SQLite store (a small tmpfs mounted for the case, as
root; unmounted afterwards even on failure). Each case starts its own
gateway and judges by what the backend received, the dead letters the API
lists, close frames and exit statuses. Overload is in cases_overload.py.

Threads: main thread only.
"""

import atexit
import errno
import os
import signal
import subprocess
import time

import wsgate_test as w
from rel import (NotRun, alive, connection_problems, delivered, exit_text, group,
                 handshake_status, wait_for)

G = group("faults", "Faults (standalone)",
          "Each case starts its own `wsgate standalone` (shutdown_grace 3 s) with real HTTP "
          "backends; failing deliveries use delivery.max_attempts 3, timeout 1 s, backoff "
          "50–200 ms.")

PATIENT = {"backoff_initial": "50ms", "backoff_max": "500ms", "max_attempts": 1000,
           "max_age": "0", "timeout": "5s"}
FAILING = {"max_attempts": 3, "backoff_initial": "50ms", "backoff_max": "200ms",
           "timeout": "1s", "max_age": "0"}
UNLIMITED = {"rate_limit": {"messages_per_second": 0, "burst": 1000}}
GRACE_S = 3
N_CLIENTS, N_MSGS = 5, 20


def tags(n):
    return ["c%02d" % i for i in range(n)]


def clients_send(sc, url, n=N_CLIENTS, m=N_MSGS):
    """n clients (query tag cNN) each send m messages "cNN-mMMM", then a
    ping; returns the clients once every pong came back (the edge has read
    every message before it), or raises."""
    clients = [sc.client(url, query={"tag": t}) for t in tags(n)]
    for j in range(m):
        for t, c in zip(tags(n), clients):
            c.send_text("%s-m%03d" % (t, j))
    for i, c in enumerate(clients):
        c.ping(b"p%d" % i)
    if not wait_for(lambda: all((b"p%d" % i) in c.pongs for i, c in enumerate(clients)), 30):
        raise AssertionError("the edge did not read every message (no pong within 30 s)")
    return clients


def judge(be, n, m, initiator, code=None):
    """Problems with what the backend acknowledged from connections c00..:
    each has its m messages in order and exactly one disconnect (initiator,
    code), last."""
    by = w.events_by_connection(w.dedupe(be.events(answered_2xx=True)))
    problems = []
    for t in tags(n):
        cids = [c for c, evs in by.items()
                if evs[0].get("type") == "connect" and evs[0].get("query", {}).get("tag") == t]
        if len(cids) != 1:
            problems.append("%s: %d connections with a connect event" % (t, len(cids)))
            continue
        problems += connection_problems(t, by[cids[0]], m, initiator, code)
    return problems


def disconnected(be, n):
    evs = w.dedupe(be.events(answered_2xx=True))
    conns = {e["connection_id"] for e in evs if e["type"] == "disconnect"}
    return len(conns) >= n


def summary(problems, n, m, what):
    if not problems:
        return "%d connections × %d messages: all delivered in order; %s" % (n, m, what)
    return "; ".join(problems[:4]) + (" (+%d more)" % (len(problems) - 4)
                                      if len(problems) > 4 else "")


@G.case("kill -9 of standalone with the backend down",
        "after restart every accepted message is delivered in order, and each connection "
        "gets exactly one disconnect (edge_lost)", timeout=150)
def kill9(fx, sc):
    be = sc.backend(start=False)
    barrier = sc.backend()
    gw = sc.gateway([w.route("/chat", be.url, delivery=PATIENT, limits=UNLIMITED),
                     w.route("/barrier", barrier.url)],
                    config={"cluster": {"edge_timeout": "2s"}})
    clients_send(sc, gw.edge_url + "/chat")
    # a connect on another route committed after every message above
    sc.client(gw.edge_url + "/barrier")
    barrier.wait_event(lambda e: e["type"] == "connect", 30)
    status = gw.kill9()
    gw.restart()
    be.start()
    wait_for(lambda: disconnected(be, N_CLIENTS), 90, 0.2)
    time.sleep(1.0)  # late duplicates are judged too
    problems = judge(be, N_CLIENTS, N_MSGS, "edge_lost")
    return ("%s; then %s" % (exit_text(status), summary(problems, N_CLIENTS, N_MSGS,
                                                        "one edge_lost disconnect each")),
            not problems)


@G.case("SIGTERM of standalone while a webhook hangs (backend never answers)",
        "exit 0 within shutdown_grace (%d s); every client gets close 1001; after restart "
        "every message and exactly one disconnect (server, 1001) per connection" % GRACE_S,
        timeout=150)
def sigterm(fx, sc):
    be = sc.backend()
    be.respond(200, delay=60)  # a delivery is in flight at SIGTERM
    gw = sc.gateway([w.route("/chat", be.url, delivery=PATIENT, limits=UNLIMITED)],
                    config={"edge": {"shutdown_grace": "%ds" % GRACE_S}})
    clients = clients_send(sc, gw.edge_url + "/chat")
    t0 = time.monotonic()
    gw.proc.send_signal(signal.SIGTERM)
    try:
        gw.proc.wait(timeout=GRACE_S + 20)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - t0
    status = gw.stop()  # SIGKILL if it still runs
    codes = set()
    for c in clients:
        try:
            codes.add(c.wait_closed(5)[0])
        except AssertionError:
            codes.add("still open")
    codes = sorted(codes, key=str)
    be.respond(200)
    gw.restart()
    wait_for(lambda: disconnected(be, N_CLIENTS), 60, 0.2)
    time.sleep(1.0)
    problems = judge(be, N_CLIENTS, N_MSGS, "server", 1001)
    ok = status == 0 and took <= GRACE_S + 1 and codes == [1001] and not problems
    return ("%s after %.1f s; client close codes %s; then %s" % (
        exit_text(status), took, codes, summary(problems, N_CLIENTS, N_MSGS,
                                                "one server/1001 disconnect each")), ok)


# --------------------------------------------------------------------------
# backend faults


def attempts_by_event(be):
    """{(type, data): number of requests carrying that event}."""
    out = {}
    for r in be.snapshot():
        for e in r.events():
            k = (e.get("type"), e.get("data"))
            out[k] = out.get(k, 0) + 1
    return out


def dead_keys(gw):
    r = gw.control().dead_letters()
    items = (r.json or {}).get("items", []) if r.status == 200 else []
    return [((d.get("event") or {}).get("type"), (d.get("event") or {}).get("data"),
             d.get("attempts")) for d in items]


def backend_fault(sc, prepare, recover, n_msgs=2):
    """A client sends m1..mN to a backend made faulty by prepare(be); waits
    until connect and every message are dead-lettered (or 40 s), checks the
    gateway, then recover(be) and one more message must be delivered.
    Returns (dead letters, attempts seen by the backend, health, recovered)."""
    be = sc.backend()
    prepare(be)
    gw = sc.gateway([w.route("/f", be.url, delivery=FAILING)])
    ws = sc.client(gw.edge_url + "/f")
    for i in range(1, n_msgs + 1):
        ws.send_text("m%d" % i)
    dead = wait_for(lambda: (lambda d: d if len(d) >= n_msgs + 1 else None)(dead_keys(gw)), 40,
                    0.2) or dead_keys(gw)
    health = alive(gw)
    recover(be)
    ws.send_text("after")
    return dead, attempts_by_event(be), health, delivered(be, "after", 15)


def dead_ok(dead, n_msgs, attempts=3):
    want = [("connect", None, attempts)] + [("message", "m%d" % i, attempts)
                                            for i in range(1, n_msgs + 1)]
    return dead == want


def fault_obs(dead, seen, health, recovered):
    d = ", ".join("%s%s×%s" % (t, "(" + x + ")" if x else "", a) for t, x, a in dead) or "none"
    return "dead letters (event×attempts): %s; requests at the backend: %s; %s; %s" % (
        d, sum(seen.values()), health or "gateway up (/healthz 200)",
        "a later message delivered" if recovered else "a later message NOT delivered")


@G.case("backend down (connection refused)",
        "each event retried, then dead-lettered after max_attempts (3), in order; nothing "
        "lost; gateway up; a later message is delivered once the backend is back")
def backend_down(fx, sc):
    dead, seen, health, rec = backend_fault(sc, lambda be: be.stop(), lambda be: be.start())
    return fault_obs(dead, seen, health, rec), dead_ok(dead, 2) and not health and rec


@G.case("backend answers 500",
        "3 attempts per event (same webhook-id), then dead letter; nothing lost; gateway up")
def backend_500(fx, sc):
    dead, seen, health, rec = backend_fault(sc, lambda be: be.respond(500),
                                            lambda be: be.respond(200))
    tries = [seen.get(("message", "m%d" % i), 0) for i in (1, 2)]
    return (fault_obs(dead, seen, health, rec) + "; attempts seen for m1, m2: %s" % tries,
            dead_ok(dead, 2) and tries == [3, 3] and not health and rec)


@G.case("backend hangs (never answers; delivery.timeout 1 s)",
        "each attempt times out: 3 attempts, then dead letter; nothing lost; gateway up",
        timeout=120)
def backend_hang(fx, sc):
    dead, seen, health, rec = backend_fault(sc, lambda be: be.respond(200, delay=60),
                                            lambda be: be.respond(200), n_msgs=1)
    tries = seen.get(("message", "m1"), 0)
    return (fault_obs(dead, seen, health, rec) + "; attempts seen for m1: %d" % tries,
            dead_ok(dead, 1) and tries == 3 and not health and rec)


@G.case("slow backend (answers after 0.5 s, within delivery.timeout)",
        "every event delivered once, in order, no dead letter; /healthz answers meanwhile")
def backend_slow(fx, sc):
    be = sc.backend()
    be.respond(200, delay=0.5)
    gw = sc.gateway([w.route("/f", be.url, delivery=FAILING)])
    ws = sc.client(gw.edge_url + "/f")
    for i in range(1, 6):
        ws.send_text("s%d" % i)
    t0 = time.monotonic()
    health = alive(gw)
    health_s = time.monotonic() - t0
    wait_for(lambda: len(w.dedupe(be.events())) >= 6, 20, 0.1)
    evs = be.events()
    msgs = [e.get("data") for e in evs if e["type"] == "message"]
    dead = dead_keys(gw)
    want = ["s%d" % i for i in range(1, 6)]
    ok = msgs == want and not dead and not health and health_s < 1
    return ("messages received %s; dead letters %d; /healthz %s in %.2f s" % (
        msgs, len(dead), health or "200", health_s), ok)


# --------------------------------------------------------------------------
# authorizer faults


def authz_fault(sc, prepare):
    az = sc.authorizer()
    be = sc.backend()
    prepare(az)
    gw = sc.gateway([w.route("/az", be.url, auth={"authorizer": az.url,
                                                  "authorizer_timeout": "1s"}),
                     w.route("/free", be.url)])
    t0 = time.monotonic()
    st = handshake_status(gw.edge_url + "/az", timeout=15)
    took = time.monotonic() - t0
    ws = sc.client(gw.edge_url + "/free")
    ws.send_text("free after")
    served = delivered(be, "free after")
    admitted = [e for e in be.events() if e["type"] == "connect" and e["route"] == "/az"]
    health = alive(gw)
    obs = "HTTP %s after %.1f s; %s; other route %s; %s" % (
        st, took, "a connect event was published" if admitted else "no connect event",
        "serves" if served else "does NOT serve", health or "gateway up")
    return obs, st == 503 and not admitted and served and not health


@G.case("authorizer down", "HTTP 503 (fail closed); gateway up")
def authz_down(fx, sc):
    return authz_fault(sc, lambda az: az.stop())


@G.case("authorizer answers 500", "HTTP 503 (fail closed); gateway up")
def authz_500(fx, sc):
    return authz_fault(sc, lambda az: az.respond(500, b"oops"))


@G.case("authorizer slower than authorizer_timeout (3 s > 1 s)",
        "HTTP 503 after about 1 s (fail closed); gateway up")
def authz_slow(fx, sc):
    return authz_fault(sc, lambda az: az.allow(user="late", delay=3))


# --------------------------------------------------------------------------
# disk full


def unmount(path):
    if not os.path.ismount(path):
        return
    if subprocess.run(["umount", path], stderr=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["umount", "-l", path], stderr=subprocess.DEVNULL)


def fill(path):
    """Writes a file until the file system is full; returns its size."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        chunk = b"\0" * 65536
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        for size in (4096, 512, 1):  # the last pages too
            while True:
                try:
                    n += f.write(b"\0" * size)
                except OSError:
                    break
    return n


@G.case("disk full under the SQLite store (8 MiB tmpfs, filled while a client sends)",
        "no crash; /healthz answers; messages that cannot be made durable close the client "
        "with 1013, everything before is delivered in order; once space is freed a new "
        "client's message is delivered", timeout=120)
def disk_full(fx, sc):
    if os.geteuid() != 0:
        raise NotRun("mounting a tmpfs needs root")
    mnt = sc.tmp.join("store")
    os.mkdir(mnt)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise NotRun("mount -t tmpfs failed: %s" % r.stdout.decode(errors="replace").strip())
    atexit.register(unmount, mnt)
    sc.own(mnt, lambda: unmount(mnt))  # closed after the gateway below (reverse order)
    be = sc.backend()
    gw = sc.gateway([w.route("/d", be.url, limits=UNLIMITED)],
                    config={"store": "sqlite://%s/wsgate.db" % mnt})
    ws = sc.client(gw.edge_url + "/d", query={"tag": "disk"})
    ws.send_text("d-before")
    be.wait_event(lambda e: e.get("data") == "d-before", 15)
    filler = os.path.join(mnt, "filler")
    filled = fill(filler)
    sent = 0
    for i in range(300):
        try:
            ws.send_text("d%04d:" % i + "x" * 4090)
        except OSError:
            break
        sent += 1
    wait_for(lambda: ws.closed.is_set(), 5, 0.1)
    health_full = alive(gw)
    os.remove(filler)
    time.sleep(1.0)
    try:
        ws2 = sc.client(gw.edge_url + "/d")
        ws2.send_text("d-after")
        after_ok = delivered(be, "d-after", 20)
        after = "new client: message %s" % ("delivered" if after_ok else "NOT delivered")
    except (AssertionError, OSError) as e:
        after = "new client: failed (%s)" % str(e).splitlines()[0][:80]
        after_ok = False
    got = [int(d[1:5]) for d in (e.get("data", "") for e in w.dedupe(be.events()))
           if d.startswith("d") and d[1:5].isdigit()]
    in_order = got == sorted(set(got))
    code = ws.close_code if ws.closed.is_set() else None
    lost = sent - len(got)
    ok = (not health_full and after_ok and in_order and code in (None, 1013) and
          (lost == 0 or code == 1013))
    return ("filler %d KiB; sent %d, delivered %d%s; client %s; while full: %s; %s" % (
        filled // 1024, sent, len(got), "" if in_order else " OUT OF ORDER",
        "closed %s" % code if code else "open", health_full or "gateway up", after), ok)
