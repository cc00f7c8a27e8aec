/* SPDX-License-Identifier: MIT */
/*
 * page.c — the control-API reads: one connection, and the paginated lists
 * (connections, channel members, channels, dead letters) with a cursor
 * iterator over connections. Results keep the parsed answer alive and
 * point into it.
 * Threads: any; a result object belongs to the thread that holds it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdk.h"

typedef enum { PAGE_CONNS, PAGE_MEMBERS, PAGE_CHANNELS, PAGE_DEAD } page_kind_t;

typedef struct {
    wsgate_connection pub; /* first: wsgate_connection_free() casts back */
    json_t *root;          /* set for a wsgate_connection_get() result */
    char *context;
    const char **channels;
} conn_slot_t;

struct wsgate_page {
    page_kind_t kind;
    json_t *root;
    json_t *items; /* borrowed from root */
    size_t n;
    conn_slot_t *conns; /* PAGE_CONNS */
    char **item_json;   /* every kind */
};

static void conn_slot_clear(conn_slot_t *s)
{
    free(s->context);
    free(s->channels);
}

/* Fills s from a connection object (borrowed strings from o). */
static wsgate_status conn_fill(json_t *o, conn_slot_t *s)
{
    if (!json_is_object(o) || !json_string_value(json_object_get(o, "id")))
        return sdk_fail(WSGATE_EPROTO, "a connection without an id");
    json_t *ctx = json_object_get(o, "context"), *ch = json_object_get(o, "channels");
    s->pub.id = json_string_value(json_object_get(o, "id"));
    s->pub.route = json_string_value(json_object_get(o, "route"));
    s->pub.user = json_string_value(json_object_get(o, "user"));
    s->pub.edge = json_string_value(json_object_get(o, "edge"));
    s->pub.remote_addr = json_string_value(json_object_get(o, "remote_addr"));
    s->pub.connected_at_ms = (int64_t)json_integer_value(json_object_get(o, "connected_at_ms"));
    s->pub.last_active_at_ms = (int64_t)json_integer_value(json_object_get(o, "last_active_at_ms"));
    s->context = ctx ? json_dumps(ctx, JSON_COMPACT) : strdup("{}");
    size_t n = json_array_size(ch);
    s->channels = calloc(n + 1, sizeof *s->channels);
    if (!s->context || !s->channels)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    s->pub.context_json = s->context;
    for (size_t i = 0; i < n; i++)
        if (!(s->channels[i] = json_string_value(json_array_get(ch, i))))
            return sdk_fail(WSGATE_EPROTO, "a channel that is not a string");
    s->pub.channels = s->channels;
    s->pub.n_channels = n;
    return WSGATE_OK;
}

wsgate_status wsgate_connection_get(wsgate_client *c, const char *conn_id, wsgate_connection **out)
{
    if (!c || !conn_id || !*conn_id || !out)
        return sdk_fail(WSGATE_EINVAL, "client, connection id and out are required");
    *out = NULL;
    sdk_buf_t pq = {0};
    sdk_buf_str(&pq, "/v1/connections/");
    sdk_buf_escaped(&pq, conn_id);
    json_t *j = NULL;
    sdk_req_t rq = {.method = "GET", .path_query = pq.p};
    wsgate_status st = pq.oom ? sdk_fail(WSGATE_ENOMEM, "out of memory") : sdk_call(c, &rq, &j);
    sdk_buf_free(&pq);
    conn_slot_t *s = st == WSGATE_OK ? calloc(1, sizeof *s) : NULL;
    if (st == WSGATE_OK && !s)
        st = sdk_fail(WSGATE_ENOMEM, "out of memory");
    if (st == WSGATE_OK)
        st = conn_fill(j, s);
    if (st != WSGATE_OK) {
        if (s)
            conn_slot_clear(s);
        free(s);
        json_decref(j);
        return st;
    }
    s->root = j;
    *out = &s->pub;
    return WSGATE_OK;
}

void wsgate_connection_free(wsgate_connection *conn)
{
    if (!conn)
        return;
    conn_slot_t *s = (conn_slot_t *)conn;
    conn_slot_clear(s);
    json_decref(s->root);
    free(s);
}

