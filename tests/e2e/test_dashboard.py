# SPDX-License-Identifier: MIT
"""test_dashboard.py — the operator dashboard (GET /dashboard, GET /v1/stats)
and `wsgate top`, through the binary, with a real backend and real clients.

- Debian's headless Chromium opens /dashboard with an admin token (given in
  the address fragment, as docs/dashboard.md says) and the test reads the
  live page over the DevTools protocol: a WebSocket client connecting while
  the page is open appears in the connection count and the route/edge table,
  its connect shows up in the live tail, its messages in the tail as
  webhooks; a message the backend refuses becomes a dead letter with a
  replay button, and clicking it redelivers the event to the backend (same
  event id) and empties the dead-letter list;
- the page with a read-only token shows the API's refusal and no numbers;
  GET /v1/stats answers 401 problem+json without a token and 403 for a
  token without the admin scope (the page itself loads without one);
- `wsgate top --once` prints the connection count, the route, the message
  rate in while a client sends, and refuses a read-only token (exit 1);
- `wsgate top` on a terminal (a pty) redraws every second and exits 0 on
  `q`, and on Ctrl-C.

Chromium missing fails the test (scripts/deps.sh installs it), no skip.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import json
import os
import pty
import re
import select
import subprocess
import threading
import time
import urllib.request

import wsgate_test as w
from wsgate_clients import Chromium
from wsgate_ws import WsClient


class DevTools:
    """The DevTools protocol of a Chromium started with
    --remote-debugging-port=0: evaluates JavaScript in its page."""

    def __init__(self, chrome, profile):
        port_file = os.path.join(profile, "DevToolsActivePort")
        port = w.wait_until(lambda: _read_first_line(port_file), 60, 0.1,
                            "Chromium's DevToolsActivePort")
        base = "http://127.0.0.1:%s" % port
        page = w.wait_until(lambda: _dashboard_target(base), 30, 0.1, "the dashboard page")
        self.ws = WsClient.connect(page["webSocketDebuggerUrl"])
        self.next_id = 0

    def eval(self, expr):
        self.next_id += 1
        self.ws.send_text(json.dumps({"id": self.next_id, "method": "Runtime.evaluate",
                                      "params": {"expression": expr, "returnByValue": True}}))
        while True:
            m = self.ws.recv_json(30)
            if m.get("id") == self.next_id:
                res = m["result"]
                if "exceptionDetails" in res:
                    raise AssertionError("page error: %r" % res["exceptionDetails"])
                return res["result"].get("value")

    def text(self, element_id):
        return self.eval("(document.getElementById(%s) || {}).textContent" % json.dumps(element_id))

    def wait_text(self, element_id, pred, what, timeout=30):
        return w.wait_until(lambda: (lambda t: t if t is not None and pred(t) else None)(
            self.text(element_id)), timeout, 0.2, what)


def _read_first_line(path):
    try:
        with open(path) as f:
            line = f.readline().strip()
        return line or None
    except OSError:
        return None


def _dashboard_target(base):
    try:
        with urllib.request.urlopen(base + "/json/list", timeout=5) as r:
            pages = json.loads(r.read())
    except OSError:
        return None
    return next((p for p in pages if p.get("type") == "page" and "/dashboard" in p.get("url", "")),
                None)


def top(gw, *args, token=None, env_token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSGATE_")}
    if env_token:
        env["WSGATE_TOKEN"] = env_token
    cmd = ["top", "--api", gw.api_url] + list(args) + (["--token", token] if token else [])
    return w.run_wsgate(cmd, timeout=60, text=True, env=env, stdin=subprocess.DEVNULL)


def top_on_a_terminal(gw, key, seconds=2.5):
    """`wsgate top` in a pty for `seconds`, then `key` typed; returns (exit
    status, output). The child is killed if it does not exit."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing but exec
        os.execv(w.WSGATE_BIN, ["wsgate", "top", "--api", gw.api_url, "--token", gw.api_token()])
    out, status = b"", None
    try:
        end, typed = time.monotonic() + w.scaled(seconds), False
        stop_by = end + w.scaled(10)
        while time.monotonic() < stop_by:
            if not typed and time.monotonic() >= end:
                os.write(fd, key)
                typed = True
            if typed:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                status = None
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:  # the child closed the pty
                    pass
    finally:
        if status is None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
    return status, out.decode("utf-8", "replace")


