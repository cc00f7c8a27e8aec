/* SPDX-License-Identifier: MIT */
/*
 * bus_inproc.c — the standalone transport of bus.h: every role in one
 * process, so there are no bytes to move. Client events go through the
 * durable SQLite queue of bus_queue.c; commands and publishes are handed
 * to the local handlers by bus.c itself (cmd_send and publish are NULL).
 * What is left here is the heartbeat hop: heartbeats are queued for one
 * service thread, so a heartbeat's handler (the registry's store write)
 * never runs on the edge's service thread.
 *
 * Threads: bus_heartbeat from any thread; the service thread calls
 * bus_core_heartbeat_in(); bus_queue.c has its own threads.
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

#define HB_QUEUE_MAX 4096

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

    pthread_mutex_t cmu; /* heartbeats, service thread */
    pthread_cond_t ccv;
    hb_t *hb_head, *hb_tail;
    size_t nhb;
    int svc_stop;
    pthread_t svc;
} inproc_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- heartbeats ------------------------------------------------------------ */

/* Queued for the service thread; WSG_EFULL if it is far behind. */
static int inproc_heartbeat(bus_t *bus, const char *edge_id, int leaving)
{
    inproc_t *b = (inproc_t *)bus;
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

/* ---- the service thread: heartbeats ----------------------------------------- */

static void *service_main(void *arg)
{
    inproc_t *b = arg;
    wsg_thread_name("bus-heartbeats");
    pthread_mutex_lock(&b->cmu);
    while (!b->svc_stop) {
        hb_t *h = b->hb_head;
        if (!h) {
            pthread_cond_wait(&b->ccv, &b->cmu);
            continue;
        }
        b->hb_head = b->hb_tail = NULL;
        b->nhb = 0;
        pthread_mutex_unlock(&b->cmu);
        for (hb_t *next; h; h = next) {
            next = h->next;
            bus_core_heartbeat_in(&b->base, h->edge_id, h->at_ms, h->leaving);
            free(h);
        }
        pthread_mutex_lock(&b->cmu);
    }
    pthread_mutex_unlock(&b->cmu);
    return NULL;
}

/* ---- lifecycle and events ---------------------------------------------------- */

static int inproc_open(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen)
{
    inproc_t *b = bus_xcalloc(sizeof *b);
    b->base.ops = &bus_inproc_ops;
    *out = NULL;
    int rc = bq_open(&b->q, &b->base, opts->queue_path, err, errlen);
    if (rc != 0) {
        free(b);
        return rc;
    }
    pthread_mutex_init(&b->cmu, NULL);
    pthread_cond_init(&b->ccv, NULL);
    if (pthread_create(&b->svc, NULL, service_main, b) != 0) {
        bq_free(b->q);
        pthread_mutex_destroy(&b->cmu);
        pthread_cond_destroy(&b->ccv);
        free(b);
        return wsg_errf(err, errlen, WSG_EBUS, "bus: cannot start its heartbeat thread");
    }
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

static void inproc_free(bus_t *bus)
{
    inproc_t *b = (inproc_t *)bus;
    bq_free(b->q);
    pthread_mutex_lock(&b->cmu);
    b->svc_stop = 1;
    pthread_cond_signal(&b->ccv);
    pthread_mutex_unlock(&b->cmu);
    pthread_join(b->svc, NULL);
    for (hb_t *h = b->hb_head, *next; h; h = next) {
        next = h->next;
        free(h);
    }
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
    bus_core_tune(bus, cmd_timeout_ms, cmd_timeout_ms);
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
    (void)u;
    *rev = 0;
    return WSG_ENOTSUP;
}

static int inproc_user_release(bus_t *bus, const bus_user_t *u, uint64_t rev)
{
    (void)bus;
    (void)u;
    (void)rev;
    return WSG_ENOTSUP;
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
    .heartbeat = inproc_heartbeat,
    .user_shared = inproc_user_shared,
    .user_claim = inproc_user_claim,
    .user_release = inproc_user_release,
};
