/* SPDX-License-Identifier: MIT */
/*
 * api_auth.c — control-API authentication and authorization.
 *
 * A request carries "Authorization: Bearer <JWT>" verified with api.auth.jwt
 * (algorithm pinned, exp required: common/jwt.h). Scopes: send, publish,
 * subscribe, disconnect, read, admin (admin implies all). The optional
 * "channels" claim is a list of glob patterns (fnmatch(3) without
 * FNM_PATHNAME, so '*' also matches '/' and '.': "room.*" allows
 * "room.a.b"); publish, subscribe and unsubscribe require the channel to
 * match one of them. Without the claim every channel is allowed. A
 * broadcast reaches every connection, in any channel or none, so it needs a
 * token without the claim (even ["*"] only names channels).
 *
 * Verified tokens are cached (direct-mapped by a hash of the exact token
 * text, API_TOK_SLOTS slots) until their exp, because backends reuse one
 * token for many requests and signature checking would otherwise be most of
 * a send's cost. The cache belongs to its api_t, and each entry also holds
 * the fingerprint (SHA-256) of the verification settings it was verified
 * under: a hit needs the identical token string AND the same key, algorithm,
 * issuer, audience, leeway and context claims, so a token verified by one
 * API is never taken as verified by another API in the same process, or
 * under another key. Entries are immutable and reference-counted, so a
 * request keeps its claims even when its slot is taken over meanwhile.
 *
 * Threads: api_authenticate, api_auth_release and api_auth_rekey on any
 * thread; api_auth_init/api_auth_free from api_new/api_free only.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "control-api/api_int.h"

struct api_tok {
    char *token;
    unsigned char keyfp[API_KEYFP_LEN]; /* verified under these settings */
    wsg_claims_t claims;
    atomic_int refs;
};

static void fp_str(EVP_MD_CTX *m, const char *s, size_t n)
{
    uint64_t len = s ? n : UINT64_MAX; /* absent differs from empty */
    EVP_DigestUpdate(m, &len, sizeof len);
    if (s && n)
        EVP_DigestUpdate(m, s, n);
}

/* SHA-256 over everything that decides whether a token verifies and what
 * its claims are. */
static void key_fingerprint(const wsg_jwt_conf_t *c, unsigned char out[API_KEYFP_LEN])
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    unsigned int n = 0;
    uint32_t nums[2] = {(uint32_t)c->alg, c->leeway_s};
    if (!m || !EVP_DigestInit_ex(m, EVP_sha256(), NULL))
        abort();
    EVP_DigestUpdate(m, nums, sizeof nums);
    fp_str(m, c->secret, c->secret_len);
    fp_str(m, c->public_key, c->public_key_len);
    fp_str(m, c->issuer, c->issuer ? strlen(c->issuer) : 0);
    fp_str(m, c->audience, c->audience ? strlen(c->audience) : 0);
    for (size_t i = 0; i < c->n_context_claims; i++)
        fp_str(m, c->context_claims[i], strlen(c->context_claims[i]));
    if (!EVP_DigestFinal_ex(m, out, &n) || n != API_KEYFP_LEN)
        abort();
    EVP_MD_CTX_free(m);
}

void api_auth_rekey(api_t *a)
{
    unsigned char fp[API_KEYFP_LEN];
    key_fingerprint(&a->cfg->api.jwt, fp);
    pthread_mutex_lock(&a->tokens.mu);
    memcpy(a->tokens.keyfp, fp, sizeof fp);
    pthread_mutex_unlock(&a->tokens.mu);
}

void api_auth_init(api_t *a)
{
    pthread_mutex_init(&a->tokens.mu, NULL);
    memset(a->tokens.slot, 0, sizeof a->tokens.slot);
    api_auth_rekey(a);
}

void api_auth_release(void *ref)
{
    api_tok_t *e = ref;
    if (!e || atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    wsg_claims_clear(&e->claims);
    free(e->token);
    free(e);
}

void api_auth_free(api_t *a)
{
    for (size_t i = 0; i < API_TOK_SLOTS; i++)
        api_auth_release(a->tokens.slot[i]);
    pthread_mutex_destroy(&a->tokens.mu);
}

static size_t slot_of(const char *tok)
{
    return (size_t)(wsg_hash(tok) % API_TOK_SLOTS);
}

static api_tok_t *cache_get(api_tokcache_t *tc, const char *tok, size_t slot, int64_t now)
{
    pthread_mutex_lock(&tc->mu);
    api_tok_t *e = tc->slot[slot];
    if (e && e->claims.exp > now && memcmp(e->keyfp, tc->keyfp, API_KEYFP_LEN) == 0 &&
        strcmp(e->token, tok) == 0)
        atomic_fetch_add(&e->refs, 1);
    else
        e = NULL;
    pthread_mutex_unlock(&tc->mu);
    return e;
}

/* Caches freshly verified claims (taken over) and returns the entry with
 * one reference for the caller. */
static api_tok_t *cache_put(api_tokcache_t *tc, const char *tok, size_t slot, wsg_claims_t *claims)
{
    api_tok_t *e = calloc(1, sizeof *e);
    if (!e || !(e->token = strdup(tok)))
        abort();
    memcpy(e->keyfp, tc->keyfp, API_KEYFP_LEN);
    e->claims = *claims;
    memset(claims, 0, sizeof *claims);
    atomic_store(&e->refs, 2);
    pthread_mutex_lock(&tc->mu);
    api_tok_t *old = tc->slot[slot];
    tc->slot[slot] = e;
    pthread_mutex_unlock(&tc->mu);
    api_auth_release(old);
    return e;
}

int api_authenticate(api_req_t *r, const char *authz)
{
    const wsg_jwt_conf_t *conf = &r->a->cfg->api.jwt;
    if (!authz || strncasecmp(authz, "Bearer ", 7) != 0) {
        api_problem(r, 401, "missing bearer token");
        return -1;
    }
    const char *tok = authz + 7;
    while (*tok == ' ')
        tok++;
    if (!conf->enabled) {
        api_problem(r, 401, "no api.auth.jwt key is configured");
        return -1;
    }
    int64_t now = wsg_wall_s();
    size_t slot = slot_of(tok);
    api_tok_t *e = cache_get(&r->a->tokens, tok, slot, now);
    if (!e) {
        char err[160];
        wsg_claims_t c = {0};
        if (wsg_jwt_verify(conf, tok, now, &c, err, sizeof err) != 0) {
            wsg_claims_clear(&c);
            api_problem(r, 401, "invalid token: %s", err);
            return -1;
        }
        e = cache_put(&r->a->tokens, tok, slot, &c);
    }
    r->auth_ref = e;
    r->claims = &e->claims;
    return 0;
}

int api_require_channel(api_req_t *r, const char *channel)
{
    if (!r->claims || wsg_claims_channel_ok(r->claims, channel))
        return 0;
    api_problem(r, 403, "channel '%s' is outside this token's channels", channel);
    return -1;
}

int api_require_all_channels(api_req_t *r, const char *what)
{
    const wsg_claims_t *c = r->claims;
    if (!c || !c->channels)
        return 0;
    api_problem(r, 403, "a token limited to channels cannot %s: it reaches every connection", what);
    return -1;
}
