/* SPDX-License-Identifier: MIT */
/*
 * config_check.c — the pieces of the configuration loader that look at one
 * value alone: scalar parsers (durations, byte sizes, booleans), the string
 * validators named in the schema table (URLs, listen addresses, regexes,
 * webhook secrets, ...) and the PEM public-key loader. Validators never echo
 * a value that may hold a credential (store and NATS URLs, secrets).
 */
#include "common/config.h"
#include "common/config_schema.h"
#include "common/err.h"
#include "common/netaddr.h"
#include "common/text.h"
#include "common/url.h"
#include "common/whsig.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- scalar parsers ---- */

static int parse_uint(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return WSG_EINVAL;
    for (; isdigit((unsigned char)*s); s++) {
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return WSG_EINVAL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    *end = s;
    return 0;
}

int cfg_parse_int(const char *s, uint64_t *out)
{
    const char *end;
    return parse_uint(s, out, &end) == 0 && !*end ? 0 : WSG_EINVAL;
}

static int scaled(uint64_t v, uint64_t mul, uint64_t *out)
{
    if (mul && v > UINT64_MAX / mul)
        return WSG_EINVAL;
    *out = v * mul;
    return 0;
}

typedef struct {
    const char *unit;
    uint64_t mul;
} unit_t;

/* A whole number followed by one of the units (exactly), scaled by its
 * multiplier without overflow. */
static int parse_with_unit(const char *s, const unit_t *units, size_t n_units, uint64_t *out)
{
    uint64_t v;
    const char *end;
    if (!s || parse_uint(s, &v, &end) != 0)
        return WSG_EINVAL;
    for (size_t i = 0; i < n_units; i++)
        if (strcmp(end, units[i].unit) == 0)
            return scaled(v, units[i].mul, out) == 0 ? 0 : WSG_EINVAL;
    return WSG_EINVAL;
}

int wsg_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    static const unit_t units[] = {{"", 1000},   {"ms", 1},      {"s", 1000},
                                   {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    return parse_with_unit(s, units, sizeof units / sizeof units[0], out_ms);
}

int wsg_parse_bytes(const char *s, uint64_t *out)
{
    static const unit_t units[] = {{"", 1},
                                   {"K", 1024},
                                   {"KiB", 1024},
                                   {"M", 1024 * 1024},
                                   {"MiB", 1024 * 1024},
                                   {"G", 1024ull * 1024 * 1024},
                                   {"GiB", 1024ull * 1024 * 1024}};
    return parse_with_unit(s, units, sizeof units / sizeof units[0], out);
}

int cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                                "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = false, 0;
    }
    return WSG_EINVAL;
}

/* Reads a secret file (at most 64 KiB); one trailing newline is dropped. */
int cfg_read_secret_file(const char *path, char **out, size_t *len, char *why, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, n, "cannot read '%s': %s", path, strerror(errno));
        return WSG_ECONFIG;
    }
    char *buf = malloc(65537);
    size_t got = buf ? fread(buf, 1, 65537, f) : 0;
    int bad = buf && ferror(f);
    fclose(f);
    if (!buf)
        return WSG_ENOMEM;
    if (bad || got > 65536) {
        free(buf);
        snprintf(why, n, "cannot read '%s': %s", path, bad ? "read error" : "larger than 64 KiB");
        return WSG_ECONFIG;
    }
    if (got && buf[got - 1] == '\n')
        got--;
    if (got && buf[got - 1] == '\r')
        got--;
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

