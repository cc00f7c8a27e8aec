/* SPDX-License-Identifier: MIT */
/*
 * disp_proto_grip.c — Pushpin's WebSocket-over-HTTP protocol with GRIP
 * control messages (route `protocol: grip`; docs/compat.md says field by
 * field what matches Pushpin). A connection's events go out as
 * application/websocket-events (OPEN, TEXT, BINARY, CLOSE, DISCONNECT) with
 * Connection-Id, Sec-WebSocket-Extensions: grip and a Grip-Sig JWT (HS256,
 * iss "pushpin", signed with the route's webhook key); the backend's events
 * become wsgate's response actions: TEXT/BINARY send, CLOSE and DISCONNECT
 * close, "c:" control messages subscribe or unsubscribe. An answer to OPEN
 * without OPEN refuses the connection (closed 1008, since wsgate's connect
 * webhook runs after the upgrade). A body that is not websocket-events fails
 * the attempt (retried, then dead-lettered), as any failed webhook does.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"
#include "common/close.h"
#include "common/err.h"
#include "common/jtext.h"
#include "common/jwt.h"
#include "common/text.h"
#include "common/webhook.h"
#include "dispatcher/disp_proto.h"

void disp_grip_event(wsg_sbuf_t *b, const char *type, const void *content, size_t len,
                     bool has_content)
{
    char head[48];
    int n = has_content ? snprintf(head, sizeof head, "%s %zx\r\n", type, len)
                        : snprintf(head, sizeof head, "%s\r\n", type);
    wsg_sb_put(b, head, (size_t)n);
    if (has_content) {
        wsg_sb_put(b, content, len);
        wsg_sb_put(b, "\r\n", 2);
    }
}

/* A message envelope: TEXT with data, BINARY with decoded data_base64. */
static int message_event(wsg_sbuf_t *b, json_t *env)
{
    json_t *d = json_object_get(env, "data"), *b64 = json_object_get(env, "data_base64");
    if (json_is_string(d)) {
        disp_grip_event(b, "TEXT", json_string_value(d), json_string_length(d), true);
        return 0;
    }
    if (!json_is_string(b64))
        return WSG_EPROTO;
    size_t n = json_string_length(b64), out = 0;
    unsigned char *raw = malloc(n / 4 * 3 + 4);
    if (!raw)
        return WSG_ENOMEM;
    int rc = wsg_b64_decode(json_string_value(b64), n, raw, &out) == 0 ? 0 : WSG_EPROTO;
    if (rc == 0)
        disp_grip_event(b, "BINARY", raw, out, true);
    free(raw);
    return rc;
}

/* A disconnect: CLOSE with the code the close handshake carried (none for
 * 1005), DISCONNECT when there was no close handshake (1006, edge lost). */
static int disconnect_event(wsg_sbuf_t *b, json_t *env)
{
    json_int_t code = json_integer_value(json_object_get(env, "code"));
    const char *why = json_string_value(json_object_get(env, "reason"));
    const char *who = json_string_value(json_object_get(env, "initiator"));
    if (code == WSG_CLOSE_ABNORMAL || code <= 0 || (who && strcmp(who, "edge_lost") == 0)) {
        disp_grip_event(b, "DISCONNECT", NULL, 0, false);
        return 0;
    }
    if (code == WSG_CLOSE_NO_STATUS) {
        disp_grip_event(b, "CLOSE", NULL, 0, false);
        return 0;
    }
    size_t rl = why ? strlen(why) : 0;
    unsigned char c[2 + WSG_CLOSE_REASON_MAX];
    if (rl > WSG_CLOSE_REASON_MAX)
        rl = WSG_CLOSE_REASON_MAX;
    c[0] = (unsigned char)((code >> 8) & 0xff);
    c[1] = (unsigned char)(code & 0xff);
    if (rl)
        memcpy(c + 2, why, rl);
    disp_grip_event(b, "CLOSE", c, 2 + rl, true);
    return 0;
}

static int one_event(wsg_sbuf_t *b, const bus_event_t *ev, char *err, size_t errlen)
{
    if (ev->type == BUS_EV_CONNECT) {
        disp_grip_event(b, "OPEN", NULL, 0, false);
        return 0;
    }
    json_error_t je;
    json_t *env = json_loadb(ev->body ? ev->body : "", ev->body_len, 0, &je);
    if (!env)
        return wsg_errf(err, errlen, WSG_EPROTO, "event %s: envelope is not JSON", ev->id);
    int rc = ev->type == BUS_EV_MESSAGE      ? message_event(b, env)
             : ev->type == BUS_EV_DISCONNECT ? disconnect_event(b, env)
                                             : WSG_EPROTO;
    json_decref(env);
    if (rc == WSG_EPROTO)
        wsg_errf(err, errlen, rc, "event %s: not a connect, message or disconnect", ev->id);
    return rc;
}

static int grip_body(const wsg_route_conf_t *r, const bus_event_t *const *evs, size_t n,
                     const char **body, size_t *len, char **owned, char *err, size_t errlen)
{
    (void)r;
    wsg_sbuf_t b = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = one_event(&b, evs[i], err, errlen);
    if (rc != 0) {
        free(b.p);
        return rc;
    }
    *owned = b.p;
    *body = b.p;
    *len = b.len;
    return 0;
}

/* Grip-Sig: what Pushpin sends so that a backend can tell the request came
 * through its proxy. */
static int grip_headers(const wsg_route_conf_t *r, const char *conn_id,
                        const struct curl_slist *meta, struct curl_slist **l)
{
    char *sig = NULL, err[128];
    wsg_mint_t m = {.alg = WSG_ALG_HS256,
                    .key = (const char *)r->webhook_key,
                    .key_len = r->webhook_key_len,
                    .issuer = "pushpin",
                    .exp = (int64_t)time(NULL) + DISP_GRIP_SIG_TTL_S};
    int rc = wsg_jwt_mint(&m, &sig, err, sizeof err);
    if (rc == 0)
        rc = wsg_header_add(l, "Grip-Sig: %s", sig);
    free(sig);
    if (rc == 0)
        rc = wsg_header_add(l, "Connection-Id: %s", conn_id);
    if (rc == 0)
        rc = wsg_header_add(l, "Sec-WebSocket-Extensions: grip");
    if (rc == 0)
        rc = wsg_header_add(l, "Accept: application/websocket-events");
    for (; rc == 0 && meta; meta = meta->next)
        rc = wsg_header_add(l, "%s", meta->data);
    return rc;
}

const disp_proto_t disp_proto_grip = {
    .name = "grip",
    .content_type = "application/websocket-events",
    .strict_answer = true,
    .dead_connect_closes = true,
    .keeps_meta = true,
    .body = grip_body,
    .headers = grip_headers,
    .parse = disp_grip_parse,
};
