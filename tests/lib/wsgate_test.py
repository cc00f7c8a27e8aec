"""wsgate_test.py — the end-to-end test library: everything a process-level
test needs to drive the real wsgate binary from the outside, written with the
Python 3 standard library only and independent of wsgate's own C code.

    from wsgate_test import Gateway, Backend, WsClient, route, mint_jwt

    with Backend() as be, Gateway(routes=[route("/chat", be.url)]) as gw:
        ws = WsClient.connect(gw.edge_url + "/chat")
        ws.send_text("hello")
        ev = be.wait_event(lambda e: e["type"] == "message")

Pieces (all bounded in time; nothing is left running, even on failure):
- free_port(), TempDir
- Gateway: writes the config from a dict, runs `$WSGATE_BIN standalone`,
  waits until it is ready, stop()/kill9()/restart(), logs.
- Backend: a real HTTP server recording every request and answering from a
  scriptable policy; Authorizer / RoutingService flavours.
- sign_webhook() / verify_webhook(): Standard Webhooks in pure Python.
- WsClient: a raw-socket RFC 6455 client (handshake refusals visible as
  HTTP status + headers, raw frames, fragmentation, bad UTF-8, slow reader).
- JWTs: mint_jwt() for HS*/RS*/ES* (RS/ES through the openssl CLI with keys
  made by KeyPair), verify_jwt(), and forgeries (alg none, wrong alg,
  tampered, expired).
- StoreReader: reads the SQLite store file read-only (dead letters,
  connections); ControlApi: a small urllib client of the control API.

Threads: every object may be used from the test's thread; Backend handlers
and WsClient readers run in their own daemon threads and only touch state
under a lock. Ownership: each object owns the processes, sockets and
servers it started and stops them in stop()/close()/__exit__ and at exit.
"""

