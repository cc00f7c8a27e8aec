/* SPDX-License-Identifier: MIT */
/*
 * edge_authz.c — the workers of a held handshake (edge_handshake.c), so
 * the lws service thread never waits on the network:
 *
 * - the authorizer webhook (docs/contract.md §2): a POST signed per Standard
 *   Webhooks with the route's key, sent by libcurl's multi interface on one
 *   edge-owned thread. Every request ends in exactly one EDGE_Q_AUTHZ item
 *   posted to the edge: the HTTP status (0 for a transport error or
 *   timeout) and the body (capped at 64 KiB; a longer answer counts as
 *   garbage).
 *   The thread is event driven (curl_multi_socket_action on its own epoll
 *   set, woken by an eventfd): each wake-up costs what is ready, not what is
 *   in flight. curl_multi_perform + curl_multi_poll walked every running
 *   transfer and every socket on each wake-up, O(handshakes in flight).
 *   Easy handles are pooled and reused; keep-alive connections to the
 *   authorizer live in the multi handle's cache (CURLMOPT_MAXCONNECTS).
 *   The service thread only hands over the body: signing and headers are
 *   made here.
 * - cluster user claims (one_connection_per_user: reject across edges):
 *   bus_user_claim() and bus_user_release() block on NATS round trips (a
 *   claim may wait for another edge's answer), so they run on a small pool
 *   of claim threads taking jobs oldest first. Every claim ends
 *   in one EDGE_Q_AUTHZ item with claim = 1 (the verdict, the claim's
 *   revision, the user in body and the route in store); releases are fire
 *   and forget. Only started when the bus is shared and a route says
 *   `reject`.
 *
 * - the answer's parsing (edge_authz_answer_parse, edge_authz_answer.h):
 *   pure, any thread; the handshake applies it to its connection.
 *
 * One per process, shared by the edge's loops: results are posted to the
 * loop that owns the connection (edge_post_conn).
 *
 * Threads: edge_authz_new/free on the edge's owner thread; edge_authz_start,
 * edge_claim_* on any loop's service thread; the curl thread owns every curl
 * handle, the claim threads make every bus_user_* call.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/text.h"
#include "common/log.h"
#include "common/webhook.h"
#include "common/thread.h"
#include "ws-edge/edge_authz_answer.h"
#include "ws-edge/edge_int.h"

#define AUTHZ_MAX_BODY 65536
#define AUTHZ_POOL 256           /* idle easy handles kept for reuse */
#define AUTHZ_MAX_CONNS 256L     /* idle keep-alive connections kept to authorizers */
#define AUTHZ_EVENTS 64          /* epoll events taken per wake-up */
#define CLAIM_THREADS 4          /* claims in flight at once (each mostly waits on NATS) */
#define CLAIM_STOP_GRACE_MS 2000 /* releases still made after edge_authz_free */

typedef struct authz_job {
    struct authz_job *next;
    edge_authz_req_t req; /* url and key are the config's, which outlives the edge */
    struct curl_slist *hdrs;
    char *resp;
    size_t resp_len;
    int too_big;
    CURL *h;
} authz_job_t;

typedef struct claim_job {
    struct claim_job *next;
    int release;
    const char *route; /* the config's, which outlives the edge */
    char *user;
    char conn_id[EDGE_ID_LEN + 1];
    uint64_t rev; /* release: the claim to drop */
} claim_job_t;

struct edge_authz {
    edge_t *e;    /* the process's edge: its loops share these threads */
    CURLM *multi; /* NULL: no route has an authorizer */
    int epfd;     /* the curl thread's epoll set: curl's sockets and wakefd */
    int wakefd;   /* eventfd: new jobs, or stop */
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    authz_job_t *in_head, *in_tail; /* handed over, oldest first (under mu) */
    int stop;

    /* curl thread only (and free after join) */
    authz_job_t *running;
    int64_t timer_at; /* curl's next timeout (monotonic ms), -1: none */
    CURL *pool[AUTHZ_POOL];
    int npool;

