#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A minimal wsgate backend for trying things out (`make run` starts it).

Verifies each webhook's Standard Webhooks signature, prints the event, and
answers messages with an action that echoes them back to the client: text as
"echo: <text>", binary frames byte for byte. A webhook whose signature does
not verify is answered 401 and says so on stderr (WEBHOOK_SECRET must be the
route's webhook_secret). Python standard library only.

usage: backend.py [PORT]   (default 9000; WEBHOOK_SECRET=whsec_... to change the secret)
"""
import base64
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))


def verify(headers, body):
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    want = "v1," + base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(want, s) for s in headers.get("webhook-signature", "").split())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if not verify(self.headers, body):
            print("401: webhook signature does not verify: this backend's WEBHOOK_SECRET is "
                  "not the route's webhook_secret", file=sys.stderr, flush=True)
            self.send_response(401)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        event = json.loads(body)
        events = event.get("events", [event])
        actions = []
        for ev in events:
            data = ev.get("data", ev.get("data_base64", ""))
            print(f"{ev['type']:10} conn={ev['connection_id']} user={ev.get('user')} "
                  f"seq={ev['seq']} {'data_base64' if 'data_base64' in ev else 'data'}={data!r}",
                  flush=True)
            if ev["type"] == "message" and "data" in ev:
                actions.append({"action": "send", "data": "echo: " + ev["data"]})
            elif ev["type"] == "message" and "data_base64" in ev:  # a binary frame
                actions.append({"action": "send", "data_base64": ev["data_base64"]})
        out = json.dumps({"actions": actions}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"example backend listening on http://127.0.0.1:{port}/events", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
