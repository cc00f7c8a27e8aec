#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""registry_disconnects.py — how long the cluster's registry takes to record
a mass disconnect (issue: 18,000 disconnects in under 5 s).

Starts a cluster through tests/lib (nats-server, PostgreSQL, 2 edges, 2 APIs,
no dispatcher: the dispatch group's events wait in the stream and cost no
CPU), opens N connections with bench's wsload (one process, spread over both
edges and 127.0.0.1-4), waits until the store lists all N, then kills wsload
(SIGKILL: the kernel closes every socket at once) and measures, from the kill:
  - edges_s: until both edges hold no connection (disconnects published);
  - registry_s: until the store's connections table is empty.
Prints one JSON line. Nothing asserts on time.

  WSGATE_BIN=build/wsgate python3 bench/registry_disconnects.py [N] [build dir]
"""

import json
import os
import resource
import signal
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
sys.path.insert(0, os.path.join(root, "tests", "lib"))
sys.path.insert(0, os.path.join(root, "tests", "integration"))
os.environ.setdefault("WSGATE_SOURCE_DIR", root)
import wsgate_test as w  # noqa: E402
from test_cluster_basic import Cluster  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 18000
    build = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "build")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the edges
    be = w.Backend()
    cl = Cluster([w.route("/chat", be.url)], n_edges=2, n_apis=2, n_dispatchers=0,
                 config={"log": {"level": "warn"}, "edge": {"heartbeat_interval": "1s"},
                         "cluster": {"edge_timeout": "60s"}})
    load = None
    try:
        cl.log_level = "info"  # the ready line the nodes are waited for
        cl.start()
        urls = []
        for i in range(2):
            urls += ["--url", cl.edge_url(i)]
        ready = cl.tmp.join("ready")
        load = subprocess.Popen(
            [os.path.join(build, "bench", "wsload")] + urls +
            ["--conns", str(n), "--inflight", "200", "--mode", "idle", "--duration", "100000",
             "--sources", "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4", "--ready-file", ready],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        w.wait_until(lambda: os.path.exists(ready) and open(ready).read().strip(), 600, 0.2,
                     "wsload connected")
        opened = int(open(ready).read().strip())
        count = lambda: int(cl.pg.psql("SELECT count(*) FROM connections").strip() or 0)
        t_rows = time.monotonic()
        w.wait_until(lambda: count() >= opened, 600, 0.2, "%d rows" % opened)
        connect_rows_s = time.monotonic() - t_rows
        time.sleep(2)
        t0 = time.monotonic()
        load.send_signal(signal.SIGKILL)
        load.wait()
        edges_s = None
        while True:
            now = time.monotonic() - t0
            if edges_s is None and all(
                    metric_of(cl, e, "wsgate_connections") == 0 for e in cl.edges):
                edges_s = now
            left = count()
            if left == 0 or now > 600:
                break
            time.sleep(0.05)
        print(json.dumps({"connections": opened, "edges_s": round(edges_s or -1, 2),
                          "registry_s": round(time.monotonic() - t0, 2), "rows_left": left,
                          "rows_after_connect_s": round(connect_rows_s, 2),
                          "load": os.getloadavg()}))
    finally:
        if load and load.poll() is None:
            load.kill()
            load.wait()
        cl.close()
        be.stop()


def metric_of(cl, node, name):
    try:
        status, _, body = w.http_request("http://127.0.0.1:%d/metrics" % node.ops_port,
                                         timeout=5)
    except OSError:  # busy closing sockets: asked again next round
        return None
    for line in body.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == name:
            return float(parts[1])
    return None


if __name__ == "__main__":
    main()
