/* SPDX-License-Identifier: MIT */
/*
 * disp_retry.c — when to try again: exponential backoff with full jitter,
 * Retry-After parsing (seconds or HTTP date), and which HTTP outcomes are
 * retried (docs/contract.md §3).
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "dispatcher/disp_internal.h"

uint64_t disp_backoff_ms(uint32_t failures, uint64_t initial_ms, uint64_t max_ms, uint64_t rnd)
{
    if (initial_ms == 0)
        initial_ms = 1;
    if (max_ms < initial_ms)
        max_ms = initial_ms;
    uint64_t cap = initial_ms;
    for (uint32_t i = 1; i < failures && cap < max_ms; i++)
        cap = cap > max_ms / 2 ? max_ms : cap * 2;
    if (cap > max_ms)
        cap = max_ms;
    return initial_ms + rnd % (cap - initial_ms + 1);
}

static int parse_seconds(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return WSG_EINVAL;
    for (; isdigit((unsigned char)*s); s++) {
        if (v > UINT64_MAX / 10 - 10)
            v = UINT64_MAX / 10 - 10; /* saturate; capped later anyway */
        else
            v = v * 10 + (uint64_t)(*s - '0');
    }
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s)
        return WSG_EINVAL;
    *out = v;
    return 0;
}

int disp_retry_after_ms(const char *value, int64_t now_s, uint64_t cap_ms, uint64_t *out_ms)
{
    if (!value || !out_ms)
        return WSG_EINVAL;
    while (*value == ' ' || *value == '\t')
        value++;
    if (!*value)
        return WSG_EINVAL;
    uint64_t ms;
    uint64_t secs;
    if (isdigit((unsigned char)*value)) {
        if (parse_seconds(value, &secs) != 0)
            return WSG_EINVAL;
        ms = secs > cap_ms / 1000 + 1 ? cap_ms : secs * 1000;
    } else {
        /* An HTTP date needs a weekday name and a 4-digit year at least;
         * curl_getdate() is lenient, so insist on a comma or "GMT" too. */
        if (!strchr(value, ',') && !strstr(value, "GMT"))
            return WSG_EINVAL;
        time_t t = curl_getdate(value, NULL);
        if (t == (time_t)-1)
            return WSG_EINVAL;
        ms = (int64_t)t <= now_s ? 0 : (uint64_t)((int64_t)t - now_s) * 1000;
    }
    *out_ms = ms > cap_ms ? cap_ms : ms;
    return 0;
}

disp_outcome_t disp_classify(long status)
{
    if (status >= 200 && status < 300)
        return DISP_OUT_ACK;
    if (status == 0 || status >= 500 || status == 408 || status == 429)
        return DISP_OUT_RETRY;
    return DISP_OUT_DEAD;
}
