/* SPDX-License-Identifier: MIT */
/*
 * bus.c — the front of bus.h and the half of its semantics that does not
 * depend on the transport: bus_open() picks a transport by URL ("" or
 * NULL: in-process, nats://... or tls://...: NATS) and adds bus.c's state
 * (bus_core.h); every entry point checks its arguments here, once, so bad
 * input is refused the same way in standalone and cluster mode; handlers
 * are registered and unregistered in bus_reg.c, commands go through the
 * request table of bus_req.c, and everything the transport receives comes
 * back through bus_core_*_in() to be handed to the registered handlers:
 * commands, publishes and replies through the queue of the consumer the
 * handler runs on (bus_consumer.c), never inline.
 *
 * Threads: every function may be called from any thread (bus.h).
 */
#include <stdlib.h>
#include <string.h>

#include "bus/bus_core.h"
#include "common/err.h"

static const bus_ops_t *ops_for_url(const char *url)
{
    if (!url || !*url)
        return &bus_inproc_ops;
    if (strncmp(url, "nats://", 7) == 0 || strncmp(url, "tls://", 6) == 0)
        return &bus_nats_ops;
    return NULL;
}

static void core_free(bus_core_t *c)
{
    bus_req_free(c);                  /* replies still owed go to the own consumer, */
    bus_consumer_thread_free(c->own); /* which runs them before it stops */
    bus_reg_free(c);
    free(c);
}

int bus_open(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen)
{
    if (!out)
        return wsg_errf(err, errlen, WSG_EINVAL, "bus: no handle to open into");
    *out = NULL;
    const char *url = opts ? opts->url : NULL;
    const bus_ops_t *ops = ops_for_url(url);
    if (!ops)
        return wsg_errf(err, errlen, WSG_EINVAL,
                        "bus: unsupported URL scheme (use \"\" for in-process or "
                        "nats://host:port)"); /* not echoed: it may carry credentials */
    bus_opts_t dflt = {0};
    bus_core_t *c = bus_xcalloc(sizeof *c);
    bus_reg_init(c);
    if (bus_consumer_thread_new(c, &c->own) != 0 || bus_req_init(c) != 0) {
        core_free(c);
        return wsg_errf(err, errlen, WSG_EBUS, "bus: cannot start its threads");
    }
    bus_t *bus = NULL;
    int rc = ops->open(&bus, opts ? opts : &dflt, err, errlen);
    if (rc != 0) {
        bus_req_stop(c);
        core_free(c);
        return rc;
    }
    c->bus = bus;
    bus->core = c;
    *out = bus;
    return 0;
}

int bus_start(bus_t *bus)
{
    return bus ? bus->ops->start(bus) : WSG_EINVAL;
}

void bus_free(bus_t *bus)
{
    if (!bus)
        return;
    bus_core_t *c = bus->core;
    bus_req_stop(c);
    bus_consumer_thread_sync(c->own); /* commands it holds reply through the transport */
    bus->ops->free(bus);              /* no transport callback after this */
    core_free(c);
}

void bus_core_sync(bus_t *bus)
{
    bus_consumer_thread_sync(bus->core->own);
}

int bus_healthy(bus_t *bus)
{
    return bus ? bus->ops->healthy(bus) : 0;
}

int bus_roundtrip(bus_t *bus, int timeout_ms)
{
    if (!bus)
        return WSG_EUNAVAILABLE;
    return bus->ops->roundtrip ? bus->ops->roundtrip(bus, timeout_ms) : 0;
}

void *bus_xcalloc(size_t n)
{
    void *p = calloc(1, n);
    if (!p)
        abort();
    return p;
}

char *bus_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = bus_xcalloc(n);
    memcpy(p, s, n);
    return p;
}

int bus_check_event(const bus_event_t *ev)
{
    if (!ev || !ev->id || !*ev->id || !ev->conn_id || !*ev->conn_id)
        return WSG_EINVAL;
    if (ev->type < BUS_EV_CONNECT || ev->type > BUS_EV_SUBSCRIPTION || ev->seq == 0)
        return WSG_EINVAL;
    if (!ev->body && ev->body_len)
        return WSG_EINVAL;
    return 0;
}

int bus_check_type_mask(uint32_t type_mask)
{
    return type_mask && !(type_mask & ~(uint32_t)BUS_EV_KNOWN) ? 0 : WSG_EINVAL;
}

int bus_check_cmd(const bus_cmd_t *cmd)
{
    if (!cmd || !cmd->conn_id || !*cmd->conn_id)
        return WSG_EINVAL;
    switch (cmd->op) {
    case BUS_CMD_SEND:
        return cmd->data || !cmd->len ? 0 : WSG_EINVAL;
    case BUS_CMD_CLOSE:
        return 0;
    case BUS_CMD_SUBSCRIBE:
    case BUS_CMD_UNSUBSCRIBE:
        return cmd->channel && *cmd->channel ? 0 : WSG_EINVAL;
    case BUS_CMD_HOLDS:
        return 0;
    }
    return WSG_EINVAL;
}

