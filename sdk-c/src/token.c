/* SPDX-License-Identifier: MIT */
/*
 * token.c — mints tokens with the gateway's own code (common/jwt.c on
 * libjwt), so a token from the SDK is one the gateway's verifier accepts.
 * Threads: reentrant; any thread.
 */
#include <string.h>
#include <time.h>

#include "common/config.h"
#include "common/err.h"
#include "common/jwt.h"
#include "sdk.h"

_Static_assert((int)WSGATE_HS256 == (int)WSG_ALG_HS256 && (int)WSGATE_ES512 == (int)WSG_ALG_ES512,
               "wsgate_alg mirrors wsg_alg_t");

wsgate_status wsgate_token_mint(const wsgate_token_params *p, char **out)
{
    if (!out)
        return sdk_fail(WSGATE_EINVAL, "out is NULL");
    *out = NULL;
    if (!p || p->alg < WSGATE_HS256 || p->alg > WSGATE_ES512)
        return sdk_fail(WSGATE_EINVAL, "params with an algorithm are required");
    if (p->ttl_s <= 0 || p->ttl_s > (int64_t)100 * 365 * 86400)
        return sdk_fail(WSGATE_EINVAL, "ttl_s must be between 1 s and 100 years");
    if (!p->key || (p->key_len == 0 && !*(const char *)p->key))
        return sdk_fail(WSGATE_EKEY, "no key");
    if (p->n_channels && !p->channels)
        return sdk_fail(WSGATE_EINVAL, "channels is NULL");
    for (size_t i = 0; i < p->n_channels; i++)
        if (!p->channels[i] || !*p->channels[i])
            return sdk_fail(WSGATE_EINVAL, "channel %zu is empty", i);
    wsg_mint_t m = {.alg = (wsg_alg_t)p->alg,
                    .key = p->key,
                    .key_len = p->key_len ? p->key_len : strlen(p->key),
                    .sub = p->sub,
                    .scope = p->scope,
                    .channels = (const char *const *)p->channels,
                    .n_channels = p->n_channels,
                    .issuer = p->issuer,
                    .audience = p->audience,
                    .exp = (int64_t)time(NULL) + p->ttl_s,
                    .extra_json = p->extra_json};
    char err[256] = "";
    int rc = wsg_jwt_mint(&m, out, err, sizeof err);
    if (rc == 0)
        return WSGATE_OK;
    /* jwt.c's messages: "key not usable for X", "cannot sign with this key
     * for X", "out of memory", or about the claims. */
    if (rc == WSG_ENOMEM || strstr(err, "memory"))
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    if (strstr(err, "key"))
        return sdk_fail(WSGATE_EKEY, "%s", err);
    return sdk_fail(WSGATE_EINVAL, "%s", err);
}
