"""test_bus_nats.py — the cluster bus (bus/bus_nats*.c) against a real
nats-server with JetStream (tests/lib/natsserver.py).

- runs the built cmocka binary test_bus_nats with WSGATE_TEST_NATS_URL set
  and answers its restart test's "stop"/"start" requests on two pipes by
  stopping and starting the server (same port, same store dir), so the
  suite sees the server go away mid-run and come back; fails when that run
  fails, when a NATS test was skipped, or when the restart never happened;
- natsserver.restart() keeps the store dir: the event streams the suite
  created are still on disk, unchanged, after a restart.

Env: WSGATE_BIN (the built wsgate; test_bus_nats is found in the same build
tree, or named by WSGATE_TEST_BUS_NATS_BIN), WSGATE_SOURCE_DIR.
"""

import glob
import os
import subprocess
import sys
import threading
import unittest

from natsserver import NatsServer

WSGATE_BIN = os.environ.get("WSGATE_BIN", "")


def find_test_binary(name="test_bus_nats"):
    explicit = os.environ.get("WSGATE_TEST_BUS_NATS_BIN")
    if explicit:
        return explicit
    if not WSGATE_BIN:
        raise RuntimeError("WSGATE_BIN is not set")
    build = os.path.dirname(os.path.realpath(WSGATE_BIN))
    for cand in ("tests/" + name, name, "bin/" + name, "../tests/" + name):
        path = os.path.normpath(os.path.join(build, cand))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    for depth in range(1, 4):
        for path in glob.glob(os.path.join(build, *(["*"] * depth), name)):
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    raise RuntimeError("%s not found in the build tree of %s" % (name, WSGATE_BIN))


class BusNatsTest(unittest.TestCase):
    def setUp(self):
        self.ns = NatsServer()
        try:
            self.ns.start()
        except BaseException:
            self.ns.close()
            raise

    def tearDown(self):
        self.ns.close()

    def _serve_control(self, cmd_r, ans_w, log):
        with os.fdopen(cmd_r, "r") as cmds, os.fdopen(ans_w, "w") as answers:
            for line in cmds:
                what = line.strip()
                try:
                    if what == "stop":
                        self.ns.stop()
                    elif what == "start":
                        self.ns.start()
                    else:
                        raise ValueError("unknown request %r" % what)
                    log.append(what)
                    answers.write("ok\n")
                except Exception as e:  # the C side fails on a missing "ok"
                    log.append("%s failed: %s" % (what, e))
                    answers.write("no\n")
                answers.flush()

    def test_suite_with_server_restart(self):
        binary = find_test_binary()
        cmd_r, cmd_w = os.pipe()
        ans_r, ans_w = os.pipe()
        env = dict(os.environ, WSGATE_TEST_NATS_URL=self.ns.url,
                   WSGATE_TEST_NATS_CONTROL="%d,%d" % (cmd_w, ans_r))
        log = []
        server = threading.Thread(target=self._serve_control, args=(cmd_r, ans_w, log),
                                  daemon=True)
        try:
            proc = subprocess.Popen([binary], env=env, pass_fds=(cmd_w, ans_r),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        finally:
            os.close(cmd_w)
            os.close(ans_r)
        server.start()
        try:
            out, _ = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            self.fail("test_bus_nats timed out:\n" + out.decode(errors="replace"))
        server.join(timeout=60)
        text = out.decode(errors="replace")
        sys.stdout.write(text)
        self.assertEqual(proc.returncode, 0, "test_bus_nats failed (log %s)\n%s" % (log, self.ns.log()))
        self.assertNotIn("SKIPPED", text)
        self.assertIn("[       OK ] test_server_restart", text)
        self.assertEqual(log, ["stop", "start"])

    def test_store_survives_restart(self):
        """restart() keeps the store dir: JetStream data written before is
        read back after (the file the server keeps for its stream exists)."""
        binary = find_test_binary()
        env = dict(os.environ, WSGATE_TEST_NATS_URL=self.ns.url)
        r = subprocess.run([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))
        before = sorted(glob.glob(os.path.join(self.ns.store_dir, "jetstream", "*", "streams", "*")))
        self.assertTrue(any(p.endswith("_EVENTS") for p in before), before)
        self.ns.restart()
        after = sorted(glob.glob(os.path.join(self.ns.store_dir, "jetstream", "*", "streams", "*")))
        self.assertEqual(before, after)


if __name__ == "__main__":
    unittest.main()
