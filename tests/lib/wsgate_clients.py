# SPDX-License-Identifier: MIT
"""wsgate_clients.py — third-party WebSocket clients for the conformance
tests: Node's `ws` package (tests/conformance/ws_driver.js, installed by
npm into tests/conformance/node_modules at test time) and headless Debian
Chromium (tests/e2e/test_conformance_chromium.py drives it).

A missing tool (node, npm, chromium) raises AssertionError: the test fails,
it never skips (tests/skip-allowlist.txt stays empty).

Threads: NodeWs reads the driver's stdout on a daemon thread and hands
events over through a queue; everything else runs on the test's thread.
Ownership: NodeWs owns its node process and stops it in close().
"""

import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time

from wsgate_util import scaled

SOURCE_DIR = os.environ.get("WSGATE_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFORMANCE_DIR = os.path.join(SOURCE_DIR, "tests", "conformance")


def require_tool(name, hint):
    path = shutil.which(name)
    if not path:
        raise AssertionError("%s not found on PATH: %s" % (name, hint))
    return path


def npm_install(timeout=300):
    """Installs tests/conformance/package.json's packages (the `ws` client)
    into tests/conformance/node_modules once; later calls find them there.
    Serialised by a lock file so two tests never install at once."""
    require_tool("node", "install Node.js (the machine's, or Debian's nodejs)")
    npm = require_tool("npm", "install npm (Debian: npm)")
    lock_path = os.path.join(CONFORMANCE_DIR, ".npm-install.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(CONFORMANCE_DIR, "node_modules", "ws", "package.json")):
            return
        r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save"],
                           cwd=CONFORMANCE_DIR, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError("npm install failed (%d):\n%s" % (r.returncode, r.stdout[-3000:]))


class NodeWs:
    """One node process running ws_driver.js; .open(id, url, ...) starts a
    client, .cmd(...) sends a command, .wait(id, ev, pred) waits for an
    event of that client (bounded), .events(id) lists what it saw."""

    def __init__(self):
        npm_install()
        self.proc = subprocess.Popen(
            ["node", os.path.join(CONFORMANCE_DIR, "ws_driver.js")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            universal_newlines=True, bufsize=1)
        self._q = queue.Queue()
        self._seen = []
        self._lock = threading.Lock()
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()

    def _reader(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"ev": "garbage", "line": line}
            self._q.put(ev)
        self._q.put(None)

    def cmd(self, **c):
        self.proc.stdin.write(json.dumps(c) + "\n")
        self.proc.stdin.flush()

    def open(self, cid, url, protocols=None, per_message_deflate=True, ca=None):
        c = {"op": "open", "id": cid, "url": url, "protocols": protocols or [],
             "perMessageDeflate": per_message_deflate}
        if ca:
            c["ca"] = ca
        self.cmd(**c)

    def _pump(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            ev = self._q.get(timeout=left)
        except queue.Empty:
            return False
        if ev is None:
            self._q.put(None)
            time.sleep(0.05)
            return True
        with self._lock:
            self._seen.append(ev)
        return True

    def wait(self, cid, ev, pred=lambda e: True, timeout=10.0, after=0):
        """The first event `ev` of client cid (from index `after` of its
        events on) satisfying pred; fails after timeout (scaled)."""
        deadline = time.monotonic() + scaled(timeout)
        while True:
            mine = self.events(cid)[after:]
            for e in mine:
                if e.get("ev") == ev and pred(e):
                    return e
            if not self._pump(deadline):
                raise AssertionError("node ws client %s: no %r event within %.1fs; saw %r; "
                                     "stderr: %s" % (cid, ev, scaled(timeout), mine,
                                                     self.stderr_tail()))

    def events(self, cid):
        with self._lock:
            return [e for e in self._seen if e.get("id") == cid]

    def drain(self, seconds):
        """Collects events for `seconds` (to assert something did not happen)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(deadline)

    def stderr_tail(self):
        if self.proc.poll() is None:
            return "(running)"
        return (self.proc.stderr.read() or "")[-2000:]

    def close(self):
        if self.proc.poll() is None:
            try:
                self.cmd(op="exit")
            except (OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


# --------------------------------------------------------------------------
# headless Chromium and the page it runs

class PageServer:
    """Serves one HTML file at /page.html on a free loopback port and records
    the JSON bodies the page POSTs to /result (.results, .wait())."""

    def __init__(self, html_path):
        import http.server

        with open(html_path, "rb") as f:
            page = f.read()
        self.results = []
        self._cond = threading.Condition()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.split("?")[0] != "/page.html":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                try:
                    obj = json.loads(body)
                except ValueError:
                    obj = {"step": "garbage", "body": body[:200].decode("latin-1")}
                with owner._cond:
                    owner.results.append(obj)
                    owner._cond.notify_all()
                self.send_response(204)
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._t.start()

    def url(self, query):
        import urllib.parse

        return "http://127.0.0.1:%d/page.html?%s" % (self.port, urllib.parse.urlencode(query))

    def wait(self, pred, timeout=30.0, what="a result"):
        deadline = time.monotonic() + scaled(timeout)
        with self._cond:
            while True:
                for r in self.results:
                    if pred(r):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("page: no %s within %.1fs; got %r"
                                         % (what, scaled(timeout), self.results))
                self._cond.wait(left)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"]


class Chromium:
    """Debian's headless Chromium showing url, with a fresh profile in
    tmpdir (--user-data-dir). extra_flags: e.g. what a wss:// run needs to
    trust a test CA. stop() ends its process group (it was started in a
    session of its own, so the group is Chromium's renderers and nothing
    else)."""

    def __init__(self, url, tmpdir, extra_flags=()):
        exe = require_tool("chromium", "install Debian's chromium (scripts/deps.sh)")
        profile = os.path.join(tmpdir, "chromium-profile")
        os.makedirs(profile, exist_ok=True)
        self.log_path = os.path.join(tmpdir, "chromium.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [exe] + CHROMIUM_FLAGS + ["--user-data-dir=" + profile] + list(extra_flags) + [url],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        import signal

        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        else:  # the wrapper may have exited while the browser runs on in its group
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()
