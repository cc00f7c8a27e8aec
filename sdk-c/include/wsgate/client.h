/* SPDX-License-Identifier: MIT */
/*
 * client.h — the control-API client: every endpoint of the gateway's REST
 * API (send, disconnect, connection info and lists, channels, publish,
 * broadcast, per-user operations, batch, dead letters, health).
 *
 * Shape (libcurl + nats.c): fill a wsgate_options, create a wsgate_client
 * from it (the options are copied: free or reuse them at once), call, and
 * free the client at the end.
 *
 * Threads: a wsgate_client is safe to share between threads: every call
 * below may run concurrently on one client. It keeps a pool of libcurl
 * handles (HTTP keep-alive: connections are reused) and mints its
 * control-API token itself, renewing it before it expires. Result objects
 * (wsgate_connection, wsgate_page, ...) belong to the caller's thread.
 * wsgate_client_new() calls curl_global_init() the first time; call
 * curl_global_init() yourself first if other threads already use libcurl.
 *
 * Errors: a call returns WSGATE_OK, or a status mapped from the answer:
 * 410 WSGATE_EGONE, 401 WSGATE_EAUTH, 403 WSGATE_EFORBIDDEN, 404
 * WSGATE_ENOTFOUND, other 4xx WSGATE_EBADREQUEST, 503 WSGATE_EUNAVAILABLE,
 * other 5xx WSGATE_ESERVER; no answer: WSGATE_ETIMEOUT or
 * WSGATE_ETRANSPORT. The gateway's RFC 9457 problem document is then in
 * wsgate_last_problem(). Idempotent calls (GET, PUT, DELETE) are retried on
 * transport errors, 502, 503 and 504 (wsgate_options_set_retries()); a POST
 * is never retried (it could be applied twice).
 */
#ifndef WSGATE_CLIENT_H
#define WSGATE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wsgate_options wsgate_options;
typedef struct wsgate_client wsgate_client;

/* New options with defaults: no URL, 10 s timeout, 2 retries, token TTL 1 h. */
WSGATE_API wsgate_status wsgate_options_new(wsgate_options **out);
WSGATE_API void wsgate_options_free(wsgate_options *o);

/* Base URL of the control API, e.g. "http://127.0.0.1:8081" (no /v1). */
WSGATE_API wsgate_status wsgate_options_set_url(wsgate_options *o, const char *url);

/* Use this fixed token (Authorization: Bearer). Replaces a signing key. */
WSGATE_API wsgate_status wsgate_options_set_token(wsgate_options *o, const char *token);

/* Mint the token from this key (HS: the shared secret of api.auth.jwt;
 * RS/ES: a PEM private key; key_len 0: NUL-terminated) with these scopes
 * (space-separated, e.g. "send publish read"; NULL: "admin"). Replaces a
 * fixed token. The token is minted at the first call and again before it
 * expires. The key is checked here: WSGATE_EKEY when alg cannot use it. */
WSGATE_API wsgate_status wsgate_options_set_signing_key(wsgate_options *o, wsgate_alg alg,
                                                        const void *key, size_t key_len,
                                                        const char *scope);

/* Channel globs for the minted token's "channels" claim (n 0: no claim). */
WSGATE_API wsgate_status wsgate_options_set_channels(wsgate_options *o, const char *const *channels,
                                                     size_t n);

/* "iss" and "aud" of the minted token, when api.auth.jwt checks them (NULL: none). */
WSGATE_API wsgate_status wsgate_options_set_issuer(wsgate_options *o, const char *issuer,
                                                   const char *audience);

/* Lifetime of a minted token, seconds (>= 10; default 3600). It is renewed
 * when less than a fifth of it is left. */
WSGATE_API wsgate_status wsgate_options_set_token_ttl(wsgate_options *o, int64_t ttl_s);

/* Whole-request timeout and connect timeout in milliseconds (> 0; defaults
 * 10000 and 3000). */
WSGATE_API wsgate_status wsgate_options_set_timeouts(wsgate_options *o, long request_ms,
                                                     long connect_ms);

/* Extra attempts for idempotent calls (0..10, default 2), with backoff
 * starting at 100 ms and doubling. */
WSGATE_API wsgate_status wsgate_options_set_retries(wsgate_options *o, int retries);

/* A client from o (copied; o may be freed at once). Needs a URL and a token
 * or a signing key (WSGATE_EINVAL otherwise). */
WSGATE_API wsgate_status wsgate_client_new(wsgate_client **out, const wsgate_options *o);

/* Frees the client. No call may be running on it. */
WSGATE_API void wsgate_client_free(wsgate_client *c);

/* ---- connections ---- */

