/* SPDX-License-Identifier: MIT */
/*
 * edge_conn.c — an open connection: reassembling messages across fragments
 * under max_message_bytes (1009), the token-bucket rate limit (1008), the
 * bounded outbound queue (1008 "slow consumer"), ping / idle / lifetime
 * timers (1001), the token's expiry (1008 "token expired"), closing with a code, pausing reads
 * while its events wait for the bus (overload slows a client down, never disconnects it), and 1013
 * when the bus reports that one could not be made durable.
 *
 * Service thread only. Invalid UTF-8 in a text message closes with 1007
 * (checked here on the whole message rather than by lws, so that the
 * disconnect event can say why); so does a close frame whose reason is not
 * UTF-8, and one with a 1-byte payload or a code a client may not send
 * closes with 1002.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/close.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/text.h"
#include "ws-edge/edge_int.h"

/* Bytes of a connection's events that may wait for their ack before its
 * reads pause: enough for a few maximum-size messages. */
static size_t unacked_cap(const edge_conn_t *c)
{
    size_t m = c->route->limits.max_message_bytes;
    return m * 4 < 262144 ? 262144 : m * 4;
}

void edge_conn_free(edge_conn_t *c)
{
    if (!c)
        return;
    edge_timer_disarm(c);
    free(c->rxc.zbits);
    while (c->out_head) {
        edge_out_t *o = c->out_head;
        c->out_head = o->next;
        edge_msg_unref(o->m);
        free(o);
    }
    for (size_t i = 0; i < c->n_channels; i++)
        free(c->channels[i]);
    for (size_t i = 0; i < c->n_offered; i++)
        free(c->offered[i]);
    free(c->channels);
    free(c->offered);
    free(c->user);
    free(c->context_json);
    free(c->close_reason);
    free(c->peer_reason);
    free(c->subprotocol);
    free(c->bearer_offer);
    free(c->connect_extra);
    free(c->proto_extra);
    free(c->proto_every);
    free(c->hs_req);
    free(c->rx);
    free(c);
}

static void schedule_timer(edge_loop_t *e, edge_conn_t *c, int64_t now)
{
    const wsg_limits_conf_t *l = &c->route->limits;
    int64_t next = INT64_MAX;
    if (l->ping_interval_ms)
        next = c->last_ping_ms + (int64_t)l->ping_interval_ms;
    /* paused: not idle, so no idle deadline (re-armed at the resume) */
    if (l->idle_timeout_ms && !c->rx_paused && c->last_rx_ms + (int64_t)l->idle_timeout_ms < next)
        next = c->last_rx_ms + (int64_t)l->idle_timeout_ms;
    if (l->max_lifetime_ms && c->opened_ms + (int64_t)l->max_lifetime_ms < next)
        next = c->opened_ms + (int64_t)l->max_lifetime_ms;
    if (c->expires_ms && c->expires_ms < next)
        next = c->expires_ms;
    if (next == INT64_MAX)
        return;
    edge_timer_arm(e, c, next > now ? next : now);
}

static void apply_held(edge_loop_t *e, edge_conn_t *c)
{
    edge_held_t *h = c->held, *rev = NULL;
    c->held = NULL;
    while (h) { /* held in reverse order of arrival */
        edge_held_t *n = h->next;
        h->next = rev;
        rev = h;
        h = n;
    }
    while (rev) {
        edge_held_t *n = rev->next;
        edge_apply_cmd(e, rev->q);
        free(rev);
        rev = n;
    }
    edge_flush_replies(e);
}

