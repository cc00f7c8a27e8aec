/* SPDX-License-Identifier: MIT */
/*
 * bus_nats.h — internals of the cluster bus (bus_nats*.c) and its tuning
 * knob for tests. Nothing outside bus/ and tests includes this file.
 *
 * Files: bus_nats.c (connection, lifecycle, service thread, channels,
 * broadcasts, heartbeats, the ops table), bus_nats_ev.c (client events on
 * JetStream: stream, async publish + PubAck, partitioned durable pull
 * consumers with KeyValue leases, last_seq), bus_nats_cmd.c (edge commands
 * over core request/reply with one reply inbox and a pending table).
 *
 * Threads: the public entry points are callable from any thread. NATS
 * library threads run subscription callbacks (commands, publishes,
 * heartbeats, replies: each handed to bus.c's bus_core_*_in) and PubAck
 * callbacks; one bus service thread renews leases and keeps undone
 * deliveries in progress (bus.c's timer times out commands); one
 * delivery thread per consumer group fetches and calls its bus_event_fn.
 * Ownership: the bus owns everything it allocates; callers' pointers are
 * borrowed for the call (bus.h).
 */
#ifndef WSG_BUS_NATS_H
#define WSG_BUS_NATS_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>

#include "bus/bus_int.h"

/* Tuning of one NATS bus; 0 / NULL keeps the default. Call bus_nats_tune()
 * right after bus_open(): before bus_start() and before anything subscribes
 * (serve, interest), since the prefix names every subject. */
typedef struct {
    const char *prefix;           /* subject prefix and name stem, [A-Za-z0-9_-]+;
                                     default "wsgate" (stream WSGATE_EVENTS) */
    uint32_t cmd_timeout_ms;      /* 5000: no reply -> WSG_ETIMEOUT (bus.c's table) */
    uint32_t any_window_ms;       /* cmd_timeout_ms: NULL edge, the longest wait for
                                     a 0 when not every known edge has answered */
    uint32_t ack_wait_ms;         /* 30000: JetStream AckWait of group consumers */
    uint32_t lease_ttl_ms;        /* 3000: partition lease lifetime (bus_opts_t) */
    uint32_t pub_max_pending;     /* 65536: PubAcks outstanding, then WSG_EFULL
                                     (bus_event_capacity: at most 4096 of them) */
    uint32_t pub_timeout_ms;      /* 5000: no PubAck -> WSG_EUNAVAILABLE */
    int64_t stream_max_bytes;     /* 1 GiB: WSGATE_EVENTS size (Discard New) */
    uint32_t restart_max_repeats; /* 10000: a partition taken over restarts its consumer
                                     at the ack floor only if that repeats at most this
                                     many acked events; else it waits out AckWait */
    uint32_t poison_max;          /* 65536: connections whose later events are refused */
    uint32_t poison_keep_ms;      /* 60000: past poison_max, entries this old make room */
} bus_nats_tune_t;

/* Returns 0, WSG_EINVAL (not a NATS bus, started or subscribed, bad prefix). */
int bus_nats_tune(bus_t *bus, const bus_nats_tune_t *t);

/* Tests only: frees the bus the way a killed process leaves it: no Nak of
 * undone deliveries, leases left to expire, PubAcks not waited for. */
void bus_nats_vanish(bus_t *bus);

/* bus_event_capacity(): at most NB_PUB_WINDOW PubAcks outstanding. The
 * PubAck timeout runs from the publish, so a window larger than what the
 * server works through within it would turn overload into refusals: at
 * 5,000 events/s (a busy 2-core host) this one waits under a second. */
#define NB_PUB_WINDOW 4096
#define NB_RECONNECT_BUF (8 * 1024 * 1024) /* libnats keeps this while NATS is away */
#define NB_JS_WAIT_MS 2000        /* JetStream API calls (leases, consumers) and KV key lists */
#define NB_WRITE_DEADLINE_MS 5000 /* a write to NATS making no progress: the PubAck timeout */

#define NB_PREFIX_MAX 48
#define NB_BUCKETS 4096

typedef struct nb_pub nb_pub_t;
typedef struct nb_poison nb_poison_t;
typedef struct nb_chan nb_chan_t;
typedef struct nb_serve nb_serve_t;
typedef struct nb_group nb_group_t;
typedef struct nb_delivery nb_delivery_t;

