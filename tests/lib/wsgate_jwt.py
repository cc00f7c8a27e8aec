# SPDX-License-Identifier: MIT
"""wsgate_jwt.py — JWTs for the e2e tests (re-exported by wsgate_test.py),
independent of wsgate's code: HS256/384/512 with hmac, RS*/ES* through the
openssl CLI (ES signatures converted between DER and raw r||s), key pairs
made with openssl genpkey, forgeries, and a verifier for tokens wsgate mints.

Threads: plain functions, any thread. Ownership: KeyPair files live in the
directory given (normally a TempDir).
"""

import base64
import hashlib
import hmac
import json
import os
import random
import subprocess
import tempfile
import time

from wsgate_util import DEFAULT_CLIENT_SECRET


# --------------------------------------------------------------------------
# JWTs, independent of wsgate's code

_HS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_DGST = {"256": "-sha256", "384": "-sha384", "512": "-sha512"}
_EC_SIZE = {"ES256": 32, "ES384": 48, "ES512": 66}
_EC_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _json_part(obj):
    return b64url(json.dumps(obj, separators=(",", ":")))


def _openssl(args, data=None):
    p = subprocess.run(["openssl"] + args, input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), p.stderr.decode()))
    return p.stdout


class KeyPair:
    """An RSA (RS*) or EC (ES*) key pair made with the openssl CLI in dir.
    .private_path, .public_path (PEM), .public_pem (text)."""

    def __init__(self, alg, dir, name=None):
        self.alg = alg
        name = name or "%s-%d" % (alg.lower(), random.randrange(1 << 30))
        self.private_path = os.path.join(dir, name + ".key.pem")
        self.public_path = os.path.join(dir, name + ".pub.pem")
        if alg.startswith("RS"):
            _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                      "-out", self.private_path])
        elif alg.startswith("ES"):
            _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt",
                      "ec_paramgen_curve:" + _EC_CURVE[alg], "-out", self.private_path])
        else:
            raise ValueError("KeyPair needs RS* or ES*, not " + alg)
        _openssl(["pkey", "-in", self.private_path, "-pubout", "-out", self.public_path])
        with open(self.public_path) as f:
            self.public_pem = f.read()


def _der_len(n):
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _der_read(buf, i, tag):
    if buf[i] != tag:
        raise ValueError("DER: expected tag 0x%x" % tag)
    n, i = buf[i + 1], i + 2
    if n & 0x80:
        k = n & 0x7F
        n, i = int.from_bytes(buf[i:i + k], "big"), i + k
    return buf[i:i + n], i + n


def ecdsa_der_to_raw(der, size):
    seq, _ = _der_read(der, 0, 0x30)
    r, i = _der_read(seq, 0, 0x02)
    s, _ = _der_read(seq, i, 0x02)
    return (int.from_bytes(r, "big").to_bytes(size, "big")
            + int.from_bytes(s, "big").to_bytes(size, "big"))


def ecdsa_raw_to_der(raw):
    h = len(raw) // 2
    ints = b""
    for part in (raw[:h], raw[h:]):
        v = int.from_bytes(part, "big").to_bytes(h + 1, "big").lstrip(b"\0") or b"\0"
        if v[0] & 0x80:
            v = b"\0" + v
        ints += b"\x02" + _der_len(len(v)) + v
    return b"\x30" + _der_len(len(ints)) + ints


def _sign(alg, key, signing_input):
    if alg in _HS:
        k = key.encode() if isinstance(key, str) else key
        return hmac.new(k, signing_input, _HS[alg]).digest()
    if alg[:2] in ("RS", "ES"):
        path = key.private_path if isinstance(key, KeyPair) else key
        sig = _openssl(["dgst", _DGST[alg[2:]], "-sign", path], signing_input)
        return ecdsa_der_to_raw(sig, _EC_SIZE[alg]) if alg.startswith("ES") else sig
    if alg == "none":
        return b""
    raise ValueError("unknown alg " + alg)


def mint_jwt(claims, alg="HS256", key=DEFAULT_CLIENT_SECRET, header=None):
    """A compact JWS. key: the HS secret (str/bytes), or a KeyPair / private
    key path for RS*/ES*. header: extra header fields (kid...)."""
    h = {"alg": alg, "typ": "JWT"}
    h.update(header or {})
    si = (_json_part(h) + "." + _json_part(claims)).encode()
    return si.decode() + "." + b64url(_sign(alg, key, si))


def client_claims(sub="alice", ttl=300, **extra):
    c = {"sub": sub, "exp": int(time.time()) + ttl, "iat": int(time.time())}
    c.update(extra)
    return c


def forge_none(claims):
    """alg "none" with an empty signature."""
    return _json_part({"alg": "none", "typ": "JWT"}) + "." + _json_part(claims) + "."


def forge_alg(token, alg):
    """The same claims and signature under another header alg."""
    _, p, s = token.split(".")
    return _json_part({"alg": alg, "typ": "JWT"}) + "." + p + "." + s


def forge_tampered(token, **changes):
    """Claims changed, signature kept."""
    h, p, s = token.split(".")
    claims = json.loads(b64url_decode(p))
    claims.update(changes)
    return h + "." + _json_part(claims) + "." + s


def expired_claims(sub="alice", ago=3600, **extra):
    return client_claims(sub, ttl=-ago, **extra)


def decode_jwt(token):
    """(header, claims) without verifying."""
    h, p, _ = token.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p))


def verify_jwt(token, alg, key, now=None):
    """Verifies signature (alg pinned) and exp/nbf; returns the claims or
    raises ValueError. key: HS secret, or KeyPair / public key PEM path."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header, claims = decode_jwt(token)
    if header.get("alg") != alg:
        raise ValueError("alg %r, expected %r" % (header.get("alg"), alg))
    si, sig = (parts[0] + "." + parts[1]).encode(), b64url_decode(parts[2])
    if alg in _HS:
        if not hmac.compare_digest(_sign(alg, key, si), sig):
            raise ValueError("bad signature")
    else:
        pub = key.public_path if isinstance(key, KeyPair) else key
        if alg.startswith("ES"):
            sig = ecdsa_raw_to_der(sig)
        with tempfile.NamedTemporaryFile(suffix=".sig") as f:
            f.write(sig)
            f.flush()
            p = subprocess.run(["openssl", "dgst", _DGST[alg[2:]], "-verify", pub,
                                "-signature", f.name], input=si, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
        if p.returncode != 0:
            raise ValueError("bad signature")
    now = time.time() if now is None else now
    if "exp" not in claims or claims["exp"] <= now:
        raise ValueError("expired or no exp")
    if "nbf" in claims and claims["nbf"] > now:
        raise ValueError("not yet valid")
    return claims
