#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""selftest_natsserver.py — NatsServer.start() returns only once its own
process serves its port. Two tests running side by side can pick the same
free port; the second server then exits ("address already in use") while
the port answers for the first, and the two tests' clusters would share
one NATS (seen in CI: a paused "own" server that was not running, and a
registry fed by the other test's processes)."""
import time
import unittest

from natsserver import NatsServer


class OwnPort(unittest.TestCase):
    def test_a_port_taken_by_another_server_is_chosen_again(self):
        with NatsServer() as first:
            second = NatsServer()
            second.port = first.port  # what a free_port() race gives
            try:
                second.start()
                time.sleep(0.5)
                self.assertIsNone(second.proc.poll(), "the second server is not running")
                self.assertNotEqual(second.port, first.port)
                # pausing the second one leaves the first answering, so it
                # is not the first that answers for it
                second.pause()
                try:
                    self.assertTrue(first._ping())
                    self.assertFalse(second._ping())
                finally:
                    second.resume()
            finally:
                second.close()

    def test_a_given_port_that_is_taken_fails(self):
        with NatsServer() as first:
            second = NatsServer(port=first.port)
            try:
                with self.assertRaises(RuntimeError):
                    second.start()
                self.assertIsNone(second.proc)
            finally:
                second.close()


if __name__ == "__main__":
    unittest.main()
