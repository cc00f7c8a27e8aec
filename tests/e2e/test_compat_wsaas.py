# SPDX-License-Identifier: MIT
"""test_compat_wsaas.py — route `protocol: wsaas` (docs/compat.md): a backend
written against seed "Web Socket as a Service"'s contract, not against
wsgate, runs unchanged behind the gateway.

The backend is what ran behind WSAAS: one URL (API_URI) taking POST on a
client's connect ({"ws_uri": ...} and the client's Authorization header;
it answers {"code":"OK"} to accept), PUT with each client message, DELETE
after the close; it tells connections apart by their Authorization header,
pushes with `PUT <ws_uri>` and closes with `DELETE <ws_uri>`, plain HTTP
without any token (the original had none).

- connect -> POST {"ws_uri":"<ws_hostname>/<id>"} with Authorization and
  application/json (wsgate's signature headers extra); messages -> PUTs in
  order with the data as body and Authorization; close -> exactly one
  DELETE; PUT <ws_uri> reaches the client as a text frame; DELETE <ws_uri>
  closes it (1000) and a later PUT is 410 {"code":"NOT_FOUND"}.
- {"code":"NO"} (or a 403) refuses: the client is closed 1008 "refused by
  backend", no PUT goes out, and its one DELETE still does.
- ws_hostname with a path prefix: the push API is served under it.
- with api.auth.jwt configured, PUT/DELETE <ws_uri> need a bearer token
  with the send/disconnect scope; a connection of another route is 404.
- no config file: API_URI, WS_HOSTNAME, WS_TIMEOUT, LOG_LEVEL alone start a
  gateway with a wsaas route at "/" (a POST answered past WS_TIMEOUT is
  tried again); neither config nor API_URI is refused.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import wsgate_test as w


def http(method, url, body=b"", token=None):
    """(status, parsed JSON or raw bytes) of one plain HTTP request."""
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


class WsaasBackend:
    """API_URI on a free loopback port. Records every request; answers POST
    by Authorization: "Bearer no" -> {"code":"NO"}, "Bearer 403" -> 403,
    else {"code":"OK"} (and remembers ws_uri for that Authorization). A PUT
    with "echo:..." pushes it back through PUT ws_uri; "close-me" closes
    through DELETE ws_uri (both after answering, as an app would)."""

    def __init__(self, token=None, slow_auth=None, slow_s=0.0):
        self.slow = (slow_auth, slow_s)  # the first POST with it answers late
        self.lock = threading.Lock()
        self.requests = []  # dicts: method, path, headers, body
        self.uris = {}  # Authorization -> ws_uri
        self.pushes = []  # (kind, status, answer) of the backend's own calls
        self.token = token
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def handle_one(self):
                n = int(self.headers.get("Content-Length", "0"))
                rec = {"method": self.command, "path": self.path, "body": self.rfile.read(n),
                       "headers": {k.lower(): v for k, v in self.headers.items()}}
                with outer.lock:
                    outer.requests.append(rec)
                status, out = outer.answer(rec)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the gateway gave up on this answer (its deadline)
                outer.after(rec)

            do_POST = do_PUT = do_DELETE = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", w.free_port()), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d/websocket" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def answer(self, rec):
        auth = rec["headers"].get("authorization", "")
        if rec["method"] != "POST":
            return 200, b'{"code":"OK"}'
        if auth == "Bearer 403":
            return 403, b"{}"
        if auth == "Bearer no":
            return 200, b'{"code":"NO"}'
        if auth == self.slow[0] and len(self.seen("POST", auth)) == 1:
            time.sleep(self.slow[1])
        with self.lock:
            self.uris[auth] = json.loads(rec["body"])["ws_uri"]
        return 200, b'{"code":"OK"}'

    def after(self, rec):
        if rec["method"] != "PUT":
            return
        uri = self.uris.get(rec["headers"].get("authorization", ""))
        if rec["body"].startswith(b"echo:"):
            res = http("PUT", uri, rec["body"][5:], self.token)
        elif rec["body"] == b"close-me":
            res = http("DELETE", uri, b"", self.token)
        else:
            return
        with self.lock:
            self.pushes.append(res)

    def wait_push(self, timeout=10.0):
        """The answer to the backend's latest own call."""
        w.wait_until(lambda: self.pushes, timeout, what="the backend's push answered")
        with self.lock:
            return self.pushes[-1]

    def seen(self, method=None, auth=None):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r["method"] == method) and
                    (auth is None or r["headers"].get("authorization") == auth)]

    def wait(self, method, auth, n=1, timeout=10.0):
        return w.wait_until(lambda: len(self.seen(method, auth)) >= n and
                            self.seen(method, auth), timeout,
                            what="%d %s for %s at the backend" % (n, method, auth))


