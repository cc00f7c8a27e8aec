/* SPDX-License-Identifier: MIT */
/*
 * api_registry.c — the one writer of the store's connections and
 * subscriptions, fed by the edges' ordered event streams (consumer group
 * "registry": connect -> store_conn_put and the event's "channels";
 * subscription -> store_sub_add/remove, then the API request waiting for it
 * is answered (api_subwait.c); disconnect -> store_conn_delete); records
 * edge heartbeats, and makes sure every connect gets exactly one disconnect:
 *
 *   - standalone restart: connections found in the store at api_new() belong
 *     to the previous run's edge; shortly after start (once the registry has
 *     consumed disconnects the previous run published but did not record)
 *     one "edge_lost" disconnect (code 1006) is published for each one still
 *     recorded, and it is deleted;
 *   - cluster: an edge whose heartbeat is older than cluster.edge_timeout
 *     gets the same treatment for its connections (lose_edge()).
 *
 * A maintenance thread runs the cluster sweep, store_sub_gc() every minute,
 * the store/bus health gauges every second and the periodic state report
 * (log.report_interval).
 *
 * A run of events (what the bus hands out before it waits again: see
 * bus_event_on_run_end) is applied in one store transaction and acked after
 * its commit: under a burst of connects one commit serves many, instead of
 * one SQLite commit (WAL append, file locks) or one PostgreSQL round trip
 * per event; a burst of disconnects is deleted STORE_DELETE_MAX at a time
 * in one statement per table (store_conn_delete_many). If anything in the run fails, the
 * transaction is rolled back and the run applied again event by event, so a bad event or a store
 * outage is handled exactly as without batching.
 *
 * Threads: the event callbacks run on the group's bus thread, heartbeats on
 * the bus service thread, maintenance on its own; all share reg_st under
 * reg_mu, which the bus thread holds from the first event of a run to its
 * end (a run is one critical section).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/b64.h"
#include "common/close.h"
#include "common/envelope.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/recent.h"
#include "common/thread.h"
#include "control-api/api_int.h"

#define GC_INTERVAL_MS 60000
#define LOST_GRACE_MS 2000
#define SUBWAIT_POLL_MS 50
#define BUS_ROUNDTRIP_MS 1000 /* a PONG later than this: the bus is not heard */

static int64_t parse_ts(const char *s)
{
    int64_t ms;
    return wsg_ts_parse(s, &ms) == 0 ? ms : wsg_wall_ms();
}

/* Cluster, one_connection_per_user: replace: the edge closes the user's
 * older connection on itself; those on other edges are closed from here
 * (4409 "replaced"), the newest connection (connected_at, then id) wins. */
static void replace_elsewhere(api_t *a, const store_conn_t *c)
{
    const wsg_route_conf_t *rt = wsg_config_route(a->cfg, c->route);
    if (!a->cluster || !c->user || !rt || rt->one_connection_per_user != WSG_ONE_CONN_REPLACE)
        return;
    store_conn_query_t q = {.user = c->user, .route = c->route, .limit = 1000};
    store_conn_list_t l = {0};
    if (store_conn_list(a->reg_st, &q, &l) != 0)
        return;
    for (size_t i = 0; i < l.n; i++) {
        const store_conn_t *o = &l.items[i];
        int older = o->connected_at_ms < c->connected_at_ms ||
                    (o->connected_at_ms == c->connected_at_ms && strcmp(o->id, c->id) < 0);
        if (!older || strcmp(o->edge_id, c->edge_id) == 0)
            continue;
        bus_cmd_t cmd = {.op = BUS_CMD_CLOSE,
                         .conn_id = o->id,
                         .code = WSG_CLOSE_REPLACED,
                         .reason = "replaced",
                         .initiator = "server"};
        bus_cmd_request(a->bus, o->edge_id, &cmd, NULL, NULL);
    }
    store_conn_list_free(&l);
}

