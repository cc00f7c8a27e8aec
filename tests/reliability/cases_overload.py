# SPDX-License-Identifier: MIT
"""cases_overload.py — overload (docs/contract.md §2 "Overload slows clients down, it
never disconnects them", issue 13 item 7): 100 clients send 64-byte text
frames as fast as the gateway takes them for RELIABILITY_OVERLOAD_SECONDS
against a backend that answers each batch after 20 ms. Judged: no client
closed, and every frame a client wrote whole reaches the backend, in order
per client.

The default is 10 s of sending, not the issue's 30 s: the in-process bus
takes frames into its queue file far faster than they can be delivered
(measured on the 2-core machine with backpressure in place: ~460,000
frames/s in, ~35,000/s out), so 30 s of sending means ~7 minutes of
draining. RELIABILITY_OVERLOAD_SECONDS=30 (or --overload-seconds 30) runs
the full length; the wait for delivery is bounded by the volume sent.

The clients are raw non-blocking sockets driven by one selector loop on the
main thread (writes as much as the kernel takes, reads close frames). The
backend is a counting HTTP server (stdlib ThreadingHTTPServer, one thread
per request) that keeps per-client counters, not the events.
"""

import base64
import os
import re
import selectors
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import wsgate_test as w
from cases_faults import G
from rel import env_seconds, wait_for

