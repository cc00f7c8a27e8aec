/* SPDX-License-Identifier: MIT */
/*
 * bus_nats_cmd.c — edge commands of the cluster bus: core NATS
 * request/reply on <prefix>.edge.<tok(edge_id)>.cmd (every edge also
 * listens on <prefix>.edge.all.cmd for commands to any edge). The command
 * travels in headers (op, connection, code, and tokenised strings) with the
 * raw data as the payload, so it is binary-safe. Replies come back on one
 * wildcard inbox subscription per bus, <inbox>.<request id>, and are matched
 * by bus.c's request table (bus_req.c), which also times them out and
 * applies the any-edge rule. No thread blocks waiting for a reply.
 *
 * Threads: commands and replies arrive on NATS subscription threads and
 * go straight to bus_core_cmd_in() / bus_core_reply_in().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "bus/bus_nats.h"
#include "common/err.h"

/* Listening for one edge id. Kept until bus_free() once unserved: a NATS
 * thread may still be inside on_cmd with it. */
struct nb_serve {
    nb_serve_t *next;
    char *edge_id;
    natsSubscription *one, *all;
    nats_bus_t *b;
    int off;
};

typedef struct {
    struct bus_reply base;
    char *reply; /* NULL: fire-and-forget */
} nb_reply_t;

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *ud)
{
    nats_bus_t *b = ud;
    const char *subj = natsMsg_GetSubject(m), *dot = strrchr(subj, '.');
    uint64_t id = dot ? strtoull(dot + 1, NULL, 10) : 0;
    int status = WSG_EGONE;
    if (!natsMsg_IsNoResponders(m)) {
        char buf[16] = {0};
        int n = natsMsg_GetDataLength(m);
        memcpy(buf, natsMsg_GetData(m), n > 15 ? 15 : (size_t)(n < 0 ? 0 : n));
        status = (int)strtol(buf, NULL, 10);
    }
    int final = natsMsg_IsNoResponders(m);
    natsMsg_Destroy(m);
    bus_core_reply_in(&b->base, id, status, final);
}

int nb_cmd_open(nats_bus_t *b)
{
    natsInbox *ib = NULL;
    if (natsInbox_Create(&ib) != NATS_OK)
        return WSG_EBUS;
    b->inbox = bus_xstrdup((const char *)ib);
    natsInbox_Destroy(ib);
    size_t n = strlen(b->inbox) + 3;
    char *subj = bus_xcalloc(n);
    snprintf(subj, n, "%s.*", b->inbox);
    natsStatus s = natsConnection_Subscribe(&b->inbox_sub, b->nc, subj, on_reply, b);
    free(subj);
    return nb_status_to_err(s);
}

void nb_cmd_free(nats_bus_t *b)
{
    while (b->serves) {
        nb_serve_t *s = b->serves;
        b->serves = s->next;
        natsSubscription_Destroy(s->one);
        natsSubscription_Destroy(s->all);
        free(s->edge_id);
        free(s);
    }
    natsSubscription_Destroy(b->inbox_sub);
    free(b->inbox);
}

static char *edge_subject(nats_bus_t *b, const char *edge_id)
{
    char *t = edge_id ? nb_tok(edge_id, strlen(edge_id)) : bus_xstrdup("all");
    size_t n = strlen(b->prefix) + strlen(t) + 16;
    char *s = bus_xcalloc(n);
    snprintf(s, n, "%s.edge.%s.cmd", b->prefix, t);
    free(t);
    return s;
}

static natsStatus cmd_headers(natsMsg *m, const bus_cmd_t *c)
{
    char num[16];
    snprintf(num, sizeof num, "%d", (int)c->op);
    natsStatus s = natsMsgHeader_Set(m, "Wsg-Op", num);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Conn", c->conn_id);
    if (s == NATS_OK && c->binary)
        s = natsMsgHeader_Set(m, "Wsg-Binary", "1");
    snprintf(num, sizeof num, "%d", c->code);
    if (s == NATS_OK && c->op == BUS_CMD_CLOSE)
        s = natsMsgHeader_Set(m, "Wsg-Code", num);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Reason", c->reason);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Initiator", c->initiator);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Channel", c->channel);
    return s;
}

static natsStatus send_cmd(nats_bus_t *b, const char *edge_id, const bus_cmd_t *cmd,
                           const char *reply)
{
    char *subj = edge_subject(b, edge_id);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, reply, (const char *)cmd->data, (int)cmd->len);
    if (s == NATS_OK)
        s = cmd_headers(m, cmd);
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(b->nc, m);
    natsMsg_Destroy(m);
    free(subj);
    return s;
}