static int on_connect(api_t *a, const bus_event_t *ev, json_t *o)
{
    json_t *ctx = json_object_get(o, "context");
    char *ctxs = json_is_object(ctx) ? json_dumps(ctx, JSON_COMPACT) : strdup("{}");
    if (!ctxs)
        return WSG_ENOMEM;
    int64_t at = parse_ts(json_string_value(json_object_get(o, "timestamp")));
    store_conn_t c = {.id = (char *)ev->conn_id,
                      .route = (char *)(ev->route ? ev->route : ""),
                      .edge_id = (char *)(ev->edge_id ? ev->edge_id : ""),
                      .user = (char *)json_string_value(json_object_get(o, "user")),
                      .context_json = ctxs,
                      .remote_addr = (char *)json_string_value(json_object_get(o, "remote_addr")),
                      .connected_at_ms = at,
                      .last_active_at_ms = at};
    if (!c.remote_addr)
        c.remote_addr = "";
    int rc = store_conn_put(a->reg_st, &c);
    /* A connect is a sign of life of its edge: an edge that dies before any
     * of its heartbeats reached a registry is still found stale later. */
    if (rc == 0 && a->cluster && *c.edge_id)
        rc = store_edge_heartbeat(a->reg_st, c.edge_id, wsg_wall_ms());
    if (rc == 0)
        replace_elsewhere(a, &c);
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(o, "channels"), i, ch)
    {
        if (rc == 0 && json_is_string(ch))
            rc = store_sub_add(a->reg_st, json_string_value(ch), ev->conn_id);
    }
    free(ctxs);
    return rc;
}

/* The store or the bus went away (a registry call failed with
 * WSG_EUNAVAILABLE, a ping failed, NATS disconnected): heartbeats of that
 * time may not have arrived or been recorded, so no edge is declared lost
 * until a whole cluster.edge_timeout has passed with both back.
 * Caller holds reg_mu. */
static void hold_sweep(api_t *a)
{
    a->sweep_from_ms = wsg_wall_ms() + (int64_t)a->cfg->cluster.edge_timeout_ms;
}

/* The change a BUS_EV_SUBSCRIPTION event records: *op and *channel (valid
 * while the returned tree lives; NULL when malformed). */
static json_t *sub_change(const bus_event_t *ev, bus_cmd_op_t *op, const char **channel)
{
    json_t *o = json_loadb(ev->body, ev->body_len, 0, NULL);
    const char *s = json_string_value(json_object_get(o, "op"));
    *channel = json_string_value(json_object_get(o, "channel"));
    if (!s || !*channel || (strcmp(s, "subscribe") != 0 && strcmp(s, "unsubscribe") != 0)) {
        json_decref(o);
        return NULL;
    }
    *op = strcmp(s, "subscribe") == 0 ? BUS_CMD_SUBSCRIBE : BUS_CMD_UNSUBSCRIBE;
    return o;
}

static int apply_subscription(api_t *a, const bus_event_t *ev)
{
    bus_cmd_op_t op;
    const char *ch;
    json_t *o = sub_change(ev, &op, &ch);
    if (!o)
        return WSG_EINVAL;
    int rc = op == BUS_CMD_SUBSCRIBE ? store_sub_add(a->reg_st, ch, ev->conn_id)
                                     : store_sub_remove(a->reg_st, ch, ev->conn_id);
    json_decref(o);
    return rc;
}

/* The dashboard's live tail (common/recent.h): each change the registry
 * recorded, or could not. */
static void tail_event(const bus_event_t *ev, int rc)
{
    char what[160] = "";
    const char *kind = ev->type == BUS_EV_CONNECT      ? "connect"
                       : ev->type == BUS_EV_DISCONNECT ? "disconnect"
                                                       : "subscription";
    bus_cmd_op_t op;
    const char *ch;
    json_t *o = ev->type == BUS_EV_SUBSCRIPTION ? sub_change(ev, &op, &ch) : NULL;
    if (o)
        snprintf(what, sizeof what, "%s %s ", op == BUS_CMD_SUBSCRIBE ? "subscribe" : "unsubscribe",
                 ch);
    wsg_recent_add(kind, "%sconn=%s route=%s edge=%s%s%s", what, ev->conn_id,
                   ev->route ? ev->route : "", ev->edge_id ? ev->edge_id : "",
                   rc ? " not recorded: " : "", rc ? wsg_err_name(rc) : "");
    json_decref(o);
}

/* ev is in the store now (rc 0), or failed for good: a request of the
 * control API waiting for that change gets its answer (api_subwait.c). */
static void recorded(api_t *a, const bus_event_t *ev, int rc)
{
    bus_cmd_op_t op;
    const char *ch;
    tail_event(ev, rc);
    if (ev->type != BUS_EV_SUBSCRIPTION || !a->n_sw)
        return;
    json_t *o = sub_change(ev, &op, &ch);
    if (o)
        api_subwait_applied(a, ev->conn_id, ch, op, rc);
    json_decref(o);
}