N_CLIENTS = 100
FRAME_BYTES = 64
BATCH_FRAMES = 128  # frames generated per write
_FRAME = re.compile(rb'"data":"c(\d{3}):(\d+):')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        srv = self.server.counter
        # a regex over the body, not json.loads: millions of events must not
        # make the backend the bottleneck (the frames are "cNNN:K:xxx")
        srv.record(body.count(b'"type":"connect"'), _FRAME.findall(body))
        time.sleep(srv.delay)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class CountingBackend:
    """Per client (the index in the frame "cNNN:K:"): the next frame index
    expected, duplicates and out-of-order arrivals."""

    def __init__(self, delay):
        self.delay = delay
        self.lock = threading.Lock()
        self.next = {}
        self.dups = 0
        self.disorder = []
        self.connects = 0
        self.port = w.free_port()
        self.srv = _Server(("127.0.0.1", self.port), _Handler)
        self.srv.counter = self
        self.t = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.1},
                                  daemon=True)
        self.t.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d/events" % self.port

    def record(self, connects, frames):
        """connects: connect events in one request; frames: its message
        frames in order, as (client, index) byte strings."""
        with self.lock:
            self.connects += connects
            for c, k in frames:
                c, k = int(c), int(k)
                nxt = self.next.get(c, 0)
                if k == nxt:
                    self.next[c] = k + 1
                elif k < nxt:
                    self.dups += 1
                else:
                    if len(self.disorder) < 5:
                        self.disorder.append("client %d: frame %d after %d" % (c, k, nxt - 1))
                    self.next[c] = k + 1

    def delivered(self, c):
        with self.lock:
            return self.next.get(c, 0)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Blaster:
    """N raw WebSocket clients writing frames "cNNN:K:xxx…" (FRAME_BYTES) as
    fast as their sockets accept them. sent[i] counts frames written whole."""

    def __init__(self, port, n):
        self.port = port
        self.socks = [self._open(i) for i in range(n)]
        self.sent = [0] * n
        self.out = [b""] * n
        self.pending = [0] * n  # frames in out[i]
        self.rbuf = [bytearray() for _ in range(n)]
        self.close_code = [None] * n
        self.sel = selectors.DefaultSelector()
        for i, s in enumerate(self.socks):
            self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
        self.mask = os.urandom(4)

    def _open(self, i):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /load?tag=c%03d HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (i, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            c = s.recv(4096)
            if not c:
                raise AssertionError("client %d: closed during the handshake" % i)
            head += c
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError("client %d refused: %r" % (i, head[:80]))
        s.setblocking(False)
        return s

    def _frames(self, i):
        """BATCH_FRAMES frames from sent[i] on, masked in one XOR (every
        payload is FRAME_BYTES, a multiple of 4, so each starts at key
        offset 0)."""
        k0 = self.sent[i]
        payload = b"".join(("c%03d:%d:" % (i, k)).ljust(FRAME_BYTES, "x").encode()
                           for k in range(k0, k0 + BATCH_FRAMES))
        masked = w._mask(payload, self.mask)
        head = struct.pack("!BB", 0x81, 0x80 | FRAME_BYTES) + self.mask
        return b"".join(head + masked[j:j + FRAME_BYTES]
                        for j in range(0, len(masked), FRAME_BYTES))

    def _read(self, i):
        try:
            data = self.socks[i].recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._closed(i, 1006)
            return
        b = self.rbuf[i]
        b += data
        while len(b) >= 2:
            n, off = b[1] & 0x7F, 2
            if n == 126:
                if len(b) < 4:
                    return
                n, off = struct.unpack("!H", bytes(b[2:4]))[0], 4
            elif n == 127:
                if len(b) < 10:
                    return
                n, off = struct.unpack("!Q", bytes(b[2:10]))[0], 10
            if len(b) < off + n:
                return
            op, pl = b[0] & 0x0F, bytes(b[off:off + n])
            del b[:off + n]
            if op == 8:
                self._closed(i, struct.unpack("!H", pl[:2])[0] if len(pl) >= 2 else 1005)
                return
            if op == 9:  # answer pings as a real client does (idle_timeout)
                self._queue(i, struct.pack("!BB", 0x8A, 0x80 | len(pl)) + self.mask +
                            w._mask(pl, self.mask))

    def _queue(self, i, data):
        """Appends data after the frames being written (a frame boundary)."""
        if self.close_code[i] is not None:
            return
        self.out[i] += data
        self.sel.modify(self.socks[i], selectors.EVENT_READ | selectors.EVENT_WRITE, i)

    def _closed(self, i, code):
        if self.close_code[i] is None:
            self.close_code[i] = code
        try:
            self.sel.unregister(self.socks[i])
        except (KeyError, ValueError):
            pass

    def _write(self, i, generate):
        if not self.out[i]:
            if not generate:
                self.sel.modify(self.socks[i], selectors.EVENT_READ, i)
                return
            self.out[i] = self._frames(i)
            self.pending[i] = BATCH_FRAMES
        try:
            n = self.socks[i].send(self.out[i])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._closed(i, 1006)
            return
        self.out[i] = self.out[i][n:]
        if not self.out[i]:
            self.sent[i] += self.pending[i]
            self.pending[i] = 0

    def run(self, seconds, generate=True, on_tick=None, until_flushed=True):
        """Writes frames (generate) or only what is queued, and reads, for
        `seconds`; without generate, until_flushed stops once nothing is
        left to write."""
        deadline = time.monotonic() + seconds
        tick = 0.0
        while time.monotonic() < deadline:
            if not generate and until_flushed and not any(
                    self.out[i] for i in range(len(self.socks)) if self.close_code[i] is None):
                break
            for key, ev in self.sel.select(timeout=0.2):
                i = key.data
                if ev & selectors.EVENT_READ:
                    self._read(i)
                if ev & selectors.EVENT_WRITE and self.close_code[i] is None:
                    self._write(i, generate)
            if on_tick and time.monotonic() >= tick:
                tick = time.monotonic() + 1.0
                on_tick()

    def poll_closes(self, seconds):
        """Reads (close frames, pings) and writes only pongs for `seconds`."""
        self.run(seconds, generate=False, until_flushed=False)

    def close(self):
        self.sel.close()
        for s in self.socks:
            s.close()


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


SECONDS = env_seconds("RELIABILITY_OVERLOAD_SECONDS", 10.0)


@G.case("overload: %d clients send 64-byte frames unthrottled for %.0f s against a backend "
        "answering in 20 ms" % (N_CLIENTS, SECONDS),
        "no client is closed (the edge stops reading instead: TCP backpressure); every frame "
        "a client wrote is delivered, in order per client", timeout=int(SECONDS) + 900)
def overload(fx, sc):
    seconds = SECONDS
    be = CountingBackend(delay=0.02)
    sc.own(be, be.stop)
    delivery = {"batch_max": 1000, "max_concurrency": 64, "timeout": "10s",
                "max_attempts": 1000, "max_age": "0", "backoff_initial": "50ms",
                "backoff_max": "1s"}
    gw = sc.gateway([w.route("/load", be.url, delivery=delivery,
                             limits={"rate_limit": {"messages_per_second": 0, "burst": 1}})])
    bl = Blaster(gw.edge_port, N_CLIENTS)
    sc.own(bl, bl.close)
    wait_for(lambda: be.connects >= N_CLIENTS, 30)
    peak = [0.0]

    def sample():
        peak[0] = max(peak[0], rss_mib(gw.pid))
    t0 = time.monotonic()
    bl.run(seconds, generate=True, on_tick=sample)
    took = time.monotonic() - t0
    bl.run(15, generate=False, on_tick=sample)  # finish frames written in part
    total = sum(bl.sent)
    budget = min(max(120.0, total / 20000.0), 800.0)  # delivery runs at ~35,000/s

    def all_in():
        sample()
        return all(be.delivered(i) >= bl.sent[i] for i in range(N_CLIENTS))
    t1 = time.monotonic()
    last, since = -1, time.monotonic()
    while time.monotonic() - t1 < budget and not all_in():
        now_total = sum(be.delivered(i) for i in range(N_CLIENTS))
        if now_total != last:
            last, since = now_total, time.monotonic()
        elif time.monotonic() - since > (5 if all(bl.close_code) else 20):
            break  # no progress: what is missing will not come
        bl.poll_closes(0.5)
    drained = time.monotonic() - t1
    closed = [c for c in bl.close_code if c is not None]
    codes = {}
    for c in closed:
        codes[c] = codes.get(c, 0) + 1
    delivered = sum(min(be.delivered(i), bl.sent[i]) for i in range(N_CLIENTS))
    short = [i for i in range(N_CLIENTS) if be.delivered(i) < bl.sent[i]]
    obs = ("%d frames written whole in %.0f s; %d clients closed%s; delivered in order "
           "%d of %d (%d clients short%s) after %.0f s more; %d duplicates; "
           "gateway peak RSS %.0f MiB" % (
               total, took, len(closed),
               " (close codes %s%s)" % (codes, "; 1006: the socket ended without one"
                                         if 1006 in codes else "") if codes else "",
               delivered, total, len(short),
               "" if not be.disorder else ", " + "; ".join(be.disorder[:2]), drained,
               be.dups, peak[0]))
    return obs, not closed and not short and not be.disorder and total > 0
