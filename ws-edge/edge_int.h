/* SPDX-License-Identifier: MIT */
/*
 * edge_int.h — the edge's private types, shared by its files:
 *   edge.c            lws context, lifecycle, service loop, the hand-over queue
 *   edge_accept.c     an accepted socket until its request headers are read
 *   edge_request.c    the HTTP request parser (http-parser; no lws here)
 *   edge_handshake.c  routing, auth, origin and limits before the 101
 *   edge_conn.c       frames, limits, timers, outbound queue, closing
 *   edge_channels.c   the local channel -> members index, commands, publishes
 *   edge_authz.c      the workers of a held handshake: the authorizer
 *                     webhook (libcurl multi on its own thread) and cluster
 *                     user claims (bus_user_claim on a few threads)
 *   edge_events.c     event envelopes (docs/contract.md §3) and their acks
 *   edge_rxcheck.c    the frame headers lws reads from clients: refuses
 *                     unmasked frames (RFC 6455 §5.1), which lws 4.1 accepts
 *   edge_tls.c        wss://: the TLS session of each client socket, under
 *                     lws, at recv()/send()/shutdown()/close()
 *   edge_pmd.c        permessage-deflate (RFC 7692) without context takeover
 *   edge_map.c        a small string-keyed hash map
 *
 * The edge (edge_t, one per process) runs one or more service threads
 * (edge.threads), each an edge_loop_t: its own lws context and vhost on the
 * shared port (SO_REUSEPORT: the kernel spreads accepted sockets over them),
 * its own libev loop, connections, channel index, timers and queue. A
 * connection lives on one loop for its whole life, and which loop is a pure
 * function of its id (edge_loop_of: ids are drawn until they hash to the loop
 * making them), so commands, acks and authorizer verdicts addressed to a
 * connection id are posted straight to its loop; publishes go to every loop.
 * Bus commands and publishes come through the loop's bus consumer instead
 * (bus.h): the bus queues them for the loop, wakes it with
 * lws_cancel_service(), and the loop runs them when it drains.
 * What spans loops is in edge_t under its mutex: the connection counts
 * (edge.max_connections, per address) and the one-connection-per-user index.
 *
 * Threads: everything here runs on a loop's service thread except what is
 * marked "any thread" (edge_post, edge_bus_route, the edge_t accounting
 * functions) and the worker threads in edge_authz.c, which
 * only talk to the loops through edge_post_conn().
 */
#ifndef WSG_EDGE_INT_H
#define WSG_EDGE_INT_H

#include <ev.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdint.h>

#include "bus/bus.h"
#include "common/close.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/jtext.h"
#include "common/listen.h"
#include "common/netaddr.h"
#include "ws-edge/edge.h"
#include "ws-edge/edge_request.h"

#define EDGE_ID_LEN 22 /* base64url of 128 random bits */

/* ---- map: string key -> pointer (service thread only) ------------------ */
typedef struct edge_map_ent {
    struct edge_map_ent *next;
    void *val;
    char key[];
} edge_map_ent_t;

typedef struct {
    edge_map_ent_t **b;
    size_t nb, n;
} edge_map_t;

void *edge_map_get(const edge_map_t *m, const char *key);
/* Sets key to val (replacing). Aborts on out-of-memory (servers may). */
void edge_map_put(edge_map_t *m, const char *key, void *val);
void *edge_map_del(edge_map_t *m, const char *key);
void edge_map_free(edge_map_t *m);
/* Calls fn for each entry; fn must not modify the map. */
void edge_map_each(const edge_map_t *m, void (*fn)(void *ud, const char *key, void *val), void *ud);

/* ---- shared outbound payload (refcounted, LWS_PRE headroom) ------------- */
typedef struct edge_msg {
    uint32_t refs;
    uint8_t binary;
    uint8_t raw;        /* buf holds a whole frame (header included): LWS_WRITE_RAW */
    uint8_t z_tried;    /* edge_pmd_frame looked at it (z NULL: sent plain) */
    struct edge_msg *z; /* its permessage-deflate frame, made once (edge_pmd.c) */
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the payload */
} edge_msg_t;

