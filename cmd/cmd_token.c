/* SPDX-License-Identifier: MIT */
/*
 * cmd_token.c — `wsgate token`: mints a signed JWT for a client handshake or
 * for the control API and prints it alone on stdout (a dev and ops tool).
 *
 * Two ways to say how to sign: explicitly (--alg with --secret, --secret-file
 * or --key-file), or from a config file (--config FILE with --api or
 * --route PATH), which supplies alg, HS secret, issuer and audience of that
 * block; explicit flags still override it. RS/ES configs hold only the
 * public key, so --key-file names the private key then. Errors go to stderr;
 * bad usage, an unreadable or unusable key and config errors exit 2. The
 * secret is never printed.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cmd.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/err.h"
#include "common/jwt.h"

#define TOKEN_MAX_CHANNELS 256
#define TOKEN_KEY_MAX 65536

typedef struct {
    const char *alg, *secret, *secret_file, *key_file, *config, *route;
    const char *sub, *scope, *channels, *ttl, *iss, *aud;
    int api;
    json_t *extra; /* --claim k=v, owned */
} token_opts_t;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: wsgate token --alg ALG (--secret S | --secret-file F | --key-file PEM) [claims]\n"
        "       wsgate token --config FILE (--api | --route PATH) [--key-file PEM] [claims]\n"
        "\n"
        "Mints a signed JWT and prints it alone on stdout.\n"
        "\n"
        "  --alg ALG          HS256/384/512, RS256/384/512 or ES256/384/512\n"
        "  --secret S         HS secret (visible to other local users: prefer --secret-file)\n"
        "  --secret-file F    HS secret from a file (one trailing newline dropped)\n"
        "  --key-file PEM     RS/ES private key\n"
        "  -c, --config FILE  take alg, secret, issuer and audience from this config ...\n"
        "  --api              ... from api.auth.jwt (control-API tokens)\n"
        "  --route PATH       ... from routes[path].auth.jwt (client tokens)\n"
        "claims:\n"
        "  --sub USER         subject (the connection's user)\n"
        "  --scope \"S ...\"    space-separated, of: " WSG_SCOPES "\n"
        "  --channels A,B     channels claim (comma-separated; globs allowed for the API)\n"
        "  --ttl DURATION     lifetime, e.g. 30s, 15m, 1h, 7d (default 1h)\n"
        "  --iss X, --aud Y   issuer and audience\n"
        "  --claim K=V        extra claim; V is taken as JSON if it parses, else as a string\n"
        "  -h, --help         this help\n");
}

/* Reads a whole file of at most TOKEN_KEY_MAX bytes; strip drops one trailing newline. */
static char *read_small_file(const char *path, size_t *len, int strip)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(TOKEN_KEY_MAX + 2);
    size_t n = buf ? fread(buf, 1, TOKEN_KEY_MAX + 1, f) : 0;
    int bad = ferror(f) || n > TOKEN_KEY_MAX || n == 0;
    fclose(f);
    if (!buf || bad) {
        free(buf);
        return NULL;
    }
    if (strip && buf[n - 1] == '\n')
        n--;
    if (strip && n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* --claim K=V into o->extra. Returns 0 or -1 (message printed). */
static int add_claim(token_opts_t *o, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        fprintf(stderr, "wsgate token: --claim needs KEY=VALUE\n");
        return -1;
    }
    char *key = strndup(kv, (size_t)(eq - kv));
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    if (!v)
        v = json_string(eq + 1);
    int rc = key && v && json_object_set_new(o->extra, key, v) == 0 ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "wsgate token: --claim %s: not a UTF-8 value\n", key ? key : "");
    free(key);
    return rc;
}

