# SPDX-License-Identifier: MIT
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
  waits until it is ready, stop()/kill9()/restart(), logs. Its exit status
  is checked (wsgate_proc.py): a crash, an unexpected exit or a sanitizer
  report fails the GatewayTestCase that started it.
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

The pieces live in wsgate_util.py, wsgate_proc.py, wsgate_http.py,
wsgate_ws.py and wsgate_jwt.py; everything is re-exported here, so tests only need
`import wsgate_test as w`.
"""

import ctypes
import json
import os
import re
import signal
import subprocess
import threading
import time

from wsgate_util import *  # noqa: F401,F403
from wsgate_util import (DEFAULT_API_SECRET, DEFAULT_WHSEC, WSGATE_BIN, TempDir, free_port,
                         port_open, require_binary, scaled, wait_until)
from wsgate_proc import *  # noqa: F401,F403
from wsgate_proc import (WatchedProcess, _live_lock, _live_procs, fail_on_problems, track,  # noqa: F401
                         watch_mark, watched_since)
from wsgate_http import *  # noqa: F401,F403
from wsgate_http import Authorizer, Backend, ControlApi, StoreReader
from wsgate_ws import *  # noqa: F401,F403
from wsgate_ws import WsClient, _mask  # noqa: F401
from wsgate_jwt import *  # noqa: F401,F403
from wsgate_jwt import _EC_SIZE, mint_jwt  # noqa: F401


# --------------------------------------------------------------------------
# the gateway process

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


class Gateway(WatchedProcess):
    """Runs `$WSGATE_BIN standalone --config FILE` on free loopback ports.

    config: extra top-level keys merged over the defaults (edge, api, store,
    log...). routes: list of route dicts (see route()). env: extra
    environment. The config file is JSON (JSON is YAML) at .config_path;
    .config is the dict written. Attributes: .edge_port .api_port .edge_url
    ("ws://127.0.0.1:P") .http_edge_url .api_url .db_path .queue_path .tmp.
    Every end of its process is judged (WatchedProcess): see expect_exit()
    and allow_unclean_stop() for the ends a test means. binary: the program
    run instead of $WSGATE_BIN (the library's self-test wraps wsgate).
    config_file=False runs it without --config (the file is written but
    unused): its environment alone configures it.
    """

    def __init__(self, routes=None, config=None, env=None, tmp=None, start=True,
                 ready_timeout=30.0, log_level="debug", args=None, binary=None,
                 config_file=True):
        require_binary()
        self.watch_init("wsgate standalone")
        self.binary = binary or WSGATE_BIN
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
        self.config_file = config_file  # False: run without --config (env only)
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
                    self.judge("retry")  # a port taken since free_port(): not the test's
                    self.edge_port, self.api_port = free_port(), free_port()
                    self.write_config()
                    self.starts = 0
                    continue
                self.kill9()
                raise

    def _spawn(self):
        if self.proc is not None and self.proc.poll() is None:
            raise GatewayError("gateway already running (pid %d)" % self.proc.pid)
        if self.proc is not None:
            self.judge("self")  # it ended without stop() or kill9()
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
                [self.binary, "standalone"] +
                (["--config", self.config_path] if self.config_file else []) + self.args,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self._environ(),
                cwd=self.tmp.path, preexec_fn=_pdeathsig if main else None)
        finally:
            out.close()
            err.close()
        track(self.proc)

    def wait_ready(self, timeout=30.0):
        timeout = scaled(timeout)
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
        self.scan_logs()  # before the temp dir and its logs go
        if self._own_tmp:
            self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- logs
    def log_paths(self):
        return [self.stderr_path, self.stdout_path]

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
# event checks shared by tests

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class OpenApiGateway(Gateway):
    """A gateway without api.auth.jwt: its control API (and a backend
    stream's actions) need no token."""

    def build_config(self):
        cfg = super().build_config()
        cfg["api"].pop("auth", None)
        return cfg


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


class GatewayTestCase(_unittest.TestCase):
    """self.backend()/self.gateway()/self.client() create objects that are
    stopped after the test; on a failure the tail of every gateway's log
    goes to stderr. Fails (never skips) without a built WSGATE_BIN.

    Every Gateway created during a test, through self.gateway() or
    directly, is held to wsgate_proc.py's rules when the test ends: one
    still running is stopped and must exit 0 on SIGTERM; one that crashed,
    exited non-zero by itself or wrote a sanitizer report at any point
    fails the test, unless the test said so first (gw.kill9(),
    gw.expect_exit(reason), gw.allow_unclean_stop(reason))."""

    def setUp(self):
        require_binary(self)
        self._gateways = []
        self._watch_mark = watch_mark()
        self.addCleanup(self._check_processes)  # the first cleanup runs last

    def tearDown(self):
        if self._failed():
            for gw in self._gateways:
                _sys.stderr.write("\n--- wsgate log (%s) ---\n%s\n" % (self.id(),
                                                                        gw.logs_tail(80)))

    def _check_processes(self):
        watched = watched_since(self._watch_mark)
        for p in watched:
            if p.check_alive():
                p.stop()
        fail_on_problems(watched)

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

    def authorizer(self, **kw):
        az = Authorizer(**kw)
        self.addCleanup(az.stop)
        return az

    def gateway(self, routes, **kw):
        gw = Gateway(routes=routes, start=False, **kw)
        self._gateways.append(gw)
        self.addCleanup(self._close_gateway, gw)
        gw.start()
        return gw

    def _close_gateway(self, gw):
        gw.close()  # its end is judged; _check_processes reports it

    def client(self, url, **kw):
        ws = WsClient.connect(url, **kw)
        self.addCleanup(ws.abort)
        return ws

    def clients(self, url, n, query, threads=8, **kw):
        """n clients of url opened by `threads` threads at once (client i with
        query(i)); each is aborted after the test. Fails on any error."""
        out, errors = [None] * n, []

        def worker(lo, hi):
            try:
                for i in range(lo, hi):
                    out[i] = WsClient.connect(url, query=query(i), **kw)
            except Exception as e:  # reported below
                errors.append(e)

        ts = [threading.Thread(target=worker, args=(k * n // threads, (k + 1) * n // threads))
              for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for ws in out:
            if ws:
                self.addCleanup(ws.abort)
        self.assertEqual(errors, [])
        return out
