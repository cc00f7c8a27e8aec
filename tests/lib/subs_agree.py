# SPDX-License-Identifier: MIT
"""subs_agree.py — checks shared by the subscription-order tests
(tests/e2e/test_subs_order.py, tests/integration/test_cluster_subs.py):
the store's view of a connection's subscriptions (what the control API
lists) and the edge's (what a channel publish delivers) must agree.

agree(api, ws, conn_id, channel, member) checks that both listings say
`member` (after a barrier, or at once for an answered API call), then publishes a probe to the channel and sends a
marker to the connection: the probe must arrive before the marker exactly
when `member` is true. A listing that never settles, or a probe that does
(not) arrive, fails the calling test with what each side said.
"""

import itertools
import threading
import time
import urllib.parse

import wsgate_test as w


_probe = itertools.count(1)


def q(s):
    return urllib.parse.quote(s, safe="")


def listed(api, conn_id, channel):
    """(in the channel's members, in the connection's channels); None for a
    connection the API does not know (410)."""
    r = api.get("/v1/channels/%s/connections?limit=1000" % q(channel))
    if r.status != 200:
        raise AssertionError("members of %s: %s %s" % (channel, r.status, r.body))
    in_members = conn_id in r.json["items"]
    r = api.get("/v1/connections/%s" % q(conn_id))
    if r.status == 410:
        return (in_members, None)
    if r.status != 200:
        raise AssertionError("connection %s: %s %s" % (conn_id, r.status, r.body))
    return (in_members, channel in (r.json.get("channels") or []))


def delivered(api, ws, conn_id, channel, settle=0.3):
    """1 when a publish to channel reaches ws (probe before a marker sent to
    the connection afterwards), else 0."""
    n = next(_probe)
    probe, marker = "probe-%d" % n, "marker-%d" % n
    r = api.post("/v1/channels/%s/messages" % q(channel), probe, content_type="text/plain")
    if r.status != 202:
        raise AssertionError("publish: %s %s" % (r.status, r.body))
    r = api.send(conn_id, marker, content_type="text/plain")
    if r.status != 200:
        raise AssertionError("send marker: %s %s" % (r.status, r.body))
    got = []
    deadline = time.monotonic() + 15
    while marker not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("marker %s never arrived (got %r)" % (marker, got))
        got.append(ws.recv_text(left))
    # across processes a publish and a command travel separately: a probe
    # late by a little is still a delivery
    end = time.monotonic() + settle
    while probe not in got and time.monotonic() < end:
        if ws.pending():
            got.append(ws.recv_text(1))
        else:
            time.sleep(0.02)
    return int(probe in got)


def consistent(api, ws, conn_id, channel):
    """Whatever the state is, both listings and delivery say the same;
    returns it (True: member)."""
    seen = listed(api, conn_id, channel)
    if seen[0] != seen[1]:
        raise AssertionError("%s in %s: members say %r, the connection says %r"
                             % (conn_id, channel, seen[0], seen[1]))
    got = delivered(api, ws, conn_id, channel)
    if got != int(seen[0]):
        raise AssertionError("%s in %s: API lists %r but a publish %s" %
                             (conn_id, channel, seen, "arrives" if got else "does not arrive"))
    return seen[0]


def agree(api, ws, conn_id, channel, member, now=False, settle=0.3):
    """Fails unless the API lists conn_id in channel exactly when `member`
    (both listings), and a publish to channel reaches ws exactly then.

    now=True: the caller's own subscribe/unsubscribe was just answered, so
    the listings must say so at once (read your writes). Else (actions,
    which nobody answers) a barrier first: an API subscribe of the same
    connection to another channel, answered once every earlier change of
    the connection is recorded. Then, `settle` seconds later, the listings
    must still say the same (a late write of an older change would show)."""
    want = (bool(member), bool(member))
    if not now:
        r = api.put("/v1/channels/barrier-%d/connections/%s" % (next(_probe), q(conn_id)))
        if r.status != 204:
            raise AssertionError("barrier subscribe: %s %s" % (r.status, r.body))
    seen = listed(api, conn_id, channel)
    if seen != want:
        raise AssertionError("%s in %s: API lists (members, connection) = %r, want %r"
                             % (conn_id, channel, seen, want))
    got = delivered(api, ws, conn_id, channel)
    if got != int(bool(member)):
        raise AssertionError("%s in %s: API lists %r but a publish %s" %
                             (conn_id, channel, seen, "arrives" if got else "does not arrive"))
    if settle:
        time.sleep(settle)
        seen = listed(api, conn_id, channel)
        if seen != want:
            raise AssertionError("%s in %s: %.1f s later the API lists %r, want %r"
                                 % (conn_id, channel, settle, seen, want))