import atexit
import base64
import ctypes
import hashlib
import hmac
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WSGATE_BIN = os.environ.get("WSGATE_BIN", "")
WSGATE_BIN = os.path.abspath(WSGATE_BIN) if WSGATE_BIN else ""
SOURCE_DIR = os.environ.get(
    "WSGATE_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

DEFAULT_WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DEFAULT_API_SECRET = "e2e-api-secret-e2e-api-secret-e2e-api-0001"
DEFAULT_CLIENT_SECRET = "e2e-client-secret-e2e-client-secret-0002"


def require_binary(testcase=None):
    """Skips the calling unittest when WSGATE_BIN is not built."""
    if not WSGATE_BIN or not os.path.exists(WSGATE_BIN):
        if testcase is not None:
            testcase.skipTest("WSGATE_BIN not built")
        raise RuntimeError("WSGATE_BIN is not set to a built wsgate")


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    """Polls pred() until it returns something truthy; returns that value or
    raises AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


# --------------------------------------------------------------------------
# ports and directories

_given_ports = set()
_ports_lock = threading.Lock()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now (and that
    this process has not handed out before)."""
    with _ports_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _given_ports:
                _given_ports.add(port)
                return port
    raise RuntimeError("no free port")


def http_request(url, method="GET", headers=None, body=None, timeout=10.0):
    """One plain HTTP request; returns (status, headers with lower-case keys,
    body bytes) without raising on error statuses (e.g. a GET on a route
    path expecting 426)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def port_open(port, host="127.0.0.1", timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class TempDir:
    """A temporary directory removed on cleanup() (or at exit). Set
    WSGATE_KEEP_TMP=1 to keep it for post-mortems."""

    def __init__(self, prefix="wsgate-e2e-"):
        self.path = tempfile.mkdtemp(prefix=prefix)
        atexit.register(self.cleanup)

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def write(self, name, data):
        p = self.join(name)
        with open(p, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return p

    def cleanup(self):
        if self.path and os.environ.get("WSGATE_KEEP_TMP") != "1":
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


# --------------------------------------------------------------------------
# the gateway process

_live_procs = set()
_live_lock = threading.Lock()


def _kill_leftovers():
    with _live_lock:
        procs = list(_live_procs)
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass


atexit.register(_kill_leftovers)


def _deep_merge(base, extra):
    out = dict(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def route(path="/chat", backend=None, secret=DEFAULT_WHSEC, jwt=None, required=None, **extra):
    """A route mapping for Gateway(routes=[...]). jwt is a dict such as
    {"alg": "HS256", "secret": ...}; without jwt (and no authorizer in
    extra["auth"]) the route admits anonymous clients. extra keys are merged
    deeply (limits={...}, delivery={...}, rules=[...], auth={...})."""
    r = {"path": path, "backend": backend or "http://127.0.0.1:9/unused",
         "webhook_secret": secret}
    auth = {}
    if jwt:
        auth["jwt"] = dict(jwt)
    auth.update(extra.pop("auth", {}) or {})
    if required is None:
        required = bool(auth.get("jwt") or auth.get("authorizer"))
    auth["required"] = required
    r["auth"] = auth
    return _deep_merge(r, extra)


try:
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # resolved before any fork
except (OSError, AttributeError):
    _prctl = None


def _pdeathsig():
    """preexec_fn: the child gets SIGKILL when the thread that started it
    dies, so a crashed test never leaves a gateway behind."""
    if _prctl is not None:
        _prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


class GatewayError(AssertionError):
    pass


class Gateway:
    """Runs `$WSGATE_BIN standalone --config FILE` on free loopback ports.

    config: extra top-level keys merged over the defaults (edge, api, store,
    log...). routes: list of route dicts (see route()). env: extra
    environment. The config file is JSON (JSON is YAML) at .config_path;
    .config is the dict written. Attributes: .edge_port .api_port .edge_url
    ("ws://127.0.0.1:P") .http_edge_url .api_url .db_path .queue_path .tmp.
    """

    def __init__(self, routes=None, config=None, env=None, tmp=None, start=True,
                 ready_timeout=30.0, log_level="debug", args=None):
        require_binary()
        self.tmp = tmp or TempDir()
        self._own_tmp = tmp is None
        self.edge_port = free_port()
        self.api_port = free_port()
        self.db_path = self.tmp.join("wsgate.db")
        self.queue_path = self.db_path + ".queue"
        self.api_secret = DEFAULT_API_SECRET
        self.routes = list(routes or [])
        self.extra_config = config or {}
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.log_level = log_level
        self.args = list(args or [])
        self.proc = None
        self.starts = 0
        self.stdout_path = self.tmp.join("wsgate.stdout")
        self.stderr_path = self.tmp.join("wsgate.stderr")
        self.config_path = self.tmp.join("wsgate.yaml")
        self.write_config()
        if start:
            self.start()

    # -- configuration
    def build_config(self):
        base = {
            "edge": {"listen": "127.0.0.1:%d" % self.edge_port, "shutdown_grace": "5s",
                     "heartbeat_interval": "1s"},
            "api": {"listen": "127.0.0.1:%d" % self.api_port,
                    "auth": {"jwt": {"alg": "HS256", "secret": self.api_secret}}},
            "store": "sqlite://" + self.db_path,
            "nats": "",
            "log": {"level": self.log_level, "format": "json", "report_interval": "0"},
            "routes": self.routes,
        }
        return _deep_merge(base, self.extra_config)

    def write_config(self):
        self.config = self.build_config()
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
            f.write("\n")

    @property
    def edge_url(self):
        return "ws://127.0.0.1:%d" % self.edge_port

    @property
    def http_edge_url(self):
        return "http://127.0.0.1:%d" % self.edge_port

    @property
    def api_url(self):
        return "http://127.0.0.1:%d" % self.api_port

    # -- process control
    def _environ(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")
               and k not in ("LOG_LEVEL", "LOG_FORMAT")}
        env["LOG_FORMAT"] = "json"
        env["LOG_LEVEL"] = self.log_level
        env.update(self.env)
        return env

    def start(self):
        """Starts the process and waits until it is ready. On a port clash at
        first start it picks new ports and tries again."""
        for attempt in range(3):
            self._spawn()
            try:
                self.wait_ready(self.ready_timeout)
                return self
            except GatewayError:
                text = self.logs()
                clash = "in use" in text.lower() or "EADDRINUSE" in text
                if self.proc.poll() is not None and clash and self.starts == 1 and attempt < 2:
                    self.edge_port, self.api_port = free_port(), free_port()
                    self.write_config()
                    self.starts = 0
                    continue
                self.kill9()
                raise

    def _spawn(self):
        if self.proc is not None and self.proc.poll() is None:
            raise GatewayError("gateway already running (pid %d)" % self.proc.pid)
        self.starts += 1
        # Logs of every run go to the same files, separated by a marker.
        with open(self.stdout_path, "ab") as o, open(self.stderr_path, "ab") as e:
            marker = ("--- start %d ---\n" % self.starts).encode()
            o.write(marker)
            e.write(marker)
        self._log_offsets = (os.path.getsize(self.stdout_path),
                             os.path.getsize(self.stderr_path))
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        main = threading.current_thread() is threading.main_thread()
        try:
            self.proc = subprocess.Popen(
                [WSGATE_BIN, "standalone", "--config", self.config_path] + self.args,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self._environ(),
                cwd=self.tmp.path, preexec_fn=_pdeathsig if main else None)
        finally:
            out.close()
            err.close()
        with _live_lock:
            _live_procs.add(self.proc)

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError("wsgate exited with %s during start-up:\n%s"
                                   % (self.proc.returncode, self.logs_tail()))
            if self.find_log("wsgate ready", since_start=True) and \
                    port_open(self.edge_port) and port_open(self.api_port):
                return
            time.sleep(0.05)
        raise GatewayError("wsgate not ready within %.0fs:\n%s" % (timeout, self.logs_tail()))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit status
        (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        with _live_lock:
            _live_procs.discard(self.proc)
        return self.proc.returncode

    def kill9(self):
        """SIGKILL now, as a crash would. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        with _live_lock:
            _live_procs.discard(self.proc)
        return self.proc.returncode

    def restart(self, kill=False, rewrite_config=False):
        """Stops (SIGTERM, or SIGKILL with kill=True) and starts again on the
        same files and ports."""
        self.kill9() if kill else self.stop()
        if rewrite_config:
            self.write_config()
        self._spawn()
        try:
            self.wait_ready(self.ready_timeout)
        except GatewayError:
            self.kill9()
            raise
        return self

    def close(self):
        self.stop()
        if self._own_tmp:
            self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- logs
    def logs(self):
        """All stdout and stderr text of every run so far."""
        text = ""
        for p in (self.stderr_path, self.stdout_path):
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return text

    def logs_tail(self, n=60):
        return "\n".join(self.logs().splitlines()[-n:])

    def log_lines(self, since_start=False):
        """Parsed JSON log lines (non-JSON lines are skipped)."""
        out = []
        for i, p in enumerate((self.stderr_path, self.stdout_path)):
            try:
                with open(p, "rb") as f:
                    if since_start:
                        f.seek(self._log_offsets[i])
                    data = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            for line in data.splitlines():
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        return out

    def find_log(self, msg, since_start=False, **fields):
        """Log lines whose "msg" contains msg and whose fields equal fields."""
        found = []
        for rec in self.log_lines(since_start):
            m = rec.get("msg", rec.get("message", ""))
            if msg in str(m) and all(rec.get(k) == v for k, v in fields.items()):
                found.append(rec)
        return found

    def wait_log(self, msg, timeout=10.0, **fields):
        return wait_until(lambda: self.find_log(msg, **fields), timeout, 0.05,
                          "log line %r %r" % (msg, fields))

    # -- helpers bound to this gateway
    def api_token(self, scope="admin", ttl=300, **claims):
        c = {"sub": "e2e", "scope": scope, "exp": int(time.time()) + ttl}
        c.update(claims)
        return mint_jwt(c, "HS256", self.api_secret)

    def control(self, scope="admin"):
        return ControlApi(self.api_url, self.api_token(scope))

    def store(self):
        return StoreReader(self.db_path)

    def connect(self, path="/chat", **kw):
        return WsClient.connect(self.edge_url + path, **kw)


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
        """Waits until pred(list of requests) is truthy; returns its value."""
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
        """At least n events satisfying pred; returns all of them."""
        def find(rs):
            evs = [e for r in rs for e in r.events() if pred(e)]
            return evs if len(evs) >= n else None
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
# WebSocket client (RFC 6455)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WsHandshakeError(AssertionError):
    """The server refused the upgrade: .status, .headers (lower-case), .body."""

    def __init__(self, status, headers, body):
        super().__init__("WebSocket handshake refused: HTTP %s %r" % (status, body[:200]))
        self.status = status
        self.headers = headers
        self.body = body


class WsClosed(AssertionError):
    pass


def _read_http_head(sock, deadline):
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("handshake timed out")
        sock.settimeout(left)
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("connection closed during handshake: %r" % buf[:200])
        buf += chunk
        if len(buf) > 65536:
            raise ConnectionError("handshake response too large")
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1])
    headers = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            k = k.strip().lower()
            headers[k] = (headers[k] + ", " + v.strip()) if k in headers else v.strip()
    return status, headers, rest


