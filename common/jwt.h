/* SPDX-License-Identifier: MIT */
/*
 * jwt.h — JSON Web Tokens for client handshakes (docs/contract.md §2) and the
 * control API (§4), on libjwt 1.10.
 *
 * Verification pins the algorithm: a token whose header "alg" differs from
 * the configured one — including "none", and an HS256 token "signed" with an
 * RSA public key as the HMAC secret — is refused before its claims are read.
 * "exp" is required; "nbf", "iss" and "aud" are checked when configured;
 * leeway from the config applies to exp and nbf.
 *
 * Threads: every function is reentrant; any thread. Besides the gateway, the
 * C SDK (sdk-c/) compiles this file, with b64.c, err.c and text.c.
 * Ownership: wsg_claims_t fields are owned by the claims and freed by
 * wsg_claims_clear(); wsg_jwt_mint() returns a new string the caller frees.
 */
#ifndef WSG_JWT_H
#define WSG_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

typedef struct {
    char *sub;       /* NULL when absent */
    char *scope;     /* space-separated scopes, NULL when absent */
    char **channels; /* "channels" claim (array of strings), n_channels entries */
    size_t n_channels;
    char *context_json; /* JSON object of the configured context claims, "{}" if none */
    int64_t exp;
} wsg_claims_t;

/* Verifies token against conf at time now_s (Unix seconds). Returns 0 and
 * fills out, or WSG_EAUTH with a reason in err ("token expired", "algorithm
 * not allowed", "bad signature", ...). The reason never contains the token. */
int wsg_jwt_verify(const wsg_jwt_conf_t *conf, const char *token, int64_t now_s, wsg_claims_t *out,
                   char *err, size_t errlen);

void wsg_claims_clear(wsg_claims_t *c);

/* The control API's scopes, the one list: the API's routing table names
 * them by these macros and `wsgate token` refuses any other. */
#define WSG_SCOPE_SEND "send"
#define WSG_SCOPE_PUBLISH "publish"
#define WSG_SCOPE_SUBSCRIBE "subscribe"
#define WSG_SCOPE_DISCONNECT "disconnect"
#define WSG_SCOPE_READ "read"
#define WSG_SCOPE_ADMIN "admin" /* implies every other */
#define WSG_SCOPES                                                                                 \
    WSG_SCOPE_SEND " " WSG_SCOPE_PUBLISH " " WSG_SCOPE_SUBSCRIBE " " WSG_SCOPE_DISCONNECT          \
                   " " WSG_SCOPE_READ " " WSG_SCOPE_ADMIN

/* 1 if the space-separated scope list contains want (or "admin"). */
int wsg_scope_has(const char *scopes, const char *want);

/* 1 when channel matches one of patterns[0..n) (fnmatch(3) globs without
 * FNM_PATHNAME: '*' also matches '/' and '.'). */
int wsg_channels_allow(const char *const *patterns, size_t n, const char *channel);
/* 1 when a token with claims c may act on channel (control API and
 * backend streams alike): it has no "channels" claim, or one of its
 * patterns matches. */
int wsg_claims_channel_ok(const wsg_claims_t *c, const char *channel);

/* The first entry of the space-separated list scopes that is not one of
 * WSG_SCOPES (its length is strcspn(p, " ")), or NULL if all are known. */
const char *wsg_scope_unknown(const char *scopes);

typedef struct {
    wsg_alg_t alg;
    const char *key; /* HS*: secret; RS or ES: PEM private key */
    size_t key_len;
    const char *sub; /* optional claims; NULL = omitted */
    const char *scope;
    const char *const *channels;
    size_t n_channels;
    const char *issuer;
    const char *audience;
    int64_t exp;            /* absolute Unix seconds; required */
    const char *extra_json; /* optional JSON object merged into the claims */
} wsg_mint_t;

/* Mints a signed token. Returns 0 and a new string in *out, or WSG_EINVAL. */
int wsg_jwt_mint(const wsg_mint_t *m, char **out, char *err, size_t errlen);

#endif
