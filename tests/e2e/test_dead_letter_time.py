# SPDX-License-Identifier: MIT
"""test_dead_letter_time.py — a dead letter's created_at_ms is Unix time.

- an event the backend refuses becomes a dead letter whose created_at_ms,
  in GET /v1/dead-letters and in the store, lies between the send and the
  answer on the wall clock (CLOCK_MONOTONIC read as 1970 before the fix);
- a row written by an older build (created_at holding monotonic ms, i.e.
  time since boot) is answered with its event's timestamp, not 1970.

Env: WSGATE_BIN, PYTHONPATH=tests/lib.
"""

import json
import sqlite3
import time

import wsgate_test as w


class DeadLetterTime(w.GatewayTestCase):
    def test_created_at_is_unix_ms(self):
        be = self.backend()
        be.handler = lambda req: w.Response(500)
        gw = self.gateway([w.route("/chat", be.url, delivery={"max_attempts": 1})])
        api = gw.control()
        t0 = time.time() * 1000
        ws = self.client(gw.edge_url + "/chat")
        ws.send_text("dl-time")
        items = w.wait_until(lambda: [d for d in api.dead_letters().json["items"]
                                      if d["event"].get("data") == "dl-time"], 20,
                             what="a dead letter")
        t1 = time.time() * 1000
        got = items[0]["created_at_ms"]
        self.assertTrue(t0 - 2000 <= got <= t1 + 2000, (t0, got, t1))
        rows = [r for r in gw.store().dead_letters() if r["id"] == items[0]["id"]]
        self.assertEqual(rows[0]["created_at"], got)

    def test_old_monotonic_row_reads_its_event_time(self):
        be = self.backend()
        gw = self.gateway([w.route("/chat", be.url)])
        api = gw.control()
        w.wait_until(lambda: api.dead_letters().status == 200, 10, what="the API")
        event = {"id": "evt_oldrow0001", "type": "message", "connection_id": "c0ld",
                 "route": "/chat", "user": None, "context": {}, "seq": 2,
                 "timestamp": "2026-11-23T12:01:36.250Z", "data": "old"}
        con = sqlite3.connect(gw.db_path, timeout=10)
        try:
            con.execute("INSERT INTO dead_letters (id, connection_id, route, backend, event, "
                        "attempts, last_status, last_error, created_at) "
                        "VALUES (?, ?, ?, ?, ?, 3, 500, '', 123456789)",
                        (event["id"], "c0ld", "/chat", be.url, json.dumps(event)))
            con.commit()
        finally:
            con.close()
        items = api.dead_letters().json["items"]
        old = [d for d in items if d["id"] == event["id"]]
        self.assertEqual(len(old), 1, items)
        self.assertEqual(old[0]["created_at_ms"], 1795435296250)  # the event's timestamp


if __name__ == "__main__":
    w.main()