class WsClient:
    """One client WebSocket over a raw socket.

    WsClient.connect(url, ...) returns an open client or raises
    WsHandshakeError (with .status/.headers/.body) when refused.
    WsClient.handshake(url, ...) returns (status, headers, client-or-None).

    A reader thread parses frames, reassembles fragmented messages, answers
    pings (auto_pong=True) and records the server's close. recv() returns
    (opcode, payload): payload is str for OP_TEXT, bytes for OP_BINARY.
    pause_reading() stops reading from the socket entirely (slow consumer);
    resume_reading() starts again. When the server closes, .close_code and
    .close_reason are set (1005 for a close frame without a code, 1006 when
    the TCP connection ends without a close frame).
    """

    def __init__(self, sock, rest=b"", status=101, headers=None, auto_pong=True):
        self.sock = sock
        self.status = status
        self.headers = headers or {}
        self.subprotocol = self.headers.get("sec-websocket-protocol")
        self.auto_pong = auto_pong
        self._buf = bytearray(rest)
        self._msgs = queue.Queue()
        self._send_lock = threading.Lock()
        self._paused = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self.closed = threading.Event()
        self.close_code = None
        self.close_reason = None
        self.close_sent = False
        self.pings = []  # payloads of pings received
        self.pongs = []  # payloads of pongs received
        self.protocol_errors = []
        self._frag_op = None
        self._frag = bytearray()
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()

    # -- handshake
    @classmethod
    def handshake(cls, url, query=None, headers=None, subprotocols=None, origin=None,
                  timeout=10.0, rcvbuf=None, auto_pong=True, key=None, version="13",
                  extra_request_lines=None):
        u = urllib.parse.urlsplit(url)
        host, port = u.hostname, u.port or 80
        path = u.path or "/"
        q = u.query
        if query:
            q = (q + "&" if q else "") + urllib.parse.urlencode(query)
        if q:
            path += "?" + q
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = key or base64.b64encode(os.urandom(16)).decode()
            lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (host, port),
                     "Upgrade: websocket", "Connection: Upgrade",
                     "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: " + version]
            if subprotocols:
                lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
            if origin:
                lines.append("Origin: " + origin)
            for k, v in (headers or {}).items():
                lines.append("%s: %s" % (k, v))
            lines.extend(extra_request_lines or [])
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            status, hdrs, rest = _read_http_head(sock, deadline)
        except BaseException:
            sock.close()
            raise
        if status != 101:
            body = rest
            n = int(hdrs.get("content-length", "0") or 0)
            sock.settimeout(0.5)
            try:
                while len(body) < n:
                    c = sock.recv(4096)
                    if not c:
                        break
                    body += c
            except OSError:
                pass
            sock.close()
            return status, hdrs, None, body
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            sock.close()
            raise AssertionError("bad Sec-WebSocket-Accept %r" % hdrs.get("sec-websocket-accept"))
        sock.settimeout(None)
        return status, hdrs, cls(sock, rest, status, hdrs, auto_pong), b""

    @classmethod
    def connect(cls, url, **kw):
        status, hdrs, client, body = cls.handshake(url, **kw)
        if client is None:
            raise WsHandshakeError(status, hdrs, body)
        return client

    @classmethod
    def refused(cls, url, **kw):
        """Expects a refusal: returns (status, headers, body); fails if the
        upgrade succeeded."""
        status, hdrs, client, body = cls.handshake(url, **kw)
        if client is not None:
            client.abort()
            raise AssertionError("handshake unexpectedly succeeded (101)")
        return status, hdrs, body

    # -- sending
    @staticmethod
    def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None):
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            head = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            head = struct.pack("!BBQ", b0, mbit | 127, n)
        if not mask:
            return head + payload
        mk = mask_key or os.urandom(4)
        return head + mk + _mask(payload, mk)

    def send_raw(self, data):
        with self._send_lock:
            self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.send_raw(self.frame(opcode, payload, fin, mask, rsv))

    def send_text(self, text):
        """text: str, or bytes sent as-is in a text frame (e.g. bad UTF-8)."""
        self.send_frame(OP_TEXT, text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send(self, data):
        (self.send_binary if isinstance(data, (bytes, bytearray)) else self.send_text)(data)

    def send_fragmented(self, opcode, chunks, interleave_ping=False):
        """One message in len(chunks) frames (continuations after the first)."""
        chunks = list(chunks)
        for i, c in enumerate(chunks):
            self.send_frame(opcode if i == 0 else OP_CONT, c, fin=(i == len(chunks) - 1))
            if interleave_ping and i < len(chunks) - 1:
                self.send_frame(OP_PING, b"mid")

    def ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def close(self, code=1000, reason="", timeout=5.0):
        """Starts (or answers) the close handshake and waits for the server's
        close frame and the end of the connection. Returns (code, reason)
        of the server's close frame."""
        if not self.closed.is_set() and not self.close_sent:
            payload = b"" if code is None else struct.pack("!H", code) + reason.encode()
            try:
                self.close_sent = True
                self.send_frame(OP_CLOSE, payload)
            except OSError:
                pass
        self.resume_reading()
        self.closed.wait(timeout)
        self.abort()
        return self.close_code, self.close_reason

    def abort(self):
        """Drops the TCP connection without a close handshake."""
        self._resume.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed.set()

    # -- receiving
    def pause_reading(self):
        self._resume.clear()

    def resume_reading(self):
        self._resume.set()

    def recv(self, timeout=10.0):
        """The next data message as (opcode, payload); raises WsClosed if the
        connection closed first, AssertionError on timeout."""
        try:
            item = self._msgs.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message within %.1fs (close_code=%s)"
                                 % (timeout, self.close_code))
        if item is None:
            self._msgs.put(None)
            raise WsClosed("connection closed: code=%s reason=%r"
                           % (self.close_code, self.close_reason))
        op, payload = item
        if op == OP_TEXT:
            return op, payload.decode("utf-8")
        return op, payload

    def recv_text(self, timeout=10.0):
        op, p = self.recv(timeout)
        if op != OP_TEXT:
            raise AssertionError("expected a text message, got opcode %d: %r" % (op, p[:100]))
        return p

    def recv_json(self, timeout=10.0):
        return json.loads(self.recv_text(timeout))

    def pending(self):
        """Data messages received and not yet taken by recv()."""
        return self._msgs.qsize()

    def wait_closed(self, timeout=10.0):
        """Waits until the server closed; returns (code, reason)."""
        if not self.closed.wait(timeout):
            raise AssertionError("connection still open after %.1fs" % timeout)
        return self.close_code, self.close_reason

    # -- reader thread
    def _fill(self):
        while not self._resume.is_set():
            if self.closed.is_set():
                return False
            self._resume.wait(0.1)
        try:
            self.sock.settimeout(0.2)
            data = self.sock.recv(65536)
        except socket.timeout:
            return True
        except OSError:
            return False
        if not data:
            return False
        self._buf += data
        return True

    def _next_frame(self):
        b = self._buf
        if len(b) < 2:
            return None
        fin, rsv, op = b[0] >> 7, (b[0] >> 4) & 7, b[0] & 15
        masked, n, i = b[1] >> 7, b[1] & 127, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, i = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, i = struct.unpack("!Q", b[2:10])[0], 10
        mk = None
        if masked:
            if len(b) < i + 4:
                return None
            mk, i = bytes(b[i:i + 4]), i + 4
        if len(b) < i + n:
            return None
        payload = bytes(b[i:i + n])
        del b[:i + n]
        if masked:
            self.protocol_errors.append("server sent a masked frame")
            payload = _mask(payload, mk)
        if rsv:
            self.protocol_errors.append("server set RSV bits %d" % rsv)
        return fin, op, payload

    def _reader(self):
        try:
            while True:
                fr = self._next_frame()
                if fr is None:
                    if not self._fill():
                        break
                    continue
                if not self._on_frame(*fr):
                    break
        finally:
            if self.close_code is None:
                self.close_code = 1006
                self.close_reason = ""
            try:
                self.sock.close()
            except OSError:
                pass
            self.closed.set()
            self._msgs.put(None)

    def _on_frame(self, fin, op, payload):
        if op == OP_PING:
            self.pings.append(payload)
            if self.auto_pong:
                try:
                    self.send_frame(OP_PONG, payload)
                except OSError:
                    pass
        elif op == OP_PONG:
            self.pongs.append(payload)
        elif op == OP_CLOSE:
            if len(payload) >= 2:
                self.close_code = struct.unpack("!H", payload[:2])[0]
                self.close_reason = payload[2:].decode("utf-8", "replace")
            else:
                self.close_code, self.close_reason = 1005, ""
            if not self.close_sent:
                try:
                    self.close_sent = True
                    self.send_frame(OP_CLOSE, payload[:2])
                except OSError:
                    pass
            return False
        elif op in (OP_TEXT, OP_BINARY):
            if fin:
                self._msgs.put((op, payload))
            else:
                self._frag_op, self._frag = op, bytearray(payload)
        elif op == OP_CONT:
            if self._frag_op is None:
                self.protocol_errors.append("continuation without a start")
                return True
            self._frag += payload
            if fin:
                self._msgs.put((self._frag_op, bytes(self._frag)))
                self._frag_op, self._frag = None, bytearray()
        else:
            self.protocol_errors.append("unknown opcode %d" % op)
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.closed.is_set():
            self.close(timeout=2.0)
        else:
            self.abort()


