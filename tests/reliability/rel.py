# SPDX-License-Identifier: MIT
"""rel.py — the reliability harness's framework: the case registry, the
per-case and per-group scopes that own every process and socket a case
starts, and small raw-socket HTTP helpers.

A group (`group(...)`) is one table of the report: an optional setup that
builds a fixture shared by its cases (a gateway, a cluster) and its cases in
definition order. A case is a function `fn(fx, sc)` registered with
`@G.case(name, expected)`: `fx` is the group fixture (or None), `sc` a Scope
that stops everything the case started once it returns. The function
observes real behaviour (frames, HTTP statuses, what a backend received,
exit statuses) and returns `(observed, ok)`; the expected text lives in the
decorator so that a case that raises or times out is still reported with
what it should have done. `raise NotRun(why)` reports a case that cannot run
here (visibly, never as a pass).

Threads: everything here runs on the main thread (nats-server and gateways
get a parent-death signal tied to the thread that starts them); helpers that
start threads say so. Ownership: a Scope owns what it made and releases it
in close(), in reverse order.
"""

import os
import re
import socket
import time
import traceback

import wsgate_test as w

GROUPS = []


class NotRun(Exception):
    """The case cannot run on this machine (e.g. not root); reported as such."""


class Case:
    def __init__(self, group, name, expected, fn, timeout):
        self.group = group
        self.name = name
        self.expected = expected
        self.fn = fn
        self.timeout = timeout


class Group:
    """One table of the report. setup(opts) -> fixture (a Scope, usually);
    the fixture's close() is its teardown; check() after each case reports
    (and repairs) a shared process that died."""

    def __init__(self, key, title, intro, setup=None, asan=False):
        self.asan = asan  # also run against the ASan/UBSan build (--asan-bin)
        self.key = key
        self.title = title
        self.intro = intro
        self.setup = setup
        self.cases = []

    def case(self, name, expected, timeout=90):
        def deco(fn):
            self.cases.append(Case(self, name, expected, fn, timeout))
            return fn
        return deco


def group(key, title, intro, setup=None, asan=False):
    g = Group(key, title, intro, setup, asan)
    GROUPS.append(g)
    return g


def set_binary(path):
    """Every Gateway and cluster Node started from now on runs `path`, and
    the library's waits get its time scale (3 for a sanitizer build)."""
    import wsgate_util
    path = os.path.abspath(path)
    os.environ["WSGATE_BIN"] = path
    wsgate_util.WSGATE_BIN = w.WSGATE_BIN = path
    if not os.environ.get("WSGATE_TIME_SCALE"):
        wsgate_util.TIME_SCALE = 3.0 if wsgate_util._sanitized(path) else 1.0


# --------------------------------------------------------------------------
# scopes: everything a case or a group starts, stopped by PID at the end


def sanitizer_summary(text):
    """The first sanitizer report in text, in one line: its kind and where
    (ASan: the first stack frame), or None."""
    for marker in w.SANITIZER_MARKERS:
        i = text.find(marker)
        if i < 0:
            continue
        start = text.rfind("\n", 0, i) + 1
        line = text[start:text.find("\n", i) if "\n" in text[i:] else len(text)]
        line = re.sub(r"^==\d+==", "", line.replace(w.SOURCE_DIR.rstrip("/") + "/", ""))
        line = re.split(r" on address | at pc ", line)[0].strip()
        frame = re.search(r"#0 0x[0-9a-f]+ in (\S+) (\S+)", text[i:i + 4000])
        if frame:
            line += " in %s %s" % (frame.group(1),
                                   frame.group(2).replace(w.SOURCE_DIR.rstrip("/") + "/", ""))
        return line[:300]
    return None


def exit_text(status):
    """'exit code 0', 'signal 9 (SIGKILL)' (the library's wording)."""
    return w.describe_status(status)


def process_problems(proc):
    """The problems the library's process judge (wsgate_proc.py) recorded
    for a Gateway or cluster Node since the last call, one line each; a
    sanitizer report is summarised with its kind and first frame."""
    out = []
    for p in proc.take_problems():
        first = p.split("\n", 1)[0]
        if "sanitizer report" in first:
            text = ""
            for path in proc.log_paths():
                try:
                    with open(path, "rb") as f:
                        text += f.read().decode("utf-8", "replace")
                except OSError:
                    pass
            first = "%s: %s" % (proc.watch_name, sanitizer_summary(text) or first)
        out.append(first)
    return out