int cfg_read_config_file(const char *path, char **out, char *err, size_t errlen)
{
    enum { MAX_FILE = 16 << 20 };
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return wsg_errf(err, errlen, WSG_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 0, len = 0;
    char *buf = NULL;
    int rc = 0;
    while (!feof(f) && !ferror(f)) {
        if (cap - len < 4097) {
            char *n = cap < MAX_FILE ? realloc(buf, cap + 65536) : NULL;
            if (!n) {
                rc = cap < MAX_FILE ? WSG_ENOMEM : WSG_ECONFIG;
                rc = wsg_errf(err, errlen, rc, "%s: %s", path,
                              rc == WSG_ENOMEM ? "out of memory" : "larger than 16 MiB");
                goto out;
            }
            buf = n;
            cap += 65536;
        }
        len += fread(buf + len, 1, cap - len - 1, f);
    }
    if (ferror(f)) {
        rc = wsg_errf(err, errlen, WSG_EIO, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len))
        rc = wsg_errf(err, errlen, WSG_ECONFIG, "%s: contains a NUL byte", path);
out:
    fclose(f);
    if (rc == 0)
        *out = buf;
    else
        free(buf);
    return rc;
}

/* Levenshtein distance of a[0..an) and b[0..bn), both at most DIST_MAX long
 * (longer: DIST_MAX, i.e. never close). */
#define DIST_MAX 64
static size_t edit_distance(const char *a, size_t an, const char *b, size_t bn)
{
    size_t row[DIST_MAX + 1];
    if (an > DIST_MAX || bn > DIST_MAX)
        return DIST_MAX;
    for (size_t j = 0; j <= bn; j++)
        row[j] = j;
    for (size_t i = 1; i <= an; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bn];
}

int cfg_nearest_key(const cfg_scope_t *sc, const char *path, char *out, size_t n)
{
    const char *last = strrchr(path, '.');
    size_t depth = 0, plen = strlen(path), best = DIST_MAX;
    size_t limit = strlen(last ? last + 1 : path) / 3; /* of the misspelt name alone */
    if (limit == 0)
        limit = 1;
    for (const char *c = path; *c; c++)
        depth += *c == '.';
    for (size_t i = 0; i < sc->n_keys; i++) {
        /* the key, or its group, cut to path's depth: "delivery.max_attempts"
         * is a candidate for "delivery.max_atempts", "delivery" for "delivry" */
        const char *k = sc->keys[i].path, *end = k;
        for (size_t d = 0; *end && (d < depth || *end != '.'); end++)
            d += *end == '.';
        size_t d = edit_distance(path, plen, k, (size_t)(end - k));
        if (d > 0 && d <= limit && d < best) {
            best = d;
            snprintf(out, n, "%.*s", (int)(end - k), k);
        }
    }
    return best < DIST_MAX;
}

void cfg_format_duration(uint64_t ms, char *buf, size_t n)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; ms && i < sizeof units / sizeof units[0]; i++)
        if (ms % units[i].ms == 0) {
            snprintf(buf, n, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    snprintf(buf, n, ms ? "%llums" : "%llu", (unsigned long long)ms);
}

void cfg_keyf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

static int fail(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return WSG_ECONFIG;
}

void cfg_mask_url(const char *url, char *out, size_t n)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    const char *at = memchr(auth, '@', strcspn(auth, "/?#"));
    if (at)
        snprintf(out, n, "%.*s***%s", (int)(auth - url), url, at);
    else
        snprintf(out, n, "%s", url);
}

/* A URL check of url.h with the value, masked, in front of its reason. */
static int url_fail(int rc, const char *v, const char *reason, char *why, size_t n)
{
    char shown[256];
    if (rc == 0)
        return 0;
    cfg_mask_url(v, shown, sizeof shown);
    return fail(why, n, "'%s' is %s", shown,
                rc == WSG_ENOMEM ? "not checked: out of memory" : reason);
}

int cfg_check_http_url(const char *v, char *why, size_t n)
{
    char reason[160] = "";
    return url_fail(wsg_url_check_http(v, reason, sizeof reason), v, reason, why, n);
}

int cfg_check_backend_url(const char *v, char *why, size_t n)
{
    char reason[160] = "";
    return url_fail(wsg_url_check_backend(v, reason, sizeof reason), v, reason, why, n);
}

int cfg_check_backend_prefix(const char *v, char *why, size_t n)
{
    char reason[160] = "";
    return url_fail(wsg_url_check_prefix(v, reason, sizeof reason), v, reason, why, n);
}

int cfg_check_http_url_or_empty(const char *v, char *why, size_t n)
{
    return *v ? cfg_check_http_url(v, why, n) : 0;
}

int cfg_check_ws_hostname(const char *v, char *why, size_t n)
{
    char reason[160] = "";
    if (!*v || wsg_url_check_prefix(v, reason, sizeof reason) == 0)
        return 0;
    /* v is not echoed: it may hold credentials */
    return fail(why, n, "must be an http(s) URL without query or fragment (%s)", reason);
}

int cfg_check_listen(const char *v, char *why, size_t n)
{
    const char *colon = strrchr(v, ':');
    uint64_t port;
    if (!colon || wsg_has_ctl_or_space(v) || cfg_parse_int(colon + 1, &port) != 0 || port > 65535 ||
        strlen(colon + 1) > 5)
        return fail(why, n, "'%s' is not host:port (e.g. 127.0.0.1:8080, [::1]:8080, :8080)", v);
    return 0;
}

