# SPDX-License-Identifier: MIT
"""test_compat_aws.py — route `protocol: aws` (docs/compat.md): a backend
written against AWS API Gateway WebSocket APIs, not against wsgate, runs
unchanged behind the gateway.

The backend (tests/e2e/compat_aws/backend.mjs) is a Lambda-style handler
behind a small Node HTTP server: it routes on requestContext.routeKey and
answers through the @connections API with the AWS SDK for JavaScript v3
(@aws-sdk/client-apigatewaymanagementapi, installed by npm into
tests/e2e/compat_aws/node_modules), its endpoint built from the event's
domainName and stage, signed (SigV4) with the route's access key.

- $connect carries AWS's fields (requestContext, headers, query, identity,
  authorizer from the verified token); a custom route key picked by
  route_selection_expression reaches the handler, whose PostToConnection
  reaches the client; GetConnection describes it.
- $default answers go back to the client (route_response: true), text
  and binary (isBase64Encoded).
- a {"statusCode": 403} answer to $connect closes the client 1008.
- a wrong secret: the SDK gets 403, nothing is delivered.
- a gone connection: the SDK surfaces GoneException (410).
- DeleteConnection closes the client; $disconnect exactly once per $connect.
- the control API's bearer token works on /@connections and
  /<stage>/@connections; 413 PayloadTooLargeException over 128 KiB; 410
  with x-amzn-ErrorType GoneException; no token 401.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import base64
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.parse

import wsgate_test as w
from wsgate_clients import require_tool
from wsgate_proc import track

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compat_aws")
KEY_ID = "AKIDWSGATETEST0001"
KEY_SECRET = "wsgate/test+secret/0123456789abcdefghij"
REGION = "eu-west-3"
CLIENT_SECRET = w.DEFAULT_CLIENT_SECRET


def npm_install(timeout=300):
    """The SDK into tests/e2e/compat_aws/node_modules, once."""
    require_tool("node", "install Node.js (scripts/deps.sh)")
    npm = require_tool("npm", "install npm (scripts/deps.sh)")
    marker = os.path.join(HERE, "node_modules", "@aws-sdk",
                          "client-apigatewaymanagementapi", "package.json")
    if os.path.exists(marker):
        return
    r = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save"], cwd=HERE,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError("npm install failed (%d):\n%s" % (r.returncode, r.stdout[-3000:]))


class AwsBackend:
    """backend.mjs in a node process; .events / .sdk are what it printed."""

    def __init__(self):
        npm_install()
        env = dict(os.environ, AWS_KEY_ID=KEY_ID, AWS_SECRET=KEY_SECRET, AWS_REGION_NAME=REGION)
        for k in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                  "AWS_SESSION_TOKEN"):
            env.pop(k, None)
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "backend.mjs")], cwd=HERE,
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, universal_newlines=True)
        track(self.proc)
        self.lock = threading.Lock()
        self.lines = []
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.q.get(timeout=w.scaled(30))
        if not first or "listening" not in first:
            raise AssertionError("backend did not start: %r %s" % (first, self.stderr()))
        self.url = "http://127.0.0.1:%d/" % first["listening"]

    def _read(self):
        for line in self.proc.stdout:
            try:
                o = json.loads(line)
            except ValueError:
                o = {"garbage": line}
            with self.lock:
                self.lines.append(o)
            self.q.put(o)
        self.q.put(None)

    def stderr(self):
        return self.proc.stderr.read() if self.proc.poll() is not None else ""

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=w.scaled(10))
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def events(self, route_key=None):
        with self.lock:
            return [o["event"] for o in self.lines if "event" in o and (
                route_key is None or o["event"]["requestContext"]["routeKey"] == route_key)]

    def sdk(self, what):
        with self.lock:
            return [o for o in self.lines if o.get("sdk") == what]

    def wait_event(self, route_key, n=1, timeout=15):
        try:
            return w.wait_until(lambda: len(self.events(route_key)) >= n and self.events(
                route_key), timeout, what="%d %s event(s) at the backend" % (n, route_key))
        except AssertionError as e:
            seen = [(x["requestContext"]["routeKey"], x["requestContext"]["connectionId"],
                     x["requestContext"]["requestId"]) for x in self.events()]
            raise AssertionError("%s; saw %r" % (e, seen)) from None

    def wait_sdk(self, what, n=1, timeout=15):
        return w.wait_until(lambda: len(self.sdk(what)) >= n and self.sdk(what), timeout,
                            what="%d SDK %s outcome(s)" % (n, what))


class AwsCompat(w.GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.be = AwsBackend()
        self.addCleanup(self.be.stop)
        fast = {"max_attempts": 2, "backoff_initial": "100ms", "backoff_max": "200ms"}
        aws = {"route_response": True, "region": REGION,
               "access_keys": [{"id": KEY_ID, "secret": KEY_SECRET}]}
        jwt = {"alg": "HS256", "secret": CLIENT_SECRET, "context_claims": ["tenant"]}
        self.plain = self.backend()  # a route of wsgate's own protocol next to it
        self.gw = self.gateway([
            w.route("/ws", self.be.url, protocol="aws", aws=aws, delivery=fast,
                    required=False, jwt=jwt),
            w.route("/plain", self.plain.url)])

    def open(self, **query):
        tok = w.mint_jwt(w.client_claims("alice", tenant="acme"), "HS256", CLIENT_SECRET)
        q = dict(query, token=tok)
        n = len(self.be.events("$connect")) + 1
        ws = self.client(self.gw.edge_url + "/ws", query=q, headers={"User-Agent": "aws-test/1"})
        ev = self.be.wait_event("$connect", n)[-1]
        return ws, ev["requestContext"]["connectionId"]

    def test_connect_event_custom_route_and_post_to_connection(self):
        t0 = int(time.time() * 1000)
        ws, cid = self.open(room="7")
        ev = self.be.events("$connect")[0]
        rc = ev["requestContext"]
        self.assertEqual(rc["eventType"], "CONNECT")
        self.assertEqual(rc["stage"], "production")
        self.assertEqual(rc["messageDirection"], "IN")
        self.assertEqual(rc["domainName"], urllib.parse.urlsplit(self.gw.api_url).netloc)
        self.assertGreaterEqual(rc["connectedAt"], t0 - 1000)
        self.assertEqual(rc["requestTimeEpoch"], rc["connectedAt"])
        self.assertTrue(rc["requestId"] and rc["extendedRequestId"])
        self.assertEqual(rc["identity"], {"sourceIp": "127.0.0.1", "userAgent": "aws-test/1"})
        self.assertEqual(rc["authorizer"], {"principalId": "alice", "tenant": "acme"})
        self.assertEqual(ev["queryStringParameters"], {"room": "7"})  # the token is removed
        self.assertEqual(ev["headers"]["User-Agent"], "aws-test/1")
        self.assertEqual(ev["multiValueHeaders"]["User-Agent"], ["aws-test/1"])
        self.assertIs(ev["isBase64Encoded"], False)
        # route_selection_expression $request.body.action picks the route
        ws.send_text(json.dumps({"action": "echo", "data": "hi"}))
        self.assertEqual(ws.recv_json(), {"echo": "hi", "routeKey": "echo"})
        msg = self.be.wait_event("echo")[0]  # its stdout line may trail the reply
        self.assertEqual(msg["requestContext"]["eventType"], "MESSAGE")
        self.assertEqual(msg["requestContext"]["connectionId"], cid)
        self.assertTrue(msg["requestContext"]["messageId"])
        self.assertEqual(json.loads(msg["body"]), {"action": "echo", "data": "hi"})
        post = self.be.wait_sdk("post")[0]
        self.assertTrue(post["ok"], post)
        self.assertEqual(post["status"], 200)
        # GetConnection through the SDK
        ws.send_text(json.dumps({"action": "info"}))
        info = ws.recv_json()["info"]
        self.assertEqual(info["sourceIp"], "127.0.0.1")
        at = time.mktime(time.strptime(info["connectedAt"][:19], "%Y-%m-%dT%H:%M:%S"))
        self.assertLess(abs(at - time.timezone - t0 / 1000), 60)
        self.assertTrue(self.be.wait_sdk("get")[0]["ok"])

    def test_default_route_response_text_and_binary(self):
        ws, _ = self.open()
        ws.send_text("plain words")
        self.assertEqual(ws.recv_text(), "default:plain words")
        ev = self.be.wait_event("$default")[0]  # its stdout line may trail the reply
        self.assertEqual(ev["body"], "plain words")
        self.assertIs(ev["isBase64Encoded"], False)
        ws.send_text(json.dumps({"action": 5}))  # not a string: $default
        self.assertEqual(ws.recv_text(), 'default:{"action": 5}')
        ws.send_binary(b"\x00\xff")
        self.assertEqual(ws.recv_text(), "default:AP8=")
        ev = self.be.wait_event("$default", 3)[2]
        self.assertEqual(base64.b64decode(ev["body"]), b"\x00\xff")
        self.assertIs(ev["isBase64Encoded"], True)

    def test_connect_refused_by_status_code(self):
        ws = self.client(self.gw.edge_url + "/ws", query={"deny": "1"})
        self.assertEqual(ws.wait_closed(15), (1008, "refused by backend"))
        self.be.wait_event("$disconnect")

    def test_wrong_secret_is_refused_and_nothing_delivered(self):
        ws, _ = self.open()
        ws.send_text(json.dumps({"action": "bad-secret"}))
        self.assertEqual(ws.recv_text(), "after bad-secret")  # "must not arrive" did not
        bad, good = self.be.wait_sdk("post", 2)
        self.assertFalse(bad["ok"])
        self.assertEqual(bad["status"], 403)
        self.assertIn("signature", bad["message"].lower())
        self.assertTrue(good["ok"], good)

    def test_gone_connection_is_gone_exception(self):
        a, aid = self.open()
        b, _ = self.open()
        a.close(4001, "bye")
        d = self.be.wait_event("$disconnect")[0]
        self.assertEqual(d["requestContext"]["disconnectStatusCode"], 4001)
        self.assertEqual(d["requestContext"]["disconnectReason"], "bye")
        self.assertEqual(d["requestContext"]["connectionId"], aid)
        b.send_text(json.dumps({"action": "send-to", "target": aid, "data": "x"}))
        out = self.be.wait_sdk("post")[0]
        self.assertFalse(out["ok"])
        self.assertEqual((out["name"], out["status"]), ("GoneException", 410))

    def test_signature_acts_on_its_route_and_stage_only(self):
        other = self.client(self.gw.edge_url + "/plain")
        oid = w.wait_until(lambda: self.gw.control().get("/v1/connections?route=/plain").json[
            "items"], 15, what="the /plain connection")[0]["id"]
        ws, _ = self.open()
        ws.send_text(json.dumps({"action": "send-to", "target": oid, "data": "x"}))
        out = self.be.wait_sdk("post")[0]
        self.assertEqual((out["ok"], out["name"], out["status"]), (False, "GoneException", 410))
        ws.send_text(json.dumps({"action": "other-stage"}))
        out = self.be.wait_sdk("post", 2)[1]
        self.assertEqual((out["ok"], out["status"]), (False, 403))
        ws.send_text("sync")
        self.assertEqual(ws.recv_text(), "default:sync")  # nothing came before it
        self.assertEqual(other.pending(), 0)

    def test_delete_connection_and_one_disconnect_per_connect(self):
        ws, cid = self.open()
        ws.send_text(json.dumps({"action": "kick"}))
        self.assertEqual(ws.wait_closed(15)[0], 1000)
        out = self.be.wait_sdk("delete")[0]
        self.assertTrue(out["ok"], out)
        self.assertEqual(out["status"], 204)
        self.be.wait_event("$disconnect")
        others = [self.open() for _ in range(3)]
        for o, _ in others:
            o.close()
        self.be.wait_event("$disconnect", 4)
        time.sleep(w.scaled(1))  # a duplicate would come within this
        ids = [e["requestContext"]["connectionId"] for e in self.be.events("$disconnect")]
        self.assertEqual(sorted(ids),
                         sorted(e["requestContext"]["connectionId"]
                                for e in self.be.events("$connect")))

    def test_bearer_token_stage_prefix_and_errors(self):
        ws, cid = self.open()
        api = self.gw.control("send")
        q = urllib.parse.quote(cid, safe="")
        r = api.post("/@connections/" + q, b"via token", content_type="application/octet-stream")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(ws.recv_text(), "via token")
        r = api.post("/production/@connections/" + q, b"\xff\x01",  # not UTF-8: binary
                     content_type="application/octet-stream")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(ws.recv(), (2, b"\xff\x01"))
        r = api.post("/@connections/" + q, b"x" * (128 * 1024 + 1),
                     content_type="application/octet-stream")
        self.assertEqual(r.status, 413)
        self.assertEqual(r.headers["x-amzn-errortype"],
                         "PayloadTooLargeException")
        self.assertIn("message", r.json)
        r = api.post("/@connections/nosuchconnection", b"x",
                     content_type="application/octet-stream")
        self.assertEqual(r.status, 410)
        self.assertEqual(r.headers["x-amzn-errortype"],
                         "GoneException")
        r = self.gw.control("read").get("/@connections/" + q)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json["identity"]["sourceIp"], "127.0.0.1")
        self.assertTrue(r.json["connectedAt"].endswith("Z"))
        self.assertEqual(w.ControlApi(self.gw.api_url).get("/@connections/" + q).status, 401)
        self.assertEqual(self.gw.control("read").delete("/@connections/" + q).status, 403)
        r = self.gw.control("disconnect").delete("/@connections/" + q)
        self.assertEqual(r.status, 204, r.body)
        self.assertEqual(ws.wait_closed(15)[0], 1000)


if __name__ == "__main__":
    w.main()