# (batch_max above 1 is refused by the config check for this protocol)
FAST = {"max_attempts": 2, "backoff_initial": "100ms", "backoff_max": "200ms"}


class WsaasCompat(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = WsaasBackend()
        self.addCleanup(self.be.stop)
        gw = w.OpenApiGateway(routes=[w.route("/ws", self.be.url, protocol="wsaas",
                                            delivery=FAST)], start=False)
        self._gateways.append(gw)
        self.addCleanup(self._close_gateway, gw)
        self.gw = gw.start()

    def open(self, auth, path="/ws", gw=None):
        gw = gw or self.gw
        ws = self.client(gw.edge_url + path, headers={"Authorization": auth})
        post = self.be.wait("POST", auth)[0]
        return ws, post

    def test_connect_messages_push_and_close(self):
        ws, post = self.open("Bearer alice")
        self.assertEqual(post["path"], "/websocket")
        self.assertEqual(post["headers"]["content-type"], "application/json")
        body = json.loads(post["body"])
        self.assertEqual(list(body), ["ws_uri"])
        prefix = self.gw.api_url + "/"
        self.assertTrue(body["ws_uri"].startswith(prefix), body)
        conn_id = body["ws_uri"][len(prefix):]
        self.assertEqual(post["headers"]["wsgate-connection-id"], conn_id)
        self.assertIn("webhook-signature", post["headers"])  # extra: wsgate signs
        msgs = ["m%d" % i for i in range(8)]
        for m in msgs:
            ws.send_text(m)
        puts = self.be.wait("PUT", "Bearer alice", len(msgs))
        self.assertEqual([p["body"].decode() for p in puts], msgs)  # in order
        self.assertTrue(all(p["path"] == "/websocket" for p in puts))
        ws.send_text("echo:héllo")
        self.assertEqual(ws.recv_text(), "héllo")
        self.assertEqual(self.be.wait_push(), (200, {"code": "OK"}))
        ws.close(1000)
        self.be.wait("DELETE", "Bearer alice")
        time.sleep(0.5)
        dels = self.be.seen("DELETE", "Bearer alice")
        self.assertEqual(len(dels), 1)
        self.assertEqual(dels[0]["body"], b"")
        self.assertEqual(len(self.be.seen("POST", "Bearer alice")), 1)

    def test_backend_closes_then_push_is_gone(self):
        ws, post = self.open("Bearer bob")
        uri = json.loads(post["body"])["ws_uri"]
        ws.send_text("close-me")
        self.assertEqual(ws.wait_closed(), (1000, ""))
        self.be.wait("DELETE", "Bearer bob")
        self.assertEqual(self.be.wait_push(), (200, {"code": "OK"}))
        w.wait_until(lambda: http("PUT", uri, b"late")[0] == 410, 10,
                     what="410 for a closed connection")
        self.assertEqual(http("PUT", uri, b"late"), (410, {"code": "NOT_FOUND"}))
        self.assertEqual(http("DELETE", uri)[0], 410)
        self.assertEqual(len(self.be.seen("DELETE", "Bearer bob")), 1)

    def test_refused_with_code_no(self):
        ws = self.client(self.gw.edge_url + "/ws", headers={"Authorization": "Bearer no"})
        self.assertEqual(ws.wait_closed(15), (1008, "refused by backend"))
        self.be.wait("DELETE", "Bearer no")
        time.sleep(0.3)
        self.assertEqual(self.be.seen("PUT", "Bearer no"), [])
        self.assertEqual(len(self.be.seen("DELETE", "Bearer no")), 1)

    def test_refused_with_403(self):
        ws = self.client(self.gw.edge_url + "/ws", headers={"Authorization": "Bearer 403"})
        self.assertEqual(ws.wait_closed(15), (1008, "refused by backend"))

    def test_binary_message_is_put_raw(self):
        ws, _ = self.open("Bearer bin")
        ws.send_binary(b"\x00\x01\xfe\xff")
        self.assertEqual(self.be.wait("PUT", "Bearer bin")[0]["body"], b"\x00\x01\xfe\xff")


class WsaasPrefixAndAuth(w.GatewayTestCase):
    """ws_hostname with a path; the control API's tokens when configured."""

    def test_prefix_and_bearer_tokens(self):
        be = WsaasBackend()
        self.addCleanup(be.stop)
        gw = w.Gateway(start=False)
        port = gw.api_port
        gw.routes = [w.route("/ws", be.url, protocol="wsaas", delivery=FAST,
                             ws_hostname="http://127.0.0.1:%d/push/v0/" % port),
                     w.route("/native", self.backend().url)]
        gw.write_config()
        self._gateways.append(gw)
        self.addCleanup(self._close_gateway, gw)
        gw.start()
        ws = self.client(gw.edge_url + "/ws", headers={"Authorization": "Bearer carol"})
        uri = json.loads(be.wait("POST", "Bearer carol")[0]["body"])["ws_uri"]
        self.assertTrue(uri.startswith("http://127.0.0.1:%d/push/v0/" % port), uri)
        conn_id = uri.rsplit("/", 1)[1]
        self.assertEqual(http("PUT", uri, b"x")[0], 401)
        self.assertEqual(http("PUT", uri, b"x", gw.api_token("read"))[0], 403)
        self.assertEqual(http("PUT", uri, b"hi", gw.api_token("send")),
                         (200, {"code": "OK"}))
        self.assertEqual(ws.recv_text(), "hi")
        # only under the prefix
        self.assertEqual(http("PUT", gw.api_url + "/" + conn_id, b"x",
                              gw.api_token("send"))[0], 404)
        # a connection of another route is not reachable through ws_uri
        native = self.client(gw.edge_url + "/native")
        api = gw.control()
        others = w.wait_until(lambda: [c["id"] for c in
                                       api.get("/v1/connections").json["items"]
                                       if c["route"] == "/native"], 10,
                              what="the /native connection recorded")
        st, ans = http("PUT", uri.rsplit("/", 1)[0] + "/" + others[0], b"x",
                       gw.api_token("send"))
        self.assertEqual((st, ans), (404, {"code": "NOT_FOUND"}))
        self.assertEqual(http("DELETE", uri, b"", gw.api_token("send"))[0], 403)
        self.assertEqual(http("DELETE", uri, b"", gw.api_token("disconnect")),
                         (200, {"code": "OK"}))
        self.assertEqual(ws.wait_closed(), (1000, ""))


class WsaasEnvOnly(w.GatewayTestCase):
    """No config file: the original's environment variables."""

    def test_env_only_gateway(self):
        # WS_TIMEOUT is each request's deadline: a first POST answered after
        # 4 s (past 1 s) is tried again
        be = WsaasBackend(slow_auth="Bearer dave", slow_s=4.0)
        self.addCleanup(be.stop)
        gw = w.Gateway(config_file=False, start=False, log_level="info")
        api_listen = "127.0.0.1:%d" % gw.api_port
        gw.env.update({
            "API_URI": be.url[len("http://"):],  # the original's form: no scheme
            "WS_HOSTNAME": api_listen,
            "WS_TIMEOUT": "1000",
            "LOG_LEVEL": "DEBUG",
            "WSGATE_EDGE_LISTEN": "127.0.0.1:%d" % gw.edge_port,
            "WSGATE_API_LISTEN": api_listen,
            "WSGATE_STORE": "sqlite://" + gw.db_path,
        })
        gw.log_level = "DEBUG"
        self._gateways.append(gw)
        self.addCleanup(self._close_gateway, gw)
        gw.start()
        self.assertTrue(gw.find_log("wsgate ready"))
        ws = self.client(gw.edge_url + "/", headers={"Authorization": "Bearer dave"})
        posts = be.wait("POST", "Bearer dave", 2)
        self.assertEqual(posts[0]["body"], posts[1]["body"])  # the same connect, again
        self.assertEqual(posts[0]["headers"]["webhook-id"], posts[1]["headers"]["webhook-id"])
        uri = json.loads(posts[0]["body"])["ws_uri"]
        self.assertTrue(uri.startswith("http://%s/" % api_listen), uri)
        ws.send_text("one")
        ws.send_text("echo:two")
        self.assertEqual(ws.recv_text(), "two")
        # a short WS_TIMEOUT may time out a request on a loaded machine: its
        # retry has the same webhook-id (at-least-once), so count each once
        puts, ids = [], set()
        for p in be.wait("PUT", "Bearer dave", 2):
            if p["headers"]["webhook-id"] not in ids:
                ids.add(p["headers"]["webhook-id"])
                puts.append(p["body"])
        self.assertEqual(puts, [b"one", b"echo:two"])
        ws.close(1000)
        be.wait("DELETE", "Bearer dave")

    def test_refused_without_config_or_api_uri(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("WSGATE_") and k not in ("API_URI", "LOG_LEVEL")}
        tmp = w.TempDir()
        self.addCleanup(tmp.cleanup)
        p = subprocess.run([w.WSGATE_BIN, "standalone"], env=env, cwd=tmp.path,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("API_URI", p.stderr)
        env["API_URI"] = "http://127.0.0.1:1/x"
        env["WS_TIMEOUT"] = "soon"
        p = subprocess.run([w.WSGATE_BIN], env=env, cwd=tmp.path,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("WS_TIMEOUT", p.stderr)


if __name__ == "__main__":
    w.main()