int cfg_check_route_path(const char *v, char *why, size_t n)
{
    if (v[0] != '/' || wsg_has_ctl_or_space(v) || strpbrk(v, "?#"))
        return fail(why, n, "'%s' must be an absolute path like /chat (no query or fragment)", v);
    return 0;
}

int cfg_check_store(const char *v, char *why, size_t n)
{
    if ((strncmp(v, "sqlite://", 9) == 0 && v[9]) || wsg_url_with_scheme(v, "postgres://") ||
        wsg_url_with_scheme(v, "postgresql://"))
        return 0;
    if (strncmp(v, "sqlite://", 9) == 0)
        return fail(why, n, "sqlite:// needs a file path (sqlite:///var/lib/wsgate/wsgate.db)");
    /* Name the scheme only: the rest of a database URL may hold a password,
     * and so may a value that is not a URL at all (a password pasted alone). */
    size_t sl = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    if (sl == 0 || sl > 20 || strncmp(v + sl, "://", 3) != 0)
        return fail(why, n,
                    "must be sqlite://PATH, postgres://... or postgresql://... (got no "
                    "URL scheme)");
    return fail(why, n,
                "must be sqlite://PATH, postgres://... or postgresql://... (got scheme '%.*s')",
                (int)sl, v);
}

int cfg_check_nats(const char *v, char *why, size_t n)
{
    if (!*v)
        return 0;
    const char *p = v;
    for (;;) {
        size_t len = strcspn(p, ",");
        char one[512];
        snprintf(one, sizeof one, "%.*s", (int)(len < sizeof one ? len : sizeof one - 1), p);
        if (!wsg_url_with_scheme(one, "nats://"))
            return fail(why, n, "must be empty (in-process bus) or nats://host:port[,...]");
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

int cfg_check_regex(const char *v, char *why, size_t n)
{
    int code = 0;
    PCRE2_SIZE off = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)v, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    if (re) {
        pcre2_code_free(re);
        return 0;
    }
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
        snprintf((char *)msg, sizeof msg, "error %d", code);
    snprintf(why, n, "regex does not compile at offset %zu: %s", (size_t)off, (char *)msg);
    return WSG_ECONFIG;
}

int cfg_check_whsec(const char *v, char *why, size_t n)
{
    unsigned char *key = NULL;
    size_t kl = 0;
    int rc = strncmp(v, "whsec_", 6) == 0 ? wsg_whsig_key_decode(v, &key, &kl) : WSG_EINVAL;
    free(key);
    if (rc == WSG_ENOMEM)
        return rc;
    if (rc)
        return fail(why, n, "must be whsec_ followed by base64 (a Standard Webhooks secret)");
    return 0;
}

int cfg_check_edge_id(const char *v, char *why, size_t n)
{
    size_t len = strlen(v);
    if (len == 0 || len > 64 ||
        strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "0123456789-_") != len)
        return fail(why, n, "'%s' must be 1-64 letters, digits, '-' or '_'", v);
    return 0;
}

/* An HTTP token's characters (RFC 9110 §5.6.2). */
static int is_http_token(const char *v)
{
    size_t len = strlen(v);
    return len && strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "0123456789!#$%&'*+-.^_`|~") == len;
}

int cfg_check_token(const char *v, char *why, size_t n)
{
    if (!is_http_token(v))
        return fail(why, n, "'%s' is not an HTTP header name", v);
    return 0;
}

/* A Sec-WebSocket-Protocol value is an HTTP token (RFC 6455 §4.1); "bearer."
 * entries carry client tokens and are never an application protocol. */
int cfg_check_subprotocol(const char *v, char *why, size_t n)
{
    if (!is_http_token(v))
        return fail(why, n, "'%s' is not a subprotocol name (an HTTP token)", v);
    if (wsg_is_bearer_protocol(v))
        return fail(why, n, "'%s': bearer.* entries carry tokens, not a subprotocol", v);
    return 0;
}

int cfg_check_cidr(const char *v, char *why, size_t n)
{
    wsg_cidr_t c;
    return wsg_cidr_parse(v, &c, why, n) != 0;
}

int cfg_check_nonempty(const char *v, char *why, size_t n)
{
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c < ' ' || *c == 0x7f)
            return fail(why, n, "contains a control character");
    return *v ? 0 : fail(why, n, "must not be empty");
}

