/* SPDX-License-Identifier: MIT */
/*
 * dispatch.c — the dispatcher's lifecycle and its one delivery thread
 * (docs/contract.md §3). The bus's "dispatch" group callback hands each event to the
 * thread through one locked inbox plus curl_multi_wakeup(); the thread runs
 * the curl multi loop, keeps a per-connection queue (hash table by
 * connection id) and retry timers, and acknowledges events to the bus once
 * the backend took them or they were dead-lettered. Memory stays bounded:
 * with DISP_MAX_HELD events held, the bus callback waits (events stay in the
 * bus) until some are done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/thread.h"
#include "common/url.h"
#include "dispatcher/disp_core.h"
#include "wsgate/version.h" /* generated from project(VERSION) */

int64_t disp_now_ns(void)
{
    return wsg_mono_ns();
}

int64_t disp_now_ms(void)
{
    return disp_now_ns() / 1000000;
}

uint64_t disp_rand(disp_t *d)
{
    /* xorshift64*: jitter only, not security */
    uint64_t x = d->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    d->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint32_t hash_id(const char *s)
{
    return (uint32_t)(wsg_hash(s) % DISP_BUCKETS);
}

const disp_rt_t *disp_rt_find(const disp_t *d, const char *path)
{
    for (size_t i = 0; path && i < d->n_rts; i++)
        if (strcmp(d->rts[i].conf->path, path) == 0)
            return &d->rts[i];
    return NULL;
}

static disp_conn_t *conn_get(disp_t *d, const bus_event_t *ev)
{
    uint32_t h = hash_id(ev->conn_id);
    for (disp_conn_t *c = d->buckets[h]; c; c = c->hnext)
        if (strcmp(c->id, ev->conn_id) == 0)
            return c;
    disp_conn_t *c = calloc(1, sizeof *c);
    if (!c || !(c->id = strdup(ev->conn_id))) {
        free(c);
        return NULL;
    }
    c->rt = disp_rt_find(d, ev->route);
    c->hnext = d->buckets[h];
    d->buckets[h] = c;
    return c;
}

static void conn_free(disp_conn_t *c)
{
    while (c->head) {
        disp_item_t *it = c->head;
        c->head = it->next;
        free(it); /* not done: the bus delivers it again after a restart */
    }
    free(c->dyn_backend);
    disp_headers_free(c->xh, c->n_xh);
    curl_slist_free_all(c->meta);
    curl_slist_free_all(c->req.set_meta);
    free(c->req.resp);
    free(c->id);
    free(c);
}

void disp_conn_release(disp_t *d, disp_conn_t *c)
{
    if (c->head || c->state != DISP_C_IDLE || c->meta)
        return;
    for (disp_conn_t **p = &d->buckets[hash_id(c->id)]; *p; p = &(*p)->hnext)
        if (*p == c) {
            *p = c->hnext;
            conn_free(c);
            return;
        }
}

static void enqueue(disp_t *d, const bus_event_t *ev, bus_delivery_t *dl, uint32_t attempt);

static void on_event(void *ud, const bus_event_t *ev, bus_delivery_t *dl, uint32_t attempt)
{
    enqueue(ud, ev, dl, attempt); /* d is valid until bus_event_unsubscribe */
}

static void enqueue(disp_t *d, const bus_event_t *ev, bus_delivery_t *dl, uint32_t attempt)
{
    disp_item_t *it = calloc(1, sizeof *it);
    if (!it)
        return; /* not done: redelivered after a restart */
    it->ev = ev;
    it->d = dl;
    it->bus_attempt = attempt;
    pthread_mutex_lock(&d->mu);
    while (d->held >= DISP_MAX_HELD && !d->stopping) {
        d->held_wait = true;
        pthread_cond_wait(&d->cv, &d->mu);
    }
    if (d->stopping) {
        pthread_mutex_unlock(&d->mu);
        free(it);
        return;
    }
    bool wake = d->in_head == NULL;
    if (d->in_tail)
        d->in_tail->next = it;
    else
        d->in_head = it;
    d->in_tail = it;
    d->held++;
    pthread_mutex_unlock(&d->mu);
    wsg_gauge_add(WSG_G_EVENTS_PENDING, 1);
    if (wake)
        curl_multi_wakeup(d->multi);
}

static void take_inbox(disp_t *d, disp_item_t *items)
{
    while (items) {
        disp_item_t *it = items;
        items = it->next;
        it->next = NULL;
        disp_conn_t *c = conn_get(d, it->ev);
        if (!c) { /* out of memory: leave it to a redelivery */
            pthread_mutex_lock(&d->mu);
            d->held--;
            pthread_mutex_unlock(&d->mu);
            free(it);
            continue;
        }
        if (c->tail)
            c->tail->next = it;
        else
            c->head = it;
        c->tail = it;
        c->n++;
        disp_kick(d, c);
        disp_conn_release(d, c);
    }
}

static void reap(disp_t *d)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        disp_conn_t *c = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        if (c)
            disp_on_done(d, c, m->data.result);
    }
}

