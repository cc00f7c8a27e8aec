/* SPDX-License-Identifier: MIT */
/*
 * jwt.c — JWT verification and minting on libjwt 1.10 and jansson. See jwt.h.
 *
 * libjwt 1.10 verifies a signature with whatever algorithm the token's own
 * header names and has no claim validation (no jwt_valid). So verification
 * here runs in this order: bound the size; decode the header ourselves and
 * refuse any "alg" but the configured one (this is what stops "none" and an
 * HS256 token whose HMAC key is the server's RSA public key); only then let
 * jwt_decode() check the signature with the configured key; re-check
 * jwt_get_alg(); and finally validate the claims (exp, nbf, iss, aud, types)
 * with jansson. Reasons written to err are fixed phrases and claim names,
 * never any part of the token.
 */
#include "common/jwt.h"
#include "common/b64.h"
#include "common/clock.h"
#include "common/err.h"

#include <errno.h>
#include <fnmatch.h>
#include <jansson.h>
#include <jwt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Tokens travel in a header or a query string; 16 KiB is far above any real
 * token and keeps a hostile one from costing more than that. */
#define JWT_MAX_LEN 16384

_Static_assert((int)WSG_ALG_HS256 == (int)JWT_ALG_HS256 &&
                   (int)WSG_ALG_RS256 == (int)JWT_ALG_RS256 &&
                   (int)WSG_ALG_ES512 == (int)JWT_ALG_ES512,
               "wsg_alg_t mirrors libjwt's jwt_alg_t");

/* Names of wsg_alg_t (config.h), here rather than with the config so that
 * the C SDK, which compiles this file without the config, has them too. */
static const char *const alg_table[] = {"none",  "HS256", "HS384", "HS512", "RS256",
                                        "RS384", "RS512", "ES256", "ES384", "ES512"};

wsg_alg_t wsg_alg_from_name(const char *name)
{
    for (int i = 1; name && i < (int)(sizeof alg_table / sizeof alg_table[0]); i++)
        if (strcmp(name, alg_table[i]) == 0)
            return (wsg_alg_t)i;
    return WSG_ALG_NONE;
}

const char *wsg_alg_name(wsg_alg_t alg)
{
    if ((int)alg < 0 || (size_t)alg >= sizeof alg_table / sizeof alg_table[0])
        return "none";
    return alg_table[alg];
}

#define REFUSE(...) wsg_errf(err, errlen, WSG_EAUTH, __VA_ARGS__)

/* base64url (unpadded, strict) -> bytes, NUL-terminated. Returns a new buffer or NULL. */
static unsigned char *b64url_decode(const char *in, size_t n, size_t *outlen)
{
    unsigned char *out = malloc(WSG_B64URL_DECODED_MAX(n) + 1);
    if (!out || wsg_b64url_decode(in, n, out, outlen) != 0) {
        free(out);
        return NULL;
    }
    out[*outlen] = '\0';
    return out;
}

/* The "alg" of the token's header must name the configured algorithm, and
 * it may not name a "crit" extension (none is understood here). */
static int check_header_alg(const wsg_jwt_conf_t *conf, const char *token, char *err, size_t errlen)
{
    const char *dot = strchr(token, '.');
    if (!dot || !strchr(dot + 1, '.') || strchr(strchr(dot + 1, '.') + 1, '.'))
        return REFUSE("malformed token");
    size_t n = 0;
    unsigned char *raw = b64url_decode(token, (size_t)(dot - token), &n);
    if (!raw)
        return REFUSE("malformed token header");
    json_t *hdr = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    int rc = 0;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (!json_is_object(hdr))
        rc = REFUSE("malformed token header");
    else if (!alg)
        rc = REFUSE("token header has no alg");
    else if (conf->alg == WSG_ALG_NONE || strcmp(alg, wsg_alg_name(conf->alg)) != 0)
        rc = REFUSE("algorithm not allowed");
    else if (json_object_get(hdr, "crit")) /* RFC 7515 §4.1.11: we implement no extension */
        rc = REFUSE("unsupported critical header");
    json_decref(hdr);
    return rc;
}

static int conf_key(const wsg_jwt_conf_t *conf, const unsigned char **key, int *len)
{
    const char *k = conf->alg <= WSG_ALG_HS512 ? conf->secret : conf->public_key;
    size_t n = conf->alg <= WSG_ALG_HS512 ? conf->secret_len : conf->public_key_len;
    if (k && n == 0)
        n = strlen(k);
    if (!k || n == 0 || n > INT32_MAX)
        return WSG_EINVAL;
    *key = (const unsigned char *)k;
    *len = (int)n;
    return 0;
}

