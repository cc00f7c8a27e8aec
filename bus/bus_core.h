/* SPDX-License-Identifier: MIT */
/*
 * bus_core.h — bus.c's private state, shared by the files that implement
 * the semantics of bus.h once for every transport: bus.c (entry points,
 * validation, lifecycle), bus_reg.c (the handler registry and channel
 * interest) and bus_req.c (command requests, deadlines, the any-edge rule).
 * Transports never include it; they see bus_int.h.
 *
 * Threads: every function here may be called from any thread. The locks
 * are leaves: no callback runs while one of them is held, except the
 * transport's interest hook (under ch_mu, so on/off of a channel keep
 * their order).
 */
#ifndef WSG_BUS_CORE_H
#define WSG_BUS_CORE_H

#include <pthread.h>

#include "bus/bus_int.h"

enum { BUS_REG_CMD, BUS_REG_PUB, BUS_REG_HB, BUS_REG_EV, BUS_REG_WATCH, BUS_REG_KINDS };

typedef struct bus_reg bus_reg_t;
struct bus_reg {
    bus_reg_t *next;
    bus_core_t *core;
    void (*fn)(void);
    void *ud;
    bus_run_end_fn run_end;   /* event groups */
    bus_consumer_t *consumer; /* commands, publishes: NULL = the bus's own */
    bus_cmd_route_fn route;   /* commands: picks the consumer per command */
    int inflight;             /* callbacks running, and producers queueing; under reg_mu */
    int queued;               /* items in a consumer's queue; under reg_mu */
    int removed;              /* unregistered: no new callback starts */
    int orphan;               /* unregistered while one of its callbacks ran or
                                 items were queued: the last to go frees it */
    char key[];               /* edge id (commands), group (events), else "" */
};

typedef struct bus_chan bus_chan_t;
typedef struct bus_edge_seen bus_edge_seen_t;

#define BUS_REQ_BUCKETS 4096

struct bus_core {
    bus_t *bus;
    bus_consumer_t *own; /* the bus's own consumer thread: replies, and
                            handlers registered without a consumer */

    pthread_mutex_t reg_mu;
    pthread_cond_t reg_cv; /* an unregistration waits here */
    bus_reg_t *regs[BUS_REG_KINDS];

    pthread_mutex_t ch_mu; /* channel interest */
    bus_chan_t **chans;
    size_t nbuckets, nchans;

    pthread_mutex_t req_mu; /* requests and the timer thread */
    pthread_cond_t req_cv;
    bus_req_t *ids[BUS_REQ_BUCKETS];
    bus_req_t *lists[2][2]; /* [any][head, tail], each in deadline order */
    uint64_t next_id;
    uint32_t cmd_timeout_ms, any_window_ms;
    bus_edge_seen_t *edges_seen; /* from heartbeats, under req_mu */
    int timer_stop, timer_idle, timer_running;
    pthread_t timer;
};

/* bus_reg.c */
int bus_reg_init(bus_core_t *c);
void bus_reg_free(bus_core_t *c);
int bus_reg_add(bus_core_t *c, int kind, const char *key, void (*fn)(void), void *ud,
                bus_reg_t **out);
/* Like bus_reg_add(), with where the entry's callbacks run. */
int bus_reg_add_on(bus_core_t *c, int kind, const char *key, void (*fn)(void), void *ud,
                   bus_consumer_t *consumer, bus_cmd_route_fn route, bus_reg_t **out);
/* delta +1: an item of r was queued; -1: it was taken (frees an
 * unregistered r once nothing refers to it). */
void bus_reg_queue(bus_reg_t *r, int delta);
/* The consumer r's callback for cmd (NULL: a publish) runs on. */
bus_consumer_t *bus_reg_consumer(bus_reg_t *r, const bus_cmd_t *cmd);
/* Unregisters the entry of kind with key (commands, events) or fn/ud
 * (publishes, heartbeats) and waits for its callbacks in flight (but not
 * for the caller's own, when called from one). WSG_ENOTFOUND if none. */
int bus_reg_remove(bus_core_t *c, int kind, const char *key, void (*fn)(void), void *ud);
/* Unlinks and frees r, which no transport ever got (its registration
 * failed), so no callback can be running. */
void bus_reg_drop(bus_core_t *c, int kind, bus_reg_t *r);
/* Enters up to cap entries of kind matching key (NULL: all) into out;
 * returns how many matched (more than cap: call again with a larger out). */
size_t bus_reg_enter(bus_core_t *c, int kind, const char *key, bus_reg_t **out, size_t cap);
/* Enters every entry of kind matching key: *out is local (BUS_REG_LOCAL
 * slots) when they fit, else a heap array the caller frees. */
#define BUS_REG_LOCAL 8
size_t bus_reg_enter_all(bus_core_t *c, int kind, const char *key, bus_reg_t **local,
                         bus_reg_t ***out);
/* Enters r unless it was unregistered: 1 entered, 0 not. */
int bus_reg_enter_one(bus_reg_t *r);
void bus_reg_leave(bus_reg_t *r);
/* Marks the calling thread as running r's callback (returns the previous). */
bus_reg_t *bus_reg_running(bus_reg_t *r);
int bus_reg_count(bus_core_t *c, int kind);

int bus_interest(bus_core_t *c, const char *channel, int on);
int bus_interest_has(bus_core_t *c, const char *channel);

/* bus_consumer.c: queueing an item for a consumer; r is entered by the
 * caller. 0 or WSG_EFULL (nothing queued). */
int bus_consumer_push_cmd(bus_consumer_t *c, bus_reg_t *r, const bus_cmd_t *cmd, bus_reply_t *rep);
int bus_consumer_push_pub(bus_consumer_t *c, bus_reg_t *r, const bus_publish_t *p);
/* Replies are owed to a request already taken: always queued. */
void bus_consumer_push_reply(bus_consumer_t *c, bus_reply_fn cb, void *ud, int status);
/* The bus's own consumer, with its thread; freeing it runs what is queued. */
int bus_consumer_thread_new(bus_core_t *core, bus_consumer_t **out);
void bus_consumer_thread_free(bus_consumer_t *c);
/* Returns once what was queued for c before the call has run (bus_free:
 * transport reply objects are answered while the transport is there). */
void bus_consumer_thread_sync(bus_consumer_t *c);

/* bus_req.c */
int bus_req_init(bus_core_t *c);
/* Stops the timer thread (bus_free, before the transport). */
void bus_req_stop(bus_core_t *c);
/* Answers every request still open with WSG_EUNAVAILABLE and frees them. */
void bus_req_free(bus_core_t *c);
int bus_req_cmd(bus_core_t *c, const char *edge_id, const bus_cmd_t *cmd, bus_reply_fn cb,
                void *ud);
void bus_req_local_reply(bus_reply_t *r, int status);
/* A heartbeat of edge_id arrived (leaving: it stops). */
void bus_req_edge_beat(bus_core_t *c, const char *edge_id, int leaving);
/* Edges live by their heartbeats (0: none known). */
int bus_req_edges_live(bus_core_t *c);
void bus_req_edges_free(bus_core_t *c);

#endif
