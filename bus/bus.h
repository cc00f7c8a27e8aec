/* SPDX-License-Identifier: MIT */
/*
 * bus.h — the one way wsgate's roles reach each other.
 *
 * Two implementations behind this interface:
 *   bus_inproc.c  standalone: threads in one process; client events made
 *                 durable in SQLite (WAL) by one writer thread that batches
 *                 appends into one transaction.
 *   bus_nats.c    cluster: NATS core subjects for commands, channels and
 *                 heartbeats; JetStream (file storage) for client events.
 * bus_open() picks one from the URL: "" -> in-process, nats://... -> NATS.
 *
 * Six kinds of traffic:
 *   1. Client events (edge -> dispatcher, registry): durable, at-least-once,
 *      in order per connection; with them, in the same order, the edge's
 *      records of subscription changes (BUS_EV_SUBSCRIPTION, registry only). The edge calls
 * bus_event_publish() and treats the event as accepted only when its ack callback reports 0. The
 * bus holds a bounded number of events waiting for that ack: a full bus answers WSG_EFULL and takes
 * nothing (the caller keeps the event and offers it again later); bus_event_capacity() says how
 * much one publisher may keep waiting without ever seeing that.
 *   2. Edge commands (api/dispatcher -> the edge holding a connection):
 *      request/reply; the reply says the edge queued it (0) or does not hold
 *      the connection (WSG_EGONE).
 *   3. Channel publishes and broadcasts (api -> every edge with members):
 *      fire-and-forget; one bus message per publish, edges fan out locally.
 *   4. Edge heartbeats (edge -> api registry).
 *   5. User claims (edge -> every edge): route option
 *      one_connection_per_user `reject` across edges; NATS only.
 *   6. Lost-edge marks (api -> the edge it declared lost); NATS only.
 *
 * Ownership: every pointer passed in is borrowed for the duration of the
 * call; the bus copies what it keeps. Every pointer passed to a callback is
 * borrowed for the duration of the callback.
 *
 * bus.c implements the semantics below once for both transports
 * (validation, handler registry, interest counts, command requests and
 * their deadlines); bus_inproc.c and bus_nats*.c only make events durable
 * and move bytes.
 *
 * Threads: every function may be called from any thread. Handlers may be
 * registered and unregistered before or after bus_start(), except event
 * groups and their run-end hooks (before bus_start()). An unregistration
 * (bus_cmd_unserve, bus_publish_unserve, bus_heartbeat_unserve,
 * bus_event_unsubscribe) returns only once no callback of that handler is
 * running, and none starts afterwards; called from inside one of that
 * handler's own callbacks it waits for the others only.
 *
 * Which thread runs a callback (both transports alike):
 *   - bus_cmd_fn, bus_publish_fn: the consumer the handler was registered
 *     on (section 0), when it drains its queue: never inline in the
 *     bus_cmd_request() / bus_publish() that produced them, nor on a NATS
 *     library thread (those only queue). Handlers registered without a
 *     consumer (bus_cmd_serve, bus_publish_serve) run on the bus's own
 *     consumer thread ("bus-deliver");
 *   - bus_reply_fn: the bus's own consumer thread, whatever decided the
 *     reply (the edge's bus_cmd_reply(), a NATS reply, the deadline, no
 *     edge at all, or bus_free() answering WSG_EUNAVAILABLE for requests
 *     still open, which drains before it returns); never inline in
 *     bus_cmd_request() or bus_cmd_reply();
 *   - bus_event_fn, bus_run_end_fn: the group's delivery thread (one per
 *     group; NATS: one per group and bus);
 *   - bus_event_ack_fn: in-process, the queue's writer thread, or inline in
 *     bus_event_publish() when the event is refused at once (the bus is
 *     stopping); NATS: the PubAck thread, or inline for a connection whose
 *     earlier event failed (bus_nats_ev.c);
 *   - bus_heartbeat_fn: a bus thread, never the caller's (in-process: the
 *     heartbeat thread; NATS: a subscription thread);
 *   - bus_watch_fn: NATS: a subscription thread, like heartbeats (a cache
 *     update: a lock and a table write); in-process there is none.
 * So a callback must not block for long (the bus's own consumer thread
 * serves every role of the process that registered without a consumer)
 * and must not call back into a lock its own caller may hold.
 */
