/* SPDX-License-Identifier: MIT */
/*
 * api.c — the control API's HTTP server on libmicrohttpd: daemon setup and
 * hardening (connection limits, per-IP limit, timeout, memory limit, a fixed
 * thread pool on epoll), request body intake (counted against
 * api.max_body_bytes while it arrives, never buffered past it), and the
 * suspend/resume hand-off that lets a request wait for a bus reply without
 * holding an MHD thread.
 *
 * A request's life: its request line allocates an http_ctx_t
 * (on_request_line, MHD's URI log callback); the first access-handler call
 * sees the complete head and refuses bad framing (api_http.c) before any
 * body is read; body chunks are appended up to the limit; the last call
 * routes it. A handler that waits for the bus returns API_ASYNC: the
 * connection is suspended, and the reply callback resumes it (state machine
 * RUNNING -> SUSPENDED/DONE with atomic exchange, so neither side can miss
 * the other). Along the way the connection's total deadline moves
 * (api_deadline.h): request line -> api.request_timeout for head and body;
 * routed -> none; answer queued -> api.request_timeout for the client to
 * take it; request completed -> api.connection_timeout for the next request
 * line.
 *
 * Resumes are batched: each MHD_resume_connection() writes the MHD thread's
 * eventfd, and the edge answers a burst of sends one after another, so
 * resuming each reply at once would wake an MHD thread per reply. The first
 * reply resumes its connection ("the kick") and later ones only join a
 * list; the MHD thread that processes any resumed connection resumes the
 * whole list from there, so a burst costs one wake-up (docs/performance.md,
 * "Design notes").
 */

#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "common/listen.h"
#include "common/log.h"
#include "common/metrics.h"
#include "control-api/api_deadline.h"
#include "control-api/api_int.h"
#include "ops/ops.h"

enum { ST_RUNNING = 0, ST_SUSPENDED = 1, ST_DONE = 2 };

/* libmicrohttpd's per-connection pool (headers, read and write buffers; the
 * body streams through it). MHD zeroes the whole pool after every request on
 * a keep-alive connection, so its size is paid per request: 16 KiB holds
 * request headers up to ~14 KiB (a JWT with a long channels claim fits;
 * larger ones get 431) and no more. The
 * request line must fit too: API_URI_MAX (8 KiB) leaves room for headers,
 * and only a request line near 16 KiB gets MHD's own HTML 414 before any
 * callback of ours runs. */
#define API_CONN_MEMORY (16 * 1024)

/* A typical send's body fits inline, and the whole context stays within
 * glibc's per-thread cache (at most 1032 bytes). */
#define BODY_INLINE 256

typedef struct http_ctx {
    api_req_t r;
    struct http_ctx *rprev, *rnext; /* on a->resume_head */
    int in_resume;                  /* on it; under a->resume_mu */
    struct MHD_Connection *conn;
    char *body; /* inl, or heap once it outgrew it */
    size_t len, cap;
    char inl[BODY_INLINE];
    api_sock_t *sock; /* the connection's deadline (api_deadline.h), or NULL */
    size_t uri_len;   /* of the request-target */
    int bad_target;   /* the status it earns (400/414), or 0 */
    int head_seen;    /* the first access-handler call happened */
    int too_big;
    int routed;
    int suspended;
    atomic_int state;
} http_ctx_t;

/* ---- store pool ------------------------------------------------------------ */

static int pool_init(api_pool_t *p, const char *url, size_t n, char *err, size_t errlen)
{
    p->h = calloc(n, sizeof *p->h);
    p->free_idx = calloc(n, sizeof *p->free_idx);
    if (!p->h || !p->free_idx)
        return WSG_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (size_t i = 0; i < n; i++) {
        int rc = store_open(&p->h[i], url, err, errlen);
        if (rc != 0)
            return rc;
        p->n++;
        p->free_idx[p->free_n++] = i;
    }
    return 0;
}

static void pool_free(api_pool_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        store_free(p->h[i]);
    free(p->h);
    free(p->free_idx);
    if (p->n) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
}

store_t *api_store_get(api_t *a)
{
    api_pool_t *p = &a->pool;
    pthread_mutex_lock(&p->mu);
    while (p->free_n == 0)
        pthread_cond_wait(&p->cv, &p->mu);
    store_t *st = p->h[p->free_idx[--p->free_n]];
    pthread_mutex_unlock(&p->mu);
    return st;
}

void api_store_put(api_t *a, store_t *st)
{
    api_pool_t *p = &a->pool;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n; i++)
        if (p->h[i] == st)
            p->free_idx[p->free_n++] = i;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---- async requests -------------------------------------------------------- */

