/* SPDX-License-Identifier: MIT */
/*
 * fuzz_config.c — libFuzzer target for the configuration loader
 * (common/config.c, config_check.c, config_schema.c on libyaml): the whole
 * input is a config file's text, loaded with wsg_config_load_string(). A
 * config file is an operator's, but it is also what `wsgate check-config`
 * is pointed at, and start-up must end in a clear error, never a crash.
 * Checks: a refusal says where and why and returns nothing; a loaded config
 * holds what the loader promises (route paths absolute, backends parseable:
 * http(s), or ws(s) for a backend stream; every rule backend within
 * allowed_backends, allowed_backends entries usable as prefixes, HS*
 * secrets long enough), and `check-config --verbose` output
 * (wsg_config_describe) never shows a secret: describing the config again
 * after every secret's bytes were changed (length kept) prints the same
 * text. (Looking for the secret's text in the output would be wrong: the
 * same text may be a legitimate value elsewhere, an issuer say.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/err.h"
#include "common/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_jwt(const wsg_jwt_conf_t *j)
{
    if (!j->enabled || !j->secret)
        return;
    if (j->alg < WSG_ALG_HS256 || j->alg > WSG_ALG_HS512 || j->secret_len < 32)
        abort(); /* only HS* has a secret, of at least 32 bytes */
}

static void check_route(const wsg_route_conf_t *r)
{
    char why[256];
    if (!r->path || r->path[0] != '/' || wsg_url_check_backend(r->backend, why, sizeof why) != 0)
        abort();
    for (size_t i = 0; i < r->n_allowed_backends; i++)
        if (wsg_url_check_prefix(r->allowed_backends[i], why, sizeof why) != 0)
            abort();
    for (size_t i = 0; i < r->n_rules; i++)
        if (!wsg_config_backend_allowed(r, r->rules[i].backend))
            abort();
    if (!r->webhook_key || !r->webhook_key_len)
        abort();
    size_t hn = r->ws_hostname ? strlen(r->ws_hostname) : 0; /* ws_uri appends "/<id>" */
    if (r->protocol == WSG_PROTO_WSAAS && (hn == 0 || r->ws_hostname[hn - 1] == '/'))
        abort();
    check_jwt(&r->auth.jwt);
}

/* Changes every byte of a secret string, keeping its length. */
static void scramble(char *s)
{
    for (; s && *s; s++)
        *s = *s == 'x' ? 'y' : 'x';
}

static char *describe(const wsg_config_t *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    wsg_config_describe(cfg, f);
    fclose(f);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    wsg_config_t *cfg = (wsg_config_t *)1;
    char err[512] = "";
    int rc = wsg_config_load_string(&cfg, text, "fuzz.yaml", err, sizeof err);
    free(text);
    if (rc != 0) {
        if (cfg || !*err)
            abort(); /* a refusal says why and returns nothing */
        return 0;
    }
    for (size_t i = 0; i < cfg->n_routes; i++)
        check_route(&cfg->routes[i]);
    check_jwt(&cfg->api.jwt);

    char *before = describe(cfg);
    scramble(cfg->api.jwt.secret);
    scramble(cfg->store);
    scramble(cfg->nats);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        scramble(cfg->routes[i].auth.jwt.secret);
        scramble(cfg->routes[i].webhook_secret);
    }
    char *after = describe(cfg);
    if (strcmp(before, after) != 0)
        abort(); /* --verbose showed something of a secret's value */
    free(before);
    free(after);
    wsg_config_free(cfg);
    return 0;
}