edge_msg_t *edge_msg_new(const unsigned char *data, size_t len, int binary);
void edge_msg_unref(edge_msg_t *m);

typedef struct edge_out {
    struct edge_out *next;
    edge_msg_t *m;
} edge_out_t;

/* ---- client frame headers (edge_rxcheck.c; service thread) ---------------
 * lws 4.1 accepts client frames without the mask bit and gives the protocol
 * no way to tell (RFC 6455 §5.1: the server must close with 1002). The edge
 * follows the frame headers in every byte lws reads from a client; from an
 * unmasked frame on, nothing more reaches lws. */
typedef struct {
    uint64_t skip;    /* bytes of the current frame (masking key, payload) still to come */
    uint8_t hdr[10];  /* the next frame's header so far: 2 bytes, then 0, 2 or 8 of length */
    uint8_t hdr_len;  /* bytes of it seen; 0 between headers */
    uint8_t data;     /* the current frame is a data frame (lws gives it to the protocol) */
    uint8_t unmasked; /* an unmasked frame was seen: the connection is refused with 1002 */
    uint32_t wait;    /* with unmasked: data frames before it that lws has yet to deliver */
    uint8_t pmd;      /* permessage-deflate: RSV1 of data messages is taken off here */
    uint8_t *zbits;   /* pmd: a ring of bits, one per data message read and not yet
                       * delivered: was it compressed */
    uint32_t zhead, zn, zcap; /* the ring's first bit, bits in it, capacity in bits */
} edge_rxcheck_t;

/* Follows the frames in p[0..n) (what lws gets next from the client) and
 * returns how many of these bytes may reach lws: n, or the offset where an
 * unmasked frame starts (then s->unmasked is set; 0 from then on). With
 * s->pmd, RSV1 is cleared in p on the first frame of each data message and
 * noted (edge_rxcheck_zpop). Touches nothing but s and p. */
size_t edge_rxcheck_scan(edge_rxcheck_t *s, unsigned char *p, size_t n);
/* Whether the oldest data message noted by the scan was compressed (RSV1);
 * called once per data message lws delivered. */
int edge_rxcheck_zpop(edge_rxcheck_t *s);

/* ---- a connection (open or handshake in flight) -------------------------- */
#define EDGE_REASON_MAX WSG_CLOSE_REASON_MAX /* a close frame's reason, in bytes */
typedef struct edge_held edge_held_t;

typedef struct edge_conn {
    char id[EDGE_ID_LEN + 1];
    struct lws *wsi; /* NULL until open */
    const wsg_route_conf_t *route;
    char *user;         /* NULL = anonymous */
    char *context_json; /* JSON object text; NULL: {} (most connections) */
    char **channels;    /* channels from the token/authorizer, then subscriptions */
    size_t n_channels, cap_channels;
    char remote[48];
    char *subprotocol;   /* chosen subprotocol (maybe a bearer.* entry: see select_subprotocol) */
    char *connect_extra; /* JSON members for the connect event ("headers":..,"query":..) */
    char *proto_extra;   /* its route protocol's member of the connect event, or NULL */
    char *proto_every;   /* ... of its message and disconnect events, or NULL */
    uint64_t seq;
    int64_t opened_ms, last_rx_ms, last_ping_ms;
    int64_t expires_ms; /* the token's expiry (edge clock), 0: none; closes 1008 then */
    int64_t t_at;       /* armed deadline (edge_timer.c); t_pprev != NULL while armed */
    struct edge_conn *t_next, **t_pprev;
    double tokens; /* rate limit bucket */
    int64_t tokens_ms;
    unsigned char *rx; /* message being assembled (fragments) */
    size_t rx_len, rx_cap;
    edge_rxcheck_t rxc; /* the frame headers lws reads from the client */
    edge_out_t *out_head, *out_tail;
    size_t out_bytes;
    size_t unacked;  /* bytes of its events made (published or parked) and not yet acked */
    uint32_t parked; /* its events waiting in the loop's parked list (edge_events.c) */
    int rx_paused;   /* reading stopped: edge_conn_rx_check */
    int ping_due;
    int close_code;              /* != 0: closing with this code */
    char *close_reason;          /* malloc'd when closing, <= EDGE_REASON_MAX bytes */
    const char *close_initiator; /* client|server|api|timeout */
    int peer_code;               /* close code received from the client */
    char *peer_reason;           /* malloc'd from the client's close frame */
    int counted;                 /* holds a slot of edge_admit_take */
    int in_user_index;
    int claiming;       /* a cluster user claim is in flight (edge_authz.c) */
    uint64_t claim_rev; /* != 0: this connection holds its user's cluster claim */
    edge_held_t *held;  /* commands received before the socket opened */
    int pending;        /* 1 while the handshake is in flight */
    /* handshake-only state (freed once open) */
    int hs_fd;    /* the socket while its request is decided, else -1 */
    char *hs_req; /* the request replayed into lws once admitted */
    size_t hs_req_len;
    char **offered; /* offered subprotocols, bearer.* removed */
    size_t n_offered;
    char *bearer_offer; /* the first offered bearer.<token> entry, echoed if nothing else is */
    int admitted;       /* decided: the replayed request is let through */
} edge_conn_t;