/* Applies one connect/disconnect/subscription change to the store. Caller
 * holds reg_mu. */
static int apply_event(api_t *a, const bus_event_t *ev)
{
    if (ev->type == BUS_EV_DISCONNECT)
        return store_conn_delete(a->reg_st, ev->conn_id);
    if (ev->type == BUS_EV_SUBSCRIPTION)
        return apply_subscription(a, ev);
    if (ev->type != BUS_EV_CONNECT)
        return 0;
    json_t *o = json_loadb(ev->body, ev->body_len, 0, NULL);
    int rc = o ? on_connect(a, ev, o) : WSG_EINVAL;
    json_decref(o);
    return rc;
}

static void log_failed(api_t *a, const bus_event_t *ev, int rc)
{
    WSG_LOG(WSG_LOG_WARN, "registry update failed", "conn=%s event=%s code=%s detail=%s",
            ev->conn_id, ev->id, wsg_err_name(rc), store_errmsg(a->reg_st));
}

/* Appends (ev, d) to the list head/tail (the held events, or the run). */
static void push_event(api_held_t **head, api_held_t **tail, const bus_event_t *ev,
                       bus_delivery_t *d)
{
    api_held_t *h = calloc(1, sizeof *h);
    if (!h)
        abort();
    h->ev = ev;
    h->d = d;
    if (*tail)
        (*tail)->next = h;
    else
        *head = h;
    *tail = h;
}

/* Keeps ev (not done: the bus keeps it in progress, and redelivers it if
 * this process dies) behind the ones already held. Caller holds reg_mu. */
static void hold(api_t *a, const bus_event_t *ev, bus_delivery_t *d)
{
    push_event(&a->held_head, &a->held_tail, ev, d);
    if (a->n_held++ == 0)
        WSG_LOG(WSG_LOG_WARN, "registry waits for the store", "conn=%s event=%s detail=%s",
                ev->conn_id, ev->id, store_errmsg(a->reg_st));
}

/* Retries the held events in order; stops at the first that still finds the
 * store unavailable. Caller holds reg_mu. */
static void retry_held(api_t *a)
{
    size_t applied = 0;
    while (a->held_head) {
        api_held_t *h = a->held_head;
        int rc = apply_event(a, h->ev);
        if (rc == WSG_EUNAVAILABLE) {
            hold_sweep(a);
            return;
        }
        if (rc != 0)
            log_failed(a, h->ev, rc);
        recorded(a, h->ev, rc);
        a->held_head = h->next;
        if (!a->held_head)
            a->held_tail = NULL;
        a->n_held--;
        applied++;
        bus_event_done(a->bus, h->d);
        free(h);
    }
    if (applied)
        WSG_LOG(WSG_LOG_INFO, "registry caught up with the store", "events=%zu", applied);
}

/* One event on its own (no run transaction): one the store cannot take now
 * (WSG_EUNAVAILABLE: PostgreSQL restarting, unreachable) is held, and so is
 * every later one until the maintenance thread got them all through:
 * nothing is dropped and a connection's disconnect never overtakes its
 * connect. Other failures (bad input) are logged and the event acked.
 * Caller holds reg_mu. */
static void apply_one(api_t *a, const bus_event_t *ev, bus_delivery_t *d)
{
    if (a->held_head) {
        hold(a, ev, d);
        return;
    }
    int rc = apply_event(a, ev);
    if (rc == WSG_EUNAVAILABLE) {
        hold_sweep(a);
        hold(a, ev, d);
        return;
    }
    if (rc != 0)
        log_failed(a, ev, rc);
    recorded(a, ev, rc);
    bus_event_done(a->bus, d);
}

/* Deletes the run's disconnected connections gathered so far in one
 * statement per table (a mass disconnect: one round trip per
 * STORE_DELETE_MAX). Caller holds reg_mu. */
static int flush_gone(api_t *a)
{
    int rc = store_conn_delete_many(a->reg_st, a->gone, a->n_gone);
    a->n_gone = 0;
    return rc;
}

/* Connect and disconnect events in stream order, gathered into the current
 * run; run_end() commits them. */
