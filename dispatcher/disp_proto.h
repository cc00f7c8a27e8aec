/* SPDX-License-Identifier: MIT */
/*
 * disp_proto.h — what a route's backend speaks (route key `protocol`): the
 * one place where a protocol differs from another. A protocol turns a
 * connection's events (the stored JSON envelopes, in order) into the body
 * and extra headers of one request, and a 2xx answer into response actions.
 * Everything else (backend choice, concurrency, order, retries, dead
 * letters, signing with the Standard Webhooks headers) is the dispatcher's
 * and the same for every protocol. Adding a protocol is one
 * disp_proto_<name>.c file plus a line in disp_proto_for().
 *
 * Threads: the tables are constant; every function is reentrant (the
 * dispatcher calls them on its delivery thread, unit tests anywhere).
 * Ownership: inputs are borrowed; outputs documented per member.
 */
#ifndef WSG_DISP_PROTO_H
#define WSG_DISP_PROTO_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "bus/bus.h"
#include "common/config.h"
#include "common/jtext.h"
#include "store/store.h"
#include "dispatcher/disp_internal.h"

/* What one 2xx answer says. */
typedef struct {
    disp_action_t *acts; /* new: free with disp_actions_free(acts, n) */
    size_t n;
    size_t skipped; /* entries that were malformed or not allowed, left out */
    size_t ignored; /* entries the protocol defines but wsgate does not act on */
} disp_answer_t;

typedef struct {
    const char *name;
    /* Content-Type of the request body. */
    const char *content_type;
    /* true: an answer parse() refuses fails the attempt (retried, then
     * dead-lettered); false: it is logged and the events are acknowledged. */
    bool strict_answer;
    /* true: a connect event that is dead-lettered closes its connection
     * (the original refuses a connection its backend did not accept). */
    bool dead_connect_closes;
    /* true: Set-Meta-* answer headers are kept per connection and sent back
     * as Meta-* request headers (disp_meta_merge). */
    bool keeps_meta;
    /* Body of one request for evs[0..n) of one connection (n >= 1) of
     * route r. *body
     * is either borrowed from evs (then *owned is NULL) or equal to *owned,
     * a new buffer the caller frees. Returns 0, WSG_EPROTO (an envelope it
     * cannot read; detail in err), WSG_ENOMEM. */
    int (*body)(const wsg_route_conf_t *r, const bus_event_t *const *evs, size_t n,
                const char **body, size_t *len, char **owned, char *err, size_t errlen);
    /* Appends the protocol's own request headers for connection conn_id of
     * route r to *l; meta: the connection's kept "Meta-*: v" lines (may be
     * NULL). NULL: none. Returns 0, WSG_ENOMEM, WSG_EINVAL. */
    int (*headers)(const wsg_route_conf_t *r, const char *conn_id, const struct curl_slist *meta,
                   struct curl_slist **l);
    /* Parses a 2xx answer body of route r. opening: the request's first
     * event was a connect. Returns 0 (out filled), WSG_EPROTO (detail in err; out
     * empty), WSG_ENOMEM. */
    int (*parse)(const wsg_route_conf_t *r, const char *body, size_t len, bool opening,
                 disp_answer_t *out, char *err, size_t errlen);
    /* HTTP method of a request whose (first) event is of type t. NULL
     * member: POST for every request. */
    const char *(*method)(bus_event_type_t t);
    /* (Whether a protocol batches is wsg_protocol_one_event, common/config.h:
     * the config check and the dispatcher read the same rule.) */
    /* Header lines taken from the first event (ev) of each request of a
     * connection, kept for the connection and given to headers() as meta
     * on its every request, this one included: an event that carries the
     * protocol's member replaces what was kept, one without it (an API's
     * edge_lost disconnect) leaves it. Every event of the connection
     * carries it, so a dispatcher that takes the connection's partition
     * over mid-connection has it too. NULL: none. Returns 0 or
     * WSG_ENOMEM. */
    int (*keep)(const bus_event_t *ev, struct curl_slist **kept);
} disp_proto_t;

/* The table of protocol p; NULL for a protocol this build does not have
 * (the config loader refuses those before the dispatcher starts). */
const disp_proto_t *disp_proto_for(wsg_protocol_t p);

