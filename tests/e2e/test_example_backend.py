# SPDX-License-Identifier: MIT
"""test_example_backend.py — examples/backend.py, the backend `make run`
starts, behind a real gateway with examples/standalone.yaml's webhook secret:

- a text message comes back as "echo: <text>";
- a binary frame comes back as a binary frame with the same bytes
  (it answered nothing to binary frames before);
- a webhook signed with another secret is answered 401 and the backend says
  why on stderr.

Env: WSGATE_BIN, WSGATE_SOURCE_DIR, PYTHONPATH=tests/lib.
"""

import os
import signal
import subprocess
import sys

import wsgate_test as w

SRC = os.environ.get("WSGATE_SOURCE_DIR", ".")
EXAMPLE_WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # examples/standalone.yaml


class ExampleBackend(w.GatewayTestCase):
    def start_backend(self):
        port = w.free_port()
        self.errlog = open(self.tmpdir("backend.err"), "w+")
        p = subprocess.Popen([sys.executable, os.path.join(SRC, "examples", "backend.py"),
                              str(port)], stdout=subprocess.DEVNULL, stderr=self.errlog,
                             env={k: v for k, v in os.environ.items() if k != "WEBHOOK_SECRET"})
        self.addCleanup(self.stop, p)
        w.wait_until(lambda: w.port_open(port) or p.poll() is not None, 15, 0.05,
                     "the example backend")
        self.assertIsNone(p.poll(), "the example backend exited")
        return "http://127.0.0.1:%d/events" % port

    def tmpdir(self, name):
        if not hasattr(self, "tmp"):
            self.tmp = w.TempDir()
            self.addCleanup(self.tmp.cleanup)
        return self.tmp.join(name)

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.errlog.close()

    def test_echoes_text_and_binary(self):
        url = self.start_backend()
        gw = self.gateway([w.route("/chat", url, secret=EXAMPLE_WHSEC)])
        ws = self.client(gw.edge_url + "/chat")
        ws.send_text("hello")
        self.assertEqual(ws.recv(), (w.OP_TEXT, "echo: hello"))
        blob = bytes([0, 1, 2, 0xfe, 0xff]) + b"\x80" * 40
        ws.send_binary(blob)
        self.assertEqual(ws.recv(), (w.OP_BINARY, blob))

    def test_wrong_secret_is_401_and_said(self):
        url = self.start_backend()
        other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
        gw = self.gateway([w.route("/chat", url, secret=other, delivery={"max_attempts": 1})])
        api = gw.control()
        ws = self.client(gw.edge_url + "/chat")
        ws.send_text("hello")
        items = w.wait_until(lambda: api.dead_letters().json["items"], 20, what="dead letters")
        self.assertEqual(items[0]["last_status"], 401)
        w.wait_until(lambda: self.errlog.seek(0) == 0 and "WEBHOOK_SECRET" in self.errlog.read(),
                     10, what="the backend's explanation")


if __name__ == "__main__":
    w.main()
