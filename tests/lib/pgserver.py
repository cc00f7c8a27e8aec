# SPDX-License-Identifier: MIT
"""pgserver.py — a throw-away PostgreSQL server for tests (Python stdlib only).

    from pgserver import PgServer
    with PgServer() as pg:          # initdb + start + CREATE DATABASE, bounded waits
        run_something(pg.url)       # postgresql://postgres@127.0.0.1:PORT/wsgate
        pg.psql("SELECT 1")         # -> stdout text; raises on SQL errors
        pg.restart()                # stop + start on the same port and data
    # stopped by PID and its temp dir removed

Everything lives in one temp dir (data directory, unix socket directory,
server log). The server listens on a free port on 127.0.0.1 only and trusts
local connections as the `postgres` role. PostgreSQL refuses to run as root,
so when the tests run as root the server processes run as the `postgres`
system user (Popen(user=..., group=...): no intermediate process, so the PID
we hold is the postmaster's). stop() sends SIGINT (fast shutdown) to that
PID and SIGKILLs its process group after a bound. A server started from the
main thread also shuts down by itself if the test process dies first.

fast=True (default) turns off fsync and synchronous_commit: a clean stop or
restart() keeps every committed row; only a SIGKILL of the whole machine
could lose data, which tests do not care about. kill9() is a crash of the
server, not of the machine, but with synchronous_commit off it may lose the
last commits still in the WAL buffers (shared memory): a test that kills
the server and judges what the store kept uses fast=False.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

PG_BIN_DIRS = ["/usr/lib/postgresql/15/bin"]


def find_pg_bin():
    """The directory holding initdb/postgres/pg_ctl, or raise RuntimeError."""
    env = os.environ.get("WSGATE_PG_BIN")
    for d in ([env] if env else []) + PG_BIN_DIRS:
        if d and os.access(os.path.join(d, "postgres"), os.X_OK):
            return d
    found = shutil.which("postgres")
    if found:
        return os.path.dirname(found)
    raise RuntimeError("PostgreSQL server binaries not found (set WSGATE_PG_BIN)")


try:  # loaded here: importing in the forked child is not safe
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
except (ImportError, OSError):
    _LIBC = None


def _die_with_parent():
    """preexec_fn: the postmaster gets SIGINT (fast shutdown) if the test
    process dies without stopping it (kill -9, a harness timeout). Runs in
    the child after the switch to the postgres user, which would otherwise
    clear the setting."""
    if _LIBC is not None:
        _LIBC.prctl(1, int(signal.SIGINT), 0, 0, 0)  # PR_SET_PDEATHSIG


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL server in a temp dir. start()/stop()/restart()/close(),
    or use it as a context manager. Attributes: port, url, dbname, tmp."""

    def __init__(self, dbname="wsgate", port=None, startup_timeout=60.0,
                 stop_timeout=20.0, fast=True):
        self.bin = find_pg_bin()
        self.dbname = dbname
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.fast = fast
        self.proc = None
        self.tmp = None
        self._as = {}  # Popen kwargs that drop root
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
            self._as = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        else:
            self._uid, self._gid = os.geteuid(), os.getegid()

    # ---- paths and URLs ---------------------------------------------------

    @property
    def data_dir(self):
        return os.path.join(self.tmp, "data")

    @property
    def socket_dir(self):
        return os.path.join(self.tmp, "sock")

    @property
    def log_path(self):
        return os.path.join(self.tmp, "postgres.log")

    def url_for(self, dbname):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, dbname)

    @property
    def url(self):
        return self.url_for(self.dbname)

    # ---- life cycle ---------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _init(self):
        self.tmp = tempfile.mkdtemp(prefix="wsgate-pg-")
        os.chmod(self.tmp, 0o700)
        os.chown(self.tmp, self._uid, self._gid)
        os.mkdir(self.socket_dir, 0o700)
        os.chown(self.socket_dir, self._uid, self._gid)
        r = subprocess.run(
            [os.path.join(self.bin, "initdb"), "-D", self.data_dir, "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=self.startup_timeout, **self._as)
        if r.returncode != 0:
            raise RuntimeError("initdb failed:\n" + r.stdout.decode(errors="replace"))

    def start(self):
        """Starts the server (initialising the data dir and creating the
        database the first time) and returns once it accepts queries."""
        if self.proc is not None:
            return
        first = self.tmp is None
        if first:
            self._init()
        args = [os.path.join(self.bin, "postgres"), "-D", self.data_dir,
                "-c", "listen_addresses=127.0.0.1", "-c", "port=%d" % self.port,
                "-c", "unix_socket_directories=" + self.socket_dir,
                "-c", "logging_collector=off", "-c", "max_connections=100"]
        if self.fast:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off"]
        # The parent-death signal fires when the *thread* that started the
        # server ends, so only a start from the main thread arms it.
        main = threading.current_thread() is threading.main_thread()
        guard = _die_with_parent if main else None
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(args, cwd=self.tmp, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=guard,
                                         **self._as)
        finally:
            log.close()
        self._wait_ready()
        if first:
            self.create_database(self.dbname)

    def _wait_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        isready = os.path.join(self.bin, "pg_isready")
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError("postgres exited with %s during start-up:\n%s"
                                   % (code, self.log_tail()))
            r = subprocess.run([isready, "-q", "-h", "127.0.0.1", "-p", str(self.port),
                                "-U", "postgres", "-d", "postgres", "-t", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=30)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("postgres not ready after %.0fs:\n%s"
                                   % (self.startup_timeout, self.log_tail()))
            time.sleep(0.1)

    def stop(self):
        """Fast shutdown by PID (SIGINT: sessions are terminated, a checkpoint
        is written); SIGKILL to its process group after stop_timeout."""
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGINT)
                p.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=self.stop_timeout)

    def kill9(self, timeout=30.0):
        """SIGKILL of the postmaster alone, by PID, as a crash would (its
        backends and helpers notice and exit by themselves; no shutdown
        checkpoint: the next start() runs crash recovery). Returns once
        every process of the server's group is gone, so start() can use the
        port and the data dir again; SIGKILLs the stragglers after timeout
        and raises, since a server that leaves orphans behind is a finding."""
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None:
            p.kill()
            p.wait(timeout=self.stop_timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(p.pid, 0)  # start_new_session: the group id is its PID
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    return
                raise RuntimeError("postgres children alive %.0f s after the postmaster's "
                                   "SIGKILL" % timeout)
            time.sleep(0.05)

    def restart(self):
        """Stops and starts the same server: same port, data and databases."""
        self.stop()
        self.start()

    def close(self):
        """Stops the server and removes the temp dir. Safe to call twice."""
        try:
            self.stop()
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp = None

    # ---- helpers ---------------------------------------------------------------

    def psql(self, sql, dbname=None, timeout=60):
        """Runs sql with psql (ON_ERROR_STOP, unaligned, tuples only) and
        returns stdout; raises RuntimeError with stderr on failure."""
        r = subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.url_for(dbname or self.dbname), "-c", sql],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr.decode(errors="replace"))
        return r.stdout.decode()

    def create_database(self, name):
        """Creates database name (a plain identifier) and returns its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError("database name must be a plain identifier: %r" % name)
        self.psql('CREATE DATABASE "%s"' % name, dbname="postgres")
        return self.url_for(name)

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return "(no server log)"
