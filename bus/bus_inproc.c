/*
 * bus_inproc.c — the standalone implementation of bus.h: every role in one
 * process. Client events go through the durable SQLite queue of
 * bus_queue.c. Commands, publishes and heartbeats need no copy and no
 * thread hop: a command runs the edge's handler inline on the caller's
 * thread (the fastest path; one caller's commands therefore reach the edge
 * in the order sent), a publish runs the publish handlers inline when its
 * channel has interest. One service thread times out unanswered commands
 * (5 s) and delivers heartbeats, so a heartbeat's handler (the registry's
 * store write) never runs on the edge's service thread.
 *
 * A command request is one heap block holding its n reply objects and a
 * reference count (n replies + 1 while it is unfinished); a reply arriving
 * after the timeout only drops its reference, so late replies are safe.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_int.h"
#include "bus/bus_queue.h"
#include "common/err.h"
#include "common/thread.h"
#include "common/hash.h"

#define HB_QUEUE_MAX 4096

typedef struct {
    char *edge_id;
    bus_cmd_fn fn;
    void *ud;
} edge_reg_t;

typedef struct {
    void (*fn)(void);
    void *ud;
} handler_t;

typedef struct chan chan_t;
struct chan {
    chan_t *next;
    uint64_t hash;
    uint64_t count;
    char name[];
};

typedef struct creq creq_t;
typedef struct {
    struct bus_reply base;
    creq_t *req;
} crep_t;

struct creq {
    creq_t *prev, *next; /* unfinished requests, oldest first */
    bus_reply_fn cb;
    void *ud;
    int64_t deadline_ms;
    int refs;      /* replies not yet given + 1 while unfinished */
    int remaining; /* replies not yet given */
    int any_edge;  /* edge_id NULL: 0 if any edge answers 0, else WSG_EGONE */
    int finished;
    int any_ok;
    crep_t reps[];
};

typedef struct hb hb_t;
struct hb {
    hb_t *next;
    int64_t at_ms;
    int leaving;
    char edge_id[];
};

typedef struct {
    struct bus base;
    bq_t *q;
    atomic_int started;

    pthread_rwlock_t rw; /* registrations below */
    edge_reg_t *edges;
    size_t nedges;
    handler_t *pubs, *hbs;
    size_t npubs, nhbs;

    pthread_mutex_t chmu; /* channel interest */
    chan_t **chans;
    size_t nbuckets, nchans;

    pthread_mutex_t cmu; /* requests, heartbeats, service thread */
    pthread_cond_t ccv;
    creq_t *req_head, *req_tail;
    hb_t *hb_head, *hb_tail;
    size_t nhb;
    int svc_stop;
    int svc_idle; /* waiting with no deadline armed */
    pthread_t svc;
    uint32_t cmd_timeout_ms;
} inproc_t;

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        abort();
    return p;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- commands ------------------------------------------------------------ */

/* Takes req off the unfinished list; under cmu. Returns 1 if it was on it. */
static int req_finish(inproc_t *b, creq_t *req)
{
    if (req->finished)
        return 0;
    req->finished = 1;
    if (req->prev)
        req->prev->next = req->next;
    else
        b->req_head = req->next;
    if (req->next)
        req->next->prev = req->prev;
    else
        b->req_tail = req->prev;
    req->refs--;
    return 1;
}

static void inproc_cmd_reply(bus_reply_t *r, int status)
{
    crep_t *rep = (crep_t *)r;
    creq_t *req = rep->req;
    inproc_t *b = (inproc_t *)r->bus;
    int fire = 0, final = 0;
    pthread_mutex_lock(&b->cmu);
    if (!req->finished) {
        if (status == 0)
            req->any_ok = 1;
        req->remaining--;
        if (req->any_ok || req->remaining == 0) {
            final = req->any_ok ? 0 : req->any_edge ? WSG_EGONE : status;
            fire = req_finish(b, req);
        }
    }
    bus_reply_fn cb = req->cb;
    void *ud = req->ud;
    int gone = --req->refs == 0;
    pthread_mutex_unlock(&b->cmu);
    if (fire && cb)
        cb(ud, final);
    if (gone)
        free(req);
}

/* Copies the handlers of edge_id (NULL: all) into *out, which is buf when
 * they fit in BUS_LOCAL_N, else heap; returns how many. */
