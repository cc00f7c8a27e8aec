/* SPDX-License-Identifier: MIT */
/*
 * hash.h — the one string hash wsgate uses for its tables and for the NATS
 * partition of a connection (64-bit FNV-1a). The partition depends on it:
 * every process of a cluster must hash alike, so it never changes.
 * Header-only; any thread.
 */
#ifndef WSG_HASH_H
#define WSG_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t wsg_hashn(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Of a NUL-terminated string. */
static inline uint64_t wsg_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

#endif
