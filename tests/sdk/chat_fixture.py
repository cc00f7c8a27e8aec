# SPDX-License-Identifier: MIT
"""chat_fixture.py — starts the chat example (sdk-c/examples/chat) with a
real gateway for test_sdk_chat.py and test_sdk_chat_browser.py.

start_chat(tc) starts `wsgate standalone` with a /chat route whose backend
is the example, then the example itself (CHAT_BIN) on a free port, and
registers cleanups that stop the example by PID (it must exit 0 on SIGTERM)
and fail the test on anything it wrote to stderr past its start line.
"""

import json
import os
import subprocess
import time
import urllib.request

import wsgate_test as w

CHAT_BIN = os.environ.get("CHAT_BIN", "")
CLIENT_SECRET = w.DEFAULT_CLIENT_SECRET


class Chat:
    def __init__(self, gw, port, proc, err):
        self.gw, self.port, self.proc, self.err = gw, port, proc, err
        self.url = "http://127.0.0.1:%d" % port

    def token(self, user):
        with urllib.request.urlopen(self.url + "/token?user=" + user, timeout=5) as r:
            return json.loads(r.read())


def start_chat(tc):
    tc.assertTrue(os.access(CHAT_BIN, os.X_OK), "CHAT_BIN not built: %r" % CHAT_BIN)
    port = w.free_port()
    gw = tc.gateway([w.route("/chat", "http://127.0.0.1:%d/events" % port,
                             jwt={"alg": "HS256", "secret": CLIENT_SECRET})])
    env = dict(os.environ, CHAT_PORT=str(port), CHAT_API=gw.api_url,
               CHAT_API_SECRET=gw.api_secret, CHAT_WEBHOOK_SECRET=w.DEFAULT_WHSEC,
               CHAT_CLIENT_SECRET=CLIENT_SECRET, CHAT_EDGE=gw.edge_url + "/chat")
    err = open(gw.tmp.join("chat.stderr"), "w+")
    proc = subprocess.Popen([CHAT_BIN], env=env, stdout=subprocess.DEVNULL, stderr=err)

    def stop():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=w.scaled(10))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                tc.fail("the chat example did not stop on SIGTERM")
        err.seek(0)
        text = err.read()
        tc.assertEqual(proc.returncode, 0, "chat example exit %s: %s" % (proc.returncode, text))
        extra = [l for l in text.splitlines() if not l.startswith("chat: http://")]
        tc.assertEqual(extra, [], "chat example wrote to stderr")
        err.close()

    tc.addCleanup(stop)
    w.wait_until(lambda: w.port_open(port) or proc.poll() is not None, 10, 0.05, "chat port")
    tc.assertIsNone(proc.poll(), "the chat example exited at start")
    return Chat(gw, port, proc, err)