int bus_check_publish(const bus_publish_t *p)
{
    if (!p || (!p->data && p->len))
        return WSG_EINVAL;
    if (p->channel && !*p->channel)
        return WSG_EINVAL;
    return 0;
}

int bus_check_user(const bus_user_t *u)
{
    if (!u || !u->route || !*u->route || !u->user || !*u->user || !u->conn_id || !*u->conn_id ||
        !u->edge_id || !*u->edge_id)
        return WSG_EINVAL;
    return 0;
}

/* ---- events ------------------------------------------------------------------ */

int bus_event_publish(bus_t *bus, const bus_event_t *ev, bus_event_ack_fn cb, void *ud)
{
    if (!bus || bus_check_event(ev) != 0)
        return WSG_EINVAL;
    return bus->ops->event_publish(bus, ev, cb, ud);
}

int bus_event_capacity(bus_t *bus, size_t *events, size_t *bytes)
{
    if (!bus || !events || !bytes)
        return WSG_EINVAL;
    bus->ops->event_capacity(bus, events, bytes);
    return 0;
}

/* The transport calls these with the group's entry; an unsubscribed group's
 * events are left undone (redelivered after a restart or AckWait). */
static void event_tramp(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt)
{
    bus_reg_t *r = ud;
    if (!bus_reg_enter_one(r))
        return;
    bus_reg_t *prev = bus_reg_running(r);
    ((bus_event_fn)r->fn)(r->ud, ev, d, attempt);
    bus_reg_running(prev);
    bus_reg_leave(r);
}

static void run_end_tramp(void *ud)
{
    bus_reg_t *r = ud;
    if (!bus_reg_enter_one(r))
        return;
    bus_reg_t *prev = bus_reg_running(r);
    r->run_end(r->ud);
    bus_reg_running(prev);
    bus_reg_leave(r);
}

int bus_event_subscribe(bus_t *bus, const char *group, uint32_t type_mask, bus_event_fn fn,
                        void *ud)
{
    if (!bus || !group || !*group || !fn || bus_check_type_mask(type_mask) != 0)
        return WSG_EINVAL;
    bus_reg_t *r = NULL;
    int rc = bus_reg_add(bus->core, BUS_REG_EV, group, (void (*)(void))fn, ud, &r);
    if (rc == 0)
        rc = bus->ops->event_subscribe(bus, group, type_mask, event_tramp, r);
    if (rc != 0 && r) /* the transport never saw it */
        bus_reg_drop(bus->core, BUS_REG_EV, r);
    return rc;
}

int bus_event_unsubscribe(bus_t *bus, const char *group)
{
    if (!bus || !group || !*group)
        return WSG_EINVAL;
    return bus_reg_remove(bus->core, BUS_REG_EV, group, NULL, NULL);
}

int bus_event_on_run_end(bus_t *bus, const char *group, bus_run_end_fn fn)
{
    if (!bus || !group || !fn)
        return WSG_EINVAL;
    bus_core_t *c = bus->core;
    bus_reg_t *r = NULL;
    pthread_mutex_lock(&c->reg_mu);
    for (bus_reg_t *x = c->regs[BUS_REG_EV]; x && !r; x = x->next)
        if (!x->removed && strcmp(x->key, group) == 0)
            r = x;
    pthread_mutex_unlock(&c->reg_mu);
    if (!r)
        return WSG_EINVAL;
    int rc = bus->ops->event_on_run_end(bus, group, run_end_tramp);
    if (rc == 0)
        r->run_end = fn; /* before bus_start(): no delivery thread reads it yet */
    return rc;
}

void bus_event_done(bus_t *bus, bus_delivery_t *d)
{
    if (bus && d)
        bus->ops->event_done(bus, d);
}

int bus_event_last_seq(bus_t *bus, const char *conn_id, uint64_t *seq)
{
    if (!bus || !conn_id || !*conn_id || !seq)
        return WSG_EINVAL;
    return bus->ops->event_last_seq(bus, conn_id, seq);
}

/* ---- commands ---------------------------------------------------------------- */

int bus_cmd_request(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, bus_reply_fn cb,
                    void *ud)
{
    if (!bus || bus_check_cmd(cmd) != 0 || (edge_id && !*edge_id))
        return WSG_EINVAL;
    return bus_req_cmd(bus->core, edge_id, cmd, cb, ud);
}

int bus_cmd_serve(bus_t *bus, const char *edge_id, bus_cmd_fn fn, void *ud)
{
    return bus_cmd_serve_on(bus, edge_id, NULL, fn, ud);
}

