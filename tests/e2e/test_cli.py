# SPDX-License-Identifier: MIT
"""test_cli.py — the wsgate command line as an operator meets it.

- `wsgate --help` lists every sub-command and exits 0, and so does
  `wsgate COMMAND --help` for each, with its usage, even with other flags after it;
- the run roles refuse an unknown flag or argument (exit 2, naming it)
  instead of ignoring it and starting a server;
- an unknown command exits 2 and names the command on stderr;
- `check-config` accepts a good file (exit 0) and refuses a bad one with
  exit 2 and "FILE:LINE: key" naming the offending key and its line;
- `wsgate token` mints client and control-API tokens whose signature, alg,
  sub, scope and exp are checked by the independent Python verifier of
  tests/lib/wsgate_test.py (and fail against a wrong secret);
- `wsgate secret` prints a fresh whsec_ secret (base64 of 32 random bytes,
  or --bytes N) that check-config accepts as a webhook_secret;
- `wsgate token --scope` refuses a scope the control API does not know
  ("read,send", a typo) with exit 2 and no token.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import base64
import os
import re
import time
import unittest

import wsgate_test as w

CLIENT_SECRET = "cli-client-secret-cli-client-secret-0042"
API_SECRET = "cli-api-secret-cli-api-secret-cli-api-0043"

GOOD = """edge:
  listen: 127.0.0.1:18080
api:
  listen: 127.0.0.1:18081
  auth:
    jwt: {alg: HS256, secret: "%s"}
store: sqlite://wsgate.db
routes:
  - path: /chat
    backend: http://127.0.0.1:9000/events
    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    auth:
      jwt: {alg: HS256, secret: "%s"}
