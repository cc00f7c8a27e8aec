/* SPDX-License-Identifier: MIT */
/*
 * test_netaddr.c — common/netaddr.c: addresses, CIDR blocks (IPv4, IPv6,
 * /0, /32, /128, bad input) and the X-Forwarded-For walk of trusted
 * proxies (edge.trusted_proxies).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/netaddr.h"

/* 1 when text (an address) lies in block (a CIDR); both must parse. */
static int in(const char *block, const char *text)
{
    wsg_cidr_t c;
    wsg_ip_t ip;
    char why[128];
    assert_int_equal(wsg_cidr_parse(block, &c, why, sizeof why), 0);
    assert_int_equal(wsg_ip_parse(text, &ip), 0);
    return wsg_cidr_match(&c, &ip);
}

static void match_v4(void **state)
{
    (void)state;
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_false(in("10.0.0.0/8", "11.0.0.1"));
    assert_true(in("192.168.4.0/22", "192.168.7.255"));
    assert_false(in("192.168.4.0/22", "192.168.8.0"));
    assert_true(in("127.0.0.1/32", "127.0.0.1"));
    assert_false(in("127.0.0.1/32", "127.0.0.2"));
    assert_true(in("127.0.0.1", "127.0.0.1")); /* a bare address: one host */
    assert_false(in("127.0.0.1", "127.0.0.2"));
    assert_true(in("0.0.0.0/0", "203.0.113.9"));
    assert_true(in("0.0.0.0/0", "0.0.0.0"));
    assert_false(in("0.0.0.0/0", "::1")); /* never across families */
    /* what a dual-stack socket reports for an IPv4 peer is that IPv4 peer */
    assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1"));
}

static void match_v6(void **state)
{
    (void)state;
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in("2001:db8::/32", "2001:db9::1"));
    assert_true(in("fd00::/8", "fdff::1"));
    assert_true(in("fc00::/7", "fd00::1"));
    assert_false(in("fc00::/7", "fe00::1"));
    assert_true(in("::1/128", "::1"));
    assert_false(in("::1/128", "::2"));
    assert_true(in("::1", "0:0:0:0:0:0:0:1"));
    assert_true(in("::/0", "2001:db8::1"));
    assert_false(in("::/0", "10.0.0.1"));
    assert_true(in("2001:db8::/127", "2001:db8::1"));
    assert_false(in("2001:db8::/127", "2001:db8::2"));
}

static void bad_input(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "10.0.0.0/ 8",
        "10.0.0.0/+8",
        "10.0.0.0/0x8",
        "10.0.0.256/32",
        "10.0.0/24",
        "10.1.0.0/8",
        "fd00::/7",
        "::1/129",
        "2001:db8::1/32",
        "2001:db8:::/32",
        "fe80::1%eth0",
        "[::1]",
        "[::1]/128",
        "10.0.0.1:80",
        "localhost",
        " 10.0.0.0/8",
        "10.0.0.0/8 ",
        "::ffff:10.0.0.0/104",
        "10.0.0.0/0008",
        "1234567890123456789012345678901234567890123456789/8",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        wsg_cidr_t c;
        char why[160] = "";
        int rc = wsg_cidr_parse(bad[i], &c, why, sizeof why);
        if (rc != WSG_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(why[0] != '\0');
    }
    char why[160];
    wsg_cidr_t c;
    wsg_cidr_parse("10.1.2.0/8", &c, why, sizeof why);
    assert_non_null(strstr(why, "10.0.0.0/8")); /* says which block was meant */
    wsg_ip_t ip;
    assert_int_equal(wsg_ip_parse("10.0.0.1:80", &ip), WSG_EINVAL);
    assert_int_equal(wsg_ip_parse("unknown", &ip), WSG_EINVAL);
    assert_int_equal(wsg_ip_parse("", &ip), WSG_EINVAL);
}

static void set_parse(void **state)
{
    (void)state;
    char *good[] = {"10.0.0.0/8", "::1"}, *bad[] = {"10.0.0.0/8", "nope"};
    wsg_cidrs_t s;
    char why[128];
    assert_int_equal(wsg_cidrs_parse(good, 2, &s, why, sizeof why), 0);
    assert_int_equal(s.n, 2);
    wsg_ip_t ip;
    wsg_ip_parse("::1", &ip);
    assert_true(wsg_cidrs_match(&s, &ip));
    wsg_ip_parse("11.0.0.1", &ip);
    assert_false(wsg_cidrs_match(&s, &ip));
    wsg_cidrs_free(&s);
    assert_int_equal(wsg_cidrs_parse(bad, 2, &s, why, sizeof why), WSG_EINVAL);
    assert_int_equal(s.n, 0);
    assert_non_null(strstr(why, "'nope'"));
    assert_int_equal(wsg_cidrs_parse(NULL, 0, &s, why, sizeof why), 0);
    wsg_ip_parse("10.0.0.1", &ip);
    assert_false(wsg_cidrs_match(&s, &ip)); /* empty: nothing trusted */
    wsg_cidrs_free(&s);
    wsg_cidrs_free(NULL);
}

