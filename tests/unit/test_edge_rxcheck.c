/* SPDX-License-Identifier: MIT */
/*
 * test_edge_rxcheck.c — ws-edge/edge_rxcheck.c's frame-header walk
 * (edge_rxcheck_scan): a stream of masked frames of every length form
 * (7-bit, 16-bit, 64-bit) passes whole however it is cut into reads; an
 * unmasked frame stops it where that frame starts, also when its header is
 * cut across reads, and nothing passes after it; `wait` counts the data
 * frames before it that are not finished before the read that found it;
 * with permessage-deflate, RSV1 is taken off each data message's first
 * frame (not off control or continuation frames) and noted in order, also
 * for more messages than the ring first holds and across every cut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws-edge/edge_int.h"

/* Appends a frame to out (at *n): masked unless mask is 0; the key and the
 * payload bytes are arbitrary (the walk never reads them). */
static void put_frame(unsigned char *out, size_t *n, int op, size_t len, int mask)
{
    unsigned char *p = out + *n;
    *p++ = (unsigned char)(0x80 | op);
    unsigned char m = mask ? 0x80 : 0;
    if (len < 126) {
        *p++ = (unsigned char)(m | len);
    } else if (len < 65536) {
        *p++ = m | 126;
        *p++ = (unsigned char)(len >> 8);
        *p++ = (unsigned char)len;
    } else {
        *p++ = m | 127;
        for (int i = 7; i >= 0; i--)
            *p++ = (unsigned char)((uint64_t)len >> (8 * i));
    }
    if (mask) {
        memcpy(p, "\x12\x34\x56\x78", 4);
        p += 4;
    }
    memset(p, 0x81, len); /* looks like a header byte if ever misread */
    *n = (size_t)(p + len - out);
}

static unsigned char stream[300000];

/* Feeds stream[0..n) in reads of `step` bytes; returns the bytes passed. */
static size_t feed(edge_rxcheck_t *s, size_t n, size_t step)
{
    size_t passed = 0;
    for (size_t at = 0; at < n; at += step) {
        size_t k = n - at < step ? n - at : step;
        size_t ok = edge_rxcheck_scan(s, stream + at, k);
        passed += ok;
        if (ok < k)
            break;
    }
    return passed;
}

static void masked_stream_passes_whole(void **state)
{
    (void)state;
    size_t n = 0;
    put_frame(stream, &n, 1, 0, 1);
    put_frame(stream, &n, 2, 125, 1);
    put_frame(stream, &n, 9, 3, 1);
    put_frame(stream, &n, 1, 126, 1);
    put_frame(stream, &n, 0, 65535, 1);
    put_frame(stream, &n, 2, 70000, 1);
    put_frame(stream, &n, 10, 0, 1);
    const size_t steps[] = {1, 2, 3, 7, 512, 4096, sizeof stream};
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        edge_rxcheck_t s = {0};
        assert_int_equal(feed(&s, n, steps[i]), n);
        assert_int_equal(s.unmasked, 0);
        assert_int_equal(s.skip, 0);
        assert_int_equal(s.hdr_len, 0);
    }
}

static void unmasked_stops_where_it_starts(void **state)
{
    (void)state;
    for (int op = 0; op < 16; op++) {
        size_t n = 0, before;
        put_frame(stream, &n, 1, 10, 1);
        put_frame(stream, &n, 2, 300, 1);
        before = n;
        put_frame(stream, &n, op, 5, 0);
        put_frame(stream, &n, 1, 5, 1);
        for (size_t step = 1; step <= n; step += step < 20 ? 1 : 97) {
            edge_rxcheck_t s = {0};
            /* a read ending after its first byte passed that byte (lws then
             * holds one byte of a header and never gets the second) */
            size_t want = (before + 1) % step == 0 ? before + 1 : before;
            assert_int_equal(feed(&s, n, step), want);
            assert_int_equal(s.unmasked, 1);
            assert_int_equal(edge_rxcheck_scan(&s, stream, n), 0); /* nothing after it */
        }
    }
}

