/* SPDX-License-Identifier: MIT */
/*
 * api_int.h — internals of the control API shared by its files.
 *
 * A request (HTTP or one item of a batch) is an api_req_t: decoded path
 * segments, decoded query, body, the verified claims, and the answer being
 * built (status + JSON body). A handler either answers at once (returns
 * API_DONE) or starts bus commands and returns API_ASYNC; every reply then
 * calls api_req_reply() and the last one finishes the request through
 * r->done (HTTP: resume the suspended MHD connection; batch: fill the item).
 *
 * Threads: handlers run on MHD threads; reply callbacks on whichever thread
 * the bus calls them. Store handles come from a pool (one thread at a time
 * per handle, store.h's rule).
 */
#ifndef WSG_API_INT_H
#define WSG_API_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "bus/bus.h"
#include "common/config.h"
#include "common/jwt.h"
#include "common/text.h"
#include "control-api/api.h"
#include "store/store.h"

#define API_MAX_SEGS 8
#define API_MAX_QUERY 16
#define API_DONE 0
#define API_ASYNC 1
/* Longest request-target answered by the API (414 problem above it; MHD's
 * own HTML 414 only past what its 16 KiB connection pool holds: api.c). */
#define API_URI_MAX 8192

typedef enum { API_GET = 1, API_PUT = 2, API_POST = 4, API_DELETE = 8, API_HEAD = 16 } api_method_t;

typedef struct {
    char *key;
    char *val;
} api_kv_t;

/* api_edge_cache.c: connection -> edge for the cluster's commands, fed by
 * connect/disconnect events and store reads (any thread). get returns 1 on
 * a hit; put ignores ids that do not fit; drop forgets a connection (its
 * disconnect, or its edge did not answer 0). */
typedef struct api_edge_cache api_edge_cache_t;
api_edge_cache_t *api_edge_cache_new(void);
void api_edge_cache_free(api_edge_cache_t *c);
int api_edge_cache_get(api_edge_cache_t *c, const char *conn_id, char *edge, size_t len);
void api_edge_cache_put(api_edge_cache_t *c, const char *conn_id, const char *edge_id);
void api_edge_cache_drop(api_edge_cache_t *c, const char *conn_id);

typedef struct api_req api_req_t;
typedef void (*api_req_fn)(api_req_t *r);

struct api_req {
    api_t *a;
    int method;
    char *segs[API_MAX_SEGS];
    size_t nsegs;
    api_kv_t q[API_MAX_QUERY];
    size_t nq;
    const char *ctype; /* Content-Type as given, NULL when absent */
    const char *body;
    size_t body_len;
    const char *authz;          /* Authorization header; NULL in batch items */
    const char *raw_path;       /* HTTP: the path as sent (percent-encoded); NULL in batch items */
    struct MHD_Connection *mhd; /* HTTP: its headers (api_aws.c's SigV4); NULL in batch items */
    const wsg_claims_t *claims; /* NULL before auth; batch items share the parent's */
    wsg_claims_t claims_buf;
    void *auth_ref; /* the token-cache entry r->claims points into, or NULL */
    /* answer */
    int status;
    json_t *resp;   /* owned; JSON or problem document */
    int is_problem; /* resp is application/problem+json */
    char *raw;      /* owned text body (metrics), when resp is NULL */
    size_t raw_len;
    const char *raw_ctype;
    const char *allow;    /* 405: the Allow header */
    int www_auth;         /* 401: add WWW-Authenticate */
    const char *err_type; /* x-amzn-ErrorType of an @connections error (static), or NULL */
    int queued;           /* the answer is 200 {"queued":true} (resp NULL): HTTP
                           * sends the shared prebuilt response, a batch item
                           * builds the JSON (api_queued_json) */
    /* async */
    const char *edge_conn; /* a command went to this connection's known edge */
    atomic_int pending;
    atomic_int first_err; /* first non-zero reply status */
    api_req_fn finish;    /* handler's completion: maps replies to the answer */
    api_req_fn done;      /* owner's completion: HTTP resume or batch item */
    void *owner;
    void *scratch; /* handler state freed by the handler's finish */
};

/* A registry event whose store update waits for the store to come back. */
typedef struct api_held {
    struct api_held *next;
    const bus_event_t *ev; /* valid until bus_event_done(d) */
    bus_delivery_t *d;
} api_held_t;

typedef struct api_subwait api_subwait_t;

typedef struct {
    store_t **h;
    size_t n, free_n;
    size_t *free_idx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} api_pool_t;

/* api_auth.c: this API's verified tokens (see there). */
#define API_TOK_SLOTS 256
#define API_KEYFP_LEN 32
typedef struct api_tok api_tok_t;
typedef struct {
    pthread_mutex_t mu;
    api_tok_t *slot[API_TOK_SLOTS];
    unsigned char keyfp[API_KEYFP_LEN]; /* of cfg->api.jwt (api_auth_rekey) */
} api_tokcache_t;

