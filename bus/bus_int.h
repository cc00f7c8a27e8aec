/* SPDX-License-Identifier: MIT */
/*
 * bus_int.h — the split between bus.c (the semantics of bus.h, written once)
 * and a transport (bus_inproc.c, bus_nats*.c). Nothing outside bus/ and the
 * bus tests includes this file.
 *
 * bus.c owns: input validation of every entry point, the registry of
 * handlers (command serves, publish and heartbeat handlers, event groups)
 * with unregistration that waits for callbacks in flight, channel-interest
 * reference counts, and the table of command requests with their deadlines
 * and the any-edge rule. A transport owns durability (the SQLite queue,
 * JetStream) and moving bytes: it hands what arrives to bus_core_*_in(),
 * and bus.c calls its hooks when something must go out or a subscription
 * must change (the hooks marked "NULL: in-process" mean bus.c delivers
 * locally, there being no bytes to move).
 *
 * Each transport embeds `struct bus` as the first member of its handle,
 * `struct bus_reply` as the first member of its reply objects and `struct
 * bus_delivery` as the first member of its delivery objects.
 */
#ifndef WSG_BUS_INT_H
#define WSG_BUS_INT_H

#include "bus/bus.h"

typedef struct bus_ops bus_ops_t;
typedef struct bus_core bus_core_t;
typedef struct bus_req bus_req_t;

struct bus {
    const bus_ops_t *ops;
    bus_core_t *core; /* bus.c's half, set by bus_open() */
};

/* req non-NULL: a reply object bus.c made for an in-process delivery;
 * NULL: the transport's (ops->cmd_reply sends it back). */
struct bus_reply {
    bus_t *bus;
    bus_req_t *req;
};

struct bus_delivery {
    bus_t *bus;
};

struct bus_ops {
    const char *name;
    int (*open)(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen);
    int (*start)(bus_t *bus);
    /* Stops the transport and frees its handle: once it returns no
     * bus_core_*_in() call runs and no transport thread is left. */
    void (*free)(bus_t *bus);
    int (*healthy)(bus_t *bus);
    /* bus_roundtrip(); NULL: nothing between the processes (0). */
    int (*roundtrip)(bus_t *bus, int timeout_ms);

    /* Arguments are checked by bus.c before any of these is called. */
    int (*event_publish)(bus_t *bus, const bus_event_t *ev, bus_event_ack_fn cb, void *ud);
    void (*event_capacity)(bus_t *bus, size_t *events, size_t *bytes);
    int (*event_subscribe)(bus_t *bus, const char *group, uint32_t type_mask, bus_event_fn fn,
                           void *ud);
    int (*event_on_run_end)(bus_t *bus, const char *group, bus_run_end_fn fn);
    void (*event_done)(bus_t *bus, bus_delivery_t *d);
    int (*event_last_seq)(bus_t *bus, const char *conn_id, uint64_t *seq);

    /* Sends cmd to edge_id (NULL: every edge); req_id 0 = no reply wanted,
     * else replies come back through bus_core_reply_in(req_id). NULL:
     * in-process, bus.c calls the local handlers. */
    int (*cmd_send)(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, uint64_t req_id);
    /* Sends a transport reply object's status back and frees it. */
    void (*cmd_reply)(bus_reply_t *r, int status);
    /* Starts (on=1) / stops listening for commands to edge_id. NULL: none. */
    int (*serve)(bus_t *bus, const char *edge_id, int on);

    /* Sends a publish. NULL: in-process, bus.c delivers it locally when its
     * channel has interest. */
    int (*publish)(bus_t *bus, const bus_publish_t *p);
    /* The first publish (heartbeat) handler was registered: listen. */
    int (*listen_publishes)(bus_t *bus);
    int (*listen_heartbeats)(bus_t *bus);
    /* The first bus_event_watch() handler was registered: listen. NULL: not
     * supported (WSG_ENOTSUP). */
    int (*listen_watch)(bus_t *bus);
    /* A channel's interest went 0 -> 1 (on=1) or 1 -> 0; called under the
     * interest lock, so on/off of one channel arrive in order. NULL: none. */
    int (*interest)(bus_t *bus, const char *channel, int on);

    int (*heartbeat)(bus_t *bus, const char *edge_id, int leaving);

    int (*user_shared)(bus_t *bus);
    int (*user_claim)(bus_t *bus, const bus_user_t *u, uint64_t *rev);
    int (*user_release)(bus_t *bus, const bus_user_t *u, uint64_t rev);

    /* NULL: nothing to mark (one process), *lost stays 0. */
    int (*edge_lost_mark)(bus_t *bus, const char *edge_id);
    int (*edge_lost_take)(bus_t *bus, const char *edge_id, int *lost);
};

extern const bus_ops_t bus_inproc_ops;
extern const bus_ops_t bus_nats_ops;

/* ---- what transports hand to bus.c (any thread) ---------------------------- */

/* A command for edge_id arrived; r is the transport's reply object. Calls
 * the edge's handler, or replies WSG_EGONE when edge_id is not served here. */
void bus_core_cmd_in(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, bus_reply_t *r);
/* A reply to request req_id; final=1 when no other edge can answer (NATS:
 * no responders). Unknown or settled ids are ignored. */
void bus_core_reply_in(bus_t *bus, uint64_t req_id, int status, int final);
void bus_core_publish_in(bus_t *bus, const bus_publish_t *p);
void bus_core_heartbeat_in(bus_t *bus, const char *edge_id, int64_t at_ms, int leaving);
void bus_core_watch_in(bus_t *bus, bus_event_type_t type, const char *conn_id, const char *edge_id);

/* Timeouts of commands (one edge) and of the any-edge window; 0 keeps a
 * value. For the transports' tuning calls (tests, benchmark). */
void bus_core_tune(bus_t *bus, uint32_t cmd_timeout_ms, uint32_t any_window_ms);

/* Returns once the bus's own consumer thread has run everything queued for
 * it before the call, and what that queued for it in turn (the reply of a
 * command its handler answered at once): the in-process bus is then quiet
 * unless another thread produces. For tests. */
void bus_core_sync(bus_t *bus);

/* Allocation for the bus's own threads: zeroed, aborts on out-of-memory
 * (servers may, STYLE.md). */
void *bus_xcalloc(size_t n);
char *bus_xstrdup(const char *s);

/* Validation; each returns 0 or WSG_EINVAL. bus.c applies them at its entry
 * points; transports use bus_check_cmd() on commands decoded off the wire. */
int bus_check_event(const bus_event_t *ev);
int bus_check_cmd(const bus_cmd_t *cmd);
int bus_check_publish(const bus_publish_t *p);
int bus_check_user(const bus_user_t *u);
/* A consumer group's mask: not empty, only types in BUS_EV_KNOWN. */
int bus_check_type_mask(uint32_t type_mask);

/* What bus_event_capacity() gives one publisher of an implementation's
 * bound n on events waiting for their ack: all but 1/16, which is left to
 * the process's other publishers. */
#define BUS_CAPACITY_SHARE(n) ((n) - (n) / 16)

/* Tuning knobs of the in-process bus, for tests and the benchmark only:
 * queue_max events waiting for the writer (default 65536), window events
 * handed to one group and not yet done (default 16384), cmd_timeout_ms
 * (default 5000; also the any-edge deadline). 0 keeps a value. Call before
 * bus_start(). */
void bus_inproc_tune(bus_t *bus, uint32_t queue_max, uint32_t window, uint32_t cmd_timeout_ms);

#endif
