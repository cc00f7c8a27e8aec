/* SPDX-License-Identifier: MIT */
/*
 * edge_channels.c — the local channel -> members index, bus commands
 * (send, close, subscribe, unsubscribe, and "do you hold this connection",
 * asked by another edge's user claim) and publish fan-out. The index is the
 * authority on a connection's channels: subscribe/unsubscribe apply here in
 * command order and are recorded in the connection's event stream for the
 * registry, the store's one writer (docs/architecture.md, "Subscriptions").
 *
 * Bus callbacks (edge_bus_cmd, edge_bus_publish) run on a loop's service
 * thread: the bus queues them for the loop's consumer (edge_bus_route picks
 * the loop that owns a command's connection; every loop has its own publish
 * handler, each keeping its own channel index) and the loop drains them, so
 * every lws object is touched only there. A command becomes one item the
 * loop may hold until a handshake ends; a publish's payload is copied once
 * per loop into a refcounted buffer with LWS_PRE headroom that every
 * recipient's outbound queue on that loop shares.
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "ws-edge/edge_int.h"

typedef struct {
    edge_conn_t **v;
    size_t n, cap;
} edge_members_t;

static char *stash(char **cursor, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *d = *cursor;
    memcpy(d, s, n);
    d[n] = '\0';
    *cursor += n + 1;
    return d;
}

void edge_bus_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    edge_t *E = ud; /* commands go to the connection's loop */
    size_t idl = cmd->conn_id ? strlen(cmd->conn_id) : 0;
    size_t rl = cmd->reason ? strlen(cmd->reason) : 0;
    size_t il = cmd->initiator ? strlen(cmd->initiator) : 0;
    size_t cl = cmd->channel ? strlen(cmd->channel) : 0;
    edge_q_t *q = edge_q_new(EDGE_Q_CMD, idl + rl + il + cl + cmd->len + 5);
    char *cur = q->store;
    q->u.cmd.cmd = *cmd;
    q->u.cmd.cmd.conn_id = stash(&cur, cmd->conn_id ? cmd->conn_id : "", idl);
    q->u.cmd.cmd.reason = stash(&cur, cmd->reason, rl);
    q->u.cmd.cmd.initiator = stash(&cur, cmd->initiator, il);
    q->u.cmd.cmd.channel = stash(&cur, cmd->channel, cl);
    q->u.cmd.cmd.data =
        cmd->len ? (unsigned char *)stash(&cur, (const char *)cmd->data, cmd->len) : NULL;
    q->u.cmd.reply = r;
    edge_apply_cmd(edge_loop_of(E, q->u.cmd.cmd.conn_id), q); /* the loop we run on */
}

bus_consumer_t *edge_bus_route(void *ud, const bus_cmd_t *cmd)
{
    const edge_t *E = ud; /* valid until bus_cmd_unserve in edge_free */
    return edge_loop_of(E, cmd->conn_id)->bc;
}

/* Each loop gets its own copy: a payload's reference count is touched by
 * its loop alone. */
void edge_bus_publish(void *ud, const bus_publish_t *p)
{
    edge_loop_t *l = ud; /* valid until bus_publish_unserve in edge_free */
    size_t cl = p->channel ? strlen(p->channel) : 0;
    size_t rl = p->route ? strlen(p->route) : 0;
    size_t xl = p->exclude ? strlen(p->exclude) : 0;
    edge_q_t *q = edge_q_new(EDGE_Q_PUBLISH, cl + rl + xl + 3);
    char *cur = q->store;
    q->u.pub.channel = stash(&cur, p->channel, cl);
    q->u.pub.route = stash(&cur, p->route, rl);
    q->u.pub.exclude = stash(&cur, p->exclude, xl);
    q->u.pub.m = edge_msg_new(p->data, p->len, p->binary);
    edge_apply_publish(l, q);
    edge_q_free(q);
    if (l->idx == 0)
        wsg_count(WSG_M_PUBLISHES, 1); /* once, not once per loop */
}

