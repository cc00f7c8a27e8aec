/*
 * bus_nats_cmd.c — edge commands of the cluster bus: core NATS
 * request/reply on <prefix>.edge.<tok(edge_id)>.cmd (every edge also
 * listens on <prefix>.edge.all.cmd for commands to any edge). The command
 * travels in headers (op, connection, code, and tokenised strings) with the
 * raw data as the payload, so it is binary-safe. Replies come back on one
 * wildcard inbox subscription per bus, <inbox>.<request id>, and are matched
 * in a pending table; the service thread times requests out. No thread
 * blocks waiting for a reply.
 *
 * Threads: bus_cmd_fn and bus_reply_fn run on NATS subscription threads,
 * except WSG_ETIMEOUT / the any-edge verdict (service thread) and
 * WSG_EUNAVAILABLE at bus_free (the freeing thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "bus/bus_nats.h"
#include "common/err.h"

struct nb_req {
    nb_req_t *next;
    uint64_t id;
    bus_reply_fn cb;
    void *ud;
    int64_t deadline;
    int any;
};

struct nb_serve {
    nb_serve_t *next;
    char *edge_id;
    natsSubscription *one, *all;
    bus_cmd_fn fn;
    void *ud;
    nats_bus_t *b;
};

typedef struct {
    struct bus_reply base;
    char *reply; /* NULL: fire-and-forget */
} nb_reply_t;

/* Takes request id out of the table; NULL when already answered. Locked. */
static nb_req_t *req_take(nats_bus_t *b, uint64_t id)
{
    nb_req_t **pp = &b->reqs[id % NB_BUCKETS];
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    nb_req_t *r = *pp;
    if (r)
        *pp = r->next;
    return r;
}

static void finish(nb_req_t *r, int status)
{
    if (r->cb)
        r->cb(r->ud, status);
    free(r);
}

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
    pthread_mutex_lock(&b->mu);
    nb_req_t **pp = &b->reqs[id % NB_BUCKETS];
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    nb_req_t *r = *pp;
    /* any edge: only a 0 (or "nobody listens at all") settles it early */
    if (r && r->any && status != 0 && !natsMsg_IsNoResponders(m))
        r = NULL;
    if (r)
        *pp = r->next;
    pthread_mutex_unlock(&b->mu);
    natsMsg_Destroy(m);
    if (r)
        finish(r, status);
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

void nb_cmd_tick(nats_bus_t *b, int64_t now)
{
    nb_req_t *due = NULL;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < NB_BUCKETS; i++) {
        nb_req_t **pp = &b->reqs[i];
        while (*pp) {
            nb_req_t *r = *pp;
            if (r->deadline > now) {
                pp = &r->next;
                continue;
            }
            *pp = r->next;
            r->next = due;
            due = r;
        }
    }
    pthread_mutex_unlock(&b->mu);
    while (due) {
        nb_req_t *r = due;
        due = r->next;
        finish(r, r->any ? WSG_EGONE : WSG_ETIMEOUT);
    }
}

void nb_cmd_free(nats_bus_t *b)
{
    for (size_t i = 0; i < NB_BUCKETS; i++) {
        while (b->reqs[i]) {
            nb_req_t *r = b->reqs[i];
            b->reqs[i] = r->next;
            finish(r, WSG_EUNAVAILABLE);
        }
    }
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

int nb_cmd_request(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, bus_reply_fn cb, void *ud)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (bus_check_cmd(cmd) != 0 || cmd->len > (size_t)INT32_MAX || (edge_id && !*edge_id))
        return WSG_EINVAL;
    if (!cb)
        return nb_status_to_err(send_cmd(b, edge_id, cmd, NULL));
    nb_req_t *r = bus_xcalloc(sizeof *r);
    r->cb = cb;
    r->ud = ud;
    r->any = edge_id == NULL;
    r->deadline = wsg_mono_ms() + (r->any ? b->tune.any_window_ms : b->tune.cmd_timeout_ms);
    char reply[128];
    pthread_mutex_lock(&b->mu);
    r->id = ++b->next_req;
    r->next = b->reqs[r->id % NB_BUCKETS];
    b->reqs[r->id % NB_BUCKETS] = r;
    pthread_mutex_unlock(&b->mu);
    snprintf(reply, sizeof reply, "%s.%llu", b->inbox, (unsigned long long)r->id);
    uint64_t id = r->id;
    natsStatus s = send_cmd(b, edge_id, cmd, reply);
    if (s == NATS_OK)
        return 0;
    pthread_mutex_lock(&b->mu);
    r = req_take(b, id);
    pthread_mutex_unlock(&b->mu);
    if (!r) /* already settled by the timer: cb was called */
        return 0;
    free(r);
    return nb_status_to_err(s);
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
        sv->fn(sv->ud, &c, &r->base);
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

int nb_cmd_serve(bus_t *bus, const char *edge_id, bus_cmd_fn fn, void *ud)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (!edge_id || !*edge_id || !fn)
        return WSG_EINVAL;
    atomic_store(&b->subscribed, 1);
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    for (nb_serve_t *s = b->serves; s; s = s->next)
        if (strcmp(s->edge_id, edge_id) == 0)
            rc = WSG_EEXISTS;
    nb_serve_t *sv = NULL;
    if (rc == 0) {
        sv = bus_xcalloc(sizeof *sv);
        sv->b = b;
        sv->edge_id = bus_xstrdup(edge_id);
        sv->fn = fn;
        sv->ud = ud;
        char *one = edge_subject(b, edge_id), *all = edge_subject(b, NULL);
        natsStatus s = natsConnection_Subscribe(&sv->one, b->nc, one, on_cmd, sv);
        if (s == NATS_OK)
            s = natsConnection_Subscribe(&sv->all, b->nc, all, on_cmd, sv);
        free(one);
        free(all);
        rc = nb_status_to_err(s);
        sv->next = b->serves;
        b->serves = sv; /* kept even on failure: freed with the bus */
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}
