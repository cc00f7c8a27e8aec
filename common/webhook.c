/* SPDX-License-Identifier: MIT */
/*
 * webhook.c — the signed request's headers (webhook.h). Any thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/webhook.h"
#include "common/whsig.h"

/* Longest header line taken (names and values from config or events). */
#define HEADER_MAX 8192

int wsg_header_add(struct curl_slist **l, const char *fmt, ...)
{
    char buf[512], *line = buf;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || n > HEADER_MAX)
        return WSG_EINVAL;
    if ((size_t)n >= sizeof buf) { /* rare: a long routing-service header */
        if (!(line = malloc((size_t)n + 1)))
            return WSG_ENOMEM;
        va_start(ap, fmt);
        vsnprintf(line, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    struct curl_slist *m = curl_slist_append(*l, line);
    if (line != buf)
        free(line);
    if (!m)
        return WSG_ENOMEM;
    *l = m;
    return 0;
}

int wsg_webhook_headers(const unsigned char *key, size_t key_len, const char *id,
                        const char *conn_id, const char *event, const char *body, size_t len,
                        struct curl_slist **out)
{
    return wsg_webhook_headers_ct(key, key_len, id, conn_id, event, "application/json", body, len,
                                  out);
}

int wsg_webhook_headers_ct(const unsigned char *key, size_t key_len, const char *id,
                           const char *conn_id, const char *event, const char *content_type,
                           const char *body, size_t len, struct curl_slist **out)
{
    char sig[WSG_WHSIG_LEN];
    long long ts = wsg_wall_s();
    struct curl_slist *l = NULL;
    *out = NULL;
    int rc = wsg_whsig_sign(key, key_len, id, ts, body, len, sig, sizeof sig);
    if (rc == 0)
        rc = wsg_header_add(&l, "Content-Type: %s", content_type);
    if (rc == 0)
        rc = wsg_header_add(&l, "Expect:");
    if (rc == 0)
        rc = wsg_header_add(&l, "webhook-id: %s", id);
    if (rc == 0)
        rc = wsg_header_add(&l, "webhook-timestamp: %lld", ts);
    if (rc == 0)
        rc = wsg_header_add(&l, "webhook-signature: %s", sig);
    if (rc == 0)
        rc = wsg_header_add(&l, "wsgate-connection-id: %s", conn_id);
    if (rc == 0)
        rc = wsg_header_add(&l, "wsgate-event: %s", event);
    if (rc != 0) {
        curl_slist_free_all(l);
        return rc;
    }
    *out = l;
    return 0;
}
