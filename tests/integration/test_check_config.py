# SPDX-License-Identifier: MIT
"""test_check_config.py — `wsgate check-config` as a user runs it.

- a valid file (examples/*.yaml, and one with every kind of secret): exit 0,
  a summary with routes, listen addresses, store and bus kind, and not one
  byte of any secret, even with --verbose and with secrets from the
  environment or *_FILE;
- a bad file: exit 2 and exactly one "FILE:LINE: key: reason" line on
  stderr; a bad environment value: "env WSGATE_X: reason";
- several errors: every one, in file order then the environment's, each on
  its line, misspelt keys with "did you mean KEY?", then "FILE: N errors";
  the checks across keys likewise, once the file itself has no error;
- WSGATE_CONFIG stands in for --config; --help; usage errors exit 2;
- --print-schema is docs/configuration.md byte for byte.

Env: WSGATE_BIN (the built wsgate), WSGATE_SOURCE_DIR.
"""

import glob
import os
import tempfile
import unittest

from wsgate_util import main, require_binary, run_wsgate

SOURCE_DIR = os.environ.get("WSGATE_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))))

API_SECRET = "api-secret-api-secret-api-secret-0001"
CLIENT_SECRET = "client-secret-client-secret-client-02"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PG_PASSWORD = "pg-pass-word-99"

GOOD = f"""edge:
  listen: 127.0.0.1:18080
api:
  listen: 127.0.0.1:18081
  auth:
    jwt: {{alg: HS256, secret: "{API_SECRET}"}}
store: postgres://wsgate:{PG_PASSWORD}@127.0.0.1:5432/wsgate
nats: nats://natsuser:nats-pass-77@127.0.0.1:4222
routes:
  - path: /chat
    backend: http://hookuser:hook-pass-55@127.0.0.1:9000/events
    webhook_secret: {WHSEC}
    auth:
      jwt: {{alg: HS256, secret: "{CLIENT_SECRET}"}}
  - path: /public
    backend: https://backend.example/ws
    webhook_secret: {WHSEC}
    auth: {{required: false}}
"""
SECRETS = [API_SECRET, CLIENT_SECRET, WHSEC, "MfKQ9r8GKYqr", PG_PASSWORD, "nats-pass-77",
           "hook-pass-55"]


def run(args, env=None, cwd=None):
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("WSGATE_") or k in ("WSGATE_BIN", "WSGATE_SOURCE_DIR")}
    full_env.update(env or {})
    return run_wsgate(["check-config"] + args, env=full_env, cwd=cwd, timeout=30,
                      universal_newlines=True)


