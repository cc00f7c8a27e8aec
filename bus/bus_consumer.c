/* SPDX-License-Identifier: MIT */
/*
 * bus_consumer.c — where bus callbacks run, for every transport: a
 * consumer (bus.h) owns one queue of commands, publishes and command
 * replies waiting for their callback. A producer (bus_cmd_request,
 * bus_publish, bus_cmd_reply, a NATS subscription thread, the bus timer)
 * copies the item into the queue and wakes the consumer when the queue went
 * from empty to non-empty; the consumer's own thread calls
 * bus_consumer_drain(), which runs the callbacks of everything queued when
 * it started. So no callback ever runs in the stack of the call that
 * produced it.
 *
 * The queue is a byte buffer items are appended to (a header, then the
 * strings and payload, 8-byte aligned), plus a spare: a drain swaps the two
 * under the lock and runs the items of the full one without it, so an
 * enqueue is a memcpy and no allocation; a buffer grows (doubling) only
 * when a burst does not fit, and is kept for the next ones. Commands and
 * publishes are refused with WSG_EFULL once the queue holds
 * BUS_CONSUMER_MAX bytes (bus.h says what the caller sees); replies are
 * owed to a request already taken and are always queued.
 *
 * An item holds a queued reference on its handler's entry (bus_reg.c): an
 * unregistered handler's entry stays allocated until its items are gone,
 * and its items find it removed: a command is answered WSG_EGONE, a
 * publish is dropped.
 *
 * Threads: producers any thread; bus_consumer_drain() the consumer's own
 * thread only (one at a time); the bus's own consumer has a thread of its
 * own (bus_consumer_thread_new).
 */
#include <stdlib.h>
#include <string.h>

#include "bus/bus_core.h"
#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"

#define BUS_CONSUMER_MAX ((size_t)64 << 20)
#define BUS_CONSUMER_FIRST 4096

enum { IT_CMD = 1, IT_PUB, IT_REPLY };

/* One queued item; strings follow it, at offsets from the item (0: NULL). */
typedef struct {
    uint32_t size; /* of the item with what follows, 8-aligned */
    uint32_t kind;
    bus_reg_t *reg;
    union {
        struct {
            bus_reply_t *r;
            bus_cmd_t cmd;
            uint32_t conn_id, reason, initiator, channel, data;
        } cmd;
        struct {
            bus_publish_t p;
            uint32_t channel, route, exclude, data;
        } pub;
        struct {
            bus_reply_fn cb;
            void *ud;
            int status;
        } rep;
    } u;
} item_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv, idle_cv;
    int pending, busy, stop;
    pthread_t th;
} own_thread_t;

struct bus_consumer {
    bus_core_t *core;
    bus_wake_fn wake;
    void *wake_ud;
    pthread_mutex_t mu; /* in, spare; a leaf */
    unsigned char *in, *spare;
    size_t in_len, in_cap, spare_cap;
    int full_logged; /* a refusal was logged since the last item taken */
    own_thread_t *own;
};

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

