# SPDX-License-Identifier: MIT
"""test_cluster_nats_kill.py — the long hard faults of nats-server, through
the real binaries (the Cluster of tests/integration/test_cluster_basic.py:
a real nats-server with JetStream, a real PostgreSQL, 2 edges, 2 APIs, 2
dispatchers on free loopback ports; 20 clients, 10 per edge, sending 100
frames/s per edge). Labels "faults" and "long": `make test-faults`, not
`make test` (the short ones are in tests/integration/test_cluster_hardkill.py).

- kill -9 of nats-server, down 35 s: longer than the default
  cluster.ack_wait (30 s, which this test checks reached JetStream) and the
  5 s PubAck timeout, so every client that sends meanwhile is closed 1013;
  then a start on the same port and JetStream store dir. The checks of
  NatsOutageMixin.restart_under_load (test_cluster_outages.py): every
  delivered frame in order per connection, a prefix of what was sent;
  duplicates only with the same ids; no edge_lost; every role reconnects
  by itself; new connections on both edges get commands and webhooks.

Every process is stopped by PID; every wait is bounded.
"""

import json

import wsgate_test as w
from test_cluster_basic import ClusterTestCase
from test_cluster_outages import NatsOutageMixin


class NatsDownPastDefaultAckWaitTest(NatsOutageMixin, ClusterTestCase):
    def interrupt_nats(self):
        self.cl.nats.kill9()

    def test_nats_kill9_down_35s(self):
        consumer = json.loads(self.cl.nats.request(
            "$JS.API.CONSUMER.INFO.WSGATE_EVENTS.idispatch_0"))
        self.assertEqual(consumer["config"]["ack_wait"], 30 * 10**9, consumer)
        closed = self.restart_under_load(35)
        self.assertEqual(closed, 2 * self.per_edge, "a client sending into 35 s without NATS "
                         "was not closed 1013")


if __name__ == "__main__":
    w.main()
