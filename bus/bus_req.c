/* SPDX-License-Identifier: MIT */
/*
 * bus_req.c — edge commands for every transport: the table of requests
 * waiting for replies, their deadlines, the any-edge rule of bus.h, and the
 * queueing of commands for local handlers when the transport is in-process.
 *
 * A request is one heap block: its id (the transport's reply address), the
 * caller's callback, and, for in-process delivery, the reply objects of
 * the edges it went to. refs counts the reply objects not yet used plus one
 * while the request is unsettled, so a reply arriving after the timeout
 * only drops its reference. Unsettled requests sit in a hash by id and on
 * one of two lists (one edge: cmd_timeout_ms; any edge: any_window_ms,
 * by default the same), each in deadline order because each has one
 * timeout; a timer thread settles the heads as they fall due.
 *
 * The any-edge rule needs the number of edges that can answer: in-process
 * the registered ones; on NATS the edges whose heartbeats this bus has
 * received, live while their last beat is younger than three of their own
 * intervals (bus_req_edges_*).
 *
 * Threads: any. req_mu is a leaf. Every reply callback is queued for the
 * bus's own consumer (bus_consumer.c), never called here.
 */
#include <stdlib.h>
#include <string.h>

#include "bus/bus_core.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/thread.h"

struct bus_req {
    bus_req_t *prev, *next; /* its deadline list */
    bus_req_t *hnext;       /* its id bucket */
    uint64_t id;
    bus_reply_fn cb;
    void *ud;
    int64_t deadline_ms;
    int any;      /* edge_id NULL */
    int expected; /* replies that can come; 0 unknown (NATS any-edge) */
    int answered;
    int refs;
    int settled;
    bus_reply_t reps[];
};

static void unlink_req(bus_core_t *c, bus_req_t *q)
{
    bus_req_t **l = c->lists[q->any];
    if (q->prev)
        q->prev->next = q->next;
    else
        l[0] = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        l[1] = q->prev;
    bus_req_t **pp = &c->ids[q->id % BUS_REQ_BUCKETS];
    while (*pp != q)
        pp = &(*pp)->hnext;
    *pp = q->hnext;
}

/* Settles q: takes it out of the table; under req_mu. 1 if it was open. */
static int settle(bus_core_t *c, bus_req_t *q)
{
    if (q->settled)
        return 0;
    q->settled = 1;
    unlink_req(c, q);
    q->refs--;
    return 1;
}

/* The verdict after one more reply, per bus.h: 1 and *out when settled. */
static int verdict(bus_req_t *q, int status, int final, int *out)
{
    q->answered++;
    if (!q->any) {
        *out = status;
        return 1;
    }
    if (status == 0) {
        *out = 0;
        return 1;
    }
    *out = WSG_EGONE;
    return final || (q->expected && q->answered >= q->expected);
}

void bus_core_reply_in(bus_t *bus, uint64_t req_id, int status, int final)
{
    bus_core_t *c = bus->core;
    pthread_mutex_lock(&c->req_mu);
    bus_req_t *q = c->ids[req_id % BUS_REQ_BUCKETS];
    while (q && q->id != req_id)
        q = q->hnext;
    int out = 0, fire = 0;
    if (q && verdict(q, status, final, &out))
        fire = settle(c, q);
    pthread_mutex_unlock(&c->req_mu);
    if (fire) { /* a transport request has no reply objects: refs was 1 */
        bus_consumer_push_reply(c->own, q->cb, q->ud, out);
        free(q);
    }
}

void bus_req_local_reply(bus_reply_t *r, int status)
{
    bus_req_t *q = r->req;
    bus_core_t *c = r->bus->core;
    int out = 0, fire = 0;
    pthread_mutex_lock(&c->req_mu);
    if (!q->settled && verdict(q, status, 0, &out))
        fire = settle(c, q);
    int gone = --q->refs == 0;
    bus_reply_fn cb = q->cb; /* once unlocked, another reply may free q */
    void *ud = q->ud;
    pthread_mutex_unlock(&c->req_mu);
    if (fire && cb)
        bus_consumer_push_reply(c->own, cb, ud, out);
    if (gone)
        free(q);
}

static bus_req_t *req_new(bus_core_t *c, size_t nreps, int any, bus_reply_fn cb, void *ud)
{
    bus_req_t *q = bus_xcalloc(sizeof *q + nreps * sizeof q->reps[0]);
    q->cb = cb;
    q->ud = ud;
    q->any = any;
    q->refs = (int)nreps + 1;
    for (size_t i = 0; i < nreps; i++) {
        q->reps[i].bus = c->bus;
        q->reps[i].req = q;
    }
    return q;
}

