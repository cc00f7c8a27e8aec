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
 * text, 256 slots) until their exp, because backends reuse one token for many
 * requests and signature checking would otherwise be most of a send's cost.
 * A hit needs the identical token string, so nothing unverified is accepted;
 * entries are immutable and reference-counted, so a request keeps its claims
 * even when its slot is taken over meanwhile.
 */
#include <fnmatch.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/err.h"
#include "common/hash.h"
#include "control-api/api_int.h"

#define CACHE_SLOTS 256

typedef struct {
    char *token;
    wsg_claims_t claims;
    atomic_int refs;
} tok_entry_t;

static tok_entry_t *cache[CACHE_SLOTS];
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

void api_auth_release(void *ref)
{
    tok_entry_t *e = ref;
    if (!e || atomic_fetch_sub(&e->refs, 1) != 1)
        return;
    wsg_claims_clear(&e->claims);
    free(e->token);
    free(e);
}

static size_t slot_of(const char *tok)
{
    return (size_t)(wsg_hash(tok) % CACHE_SLOTS);
}

static tok_entry_t *cache_get(const char *tok, size_t slot, int64_t now)
{
    pthread_mutex_lock(&cache_mu);
    tok_entry_t *e = cache[slot];
    if (e && e->claims.exp > now && strcmp(e->token, tok) == 0)
        atomic_fetch_add(&e->refs, 1);
    else
        e = NULL;
    pthread_mutex_unlock(&cache_mu);
    return e;
}

/* Caches freshly verified claims (taken over) and returns the entry with
 * one reference for the caller. */
static tok_entry_t *cache_put(const char *tok, size_t slot, wsg_claims_t *claims)
{
    tok_entry_t *e = calloc(1, sizeof *e);
    if (!e || !(e->token = strdup(tok)))
        abort();
    e->claims = *claims;
    memset(claims, 0, sizeof *claims);
    atomic_store(&e->refs, 2);
    pthread_mutex_lock(&cache_mu);
    tok_entry_t *old = cache[slot];
    cache[slot] = e;
    pthread_mutex_unlock(&cache_mu);
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
    int64_t now = (int64_t)time(NULL);
    size_t slot = slot_of(tok);
    tok_entry_t *e = cache_get(tok, slot, now);
    if (!e) {
        char err[160];
        wsg_claims_t c = {0};
        if (wsg_jwt_verify(conf, tok, now, &c, err, sizeof err) != 0) {
            wsg_claims_clear(&c);
            api_problem(r, 401, "invalid token: %s", err);
            return -1;
        }
        e = cache_put(tok, slot, &c);
    }
    r->auth_ref = e;
    r->claims = &e->claims;
    return 0;
}

int api_glob_allows(const char *const *patterns, size_t n, const char *channel)
{
    for (size_t i = 0; i < n; i++)
        if (patterns[i] && fnmatch(patterns[i], channel, 0) == 0)
            return 1;
    return 0;
}

int api_require_channel(api_req_t *r, const char *channel)
{
    const wsg_claims_t *c = r->claims;
    if (!c || !c->channels) /* no channels claim: every channel */
        return 0;
    if (api_glob_allows((const char *const *)c->channels, c->n_channels, channel))
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
