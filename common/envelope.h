/* SPDX-License-Identifier: MIT */
/*
 * envelope.h — the webhook envelope of a client event (docs/contract.md §3), written
 * as JSON text: the members every event has, then a type's own. Built by
 * the edge for every event (ws-edge/edge_events.c) and by the control API
 * for the "edge_lost" disconnects it publishes on a lost edge's behalf
 * (control-api/api_registry.c), so both are the same JSON. Any thread; a
 * timestamp cache belongs to one thread.
 */
#ifndef WSG_ENVELOPE_H
#define WSG_ENVELOPE_H

#include <stdint.h>

#include "common/jtext.h"

typedef struct {
    const char *id;   /* "evt_…" */
    const char *type; /* "connect", "message", "disconnect" */
    const char *conn_id;
    const char *route;        /* the route's path */
    const char *user;         /* NULL: anonymous (null) */
    const char *context_json; /* a JSON object as text; NULL: {} */
    uint64_t seq;             /* the connection's event number, from 1 */
    int64_t ts_ms;            /* wall clock, Unix ms */
} wsg_envelope_t;

/* The date and time part of one second, formatted once per second (the
 * edge makes thousands of timestamps a second). Zero it before use. */
typedef struct {
    int64_t sec;
    char head[24];
} wsg_ts_cache_t;

/* Writes ms as RFC 3339 UTC with milliseconds ("2026-12-06T19:43:15.123Z")
 * into out; cache may be NULL. */
void wsg_ts_format(wsg_ts_cache_t *cache, int64_t ms, char out[32]);

/* Parses what wsg_ts_format writes ("2026-12-06T19:43:15.123Z"; the
 * milliseconds may be absent) into Unix ms. Returns 0, or WSG_EINVAL. */
int wsg_ts_parse(const char *s, int64_t *ms);

/* Writes into b the opening brace and the members every event has: id,
 * type, connection_id, route, user, context, seq, timestamp. The caller
 * adds the type's members, then "}". */
void wsg_envelope_open(wsg_sbuf_t *b, const wsg_envelope_t *env, wsg_ts_cache_t *cache);

/* The id of conn_id's disconnect event: "evt_" and the base64url of the
 * first 128 bits of HMAC-SHA256("wsgate edge_lost", conn_id). A connection
 * has one disconnect, and whoever publishes it (its edge, or an API for an
 * edge it declared lost) gives it this id, so the bus keeps one of them
 * (NATS: Nats-Msg-Id deduplication) and a copy past that window reaches the
 * backend with the same webhook-id, which at-least-once allows. */
void wsg_disconnect_event_id(const char *conn_id, char out[48]);

/* A disconnect's members: code, reason ("" when NULL or not UTF-8) and
 * initiator ("server" when NULL). */
void wsg_envelope_disconnect(wsg_sbuf_t *b, int code, const char *reason, const char *initiator);

#endif