/* ---- the hand-over queue (any thread -> service thread) ---------------- */
typedef enum {
    EDGE_Q_CMD = 1,
    EDGE_Q_PUBLISH,
    EDGE_Q_ACK,
    EDGE_Q_AUTHZ,
} edge_q_kind_t;

typedef struct edge_q {
    struct edge_q *next;
    edge_q_kind_t kind;
    union {
        struct {
            bus_cmd_t cmd; /* strings point into the item's own storage */
            bus_reply_t *reply;
            int status; /* the answer, while on edge_loop_t.replies */
        } cmd;
        struct {
            edge_msg_t *m;
            char *channel, *route, *exclude;
        } pub;
        struct {
            char conn_id[EDGE_ID_LEN + 1];
            int status;
            size_t bytes;    /* counted in the connection's unacked */
            size_t body_len; /* counted in the loop's bytes_outstanding */
            int type;
        } ack;
        struct {
            char conn_id[EDGE_ID_LEN + 1];
            int status;   /* HTTP status, or 0 for transport failure; with
                             claim: bus_user_claim's result */
            char *body;   /* response body (owned); with claim: the user */
            int claim;    /* 1: a user claim's verdict, not the authorizer's */
            uint64_t rev; /* claim: the claim's revision when status is 0 */
        } authz;
    } u;
    char store[]; /* copies of strings and data */
} edge_q_t;

struct edge_held {
    edge_held_t *next;
    edge_q_t *q; /* an EDGE_Q_CMD item */
};

typedef struct edge_authz edge_authz_t;
typedef struct edge_loop edge_loop_t;
typedef struct edge_parked edge_parked_t; /* an event the bus had no room for */

/* ---- requests being read (edge_accept.c; service thread) ------------------ */
#define EDGE_REQ_MAX_PENDING 1024 /* being read per loop: the oldest goes beyond */
typedef struct edge_reading edge_reading_t;

/* Service thread: takes an accepted socket; edge_hs_decide gets the request. */
void edge_req_accept(edge_loop_t *e, int fd, const struct sockaddr_storage *sa);
/* Answers 408 to requests incomplete after the header timeout (all: 503). */
void edge_req_reap(edge_loop_t *e, int64_t now, int all);
typedef struct edge_fanout edge_fanout_t;
typedef struct edge_pmd edge_pmd_t;

/* ---- connection timers (edge_timer.c; service thread only) ---------------
 * One hashed timing wheel instead of an lws timer per connection: lws keeps
 * its timers in one sorted list (O(connections) per re-arm), this is O(1).
 * Deadlines are honoured within one slot (EDGE_WHEEL_MS) after they pass. */