/* Puts q in the table and on its list; a fire-and-forget request (no cb)
 * is settled from the start. */
static void req_open(bus_core_t *c, bus_req_t *q)
{
    pthread_mutex_lock(&c->req_mu);
    q->id = ++c->next_id;
    if (!q->cb) {
        q->settled = 1;
        q->refs--;
        pthread_mutex_unlock(&c->req_mu);
        return;
    }
    q->deadline_ms = wsg_mono_ms() + (q->any ? c->any_window_ms : c->cmd_timeout_ms);
    bus_req_t **l = c->lists[q->any];
    q->prev = l[1];
    if (l[1])
        l[1]->next = q;
    else
        l[0] = q;
    l[1] = q;
    q->hnext = c->ids[q->id % BUS_REQ_BUCKETS];
    c->ids[q->id % BUS_REQ_BUCKETS] = q;
    if (c->timer_idle) { /* otherwise its wait ends at an earlier deadline */
        c->timer_idle = 0;
        pthread_cond_signal(&c->req_cv);
    }
    pthread_mutex_unlock(&c->req_mu);
}

/* In-process: queues cmd for the handlers of edge_id (NULL: all). */
static int local_cmd(bus_core_t *c, const char *edge_id, const bus_cmd_t *cmd, bus_reply_fn cb,
                     void *ud)
{
    bus_reg_t *local[BUS_REG_LOCAL], **to;
    size_t n = bus_reg_enter_all(c, BUS_REG_CMD, edge_id, local, &to);
    if (n == 0) {
        if (cb)
            bus_consumer_push_reply(c->own, cb, ud, WSG_EGONE);
        return 0;
    }
    bus_req_t *q = req_new(c, n, edge_id == NULL, cb, ud);
    q->expected = (int)n;
    req_open(c, q); /* q stays valid while one of its reply objects is unused */
    for (size_t i = 0; i < n; i++) {
        if (bus_consumer_push_cmd(bus_reg_consumer(to[i], cmd), to[i], cmd, &q->reps[i]) != 0)
            bus_req_local_reply(&q->reps[i], WSG_EFULL);
        bus_reg_leave(to[i]);
    }
    if (to != local)
        free(to);
    return 0;
}

int bus_req_cmd(bus_core_t *c, const char *edge_id, const bus_cmd_t *cmd, bus_reply_fn cb, void *ud)
{
    bus_t *bus = c->bus;
    if (!bus->ops->cmd_send)
        return local_cmd(c, edge_id, cmd, cb, ud);
    if (!cb)
        return bus->ops->cmd_send(bus, edge_id, cmd, 0);
    bus_req_t *q = req_new(c, 0, edge_id == NULL, cb, ud);
    q->expected = edge_id ? 1 : bus_req_edges_live(c);
    req_open(c, q);
    uint64_t id = q->id;
    int rc = bus->ops->cmd_send(bus, edge_id, cmd, id);
    if (rc == 0)
        return 0;
    pthread_mutex_lock(&c->req_mu);
    bus_req_t *p = c->ids[id % BUS_REQ_BUCKETS];
    while (p && p->id != id)
        p = p->hnext;
    if (p)
        settle(c, p);
    pthread_mutex_unlock(&c->req_mu);
    if (!p) /* settled by the timer meanwhile: cb was called */
        return 0;
    free(p);
    return rc;
}

/* ---- the timer thread ------------------------------------------------------- */

/* Settles the earliest request if due; under req_mu, dropped to call back.
 * Returns ms until the next deadline, 0 when it settled one, -1 if none. */
static int64_t expire_one(bus_core_t *c)
{
    bus_req_t *a = c->lists[0][0], *b = c->lists[1][0];
    bus_req_t *q = !a ? b : !b ? a : a->deadline_ms <= b->deadline_ms ? a : b;
    if (!q)
        return -1;
    int64_t left = q->deadline_ms - wsg_mono_ms();
    if (left > 0)
        return left;
    settle(c, q);
    int gone = q->refs == 0;
    bus_reply_fn cb = q->cb; /* q may be freed by a late reply once unlocked */
    void *ud = q->ud;
    int status = q->any ? WSG_EGONE : WSG_ETIMEOUT;
    pthread_mutex_unlock(&c->req_mu);
    if (cb)
        bus_consumer_push_reply(c->own, cb, ud, status);
    if (gone)
        free(q);
    pthread_mutex_lock(&c->req_mu);
    return 0;
}

