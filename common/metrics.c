/* SPDX-License-Identifier: MIT */
/* metrics.c — storage and Prometheus rendering for metrics.h. */
#include "common/metrics.h"
#include "common/err.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bucket upper bounds in seconds: 0.5 ms .. 30 s, roughly x2.5 apart. */
static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,   0.5,   1,      2.5,   5,    10,    30};
#define N_BUCKETS (sizeof bucket_le / sizeof bucket_le[0])

typedef struct {
    _Atomic uint64_t buckets[N_BUCKETS + 1]; /* last = +Inf */
    _Atomic uint64_t sum_us;
    _Atomic uint64_t count;
} hist_t;

static _Atomic uint64_t counters[WSG_M__COUNT];
static _Atomic int64_t gauges[WSG_G__COUNT];
static hist_t hists[WSG_H__COUNT];

/* name, help (NULL: the family's HELP was given already), labels (NULL: none) */
static const char *const counter_meta[][3] = {
#define X(e, n, h) {n, h, NULL},
#define XL(e, n, l, h) {n, h, l},
    WSG_COUNTERS(X) WSG_LABELLED_COUNTERS(XL)
#undef XL
#undef X
};
static const char *const gauge_meta[][2] = {
#define X(e, n, h) {n, h},
    WSG_GAUGES(X)
#undef X
};
static const char *const hist_meta[][2] = {
#define X(e, n, h) {n, h},
    WSG_HISTOGRAMS(X)
#undef X
};

void wsg_count(int c, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

void wsg_gauge_set(int g, int64_t v)
{
    atomic_store_explicit(&gauges[g], v, memory_order_relaxed);
}

void wsg_gauge_add(int g, int64_t d)
{
    atomic_fetch_add_explicit(&gauges[g], d, memory_order_relaxed);
}

/* Above this a duration is a broken clock, not a measurement; the cap also
 * keeps s * 1e6 inside uint64_t. */
#define MAX_OBSERVED_S 1e9

void wsg_observe(int h, double s)
{
    if (!(s >= 0)) /* negative (a clock stepped back) or NaN */
        s = 0;
    if (s > MAX_OBSERVED_S)
        s = MAX_OBSERVED_S;
    size_t i = 0;
    while (i < N_BUCKETS && s > bucket_le[i])
        i++;
    atomic_fetch_add_explicit(&hists[h].buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hists[h].sum_us, (uint64_t)(s * 1e6), memory_order_relaxed);
    atomic_fetch_add_explicit(&hists[h].count, 1, memory_order_relaxed);
}

void wsg_histogram_read(int h, const double *q, double *q_le, size_t nq, uint64_t *count,
                        double *sum)
{
    uint64_t b[N_BUCKETS + 1], total = 0;
    for (size_t i = 0; i <= N_BUCKETS; i++)
        total += b[i] = atomic_load_explicit(&hists[h].buckets[i], memory_order_relaxed);
    *count = total; /* the buckets' sum, so the quantiles agree with it */
    *sum = (double)atomic_load_explicit(&hists[h].sum_us, memory_order_relaxed) / 1e6;
    for (size_t k = 0; k < nq; k++) {
        q_le[k] = -1;
        if (!total)
            continue;
        double x = q[k] * (double)total;
        uint64_t want = (uint64_t)x, cum = 0;
        if ((double)want < x) /* ceil, without libm */
            want++;
        for (size_t i = 0; i <= N_BUCKETS; i++) {
            cum += b[i];
            if (cum >= want && cum > 0) {
                q_le[k] = i < N_BUCKETS ? bucket_le[i] : HUGE_VAL;
                break;
            }
        }
    }
}

uint64_t wsg_counter_value(int c)
{
    return atomic_load_explicit(&counters[c], memory_order_relaxed);
}

int64_t wsg_gauge_value(int g)
{
    return atomic_load_explicit(&gauges[g], memory_order_relaxed);
}

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} buf_t;

static void bprintf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        char *np = realloc(b->p, b->cap * 2 + (size_t)n);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = b->cap * 2 + (size_t)n;
    }
}

static void render_hist(buf_t *b, int h)
{
    const char *name = hist_meta[h][0];
    uint64_t cum = 0;
    bprintf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, hist_meta[h][1], name);
    for (size_t i = 0; i <= N_BUCKETS; i++) {
        cum += atomic_load_explicit(&hists[h].buckets[i], memory_order_relaxed);
        if (i < N_BUCKETS)
            bprintf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_le[i], (unsigned long long)cum);
        else
            bprintf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    }
    bprintf(b, "%s_sum %.6f\n%s_count %llu\n", name,
            (double)atomic_load_explicit(&hists[h].sum_us, memory_order_relaxed) / 1e6, name,
            (unsigned long long)atomic_load_explicit(&hists[h].count, memory_order_relaxed));
}

int wsg_metrics_render(char **out, size_t *len)
{
    buf_t b = {malloc(8192), 0, 8192, 0};
    if (!b.p)
        return WSG_ENOMEM;
    for (int i = 0; i < WSG_M__COUNT; i++) {
        const char *name = counter_meta[i][0], *help = counter_meta[i][1],
                   *labels = counter_meta[i][2];
        if (help)
            bprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
        bprintf(&b, "%s%s%s%s %llu\n", name, labels ? "{" : "", labels ? labels : "",
                labels ? "}" : "", (unsigned long long)wsg_counter_value(i));
    }
    for (int i = 0; i < WSG_G__COUNT; i++)
        bprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", gauge_meta[i][0], gauge_meta[i][1],
                gauge_meta[i][0], gauge_meta[i][0], (long long)wsg_gauge_value(i));
    for (int i = 0; i < WSG_H__COUNT; i++)
        render_hist(&b, i);
    if (b.oom) {
        free(b.p);
        return WSG_ENOMEM;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