extern const disp_proto_t disp_proto_wsgate;
extern const disp_proto_t disp_proto_grip;
extern const disp_proto_t disp_proto_aws;
extern const disp_proto_t disp_proto_wsaas;
extern const disp_proto_t disp_proto_wsapi;

/* ---- disp_proto_grip.c: pure pieces, exposed for unit tests ---------------- */

/* Grip-Sig lifetime in seconds (Pushpin signs for one hour). */
#define DISP_GRIP_SIG_TTL_S 3600

/* Appends one WebSocket-over-HTTP event ("TYPE\r\n" or
 * "TYPE <hex len>\r\n<content>\r\n") to b. */
void disp_grip_event(wsg_sbuf_t *b, const char *type, const void *content, size_t len,
                     bool has_content);

/* Most bytes of "Meta-*" lines kept per connection; Set-Meta-* beyond it
 * are dropped (a backend cannot grow the dispatcher's memory unbounded). */
#define DISP_META_MAX_BYTES 8192

/* Reads one answer header line; a "Set-Meta-<name>: <value>" line with a
 * token name and a value without control characters is appended to *set
 * as "Meta-<name>: <value>" (an empty value: "Meta-<name>:", a removal)
 * while *bytes stays within DISP_META_MAX_BYTES. Returns 0 (also for other
 * lines) or WSG_ENOMEM. */
int disp_meta_header(const char *line, size_t n, struct curl_slist **set, size_t *bytes);

/* Applies set (in order) to *meta: each line replaces the line of the same
 * name, an empty value removes it. Returns 0, WSG_EINVAL (the result would
 * pass DISP_META_MAX_BYTES) or WSG_ENOMEM; on error *meta is unchanged. */
int disp_meta_merge(struct curl_slist **meta, const struct curl_slist *set);

/* The parse member of disp_proto_grip (disp_proto_grip_answer.c). */
int disp_grip_parse(const wsg_route_conf_t *r, const char *body, size_t len, bool opening,
                    disp_answer_t *out, char *err, size_t errlen);

/* ---- disp_proto_aws.c: pure pieces, exposed for unit tests ----------------- */

/* The routeKey a message gets: with rse "$request.body.a.b" and data a JSON
 * object whose a.b is a non-empty string, that string; else "$default".
 * Writes into out (cut at n). Returns 0. */
int disp_aws_route_key(const char *rse, const char *data, size_t len, char *out, size_t n);

/* The Lambda-proxy event of one envelope of route r, as new JSON text in
 * *out (free it). Returns 0, WSG_EPROTO (not an envelope; detail in err),
 * WSG_ENOMEM. */
int disp_aws_event(const wsg_route_conf_t *r, const bus_event_t *ev, char **out, size_t *len,
                   char *err, size_t errlen);

/* ---- disp_proto_wsaas.c: pure pieces, exposed for unit tests --------------- */

/* 1 when a wsaas connect answer accepts the connection: a JSON object whose
 * "code" is the string "OK" (other members ignored), else 0. */
int disp_wsaas_accepts(const char *body, size_t len);

/* ---- disp_proto_wsapi.c: ws-api-gateway's user table ------------------------ */

/* Which connection of a ws-api-gateway route each user is (any thread;
 * its own mutex). */
typedef struct disp_users disp_users_t;

int disp_users_new(disp_users_t **out);
void disp_users_free(disp_users_t *t);
/* *conn_id: new copy of user's connection id (free it). Returns 0,
 * WSG_ENOTFOUND (no open of the user sent, or its close was), WSG_ENOMEM. */
int disp_users_find(disp_users_t *t, const char *user, char **conn_id);
/* The connection of user on route as the registry (store st) records it:
 * for a user whose events went to another dispatcher's stream (a cluster
 * with several), or whose open this table has not seen yet. *conn_id: new
 * copy. Returns 0, WSG_ENOTFOUND, WSG_ENOMEM or the store's error. The
 * caller owns st and calls from one thread. */
int disp_users_lookup(store_t *st, const char *route, const char *user, char **conn_id);
/* Before event ev's frame is sent: an open binds its user to its
 * connection, a close unbinds it. *send false: do not send this close (the
 * user is another connection's now). Returns 0 or WSG_ENOMEM. */
int disp_wsapi_track(disp_users_t *t, const bus_event_t *ev, bool *send);

#endif