class CheckConfig(unittest.TestCase):
    def setUp(self):
        require_binary()
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assert_no_secrets(self, text):
        for s in SECRETS:
            self.assertNotIn(s, text)

    def test_examples_pass(self):
        examples = glob.glob(os.path.join(SOURCE_DIR, "examples", "*.yaml"))
        self.assertTrue(examples)
        for path in examples:
            r = run(["--config", path])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("OK", r.stdout)
            self.assertEqual(r.stderr, "")

    def test_summary_has_the_shape_and_no_secrets(self):
        path = self.write("good.yaml", GOOD)
        r = run(["--config", path])
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        for want in ["127.0.0.1:18080", "127.0.0.1:18081", "postgres", "nats (cluster)",
                     "routes: 2", "/chat", "/public", "https://backend.example/ws",
                     "http://***@127.0.0.1:9000/events"]:
            self.assertIn(want, out)
        self.assert_no_secrets(out)
        verbose = run(["--config", path, "--verbose"])
        self.assertEqual(verbose.returncode, 0, verbose.stderr)
        self.assertIn("routes[1].auth.required = false", verbose.stdout)
        self.assert_no_secrets(verbose.stdout.replace("hookuser:hook-pass-55@", ""))

    def test_summary_names_each_routes_protocol(self):
        for proto in ("grip", "aws", "wsaas"):
            path = self.write("p.yaml", "routes:\n  - path: /p\n    backend: http://127.0.0.1:9/e\n"
                              "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                              "    auth: {required: false}\n    protocol: %s\n" % proto)
            r = run(["--config", path])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("; protocol: %s)" % proto, r.stdout)

    def test_batch_max_refused_where_the_original_has_no_batch(self):
        for proto, backend, extra in (("aws", "http://127.0.0.1:9/e", ""),
                                      ("wsaas", "http://127.0.0.1:9/e", ""),
                                      ("ws-api-gateway", "ws://127.0.0.1:9/s",
                                       "    one_connection_per_user: replace\n")):
            path = self.write("b.yaml", "routes:\n  - path: /p\n    backend: %s\n"
                              "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                              "    auth: {required: false}\n    protocol: %s\n%s"
                              "    delivery: {batch_max: 4}\n" % (backend, proto, extra))
            r = run(["--config", path])
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("routes[0].delivery.batch_max: must be 1 with protocol: %s" % proto,
                          r.stderr)

    def test_secrets_from_env_and_files_stay_hidden(self):
        path = self.write("good.yaml", GOOD)
        secret_file = self.write("api.secret", "from-file-secret-from-file-secret-1234\n")
        r = run(["-c", path, "-v"], env={"WSGATE_API_AUTH_JWT_SECRET_FILE": secret_file,
                                         "WSGATE_ROUTES_0_AUTH_JWT_SECRET": "e" * 40})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("from-file-secret", r.stdout)
        self.assertNotIn("e" * 40, r.stdout)
        self.assertIn("api.auth.jwt.secret = (secret, 38 bytes)", r.stdout)

    def test_bad_file_exits_2_with_file_line_key_reason(self):
        path = self.write("bad.yaml", GOOD.replace("path: /public", "path: /public\n"
                                                   "    limits: {ping_interval: fast}"))
        r = run(["--config", path])
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr, path + ":16: routes[1].limits.ping_interval: invalid duration"
                         " 'fast' (use 25s, 1500ms, 2m)\n")

    def test_every_error_with_did_you_mean(self):
        bad = GOOD.replace("nats: nats", "storage: sqlite://x.db\nnats: nats")
        bad = bad.replace("    auth: {required: false}",
                          "    auth: {required: false}\n"
                          "    delivery: {max_atempts: 3, timeout: soon}\n"
                          "    limits: {idle_timeout: 5 parsecs, max_mesage_bytes: 10}\n"
                          "    compresion: false")
        path = self.write("bad.yaml", bad)
        r = run(["--config", path], env={"WSGATE_ROUTES_0_DELIVERY_MAX_ATTEMPTS": "0"})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stdout, "")
        want = [
            path + ":8: storage: unknown key; did you mean store?",
            path + ":20: routes[1].delivery.max_atempts: unknown key; "
            "did you mean routes[1].delivery.max_attempts?",
            path + ":20: routes[1].delivery.timeout: invalid duration 'soon' "
            "(use 25s, 1500ms, 2m)",
            path + ":21: routes[1].limits.idle_timeout: invalid duration '5 parsecs' "
            "(use 25s, 1500ms, 2m)",
            path + ":21: routes[1].limits.max_mesage_bytes: unknown key; "
            "did you mean routes[1].limits.max_message_bytes?",
            path + ":22: routes[1].compresion: unknown key; did you mean routes[1].compression?",
            "env WSGATE_ROUTES_0_DELIVERY_MAX_ATTEMPTS: '0' is out of range (1..1000)",
            path + ": 7 errors",
        ]
        self.assertEqual(r.stderr.splitlines(), want)

    def test_every_error_across_keys(self):
        # the file parses; the checks across keys each report, not only the first
        bad = GOOD.replace("path: /public", "path: /chat") + \
            "    delivery: {backoff_initial: 5s, backoff_max: 1s}\n"
        bad = bad.replace(API_SECRET, "short")
        path = self.write("bad.yaml", bad)
        r = run(["--config", path])
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 4, r.stderr)
        self.assertIn("api.auth.jwt.secret: HS256 secret must be at least 32 bytes", lines[0])
        self.assertIn("routes[1].path: '/chat' is already routes[0].path", lines[1])
        self.assertIn("routes[1].delivery.backoff_max: is below delivery.backoff_initial",
                      lines[2])
        self.assertEqual(lines[3], path + ": 3 errors")

    def test_bad_subprotocols(self):
        for bad, why in (("bearer.x", "'bearer.x': bearer.* entries carry tokens, not a "
                          "subprotocol"),
                         ("'a b'", "'a b' is not a subprotocol name (an HTTP token)")):
            with self.subTest(bad):
                path = self.write("bad.yaml", GOOD.replace(
                    "path: /public", "path: /public\n    subprotocols: [chat.v1, %s]" % bad))
                r = run(["--config", path])
                self.assertEqual(r.returncode, 2)
                self.assertIn(":16: routes[1].subprotocols", r.stderr)
                self.assertIn(why, r.stderr)
        path = self.write("good.yaml", GOOD.replace(
            "path: /public", "path: /public\n    subprotocols: [chat.v1, mqtt]\n"
            "    limits: {close_on_token_expiry: false}"))
        self.assertEqual(run(["--config", path]).returncode, 0)

    def test_error_never_echoes_a_store_password(self):
        path = self.write("bad.yaml", GOOD.replace("postgres://", "mysql://"))
        r = run(["--config", path])
        self.assertEqual(r.returncode, 2)
        self.assertIn(":7: store: must be sqlite://", r.stderr)
        self.assert_no_secrets(r.stderr)

    def test_bad_env_value(self):
        path = self.write("good.yaml", GOOD)
        r = run(["--config", path], env={"WSGATE_ROUTES_1_DELIVERY_MAX_ATTEMPTS": "0"})
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, "env WSGATE_ROUTES_1_DELIVERY_MAX_ATTEMPTS: '0' is out of "
                         "range (1..1000)\n")

    def test_wsgate_config_env_and_missing_file(self):
        path = self.write("good.yaml", GOOD)
        r = run([], env={"WSGATE_CONFIG": path})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("routes: 2", r.stdout)
        missing = os.path.join(self.dir, "nope.yaml")
        r = run(["--config=" + missing])
        self.assertEqual(r.returncode, 2)
        self.assertIn(missing + ": cannot open: No such file or directory", r.stderr)

    def test_usage(self):
        r = run(["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: wsgate check-config", r.stdout)
        self.assertEqual(run([]).returncode, 2)
        self.assertEqual(run(["--config"]).returncode, 2)
        r = run(["--frobnicate"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option", r.stderr)

    def test_print_schema_is_the_committed_doc(self):
        r = run(["--print-schema"])
        self.assertEqual(r.returncode, 0)
        with open(os.path.join(SOURCE_DIR, "docs", "configuration.md")) as f:
            self.assertEqual(r.stdout, f.read())


if __name__ == "__main__":
    main()
