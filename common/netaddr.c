/* SPDX-License-Identifier: MIT */
/*
 * netaddr.c — IP addresses and CIDR blocks (inet_pton / inet_ntop do all
 * the address parsing), and the X-Forwarded-For walk of trusted proxies
 * (see netaddr.h). Pure functions, any thread.
 */
#include "common/netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int wsg_ip_parse(const char *s, wsg_ip_t *out)
{
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, s, out->b) == 1)
        return 0;
    if (inet_pton(AF_INET6, s, out->b) != 1)
        return WSG_EINVAL;
    if (memcmp(out->b, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
        memmove(out->b, out->b + 12, 4); /* what a dual-stack socket calls an IPv4 peer */
        memset(out->b + 4, 0, 12);
        return 0;
    }
    out->v6 = 1;
    return 0;
}

void wsg_ip_format(const wsg_ip_t *ip, char *out, size_t outlen)
{
    if (!inet_ntop(ip->v6 ? AF_INET6 : AF_INET, ip->b, out, (socklen_t)outlen) && outlen)
        out[0] = '\0';
}

/* true when a and b agree on their first bits bits. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* The prefix length after '/' in s: digits only, at most max. -1 if not. */
static int parse_bits(const char *s, unsigned max)
{
    if (!*s || strlen(s) > 3 || strspn(s, "0123456789") != strlen(s))
        return -1;
    unsigned long v = strtoul(s, NULL, 10);
    return v <= max ? (int)v : -1;
}

int wsg_cidr_parse(const char *s, wsg_cidr_t *out, char *why, size_t whylen)
{
    char addr[WSG_ADDR_TEXT_MAX + 1];
    const char *slash = strchr(s, '/');
    size_t al = slash ? (size_t)(slash - s) : strlen(s);
    memset(out, 0, sizeof *out);
    if (al >= sizeof addr)
        return wsg_errf(why, whylen, WSG_EINVAL, "'%s' is not an IP address or CIDR block", s);
    memcpy(addr, s, al);
    addr[al] = '\0';
    if (wsg_ip_parse(addr, &out->net) != 0)
        return wsg_errf(why, whylen, WSG_EINVAL,
                        "'%s' is not an IP address or CIDR block (e.g. 10.0.0.0/8, fd00::/8)", s);
    if (strchr(addr, ':') && !out->net.v6) /* its prefix length would count IPv6 bits */
        return wsg_errf(why, whylen, WSG_EINVAL,
                        "'%s': write an IPv4-mapped block as IPv4 (IPv4 peers match it)", s);
    unsigned max = out->net.v6 ? 128 : 32;
    int bits = slash ? parse_bits(slash + 1, max) : (int)max;
    if (bits < 0)
        return wsg_errf(why, whylen, WSG_EINVAL, "'%s': the prefix length must be 0..%u", s, max);
    out->bits = (uint8_t)bits;
    wsg_ip_t net = {.v6 = out->net.v6};
    unsigned whole = (unsigned)bits / 8;
    memcpy(net.b, out->net.b, whole);
    if (bits % 8)
        net.b[whole] = (uint8_t)(out->net.b[whole] & (0xff << (8 - bits % 8)));
    if (memcmp(net.b, out->net.b, sizeof net.b) != 0) {
        char txt[WSG_ADDR_TEXT_MAX];
        wsg_ip_format(&net, txt, sizeof txt);
        return wsg_errf(why, whylen, WSG_EINVAL,
                        "'%s' has host bits set below the prefix (the block is %s/%d)", s, txt,
                        bits);
    }
    return 0;
}

bool wsg_cidr_match(const wsg_cidr_t *c, const wsg_ip_t *ip)
{
    return c->net.v6 == ip->v6 && prefix_equal(c->net.b, ip->b, c->bits);
}

int wsg_cidrs_parse(char *const *texts, size_t n, wsg_cidrs_t *out, char *why, size_t whylen)
{
    out->v = NULL;
    out->n = 0;
    if (!n)
        return 0;
    wsg_cidr_t *v = calloc(n, sizeof *v);
    if (!v)
        abort();
    for (size_t i = 0; i < n; i++) {
        int rc = wsg_cidr_parse(texts[i], &v[i], why, whylen);
        if (rc != 0) {
            free(v);
            return rc;
        }
    }
    out->v = v;
    out->n = n;
    return 0;
}

bool wsg_cidrs_match(const wsg_cidrs_t *set, const wsg_ip_t *ip)
{
    for (size_t i = 0; i < set->n; i++)
        if (wsg_cidr_match(&set->v[i], ip))
            return true;
    return false;
}

void wsg_cidrs_free(wsg_cidrs_t *set)
{
    if (!set)
        return;
    free(set->v);
    set->v = NULL;
    set->n = 0;
}

/* One step of the walk over the element s[0..n) (blanks trimmed, not
 * empty): 1 when it is trusted (*ip set), 0 when it is the client (*ip
 * set), WSG_EINVAL when it is no address. */
static int walk_element(const wsg_cidrs_t *trusted, const char *s, size_t n, wsg_ip_t *ip)
{
    char buf[WSG_ADDR_TEXT_MAX];
    if (n >= sizeof buf)
        return WSG_EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (wsg_ip_parse(buf, ip) != 0)
        return WSG_EINVAL;
    return wsg_cidrs_match(trusted, ip) ? 1 : 0;
}

/* Walks one header value from the right. Returns 0 (client found, in
 * *found), 1 (all trusted so far; *leftmost the last trusted one, *any set
 * when there was one), or WSG_EINVAL. */
static int walk_value(const wsg_cidrs_t *trusted, const char *v, wsg_ip_t *found,
                      wsg_ip_t *leftmost, bool *any)
{
    const char *end = v + strlen(v);
    while (end > v) {
        const char *start = end;
        while (start > v && start[-1] != ',')
            start--;
        const char *a = start, *b = end;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        end = start > v ? start - 1 : v; /* before the comma */
        if (a == b)
            continue; /* an empty list element (RFC 9110 §5.6.1) */
        wsg_ip_t ip;
        int rc = walk_element(trusted, a, (size_t)(b - a), &ip);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            *found = ip;
            return 0;
        }
        *leftmost = ip;
        *any = true;
    }
    return 1;
}

int wsg_forwarded_client(const wsg_cidrs_t *trusted, const char *peer, const char *const *xff,
                         size_t n_xff, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", peer);
    wsg_ip_t pip;
    if (!trusted->n || !n_xff || wsg_ip_parse(peer, &pip) != 0 || !wsg_cidrs_match(trusted, &pip))
        return 0;
    wsg_ip_t found, leftmost;
    bool any = false;
    for (size_t i = n_xff; i-- > 0;) {
        int rc = walk_value(trusted, xff[i], &found, &leftmost, &any);
        if (rc < 0)
            return rc; /* out stays the peer */
        if (rc == 0) {
            wsg_ip_format(&found, out, outlen);
            return 1;
        }
    }
    if (!any)
        return 0;
    wsg_ip_format(&leftmost, out, outlen); /* every hop trusted: the furthest one known */
    return 1;
}
