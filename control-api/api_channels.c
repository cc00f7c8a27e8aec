/* SPDX-License-Identifier: MIT */
/*
 * api_channels.c — /v1/channels and /v1/broadcast: subscribe and
 * unsubscribe a connection (a command to the holding edge, answered once
 * the edge applied it and the registry recorded it: api_subwait.c; the API
 * never writes subscriptions itself), list members and channels from the
 * store, publish and
 * broadcast through the bus (one bus message; edges fan out; the store is
 * never read for members on this path).
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "control-api/api_int.h"

/* Validates the channel segment and the token's channels claim. */
static int channel_ok(api_req_t *r, const char *ch)
{
    char err[128];
    if (wsg_channel_valid(ch, err, sizeof err) != 0) {
        api_problem(r, 400, "%s", err);
        return -1;
    }
    return api_require_channel(r, ch);
}

/* Both shares given (the edge's reply, the registry's record): the answer.
 * An unsubscribe of a connection the edge no longer holds is done: its
 * subscriptions went with it. */
static void finish_channel_cmd(api_req_t *r)
{
    int st = atomic_load(&r->first_err);
    if (st == WSG_EGONE && r->method == API_DELETE)
        st = 0;
    if (st == 0)
        api_empty(r, 204);
    else
        api_from_err(r, st, r->method == API_DELETE ? "unsubscribe" : "subscribe");
}

/* The edge's share. One that did not apply the change records nothing:
 * the registry's share is given here too. */
static void channel_reply(void *ud, int status)
{
    api_req_t *r = ud;
    if (status != 0)
        api_subwait_cancel(r->a, r, 0);
    else
        api_subwait_replied(r->a, r, r->segs[4], r->segs[2]);
    api_req_reply(r, status);
}

/* The holding edge applies the change (it is the authority on its channel
 * index) and records it in the connection's ordered event stream; the
 * registry writes the store from there. The answer waits for both. */
static int channel_cmd(api_req_t *r, bus_cmd_op_t op)
{
    const char *ch = r->segs[2], *id = r->segs[4];
    const char *what = op == BUS_CMD_SUBSCRIBE ? "subscribe" : "unsubscribe";
    char eb[128];
    int rc;
    if (channel_ok(r, ch) != 0)
        return API_DONE;
    const char *edge = api_edge_for(r, id, eb, sizeof eb, &rc);
    if (rc != 0) {
        if (op == BUS_CMD_UNSUBSCRIBE)
            return api_empty(r, 204); /* idempotent: nothing to undo */
        return api_from_err(r, rc, what);
    }
    bus_cmd_t cmd = {.op = op, .conn_id = id, .channel = ch};
    api_req_start(r, 2, finish_channel_cmd);
    api_subwait_add(r->a, r, id, ch, op);
    rc = bus_cmd_request(r->a->bus, edge, &cmd, channel_reply, r);
    if (rc != 0) /* not sent: answered like an edge's refusal (inline, as replies may be) */
        channel_reply(r, rc);
    return API_ASYNC;
}

int api_h_subscribe(api_req_t *r)
{
    return channel_cmd(r, BUS_CMD_SUBSCRIBE);
}

int api_h_unsubscribe(api_req_t *r)
{
    return channel_cmd(r, BUS_CMD_UNSUBSCRIBE);
}

int api_h_members(api_req_t *r)
{
    size_t limit;
    char err[128];
    if (wsg_channel_valid(r->segs[2], err, sizeof err) != 0)
        return api_problem(r, 400, "%s", err);
    if (api_parse_limit(r, &limit) != 0)
        return API_DONE;
    store_str_list_t l = {0};
    store_t *st = api_store_get(r->a);
    int rc = store_sub_members(st, r->segs[2], api_query(r, "cursor"), limit, &l);
    api_store_put(r->a, st);
    if (rc == WSG_EINVAL)
        return api_problem(r, 400, "bad cursor");
    if (rc != 0)
        return api_from_err(r, rc, "members");
    json_t *items = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(items, json_string(l.items[i]));
    api_json(r, 200, json_pack("{s:o,s:s?}", "items", items, "next_cursor", l.next_cursor));
    store_str_list_free(&l);
    return API_DONE;
}

int api_h_channels(api_req_t *r)
{
    size_t limit;
    const char *prefix;
    if (api_query_channel(r, "prefix", &prefix) != 0 || api_parse_limit(r, &limit) != 0)
        return API_DONE;
    store_channel_list_t l = {0};
    store_t *st = api_store_get(r->a);
    int rc = store_channel_list(st, prefix ? prefix : "", api_query(r, "cursor"), limit, &l);
    api_store_put(r->a, st);
    if (rc == WSG_EINVAL)
        return api_problem(r, 400, "bad cursor or prefix");
    if (rc != 0)
        return api_from_err(r, rc, "channels");
    json_t *items = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(items, json_pack("{s:s,s:I}", "channel", l.items[i].channel,
                                               "members", (json_int_t)l.items[i].members));
    api_json(r, 200, json_pack("{s:o,s:s?}", "items", items, "next_cursor", l.next_cursor));
    store_channel_list_free(&l);
    return API_DONE;
}

static int do_publish(api_req_t *r, const char *channel, const char *route)
{
    api_msg_t m;
    char err[200];
    int st = api_parse_message(r->ctype, r->body, r->body_len, &m, err, sizeof err);
    if (st != 0)
        return api_problem(r, st, "%s", err);
    bus_publish_t p = {.channel = channel,
                       .route = route,
                       .exclude = api_query(r, "exclude"),
                       .data = m.data,
                       .len = m.len,
                       .binary = m.binary};
    int rc = bus_publish(r->a->bus, &p);
    free(m.owned);
    if (rc != 0)
        return api_from_err(r, rc, "publish");
    return api_json(r, 202, json_pack("{s:b}", "accepted", 1));
}

int api_h_publish(api_req_t *r)
{
    if (channel_ok(r, r->segs[2]) != 0)
        return API_DONE;
    return do_publish(r, r->segs[2], NULL);
}

int api_h_broadcast(api_req_t *r)
{
    if (api_require_all_channels(r, "broadcast") != 0)
        return API_DONE;
    const char *route = api_query(r, "route");
    if (route && !*route)
        route = NULL;
    return do_publish(r, NULL, route);
}