#define BUS_LOCAL_N 8
static size_t edges_for(inproc_t *b, const char *edge_id, edge_reg_t *buf, edge_reg_t **out)
{
    pthread_rwlock_rdlock(&b->rw);
    size_t n = 0;
    *out = b->nedges <= BUS_LOCAL_N ? buf : bus_xcalloc(b->nedges * sizeof **out);
    for (size_t i = 0; i < b->nedges; i++)
        if (!edge_id || strcmp(edge_id, b->edges[i].edge_id) == 0)
            (*out)[n++] = b->edges[i];
    pthread_rwlock_unlock(&b->rw);
    return n;
}

static int inproc_cmd_request(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd,
                              bus_reply_fn cb, void *ud)
{
    inproc_t *b = (inproc_t *)bus;
    int rc = bus_check_cmd(cmd);
    if (rc != 0 || (edge_id && !*edge_id))
        return WSG_EINVAL;
    edge_reg_t local[BUS_LOCAL_N], *to = NULL;
    size_t n = edges_for(b, edge_id, local, &to);
    if (n == 0) {
        if (to != local)
            free(to);
        if (cb)
            cb(ud, WSG_EGONE);
        return 0;
    }
    creq_t *req = bus_xcalloc(sizeof *req + n * sizeof req->reps[0]);
    req->cb = cb;
    req->ud = ud;
    req->any_edge = edge_id == NULL;
    req->remaining = (int)n;
    req->refs = (int)n + 1;
    req->deadline_ms = mono_ms() + b->cmd_timeout_ms;
    for (size_t i = 0; i < n; i++) {
        req->reps[i].base.bus = bus;
        req->reps[i].req = req;
    }
    pthread_mutex_lock(&b->cmu);
    req->prev = b->req_tail;
    if (b->req_tail)
        b->req_tail->next = req;
    else
        b->req_head = req;
    if (b->svc_idle) { /* otherwise its timer is armed for an earlier deadline */
        b->svc_idle = 0;
        pthread_cond_signal(&b->ccv);
    }
    b->req_tail = req;
    pthread_mutex_unlock(&b->cmu);
    /* req stays valid while a reply object is not yet handed out */
    for (size_t i = 0; i < n; i++)
        to[i].fn(to[i].ud, cmd, &req->reps[i].base);
    if (to != local)
        free(to);
    return 0;
}

static int inproc_cmd_serve(bus_t *bus, const char *edge_id, bus_cmd_fn fn, void *ud)
{
    inproc_t *b = (inproc_t *)bus;
    if (!edge_id || !*edge_id || !fn)
        return WSG_EINVAL;
    int rc = 0;
    pthread_rwlock_wrlock(&b->rw);
    for (size_t i = 0; i < b->nedges; i++)
        if (strcmp(b->edges[i].edge_id, edge_id) == 0)
            rc = WSG_EEXISTS;
    if (rc == 0) {
        b->edges = xrealloc(b->edges, (b->nedges + 1) * sizeof *b->edges);
        b->edges[b->nedges++] = (edge_reg_t){.edge_id = bus_xstrdup(edge_id), .fn = fn, .ud = ud};
    }
    pthread_rwlock_unlock(&b->rw);
    return rc;
}

/* ---- channel interest ---------------------------------------------------- */

static chan_t **chan_slot(inproc_t *b, const char *name, uint64_t h)
{
    chan_t **p = &b->chans[h & (b->nbuckets - 1)];
    while (*p && ((*p)->hash != h || strcmp((*p)->name, name) != 0))
        p = &(*p)->next;
    return p;
}

static void chan_grow(inproc_t *b)
{
    size_t nb = b->nbuckets * 2;
    chan_t **nt = bus_xcalloc(nb * sizeof *nt);
    for (size_t i = 0; i < b->nbuckets; i++)
        for (chan_t *c = b->chans[i], *next; c; c = next) {
            next = c->next;
            c->next = nt[c->hash & (nb - 1)];
            nt[c->hash & (nb - 1)] = c;
        }
    free(b->chans);
    b->chans = nt;
    b->nbuckets = nb;
}

