/* SPDX-License-Identifier: MIT */
/*
 * api_routes.c — the control API's routing table: which method and path
 * pattern runs which handler under which scope, path and query decoding, and
 * the 404/405/401/403 answers that come before any handler runs.
 *
 * Paths arrive still percent-encoded (api.c keeps MHD from decoding them) so
 * a channel named "a/b" (sent as a%2Fb) stays one segment. Each segment is
 * decoded here; a bad escape or a NUL (%00) anywhere in the path makes the
 * request a 400 (a malformed name), unlike a path of no known shape (404).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/jwt.h"
#include "control-api/api_int.h"

typedef struct {
    int method;
    const char *pattern; /* segments; "*" matches one */
    const char *scope;   /* WSG_SCOPE_*; NULL: no token needed; "" any valid token */
    int (*fn)(api_req_t *r);
} api_route_t;

static const api_route_t routes[] = {
    {API_GET, "healthz", NULL, api_h_healthz},
    {API_GET, "readyz", NULL, api_h_readyz},
    {API_GET, "metrics", NULL, api_h_metrics},
    {API_GET, "v1/openapi.json", NULL, api_h_openapi},
    {API_GET, "dashboard", NULL, api_h_dashboard}, /* the page asks for a token */
    {API_GET, "v1/stats", WSG_SCOPE_ADMIN, api_h_stats},
    {API_GET, "v1/connections", WSG_SCOPE_READ, api_h_conn_list},
    {API_GET, "v1/connections/*", WSG_SCOPE_READ, api_h_conn_get},
    {API_DELETE, "v1/connections/*", WSG_SCOPE_DISCONNECT, api_h_conn_delete},
    {API_POST, "v1/connections/*/messages", WSG_SCOPE_SEND, api_h_send},
    {API_GET, "v1/channels", WSG_SCOPE_READ, api_h_channels},
    {API_GET, "v1/channels/*/connections", WSG_SCOPE_READ, api_h_members},
    {API_PUT, "v1/channels/*/connections/*", WSG_SCOPE_SUBSCRIBE, api_h_subscribe},
    {API_DELETE, "v1/channels/*/connections/*", WSG_SCOPE_SUBSCRIBE, api_h_unsubscribe},
    {API_POST, "v1/channels/*/messages", WSG_SCOPE_PUBLISH, api_h_publish},
    {API_POST, "v1/broadcast", WSG_SCOPE_PUBLISH, api_h_broadcast},
    {API_POST, "publish", WSG_SCOPE_PUBLISH, api_h_grip_publish},
    /* API Gateway's @connections, bare or under a stage: the handlers
     * authenticate (a SigV4 signature or a token) */
    {API_POST, "@connections/*", NULL, api_h_aws_post},
    {API_GET, "@connections/*", NULL, api_h_aws_get},
    {API_DELETE, "@connections/*", NULL, api_h_aws_delete},
    {API_POST, "*/@connections/*", NULL, api_h_aws_post},
    {API_GET, "*/@connections/*", NULL, api_h_aws_get},
    {API_DELETE, "*/@connections/*", NULL, api_h_aws_delete},
    {API_POST, "v1/users/*/messages", WSG_SCOPE_SEND, api_h_user_send},
    {API_DELETE, "v1/users/*", WSG_SCOPE_DISCONNECT, api_h_user_delete},
    {API_POST, "v1/batch", "", api_h_batch},
    {API_GET, "v1/dead-letters", WSG_SCOPE_READ, api_h_dead_list},
    {API_POST, "v1/dead-letters/*/replay", WSG_SCOPE_ADMIN, api_h_dead_replay},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes n bytes of in into out (room for n + 1). Returns the decoded
 * length, or -1 on a bad escape, %00 or a NUL byte. */
static long pct_decode_into(const char *in, size_t n, int plus, char *o)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '%') {
            int hi = i + 1 < n ? hexval((unsigned char)in[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)in[i + 2]) : -1;
            int h = (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
            if (h <= 0) /* bad escape or %00 */
                return -1;
            o[j++] = (char)h;
            i += 2;
        } else if (plus && in[i] == '+') {
            o[j++] = ' ';
        } else if (in[i] == 0) {
            return -1;
        } else {
            o[j++] = in[i];
        }
    }
    o[j] = 0;
    return (long)j;
}

int api_pct_decode(const char *in, size_t n, int plus, char **out)
{
    char *o = malloc(n + 1);
    if (!o)
        return WSG_ENOMEM;
    if (pct_decode_into(in, n, plus, o) < 0) {
        free(o);
        return WSG_EINVAL;
    }
    *out = o;
    return 0;
}

/* The decoded segments share one allocation (a decoded segment is never
 * longer than its encoding): segs[0] owns it, api_req_clear() frees it.
 * Returns 0, WSG_EINVAL for a bad escape or a NUL, WSG_ENOTFOUND for a path
 * no route can have (not absolute, an empty segment, over API_MAX_SEGS). */
