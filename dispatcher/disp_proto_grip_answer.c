/* SPDX-License-Identifier: MIT */
/*
 * disp_proto_grip_answer.c — reads a grip backend's answer
 * (application/websocket-events) into wsgate's response actions, in order:
 * TEXT -> send text ("c:" -> GRIP control message: subscribe, unsubscribe;
 * "m:" prefix stripped), BINARY -> send binary, CLOSE -> close with its
 * code (none: 1000), DISCONNECT -> close 1000. OPEN accepts a connection;
 * an answer to OPEN without it refuses it: all else is dropped and the
 * connection closed 1008 "refused by backend". PING, PONG, and control
 * messages wsgate does not act on (detach, keep-alive, ...) are counted in
 * `ignored`; a malformed event makes the whole answer WSG_EPROTO.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/close.h"
#include "common/err.h"
#include "common/text.h"
#include "dispatcher/disp_proto.h"

typedef struct {
    const char *type;
    size_t type_len;
    const char *content; /* NULL: the event has none */
    size_t len;
} grip_ev_t;

/* Reads the event at *at; 0, or WSG_EPROTO for bad framing. */
static int next_event(const char *p, size_t n, size_t *at, grip_ev_t *ev)
{
    size_t i = *at, t0 = i;
    while (i < n && p[i] >= 'A' && p[i] <= 'Z')
        i++;
    ev->type = p + t0;
    ev->type_len = i - t0;
    ev->content = NULL;
    ev->len = 0;
    if (ev->type_len == 0 || i >= n)
        return WSG_EPROTO;
    if (p[i] == ' ') {
        size_t h0 = ++i, v = 0;
        for (; i < n && i - h0 < 8; i++) {
            char c = p[i];
            int d = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (d < 0)
                break;
            v = v * 16 + (size_t)d;
        }
        if (i == h0 || i + 2 > n || p[i] != '\r' || p[i + 1] != '\n' || n - (i + 2) < v + 2)
            return WSG_EPROTO;
        ev->content = p + i + 2;
        ev->len = v;
        i += 2 + v;
    }
    if (i + 2 > n || p[i] != '\r' || p[i + 1] != '\n')
        return WSG_EPROTO;
    *at = i + 2;
    return 0;
}

static bool is_type(const grip_ev_t *ev, const char *name)
{
    return ev->type_len == strlen(name) && memcmp(ev->type, name, ev->type_len) == 0;
}

static disp_action_t *push(disp_answer_t *out, size_t *cap)
{
    if (out->n == *cap) {
        size_t c = *cap ? *cap * 2 : 4;
        disp_action_t *a = realloc(out->acts, c * sizeof *a);
        if (!a)
            return NULL;
        out->acts = a;
        *cap = c;
    }
    disp_action_t *a = &out->acts[out->n];
    memset(a, 0, sizeof *a);
    return a;
}

static int act_send(disp_answer_t *out, size_t *cap, const char *p, size_t n, int binary)
{
    disp_action_t *a = push(out, cap);
    if (!a || !(a->data = malloc(n + 1)))
        return WSG_ENOMEM;
    memcpy(a->data, p, n);
    a->data[n] = '\0';
    a->len = n;
    a->binary = binary;
    a->op = BUS_CMD_SEND;
    out->n++;
    return 0;
}

static int act_close(disp_answer_t *out, size_t *cap, int code, const char *why, size_t n)
{
    disp_action_t *a = push(out, cap);
    if (!a || !(a->reason = strndup(why ? why : "", n)))
        return WSG_ENOMEM;
    a->op = BUS_CMD_CLOSE;
    a->code = code;
    out->n++;
    return 0;
}

/* "c:{...}": {"type":"subscribe"|"unsubscribe","channel":..} act; other
 * types are Pushpin's (detach, keep-alive, session, set-meta): ignored. */
