/* SPDX-License-Identifier: MIT */
/*
 * b64.h — base64 (RFC 4648 §4, padded) and base64url (§5, unpadded), on
 * OpenSSL's EVP block coders. Reentrant; any thread.
 */
#ifndef WSG_B64_H
#define WSG_B64_H

#include <stddef.h>

/* Length of the padded base64 text of n bytes, without NUL. */
#define WSG_B64_LEN(n) (((n) + 2) / 3 * 4)

/* Encodes n bytes into out (>= WSG_B64_LEN(n)+1 bytes), NUL-terminated.
 * Returns the text length. */
size_t wsg_b64_encode(const unsigned char *in, size_t n, char *out);

/* Unpadded base64url; out needs WSG_B64_LEN(n)+1 bytes. Returns the length. */
size_t wsg_b64url_encode(const unsigned char *in, size_t n, char *out);

/* Decodes padded base64 text of length n into out (>= n/4*3 bytes).
 * Returns 0 and the decoded length in *outlen, or WSG_EINVAL. */
int wsg_b64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen);

/* Room wsg_b64url_decode needs for text of length n. */
#define WSG_B64URL_DECODED_MAX(n) (((n) + 3) / 4 * 3)

/* Decodes unpadded base64url text of length n into out (>= WSG_B64URL_DECODED_MAX(n)
 * bytes). Strict: the URL alphabet only, no '=', and canonical (unused trailing
 * bits zero), so that every byte string has exactly one spelling. Returns 0
 * and the decoded length in *outlen, or WSG_EINVAL (WSG_ENOMEM). */
int wsg_b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen);

#endif
