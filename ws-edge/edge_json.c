/*
 * edge_json.c — JSON text written straight into a growing buffer, for the
 * edge's hot paths: every client event's envelope (edge_events.c) and the
 * authorizer's request body (edge_handshake.c). A jansson tree costs a
 * dozen allocations per event (docs/performance.md, "Design notes");
 * jansson still parses everything the edge reads (tokens' claims,
 * authorizer answers).
 *
 * Strings given here must be valid UTF-8: the edge checks each text message
 * and close reason itself (edge_conn.c, wsg_utf8_valid; lws does not), and
 * claims, users and paths come out of jansson or the config loader; only
 * the characters JSON requires are escaped. Any thread, one buffer per
 * caller.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws-edge/edge_int.h"

void edge_sb_put(edge_sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void edge_sb_reserve(edge_sbuf_t *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return;
    char *p = realloc(b->p, b->len + n + 1);
    if (!p)
        abort();
    b->p = p;
    b->cap = b->len + n + 1;
}

void edge_sb_strn(edge_sbuf_t *b, const char *s, size_t n)
{
    edge_sb_put(b, "\"", 1);
    const char *run = s, *end = s + n;
    for (const char *p = s; p < end; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        edge_sb_put(b, run, (size_t)(p - run));
        char esc[8];
        int k = ch == '"' || ch == '\\' ? snprintf(esc, sizeof esc, "\\%c", ch)
                                        : snprintf(esc, sizeof esc, "\\u%04x", ch);
        edge_sb_put(b, esc, (size_t)k);
        run = p + 1;
    }
    edge_sb_put(b, run, (size_t)(end - run));
    edge_sb_put(b, "\"", 1);
}

void edge_sb_str(edge_sbuf_t *b, const char *s)
{
    edge_sb_strn(b, s, strlen(s));
}

void edge_sb_member(edge_sbuf_t *b, const char *name, const char *val)
{
    edge_sb_put(b, ",\"", 2);
    edge_sb_puts(b, name);
    edge_sb_put(b, "\":", 2);
    edge_sb_str(b, val);
}

int edge_json_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p >= 0x80) {
            json_t *v = json_string(s);
            json_decref(v);
            return v != NULL;
        }
    return 1;
}