static void on_event(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt)
{
    (void)attempt;
    api_t *a = ud;
    if (!a->run_locked) {
        pthread_mutex_lock(&a->reg_mu);
        a->run_locked = 1;
    }
    if (a->held_head) { /* the store is away: no transaction, keep the order */
        hold(a, ev, d);
        return;
    }
    push_event(&a->run_head, &a->run_tail, ev, d);
    if (a->run_bad)
        return; /* applied again one by one at the run's end */
    if (!a->run_open) {
        if (store_batch_begin(a->reg_st) != 0) {
            a->run_bad = 1;
            return;
        }
        a->run_open = 1;
    }
    if (ev->type == BUS_EV_DISCONNECT) {
        a->gone[a->n_gone++] = ev->conn_id; /* valid until its bus_event_done() */
        if (a->n_gone == STORE_DELETE_MAX && flush_gone(a) != 0)
            a->run_bad = 1;
        return;
    }
    if (flush_gone(a) != 0 || apply_event(a, ev) != 0)
        a->run_bad = 1;
}

static void run_end(void *ud)
{
    api_t *a = ud;
    if (!a->run_locked)
        return;
    api_held_t *l = a->run_head;
    a->run_head = a->run_tail = NULL;
    int bad = a->run_bad;
    if (!bad && a->n_gone && flush_gone(a) != 0)
        bad = 1;
    a->n_gone = 0; /* a bad run is applied again one by one */
    if (a->run_open && store_batch_end(a->reg_st, !bad) != 0)
        bad = 1;
    a->run_open = a->run_bad = 0;
    for (api_held_t *r = l, *next; r; r = next) {
        next = r->next;
        if (bad) {
            apply_one(a, r->ev, r->d);
        } else {
            recorded(a, r->ev, 0);
            bus_event_done(a->bus, r->d);
        }
        free(r);
    }
    a->run_locked = 0;
    pthread_mutex_unlock(&a->reg_mu);
}

static void on_heartbeat(void *ud, const char *edge_id, int64_t at_ms, int leaving)
{
    (void)at_ms;
    api_t *a = ud;
    pthread_mutex_lock(&a->reg_mu);
    /* the receiver's clock decides staleness, so skew between hosts is harmless */
    int rc = leaving ? store_edge_delete(a->reg_st, edge_id)
                     : store_edge_heartbeat(a->reg_st, edge_id, wsg_wall_ms());
    if (rc == WSG_EUNAVAILABLE)
        hold_sweep(a);
    pthread_mutex_unlock(&a->reg_mu);
}

/* Publishes the edge_lost disconnect of c and deletes it. Caller holds reg_mu. */
int api_registry_lose(api_t *a, const store_conn_t *c)
{
    uint64_t seq = 0;
    char evid[48];
    if (bus_event_last_seq(a->bus, c->id, &seq) != 0)
        return WSG_EBUS;
    /* Every API that finds the edge stale, and the edge itself should it
     * close the connection after all, publish the same id, which the bus
     * keeps once (NATS: Nats-Msg-Id deduplication): one disconnect. */
    wsg_disconnect_event_id(c->id, evid);
    /* the same envelope as the edge's own disconnects (common/envelope.c) */
    wsg_envelope_t env = {.id = evid,
                          .type = "disconnect",
                          .conn_id = c->id,
                          .route = c->route,
                          .user = c->user,
                          .context_json = c->context_json,
                          .seq = seq + 1,
                          .ts_ms = wsg_wall_ms()};
    wsg_sbuf_t b = {0};
    wsg_envelope_open(&b, &env, NULL);
    wsg_envelope_disconnect(&b, WSG_CLOSE_ABNORMAL, "", "edge_lost");
    wsg_sb_puts(&b, "}");
    char *body = b.p;
    bus_event_t ev = {.id = evid,
                      .type = BUS_EV_DISCONNECT,
                      .conn_id = c->id,
                      .edge_id = c->edge_id,
                      .route = c->route,
                      .seq = seq + 1,
                      .body = body,
                      .body_len = strlen(body)};
    int rc = bus_event_publish(a->bus, &ev, NULL, NULL);
    free(body);
    if (rc == 0)
        rc = store_conn_delete(a->reg_st, c->id);
    WSG_LOG(WSG_LOG_INFO, "connection lost with its edge", "conn=%s route=%s user=%s edge=%s",
            c->id, c->route, c->user, c->edge_id);
    return rc;
}