/* Sends one frame to a connection (POST /v1/connections/{id}/messages):
 * WSGATE_OK once the holding edge queued it, WSGATE_EGONE when no edge
 * holds it. Text must be UTF-8. */
WSGATE_API wsgate_status wsgate_send(wsgate_client *c, const char *conn_id, wsgate_kind kind,
                                     const void *data, size_t len);

/* wsgate_send() of a NUL-terminated text. */
WSGATE_API wsgate_status wsgate_send_text(wsgate_client *c, const char *conn_id, const char *text);

/* Closes a connection (DELETE /v1/connections/{id}) with code 1000 or
 * 4000-4999 (0: the gateway's default) and reason (NULL: none). */
WSGATE_API wsgate_status wsgate_disconnect(wsgate_client *c, const char *conn_id, int code,
                                           const char *reason);

/* One connection as the gateway's registry knows it. */
typedef struct wsgate_connection {
    const char *id;
    const char *route;
    const char *user; /* NULL when anonymous */
    const char *context_json;
    const char *edge;
    const char *remote_addr;
    int64_t connected_at_ms;
    int64_t last_active_at_ms;
    const char *const *channels; /* only from wsgate_connection_get() */
    size_t n_channels;
} wsgate_connection;

/* GET /v1/connections/{id} into *out (free with wsgate_connection_free()). */
WSGATE_API wsgate_status wsgate_connection_get(wsgate_client *c, const char *conn_id,
                                               wsgate_connection **out);
WSGATE_API void wsgate_connection_free(wsgate_connection *conn);

/* A page of a paginated list: connections, channel members (ids only),
 * channels with member counts, or dead letters. Opaque; every pointer it
 * hands out is valid until wsgate_page_free(). */
typedef struct wsgate_page wsgate_page;

/* Filters for wsgate_connections_list(); NULL fields are not sent. */
typedef struct wsgate_list_query {
    const char *user;
    const char *route;
    const char *channel;
    int limit;          /* 1..1000, 0: the gateway's default */
    const char *cursor; /* from wsgate_page_next_cursor(), NULL for the first page */
} wsgate_list_query;

/* GET /v1/connections (paginated). q may be NULL (no filter, first page). */
WSGATE_API wsgate_status wsgate_connections_list(wsgate_client *c, const wsgate_list_query *q,
                                                 wsgate_page **out);

/* Number of items on the page. */
WSGATE_API size_t wsgate_page_count(const wsgate_page *p);

/* Cursor of the next page, NULL on the last page. */
WSGATE_API const char *wsgate_page_next_cursor(const wsgate_page *p);

/* Item i of a connections page (NULL out of range or on another kind of page). */
WSGATE_API const wsgate_connection *wsgate_page_connection(const wsgate_page *p, size_t i);

/* Item i of a members page: a connection id (NULL out of range). */
WSGATE_API const char *wsgate_page_member(const wsgate_page *p, size_t i);

/* Item i of a channels page: the name, and its member count in *members. */
WSGATE_API const char *wsgate_page_channel(const wsgate_page *p, size_t i, int64_t *members);

/* Item i of a page as JSON text (any kind of page: dead letters have no
 * struct; their fields are id, connection_id, route, backend, attempts,
 * last_status, last_error, created_at_ms, event). */
WSGATE_API const char *wsgate_page_item_json(const wsgate_page *p, size_t i);

WSGATE_API void wsgate_page_free(wsgate_page *p);

/* Iterates over every connection matching q across pages: call
 * wsgate_conn_iter_next() until it returns WSGATE_EDONE. *conn is valid
 * until the next call. Fetches pages of q->limit as needed. */
typedef struct wsgate_conn_iter wsgate_conn_iter;
WSGATE_API wsgate_status wsgate_conn_iter_new(wsgate_conn_iter **out, wsgate_client *c,
                                              const wsgate_list_query *q);
WSGATE_API wsgate_status wsgate_conn_iter_next(wsgate_conn_iter *it,
                                               const wsgate_connection **conn);
WSGATE_API void wsgate_conn_iter_free(wsgate_conn_iter *it);

/* ---- channels ---- */

/* PUT /v1/channels/{ch}/connections/{id} (idempotent; WSGATE_EGONE). */
WSGATE_API wsgate_status wsgate_subscribe(wsgate_client *c, const char *channel,
                                          const char *conn_id);

/* DELETE /v1/channels/{ch}/connections/{id} (idempotent). */
WSGATE_API wsgate_status wsgate_unsubscribe(wsgate_client *c, const char *channel,
                                            const char *conn_id);

/* GET /v1/channels/{ch}/connections: a members page (limit 0: default;
 * cursor NULL: first page). */