struct api {
    const wsg_config_t *cfg;
    api_tokcache_t tokens;
    bus_t *bus;
    int cluster;                  /* cfg->nats not empty */
    api_edge_cache_t *edge_cache; /* cluster only */
    int watching;                 /* bus_event_watch() feeds edge_cache */
    struct MHD_Daemon *mhd;
    int tls;                          /* api.tls is on (api_tls.c) */
    struct api_deadlines *deadlines;  /* api_deadline.h: total request deadlines */
    struct MHD_Response *queued_resp; /* 200 {"queued":true}, shared */
    int port;
    api_pool_t pool;
    atomic_int inflight; /* suspended requests */
    /* answered requests waiting to be resumed (api.c: resume_later) */
    pthread_mutex_t resume_mu;
    struct http_ctx *resume_head;
    int resume_kicked; /* one resume is on its way to an MHD thread */
    int resume_direct; /* stopping: each reply resumes its own connection */
    /* registry */
    store_t *reg_st;
    pthread_mutex_t reg_mu;
    char **lost_ids; /* connections of a previous run, found at api_new */
    size_t n_lost;
    pthread_t maint;
    int maint_running;
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cv;
    int stopping;
    /* registry events held while the store is unavailable, in arrival
     * order (retried by the maintenance thread), and the time before which
     * no edge is declared lost (its heartbeats could not be recorded) */
    api_held_t *held_head, *held_tail;
    size_t n_held;
    /* the run being applied in one store transaction (bus thread, under
     * reg_mu, which that thread holds from a run's first event to its end) */
    api_held_t *run_head, *run_tail;
    int run_locked, run_open, run_bad;
    /* the run's disconnects not yet applied: deleted STORE_DELETE_MAX at a
     * time, and before any other event of the run (their order holds) */
    const char *gone[STORE_DELETE_MAX];
    size_t n_gone;
    int64_t sweep_from_ms;
    /* subscribe/unsubscribe requests waiting for the registry (api_subwait.c) */
    pthread_mutex_t sw_mu;
    api_subwait_t *sw_head; /* oldest first */
    atomic_size_t n_sw;
    uint64_t sw_replies; /* edge replies counted in arrival order (under sw_mu) */
};

/* api_routes.c */
int api_route(api_req_t *r);
int api_split_path(const char *url, char **segs, size_t *nsegs);
int api_parse_query(const char *qs, api_req_t *r);
const char *api_query(const api_req_t *r, const char *key);
int api_pct_decode(const char *in, size_t n, int plus, char **out);
void api_req_clear(api_req_t *r);
int api_route_known(const char *method, const char *path);

/* api_http.c: HTTP/1.1 framing rules libmicrohttpd leaves to us, checked on
 * a request's head before its body (MHD threads). check_head returns 0, or
 * the status to refuse the request with (400, 501) and a detail;
 * check_target returns 0, 400 or 414 and the request-target's length, which
 * refuse_target turns into the problem answer. */
struct MHD_Connection;
int api_http_check_head(struct MHD_Connection *conn, const char *version, char *detail, size_t len);
int api_http_check_target(const char *uri, size_t *len);
int api_http_refuse_target(api_req_t *r, int status, size_t len);

