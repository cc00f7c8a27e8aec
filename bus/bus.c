/*
 * bus.c — the front of bus.h: bus_open() picks an implementation by URL
 * ("" or NULL: in-process, nats://... or tls://...: NATS) and every other
 * call goes through that implementation's ops table (bus_int.h). Also the
 * argument checks both implementations share, so bad input is refused the
 * same way in standalone and cluster mode.
 */
#include <stdlib.h>
#include <string.h>

#include "bus/bus_int.h"
#include "common/err.h"

static const bus_ops_t *ops_for_url(const char *url)
{
    if (!url || !*url)
        return &bus_inproc_ops;
    if (strncmp(url, "nats://", 7) == 0 || strncmp(url, "tls://", 6) == 0)
        return &bus_nats_ops;
    return NULL;
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
    return ops->open(out, opts ? opts : &dflt, err, errlen);
}

int bus_start(bus_t *bus)
{
    return bus ? bus->ops->start(bus) : WSG_EINVAL;
}

void bus_free(bus_t *bus)
{
    if (bus)
        bus->ops->free(bus);
}

int bus_healthy(bus_t *bus)
{
    return bus ? bus->ops->healthy(bus) : 0;
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

int bus_event_publish(bus_t *bus, const bus_event_t *ev, bus_event_ack_fn cb, void *ud)
{
    return bus ? bus->ops->event_publish(bus, ev, cb, ud) : WSG_EINVAL;
}

int bus_event_capacity(bus_t *bus, size_t *events, size_t *bytes)
{
    if (!bus || !events || !bytes)
        return WSG_EINVAL;
    bus->ops->event_capacity(bus, events, bytes);
    return 0;
}

int bus_event_subscribe(bus_t *bus, const char *group, uint32_t type_mask, bus_event_fn fn,
                        void *ud)
{
    return bus ? bus->ops->event_subscribe(bus, group, type_mask, fn, ud) : WSG_EINVAL;
}

int bus_event_on_run_end(bus_t *bus, const char *group, bus_run_end_fn fn)
{
    return bus ? bus->ops->event_on_run_end(bus, group, fn) : WSG_EINVAL;
}

void bus_event_done(bus_t *bus, bus_delivery_t *d)
{
    if (bus && d)
        bus->ops->event_done(bus, d);
}

int bus_event_last_seq(bus_t *bus, const char *conn_id, uint64_t *seq)
{
    return bus ? bus->ops->event_last_seq(bus, conn_id, seq) : WSG_EINVAL;
}

int bus_cmd_request(bus_t *bus, const char *edge_id, const bus_cmd_t *cmd, bus_reply_fn cb,
                    void *ud)
{
    return bus ? bus->ops->cmd_request(bus, edge_id, cmd, cb, ud) : WSG_EINVAL;
}

int bus_cmd_serve(bus_t *bus, const char *edge_id, bus_cmd_fn fn, void *ud)
{
    return bus ? bus->ops->cmd_serve(bus, edge_id, fn, ud) : WSG_EINVAL;
}

void bus_cmd_reply(bus_reply_t *r, int status)
{
    if (r)
        r->bus->ops->cmd_reply(r, status);
}

int bus_publish(bus_t *bus, const bus_publish_t *p)
{
    return bus ? bus->ops->publish(bus, p) : WSG_EINVAL;
}

int bus_publish_serve(bus_t *bus, bus_publish_fn fn, void *ud)
{
    return bus ? bus->ops->publish_serve(bus, fn, ud) : WSG_EINVAL;
}

int bus_channel_interest(bus_t *bus, const char *channel, int on)
{
    return bus ? bus->ops->channel_interest(bus, channel, on) : WSG_EINVAL;
}

int bus_heartbeat(bus_t *bus, const char *edge_id, int leaving)
{
    return bus ? bus->ops->heartbeat(bus, edge_id, leaving) : WSG_EINVAL;
}

int bus_heartbeat_serve(bus_t *bus, bus_heartbeat_fn fn, void *ud)
{
    return bus ? bus->ops->heartbeat_serve(bus, fn, ud) : WSG_EINVAL;
}

int bus_user_shared(bus_t *bus)
{
    return bus ? bus->ops->user_shared(bus) : 0;
}

int bus_user_claim(bus_t *bus, const bus_user_t *u, uint64_t *rev)
{
    return bus && rev ? bus->ops->user_claim(bus, u, rev) : WSG_EINVAL;
}

int bus_user_release(bus_t *bus, const bus_user_t *u, uint64_t rev)
{
    return bus ? bus->ops->user_release(bus, u, rev) : WSG_EINVAL;
}