/* Cluster: every connection of an edge that stopped heartbeating. */
static int lose_edge(api_t *a, const char *edge_id)
{
    /* first, so the edge finds it should it come back while we sweep */
    int rc = bus_edge_lost_mark(a->bus, edge_id);
    if (rc != 0)
        WSG_LOG(WSG_LOG_WARN, "edge lost: cannot mark it", "edge=%s code=%s", edge_id,
                wsg_err_name(rc));
    do {
        store_conn_query_t q = {.edge_id = edge_id, .limit = 1000};
        store_conn_list_t l = {0};
        rc = store_conn_list(a->reg_st, &q, &l);
        for (size_t i = 0; rc == 0 && i < l.n; i++)
            rc = api_registry_lose(a, &l.items[i]);
        int more = l.n > 0;
        store_conn_list_free(&l);
        if (!more)
            break;
    } while (rc == 0);
    if (rc == 0)
        rc = store_edge_delete(a->reg_st, edge_id);
    WSG_LOG(WSG_LOG_WARN, "edge lost", "edge=%s code=%s", edge_id, rc ? wsg_err_name(rc) : "OK");
    return rc;
}

static void sweep_stale_edges(api_t *a)
{
    store_str_list_t l = {0};
    int64_t before = wsg_wall_ms() - (int64_t)a->cfg->cluster.edge_timeout_ms;
    if (store_edge_stale(a->reg_st, before, &l) != 0)
        return;
    for (size_t i = 0; i < l.n; i++)
        lose_edge(a, l.items[i]);
    store_str_list_free(&l);
}

static void report(api_t *a)
{
    uint64_t channels = 0;
    char *cursor = NULL;
    for (int page = 0; page < 100; page++) {
        store_channel_list_t l = {0};
        int rc = store_channel_list(a->reg_st, "", cursor, 1000, &l);
        free(cursor);
        cursor = rc == 0 ? l.next_cursor : NULL;
        channels += l.n;
        l.next_cursor = NULL;
        store_channel_list_free(&l);
        if (!cursor)
            break;
    }
    free(cursor);
    WSG_LOG(WSG_LOG_INFO, "state report", "connections=%lld channels=%llu events_pending=%lld",
            (long long)wsg_gauge_value(WSG_G_CONNECTIONS), (unsigned long long)channels,
            (long long)wsg_gauge_value(WSG_G_EVENTS_PENDING));
}

/* Loses the connections collected at api_new() that are still recorded. Runs
 * LOST_GRACE_MS after start: a disconnect the previous run published but the
 * registry had not consumed is redelivered first and removes its row, so that
 * connection does not get a second disconnect. Caller holds reg_mu. */
static void lose_previous_run(api_t *a)
{
    for (size_t i = 0; i < a->n_lost; i++) {
        store_conn_t c = {0};
        if (store_conn_get(a->reg_st, a->lost_ids[i], &c) == 0)
            api_registry_lose(a, &c);
        store_conn_clear(&c);
        free(a->lost_ids[i]);
    }
    free(a->lost_ids);
    a->lost_ids = NULL;
    a->n_lost = 0;
}

static void *maint_main(void *arg)
{
    api_t *a = arg;
    wsg_thread_name("registry");
    int64_t next_gc = wsg_wall_ms() + GC_INTERVAL_MS, next_report = 0;
    int64_t lost_at = wsg_wall_ms() + LOST_GRACE_MS;
    uint64_t every = a->cfg->log.report_interval_ms;
    if (every)
        next_report = wsg_wall_ms() + (int64_t)every;
    int64_t next_tick = wsg_wall_ms() + 1000;
    pthread_mutex_lock(&a->maint_mu);
    while (!a->stopping) {
        /* requests waiting for a record another process may make are
         * looked up in the store every SUBWAIT_POLL_MS (api_subwait.c) */
        struct timespec ts = wsg_deadline_in(a->n_sw ? SUBWAIT_POLL_MS : 1000);
        pthread_cond_timedwait(&a->maint_cv, &a->maint_mu, &ts);
        if (a->stopping)
            break;
        pthread_mutex_unlock(&a->maint_mu);
        if (a->n_sw)
            api_subwait_check(a);
        if (wsg_wall_ms() < next_tick) {
            pthread_mutex_lock(&a->maint_mu);
            continue;
        }
        next_tick = wsg_wall_ms() + 1000;
        /* A hung NATS server (stopped, blackholed) keeps its connections
         * open: bus_healthy() says yes until the client's pings time out,
         * while no heartbeat arrives. Without an answer to our own ping,
         * silence proves nothing: outside reg_mu, as it may wait. */
        int heard = !a->cluster || bus_roundtrip(a->bus, BUS_ROUNDTRIP_MS) == 0;
        pthread_mutex_lock(&a->reg_mu);
        int64_t now = wsg_wall_ms();
        int store_up = store_ping(a->reg_st) == 0, bus_up = bus_healthy(a->bus) == 1;
        wsg_gauge_set(WSG_G_STORE_UP, store_up);
        wsg_gauge_set(WSG_G_BUS_UP, bus_up);
        if (!store_up || !bus_up || !heard) /* heartbeats cannot arrive or be recorded */
            hold_sweep(a);
        if (store_up && a->held_head)
            retry_held(a);
        if (a->cluster && now >= a->sweep_from_ms)
            sweep_stale_edges(a);
        if (a->n_lost && now >= lost_at)
            lose_previous_run(a);
        if (now >= next_gc) {
            uint64_t removed = 0;
            store_sub_gc(a->reg_st, &removed);
            next_gc = now + GC_INTERVAL_MS;
        }
        if (every && now >= next_report) {
            report(a);
            next_report = now + (int64_t)every;
        }
        pthread_mutex_unlock(&a->reg_mu);
        pthread_mutex_lock(&a->maint_mu);
    }
    pthread_mutex_unlock(&a->maint_mu);
    return NULL;
}

