# SPDX-License-Identifier: MIT
"""wsgate_proc.py — how every long-running wsgate process a test starts is
held to account: the standalone Gateway (wsgate_test.py) and each cluster
role (Node in tests/integration/test_cluster_basic.py) are WatchedProcess
objects, and GatewayTestCase / ClusterTestCase fail the test that saw a
problem. Standard library only.

A wsgate process ends in one of three ways the fixture knows of:
- stop(): SIGTERM from the fixture. It must exit 0 within the bound
  (SIGTERM is a graceful shutdown); allow_unclean_stop(reason) waives the
  exit code, never a signal.
- kill9(): SIGKILL from the fixture, on purpose. It must end by that
  SIGKILL; a process that had already died by something else crashed.
- by itself, or by a signal the fixture did not send: exit 0 is fine; a
  non-zero exit code only after expect_exit(reason) (a test of a start-up
  failure); a signal never.
And a sanitizer report in its log is always a problem, whatever the exit.

Problems are recorded on the object (.problems, with the log tail) the
moment the fixture sees the end, and handed over by take_problems().

Threads: a WatchedProcess is used from the test's thread; the registry of
every one created is guarded by a lock.
"""

import atexit
import signal
import subprocess
import threading

from wsgate_util import SANITIZER_MARKERS, describe_status, sanitizer_report, scaled

_registry = []  # every WatchedProcess, in creation order
_registry_lock = threading.Lock()

_live_procs = set()  # Popen objects still to be reaped at exit
_live_lock = threading.Lock()


def track(proc):
    """proc is SIGKILLed at exit if still running then."""
    with _live_lock:
        _live_procs.add(proc)


def _untrack(proc):
    with _live_lock:
        _live_procs.discard(proc)


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


def watch_mark():
    """A mark for watched_since(): the processes created from now on."""
    with _registry_lock:
        return len(_registry)


def watched_since(mark):
    with _registry_lock:
        return list(_registry[mark:])


class WatchedProcess:
    """Mixin: the subclass sets self.proc (a Popen, passed to track()) and
    defines log_paths() and logs_tail(n)."""

    def watch_init(self, name):
        self.watch_name = name
        self.problems = []
        self._expect_exit = None  # (reason, codes or None)
        self._unclean_stop = None  # reason
        self._judged = set()  # pids whose end was judged
        self._scanned = {}  # log path -> bytes already scanned for sanitizer reports
        with _registry_lock:
            _registry.append(self)

    # -- what a test declares
    def expect_exit(self, reason, codes=None):
        """This process will end by itself with a non-zero exit code (codes:
        only those) and that is the behaviour under test, e.g. a refused
        configuration. A signal is still a crash."""
        if not reason:
            raise ValueError("expect_exit needs a reason")
        self._expect_exit = (reason, tuple(codes) if codes else None)

    def allow_unclean_stop(self, reason):
        """stop() (SIGTERM) may end with a non-zero exit code or need the
        SIGKILL after the bound. Say why; a signal other than that SIGKILL
        is still a crash."""
        if not reason:
            raise ValueError("allow_unclean_stop needs a reason")
        self._unclean_stop = reason

    # -- ending it
    def stop(self, timeout=30.0):
        """SIGTERM, wait up to timeout (scaled), then SIGKILL. Returns the
        exit status (negative: ended by that signal). Anything but exit 0
        is a problem unless allow_unclean_stop() said why."""
        def term(proc):
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=scaled(timeout))
                return "term"
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                return "term-timeout"
        return self._end(term)

    def kill9(self):
        """SIGKILL now, as a crash would; returns the exit status (-9 unless
        the process had already ended, which is judged as its own end)."""
        def kill(proc):
            proc.kill()
            proc.wait(timeout=10)
            return "kill"
        return self._end(kill)

    def _end(self, end_it):
        """end_it(proc) ends a running process and says how (see judge())."""
        proc = self.proc
        if proc is None:
            return None
        self.judge("self" if proc.poll() is not None else end_it(proc))
        _untrack(proc)
        return proc.returncode

    # -- what the fixture saw
    def judge(self, how, proc=None):
        """Records a problem if proc's end is not what `how` allows: "term"
        (our SIGTERM), "term-timeout" (our SIGTERM, then our SIGKILL after
        the bound), "kill" (our SIGKILL), "self" (nothing from us), "retry"
        (a start-up failure the fixture itself handles: any exit code)."""
        proc = proc or self.proc
        if proc is None or proc.returncode is None or proc.pid in self._judged:
            return
        self._judged.add(proc.pid)
        rc = proc.returncode
        problem = None
        if how == "kill":
            if rc != -signal.SIGKILL:
                problem = "ended by %s, not by the SIGKILL of kill9()" % describe_status(rc)
        elif how == "term":
            if rc < 0 or (rc != 0 and not self._unclean_stop):
                problem = "ended by %s on SIGTERM (a graceful stop exits 0)" % describe_status(rc)
        elif how == "term-timeout":
            if not self._unclean_stop:
                problem = "did not exit within the bound after SIGTERM: SIGKILLed"
        elif how in ("self", "retry"):
            if rc < 0:
                problem = "died by %s" % describe_status(rc)
            elif rc > 0 and how == "self":
                exp = self._expect_exit
                if exp is None:
                    problem = "exited by itself with %s" % describe_status(rc)
                elif exp[1] is not None and rc not in exp[1]:
                    problem = "exited with %s, expected %s (%s)" % (describe_status(rc),
                                                                   exp[1], exp[0])
        else:
            raise ValueError("judge: unknown end %r" % how)
        if problem:
            self._problem("%s (pid %d) %s" % (self.watch_name, proc.pid, problem))
        self.scan_logs()

    def scan_logs(self):
        """Records a problem for a sanitizer report in log text not scanned yet."""
        for path in self.log_paths():
            done = self._scanned.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(done)
                    data = f.read()
            except OSError:
                continue
            keep = max(len(m) for m in SANITIZER_MARKERS)  # a marker cut by the end
            text = data.decode("utf-8", "replace")
            marker = sanitizer_report(text)
            if marker:
                self._scanned[path] = done + len(data)
                self._problem("%s: sanitizer report (%r) in %s" % (self.watch_name, marker, path))
            else:
                self._scanned[path] = max(done, done + len(data) - keep)

    def check_alive(self):
        """Judges a process that ended without the fixture knowing, and
        scans the logs; returns whether the process still runs."""
        if self.proc is not None and self.proc.poll() is not None:
            self.judge("self")
        self.scan_logs()
        return self.proc is not None and self.proc.returncode is None

    def take_problems(self):
        out, self.problems = self.problems, []
        return out

    def _problem(self, text):
        self.problems.append("%s\n--- log tail ---\n%s" % (text, self.logs_tail(60)))


def fail_on_problems(watched):
    """Raises AssertionError with every problem of the given processes."""
    problems = []
    for p in watched:
        problems += p.take_problems()
    if problems:
        raise AssertionError("wsgate process problem(s):\n\n" + "\n\n".join(problems))
