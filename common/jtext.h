/* SPDX-License-Identifier: MIT */
/*
 * jtext.h — JSON text written straight into a growing buffer, for hot
 * paths: every client event's envelope (ws-edge/edge_events.c, envelope.h)
 * and the authorizer's request body (ws-edge/edge_handshake.c). Any thread,
 * one buffer per caller.
 */
#ifndef WSG_JTEXT_H
#define WSG_JTEXT_H

#include <stddef.h>
#include <string.h>

typedef struct {
    char *p; /* NUL-terminated; the caller frees it */
    size_t len, cap;
} wsg_sbuf_t;

void wsg_sb_put(wsg_sbuf_t *b, const char *s, size_t n);
static inline void wsg_sb_puts(wsg_sbuf_t *b, const char *s)
{
    wsg_sb_put(b, s, strlen(s)); /* strlen of a literal is folded */
}
/* Makes room for n more bytes at once (one allocation for what follows). */
void wsg_sb_reserve(wsg_sbuf_t *b, size_t n);
/* Appends s (valid UTF-8, n bytes, NULs allowed) as a JSON string. */
void wsg_sb_strn(wsg_sbuf_t *b, const char *s, size_t n);
void wsg_sb_str(wsg_sbuf_t *b, const char *s);
/* Appends ,"name":"val" */
void wsg_sb_member(wsg_sbuf_t *b, const char *name, const char *val);
/* 1 when s may go into JSON text: valid UTF-8 (wsg_utf8_valid). */
int wsg_json_ok(const char *s);

#endif
