# SPDX-License-Identifier: MIT
"""test_sdk_chat_browser.py — two people chat in real browsers through
wsgate and the C chat example (sdk-c/examples/chat): two headless Chromium
processes (Debian's chromium, fresh profiles, flags of wsgate_clients.py)
load the example's page from the example backend, and the test drives each
page through the DevTools protocol (--remote-debugging-port, a WebSocket
spoken by the test library's own client) calling the page's chat.connect()
and chat.send(). The pages connect to the gateway with the subprotocol
"bearer.<token>" (the 101 must name it, or Chromium drops the connection),
join room x, chat both ways, list the room with /who, and alice kicks bob:
bob's page sees close code 4001.

Chromium missing fails the test (scripts/deps.sh installs it).
Env: WSGATE_BIN, CHAT_BIN, PYTHONPATH=tests/lib:tests/sdk.
"""

import json
import os
import urllib.request

import wsgate_test as w
from chat_fixture import start_chat
from wsgate_clients import Chromium


class DevToolsPage:
    """The one page of a Chromium started with --remote-debugging-port=0."""

    def __init__(self, profile):
        port_file = os.path.join(profile, "DevToolsActivePort")
        w.wait_until(lambda: os.path.exists(port_file) and open(port_file).read().strip(),
                     60, 0.1, "DevToolsActivePort")
        port = int(open(port_file).read().split()[0])

        def page_target():
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                pages = [t for t in json.loads(r.read()) if t.get("type") == "page"]
            return pages[0] if pages else None

        target = w.wait_until(page_target, 30, 0.1, "a page target")
        self.ws = w.WsClient.connect(target["webSocketDebuggerUrl"])
        self.next_id = 0

    def eval(self, expr, timeout=20):
        """The value of a JavaScript expression in the page (promises awaited)."""
        self.next_id += 1
        self.ws.send_text(json.dumps({"id": self.next_id, "method": "Runtime.evaluate",
                                      "params": {"expression": expr, "returnByValue": True,
                                                 "awaitPromise": True}}))
        for _ in range(1000):
            m = self.ws.recv_json(timeout)
            if m.get("id") == self.next_id:
                res = m.get("result", {})
                if "exceptionDetails" in res:
                    raise AssertionError("page threw: %r" % res["exceptionDetails"])
                return res.get("result", {}).get("value")
        raise AssertionError("no DevTools answer")

    def wait(self, expr, what, timeout=30):
        return w.wait_until(lambda: self.eval(expr), timeout, 0.1, what)

    def close(self):
        self.ws.abort()


class ChatInBrowsers(w.GatewayTestCase):
    def browser(self, chat, name):
        tmp = w.TempDir()
        self.addCleanup(tmp.cleanup)
        chrome = Chromium(chat.url + "/", tmp.path,
                          ["--remote-debugging-port=0", "--remote-allow-origins=*"])
        self.addCleanup(chrome.stop)
        self.chromes.append(chrome)
        page = DevToolsPage(os.path.join(tmp.path, "chromium-profile"))
        self.addCleanup(page.close)
        page.wait("typeof chat === 'object' && document.readyState === 'complete'",
                  name + "'s page loaded")
        return page

    def log_has(self, page, line):
        return "chat.log.includes(%s)" % json.dumps(line)

    def test_two_browsers_chat_and_kick(self):
        self.chromes = []
        chat = start_chat(self)
        try:
            alice = self.browser(chat, "alice")
            bob = self.browser(chat, "bob")
            alice.eval('chat.connect("alice", "x")')
            bob.eval('chat.connect("bob", "x")')
            for page, who in ((alice, "alice"), (bob, "bob")):
                page.wait(self.log_has(page, "joined x"), who + " joined x")
                self.assertTrue(page.eval('chat.ws.protocol.startsWith("bearer.")'),
                                "the 101 named the bearer subprotocol")
                self.assertEqual(page.eval("chat.status"), "open")

            self.assertTrue(alice.eval('chat.send("hi bob")'))
            bob.wait(self.log_has(bob, "alice: hi bob"), "bob hears alice")
            alice.wait(self.log_has(alice, "alice: hi bob"), "alice hears herself")
            self.assertTrue(bob.eval('chat.send("hello alice")'))
            alice.wait(self.log_has(alice, "bob: hello alice"), "alice hears bob")

            alice.eval('chat.send("/who")')
            who = alice.wait("chat.log.find(l => l.startsWith('in the room: '))", "/who")
            self.assertEqual(sorted(who[len("in the room: "):].split(", ")), ["alice", "bob"])

            alice.eval('chat.send("/kick bob")')
            self.assertEqual(bob.wait("chat.closeCode", "bob's page closed"), 4001)
            self.assertEqual(bob.eval("chat.status"), "closed 4001 kicked by alice")
            self.assertEqual(alice.eval("chat.status"), "open")
        except AssertionError:
            for c in self.chromes:
                print("--- chromium log ---\n" + c.log_tail())
            raise


if __name__ == "__main__":
    w.main()
