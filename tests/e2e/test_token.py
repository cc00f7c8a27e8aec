# SPDX-License-Identifier: MIT
"""test_token.py — `wsgate token` as an operator uses it (docs/tokens.md).

- explicit form: every algorithm (HS/RS/ES 256/384/512) minted with the
  committed test keys (tests/data/keys) and verified by the independent Python
  verifier of tests/lib/wsgate_test.py; claims sub/scope/channels/iss/aud,
  --claim as JSON or string, iat, --ttl units, --secret-file;
- config form for an RS256 API block and an ES256 route: the private key
  comes from --key-file, issuer/audience from the config, and a key that does
  not match the config's public key is refused before anything is printed;
- every usage error exits 2 with nothing on stdout, and the secret never
  appears in any output.

Env: WSGATE_BIN, PYTHONPATH=tests/lib, WSGATE_SOURCE_DIR.
"""

import os
import time
import unittest

import wsgate_test as w

KEYS = os.path.join(w.SOURCE_DIR, "tests", "data", "keys")
SECRET = "token-test-secret-token-test-secret-token-test-secret-0123456789"
PAIRS = {"RS": "rsa", "ES256": "ec256", "ES384": "ec384", "ES512": "ec512"}


def key(alg, kind):
    stem = PAIRS.get(alg, PAIRS.get(alg[:2]))
    return os.path.join(KEYS, "%s_%s.pem" % (stem, kind))


def run(args, timeout=30):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    return w.run_wsgate(["token"] + args, env=env, timeout=timeout, universal_newlines=True)


CONFIG = """edge:
  listen: 127.0.0.1:18090
api:
  listen: 127.0.0.1:18091
  auth:
    jwt: {alg: RS256, public_key_file: %s, issuer: "https://idp.test", audience: "wsgate-api"}
store: sqlite://wsgate.db
routes:
  - path: /chat
    backend: http://127.0.0.1:9000/events
    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    auth:
      jwt: {alg: ES256, public_key_file: %s}
""" % (key("RS256", "public"), key("ES256", "public"))