#ifndef WSG_BUS_H
#define WSG_BUS_H

#include <stddef.h>
#include <stdint.h>

typedef struct bus bus_t;

/* ---- lifecycle ---------------------------------------------------------- */

typedef struct {
    const char *url;        /* "" or NULL: in-process; "nats://host:port": NATS */
    const char *queue_path; /* in-process: SQLite file for the durable event
                               queue (WAL); NULL = ":memory:" (tests only) */
    const char *name;       /* this process's name, for NATS connection names */
    uint32_t partitions;    /* NATS: event subject partitions (default 16) */
    uint32_t ack_wait_ms;   /* NATS: AckWait of event consumers (default 30000) */
    uint32_t lease_ttl_ms;  /* NATS: partition lease lifetime (default 3000): a
                               dead process's partitions move after it */
} bus_opts_t;

/* Opens a bus. Returns 0, WSG_EINVAL (unknown URL scheme), WSG_EBUS (the
 * queue file cannot be opened or is in use by another bus, NATS cannot be
 * reached, a bus thread cannot be started); detail in err. */
int bus_open(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen);

/* Starts delivering to the handlers registered so far; in-process, events
 * left unacknowledged by a previous run are redelivered first. Returns 0,
 * WSG_EINVAL (already started), WSG_EBUS (the queue cannot be read). */
int bus_start(bus_t *bus);

/* Stops delivery and waits for bus threads; pending acks are flushed. Stop
 * the roles first: bus_event_done() and bus_cmd_reply() are invalid after
 * bus_free(). NULL allowed. */
void bus_free(bus_t *bus);

/* 1 when the bus can accept work (NATS connected; queue writable). */
int bus_healthy(bus_t *bus);

/* A round trip to the NATS server (PING, then its PONG) within timeout_ms:
 * 0, or WSG_EUNAVAILABLE when none came. A server that hangs (stopped,
 * blackholed) still looks connected to bus_healthy() until the client's own
 * pings time out; this tells at once whether anything sent now is heard.
 * Blocks up to timeout_ms; any thread. In-process bus: 0 at once. */
int bus_roundtrip(bus_t *bus, int timeout_ms);

/* ---- 0. consumers ------------------------------------------------------------ */

/* A consumer is a thread of the caller's (an edge's service loop) on which
 * the bus runs the command and publish callbacks of the handlers
 * registered on it. The bus keeps one queue per consumer: a command or
 * publish for one of its handlers is copied into it (no allocation per
 * item once the queue has grown to the traffic's bursts), and wake(ud) is
 * called, on the producing thread, when the queue goes from empty to
 * non-empty; the owner then calls bus_consumer_drain() on its thread,
 * which runs every callback queued when it started (what arrives meanwhile
 * wakes it again). Items reach a consumer in the order they were produced,
 * so one caller's commands reach an edge in the order sent. A queue holds
 * at most 64 MiB: a command that does not fit is answered WSG_EFULL, a
 * publish that does not fit makes bus_publish() return WSG_EFULL
 * (in-process) or is dropped with a warning in the log (NATS: it came off
 * the wire), never silently.
 *
 * wake must not block or call the bus (lws_cancel_service() is the kind of
 * thing it does). Unregister the consumer's handlers before
 * bus_consumer_free(): what is still queued then is disposed of as for an
 * unregistered handler (below). Free consumers before bus_free(). */
typedef struct bus_consumer bus_consumer_t;
typedef void (*bus_wake_fn)(void *ud);
/* Returns 0, WSG_EINVAL (NULL bus, wake or out). */
int bus_consumer_new(bus_t *bus, bus_wake_fn wake, void *ud, bus_consumer_t **out);
/* Runs what is queued now; on the consumer's own thread only. NULL allowed. */
void bus_consumer_drain(bus_consumer_t *c);
/* NULL allowed. */
void bus_consumer_free(bus_consumer_t *c);

/* ---- 1. client events ----------------------------------------------------- */