int edge_on_established(edge_loop_t *e, struct lws *wsi, edge_conn_t **slot)
{
    edge_conn_t *c = e->upgrading;
    if (!c || e->upgrading_wsi != wsi || !slot)
        return -1;
    e->upgrading = NULL;
    e->upgrading_wsi = NULL;
    *slot = c;
    c->wsi = wsi;
    c->pending = 0;
    free(c->hs_req);
    c->hs_req = NULL;
    int64_t now = edge_now_ms();
    c->opened_ms = c->last_rx_ms = c->last_ping_ms = c->tokens_ms = now;
    c->tokens = c->route->limits.rate_burst ? c->route->limits.rate_burst : 1;
    wsg_count(WSG_M_CONN_OPENED, 1);
    wsg_gauge_add(WSG_G_CONNECTIONS, 1);
    WSG_LOG(WSG_LOG_INFO, "client connected", "conn=%s route=%s user=%s remote=%s loop=%u", c->id,
            c->route->path, c->user, c->remote, e->idx);
    size_t n = c->n_channels;
    char **initial = c->channels;
    c->channels = NULL;
    c->n_channels = c->cap_channels = 0;
    for (size_t i = 0; i < n; i++) {
        edge_chan_join(e, c, initial[i]);
        free(initial[i]);
    }
    free(initial);
    int rc = edge_event_connect(e, c);
    free(c->subprotocol); /* answered in the 101 and told in the connect event: done */
    c->subprotocol = NULL;
    if (rc != 0) {
        edge_conn_close(e, c, WSG_CLOSE_INTERNAL, "internal error", "server");
        return 0;
    }
    if (edge_rxcheck_open(e, c)) /* unmasked, in the bytes that came with the request */
        edge_conn_close(e, c, WSG_CLOSE_PROTOCOL, EDGE_UNMASKED_REASON, "server");
    edge_conn_rx_check(e, c); /* parked: no messages before the connect is taken */
    schedule_timer(e, c, now);
    apply_held(e, c);
    return 0;
}

/* A close reason as a string of at most EDGE_REASON_MAX bytes (a close frame
 * carries 123); only closing connections pay for one. */
static char *reason_dup(const char *r, size_t n)
{
    char *s = strndup(r, n < EDGE_REASON_MAX ? n : EDGE_REASON_MAX);
    if (!s)
        abort();
    return s;
}

static int close_now(edge_conn_t *c)
{
    const char *r = c->close_reason ? c->close_reason : "";
    lws_close_reason(c->wsi, (enum lws_close_status)c->close_code, (unsigned char *)r, strlen(r));
    return -1;
}

void edge_conn_close(edge_loop_t *e, edge_conn_t *c, int code, const char *reason,
                     const char *initiator)
{
    if (c->close_code || !c->wsi)
        return;
    c->close_code = code;
    c->close_reason = reason_dup(reason ? reason : "", strlen(reason ? reason : ""));
    c->close_initiator = initiator;
    edge_conn_rx_check(e, c);
    lws_callback_on_writable(c->wsi);
    /* A client that never reads never makes us writable: give up after 3 s. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE + 1, 3);
}

int edge_conn_fail(edge_loop_t *e, edge_conn_t *c, int code, const char *reason)
{
    edge_conn_close(e, c, code, reason, "server");
    return close_now(c);
}

static int rate_ok(edge_conn_t *c, int64_t now)
{
    const wsg_limits_conf_t *l = &c->route->limits;
    if (!l->rate_mps)
        return 1;
    c->tokens += (double)(now - c->tokens_ms) * l->rate_mps / 1000.0;
    c->tokens_ms = now;
    double burst = l->rate_burst ? l->rate_burst : l->rate_mps;
    if (c->tokens > burst)
        c->tokens = burst;
    if (c->tokens < 1.0)
        return 0;
    c->tokens -= 1.0;
    return 1;
}

static int deliver(edge_loop_t *e, edge_conn_t *c, const unsigned char *data, size_t len,
                   int binary)
{
    int64_t now = edge_now_ms();
    if (!binary && !wsg_utf8_valid((const char *)data, len)) {
        edge_conn_close(e, c, WSG_CLOSE_INVALID_DATA, "invalid utf-8", "server");
        return close_now(c);
    }
    if (!rate_ok(c, now)) {
        edge_conn_close(e, c, WSG_CLOSE_POLICY, "rate limit exceeded", "server");
        return close_now(c);
    }
    wsg_count(WSG_M_FRAMES_IN, 1);
    wsg_count(WSG_M_BYTES_IN, len);
    if (edge_event_message(e, c, data, len, binary) != 0) {
        edge_conn_close(e, c, WSG_CLOSE_INTERNAL, "internal error", "server");
        return close_now(c);
    }
    edge_conn_rx_check(e, c);
    return 0;
}

void edge_rx_reset(edge_conn_t *c)
{
    free(c->rx); /* no buffer kept while idle */
    c->rx = NULL;
    c->rx_len = c->rx_cap = 0;
}

