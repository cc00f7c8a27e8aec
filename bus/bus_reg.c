/* SPDX-License-Identifier: MIT */
/*
 * bus_reg.c — the one registry of bus handlers (command serves per edge id,
 * publish and heartbeat handlers, event groups) and the channel-interest
 * reference counts, for every transport.
 *
 * A callback runs between bus_reg_enter*() and bus_reg_leave(), which count
 * it in its entry; bus_reg_remove() unlinks the entry, so no new callback
 * starts, and waits until the count drops to zero, so none runs once it has
 * returned. Called from inside one of the entry's own callbacks it waits for
 * the others and leaves the freeing to that callback's bus_reg_leave().
 * Items queued for a consumer (bus_consumer.c) count in the entry too
 * (queued): an unregistered entry stays until the last is taken, and the
 * consumer finds it removed.
 * Event-group entries stay allocated until bus_free(): the transport keeps
 * the group's delivery thread, which may still hold a pointer to them.
 *
 * Threads: any. reg_mu and ch_mu are leaves (see bus_core.h).
 */
#include <stdlib.h>
#include <string.h>

#include "bus/bus_core.h"
#include "common/err.h"
#include "common/hash.h"

struct bus_chan {
    bus_chan_t *next;
    uint64_t hash;
    uint64_t count;
    char name[];
};

static _Thread_local bus_reg_t *running;

int bus_reg_init(bus_core_t *c)
{
    pthread_mutex_init(&c->reg_mu, NULL);
    pthread_cond_init(&c->reg_cv, NULL);
    pthread_mutex_init(&c->ch_mu, NULL);
    c->nbuckets = 64;
    c->chans = bus_xcalloc(c->nbuckets * sizeof *c->chans);
    return 0;
}

void bus_reg_free(bus_core_t *c)
{
    for (int k = 0; k < BUS_REG_KINDS; k++)
        for (bus_reg_t *r = c->regs[k], *next; r; r = next) {
            next = r->next;
            free(r);
        }
    for (size_t i = 0; i < c->nbuckets; i++)
        for (bus_chan_t *ch = c->chans[i], *next; ch; ch = next) {
            next = ch->next;
            free(ch);
        }
    free(c->chans);
    pthread_mutex_destroy(&c->reg_mu);
    pthread_cond_destroy(&c->reg_cv);
    pthread_mutex_destroy(&c->ch_mu);
}

static int keyed(int kind)
{
    return kind == BUS_REG_CMD || kind == BUS_REG_EV;
}

int bus_reg_add(bus_core_t *c, int kind, const char *key, void (*fn)(void), void *ud,
                bus_reg_t **out)
{
    return bus_reg_add_on(c, kind, key, fn, ud, NULL, NULL, out);
}

int bus_reg_add_on(bus_core_t *c, int kind, const char *key, void (*fn)(void), void *ud,
                   bus_consumer_t *consumer, bus_cmd_route_fn route, bus_reg_t **out)
{
    size_t n = strlen(key ? key : "") + 1;
    int rc = 0;
    pthread_mutex_lock(&c->reg_mu);
    for (bus_reg_t *r = c->regs[kind]; r && keyed(kind) && rc == 0; r = r->next)
        if (strcmp(r->key, key) == 0 && (kind == BUS_REG_EV || !r->removed))
            rc = WSG_EEXISTS; /* a group's transport side outlives its entry */
    if (rc == 0) {
        bus_reg_t *r = bus_xcalloc(sizeof *r + n);
        r->core = c;
        r->fn = fn;
        r->ud = ud;
        r->consumer = consumer;
        r->route = route;
        memcpy(r->key, key ? key : "", n);
        bus_reg_t **tail = &c->regs[kind]; /* registration order = call order */
        while (*tail)
            tail = &(*tail)->next;
        *tail = r;
        if (out)
            *out = r;
    }
    pthread_mutex_unlock(&c->reg_mu);
    return rc;
}

int bus_reg_remove(bus_core_t *c, int kind, const char *key, void (*fn)(void), void *ud)
{
    pthread_mutex_lock(&c->reg_mu);
    bus_reg_t **pp = &c->regs[kind];
    while (*pp && ((*pp)->removed || (keyed(kind) ? strcmp((*pp)->key, key) != 0
                                                  : (*pp)->fn != fn || (*pp)->ud != ud)))
        pp = &(*pp)->next;
    bus_reg_t *r = *pp;
    if (!r) {
        pthread_mutex_unlock(&c->reg_mu);
        return WSG_ENOTFOUND;
    }
    r->removed = 1;
    if (kind != BUS_REG_EV)
        *pp = r->next;
    int self = 0;
    for (bus_reg_t *x = running; x; x = NULL) /* the innermost callback only */
        self = x == r;
    while (r->inflight > self)
        pthread_cond_wait(&c->reg_cv, &c->reg_mu);
    int keep = self || r->queued > 0; /* the last callback or item frees it */
    if (keep && kind != BUS_REG_EV)
        r->orphan = 1;
    pthread_mutex_unlock(&c->reg_mu);
    if (!keep && kind != BUS_REG_EV)
        free(r);
    return 0;
}

void bus_reg_drop(bus_core_t *c, int kind, bus_reg_t *r)
{
    pthread_mutex_lock(&c->reg_mu);
    bus_reg_t **pp = &c->regs[kind];
    while (*pp && *pp != r)
        pp = &(*pp)->next;
    if (*pp)
        *pp = r->next;
    pthread_mutex_unlock(&c->reg_mu);
    free(r);
}

