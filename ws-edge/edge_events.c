/* SPDX-License-Identifier: MIT */
/*
 * edge_events.c — builds each client event's webhook envelope (docs/contract.md §3)
 * once and publishes it on the bus; the bus carries it as bus_event_t.body
 * and the dispatcher posts it as-is. Acks come back on bus threads and are
 * handed to the service thread through the edge queue.
 *
 * Envelope: id "evt_<base64url of 128 bits>" (a random per-edge prefix and a
 * counter; a disconnect's is derived from its connection id, the one an API
 * gives it should it declare this edge lost: wsg_disconnect_event_id), type, connection_id, route,
 * user (null when anonymous), context, seq (per connection from 1), timestamp (RFC 3339,
 * milliseconds, UTC) and the type's own members, written as text by common/envelope.c (the same
 * builder the control API uses for edge_lost disconnects) into a
 * common/jtext.c buffer, not as a jansson tree: this runs for every client
 * frame.
 *
 * Overload: each loop keeps the events the bus has taken and not yet acked
 * within its share of bus_event_capacity(), so the bus never has to refuse
 * one. An event made while that budget is spent (or that the bus answers
 * WSG_EFULL, its room taken by another publisher) is parked: kept whole in
 * the loop's list, oldest first, and its connection stops reading until it
 * is gone (edge_conn_rx_check). As acks free room, edge_events_pump() hands
 * the parked events over in the order they were made, so connections are
 * served first come first served, and a connection's events stay in order
 * (nothing of it is published while one of its events is parked). Events of
 * connections that closed meanwhile (their disconnect event included) are
 * still published: nothing read from a client is dropped.
 *
 * Service thread only, except ack_cb (any thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/text.h"
#include "ws-edge/edge_int.h"

typedef struct {
    edge_loop_t *e;
    edge_life_t *life; /* the ack may come after edge_free */
    char conn_id[EDGE_ID_LEN + 1];
    size_t bytes, body_len;
    int type;
} edge_ack_ud_t;

/* A made event waiting for room on the bus: everything bus_event_publish
 * needs, so it goes out unchanged (same id, seq, timestamp) however late. */
struct edge_parked {
    edge_parked_t *next;
    bus_event_type_t type;
    uint64_t seq;
    size_t bytes;      /* counted in its connection's unacked */
    const char *route; /* the route's path: configuration, outlives the loop */
    char *body;        /* owned */
    size_t body_len;
    char id[48];
    char conn_id[EDGE_ID_LEN + 1];
};

