/* SPDX-License-Identifier: MIT */
/* hist.c — see hist.h. */
#include "hist.h"

#include <time.h>

static int bucket_of(uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us < HIST_SUB)
        return (int)us;
    int p = 63 - __builtin_clzll(us); /* us in [2^p, 2^(p+1)) */
    int sub = (int)((us >> (p - 4)) & (HIST_SUB - 1));
    int i = (p - 3) * HIST_SUB + sub;
    return i >= HIST_N ? HIST_N - 1 : i;
}

/* Upper bound of bucket i, in ns. */
static uint64_t bucket_top(int i)
{
    if (i < HIST_SUB)
        return (uint64_t)(i + 1) * 1000;
    int p = i / HIST_SUB + 3, sub = i % HIST_SUB;
    return (((uint64_t)(HIST_SUB + sub + 1)) << (p - 4)) * 1000;
}

void hist_add(hist_t *h, uint64_t ns)
{
    h->b[bucket_of(ns)]++;
    h->count++;
    h->sum_ns += (double)ns;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void hist_merge(hist_t *into, const hist_t *from)
{
    for (int i = 0; i < HIST_N; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum_ns += from->sum_ns;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
}

uint64_t hist_quantile(const hist_t *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count + 0.5), seen = 0;
    if (want < 1)
        want = 1;
    for (int i = 0; i < HIST_N; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t top = bucket_top(i);
            return top < h->max_ns ? top : h->max_ns;
        }
    }
    return h->max_ns;
}

uint64_t hist_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
