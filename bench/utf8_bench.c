/* SPDX-License-Identifier: MIT */
/*
 * utf8_bench.c — the edge's per-message UTF-8 check (common/text.c
 * wsg_utf8_valid, run on every text message a client sends) against a
 * byte-at-a-time baseline with the same rule (the edge's own copy before
 * there was one validator), on ASCII JSON and on mostly 2/3-byte text.
 * Prints ns per KiB for each (fastest of five rounds); nothing is asserted (never on speed).
 *   ./utf8_bench [iterations]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/text.h"

static int baseline(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            k = 1;
        else if (c >= 0xE0 && c <= 0xEF)
            k = 2, lo = c == 0xE0 ? 0xA0 : lo, hi = c == 0xED ? 0x9F : hi;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 3, lo = c == 0xF0 ? 0x90 : lo, hi = c == 0xF4 ? 0x8F : hi;
        else
            return 0;
        if (i + k >= n || s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
        i += k + 1;
    }
    return 1;
}

static void fill(char *buf, size_t n, const char *unit)
{
    size_t u = strlen(unit), i = 0;
    for (; i + u <= n; i += u)
        memcpy(buf + i, unit, u);
    memset(buf + i, ' ', n - i);
}

/* Five alternating rounds; the fastest of each side counts (the machine
 * may be shared, and noise only ever adds time). */
static void run(const char *name, const char *buf, size_t n, long iters)
{
    volatile int sink = 0;
    int64_t best[2] = {INT64_MAX, INT64_MAX};
    for (int round = 0; round < 5; round++) {
        int64_t t0 = wsg_mono_ms();
        for (long i = 0; i < iters; i++)
            sink += baseline((const unsigned char *)buf, n);
        int64_t t1 = wsg_mono_ms();
        for (long i = 0; i < iters; i++)
            sink += wsg_utf8_valid(buf, n);
        int64_t t2 = wsg_mono_ms();
        best[0] = t1 - t0 < best[0] ? t1 - t0 : best[0];
        best[1] = t2 - t1 < best[1] ? t2 - t1 : best[1];
    }
    double kib = (double)n * iters / 1024.0;
    printf("%-6s baseline %.1f ns/KiB  wsg_utf8_valid %.1f ns/KiB  (%d)\n", name,
           (double)best[0] * 1e6 / kib, (double)best[1] * 1e6 / kib, sink);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    static char buf[4096];
    fill(buf, sizeof buf, "{\"type\":\"chat\",\"text\":\"hello there\",\"n\":17}");
    run("ascii", buf, sizeof buf, iters);
    fill(buf, sizeof buf, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 ");
    run("mixed", buf, sizeof buf, iters);
    fill(buf, sizeof buf, "ok");
    run("short", buf, 64, iters * 64);
    return 0;
}
