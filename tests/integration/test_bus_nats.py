# SPDX-License-Identifier: MIT
"""test_bus_nats.py — the cluster bus (bus/bus_nats*.c) against a real
nats-server with JetStream (tests/lib/natsserver.py).

- runs the built cmocka binary test_bus_nats with WSGATE_TEST_NATS_URL set
  and answers its restart test's "stop"/"start" requests on two pipes by
  stopping and starting the server (same port, same store dir), so the
  suite sees the server go away mid-run and come back, and its silent-server
  test's "pause"/"resume" by SIGSTOP and SIGCONT; fails when that run
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

from csuite import find_build_binary, run_with_server_control
from natsserver import NatsServer
from wsgate_util import main

WSGATE_BIN = os.environ.get("WSGATE_BIN", "")


def find_test_binary():
    return find_build_binary("test_bus_nats", "WSGATE_TEST_BUS_NATS_BIN")


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

    def test_suite_with_server_restart(self):
        binary = find_test_binary()
        rc, text, log = run_with_server_control(binary, self.ns, "WSGATE_TEST_NATS_URL",
                                                "WSGATE_TEST_NATS_CONTROL")
        sys.stdout.write(text)
        if rc is None:
            self.fail("test_bus_nats timed out:\n" + text)
        self.assertEqual(rc, 0, "test_bus_nats failed (log %s)\n%s" % (log, self.ns.log()))
        self.assertNotIn("SKIPPED", text)
        self.assertIn("[       OK ] test_server_restart", text)
        self.assertIn("[       OK ] test_silent_server_holds_new_events", text)
        self.assertEqual(log, ["stop", "start", "pause", "resume"])

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
    main()