typedef enum {
    BUS_EV_CONNECT = 1,
    BUS_EV_MESSAGE = 2,
    BUS_EV_DISCONNECT = 3,
    /* Internal, never a webhook: a subscription change the edge holding the
     * connection applied to its channel index, in the connection's order
     * (body {"op":"subscribe"|"unsubscribe","channel":"..."}; seq is the
     * connection's last webhook event's, not a new one). The registry
     * records it: it is the one writer of the store's subscriptions. */
    BUS_EV_SUBSCRIPTION = 4,
} bus_event_type_t;

#define BUS_EV_MASK(t) (1u << (t))
/* The webhook events (what the dispatcher consumes). */
#define BUS_EV_ALL                                                                                 \
    (BUS_EV_MASK(BUS_EV_CONNECT) | BUS_EV_MASK(BUS_EV_MESSAGE) | BUS_EV_MASK(BUS_EV_DISCONNECT))
/* Every type a consumer group may ask for. */
#define BUS_EV_KNOWN (BUS_EV_ALL | BUS_EV_MASK(BUS_EV_SUBSCRIPTION))

/* A client event. body is the complete webhook JSON envelope of docs/contract.md §3
 * (built once by the edge; the dispatcher posts it as-is). */
typedef struct {
    const char *id; /* "evt_..." stable across retries */
    bus_event_type_t type;
    const char *conn_id;
    const char *edge_id; /* edge holding the connection (for actions) */
    const char *route;
    uint64_t seq; /* per-connection, from 1 */
    const char *body;
    size_t body_len;
    int replay; /* 1: a replay of an event published before (a dead letter): delivered again
                   with the same id, never dropped as a duplicate of the first publish */
} bus_event_t;

/* Called once per taken event: status 0 = durable (accepted). Anything else
 * means the event could not be made durable, and may be lost:
 *   WSG_ENOSPC        the durable store is full (in-process: the queue file
 *                     cannot grow, disk full or file size limit; NATS: the
 *                     stream is at its byte bound);
 *   WSG_EUNAVAILABLE  NATS unreachable (no PubAck within its timeout), or
 *                     the bus is stopping;
 *   WSG_EBUS          any other write failure.
 * The edge closes the client with 1013 and counts the cause. Overload is
 * never reported here: that is bus_event_publish()'s WSG_EFULL. */
typedef void (*bus_event_ack_fn)(void *ud, int status);

/* Returns 0 when the event was taken: cb (may be NULL) is then called exactly
 * once. Returns WSG_EFULL when the bus has no room for it now (events waiting
 * for their ack are at the bus's bound; NATS: also while NATS is away or
 * has answered nothing for a while, docs/bus-nats.md): nothing was taken,
 * cb is not called, and the caller offers the same event again later,
 * before any later event of the same connection (order per connection is
 * the caller's order); the bus has room again once acks of earlier events
 * were called, or (NATS away) after a while: offer again on a timer too.
 * Returns WSG_EINVAL for a bad event (no id or conn_id, unknown type, seq 0,
 * body NULL with body_len > 0); cb is then not called. */
int bus_event_publish(bus_t *bus, const bus_event_t *ev, bus_event_ack_fn cb, void *ud);

/* How much one publisher may keep taken and not yet acked (published, its
 * ack callback not yet called) and still never get WSG_EFULL: *events events
 * whose bodies (body_len) add up to at most *bytes. Part of the bus's bound
 * is kept beyond this for other publishers of the process (the registry's
 * edge_lost disconnects, dead-letter replays), which may therefore still
 * see WSG_EFULL. The edge divides it among its loops. Returns 0 or
 * WSG_EINVAL. */
int bus_event_capacity(bus_t *bus, size_t *events, size_t *bytes);

typedef struct bus_delivery bus_delivery_t;

/* Delivers ev to a consumer. The consumer must later call bus_event_done()
 * exactly once with d (from any thread). Until then the event is redelivered
 * after a crash. attempt counts deliveries of this event by the bus (1 first).
 * ev and its strings stay valid until bus_event_done(d). The count is
 * persisted: an event handed out and left undone when the process died comes
 * back with attempt + 1; one that was durable but never handed out, with the
 * same attempt. (NATS, when a new holder restarted the partition's consumer
 * after a crash: 2 for every event the old consumer had handed out, however
 * often: the count of the old consumer is gone.) */
typedef void (*bus_event_fn)(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt);

