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
from wsgate_util import DEFAULT_API_SECRET
from wsgate_ws import OP_BINARY, OP_TEXT, WsClient

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def api_token(scope="admin", ttl=3600, **claims):
    """A control-API token of the test gateways' api.auth.jwt key."""
    c = {"sub": "stream-backend", "scope": scope, "exp": int(time.time()) + ttl}
    c.update(claims)
    return w.mint_jwt(c, "HS256", DEFAULT_API_SECRET)


class _Peer(WsClient):
    """The backend's side of the stream: frames it sends are not masked."""

    def send_frame(self, opcode, payload=b"", fin=True, mask=False, rsv=0):
        super().send_frame(opcode, payload, fin, False, rsv)


class StreamBackend:
    """Accepts the dispatcher's stream on 127.0.0.1:port; records every
    frame, acknowledges events when self.ack is true. event_key: the member
    that makes a frame an event ("type": wsgate's envelope; "event": the
    seed WS API Gateway's frames, which are never acknowledged). auth: a
    control-API token sent as {"auth":...} on each stream before its first
    action (send()); None: none (a gateway without api.auth.jwt, or a
    test of the refusals)."""

    def __init__(self, port=0, ack=True, tls=None, event_key="type", auth=None):
        self.ack = ack
        self.event_key = event_key
        self.auth = auth
        self._authed = set()  # ids of the peers auth was sent on
        self.tls = tls  # an ssl.SSLContext: wss://
        self.lock = threading.Condition()
        self.events = []   # every event, parsed, in arrival order
        self.sources = []  # per event: the index in peers of the stream it came on
        self.frames = []   # per event frame: the ids in it (several with batch_max)
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
            # one event, or several in {"events":[...]} (delivery.batch_max)
            evs = msg["events"] if isinstance(msg.get("events"), list) else \
                [msg] if self.event_key in msg else []
            with self.lock:
                if evs:
                    self.events += evs
                    self.sources += [index] * len(evs)
                    self.frames.append([e.get("id") for e in evs])
                else:
                    self.replies.append(msg)
                self.lock.notify_all()
            if evs and self.ack:
                ids = [e["id"] for e in evs]
                try:  # a batch's ids in one ack
                    peer.send_text(json.dumps({"ack": ids if "events" in msg else ids[0]}))
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
        if self.auth and id(p) not in self._authed:
            p.send_text(json.dumps({"auth": self.auth}))
            self._authed.add(id(p))
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