def _mask(data, key):
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


# --------------------------------------------------------------------------
# JWTs, independent of wsgate's code

_HS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_DGST = {"256": "-sha256", "384": "-sha384", "512": "-sha512"}
_EC_SIZE = {"ES256": 32, "ES384": 48, "ES512": 66}
_EC_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _json_part(obj):
    return b64url(json.dumps(obj, separators=(",", ":")))


def _openssl(args, data=None):
    p = subprocess.run(["openssl"] + args, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), p.stderr.decode()))
    return p.stdout


class KeyPair:
    """An RSA (RS*) or EC (ES*) key pair made with the openssl CLI in dir.
    .private_path, .public_path (PEM), .public_pem (text)."""

    def __init__(self, alg, dir, name=None):
        self.alg = alg
        name = name or "%s-%d" % (alg.lower(), random.randrange(1 << 30))
        self.private_path = os.path.join(dir, name + ".key.pem")
        self.public_path = os.path.join(dir, name + ".pub.pem")
        if alg.startswith("RS"):
            _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                      "-out", self.private_path])
        elif alg.startswith("ES"):
            _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt",
                      "ec_paramgen_curve:" + _EC_CURVE[alg], "-out", self.private_path])
        else:
            raise ValueError("KeyPair needs RS* or ES*, not " + alg)
        _openssl(["pkey", "-in", self.private_path, "-pubout", "-out", self.public_path])
        with open(self.public_path) as f:
            self.public_pem = f.read()