/* Registers a consumer group (e.g. "dispatch", "registry") receiving events
 * whose type is in type_mask. Each group gets every such event once;
 * in-process there is one consumer per group. Returns 0, WSG_EINVAL (empty
 * name, bad mask, NULL fn, after bus_start), WSG_EEXISTS (group registered
 * twice on this bus). */
int bus_event_subscribe(bus_t *bus, const char *group, uint32_t type_mask, bus_event_fn fn,
                        void *ud);

/* Optional, before bus_start: fn(ud) is called on the group's delivery
 * thread after each run of deliveries (in-process: each list the thread
 * takes from its queue; NATS: each fetch), before that thread waits or
 * fetches again. A consumer may batch work over a run (one store transaction) and
 * finish it there. Returns 0, WSG_EINVAL (unknown group, NULL fn, after
 * bus_start). */
typedef void (*bus_run_end_fn)(void *ud);
int bus_event_on_run_end(bus_t *bus, const char *group, bus_run_end_fn fn);

/* Unregisters group's handler: no bus_event_fn / bus_run_end_fn of it
 * starts after this is called, and it returns once the running ones have
 * returned (from inside one, it waits for the others), so ud may be freed.
 * Events of the group delivered from then on are left undone: they come
 * back after a restart (NATS: after AckWait, to another member). The group
 * cannot be subscribed again on this bus (WSG_EEXISTS). Deliveries handed
 * out earlier stay valid until bus_event_done(). Returns 0, WSG_EINVAL,
 * WSG_ENOTFOUND. */
int bus_event_unsubscribe(bus_t *bus, const char *group);

/* Acknowledges (consumed or dead-lettered). Frees d. */
void bus_event_done(bus_t *bus, bus_delivery_t *d);

/* Highest seq published for conn_id still known to the bus (0 if none).
 * Used to number the disconnect event of a connection whose edge died.
 * In-process it survives restarts and is forgotten once the connection's
 * disconnect event has been consumed by every group. Returns 0, WSG_EINVAL,
 * WSG_EBUS. */
int bus_event_last_seq(bus_t *bus, const char *conn_id, uint64_t *seq);

/* Where connections live, best effort: fn(ud, type, conn_id, edge_id) is
 * called for each connect and disconnect event as it is published anywhere
 * in the cluster (edge_id: the edge named in the event, "" when it names
 * none). Nothing is acked or redelivered: an event published while this
 * process is cut off from NATS is never seen here, so a watcher keeps a
 * cache with a slower authoritative source behind it (the control API's
 * location cache in front of the store's connections). NATS: a core
 * subscription on the events' subjects, fn on a NATS subscription thread.
 * In-process: WSG_ENOTSUP (a command reaches this process's edges without
 * locating them). Returns 0, WSG_EINVAL, WSG_ENOTSUP. bus_event_unwatch()
 * unregisters it and waits like bus_publish_unserve(). */
typedef void (*bus_watch_fn)(void *ud, bus_event_type_t type, const char *conn_id,
                             const char *edge_id);
int bus_event_watch(bus_t *bus, bus_watch_fn fn, void *ud);
int bus_event_unwatch(bus_t *bus, bus_watch_fn fn, void *ud);

/* ---- 2. edge commands --------------------------------------------------- */

typedef enum {
    BUS_CMD_SEND = 1,        /* data/len/binary */
    BUS_CMD_CLOSE = 2,       /* code/reason/initiator */
    BUS_CMD_SUBSCRIBE = 3,   /* channel */
    BUS_CMD_UNSUBSCRIBE = 4, /* channel */
    BUS_CMD_HOLDS = 5,       /* conn_id only: 0 when the edge holds it (open or
                                in its handshake), else WSG_EGONE; answered at
                                once, never held until the handshake ends */
} bus_cmd_op_t;

typedef struct {
    bus_cmd_op_t op;
    const char *conn_id;
    const unsigned char *data;
    size_t len;
    int binary;
    int code;
    const char *reason;
    const char *initiator; /* "api", "server", ... for CLOSE */
    const char *channel;
} bus_cmd_t;

/* Reply to a command: 0 queued/applied, WSG_EGONE not held by that edge,
 * WSG_ETIMEOUT no answer, WSG_EFULL (slow consumer). */
typedef void (*bus_reply_fn)(void *ud, int status);

