/* SPDX-License-Identifier: MIT */
/*
 * webhook.h — the backend side of wsgate's webhooks: verify a Standard
 * Webhooks signature, parse an event (or a batch of events) into typed
 * structs, and build the response body carrying actions.
 *
 * Works with any HTTP server: pass the raw body bytes and the three
 * webhook-* header values. Nothing here does I/O.
 *
 * Threads: every function is reentrant; a wsgate_events or wsgate_response
 * is used by one thread at a time.
 */
#ifndef WSGATE_WEBHOOK_H
#define WSGATE_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Default replay window of wsgate_webhook_verify(), in seconds. */
#define WSGATE_WEBHOOK_TOLERANCE 300

/* Verifies a webhook against secret ("whsec_<base64 key>"; a secret without
 * the prefix is used as raw key bytes). msg_id, timestamp and signature are
 * the values of the webhook-id, webhook-timestamp and webhook-signature
 * headers; signature may hold several space-separated "v1,<base64>"
 * entries (key rotation: one match is enough). The comparison is constant
 * time. The timestamp must be within WSGATE_WEBHOOK_TOLERANCE seconds of
 * now. Returns WSGATE_OK, WSGATE_ESIGNATURE, WSGATE_ETIMESTAMP, WSGATE_EKEY
 * (secret not usable) or WSGATE_EINVAL (a NULL argument). */
WSGATE_API wsgate_status wsgate_webhook_verify(const char *secret, const char *msg_id,
                                               const char *timestamp, const char *signature,
                                               const void *body, size_t body_len);

/* wsgate_webhook_verify() with an explicit clock and window: now_s is Unix
 * seconds, tolerance_s >= 0 the allowed |now - timestamp|. */
WSGATE_API wsgate_status wsgate_webhook_verify_at(const char *secret, const char *msg_id,
                                                  const char *timestamp, const char *signature,
                                                  const void *body, size_t body_len, int64_t now_s,
                                                  int64_t tolerance_s);

/* Signs like the gateway does: writes "v1,<base64>" (NUL-terminated) into
 * out, which has room for out_len >= WSGATE_SIGNATURE_LEN bytes. For tests
 * and for tools that forward webhooks. */
#define WSGATE_SIGNATURE_LEN 64
WSGATE_API wsgate_status wsgate_webhook_sign(const char *secret, const char *msg_id,
                                             int64_t timestamp, const void *body, size_t body_len,
                                             char *out, size_t out_len);

typedef enum wsgate_event_type {
    WSGATE_EVENT_CONNECT = 1,
    WSGATE_EVENT_MESSAGE = 2,
    WSGATE_EVENT_DISCONNECT = 3
} wsgate_event_type;

/* One name/value pair (a header or a query parameter). */
typedef struct wsgate_pair {
    const char *name;
    const char *value;
} wsgate_pair;

/* One event. Every pointer is owned by the wsgate_events it came from and
 * valid until wsgate_events_free(). Fields that do not apply to the type
 * are NULL / 0. */
typedef struct wsgate_event {
    wsgate_event_type type;
    const char *id;            /* "evt_…", stable across retries: the idempotency key */
    const char *connection_id; /* the connection, for the control API */
    const char *route;         /* the route path, e.g. "/chat" */
    const char *user;          /* the token's sub; NULL for anonymous connections */
    const char *context_json;  /* the connection's context as a JSON object text */
    int64_t seq;               /* the connection's event number, from 1 */
    const char *timestamp;     /* RFC 3339, e.g. "2026-11-22T11:00:00.123Z" */
    /* connect */
    const char *remote_addr;
    const char *subprotocol; /* the selected subprotocol, NULL when none */
    const wsgate_pair *headers;
    size_t n_headers; /* names in lower case */
    const wsgate_pair *query;
    size_t n_query;
    const char *const *channels; /* subscribed on connect (token claim, authorizer) */
    size_t n_channels;
    /* message: data is NUL-terminated in both cases (not counted in data_len) */
    int binary; /* 1: binary frame (data may hold NULs), 0: UTF-8 text */
    const unsigned char *data;
    size_t data_len;
    /* disconnect */
    int code;              /* close code, e.g. 1000, 1001, 1006, 4000 */
    const char *reason;    /* close reason, "" when none */
    const char *initiator; /* "client", "server", "api", "timeout" or "edge_lost" */
} wsgate_event;

/* A parsed webhook body: one event, or the events of a batch. Opaque. */
typedef struct wsgate_events wsgate_events;

/* Parses a webhook body (an event envelope, or {"events":[…]} of a batch)
 * into *out. Returns WSGATE_OK, WSGATE_EPROTO (not an event: the problem's
 * detail says which field), WSGATE_EINVAL or WSGATE_ENOMEM; *out is NULL on
 * failure. Free with wsgate_events_free(). */
WSGATE_API wsgate_status wsgate_events_parse(wsgate_events **out, const void *body, size_t len);

/* Number of events (1 for a single envelope). */
WSGATE_API size_t wsgate_events_count(const wsgate_events *evs);

/* Event i (0-based), borrowed from evs; NULL when i is out of range. */
WSGATE_API const wsgate_event *wsgate_events_get(const wsgate_events *evs, size_t i);

WSGATE_API void wsgate_events_free(wsgate_events *evs);

/* The body of a 2xx answer to a webhook: {"actions":[…]} applied by the
 * gateway to the event's connection, in order. Opaque. */
typedef struct wsgate_response wsgate_response;

WSGATE_API wsgate_status wsgate_response_new(wsgate_response **out);
WSGATE_API void wsgate_response_free(wsgate_response *r);

/* Action: send a text frame (text must be UTF-8: WSGATE_EINVAL otherwise). */
WSGATE_API wsgate_status wsgate_response_send_text(wsgate_response *r, const char *text);

/* Action: send a binary frame of len bytes. */
WSGATE_API wsgate_status wsgate_response_send_binary(wsgate_response *r, const void *data,
                                                     size_t len);

/* Actions: subscribe / unsubscribe the connection (channel: 1..255 bytes of
 * UTF-8 without control characters, WSGATE_EINVAL otherwise). */
WSGATE_API wsgate_status wsgate_response_subscribe(wsgate_response *r, const char *channel);
WSGATE_API wsgate_status wsgate_response_unsubscribe(wsgate_response *r, const char *channel);

/* Action: close the connection with code (1000 or 4000-4999) and reason
 * (NULL or at most 123 bytes of UTF-8). */
WSGATE_API wsgate_status wsgate_response_close(wsgate_response *r, int code, const char *reason);

/* The JSON body so far, as a new NUL-terminated string in *body (length in
 * *len when len is not NULL), to send with Content-Type application/json.
 * Free with wsgate_free(). An empty response gives {"actions":[]}. */
WSGATE_API wsgate_status wsgate_response_body(const wsgate_response *r, char **body, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