static void wait_counts_undelivered_data_frames(void **state)
{
    (void)state;
    size_t n = 0;
    put_frame(stream, &n, 1, 10, 1);
    put_frame(stream, &n, 9, 1, 1); /* a ping: lws answers it, the edge never sees it */
    put_frame(stream, &n, 2, 0, 1);
    put_frame(stream, &n, 1, 5, 0);
    edge_rxcheck_t s = {0};
    edge_rxcheck_scan(&s, stream, n); /* all in one read: two data frames before it */
    assert_int_equal(s.unmasked, 1);
    assert_int_equal(s.wait, 2);

    /* the first frame's payload runs on into the read that finds it */
    edge_rxcheck_t t = {0};
    assert_int_equal(edge_rxcheck_scan(&t, stream, 8), 8);
    edge_rxcheck_scan(&t, stream + 8, n - 8);
    assert_int_equal(t.wait, 2);

    /* the reads before held every data frame whole: nothing to wait for */
    edge_rxcheck_t u = {0};
    size_t last = n - (2 + 5);
    assert_int_equal(edge_rxcheck_scan(&u, stream, last + 1), last + 1); /* + its first byte */
    assert_int_equal(edge_rxcheck_scan(&u, stream + last + 1, n - last - 1), 0);
    assert_int_equal(u.unmasked, 1);
    assert_int_equal(u.wait, 0);
}

static void huge_length_never_wraps(void **state)
{
    (void)state;
    unsigned char h[10] = {0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    edge_rxcheck_t s = {0};
    assert_int_equal(edge_rxcheck_scan(&s, h, sizeof h), sizeof h);
    assert_int_equal(s.skip, UINT64_MAX);
    assert_int_equal(edge_rxcheck_scan(&s, stream, 1000), 1000); /* still payload */
}

static void rsv1_noted_in_order_and_cleared(void **state)
{
    (void)state;
    for (size_t step = 1; step <= 64; step += 9) {
        size_t n = 0;
        int want[200];
        for (int k = 0; k < 200; k++) { /* data messages: RSV1 on every third */
            size_t at = n;
            put_frame(stream, &n, k % 2 ? 0x2 : 0x1, (size_t)(k % 7) * 50, 1);
            want[k] = k % 3 == 0;
            if (want[k])
                stream[at] |= 0x40;
            put_frame(stream, &n, 0x9, 3, 1); /* a ping between: not a message */
        }
        size_t cont = n;
        put_frame(stream, &n, 0x0, 5, 1); /* a continuation with RSV1: left alone */
        stream[cont] |= 0x40;
        edge_rxcheck_t s = {0};
        s.pmd = 1;
        assert_int_equal(feed(&s, n, step), n);
        assert_int_equal(s.zn, 200);
        for (int k = 0; k < 200; k++)
            assert_int_equal(edge_rxcheck_zpop(&s), want[k]);
        assert_int_equal(edge_rxcheck_zpop(&s), 0); /* empty */
        for (size_t i = 0, left = 0; i < cont; i += left) {
            assert_int_equal(stream[i] & 0x40, 0); /* every header byte cleared */
            size_t len = stream[i + 1] & 0x7f, hl = len == 126 ? 4 : 2;
            if (len == 126)
                len = (size_t)stream[i + 2] << 8 | stream[i + 3];
            left = hl + 4 + len;
        }
        assert_int_equal(stream[cont] & 0x40, 0x40);
        free(s.zbits);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(masked_stream_passes_whole),
        cmocka_unit_test(unmasked_stops_where_it_starts),
        cmocka_unit_test(wait_counts_undelivered_data_frames),
        cmocka_unit_test(huge_length_never_wraps),
        cmocka_unit_test(rsv1_noted_in_order_and_cleared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