/* Sends cmd to edge_id, or with edge_id NULL to every edge. Commands from
 * one caller to one edge arrive in the order sent. cb may be NULL
 * (fire-and-forget). The reply:
 *   - to one edge: that edge's answer; WSG_EGONE when no such edge serves;
 *     WSG_ETIMEOUT when it did not answer within the command timeout (5 s);
 *   - to any edge (the one any-edge rule, both transports): 0 as soon as
 *     one edge answers 0; else WSG_EGONE as soon as every edge the bus
 *     knows has answered (in-process: every registered edge; NATS: every
 *     edge whose heartbeats this bus receives and that is live by them, and
 *     at once when no edge listens at all), or at the command timeout
 *     (5 s), whichever comes first. Never WSG_ETIMEOUT. An edge may hold a
 *     command for a connection still in its handshake until it ends, so a
 *     shorter wait would answer WSG_EGONE for a connection about to open.
 * A reply after the verdict is ignored (safely). Returns 0 when sent (cb is
 * then called exactly once), WSG_EINVAL for a bad command (cb not called),
 * or a transport error (NATS unreachable: WSG_EUNAVAILABLE; cb not called). */
int bus_cmd_request(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, bus_reply_fn cb,
                    void *ud);

typedef struct bus_reply bus_reply_t;

/* Handler of commands on an edge; must call bus_cmd_reply(r, status) exactly
 * once (from any thread). */
typedef void (*bus_cmd_fn)(void *ud, const bus_cmd_t *cmd, bus_reply_t *r);

/* Returns 0, WSG_EINVAL, WSG_EEXISTS (edge_id already served). Allowed
 * before and after bus_start(). fn runs on the bus's own consumer thread. */
int bus_cmd_serve(bus_t *bus, const char *edge_id, bus_cmd_fn fn, void *ud);
/* Picks the consumer a command runs on (an edge: the loop that owns
 * cmd->conn_id), so every command of one connection goes to one consumer
 * and keeps its order. Called on the producing thread with the handler's
 * ud: it must only compute (no lock, no bus call). */
typedef bus_consumer_t *(*bus_cmd_route_fn)(void *ud, const bus_cmd_t *cmd);
/* Like bus_cmd_serve(), fn running on the consumer route picks. */
int bus_cmd_serve_on(bus_t *bus, const char *edge_id, bus_cmd_route_fn route, bus_cmd_fn fn,
                     void *ud);
/* Stops serving edge_id: no bus_cmd_fn of it starts after this is called,
 * and it returns only once the ones running have returned (from inside
 * one, it waits for the others), so ud may be freed then. Commands for
 * edge_id are answered WSG_EGONE from then on, those still queued for it
 * included (when their consumer drains them, or frees them). Reply objects
 * already handed out stay valid until replied. The cluster bus also waits
 * (up to 2 s) for the NATS server to drop the interest, so a command sent
 * after this returns gets WSG_EGONE, not a timeout. Returns 0, WSG_EINVAL,
 * WSG_ENOTFOUND. */
int bus_cmd_unserve(bus_t *bus, const char *edge_id);
void bus_cmd_reply(bus_reply_t *r, int status);

/* ---- 3. channels and broadcast --------------------------------------------- */

/* A publish as edges receive it. channel is NULL for a broadcast, then
 * route is the route filter (NULL = every route). exclude is a connection id
 * that must not receive it, or NULL. */
typedef struct {
    const char *channel;
    const char *route;
    const char *exclude;
    const unsigned char *data;
    size_t len;
    int binary;
} bus_publish_t;

/* Publishes to every edge with members of p->channel (or every edge for a
 * broadcast). Returns 0 once handed to the bus; in-process WSG_EFULL when
 * the queue of a handler's consumer had no room (the others got it). */
int bus_publish(bus_t *bus, const bus_publish_t *p);

typedef void (*bus_publish_fn)(void *ud, const bus_publish_t *p);

/* Registers a handler for publishes and broadcasts (any number, queued in
 * registration order) on the bus's own consumer thread (bus_publish_serve)
 * or on consumer c. Returns 0 or WSG_EINVAL; allowed after bus_start(). */
