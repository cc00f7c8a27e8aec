/* SPDX-License-Identifier: MIT */
/*
 * disp_sauth.c — authorization of a backend stream's actions
 * (docs/webhooks.md "Backend streams", "Authorization"): when the control
 * API has api.auth.jwt, a backend presents a control-API token over its
 * stream ({"auth":"<JWT>"}) and each action needs the scope of the API
 * endpoint that does the same — send → send, close → disconnect,
 * subscribe / unsubscribe → subscribe, publish → publish, admin implies
 * all — and, for a channel, the token's "channels" claim. The token is
 * verified by the API's own code (wsg_jwt_verify with api.auth.jwt,
 * wsg_scope_has, wsg_claims_channel_ok): one rule in one place. Once its
 * exp has passed it is verified again (as the API's cache does), so the
 * configured leeway holds and an expired token gives 401 until a new auth
 * frame.
 *
 * Threads: pure functions on one disp_sauth_t (the stream thread's).
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/jwt.h"
#include "dispatcher/disp_internal.h"

void disp_sauth_clear(disp_sauth_t *a)
{
    free(a->token);
    wsg_claims_clear(&a->claims);
    memset(a, 0, sizeof *a);
}

int disp_sauth_set(disp_sauth_t *a, const wsg_jwt_conf_t *conf, const char *token, int64_t now_s,
                   char *err, size_t errlen)
{
    wsg_claims_t c = {0};
    char why[160] = "";
    int rc = wsg_jwt_verify(conf, token, now_s, &c, why, sizeof why);
    if (rc != 0) {
        wsg_claims_clear(&c);
        return rc == WSG_ENOMEM ? rc : wsg_errf(err, errlen, WSG_EAUTH, "invalid token: %s", why);
    }
    char *t = strdup(token);
    if (!t) {
        wsg_claims_clear(&c);
        return WSG_ENOMEM;
    }
    disp_sauth_clear(a);
    a->token = t;
    a->claims = c;
    return 0;
}

/* The scope of the control-API endpoint that does what fr does. */
static const char *scope_of(const disp_frame_t *fr)
{
    if (fr->kind == DISP_FRAME_PUBLISH)
        return WSG_SCOPE_PUBLISH;
    switch (fr->act.op) {
    case BUS_CMD_SEND:
        return WSG_SCOPE_SEND;
    case BUS_CMD_CLOSE:
        return WSG_SCOPE_DISCONNECT;
    case BUS_CMD_SUBSCRIBE:
    case BUS_CMD_UNSUBSCRIBE:
        return WSG_SCOPE_SUBSCRIBE;
    default:
        return WSG_SCOPE_ADMIN;
    }
}

int disp_sauth_check(disp_sauth_t *a, const wsg_jwt_conf_t *conf, const disp_frame_t *fr,
                     int64_t now_s, char *err, size_t errlen)
{
    if (!a->token) {
        wsg_errf(err, errlen, 0, "no token: send {\"auth\":\"<control-API token>\"} first");
        return 401;
    }
    if (now_s >= a->claims.exp) {
        wsg_claims_t c = {0};
        char why[160] = "";
        int rc = wsg_jwt_verify(conf, a->token, now_s, &c, why, sizeof why);
        wsg_claims_clear(&c);
        if (rc != 0) {
            wsg_errf(err, errlen, 0, "invalid token: %s; send a new {\"auth\":...}", why);
            return 401;
        }
    }
    const char *scope = scope_of(fr);
    if (!wsg_scope_has(a->claims.scope, scope)) {
        wsg_errf(err, errlen, 0, "this token lacks the '%s' scope", scope);
        return 403;
    }
    const char *ch = fr->act.channel;
    if (ch && !wsg_claims_channel_ok(&a->claims, ch)) {
        wsg_errf(err, errlen, 0, "channel '%s' is outside this token's channels", ch);
        return 403;
    }
    return 0;
}