SUB = {"action": "subscribe", "channel": "room9"}
UNSUB = {"action": "unsubscribe", "channel": "room9"}
LISTS = {"sub_unsub": ([SUB, UNSUB], False),
         "unsub_sub": ([UNSUB, SUB], True),
         "sub_unsub_sub": ([SUB, UNSUB, SUB], True),
         "sub_sub_unsub": ([SUB, SUB, UNSUB], False),
         "unsub_unsub_sub": ([UNSUB, UNSUB, SUB], True),
         "warm_sub_unsub": ([dict(SUB, channel="warm"), SUB, UNSUB], False)}


class SubsOrderBase:
    """Mixin: self.be (a Backend whose handler is self.answer), self.api(),
    self.open(tag) -> (ws, connection id)."""

    _tags = itertools.count(1)

    def answer(self, req):
        for e in req.events():
            key = None
            if e.get("type") == "connect":
                key = "connect:" + str(e.get("query", {}).get("tag"))
            elif e.get("type") == "message":
                key = "message:" + str(e.get("data"))
            if key in self.answers:
                return w.Response(200, {"actions": self.answers[key]})
        return None

    settle = 0.3

    def ready(self, acts, word):
        return list(acts) + [{"action": "send", "data": word}]

    def check_connect_actions(self, name, edge=0):
        acts, member = LISTS[name]
        tag = "c%d" % next(self._tags)
        self.answers["connect:" + tag] = self.ready(acts, "ready-" + tag)
        ws, cid = self.open(tag, edge)
        self.assertEqual(ws.recv_text(15), "ready-" + tag)
        agree(self.api(), ws, cid, "room9", member, settle=self.settle)

    def check_message_actions(self, name, edge=0):
        acts, member = LISTS[name]
        tag = "m%d" % next(self._tags)
        self.answers["message:go-" + tag] = self.ready(acts, "ready-" + tag)
        ws, cid = self.open(tag, edge)
        ws.send_text("go-" + tag)
        self.assertEqual(ws.recv_text(15), "ready-" + tag)
        agree(self.api(), ws, cid, "room9", member, settle=self.settle)

    def check_api_back_to_back(self, edge=0, other_api=None):
        ws, cid = self.open("a%d" % next(self._tags), edge)
        api = self.api()
        api2 = other_api or api
        path = "/v1/channels/room9/connections/" + q(cid)
        for _ in range(3):
            r = api.put(path)
            self.assertEqual(r.status, 204, r.body)
            agree(api2, ws, cid, "room9", True, now=True, settle=0)
            r = api.delete(path)
            self.assertEqual(r.status, 204, r.body)
            agree(api2, ws, cid, "room9", False, now=True, settle=0)
            r = api.put(path)
            r2 = api.delete(path)
            self.assertEqual((r.status, r2.status), (204, 204), (r.body, r2.body))
            agree(api2, ws, cid, "room9", False, now=True, settle=0)

    def check_api_concurrent(self, rounds=15, edge=0):
        ws, cid = self.open("p%d" % next(self._tags), edge)
        path = "/v1/channels/room9/connections/" + q(cid)
        for i in range(rounds):
            res = {}

            def call(m):
                res[m] = self.api().request(m, path).status

            ts = [threading.Thread(target=call, args=(m,)) for m in ("PUT", "DELETE")]
            if i % 2:
                ts.reverse()
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
            self.assertEqual(res, {"PUT": 204, "DELETE": 204})
            consistent(self.api(), ws, cid, "room9")
