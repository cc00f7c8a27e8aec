/*
 * api_auth.c — control-API authentication and authorization.
 *
 * A request carries "Authorization: Bearer <JWT>" verified with api.auth.jwt
 * (algorithm pinned, exp required: common/jwt.h). Scopes: send, publish,
 * subscribe, disconnect, read, admin (admin implies all). The optional
 * "channels" claim is a list of glob patterns (fnmatch(3) without
 * FNM_PATHNAME, so '*' also matches '/' and '.': "room.*" allows
 * "room.a.b"); publish, subscribe and unsubscribe require the channel to
 * match one of them. Without the claim every channel is allowed.
 */
#include <fnmatch.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/err.h"
#include "control-api/api_int.h"

int api_authenticate(api_req_t *r, const char *authz, wsg_claims_t *out)
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
    char err[160];
    if (wsg_jwt_verify(conf, tok, (int64_t)time(NULL), out, err, sizeof err) != 0) {
        api_problem(r, 401, "invalid token: %s", err);
        return -1;
    }
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