int bus_cmd_serve_on(bus_t *bus, const char *edge_id, bus_cmd_route_fn route, bus_cmd_fn fn,
                     void *ud)
{
    if (!bus || !edge_id || !*edge_id || !fn)
        return WSG_EINVAL;
    int rc =
        bus_reg_add_on(bus->core, BUS_REG_CMD, edge_id, (void (*)(void))fn, ud, NULL, route, NULL);
    if (rc == 0 && bus->ops->serve && (rc = bus->ops->serve(bus, edge_id, 1)) != 0)
        bus_reg_remove(bus->core, BUS_REG_CMD, edge_id, NULL, NULL);
    return rc;
}

int bus_cmd_unserve(bus_t *bus, const char *edge_id)
{
    if (!bus || !edge_id || !*edge_id)
        return WSG_EINVAL;
    int rc = bus_reg_remove(bus->core, BUS_REG_CMD, edge_id, NULL, NULL);
    if (rc == 0 && bus->ops->serve)
        bus->ops->serve(bus, edge_id, 0);
    return rc;
}

void bus_cmd_reply(bus_reply_t *r, int status)
{
    if (!r)
        return;
    if (r->req)
        bus_req_local_reply(r, status);
    else
        r->bus->ops->cmd_reply(r, status);
}

void bus_core_cmd_in(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, bus_reply_t *r)
{
    bus_reg_t *h = NULL;
    if (!bus_reg_enter(bus->core, BUS_REG_CMD, edge_id, &h, 1)) {
        bus_cmd_reply(r, WSG_EGONE);
        return;
    }
    if (bus_consumer_push_cmd(bus_reg_consumer(h, cmd), h, cmd, r) != 0)
        bus_cmd_reply(r, WSG_EFULL);
    bus_reg_leave(h);
}

/* ---- publishes and heartbeats ----------------------------------------------------- */

/* Queues p for every publish handler: 0, or WSG_EFULL when one's consumer
 * had no room. */
static int publish_queue(bus_core_t *c, const bus_publish_t *p)
{
    bus_reg_t *local[BUS_REG_LOCAL], **hs;
    size_t n = bus_reg_enter_all(c, BUS_REG_PUB, NULL, local, &hs);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (bus_consumer_push_pub(bus_reg_consumer(hs[i], NULL), hs[i], p) != 0)
            rc = WSG_EFULL;
        bus_reg_leave(hs[i]);
    }
    if (hs != local)
        free(hs);
    return rc;
}

/* Calls every handler of kind with call(fn, ud, arg). */
static void fan_out(bus_core_t *c, int kind, void (*call)(bus_reg_t *r, const void *arg),
                    const void *arg)
{
    bus_reg_t *local[BUS_REG_LOCAL], **hs;
    size_t n = bus_reg_enter_all(c, kind, NULL, local, &hs);
    for (size_t i = 0; i < n; i++) {
        bus_reg_t *prev = bus_reg_running(hs[i]);
        call(hs[i], arg);
        bus_reg_running(prev);
        bus_reg_leave(hs[i]);
    }
    if (hs != local)
        free(hs);
}

void bus_core_publish_in(bus_t *bus, const bus_publish_t *p)
{
    publish_queue(bus->core, p); /* a full consumer logs its refusal */
}

typedef struct {
    const char *edge_id;
    int64_t at_ms;
    int leaving;
} hb_arg_t;

static void call_heartbeat(bus_reg_t *r, const void *arg)
{
    const hb_arg_t *h = arg;
    ((bus_heartbeat_fn)r->fn)(r->ud, h->edge_id, h->at_ms, h->leaving);
}

void bus_core_heartbeat_in(bus_t *bus, const char *edge_id, int64_t at_ms, int leaving)
{
    hb_arg_t h = {.edge_id = edge_id, .at_ms = at_ms, .leaving = leaving};
    if (bus->ops->cmd_send) /* the any-edge rule counts remote edges by their beats */
        bus_req_edge_beat(bus->core, edge_id, leaving);
    fan_out(bus->core, BUS_REG_HB, call_heartbeat, &h);
}

int bus_publish(bus_t *bus, const bus_publish_t *p)
{
    if (!bus || bus_check_publish(p) != 0)
        return WSG_EINVAL;
    if (bus->ops->publish)
        return bus->ops->publish(bus, p);
    if (!p->channel || bus_interest_has(bus->core, p->channel))
        return publish_queue(bus->core, p);
    return 0;
}

static int serve_kind(bus_t *bus, int kind, bus_consumer_t *on, void (*fn)(void), void *ud,
                      int (*listen)(bus_t *bus))
{
    if (!bus || !fn)
        return WSG_EINVAL;
    int rc = bus_reg_add_on(bus->core, kind, NULL, fn, ud, on, NULL, NULL);
    if (rc == 0 && listen && (rc = listen(bus)) != 0)
        bus_reg_remove(bus->core, kind, NULL, fn, ud);
    return rc;
}