def _der_len(n):
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_read(buf, i, tag):
    if buf[i] != tag:
        raise ValueError("DER: expected tag 0x%x" % tag)
    n, i = buf[i + 1], i + 2
    if n & 0x80:
        k = n & 0x7F
        n, i = int.from_bytes(buf[i:i + k], "big"), i + k
    return buf[i:i + n], i + n


def ecdsa_der_to_raw(der, size):
    seq, _ = _der_read(der, 0, 0x30)
    r, i = _der_read(seq, 0, 0x02)
    s, _ = _der_read(seq, i, 0x02)
    return (int.from_bytes(r, "big").to_bytes(size, "big")
            + int.from_bytes(s, "big").to_bytes(size, "big"))


def ecdsa_raw_to_der(raw):
    h = len(raw) // 2
    ints = b""
    for part in (raw[:h], raw[h:]):
        v = int.from_bytes(part, "big").to_bytes(h + 1, "big").lstrip(b"\0") or b"\0"
        if v[0] & 0x80:
            v = b"\0" + v
        ints += b"\x02" + _der_len(len(v)) + v
    return b"\x30" + _der_len(len(ints)) + ints


def _sign(alg, key, signing_input):
    if alg in _HS:
        k = key.encode() if isinstance(key, str) else key
        return hmac.new(k, signing_input, _HS[alg]).digest()
    if alg[:2] in ("RS", "ES"):
        path = key.private_path if isinstance(key, KeyPair) else key
        sig = _openssl(["dgst", _DGST[alg[2:]], "-sign", path], signing_input)
        return ecdsa_der_to_raw(sig, _EC_SIZE[alg]) if alg.startswith("ES") else sig
    if alg == "none":
        return b""
    raise ValueError("unknown alg " + alg)


