# SPDX-License-Identifier: MIT
"""test_bus_users.py — user claims of the cluster bus (bus/bus_nats_users.c)
against a real nats-server with JetStream (tests/lib/natsserver.py): runs
the built cmocka suite test_bus_users with WSGATE_TEST_NATS_URL set and
fails when it fails or skipped its NATS tests.

Env: WSGATE_BIN (test_bus_users is found in the same build tree, or named by
WSGATE_TEST_BUS_USERS_BIN).
"""

import os
import subprocess
import sys
import unittest

from csuite import find_build_binary
from natsserver import NatsServer
from wsgate_util import main


class BusUsersTest(unittest.TestCase):
    def test_suite(self):
        binary = find_build_binary("test_bus_users", "WSGATE_TEST_BUS_USERS_BIN")
        with NatsServer() as ns:
            env = dict(os.environ, WSGATE_TEST_NATS_URL=ns.url)
            r = subprocess.run([binary], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=300)
            text = r.stdout.decode(errors="replace")
            sys.stdout.write(text)
            self.assertEqual(r.returncode, 0, "test_bus_users failed\n" + ns.log())
        self.assertNotIn("skipped", text)
        self.assertIn("[  PASSED  ] 5 test(s)", text)


if __name__ == "__main__":
    main()
