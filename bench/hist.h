/* SPDX-License-Identifier: MIT */
/*
 * hist.h — a log-bucket latency histogram for the benchmarks: 16 buckets per
 * power of two from 1 µs to ~1000 s, so any percentile is within ~4%.
 * Not thread-safe: one histogram per thread, merge with hist_merge().
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB 16
#define HIST_POW 30
#define HIST_N (HIST_SUB * HIST_POW)

typedef struct {
    uint64_t b[HIST_N];
    uint64_t count;
    uint64_t max_ns;
    double sum_ns;
} hist_t;

void hist_add(hist_t *h, uint64_t ns);
void hist_merge(hist_t *into, const hist_t *from);
/* Value in ns at quantile q (0..1); 0 when empty. */
uint64_t hist_quantile(const hist_t *h, double q);
/* Monotonic clock in ns (same clock across processes on one machine). */
uint64_t hist_now_ns(void);

#endif