static int one_of(const char *v, const char *const *names, char *why, size_t n)
{
    for (size_t i = 0; names[i]; i++)
        if (strcmp(v, names[i]) == 0)
            return 0;
    size_t off = (size_t)snprintf(why, n, "unknown value '%s' (use", v);
    for (size_t i = 0; names[i] && off < n; i++)
        off += (size_t)snprintf(why + off, n - off, "%s %s", i ? "," : "", names[i]);
    if (off < n)
        snprintf(why + off, n - off, ")");
    return WSG_ECONFIG;
}

int cfg_check_log_level(const char *v, char *why, size_t n)
{
    static const char *const names[] = {"error", "warn", "info", "debug", NULL};
    return one_of(v, names, why, n);
}

int cfg_check_log_format(const char *v, char *why, size_t n)
{
    static const char *const names[] = {"json", "text", NULL};
    return one_of(v, names, why, n);
}

/* The key must suit the algorithm: RSA for RS*, EC on the matching curve for ES*. */
static int key_fits(EVP_PKEY *pk, int alg, char *why, size_t n)
{
    static const char *const curves[] = {"prime256v1", "secp384r1", "secp521r1"};
    if (alg >= WSG_ALG_RS256 && alg <= WSG_ALG_RS512) {
        if (EVP_PKEY_is_a(pk, "RSA"))
            return 0;
        return fail(why, n, "is not an RSA public key (needed for RS*)");
    }
    char group[64] = "";
    const char *want = curves[alg - WSG_ALG_ES256];
    if (!EVP_PKEY_is_a(pk, "EC"))
        return fail(why, n, "is not an EC public key (needed for ES*)");
    if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                        NULL) ||
        strcmp(group, want) != 0) {
        snprintf(why, n, "EC key on curve '%s'; %s needs %s", group, wsg_alg_name(alg), want);
        return WSG_ECONFIG;
    }
    return 0;
}

int cfg_load_public_key(const char *file, int alg, char **pem, size_t *len, char *why, size_t n)
{
    char *text = NULL;
    size_t tl = 0;
    int rc = cfg_read_secret_file(file, &text, &tl, why, n);
    if (rc)
        return rc;
    BIO *bio = BIO_new_mem_buf(text, (int)tl);
    EVP_PKEY *pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    if (!bio)
        rc = WSG_ENOMEM;
    else if (!pk)
        rc = fail(why, n, "'%s' holds no PEM public key (-----BEGIN PUBLIC KEY-----)", file);
    else
        rc = key_fits(pk, alg, why, n);
    EVP_PKEY_free(pk);
    BIO_free(bio);
    ERR_clear_error(); /* a failed PEM parse leaves errors that later OpenSSL users would see */
    if (rc) {
        free(text);
        return rc;
    }
    *pem = text;
    *len = tl;
    return 0;
}

/* The dispatcher's routing-service calls never take longer than this
 * (DISP_ROUTE_TIMEOUT_MS in dispatcher/disp_core.h). */
#define ROUTING_CALL_MAX_MS 2000

/* A webhook attempt must end within AckWait: the dispatcher keeps an event
 * in hand alive with in-progress signals, but while NATS is away they do not
 * get through, and an attempt outliving AckWait then gets its event handed
 * out again behind the connection's later events (see docs/cluster.md). */
int cfg_check_ack_wait(const wsg_config_t *cfg, size_t *route, char *why, size_t n)
{
    if (!cfg->nats || !*cfg->nats)
        return 0; /* in-process bus: no AckWait */
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const wsg_route_conf_t *r = &cfg->routes[i];
        uint64_t t = r->delivery.timeout_ms, routing = 0;
        if (r->routing_service && *r->routing_service)
            routing = t < ROUTING_CALL_MAX_MS ? t : ROUTING_CALL_MAX_MS;
        if (t + routing < cfg->cluster.ack_wait_ms)
            continue;
        char tb[32], rb[32], ab[32];
        cfg_format_duration(t, tb, sizeof tb);
        cfg_format_duration(routing, rb, sizeof rb);
        cfg_format_duration(cfg->cluster.ack_wait_ms, ab, sizeof ab);
        *route = i;
        return fail(why, n,
                    "%s%s%s%s must be below cluster.ack_wait (%s): a webhook attempt has to end "
                    "within JetStream's AckWait; lower the timeout or raise cluster.ack_wait",
                    tb, routing ? " (+ " : "", routing ? rb : "",
                    routing ? " routing-service call)" : "", ab);
    }
    return 0;
}