int bus_publish_serve(bus_t *bus, bus_publish_fn fn, void *ud)
{
    return bus_publish_serve_on(bus, NULL, fn, ud);
}

int bus_publish_serve_on(bus_t *bus, bus_consumer_t *c, bus_publish_fn fn, void *ud)
{
    return serve_kind(bus, BUS_REG_PUB, c, (void (*)(void))fn, ud,
                      bus ? bus->ops->listen_publishes : NULL);
}

int bus_publish_unserve(bus_t *bus, bus_publish_fn fn, void *ud)
{
    if (!bus || !fn)
        return WSG_EINVAL;
    return bus_reg_remove(bus->core, BUS_REG_PUB, NULL, (void (*)(void))fn, ud);
}

int bus_channel_interest(bus_t *bus, const char *channel, int on)
{
    if (!bus || !channel || !*channel)
        return WSG_EINVAL;
    return bus_interest(bus->core, channel, on);
}

int bus_heartbeat(bus_t *bus, const char *edge_id, int leaving)
{
    if (!bus || !edge_id || !*edge_id)
        return WSG_EINVAL;
    return bus->ops->heartbeat(bus, edge_id, leaving ? 1 : 0);
}

int bus_heartbeat_serve(bus_t *bus, bus_heartbeat_fn fn, void *ud)
{
    return serve_kind(bus, BUS_REG_HB, NULL, (void (*)(void))fn, ud,
                      bus ? bus->ops->listen_heartbeats : NULL);
}

int bus_heartbeat_unserve(bus_t *bus, bus_heartbeat_fn fn, void *ud)
{
    if (!bus || !fn)
        return WSG_EINVAL;
    return bus_reg_remove(bus->core, BUS_REG_HB, NULL, (void (*)(void))fn, ud);
}

/* ---- where connections live (bus_event_watch) -------------------------------------- */

typedef struct {
    bus_event_type_t type;
    const char *conn_id, *edge_id;
} watch_arg_t;

static void call_watch(bus_reg_t *r, const void *arg)
{
    const watch_arg_t *w = arg;
    ((bus_watch_fn)r->fn)(r->ud, w->type, w->conn_id, w->edge_id);
}

void bus_core_watch_in(bus_t *bus, bus_event_type_t type, const char *conn_id, const char *edge_id)
{
    if (type != BUS_EV_CONNECT && type != BUS_EV_DISCONNECT)
        return;
    watch_arg_t w = {.type = type, .conn_id = conn_id, .edge_id = edge_id ? edge_id : ""};
    fan_out(bus->core, BUS_REG_WATCH, call_watch, &w);
}

int bus_event_watch(bus_t *bus, bus_watch_fn fn, void *ud)
{
    if (bus && !bus->ops->listen_watch)
        return WSG_ENOTSUP;
    return serve_kind(bus, BUS_REG_WATCH, NULL, (void (*)(void))fn, ud,
                      bus ? bus->ops->listen_watch : NULL);
}

int bus_event_unwatch(bus_t *bus, bus_watch_fn fn, void *ud)
{
    if (!bus || !fn)
        return WSG_EINVAL;
    return bus_reg_remove(bus->core, BUS_REG_WATCH, NULL, (void (*)(void))fn, ud);
}

/* ---- user claims ---------------------------------------------------------------- */

int bus_user_shared(bus_t *bus)
{
    return bus ? bus->ops->user_shared(bus) : 0;
}

int bus_user_claim(bus_t *bus, const bus_user_t *u, uint64_t *rev)
{
    if (rev)
        *rev = 0;
    if (!bus || !rev || bus_check_user(u) != 0)
        return WSG_EINVAL;
    return bus->ops->user_claim(bus, u, rev);
}

int bus_user_release(bus_t *bus, const bus_user_t *u, uint64_t rev)
{
    if (!bus || bus_check_user(u) != 0)
        return WSG_EINVAL;
    return bus->ops->user_release(bus, u, rev);
}

/* ---- lost edges ----------------------------------------------------------------- */

int bus_edge_lost_mark(bus_t *bus, const char *edge_id)
{
    if (!bus || !edge_id || !*edge_id)
        return WSG_EINVAL;
    return bus->ops->edge_lost_mark ? bus->ops->edge_lost_mark(bus, edge_id) : 0;
}

int bus_edge_lost_take(bus_t *bus, const char *edge_id, int *lost)
{
    if (lost)
        *lost = 0;
    if (!bus || !edge_id || !*edge_id || !lost)
        return WSG_EINVAL;
    return bus->ops->edge_lost_take ? bus->ops->edge_lost_take(bus, edge_id, lost) : 0;
}
