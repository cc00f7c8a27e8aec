/* SPDX-License-Identifier: MIT */
/*
 * calls.c — the control-API endpoints that answer with a status only (send,
 * disconnect, subscribe, publish, broadcast, per-user calls, replay,
 * health). Each builds its path with escaped segments and runs sdk_call().
 * Threads: any; the client is shared (client.c).
 */
#include <stdio.h>
#include <string.h>

#include "sdk.h"

/* "/v1/<a>/<escaped b>[/<c>[/<escaped d>]]<tail>" into b; NULL parts end it. */
static void path(sdk_buf_t *b, const char *a, const char *seg1, const char *c, const char *seg2)
{
    sdk_buf_str(b, "/v1/");
    sdk_buf_str(b, a);
    sdk_buf_str(b, "/");
    sdk_buf_escaped(b, seg1);
    if (c) {
        sdk_buf_str(b, "/");
        sdk_buf_str(b, c);
    }
    if (seg2) {
        sdk_buf_str(b, "/");
        sdk_buf_escaped(b, seg2);
    }
}

static int bad_name(const char *s)
{
    return !s || !*s;
}

#define REQUIRE(cond, what)                                                                        \
    do {                                                                                           \
        if (!c || !(cond))                                                                         \
            return sdk_fail(WSGATE_EINVAL, "client and %s are required", what);                    \
    } while (0)

static wsgate_status run(wsgate_client *c, const char *method, sdk_buf_t *pq)
{
    wsgate_status st = pq->oom ? sdk_fail(WSGATE_ENOMEM, "out of memory") : WSGATE_OK;
    if (st == WSGATE_OK) {
        sdk_req_t rq = {.method = method, .path_query = pq->p};
        st = sdk_call(c, &rq, NULL);
    }
    sdk_buf_free(pq);
    return st;
}

static wsgate_status run_frame(wsgate_client *c, sdk_buf_t *pq, wsgate_kind kind, const void *data,
                               size_t len, json_t **json)
{
    wsgate_status st = pq->oom ? sdk_fail(WSGATE_ENOMEM, "out of memory")
                               : sdk_call_frame(c, pq->p, kind, data, len, json);
    sdk_buf_free(pq);
    return st;
}

wsgate_status wsgate_send(wsgate_client *c, const char *conn_id, wsgate_kind kind, const void *data,
                          size_t len)
{
    REQUIRE(!bad_name(conn_id), "a connection id");
    sdk_buf_t pq = {0};
    path(&pq, "connections", conn_id, "messages", NULL);
    return run_frame(c, &pq, kind, data, len, NULL);
}

wsgate_status wsgate_send_text(wsgate_client *c, const char *conn_id, const char *text)
{
    REQUIRE(text, "text");
    return wsgate_send(c, conn_id, WSGATE_TEXT, text, strlen(text));
}

/* "?code=N&reason=R" for the two disconnect calls. */
static wsgate_status close_query(sdk_buf_t *pq, int code, const char *reason)
{
    if (code != 0 && code != 1000 && (code < 4000 || code > 4999))
        return sdk_fail(WSGATE_EINVAL, "close code must be 0, 1000 or 4000-4999");
    if (reason && strlen(reason) > 123)
        return sdk_fail(WSGATE_EINVAL, "close reason is over 123 bytes");
    char num[16];
    snprintf(num, sizeof num, "%d", code);
    sdk_buf_query(pq, "code", code ? num : NULL);
    sdk_buf_query(pq, "reason", reason);
    return WSGATE_OK;
}

wsgate_status wsgate_disconnect(wsgate_client *c, const char *conn_id, int code, const char *reason)
{
    REQUIRE(!bad_name(conn_id), "a connection id");
    sdk_buf_t pq = {0};
    path(&pq, "connections", conn_id, NULL, NULL);
    wsgate_status st = close_query(&pq, code, reason);
    if (st != WSGATE_OK) {
        sdk_buf_free(&pq);
        return st;
    }
    return run(c, "DELETE", &pq);
}

wsgate_status wsgate_subscribe(wsgate_client *c, const char *channel, const char *conn_id)
{
    REQUIRE(!bad_name(channel) && !bad_name(conn_id), "a channel and a connection id");
    sdk_buf_t pq = {0};
    path(&pq, "channels", channel, "connections", conn_id);
    return run(c, "PUT", &pq);
}

wsgate_status wsgate_unsubscribe(wsgate_client *c, const char *channel, const char *conn_id)
{
    REQUIRE(!bad_name(channel) && !bad_name(conn_id), "a channel and a connection id");
    sdk_buf_t pq = {0};
    path(&pq, "channels", channel, "connections", conn_id);
    return run(c, "DELETE", &pq);
}

wsgate_status wsgate_publish(wsgate_client *c, const char *channel, wsgate_kind kind,
                             const void *data, size_t len, const char *exclude_conn_id)
{
    REQUIRE(!bad_name(channel), "a channel");
    sdk_buf_t pq = {0};
    path(&pq, "channels", channel, "messages", NULL);
    sdk_buf_query(&pq, "exclude", exclude_conn_id);
    return run_frame(c, &pq, kind, data, len, NULL);
}

wsgate_status wsgate_broadcast(wsgate_client *c, const char *route, wsgate_kind kind,
                               const void *data, size_t len)
{
    REQUIRE(1, "data");
    sdk_buf_t pq = {0};
    sdk_buf_str(&pq, "/v1/broadcast");
    sdk_buf_query(&pq, "route", route);
    return run_frame(c, &pq, kind, data, len, NULL);
}

wsgate_status wsgate_user_send(wsgate_client *c, const char *user, wsgate_kind kind,
                               const void *data, size_t len, int64_t *n_connections)
{
    REQUIRE(!bad_name(user), "a user");
    sdk_buf_t pq = {0};
    json_t *j = NULL;
    path(&pq, "users", user, "messages", NULL);
    wsgate_status st = run_frame(c, &pq, kind, data, len, &j);
    if (st == WSGATE_OK && n_connections)
        *n_connections = (int64_t)json_integer_value(json_object_get(j, "connections"));
    json_decref(j);
    return st;
}

wsgate_status wsgate_user_disconnect(wsgate_client *c, const char *user, int code,
                                     const char *reason)
{
    REQUIRE(!bad_name(user), "a user");
    sdk_buf_t pq = {0};
    path(&pq, "users", user, NULL, NULL);
    wsgate_status st = close_query(&pq, code, reason);
    if (st != WSGATE_OK) {
        sdk_buf_free(&pq);
        return st;
    }
    return run(c, "DELETE", &pq);
}

wsgate_status wsgate_dead_letter_replay(wsgate_client *c, const char *event_id)
{
    REQUIRE(!bad_name(event_id), "an event id");
    sdk_buf_t pq = {0};
    path(&pq, "dead-letters", event_id, "replay", NULL);
    return run(c, "POST", &pq);
}

wsgate_status wsgate_health(wsgate_client *c, int ready)
{
    REQUIRE(1, "nothing else");
    sdk_req_t rq = {.method = "GET", .path_query = ready ? "/readyz" : "/healthz", .no_auth = 1};
    return sdk_call(c, &rq, NULL);
}
