/* SPDX-License-Identifier: MIT */
/*
 * recent.h — a bounded ring of this process's recent events, for the
 * operator dashboard's live tail (GET /v1/stats, docs/dashboard.md).
 *
 * Whoever sees an event worth showing (the API's registry: connects,
 * disconnects, subscriptions; the dispatcher: webhook answers and dead
 * letters) adds one line of text under a kind. The ring keeps the last
 * WSG_RECENT_N; each entry has a sequence number (from 1, increasing) so a
 * reader asks for what came after the last one it saw. Memory is fixed:
 * WSG_RECENT_N entries of fixed size, nothing is allocated when adding.
 *
 * Threads: everything may be called from any thread (one mutex).
 */
#ifndef WSG_RECENT_H
#define WSG_RECENT_H

#include <stddef.h>
#include <stdint.h>

#define WSG_RECENT_N 256
#define WSG_RECENT_TEXT 192

typedef struct {
    uint64_t seq;
    int64_t at_ms; /* wall clock, Unix ms */
    char kind[16];
    char text[WSG_RECENT_TEXT];
} wsg_recent_t;

/* Adds an event (text truncated to fit). */
void wsg_recent_add(const char *kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies up to max entries with seq > after, oldest first, into out.
 * Returns how many; *last gets the newest seq added so far (0: none). */
size_t wsg_recent_since(uint64_t after, wsg_recent_t *out, size_t max, uint64_t *last);

#endif