#define EDGE_WHEEL_MS 100
#define EDGE_WHEEL_SLOTS 1024 /* one turn = 102.4 s; later deadlines wait in place */
typedef struct {
    struct edge_conn *slot[EDGE_WHEEL_SLOTS];
    int64_t done; /* last slot number (ms / EDGE_WHEEL_MS) processed; 0 = none yet */
} edge_wheel_t;

/* (Re)arms c to fire edge_on_timer at at_ms (or within one slot after). */
void edge_timer_arm(edge_loop_t *e, struct edge_conn *c, int64_t at_ms);
/* Disarms c; harmless when not armed. Needs no edge: safe from edge_conn_free. */
void edge_timer_disarm(struct edge_conn *c);
/* Fires every deadline up to now (from the edge's tick). */
void edge_timer_run(edge_loop_t *e, int64_t now);

/* The process's edge: what its loops share. */
typedef struct edge_life edge_life_t;

struct edge {
    const wsg_config_t *cfg;
    bus_t *bus;
    char *edge_id;
    struct edge_life *life; /* for event acks that outlive the edge */
    int serving_cmd;        /* registered with the bus (edge_free undoes) */
    wsg_listen_addr_t addr; /* edge.listen, with the bound port once loop 0 listens */
    int any_pmd;            /* a route has compression on */
    wsg_cidrs_t trusted;    /* edge.trusted_proxies, parsed; read-only */
    int port;
    edge_authz_t *authz; /* the authorizer and claim threads, shared by the loops;
                            NULL once stopped (edge_free) */
    size_t n_loops;
    edge_loop_t **loops; /* loops[0] runs on edge_run's caller, the others on threads */
    pthread_t *threads;
    size_t n_threads;   /* started */
    pthread_mutex_t mu; /* guards what follows (any loop's thread) */
    edge_map_t per_ip;  /* ip -> (uintptr_t) count */
    edge_map_t users;   /* route \x1f user -> edge_conn_t (identity only, except on its loop) */
    size_t n_admitted;  /* connections counted against edge.max_connections */
};

/* One service thread: an lws context on the shared port and its libev loop. */
struct edge_loop {
    edge_t *edge;         /* its config, bus, id and authorizer threads */
    unsigned idx;         /* in edge->loops */
    struct ev_loop *loop; /* libev (epoll), driven by edge_run */
    edge_wheel_t wheel;   /* every open connection's next ping/idle/lifetime deadline */
    struct lws_context *ctx;
    struct lws_vhost *vh;
    int listen_fd; /* this loop's listening socket (edge.c), -1 once closed */
    ev_io listen_w;
    int listen_paused; /* accept failed for want of resources: resumed by the tick */
    int port;

    edge_reading_t *reqs_head, *reqs_tail; /* requests being read (edge_accept.c) */
    size_t n_reqs;

    edge_map_t conns;    /* id -> edge_conn_t (open and pending) */
    edge_map_t by_fd;    /* "fd" -> edge_conn_t whose decided request lws has not upgraded */
    edge_map_t channels; /* channel -> edge_members_t */
    size_t n_conns;      /* open + pending, on this loop */

    edge_conn_t **rx_conns; /* fd -> open connection whose reads edge_rxcheck.c follows */
    size_t rx_conns_cap;

    edge_conn_t *upgrading; /* admitted in CONFIRM_UPGRADE, waiting for ESTABLISHED */
    struct lws *upgrading_wsi;

    bus_consumer_t *bc;  /* bus commands and publishes for this loop */
    int serving_pub;     /* edge_bus_publish registered on bc */
    pthread_mutex_t qmu; /* guards q_head/q_tail/stopping only */
    edge_q_t *q_head, *q_tail;
    int stop_requested;
    int fence_requested; /* under qmu: edge_fence() asked this loop to close every client */
    edge_q_t *replies, *replies_tail; /* applied commands not yet answered (service thread) */
    int stopping;                     /* service-thread view */
    int64_t stop_deadline_ms;
    /* Client events taken by the bus and not yet acked (their ack handled
     * here), and the budget they stay within: this loop's share of
     * bus_event_capacity(). What does not fit waits in the parked list, in
     * the order it was made (edge_events.c). */
    size_t acks_outstanding, bytes_outstanding;
    size_t budget_events, budget_bytes;
    edge_parked_t *parked_head, *parked_tail;
    size_t n_parked;
    int64_t overload_logged_ms; /* last "edge overloaded" warning */