typedef struct nats_bus {
    struct bus base;
    natsConnection *nc;
    jsCtx *js;
    kvStore *kv;
    bus_nats_tune_t tune;
    char prefix[NB_PREFIX_MAX + 1];
    char stream[NB_PREFIX_MAX + 16];
    uint32_t partitions;
    char *instance; /* unique per bus: lease owner */
    atomic_int connected;
    atomic_int closed;
    atomic_uint disconnects; /* how many times the connection to NATS broke */
    atomic_llong broke_ms;   /* when it last broke (mono ms), 0 never */
    atomic_int started;
    atomic_int stopping;
    int vanish;            /* bus_nats_vanish(): free like a crashed process would */
    atomic_int subscribed; /* a serve or an interest: the prefix is fixed */

    pthread_mutex_t mu; /* service thread wake-up, requests, pubs */
    pthread_cond_t cv;
    pthread_t svc;
    int svc_running;

    /* events (bus_nats_ev.c) */
    nb_pub_t *pubs[NB_BUCKETS];
    uint32_t npubs;
    nb_poison_t *poison[NB_BUCKETS]; /* connections whose later events are refused */
    uint32_t npoison;
    int poison_full_warned;    /* poison_add warned that the list is full */
    int64_t poison_swept_ms;   /* when poison_add last walked the full list (mono) */
    nb_pub_t *oldest, *newest; /* the same, in publish order */
    uint64_t epoch;            /* libnats's reconnect count at the last publish */
    int64_t away_since_ms;     /* the first publish that found NATS away (mono), 0 */
    natsStatistics *stats;     /* for the reconnect count */
    nb_group_t *groups;
    int64_t next_lease_ms;

    /* commands (bus_nats_cmd.c) */
    natsSubscription *inbox_sub;
    char *inbox;
    nb_serve_t *serves;

    /* channels, broadcasts, heartbeats (bus_nats.c) */
    pthread_mutex_t hmu;
    nb_chan_t *chans[NB_BUCKETS];
    natsSubscription *bcast_sub;
    natsSubscription *hb_sub;
    natsSubscription *watch_sub; /* copies of connect/disconnect events */

    struct nb_users *users; /* user claims (bus_nats_users.c) */
} nats_bus_t;

/* bus_nats.c helpers */
/* Subject-safe token of s: "i" + s when s is [A-Za-z0-9_-]+, else "x" +
 * lowercase hex of its bytes. Returns a heap string. */
char *nb_tok(const char *s, size_t n);
/* Reverses nb_tok(); NULL for a malformed token. *n gets the length. */
char *nb_untok(const char *t, size_t *n);
/* Sets header key to nb_tok(value) (value NULL: nothing). Returns NATS status. */
natsStatus nb_hdr_set_tok(natsMsg *m, const char *key, const char *value);
/* The decoded header, heap; NULL when absent or malformed. */
char *nb_hdr_get_tok(natsMsg *m, const char *key);
int nb_status_to_err(natsStatus s);
void nb_wake(nats_bus_t *b);

/* bus_nats_ev.c */
int nb_ev_start(nats_bus_t *b);
void nb_ev_stop(nats_bus_t *b);
void nb_ev_free(nats_bus_t *b);
void nb_ev_tick(nats_bus_t *b, int64_t now);
/* The NATS connection was lost (connection callback). */
void nb_ev_disconnected(nats_bus_t *b);
int nb_ev_publish(bus_t *bus, const bus_event_t *ev, bus_event_ack_fn cb, void *ud);
void nb_ev_capacity(bus_t *bus, size_t *events, size_t *bytes);
int nb_ev_subscribe(bus_t *bus, const char *group, uint32_t type_mask, bus_event_fn fn, void *ud);
int nb_ev_on_run_end(bus_t *bus, const char *group, bus_run_end_fn fn);
void nb_ev_done(bus_t *bus, bus_delivery_t *d);
int nb_ev_last_seq(bus_t *bus, const char *conn_id, uint64_t *seq);

/* bus_nats_cmd.c */
int nb_cmd_open(nats_bus_t *b);
void nb_cmd_free(nats_bus_t *b);
int nb_cmd_send(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, uint64_t req_id);
int nb_cmd_serve(bus_t *bus, const char *edge_id, int on);
void nb_cmd_reply(bus_reply_t *r, int status);

/* bus_nats_users.c */
void nb_users_init(nats_bus_t *b);
void nb_users_free(nats_bus_t *b);
int nb_user_shared(bus_t *bus);
int nb_user_claim(bus_t *bus, const bus_user_t *u, uint64_t *rev);
int nb_user_release(bus_t *bus, const bus_user_t *u, uint64_t rev);
int nb_edge_lost_mark(bus_t *bus, const char *edge_id);
int nb_edge_lost_take(bus_t *bus, const char *edge_id, int *lost);

#endif