    pthread_t cth[CLAIM_THREADS]; /* the claim threads; the rest under mu */
    int claims;                   /* started */
    pthread_cond_t ccv;
    claim_job_t *chead, *ctail;
    int cstop;
    int64_t cstop_until; /* once stopping: releases made until then */
};

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    authz_job_t *j = ud;
    size_t len = sz * n;
    if (j->resp_len + len > AUTHZ_MAX_BODY) {
        j->too_big = 1;
        return 0; /* aborts the transfer */
    }
    char *r = realloc(j->resp, j->resp_len + len + 1);
    if (!r)
        return 0;
    memcpy(r + j->resp_len, p, len);
    j->resp = r;
    j->resp_len += len;
    j->resp[j->resp_len] = '\0';
    return len;
}

static void job_free(authz_job_t *j)
{
    curl_slist_free_all(j->hdrs);
    free(j->req.body);
    free(j->resp);
    free(j);
}

/* Answers j's handshake with status (0: transport failure) and frees j. */
static void job_done(edge_authz_t *a, authz_job_t *j, int status)
{
    edge_q_t *q = edge_q_new(EDGE_Q_AUTHZ, 0);
    memcpy(q->u.authz.conn_id, j->req.conn_id, sizeof j->req.conn_id);
    q->u.authz.status = j->too_big ? 0 : status;
    q->u.authz.body = j->resp;
    j->resp = NULL;
    job_free(j);
    edge_post_conn(a->e, q->u.authz.conn_id, q); /* before edge_authz_free returns */
}

/* Takes h out of the multi handle and keeps it for the next request. */
static void handle_put(edge_authz_t *a, CURL *h)
{
    curl_multi_remove_handle(a->multi, h);
    if (a->npool == AUTHZ_POOL) {
        curl_easy_cleanup(h);
        return;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL); /* the job's list is freed */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    a->pool[a->npool++] = h;
}

/* A pooled easy handle, or a new one with the options every request shares. */
static CURL *handle_get(edge_authz_t *a)
{
    if (a->npool)
        return a->pool[--a->npool];
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    return h;
}

static void finish(edge_authz_t *a, CURL *h, CURLcode res)
{
    authz_job_t *j = NULL;
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&j);
    if (res == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    handle_put(a, h);
    for (authz_job_t **pp = &a->running; *pp; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    job_done(a, j, (int)status);
}

/* Signs j's body (Standard Webhooks) into its header list. Returns 0 or an
 * error, and then nothing is to be sent. */
static int sign_job(authz_job_t *j)
{
    char id[64];
    snprintf(id, sizeof id, "msg_authz_%s", j->req.conn_id);
    return wsg_webhook_headers(j->req.key, j->req.key_len, id, j->req.conn_id, "authorize",
                               j->req.body, strlen(j->req.body), &j->hdrs);
}

static void start_job(edge_authz_t *a, authz_job_t *j)
{
    int rc = sign_job(j);
    if (rc != 0) { /* fails closed, as when the authorizer cannot be reached */
        WSG_LOG(WSG_LOG_ERROR, "authorizer: cannot sign the request", "conn=%s err=%s",
                j->req.conn_id, wsg_err_name(rc));
        job_done(a, j, 0);
        return;
    }
    CURL *h = handle_get(a);
    if (!h) {
        job_done(a, j, 0);
        return;
    }
    curl_easy_setopt(h, CURLOPT_URL, j->req.url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, j->req.body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(j->req.body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, j->hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(j->req.timeout_ms ? j->req.timeout_ms : 5000));
    curl_easy_setopt(h, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(h, CURLOPT_PRIVATE, j);
    j->h = h;
    if (curl_multi_add_handle(a->multi, h) != CURLM_OK) {
        j->h = NULL;
        curl_easy_cleanup(h);
        job_done(a, j, 0);
        return;
    }
    j->next = a->running;
    a->running = j;
}

/* CURLMOPT_SOCKETFUNCTION: mirrors what curl waits for into the epoll set.
 * sockp is non-NULL once the socket is in the set (curl forgets it on
 * CURL_POLL_REMOVE). */
static int on_socket(CURL *h, curl_socket_t s, int what, void *ud, void *sockp)
{
    edge_authz_t *a = ud;
    (void)h;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(a->epfd, EPOLL_CTL_DEL, s, NULL); /* ENOENT/EBADF: closed already */
        return 0;
    }
    struct epoll_event ev = {.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) |
                                       ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u),
                             .data.fd = s};
    int op = sockp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(a->epfd, op, s, &ev) != 0) {
        /* a stale entry (fd number reused) or one dropped with its fd */
        op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(a->epfd, op, s, &ev) != 0) { /* ENOMEM: its timeout ends it */
            WSG_LOG(WSG_LOG_WARN, "authorizer: cannot watch a socket", "errno=%d", errno);
            return 0;
        }
    }
    if (!sockp)
        curl_multi_assign(a->multi, s, a);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer for the whole multi handle. */