void wsgate_page_free(wsgate_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        if (p->conns)
            conn_slot_clear(&p->conns[i]);
        if (p->item_json)
            free(p->item_json[i]);
    }
    free(p->conns);
    free(p->item_json);
    json_decref(p->root);
    free(p);
}

static wsgate_status page_items(wsgate_page *p)
{
    p->items = json_object_get(p->root, "items");
    if (!json_is_array(p->items))
        return sdk_fail(WSGATE_EPROTO, "a list answer without items");
    p->n = json_array_size(p->items);
    p->item_json = calloc(p->n + 1, sizeof *p->item_json);
    if (p->kind == PAGE_CONNS)
        p->conns = calloc(p->n + 1, sizeof *p->conns);
    if (!p->item_json || (p->kind == PAGE_CONNS && !p->conns))
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        json_t *it = json_array_get(p->items, i);
        if (!(p->item_json[i] = json_dumps(it, JSON_COMPACT | JSON_ENCODE_ANY)))
            return sdk_fail(WSGATE_ENOMEM, "out of memory");
        if (p->kind == PAGE_CONNS) {
            wsgate_status st = conn_fill(it, &p->conns[i]);
            if (st != WSGATE_OK)
                return st;
        }
        if (p->kind == PAGE_MEMBERS && !json_is_string(it))
            return sdk_fail(WSGATE_EPROTO, "a member that is not a string");
    }
    return WSGATE_OK;
}

/* GETs pq (taken) and parses it as a page of kind. */
static wsgate_status get_page(wsgate_client *c, sdk_buf_t *pq, page_kind_t kind, int limit,
                              const char *cursor, wsgate_page **out)
{
    char num[16];
    *out = NULL;
    snprintf(num, sizeof num, "%d", limit);
    sdk_buf_query(pq, "limit", limit > 0 ? num : NULL);
    sdk_buf_query(pq, "cursor", cursor);
    wsgate_page *p = pq->oom ? NULL : calloc(1, sizeof *p);
    wsgate_status st = p ? WSGATE_OK : sdk_fail(WSGATE_ENOMEM, "out of memory");
    if (st == WSGATE_OK) {
        sdk_req_t rq = {.method = "GET", .path_query = pq->p};
        p->kind = kind;
        st = sdk_call(c, &rq, &p->root);
    }
    if (st == WSGATE_OK)
        st = page_items(p);
    sdk_buf_free(pq);
    if (st != WSGATE_OK) {
        wsgate_page_free(p);
        return st;
    }
    *out = p;
    return WSGATE_OK;
}

#define PAGE_ARGS_OK(c, out) ((c) && (out))

wsgate_status wsgate_connections_list(wsgate_client *c, const wsgate_list_query *q,
                                      wsgate_page **out)
{
    if (!PAGE_ARGS_OK(c, out))
        return sdk_fail(WSGATE_EINVAL, "client and out are required");
    wsgate_list_query none = {0};
    if (!q)
        q = &none;
    sdk_buf_t pq = {0};
    sdk_buf_str(&pq, "/v1/connections");
    sdk_buf_query(&pq, "user", q->user);
    sdk_buf_query(&pq, "route", q->route);
    sdk_buf_query(&pq, "channel", q->channel);
    return get_page(c, &pq, PAGE_CONNS, q->limit, q->cursor, out);
}

wsgate_status wsgate_channel_members(wsgate_client *c, const char *channel, int limit,
                                     const char *cursor, wsgate_page **out)
{
    if (!PAGE_ARGS_OK(c, out) || !channel || !*channel)
        return sdk_fail(WSGATE_EINVAL, "client, channel and out are required");
    sdk_buf_t pq = {0};
    sdk_buf_str(&pq, "/v1/channels/");
    sdk_buf_escaped(&pq, channel);
    sdk_buf_str(&pq, "/connections");
    return get_page(c, &pq, PAGE_MEMBERS, limit, cursor, out);
}

wsgate_status wsgate_channels(wsgate_client *c, const char *prefix, int limit, const char *cursor,
                              wsgate_page **out)
{
    if (!PAGE_ARGS_OK(c, out))
        return sdk_fail(WSGATE_EINVAL, "client and out are required");
    sdk_buf_t pq = {0};
    sdk_buf_str(&pq, "/v1/channels");
    sdk_buf_query(&pq, "prefix", prefix);
    return get_page(c, &pq, PAGE_CHANNELS, limit, cursor, out);
}

