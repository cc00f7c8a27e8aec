# SPDX-License-Identifier: MIT
"""wsgate_http.py — the HTTP side of the e2e test library (re-exported by
wsgate_test.py): Standard Webhooks signing and verification, the recording
Backend with its scriptable answers (and Authorizer / RoutingService
flavours), the read-only SQLite store reader and the control-API client.

Threads: Backend handlers run on the server's daemon threads and touch the
recorded requests only under the backend's lock; inspection methods may be
called from any thread. Ownership: a Backend owns its server thread and
stops it in stop() (also at exit).
"""

import atexit
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wsgate_util import free_port, scaled


# --------------------------------------------------------------------------
# Standard Webhooks


def webhook_key(secret):
    s = secret[6:] if secret.startswith("whsec_") else secret
    return base64.b64decode(s)


def sign_webhook(secret, msg_id, timestamp, body):
    """"v1,<base64 HMAC-SHA256(key, id.timestamp.body)>"."""
    if isinstance(body, str):
        body = body.encode()
    mac = hmac.new(webhook_key(secret), ("%s.%s." % (msg_id, timestamp)).encode() + body,
                   hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify_webhook(secret, headers, body, tolerance_s=None):
    """True when the webhook-signature header holds a valid v1 signature of
    body for webhook-id and webhook-timestamp. headers: any mapping with
    lower-case keys (Request.headers). tolerance_s: also require the
    timestamp within that many seconds of now."""
    msg_id = headers.get("webhook-id")
    ts = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not msg_id or not ts or not sigs:
        return False
    if tolerance_s is not None:
        try:
            if abs(int(ts) - time.time()) > tolerance_s:
                return False
        except ValueError:
            return False
    want = sign_webhook(secret, msg_id, ts, body)
    return any(hmac.compare_digest(s, want) for s in sigs.split())


# --------------------------------------------------------------------------
# a recording HTTP backend


class Request:
    """One request a Backend received. headers: dict with lower-case keys
    (last value wins; all values in .header_list)."""

    def __init__(self, method, path, query, headers, header_list, body, remote):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.header_list = header_list
        self.body = body
        self.remote = remote
        self.time = time.monotonic()
        self.wall_time = time.time()
        self.response = None  # the Response sent (None while in progress)
        self.answered_at = None  # monotonic time just before the answer was written
        try:
            self.json = json.loads(body.decode("utf-8")) if body else None
        except ValueError:
            self.json = None

    def events(self):
        """The webhook events in this request (one, or a batch's list)."""
        j = self.json
        if isinstance(j, dict) and isinstance(j.get("events"), list):
            return list(j["events"])
        if isinstance(j, dict) and "type" in j:
            return [j]
        return []

    def __repr__(self):
        return "<Request %s %s %r>" % (self.method, self.path, self.body[:120])


class Response:
    """A scripted answer. body: bytes, str, or anything JSON-serialisable.
    delay: seconds to wait before answering. drop: close the connection
    without answering."""

    def __init__(self, status=200, body=b"", headers=None, delay=0.0, drop=False):
        self.status = status
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json")
        self.body = body.encode() if isinstance(body, str) else (body or b"")
        self.headers = dict(headers or {})
        self.delay = delay
        self.drop = drop

    def __repr__(self):
        return "<Response %d>" % self.status


def _as_response(x):
    if x is None:
        return None
    if isinstance(x, Response):
        return x
    if isinstance(x, int):
        return Response(x)
    if isinstance(x, tuple):
        return Response(*x)
    return Response(200, x)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _handle(self):
        be = self.server.backend
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        u = urllib.parse.urlsplit(self.path)
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        req = Request(self.command, u.path, urllib.parse.parse_qs(u.query), hdrs,
                      [(k.lower(), v) for k, v in self.headers.items()], body,
                      self.client_address)
        be._record(req)
        resp = be._decide(req) or Response(200)
        if resp.delay:
            be._stopped.wait(resp.delay)
        req.response = resp
        req.answered_at = time.monotonic()
        if resp.drop:
            self.close_connection = True
            be._answered(req)
            return
        try:
            self.send_response(resp.status)
            for k, v in resp.headers.items():
                self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)
            self.wfile.flush()
        except OSError:
            pass
        be._answered(req)

    def _read_chunked(self):
        out = b""
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class Backend:
    """A real HTTP server on 127.0.0.1 recording every request.

    Answers, first match wins:
      1. a queued per-call answer (script(...)), consumed one per request;
      2. handler(req) -> Response | int | body | None (None: fall through);
      3. the default (respond(...)), 200 with an empty body at first.
    start=False reserves the port without listening (a backend that is
    "down": connections are refused) until start().
    """

    def __init__(self, port=None, start=True, path="/events"):
        self.port = port or free_port()
        self.path = path
        self.requests = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._script = []
        self.handler = None
        self._default = Response(200)
        self._server = None
        self._thread = None
        self._stopped = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        if start:
            self.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d%s" % (self.port, self.path)

    def url_for(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def start(self):
        if self._server:
            return self
        self._stopped.clear()
        deadline = time.monotonic() + 10
        while True:
            try:
                self._server = _Server(("127.0.0.1", self.port), _Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._server.backend = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        return self

    def stop(self):
        """Stops listening (clients then get connection refused)."""
        self._stopped.set()
        srv, self._server = self._server, None
        if srv:
            srv.shutdown()
            srv.server_close()
        if self._thread:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- policy
    def respond(self, status=200, body=b"", headers=None, delay=0.0):
        """Sets the default answer."""
        with self._lock:
            self._default = Response(status, body, headers, delay)

    def script(self, *answers):
        """Queues answers (Response, status int, or (status, body[, headers]))
        used one per request before the handler and the default."""
        with self._lock:
            self._script.extend(_as_response(a) for a in answers)

    def _decide(self, req):
        with self._lock:
            if self._script:
                return self._script.pop(0)
            h = self.handler
            d = self._default
        if h:
            r = _as_response(h(req))
            if r is not None:
                return r
        return d

    def _record(self, req):
        with self._cond:
            self.requests.append(req)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()

    def _answered(self, req):
        with self._cond:
            self.in_flight -= 1
            self._cond.notify_all()

    # -- inspection
    def snapshot(self):
        with self._lock:
            return list(self.requests)

    def clear(self):
        with self._lock:
            self.requests.clear()

    def wait_for(self, pred, timeout=10.0, what="requests"):
        """Waits until pred(list of requests) is truthy; returns its value
        (timeout is scaled by TIME_SCALE)."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                v = pred(list(self.requests))
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.1fs waiting for %s; got %d requests:"
                                         " %r" % (timeout, what, len(self.requests),
                                                  self.requests[-5:]))
                self._cond.wait(min(left, 0.1))

    def wait_requests(self, n, timeout=10.0):
        return self.wait_for(lambda rs: rs if len(rs) >= n else None, timeout,
                             "%d requests" % n)

    def events(self, answered_2xx=False):
        """Every webhook event received, in arrival order (retries included).
        answered_2xx: only those in requests this backend acknowledged."""
        out = []
        for r in self.snapshot():
            if answered_2xx and not (r.response and 200 <= r.response.status < 300):
                continue
            out.extend(r.events())
        return out

    def wait_event(self, pred=None, timeout=10.0):
        """The first event satisfying pred(event) (any event when None)."""
        def find(rs):
            for r in rs:
                for e in r.events():
                    if pred is None or pred(e):
                        return e
            return None
        return self.wait_for(find, timeout, "a matching event")

    def wait_events(self, pred, n, timeout=10.0):
        """At least n events satisfying pred; returns all of them. Scans each
        request once (wait_for calls the predicate on every arrival: a full
        rescan each time made waiting for 20,000 events quadratic)."""
        evs, seen = [], 0

        def find(rs):
            nonlocal seen
            if len(rs) < seen:  # cleared meanwhile: start over
                evs.clear()
                seen = 0
            for r in rs[seen:]:
                evs.extend(e for e in r.events() if pred(e))
            seen = len(rs)
            return list(evs) if len(evs) >= n else None
        return self.wait_for(find, timeout, "%d matching events" % n)


class Authorizer(Backend):
    """A Backend answering authorizer requests: allow(user=..., context=...,
    channels=..., subprotocol=...) or deny(status)."""

    def __init__(self, **kw):
        super().__init__(path="/authorize", **kw)
        self.allow()

    def allow(self, user="alice", context=None, channels=None, subprotocol=None, delay=0.0):
        body = {"allow": True, "user": user}
        if context is not None:
            body["context"] = context
        if channels is not None:
            body["channels"] = channels
        if subprotocol is not None:
            body["subprotocol"] = subprotocol
        self.respond(200, body, delay=delay)

    def deny(self, status=403, body=None):
        self.respond(status, body if body is not None else {"allow": False})

    def respond(self, status=200, body=b"", headers=None, delay=0.0):
        with self._lock:
            self._default = Response(status, body, headers, delay)


class RoutingService(Backend):
    """A Backend answering {"backend": url, "headers": {...}} per message.
    choose(fn): fn(request_json) -> backend URL (or (url, headers))."""

    def __init__(self, **kw):
        super().__init__(path="/route", **kw)

        def answer(req):
            fn = self.chooser
            if fn is None:
                return None
            res = fn(req.json)
            url, hdrs = res if isinstance(res, tuple) else (res, {})
            return Response(200, {"backend": url, "headers": hdrs})
        self.chooser = None
        self.handler = answer

    def choose(self, fn):
        self.chooser = fn


# --------------------------------------------------------------------------
# the store file and the control API


class StoreReader:
    """Reads wsgate's SQLite store read-only (never writes, never locks it
    for long)."""

    def __init__(self, path):
        self.path = path

    def query(self, sql, args=()):
        if not os.path.exists(self.path):
            return []
        con = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(self.path), uri=True,
                              timeout=5)
        try:
            con.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in con.execute(sql, args).fetchall()]
            except sqlite3.OperationalError as e:
                if "no such table" in str(e):
                    return []
                raise
        finally:
            con.close()

    def dead_letters(self):
        """Rows of dead_letters; "event" is parsed JSON when it is JSON."""
        rows = self.query("SELECT * FROM dead_letters ORDER BY created_at, id")
        for r in rows:
            try:
                r["event_json"] = json.loads(r["event"])
            except (TypeError, ValueError):
                r["event_json"] = None
        return rows

    def connections(self):
        return self.query("SELECT * FROM connections ORDER BY id")

    def subscriptions(self):
        return self.query("SELECT * FROM subscriptions ORDER BY channel, connection_id")


class ApiResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body
        try:
            self.json = json.loads(body.decode()) if body else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<ApiResponse %d %r>" % (self.status, self.body[:200])


class ControlApi:
    """A small control-API client. Every call returns an ApiResponse (.status,
    .headers, .body, .json) and never raises on HTTP error statuses."""

    def __init__(self, base_url, token=None, timeout=10.0, ssl_context=None):
        self.base = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ssl_context = ssl_context  # https:// base URLs

    def request(self, method, path, body=None, content_type=None, headers=None, token=None):
        h = dict(headers or {})
        tok = self.token if token is None else token
        if tok:
            h["Authorization"] = "Bearer " + tok
        data = None
        if body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                content_type = content_type or "application/json"
            else:
                data = body.encode() if isinstance(body, str) else body
            h["Content-Type"] = content_type or "text/plain"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=scaled(self.timeout),
                                        context=self.ssl_context) as r:
                return ApiResponse(r.status, r.getheaders(), r.read())
        except urllib.error.HTTPError as e:
            return ApiResponse(e.code, e.headers.items(), e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def send(self, conn_id, data, content_type=None):
        return self.post("/v1/connections/%s/messages" % urllib.parse.quote(conn_id, safe=""),
                         data, content_type=content_type)

    def dead_letters(self):
        return self.get("/v1/dead-letters")

    def replay(self, dead_id):
        return self.post("/v1/dead-letters/%s/replay" % urllib.parse.quote(dead_id, safe=""))
