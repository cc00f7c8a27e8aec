# SPDX-License-Identifier: MIT
"""selftest_wsgate_test.py — checks the e2e test library itself: the
Standard Webhooks test vector, JWT round trips through the openssl CLI (and
forgeries failing), the recording Backend's scripting, and WsClient against
a minimal RFC 6455 server written here (none of these need wsgate); then,
with the real wsgate ($WSGATE_BIN), that the fixture fails a test whose
gateway crashed (kill -SEGV mid-test), exited by itself, did not exit 0 on
SIGTERM or logged a sanitizer report, and passes the ends a test declares
(kill9(), expect_exit(), allow_unclean_stop()); run_wsgate() on crashing
commands; main()'s exit codes (77 and the skip log) and its watchdog
before ctest's timeout, tests/check_skips.py and that every test file ends
with main().

Run: WSGATE_BIN=build/wsgate PYTHONPATH=tests/lib python3 tests/lib/selftest_wsgate_test.py
(ctest runs it as lib/selftest_wsgate_test).
"""

import base64
import glob
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsgate_test as w  # noqa: E402


class Signatures(unittest.TestCase):
    def test_standard_webhooks_vector(self):
        # The example of the Standard Webhooks specification.
        sig = w.sign_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                             "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                             b'{"test": 2432232314}')
        self.assertEqual(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        hdrs = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "webhook-timestamp": "1614265330", "webhook-signature": "v1,bad " + sig}
        self.assertTrue(w.verify_webhook(w.DEFAULT_WHSEC, hdrs, b'{"test": 2432232314}'))
        self.assertFalse(w.verify_webhook(w.DEFAULT_WHSEC, hdrs, b'{"test": 2432232315}'))
        self.assertFalse(w.verify_webhook("whsec_" + base64.b64encode(b"x" * 24).decode(),
                                          hdrs, b'{"test": 2432232314}'))
        self.assertFalse(w.verify_webhook(w.DEFAULT_WHSEC, hdrs, b'{"test": 2432232314}',
                                          tolerance_s=300))


