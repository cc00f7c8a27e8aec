/* SPDX-License-Identifier: MIT */
/*
 * webhook.c — Standard Webhooks verification and signing for backends, on
 * the gateway's own implementation (common/whsig.c, compiled into the
 * library), so the SDK accepts exactly what the dispatcher signs.
 * Threads: reentrant; any thread.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/whsig.h"
#include "sdk.h"

/* Longest webhook-id whsig.c signs (its "id.ts." prefix buffer is 160 bytes). */
#define MSG_ID_MAX 128

static wsgate_status decode_key(const char *secret, unsigned char **key, size_t *key_len)
{
    int rc = wsg_whsig_key_decode(secret, key, key_len);
    if (rc == WSG_ENOMEM)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    if (rc != 0)
        return sdk_fail(WSGATE_EKEY, "webhook secret is not whsec_<base64> or is empty");
    return WSGATE_OK;
}

/* Unix seconds from a webhook-timestamp value: 1..18 digits, nothing else. */
static int parse_ts(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
        return -1;
    *out = (int64_t)strtoll(s, NULL, 10);
    return 0;
}

wsgate_status wsgate_webhook_verify_at(const char *secret, const char *msg_id,
                                       const char *timestamp, const char *signature,
                                       const void *body, size_t body_len, int64_t now_s,
                                       int64_t tolerance_s)
{
    if (!secret || !msg_id || !signature || (!body && body_len) || tolerance_s < 0)
        return sdk_fail(WSGATE_EINVAL, "secret, msg_id, signature and body are required");
    int64_t ts;
    if (!timestamp || parse_ts(timestamp, &ts) != 0)
        return sdk_fail(WSGATE_ETIMESTAMP, "webhook-timestamp is not Unix seconds");
    uint64_t skew = now_s >= ts ? (uint64_t)now_s - (uint64_t)ts : (uint64_t)ts - (uint64_t)now_s;
    if (skew > (uint64_t)tolerance_s)
        return sdk_fail(WSGATE_ETIMESTAMP, "webhook-timestamp is %llu s away from now",
                        (unsigned long long)skew);
    if (strlen(msg_id) > MSG_ID_MAX)
        return sdk_fail(WSGATE_ESIGNATURE, "webhook-id is too long");
    unsigned char *key = NULL;
    size_t key_len = 0;
    wsgate_status st = decode_key(secret, &key, &key_len);
    if (st != WSGATE_OK)
        return st;
    int rc = wsg_whsig_verify(key, key_len, msg_id, ts, body ? body : "", body_len, signature,
                              now_s, tolerance_s);
    free(key);
    if (rc != 0)
        return sdk_fail(WSGATE_ESIGNATURE, "no v1 signature matches");
    return WSGATE_OK;
}

wsgate_status wsgate_webhook_verify(const char *secret, const char *msg_id, const char *timestamp,
                                    const char *signature, const void *body, size_t body_len)
{
    return wsgate_webhook_verify_at(secret, msg_id, timestamp, signature, body, body_len,
                                    (int64_t)time(NULL), WSGATE_WEBHOOK_TOLERANCE);
}

wsgate_status wsgate_webhook_sign(const char *secret, const char *msg_id, int64_t timestamp,
                                  const void *body, size_t body_len, char *out, size_t out_len)
{
    if (!secret || !msg_id || (!body && body_len) || !out || out_len < WSGATE_SIGNATURE_LEN ||
        timestamp < 0 || strlen(msg_id) > MSG_ID_MAX)
        return sdk_fail(WSGATE_EINVAL, "secret, msg_id (<= 128 bytes), body and out "
                                       "(>= WSGATE_SIGNATURE_LEN) are required");
    unsigned char *key = NULL;
    size_t key_len = 0;
    wsgate_status st = decode_key(secret, &key, &key_len);
    if (st != WSGATE_OK)
        return st;
    int rc =
        wsg_whsig_sign(key, key_len, msg_id, timestamp, body ? body : "", body_len, out, out_len);
    free(key);
    return rc == 0 ? WSGATE_OK : sdk_fail(WSGATE_ENOMEM, "cannot compute the HMAC");
}
