# SPDX-License-Identifier: MIT
"""wsgate_util.py — shared basics of the e2e test library (see
wsgate_test.py, which re-exports everything here): the binary's path,
default secrets, the time scale of every bounded wait, free loopback ports,
plain HTTP requests, temporary directories, running a wsgate command, and
main(), the runner every Python test file ends with. Standard library only.

Threads: free_port() may be called from any thread; the rest are plain
functions. Ownership: a TempDir removes its directory on cleanup() or at exit.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
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
    """Fails (never skips: a test that cannot run is not a pass) when
    WSGATE_BIN does not name a built wsgate."""
    if not WSGATE_BIN or not os.path.exists(WSGATE_BIN):
        raise AssertionError("WSGATE_BIN (%r) is not a built wsgate: build it and set "
                             "WSGATE_BIN, or run the test through ctest" % WSGATE_BIN)


def _sanitized(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# The one knob for slow binaries: every bounded wait of the library (waits
# for log lines, requests, frames, closes, start-up and shutdown) lasts
# TIME_SCALE times what the test asks for. WSGATE_TIME_SCALE sets it; by
# default it is 3 for an ASan/UBSan build of WSGATE_BIN, else 1. Only the
# bound of a wait grows: what a test asserts stays the same.
TIME_SCALE = float(os.environ.get("WSGATE_TIME_SCALE") or
                   (3.0 if WSGATE_BIN and _sanitized(WSGATE_BIN) else 1.0))


def scaled(seconds):
    """seconds x TIME_SCALE: the bound of a wait (None stays None)."""
    return None if seconds is None else seconds * TIME_SCALE



def descendants(pid=None, depth=None):
    """Live descendants of pid (default: this process), from
    /proc/<pid>/task/*/children; children only when depth is 1."""
    out, todo = [], [os.getpid() if pid is None else pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = []
            out += kids
            if depth != 1:
                todo += kids
    return out

def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    """Polls pred() until it returns something truthy; returns that value or
    raises AssertionError after timeout seconds (scaled)."""
    timeout = scaled(timeout)
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
        with urllib.request.urlopen(req, timeout=scaled(timeout)) as r:
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
# running wsgate commands, and what a report of a sanitizer looks like

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error: ",
                     "WARNING: ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL")


def sanitizer_report(text):
    """The first sanitizer marker found in text, or None."""
    for marker in SANITIZER_MARKERS:
        if marker in text:
            return marker
    return None


def describe_status(rc):
    """'exit code 2', 'signal 11 (SIGSEGV)' for a Popen returncode."""
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = "?"
        return "signal %d (%s)" % (-rc, name)
    return "exit code %d" % rc


def run_wsgate(args, timeout=120, binary=None, **kw):
    """subprocess.run([WSGATE_BIN] + args) with stdout and stderr captured
    (unless given). A wsgate command that dies by a signal, or whose output
    holds a sanitizer report, raises AssertionError whatever exit code the
    test expects: a crash is never the error a test looks for."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    argv = [binary or WSGATE_BIN] + list(args)
    r = subprocess.run(argv, timeout=scaled(timeout), **kw)
    text = "".join(x.decode("utf-8", "replace") if isinstance(x, bytes) else x
                   for x in (r.stdout, r.stderr) if x)
    if r.returncode < 0 or sanitizer_report(text):
        raise AssertionError("%s ended with %s%s:\n%s" % (
            " ".join(argv), describe_status(r.returncode),
            " and a sanitizer report" if sanitizer_report(text) else "", text[-6000:]))
    return r


# --------------------------------------------------------------------------
# the runner of every Python test file

SKIP_EXIT = 77  # ctest's SKIP_RETURN_CODE for Python tests (tests/CMakeLists.txt)


def _test_name(path):
    """tests/e2e/test_x.py -> e2e/test_x, the ctest name of the file."""
    path = os.path.abspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    return "%s/%s" % (os.path.basename(os.path.dirname(path)), stem)


def _log_skips(result):
    name = _test_name(sys.argv[0])
    lines = []
    for test, reason in result.skipped:
        case = test.id()
        if case.startswith("__main__."):
            case = case[len("__main__."):]
        reason = " ".join(str(reason).split()) or "(no reason)"
        lines.append("%s::%s\t%s\n" % (name, case, reason))
        sys.stderr.write("SKIPPED %s::%s: %s\n" % (name, case, reason))
    path = os.environ.get("WSGATE_SKIP_LOG")
    if path and lines:
        # one O_APPEND write per line: parallel ctest jobs share the file
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for line in lines:
                os.write(fd, line.encode())
        finally:
            os.close(fd)


WATCHDOG_MARGIN_S = 45.0


def _watchdog_fire(limit):
    """What a test that is about to run into ctest's TIMEOUT leaves behind
    instead of nothing: every thread's stack (where it waits), the log tail
    of every test process still running, then the processes it started are
    killed and it exits 1."""
    import faulthandler
    import wsgate_proc  # imports this module: not at the top
    sys.stderr.write("\nWATCHDOG: still running %.0f s before ctest's %.0f s timeout; "
                     "every thread's stack:\n" % (WATCHDOG_MARGIN_S, limit))
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    for wp in wsgate_proc.watched_since(0):
        proc = getattr(wp, "proc", None)
        if proc is None or proc.poll() is not None:
            continue
        try:
            tail = wp.logs_tail(80)
        except Exception as exc:  # a diagnostic must not hide the timeout
            tail = "(no log: %r)" % exc
        sys.stderr.write("\n--- %s (pid %d), last lines ---\n%s\n"
                         % (wp.watch_name, proc.pid, tail))
    sys.stderr.flush()
    wsgate_proc._kill_leftovers()
    os._exit(1)


def _arm_watchdog():
    """WSGATE_TEST_TIMEOUT (tests/CMakeLists.txt sets it to the test's ctest
    TIMEOUT): WATCHDOG_MARGIN_S before it, _watchdog_fire() on a daemon timer."""
    limit = float(os.environ.get("WSGATE_TEST_TIMEOUT") or 0)
    if limit > WATCHDOG_MARGIN_S:
        t = threading.Timer(limit - WATCHDOG_MARGIN_S, _watchdog_fire, (limit,))
        t.daemon = True
        t.start()


def main(**kw):
    """unittest.main() for every test file, with exit codes ctest can tell
    apart: 0 every test ran and passed; 1 a failure, an error, an unexpected
    success, or no test at all; 77 (SKIP_EXIT) something was skipped and
    nothing failed: ctest reports the file as "Skipped". Each skip is
    printed and, when WSGATE_SKIP_LOG names a file, appended to it as
    "<ctest name>::<Class.test>\t<reason>" for tests/check_skips.py.
    A file still running shortly before its ctest TIMEOUT prints where it
    waits and the logs of its processes, and fails (_arm_watchdog)."""
    kw.setdefault("verbosity", 2)
    _arm_watchdog()
    prog = unittest.main(exit=False, **kw)
    result = prog.result
    if result.skipped:
        _log_skips(result)
    if not result.wasSuccessful():
        sys.exit(1)
    if result.testsRun == 0:
        sys.stderr.write("no test ran\n")
        sys.exit(1)
    sys.exit(SKIP_EXIT if result.skipped else 0)
