#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A small command-line WebSocket client for trying wsgate (RFC 6455).

Sends each line it reads on stdin as a text frame and prints each frame it
receives on stdout, one per line (a binary frame as "binary: <hex>").
After stdin ends it keeps listening. It exits 0 when --count frames have
arrived, or when the server closes the connection (its close code and reason
go to stderr); 1 when the handshake fails or --timeout passes first.
Python standard library only; ws:// and wss://.

usage: wsclient.py [--count N] [--timeout SECONDS] [--header 'Name: value'] URL
"""
import argparse
import base64
import hashlib
import os
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Conn:
    def __init__(self, url, headers, timeout):
        u = urlsplit(url)
        if u.scheme not in ("ws", "wss") or not u.hostname:
            raise SystemExit("wsclient: the URL must be ws://HOST[:PORT]/PATH or wss://...")
        port = u.port or (443 if u.scheme == "wss" else 80)
        sock = socket.create_connection((u.hostname, port), timeout=timeout)
        if u.scheme == "wss":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=u.hostname)
        self.sock, self.buf, self.lock = sock, b"", threading.Lock()
        key = base64.b64encode(os.urandom(16)).decode()
        target = (u.path or "/") + ("?" + u.query if u.query else "")
        req = [f"GET {target} HTTP/1.1", f"Host: {u.netloc}", "Upgrade: websocket",
               "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        sock.sendall(("\r\n".join(req + headers) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        if lines[0].split(" ")[1:2] != ["101"] or fields.get("sec-websocket-accept") != want:
            raise SystemExit(f"wsclient: handshake refused: {lines[0]}")

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.lock:
            self.sock.sendall(head + mask + body)

    def recv(self):
        """The next whole message as (opcode, payload); answers pings."""
        parts, first = [], None
        while True:
            b0, b1 = self._take(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8))[0]
            payload = self._take(n)
            op = b0 & 0x0F
            if op == 9:
                self.send(10, payload)
                continue
            if op == 10:
                continue
            if op == 8:
                return op, payload
            first = op if first is None else first
            parts.append(payload)
            if b0 & 0x80:
                return first, b"".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    ap.add_argument("--count", type=int, default=0, help="exit after N frames (0: never)")
    ap.add_argument("--timeout", type=float, default=0, help="give up after S seconds (0: never)")
    ap.add_argument("--header", action="append", default=[], help="an extra handshake header")
    args = ap.parse_args()
    conn = Conn(args.url, args.header, args.timeout or None)
    conn.sock.settimeout(None)
    if args.timeout:
        deadline = time.monotonic() + args.timeout
        threading.Thread(target=lambda: (time.sleep(max(0, deadline - time.monotonic())),
                                         print("wsclient: timed out", file=sys.stderr),
                                         os._exit(1)), daemon=True).start()

    def pump():
        for line in sys.stdin:
            conn.send(1, line.rstrip("\n").encode())

    threading.Thread(target=pump, daemon=True).start()
    got = 0
    while not args.count or got < args.count:
        try:
            op, payload = conn.recv()
        except EOFError:
            print("wsclient: connection lost", file=sys.stderr)
            return 1
        if op == 8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            print(f"wsclient: closed {code} {payload[2:].decode(errors='replace')}", file=sys.stderr)
            conn.send(8, payload[:2])
            return 0
        print(payload.decode(errors="replace") if op == 1 else "binary: " + payload.hex(), flush=True)
        got += 1
    conn.send(8, struct.pack("!H", 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
