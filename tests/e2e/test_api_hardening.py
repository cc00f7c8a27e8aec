"""test_api_hardening.py — the control API against an attacker, through the
binary: batch items with a content_type (once a use-after-free), a
channels-limited token unable to broadcast, NUL and control characters in
channel names (400 wherever a channel name is taken)."""
import json

import wsgate_test as w

PROBLEM = "application/problem+json"


class ApiCase(w.GatewayTestCase):
    """A gateway, one WebSocket client subscribed to channel "c" and known
    to the registry; self.api is an admin client."""
    config = {}

    def setUp(self):
        super().setUp()
        self.be = self.backend()
        self.gw = self.gateway([w.route("/chat", self.be.url)], config=self.config)
        self.api = self.gw.control()
        self.ws = self.client(self.gw.edge_url + "/chat")
        self.cid = self.be.wait_event(lambda e: e["type"] == "connect", 15)["connection_id"]
        w.wait_until(lambda: self.api.get("/v1/connections/" + self.cid).status == 200, 10)
        self.assertEqual(self.api.put("/v1/channels/c/connections/" + self.cid).status, 204)
        self.token = self.gw.api_token("admin")
        self.auth = "Authorization: Bearer %s\r\n" % self.token

    def assert_nothing_delivered(self):
        """Nothing reached the client: a send made now is the first frame it
        gets (a frame sent earlier would arrive before it)."""
        self.assertEqual(self.api.send(self.cid, "marker").status, 200)
        self.assertEqual(self.ws.recv(10), (w.OP_TEXT, "marker"))

    def assert_problem(self, resp, status):
        st, headers, body = resp
        self.assertEqual(st, status, resp)
        self.assertEqual(headers.get("content-type"), PROBLEM, resp)
        self.assertEqual(json.loads(body)["status"], status)


class BatchContentType(ApiCase):
    def test_item_content_type_is_honoured(self):
        """An item's content_type (short, or long enough that a freed copy
        of it is unmapped) decides how its body is sent; the gateway lives."""
        long_ct = "application/octet-stream; p=" + "x" * 200000
        path = "/v1/connections/%s/messages" % self.cid
        items = [
            {"method": "POST", "path": path, "body": "short", "content_type":
             "application/octet-stream"},
            {"method": "POST", "path": path, "body": "long", "content_type": long_ct},
            {"method": "POST", "path": path, "body": '{"data":"json"}',
             "content_type": "application/json"},
            {"method": "POST", "path": path, "body": "text", "content_type":
             "text/plain; charset=utf-8"},
            {"method": "POST", "path": path, "body": "<x/>", "content_type": "application/xml"},
            {"method": "POST", "path": path, "body": "x", "content_type": 5},
            {"method": "POST", "path": "/v1/channels/c/messages", "body": "pub",
             "content_type": "application/octet-stream"},
        ]
        for _ in range(3):  # a use-after-free may need a few rounds to bite
            r = self.api.post("/v1/batch", {"requests": items})
            self.assertEqual(r.status, 200, r)
            self.assertEqual([x["status"] for x in r.json["results"]],
                             [200, 200, 200, 200, 415, 400, 202])
            self.assertEqual([self.ws.recv(10) for _ in range(5)], [
                (w.OP_BINARY, b"short"), (w.OP_BINARY, b"long"), (w.OP_TEXT, "json"),
                (w.OP_TEXT, "text"), (w.OP_BINARY, b"pub")])
        self.assertTrue(self.gw.running())
        self.assertEqual(w.http_request(self.gw.api_url + "/healthz")[0], 200)


class ChannelsClaim(ApiCase):
    """SPEC §4: a channels claim limits publish and subscribe to matching
    channels. A broadcast reaches every connection, in any channel or
    none, so a token with the claim (any claim, even ["*"]) cannot
    broadcast. Connection- and user-addressed operations are governed by
    their scopes (send, disconnect), not by the claim."""

    def test_channels_limited_token_cannot_broadcast(self):
        for scope, channels in (("publish", ["room.*"]), ("admin", ["room.*"]),
                                ("publish", ["*"]), ("publish", [])):
            api = w.ControlApi(self.gw.api_url, self.gw.api_token(scope, channels=channels))
            for path in ("/v1/broadcast", "/v1/broadcast?route=/chat"):
                r = api.post(path, "to everyone")
                self.assertEqual(r.status, 403, (scope, channels, path, r))
                self.assertEqual(r.headers["content-type"], PROBLEM)
            r = api.post("/v1/batch", {"requests": [
                {"method": "POST", "path": "/v1/broadcast", "body": "to everyone"}]})
            self.assertEqual([x["status"] for x in r.json["results"]], [403], r)
        self.assert_nothing_delivered()
        # the same token still publishes where its claim allows
        api = w.ControlApi(self.gw.api_url, self.gw.api_token("publish", channels=["c"]))
        self.assertEqual(api.post("/v1/channels/c/messages", "in c").status, 202)
        self.assertEqual(self.ws.recv_text(10), "in c")
        # a token without the claim broadcasts
        self.assertEqual(self.gw.control("publish").post("/v1/broadcast", "all").status, 202)
        self.assertEqual(self.ws.recv_text(10), "all")

    def test_user_send_follows_the_send_scope(self):
        api = w.ControlApi(self.gw.api_url, self.gw.api_token("send", channels=["room.*"]))
        r = api.post("/v1/users/nobody/messages", "x")
        self.assertEqual((r.status, r.json), (202, {"connections": 0}))


class Names(ApiCase):
    def test_nul_and_control_characters_in_channel_names(self):
        bad = ["a%00b", "%00", "a%01b", "a%1Fb", "a%7Fb", "a%0Ab"]
        before = self.api.get("/v1/channels").json
        for ch in bad:
            for method, path in (("PUT", "/v1/channels/%s/connections/" + self.cid),
                                 ("DELETE", "/v1/channels/%s/connections/" + self.cid),
                                 ("GET", "/v1/channels/%s/connections"),
                                 ("POST", "/v1/channels/%s/messages"),
                                 ("GET", "/v1/connections?channel=%s"),
                                 ("GET", "/v1/channels?prefix=%s")):
                r = self.api.request(method, path % ch, "x" if method == "POST" else None)
                self.assertEqual(r.status, 400, (method, path % ch, r))
                self.assertEqual(r.headers["content-type"], PROBLEM)
        raw = ["a\u0001b", "a\u001fb", "a\u007fb"]
        items = [{"method": "POST", "path": "/v1/channels/%s/messages" % ch, "body": "x"}
                 for ch in bad]
        items += [{"method": m, "path": "/v1/channels/%s/%s" % (ch, rest), "body": "x"}
                  for ch in raw for m, rest in (("POST", "messages"),
                                                ("PUT", "connections/" + self.cid))]
        r = self.api.post("/v1/batch", {"requests": items})
        self.assertEqual([x["status"] for x in r.json["results"]], [400] * len(items), r)
        # \u0000 anywhere in a batch makes the whole batch malformed JSON to us
        r = self.api.post("/v1/batch", {"requests": [
            {"method": "POST", "path": "/v1/channels/a\u0000b/messages", "body": "x"}]})
        self.assertEqual((r.status, r.headers["content-type"]), (400, PROBLEM), r)
        self.assert_nothing_delivered()
        self.assertEqual(self.api.get("/v1/channels").json, before)
        # NUL elsewhere in a path is a malformed request too, not a missing resource
        self.assertEqual(self.api.post("/v1/connections/x%00y/messages", "x").status, 400)


if __name__ == "__main__":
    import unittest
    unittest.main()