    unsigned char evid_prefix[8]; /* event ids: this prefix and a counter */
    uint64_t evid_next;
    edge_fanout_t *fanout;   /* NULL: fan-out on the service thread alone */
    edge_pmd_t *pmd;         /* permessage-deflate streams, made on first use (edge_pmd.c) */
    edge_conn_t **fan_conns; /* publish scratch: members writable now */
    size_t fan_cap;
    lws_sorted_usec_list_t sul_tick;
    wsg_ts_cache_t ts; /* event timestamps: the date and time of one second */
};

/* edge.c */
int64_t edge_now_ms(void);
/* The strictest routes[].limits.handshake_timeout: the route is not known
 * before the request's headers are complete. */
uint64_t edge_header_timeout_ms(const wsg_config_t *cfg);
void edge_post(edge_loop_t *e, edge_q_t *q); /* any thread */
/* The loop that owns (or would own) connection id. */
edge_loop_t *edge_loop_of(const edge_t *E, const char *conn_id);
/* Posts q to E's loop that owns conn_id. Any thread that holds E alive:
 * an authorizer thread (stopped before the loops are freed), a loop. */
void edge_post_conn(edge_t *E, const char *conn_id, edge_q_t *q);
/* Event acks may come after edge_free (the bus calls them until
 * bus_free): each holds a reference on its edge's edge_life_t, which says
 * whether the edge is still there. */
edge_life_t *edge_life_ref(edge_t *E);
/* Posts q to loop e if the edge is still there (1), else 0 (q not taken);
 * drops the reference either way. Any thread. */
int edge_life_post(edge_life_t *life, edge_loop_t *e, edge_q_t *q);
void edge_life_unref(edge_life_t *life);
edge_q_t *edge_q_new(edge_q_kind_t kind, size_t extra);
void edge_q_free(edge_q_t *q);
/* A new connection id owned by loop e (edge_loop_of). */
void edge_make_id(const edge_loop_t *e, char out[EDGE_ID_LEN + 1]);

/* edge_handshake.c */
int edge_on_confirm_upgrade(edge_loop_t *e, struct lws *wsi);
int edge_on_http(struct lws *wsi); /* lws saw a plain HTTP request: 400 */
int edge_on_add_headers(edge_loop_t *e, struct lws *wsi, void *in);
void edge_on_authz_result(edge_loop_t *e, edge_q_t *q);
void edge_send_http_status(int fd, int status, const char *extra_headers, const char *body);
/* Answers status on a held handshake, replies WSG_EGONE to its held
 * commands and frees it. */
void edge_hs_refuse(edge_loop_t *e, edge_conn_t *c, int status, const char *why);
/* Counts a new connection from ip against edge.max_connections and
 * edge.max_connections_per_ip, across loops: 0, or the refusal's status (503,
 * 429) with nothing counted. edge_admit_release gives the slot back. */
int edge_admit_take(edge_loop_t *e, const char *ip);
void edge_admit_release(edge_loop_t *e, const char *ip);
/* Forgets the socket c's request was held on (its by_fd entry); lws owns it
 * now, or it is closed. */
void edge_hs_unhold(edge_loop_t *e, edge_conn_t *c);
/* Frees a connection admitted in CONFIRM_UPGRADE that never reached
 * ESTABLISHED (lws runs both in one call, so any left over is dead). */
void edge_hs_drop_orphan(edge_loop_t *e);
/* `reject` routes: reserves c's user from handshake acceptance on, so that
 * two handshakes in flight cannot both be admitted; WSG_EEXISTS when taken.
 * Released by edge_user_index(e, c, 0) (conn_unregister, edge_on_closed).
 * WSG_FORBIDDEN: c has no user and its route addresses clients by user
 * (protocol ws-api-gateway). */