class Jwt(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = w.TempDir()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_hs(self):
        for alg in ("HS256", "HS384", "HS512"):
            t = w.mint_jwt(w.client_claims("bob"), alg, "k" * 32)
            self.assertEqual(w.verify_jwt(t, alg, "k" * 32)["sub"], "bob")
            with self.assertRaises(ValueError):
                w.verify_jwt(t, alg, "j" * 32)
            with self.assertRaises(ValueError):
                w.verify_jwt(w.forge_tampered(t, sub="eve"), alg, "k" * 32)
            with self.assertRaises(ValueError):
                w.verify_jwt(w.forge_alg(t, "HS256" if alg != "HS256" else "HS512"), alg,
                             "k" * 32)
        with self.assertRaises(ValueError):
            w.verify_jwt(w.mint_jwt(w.expired_claims(), "HS256", "k" * 32), "HS256", "k" * 32)
        with self.assertRaises(ValueError):
            w.verify_jwt(w.forge_none(w.client_claims()), "HS256", "k" * 32)

    def test_rs_es(self):
        for alg in ("RS256", "ES256", "ES384", "ES512"):
            kp = w.KeyPair(alg, self.tmp.path)
            t = w.mint_jwt(w.client_claims("carol"), alg, kp)
            if alg.startswith("ES"):
                self.assertEqual(len(w.b64url_decode(t.split(".")[2])), 2 * w._EC_SIZE[alg])
            self.assertEqual(w.verify_jwt(t, alg, kp)["sub"], "carol")
            with self.assertRaises(ValueError):
                w.verify_jwt(w.forge_tampered(t, sub="eve"), alg, kp)
            other = w.KeyPair(alg, self.tmp.path)
            with self.assertRaises(ValueError):
                w.verify_jwt(t, alg, other)

    def test_der_raw_round_trip(self):
        raw = bytes([0x80] + [1] * 31) + bytes([0] * 31 + [5])
        self.assertEqual(w.ecdsa_der_to_raw(w.ecdsa_raw_to_der(raw), 32), raw)


class BackendPolicy(unittest.TestCase):
    def post(self, url, body=b"{}"):
        req = urllib.request.Request(url, data=body, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, dict(r.getheaders()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def test_script_handler_default(self):
        with w.Backend() as be:
            be.script(503, w.Response(429, headers={"Retry-After": "1"}))
            be.handler = lambda req: 400 if req.json == {"bad": 1} else None
            self.assertEqual(self.post(be.url)[0], 503)
            st, h, _ = self.post(be.url)
            self.assertEqual((st, h.get("Retry-After")), (429, "1"))
            self.assertEqual(self.post(be.url, b'{"bad": 1}')[0], 400)
            be.respond(200, {"actions": []})
            st, _, body = self.post(be.url, b'{"type":"message"}')
            self.assertEqual((st, json.loads(body)), (200, {"actions": []}))
            self.assertEqual(len(be.wait_requests(4)), 4)
            self.assertEqual(be.events(), [{"type": "message"}])
            self.assertEqual(be.events(answered_2xx=True), [{"type": "message"}])

    def test_down_then_up(self):
        be = w.Backend(start=False)
        with self.assertRaises(urllib.error.URLError):
            self.post(be.url)
        be.start()
        try:
            self.assertEqual(self.post(be.url)[0], 200)
        finally:
            be.stop()


def _server_frame(op, payload, fin=True):
    return w.WsClient.frame(op, payload, fin=fin, mask=False)


class MiniServer:
    """Accepts one WebSocket, echoes data messages, pings once, closes with
    4000 on the text "bye" and answers 403 to paths other than /ok."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = self.ls.getsockname()[1]
        self.received = []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        s, _ = self.ls.accept()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
        head = buf.decode()
        if not head.startswith("GET /ok"):
            s.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nX-Why: origin\r\n\r\nno")
            s.close()
            return
        key = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
               if ln.lower().startswith("sec-websocket-key")][0]
        acc = base64.b64encode(hashlib.sha1((key + w.WS_GUID).encode()).digest()).decode()
        s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                   "Sec-WebSocket-Protocol: chat\r\n\r\n" % acc).encode())
        s.sendall(_server_frame(w.OP_PING, b"hi"))
        rbuf = b""
        while True:
            while True:
                fr = self.parse(rbuf)
                if fr:
                    break
                d = s.recv(65536)
                if not d:
                    return
                rbuf += d
            (fin, op, payload), rbuf = fr
            self.received.append((fin, op, payload))
            if op in (w.OP_TEXT, w.OP_BINARY):
                msg_op, msg = op, payload
            elif op == w.OP_CONT:
                msg += payload
            if op in (w.OP_TEXT, w.OP_BINARY, w.OP_CONT) and fin:
                op, payload = msg_op, msg
                if payload == b"bye":
                    s.sendall(_server_frame(w.OP_CLOSE, struct.pack("!H", 4000) + b"done"))
                elif payload == b"frag":
                    s.sendall(_server_frame(w.OP_TEXT, b"fr", fin=False))
                    s.sendall(_server_frame(w.OP_CONT, b"ag", fin=True))
                else:
                    s.sendall(_server_frame(op, payload))
            if op == w.OP_CLOSE:
                s.close()
                return

    @staticmethod
    def parse(b):
        if len(b) < 2:
            return None
        n, i = b[1] & 127, 2
        if n == 126:
            n, i = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            n, i = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < i + 4 + n:
            return None
        mk = b[i:i + 4]
        payload = w._mask(b[i + 4:i + 4 + n], mk)
        return (b[0] >> 7, b[0] & 15, payload), b[i + 4 + n:]


class WsClientAgainstMiniServer(unittest.TestCase):
    def server(self):
        srv = MiniServer()
        self.addCleanup(srv.ls.close)
        return srv

    def test_send_to_a_peer_that_never_reads_fails_in_bounds(self):
        """A send the peer never makes room for raises socket.timeout after
        its stall bound instead of blocking (the socket's own timeout is
        none until the reader's first read)."""
        a, b = socket.socketpair()
        self.addCleanup(b.close)
        ws = w.WsClient(a)
        self.addCleanup(ws.abort)
        ws.pause_reading()
        out = []

        def send():
            try:
                with ws._send_lock:
                    ws._send_all(b"x" * (64 << 20), stall=0.5)
                out.append("sent")
            except socket.timeout:
                out.append("timeout")
        t = threading.Thread(target=send, daemon=True)
        t.start()
        t.join(w.scaled(30))
        self.assertEqual(out, ["timeout"], "the send is still blocked" if t.is_alive() else "")

    def test_refused(self):
        srv = self.server()
        st, hdrs, body = w.WsClient.refused("ws://127.0.0.1:%d/no" % srv.port)
        self.assertEqual((st, hdrs.get("x-why"), body), (403, "origin", b"no"))

    def test_session(self):
        srv = self.server()
        ws = w.WsClient.connect("ws://127.0.0.1:%d/ok" % srv.port, query={"token": "t"},
                                subprotocols=["chat"], origin="http://x")
        self.assertEqual(ws.subprotocol, "chat")
        ws.send_text("héllo")
        self.assertEqual(ws.recv(), (w.OP_TEXT, "héllo"))
        ws.send_binary(b"\x00\xff" * 40000)
        self.assertEqual(ws.recv(), (w.OP_BINARY, b"\x00\xff" * 40000))
        ws.send_fragmented(w.OP_TEXT, ["ab", "cd", "ef"])
        self.assertEqual(ws.recv_text(), "abcdef")
        ws.send_text("frag")
        self.assertEqual(ws.recv_text(), "frag")
        w.wait_until(lambda: ws.pings == [b"hi"], 5, what="ping")
        w.wait_until(lambda: any(op == w.OP_PONG for _, op, _ in srv.received), 5, what="pong")
        ws.send_text("bye")
        self.assertEqual(ws.wait_closed(5), (4000, "done"))
        with self.assertRaises(w.WsClosed):
            ws.recv(1)
        ws.abort()


# --------------------------------------------------------------------------
# the fixture's exit checks, against the real wsgate

def _fixture_cases(wrapper_dir):
    """A GatewayTestCase whose tests each end their gateway one way; run one
    by one in a nested result by FixtureExitChecks (a class made here, so
    that this file's own runner does not collect it)."""

    def sigterm_exit_3():
        # a wrapper that stops wsgate on SIGTERM and then exits 3: a gateway
        # failing its graceful stop, without changing wsgate
        path = os.path.join(wrapper_dir, "wsgate-exit-3")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write('#!/bin/sh\n"%s" "$@" &\nchild=$!\n'
                        "trap 'kill -TERM $child; wait $child; exit 3' TERM\n"
                        "wait $child\n" % os.path.abspath(w.WSGATE_BIN))
            os.chmod(path, 0o755)
        return path

    class Inner(w.GatewayTestCase):
        def start(self, **kw):
            be = self.backend()
            gw = self.gateway([w.route("/chat", be.url)], log_level="info", **kw)
            ws = self.client(gw.edge_url + "/chat")
            ws.send_text("hello")
            be.wait_event(lambda e: e.get("data") == "hello")
            return gw

        def segv(self, gw):
            os.kill(gw.pid, signal.SIGSEGV)
            gw.proc.wait(w.scaled(30))

        def refused_config(self):
            gw = w.Gateway([w.route("/a")], config={"log": {"level": "loud"}}, start=False)
            self.addCleanup(gw.close)
            return gw

        def test_clean(self):
            self.start()

        def test_segv_mid_test(self):
            self.segv(self.start())

        def test_segv_then_restart(self):
            gw = self.start()
            self.segv(gw)
            gw.restart()
            self.client(gw.edge_url + "/chat").send_text("after the restart")

        def test_kill9(self):
            self.assertEqual(self.start().kill9(), -9)

        def test_segv_before_kill9(self):
            gw = self.start()
            self.segv(gw)
            gw.kill9()

        def test_startup_failure_expected(self):
            gw = self.refused_config()
            gw.expect_exit("log.level 'loud' is refused", codes=[2])
            gw._spawn()
            self.assertEqual(gw.proc.wait(w.scaled(30)), 2)

        def test_startup_failure_unexpected(self):
            gw = self.refused_config()
            gw._spawn()
            self.assertEqual(gw.proc.wait(w.scaled(30)), 2)

        def test_startup_failure_other_code(self):
            gw = self.refused_config()
            gw.expect_exit("a refused config exits 1 (it exits 2)", codes=[1])
            gw._spawn()
            gw.proc.wait(w.scaled(30))

        def test_sigterm_exit_3(self):
            self.start(binary=sigterm_exit_3())

        def test_sigterm_exit_3_allowed(self):
            self.start(binary=sigterm_exit_3()).allow_unclean_stop("the wrapper exits 3")

        def test_sanitizer_report_in_log(self):
            gw = self.start()
            with open(gw.stderr_path, "a") as f:
                f.write("==1==ERROR: AddressSanitizer: heap-use-after-free (planted)\n")

    return Inner


class FixtureExitChecks(unittest.TestCase):
    """Each inner test passes on its own; the fixture alone decides."""

    @classmethod
    def setUpClass(cls):
        w.require_binary()
        cls.tmp = w.TempDir()
        cls.inner = _fixture_cases(cls.tmp.path)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_inner(self, name):
        result = unittest.TestResult()
        self.inner(name).run(result)
        self.assertEqual(result.testsRun, 1)
        return result

    def assert_passes(self, name):
        r = self.run_inner(name)
        self.assertTrue(r.wasSuccessful(), r.errors + r.failures)

    def assert_fails(self, name, *wanted):
        """The inner test fails, with every text in wanted in its report."""
        r = self.run_inner(name)
        self.assertFalse(r.wasSuccessful(), "%s passed" % name)
        text = "\n".join(t for _, t in r.errors + r.failures)
        self.assertIn("wsgate process problem", text)
        for want in wanted:
            self.assertRegex(text, want)
        return text

    # what a crash looks like: SIGSEGV from the release build; ASan catches
    # the signal, reports it and aborts (ASAN_OPTIONS=abort_on_error=1) or
    # exits 1 (the default)
    CRASH = r"died by signal 11 \(SIGSEGV\)|died by signal 6 \(SIGABRT\)|" \
            r"exited by itself with exit code 1"

    def test_a_clean_test_passes(self):
        self.assert_passes("test_clean")

    def test_segv_mid_test_fails_the_test(self):
        self.assert_fails("test_segv_mid_test", self.CRASH)

    def test_segv_then_restart_still_fails(self):
        self.assert_fails("test_segv_then_restart", self.CRASH)

    def test_kill9_on_purpose_passes(self):
        self.assert_passes("test_kill9")

    def test_crash_before_kill9_fails(self):
        self.assert_fails("test_segv_before_kill9", self.CRASH)

    def test_startup_failure_passes_only_when_expected(self):
        self.assert_passes("test_startup_failure_expected")
        self.assert_fails("test_startup_failure_unexpected", "exited by itself with exit code 2")
        self.assert_fails("test_startup_failure_other_code", r"exit code 2, expected \(1,\)")

    def test_sigterm_must_exit_0(self):
        self.assert_fails("test_sigterm_exit_3", "exit code 3 on SIGTERM")
        self.assert_passes("test_sigterm_exit_3_allowed")

    def test_sanitizer_report_fails(self):
        self.assert_fails("test_sanitizer_report_in_log", "sanitizer report")


class RunWsgate(unittest.TestCase):
    def test_signal_and_sanitizer_report_raise(self):
        with self.assertRaisesRegex(AssertionError, "SIGSEGV"):
            w.run_wsgate(["-c", "kill -SEGV $$"], binary="/bin/sh")
        with self.assertRaisesRegex(AssertionError, "sanitizer report"):
            w.run_wsgate(["-c", "echo 'x.c:1:2: runtime error: overflow' >&2; exit 2"],
                         binary="/bin/sh")
        self.assertEqual(w.run_wsgate(["-c", "exit 2"], binary="/bin/sh").returncode, 2)


# --------------------------------------------------------------------------
# the runner of every test file

class Runner(unittest.TestCase):
    def setUp(self):
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)
        self.skip_log = self.tmp.join("skips.txt")
        os.mkdir(self.tmp.join("e2e"))

    def run_file(self, body):
        """A test file e2e/test_x.py with `class T(unittest.TestCase):` and
        body, ended by main(); returns (exit code, skip log text)."""
        path = self.tmp.join("e2e", "test_x.py")
        with open(path, "w") as f:
            f.write("import unittest\nimport wsgate_util\n\n\nclass T(unittest.TestCase):\n"
                    + body + "\n\nwsgate_util.main()\n")
        env = dict(os.environ, WSGATE_SKIP_LOG=self.skip_log,
                   PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
        r = subprocess.run([sys.executable, path], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        try:
            with open(self.skip_log) as f:
                log = f.read()
            os.unlink(self.skip_log)
        except FileNotFoundError:
            log = ""
        return r.returncode, log

    def test_exit_codes(self):
        ok = "    def test_a(self):\n        pass\n"
        skip = "    def test_b(self):\n        self.skipTest('no  frobnicator\\nhere')\n"
        fail = "    def test_c(self):\n        self.fail('no')\n"
        self.assertEqual(self.run_file(ok), (0, ""))
        self.assertEqual(self.run_file(ok + skip),
                         (w.SKIP_EXIT, "e2e/test_x::T.test_b\tno frobnicator here\n"))
        self.assertEqual(self.run_file(skip + fail)[0], 1)
        self.assertEqual(self.run_file("    pass\n")[0], 1)  # no test at all

    def test_watchdog_before_ctest_timeout(self):
        """A file still running WATCHDOG_MARGIN_S before WSGATE_TEST_TIMEOUT
        prints its threads' stacks and exits 1 (ctest's own kill prints
        nothing about where it waited)."""
        path = self.tmp.join("e2e", "test_hangs.py")
        with open(path, "w") as f:
            f.write("import time\nimport unittest\nimport wsgate_util\n\n\n"
                    "class T(unittest.TestCase):\n    def test_waits_forever(self):\n"
                    "        time.sleep(120)\n\n\nwsgate_util.main()\n")
        limit = w.WATCHDOG_MARGIN_S + 2
        env = dict(os.environ, WSGATE_TEST_TIMEOUT=str(limit),
                   PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
        r = subprocess.run([sys.executable, path], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 1, out)
        self.assertIn("WATCHDOG", out)
        self.assertIn("test_waits_forever", out)  # the stack of the waiting test


class CheckSkips(unittest.TestCase):
    """tests/check_skips.py, which makes `make test` fail on a skip."""

    def check(self, allow, skipped):
        with w.TempDir() as tmp:
            a, s = tmp.write("allow.txt", allow), tmp.write("skipped.txt", skipped)
            script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "check_skips.py")
            r = subprocess.run([sys.executable, script, a, s], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
        return r.returncode, r.stdout.decode()

    def test_allowlist(self):
        skip = "e2e/test_listen::Listen.test_v6\tno IPv6 loopback here\n"
        self.assertEqual(self.check("", "")[0], 0)
        rc, out = self.check("# nothing allowed\n", skip)
        self.assertEqual(rc, 1)
        self.assertIn("e2e/test_listen::Listen.test_v6: no IPv6 loopback here", out)
        self.assertEqual(self.check("e2e/test_listen::Listen.test_v6  CI has no ::1\n", skip)[0], 0)
        self.assertEqual(self.check("e2e/test_listen::*  CI has no ::1\n", skip)[0], 0)
        self.assertEqual(self.check("e2e/test_listen::Listen.other  why\n", skip)[0], 1)
        self.assertEqual(self.check("e2e/test_listen::*\n", skip)[0], 2)  # no reason


class SuiteConventions(unittest.TestCase):
    def test_every_test_file_ends_with_main(self):
        # unittest.main() would make a skip a pass: ctest must see exit 77
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        files = glob.glob(os.path.join(root, "*", "test_*.py"))
        self.assertTrue(files)
        for path in files:
            with open(path) as f:
                text = f.read()
            self.assertNotIn("unittest.main(", text, path)
            self.assertRegex(text, re.compile(r"^    (w\.)?main\(\)$", re.M), path)


if __name__ == "__main__":
    w.main()