/* "routes[0].auth.jwt.secret" -> "WSGATE_ROUTES_0_AUTH_JWT_SECRET". */
void cfg_env_name(const char *dkey, const char *suffix, char *out, size_t n)
{
    size_t o = (size_t)snprintf(out, n, "WSGATE_");
    for (const char *c = dkey; *c && o + 1 < n; c++) {
        if (*c == ']')
            continue;
        out[o++] = (*c == '.' || *c == '[') ? '_' : (char)toupper((unsigned char)*c);
    }
    out[o] = '\0';
    if (suffix)
        snprintf(out + o, n - o, "%s", suffix);
}

bool wsg_config_backend_allowed(const wsg_route_conf_t *r, const char *url)
{
    if (!r || !url)
        return false;
    if (wsg_url_within(url, r->backend))
        return true;
    for (size_t i = 0; i < r->n_allowed_backends; i++)
        if (wsg_url_within(url, r->allowed_backends[i]))
            return true;
    return false;
}

/* An AWS access key id: letters and digits (AWS's are 16 to 128 of them). */
int cfg_check_aws_key_id(const char *v, char *why, size_t n)
{
    size_t len = strlen(v);
    if (len < 4 || len > 128 ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != len)
        return fail(why, n, "'%s' is not an access key id (4 to 128 letters and digits)", v);
    return 0;
}

/* A stage, region or API id: one path segment and credential-scope part. */
int cfg_check_aws_name(const char *v, char *why, size_t n)
{
    size_t len = strlen(v);
    if (len == 0 || len > 64 ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != len)
        return fail(why, n, "'%s': 1 to 64 letters, digits, '-' or '_'", v);
    return 0;
}

/* "$request.body.<field>[.<field>...]" or empty. */
int cfg_check_aws_rse(const char *v, char *why, size_t n)
{
    static const char pfx[] = "$request.body.";
    if (!*v)
        return 0;
    const char *f = v + sizeof pfx - 1;
    size_t len = strlen(f);
    if (strncmp(v, pfx, sizeof pfx - 1) != 0 || len == 0 || f[0] == '.' || f[len - 1] == '.' ||
        strstr(f, "..") ||
        strspn(f, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.") != len)
        return fail(why, n, "'%s': only $request.body.<field> (dots for nested fields) is read", v);
    return 0;
}

/* Route i's protocol and aws: block agree, and an access key id names one
 * route. Fills an empty domain_name with
 * api.listen. Returns 0, WSG_ENOMEM, or nonzero with the key in dkey, its
 * line in *line and the reason in why. */
int cfg_check_aws_route(wsg_config_t *cfg, size_t i, int *line, char *dkey, size_t dn, char *why,
                        size_t n)
{
    wsg_route_conf_t *r = &cfg->routes[i];
    wsg_aws_conf_t *a = &r->aws;
    *line = a->line ? a->line : r->line;
    if (r->protocol != WSG_PROTO_AWS) {
        cfg_keyf(dkey, dn, "routes[%zu].aws", i);
        return a->present ? fail(why, n, "is for protocol: aws only") : 0;
    }
    for (size_t k = 0; k < a->n_access_keys; k++)
        for (size_t j = 0; j <= i; j++) {
            const wsg_aws_conf_t *b = &cfg->routes[j].aws;
            for (size_t m = 0; m < (j == i ? k : b->n_access_keys); m++)
                if (strcmp(b->access_keys[m].id, a->access_keys[k].id) == 0) {
                    cfg_keyf(dkey, dn, "routes[%zu].aws.access_keys[%zu].id", i, k);
                    *line = a->access_keys[k].line;
                    return fail(why, n, "'%s' is already routes[%zu].aws.access_keys[%zu]",
                                a->access_keys[k].id, j, m);
                }
        }
    if (!*a->domain_name) {
        char *d = strdup(cfg->api.listen);
        if (!d)
            return WSG_ENOMEM;
        free(a->domain_name);
        a->domain_name = d;
    }
    return 0;
}

int wsg_protocol_one_event(wsg_protocol_t p)
{
    return p == WSG_PROTO_AWS || p == WSG_PROTO_WSAAS || p == WSG_PROTO_WSAPI;
}
