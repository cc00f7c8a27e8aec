/*
 * edge_events.c — builds each client event's webhook envelope (SPEC.md §3)
 * once and publishes it on the bus; the bus carries it as bus_event_t.body
 * and the dispatcher posts it as-is. Acks come back on bus threads and are
 * handed to the service thread through the edge queue.
 *
 * Envelope: id "evt_<base64url of 128 bits>" (a random per-edge prefix and a
 * counter), type, connection_id, route, user (null when anonymous), context,
 * seq (per connection from 1), timestamp (RFC 3339, milliseconds, UTC) and
 * the type's own members, written as text (edge_json.c), not as a jansson
 * tree: this runs for every client frame.
 *
 * Service thread only, except ack_cb (any thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"
#include "common/err.h"
#include "common/log.h"
#include "ws-edge/edge_int.h"

typedef struct {
    edge_loop_t *e;
    char conn_id[EDGE_ID_LEN + 1];
    size_t bytes;
    int type;
} edge_ack_ud_t;

static void ack_cb(void *ud, int status)
{
    edge_ack_ud_t *a = ud;
    edge_q_t *q = edge_q_new(EDGE_Q_ACK, 0);
    memcpy(q->u.ack.conn_id, a->conn_id, sizeof a->conn_id);
    q->u.ack.status = status;
    q->u.ack.bytes = a->bytes;
    q->u.ack.type = a->type;
    free(a);
    if (edge_post_conn(q->u.ack.conn_id, q) !=
        0) /* the edge is gone; the event itself is durable */
        edge_q_free(q);
}

/* RFC 3339 UTC with milliseconds; the date and time part is formatted once
 * per second per loop. */
static void timestamp(edge_loop_t *e, char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!e->ts_head[0] || (int64_t)ts.tv_sec != e->ts_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        strftime(e->ts_head, sizeof e->ts_head, "%Y-%m-%dT%H:%M:%S", &tm);
        e->ts_sec = (int64_t)ts.tv_sec;
    }
    snprintf(out, 32, "%.23s.%03dZ", e->ts_head, (int)(ts.tv_nsec / 1000000) % 1000);
}

/* "evt_" and 128 bits: this edge's random 64-bit prefix (drawn at start)
 * and a counter, base64url. Unique without a call into the random source
 * per event; ids need to be unique, not secret. */
static void event_id(edge_loop_t *e, char out[48])
{
    unsigned char raw[16];
    char b64[WSG_B64_LEN(16) + 1];
    memcpy(raw, e->evid_prefix, 8);
    uint64_t n = ++e->evid_next;
    for (int i = 0; i < 8; i++)
        raw[8 + i] = (unsigned char)(n >> (56 - 8 * i));
    wsg_b64url_encode(raw, sizeof raw, b64);
    snprintf(out, 48, "evt_%.*s", EDGE_ID_LEN, b64);
}

/* A string member's value, or null when s cannot go into JSON text (a
 * subprotocol or close reason a client sent that is not UTF-8). */
static void str_or_null(edge_sbuf_t *b, const char *s)
{
    if (s && edge_json_ok(s))
        edge_sb_str(b, s);
    else
        edge_sb_puts(b, "null");
}

/* The members every event has, written into b (no closing brace):
 * id, type, connection_id, route, user, context, seq, timestamp. */
static void envelope(edge_loop_t *e, edge_sbuf_t *b, const edge_conn_t *c, const char *type,
                     char evid[48])
{
    char ts[32], num[96];
    event_id(e, evid);
    timestamp(e, ts);
    edge_sb_puts(b, "{\"id\":\"");
    edge_sb_puts(b, evid);
    edge_sb_puts(b, "\",\"type\":\"");
    edge_sb_puts(b, type);
    edge_sb_puts(b, "\",\"connection_id\":\"");
    edge_sb_puts(b, c->id);
    edge_sb_puts(b, "\",\"route\":");
    edge_sb_str(b, c->route->path);
    edge_sb_puts(b, ",\"user\":");
    if (c->user) /* from jansson (token claims, authorizer answer): UTF-8 already */
        edge_sb_str(b, c->user);
    else
        edge_sb_puts(b, "null");
    edge_sb_puts(b, ",\"context\":");
    edge_sb_puts(b, c->context_json ? c->context_json : "{}");
    int n = snprintf(num, sizeof num, ",\"seq\":%llu,\"timestamp\":\"%s\"",
                     (unsigned long long)(c->seq + 1), ts);
    edge_sb_put(b, num, (size_t)n);
}