static void *timer_main(void *arg)
{
    bus_core_t *c = arg;
    wsg_thread_name("bus-timer");
    pthread_mutex_lock(&c->req_mu);
    while (!c->timer_stop) {
        int64_t left = expire_one(c);
        if (left == 0)
            continue;
        if (left < 0) {
            c->timer_idle = 1;
            pthread_cond_wait(&c->req_cv, &c->req_mu);
            c->timer_idle = 0;
            continue;
        }
        struct timespec ts = wsg_deadline_in((uint64_t)left);
        pthread_cond_timedwait(&c->req_cv, &c->req_mu, &ts);
    }
    pthread_mutex_unlock(&c->req_mu);
    return NULL;
}

int bus_req_init(bus_core_t *c)
{
    pthread_mutex_init(&c->req_mu, NULL);
    pthread_cond_init(&c->req_cv, NULL);
    c->cmd_timeout_ms = 5000;
    c->any_window_ms = 5000;
    if (pthread_create(&c->timer, NULL, timer_main, c) != 0)
        return WSG_EBUS;
    c->timer_running = 1;
    return 0;
}

void bus_req_stop(bus_core_t *c)
{
    if (!c->timer_running)
        return;
    pthread_mutex_lock(&c->req_mu);
    c->timer_stop = 1;
    pthread_cond_signal(&c->req_cv);
    pthread_mutex_unlock(&c->req_mu);
    pthread_join(c->timer, NULL);
    c->timer_running = 0;
}

void bus_req_free(bus_core_t *c)
{
    for (int any = 0; any < 2; any++)
        while (c->lists[any][0]) { /* replying after bus_free() is invalid */
            bus_req_t *q = c->lists[any][0];
            settle(c, q);
            if (q->cb)
                bus_consumer_push_reply(c->own, q->cb, q->ud, WSG_EUNAVAILABLE);
            free(q);
        }
    bus_req_edges_free(c);
    pthread_mutex_destroy(&c->req_mu);
    pthread_cond_destroy(&c->req_cv);
}

void bus_core_tune(bus_t *bus, uint32_t cmd_timeout_ms, uint32_t any_window_ms)
{
    bus_core_t *c = bus->core;
    pthread_mutex_lock(&c->req_mu);
    if (cmd_timeout_ms)
        c->cmd_timeout_ms = cmd_timeout_ms;
    if (any_window_ms)
        c->any_window_ms = any_window_ms;
    pthread_mutex_unlock(&c->req_mu);
}

/* ---- edges known from heartbeats (NATS any-edge counts) ---------------------- */

struct bus_edge_seen {
    bus_edge_seen_t *next;
    int64_t last_ms, every_ms; /* receipt time, interval between the last two */
    int leaving;
    char id[];
};

#define BUS_EDGE_FIRST_EVERY_MS 5000 /* until a second beat shows the interval */

void bus_req_edge_beat(bus_core_t *c, const char *edge_id, int leaving)
{
    int64_t now = wsg_mono_ms();
    pthread_mutex_lock(&c->req_mu);
    bus_edge_seen_t **pp = &c->edges_seen;
    while (*pp && strcmp((*pp)->id, edge_id) != 0)
        pp = &(*pp)->next;
    bus_edge_seen_t *e = *pp;
    if (!e) {
        size_t n = strlen(edge_id) + 1;
        e = bus_xcalloc(sizeof *e + n);
        memcpy(e->id, edge_id, n);
        e->every_ms = BUS_EDGE_FIRST_EVERY_MS;
        *pp = e;
    } else if (now > e->last_ms) {
        e->every_ms = now - e->last_ms;
    }
    e->last_ms = now;
    e->leaving = leaving;
    pthread_mutex_unlock(&c->req_mu);
}

int bus_req_edges_live(bus_core_t *c)
{
    int64_t now = wsg_mono_ms();
    int n = 0;
    pthread_mutex_lock(&c->req_mu);
    for (bus_edge_seen_t *e = c->edges_seen; e; e = e->next)
        n += !e->leaving && now - e->last_ms < 3 * e->every_ms;
    pthread_mutex_unlock(&c->req_mu);
    return n;
}

void bus_req_edges_free(bus_core_t *c)
{
    for (bus_edge_seen_t *e = c->edges_seen, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    c->edges_seen = NULL;
}
