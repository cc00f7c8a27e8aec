/* SPDX-License-Identifier: MIT */
/*
 * clock.h — the two clocks wsgate reads, in milliseconds, and a deadline
 * for pthread_cond_timedwait (which waits on CLOCK_REALTIME by default).
 * Monotonic for timeouts and intervals; wall clock for anything stored or
 * sent (timestamps in events, heartbeats, store rows).
 * Header-only; any thread.
 */
#ifndef WSG_CLOCK_H
#define WSG_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t wsg_ms_of(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

/* Milliseconds on CLOCK_MONOTONIC: for timeouts and intervals. */
static inline int64_t wsg_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return wsg_ms_of(&ts);
}

/* Nanoseconds on CLOCK_MONOTONIC: for latencies. */
static inline int64_t wsg_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Milliseconds on CLOCK_MONOTONIC_COARSE (the last tick, a few ms old, and
 * no system call): for deadlines checked very often and coarse anyway. */
static inline int64_t wsg_mono_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return wsg_ms_of(&ts);
}

/* Milliseconds since the Unix epoch: for timestamps that leave the process. */
static inline int64_t wsg_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return wsg_ms_of(&ts);
}

/* Seconds since the Unix epoch: JWT exp/iat/nbf, webhook timestamps. */
static inline int64_t wsg_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* The CLOCK_REALTIME instant ms from now, for pthread_cond_timedwait(). */
static inline struct timespec wsg_deadline_in(uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

#endif