static int publish(edge_loop_t *e, edge_conn_t *c, edge_sbuf_t *b, const char *evid,
                   bus_event_type_t t, size_t bytes)
{
    edge_sb_puts(b, "}");
    bus_event_t ev = {.id = evid,
                      .type = t,
                      .conn_id = c->id,
                      .edge_id = e->edge->edge_id,
                      .route = c->route->path,
                      .seq = c->seq + 1,
                      .body = b->p,
                      .body_len = b->len};
    edge_ack_ud_t *a = malloc(sizeof *a);
    if (!a)
        abort();
    a->e = e;
    memcpy(a->conn_id, c->id, sizeof c->id);
    a->bytes = bytes;
    a->type = t;
    e->acks_outstanding++;
    int rc = bus_event_publish(e->edge->bus, &ev, ack_cb, a);
    free(b->p);
    if (rc != 0) {
        e->acks_outstanding--;
        free(a);
        WSG_LOG(WSG_LOG_ERROR, "event refused by the bus", "conn=%s route=%s user=%s code=%s",
                c->id, c->route->path, c->user, wsg_err_name(rc));
        return rc;
    }
    c->seq++;
    c->unacked += bytes;
    return 0;
}

int edge_event_connect(edge_loop_t *e, edge_conn_t *c)
{
    char evid[48];
    edge_sbuf_t b = {0};
    envelope(e, &b, c, "connect", evid);
    edge_sb_member(&b, "remote_addr", c->remote);
    if (c->connect_extra) { /* "headers" and "query" members, written at the handshake */
        edge_sb_puts(&b, ",");
        edge_sb_puts(&b, c->connect_extra);
        free(c->connect_extra); /* only the connect event needs it */
        c->connect_extra = NULL;
    }
    edge_sb_puts(&b, ",\"subprotocol\":");
    str_or_null(&b, c->subprotocol);
    edge_sb_puts(&b, ",\"channels\":[");
    int first = 1;
    for (size_t i = 0; i < c->n_channels; i++) {
        if (!edge_json_ok(c->channels[i]))
            continue;
        if (!first)
            edge_sb_puts(&b, ",");
        edge_sb_str(&b, c->channels[i]);
        first = 0;
    }
    edge_sb_puts(&b, "]");
    return publish(e, c, &b, evid, BUS_EV_CONNECT, 0);
}

int edge_event_message(edge_loop_t *e, edge_conn_t *c, const unsigned char *data, size_t len,
                       int binary)
{
    char evid[48];
    edge_sbuf_t b = {0};
    /* the envelope's members (~300 bytes plus the context) and the data,
     * with room for a few escapes: one allocation for most events */
    edge_sb_reserve(&b, 384 + (c->context_json ? strlen(c->context_json) : 0) +
                            (binary ? WSG_B64_LEN(len) : len + len / 8));
    envelope(e, &b, c, "message", evid);
    if (binary) {
        char *b64 = malloc(WSG_B64_LEN(len) + 1);
        if (!b64)
            abort();
        size_t n = wsg_b64_encode(data, len, b64);
        edge_sb_puts(&b, ",\"data_base64\":\"");
        edge_sb_put(&b, b64, n);
        edge_sb_puts(&b, "\",\"binary\":true");
        free(b64);
    } else { /* the service thread checked it is UTF-8 (else 1007) */
        edge_sb_puts(&b, ",\"data\":");
        edge_sb_strn(&b, (const char *)data, len);
    }
    return publish(e, c, &b, evid, BUS_EV_MESSAGE, len + 256);
}

int edge_event_disconnect(edge_loop_t *e, edge_conn_t *c, int code, const char *reason,
                          const char *initiator)
{
    char evid[48], num[32];
    edge_sbuf_t b = {0};
    envelope(e, &b, c, "disconnect", evid);
    int n = snprintf(num, sizeof num, ",\"code\":%d,\"reason\":", code);
    edge_sb_put(&b, num, (size_t)n);
    edge_sb_str(&b, reason && edge_json_ok(reason) ? reason : "");
    edge_sb_member(&b, "initiator", initiator ? initiator : "server");
    return publish(e, c, &b, evid, BUS_EV_DISCONNECT, 0);
}
