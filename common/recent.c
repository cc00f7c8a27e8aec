/* SPDX-License-Identifier: MIT */
/*
 * recent.c — the ring of recent events (recent.h). A process-wide ring
 * under one mutex: adding costs a lock and a vsnprintf into a fixed slot.
 *
 * Threads: any (see recent.h).
 */
#include "common/recent.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/clock.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static wsg_recent_t ring[WSG_RECENT_N];
static uint64_t next_seq = 1; /* seq of the next entry; slot = seq % N */

void wsg_recent_add(const char *kind, const char *fmt, ...)
{
    int64_t now = wsg_wall_ms();
    pthread_mutex_lock(&mu);
    wsg_recent_t *e = &ring[next_seq % WSG_RECENT_N];
    e->seq = next_seq++;
    e->at_ms = now;
    snprintf(e->kind, sizeof e->kind, "%s", kind);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&mu);
}

size_t wsg_recent_since(uint64_t after, wsg_recent_t *out, size_t max, uint64_t *last)
{
    size_t n = 0;
    pthread_mutex_lock(&mu);
    uint64_t newest = next_seq - 1;
    uint64_t from = after + 1;
    if (newest >= WSG_RECENT_N && from <= newest - WSG_RECENT_N)
        from = newest - WSG_RECENT_N + 1; /* older ones were overwritten */
    if (newest >= max && from + max <= newest)
        from = newest - max + 1; /* the newest max of them */
    for (uint64_t s = from; s <= newest && n < max; s++)
        out[n++] = ring[s % WSG_RECENT_N];
    *last = newest;
    pthread_mutex_unlock(&mu);
    return n;
}
