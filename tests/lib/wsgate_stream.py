# SPDX-License-Identifier: MIT
"""wsgate_stream.py — a backend stream's server side for tests (docs/webhooks.md
"Backend streams"): StreamBackend accepts the dispatcher's WebSocket on a free
loopback port (ws://, or wss:// with an ssl.SSLContext), records every event
frame (and which of its streams it came on: one per dispatcher process) and
every other frame, acknowledges events unless told not to, and sends actions.
A small WebSocket server on the standard library: the server side of
wsgate_ws.py's frame reader. Used by tests/e2e/test_backend_stream.py and
tests/integration/test_cluster_stream.py.
"""

import base64
import hashlib
import json
import socket
import threading
import time

import wsgate_test as w
from wsgate_ws import OP_BINARY, OP_TEXT, WsClient

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _Peer(WsClient):
    """The backend's side of the stream: frames it sends are not masked."""

    def send_frame(self, opcode, payload=b"", fin=True, mask=False, rsv=0):
        super().send_frame(opcode, payload, fin, False, rsv)


class StreamBackend:
    """Accepts the dispatcher's stream on 127.0.0.1:port; records every
    frame, acknowledges events when self.ack is true."""

    def __init__(self, port=0, ack=True, tls=None):
        self.ack = ack
        self.tls = tls  # an ssl.SSLContext: wss://
        self.lock = threading.Condition()
        self.events = []   # every event frame, parsed, in arrival order
        self.sources = []  # per event: the index in peers of the stream it came on
        self.replies = []  # frames that are not events (error frames)
        self.tokens = []   # Authorization bearer tokens of accepted handshakes
        self.peers = []
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.url = "%s://127.0.0.1:%d/stream" % ("wss" if tls else "ws", self.port)
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        try:
            if self.tls:
                s.settimeout(10)
                s = self.tls.wrap_socket(s, server_side=True)
            head, rest = self._head(s)
        except (OSError, ValueError):
            s.close()
            return
        auth = head.get("authorization", "")
        key = head.get("sec-websocket-key", "")
        acc = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc).encode())
        peer = _Peer(s, rest, auto_pong=True)
        with self.lock:
            self.tokens.append(auth[len("Bearer "):] if auth.startswith("Bearer ") else auth)
            self.peers.append(peer)
            index = len(self.peers) - 1
            self.lock.notify_all()
        while True:
            try:
                op, payload = peer.recv(3600)
            except (AssertionError, OSError):
                return
            msg = json.loads(payload) if op == OP_TEXT else {"binary": True}
            with self.lock:
                if "type" in msg:
                    self.events.append(msg)
                    self.sources.append(index)
                else:
                    self.replies.append(msg)
                self.lock.notify_all()
            if "type" in msg and self.ack:
                try:
                    peer.send_text(json.dumps({"ack": msg["id"]}))
                except OSError:  # stopped meanwhile
                    return

    @staticmethod
    def _head(s):
        # the request line parses like a status line: only the headers matter
        s.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                raise ValueError("closed during the handshake")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        hdrs = {}
        for ln in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        s.settimeout(None)
        return hdrs, rest

    def peer(self, timeout=15):
        return self.wait(lambda: self.peers[-1] if self.peers else None, timeout)

    def send(self, obj, peer=None):
        """Sends obj (dict: as JSON; bytes: a binary frame) on the latest
        stream, or on peers[peer]."""
        p = self.peer() if peer is None else self.peers[peer]
        if isinstance(obj, bytes):
            p.send_frame(OP_BINARY, obj)
        else:
            p.send_text(obj if isinstance(obj, str) else json.dumps(obj))

    def wait(self, fn, timeout=15):
        deadline = time.monotonic() + w.scaled(timeout)
        with self.lock:
            while True:
                v = fn()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("backend stream: condition not met in %ss "
                                         "(events=%r replies=%r)"
                                         % (timeout, self.events[-5:], self.replies[-5:]))
                self.lock.wait(min(left, 0.2))

    def wait_events(self, pred, n, timeout=20):
        return self.wait(lambda: (lambda l: l if len(l) >= n else None)(
            [e for e in self.events if pred(e)]), timeout)

    def stop(self):
        try:  # shutdown first: it wakes the accept() of the other thread
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.ls.close()
        except OSError:
            pass
        for p in list(self.peers):
            p.abort()
