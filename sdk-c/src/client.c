/* SPDX-License-Identifier: MIT */
/*
 * client.c — the control-API client handle: options (copied into the
 * client), the pool of libcurl easy handles that keeps HTTP connections
 * alive between calls, the minted token and its renewal, and sdk_call(),
 * which every endpoint in calls.c goes through.
 *
 * Threads: a wsgate_client is shared. Its mutex guards only the pool and
 * the token; no lock is held during a request, so calls on many threads
 * run in parallel, each on its own easy handle. curl_global_init() runs
 * once per process (curl_init()).
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sdk.h"

#define POOL_MAX 16
#define BODY_MAX (16u << 20) /* an answer larger than this is refused */

struct wsgate_options {
    char *url, *token, *scope, *issuer, *audience;
    char *key;
    size_t key_len;
    wsgate_alg alg;
    char **channels;
    size_t n_channels;
    int64_t ttl_s;
    long request_ms, connect_ms;
    int retries;
};

struct wsgate_client {
    wsgate_options o; /* a deep copy */
    pthread_mutex_t mu;
    CURL *pool[POOL_MAX];
    size_t n_pool;
    char *minted; /* current token, guarded by mu */
    int64_t minted_exp;
};

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Replaces *slot with a copy of s (NULL clears). */
static wsgate_status set_str(char **slot, const char *s)
{
    int oom = 0;
    char *d = sdk_strdup(s, &oom);
    if (oom)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    free(*slot);
    *slot = d;
    return WSGATE_OK;
}

