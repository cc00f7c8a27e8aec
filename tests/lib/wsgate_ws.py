# SPDX-License-Identifier: MIT
"""wsgate_ws.py — a raw-socket RFC 6455 WebSocket client for the e2e
tests (re-exported by wsgate_test.py), independent of any WebSocket
library: handshake refusals visible as HTTP status + headers, raw frames,
fragmentation, invalid UTF-8, automatic pongs, slow-reader mode.

Threads: each WsClient runs one daemon reader thread; sends from any
thread are serialised by a lock. On wss:// every call into the SSL object
(reads, writes) also holds one lock: OpenSSL objects must not be used by two
threads at once, and a send() during the reader's recv() could clear the
recv's "want read" state, so that the read came back as an EOF and the client
dropped a healthy connection (1006). Ownership: the client owns its socket
and closes it in close()/abort().
"""

import base64
import hashlib
import json
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import zlib

from wsgate_util import scaled


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
        # permessage-deflate accepted by the server (RFC 7692): compressed
        # messages it sends are inflated (and counted), send_deflated() works
        self.extensions = self.headers.get("sec-websocket-extensions")
        self.deflate = bool(self.extensions and "permessage-deflate" in self.extensions)
        self.compressed_received = 0
        self.auto_pong = auto_pong
        self._buf = bytearray(rest)
        self._msgs = queue.Queue()
        self._send_lock = threading.Lock()
        # wss://: the socket is non-blocking, waits happen outside _ssl_lock
        # and each SSL call holds it (see the header)
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._ssl_lock = threading.Lock()
        if self._tls:
            sock.settimeout(0.0)
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
                  extra_request_lines=None, ssl_context=None, ssl_session=None, early=b""):
        """wss:// URLs need ssl_context (an ssl.SSLContext trusting the
        gateway's CA); the socket is then that context's SSLSocket.
        ssl_session (an earlier SSLSocket's .session) is offered for
        resumption. early: bytes (frames) written with the request in one
        write, before the 101 is read (one TLS record on wss://)."""
        u = urllib.parse.urlsplit(url)
        tls = u.scheme == "wss"
        if tls and ssl_context is None:
            raise ValueError("wss:// needs ssl_context")
        host, port = u.hostname, u.port or (443 if tls else 80)
        path = u.path or "/"
        q = u.query
        if query:
            q = (q + "&" if q else "") + urllib.parse.urlencode(query)
        if q:
            path += "?" + q
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        v6 = ":" in host
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                sock = ssl_context.wrap_socket(sock, server_hostname=host, session=ssl_session)
            key = key or base64.b64encode(os.urandom(16)).decode()
            lines = ["GET %s HTTP/1.1" % path,
                     "Host: %s:%d" % ("[%s]" % host if v6 else host, port),
                     "Upgrade: websocket", "Connection: Upgrade",
                     "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: " + version]
            if subprotocols:
                lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
            if origin:
                lines.append("Origin: " + origin)
            for k, v in (headers or {}).items():
                lines.append("%s: %s" % (k, v))
            lines.extend(extra_request_lines or [])
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + early)
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
            self._send_all(data)

    def _send_one(self, view):
        """One write of view's start: the bytes written, or the sockets to
        wait for ([read], [write]) before the next try. Never blocks: the
        socket's own timeout is the reader thread's (0.2 s, or none before
        its first read). A write OpenSSL could not finish is retried with
        the same bytes, as it requires."""
        if not self._tls:
            try:
                return self.sock.send(view, socket.MSG_DONTWAIT)
            except (BlockingIOError, socket.timeout):
                return [], [self.sock]
        with self._ssl_lock:
            try:
                return self.sock.send(view)
            except ssl.SSLWantReadError:
                return [self.sock], []
            except ssl.SSLWantWriteError:
                return [], [self.sock]

    def _send_all(self, data, stall=10.0):
        """sendall(); socket.timeout when no byte could be written for
        stall seconds (scaled): a peer that stops reading fails the test
        instead of holding it until ctest's timeout."""
        view = memoryview(data)
        stall = scaled(stall)
        waited = 0.0
        while len(view):
            r = self._send_one(view)
            if isinstance(r, int):
                view = view[r:]
                waited = 0.0
                continue
            if waited >= stall:
                raise socket.timeout("send stalled for %.1fs" % stall)
            select.select(r[0], r[1], [], 0.05)
            waited += 0.05

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0):
        self.send_raw(self.frame(opcode, payload, fin, mask, rsv))

    @staticmethod
    def deflate_payload(data):
        """RFC 7692 §7.2.1: raw DEFLATE, sync flush, the 00 00 ff ff tail
        taken off; a fresh compressor per message (no context takeover)."""
        if isinstance(data, str):
            data = data.encode()
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(b"\x00\x00\xff\xff")
        return out[:-4]

    def send_deflated(self, opcode, data):
        """One compressed message (RSV1) in one frame."""
        self.send_frame(opcode, self.deflate_payload(data), rsv=4)

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
        self.closed.wait(scaled(timeout))
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
        connection closed first, AssertionError on timeout (scaled)."""
        timeout = scaled(timeout)
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
        timeout = scaled(timeout)
        if not self.closed.wait(timeout):
            raise AssertionError("connection still open after %.1fs" % timeout)
        return self.close_code, self.close_reason

    # -- reader thread
    def _fill(self):
        while not self._resume.is_set():
            if self.closed.is_set():
                return False
            self._resume.wait(0.1)
        if self._tls:
            data = self._recv_tls()
            if data is True:
                return True
        else:
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

    def _recv_tls(self):
        """One read of a wss:// socket for _fill: bytes, b"" at the end of
        the connection, True when nothing came within 0.2 s."""
        try:
            with self._ssl_lock:
                buffered = self.sock.pending() > 0
            if not buffered and not select.select([self.sock], [], [], 0.2)[0]:
                return True
            with self._ssl_lock:
                return self.sock.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return True
        except (OSError, ValueError):  # ValueError: closed by abort()
            return b""

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
        if rsv == 4 and self.deflate and fin and op in (OP_TEXT, OP_BINARY):
            d = zlib.decompressobj(-15)  # the server takes no context over
            payload = d.decompress(payload + b"\x00\x00\xff\xff")
            self.compressed_received += 1
        elif rsv:
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