/* api_problem.c */
json_t *api_problem_json(int status, const char *detail);
int api_problem(api_req_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int api_json(api_req_t *r, int status, json_t *body_new);
int api_empty(api_req_t *r, int status);
/* 200 {"queued":true}: a send the holding edge queued. No allocation; the
 * body is API_QUEUED_BODY. */
int api_queued(api_req_t *r);
#define API_QUEUED_BODY "{\"queued\":true}"
int api_from_err(api_req_t *r, int err, const char *what);

/* api_auth.c */
int api_authenticate(api_req_t *r, const char *authz);
void api_auth_release(void *ref);
/* Sets up / empties a's token cache (api_new, api_free; a->cfg set). */
void api_auth_init(api_t *a);
void api_auth_free(api_t *a);
/* Takes a->cfg->api.jwt as it is now: cached tokens verified under other
 * settings no longer count (they are verified again). */
void api_auth_rekey(api_t *a);
int api_require_channel(api_req_t *r, const char *channel);
/* For what reaches every connection (a broadcast): 0 when the token has no
 * channels claim, else answers 403 and returns -1. */
int api_require_all_channels(api_req_t *r, const char *what);
int api_check_scope(api_req_t *r, const char *scope);

/* api_body.c */
typedef struct {
    const unsigned char *data; /* the payload: into the body, or == owned */
    size_t len;
    int binary;
    unsigned char *owned; /* decoded copy (JSON bodies) the caller frees, or NULL */
} api_msg_t;
/* Parses a message body by Content-Type. Returns 0, or an HTTP status
 * (400/415) with detail in err. */
int api_parse_message(const char *ctype, const char *body, size_t len, api_msg_t *out, char *err,
                      size_t errlen);
int api_media_is(const char *ctype, const char *want);
/* *out = the query parameter key (NULL when absent). A non-empty value must
 * be a valid channel name (wsg_channel_valid). Returns 0, or answers 400 and
 * returns -1. */
int api_query_channel(api_req_t *r, const char *key, const char **out);
int api_parse_limit(api_req_t *r, size_t *limit);

/* api_conn.c / api_channels.c / api_users.c / api_batch.c / api_dead.c / api_ops.c /
 * api_dash.c */
int api_h_send(api_req_t *r);
int api_h_conn_get(api_req_t *r);
int api_h_conn_delete(api_req_t *r);
int api_h_conn_list(api_req_t *r);
int api_h_subscribe(api_req_t *r);
int api_h_unsubscribe(api_req_t *r);
int api_h_members(api_req_t *r);
int api_h_publish(api_req_t *r);
int api_h_channels(api_req_t *r);
int api_h_broadcast(api_req_t *r);
/* api_grip.c: Pushpin's POST /publish/ (scope publish) */
int api_h_grip_publish(api_req_t *r);
/* api_aws.c: API Gateway's @connections API (SigV4 or bearer token) */
int api_h_aws_post(api_req_t *r);
int api_h_aws_get(api_req_t *r);
int api_h_aws_delete(api_req_t *r);
/* api_wsaas.c: PUT/DELETE <ws_hostname path>/{id} of wsaas routes. path:
 * 1 when r's method and path are one of those (api_route asks it where no
 * route of its table matches). */
int api_wsaas_path(const api_req_t *r);
int api_h_wsaas(api_req_t *r);
int api_h_user_send(api_req_t *r);
int api_h_user_delete(api_req_t *r);
int api_h_batch(api_req_t *r);
int api_h_dead_list(api_req_t *r);
int api_h_dead_replay(api_req_t *r);
int api_h_healthz(api_req_t *r);
int api_h_readyz(api_req_t *r);
int api_h_metrics(api_req_t *r);
int api_h_openapi(api_req_t *r);
int api_h_dashboard(api_req_t *r);
/* api_ops.c: answers 200 with a copy of len bytes of data as ctype. */
int api_raw_copy(api_req_t *r, const char *data, size_t len, const char *ctype);
int api_h_stats(api_req_t *r);

/* async helpers (api.c) */
void api_req_start(api_req_t *r, int n, api_req_fn finish);
void api_req_reply(api_req_t *r, int status);
void api_reply_cb(void *ud, int status);
/* The edge holding conn_id (cluster: remembered, else its connections row;
 * copied into buf), or NULL = every edge (standalone; cluster when not
 * recorded yet). *rc is 0 or a store error. With an edge, r->edge_conn is
 * set: a reply other than 0 makes the cache forget the connection. */
const char *api_edge_for(api_req_t *r, const char *conn_id, char *buf, size_t len, int *rc);

/* store pool (api.c) */
store_t *api_store_get(api_t *a);
void api_store_put(api_t *a, store_t *st);

/* api_subwait.c: a subscribe/unsubscribe request answered once the store
 * shows it. add: r waits (one of its api_req_reply shares) for the record
 * of (conn, channel, op); cancel: gives r's share with status if it still
 * waits (returns 1); replied: the edge applied r's change (status 0);
 * applied: the registry recorded one; check: the
 * maintenance thread's pass (store lookups, timeouts), returns 1 while
 * requests wait; stop: gives every share WSG_EUNAVAILABLE. */
void api_subwait_init(api_t *a);
int api_subwait_add(api_t *a, api_req_t *r, const char *conn_id, const char *channel,
                    bus_cmd_op_t op);
int api_subwait_cancel(api_t *a, api_req_t *r, int status);
void api_subwait_replied(api_t *a, api_req_t *r, const char *conn_id, const char *channel);
void api_subwait_applied(api_t *a, const char *conn_id, const char *channel, bus_cmd_op_t op,
                         int status);
int api_subwait_check(api_t *a);
void api_subwait_stop(api_t *a);

/* api_registry.c */
int api_registry_init(api_t *a, char *err, size_t errlen);
int api_registry_start(api_t *a);
void api_registry_stop(api_t *a);
/* Wakes the maintenance thread (a request began waiting: its poll starts
 * now, not at the next one-second tick). Any thread. */
void api_registry_poke(api_t *a);
void api_registry_free(api_t *a);
int api_registry_lose(api_t *a, const store_conn_t *c);

/* api_tls.c: api.tls on libmicrohttpd's GnuTLS (threads: see there) */
#define API_TLS_MAX_OPTS 4
struct MHD_OptionItem;
/* Loads api.tls: *flags gets MHD_USE_TLS (0 without cert_file) and o (at
 * least API_TLS_MAX_OPTS items) the options for MHD_OPTION_ARRAY, ended by
 * MHD_OPTION_END. Returns 0 or WSG_ECONFIG with err set. */
int api_tls_start(const wsg_tls_conf_t *t, unsigned *flags, struct MHD_OptionItem *o, char *err,
                  size_t errlen);
void api_tls_stop(void); /* after the daemon stopped */

extern const char api_openapi_json[];
extern const size_t api_openapi_json_len;
extern const char api_dashboard_html[];
extern const size_t api_dashboard_html_len;

#endif
