/*
 * text.c — the rules for text that comes from outside and is kept or
 * passed on: UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past
 * U+10FFFF) and channel names. Pure functions, any thread.
 */
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

int wsg_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (i + k >= n)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (p[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
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