static int inproc_channel_interest(bus_t *bus, const char *channel, int on)
{
    inproc_t *b = (inproc_t *)bus;
    if (!channel || !*channel)
        return WSG_EINVAL;
    uint64_t h = wsg_hash(channel);
    int rc = 0;
    pthread_mutex_lock(&b->chmu);
    chan_t **p = chan_slot(b, channel, h);
    if (on && !*p) {
        size_t len = strlen(channel) + 1;
        chan_t *c = bus_xcalloc(sizeof *c + len);
        memcpy(c->name, channel, len);
        c->hash = h;
        c->count = 1;
        *p = c;
        if (++b->nchans > b->nbuckets)
            chan_grow(b);
    } else if (on) {
        (*p)->count++;
    } else if (!*p) {
        rc = WSG_ENOTFOUND; /* more withdrawals than declarations */
    } else if (--(*p)->count == 0) {
        chan_t *c = *p;
        *p = c->next;
        free(c);
        b->nchans--;
    }
    pthread_mutex_unlock(&b->chmu);
    return rc;
}

static int has_interest(inproc_t *b, const char *channel)
{
    uint64_t h = wsg_hash(channel);
    pthread_mutex_lock(&b->chmu);
    int yes = *chan_slot(b, channel, h) != NULL;
    pthread_mutex_unlock(&b->chmu);
    return yes;
}

/* ---- publishes and heartbeats ---------------------------------------------- */

static int add_handler(inproc_t *b, handler_t **arr, size_t *n, void (*fn)(void), void *ud)
{
    pthread_rwlock_wrlock(&b->rw);
    *arr = xrealloc(*arr, (*n + 1) * sizeof **arr);
    (*arr)[(*n)++] = (handler_t){.fn = fn, .ud = ud};
    pthread_rwlock_unlock(&b->rw);
    return 0;
}

/* Copies a handler list into *out (buf when it fits); returns how many. */
static size_t copy_handlers(inproc_t *b, handler_t *const *arr, const size_t *n, handler_t *buf,
                            handler_t **out)
{
    pthread_rwlock_rdlock(&b->rw);
    size_t k = *n;
    *out = k <= BUS_LOCAL_N ? buf : bus_xcalloc(k * sizeof **out);
    if (k)
        memcpy(*out, *arr, k * sizeof **out);
    pthread_rwlock_unlock(&b->rw);
    return k;
}

static int inproc_publish(bus_t *bus, const bus_publish_t *p)
{
    inproc_t *b = (inproc_t *)bus;
    if (bus_check_publish(p) != 0)
        return WSG_EINVAL;
    if (p->channel && !has_interest(b, p->channel))
        return 0;
    handler_t local[BUS_LOCAL_N], *hs;
    size_t n = copy_handlers(b, &b->pubs, &b->npubs, local, &hs);
    for (size_t i = 0; i < n; i++)
        ((bus_publish_fn)hs[i].fn)(hs[i].ud, p);
    if (hs != local)
        free(hs);
    return 0;
}

static int inproc_publish_serve(bus_t *bus, bus_publish_fn fn, void *ud)
{
    inproc_t *b = (inproc_t *)bus;
    return fn ? add_handler(b, &b->pubs, &b->npubs, (void (*)(void))fn, ud) : WSG_EINVAL;
}

static int inproc_heartbeat_serve(bus_t *bus, bus_heartbeat_fn fn, void *ud)
{
    inproc_t *b = (inproc_t *)bus;
    return fn ? add_handler(b, &b->hbs, &b->nhbs, (void (*)(void))fn, ud) : WSG_EINVAL;
}

/* Queued for the service thread; WSG_EFULL if it is far behind. */
static int inproc_heartbeat(bus_t *bus, const char *edge_id, int leaving)
{
    inproc_t *b = (inproc_t *)bus;
    if (!edge_id || !*edge_id)
        return WSG_EINVAL;
    size_t len = strlen(edge_id) + 1;
    hb_t *h = bus_xcalloc(sizeof *h + len);
    memcpy(h->edge_id, edge_id, len);
    h->at_ms = wall_ms();
    h->leaving = leaving ? 1 : 0;
    int rc = 0;
    pthread_mutex_lock(&b->cmu);
    if (b->nhb >= HB_QUEUE_MAX || b->svc_stop) {
        rc = b->svc_stop ? WSG_EUNAVAILABLE : WSG_EFULL;
    } else {
        if (b->hb_tail)
            b->hb_tail->next = h;
        else
            b->hb_head = h;
        b->hb_tail = h;
        b->nhb++;
        pthread_cond_signal(&b->ccv);
    }
    pthread_mutex_unlock(&b->cmu);
    if (rc != 0)
        free(h);
    return rc;
}

