# SPDX-License-Identifier: MIT
"""natsserver.py — a throw-away nats-server with JetStream for tests (stdlib only).

    from natsserver import NatsServer
    with NatsServer() as ns:        # nats-server -js on 127.0.0.1:<free port>, store in a temp dir
                                    # (host="169.254.7.1": on that address instead)
        run_something(ns.url)       # nats://127.0.0.1:PORT
        ns.restart()                # stop + start on the same port, keeping the store dir
        ns.kill9(); ns.start()      # a crash (SIGKILL), then the same port and store dir
        ns.pause(); ns.resume()     # SIGSTOP / SIGCONT: a hung server
        ns.request("$JS.API.INFO")  # one core request/reply, the reply payload
    # stopped by PID, temp dir removed

start() waits (bounded) until the port accepts connections and the server
answers PING with PONG; stop() sends SIGTERM to the PID it started and
SIGKILL after a bound. The server gets PR_SET_PDEATHSIG so it dies with the
test process.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

try:
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
except (ImportError, OSError):
    _LIBC = None


def _die_with_parent():
    if _LIBC is not None:
        _LIBC.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_nats_server():
    for cand in (os.environ.get("WSGATE_NATS_SERVER"), shutil.which("nats-server"),
                 "/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("nats-server not found (set WSGATE_NATS_SERVER)")


class NatsServer:
    def __init__(self, port=None, startup_timeout=30.0, stop_timeout=10.0, host="127.0.0.1"):
        self.bin = find_nats_server()
        self.host = host  # the one address it listens on (a test's veth address, say)
        self.port_chosen = port is None  # a port of ours: another may be tried (start)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.proc = None
        self.tmp = tempfile.mkdtemp(prefix="wsgate-nats-")
        self.log_path = os.path.join(self.tmp, "nats.log")

    @property
    def url(self):
        return "nats://%s:%d" % (self.host, self.port)

    @property
    def store_dir(self):
        return os.path.join(self.tmp, "js")

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        """Starts the server and returns once it answers, as itself: a port
        picked by free_port() can be picked by a test running beside this one
        too, and then the loser's server exits ("address already in use")
        while the port answers for the other's — two clusters would share one
        NATS. A port of our own choosing is then chosen again (up to 5
        times); a given port (a restart on the same port) fails."""
        for attempt in range(5):
            if self._start_once() or not self.port_chosen:
                return
            self.port = free_port()
        raise RuntimeError("nats-server: no free port after 5 tries:\n" + self.log())

    def _started_here(self, offset):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return b"Server is ready" in f.read()
        except OSError:
            return False

    def _start_once(self):
        """True once our process serves the port; False when it lost the
        port to another (its log says the address is in use)."""
        if self.proc is not None:
            return True
        offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self.bin, "-js", "-a", self.host, "-p", str(self.port), "-sd", self.store_dir],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        finally:
            log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                if "address already in use" in self.log() and self.port_chosen:
                    return False
                raise RuntimeError("nats-server exited at start:\n" + self.log())
            if self._started_here(offset) and self._ping():
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server not ready after %.0f s:\n%s" % (self.startup_timeout, self.log()))

    def _ping(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                s.settimeout(1.0)
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                if not data.startswith(b"INFO"):
                    return False
                s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
                data = b""
                while b"PONG" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        return False
                    data += chunk
                return True
        except OSError:
            return False

    def request(self, subject, payload=b"", timeout=5.0):
        """One core NATS request (e.g. a JetStream API call such as
        "$JS.API.CONSUMER.INFO.<stream>.<consumer>") over a fresh plain
        connection; returns the reply payload (bytes)."""
        inbox = "_INBOX.wsgatetest%d" % os.getpid()
        deadline = time.monotonic() + timeout
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            buf = b""

            def more():
                nonlocal buf
                s.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("nats-server closed the connection")
                buf += chunk

            while b"\r\n" not in buf:
                more()
            buf = buf[buf.index(b"\r\n") + 2:]  # INFO
            s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                      b"SUB %s 1\r\nPUB %s %s %d\r\n%s\r\n"
                      % (inbox.encode(), subject.encode(), inbox.encode(), len(payload),
                         payload))
            while True:
                while b"\r\n" not in buf:
                    more()
                line, rest = buf.split(b"\r\n", 1)
                if line.startswith(b"PING"):
                    s.sendall(b"PONG\r\n")
                    buf = rest
                elif line.startswith(b"MSG "):
                    n = int(line.split()[-1])
                    while len(rest) < n + 2:
                        more()
                        line, rest = buf.split(b"\r\n", 1)
                    return rest[:n]
                elif line.startswith(b"-ERR"):
                    raise RuntimeError("nats-server: %s" % line.decode(errors="replace"))
                else:
                    buf = rest

    def stop(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # in case pause() was not undone
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)

    def kill9(self):
        """SIGKILL by PID, as a crash would (no flush, no goodbye to
        clients); start() again brings it back on the same port and store."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=self.stop_timeout)

    def pause(self):
        """SIGSTOP by PID: a hung server (its sockets stay open, nothing is
        answered); resume() sends SIGCONT."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def restart(self):
        self.stop()
        self.start()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def close(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