/* The client of a request from peer with the header values xff (NULL-ended),
 * trusted being the comma-separated blocks; *rc the walk's return. */
static const char *client(const char *trusted, const char *peer, const char *const *xff, int *rc)
{
    static char out[WSG_ADDR_TEXT_MAX];
    char buf[256], *texts[8], *save = NULL;
    size_t n = 0, n_xff = 0;
    snprintf(buf, sizeof buf, "%s", trusted);
    for (char *t = strtok_r(buf, ",", &save); t && n < 8; t = strtok_r(NULL, ",", &save))
        texts[n++] = t;
    wsg_cidrs_t s;
    char why[128];
    assert_int_equal(wsg_cidrs_parse(texts, n, &s, why, sizeof why), 0);
    while (xff && xff[n_xff])
        n_xff++;
    *rc = wsg_forwarded_client(&s, peer, xff, n_xff, out, sizeof out);
    wsg_cidrs_free(&s);
    return out;
}

#define XFF(...) ((const char *const[]){__VA_ARGS__, NULL})

static void forwarded_walk(void **state)
{
    (void)state;
    int rc;
    /* the peer is a trusted proxy: its header names the client */
    assert_string_equal(client("127.0.0.1", "127.0.0.1", XFF("203.0.113.7"), &rc), "203.0.113.7");
    assert_int_equal(rc, 1);
    /* not trusted (or nothing trusted): the header is the client's own word */
    assert_string_equal(client("10.0.0.0/8", "127.0.0.1", XFF("203.0.113.7"), &rc), "127.0.0.1");
    assert_int_equal(rc, 0);
    assert_string_equal(client("", "127.0.0.1", XFF("203.0.113.7"), &rc), "127.0.0.1");
    assert_int_equal(rc, 0);
    /* from the right: the rightmost untrusted entry; what the client wrote
     * to its left does not count */
    assert_string_equal(
        client("127.0.0.0/8,10.0.0.0/8", "127.0.0.1", XFF("6.6.6.6, 198.51.100.2, 10.1.1.1"), &rc),
        "198.51.100.2");
    assert_int_equal(rc, 1);
    /* garbage left of the client's entry is never looked at */
    assert_string_equal(client("127.0.0.1", "127.0.0.1", XFF("junk, 198.51.100.2"), &rc),
                        "198.51.100.2");
    /* a malformed entry where one is needed: the peer */
    assert_string_equal(client("127.0.0.1", "127.0.0.1", XFF("198.51.100.2, junk"), &rc),
                        "127.0.0.1");
    assert_int_equal(rc, WSG_EINVAL);
    assert_string_equal(client("127.0.0.1", "127.0.0.1", XFF("198.51.100.2:443"), &rc),
                        "127.0.0.1");
    assert_int_equal(rc, WSG_EINVAL);
    assert_string_equal(client("127.0.0.1", "127.0.0.1",
                               XFF("1234567890123456789012345678901234567890123456789"), &rc),
                        "127.0.0.1");
    assert_int_equal(rc, WSG_EINVAL);
    /* several headers are one list, in order */
    assert_string_equal(
        client("127.0.0.1,10.0.0.0/8", "127.0.0.1", XFF("198.51.100.2", "10.0.0.5, 10.0.0.6"), &rc),
        "198.51.100.2");
    assert_string_equal(client("127.0.0.1", "127.0.0.1", XFF("198.51.100.2", "198.51.100.3"), &rc),
                        "198.51.100.3");
    /* every hop trusted: the leftmost, the furthest known */
    assert_string_equal(client("127.0.0.1,10.0.0.0/8", "127.0.0.1", XFF("10.0.0.9, 10.0.0.5"), &rc),
                        "10.0.0.9");
    assert_int_equal(rc, 1);
    /* empty elements and blanks are nothing; nothing at all: the peer */
    assert_string_equal(client("127.0.0.1", "127.0.0.1", XFF(" , ,\t198.51.100.2 ,, "), &rc),
                        "198.51.100.2");
    assert_string_equal(client("127.0.0.1", "127.0.0.1", XFF("", " , "), &rc), "127.0.0.1");
    assert_int_equal(rc, 0);
    assert_string_equal(client("127.0.0.1", "127.0.0.1", NULL, &rc), "127.0.0.1");
    assert_int_equal(rc, 0);
    /* IPv6, written in inet_ntop's form; a mapped IPv4 peer is trusted as IPv4 */
    assert_string_equal(client("::1", "::1", XFF("2001:DB8:0:0::0001"), &rc), "2001:db8::1");
    assert_string_equal(client("127.0.0.1", "::ffff:127.0.0.1", XFF("::ffff:198.51.100.2"), &rc),
                        "198.51.100.2");
    /* /0 trusts everything: the leftmost entry wins */
    assert_string_equal(client("0.0.0.0/0", "127.0.0.1", XFF("1.1.1.1, 2.2.2.2"), &rc), "1.1.1.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(match_v4),  cmocka_unit_test(match_v6),       cmocka_unit_test(bad_input),
        cmocka_unit_test(set_parse), cmocka_unit_test(forwarded_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