int bus_publish_serve(bus_t *bus, bus_publish_fn fn, void *ud);
int bus_publish_serve_on(bus_t *bus, bus_consumer_t *c, bus_publish_fn fn, void *ud);
/* Unregisters the handler registered with fn and ud; waits like
 * bus_cmd_unserve(). Publishes still queued for it are dropped. Returns 0,
 * WSG_EINVAL, WSG_ENOTFOUND. */
int bus_publish_unserve(bus_t *bus, bus_publish_fn fn, void *ud);

/* The edge declares (on=1) or withdraws (on=0) interest in a channel; the
 * bus only delivers publishes for channels with interest. Reference counting
 * of local members is the edge's job. The bus counts on/off per channel;
 * returns WSG_ENOTFOUND for an off without a matching on. */
int bus_channel_interest(bus_t *bus, const char *channel, int on);

/* ---- 4. heartbeats ---------------------------------------------------------- */

typedef void (*bus_heartbeat_fn)(void *ud, const char *edge_id, int64_t at_ms, int leaving);

/* Publishes a heartbeat for edge_id; leaving=1 on graceful shutdown. at_ms
 * is the sender's wall clock. Returns 0, WSG_EINVAL, WSG_EFULL (in-process:
 * 4096 heartbeats waiting for the service thread). */
int bus_heartbeat(bus_t *bus, const char *edge_id, int leaving);
/* Like bus_publish_serve() / bus_publish_unserve(), for heartbeats. */
int bus_heartbeat_serve(bus_t *bus, bus_heartbeat_fn fn, void *ud);
int bus_heartbeat_unserve(bus_t *bus, bus_heartbeat_fn fn, void *ud);

/* ---- 5. user claims ------------------------------------------------------------ */

/* A user on a route, held by one connection on one edge. */
typedef struct {
    const char *route; /* route path */
    const char *user;
    const char *conn_id;
    const char *edge_id; /* the edge holding conn_id (answers BUS_CMD_HOLDS) */
} bus_user_t;

/* 1 when bus_user_claim() holds across processes (NATS); 0 in-process, where
 * the caller's own index of its connections is the whole truth. */
int bus_user_shared(bus_t *bus);

/* Claims u->user on u->route for u->conn_id, cluster-wide and atomically: of
 * two claimants racing for a free user exactly one gets 0. A claim held by a
 * connection its edge no longer holds (closed, or the edge died) is taken
 * over. Blocks for a few JetStream round trips and at most one command
 * timeout: call it from a thread that may wait (never the edge's service
 * thread). Returns 0 (claimed; *rev identifies the claim for
 * bus_user_release), WSG_EEXISTS (a live connection holds the user),
 * WSG_ENOTSUP (in-process bus), WSG_EINVAL (an empty field), or, when it
 * cannot tell, WSG_ETIMEOUT (the holder's edge did not answer),
 * WSG_EUNAVAILABLE (NATS unreachable or the claim kept changing hands) or
 * WSG_EBUS (the stored claim is not one of ours). */
int bus_user_claim(bus_t *bus, const bus_user_t *u, uint64_t *rev);

/* Drops the claim bus_user_claim() made for u with rev, if it is still that
 * claim (one taken over meanwhile is left alone). Blocks like
 * bus_user_claim. Returns 0 (dropped, or no longer ours), WSG_ENOTSUP,
 * WSG_EINVAL, WSG_EUNAVAILABLE / WSG_EBUS (left in place: the next claimant
 * finds its connection gone and takes it over). */
int bus_user_release(bus_t *bus, const bus_user_t *u, uint64_t rev);

/* ---- 6. lost edges ------------------------------------------------------------- */

/* An API that declared edge_id lost (edge_lost disconnects for its
 * connections, its rows deleted) marks it, so that the edge, should it come
 * back, learns it and closes those clients (edge_fence) instead of keeping
 * connections nobody can reach. NATS: a key of the bucket <prefix>_users;
 * in-process: nothing (one process is never lost to itself). Block for a
 * JetStream round trip: threads that may wait. Return 0, WSG_EINVAL,
 * WSG_EUNAVAILABLE (NATS unreachable) or WSG_EBUS. */
int bus_edge_lost_mark(bus_t *bus, const char *edge_id);
/* Whether edge_id was marked lost (*lost = 1), removing the mark. */
int bus_edge_lost_take(bus_t *bus, const char *edge_id, int *lost);

#endif