class Dashboard(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.be.handler = lambda req: (w.Response(422) if any(
            e.get("data") == "dead-me" for e in req.events()) and self.refuse else None)
        self.refuse = True
        self.gw = self.gateway([w.route("/chat", self.be.url, delivery={"max_attempts": 1})])
        self.tmp = w.TempDir()
        self.addCleanup(self.tmp.cleanup)

    def open_page(self, token, devtools=True):
        flags = ["--remote-debugging-port=0", "--remote-allow-origins=*"] if devtools else []
        chrome = Chromium(self.gw.api_url + "/dashboard#token=" + token, self.tmp.path, flags)
        self.addCleanup(chrome.stop)
        try:
            return DevTools(chrome, os.path.join(self.tmp.path, "chromium-profile"))
        except AssertionError:
            print("--- chromium log ---\n" + chrome.log_tail())
            raise

    def test_page_shows_live_connections_tail_and_replays(self):
        page = self.open_page(self.gw.api_token("admin"))
        page.wait_text("status", lambda t: t.startswith("live"), "the page polling")
        self.assertEqual(page.text("conn-total"), "0")
        ws = self.client(self.gw.edge_url + "/chat")
        cid = self.be.wait_event(lambda e: e["type"] == "connect")["connection_id"]
        # the connection appears: count, route/edge table, and the live tail
        page.wait_text("conn-total", lambda t: t == "1", "the connection count 1")
        self.assertIn("/chat", page.text("routes"))
        connect_line = re.compile(r"connect\s+conn=%s route=/chat" % re.escape(cid))
        page.wait_text("tail", connect_line.search, "the connect in the live tail")
        ws.send_text("hello dashboard")
        page.wait_text("tail", lambda t: "message" in t and "HTTP 200" in t,
                       "the message's webhook in the live tail")
        # a refused message dead-letters; the page's replay button redelivers it
        ws.send_text("dead-me")
        dead = w.wait_until(lambda: self.gw.control().dead_letters().json["items"], 20,
                            what="a dead letter")[0]
        page.wait_text("dead", lambda t: dead["id"] in t, "the dead letter on the page")
        page.wait_text("wh-dead", lambda t: t == "1", "dead-lettered count 1")
        self.refuse = False
        button = '#dead button[data-id="%s"]' % dead["id"]
        clicked = page.eval("(() => { const b = document.querySelector(%s);"
                            " if (!b) return false; b.click(); return true; })()"
                            % json.dumps(button))
        self.assertTrue(clicked, "no replay button for %s" % dead["id"])
        page.wait_text("dead-msg", lambda t: t == "replayed " + dead["id"], "the replay answer")
        ok = w.wait_until(lambda: [e for e in self.be.events(answered_2xx=True)
                                   if e.get("id") == dead["id"]], 20, what="the replayed event")[0]
        self.assertEqual(ok["data"], "dead-me")
        self.assertEqual(ok["connection_id"], cid)
        w.wait_until(lambda: self.gw.control().dead_letters().json["items"] == [], 20,
                     what="the dead letter gone")
        page.wait_text("dead", lambda t: dead["id"] not in t, "the dead letter gone from the page")
        ws.close()
        page.wait_text("conn-total", lambda t: t == "0", "the connection count back to 0")

    def test_non_admin_token_is_refused(self):
        anon = w.ControlApi(self.gw.api_url)
        r = anon.get("/dashboard")  # the page itself needs no token
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"), r.headers)
        r = anon.get("/v1/stats")
        self.assertEqual(r.status, 401, r)
        self.assertTrue(r.headers["content-type"].startswith("application/problem+json"))
        for scope in ("read", "send publish subscribe disconnect read"):
            r = anon.get("/v1/stats", token=self.gw.api_token(scope))
            self.assertEqual(r.status, 403, r)
            self.assertEqual(r.json["detail"], "this token lacks the 'admin' scope")
        r = anon.get("/v1/stats?events_after=-1", token=self.gw.api_token())
        self.assertEqual(r.status, 400, r)
        page = self.open_page(self.gw.api_token("read"))
        page.wait_text("login-error", lambda t: "lacks the 'admin' scope" in t, "the refusal")
        self.assertTrue(page.eval("document.getElementById('dash').hidden"))
        self.assertIsNone(page.eval("sessionStorage.getItem('wsgate-token')"))

    def test_top_once(self):
        ws = self.client(self.gw.edge_url + "/chat")
        self.be.wait_event(lambda e: e["type"] == "connect")
        stop = threading.Event()

        def sender():
            i = 0
            while not stop.is_set():
                ws.send_text("m%d" % i)
                i += 1
                time.sleep(0.02)

        t = threading.Thread(target=sender)
        t.start()
        try:
            r = top(self.gw, "--once", env_token=self.gw.api_token())
        finally:
            stop.set()
            t.join()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"connections\s+1 total \(all edges\), 1 on this process")
        self.assertRegex(r.stdout, r"\n/chat\s+\S+\s+1\n")
        rate_in = float(re.search(r"rates /s\s+in ([0-9.]+)", r.stdout).group(1))
        self.assertGreater(rate_in, 0, r.stdout)
        self.assertNotIn("\033[", r.stdout)  # --once prints no escapes
        refused = top(self.gw, "--once", token=self.gw.api_token("read"))
        self.assertEqual(refused.returncode, 1)
        self.assertIn("403", refused.stderr)
        self.assertIn("lacks the 'admin' scope", refused.stderr)
        self.assertEqual(top(self.gw, "--once").returncode, 2)  # no token at all

    def test_top_on_a_terminal_quits_on_q_and_ctrl_c(self):
        self.client(self.gw.edge_url + "/chat")
        for key in (b"q", b"\x03"):
            status, out = top_on_a_terminal(self.gw, key)
            self.assertIsNotNone(status, "top did not exit on %r:\n%s" % (key, out[-2000:]))
            self.assertTrue(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
                            (key, status, out[-2000:]))
            self.assertGreaterEqual(out.count("\033[H\033[2J"), 2, out[-2000:])  # redrawn
            self.assertRegex(out, r"connections\s+1 total")


if __name__ == "__main__":
    w.main()