/* One turn of the loop; returns false when the thread should end. */
static bool turn(disp_t *d, int64_t *stop_deadline)
{
    pthread_mutex_lock(&d->mu);
    disp_item_t *items = d->in_head;
    d->in_head = d->in_tail = NULL;
    bool stopping = d->stopping;
    pthread_mutex_unlock(&d->mu);
    int64_t now = disp_now_ms(), next = -1;
    if (stopping && !d->halt) {
        d->halt = true;
        *stop_deadline = now + d->stop_grace_ms;
    }
    take_inbox(d, items);
    disp_stream_turn(d, now, &next); /* acks end attempts, stopping or not */
    if (d->halt && ((d->inflight == 0 && !d->stream_waiting) || now >= *stop_deadline))
        return false;
    if (!d->halt)
        disp_fire_timers(d, now, &next);
    int running = 0;
    curl_multi_perform(d->multi, &running);
    reap(d);
    int timeout = 1000;
    if (d->halt)
        timeout = 50;
    else if (next >= 0)
        timeout = next - now < 0 ? 0 : next - now < 1000 ? (int)(next - now) : 1000;
    disp_sio_flush(d->sio); /* the frames this turn queued: one wake-up */
    curl_multi_poll(d->multi, NULL, 0, timeout, NULL);
    return true;
}

static void abandon_all(disp_t *d)
{
    for (size_t i = 0; i < DISP_BUCKETS; i++)
        for (disp_conn_t *c = d->buckets[i]; c; c = c->hnext)
            if (c->req.easy)
                disp_http_end(d, c);
}

static void *run(void *arg)
{
    disp_t *d = arg;
    wsg_thread_name("dispatch");
    int64_t stop_deadline = 0;
    char err[256] = "";
    int rc = store_open(&d->st, d->cfg->store, err, sizeof err);
    if (rc != 0)
        WSG_LOG(WSG_LOG_ERROR, "dispatcher cannot open the store (dead letters wait)",
                "error=%s code=%s", err, wsg_err_name(rc));
    while (turn(d, &stop_deadline))
        ;
    abandon_all(d);
    return NULL;
}

static int routes_new(disp_t *d, char *err, size_t errlen)
{
    d->n_rts = d->cfg->n_routes;
    if (d->n_rts && !(d->rts = calloc(d->n_rts, sizeof *d->rts)))
        return WSG_ENOMEM;
    for (size_t i = 0; i < d->n_rts; i++) {
        d->rts[i].conf = &d->cfg->routes[i];
        if (!(d->rts[i].proto = disp_proto_for(d->rts[i].conf->protocol)))
            return wsg_errf(err, errlen, WSG_ECONFIG, "route %s: protocol not built",
                            d->rts[i].conf->path);
        int rc = disp_rules_new(&d->rts[i].rules, d->rts[i].conf, err, errlen);
        if (rc != 0)
            return rc;
        if (!wsg_url_is_stream(d->rts[i].conf->backend))
            continue;
        if (!d->sio) { /* the first stream route: one stream I/O thread for them all */
            if ((rc = disp_sio_new(&d->sio, d->bus, d->multi)) != 0)
                return rc;
            disp_sio_auth(d->sio, &d->cfg->api.jwt);
            disp_sio_store(d->sio, d->cfg->store);
            if (!(d->acks = calloc(DISP_ACK_BUCKETS, sizeof *d->acks)))
                return WSG_ENOMEM;
        }
        if ((rc = disp_sio_add(d->sio, d->rts[i].conf, &d->rts[i].stream, err, errlen)) != 0)
            return rc;
    }
    return 0;
}