wsgate_status wsgate_options_new(wsgate_options **out)
{
    if (!out)
        return sdk_fail(WSGATE_EINVAL, "out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    (*out)->ttl_s = 3600;
    (*out)->request_ms = 10000;
    (*out)->connect_ms = 3000;
    (*out)->retries = 2;
    return WSGATE_OK;
}

static void options_clear(wsgate_options *o)
{
    free(o->url);
    free(o->token);
    free(o->scope);
    free(o->issuer);
    free(o->audience);
    if (o->key)
        memset(o->key, 0, o->key_len);
    free(o->key);
    strv_free(o->channels, o->n_channels);
    memset(o, 0, sizeof *o);
}

void wsgate_options_free(wsgate_options *o)
{
    if (!o)
        return;
    options_clear(o);
    free(o);
}

wsgate_status wsgate_options_set_url(wsgate_options *o, const char *url)
{
    if (!o || !url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return sdk_fail(WSGATE_EINVAL, "url must start with http:// or https://");
    wsgate_status st = set_str(&o->url, url);
    size_t n = st == WSGATE_OK ? strlen(o->url) : 0;
    while (n > 8 && o->url[n - 1] == '/') /* paths are appended with their own "/" */
        o->url[--n] = '\0';
    return st;
}

wsgate_status wsgate_options_set_token(wsgate_options *o, const char *token)
{
    if (!o || !token || !*token || strpbrk(token, " \r\n"))
        return sdk_fail(WSGATE_EINVAL, "token must be one non-empty word");
    wsgate_status st = set_str(&o->token, token);
    if (st == WSGATE_OK) {
        free(o->key);
        o->key = NULL;
        o->key_len = 0;
    }
    return st;
}

/* Mints a token from o's key and claims; *out is new. */
static wsgate_status mint_from(const wsgate_options *o, int64_t ttl_s, char **out)
{
    wsgate_token_params p = {.alg = o->alg,
                             .key = o->key,
                             .key_len = o->key_len,
                             .ttl_s = ttl_s,
                             .sub = "libwsgate",
                             .scope = o->scope ? o->scope : "admin",
                             .channels = (const char *const *)o->channels,
                             .n_channels = o->n_channels,
                             .issuer = o->issuer,
                             .audience = o->audience};
    return wsgate_token_mint(&p, out);
}

wsgate_status wsgate_options_set_signing_key(wsgate_options *o, wsgate_alg alg, const void *key,
                                             size_t key_len, const char *scope)
{
    if (!o || !key)
        return sdk_fail(WSGATE_EINVAL, "options and key are required");
    size_t n = key_len ? key_len : strlen(key);
    wsgate_options t = {.alg = alg, .key = malloc(n ? n : 1), .key_len = n};
    if (!t.key)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    memcpy(t.key, key, n);
    char *probe = NULL;
    wsgate_status st =
        mint_from(&t, 60, &probe); /* checks alg and key now, not at the first call */
    free(probe);
    if (st == WSGATE_OK)
        st = set_str(&o->scope, scope);
    if (st != WSGATE_OK) {
        options_clear(&t);
        return st;
    }
    free(o->key);
    free(o->token);
    o->token = NULL;
    o->alg = alg;
    o->key = t.key;
    o->key_len = n;
    return WSGATE_OK;
}

wsgate_status wsgate_options_set_channels(wsgate_options *o, const char *const *channels, size_t n)
{
    if (!o || (n && !channels))
        return sdk_fail(WSGATE_EINVAL, "options and channels are required");
    char **v = n ? calloc(n, sizeof *v) : NULL;
    int oom = n && !v;
    for (size_t i = 0; !oom && i < n; i++) {
        if (!channels[i] || !*channels[i]) {
            strv_free(v, n);
            return sdk_fail(WSGATE_EINVAL, "channel %zu is empty", i);
        }
        v[i] = sdk_strdup(channels[i], &oom);
    }
    if (oom) {
        strv_free(v, n);
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    }
    strv_free(o->channels, o->n_channels);
    o->channels = v;
    o->n_channels = n;
    return WSGATE_OK;
}

wsgate_status wsgate_options_set_issuer(wsgate_options *o, const char *issuer, const char *audience)
{
    if (!o)
        return sdk_fail(WSGATE_EINVAL, "options is NULL");
    char *old_iss = NULL;
    wsgate_status st = set_str(&old_iss, o->issuer);
    if (st == WSGATE_OK && (st = set_str(&o->issuer, issuer)) == WSGATE_OK &&
        (st = set_str(&o->audience, audience)) != WSGATE_OK) {
        free(o->issuer); /* keep the pair consistent */
        o->issuer = old_iss;
        old_iss = NULL;
    }
    free(old_iss);
    return st;
}

wsgate_status wsgate_options_set_token_ttl(wsgate_options *o, int64_t ttl_s)
{
    if (!o || ttl_s < 10)
        return sdk_fail(WSGATE_EINVAL, "token ttl must be >= 10 s");
    o->ttl_s = ttl_s;
    return WSGATE_OK;
}

wsgate_status wsgate_options_set_timeouts(wsgate_options *o, long request_ms, long connect_ms)
{
    if (!o || request_ms <= 0 || connect_ms <= 0)
        return sdk_fail(WSGATE_EINVAL, "timeouts must be > 0");
    o->request_ms = request_ms;
    o->connect_ms = connect_ms;
    return WSGATE_OK;
}

wsgate_status wsgate_options_set_retries(wsgate_options *o, int retries)
{
    if (!o || retries < 0 || retries > 10)
        return sdk_fail(WSGATE_EINVAL, "retries must be 0..10");
    o->retries = retries;
    return WSGATE_OK;
}

static wsgate_status options_copy(wsgate_options *d, const wsgate_options *s)
{
    *d = *s;
    d->url = d->token = d->scope = d->issuer = d->audience = d->key = NULL;
    d->channels = NULL;
    d->n_channels = 0;
    int oom = 0;
    d->url = sdk_strdup(s->url, &oom);
    d->token = sdk_strdup(s->token, &oom);
    d->scope = sdk_strdup(s->scope, &oom);
    d->issuer = sdk_strdup(s->issuer, &oom);
    d->audience = sdk_strdup(s->audience, &oom);
    if (s->key && (d->key = malloc(s->key_len ? s->key_len : 1)))
        memcpy(d->key, s->key, s->key_len);
    oom |= s->key && !d->key;
    if (!oom && wsgate_options_set_channels(d, (const char *const *)s->channels, s->n_channels) !=
                    WSGATE_OK)
        oom = 1;
    return oom ? sdk_fail(WSGATE_ENOMEM, "out of memory") : WSGATE_OK;
}

/* curl_global_init() once per process; a failed one (out of memory) is
 * tried again by the next wsgate_client_new(), so not pthread_once. */
static pthread_mutex_t curl_init_mu = PTHREAD_MUTEX_INITIALIZER;
static int curl_inited;

static CURLcode curl_init(void)
{
    CURLcode rc = CURLE_OK;
    pthread_mutex_lock(&curl_init_mu);
    if (!curl_inited) {
        rc = curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_inited = rc == CURLE_OK;
    }
    pthread_mutex_unlock(&curl_init_mu);
    return rc;
}

wsgate_status wsgate_client_new(wsgate_client **out, const wsgate_options *o)
{
    if (!out || !o)
        return sdk_fail(WSGATE_EINVAL, "out and options are required");
    *out = NULL;
    if (!o->url || (!o->token && !o->key))
        return sdk_fail(WSGATE_EINVAL, "options need a url and a token or a signing key");
    CURLcode cc = curl_init();
    if (cc != CURLE_OK)
        return sdk_fail(cc == CURLE_OUT_OF_MEMORY ? WSGATE_ENOMEM : WSGATE_ETRANSPORT,
                        "curl_global_init failed");
    wsgate_client *c = calloc(1, sizeof *c);
    if (!c)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    wsgate_status st = options_copy(&c->o, o);
    if (st == WSGATE_OK && pthread_mutex_init(&c->mu, NULL) != 0)
        st = sdk_fail(WSGATE_ENOMEM, "cannot create a mutex");
    if (st != WSGATE_OK) {
        options_clear(&c->o);
        free(c);
        return st;
    }
    *out = c;
    return WSGATE_OK;
}

void wsgate_client_free(wsgate_client *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_pool; i++)
        curl_easy_cleanup(c->pool[i]);
    pthread_mutex_destroy(&c->mu);
    free(c->minted);
    options_clear(&c->o);
    free(c);
}

/* "Authorization: Bearer <token>" as a new string; mints when the current
 * token has less than a fifth of its lifetime left. */
static wsgate_status auth_header(wsgate_client *c, sdk_buf_t *h)
{
    wsgate_status st = WSGATE_OK;
    pthread_mutex_lock(&c->mu);
    int64_t now = (int64_t)time(NULL);
    if (!c->o.token && (!c->minted || now >= c->minted_exp - c->o.ttl_s / 5)) {
        char *fresh = NULL;
        st = mint_from(&c->o, c->o.ttl_s, &fresh);
        if (st == WSGATE_OK) {
            free(c->minted);
            c->minted = fresh;
            c->minted_exp = now + c->o.ttl_s;
        }
    }
    if (st == WSGATE_OK) {
        sdk_buf_str(h, "Authorization: Bearer ");
        sdk_buf_str(h, c->o.token ? c->o.token : c->minted);
    }
    pthread_mutex_unlock(&c->mu);
    if (st == WSGATE_OK && h->oom)
        st = sdk_fail(WSGATE_ENOMEM, "out of memory");
    return st;
}

static CURL *pool_take(wsgate_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool)
        h = c->pool[--c->n_pool];
    pthread_mutex_unlock(&c->mu);
    return h ? h : curl_easy_init();
}

