/* SPDX-License-Identifier: MIT */
/*
 * disp_core.h — the dispatcher's private state, shared by dispatch.c (thread,
 * loop, queues, connection table), disp_deliver.c (per-connection delivery
 * state machine, dead letters, actions) and disp_http.c (libcurl requests).
 *
 * Threads: everything here belongs to the delivery thread, except the
 * fields under `mu` (inbox, held, stopping) which the bus
 * callbacks also touch.
 */
#ifndef WSG_DISP_CORE_H
#define WSG_DISP_CORE_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/bus.h"
#include "common/config.h"
#include "dispatcher/disp_internal.h"
#include "dispatcher/disp_proto.h"
#include "dispatcher/disp_stream.h"
#include "dispatcher/dispatch.h"
#include "store/store.h"

/* Events held by the dispatcher at most; beyond it the bus callback waits. */
#define DISP_MAX_HELD 8192
/* A bus callback waiting at DISP_MAX_HELD is woken once this many more are
 * done: one wake-up per slack at saturation instead of one per event. */
#define DISP_HELD_SLACK 256
#define DISP_BUCKETS 16384
/* Buckets of the index of events in flight on backend streams (at most
 * DISP_MAX_HELD of them), by event id; a power of two. */
#define DISP_ACK_BUCKETS 8192
/* Routing-service calls never take longer than this. */
#define DISP_ROUTE_TIMEOUT_MS 2000
/* disp_stop() lets requests in flight finish for at most this long (less
 * when the process's shutdown_grace has less left). */
#define DISP_STOP_GRACE_MS 5000

typedef struct disp_item {
    struct disp_item *next;
    const bus_event_t *ev;
    bus_delivery_t *d;
    uint32_t bus_attempt;
    /* in flight on a backend stream: findable by event id in disp_t.acks */
    struct disp_item *anext;
    struct disp_conn *ac; /* the connection whose frame holds it */
    bool acked;
} disp_item_t;

typedef struct disp_conn disp_conn_t;

typedef struct disp_backend {
    struct disp_backend *next;
    char *url;
    uint32_t limit, inflight;
    disp_conn_t *wait_head, *wait_tail;
} disp_backend_t;

typedef struct {
    CURL *easy;
    struct curl_slist *hdrs;
    char *body_owned; /* batch body */
    char *resp;
    size_t resp_len, resp_cap, resp_max;
    bool truncated;
    bool routing; /* a routing-service call, not a webhook */
    char retry_after[64];
    struct curl_slist *set_meta; /* the answer's Set-Meta-* as "Meta-*: v" lines */
    size_t set_meta_bytes;
    int64_t t0_ns;
} disp_req_t;

typedef struct {
    const wsg_route_conf_t *conf;
    disp_rules_t *rules;
    const disp_proto_t *proto; /* what the route's backend speaks */
    disp_stream_t *stream;     /* the backend is a ws(s):// stream; NULL: webhooks */
} disp_rt_t;

typedef enum {
    DISP_C_IDLE = 0, /* head not started */
    DISP_C_ROUTING,  /* routing-service call in flight */
    DISP_C_WAIT,     /* waiting for a free slot at its backend */
    DISP_C_INFLIGHT, /* webhook in flight, or event sent on a stream and not acked */
    DISP_C_RETRY,    /* waiting until retry_at_ms */
} disp_cstate_t;

struct disp_conn {
    disp_conn_t *hnext; /* hash chain */
    disp_conn_t *lnext; /* backend wait list or retry list */
    char *id;
    const disp_rt_t *rt;
    disp_item_t *head, *tail;
    size_t n;
    disp_cstate_t state;
    uint32_t attempts;   /* tries of the head (batch) so far, bus redeliveries included */
    int64_t first_ms;    /* when the head was first tried */
    int64_t retry_at_ms; /* RETRY: when; INFLIGHT on a stream: the ack's deadline */
    long last_status;
    char last_err[192];
    char *dyn_backend;   /* named by the routing service (owned) */
    const char *backend; /* for the head: rule, default or dyn_backend */
    disp_header_t *xh;   /* routing-service headers */
    size_t n_xh;
    disp_backend_t *be;
    size_t batch_n; /* events in the request in flight (fixed across retries) */
    size_t acked_n; /* of them, acknowledged on a backend stream */
    /* "Meta-*: v" lines the backend set (protocols with keeps_meta); kept
     * until the connection's disconnect is done, so c outlives empty queues */
    struct curl_slist *meta;
    disp_req_t req;
};

struct disp {
    const wsg_config_t *cfg;
    bus_t *bus;
    store_t *st;
    CURLM *multi;
    pthread_t th;
    bool started;
    bool halt; /* delivery thread: stopping, start nothing new */
    char user_agent[48];

    bool subscribed; /* to the bus's "dispatch" group (disp_free unsubscribes) */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    disp_item_t *in_head, *in_tail;
    size_t held;
    bool held_wait; /* a bus callback waits for held to drop */
    bool stopping;
    int64_t stop_grace_ms; /* set with stopping: how long requests in flight may finish */

    disp_rt_t *rts;
    size_t n_rts;
    disp_conn_t **buckets;
    disp_conn_t *retry_list;
    disp_backend_t *backends;
    size_t inflight;
    disp_sio_t *sio;             /* backend streams; NULL when no route has one */
    disp_conn_t *stream_waiting; /* INFLIGHT on a stream, awaiting an ack (via lnext) */
    disp_item_t **acks;          /* DISP_ACK_BUCKETS: their events by id (with sio) */
    CURL **pool;
    size_t n_pool, cap_pool;
    uint64_t rng;
};

int64_t disp_now_ms(void);
int64_t disp_now_ns(void);
uint64_t disp_rand(disp_t *d);

/* dispatch.c */
void disp_conn_release(disp_t *d, disp_conn_t *c); /* frees c if it holds nothing */
const disp_rt_t *disp_rt_find(const disp_t *d, const char *path);

/* disp_deliver.c */
void disp_kick(disp_t *d, disp_conn_t *c);
void disp_on_done(disp_t *d, disp_conn_t *c, CURLcode res);
void disp_fire_timers(disp_t *d, int64_t now, int64_t *next_ms);
void disp_backend_pump(disp_t *d, disp_backend_t *be);
/* Sends action a for connection conn_id to edge (NULL: whichever holds it),
 * in order; cb(ud, status) gets the edge's reply (bus_cmd_request; NULL:
 * fire-and-forget). Any thread. Returns 0 (cb will be called) or the bus's
 * error (logged; cb not called). */
int disp_action_send(bus_t *bus, const char *conn_id, const char *edge, const disp_action_t *a,
                     bus_reply_fn cb, void *ud);
/* Delivery thread: applies the streams' notes (acks, streams down) and
 * fails events whose ack is overdue; *next_ms: the earliest deadline left. */
void disp_stream_turn(disp_t *d, int64_t now, int64_t *next_ms);

/* disp_http.c: starts c's request; on failure c->last_err says why. */
int disp_http_start(disp_t *d, disp_conn_t *c, const char *url, const char *id,
                    const char *event_name, const char *body, size_t len, uint64_t timeout_ms);
void disp_http_end(disp_t *d, disp_conn_t *c);
void disp_http_pool_free(disp_t *d);

#endif
