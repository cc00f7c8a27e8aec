/* SPDX-License-Identifier: MIT */
/* whsig.c — Standard Webhooks signing and verification on OpenSSL HMAC. See whsig.h. */
#include "common/whsig.h"
#include "common/b64.h"
#include "common/err.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int wsg_whsig_key_decode(const char *secret, unsigned char **key, size_t *key_len)
{
    if (!secret || !*secret)
        return WSG_EINVAL;
    size_t n = strlen(secret);
    if (strncmp(secret, "whsec_", 6) != 0) {
        /* Not in Standard Webhooks form: the secret's bytes are the key. */
        *key = malloc(n);
        if (!*key)
            return WSG_ENOMEM;
        memcpy(*key, secret, n);
        *key_len = n;
        return 0;
    }
    const char *b = secret + 6;
    size_t bl = n - 6;
    if (bl == 0 || bl % 4 != 0)
        return WSG_EINVAL;
    unsigned char *out = malloc(bl / 4 * 3 + 1);
    if (!out)
        return WSG_ENOMEM;
    size_t outlen = 0;
    if (wsg_b64_decode(b, bl, out, &outlen) != 0 || outlen == 0) {
        free(out);
        return WSG_EINVAL;
    }
    *key = out;
    *key_len = outlen;
    return 0;
}

/* HMAC-SHA256 over "id.ts.body" without copying the body. */
static int whsig_mac(const unsigned char *key, size_t key_len, const char *msg_id, int64_t ts_s,
                     const char *body, size_t body_len, unsigned char mac[32])
{
    char prefix[160];
    int pl = snprintf(prefix, sizeof prefix, "%s.%lld.", msg_id, (long long)ts_s);
    if (pl < 0 || (size_t)pl >= sizeof prefix)
        return WSG_EINVAL;
    int rc = WSG_EINVAL;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mc = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    if (mc && EVP_MAC_init(mc, key, key_len, params) &&
        EVP_MAC_update(mc, (const unsigned char *)prefix, (size_t)pl) &&
        EVP_MAC_update(mc, (const unsigned char *)body, body_len) &&
        EVP_MAC_final(mc, mac, &outl, 32) && outl == 32)
        rc = 0;
    EVP_MAC_CTX_free(mc);
    EVP_MAC_free(m);
    return rc;
}

int wsg_whsig_sign(const unsigned char *key, size_t key_len, const char *msg_id, int64_t ts_s,
                   const char *body, size_t body_len, char *out, size_t outlen)
{
    unsigned char mac[32];
    if (outlen < WSG_WHSIG_LEN)
        return WSG_EINVAL;
    int rc = whsig_mac(key, key_len, msg_id, ts_s, body, body_len, mac);
    if (rc != 0)
        return rc;
    memcpy(out, "v1,", 3);
    wsg_b64_encode(mac, sizeof mac, out + 3);
    return 0;
}

int wsg_whsig_verify(const unsigned char *key, size_t key_len, const char *msg_id, int64_t ts_s,
                     const char *body, size_t body_len, const char *header, int64_t now_s,
                     int64_t tolerance_s)
{
    char want[WSG_WHSIG_LEN];
    /* |now - ts| in unsigned arithmetic: ts comes from a request header and
     * may be anything, and a signed difference could overflow. */
    uint64_t skew =
        now_s >= ts_s ? (uint64_t)now_s - (uint64_t)ts_s : (uint64_t)ts_s - (uint64_t)now_s;
    if (!header || tolerance_s < 0 || skew > (uint64_t)tolerance_s)
        return WSG_EAUTH;
    if (wsg_whsig_sign(key, key_len, msg_id, ts_s, body, body_len, want, sizeof want) != 0)
        return WSG_EAUTH;
    size_t wl = strlen(want);
    /* The header may carry several space-separated signatures (key rotation). */
    for (const char *p = header; *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == wl && CRYPTO_memcmp(p, want, wl) == 0)
            return 0;
        p = e;
    }
    return WSG_EAUTH;
}