wsgate_status wsgate_dead_letters(wsgate_client *c, const char *route, int limit,
                                  const char *cursor, wsgate_page **out)
{
    if (!PAGE_ARGS_OK(c, out))
        return sdk_fail(WSGATE_EINVAL, "client and out are required");
    sdk_buf_t pq = {0};
    sdk_buf_str(&pq, "/v1/dead-letters");
    sdk_buf_query(&pq, "route", route);
    return get_page(c, &pq, PAGE_DEAD, limit, cursor, out);
}

size_t wsgate_page_count(const wsgate_page *p)
{
    return p ? p->n : 0;
}

const char *wsgate_page_next_cursor(const wsgate_page *p)
{
    return p ? json_string_value(json_object_get(p->root, "next_cursor")) : NULL;
}

const wsgate_connection *wsgate_page_connection(const wsgate_page *p, size_t i)
{
    return p && p->kind == PAGE_CONNS && i < p->n ? &p->conns[i].pub : NULL;
}

const char *wsgate_page_member(const wsgate_page *p, size_t i)
{
    return p && p->kind == PAGE_MEMBERS && i < p->n ? json_string_value(json_array_get(p->items, i))
                                                    : NULL;
}

const char *wsgate_page_channel(const wsgate_page *p, size_t i, int64_t *members)
{
    if (!p || p->kind != PAGE_CHANNELS || i >= p->n)
        return NULL;
    json_t *it = json_array_get(p->items, i);
    if (members)
        *members = (int64_t)json_integer_value(json_object_get(it, "members"));
    return json_string_value(json_object_get(it, "channel"));
}

const char *wsgate_page_item_json(const wsgate_page *p, size_t i)
{
    return p && i < p->n ? p->item_json[i] : NULL;
}

struct wsgate_conn_iter {
    wsgate_client *c;
    wsgate_list_query q; /* strings owned */
    char *cursor;
    wsgate_page *page;
    size_t next;
    int last; /* the page held is the last one */
};

wsgate_status wsgate_conn_iter_new(wsgate_conn_iter **out, wsgate_client *c,
                                   const wsgate_list_query *q)
{
    if (!out || !c)
        return sdk_fail(WSGATE_EINVAL, "out and client are required");
    *out = NULL;
    wsgate_conn_iter *it = calloc(1, sizeof *it);
    int oom = !it;
    if (it && q) {
        it->q.user = sdk_strdup(q->user, &oom);
        it->q.route = sdk_strdup(q->route, &oom);
        it->q.channel = sdk_strdup(q->channel, &oom);
        it->cursor = sdk_strdup(q->cursor, &oom);
        it->q.limit = q->limit;
    }
    if (it)
        it->c = c;
    if (oom) {
        wsgate_conn_iter_free(it);
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    }
    *out = it;
    return WSGATE_OK;
}

wsgate_status wsgate_conn_iter_next(wsgate_conn_iter *it, const wsgate_connection **conn)
{
    if (!it || !conn)
        return sdk_fail(WSGATE_EINVAL, "iterator and conn are required");
    *conn = NULL;
    while (!it->page || it->next >= it->page->n) {
        if (it->page && it->last)
            return WSGATE_EDONE;
        wsgate_list_query q = it->q;
        q.cursor = it->cursor;
        wsgate_page *p = NULL;
        wsgate_status st = wsgate_connections_list(it->c, &q, &p);
        if (st != WSGATE_OK)
            return st; /* the iterator stays where it was: next may try again */
        int oom = 0;
        char *cur = sdk_strdup(wsgate_page_next_cursor(p), &oom);
        if (oom) {
            wsgate_page_free(p);
            return sdk_fail(WSGATE_ENOMEM, "out of memory");
        }
        wsgate_page_free(it->page);
        free(it->cursor);
        it->page = p;
        it->cursor = cur;
        it->last = cur == NULL;
        it->next = 0;
    }
    *conn = &it->page->conns[it->next++].pub;
    return WSGATE_OK;
}

void wsgate_conn_iter_free(wsgate_conn_iter *it)
{
    if (!it)
        return;
    free((char *)it->q.user);
    free((char *)it->q.route);
    free((char *)it->q.channel);
    free(it->cursor);
    wsgate_page_free(it->page);
    free(it);
}
