#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/mint.py — mints an HS256 JWT (stdlib only) for bench/run.sh when
`wsgate token` is not available or cannot express a claim the benchmark needs
(the `channels` claim that subscribes a connection on connect).

Usage: mint.py SECRET SUB [CHANNELS_JSON] [SCOPE]   (valid for two hours)
"""
import base64, hashlib, hmac, json, sys, time


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: mint.py SECRET SUB [CHANNELS_JSON] [SCOPE]")
    secret, sub = sys.argv[1].encode(), sys.argv[2]
    claims = {"sub": sub, "iat": int(time.time()), "exp": int(time.time()) + 7200}
    if len(sys.argv) > 3 and sys.argv[3]:
        claims["channels"] = json.loads(sys.argv[3])
    if len(sys.argv) > 4 and sys.argv[4]:
        claims["scope"] = sys.argv[4]
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, (head + "." + body).encode(), hashlib.sha256).digest()
    print(head + "." + body + "." + b64(sig))


if __name__ == "__main__":
    main()
