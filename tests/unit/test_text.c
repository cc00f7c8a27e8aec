/* SPDX-License-Identifier: MIT */
/*
 * test_text.c — common/text.c: the one UTF-8 validator (RFC 3629 and the
 * Markus Kuhn stress cases: overlongs, surrogates, past U+10FFFF, cut
 * sequences, stray continuation bytes), with U+0000 accepted by
 * wsg_utf8_valid and refused by wsg_utf8_valid_nonul, at every position of
 * the eight-byte ASCII fast path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/text.h"

static const struct {
    const char *s;
    size_t n;
    int ok;
} cases[] = {
#define C(lit, ok)                                                                                 \
    {                                                                                              \
        lit, sizeof lit - 1, ok                                                                    \
    }
    C("", 1),
    C("hello", 1),
    C("\xc2\x80", 1),         /* U+0080, first 2-byte */
    C("\xdf\xbf", 1),         /* U+07FF */
    C("\xe0\xa0\x80", 1),     /* U+0800, first 3-byte */
    C("\xed\x9f\xbf", 1),     /* U+D7FF, last before the surrogates */
    C("\xee\x80\x80", 1),     /* U+E000, first after */
    C("\xef\xbf\xbf", 1),     /* U+FFFF */
    C("\xf0\x90\x80\x80", 1), /* U+10000, first 4-byte */
    C("\xf4\x8f\xbf\xbf", 1), /* U+10FFFF, the last */
    C("\xc0\x80", 0),         /* overlong NUL */
    C("\xc1\xbf", 0),         /* overlong U+007F */
    C("\xe0\x9f\xbf", 0),     /* overlong U+07FF */
    C("\xf0\x8f\xbf\xbf", 0), /* overlong U+FFFF */
    C("\xed\xa0\x80", 0),     /* U+D800, a surrogate */
    C("\xed\xbf\xbf", 0),     /* U+DFFF */
    C("\xf4\x90\x80\x80", 0), /* U+110000 */
    C("\xf5\x80\x80\x80", 0), /* lead byte past F4 */
    C("\xff", 0),
    C("\xfe", 0), /* never in UTF-8 */
    C("\x80", 0),
    C("a\xbf", 0), /* stray continuation */
    C("\xc2", 0),
    C("\xe0\xa0", 0),
    C("\xf0\x90\x80", 0), /* cut short */
    C("\xc2\x41", 0),     /* continuation missing */
    C("\xe2\x82\x28", 0), /* third byte not a continuation */
    C("\xf0\x90\x28\xbc", 0),
    C("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 1), /* "κόσμε" */
#undef C
};

static void rfc3629(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(wsg_utf8_valid(cases[i].s, cases[i].n), cases[i].ok);
        assert_int_equal(wsg_utf8_valid_nonul(cases[i].s, cases[i].n), cases[i].ok);
    }
}

/* Each case again inside ASCII, at every offset around the 8-byte steps:
 * the fast path must hand every non-ASCII byte to the slow one. */
static void every_offset(void **state)
{
    (void)state;
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (size_t pre = 0; pre < 17; pre++)
            for (size_t post = 0; post < 17; post += 8) {
                memset(buf, 'x', sizeof buf);
                memcpy(buf + pre, cases[i].s, cases[i].n);
                size_t n = pre + cases[i].n + post;
                assert_int_equal(wsg_utf8_valid(buf, n), cases[i].ok);
            }
}

static void nul(void **state)
{
    (void)state;
    char buf[40];
    for (size_t at = 0; at < sizeof buf; at++) {
        memset(buf, 'a', sizeof buf);
        buf[at] = '\0';
        assert_int_equal(wsg_utf8_valid(buf, sizeof buf), 1);
        assert_int_equal(wsg_utf8_valid_nonul(buf, sizeof buf), 0);
        buf[at] = 'a';
        assert_int_equal(wsg_utf8_valid_nonul(buf, sizeof buf), 1);
    }
    /* 0x80 bytes next to each other look like NUL to a careless bit trick */
    assert_int_equal(wsg_utf8_valid_nonul("\xc2\x80\xc2\x80\xc2\x80\xc2\x80", 8), 1);
    assert_int_equal(wsg_utf8_valid_nonul("\x01\x01\x01\x01\x01\x01\x01\x01", 8), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc3629),
        cmocka_unit_test(every_offset),
        cmocka_unit_test(nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