def mint_jwt(claims, alg="HS256", key=DEFAULT_CLIENT_SECRET, header=None):
    """A compact JWS. key: the HS secret (str/bytes), or a KeyPair / private
    key path for RS*/ES*. header: extra header fields (kid...)."""
    h = {"alg": alg, "typ": "JWT"}
    h.update(header or {})
    si = (_json_part(h) + "." + _json_part(claims)).encode()
    return si.decode() + "." + b64url(_sign(alg, key, si))


def client_claims(sub="alice", ttl=300, **extra):
    c = {"sub": sub, "exp": int(time.time()) + ttl, "iat": int(time.time())}
    c.update(extra)
    return c


def forge_none(claims):
    """alg "none" with an empty signature."""
    return _json_part({"alg": "none", "typ": "JWT"}) + "." + _json_part(claims) + "."


def forge_alg(token, alg):
    """The same claims and signature under another header alg."""
    _, p, s = token.split(".")
    return _json_part({"alg": alg, "typ": "JWT"}) + "." + p + "." + s


def forge_tampered(token, **changes):
    """Claims changed, signature kept."""
    h, p, s = token.split(".")
    claims = json.loads(b64url_decode(p))
    claims.update(changes)
    return h + "." + _json_part(claims) + "." + s


def expired_claims(sub="alice", ago=3600, **extra):
    return client_claims(sub, ttl=-ago, **extra)