/* Signature check by libjwt with the configured key; returns the claims. */
static int check_signature(const wsg_jwt_conf_t *conf, const char *token, json_t **claims,
                           char *err, size_t errlen)
{
    const unsigned char *key;
    int klen, rc;
    if (conf_key(conf, &key, &klen) != 0)
        return REFUSE("no verification key configured");
    jwt_t *j = NULL;
    if (jwt_decode(&j, token, key, klen) != 0) {
        rc = REFUSE("bad signature");
        goto out;
    }
    if ((int)jwt_get_alg(j) != (int)conf->alg) { /* belt and braces: header was checked */
        rc = REFUSE("algorithm not allowed");
        goto out;
    }
    char *js = jwt_get_grants_json(j, NULL);
    *claims = js ? json_loads(js, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(js);
    rc = json_is_object(*claims) ? 0 : REFUSE("malformed token claims");
out:
    jwt_free(j);
    return rc;
}

static int check_times(const wsg_jwt_conf_t *conf, json_t *cl, int64_t now, char *err,
                       size_t errlen)
{
    json_t *exp = json_object_get(cl, "exp");
    json_t *nbf = json_object_get(cl, "nbf");
    int64_t leeway = conf->leeway_s;
    if (!exp)
        return REFUSE("token has no exp");
    if (!json_is_integer(exp))
        return REFUSE("exp is not an integer");
    if (now - leeway >= (int64_t)json_integer_value(exp))
        return REFUSE("token expired");
    if (nbf && !json_is_integer(nbf))
        return REFUSE("nbf is not an integer");
    if (nbf && now + leeway < (int64_t)json_integer_value(nbf))
        return REFUSE("token not yet valid");
    return 0;
}

static int aud_matches(json_t *aud, const char *want)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    size_t i;
    json_t *v;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
            return 1;
    }
    return 0;
}

static int check_iss_aud(const wsg_jwt_conf_t *conf, json_t *cl, char *err, size_t errlen)
{
    if (conf->issuer && *conf->issuer) {
        const char *iss = json_string_value(json_object_get(cl, "iss"));
        if (!iss || strcmp(iss, conf->issuer) != 0)
            return REFUSE("wrong issuer");
    }
    if (conf->audience && *conf->audience) {
        if (!aud_matches(json_object_get(cl, "aud"), conf->audience))
            return REFUSE("wrong audience");
    }
    return 0;
}

/* Optional string claim: absent -> NULL, string -> copy, anything else refused. */
static int take_string(json_t *cl, const char *name, char **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(cl, name);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return REFUSE("claim %s is not a string", name);
    *out = strdup(json_string_value(v));
    return *out ? 0 : WSG_ENOMEM;
}

static int take_channels(json_t *cl, wsg_claims_t *out, char *err, size_t errlen)
{
    json_t *ch = json_object_get(cl, "channels");
    if (!ch || json_is_null(ch))
        return 0;
    if (!json_is_array(ch))
        return REFUSE("claim channels is not an array of strings");
    size_t n = json_array_size(ch), i;
    json_t *v;
    json_array_foreach(ch, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0)
            return REFUSE("claim channels is not an array of strings");
    }
    out->channels = calloc(n ? n : 1, sizeof *out->channels);
    if (!out->channels)
        return WSG_ENOMEM;
    json_array_foreach(ch, i, v)
    {
        out->channels[i] = strdup(json_string_value(v));
        if (!out->channels[i])
            return WSG_ENOMEM;
        out->n_channels = i + 1;
    }
    return 0;
}

static int take_context(const wsg_jwt_conf_t *conf, json_t *cl, wsg_claims_t *out)
{
    json_t *ctx = json_object();
    if (!ctx)
        return WSG_ENOMEM;
    for (size_t i = 0; i < conf->n_context_claims; i++) {
        json_t *v = json_object_get(cl, conf->context_claims[i]);
        if (v && json_object_set(ctx, conf->context_claims[i], v) != 0) {
            json_decref(ctx);
            return WSG_ENOMEM;
        }
    }
    out->context_json = json_dumps(ctx, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(ctx);
    return out->context_json ? 0 : WSG_ENOMEM;
}

static int take_claims(const wsg_jwt_conf_t *conf, json_t *cl, wsg_claims_t *out, char *err,
                       size_t errlen)
{
    int rc = take_string(cl, "sub", &out->sub, err, errlen);
    if (rc == 0)
        rc = take_string(cl, "scope", &out->scope, err, errlen);
    if (rc == 0)
        rc = take_channels(cl, out, err, errlen);
    if (rc == 0)
        rc = take_context(conf, cl, out);
    if (rc == WSG_ENOMEM)
        wsg_errf(err, errlen, rc, "out of memory");
    out->exp = (int64_t)json_integer_value(json_object_get(cl, "exp"));
    return rc;
}

int wsg_jwt_verify(const wsg_jwt_conf_t *conf, const char *token, int64_t now_s, wsg_claims_t *out,
                   char *err, size_t errlen)
{
    json_t *cl = NULL;
    int rc;
    memset(out, 0, sizeof *out);
    if (!conf || !token || !*token)
        return REFUSE("no token");
    if (strnlen(token, JWT_MAX_LEN + 1) > JWT_MAX_LEN)
        return REFUSE("token too long");
    rc = check_header_alg(conf, token, err, errlen);
    if (rc == 0)
        rc = check_signature(conf, token, &cl, err, errlen);
    if (rc == 0)
        rc = check_times(conf, cl, now_s, err, errlen);
    if (rc == 0)
        rc = check_iss_aud(conf, cl, err, errlen);
    if (rc == 0)
        rc = take_claims(conf, cl, out, err, errlen);
    json_decref(cl);
    if (rc != 0)
        wsg_claims_clear(out);
    return rc;
}

void wsg_claims_clear(wsg_claims_t *c)
{
    if (!c)
        return;
    free(c->sub);
    free(c->scope);
    for (size_t i = 0; i < c->n_channels; i++)
        free(c->channels[i]);
    free(c->channels);
    free(c->context_json);
    memset(c, 0, sizeof *c);
}

/* The space-separated entry of list equal to the n bytes at want, or NULL. */
static const char *scope_find(const char *list, const char *want, size_t wn)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        if (n == wn && memcmp(p, want, n) == 0)
            return p;
        p += n;
    }
    return NULL;
}