size_t bus_reg_enter(bus_core_t *c, int kind, const char *key, bus_reg_t **out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&c->reg_mu);
    for (bus_reg_t *r = c->regs[kind]; r; r = r->next) {
        if (r->removed || (key && strcmp(r->key, key) != 0))
            continue;
        if (n < cap) {
            r->inflight++;
            out[n] = r;
        }
        n++;
    }
    if (n > cap) /* the caller comes back with room for all */
        for (size_t i = 0; i < cap; i++)
            out[i]->inflight--;
    pthread_mutex_unlock(&c->reg_mu);
    return n;
}

size_t bus_reg_enter_all(bus_core_t *c, int kind, const char *key, bus_reg_t **local,
                         bus_reg_t ***out)
{
    *out = local;
    size_t n = bus_reg_enter(c, kind, key, local, BUS_REG_LOCAL);
    while (n > BUS_REG_LOCAL && *out == local) {
        *out = bus_xcalloc(n * sizeof **out);
        size_t m = bus_reg_enter(c, kind, key, *out, n);
        if (m > n) { /* grew meanwhile: try again */
            free(*out);
            *out = local;
        }
        n = m;
    }
    return n;
}

int bus_reg_enter_one(bus_reg_t *r)
{
    pthread_mutex_lock(&r->core->reg_mu);
    int ok = !r->removed;
    if (ok)
        r->inflight++;
    pthread_mutex_unlock(&r->core->reg_mu);
    return ok;
}

void bus_reg_leave(bus_reg_t *r)
{
    bus_core_t *c = r->core;
    pthread_mutex_lock(&c->reg_mu);
    int last = --r->inflight == 0 && r->removed;
    int free_it = last && r->orphan && r->queued == 0;
    if (r->removed && !free_it) /* a remover from inside a callback waits for 1, not 0 */
        pthread_cond_broadcast(&c->reg_cv);
    pthread_mutex_unlock(&c->reg_mu);
    if (free_it)
        free(r);
}

void bus_reg_queue(bus_reg_t *r, int delta)
{
    bus_core_t *c = r->core;
    pthread_mutex_lock(&c->reg_mu);
    r->queued += delta;
    int free_it = r->queued == 0 && r->inflight == 0 && r->orphan;
    pthread_mutex_unlock(&c->reg_mu);
    if (free_it)
        free(r);
}

bus_consumer_t *bus_reg_consumer(bus_reg_t *r, const bus_cmd_t *cmd)
{
    bus_consumer_t *to = cmd && r->route ? r->route(r->ud, cmd) : r->consumer;
    return to ? to : r->core->own;
}

bus_reg_t *bus_reg_running(bus_reg_t *r)
{
    bus_reg_t *prev = running;
    running = r;
    return prev;
}

int bus_reg_count(bus_core_t *c, int kind)
{
    int n = 0;
    pthread_mutex_lock(&c->reg_mu);
    for (bus_reg_t *r = c->regs[kind]; r; r = r->next)
        n += !r->removed;
    pthread_mutex_unlock(&c->reg_mu);
    return n;
}

/* ---- channel interest ------------------------------------------------------ */

static bus_chan_t **chan_slot(bus_core_t *c, const char *name, uint64_t h)
{
    bus_chan_t **p = &c->chans[h & (c->nbuckets - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->name, name) != 0))
        p = &(*p)->next;
    return p;
}

static void chan_grow(bus_core_t *c)
{
    size_t nb = c->nbuckets * 2;
    bus_chan_t **nt = bus_xcalloc(nb * sizeof *nt);
    for (size_t i = 0; i < c->nbuckets; i++)
        for (bus_chan_t *ch = c->chans[i], *next; ch; ch = next) {
            next = ch->next;
            ch->next = nt[ch->hash & (nb - 1)];
            nt[ch->hash & (nb - 1)] = ch;
        }
    free(c->chans);
    c->chans = nt;
    c->nbuckets = nb;
}

static int interest_hook(bus_core_t *c, const char *channel, int on)
{
    const bus_ops_t *ops = c->bus->ops;
    return ops->interest ? ops->interest(c->bus, channel, on) : 0;
}

int bus_interest(bus_core_t *c, const char *channel, int on)
{
    uint64_t h = wsg_hash(channel);
    int rc = 0;
    pthread_mutex_lock(&c->ch_mu);
    bus_chan_t **p = chan_slot(c, channel, h);
    if (on && !*p) {
        rc = interest_hook(c, channel, 1);
        if (rc == 0) {
            size_t len = strlen(channel) + 1;
            bus_chan_t *ch = bus_xcalloc(sizeof *ch + len);
            memcpy(ch->name, channel, len);
            ch->hash = h;
            ch->count = 1;
            *p = ch;
            if (++c->nchans > c->nbuckets)
                chan_grow(c);
        }
    } else if (on) {
        (*p)->count++;
    } else if (!*p) {
        rc = WSG_ENOTFOUND; /* more withdrawals than declarations */
    } else if (--(*p)->count == 0) {
        bus_chan_t *ch = *p;
        *p = ch->next;
        c->nchans--;
        interest_hook(c, channel, 0); /* a failed unsubscribe only costs traffic */
        free(ch);
    }
    pthread_mutex_unlock(&c->ch_mu);
    return rc;
}

int bus_interest_has(bus_core_t *c, const char *channel)
{
    uint64_t h = wsg_hash(channel);
    pthread_mutex_lock(&c->ch_mu);
    int yes = *chan_slot(c, channel, h) != NULL;
    pthread_mutex_unlock(&c->ch_mu);
    return yes;
}