static int conn_has(const edge_conn_t *c, const char *channel)
{
    for (size_t i = 0; i < c->n_channels; i++)
        if (strcmp(c->channels[i], channel) == 0)
            return 1;
    return 0;
}

int edge_chan_join(edge_loop_t *e, edge_conn_t *c, const char *channel)
{
    if (conn_has(c, channel))
        return 0;
    edge_members_t *m = edge_map_get(&e->channels, channel);
    if (!m) {
        m = calloc(1, sizeof *m);
        if (!m)
            abort();
        edge_map_put(&e->channels, channel, m);
        int rc = bus_channel_interest(e->edge->bus, channel, 1);
        if (rc != 0)
            WSG_LOG(WSG_LOG_WARN, "channel interest failed", "channel=%s code=%s", channel,
                    wsg_err_name(rc));
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        edge_conn_t **v = realloc(m->v, cap * sizeof *v);
        if (!v)
            abort();
        m->v = v;
        m->cap = cap;
    }
    m->v[m->n++] = c;
    if (c->n_channels == c->cap_channels) {
        size_t cap = c->cap_channels ? c->cap_channels * 2 : 2;
        char **v = realloc(c->channels, cap * sizeof *v);
        if (!v)
            abort();
        c->channels = v;
        c->cap_channels = cap;
    }
    c->channels[c->n_channels++] = strdup(channel);
    return 0;
}

static void members_remove(edge_loop_t *e, const char *channel, edge_conn_t *c)
{
    edge_members_t *m = edge_map_get(&e->channels, channel);
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i] == c) {
            m->v[i] = m->v[--m->n];
            break;
        }
    if (m->n == 0) {
        edge_map_del(&e->channels, channel);
        free(m->v);
        free(m);
        bus_channel_interest(e->edge->bus, channel, 0);
    }
}

void edge_chan_leave(edge_loop_t *e, edge_conn_t *c, const char *channel)
{
    for (size_t i = 0; i < c->n_channels; i++) {
        if (strcmp(c->channels[i], channel) == 0) {
            members_remove(e, channel, c);
            free(c->channels[i]);
            c->channels[i] = c->channels[--c->n_channels];
            return;
        }
    }
}

void edge_chan_leave_all(edge_loop_t *e, edge_conn_t *c)
{
    if (c->pending)
        return; /* channels of a pending connection are not in the index yet */
    for (size_t i = 0; i < c->n_channels; i++) {
        members_remove(e, c->channels[i], c);
        free(c->channels[i]);
    }
    c->n_channels = 0;
}

/* The initiator as a static string (the command's copy dies with it). */
static const char *initiator_name(const char *s)
{
    static const char *known[] = {"client", "server", "api", "timeout", "edge_lost"};
    for (size_t i = 0; s && i < sizeof known / sizeof *known; i++)
        if (strcmp(s, known[i]) == 0)
            return known[i];
    return "api";
}

/* This loop's index is the authority on c's channels: the change applies
 * here, in command order, and is recorded after it in c's ordered event
 * stream, where the registry (the one writer of the store's subscriptions)
 * takes it. Recorded even when nothing changed, so every change a caller
 * asked for has its record, which the API waits for. A record the bus
 * refuses ends the connection (as an event would): its disconnect then
 * clears the store. */
static int apply_subscription(edge_loop_t *e, edge_conn_t *c, const bus_cmd_t *cmd)
{
    if (!cmd->channel)
        return WSG_EINVAL;
    if (cmd->op == BUS_CMD_SUBSCRIBE)
        edge_chan_join(e, c, cmd->channel);
    else
        edge_chan_leave(e, c, cmd->channel);
    int rc = edge_event_subscription(e, c, cmd->op, cmd->channel);
    if (rc != 0 && rc != WSG_EINVAL)
        edge_conn_close(e, c, WSG_CLOSE_INTERNAL, "internal error", "server");
    return rc;
}

