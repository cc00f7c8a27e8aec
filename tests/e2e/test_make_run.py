# SPDX-License-Identifier: MIT
"""test_make_run.py — what `make run` (scripts/run-example.sh) leaves behind.

- SIGTERM to the script (what make sends its recipe when it is stopped)
  stops wsgate standalone and the example backend too: no orphan keeps the
  ports and the queue file (the script used to die alone);
- a second standalone on the same store cannot take the queue file, and its
  log names the file and the PID and command of the process holding it.

Env: WSGATE_BIN, WSGATE_SOURCE_DIR, PYTHONPATH=tests/lib.
"""

import json
import os
import signal
import subprocess

import wsgate_test as w

SRC = os.environ.get("WSGATE_SOURCE_DIR", ".")


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


class MakeRun(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)

    def test_sigterm_stops_everything(self):
        edge, api, backend = w.free_port(), w.free_port(), w.free_port()
        with open(os.path.join(SRC, "examples", "standalone.yaml")) as f:
            text = f.read()
        text = (text.replace("127.0.0.1:8080", "127.0.0.1:%d" % edge)
                .replace("127.0.0.1:8081", "127.0.0.1:%d" % api)
                .replace("127.0.0.1:9000", "127.0.0.1:%d" % backend)
                .replace("sqlite://./wsgate-example.db", "sqlite://" + self.tmp.join("ex.db"))
                .replace("  listen: 127.0.0.1:%d\n" % edge,
                         "  listen: 127.0.0.1:%d\n  shutdown_grace: 2s\n" % edge))
        cfg = self.tmp.write("example.yaml", text)
        log = open(self.tmp.join("run.log"), "w+")
        self.addCleanup(log.close)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
        p = subprocess.Popen(["bash", os.path.join(SRC, "scripts", "run-example.sh"),
                              w.WSGATE_BIN, cfg], cwd=SRC, env=env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        kids = []

        def cleanup():
            for pid in kids + [p.pid]:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
            p.wait()
        self.addCleanup(cleanup)
        w.wait_until(lambda: (w.port_open(api) and w.port_open(backend)) or p.poll() is not None,
                     60, 0.1, "wsgate and the example backend listening")
        if p.poll() is not None:
            log.seek(0)
            self.fail("run-example.sh ended early:\n" + log.read())
        kids[:] = w.descendants(p.pid)
        self.assertGreaterEqual(len(kids), 2, kids)
        p.send_signal(signal.SIGTERM)  # the script alone, as make does
        p.wait(timeout=w.scaled(60))
        w.wait_until(lambda: not any(alive(k) for k in kids), 30, 0.1,
                     "every process of make run gone")
        self.assertFalse(w.port_open(api) or w.port_open(edge) or w.port_open(backend))

    def test_queue_in_use_names_file_and_pid(self):
        gw = self.gateway([w.route("/chat", "http://127.0.0.1:9/events")])
        cfg = json.loads(json.dumps(gw.config))
        cfg["edge"]["listen"] = "127.0.0.1:%d" % w.free_port()
        cfg["api"]["listen"] = "127.0.0.1:%d" % w.free_port()
        path = self.tmp.write("second.yaml", json.dumps(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
        env.update(LOG_FORMAT="text", LOG_LEVEL="info")
        r = w.run_wsgate(["standalone", "--config", path], env=env, timeout=60,
                         universal_newlines=True)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        out = r.stdout + r.stderr
        self.assertIn("queue_file=%s" % gw.queue_path, out)
        self.assertIn("pid=%d" % gw.pid, out)
        self.assertIn("standalone", out.split("pid=%d" % gw.pid, 1)[1].splitlines()[0])
        self.assertTrue(gw.running())


if __name__ == "__main__":
    w.main()