static int on_timer(CURLM *m, long ms, void *ud)
{
    edge_authz_t *a = ud;
    (void)m;
    a->timer_at = ms < 0 ? -1 : edge_now_ms() + ms;
    return 0;
}

static void reap(edge_authz_t *a)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(a->multi, &left)))
        if (m->msg == CURLMSG_DONE)
            finish(a, m->easy_handle, m->data.result);
}

static void *worker(void *arg)
{
    edge_authz_t *a = arg;
    wsg_thread_name("authorizer");
    struct epoll_event evs[AUTHZ_EVENTS];
    int running = 0;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        authz_job_t *in = a->in_head;
        a->in_head = a->in_tail = NULL;
        int stop = a->stop;
        pthread_mutex_unlock(&a->mu);
        if (stop) {
            while (in) {
                authz_job_t *n = in->next;
                job_free(in);
                in = n;
            }
            break;
        }
        while (in) {
            authz_job_t *n = in->next;
            start_job(a, in);
            in = n;
        }
        reap(a); /* transfers refused when added */
        int wait = -1;
        if (a->timer_at >= 0) {
            int64_t d = a->timer_at - edge_now_ms();
            wait = d < 0 ? 0 : d > 1000 ? 1000 : (int)d;
        }
        int n = epoll_wait(a->epfd, evs, AUTHZ_EVENTS, wait);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == a->wakefd) {
                uint64_t v;
                ssize_t r = read(a->wakefd, &v, sizeof v); /* resets it */
                (void)r;
                continue;
            }
            int flags = ((evs[i].events & EPOLLIN) ? CURL_CSELECT_IN : 0) |
                        ((evs[i].events & EPOLLOUT) ? CURL_CSELECT_OUT : 0) |
                        ((evs[i].events & (EPOLLERR | EPOLLHUP)) ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(a->multi, evs[i].data.fd, flags, &running);
        }
        if (a->timer_at >= 0 && edge_now_ms() >= a->timer_at) {
            a->timer_at = -1; /* curl may set the next one from inside */
            curl_multi_socket_action(a->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        reap(a);
    }
    return NULL;
}

static void wake(edge_authz_t *a)
{
    uint64_t one = 1;
    ssize_t r = write(a->wakefd, &one, sizeof one);
    (void)r; /* EAGAIN: the counter is already non-zero, a wake-up is pending */
}

/* The curl thread's multi handle, epoll set and wake-up. */
static int http_init(edge_authz_t *a)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    a->timer_at = -1;
    a->multi = curl_multi_init();
    a->epfd = epoll_create1(EPOLL_CLOEXEC);
    a->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!a->multi || a->epfd < 0 || a->wakefd < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = a->wakefd};
    if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->wakefd, &ev) != 0)
        return -1;
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(a->multi, CURLMOPT_SOCKETDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(a->multi, CURLMOPT_TIMERDATA, a);
    curl_multi_setopt(a->multi, CURLMOPT_MAXCONNECTS, AUTHZ_MAX_CONNS);
    return pthread_create(&a->th, NULL, worker, a) == 0 ? 0 : -1;
}

static void *claim_main(void *arg);

static int route_kind_present(const edge_t *e, int authorizer)
{
    for (size_t i = 0; i < e->cfg->n_routes; i++) {
        const wsg_route_conf_t *r = &e->cfg->routes[i];
        if (authorizer ? r->auth.authorizer && *r->auth.authorizer
                       : r->one_connection_per_user == WSG_ONE_CONN_REJECT)
            return 1;
    }
    return 0;
}

int edge_authz_new(edge_authz_t **out, edge_t *e, char *err, size_t errlen)
{
    *out = NULL;
    int http = route_kind_present(e, 1);
    int claims = bus_user_shared(e->bus) && route_kind_present(e, 0);
    if (!http && !claims)
        return 0;
    edge_authz_t *a = calloc(1, sizeof *a);
    if (!a)
        return wsg_errf(err, errlen, WSG_ENOMEM, "authorizer: out of memory");
    a->e = e;
    a->epfd = a->wakefd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->ccv, NULL);
    if (http) {
        if (http_init(a) != 0) {
            edge_authz_free(a);
            return wsg_errf(err, errlen, WSG_EIO, "authorizer: cannot start its thread");
        }
        a->started = 1;
    }
    for (int i = 0; claims && i < CLAIM_THREADS; i++) {
        if (pthread_create(&a->cth[i], NULL, claim_main, a) != 0) {
            edge_authz_free(a);
            return wsg_errf(err, errlen, WSG_EIO, "user claims: cannot start their threads");
        }
        a->claims = i + 1;
    }
    *out = a;
    return 0;
}

