# SPDX-License-Identifier: MIT
"""test_cluster_rebalance.py — a joining member takes its share of the
partitions without stalling anyone's events (cluster mode: nats-server,
PostgreSQL, two edges, two APIs, two dispatchers; the Cluster of
test_cluster_basic.py, with the default cluster.ack_wait, so lease rounds
come every 15 s).

At start the first process of each consumer group (registry: the API
processes; dispatch: the dispatchers) holds all 16 partitions; at its
first lease round it gives the ones above its share (8..15) back to the
other. Before, a given-back partition was not fetched by anyone for one to
two lease rounds (15-30 s): a subscribe through the API answered 504
after 10 s and a client's message reached the backend that much later.

Checked here, from cluster start until both groups are split 8/8 and for
three rounds of work after: on a connection of a partition that is given
back and on one that is kept, a PUT and a DELETE of a channel membership
(through either API) answer 204, and every message the client sends
reaches the backend (each wait bounded by 10 s, the API's own bound).

Env: WSGATE_BIN, PYTHONPATH=tests/lib, nats-server and PostgreSQL
(scripts/deps.sh).
"""

import time

import test_cluster_basic as cb
from test_cluster_faults import lease_holders
import wsgate_test as w

PARTITIONS = 16  # cluster.partitions default


def partition(conn_id):
    """The bus's partition of a connection: FNV-1a 64 of its id (common/hash.h)."""
    h = 1469598103934665603
    for b in conn_id.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % PARTITIONS


class RebalanceTest(cb.ClusterTestCase):

    def pick_connections(self):
        """(ws, id) of a connection in a partition given back (8..15) and of
        one in a partition kept (0..7)."""
        given = kept = None
        for _ in range(64):
            ws, cid = self.client(0)
            if partition(cid) >= PARTITIONS // 2 and given is None:
                given = (ws, cid)
            elif partition(cid) < PARTITIONS // 2 and kept is None:
                kept = (ws, cid)
            if given and kept:
                return given, kept
        self.fail("64 connections, none in one half of the partitions")

    def split(self):
        return all(sorted(lease_holders(self.cl, g).values()) == [8, 8]
                   for g in ("registry", "dispatch"))

    def work(self, ws, cid, i):
        path = "/v1/channels/room9/connections/" + cb.q(cid)
        r = self.cl.api(i % 2).put(path)
        self.assertEqual(r.status, 204, "PUT %d on partition %d: %s" % (i, partition(cid), r.body))
        r = self.cl.api((i + 1) % 2).delete(path)
        self.assertEqual(r.status, 204,
                         "DELETE %d on partition %d: %s" % (i, partition(cid), r.body))
        word = "m%d" % i
        ws.send_text(word)
        self.be.wait_event(lambda e: e["type"] == "message" and e["connection_id"] == cid and
                           e.get("data") == word, 10)

    def test_joining_member_takes_its_share_without_stalling_events(self):
        conns = self.pick_connections()
        deadline = time.monotonic() + w.scaled(120)
        i, after = 0, 0
        while after < 3:
            for ws, cid in conns:
                i += 1
                self.work(ws, cid, i)
            if self.split():
                after += 1
            self.assertLess(time.monotonic(), deadline,
                            "the partitions were never split 8/8: %s %s"
                            % (lease_holders(self.cl, "registry"),
                               lease_holders(self.cl, "dispatch")))


if __name__ == "__main__":
    w.main()
