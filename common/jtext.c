/* SPDX-License-Identifier: MIT */
/*
 * jtext.c — JSON text written straight into a growing buffer (jtext.h).
 * A jansson tree costs a dozen allocations per event (docs/performance.md,
 * "Design notes"); jansson still parses everything wsgate reads.
 *
 * Strings given here must be valid UTF-8: the edge checks each text message
 * and close reason itself (edge_conn.c, wsg_utf8_valid; lws does not), and
 * claims, users and paths come out of jansson, the config loader or the
 * store; only the characters JSON requires are escaped. Any thread, one
 * buffer per caller.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/jtext.h"
#include "common/text.h"

void wsg_sb_put(wsg_sbuf_t *b, const char *s, size_t n)
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

void wsg_sb_reserve(wsg_sbuf_t *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return;
    char *p = realloc(b->p, b->len + n + 1);
    if (!p)
        abort();
    b->p = p;
    b->cap = b->len + n + 1;
}

void wsg_sb_strn(wsg_sbuf_t *b, const char *s, size_t n)
{
    wsg_sb_put(b, "\"", 1);
    const char *run = s, *end = s + n;
    for (const char *p = s; p < end; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        wsg_sb_put(b, run, (size_t)(p - run));
        char esc[8];
        int k = ch == '"' || ch == '\\' ? snprintf(esc, sizeof esc, "\\%c", ch)
                                        : snprintf(esc, sizeof esc, "\\u%04x", ch);
        wsg_sb_put(b, esc, (size_t)k);
        run = p + 1;
    }
    wsg_sb_put(b, run, (size_t)(end - run));
    wsg_sb_put(b, "\"", 1);
}

void wsg_sb_str(wsg_sbuf_t *b, const char *s)
{
    wsg_sb_strn(b, s, strlen(s));
}

void wsg_sb_member(wsg_sbuf_t *b, const char *name, const char *val)
{
    wsg_sb_put(b, ",\"", 2);
    wsg_sb_puts(b, name);
    wsg_sb_put(b, "\":", 2);
    wsg_sb_str(b, val);
}

int wsg_json_ok(const char *s)
{
    return wsg_utf8_valid(s, strlen(s));
}