int edge_authz_start(edge_authz_t *a, edge_authz_req_t *req)
{
    if (!a || !a->multi) {
        free(req->body);
        return WSG_EINVAL;
    }
    authz_job_t *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->req = *req;
    req->body = NULL;
    pthread_mutex_lock(&a->mu);
    int was_empty = a->in_head == NULL;
    if (a->in_tail)
        a->in_tail->next = j;
    else
        a->in_head = j;
    a->in_tail = j;
    pthread_mutex_unlock(&a->mu);
    if (was_empty) /* else the wake-up of the first one is still pending */
        wake(a);
    return 0;
}

void edge_authz_free(edge_authz_t *a)
{
    if (!a)
        return;
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        a->stop = 1;
        pthread_mutex_unlock(&a->mu);
        wake(a);
        pthread_join(a->th, NULL);
    }
    if (a->claims) {
        pthread_mutex_lock(&a->mu);
        a->cstop = 1;
        a->cstop_until = edge_now_ms() + CLAIM_STOP_GRACE_MS;
        pthread_cond_broadcast(&a->ccv);
        pthread_mutex_unlock(&a->mu);
        for (int i = 0; i < a->claims; i++)
            pthread_join(a->cth[i], NULL);
    }
    while (a->running) { /* requests still in flight: dropped */
        authz_job_t *j = a->running;
        a->running = j->next;
        curl_multi_remove_handle(a->multi, j->h);
        curl_easy_cleanup(j->h);
        job_free(j);
    }
    while (a->npool)
        curl_easy_cleanup(a->pool[--a->npool]);
    if (a->multi)
        curl_multi_cleanup(a->multi);
    if (a->epfd >= 0)
        close(a->epfd);
    if (a->wakefd >= 0)
        close(a->wakefd);
    pthread_cond_destroy(&a->ccv);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ---- user claims -------------------------------------------------------------- */

int edge_claim_needed(const edge_loop_t *e, const edge_conn_t *c)
{
    return c->user && c->route->one_connection_per_user == WSG_ONE_CONN_REJECT && e->edge->authz &&
           e->edge->authz->claims;
}

static void claim_push(edge_authz_t *a, claim_job_t *j)
{
    pthread_mutex_lock(&a->mu);
    if (a->ctail)
        a->ctail->next = j;
    else
        a->chead = j;
    a->ctail = j;
    pthread_cond_signal(&a->ccv);
    pthread_mutex_unlock(&a->mu);
}

static claim_job_t *claim_job_new(const char *route, const char *user, const char *conn_id)
{
    claim_job_t *j = calloc(1, sizeof *j);
    if (!j || !(j->user = strdup(user)))
        abort();
    j->route = route;
    snprintf(j->conn_id, sizeof j->conn_id, "%s", conn_id);
    return j;
}

int edge_claim_start(edge_authz_t *a, const edge_conn_t *c)
{
    if (!a || !a->claims)
        return WSG_EUNAVAILABLE;
    claim_push(a, claim_job_new(c->route->path, c->user, c->id));
    return 0;
}

void edge_claim_release(edge_authz_t *a, const char *route, const char *user, const char *conn_id,
                        uint64_t rev)
{
    if (!a || !a->claims || !rev)
        return; /* left to the next claimant, which finds the connection gone */
    claim_job_t *j = claim_job_new(route, user, conn_id);
    j->release = 1;
    j->rev = rev;
    claim_push(a, j);
}

