/* SPDX-License-Identifier: MIT */
/*
 * api_conn.c — /v1/connections: send one frame to a connection (the hot
 * path: in-process no store read, no thread blocked — the request waits
 * suspended for the edge's reply), read one connection, force a disconnect,
 * list connections with filters and a cursor.
 */
#include <stdlib.h>
#include <string.h>

#include "common/close.h"
#include "common/err.h"
#include "control-api/api_int.h"

/* Maps the edge's reply to 200 {"queued":true} / 204 or a problem. Runs on
 * the thread that replied (the edge's): nothing allocated on success. */
static void finish_cmd(api_req_t *r, int ok_status, const char *what)
{
    int st = atomic_load(&r->first_err);
    if (st != 0)
        api_from_err(r, st, what);
    else if (ok_status == 200)
        api_queued(r);
    else
        api_empty(r, ok_status);
}

static void finish_send(api_req_t *r)
{
    finish_cmd(r, 200, "send");
}

int api_h_send(api_req_t *r)
{
    const char *id = r->segs[2];
    api_msg_t m;
    char err[200], eb[128];
    int st = api_parse_message(r->ctype, r->body, r->body_len, &m, err, sizeof err);
    if (st != 0)
        return api_problem(r, st, "%s", err);
    int rc;
    const char *edge = api_edge_for(r, id, eb, sizeof eb, &rc);
    if (rc != 0) {
        free(m.owned);
        return api_from_err(r, rc, "send");
    }
    bus_cmd_t cmd = {
        .op = BUS_CMD_SEND, .conn_id = id, .data = m.data, .len = m.len, .binary = m.binary};
    api_req_start(r, 1, finish_send);
    rc = bus_cmd_request(r->a->bus, edge, &cmd, api_reply_cb, r);
    free(m.owned); /* the bus copied it */
    if (rc != 0)
        return api_from_err(r, rc, "send");
    return API_ASYNC;
}

static void finish_close(api_req_t *r)
{
    finish_cmd(r, 204, "disconnect");
}

/* Parses ?code=&reason= of a forced close. Returns 0 or answers 400. */
int api_close_args(api_req_t *r, int *code, const char **reason);
int api_close_args(api_req_t *r, int *code, const char **reason)
{
    const char *c = api_query(r, "code");
    char err[128];
    long long v = WSG_CLOSE_NORMAL;
    *reason = api_query(r, "reason");
    if (c) {
        char *end;
        v = strtoll(c, &end, 10);
        if (!*c || *end)
            v = -1; /* not a number: refused as a code below */
    }
    if (wsg_close_app_check(v, *reason, *reason ? strlen(*reason) : 0, err, sizeof err) != 0) {
        api_problem(r, 400, "%s", err);
        return -1;
    }
    *code = (int)v;
    return 0;
}

int api_h_conn_delete(api_req_t *r)
{
    const char *id = r->segs[2];
    int code, rc;
    const char *reason;
    char eb[128];
    if (api_close_args(r, &code, &reason) != 0)
        return API_DONE;
    const char *edge = api_edge_for(r, id, eb, sizeof eb, &rc);
    if (rc != 0)
        return api_from_err(r, rc, "disconnect");
    bus_cmd_t cmd = {.op = BUS_CMD_CLOSE,
                     .conn_id = id,
                     .code = code,
                     .reason = reason ? reason : "",
                     .initiator = "api"};
    api_req_start(r, 1, finish_close);
    rc = bus_cmd_request(r->a->bus, edge, &cmd, api_reply_cb, r);
    return rc != 0 ? api_from_err(r, rc, "disconnect") : API_ASYNC;
}

json_t *api_conn_json(const store_conn_t *c, const store_str_list_t *chans);
json_t *api_conn_json(const store_conn_t *c, const store_str_list_t *chans)
{
    json_t *ctx = json_loads(c->context_json ? c->context_json : "{}", 0, NULL);
    json_t *o = json_pack("{s:s,s:s,s:s?,s:o,s:s,s:s?,s:I,s:I}", "id", c->id, "route", c->route,
                          "user", c->user, "context", ctx ? ctx : json_object(), "edge",
                          c->edge_id ? c->edge_id : "", "remote_addr", c->remote_addr,
                          "connected_at_ms", (json_int_t)c->connected_at_ms, "last_active_at_ms",
                          (json_int_t)c->last_active_at_ms);
    if (!o)
        abort();
    if (chans) {
        json_t *a = json_array();
        for (size_t i = 0; i < chans->n; i++)
            json_array_append_new(a, json_string(chans->items[i]));
        json_object_set_new(o, "channels", a);
    }
    return o;
}

int api_h_conn_get(api_req_t *r)
{
    store_t *st = api_store_get(r->a);
    store_conn_t c = {0};
    store_str_list_t ch = {0};
    int rc = store_conn_get(st, r->segs[2], &c);
    if (rc == 0)
        rc = store_sub_channels(st, c.id, &ch);
    api_store_put(r->a, st);
    if (rc == 0)
        api_json(r, 200, api_conn_json(&c, &ch));
    else
        api_from_err(r, rc, "connection");
    store_conn_clear(&c);
    store_str_list_free(&ch);
    return API_DONE;
}

int api_h_conn_list(api_req_t *r)
{
    store_conn_query_t q = {.user = api_query(r, "user"),
                            .route = api_query(r, "route"),
                            .cursor = api_query(r, "cursor")};
    if (api_query_channel(r, "channel", &q.channel) != 0 || api_parse_limit(r, &q.limit) != 0)
        return API_DONE;
    store_conn_list_t l = {0};
    store_t *st = api_store_get(r->a);
    int rc = store_conn_list(st, &q, &l);
    api_store_put(r->a, st);
    if (rc == WSG_EINVAL)
        return api_problem(r, 400, "bad cursor or filter");
    if (rc != 0)
        return api_from_err(r, rc, "list");
    json_t *items = json_array();
    for (size_t i = 0; i < l.n; i++)
        json_array_append_new(items, api_conn_json(&l.items[i], NULL));
    api_json(r, 200, json_pack("{s:o,s:s?}", "items", items, "next_cursor", l.next_cursor));
    store_conn_list_free(&l);
    return API_DONE;
}