int wsg_scope_has(const char *scopes, const char *want)
{
    if (!scopes || !want || !*want)
        return 0;
    return scope_find(scopes, want, strlen(want)) ||
           scope_find(scopes, WSG_SCOPE_ADMIN, strlen(WSG_SCOPE_ADMIN));
}

const char *wsg_scope_unknown(const char *scopes)
{
    for (const char *p = scopes ? scopes : ""; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n && !scope_find(WSG_SCOPES, p, n))
            return p;
        p += n;
    }
    return NULL;
}

/* The claims object of a mint request: extra_json, then the named claims over it. */
static json_t *mint_claims(const wsg_mint_t *m, char *err, size_t errlen)
{
    json_t *cl =
        m->extra_json ? json_loads(m->extra_json, JSON_REJECT_DUPLICATES, NULL) : json_object();
    if (!json_is_object(cl)) {
        json_decref(cl);
        wsg_errf(err, errlen, WSG_EINVAL, "extra claims are not a JSON object");
        return NULL;
    }
    int bad = 0;
    if (m->sub)
        bad |= json_object_set_new(cl, "sub", json_string(m->sub));
    if (m->scope)
        bad |= json_object_set_new(cl, "scope", json_string(m->scope));
    if (m->issuer && *m->issuer)
        bad |= json_object_set_new(cl, "iss", json_string(m->issuer));
    if (m->audience && *m->audience)
        bad |= json_object_set_new(cl, "aud", json_string(m->audience));
    if (m->n_channels > 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < m->n_channels; i++)
            bad |= json_array_append_new(arr, json_string(m->channels[i]));
        bad |= json_object_set_new(cl, "channels", arr);
    }
    bad |= json_object_set_new(cl, "iat", json_integer((json_int_t)wsg_wall_s()));
    bad |= json_object_set_new(cl, "exp", json_integer((json_int_t)m->exp));
    if (bad) { /* a NULL value (bad UTF-8 or no memory) makes the setter fail */
        json_decref(cl);
        wsg_errf(err, errlen, WSG_EINVAL, "claims are not valid UTF-8 strings");
        return NULL;
    }
    return cl;
}

int wsg_jwt_mint(const wsg_mint_t *m, char **out, char *err, size_t errlen)
{
    jwt_t *j = NULL;
    json_t *cl = NULL;
    char *js = NULL;
    int rc = WSG_EINVAL;
    *out = NULL;
    if (!m || m->alg == WSG_ALG_NONE || m->alg > WSG_ALG_ES512)
        return wsg_errf(err, errlen, WSG_EINVAL, "no signing algorithm");
    if (!m->key || m->key_len == 0 || m->key_len > INT32_MAX || m->exp <= 0)
        return wsg_errf(err, errlen, WSG_EINVAL, m->exp <= 0 ? "exp required" : "no signing key");
    if (!(cl = mint_claims(m, err, errlen)))
        goto out;
    if (!(js = json_dumps(cl, JSON_COMPACT)) || jwt_new(&j) != 0 ||
        jwt_add_grants_json(j, js) != 0) {
        rc = wsg_errf(err, errlen, WSG_ENOMEM, "out of memory");
        goto out;
    }
    if (jwt_set_alg(j, (jwt_alg_t)m->alg, (const unsigned char *)m->key, (int)m->key_len) != 0) {
        wsg_errf(err, errlen, WSG_EINVAL, "key not usable for %s", wsg_alg_name(m->alg));
        goto out;
    }
    errno = 0;
    *out = jwt_encode_str(j);
    if (!*out) {
        wsg_errf(err, errlen, WSG_EINVAL, "cannot sign with this key for %s", wsg_alg_name(m->alg));
        goto out;
    }
    rc = 0;
out:
    free(js);
    json_decref(cl);
    jwt_free(j);
    return rc;
}

int wsg_channels_allow(const char *const *patterns, size_t n, const char *channel)
{
    for (size_t i = 0; i < n; i++)
        if (patterns[i] && fnmatch(patterns[i], channel, 0) == 0)
            return 1;
    return 0;
}

int wsg_claims_channel_ok(const wsg_claims_t *c, const char *channel)
{
    return !c->channels ||
           wsg_channels_allow((const char *const *)c->channels, c->n_channels, channel);
}