/* Returns 0, 1 for --help, or -1 on bad usage (message printed). */
static int parse_args(int argc, char **argv, token_opts_t *o)
{
    static const struct option longopts[] = {{"alg", 1, 0, 'a'},         {"secret", 1, 0, 's'},
                                             {"secret-file", 1, 0, 'S'}, {"key-file", 1, 0, 'k'},
                                             {"config", 1, 0, 'c'},      {"api", 0, 0, 'A'},
                                             {"route", 1, 0, 'r'},       {"sub", 1, 0, 'u'},
                                             {"scope", 1, 0, 'p'},       {"channels", 1, 0, 'C'},
                                             {"ttl", 1, 0, 't'},         {"iss", 1, 0, 'i'},
                                             {"aud", 1, 0, 'd'},         {"claim", 1, 0, 'x'},
                                             {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    const char **slot[128] = {
        ['a'] = &o->alg,      ['s'] = &o->secret, ['S'] = &o->secret_file, ['k'] = &o->key_file,
        ['c'] = &o->config,   ['r'] = &o->route,  ['u'] = &o->sub,         ['p'] = &o->scope,
        ['C'] = &o->channels, ['t'] = &o->ttl,    ['i'] = &o->iss,         ['d'] = &o->aud};
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        if (ch == 'h')
            return 1;
        if (ch == 'A')
            o->api = 1;
        else if (ch == 'x') {
            if (add_claim(o, optarg) != 0)
                return -1;
        } else if (ch > 0 && ch < 128 && slot[ch])
            *slot[ch] = optarg;
        else {
            fprintf(stderr, "wsgate token: bad option '%s' (see wsgate token --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wsgate token: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* --scope holds only scopes the control API knows (common/jwt.h): a typo or
 * "read,send" would mint a token the API then refuses. */
static int check_scopes(const char *scope)
{
    const char *bad = wsg_scope_unknown(scope);
    if (!bad)
        return 0;
    fprintf(stderr, "wsgate token: unknown scope '%.*s'%s; --scope takes space-separated: %s\n",
            (int)strcspn(bad, " "), bad,
            strchr(scope, ',') ? " (separate scopes with spaces, not commas)" : "", WSG_SCOPES);
    return -1;
}

/* How to sign, resolved from flags and the optional config block. */
typedef struct {
    wsg_config_t *cfg;          /* owned, NULL without --config */
    const wsg_jwt_conf_t *conf; /* borrowed from cfg: the block tokens are for */
    wsg_alg_t alg;
    char *key; /* owned */
    size_t key_len;
    const char *iss, *aud;
} signer_t;

static int load_block(const token_opts_t *o, signer_t *s)
{
    char err[512];
    if (o->api && o->route) {
        fprintf(stderr, "wsgate token: --api and --route exclude each other\n");
        return -1;
    }
    const char *path = o->config ? o->config : getenv("WSGATE_CONFIG");
    if (!o->api && !o->route) {
        if (o->config)
            fprintf(stderr, "wsgate token: --config needs --api or --route PATH\n");
        return o->config ? -1 : 0;
    }
    if (!path || !*path) {
        fprintf(stderr, "wsgate token: --api and --route need --config FILE\n");
        return -1;
    }
    if (wsg_config_load(&s->cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, "wsgate token: %s\n", err);
        return -1;
    }
    const wsg_route_conf_t *r = o->route ? wsg_config_route(s->cfg, o->route) : NULL;
    if (o->route && !r) {
        fprintf(stderr, "wsgate token: %s has no route %s\n", path, o->route);
        return -1;
    }
    s->conf = r ? &r->auth.jwt : &s->cfg->api.jwt;
    if (!s->conf->enabled) {
        fprintf(stderr, "wsgate token: %s%s has no jwt auth in %s\n", r ? "route " : "api",
                r ? o->route : "", path);
        return -1;
    }
    return 0;
}

static int load_key(const token_opts_t *o, signer_t *s)
{
    int hs = s->alg <= WSG_ALG_HS512;
    if (!!o->secret + !!o->secret_file + !!o->key_file > 1) {
        fprintf(stderr, "wsgate token: give one of --secret, --secret-file, --key-file\n");
        return -1;
    }
    if (hs && o->key_file) {
        fprintf(stderr, "wsgate token: %s takes --secret or --secret-file, not --key-file\n",
                wsg_alg_name(s->alg));
        return -1;
    }
    if (!hs && !o->key_file) {
        fprintf(stderr, "wsgate token: %s needs --key-file PRIVATE.pem\n", wsg_alg_name(s->alg));
        return -1;
    }
    const char *file = o->secret_file ? o->secret_file : o->key_file;
    if (file) {
        s->key = read_small_file(file, &s->key_len, hs);
        if (!s->key)
            fprintf(stderr, "wsgate token: cannot read %s (missing, empty or over 64 KiB)\n", file);
    } else {
        const char *k = o->secret ? o->secret : s->conf ? s->conf->secret : NULL;
        if (k && *k)
            s->key = strdup(k);
        s->key_len = s->key ? strlen(s->key) : 0;
        if (!s->key)
            fprintf(stderr, "wsgate token: %s needs --secret or --secret-file\n",
                    wsg_alg_name(s->alg));
    }
    return s->key ? 0 : -1;
}

static int resolve_signer(const token_opts_t *o, signer_t *s)
{
    if (load_block(o, s) != 0)
        return -1;
    if (o->alg) {
        s->alg = wsg_alg_from_name(o->alg);
        if (s->alg == WSG_ALG_NONE) {
            fprintf(stderr, "wsgate token: unknown or refused --alg '%s'\n", o->alg);
            return -1;
        }
    } else if (s->conf) {
        s->alg = s->conf->alg;
    } else {
        fprintf(stderr, "wsgate token: --alg (or --config with --api/--route) is required\n");
        return -1;
    }
    s->iss = o->iss ? o->iss : s->conf ? s->conf->issuer : NULL;
    s->aud = o->aud ? o->aud : s->conf ? s->conf->audience : NULL;
    return load_key(o, s);
}

/* Splits "a, b,c" into at most TOKEN_MAX_CHANNELS trimmed, non-empty names in buf. */
static int split_channels(char *buf, const char **out, size_t *n)
{
    *n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t len = strlen(t);
        while (len > 0 && t[len - 1] == ' ')
            t[--len] = '\0';
        if (!*t)
            continue;
        if (*n == TOKEN_MAX_CHANNELS) {
            fprintf(stderr, "wsgate token: more than %d channels\n", TOKEN_MAX_CHANNELS);
            return -1;
        }
        out[(*n)++] = t;
    }
    return 0;
}

static int ttl_seconds(const char *ttl, int64_t *out)
{
    uint64_t ms = 0;
    if (wsg_parse_duration_ms(ttl ? ttl : "1h", &ms) != 0 || ms < 1000 ||
        ms > (uint64_t)100 * 365 * 86400 * 1000) {
        fprintf(stderr, "wsgate token: --ttl '%s' is not a duration between 1s and 100 years\n",
                ttl ? ttl : "1h");
        return -1;
    }
    *out = (int64_t)(ms / 1000);
    return 0;
}

/* The token the gateway would accept? Only checkable against a config block. */
static int self_check(const signer_t *s, const char *tok, int64_t now)
{
    if (!s->conf || s->alg != s->conf->alg)
        return 0;
    wsg_claims_t cl;
    char why[256];
    int rc = wsg_jwt_verify(s->conf, tok, now, &cl, why, sizeof why);
    wsg_claims_clear(&cl);
    if (rc != 0)
        fprintf(stderr, "wsgate token: the minted token would be refused by this config: %s\n",
                why);
    return rc;
}

static int mint_and_print(const token_opts_t *o, const signer_t *s)
{
    const char *chans[TOKEN_MAX_CHANNELS];
    size_t n_chans = 0;
    int64_t ttl, now = wsg_wall_s();
    char *chbuf = o->channels ? strdup(o->channels) : NULL, *extra = NULL, *tok = NULL;
    char err[256];
    int rc = -1;
    if ((o->channels && !chbuf) || (chbuf && split_channels(chbuf, chans, &n_chans) != 0) ||
        ttl_seconds(o->ttl, &ttl) != 0)
        goto out;
    extra = json_object_size(o->extra) ? json_dumps(o->extra, JSON_COMPACT) : NULL;
    wsg_mint_t m = {.alg = s->alg,
                    .key = s->key,
                    .key_len = s->key_len,
                    .sub = o->sub,
                    .scope = o->scope,
                    .channels = chans,
                    .n_channels = n_chans,
                    .issuer = s->iss,
                    .audience = s->aud,
                    .exp = now + ttl,
                    .extra_json = extra};
    if (wsg_jwt_mint(&m, &tok, err, sizeof err) != 0) {
        fprintf(stderr, "wsgate token: %s\n", err);
        goto out;
    }
    if (self_check(s, tok, now) != 0)
        goto out;
    printf("%s\n", tok);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    free(tok);
    free(extra);
    free(chbuf);
    return rc;
}

int cmd_token(int argc, char **argv)
{
    token_opts_t o = {.extra = json_object()};
    signer_t s = {0};
    int rc = 2;
    if (!o.extra)
        return 1;
    int p = parse_args(argc, argv, &o);
    if (p != 0) {
        if (p > 0)
            usage(stdout);
        rc = p > 0 ? 0 : 2;
        goto out;
    }
    if (check_scopes(o.scope) != 0 || resolve_signer(&o, &s) != 0)
        goto out;
    int m = mint_and_print(&o, &s);
    rc = m < 0 ? 2 : m;
out:
    if (s.key)
        memset(s.key, 0, s.key_len);
    free(s.key);
    wsg_config_free(s.cfg);
    json_decref(o.extra);
    return rc;
}
