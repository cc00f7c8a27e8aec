/* SPDX-License-Identifier: MIT */
/*
 * token.h — mint JSON Web Tokens the gateway accepts: control-API tokens
 * (scopes, channel globs) and client tokens for a route's handshake (sub,
 * channels to subscribe on connect, context claims).
 *
 * A wsgate_client mints and refreshes its own control-API token (client.h);
 * call wsgate_token_mint() for client tokens, or for a token you pass along.
 *
 * Threads: reentrant; any thread.
 */
#ifndef WSGATE_TOKEN_H
#define WSGATE_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What to put in a token. Zero-initialise it and set what you need; the
 * function only reads it during the call. */
typedef struct wsgate_token_params {
    wsgate_alg alg;              /* required */
    const void *key;             /* HS: the shared secret; RS or ES: a PEM private key */
    size_t key_len;              /* 0: key is a NUL-terminated string */
    int64_t ttl_s;               /* lifetime in seconds from now, > 0 (exp = now + ttl_s) */
    const char *sub;             /* the user (client tokens); NULL: omitted */
    const char *scope;           /* control API: space-separated "send publish subscribe
                                    disconnect read admin"; NULL: omitted */
    const char *const *channels; /* control API: globs limiting publish and
                                    subscribe; client: channels joined on
                                    connect. n_channels entries */
    size_t n_channels;
    const char *issuer;     /* "iss", NULL: omitted */
    const char *audience;   /* "aud", NULL: omitted */
    const char *extra_json; /* a JSON object of further claims (context), or NULL */
} wsgate_token_params;

/* Mints a signed token into *out (a new string, free with wsgate_free()).
 * Returns WSGATE_OK, WSGATE_EINVAL (missing alg or ttl, bad extra_json,
 * non-UTF-8 claim), WSGATE_EKEY (the key cannot sign with alg) or
 * WSGATE_ENOMEM. The key never appears in a problem's detail. */
WSGATE_API wsgate_status wsgate_token_mint(const wsgate_token_params *p, char **out);

#ifdef __cplusplus
}
#endif

#endif