int nb_cmd_send(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, uint64_t req_id)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (cmd->len > (size_t)INT32_MAX)
        return WSG_EINVAL;
    char reply[128];
    if (req_id)
        snprintf(reply, sizeof reply, "%s.%llu", b->inbox, (unsigned long long)req_id);
    return nb_status_to_err(send_cmd(b, edge_id, cmd, req_id ? reply : NULL));
}

/* Decodes the command in m into c (strings owned by *strs). 0 or WSG_EINVAL. */
static int decode_cmd(natsMsg *m, bus_cmd_t *c, char *strs[4])
{
    const char *v = NULL;
    memset(c, 0, sizeof *c);
    if (natsMsgHeader_Get(m, "Wsg-Op", &v) != NATS_OK)
        return WSG_EINVAL;
    c->op = (bus_cmd_op_t)atoi(v);
    c->conn_id = strs[0] = nb_hdr_get_tok(m, "Wsg-Conn");
    c->reason = strs[1] = nb_hdr_get_tok(m, "Wsg-Reason");
    c->initiator = strs[2] = nb_hdr_get_tok(m, "Wsg-Initiator");
    c->channel = strs[3] = nb_hdr_get_tok(m, "Wsg-Channel");
    if (natsMsgHeader_Get(m, "Wsg-Code", &v) == NATS_OK)
        c->code = atoi(v);
    c->binary = natsMsgHeader_Get(m, "Wsg-Binary", &v) == NATS_OK && strcmp(v, "1") == 0;
    c->data = (const unsigned char *)natsMsg_GetData(m);
    c->len = (size_t)natsMsg_GetDataLength(m);
    return bus_check_cmd(c);
}

static void on_cmd(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *ud)
{
    nb_serve_t *sv = ud;
    nats_bus_t *b = sv->b;
    bus_cmd_t c;
    char *strs[4] = {0};
    nb_reply_t *r = bus_xcalloc(sizeof *r);
    r->base.bus = &b->base;
    r->reply = natsMsg_GetReply(m) ? bus_xstrdup(natsMsg_GetReply(m)) : NULL;
    if (decode_cmd(m, &c, strs) == 0)
        bus_core_cmd_in(&b->base, sv->edge_id, &c, &r->base);
    else
        nb_cmd_reply(&r->base, WSG_EINVAL);
    for (int i = 0; i < 4; i++)
        free(strs[i]);
    natsMsg_Destroy(m);
}

void nb_cmd_reply(bus_reply_t *rr, int status)
{
    nb_reply_t *r = (nb_reply_t *)rr;
    nats_bus_t *b = (nats_bus_t *)rr->bus;
    if (r->reply) {
        char num[16];
        int n = snprintf(num, sizeof num, "%d", status);
        natsConnection_Publish(b->nc, r->reply, num, n);
    }
    free(r->reply);
    free(r);
}

enum { NB_UNSERVE_FLUSH_MS = 2000 };

static int serve_on(nats_bus_t *b, const char *edge_id)
{
    nb_serve_t *sv = bus_xcalloc(sizeof *sv);
    sv->b = b;
    sv->edge_id = bus_xstrdup(edge_id);
    char *one = edge_subject(b, edge_id), *all = edge_subject(b, NULL);
    natsStatus s = natsConnection_Subscribe(&sv->one, b->nc, one, on_cmd, sv);
    if (s == NATS_OK)
        s = natsConnection_Subscribe(&sv->all, b->nc, all, on_cmd, sv);
    free(one);
    free(all);
    sv->off = s != NATS_OK;
    sv->next = b->serves;
    b->serves = sv; /* kept even on failure: freed with the bus */
    return nb_status_to_err(s);
}

int nb_cmd_serve(bus_t *bus, const char *edge_id, int on)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    atomic_store(&b->subscribed, 1);
    pthread_mutex_lock(&b->mu);
    int rc = 0, dropped = 0;
    if (on) {
        rc = serve_on(b, edge_id);
    } else {
        for (nb_serve_t *sv = b->serves; sv; sv = sv->next)
            if (!sv->off && strcmp(sv->edge_id, edge_id) == 0) {
                sv->off = 1; /* its on_cmd calls find no handler: WSG_EGONE */
                natsSubscription_Unsubscribe(sv->one);
                natsSubscription_Unsubscribe(sv->all);
                dropped = 1;
            }
    }
    pthread_mutex_unlock(&b->mu);
    /* libnats drops what still arrives for an unsubscribed subscription, so
     * a command the server routed here before it saw the UNSUB would get no
     * answer and time out. The round trip makes the server drop the
     * interest first: later commands get no-responders, WSG_EGONE. */
    if (dropped && natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED)
        natsConnection_FlushTimeout(b->nc, NB_UNSERVE_FLUSH_MS); /* away: no interest anyway */
    return rc;
}