int edge_rx_take(edge_conn_t *c, const void *in, size_t len, int first, int final, size_t remaining,
                 size_t max, const unsigned char **msg, size_t *msg_len)
{
    if (first)
        c->rx_len = 0;
    if (c->rx_len + len > max || remaining > max - c->rx_len - len) {
        edge_rx_reset(c);
        return EDGE_RX_TOO_BIG;
    }
    if (first && final) {
        *msg = in;
        *msg_len = len;
        return EDGE_RX_WHOLE;
    }
    if (c->rx_len + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap * 2 : 4096;
        while (cap < c->rx_len + len)
            cap *= 2;
        unsigned char *p = realloc(c->rx, cap);
        if (!p)
            abort();
        c->rx = p;
        c->rx_cap = cap;
    }
    if (len) /* an empty first fragment has no buffer yet */
        memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    if (!final)
        return EDGE_RX_PART;
    /* fragments all empty: no buffer was ever made */
    *msg = c->rx ? c->rx : (const unsigned char *)"";
    *msg_len = c->rx_len;
    return EDGE_RX_WHOLE;
}

/* Adds a piece of a message; delivers the message when it is complete. */
static int reassemble(edge_loop_t *e, edge_conn_t *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;
    size_t remaining = lws_remaining_packet_payload(wsi);
    int first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi) && !remaining;
    const unsigned char *msg = NULL;
    size_t n = 0;
    switch (edge_rx_take(c, in, len, first, final, remaining, c->route->limits.max_message_bytes,
                         &msg, &n)) {
    case EDGE_RX_TOO_BIG:
        edge_conn_close(e, c, WSG_CLOSE_TOO_BIG, "message too big", "server");
        return close_now(c);
    case EDGE_RX_PART:
        return 0;
    default:
        break;
    }
    int binary = lws_frame_is_binary(wsi);
    if (c->rxc.pmd && edge_rxcheck_zpop(&c->rxc)) { /* permessage-deflate (edge_pmd.c) */
        size_t max = c->route->limits.max_message_bytes;
        int zr = edge_pmd_inflate(e, msg, n, max, &msg, &n);
        if (zr != 0) {
            edge_rx_reset(c);
            if (zr == WSG_ETOOBIG)
                edge_conn_close(e, c, 1009, "message too big", "server");
            else
                edge_conn_close(e, c, 1007, "bad compressed data", "server");
            return close_now(c);
        }
    }
    int rc = deliver(e, c, msg, n, binary);
    edge_rx_reset(c);
    return rc;
}

int edge_on_receive(edge_loop_t *e, edge_conn_t *c, const void *in, size_t len)
{
    c->last_rx_ms = edge_now_ms();
    if (c->close_code || c->peer_code)
        return 0; /* closing, or after the client's close frame (RFC 6455 §5.5.1): ignored */
    int rc = reassemble(e, c, in, len);
    if (rc == 0 && c->rxc.unmasked && !c->close_code && !lws_remaining_packet_payload(c->wsi) &&
        edge_rxcheck_frame_done(c)) /* the last frame before an unmasked one */
        return edge_conn_fail(e, c, WSG_CLOSE_PROTOCOL, EDGE_UNMASKED_REASON);
    return rc;
}

/* Writes one frame of the shared buffer (lws puts the frame header in its
 * LWS_PRE headroom: the same bytes for every connection; a deflated frame
 * (m->raw) has its header already). */