int edge_user_reserve(edge_loop_t *e, edge_conn_t *c);
/* The refusal of an edge_user_reserve() error: its HTTP status and why. */
int edge_user_refusal(int rc, const char **why);
/* on: c becomes its user's connection (edge_on_confirm_upgrade, before the
 * 101 is written); under `replace` the one it displaces is closed 4409 on
 * its loop. off: c leaves the index (and its cluster claim goes). */
void edge_user_index(edge_loop_t *e, edge_conn_t *c, int on);
/* Decides a complete request (read by edge_accept.c): refuses it on its socket,
 * gives it to lws rebuilt, or holds it for the authorizer or a user claim.
 * Takes r->fd (sets it to -1). */
void edge_hs_decide(edge_loop_t *e, edge_req_t *r);

/* Sets c's expiry to Unix second unix_s (closes 1008 "token expired" then)
 * when its route has limits.close_on_token_expiry; else none. */
void edge_conn_set_expiry(edge_conn_t *c, int64_t unix_s);

/* edge_conn.c */
int edge_on_established(edge_loop_t *e, struct lws *wsi, edge_conn_t **slot);
int edge_on_receive(edge_loop_t *e, edge_conn_t *c, const void *in, size_t len);
int edge_on_writeable(edge_loop_t *e, edge_conn_t *c);
int edge_on_timer(edge_loop_t *e, edge_conn_t *c);
/* The client's close frame: 0 to let lws echo it, or -1 once c is being
 * closed with 1002 (1-byte body, a code a client may not send) or 1007 (a
 * reason that is not UTF-8). */
int edge_on_peer_close(edge_loop_t *e, edge_conn_t *c, const unsigned char *in, size_t len);
/* edge_on_peer_close's judgement, without lws (the fuzz target drives it):
 * 0 with *code the client's (1005 for an empty body), or the code to close
 * with (1002, 1007) and *why, a static reason. */
int edge_close_check(const unsigned char *in, size_t len, int *code, const char **why);
/* The reassembly step of edge_on_receive, without lws (the fuzz target
 * drives it): one piece of a message's payload as lws hands it over (first:
 * the message's first piece; final: its last; remaining: bytes lws still
 * holds of the current frame), under max bytes per message. EDGE_RX_WHOLE
 * sets *msg (in, or c->rx) and *msg_len to the whole message: deliver it,
 * then edge_rx_reset(c). EDGE_RX_TOO_BIG has already dropped what was kept. */
enum { EDGE_RX_PART = 0, EDGE_RX_WHOLE = 1, EDGE_RX_TOO_BIG = 2 };
int edge_rx_take(edge_conn_t *c, const void *in, size_t len, int first, int final, size_t remaining,
                 size_t max, const unsigned char **msg, size_t *msg_len);
void edge_rx_reset(edge_conn_t *c);
void edge_on_closed(edge_loop_t *e, edge_conn_t *c);
void edge_conn_close(edge_loop_t *e, edge_conn_t *c, int code, const char *reason,
                     const char *initiator);
/* Closes c at once (no queued frame goes first) with code, initiator
 * "server", from an lws callback about c: returns what the callback must
 * return (-1: lws sends the close frame and closes). */
int edge_conn_fail(edge_loop_t *e, edge_conn_t *c, int code, const char *reason);
/* Queues m to c (takes a reference). Returns 0, WSG_EFULL (closed as slow consumer). */
int edge_conn_queue(edge_loop_t *e, edge_conn_t *c, edge_msg_t *m);
/* 1 when m to c would go out at once (edge_conn_queue's direct write):
 * open, nothing queued, no ping due, within the limit, lws holds nothing. */
int edge_conn_writable_now(const edge_conn_t *c, const edge_msg_t *m);
void edge_conn_count_out(const edge_msg_t *m); /* frames/bytes out metrics */

/* edge_fanout.c: one message to many connections on two threads */
#define EDGE_FANOUT_MIN 512 /* fewer writable members: the service thread alone */
/* *out NULL when the machine has no CPU beyond the edge's loops. */
int edge_fanout_new(edge_fanout_t **out, size_t n_loops);
void edge_fanout_free(edge_fanout_t *f);
/* Writes m to conns[0..n), each edge_conn_writable_now; returns how many
 * got it (sent, or queued behind what the kernel did not take). */