static void ack_cb(void *ud, int status)
{
    edge_ack_ud_t *a = ud;
    edge_q_t *q = edge_q_new(EDGE_Q_ACK, 0);
    memcpy(q->u.ack.conn_id, a->conn_id, sizeof a->conn_id);
    q->u.ack.status = status;
    q->u.ack.bytes = a->bytes;
    q->u.ack.body_len = a->body_len;
    q->u.ack.type = a->type;
    edge_loop_t *e = a->e;
    edge_life_t *life = a->life;
    free(a);
    if (!edge_life_post(life, e, q)) /* the edge is gone; the event itself is durable */
        edge_q_free(q);
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
static void str_or_null(wsg_sbuf_t *b, const char *s)
{
    if (s && wsg_json_ok(s))
        wsg_sb_str(b, s);
    else
        wsg_sb_puts(b, "null");
}

/* The members every event has, written into b (no closing brace):
 * id, type, connection_id, route, user, context, seq, timestamp
 * (common/envelope.c). The user comes from jansson (token claims,
 * authorizer answer): UTF-8 already. */
static void envelope(edge_loop_t *e, wsg_sbuf_t *b, const edge_conn_t *c, const char *type,
                     char evid[48])
{
    if (!evid[0]) /* a disconnect's comes filled in: wsg_disconnect_event_id */
        event_id(e, evid);
    wsg_envelope_t env = {.id = evid,
                          .type = type,
                          .conn_id = c->id,
                          .route = c->route->path,
                          .user = c->user,
                          .context_json = c->context_json,
                          .seq = c->seq + 1,
                          .ts_ms = wsg_wall_ms()};
    wsg_envelope_open(b, &env, &e->ts);
}

/* The route protocol's member of c's message and disconnect events, if any
 * ("wsaas": the client's Authorization for every request). */
static void put_proto_every(wsg_sbuf_t *b, const edge_conn_t *c)
{
    if (c->proto_every) {
        wsg_sb_puts(b, ",");
        wsg_sb_puts(b, c->proto_every);
    }
}

/* 1 when the loop may hand the bus one more event. With nothing
 * outstanding there is always room, so an event larger than the whole byte
 * budget still goes (alone). */
static int room(const edge_loop_t *e)
{
    return e->acks_outstanding == 0 ||
           (e->acks_outstanding < e->budget_events && e->bytes_outstanding < e->budget_bytes);
}

/* Hands p's event to the bus (p is borrowed). Returns 0 (taken: counted
 * outstanding, its ack comes through the queue), WSG_EFULL (not taken, keep
 * it) or WSG_EINVAL. */
static int offer(edge_loop_t *e, const edge_parked_t *p)
{
    bus_event_t ev = {.id = p->id,
                      .type = p->type,
                      .conn_id = p->conn_id,
                      .edge_id = e->edge->edge_id,
                      .route = p->route,
                      .seq = p->seq,
                      .body = p->body,
                      .body_len = p->body_len};
    edge_ack_ud_t *a = malloc(sizeof *a);
    if (!a)
        abort();
    a->e = e;
    a->life = edge_life_ref(e->edge);
    memcpy(a->conn_id, p->conn_id, sizeof a->conn_id);
    a->bytes = p->bytes;
    a->body_len = p->body_len;
    a->type = p->type;
    e->acks_outstanding++;
    e->bytes_outstanding += p->body_len;
    int rc = bus_event_publish(e->edge->bus, &ev, ack_cb, a);
    if (rc != 0) {
        e->acks_outstanding--;
        e->bytes_outstanding -= p->body_len;
        edge_life_unref(a->life);
        free(a);
    }
    if (rc != 0 && rc != WSG_EFULL)
        WSG_LOG(WSG_LOG_ERROR, "event refused by the bus", "conn=%s route=%s seq=%llu code=%s",
                p->conn_id, p->route, (unsigned long long)p->seq, wsg_err_name(rc));
    return rc;
}

#define EDGE_OVERLOAD_LOG_MS 10000 /* at most one "edge overloaded" line per loop and period */

/* Keeps p (taken) at the end of the parked list. */
static void park(edge_loop_t *e, edge_conn_t *c, edge_parked_t *p)
{
    int64_t now = edge_now_ms();
    if (!e->overload_logged_ms || now - e->overload_logged_ms >= EDGE_OVERLOAD_LOG_MS) {
        e->overload_logged_ms = now;
        WSG_LOG(WSG_LOG_WARN, "edge overloaded: client reads paused until the bus has room",
                "loop=%u parked=%zu outstanding=%zu budget=%zu", e->idx, e->n_parked + 1,
                e->acks_outstanding, e->budget_events);
    }
    edge_parked_t *q = malloc(sizeof *q);
    if (!q)
        abort();
    *q = *p;
    q->next = NULL;
    if (e->parked_tail)
        e->parked_tail->next = q;
    else
        e->parked_head = q;
    e->parked_tail = q;
    e->n_parked++;
    c->parked++;
}

/* Publishes the event in b (taken) as c's next one, or parks it. */
static int publish(edge_loop_t *e, edge_conn_t *c, wsg_sbuf_t *b, const char *evid,
                   bus_event_type_t t, size_t bytes)
{
    wsg_sb_puts(b, "}");
    edge_parked_t p = {.type = t,
                       /* made now, whenever the bus takes it; a subscription
                        * record is no webhook and takes no number of its own */
                       .seq = t == BUS_EV_SUBSCRIPTION ? c->seq : ++c->seq,
                       .bytes = bytes,
                       .route = c->route->path,
                       .body = b->p,
                       .body_len = b->len};
    memcpy(p.id, evid, sizeof p.id);
    memcpy(p.conn_id, c->id, sizeof p.conn_id);
    c->unacked += bytes;
    /* behind anything parked on this loop: first come, first served */
    int rc = !c->parked && !e->parked_head && room(e) ? offer(e, &p) : WSG_EFULL;
    if (rc == WSG_EFULL) {
        park(e, c, &p);
        return 0;
    }
    free(p.body);
    if (rc != 0)
        c->unacked -= bytes;
    return rc;
}

/* Takes the oldest parked event off the list; its connection's count is
 * the caller's. */
static edge_parked_t *unpark(edge_loop_t *e)
{
    edge_parked_t *p = e->parked_head;
    e->parked_head = p->next;
    if (!e->parked_head)
        e->parked_tail = NULL;
    e->n_parked--;
    return p;
}

void edge_events_pump(edge_loop_t *e)
{
    while (e->parked_head && room(e)) {
        int rc = offer(e, e->parked_head);
        if (rc == WSG_EFULL)
            return; /* the bus's room is taken by others: the next ack or tick */
        edge_parked_t *p = unpark(e);
        edge_conn_t *c = edge_map_get(&e->conns, p->conn_id); /* NULL once closed */
        if (c && rc != 0) { /* refused, not taken (logged by offer): as on the direct path */
            c->unacked = c->unacked > p->bytes ? c->unacked - p->bytes : 0;
            edge_conn_close(e, c, WSG_CLOSE_INTERNAL, "internal error", "server");
        }
        if (c && c->parked && --c->parked == 0)
            edge_conn_rx_check(e, c);
        free(p->body);
        free(p);
    }
}

void edge_events_drop_parked(edge_loop_t *e)
{
    while (e->parked_head) {
        edge_parked_t *p = unpark(e);
        free(p->body);
        free(p);
    }
}

void edge_events_budget(edge_t *E)
{
    size_t events = 0, bytes = 0;
    if (bus_event_capacity(E->bus, &events, &bytes) != 0)
        events = bytes = 1; /* no bus: one at a time */
    for (size_t i = 0; i < E->n_loops; i++) {
        E->loops[i]->budget_events = events / E->n_loops ? events / E->n_loops : 1;
        E->loops[i]->budget_bytes = bytes / E->n_loops ? bytes / E->n_loops : 1;
    }
}

int edge_event_connect(edge_loop_t *e, edge_conn_t *c)
{
    char evid[48];
    wsg_sbuf_t b = {0};
    evid[0] = '\0';
    envelope(e, &b, c, "connect", evid);
    wsg_sb_member(&b, "remote_addr", c->remote);
    if (c->connect_extra) { /* "headers" and "query" members, written at the handshake */
        wsg_sb_puts(&b, ",");
        wsg_sb_puts(&b, c->connect_extra);
        free(c->connect_extra); /* only the connect event needs it */
        c->connect_extra = NULL;
    }
    if (c->proto_extra) { /* "wsaas" */
        wsg_sb_puts(&b, ",");
        wsg_sb_puts(&b, c->proto_extra);
        free(c->proto_extra);
        c->proto_extra = NULL;
    }
    wsg_sb_puts(&b, ",\"subprotocol\":"); /* an echoed bearer.<token> is no protocol */
    str_or_null(&b, wsg_is_bearer_protocol(c->subprotocol) ? NULL : c->subprotocol);
    wsg_sb_puts(&b, ",\"channels\":[");
    int first = 1;
    for (size_t i = 0; i < c->n_channels; i++) {
        if (!wsg_json_ok(c->channels[i]))
            continue;
        if (!first)
            wsg_sb_puts(&b, ",");
        wsg_sb_str(&b, c->channels[i]);
        first = 0;
    }
    wsg_sb_puts(&b, "]");
    return publish(e, c, &b, evid, BUS_EV_CONNECT, 0);
}

int edge_event_message(edge_loop_t *e, edge_conn_t *c, const unsigned char *data, size_t len,
                       int binary)
{
    char evid[48];
    wsg_sbuf_t b = {0};
    /* the envelope's members (~300 bytes plus the context) and the data,
     * with room for a few escapes: one allocation for most events */
    wsg_sb_reserve(&b, 384 + (c->context_json ? strlen(c->context_json) : 0) +
                           (binary ? WSG_B64_LEN(len) : len + len / 8));
    evid[0] = '\0';
    envelope(e, &b, c, "message", evid);
    put_proto_every(&b, c);
    if (binary) {
        char *b64 = malloc(WSG_B64_LEN(len) + 1);
        if (!b64)
            abort();
        size_t n = wsg_b64_encode(data, len, b64);
        wsg_sb_puts(&b, ",\"data_base64\":\"");
        wsg_sb_put(&b, b64, n);
        wsg_sb_puts(&b, "\",\"binary\":true");
        free(b64);
    } else { /* the service thread checked it is UTF-8 (else 1007) */
        wsg_sb_puts(&b, ",\"data\":");
        wsg_sb_strn(&b, (const char *)data, len);
    }
    return publish(e, c, &b, evid, BUS_EV_MESSAGE, len + 256);
}

int edge_event_disconnect(edge_loop_t *e, edge_conn_t *c, int code, const char *reason,
                          const char *initiator)
{
    char evid[48];
    wsg_sbuf_t b = {0};
    wsg_disconnect_event_id(c->id, evid); /* the one an API gives it for a lost edge */
    envelope(e, &b, c, "disconnect", evid);
    put_proto_every(&b, c);
    wsg_envelope_disconnect(&b, code, reason, initiator);
    return publish(e, c, &b, evid, BUS_EV_DISCONNECT, 0);
}

int edge_event_subscription(edge_loop_t *e, edge_conn_t *c, bus_cmd_op_t op, const char *channel)
{
    char evid[48];
    wsg_sbuf_t b = {0};
    if (!c->seq || !wsg_json_ok(channel))
        return WSG_EINVAL; /* before its connect event; a name the API refused */
    event_id(e, evid);
    wsg_sb_puts(&b, "{\"id\":\"");
    wsg_sb_puts(&b, evid);
    wsg_sb_puts(&b, "\",\"connection_id\":\"");
    wsg_sb_puts(&b, c->id);
    wsg_sb_puts(&b,
                op == BUS_CMD_SUBSCRIBE ? "\",\"op\":\"subscribe\"" : "\",\"op\":\"unsubscribe\"");
    wsg_sb_member(&b, "channel", channel);
    return publish(e, c, &b, evid, BUS_EV_SUBSCRIPTION, 0);
}