class Token(unittest.TestCase):
    def setUp(self):
        w.require_binary(self)
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)

    def mint(self, args):
        p = run(args)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 1, p.stdout)
        self.assertEqual(len(lines[0].split(".")), 3)
        return lines[0]

    def refused(self, args, words):
        p = run(args)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "")
        self.assertIn(words, p.stderr)
        self.assertNotIn(SECRET, p.stderr)
        return p

    def test_every_algorithm_verifies_independently(self):
        for alg in ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                    "ES256", "ES384", "ES512"):
            with self.subTest(alg=alg):
                signer = ["--secret", SECRET] if alg.startswith("HS") else \
                    ["--key-file", key(alg, "private")]
                tok = self.mint(["--alg", alg, "--sub", "alice"] + signer)
                vkey = SECRET if alg.startswith("HS") else key(alg, "public")
                self.assertEqual(w.verify_jwt(tok, alg, vkey)["sub"], "alice")
                header, _ = w.decode_jwt(tok)
                self.assertEqual(header["alg"], alg)
                other = "HS256" if alg != "HS256" else "HS384"
                with self.assertRaises(ValueError):
                    w.verify_jwt(tok, other, vkey)

    def test_claims(self):
        before = int(time.time())
        tok = self.mint(["--alg", "HS256", "--secret", SECRET, "--sub", "alice",
                         "--scope", "send publish", "--channels", "room.*, lobby,,",
                         "--ttl", "15m", "--iss", "X", "--aud", "Y", "--claim", "tenant=acme",
                         "--claim", "n=3", "--claim", 'roles=["a","b"]', "--claim", "flag=true",
                         "--claim", "exp=1"])
        c = w.verify_jwt(tok, "HS256", SECRET)
        self.assertEqual(c["sub"], "alice")
        self.assertEqual(c["scope"], "send publish")
        self.assertEqual(c["channels"], ["room.*", "lobby"])
        self.assertEqual((c["iss"], c["aud"]), ("X", "Y"))
        self.assertEqual((c["tenant"], c["n"], c["roles"], c["flag"]),
                         ("acme", 3, ["a", "b"], True))
        self.assertTrue(before <= c["iat"] <= time.time())
        self.assertTrue(before + 900 <= c["exp"] <= time.time() + 900)  # --claim exp lost

    def test_ttl_units(self):
        for ttl, secs in (("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 7 * 86400),
                          ("120", 120), (None, 3600)):
            with self.subTest(ttl=ttl):
                args = ["--alg", "HS256", "--secret", SECRET]
                tok = self.mint(args + (["--ttl", ttl] if ttl else []))
                c = w.verify_jwt(tok, "HS256", SECRET)
                # iat and exp are read from the clock separately: a second may tick between
                self.assertIn(c["exp"] - c["iat"], (secs, secs - 1))

    def test_secret_file(self):
        path = self.tmp.write("api.secret", SECRET + "\n")
        tok = self.mint(["--alg", "HS512", "--secret-file", path, "--scope", "admin"])
        self.assertEqual(w.verify_jwt(tok, "HS512", SECRET)["scope"], "admin")

    def test_config_form_rs_api_and_es_route(self):
        cfg = self.tmp.write("wsgate.yaml", CONFIG)
        tok = self.mint(["--config", cfg, "--api", "--scope", "admin",
                         "--key-file", key("RS256", "private")])
        c = w.verify_jwt(tok, "RS256", key("RS256", "public"))
        self.assertEqual((c["iss"], c["aud"], c["scope"]),
                         ("https://idp.test", "wsgate-api", "admin"))
        tok = self.mint(["--config", cfg, "--route", "/chat", "--sub", "bob",
                         "--key-file", key("ES256", "private")])
        self.assertEqual(w.verify_jwt(tok, "ES256", key("ES256", "public"))["sub"], "bob")
        self.refused(["--config", cfg, "--api", "--key-file",
                      os.path.join(KEYS, "attacker_rsa_private.pem")], "would be refused")
        self.refused(["--config", cfg, "--api", "--iss", "elsewhere", "--key-file",
                      key("RS256", "private")], "wrong issuer")
        self.refused(["--config", cfg, "--api"], "--key-file")
        self.refused(["--config", cfg, "--route", "/nope", "--sub", "x"], "/nope")
        self.refused(["--config", cfg, "--route", "/chat", "--api"], "exclude")
        self.refused(["--config", cfg], "--api or --route")

    def test_usage_errors_exit_2(self):
        pem = key("RS256", "private")
        cases = [
            (["--alg", "none", "--secret", SECRET], "none"),
            (["--alg", "HS257", "--secret", SECRET], "HS257"),
            (["--secret", SECRET], "--alg"),
            (["--alg", "HS256"], "--secret"),
            (["--alg", "RS256", "--secret", SECRET], "--key-file"),
            (["--alg", "HS256", "--key-file", pem], "--secret"),
            (["--alg", "HS256", "--secret", SECRET, "--secret-file", pem], "one of"),
            (["--alg", "RS256", "--key-file", self.tmp.join("missing.pem")], "missing.pem"),
            (["--alg", "ES256", "--key-file", pem], "ES256"),
            (["--alg", "RS256", "--key-file", key("RS256", "public")], "RS256"),
            (["--alg", "HS256", "--secret", SECRET, "--ttl", "5 parsecs"], "--ttl"),
            (["--alg", "HS256", "--secret", SECRET, "--ttl", "0s"], "--ttl"),
            (["--alg", "HS256", "--secret", SECRET, "--claim", "novalue"], "--claim"),
            (["--alg", "HS256", "--secret", SECRET, "--frobnicate"], "--frobnicate"),
            (["--alg", "HS256", "--secret", SECRET, "stray"], "stray"),
        ]
        for args, words in cases:
            with self.subTest(args=args):
                self.refused(args, words)

    def test_help(self):
        p = run(["--help"])
        self.assertEqual(p.returncode, 0)
        self.assertIn("--key-file", p.stdout)


if __name__ == "__main__":
    w.main()