size_t edge_fanout_write(edge_loop_t *e, edge_conn_t **conns, size_t n, edge_msg_t *m);
void edge_conn_free(edge_conn_t *c);
void edge_conn_set_context(edge_conn_t *c, const char *txt); /* edge_handshake.c */
void edge_on_ack(edge_loop_t *e, edge_q_t *q);
/* Stops reading from c while one of its events is parked or more than its
 * cap of event bytes waits for acks; resumes when neither holds (below half
 * the cap) or c is closing. Called after each change to any of these. */
void edge_conn_rx_check(edge_loop_t *e, edge_conn_t *c);

/* edge_channels.c */
/* Applies a command (takes q). Its answer waits on e->replies until
 * edge_flush_replies(): a burst of sends is answered back to back, so the
 * control API's waiting threads get one wake-up for the burst instead of one
 * per send (each answer can wake an MHD thread). */
void edge_apply_cmd(edge_loop_t *e, edge_q_t *q);
void edge_flush_replies(edge_loop_t *e);
void edge_apply_publish(edge_loop_t *e, edge_q_t *q);
int edge_chan_join(edge_loop_t *e, edge_conn_t *c, const char *channel);
void edge_chan_leave(edge_loop_t *e, edge_conn_t *c, const char *channel);
void edge_chan_leave_all(edge_loop_t *e, edge_conn_t *c);
/* Bus callbacks, run by the loop's bus consumer on its service thread
 * (edge_bus_cmd: ud is the edge; edge_bus_publish: ud is the loop). */
void edge_bus_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r);
void edge_bus_publish(void *ud, const bus_publish_t *p);
/* The consumer of the loop that owns cmd's connection; any thread. */
bus_consumer_t *edge_bus_route(void *ud, const bus_cmd_t *cmd);

/* edge_events.c */
/* Publishes connect/message/disconnect for c: hands it to the bus now, or
 * parks it when the loop's budget is spent or the bus answers WSG_EFULL
 * (c->parked counts it; the caller then pauses reading from c). Returns 0,
 * or WSG_EINVAL for an event the bus calls malformed (a bug; not kept). */
int edge_event_connect(edge_loop_t *e, edge_conn_t *c);
int edge_event_message(edge_loop_t *e, edge_conn_t *c, const unsigned char *data, size_t len,
                       int binary);
/* Records a subscription change this loop applied to c's channels
 * (op BUS_CMD_SUBSCRIBE or BUS_CMD_UNSUBSCRIBE) as c's next item in the
 * ordered event stream (BUS_EV_SUBSCRIPTION, for the registry). */
int edge_event_subscription(edge_loop_t *e, edge_conn_t *c, bus_cmd_op_t op, const char *channel);
int edge_event_disconnect(edge_loop_t *e, edge_conn_t *c, int code, const char *reason,
                          const char *initiator);
/* Sets every loop's budget: its share of bus_event_capacity(). */
void edge_events_budget(edge_t *E);
/* Offers parked events to the bus, oldest first, while the budget allows
 * and the bus takes them (after an ack, and on the tick). */
void edge_events_pump(edge_loop_t *e);
/* Frees what is still parked (shutdown grace expired). */
void edge_events_drop_parked(edge_loop_t *e);

/* edge_rxcheck.c */
/* The calling thread serves e (NULL: no longer): lws's reads on this thread
 * are followed for e's connections. */
void edge_rxcheck_thread(edge_loop_t *e);
/* c is open: lws's reads of its socket are followed from now on. Returns 1
 * when c already sent an unmasked frame and nothing before it is left to
 * deliver (the caller closes it). */
int edge_rxcheck_open(edge_loop_t *e, edge_conn_t *c);
void edge_rxcheck_closed(edge_loop_t *e, edge_conn_t *c); /* no longer followed */
/* After lws delivered the end of one of c's data frames: 1 when that was the
 * last one before an unmasked frame (the caller closes c with 1002). */
