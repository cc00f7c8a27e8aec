/* SPDX-License-Identifier: MIT */
/*
 * envelope.c — the event envelope as JSON text (envelope.h). Any thread.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"
#include "common/envelope.h"
#include "common/err.h"

void wsg_ts_format(wsg_ts_cache_t *cache, int64_t ms, char out[32])
{
    wsg_ts_cache_t own = {0};
    wsg_ts_cache_t *c = cache ? cache : &own;
    int64_t sec = ms / 1000;
    if (!c->head[0] || sec != c->sec) {
        struct tm tm;
        time_t t = (time_t)sec;
        gmtime_r(&t, &tm);
        strftime(c->head, sizeof c->head, "%Y-%m-%dT%H:%M:%S", &tm);
        c->sec = sec;
    }
    snprintf(out, 32, "%.23s.%03dZ", c->head, (int)(ms % 1000));
}

int wsg_ts_parse(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    int frac = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &frac) < 6)
        return WSG_EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *ms = (int64_t)timegm(&tm) * 1000 + frac;
    return 0;
}

void wsg_envelope_open(wsg_sbuf_t *b, const wsg_envelope_t *env, wsg_ts_cache_t *cache)
{
    char ts[32], num[96];
    wsg_ts_format(cache, env->ts_ms, ts);
    wsg_sb_puts(b, "{\"id\":");
    wsg_sb_str(b, env->id);
    wsg_sb_puts(b, ",\"type\":");
    wsg_sb_str(b, env->type);
    wsg_sb_puts(b, ",\"connection_id\":");
    wsg_sb_str(b, env->conn_id);
    wsg_sb_puts(b, ",\"route\":");
    wsg_sb_str(b, env->route);
    wsg_sb_puts(b, ",\"user\":");
    if (env->user)
        wsg_sb_str(b, env->user);
    else
        wsg_sb_puts(b, "null");
    wsg_sb_puts(b, ",\"context\":");
    wsg_sb_puts(b, env->context_json ? env->context_json : "{}");
    int n = snprintf(num, sizeof num, ",\"seq\":%llu,\"timestamp\":\"%s\"",
                     (unsigned long long)env->seq, ts);
    wsg_sb_put(b, num, (size_t)n);
}

void wsg_envelope_disconnect(wsg_sbuf_t *b, int code, const char *reason, const char *initiator)
{
    char num[32];
    int n = snprintf(num, sizeof num, ",\"code\":%d,\"reason\":", code);
    wsg_sb_put(b, num, (size_t)n);
    wsg_sb_str(b, reason && wsg_json_ok(reason) ? reason : "");
    wsg_sb_member(b, "initiator", initiator ? initiator : "server");
}

void wsg_disconnect_event_id(const char *conn_id, char out[48])
{
    /* the key of the edge_lost ids of earlier versions: an API of one and
     * an edge of the other still give a connection one id */
    static const char tag[] = "wsgate edge_lost";
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned int rawlen = 0;
    char b64[WSG_B64_LEN(16) + 1];
    if (!HMAC(EVP_sha256(), tag, sizeof tag - 1, (const unsigned char *)conn_id, strlen(conn_id),
              raw, &rawlen) ||
        rawlen < 16)
        abort(); /* only out of memory fails an HMAC of a fixed key */
    wsg_b64url_encode(raw, 16, b64);
    snprintf(out, 48, "evt_%s", b64);
}