int api_split_path(const char *url, char **segs, size_t *nsegs)
{
    *nsegs = 0;
    if (*url != '/')
        return WSG_ENOTFOUND;
    char *buf = malloc(strlen(url) + 1), *o = buf;
    if (!buf)
        return WSG_ENOMEM;
    const char *p = url + 1;
    size_t k = 0;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (k == API_MAX_SEGS || n == 0) { /* too many, or empty ("//") */
            free(buf);
            return WSG_ENOTFOUND;
        }
        long dn = pct_decode_into(p, n, 0, o);
        if (dn < 0) {
            free(buf);
            return WSG_EINVAL;
        }
        segs[k++] = o;
        o += dn + 1;
        p += n + (e ? 1 : 0);
    }
    if (k == 0)
        free(buf);
    *nsegs = k;
    return 0;
}

int api_parse_query(const char *qs, api_req_t *r)
{
    while (qs && *qs) {
        const char *amp = strchr(qs, '&');
        size_t n = amp ? (size_t)(amp - qs) : strlen(qs);
        const char *eq = memchr(qs, '=', n);
        size_t kn = eq ? (size_t)(eq - qs) : n;
        if (n > 0) {
            if (r->nq >= API_MAX_QUERY)
                return WSG_EINVAL;
            api_kv_t *kv = &r->q[r->nq];
            if (api_pct_decode(qs, kn, 1, &kv->key) != 0)
                return WSG_EINVAL;
            const char *v = eq ? eq + 1 : qs + n;
            if (api_pct_decode(v, (size_t)(qs + n - v), 1, &kv->val) != 0) {
                free(kv->key);
                return WSG_EINVAL;
            }
            r->nq++;
        }
        qs = amp ? amp + 1 : NULL;
    }
    return 0;
}

const char *api_query(const api_req_t *r, const char *key)
{
    for (size_t i = 0; i < r->nq; i++)
        if (strcmp(r->q[i].key, key) == 0)
            return r->q[i].val;
    return NULL;
}

void api_req_clear(api_req_t *r)
{
    if (r->nsegs) /* one allocation: api_split_path() */
        free(r->segs[0]);
    r->nsegs = 0;
    for (size_t i = 0; i < r->nq; i++) {
        free(r->q[i].key);
        free(r->q[i].val);
    }
    r->nq = 0;
    json_decref(r->resp);
    r->resp = NULL;
    free(r->raw);
    r->raw = NULL;
    wsg_claims_clear(&r->claims_buf);
    api_auth_release(r->auth_ref);
    r->auth_ref = NULL;
}

/* 1 when the request's segments match pattern. */
static int matches(const api_req_t *r, const char *pattern)
{
    size_t i = 0;
    const char *p = pattern;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (i >= r->nsegs)
            return 0;
        if (!(n == 1 && *p == '*') && (strlen(r->segs[i]) != n || memcmp(r->segs[i], p, n) != 0))
            return 0;
        i++;
        p += n + (e ? 1 : 0);
    }
    return i == r->nsegs;
}

static const char *allow_header(int mask)
{
    static const char *names[] = {"GET, HEAD", "PUT", "POST", "DELETE"};
    static char cache[16][40];
    static const int bits[] = {API_GET, API_PUT, API_POST, API_DELETE};
    int idx = mask & 15;
    if (!cache[idx][0]) {
        char buf[40] = "";
        for (int i = 0; i < 4; i++)
            if (mask & bits[i])
                snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", *buf ? ", " : "",
                         names[i]);
        memcpy(cache[idx], buf, sizeof buf); /* same bytes from any thread */
    }
    return cache[idx];
}

int api_check_scope(api_req_t *r, const char *scope)
{
    if (!scope || !*scope)
        return 0;
    if (!r->claims || !wsg_scope_has(r->claims->scope, scope)) {
        api_problem(r, 403, "this token lacks the '%s' scope", scope);
        return -1;
    }
    return 0;
}

int api_route(api_req_t *r)
{
    int allowed = 0;
    for (size_t i = 0; i < N_ROUTES; i++) {
        const api_route_t *rt = &routes[i];
        if (!matches(r, rt->pattern))
            continue;
        allowed |= rt->method;
        int m = r->method == API_HEAD ? API_GET : r->method;
        if (rt->method != m)
            continue;
        if (rt->scope && !r->claims) {
            if (api_authenticate(r, r->authz) != 0)
                return API_DONE;
        }
        if (api_check_scope(r, rt->scope) != 0)
            return API_DONE;
        return rt->fn(r);
    }
    if (api_wsaas_path(r)) /* paths the config names, beside the table's */
        return api_h_wsaas(r);
    if (!allowed) { /* distinct type: no route at all, not a missing resource */
        api_problem(r, 404, "no such resource");
        json_object_set_new(r->resp, "type", json_string("https://wsgate.dev/problems/no-route"));
        return API_DONE;
    }
    r->allow = allow_header(allowed);
    return api_problem(r, 405, "method not allowed here; allowed: %s", r->allow);
}

int api_route_known(const char *method, const char *path)
{
    api_req_t r = {0};
    r.method = strcmp(method, "GET") == 0    ? API_GET
               : strcmp(method, "PUT") == 0  ? API_PUT
               : strcmp(method, "POST") == 0 ? API_POST
                                             : API_DELETE;
    int found = 0;
    if (api_split_path(path, r.segs, &r.nsegs) == 0)
        for (size_t i = 0; i < N_ROUTES && !found; i++)
            found = matches(&r, routes[i].pattern) && routes[i].method == r.method;
    api_req_clear(&r);
    return found;
}