""" % (API_SECRET, CLIENT_SECRET)

COMMANDS = ("standalone", "edge", "api", "dispatch", "migrate", "token", "check-config",
            "secret")


def run(args, timeout=30):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    return w.run_wsgate(args, env=env, timeout=timeout, universal_newlines=True)


class Cli(unittest.TestCase):
    def setUp(self):
        w.require_binary(self)
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.good = self.tmp.write("good.yaml", GOOD)

    def test_help_lists_commands(self):
        p = run(["--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        for cmd in COMMANDS:
            self.assertIn(cmd, p.stdout)

    def test_unknown_command_exits_2(self):
        p = run(["frobnicate"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("frobnicate", p.stderr)
        self.assertEqual(p.stdout, "")

    def test_every_command_has_help(self):
        # each answers --help with its usage on stdout, exit 0, whatever follows
        for cmd in COMMANDS:
            for extra in ([], ["--port", "9999"]):
                p = run([cmd, "--help"] + extra, timeout=20)
                self.assertEqual(p.returncode, 0, "%s: %s" % (cmd, p.stderr))
                self.assertTrue(p.stdout.startswith("usage: wsgate %s" % cmd), p.stdout)
                self.assertEqual(p.stderr, "", cmd)

    def free_config(self):
        """A config on free ports with its store in the temp dir: if a run
        role ever starts from it, it conflicts with nothing."""
        text = GOOD.replace("127.0.0.1:18080", "127.0.0.1:%d" % w.free_port())
        text = text.replace("127.0.0.1:18081", "127.0.0.1:%d" % w.free_port())
        text = text.replace("sqlite://wsgate.db", "sqlite://" + self.tmp.join("run.db"))
        return self.tmp.write("run.yaml", text)

    def test_run_roles_refuse_unknown_flags(self):
        cfg = self.free_config()
        for cmd in ("standalone", "edge", "api", "dispatch"):
            for args, bad in ((["--port", "9999"], "--port"), (["--verbose"], "--verbose"),
                              (["extra"], "extra"), (["--port=1", "--help"], "--port=1")):
                p = run([cmd, "--config", cfg] + args, timeout=20)
                self.assertEqual(p.returncode, 2, "%s %s: %s" % (cmd, args, p.stderr))
                self.assertIn("'%s'" % bad, p.stderr)
                self.assertEqual(p.stdout, "")
        # without a command wsgate runs standalone: the same rule applies
        p = run(["--config", cfg, "--port", "9999"], timeout=20)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("'--port'", p.stderr)
        self.assertFalse(os.path.exists(self.tmp.join("run.db")), "a server was started")

    def test_check_config_good(self):
        p = run(["check-config", "--config", self.good])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn(CLIENT_SECRET, p.stdout + p.stderr)
        self.assertNotIn(API_SECRET, p.stdout + p.stderr)

    def check_bad(self, text, line, key):
        path = self.tmp.write("bad.yaml", text)
        p = run(["check-config", "--config", path])
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("%s:%d:" % (path, line), p.stderr)
        self.assertIn(key, p.stderr)

    def test_check_config_unknown_key(self):
        # line 15 (1-based) is the misspelled key inside the route
        bad = GOOD + "    delivery:\n      max_atempts: 3\n"
        self.check_bad(bad, 15, "max_atempts")

    def test_check_config_bad_value(self):
        bad = GOOD.replace("listen: 127.0.0.1:18080",
                           "listen: 127.0.0.1:18080\n  max_connections: lots")
        self.check_bad(bad, 3, "max_connections")

    def test_check_config_bad_duration(self):
        bad = GOOD + "    limits:\n      idle_timeout: 5 parsecs\n"
        self.check_bad(bad, 15, "idle_timeout")

    def test_check_config_missing_file(self):
        p = run(["check-config", "--config", self.tmp.join("nope.yaml")])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("nope.yaml", p.stderr)

    def token(self, args):
        p = run(["token", "--config", self.good] + args)
        self.assertEqual(p.returncode, 0, p.stderr)
        tok = p.stdout.strip()
        self.assertEqual(len(tok.split(".")), 3, p.stdout)
        return tok

    def test_token_client(self):
        tok = self.token(["--route", "/chat", "--sub", "alice", "--ttl", "1h"])
        claims = w.verify_jwt(tok, "HS256", CLIENT_SECRET)
        self.assertEqual(claims["sub"], "alice")
        self.assertGreater(claims["exp"], time.time() + 3000)
        self.assertLess(claims["exp"], time.time() + 3700)
        with self.assertRaises(ValueError):
            w.verify_jwt(tok, "HS256", API_SECRET)

    def test_token_api(self):
        tok = self.token(["--api", "--scope", "send publish", "--ttl", "10m"])
        claims = w.verify_jwt(tok, "HS256", API_SECRET)
        self.assertEqual(sorted(claims["scope"].split()), ["publish", "send"])
        self.assertLess(claims["exp"], time.time() + 700)
        with self.assertRaises(ValueError):
            w.verify_jwt(tok, "HS256", CLIENT_SECRET)

    def test_token_rs_es_from_key_file(self):
        for alg in ("RS256", "ES256", "ES384"):
            kp = w.KeyPair(alg, self.tmp.path)
            p = run(["token", "--alg", alg, "--key-file", kp.private_path, "--sub", "dave",
                     "--channels", "room1,room2", "--claim", "tenant=acme", "--ttl", "5m"])
            self.assertEqual(p.returncode, 0, p.stderr)
            tok = p.stdout.strip()
            claims = w.verify_jwt(tok, alg, kp)
            self.assertEqual(claims["sub"], "dave")
            self.assertEqual(claims["channels"], ["room1", "room2"])
            self.assertEqual(claims["tenant"], "acme")
            self.assertEqual(w.decode_jwt(tok)[0]["alg"], alg)
            with self.assertRaises(ValueError):
                w.verify_jwt(tok, alg, w.KeyPair(alg, self.tmp.path))

    def test_token_hs_secret_file_and_bad_usage(self):
        sf = self.tmp.write("secret", CLIENT_SECRET + "\n")
        p = run(["token", "--alg", "HS256", "--secret-file", sf, "--sub", "erin"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(w.verify_jwt(p.stdout.strip(), "HS256", CLIENT_SECRET)["sub"], "erin")
        p = run(["token", "--alg", "HS256"])  # no secret
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "")
        p = run(["token", "--alg", "XX999", "--secret", CLIENT_SECRET])
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stdout, "")

    def test_token_refuses_unknown_scopes(self):
        for scope, bad in (("read,send", "read,send"), ("send bogus", "bogus"),
                           ("Admin", "Admin"), ("send  publsh read", "publsh")):
            p = run(["token", "--config", self.good, "--api", "--scope", scope])
            self.assertEqual(p.returncode, 2, "%r: %s" % (scope, p.stdout))
            self.assertEqual(p.stdout, "")
            self.assertIn("unknown scope '%s'" % bad, p.stderr)
        p = run(["token", "--config", self.good, "--api", "--scope", "read,send"])
        self.assertIn("not commas", p.stderr)
        # every scope the API knows is accepted, each alone and all together
        known = ["send", "publish", "subscribe", "disconnect", "read", "admin"]
        for scope in known + [" ".join(known)]:
            claims = w.verify_jwt(self.token(["--api", "--scope", scope]), "HS256", API_SECRET)
            self.assertEqual(claims["scope"], scope)

    def test_secret(self):
        seen = set()
        for args, n in (([], 32), (["--bytes", "24"], 24), (["--bytes=64"], 64)):
            p = run(["secret"] + args)
            self.assertEqual(p.returncode, 0, p.stderr)
            m = re.fullmatch(r"whsec_([A-Za-z0-9+/=]+)\n", p.stdout)
            self.assertTrue(m, repr(p.stdout))
            self.assertEqual(len(base64.b64decode(m.group(1), validate=True)), n)
            seen.add(m.group(1))
        self.assertEqual(len(seen), 3, "secrets repeat")
        for bad in (["--bytes", "8"], ["--bytes", "65"], ["--bytes", "x"], ["--bytes"],
                    ["--frob"]):
            p = run(["secret"] + bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertEqual(p.stdout, "")
        # the gateway takes it as a route's webhook_secret
        secret = run(["secret"]).stdout.strip()
        cfg = self.tmp.write("s.yaml", GOOD.replace("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                                    secret))
        p = run(["check-config", "--config", cfg])
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_token_unknown_route(self):
        p = run(["token", "--config", self.good, "--route", "/nope", "--sub", "x"])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("/nope", p.stderr)
        self.assertEqual(p.stdout.strip(), "")


if __name__ == "__main__":
    w.main()
