/* SPDX-License-Identifier: MIT */
/*
 * util.c — small helpers of the SDK: the growable buffer, strdup of
 * optional strings, wsgate_free(). Threads: any; a buffer has one owner.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"
#include "sdk.h"

void wsgate_free(void *p)
{
    free(p);
}

void sdk_buf_add(sdk_buf_t *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void sdk_buf_str(sdk_buf_t *b, const char *s)
{
    sdk_buf_add(b, s, strlen(s));
}

void sdk_buf_escaped(sdk_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            sdk_buf_add(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sdk_buf_add(b, e, 3);
        }
    }
}

void sdk_buf_query(sdk_buf_t *b, const char *name, const char *value)
{
    if (!value)
        return;
    sdk_buf_str(b, b->p && strchr(b->p, '?') ? "&" : "?");
    sdk_buf_str(b, name);
    sdk_buf_str(b, "=");
    sdk_buf_escaped(b, value);
}

void sdk_buf_free(sdk_buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

char *sdk_strdup(const char *s, int *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = 1;
    return d;
}

int sdk_utf8(const char *s, size_t n)
{
    return wsg_utf8_valid(s, n);
}