static int write_msg(edge_conn_t *c, const edge_msg_t *m)
{
    enum lws_write_protocol wp = m->raw      ? LWS_WRITE_RAW
                                 : m->binary ? LWS_WRITE_BINARY
                                             : LWS_WRITE_TEXT;
    if (lws_write(c->wsi, (unsigned char *)m->buf + LWS_PRE, m->len, wp) < (int)m->len)
        return -1;
    edge_conn_count_out(m);
    return 0;
}

void edge_conn_count_out(const edge_msg_t *m)
{
    wsg_count(WSG_M_FRAMES_OUT, 1);
    wsg_count(WSG_M_BYTES_OUT, m->len);
}

int edge_conn_writable_now(const edge_conn_t *c, const edge_msg_t *m)
{
    return c->wsi && !c->close_code && !c->out_head && !c->ping_due &&
           m->len <= c->route->limits.max_outbound_bytes && !lws_partial_buffered(c->wsi);
}

int edge_conn_queue(edge_loop_t *e, edge_conn_t *c, edge_msg_t *m)
{
    if (!c->wsi || c->close_code)
        return WSG_EGONE;
    edge_msg_t *z = c->rxc.pmd ? edge_pmd_frame(e, m) : NULL;
    if (z) /* deflated once per message, shared by every compressed member */
        m = z;
    if (c->out_bytes + m->len > c->route->limits.max_outbound_bytes) {
        wsg_count(WSG_M_SLOW_CONSUMER_CLOSES, 1);
        WSG_LOG(WSG_LOG_WARN, "slow consumer", "conn=%s route=%s user=%s queued=%zu", c->id,
                c->route->path, c->user, c->out_bytes);
        while (c->out_head) {
            edge_out_t *o = c->out_head;
            c->out_head = o->next;
            edge_msg_unref(o->m);
            free(o);
        }
        c->out_tail = NULL;
        c->out_bytes = 0;
        edge_conn_close(e, c, WSG_CLOSE_POLICY, "slow consumer", "server");
        return WSG_EFULL;
    }
    if (edge_conn_writable_now(c, m)) {
        /* Nothing waits and lws holds nothing back: write now. One write(2)
         * per delivery instead of arming POLLOUT, waking for it, writing and
         * disarming it. If the kernel takes only part, lws keeps the rest
         * (lws_partial_buffered) and flushes it when the socket drains; the
         * next frames queue below until then. */
        if (write_msg(c, m) < 0) /* the socket is broken: lws closes it */
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE + 2, LWS_TO_KILL_ASYNC);
        return 0;
    }
    edge_out_t *o = malloc(sizeof *o);
    if (!o)
        abort();
    o->next = NULL;
    o->m = m;
    m->refs++;
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
    c->out_bytes += m->len;
    lws_callback_on_writable(c->wsi);
    return 0;
}

int edge_on_writeable(edge_loop_t *e, edge_conn_t *c)
{
    (void)e;
    if (c->ping_due && !c->close_code) {
        /* Not empty: lws 4.1 swallows an empty pong without RECEIVE_PONG. */
        unsigned char buf[LWS_PRE + 4] = {0};
        memcpy(buf + LWS_PRE, "wsg", 3);
        c->ping_due = 0;
        if (lws_write(c->wsi, buf + LWS_PRE, 3, LWS_WRITE_PING) < 0)
            return -1;
    }
    /* lws_partial_buffered is free; lws_send_pipe_choked would poll(2) the
     * socket before every frame. A write the kernel takes only in part is
     * kept by lws (one frame at most) and ends this round. */
    while (c->out_head && !lws_partial_buffered(c->wsi)) {
        edge_out_t *o = c->out_head;
        edge_msg_t *m = o->m;
        if (write_msg(c, m) < 0)
            return -1;
        c->out_head = o->next;
        if (!c->out_head)
            c->out_tail = NULL;
        c->out_bytes -= m->len;
        edge_msg_unref(m);
        free(o);
    }
    if (c->out_head)
        lws_callback_on_writable(c->wsi);
    else if (c->close_code) /* queued frames first, then the close frame */
        return close_now(c);
    return 0;
}