static int control(disp_answer_t *out, size_t *cap, const char *p, size_t n)
{
    json_t *m = json_loadb(p, n, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    json_t *ch = json_object_get(m, "channel");
    int rc = 0;
    bool sub = type && strcmp(type, "subscribe") == 0;
    if (!type) {
        out->skipped++;
    } else if (!sub && strcmp(type, "unsubscribe") != 0) {
        out->ignored++;
    } else if (!json_is_string(ch) || strlen(json_string_value(ch)) != json_string_length(ch) ||
               wsg_channel_valid(json_string_value(ch), NULL, 0) != 0) {
        out->skipped++;
    } else {
        disp_action_t *a = push(out, cap);
        if (!a || !(a->channel = strdup(json_string_value(ch))))
            rc = WSG_ENOMEM;
        else {
            a->op = sub ? BUS_CMD_SUBSCRIBE : BUS_CMD_UNSUBSCRIBE;
            out->n++;
        }
    }
    json_decref(m);
    return rc;
}

static int on_close(disp_answer_t *out, size_t *cap, const grip_ev_t *ev)
{
    if (!ev->content || ev->len < 2)
        return act_close(out, cap, WSG_CLOSE_NORMAL, "", 0);
    int code = ((unsigned char)ev->content[0] << 8) | (unsigned char)ev->content[1];
    if (wsg_close_app_check(code, ev->content + 2, ev->len - 2, NULL, 0) != 0) {
        out->skipped++; /* wsgate's rule for applications: 1000 or 4000-4999 */
        return 0;
    }
    return act_close(out, cap, code, ev->content + 2, ev->len - 2);
}

static int one(disp_answer_t *out, size_t *cap, const grip_ev_t *ev)
{
    const char *p = ev->content ? ev->content : "";
    size_t n = ev->len;
    if (is_type(ev, "TEXT")) {
        if (n >= 2 && p[0] == 'c' && p[1] == ':')
            return control(out, cap, p + 2, n - 2);
        if (n >= 2 && p[0] == 'm' && p[1] == ':')
            p += 2, n -= 2;
        return act_send(out, cap, p, n, 0);
    }
    if (is_type(ev, "BINARY"))
        return act_send(out, cap, p, n, 1);
    if (is_type(ev, "CLOSE"))
        return on_close(out, cap, ev);
    if (is_type(ev, "DISCONNECT"))
        return act_close(out, cap, WSG_CLOSE_NORMAL, "", 0);
    if (is_type(ev, "PING") || is_type(ev, "PONG") || is_type(ev, "OPEN")) {
        out->ignored += !is_type(ev, "OPEN");
        return 0;
    }
    return WSG_EPROTO;
}

int disp_grip_parse(const wsg_route_conf_t *r, const char *body, size_t len, bool opening,
                    disp_answer_t *out, char *err, size_t errlen)
{
    (void)r;
    size_t at = 0, cap = 0;
    bool opened = false;
    int rc = 0;
    memset(out, 0, sizeof *out);
    while (rc == 0 && body && at < len) {
        grip_ev_t ev;
        if ((rc = next_event(body, len, &at, &ev)) != 0) {
            wsg_errf(err, errlen, rc, "answer is not application/websocket-events at byte %zu", at);
            break;
        }
        if (opening && !opened && !(opened = is_type(&ev, "OPEN")))
            break; /* Pushpin: the first event of an accept is OPEN */
        if ((rc = one(out, &cap, &ev)) == WSG_EPROTO)
            wsg_errf(err, errlen, rc, "unknown event '%.*s'", (int)ev.type_len, ev.type);
    }
    if (rc == 0 && opening && !opened) {
        disp_actions_free(out->acts, out->n);
        memset(out, 0, sizeof *out);
        rc = act_close(out, &cap, WSG_CLOSE_POLICY, "refused by backend", 18);
    }
    if (rc != 0) {
        disp_actions_free(out->acts, out->n);
        memset(out, 0, sizeof *out);
    }
    return rc;
}
