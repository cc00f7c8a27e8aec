/* SPDX-License-Identifier: MIT */
/*
 * whsig.h — Standard Webhooks signatures (https://www.standardwebhooks.com):
 * webhook-signature = "v1," base64(HMAC-SHA256(key, id "." timestamp "." body)).
 * The key is the base64 text after "whsec_" in the configured secret.
 *
 * Threads: reentrant; any thread. Uses OpenSSL's HMAC.
 */
#ifndef WSG_WHSIG_H
#define WSG_WHSIG_H

#include <stddef.h>
#include <stdint.h>

/* Room for "v1," + base64 of 32 bytes + NUL. */
#define WSG_WHSIG_LEN 64

/* Decodes "whsec_<base64>" (or a secret without the prefix, used as raw
 * bytes) into a new key buffer. Returns 0, WSG_EINVAL (bad base64, empty). */
int wsg_whsig_key_decode(const char *secret, unsigned char **key, size_t *key_len);

/* Writes "v1,<base64 signature>" into out (>= WSG_WHSIG_LEN bytes). */
int wsg_whsig_sign(const unsigned char *key, size_t key_len, const char *msg_id, int64_t ts_s,
                   const char *body, size_t body_len, char *out, size_t outlen);

/* Checks a webhook-signature header (space-separated "v1,..." entries) in
 * constant time and that |now_s - ts_s| <= tolerance_s. Returns 0 or WSG_EAUTH. */
int wsg_whsig_verify(const unsigned char *key, size_t key_len, const char *msg_id, int64_t ts_s,
                     const char *body, size_t body_len, const char *header, int64_t now_s,
                     int64_t tolerance_s);

#endif