int edge_on_timer(edge_loop_t *e, edge_conn_t *c)
{
    const wsg_limits_conf_t *l = &c->route->limits;
    int64_t now = edge_now_ms();
    if (c->close_code)
        return 0;
    if (c->expires_ms && now >= c->expires_ms) {
        WSG_LOG(WSG_LOG_INFO, "token expired", "conn=%s route=%s user=%s", c->id, c->route->path,
                c->user);
        edge_conn_close(e, c, WSG_CLOSE_POLICY, "token expired", "server");
        return 0;
    }
    if (l->max_lifetime_ms && now - c->opened_ms >= (int64_t)l->max_lifetime_ms) {
        edge_conn_close(e, c, WSG_CLOSE_GOING_AWAY, "max lifetime reached", "timeout");
        return 0;
    }
    /* while reads are paused the client is waiting for us, not idle */
    if (l->idle_timeout_ms && !c->rx_paused && now - c->last_rx_ms >= (int64_t)l->idle_timeout_ms) {
        edge_conn_close(e, c, WSG_CLOSE_GOING_AWAY, "idle timeout", "timeout");
        return 0;
    }
    if (l->ping_interval_ms && now - c->last_ping_ms >= (int64_t)l->ping_interval_ms) {
        c->ping_due = 1;
        c->last_ping_ms = now;
        lws_callback_on_writable(c->wsi);
    }
    schedule_timer(e, c, now);
    return 0;
}

int edge_close_check(const unsigned char *in, size_t len, int *code, const char **why)
{
    *code = WSG_CLOSE_NO_STATUS; /* no code: answered with an empty close */
    *why = NULL;
    if (len == 0)
        return 0;
    if (len == 1) /* a body is a 2-byte code, then the reason (RFC 6455 §5.5.1) */
        return *why = "close frame of one byte", WSG_CLOSE_PROTOCOL;
    *code = (in[0] << 8) | in[1];
    if (!wsg_close_peer_code_ok(*code))
        return *why = "invalid close code", WSG_CLOSE_PROTOCOL;
    if (!wsg_utf8_valid((const char *)in + 2, len - 2))
        return *why = "invalid utf-8 in close reason", WSG_CLOSE_INVALID_DATA;
    return 0;
}

int edge_on_peer_close(edge_loop_t *e, edge_conn_t *c, const unsigned char *in, size_t len)
{
    int code;
    const char *why;
    int refuse = edge_close_check(in, len, &code, &why);
    if (refuse)
        return edge_conn_fail(e, c, refuse, why);
    c->peer_code = code;
    if (len) {
        free(c->peer_reason);
        c->peer_reason = reason_dup((const char *)in + 2, len - 2);
    }
    return 0; /* lws echoes the code */
}

void edge_on_closed(edge_loop_t *e, edge_conn_t *c)
{
    int code = c->close_code, peer = !c->close_code;
    const char *reason = c->close_reason ? c->close_reason : "", *init = c->close_initiator;
    if (peer) {
        code = c->peer_code ? c->peer_code : WSG_CLOSE_ABNORMAL;
        reason = c->peer_reason ? c->peer_reason : "";
        init = "client";
    }
    WSG_LOG(WSG_LOG_INFO, "client disconnected",
            "conn=%s route=%s user=%s code=%d reason=%s initiator=%s", c->id, c->route->path,
            c->user, code, reason, init);
    edge_rxcheck_closed(e, c);
    edge_event_disconnect(e, c, code, reason, init);
    edge_chan_leave_all(e, c);
    edge_user_index(e, c, 0);
    if (edge_map_get(&e->conns, c->id) == c) {
        edge_map_del(&e->conns, c->id);
        e->n_conns--;
    }
    if (c->counted)
        edge_admit_release(e, c->remote);
    wsg_count(WSG_M_CONN_CLOSED, 1);
    wsg_gauge_add(WSG_G_CONNECTIONS, -1);
    c->wsi = NULL;
    edge_conn_free(c);
}