int bus_consumer_new(bus_t *bus, bus_wake_fn wake, void *ud, bus_consumer_t **out)
{
    if (!bus || !wake || !out)
        return WSG_EINVAL;
    bus_consumer_t *c = bus_xcalloc(sizeof *c);
    c->core = bus->core;
    c->wake = wake;
    c->wake_ud = ud;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

/* Room for n more bytes in c->in; under c->mu. 0 or WSG_EFULL. */
static int reserve(bus_consumer_t *c, size_t n, int must)
{
    if (c->in_len + n <= c->in_cap)
        return 0;
    if (!must && c->in_len + n > BUS_CONSUMER_MAX)
        return WSG_EFULL;
    size_t cap = c->in_cap ? c->in_cap : BUS_CONSUMER_FIRST;
    while (cap < c->in_len + n)
        cap *= 2;
    unsigned char *p = realloc(c->in, cap);
    if (!p)
        abort();
    c->in = p;
    c->in_cap = cap;
    return 0;
}

/* Copies s (n bytes and a NUL) to the item at it; returns its offset. */
static uint32_t put(unsigned char *it, size_t *pos, const void *s, size_t n)
{
    if (!s)
        return 0;
    uint32_t off = (uint32_t)*pos;
    memcpy(it + off, s, n);
    it[off + n] = '\0';
    *pos += n + 1;
    return off;
}

static uint32_t put_str(unsigned char *it, size_t *pos, const char *s)
{
    return s ? put(it, pos, s, strlen(s)) : 0;
}

static size_t slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Appends hdr and the pieces the fill function copies; wakes on empty ->
 * non-empty. */
static int push(bus_consumer_t *c, const item_t *hdr, size_t extra, int must,
                void (*fill)(unsigned char *it, size_t *pos, const void *arg), const void *arg)
{
    size_t n = align8(sizeof *hdr + extra);
    pthread_mutex_lock(&c->mu);
    int rc = reserve(c, n, must);
    int was_empty = c->in_len == 0;
    int log_full = rc != 0 && !c->full_logged;
    if (rc == 0) {
        unsigned char *it = c->in + c->in_len;
        memcpy(it, hdr, sizeof *hdr);
        ((item_t *)it)->size = (uint32_t)n;
        size_t pos = sizeof *hdr;
        if (fill)
            fill(it, &pos, arg);
        c->in_len += n;
        c->full_logged = 0;
    } else {
        c->full_logged = 1;
    }
    pthread_mutex_unlock(&c->mu);
    if (log_full)
        WSG_LOG(WSG_LOG_WARN, "bus consumer queue full", "bytes=%zu", (size_t)BUS_CONSUMER_MAX);
    if (rc == 0 && was_empty)
        c->wake(c->wake_ud);
    return rc;
}

static void fill_cmd(unsigned char *it, size_t *pos, const void *arg)
{
    const bus_cmd_t *cmd = arg;
    item_t *h = (item_t *)it;
    h->u.cmd.conn_id = put_str(it, pos, cmd->conn_id);
    h->u.cmd.reason = put_str(it, pos, cmd->reason);
    h->u.cmd.initiator = put_str(it, pos, cmd->initiator);
    h->u.cmd.channel = put_str(it, pos, cmd->channel);
    h->u.cmd.data = cmd->len ? put(it, pos, cmd->data, cmd->len) : 0;
}

/* A handler's item: it holds a queued reference on the handler's entry. */
static int push_for(bus_consumer_t *c, const item_t *h, size_t extra,
                    void (*fill)(unsigned char *it, size_t *pos, const void *arg), const void *arg)
{
    bus_reg_queue(h->reg, 1);
    int rc = push(c, h, extra, 0, fill, arg);
    if (rc != 0)
        bus_reg_queue(h->reg, -1);
    return rc;
}

int bus_consumer_push_cmd(bus_consumer_t *c, bus_reg_t *reg, const bus_cmd_t *cmd, bus_reply_t *r)
{
    item_t h = {.kind = IT_CMD, .reg = reg};
    h.u.cmd.r = r;
    h.u.cmd.cmd = *cmd;
    size_t extra = slen(cmd->conn_id) + slen(cmd->reason) + slen(cmd->initiator) +
                   slen(cmd->channel) + (cmd->len ? cmd->len + 1 : 0);
    return push_for(c, &h, extra, fill_cmd, cmd);
}

static void fill_pub(unsigned char *it, size_t *pos, const void *arg)
{
    const bus_publish_t *p = arg;
    item_t *h = (item_t *)it;
    h->u.pub.channel = put_str(it, pos, p->channel);
    h->u.pub.route = put_str(it, pos, p->route);
    h->u.pub.exclude = put_str(it, pos, p->exclude);
    h->u.pub.data = p->len ? put(it, pos, p->data, p->len) : 0;
}

int bus_consumer_push_pub(bus_consumer_t *c, bus_reg_t *reg, const bus_publish_t *p)
{
    item_t h = {.kind = IT_PUB, .reg = reg};
    h.u.pub.p = *p;
    size_t extra = slen(p->channel) + slen(p->route) + slen(p->exclude) + (p->len ? p->len + 1 : 0);
    return push_for(c, &h, extra, fill_pub, p);
}

void bus_consumer_push_reply(bus_consumer_t *c, bus_reply_fn cb, void *ud, int status)
{
    item_t h = {.kind = IT_REPLY};
    h.u.rep.cb = cb;
    h.u.rep.ud = ud;
    h.u.rep.status = status;
    push(c, &h, 0, 1, NULL, NULL);
}

static const char *at(unsigned char *it, uint32_t off)
{
    return off ? (const char *)it + off : NULL;
}

/* A payload's bytes: never NULL, also when empty, as a payload read off
 * NATS is (a handler may memcpy(dst, data, 0), which must not get NULL). */
static const unsigned char *bytes_at(unsigned char *it, uint32_t off)
{
    static const unsigned char none[1];
    return off ? it + off : none;
}

/* Runs one item's callback (run = 1) or disposes of it as if its handler
 * were gone (run = 0: the consumer is being freed). */
static void run_item(unsigned char *it, int run)
{
    item_t *h = (item_t *)it;
    bus_reg_t *reg = h->reg;
    if (h->kind == IT_REPLY) {
        if (h->u.rep.cb)
            h->u.rep.cb(h->u.rep.ud, h->u.rep.status);
        return;
    }
    int entered = run && bus_reg_enter_one(reg);
    if (h->kind == IT_CMD) {
        bus_cmd_t *cmd = &h->u.cmd.cmd;
        cmd->conn_id = at(it, h->u.cmd.conn_id);
        cmd->reason = at(it, h->u.cmd.reason);
        cmd->initiator = at(it, h->u.cmd.initiator);
        cmd->channel = at(it, h->u.cmd.channel);
        cmd->data = bytes_at(it, h->u.cmd.data);
        if (!entered)
            bus_cmd_reply(h->u.cmd.r, WSG_EGONE); /* unserved while queued */
    } else {
        bus_publish_t *p = &h->u.pub.p;
        p->channel = at(it, h->u.pub.channel);
        p->route = at(it, h->u.pub.route);
        p->exclude = at(it, h->u.pub.exclude);
        p->data = bytes_at(it, h->u.pub.data);
    }
    if (entered) {
        bus_reg_t *prev = bus_reg_running(reg);
        if (h->kind == IT_CMD)
            ((bus_cmd_fn)reg->fn)(reg->ud, &h->u.cmd.cmd, h->u.cmd.r);
        else
            ((bus_publish_fn)reg->fn)(reg->ud, &h->u.pub.p);
        bus_reg_running(prev);
        bus_reg_leave(reg);
    }
    bus_reg_queue(reg, -1);
}

/* Takes what is queued now and runs it; 1 if there was anything. */
static int drain(bus_consumer_t *c, int run)
{
    pthread_mutex_lock(&c->mu);
    if (c->in_len == 0) { /* a wake-up for the owner's other work */
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    unsigned char *buf = c->in;
    size_t len = c->in_len, cap = c->in_cap;
    c->in = c->spare;
    c->in_cap = c->spare_cap;
    c->in_len = 0;
    c->spare = NULL;
    c->spare_cap = 0;
    pthread_mutex_unlock(&c->mu);
    for (size_t off = 0; off < len; off += ((item_t *)(buf + off))->size)
        run_item(buf + off, run);
    pthread_mutex_lock(&c->mu);
    if (!c->spare) {
        c->spare = buf;
        c->spare_cap = cap;
        buf = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    free(buf);
    return len > 0;
}

void bus_consumer_drain(bus_consumer_t *c)
{
    if (c)
        drain(c, 1);
}

void bus_consumer_free(bus_consumer_t *c)
{
    if (!c)
        return;
    while (drain(c, 0)) /* commands left are answered WSG_EGONE */
        ;
    free(c->in);
    free(c->spare);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- the bus's own consumer thread ------------------------------------------ */

static void own_wake(void *ud)
{
    own_thread_t *t = ud;
    pthread_mutex_lock(&t->mu);
    t->pending = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void *own_main(void *arg)
{
    bus_consumer_t *c = arg;
    own_thread_t *t = c->own;
    wsg_thread_name("bus-deliver");
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->pending && !t->stop)
            pthread_cond_wait(&t->cv, &t->mu);
        if (!t->pending && t->stop)
            break;
        t->pending = 0;
        t->busy = 1;
        pthread_mutex_unlock(&t->mu);
        drain(c, 1);
        pthread_mutex_lock(&t->mu);
        t->busy = 0;
        if (!t->pending)
            pthread_cond_broadcast(&t->idle_cv);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

int bus_consumer_thread_new(bus_core_t *core, bus_consumer_t **out)
{
    own_thread_t *t = bus_xcalloc(sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    pthread_cond_init(&t->idle_cv, NULL);
    bus_consumer_t *c = bus_xcalloc(sizeof *c);
    c->core = core;
    c->wake = own_wake;
    c->wake_ud = t;
    c->own = t;
    pthread_mutex_init(&c->mu, NULL);
    if (pthread_create(&t->th, NULL, own_main, c) != 0) {
        c->own = NULL;
        bus_consumer_free(c);
        pthread_mutex_destroy(&t->mu);
        pthread_cond_destroy(&t->cv);
        pthread_cond_destroy(&t->idle_cv);
        free(t);
        return WSG_EBUS;
    }
    *out = c;
    return 0;
}

void bus_consumer_thread_free(bus_consumer_t *c)
{
    if (!c)
        return;
    own_thread_t *t = c->own;
    pthread_mutex_lock(&t->mu);
    t->stop = 1; /* it drains what is queued first */
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->th, NULL);
    c->own = NULL;
    bus_consumer_free(c);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    pthread_cond_destroy(&t->idle_cv);
    free(t);
}

void bus_consumer_thread_sync(bus_consumer_t *c)
{
    if (!c || !c->own)
        return;
    own_thread_t *t = c->own;
    pthread_mutex_lock(&t->mu);
    while (t->pending || t->busy)
        pthread_cond_wait(&t->idle_cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
}
