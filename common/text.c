/* SPDX-License-Identifier: MIT */
/*
 * text.c — the rules for text that comes from outside and is kept or
 * passed on: UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past
 * U+10FFFF) and channel names. Pure functions, any thread.
 *
 * UTF-8 has one validator for every caller: the edge (text messages, close
 * reasons: RFC 6455 §8.1 asks for exactly RFC 3629), the control API
 * (message bodies, close reasons), channel names and the store. U+0000 is
 * valid UTF-8 and a WebSocket text message may carry it, so
 * wsg_utf8_valid() accepts it; wsg_utf8_valid_nonul() refuses it for text
 * that ends up as a C string or in a store text column (PostgreSQL text
 * cannot hold U+0000, and a C string would be cut at it).
 */
#include <stdint.h>
#include <string.h>

#include "common/err.h"
#include "common/text.h"

bool wsg_has_ctl_or_space(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return true;
    return false;
}

/* Byte by byte, with the ranges of RFC 3629 §4 ("UTF8-2".."UTF8-4"): the
 * narrowed second-byte ranges after E0, ED, F0 and F4 are what rule out
 * overlongs, surrogates and anything past U+10FFFF without decoding the
 * code point. From an ASCII byte, eight bytes are tried at once (the common
 * case: JSON, chat text). nul_ok = 0 also refuses U+0000. Inlined into
 * each caller below so that nul_ok is a constant there: the edge runs this
 * on every text message (bench/utf8_bench; docs/performance.md). */
__attribute__((always_inline)) static inline int utf8_scan(const unsigned char *p, size_t n,
                                                           int nul_ok)
{
    const uint64_t high = 0x8080808080808080u, ones = 0x0101010101010101u;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            uint64_t w;
            if (n - i >= 8 && (memcpy(&w, p + i, 8), !(w & high)) &&
                (nul_ok || !((w - ones) & ~w & high))) {
                i += 8;
                continue;
            }
            if (!c && !nul_ok)
                return 0;
            i++;
            continue;
        }
        /* continuation bytes after the lead, and the second byte's range */
        size_t k = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
        unsigned lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (c < 0xc2 || c > 0xf4 || n - i <= k || p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (size_t j = 2; j <= k; j++)
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
        i += k + 1;
    }
    return 1;
}

int wsg_utf8_valid(const char *s, size_t n)
{
    return utf8_scan((const unsigned char *)s, n, 1);
}

int wsg_utf8_valid_nonul(const char *s, size_t n)
{
    return utf8_scan((const unsigned char *)s, n, 0);
}

int wsg_channel_valid(const char *ch, char *err, size_t errlen)
{
    size_t n = strlen(ch);
    if (n == 0)
        return wsg_errf(err, errlen, WSG_EINVAL, "channel name is empty");
    if (n > WSG_CHANNEL_MAX)
        return wsg_errf(err, errlen, WSG_EINVAL, "channel name is %zu bytes, over %d", n,
                        WSG_CHANNEL_MAX);
    if (!wsg_utf8_valid(ch, n))
        return wsg_errf(err, errlen, WSG_EINVAL, "channel name is not valid UTF-8");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ch[i];
        if (c < 0x20 || c == 0x7f)
            return wsg_errf(err, errlen, WSG_EINVAL, "channel name has a control character");
    }
    return 0;
}
