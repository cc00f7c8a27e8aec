/*
 * edge_events.c — builds each client event's webhook envelope (SPEC.md §3)
 * once and publishes it on the bus; the bus carries it as bus_event_t.body
 * and the dispatcher posts it as-is. Acks come back on bus threads and are
 * handed to the service thread through the edge queue.
 *
 * Envelope: id "evt_<base64url of 128 random bits>", type, connection_id,
 * route, user (null when anonymous), context, seq (per connection from 1),
 * timestamp (RFC 3339, milliseconds, UTC) and the type's own members.
 *
 * Service thread only, except ack_cb (any thread).
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"
#include "common/err.h"
#include "common/log.h"
#include "ws-edge/edge_int.h"

typedef struct {
    edge_t *e;
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
    if (edge_post_live(q) != 0) /* the edge is gone; the event itself is durable */
        edge_q_free(q);
}

static void timestamp(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Most connections carry no context: they share one empty object (jansson's
 * reference counts are atomic; nobody modifies a context once parsed). */
static json_t *shared_empty;
static pthread_once_t shared_empty_once = PTHREAD_ONCE_INIT;

static void make_shared_empty(void)
{
    shared_empty = json_object();
    if (!shared_empty)
        abort();
}

static json_t *empty_context(void)
{
    pthread_once(&shared_empty_once, make_shared_empty);
    return json_incref(shared_empty);
}

static json_t *envelope(edge_conn_t *c, const char *type, char evid[48])
{
    char ts[32], rnd[EDGE_ID_LEN + 1];
    edge_make_id(rnd);
    snprintf(evid, 48, "evt_%s", rnd);
    timestamp(ts);
    if (!c->ctx) {
        if (c->context_json && strcmp(c->context_json, "{}") != 0)
            c->ctx = json_loads(c->context_json, 0, NULL);
        if (!json_is_object(c->ctx)) {
            json_decref(c->ctx);
            c->ctx = empty_context();
        }
        free(c->context_json); /* parsed once; the text is not needed again */
        c->context_json = NULL;
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o?,s:O,s:I,s:s}", "id", evid, "type", type,
                          "connection_id", c->id, "route", c->route->path, "user",
                          c->user ? json_string(c->user) : json_null(), "context", c->ctx, "seq",
                          (json_int_t)(c->seq + 1), "timestamp", ts);
    if (!o)
        abort();
    return o;
}

static int publish(edge_t *e, edge_conn_t *c, json_t *o, const char *evid, bus_event_type_t t,
                   size_t bytes)
{
    char *body = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!body)
        return WSG_ENOMEM;
    bus_event_t ev = {.id = evid,
                      .type = t,
                      .conn_id = c->id,
                      .edge_id = e->edge_id,
                      .route = c->route->path,
                      .seq = c->seq + 1,
                      .body = body,
                      .body_len = strlen(body)};
    edge_ack_ud_t *a = malloc(sizeof *a);
    if (!a)
        abort();
    a->e = e;
    memcpy(a->conn_id, c->id, sizeof c->id);
    a->bytes = bytes;
    a->type = t;
    e->acks_outstanding++;
    int rc = bus_event_publish(e->bus, &ev, ack_cb, a);
    free(body);
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

int edge_event_connect(edge_t *e, edge_conn_t *c)
{
    char evid[48];
    json_t *o = envelope(c, "connect", evid);
    json_object_set_new(o, "remote_addr", json_string(c->remote));
    if (c->connect_extra) {
        size_t n = strlen(c->connect_extra) + 3;
        char *txt = malloc(n);
        if (!txt)
            abort();
        snprintf(txt, n, "{%s}", c->connect_extra);
        json_t *x = json_loads(txt, 0, NULL);
        free(txt);
        if (x)
            json_object_update(o, x);
        json_decref(x);
        free(c->connect_extra); /* only the connect event needs it */
        c->connect_extra = NULL;
    }
    json_object_set_new(o, "subprotocol",
                        c->subprotocol ? json_string(c->subprotocol) : json_null());
    json_t *ch = json_array();
    for (size_t i = 0; i < c->n_channels; i++)
        json_array_append_new(ch, json_string(c->channels[i]));
    json_object_set_new(o, "channels", ch);
    return publish(e, c, o, evid, BUS_EV_CONNECT, 0);
}

int edge_event_message(edge_t *e, edge_conn_t *c, const unsigned char *data, size_t len, int binary)
{
    char evid[48];
    json_t *o = envelope(c, "message", evid);
    if (binary) {
        char *b = malloc(WSG_B64_LEN(len) + 1);
        if (!b)
            abort();
        wsg_b64_encode(data, len, b);
        json_object_set_new(o, "data_base64", json_string(b));
        json_object_set_new(o, "binary", json_true());
        free(b);
    } else {
        json_t *s = json_stringn((const char *)data, len);
        if (!s) { /* lws validated UTF-8, so only a NUL-free check can fail here */
            json_decref(o);
            return WSG_EINVAL;
        }
        json_object_set_new(o, "data", s);
    }
    return publish(e, c, o, evid, BUS_EV_MESSAGE, len + 256);
}

int edge_event_disconnect(edge_t *e, edge_conn_t *c, int code, const char *reason,
                          const char *initiator)
{
    char evid[48];
    json_t *o = envelope(c, "disconnect", evid);
    json_object_set_new(o, "code", json_integer(code));
    json_object_set_new(o, "reason", json_string(reason ? reason : ""));
    json_object_set_new(o, "initiator", json_string(initiator ? initiator : "server"));
    return publish(e, c, o, evid, BUS_EV_DISCONNECT, 0);
}
