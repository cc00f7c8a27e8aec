"""wsgate_util.py — shared basics of the e2e test library (see
wsgate_test.py, which re-exports everything here): the binary's path,
default secrets, bounded waiting, free loopback ports, plain HTTP requests
and temporary directories. Standard library only.

Threads: free_port() may be called from any thread; the rest are plain
functions. Ownership: a TempDir removes its directory on cleanup() or at exit.
"""

import atexit
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request

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