class Scope:
    """Backends, gateways, clients and other resources of one case (or one
    group's fixture). close() stops them in reverse order and returns the
    problems it saw: a gateway that had died, a sanitizer report in a log."""

    def __init__(self, opts=None):
        self.opts = opts
        self._items = []  # (kind, obj, closer)
        self.shared = []  # gateways whose death must be noticed after each case
        self.tmp = w.TempDir(prefix="wsgate-rel-")

    def own(self, obj, closer, kind="other"):
        self._items.append((kind, obj, closer))
        return obj

    def backend(self, cls=None, **kw):
        be = (cls or w.Backend)(**kw)
        return self.own(be, be.stop)

    def authorizer(self, **kw):
        return self.backend(w.Authorizer, **kw)

    def gateway(self, routes, shared=False, log_level="info", cls=None, **kw):
        """A Gateway judged like the e2e tests judge theirs (wsgate_proc.py):
        close() reports a crash, an exit other than 0 on SIGTERM, a sanitizer
        report."""
        gw = (cls or w.Gateway)(routes=routes, start=False, log_level=log_level, **kw)
        self.own(gw, None, "gateway")
        gw.start()
        if shared:
            self.shared.append(gw)
        return gw

    def client(self, url, **kw):
        ws = w.WsClient.connect(url, **kw)
        return self.own(ws, ws.abort)

    def socket(self, s):
        return self.own(s, s.close)

    def check(self):
        """Problems of the shared gateways since the last check (a crash, an
        exit, a sanitizer report); a gateway that died is started again for
        the next case."""
        problems = []
        for gw in self.shared:
            if gw.check_alive() and gw.problems:
                # a sanitizer report: ASan ends the process once it has written
                wait_for(lambda: not gw.running(), 10)
                gw.check_alive()
            problems += process_problems(gw)
            if not gw.running():
                try:
                    gw.start()
                except Exception as e:  # the next case reports its own failure
                    problems.append("restart failed: %s" % fmt_exc(e))
        return problems

    def close(self):
        """Stops everything in reverse order; returns the problems seen (a
        gateway that did not exit 0 on SIGTERM, crashed, or wrote a
        sanitizer report; a closer that failed)."""
        problems = []
        for kind, obj, closer in reversed(self._items):
            try:
                if kind == "gateway":
                    obj.close()
                    problems += process_problems(obj)
                elif closer:
                    closer()
            except Exception as e:  # keep stopping the rest
                problems.append("cleanup: %s" % fmt_exc(e))
        self._items = []
        self.tmp.cleanup()
        return problems


# --------------------------------------------------------------------------
# small observation helpers


def handshake_status(url, **kw):
    """The HTTP status of a WebSocket handshake (101 closes the socket)."""
    st, hdrs, ws, body = w.WsClient.handshake(url, **kw)
    if ws is not None:
        ws.abort()
    return st


def drain(ws, seconds):
    """Data messages ws receives within `seconds` (waits the whole time)."""
    out = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        try:
            out.append(ws.recv(left)[1])
        except (AssertionError, w.WsClosed):
            if ws.closed.is_set():
                return out


def close_of(ws, timeout=5.0):
    """'close 1009 "reason"' once the server closed, else 'still open'."""
    try:
        code, reason = ws.wait_closed(timeout)
    except AssertionError:
        return None, "still open after %.0f s" % timeout
    if code == 1006:
        return code, "TCP closed without a close frame (1006)"
    if code == 1005:
        return code, "close frame without a code (1005)"
    return code, "close %d %r" % (code, reason)


def messages_of(be, pred=lambda e: True):
    return [e for e in w.dedupe(be.events()) if e.get("type") == "message" and pred(e)]


def alive(gw):
    """'' when the gateway runs and answers /healthz, else why not."""
    if not gw.running():
        return "gateway not running (%s)" % exit_text(gw.proc.returncode)
    try:
        st, _, _ = w.http_request(gw.api_url + "/healthz", timeout=5)
    except OSError as e:
        return "/healthz: %s" % e
    return "" if st == 200 else "/healthz answered %d" % st


