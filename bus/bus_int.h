/*
 * bus_int.h — what bus.c needs from an implementation of bus.h, and nothing
 * else includes. Each implementation (bus_inproc.c, bus_nats.c) fills one
 * bus_ops_t and embeds `struct bus` as the first member of its own handle,
 * `struct bus_reply` as the first member of its reply objects and `struct
 * bus_delivery` as the first member of its delivery objects, so bus.c can
 * route every public call through the right table without knowing either.
 *
 * The table is shaped after the five kinds of traffic so that the NATS
 * implementation slots in without touching callers: events map to JetStream
 * (publish + PubAck, durable pull consumers per group), commands to per-edge
 * request/reply subjects, publishes to channel subjects with interest
 * tracked per edge, heartbeats to one subject, user claims to one
 * KeyValue bucket.
 */
#ifndef WSG_BUS_INT_H
#define WSG_BUS_INT_H

#include "bus/bus.h"

typedef struct bus_ops bus_ops_t;

struct bus {
    const bus_ops_t *ops;
};

struct bus_reply {
    bus_t *bus;
};

struct bus_delivery {
    bus_t *bus;
};

struct bus_ops {
    const char *name;
    int (*open)(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen);
    int (*start)(bus_t *bus);
    void (*free)(bus_t *bus);
    int (*healthy)(bus_t *bus);

    int (*event_publish)(bus_t *bus, const bus_event_t *ev, bus_event_ack_fn cb, void *ud);
    void (*event_capacity)(bus_t *bus, size_t *events, size_t *bytes);
    int (*event_subscribe)(bus_t *bus, const char *group, uint32_t type_mask, bus_event_fn fn,
                           void *ud);
    int (*event_on_run_end)(bus_t *bus, const char *group, bus_run_end_fn fn);
    void (*event_done)(bus_t *bus, bus_delivery_t *d);
    int (*event_last_seq)(bus_t *bus, const char *conn_id, uint64_t *seq);

    int (*cmd_request)(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, bus_reply_fn cb,
                       void *ud);
    int (*cmd_serve)(bus_t *bus, const char *edge_id, bus_cmd_fn fn, void *ud);
    void (*cmd_reply)(bus_reply_t *r, int status);

    int (*publish)(bus_t *bus, const bus_publish_t *p);
    int (*publish_serve)(bus_t *bus, bus_publish_fn fn, void *ud);
    int (*channel_interest)(bus_t *bus, const char *channel, int on);

    int (*heartbeat)(bus_t *bus, const char *edge_id, int leaving);
    int (*heartbeat_serve)(bus_t *bus, bus_heartbeat_fn fn, void *ud);

    int (*user_shared)(bus_t *bus);
    int (*user_claim)(bus_t *bus, const bus_user_t *u, uint64_t *rev);
    int (*user_release)(bus_t *bus, const bus_user_t *u, uint64_t rev);
};

extern const bus_ops_t bus_inproc_ops;
extern const bus_ops_t bus_nats_ops;

/* Allocation for the bus's own threads: zeroed, aborts on out-of-memory
 * (servers may, STYLE.md). */
void *bus_xcalloc(size_t n);
char *bus_xstrdup(const char *s);

/* Validation shared by the implementations; each returns 0 or WSG_EINVAL. */
int bus_check_event(const bus_event_t *ev);
int bus_check_cmd(const bus_cmd_t *cmd);
int bus_check_publish(const bus_publish_t *p);
int bus_check_user(const bus_user_t *u);

/* What bus_event_capacity() gives one publisher of an implementation's
 * bound n on events waiting for their ack: all but 1/16, which is left to
 * the process's other publishers. */
#define BUS_CAPACITY_SHARE(n) ((n) - (n) / 16)

/* Tuning knobs of the in-process bus, for tests and the benchmark only:
 * queue_max events waiting for the writer (default 65536), window events
 * handed to one group and not yet done (default 16384), cmd_timeout_ms
 * (default 5000). 0 keeps a value. Call before bus_start(). */
void bus_inproc_tune(bus_t *bus, uint32_t queue_max, uint32_t window, uint32_t cmd_timeout_ms);

#endif