void edge_conn_rx_check(edge_loop_t *e, edge_conn_t *c)
{
    if (!c->wsi)
        return;
    size_t cap = unacked_cap(c);
    if (!c->rx_paused && !c->close_code && (c->parked || c->unacked > cap)) {
        c->rx_paused = 1;
        wsg_count(c->parked ? WSG_M_READ_PAUSES_BUS_FULL : WSG_M_READ_PAUSES_UNACKED, 1);
        lws_rx_flow_control(c->wsi, 0);
    } else if (c->rx_paused && (c->close_code || (!c->parked && c->unacked <= cap / 2))) {
        /* closing: read again so the client's close reply is seen (what
         * else arrives is ignored, edge_on_receive) */
        c->rx_paused = 0;
        c->last_rx_ms = edge_now_ms(); /* the idle timer starts again from here */
        lws_rx_flow_control(c->wsi, 1);
        edge_tls_kick(e, lws_get_socket_fd(c->wsi)); /* wss://: plaintext OpenSSL holds */
        if (!c->close_code)
            schedule_timer(e, c, c->last_rx_ms);
    }
}

/* The cause label of an ack status (bus.h: bus_event_ack_fn). */
static const char *undurable_cause(int status, int *counter)
{
    switch (status) {
    case WSG_ENOSPC:
        *counter = WSG_M_UNDURABLE_CLOSES_NOSPC;
        return "storage_full";
    case WSG_EUNAVAILABLE:
        *counter = WSG_M_UNDURABLE_CLOSES_UNAVAILABLE;
        return "bus_unavailable";
    default:
        *counter = WSG_M_UNDURABLE_CLOSES_BUS;
        return "bus_error";
    }
}

/* The bus could not make one of c's events durable (c NULL: its connection
 * is gone): the client is closed with 1013, logged and counted by cause,
 * once per connection. */
static void event_not_durable(edge_loop_t *e, edge_conn_t *c, const edge_q_t *q)
{
    int counter;
    const char *cause = undurable_cause(q->u.ack.status, &counter);
    if (!c) {
        WSG_LOG(WSG_LOG_WARN, "event not durable", "conn=%s type=%d cause=%s error=%s",
                q->u.ack.conn_id, q->u.ack.type, cause, wsg_err_name(q->u.ack.status));
        return;
    }
    if (c->close_code)
        return; /* closing already (maybe for this cause): counted once */
    WSG_LOG(WSG_LOG_WARN, "client closed: event not durable",
            "conn=%s route=%s user=%s code=%d cause=%s error=%s", c->id, c->route->path, c->user,
            1013, cause, wsg_err_name(q->u.ack.status));
    wsg_count(counter, 1);
    edge_conn_close(e, c, WSG_CLOSE_TRY_AGAIN, "try again later", "server");
}

void edge_on_ack(edge_loop_t *e, edge_q_t *q)
{
    if (e->acks_outstanding)
        e->acks_outstanding--;
    e->bytes_outstanding -=
        q->u.ack.body_len < e->bytes_outstanding ? q->u.ack.body_len : e->bytes_outstanding;
    wsg_count(q->u.ack.status == 0 ? WSG_M_EVENTS_ACCEPTED : WSG_M_EVENTS_REFUSED, 1);
    edge_conn_t *c = edge_map_get(&e->conns, q->u.ack.conn_id);
    if (c && !c->wsi)
        c = NULL;
    if (c)
        c->unacked = c->unacked > q->u.ack.bytes ? c->unacked - q->u.ack.bytes : 0;
    if (q->u.ack.status != 0)
        event_not_durable(e, c, q);
    else if (c)
        edge_conn_rx_check(e, c);
    edge_events_pump(e); /* room freed: parked events go first */
}
