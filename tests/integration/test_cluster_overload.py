# SPDX-License-Identifier: MIT
"""test_cluster_overload.py — overload slows clients down and never
disconnects them, in cluster mode: the run of tests/e2e/test_overload.py
(100 clients writing 64-byte frames unthrottled, a slow backend, every
frame delivered in order, nobody closed, RSS bounded) against a real
nats-server (JetStream) and PostgreSQL with one edge, one control API and
one dispatcher (Cluster of test_cluster_basic.py).

There the edge's budget is its share of the NATS bus's capacity (PubAcks
outstanding, docs/bus-nats.md): past it the edge parks the frame it read
and stops reading, instead of answering 1013 as it did when the bus said
WSG_EFULL. The edge process serves no /metrics, so the overload is proven
by its "edge overloaded" warnings. Before the fix clients were closed with
1013 (the pending-PubAck bound, or PubAck timeouts once the window behind
it grew past pub_timeout).

Env: WSGATE_BIN, PYTHONPATH=tests/lib, WSGATE_SOURCE_DIR.
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

import wsgate_test as w  # noqa: E402
from test_cluster_basic import Cluster  # noqa: E402
from test_overload import Overload, SlowBackend, overload_route  # noqa: E402

# The cluster delivers a few thousand webhooks a second on this 2-core
# machine (docs/performance.md): fewer frames per client keep the drain
# within the run's bound.
MAX_FRAMES = 3000
STALL_S = 2.0
# The drain's bound (x3 under ASan: 360 s, inside ctest's 600 s, so a stuck
# drain fails with its report and the processes' logs). It takes ~25 s
# under ASan when alone on this machine.
DRAIN_S = 120.0


class ClusterOverload(unittest.TestCase):
    def setUp(self):
        w.require_binary(self)
        self.be = SlowBackend()
        self.addCleanup(self.be.stop)
        self.cl = Cluster([overload_route(self.be.url)], n_edges=1, n_apis=1, n_dispatchers=1)
        self.addCleanup(self.cl.close)
        self.cl.start()

    def tearDown(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is not None and any(t is self for t, _ in result.errors + result.failures):
            for n in self.cl.nodes():
                sys.stderr.write("\n--- %s ---\n%s\n" % (n.name, n.tail(60)))

    def test_overload_slows_clients_and_closes_none(self):
        edge = self.cl.edges[0]

        def overload_warnings():
            return sum(1 for ln in edge.text().splitlines()
                       if '"edge overloaded' in ln and '"level":"warn"' in ln)

        nats_pid = self.cl.nats.proc.pid
        self.addCleanup(os.kill, nats_pid, signal.SIGCONT)

        def stall_nats():
            # JetStream stops answering for STALL_S, well within the PubAck
            # timeout (5 s): the bus is slow, not unreachable, so nobody may
            # be closed; meanwhile the edge must hold its clients back
            time.sleep(1)
            os.kill(nats_pid, signal.SIGSTOP)
            time.sleep(STALL_S)
            os.kill(nats_pid, signal.SIGCONT)

        pids = {n.name: n.pid for n in self.cl.nodes()}
        Overload(self, self.be, [self.cl.edge_url(0, path="")], pids, overload_warnings,
                 max_frames=MAX_FRAMES, during_send=stall_nats, drain_s=DRAIN_S).run()
        for n in self.cl.nodes():
            self.assertTrue(n.running(), "%s exited:\n%s" % (n.name, n.tail()))
        self.assertNotIn("client closed: event not durable", edge.text())


if __name__ == "__main__":
    w.main()
