/* SPDX-License-Identifier: MIT */
/*
 * cmd_wsaas.c — `wsgate` (or `wsgate standalone`) with no config file and
 * API_URI set: a standalone gateway configured as seed "Web Socket as a
 * Service" was, by environment variables only (docs/compat.md). One route,
 * path "/", `protocol: wsaas`, anonymous clients; backend API_URI; ws_uri
 * built on WS_HOSTNAME; WS_TIMEOUT (ms, the original's default 30000) the
 * deadline of each request to API_URI; LOG_LEVEL the log level; the
 * original's ports (clients on 127.0.0.1:8080, the push API on
 * 127.0.0.1:8081: the config's defaults). The settings are a config text
 * loaded as a file is, so WSGATE_* variables still override any key.
 *
 * Threads: the main thread, at start-up.
 */
#include <ctype.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/b64.h"
#include "common/err.h"

/* v as an http(s) URL: the original took "host:port/path" without a scheme. */
static char *with_scheme(const char *v)
{
    size_t n = strlen(v) + sizeof "http://";
    char *out = malloc(n);
    if (!out)
        abort();
    snprintf(out, n, "%s%s", strstr(v, "://") ? "" : "http://", v);
    return out;
}

static int timeout_of(const char *v, char *ms, size_t len, char *err, size_t errlen)
{
    size_t n = v ? strlen(v) : 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)v[i]))
            n = 0;
    if (!v || !*v)
        v = "30000"; /* the original's default */
    else if (n == 0 || n > 7)
        return wsg_errf(err, errlen, WSG_ECONFIG, "WS_TIMEOUT: '%s' is not milliseconds", v);
    snprintf(ms, len, "%sms", v);
    return 0;
}

/* The route's webhook secret: a new random one per start (the original signs
 * nothing; WSGATE_ROUTES_0_WEBHOOK_SECRET gives a lasting one). */
static void new_secret(char out[64])
{
    unsigned char key[32];
    char b64[WSG_B64_LEN(32) + 1];
    if (RAND_bytes(key, sizeof key) != 1)
        abort(); /* no randomness: refuse to run rather than sign with a guessable key */
    wsg_b64_encode(key, sizeof key, b64);
    snprintf(out, 64, "whsec_%s", b64);
}

static json_t *env_config(const char *api_uri, const char *timeout, const char *secret)
{
    const char *host = getenv("WS_HOSTNAME"), *level = getenv("LOG_LEVEL");
    char *backend = with_scheme(api_uri), *ws = host && *host ? with_scheme(host) : NULL;
    char lv[16] = "";
    for (size_t i = 0; level && level[i] && i + 1 < sizeof lv; i++)
        lv[i] = (char)tolower((unsigned char)level[i]);
    json_t *route = json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:b},s:{s:s}}", "path", "/", "backend",
                              backend, "webhook_secret", secret, "protocol", "wsaas", "ws_hostname",
                              ws ? ws : "", "auth", "required", 0, "delivery", "timeout", timeout);
    json_t *cfg = json_pack("{s:[o]}", "routes", route);
    if (cfg && *lv)
        json_object_set_new(cfg, "log", json_pack("{s:s}", "level", lv));
    free(backend);
    free(ws);
    if (!cfg)
        abort();
    return cfg;
}

int cmd_wsaas_config(wsg_config_t **out, char *err, size_t errlen)
{
    const char *api_uri = getenv("API_URI");
    char timeout[16], secret[64];
    *out = NULL;
    int rc = timeout_of(getenv("WS_TIMEOUT"), timeout, sizeof timeout, err, errlen);
    if (rc != 0)
        return rc;
    new_secret(secret);
    json_t *cfg = env_config(api_uri, timeout, secret);
    char *text = json_dumps(cfg, JSON_COMPACT); /* JSON is YAML */
    json_decref(cfg);
    if (!text)
        abort();
    rc = wsg_config_load_string(out, text, "(API_URI and environment)", err, errlen);
    free(text);
    return rc;
}