void api_req_start(api_req_t *r, int n, api_req_fn finish)
{
    atomic_store(&r->pending, n);
    atomic_store(&r->first_err, 0);
    r->finish = finish;
}

void api_req_reply(api_req_t *r, int status)
{
    if (status != 0 && r->edge_conn)
        api_edge_cache_drop(r->a->edge_cache, r->edge_conn);
    if (status != 0) {
        int zero = 0;
        atomic_compare_exchange_strong(&r->first_err, &zero, status);
    }
    if (atomic_fetch_sub(&r->pending, 1) != 1)
        return;
    r->finish(r);
    r->done(r);
}

void api_reply_cb(void *ud, int status)
{
    api_req_reply(ud, status);
}

const char *api_edge_for(api_req_t *r, const char *conn_id, char *buf, size_t len, int *rc)
{
    *rc = 0;
    if (!r->a->cluster)
        return NULL; /* in-process: the bus asks the local edge, no store read */
    if (api_edge_cache_get(r->a->edge_cache, conn_id, buf, len)) {
        r->edge_conn = conn_id;
        return buf;
    }
    /* a miss: the connection opened before this process watched, its
     * connect event was missed (NATS reconnect) or evicted, or it is gone;
     * the store's row is the authority, and its answer is remembered */
    wsg_count(WSG_M_API_LOCATION_STORE_READS, 1);
    store_t *st = api_store_get(r->a);
    store_conn_t c = {0};
    *rc = store_conn_get(st, conn_id, &c);
    api_store_put(r->a, st);
    if (*rc == 0) {
        snprintf(buf, len, "%s", c.edge_id);
        api_edge_cache_put(r->a->edge_cache, conn_id, buf);
        r->edge_conn = conn_id;
    }
    store_conn_clear(&c);
    if (*rc == WSG_ENOTFOUND) {
        /* not recorded (yet): the registry may still be consuming its
         * connect event; ask every edge, the one holding it answers */
        *rc = 0;
        return NULL;
    }
    return *rc == 0 ? buf : NULL;
}

/* A connect or disconnect published anywhere in the cluster (a NATS
 * thread): where connections live, without asking the store. */
static void on_location(void *ud, bus_event_type_t type, const char *conn_id, const char *edge_id)
{
    api_t *a = ud;
    if (type == BUS_EV_CONNECT)
        api_edge_cache_put(a->edge_cache, conn_id, edge_id);
    else
        api_edge_cache_drop(a->edge_cache, conn_id);
}

/* A suspended request was answered (any thread): the first of a burst is
 * resumed now, the rest wait for resume_rest() on the MHD thread it wakes. */
static void resume_later(api_t *a, http_ctx_t *h)
{
    pthread_mutex_lock(&a->resume_mu);
    int kick = !a->resume_kicked || a->resume_direct;
    if (kick) {
        a->resume_kicked = 1;
    } else {
        h->rprev = NULL;
        h->rnext = a->resume_head;
        if (h->rnext)
            h->rnext->rprev = h;
        a->resume_head = h;
        h->in_resume = 1;
    }
    pthread_mutex_unlock(&a->resume_mu);
    if (kick)
        MHD_resume_connection(h->conn);
}

/* On an MHD thread that is processing a resumed connection: resumes every
 * request answered since the kick (their threads need no separate wake-up:
 * this one is running; another pool thread gets its eventfd written once).
 * final (api_stop): and from now on each reply resumes its own connection. */
static void resume_rest(api_t *a, int final)
{
    pthread_mutex_lock(&a->resume_mu);
    http_ctx_t *l = a->resume_head;
    a->resume_head = NULL;
    a->resume_kicked = 0;
    if (final)
        a->resume_direct = 1;
    for (http_ctx_t *h = l; h; h = h->rnext)
        h->in_resume = 0;
    pthread_mutex_unlock(&a->resume_mu);
    for (http_ctx_t *h = l, *next; h; h = next) {
        next = h->rnext; /* read before the resume: h may complete at once */
        MHD_resume_connection(h->conn);
    }
}

static void http_done(api_req_t *r)
{
    http_ctx_t *h = r->owner;
    if (atomic_exchange(&h->state, ST_DONE) == ST_SUSPENDED)
        resume_later(r->a, h);
}

/* ---- responses --------------------------------------------------------------- */

