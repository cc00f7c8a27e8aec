/* SPDX-License-Identifier: MIT */
/*
 * api_dead.c — /v1/dead-letters: list events the dispatcher gave up on, and
 * replay one. A replay re-publishes the stored envelope to the bus as the
 * same event (same id "evt_...", type, connection, route and seq), so the
 * dispatcher delivers it again with the same webhook-id (the backend's
 * idempotency key); once the bus has made it durable the dead letter is
 * deleted and the answer is 202. If it fails again it comes back as a new
 * dead letter under the same id.
 */
#include <stdlib.h>
#include <string.h>

#include "common/envelope.h"
#include "common/err.h"
#include "control-api/api_int.h"

/* created_at is Unix ms, but rows written by wsgate 0.1.0 hold
 * CLOCK_MONOTONIC ms (time since boot), which read as 1970. No Unix time
 * wsgate writes is that small, so such a row answers with its event's
 * timestamp: when the client event happened, shortly before it was
 * dead-lettered. No migration: the column's meaning is unchanged. */
#define DEAD_WALL_MIN_MS 946684800000LL /* 2000-01-01T00:00:00Z */

static json_int_t dead_created_ms(const store_dead_t *d, const json_t *ev)
{
    int64_t ms = d->created_at_ms;
    if (ms < DEAD_WALL_MIN_MS &&
        wsg_ts_parse(json_string_value(json_object_get(ev, "timestamp")), &ms) != 0)
        ms = d->created_at_ms;
    return (json_int_t)ms;
}

static json_t *dead_json(const store_dead_t *d, int full)
{
    json_t *ev = json_loads(d->event_json ? d->event_json : "null", 0, NULL);
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:I}", "id", d->id, "connection_id", d->conn_id,
                  "route", d->route, "backend", d->backend ? d->backend : "", "attempts",
                  d->attempts, "last_status", d->last_status, "last_error",
                  d->last_error ? d->last_error : "", "created_at_ms", dead_created_ms(d, ev));
    if (!o)
        abort();
    if (full)
        json_object_set_new(o, "event", ev ? ev : json_null());
    else
        json_decref(ev);
    return o;
}

int api_h_dead_list(api_req_t *r)
{
    size_t limit;
    if (api_parse_limit(r, &limit) != 0)
        return API_DONE;
    store_dead_list_t l = {0};
    store_t *st = api_store_get(r->a);
    int rc = store_dead_list(st, api_query(r, "route"), api_query(r, "cursor"), limit, &l);
    api_store_put(r->a, st);
    if (rc == WSG_EINVAL)
        return api_problem(r, 400, "bad cursor or route");
    if (rc != 0)
        return api_from_err(r, rc, "dead letters");
    json_t *items = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(items, dead_json(&l.items[i], 1));
    api_json(r, 200, json_pack("{s:o,s:s?}", "items", items, "next_cursor", l.next_cursor));
    store_dead_list_free(&l);
    return API_DONE;
}

static void finish_replay(api_req_t *r)
{
    int st = atomic_load(&r->first_err);
    if (st == 0) {
        store_t *s = api_store_get(r->a);
        st = store_dead_delete(s, r->segs[2]);
        api_store_put(r->a, s);
    }
    if (st == 0)
        api_json(r, 202, json_pack("{s:s}", "replayed", r->segs[2]));
    else
        api_problem(r, 503, "replay not accepted: %s", wsg_strerror(st));
}

static bus_event_type_t type_of(const char *t)
{
    if (!t)
        return 0;
    if (strcmp(t, "connect") == 0)
        return BUS_EV_CONNECT;
    if (strcmp(t, "message") == 0)
        return BUS_EV_MESSAGE;
    if (strcmp(t, "disconnect") == 0)
        return BUS_EV_DISCONNECT;
    return 0;
}

int api_h_dead_replay(api_req_t *r)
{
    store_dead_t d = {0};
    store_t *st = api_store_get(r->a);
    int rc = store_dead_get(st, r->segs[2], &d);
    api_store_put(r->a, st);
    if (rc == WSG_ENOTFOUND)
        return api_problem(r, 404, "no dead letter '%s'", r->segs[2]);
    if (rc != 0)
        return api_from_err(r, rc, "dead letter");
    json_t *ev = json_loads(d.event_json ? d.event_json : "", 0, NULL);
    bus_event_t be = {
        .id = d.id,
        .type = type_of(json_string_value(json_object_get(ev, "type"))),
        .conn_id = d.conn_id,
        .route = d.route,
        .seq = (uint64_t)json_integer_value(json_object_get(ev, "seq")),
        .body = d.event_json,
        .body_len = d.event_json ? strlen(d.event_json) : 0,
        .replay = 1,
    };
    json_decref(ev);
    api_req_start(r, 1, finish_replay);
    rc = be.type && be.seq ? bus_event_publish(r->a->bus, &be, api_reply_cb, r) : WSG_EINVAL;
    store_dead_clear(&d);
    if (rc == WSG_EFULL) /* the bus is full for now: nothing was taken, ask again */
        return api_problem(r, 503, "the event queue is full, try again: %s", wsg_strerror(rc));
    if (rc != 0)
        return api_problem(r, 500, "the stored event cannot be replayed: %s", wsg_strerror(rc));
    return API_ASYNC;
}