def fmt_exc(e):
    if isinstance(e, AssertionError) and str(e):
        return str(e).splitlines()[0][:300]
    return "%s: %s" % (type(e).__name__, str(e)[:300]) if str(e) else \
        traceback.format_exception_only(type(e), e)[-1].strip()


# --------------------------------------------------------------------------
# raw HTTP on a socket (for framing attacks urllib would not send)


def raw_connect(port, host="127.0.0.1", source=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    try:
        s.connect((host, port))
    except OSError:
        s.close()
        raise
    return s


def raw_exchange(port, data, timeout=5.0, quiet=1.0):
    """Sends data on a fresh connection and reads until the server closes,
    `quiet` seconds pass without a byte, or `timeout` seconds in all.
    Returns (bytes read, closed_by_server, send_error)."""
    s = raw_connect(port, timeout=timeout)
    send_error = None
    try:
        try:
            s.sendall(data)
        except OSError as e:
            send_error = e
        buf, closed = b"", False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(min(left, quiet))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
        return buf, closed, send_error
    finally:
        s.close()


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n")


def parse_responses(buf):
    """[(status, {lower-case header: value}, body)] of every response in buf
    (bodies framed by Content-Length; a response without it ends buf)."""
    out, i = [], 0
    while True:
        m = _STATUS_LINE.search(buf, i)
        if not m:
            return out
        end = buf.find(b"\r\n\r\n", m.end() - 2)
        if end < 0:
            out.append((int(m.group(1)), {}, b""))
            return out
        headers = {}
        for ln in buf[m.end():end].split(b"\r\n"):
            if b":" in ln:
                k, v = ln.split(b":", 1)
                headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        start = end + 4
        n = headers.get("content-length")
        if n is None or not n.isdigit():
            out.append((int(m.group(1)), headers, buf[start:]))
            return out
        out.append((int(m.group(1)), headers, buf[start:start + int(n)]))
        i = start + int(n)


def describe_responses(resps, closed):
    if not resps:
        return "no answer" + (", connection closed" if closed else "")
    parts = ["HTTP %d (%s)" % (st, h.get("content-type", "no Content-Type"))
             for st, h, _ in resps]
    return ", then ".join(parts) + (", then closed" if closed else ", connection left open")


def http_head(method, path, headers, body=b"", host="wsgate"):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + host]
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def wait_for(pred, timeout, interval=0.05):
    """pred()'s first truthy value within timeout seconds, else None (no
    exception: a case reports what it saw instead)."""
    try:
        return w.wait_until(pred, timeout, interval)
    except AssertionError:
        return None


def delivered(be, data, timeout=10.0):
    """True once the backend received a message event with this data."""
    try:
        be.wait_event(lambda e: e.get("type") == "message" and e.get("data") == data, timeout)
        return True
    except AssertionError:
        return False


def connection_problems(name, evs, m, initiator=None, code=None):
    """Problems with one connection's events (deduplicated, arrival order):
    its messages must be "<name>-m000".."<name>-m<m-1>" in order, its seq
    1, 2, 3... (connect first); with initiator, exactly one
    disconnect event with that initiator (and code), the last one; without,
    no disconnect at all."""
    problems = []
    msgs = [e.get("data") for e in evs if e["type"] == "message"]
    want = ["%s-m%03d" % (name, j) for j in range(m)]
    if msgs != want:
        k = next((i for i, (a, b) in enumerate(zip(msgs, want)) if a != b),
                 min(len(msgs), len(want)))
        problems.append("%s: %d of %d messages in order (then %r)" % (name, k, m,
                                                                     msgs[k:k + 1]))
    if [e["seq"] for e in evs] != list(range(1, len(evs) + 1)):
        problems.append("%s: seq gaps" % name)
    discs = [e for e in evs if e["type"] == "disconnect"]
    if initiator is None:
        if discs:
            problems.append("%s: disconnected (%s)" % (name, discs[0].get("initiator")))
    elif len(discs) != 1:
        problems.append("%s: %d disconnect events" % (name, len(discs)))
    elif discs[0].get("initiator") != initiator or (code and discs[0].get("code") != code):
        problems.append("%s: disconnect %s/%s" % (name, discs[0].get("initiator"),
                                                  discs[0].get("code")))
    elif evs[-1] is not discs[0]:
        problems.append("%s: events after its disconnect" % name)
    return problems


def env_seconds(name, default):
    v = os.environ.get(name)
    return float(v) if v else default