WSGATE_API wsgate_status wsgate_channel_members(wsgate_client *c, const char *channel, int limit,
                                                const char *cursor, wsgate_page **out);

/* GET /v1/channels?prefix=: a channels page (prefix NULL: every channel). */
WSGATE_API wsgate_status wsgate_channels(wsgate_client *c, const char *prefix, int limit,
                                         const char *cursor, wsgate_page **out);

/* POST /v1/channels/{ch}/messages: to every member cluster-wide except
 * exclude_conn_id (NULL: none). WSGATE_OK means handed to the bus. */
WSGATE_API wsgate_status wsgate_publish(wsgate_client *c, const char *channel, wsgate_kind kind,
                                        const void *data, size_t len, const char *exclude_conn_id);

/* POST /v1/broadcast: every connection (of route; NULL: every route). */
WSGATE_API wsgate_status wsgate_broadcast(wsgate_client *c, const char *route, wsgate_kind kind,
                                          const void *data, size_t len);

/* ---- users ---- */

/* POST /v1/users/{user}/messages: every connection of user; the number the
 * gateway addressed goes to *n_connections (may be NULL). */
WSGATE_API wsgate_status wsgate_user_send(wsgate_client *c, const char *user, wsgate_kind kind,
                                          const void *data, size_t len, int64_t *n_connections);

/* DELETE /v1/users/{user}: closes every connection of user (code as for
 * wsgate_disconnect()). */
WSGATE_API wsgate_status wsgate_user_disconnect(wsgate_client *c, const char *user, int code,
                                                const char *reason);

/* ---- batch ---- */

/* Up to 100 requests run in order in one POST /v1/batch. Opaque. */
typedef struct wsgate_batch wsgate_batch;
WSGATE_API wsgate_status wsgate_batch_new(wsgate_batch **out);
WSGATE_API void wsgate_batch_free(wsgate_batch *b);

/* Adds any request: method ("GET", "POST", "PUT", "DELETE"), path with an
 * optional query (e.g. "/v1/channels/room/messages?exclude=ID"; put your
 * own percent-escapes in names), and a body (NULL: none) sent as
 * content_type (NULL: text/plain). Binary bodies are not possible in a
 * batch item except as application/octet-stream of UTF-8 bytes. */
WSGATE_API wsgate_status wsgate_batch_add(wsgate_batch *b, const char *method, const char *path,
                                          const char *content_type, const char *body);

/* Typed adds: a text send, a subscribe, an unsubscribe, a text publish. */
WSGATE_API wsgate_status wsgate_batch_send_text(wsgate_batch *b, const char *conn_id,
                                                const char *text);
WSGATE_API wsgate_status wsgate_batch_subscribe(wsgate_batch *b, const char *channel,
                                                const char *conn_id);
WSGATE_API wsgate_status wsgate_batch_unsubscribe(wsgate_batch *b, const char *channel,
                                                  const char *conn_id);
WSGATE_API wsgate_status wsgate_batch_publish_text(wsgate_batch *b, const char *channel,
                                                   const char *text, const char *exclude_conn_id);

/* Runs the batch (never retried). On WSGATE_OK the per-item results are
 * available until the batch is freed or run again. */
WSGATE_API wsgate_status wsgate_batch_run(wsgate_client *c, wsgate_batch *b);

/* Number of items, and the HTTP status (e.g. 200, 204, 410) and JSON body
 * (NULL when none) of item i after wsgate_batch_run(). */
WSGATE_API size_t wsgate_batch_count(const wsgate_batch *b);
WSGATE_API int wsgate_batch_item_status(const wsgate_batch *b, size_t i);
WSGATE_API const char *wsgate_batch_item_body(const wsgate_batch *b, size_t i);

/* ---- dead letters ---- */

/* GET /v1/dead-letters (route NULL: all): a page read with
 * wsgate_page_item_json(). */
WSGATE_API wsgate_status wsgate_dead_letters(wsgate_client *c, const char *route, int limit,
                                             const char *cursor, wsgate_page **out);

/* POST /v1/dead-letters/{id}/replay (admin scope): WSGATE_ENOTFOUND for an
 * unknown id. */
WSGATE_API wsgate_status wsgate_dead_letter_replay(wsgate_client *c, const char *event_id);

/* ---- operations ---- */

/* GET /healthz (live) or, with ready != 0, GET /readyz (store and bus up):
 * WSGATE_OK, or WSGATE_EUNAVAILABLE. No token needed. */
WSGATE_API wsgate_status wsgate_health(wsgate_client *c, int ready);

#ifdef __cplusplus
}
#endif

#endif
