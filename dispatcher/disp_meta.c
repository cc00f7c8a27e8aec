/* SPDX-License-Identifier: MIT */
/*
 * disp_meta.c — per-connection metadata a backend sets with Set-Meta-*
 * answer headers and gets back as Meta-* request headers (Pushpin's
 * WebSocket-over-HTTP; protocols with keeps_meta). Pure functions on
 * curl_slist lines "Meta-<name>: <value>"; the dispatcher keeps the list on
 * the connection (disp_core.h) until its disconnect is done.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "dispatcher/disp_proto.h"

static bool tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int disp_meta_header(const char *line, size_t n, struct curl_slist **set, size_t *bytes)
{
    static const char pfx[] = "set-meta-";
    size_t k = sizeof pfx - 1, name_end, v0, v1;
    if (n <= k || strncasecmp(line, pfx, k) != 0)
        return 0;
    for (name_end = k; name_end < n && tchar((unsigned char)line[name_end]); name_end++)
        ;
    if (name_end == k || name_end >= n || line[name_end] != ':')
        return 0;
    for (v0 = name_end + 1; v0 < n && (line[v0] == ' ' || line[v0] == '\t'); v0++)
        ;
    for (v1 = n; v1 > v0 && (line[v1 - 1] == '\r' || line[v1 - 1] == '\n' || line[v1 - 1] == ' ' ||
                             line[v1 - 1] == '\t');
         v1--)
        ;
    for (size_t i = v0; i < v1; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            return 0; /* never forwarded: it could split a header */
    size_t len = 5 + (name_end - k) + 2 + (v1 - v0);
    if (*bytes + len > DISP_META_MAX_BYTES)
        return 0;
    char *out = malloc(len + 1);
    if (!out)
        return WSG_ENOMEM;
    snprintf(out, len + 1, "Meta-%.*s:%s%.*s", (int)(name_end - k), line + k, v1 > v0 ? " " : "",
             (int)(v1 - v0), line + v0);
    struct curl_slist *l = curl_slist_append(*set, out);
    free(out);
    if (!l)
        return WSG_ENOMEM;
    *set = l;
    *bytes += len;
    return 0;
}

static size_t name_len(const char *line)
{
    return strcspn(line, ":");
}

/* A copy of meta without the line named like `line`. */
static int without(const struct curl_slist *meta, const char *line, struct curl_slist **out)
{
    size_t n = name_len(line);
    struct curl_slist *l = NULL;
    for (; meta; meta = meta->next) {
        if (name_len(meta->data) == n && strncasecmp(meta->data, line, n) == 0)
            continue;
        struct curl_slist *t = curl_slist_append(l, meta->data);
        if (!t) {
            curl_slist_free_all(l);
            return WSG_ENOMEM;
        }
        l = t;
    }
    *out = l;
    return 0;
}

int disp_meta_merge(struct curl_slist **meta, const struct curl_slist *set)
{
    struct curl_slist *cur = NULL, *next;
    if (!set)
        return 0;
    if (without(*meta, "", &cur) != 0) /* a copy: *meta stays as is on failure */
        return WSG_ENOMEM;
    for (; set; set = set->next) {
        if (without(cur, set->data, &next) != 0)
            goto oom;
        curl_slist_free_all(cur);
        cur = next;
        if (set->data[name_len(set->data) + 1] == '\0')
            continue; /* "Meta-x:": removed */
        if (!(next = curl_slist_append(cur, set->data)))
            goto oom;
        cur = next;
    }
    size_t total = 0;
    for (const struct curl_slist *l = cur; l; l = l->next)
        total += strlen(l->data);
    if (total > DISP_META_MAX_BYTES) {
        curl_slist_free_all(cur);
        return WSG_EINVAL;
    }
    curl_slist_free_all(*meta);
    *meta = cur;
    return 0;
oom:
    curl_slist_free_all(cur);
    return WSG_ENOMEM;
}