/* ---- the service thread: command timeouts and heartbeats ------------------- */

static void deliver_heartbeats(inproc_t *b, hb_t *h)
{
    handler_t local[BUS_LOCAL_N], *hs;
    size_t n = copy_handlers(b, &b->hbs, &b->nhbs, local, &hs);
    for (hb_t *next; h; h = next) {
        next = h->next;
        for (size_t i = 0; i < n; i++)
            ((bus_heartbeat_fn)hs[i].fn)(hs[i].ud, h->edge_id, h->at_ms, h->leaving);
        free(h);
    }
    if (hs != local)
        free(hs);
}

/* Times out the oldest request if due; under cmu, which it drops to call
 * back. Returns the ms until the next deadline, or -1 when none is due. */
static int64_t expire_one(inproc_t *b)
{
    creq_t *req = b->req_head;
    if (!req)
        return -1;
    int64_t left = req->deadline_ms - mono_ms();
    if (left > 0)
        return left;
    req_finish(b, req);
    bus_reply_fn cb = req->cb;
    void *ud = req->ud;
    int gone = req->refs == 0;
    pthread_mutex_unlock(&b->cmu);
    if (cb)
        cb(ud, WSG_ETIMEOUT);
    if (gone)
        free(req);
    pthread_mutex_lock(&b->cmu);
    return 0;
}

static void *service_main(void *arg)
{
    inproc_t *b = arg;
    wsg_thread_name("bus-commands");
    pthread_mutex_lock(&b->cmu);
    while (!b->svc_stop) {
        if (b->hb_head) {
            hb_t *h = b->hb_head;
            b->hb_head = b->hb_tail = NULL;
            b->nhb = 0;
            pthread_mutex_unlock(&b->cmu);
            deliver_heartbeats(b, h);
            pthread_mutex_lock(&b->cmu);
            continue;
        }
        int64_t left = expire_one(b);
        if (left == 0)
            continue;
        if (left < 0) {
            b->svc_idle = 1;
            pthread_cond_wait(&b->ccv, &b->cmu);
            b->svc_idle = 0;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&b->ccv, &b->cmu, &ts);
    }
    pthread_mutex_unlock(&b->cmu);
    return NULL;
}

/* ---- lifecycle and events ---------------------------------------------------- */

static int inproc_open(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen)
{
    inproc_t *b = bus_xcalloc(sizeof *b);
    b->base.ops = &bus_inproc_ops;
    b->cmd_timeout_ms = 5000;
    int rc = bq_open(&b->q, &b->base, opts->queue_path, err, errlen);
    if (rc != 0) {
        free(b);
        *out = NULL;
        return rc;
    }
    pthread_rwlock_init(&b->rw, NULL);
    pthread_mutex_init(&b->chmu, NULL);
    pthread_mutex_init(&b->cmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->ccv, &ca);
    pthread_condattr_destroy(&ca);
    b->nbuckets = 64;
    b->chans = bus_xcalloc(b->nbuckets * sizeof *b->chans);
    pthread_create(&b->svc, NULL, service_main, b);
    *out = &b->base;
    return 0;
}

static int inproc_start(bus_t *bus)
{
    inproc_t *b = (inproc_t *)bus;
    if (b->started)
        return WSG_EINVAL;
    int rc = bq_start(b->q);
    if (rc == 0)
        b->started = 1;
    return rc;
}

static int inproc_healthy(bus_t *bus)
{
    inproc_t *b = (inproc_t *)bus;
    return b->started && bq_healthy(b->q);
}

static void stop_service(inproc_t *b)
{
    pthread_mutex_lock(&b->cmu);
    b->svc_stop = 1;
    pthread_cond_signal(&b->ccv);
    pthread_mutex_unlock(&b->cmu);
    pthread_join(b->svc, NULL);
    while (b->req_head) { /* unanswered at shutdown; replying later is invalid */
        creq_t *req = b->req_head;
        req_finish(b, req);
        if (req->cb)
            req->cb(req->ud, WSG_EUNAVAILABLE);
        free(req);
    }
    for (hb_t *h = b->hb_head, *next; h; h = next) {
        next = h->next;
        free(h);
    }
}