/* Standalone: remembers every connection left in the store by a previous run
 * (nothing of this run can be recorded yet: the bus has not started). */
static int collect_lost(api_t *a)
{
    char *cursor = NULL;
    int rc;
    do {
        store_conn_query_t q = {.cursor = cursor, .limit = 1000};
        store_conn_list_t l = {0};
        rc = store_conn_list(a->reg_st, &q, &l);
        free(cursor);
        cursor = NULL;
        if (rc != 0)
            break;
        char **ids = realloc(a->lost_ids, (a->n_lost + l.n) * sizeof *ids + 1);
        if (!ids)
            abort();
        a->lost_ids = ids;
        for (size_t i = 0; i < l.n; i++)
            a->lost_ids[a->n_lost++] = strdup(l.items[i].id);
        cursor = l.next_cursor;
        l.next_cursor = NULL;
        store_conn_list_free(&l);
    } while (cursor);
    return rc;
}

int api_registry_init(api_t *a, char *err, size_t errlen)
{
    pthread_mutex_init(&a->reg_mu, NULL);
    pthread_mutex_init(&a->maint_mu, NULL);
    pthread_cond_init(&a->maint_cv, NULL);
    int rc = store_open(&a->reg_st, a->cfg->store, err, errlen);
    if (rc == 0 && !a->cluster && (rc = collect_lost(a)) != 0)
        wsg_errf(err, errlen, rc, "registry: %s", store_errmsg(a->reg_st));
    if (rc == 0)
        rc = bus_event_subscribe(a->bus, "registry",
                                 BUS_EV_MASK(BUS_EV_CONNECT) | BUS_EV_MASK(BUS_EV_DISCONNECT) |
                                     BUS_EV_MASK(BUS_EV_SUBSCRIPTION),
                                 on_event, a);
    if (rc == 0)
        rc = bus_event_on_run_end(a->bus, "registry", run_end);
    if (rc == 0)
        rc = bus_heartbeat_serve(a->bus, on_heartbeat, a);
    if (rc != 0 && err && !*err)
        wsg_errf(err, errlen, rc, "registry: cannot subscribe to the bus");
    return rc;
}

int api_registry_start(api_t *a)
{
    a->stopping = 0;
    if (pthread_create(&a->maint, NULL, maint_main, a) != 0)
        return WSG_ENOMEM;
    a->maint_running = 1;
    return 0;
}

void api_registry_poke(api_t *a)
{
    pthread_mutex_lock(&a->maint_mu);
    pthread_cond_signal(&a->maint_cv);
    pthread_mutex_unlock(&a->maint_mu);
}

void api_registry_stop(api_t *a)
{
    if (!a->maint_running)
        return;
    pthread_mutex_lock(&a->maint_mu);
    a->stopping = 1;
    pthread_cond_signal(&a->maint_cv);
    pthread_mutex_unlock(&a->maint_mu);
    pthread_join(a->maint, NULL);
    a->maint_running = 0;
    api_subwait_stop(a);
}

/* Forgets the held events without acking them: the bus hands them out again
 * (NATS: Nak at bus_free; in-process: after a restart). */
void api_registry_free(api_t *a)
{
    while (a->held_head) {
        api_held_t *h = a->held_head;
        a->held_head = h->next;
        free(h);
    }
    a->held_tail = NULL;
    a->n_held = 0;
}