/* Back into the pool: reset keeps the handle's live connections. */
static void pool_put(wsgate_client *c, CURL *h)
{
    curl_easy_reset(h);
    pthread_mutex_lock(&c->mu);
    if (c->n_pool < POOL_MAX) {
        c->pool[c->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h)
        curl_easy_cleanup(h);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    sdk_buf_t *b = ud;
    if (b->n + n > BODY_MAX)
        return 0;
    sdk_buf_add(b, p, n);
    return b->oom ? 0 : n;
}

static int idempotent(const char *method)
{
    return strcmp(method, "POST") != 0;
}

static wsgate_status curl_status(CURLcode cc, const sdk_buf_t *body)
{
    if (cc == CURLE_OUT_OF_MEMORY || (cc == CURLE_WRITE_ERROR && body->oom))
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    if (cc == CURLE_WRITE_ERROR)
        return sdk_fail(WSGATE_EPROTO, "answer larger than %u bytes", BODY_MAX);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return sdk_fail(WSGATE_ETIMEOUT, "%s", curl_easy_strerror(cc));
    return sdk_fail(WSGATE_ETRANSPORT, "%s", curl_easy_strerror(cc));
}

/* One attempt on one pooled handle; *http is the answer's status or 0. */
static wsgate_status perform_once(wsgate_client *c, const sdk_req_t *rq, const char *url,
                                  struct curl_slist *hdrs, sdk_buf_t *body, long *http)
{
    CURL *h = pool_take(c);
    if (!h)
        return sdk_fail(WSGATE_ENOMEM, "curl_easy_init failed");
    CURLcode cc = curl_easy_setopt(h, CURLOPT_URL, url);
    if (cc == CURLE_OK && strcmp(rq->method, "GET") != 0)
        cc = curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    if (cc == CURLE_OK && strcmp(rq->method, "POST") == 0) { /* a body, even an empty one */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        cc = curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->o.request_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->o.connect_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    if (cc == CURLE_OK)
        cc = curl_easy_perform(h);
    *http = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    pool_put(c, h);
    return cc == CURLE_OK ? WSGATE_OK : curl_status(cc, body);
}

static struct curl_slist *headers_for(wsgate_client *c, const sdk_req_t *rq, wsgate_status *st)
{
    sdk_buf_t auth = {0}, ct = {0};
    struct curl_slist *l = curl_slist_append(NULL, "Expect:"), *t;
    *st = l ? WSGATE_OK : sdk_fail(WSGATE_ENOMEM, "out of memory");
    if (*st == WSGATE_OK && !rq->no_auth && (*st = auth_header(c, &auth)) == WSGATE_OK) {
        if ((t = curl_slist_append(l, auth.p)))
            l = t;
        else
            *st = sdk_fail(WSGATE_ENOMEM, "out of memory");
    }
    if (*st == WSGATE_OK && rq->content_type) {
        sdk_buf_str(&ct, "Content-Type: ");
        sdk_buf_str(&ct, rq->content_type);
        if (!ct.oom && (t = curl_slist_append(l, ct.p)))
            l = t;
        else
            *st = sdk_fail(WSGATE_ENOMEM, "out of memory");
    }
    if (auth.p)
        memset(auth.p, 0, auth.n); /* the token */
    sdk_buf_free(&auth);
    sdk_buf_free(&ct);
    if (*st != WSGATE_OK) {
        curl_slist_free_all(l);
        return NULL;
    }
    return l;
}

static void backoff(int attempt)
{
    long ms = 100L << (attempt < 6 ? attempt : 6);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static wsgate_status answer(long http, const sdk_buf_t *body, json_t **json)
{
    wsgate_status st = sdk_status_of_http(http);
    if (st != WSGATE_OK)
        return sdk_fail_http(st, http, body->p, body->n);
    if (!json || body->n == 0)
        return WSGATE_OK;
    json_error_t jerr;
    *json = json_loadb(body->p, body->n, 0, &jerr);
    if (*json)
        return WSGATE_OK;
    if (json_error_code(&jerr) == json_error_out_of_memory)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    return sdk_fail_http(WSGATE_EPROTO, http, body->p, body->n);
}

wsgate_status sdk_call(wsgate_client *c, const sdk_req_t *rq, json_t **json)
{
    if (json)
        *json = NULL;
    sdk_buf_t url = {0}, body = {0};
    wsgate_status st;
    struct curl_slist *hdrs = headers_for(c, rq, &st);
    if (!hdrs)
        return st;
    sdk_buf_str(&url, c->o.url);
    sdk_buf_str(&url, rq->path_query);
    if (url.oom) {
        st = sdk_fail(WSGATE_ENOMEM, "out of memory");
        goto out;
    }
    int tries = idempotent(rq->method) ? 1 + c->o.retries : 1;
    long http = 0;
    for (int i = 0; i < tries; i++) {
        if (i > 0)
            backoff(i - 1);
        body.n = 0;
        st = perform_once(c, rq, url.p, hdrs, &body, &http);
        int again = st == WSGATE_ETIMEOUT || st == WSGATE_ETRANSPORT ||
                    (st == WSGATE_OK && (http == 502 || http == 503 || http == 504));
        if (!again)
            break;
    }
    if (st == WSGATE_OK)
        st = answer(http, &body, json);
out:
    curl_slist_free_all(hdrs);
    sdk_buf_free(&url);
    sdk_buf_free(&body);
    return st;
}

wsgate_status sdk_call_frame(wsgate_client *c, const char *path_query, wsgate_kind kind,
                             const void *data, size_t len, json_t **json)
{
    if (kind != WSGATE_TEXT && kind != WSGATE_BINARY)
        return sdk_fail(WSGATE_EINVAL, "kind must be WSGATE_TEXT or WSGATE_BINARY");
    if (!data && len)
        return sdk_fail(WSGATE_EINVAL, "data is NULL");
    if (kind == WSGATE_TEXT && !sdk_utf8(data ? data : "", len))
        return sdk_fail(WSGATE_EINVAL, "text is not UTF-8");
    sdk_req_t rq = {.method = "POST",
                    .path_query = path_query,
                    .content_type = kind == WSGATE_TEXT ? "text/plain" : "application/octet-stream",
                    .body = data,
                    .body_len = len};
    return sdk_call(c, &rq, json);
}