static enum MHD_Result queue(http_ctx_t *h)
{
    api_req_t *r = &h->r;
    struct MHD_Response *resp;
    const char *ctype = NULL;
    api_deadline_set(h->sock, r->a->cfg->api.request_timeout_ms);
    if (!r->resp && r->queued && r->a->queued_resp) /* a send: the shared answer */
        return MHD_queue_response(h->conn, 200, r->a->queued_resp);
    if (r->resp) {
        char *s = json_dumps(r->resp, JSON_COMPACT);
        if (!s)
            abort();
        resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
        ctype = r->is_problem ? "application/problem+json" : "application/json";
    } else if (r->queued) { /* no shared response (it could not be built) */
        resp = MHD_create_response_from_buffer(strlen(API_QUEUED_BODY), (void *)API_QUEUED_BODY,
                                               MHD_RESPMEM_PERSISTENT);
        ctype = "application/json";
    } else if (r->raw) {
        resp = MHD_create_response_from_buffer(r->raw_len, r->raw, MHD_RESPMEM_MUST_FREE);
        r->raw = NULL;
        ctype = r->raw_ctype;
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(resp, "Content-Type", ctype);
    if (r->allow)
        MHD_add_response_header(resp, "Allow", r->allow);
    if (r->www_auth)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"wsgate\"");
    if (r->err_type)
        MHD_add_response_header(resp, "x-amzn-ErrorType", r->err_type);
    if (r->status == 503) /* store or bus unavailable, a queue full: worth a retry soon */
        MHD_add_response_header(resp, "Retry-After", "1");
    if (r->status >= 400)
        wsg_count(WSG_M_API_ERRORS, 1);
    enum MHD_Result ret = MHD_queue_response(h->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static int method_of(const char *m)
{
    static const struct {
        const char *s;
        int m;
    } t[] = {{"GET", API_GET},
             {"PUT", API_PUT},
             {"POST", API_POST},
             {"DELETE", API_DELETE},
             {"HEAD", API_HEAD}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(m, t[i].s) == 0)
            return t[i].m;
    return 0;
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    api_req_t *r = cls;
    if (r->nq >= API_MAX_QUERY) {
        r->status = 400; /* answered as a malformed query */
        return MHD_NO;
    }
    char *k = NULL, *v = NULL;
    if (api_pct_decode(key, strlen(key), 1, &k) != 0 ||
        api_pct_decode(value ? value : "", value ? strlen(value) : 0, 1, &v) != 0) {
        free(k);
        free(v);
        r->status = 400;
        return MHD_NO;
    }
    r->q[r->nq].key = k;
    r->q[r->nq].val = v;
    r->nq++;
    return MHD_YES;
}

static int body_too_big(api_req_t *r)
{
    return api_problem(r, 413, "request body over %u bytes", r->a->cfg->api.max_body_bytes);
}

/* Routes a fully received request. Returns API_DONE or API_ASYNC. */
static int run_request(http_ctx_t *h, const char *url, const char *method)
{
    api_req_t *r = &h->r;
    r->method = method_of(method);
    r->ctype = MHD_lookup_connection_value(h->conn, MHD_HEADER_KIND, "Content-Type");
    r->body = h->body ? h->body : "";
    r->body_len = h->len;
    if (h->too_big)
        return body_too_big(r);
    int rc = api_split_path(url, r->segs, &r->nsegs);
    if (rc == WSG_EINVAL)
        return api_problem(r, 400, "path has a bad percent-escape or a NUL (%%00)");
    if (rc != 0)
        return api_problem(r, 404, "no such resource");
    MHD_get_connection_values(h->conn, MHD_GET_ARGUMENT_KIND, collect_query, r);
    if (r->status == 400)
        return api_problem(r, 400, "malformed query string");
    r->authz = MHD_lookup_connection_value(h->conn, MHD_HEADER_KIND, "Authorization");
    r->raw_path = url;
    r->mhd = h->conn;
    return api_route(r);
}

/* Appends a body chunk; past max the body is dropped and too_big set.
 * Returns 0 or WSG_ENOMEM. */
static int append_body(http_ctx_t *h, const char *data, size_t n, size_t max)
{
    if (h->len + n > max) {
        h->too_big = 1;
        if (h->body != h->inl)
            free(h->body);
        h->body = NULL;
        h->len = h->cap = 0;
        return 0;
    }
    if (!h->body) {
        h->body = h->inl;
        h->cap = sizeof h->inl;
    }
    if (h->len + n + 1 > h->cap) {
        size_t cap = h->cap * 2;
        while (cap < h->len + n + 1)
            cap *= 2;
        char *nb = malloc(cap);
        if (!nb)
            return WSG_ENOMEM;
        memcpy(nb, h->body, h->len);
        if (h->body != h->inl)
            free(h->body);
        h->body = nb;
        h->cap = cap;
    }
    memcpy(h->body + h->len, data, n);
    h->len += n;
    h->body[h->len] = 0;
    return 0;
}

/* MHD's URI log callback: called once per request as soon as its request
 * line is read (uri is the raw request-target), before the headers. What it
 * returns is the request's *con_cls; NULL (out of memory) makes on_request
 * drop the connection. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    api_t *a = cls;
    http_ctx_t *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->conn = conn;
    h->r.a = a;
    h->r.owner = h;
    h->r.done = http_done;
    h->sock = api_deadline_sock(conn);
    api_deadline_set(h->sock, a->cfg->api.request_timeout_ms);
    h->bad_target = api_http_check_target(uri, &h->uri_len);
    return h;
}

/* The first access-handler call: the head is complete and no body byte has
 * been read. Returns 1 when the request is answered now: a bad
 * request-target or framing (then MHD reads neither its body nor anything
 * pipelined after it, and closes the connection after the answer), or a
 * Content-Length over api.max_body_bytes. */
static int answer_head_now(http_ctx_t *h, const char *version)
{
    char why[160];
    int st;
    if (h->bad_target) {
        api_http_refuse_target(&h->r, h->bad_target, h->uri_len);
        return 1;
    }
    if ((st = api_http_check_head(h->conn, version, why, sizeof why)) != 0) {
        api_problem(&h->r, st, "%s", why);
        return 1;
    }
    const char *cl = MHD_lookup_connection_value(h->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > h->r.a->cfg->api.max_body_bytes) {
        body_too_big(&h->r);
        return 1;
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    api_t *a = cls;
    http_ctx_t *h = *con_cls;
    if (!h)
        return MHD_NO;
    if (!h->head_seen) {
        h->head_seen = 1;
        wsg_count(WSG_M_API_REQUESTS, 1);
        if (!answer_head_now(h, version))
            return MHD_YES;
        h->routed = 1;
        return queue(h);
    }
    if (*upload_size) {
        if (!h->too_big && append_body(h, upload, *upload_size, a->cfg->api.max_body_bytes) != 0)
            return MHD_NO;
        *upload_size = 0; /* past the limit the rest is discarded as it arrives */
        return MHD_YES;
    }
    if (h->routed) {
        if (atomic_load(&h->state) != ST_DONE)
            return MHD_YES;
        if (h->suspended) {
            h->suspended = 0;
            atomic_fetch_sub(&a->inflight, 1);
            resume_rest(a, 0);
        }
        return queue(h);
    }
    h->routed = 1;
    api_deadline_set(h->sock, 0); /* received: the handler's time is not the client's */
    if (run_request(h, url, method) == API_DONE)
        return queue(h);
    if (atomic_load(&h->state) == ST_DONE)
        return queue(h);
    atomic_fetch_add(&a->inflight, 1);
    h->suspended = 1;
    MHD_suspend_connection(conn);
    if (atomic_exchange(&h->state, ST_SUSPENDED) == ST_DONE) {
        atomic_store(&h->state, ST_DONE);
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    api_t *a = cls;
    http_ctx_t *h = *con_cls;
    /* a kept-alive connection owes its next request line within this */
    api_deadline_set(api_deadline_sock(conn), a->cfg->api.connection_timeout_ms);
    if (!h)
        return;
    if (h->suspended) { /* ended while suspended or before its answer went out */
        atomic_fetch_sub(&a->inflight, 1);
        pthread_mutex_lock(&a->resume_mu);
        if (h->in_resume) { /* shutdown: MHD closes it without a resume */
            if (h->rprev)
                h->rprev->rnext = h->rnext;
            else
                a->resume_head = h->rnext;
            if (h->rnext)
                h->rnext->rprev = h->rprev;
            h->in_resume = 0;
        }
        pthread_mutex_unlock(&a->resume_mu);
        resume_rest(a, 0); /* it may have been the kick the others wait for */
    }
    api_req_clear(&h->r);
    if (h->body != h->inl)
        free(h->body);
    free(h);
    *con_cls = NULL;
}

/* libmicrohttpd's own messages go through the JSON log, not raw stderr. */
/* MHD would decode %2F to '/' in the path; routing decodes each segment. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *uri)
{
    (void)cls;
    (void)c;
    return strlen(uri);
}

/* ---- lifecycle ----------------------------------------------------------------- */

int api_new(api_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen)
{
    *out = NULL;
    api_t *a = calloc(1, sizeof *a);
    if (!a)
        return WSG_ENOMEM;
    a->cfg = cfg;
    a->bus = bus;
    a->cluster = cfg->nats && *cfg->nats;
    if (a->cluster && !(a->edge_cache = api_edge_cache_new())) {
        free(a);
        return WSG_ENOMEM;
    }
    pthread_mutex_init(&a->resume_mu, NULL);
    api_auth_init(a);
    api_subwait_init(a);
    size_t n = (cfg->api.threads ? cfg->api.threads : 2) + 2;
    int rc = 0;
    if (a->cluster && (rc = bus_event_watch(bus, on_location, a)) != 0)
        wsg_errf(err, errlen, rc, "api: cannot watch where connections live");
    a->watching = rc == 0 && a->cluster;
    if (rc == 0)
        rc = pool_init(&a->pool, cfg->store, n, err, errlen);
    if (rc == 0)
        rc = api_registry_init(a, err, errlen);
    if (rc != 0) {
        api_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int api_start(api_t *a, char *err, size_t errlen)
{
    const wsg_api_conf_t *c = &a->cfg->api;
    wsg_listen_addr_t addr;
    char why[256];
    if (wsg_listen_addr(c->listen, &addr, why, sizeof why) != 0)
        return wsg_errf(err, errlen, WSG_ECONFIG, "api.listen: %s", why);
    int rc = api_registry_start(a);
    if (rc != 0)
        return wsg_errf(err, errlen, rc, "registry start failed");
    unsigned threads = c->threads ? c->threads : 2;
    if (!a->deadlines && (rc = api_deadlines_new(&a->deadlines, c->connection_timeout_ms)) != 0)
        return wsg_errf(err, errlen, rc, "api: cannot start the request watchdog");
    /* the answer to every queued send, built once: MHD reference-counts a
     * response, so any number of connections on any thread may queue it */
    if (!a->queued_resp) {
        a->queued_resp = MHD_create_response_from_buffer(
            strlen(API_QUEUED_BODY), (void *)API_QUEUED_BODY, MHD_RESPMEM_PERSISTENT);
        if (a->queued_resp)
            MHD_add_response_header(a->queued_resp, "Content-Type", "application/json");
    }
    unsigned tls_flags;
    struct MHD_OptionItem tls_opts[API_TLS_MAX_OPTS];
    if ((rc = api_tls_start(&c->tls, &tls_flags, tls_opts, err, errlen)) != 0)
        return rc;
    a->tls = tls_flags != 0;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (addr.sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
                     tls_flags;
    a->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, ops_mhd_log,
        (void *)"api http server", MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr.sa, MHD_OPTION_THREAD_POOL_SIZE, threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(c->max_connections ? c->max_connections : 10000),
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->max_connections_per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)((c->connection_timeout_ms + 999) / 1000),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, a, MHD_OPTION_URI_LOG_CALLBACK, on_request_line, a,
        MHD_OPTION_NOTIFY_CONNECTION, api_deadline_notify, a->deadlines,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_END);
    if (!a->mhd) {
        api_tls_stop();
        a->tls = 0;
        return wsg_errf(err, errlen, WSG_EIO, "api: cannot listen on %s", c->listen);
    }
    a->port = ops_mhd_port(a->mhd);
    return 0;
}

int api_port(const api_t *a)
{
    return a ? a->port : 0;
}

void api_stop(api_t *a)
{
    if (!a)
        return;
    if (a->watching) /* here: the bus is freed before api_free() */
        bus_event_unwatch(a->bus, on_location, a);
    a->watching = 0;
    api_registry_stop(a);
    if (a->mhd) {
        MHD_quiesce_daemon(a->mhd);
        /* suspended requests end within the bus's 5 s command timeout */
        for (int i = 0; i < 700 && atomic_load(&a->inflight) > 0; i++)
            nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
        /* what still waits on the list is resumed now (MHD_stop_daemon
         * refuses to run with an answered connection left suspended), and a
         * late reply resumes its own connection */
        resume_rest(a, 1);
        api_deadlines_stop(a->deadlines); /* no shutdown() while MHD closes sockets */
        MHD_stop_daemon(a->mhd);
        a->mhd = NULL;
        if (a->tls)
            api_tls_stop();
        a->tls = 0;
    }
    api_deadlines_free(a->deadlines); /* every socket was unregistered by now */
    a->deadlines = NULL;
    if (a->queued_resp) {
        MHD_destroy_response(a->queued_resp);
        a->queued_resp = NULL;
    }
}

void api_free(api_t *a)
{
    if (!a)
        return;
    api_stop(a);
    pool_free(&a->pool);
    api_registry_free(a);
    store_free(a->reg_st);
    for (size_t i = 0; i < a->n_lost; i++)
        free(a->lost_ids[i]);
    free(a->lost_ids);
    api_edge_cache_free(a->edge_cache);
    pthread_mutex_destroy(&a->resume_mu);
    api_auth_free(a);
    free(a);
}