static inline int edge_rxcheck_frame_done(edge_conn_t *c)
{
    return c->rxc.unmasked && c->rxc.wait && --c->rxc.wait == 0;
}
#define EDGE_UNMASKED_REASON "client frame not masked"

/* edge_fanout.c: an RFC 6455 server frame header (FIN, text or binary,
 * RSV1 when rsv1) for len bytes into h (10 bytes); returns its length. */
size_t edge_frame_header(unsigned char *h, size_t len, int binary, int rsv1);

/* edge_pmd.c: permessage-deflate (service thread) */
/* Messages shorter than this go uncompressed: at 64 and 128 bytes deflate
 * saves little or nothing on JSON and costs a deflate per publish
 * (docs/edge.md "Compression"). */
#define EDGE_PMD_MIN 256
#define EDGE_PMD_ANSWER "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
/* 1 when the request offers permessage-deflate in a form the edge accepts. */
int edge_pmd_offered(const edge_req_t *req);
/* Inflates one message (RSV1 frames, the trailer added here) into a loop
 * buffer (*out, valid until the next call); WSG_ETOOBIG past max bytes,
 * WSG_EPROTO for bad data. */
int edge_pmd_inflate(edge_loop_t *e, const unsigned char *in, size_t n, size_t max,
                     const unsigned char **out, size_t *out_len);
/* m's compressed frame (made once, owned by m), or NULL: send m plain. */
edge_msg_t *edge_pmd_frame(edge_loop_t *e, edge_msg_t *m);
void edge_pmd_free(edge_pmd_t *z);

/* edge_tls.c (wss://; see there for the threads) */
/* Loads edge.tls; no-op without cert_file. */
int edge_tls_init(const wsg_config_t *cfg, char *err, size_t errlen);
void edge_tls_free(void);
int edge_tls_enabled(void);
/* fd (just accepted) speaks TLS from now on; its session ends at close(). */
int edge_tls_adopt(int fd);
int edge_tls_is(int fd);
/* recv() of fd: SSL_read for a TLS socket, recvfrom() otherwise. */
ssize_t edge_tls_read(int fd, void *buf, size_t len, int flags);
/* Plaintext OpenSSL decrypted of fd and holds unread (0: none, not TLS). */
size_t edge_tls_held(int fd);
/* Feeds e's loop a read event for fd when OpenSSL holds plaintext of it
 * that was not read yet (no readiness event would come for it). */
void edge_tls_kick(edge_loop_t *e, int fd);

/* edge_authz.c */
typedef struct {
    char conn_id[EDGE_ID_LEN + 1];
    const char *url;
    const unsigned char *key;
    size_t key_len;
    char *body; /* taken */
    uint64_t timeout_ms;
} edge_authz_req_t;

/* One per process (edge_t); NULL *out when no route needs it. */
int edge_authz_new(edge_authz_t **out, edge_t *e, char *err, size_t errlen);
/* Starts a request; the result comes back as an EDGE_Q_AUTHZ item. */
int edge_authz_start(edge_authz_t *a, edge_authz_req_t *req);
/* 1 when c's user must also be claimed cluster-wide before the 101: a
 * `reject` route, a user, and a bus shared by several edges. */
int edge_claim_needed(const edge_loop_t *e, const edge_conn_t *c);
/* Claims c's user with bus_user_claim() on a claim thread; the verdict
 * comes back as an EDGE_Q_AUTHZ item with claim = 1. Returns 0 or
 * WSG_EUNAVAILABLE (no claim threads). */
int edge_claim_start(edge_authz_t *a, const edge_conn_t *c);
/* Drops a claim (bus_user_release) on a claim thread; fire and forget. */
void edge_claim_release(edge_authz_t *a, const char *route, const char *user, const char *conn_id,
                        uint64_t rev);
/* Stops the threads (claim releases already queued are made first) and
 * detaches a from its edge. NULL allowed. */
void edge_authz_free(edge_authz_t *a);

#endif