int disp_new(disp_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen)
{
    int rc;
    *out = NULL;
    disp_t *d = calloc(1, sizeof *d);
    if (!d)
        return WSG_ENOMEM;
    d->cfg = cfg;
    d->bus = bus;
    d->rng = (uint64_t)disp_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)d;
    if (!d->rng)
        d->rng = 1;
    snprintf(d->user_agent, sizeof d->user_agent, "wsgate/%s", WSGATE_VERSION_STRING);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!(d->buckets = calloc(DISP_BUCKETS, sizeof *d->buckets)) ||
        !(d->multi = curl_multi_init())) {
        rc = wsg_errf(err, errlen, WSG_ENOMEM, "dispatcher: out of memory");
        goto out;
    }
    curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS, 1024L);
    if ((rc = routes_new(d, err, errlen)) != 0)
        goto out;
    rc = bus_event_subscribe(bus, "dispatch", BUS_EV_ALL, on_event, d);
    d->subscribed = rc == 0;
    if (rc != 0) {
        wsg_errf(err, errlen, rc, "dispatcher: cannot subscribe to client events");
        goto out;
    }
    *out = d;
    d = NULL;
out:
    disp_free(d);
    return rc;
}

int disp_start(disp_t *d, char *err, size_t errlen)
{
    if (!d || d->started)
        return wsg_errf(err, errlen, WSG_EINVAL, "dispatcher already started");
    int rc = d->sio ? disp_sio_start(d->sio, err, errlen) : 0;
    if (rc != 0)
        return rc;
    if (pthread_create(&d->th, NULL, run, d) != 0)
        return wsg_errf(err, errlen, WSG_ENOMEM, "dispatcher: cannot start its thread");
    d->started = true;
    return 0;
}

void disp_stop(disp_t *d, int64_t grace_ms)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    if (!d->stopping)
        d->stop_grace_ms = grace_ms < 0                    ? 0
                           : grace_ms > DISP_STOP_GRACE_MS ? DISP_STOP_GRACE_MS
                                                           : grace_ms;
    d->stopping = true;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (d->started) {
        curl_multi_wakeup(d->multi);
        pthread_join(d->th, NULL);
        d->started = false;
    }
    disp_sio_stop(d->sio); /* what was in flight on a stream stays in the bus */
}

void disp_free(disp_t *d)
{
    if (!d)
        return;
    disp_stop(d, 0);   /* no-op when the owner stopped it already */
    if (d->subscribed) /* waits for on_event calls running; later events stay undone */
        bus_event_unsubscribe(d->bus, "dispatch");
    for (disp_item_t *it = d->in_head; it;) {
        disp_item_t *n = it->next;
        free(it);
        it = n;
    }
    for (size_t i = 0; d->buckets && i < DISP_BUCKETS; i++)
        while (d->buckets[i]) {
            disp_conn_t *c = d->buckets[i];
            d->buckets[i] = c->hnext;
            conn_free(c);
        }
    while (d->backends) {
        disp_backend_t *b = d->backends;
        d->backends = b->next;
        free(b->url);
        free(b);
    }
    for (size_t i = 0; i < d->n_rts; i++)
        disp_rules_free(d->rts[i].rules);
    free(d->rts);
    free(d->buckets);
    free(d->acks);
    disp_http_pool_free(d);
    disp_sio_free(d->sio); /* before the multi handle its notes wake */
    if (d->multi)
        curl_multi_cleanup(d->multi);
    store_free(d->st);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}