def decode_jwt(token):
    """(header, claims) without verifying."""
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def verify_jwt(token, alg, key, now=None):
    """Verifies signature (alg pinned) and exp/nbf; returns the claims or
    raises ValueError. key: HS secret, or KeyPair / public key PEM path."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header, claims = decode_jwt(token)
    if header.get("alg") != alg:
        raise ValueError("alg %r, expected %r" % (header.get("alg"), alg))
    si, sig = (parts[0] + "." + parts[1]).encode(), b64url_decode(parts[2])
    if alg in _HS:
        if not hmac.compare_digest(_sign(alg, key, si), sig):
            raise ValueError("bad signature")
    else:
        pub = key.public_path if isinstance(key, KeyPair) else key
        if alg.startswith("ES"):
            sig = ecdsa_raw_to_der(sig)
        with tempfile.NamedTemporaryFile(suffix=".sig") as f:
            f.write(sig)
            f.flush()
            p = subprocess.run(["openssl", "dgst", _DGST[alg[2:]], "-verify", pub,
                                "-signature", f.name], input=si, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
        if p.returncode != 0:
            raise ValueError("bad signature")
    now = time.time() if now is None else now
    if "exp" not in claims or claims["exp"] <= now:
        raise ValueError("expired or no exp")
    if "nbf" in claims and claims["nbf"] > now:
        raise ValueError("not yet valid")
    return claims


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

    def __init__(self, base_url, token=None, timeout=10.0):
        self.base = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

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
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
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


# --------------------------------------------------------------------------
# event checks shared by tests

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def events_by_connection(events):
    """{connection_id: [events in arrival order]}"""
    out = {}
    for e in events:
        out.setdefault(e.get("connection_id"), []).append(e)
    return out


def dedupe(events):
    """Keeps the first occurrence of each event id (retries collapse)."""
    seen, out = set(), []
    for e in events:
        if e.get("id") in seen:
            continue
        seen.add(e.get("id"))
        out.append(e)
    return out


# --------------------------------------------------------------------------
# a unittest base class

import sys as _sys  # noqa: E402
import unittest as _unittest  # noqa: E402


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error: ",
                     "WARNING: ThreadSanitizer")


class GatewayTestCase(_unittest.TestCase):
    """Skips when WSGATE_BIN is not built; self.backend()/self.gateway()/
    self.client() create objects that are stopped after the test; on a
    failure the tail of every gateway's log goes to stderr."""

    def setUp(self):
        require_binary(self)
        self._gateways = []

    def tearDown(self):
        if self._failed():
            for gw in self._gateways:
                _sys.stderr.write("\n--- wsgate log (%s) ---\n%s\n" % (self.id(),
                                                                        gw.logs_tail(80)))

    def _failed(self):
        """True once this test has an error or failure recorded (unittest
        records them as they happen, before tearDown)."""
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return False
        return any(t is self for t, _ in
                   list(getattr(result, "errors", [])) + list(getattr(result, "failures", [])))

    def backend(self, **kw):
        be = Backend(**kw)
        self.addCleanup(be.stop)
        return be

    # True: a gateway still running at the end of the test must exit 0 on
    # SIGTERM. Sanitizer reports in its log always fail the test.
    strict_exit = False

    def gateway(self, routes, **kw):
        gw = Gateway(routes=routes, start=False, **kw)
        self._gateways.append(gw)
        self.addCleanup(self._close_gateway, gw)
        gw.start()
        return gw

    def _close_gateway(self, gw):
        was_running = gw.running()
        status = gw.stop()
        text = gw.logs()
        tail = gw.logs_tail(80)
        gw.close()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError("sanitizer report in the wsgate log:\n" + tail)
        if self.strict_exit and was_running and status != 0:
            raise AssertionError("wsgate exited with %s on SIGTERM:\n%s" % (status, tail))

    def client(self, url, **kw):
        ws = WsClient.connect(url, **kw)
        self.addCleanup(ws.abort)
        return ws
