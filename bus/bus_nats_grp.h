/* SPDX-License-Identifier: MIT */
/*
 * bus_nats_grp.h — consumer groups of the NATS bus, shared by
 * bus_nats_ev.c (consumers, fetching, delivery) and bus_nats_lease.c
 * (partition leases, sharing, take-over). Private to bus/. Which thread
 * touches which field is noted on the field.
 */
#ifndef WSG_BUS_NATS_GRP_H
#define WSG_BUS_NATS_GRP_H

#include "bus/bus_nats.h"

struct nb_delivery {
    struct bus_delivery base;
    nb_delivery_t *prev, *next;
    nb_group_t *g;
    natsMsg *msg;
    bus_event_t ev;
    char *strs[4];
    int64_t touched;
};

struct nb_group {
    nb_group_t *next;
    nats_bus_t *b;
    char *name, *tok;
    uint32_t mask;
    bus_event_fn fn;
    bus_run_end_fn run_end; /* may be NULL */
    void *ud;
    pthread_t th;
    int th_running;
    natsSubscription **subs; /* delivery thread only */
    uint64_t *rev;           /* service thread only: lease revision, 0 = not ours */
    unsigned char *giving;   /* service thread only: held, fetching stopped, to release */
    atomic_int *want;        /* lease held: the delivery thread consumes p */
    pthread_mutex_t mu;      /* the undone list */
    nb_delivery_t *head, *tail;
    natsSubscription *wake;    /* core NATS copy of the group's event subjects */
    atomic_llong *hold_until;  /* set by the delivery thread: no fetch from p before (mono ms) */
    atomic_llong *valid_until; /* service thread sets: the lease surely ours until (mono ms) */
    uint64_t *restart;         /* service thread only: recreate p's consumer from this seq */
    atomic_ullong *seen_upto;  /* service thread sets: stream seqs <= it were delivered before
                                * a take-over reset p's consumer (attempt + 1) */
    unsigned char *clean;      /* at stop: nothing of p out but Nak'd deliveries */
    atomic_int kicked;         /* an event of a leased partition arrived since the last round */
};

#define NB_MAX_ACK_PENDING 4096
#define NB_LOST_FETCH_MARGIN_MS 2000

/* bus_nats_ev.c */
/* The partition of a connection's events. */
uint32_t nb_partition_of(const nats_bus_t *b, const char *conn_id);
/* The durable consumer's name of partition p; buf: 160 bytes. */
void nb_consumer_name(const nb_group_t *g, uint32_t p, char *buf, size_t n);
/* Creates partition p's consumer, from the stream's start (start_seq 0) or
 * from start_seq. Returns the NATS status (*jerr: JetStream's error). */
natsStatus nb_add_consumer(nb_group_t *g, uint32_t p, uint64_t start_seq, jsErrCode *jerr);

/* bus_nats_lease.c (service thread, and nb_ev_start/nb_ev_stop) */
/* Creates or binds the lease bucket and takes a first share of leases. */
natsStatus nb_lease_start(nats_bus_t *b);
/* Deletes g's leases and its member key (a graceful stop). */
void nb_lease_release(nats_bus_t *b, nb_group_t *g);
/* The lease value of a partition given back cleanly: nothing of it is out
 * but what was Nak'd (due at once), so the next holder needs no reset. */
#define NB_LEASE_FREE "free"
/* p may not be fetched from nor given away: a fetch of it was cut. */
int nb_partition_held(nb_group_t *g, uint32_t p);

#endif