static void inproc_free(bus_t *bus)
{
    inproc_t *b = (inproc_t *)bus;
    bq_free(b->q);
    stop_service(b);
    for (size_t i = 0; i < b->nedges; i++)
        free(b->edges[i].edge_id);
    free(b->edges);
    free(b->pubs);
    free(b->hbs);
    for (size_t i = 0; i < b->nbuckets; i++)
        for (chan_t *c = b->chans[i], *next; c; c = next) {
            next = c->next;
            free(c);
        }
    free(b->chans);
    pthread_rwlock_destroy(&b->rw);
    pthread_mutex_destroy(&b->chmu);
    pthread_mutex_destroy(&b->cmu);
    pthread_cond_destroy(&b->ccv);
    free(b);
}

static int inproc_event_publish(bus_t *bus, const bus_event_t *ev, bus_event_ack_fn cb, void *ud)
{
    return bq_publish(((inproc_t *)bus)->q, ev, cb, ud);
}

static void inproc_event_capacity(bus_t *bus, size_t *events, size_t *bytes)
{
    bq_capacity(((inproc_t *)bus)->q, events, bytes);
}

static int inproc_event_on_run_end(bus_t *bus, const char *group, bus_run_end_fn fn)
{
    return bq_on_run_end(((inproc_t *)bus)->q, group, fn);
}

static int inproc_event_subscribe(bus_t *bus, const char *group, uint32_t type_mask,
                                  bus_event_fn fn, void *ud)
{
    return bq_subscribe(((inproc_t *)bus)->q, group, type_mask, fn, ud);
}

static void inproc_event_done(bus_t *bus, bus_delivery_t *d)
{
    bq_done(((inproc_t *)bus)->q, d);
}

static int inproc_event_last_seq(bus_t *bus, const char *conn_id, uint64_t *seq)
{
    return bq_last_seq(((inproc_t *)bus)->q, conn_id, seq);
}

void bus_inproc_tune(bus_t *bus, uint32_t queue_max, uint32_t window, uint32_t cmd_timeout_ms)
{
    if (!bus || bus->ops != &bus_inproc_ops)
        return;
    inproc_t *b = (inproc_t *)bus;
    bq_tune(b->q, queue_max, window);
    if (cmd_timeout_ms)
        b->cmd_timeout_ms = cmd_timeout_ms;
}

/* One process holds every connection: the edge's own index is the whole
 * truth, so claims are not kept here. */
static int inproc_user_shared(bus_t *bus)
{
    (void)bus;
    return 0;
}

static int inproc_user_claim(bus_t *bus, const bus_user_t *u, uint64_t *rev)
{
    (void)bus;
    *rev = 0;
    return bus_check_user(u) != 0 ? WSG_EINVAL : WSG_ENOTSUP;
}

static int inproc_user_release(bus_t *bus, const bus_user_t *u, uint64_t rev)
{
    (void)bus;
    (void)rev;
    return bus_check_user(u) != 0 ? WSG_EINVAL : WSG_ENOTSUP;
}

const bus_ops_t bus_inproc_ops = {
    .name = "inproc",
    .open = inproc_open,
    .start = inproc_start,
    .free = inproc_free,
    .healthy = inproc_healthy,
    .event_publish = inproc_event_publish,
    .event_capacity = inproc_event_capacity,
    .event_subscribe = inproc_event_subscribe,
    .event_on_run_end = inproc_event_on_run_end,
    .event_done = inproc_event_done,
    .event_last_seq = inproc_event_last_seq,
    .cmd_request = inproc_cmd_request,
    .cmd_serve = inproc_cmd_serve,
    .cmd_reply = inproc_cmd_reply,
    .publish = inproc_publish,
    .publish_serve = inproc_publish_serve,
    .channel_interest = inproc_channel_interest,
    .heartbeat = inproc_heartbeat,
    .heartbeat_serve = inproc_heartbeat_serve,
    .user_shared = inproc_user_shared,
    .user_claim = inproc_user_claim,
    .user_release = inproc_user_release,
};