static int apply_open(edge_loop_t *e, edge_conn_t *c, const bus_cmd_t *cmd)
{
    switch (cmd->op) {
    case BUS_CMD_SEND: {
        edge_msg_t *m = edge_msg_new(cmd->data, cmd->len, cmd->binary);
        int rc = edge_conn_queue(e, c, m);
        edge_msg_unref(m);
        return rc;
    }
    case BUS_CMD_CLOSE:
        if (c->close_code)
            return 0;
        edge_conn_close(e, c, cmd->code ? cmd->code : WSG_CLOSE_NORMAL,
                        cmd->reason ? cmd->reason : "", initiator_name(cmd->initiator));
        WSG_LOG(WSG_LOG_INFO, "closing on request", "conn=%s route=%s user=%s code=%d", c->id,
                c->route->path, c->user, cmd->code);
        return 0;
    case BUS_CMD_SUBSCRIBE:
    case BUS_CMD_UNSUBSCRIBE:
        return apply_subscription(e, c, cmd);
    case BUS_CMD_HOLDS:
        return 0;
    }
    return WSG_EINVAL;
}

static void reply_later(edge_loop_t *e, edge_q_t *q, int status)
{
    q->u.cmd.status = status;
    q->next = NULL;
    if (e->replies_tail)
        e->replies_tail->next = q;
    else
        e->replies = q;
    e->replies_tail = q;
}

void edge_flush_replies(edge_loop_t *e)
{
    edge_q_t *q = e->replies;
    e->replies = e->replies_tail = NULL;
    while (q) {
        edge_q_t *next = q->next;
        bus_cmd_reply(q->u.cmd.reply, q->u.cmd.status);
        edge_q_free(q);
        q = next;
    }
}

void edge_apply_cmd(edge_loop_t *e, edge_q_t *q)
{
    edge_conn_t *c = edge_map_get(&e->conns, q->u.cmd.cmd.conn_id);
    if (q->u.cmd.cmd.op == BUS_CMD_HOLDS) { /* a user claim elsewhere asks */
        reply_later(e, q, c ? 0 : WSG_EGONE);
        return;
    }
    if (c && c->pending) { /* handshake in flight: apply once open */
        edge_held_t *h = malloc(sizeof *h);
        if (!h)
            abort();
        h->q = q;
        h->next = c->held;
        c->held = h;
        return;
    }
    reply_later(e, q, c && c->wsi ? apply_open(e, c, &q->u.cmd.cmd) : WSG_EGONE);
}

void edge_apply_publish(edge_loop_t *e, edge_q_t *q)
{
    const char *ex = q->u.pub.exclude;
    uint64_t n = 0;
    if (q->u.pub.channel) {
        /* members that take the frame at once are written together (two
         * threads when there are many: edge_fanout.c), the others queue */
        edge_members_t *m = edge_map_get(&e->channels, q->u.pub.channel);
        size_t now = 0;
        if (m && m->n > e->fan_cap) {
            e->fan_conns = realloc(e->fan_conns, m->n * sizeof *e->fan_conns);
            if (!e->fan_conns)
                abort();
            e->fan_cap = m->n;
        }
        for (size_t i = 0; m && i < m->n; i++) {
            edge_conn_t *c = m->v[i];
            if (ex && strcmp(ex, c->id) == 0)
                continue;
            if (edge_conn_writable_now(c, q->u.pub.m))
                e->fan_conns[now++] = c;
            else if (edge_conn_queue(e, c, q->u.pub.m) == 0)
                n++;
        }
        n += edge_fanout_write(e, e->fan_conns, now, q->u.pub.m);
    } else {
        for (size_t b = 0; b < e->conns.nb; b++) {
            for (edge_map_ent_t *x = e->conns.b[b]; x; x = x->next) {
                edge_conn_t *c = x->val;
                if (!c->wsi || (ex && strcmp(ex, c->id) == 0) ||
                    (q->u.pub.route && strcmp(q->u.pub.route, c->route->path) != 0))
                    continue;
                if (edge_conn_queue(e, c, q->u.pub.m) == 0)
                    n++;
            }
        }
    }
    wsg_count(WSG_M_PUBLISH_DELIVERIES, n);
}