static void claim_run(edge_authz_t *a, claim_job_t *j)
{
    edge_t *e = a->e;
    bus_user_t u = {
        .route = j->route, .user = j->user, .conn_id = j->conn_id, .edge_id = e->edge_id};
    if (j->release) {
        int rc = bus_user_release(e->bus, &u, j->rev);
        if (rc != 0)
            WSG_LOG(WSG_LOG_WARN, "user claim not released", "conn=%s route=%s code=%s", j->conn_id,
                    j->route, wsg_err_name(rc));
        return;
    }
    uint64_t rev = 0;
    int rc = bus_user_claim(e->bus, &u, &rev);
    size_t rl = strlen(j->route);
    edge_q_t *q = edge_q_new(EDGE_Q_AUTHZ, rl + 1);
    memcpy(q->u.authz.conn_id, j->conn_id, sizeof j->conn_id);
    q->u.authz.claim = 1;
    q->u.authz.status = rc;
    q->u.authz.rev = rev;
    q->u.authz.body = j->user;
    j->user = NULL;
    memcpy(q->store, j->route, rl + 1);
    edge_post_conn(e, q->u.authz.conn_id, q); /* before edge_authz_free returns */
}

/* Each claim thread takes the oldest job. Jobs of one user may overlap
 * (a release still queued when the user's next claim runs): every bus_user_*
 * step is conditional on the claim's revision, so any order is safe. Once
 * stopping, claims are dropped (their handshakes are gone) and releases are
 * still made for CLAIM_STOP_GRACE_MS. */
static void *claim_main(void *arg)
{
    edge_authz_t *a = arg;
    wsg_thread_name("user-claims");
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->chead && !a->cstop)
            pthread_cond_wait(&a->ccv, &a->mu);
        claim_job_t *j = a->chead;
        if (!j)
            break;
        a->chead = j->next;
        if (!a->chead)
            a->ctail = NULL;
        int skip = a->cstop && (!j->release || edge_now_ms() >= a->cstop_until);
        pthread_mutex_unlock(&a->mu);
        if (!skip)
            claim_run(a, j);
        free(j->user);
        free(j);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ---- the authorizer's answer (edge_authz_answer.h) ------------------------ */

static char *dup_or_die(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static int answer_channels(json_t *arr, edge_authz_answer_t *out)
{
    size_t i, n = json_array_size(arr);
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
            wsg_channel_valid(json_string_value(v), NULL, 0) != 0)
            return WSG_EPROTO; /* a name the API could never address: a bad answer */
    }
    if (n && !(out->channels = calloc(n, sizeof *out->channels)))
        abort();
    json_array_foreach(arr, i, v)
    {
        out->channels[out->n_channels++] = dup_or_die(json_string_value(v));
    }
    return 0;
}

static int answer_fields(json_t *o, edge_authz_answer_t *out)
{
    json_t *user = json_object_get(o, "user"), *ctx = json_object_get(o, "context");
    json_t *chans = json_object_get(o, "channels"), *sp = json_object_get(o, "subprotocol");
    if ((user && !json_is_string(user) && !json_is_null(user)) || (ctx && !json_is_object(ctx)) ||
        (chans && !json_is_array(chans)) || (sp && !json_is_string(sp) && !json_is_null(sp)))
        return WSG_EPROTO;
    if (json_is_string(user))
        out->user = dup_or_die(json_string_value(user));
    if (ctx && !(out->context_json = json_dumps(ctx, JSON_COMPACT)))
        abort();
    if (json_is_string(sp))
        out->subprotocol = dup_or_die(json_string_value(sp));
    json_t *exp = json_object_get(o, "expires_at");
    if (exp && !json_is_null(exp)) { /* Unix seconds, like a JWT's exp */
        double v = json_number_value(exp);
        if (!json_is_number(exp) || !(v >= 1 && v < 1e15))
            return WSG_EPROTO;
        out->expires_at = (long long)v;
    }
    return chans ? answer_channels(chans, out) : 0;
}

int edge_authz_answer_parse(const char *body, edge_authz_answer_t *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *o = body ? json_loads(body, 0, &jerr) : NULL;
    json_t *allow = json_object_get(o, "allow");
    int rc = json_is_object(o) && json_is_boolean(allow) ? 0 : WSG_EPROTO;
    if (rc == 0 && json_is_true(allow)) {
        out->allow = 1;
        rc = answer_fields(o, out);
    }
    json_decref(o);
    if (rc != 0)
        edge_authz_answer_clear(out);
    return rc;
}

void edge_authz_answer_clear(edge_authz_answer_t *a)
{
    free(a->user);
    free(a->context_json);
    for (size_t i = 0; i < a->n_channels; i++)
        free(a->channels[i]);
    free(a->channels);
    free(a->subprotocol);
    memset(a, 0, sizeof *a);
}
