/* SPDX-License-Identifier: MIT */
/*
 * disp_deliver.c — the per-connection delivery state machine on the
 * dispatcher thread: pick the head event's backend (rules, routing service,
 * default), wait for a slot at that backend (max_concurrency), send one event
 * or a batch, then acknowledge, retry later, or dead-letter; send response
 * actions to the holding edge, in their order (the edge records subscription
 * changes for the registry: the dispatcher never writes them). Event N+1 of a connection starts
 * only once N is acknowledged or dead-lettered.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/close.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/recent.h"
#include "dispatcher/disp_core.h"

static const char *ev_name(bus_event_type_t t)
{
    return t == BUS_EV_CONNECT ? "connect" : t == BUS_EV_MESSAGE ? "message" : "disconnect";
}

static disp_backend_t *backend_get(disp_t *d, const char *url, uint32_t limit)
{
    for (disp_backend_t *b = d->backends; b; b = b->next)
        if (strcmp(b->url, url) == 0)
            return b;
    disp_backend_t *b = calloc(1, sizeof *b);
    if (!b || !(b->url = strdup(url))) {
        free(b);
        return NULL;
    }
    b->limit = limit ? limit : 1;
    b->next = d->backends;
    d->backends = b;
    return b;
}

static void backend_maybe_free(disp_t *d, disp_backend_t *be)
{
    if (!be || be->inflight || be->wait_head)
        return;
    for (disp_backend_t **p = &d->backends; *p; p = &(*p)->next)
        if (*p == be) {
            *p = be->next;
            free(be->url);
            free(be);
            return;
        }
}

static void forget_route_choice(disp_conn_t *c)
{
    free(c->dyn_backend);
    c->dyn_backend = NULL;
    disp_headers_free(c->xh, c->n_xh);
    c->xh = NULL;
    c->n_xh = 0;
    c->backend = NULL;
}

static void reset_head(disp_conn_t *c)
{
    forget_route_choice(c);
    c->attempts = 0;
    c->first_ms = 0;
    c->last_status = 0;
    c->last_err[0] = '\0';
    c->batch_n = 0;
    c->be = NULL;
    c->state = DISP_C_IDLE;
}

/* Acknowledges the first n events of c to the bus. */
static void done_items(disp_t *d, disp_conn_t *c, size_t n)
{
    size_t k = 0;
    for (; k < n && c->head; k++) {
        disp_item_t *it = c->head;
        if (!(c->head = it->next))
            c->tail = NULL;
        c->n--;
        if (it->ev->type == BUS_EV_DISCONNECT) { /* the connection is over */
            curl_slist_free_all(c->meta);
            c->meta = NULL;
        }
        bus_event_done(d->bus, it->d);
        free(it);
    }
    pthread_mutex_lock(&d->mu);
    d->held -= k;
    if (d->held_wait && d->held + DISP_HELD_SLACK <= DISP_MAX_HELD) {
        d->held_wait = false;
        pthread_cond_broadcast(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
    wsg_gauge_add(WSG_G_EVENTS_PENDING, -(int64_t)k);
}

static int store_ready(disp_t *d)
{
    char err[256] = "";
    if (d->st)
        return 0;
    int rc = store_open(&d->st, d->cfg->store, err, sizeof err);
    if (rc != 0)
        WSG_LOG(WSG_LOG_ERROR, "dispatcher cannot open the store", "error=%s code=%s", err,
                wsg_err_name(rc));
    return rc;
}

static int dead_one(disp_t *d, disp_conn_t *c, const bus_event_t *ev)
{
    char *body = strndup(ev->body ? ev->body : "", ev->body_len);
    const char *backend = c->backend ? c->backend : c->rt ? c->rt->conf->backend : "(no route)";
    store_dead_t dl = {.id = (char *)ev->id,
                       .conn_id = (char *)ev->conn_id,
                       .route = (char *)(ev->route ? ev->route : ""),
                       .backend = (char *)backend,
                       .event_json = body,
                       .attempts = (int)c->attempts,
                       .last_status = (int)c->last_status,
                       .last_error = c->last_err,
                       .created_at_ms = wsg_wall_ms()}; /* Unix ms, as connections' times */
    int rc = body ? store_dead_put(d->st, &dl) : WSG_ENOMEM;
    free(body);
    if (rc != 0) {
        WSG_LOG(WSG_LOG_ERROR, "dead letter not stored", "conn=%s event=%s error=%s", ev->conn_id,
                ev->id, rc == WSG_ENOMEM ? "out of memory" : store_errmsg(d->st));
        return rc;
    }
    wsg_count(WSG_M_DEAD_LETTERS, 1);
    wsg_recent_add("dead_letter", "%s conn=%s route=%s after %u attempts: %s", ev->id, ev->conn_id,
                   ev->route ? ev->route : "", c->attempts, c->last_err);
    WSG_LOG(WSG_LOG_WARN, "event dead-lettered",
            "conn=%s route=%s event=%s status=%ld attempts=%u error=%s", ev->conn_id, ev->route,
            ev->id, c->last_status, c->attempts, c->last_err);
    return 0;
}

static void send_action(disp_t *d, disp_conn_t *c, const char *edge, const disp_action_t *a);

/* A connect the backend never accepted closes the connection when the
 * route's protocol refuses such connections: 1008 when the backend said no
 * (4xx), 1011 when it failed (5xx, no answer, bad answers). An answer
 * that refuses outright is a close action of its own (disp_proto_grip). */
static void close_unaccepted(disp_t *d, disp_conn_t *c, const bus_event_t *ev)
{
    if (!c->rt || !c->rt->proto->dead_connect_closes || ev->type != BUS_EV_CONNECT ||
        !ev->edge_id || !ev->edge_id[0])
        return;
    bool refused = c->last_status >= 400 && c->last_status < 500;
    disp_action_t a = {.op = BUS_CMD_CLOSE,
                       .code = refused ? WSG_CLOSE_POLICY : WSG_CLOSE_INTERNAL,
                       .reason = (char *)(refused ? "refused by backend" : "backend unavailable")};
    send_action(d, c, ev->edge_id, &a);
}

/* Dead-letters the head batch; 0 when every event is stored (and done). */
static int dead_letter(disp_t *d, disp_conn_t *c)
{
    size_t n = c->batch_n ? c->batch_n : 1, k = 0;
    int rc = store_ready(d);
    for (disp_item_t *it = c->head; rc == 0 && it && k < n; it = it->next, k++)
        rc = dead_one(d, c, it->ev);
    if (rc != 0)
        return rc;
    close_unaccepted(d, c, c->head->ev);
    done_items(d, c, k);
    reset_head(c);
    return 0;
}

static void schedule_retry(disp_t *d, disp_conn_t *c, uint64_t delay_ms)
{
    c->state = DISP_C_RETRY;
    c->retry_at_ms = disp_now_ms() + (int64_t)delay_ms;
    c->lnext = d->retry_list;
    d->retry_list = c;
}

/* One attempt failed: retry later or dead-letter (dead = not retryable). */
static void fail_attempt(disp_t *d, disp_conn_t *c, bool dead, const char *retry_after)
{
    const wsg_delivery_conf_t *dc = &c->rt->conf->delivery;
    c->attempts++;
    int64_t age = disp_now_ms() - c->first_ms;
    if (dead || c->attempts >= dc->max_attempts ||
        (dc->max_age_ms && age >= (int64_t)dc->max_age_ms)) {
        if (dead_letter(d, c) == 0) {
            disp_kick(d, c);
            return;
        }
        schedule_retry(d, c, dc->backoff_max_ms); /* the store failed: keep the event */
        return;
    }
    uint64_t delay;
    if (!retry_after || !retry_after[0] ||
        disp_retry_after_ms(retry_after, (int64_t)(disp_now_ms() / 1000), DISP_RETRY_AFTER_CAP_MS,
                            &delay) != 0)
        delay =
            disp_backoff_ms(c->attempts, dc->backoff_initial_ms, dc->backoff_max_ms, disp_rand(d));
    wsg_count(WSG_M_WEBHOOK_RETRIES, 1);
    WSG_LOG(WSG_LOG_DEBUG, "webhook retry scheduled",
            "conn=%s route=%s event=%s status=%ld attempt=%u delay_ms=%llu error=%s", c->id,
            c->rt->conf->path, c->head->ev->id, c->last_status, c->attempts,
            (unsigned long long)delay, c->last_err);
    schedule_retry(d, c, delay);
}

static const char *rule_backend(const disp_conn_t *c, const bus_event_t *ev)
{
    char *payload = NULL;
    size_t len = 0;
    bool binary = false;
    const char *hit = NULL;
    if (ev->type != BUS_EV_MESSAGE || !c->rt->rules)
        return NULL;
    if (disp_event_payload(ev->body, ev->body_len, &payload, &len, &binary) == 0)
        hit = disp_rules_match(c->rt->rules, payload, len, binary);
    free(payload);
    return hit;
}

static void to_wait(disp_t *d, disp_conn_t *c)
{
    c->be = backend_get(d, c->backend, c->rt->conf->delivery.max_concurrency);
    if (!c->be) {
        snprintf(c->last_err, sizeof c->last_err, "out of memory");
        fail_attempt(d, c, false, NULL);
        return;
    }
    c->state = DISP_C_WAIT;
    c->lnext = NULL;
    if (c->be->wait_tail)
        c->be->wait_tail->lnext = c;
    else
        c->be->wait_head = c;
    c->be->wait_tail = c;
    disp_backend_pump(d, c->be);
}

static void start_routing(disp_t *d, disp_conn_t *c, const bus_event_t *ev)
{
    const wsg_route_conf_t *r = c->rt->conf;
    uint64_t t = r->delivery.timeout_ms < DISP_ROUTE_TIMEOUT_MS ? r->delivery.timeout_ms
                                                                : DISP_ROUTE_TIMEOUT_MS;
    c->state = DISP_C_ROUTING;
    c->req.routing = true;
    if (disp_http_start(d, c, r->routing_service, ev->id, ev_name(ev->type), ev->body, ev->body_len,
                        t) != 0)
        fail_attempt(d, c, false, NULL);
}

/* Starts the head of c if it is idle: picks the backend and queues for a slot. */
void disp_kick(disp_t *d, disp_conn_t *c)
{
    while (!d->halt && c->state == DISP_C_IDLE && c->head) {
        const bus_event_t *ev = c->head->ev;
        if (c->first_ms == 0) {
            c->first_ms = disp_now_ms();
            c->attempts = c->head->bus_attempt > 0 ? c->head->bus_attempt - 1 : 0;
        }
        if (!c->rt || c->attempts >= c->rt->conf->delivery.max_attempts) {
            snprintf(c->last_err, sizeof c->last_err, "%s",
                     c->rt ? "attempts exhausted before a restart" : "unknown route");
            if (dead_letter(d, c) != 0) {
                if (c->rt) /* the store failed: keep the event, try again later */
                    schedule_retry(d, c, c->rt->conf->delivery.backoff_max_ms);
                return; /* without a route, the bus redelivers after a restart */
            }
            continue;
        }
        forget_route_choice(c);
        c->backend = rule_backend(c, ev);
        if (!c->backend && ev->type == BUS_EV_MESSAGE && c->rt->conf->routing_service &&
            c->rt->conf->routing_service[0]) {
            start_routing(d, c, ev);
            return;
        }
        if (!c->backend)
            c->backend = c->rt->conf->backend;
        to_wait(d, c);
        return;
    }
}

void disp_fire_timers(disp_t *d, int64_t now, int64_t *next_ms)
{
    disp_conn_t *fired = NULL;
    for (disp_conn_t **p = &d->retry_list; *p;) {
        disp_conn_t *c = *p;
        if (c->retry_at_ms <= now) {
            *p = c->lnext;
            c->lnext = fired;
            fired = c;
            continue;
        }
        if (*next_ms < 0 || c->retry_at_ms < *next_ms)
            *next_ms = c->retry_at_ms;
        p = &c->lnext;
    }
    while (fired) {
        disp_conn_t *c = fired;
        fired = c->lnext;
        c->lnext = NULL;
        c->state = DISP_C_IDLE;
        disp_kick(d, c);
        disp_conn_release(d, c);
    }
}

/* How many queued events of c go in the next request: consecutive events
 * bound for the head's backend, up to batch_max (1 with a routing service). */
static size_t batch_size(const disp_conn_t *c)
{
    const wsg_route_conf_t *r = c->rt->conf;
    size_t n = 1;
    if (r->delivery.batch_max <= 1 || (r->routing_service && r->routing_service[0]) ||
        wsg_protocol_one_event(r->protocol))
        return 1;
    for (disp_item_t *it = c->head->next; it && n < r->delivery.batch_max; it = it->next, n++) {
        const char *b = rule_backend(c, it->ev);
        if (strcmp(b ? b : r->backend, c->backend) != 0)
            break;
    }
    return n;
}

/* The events of the head batch (c->batch_n at most) into evs; how many. */
static size_t head_events(const disp_conn_t *c, const bus_event_t **evs)
{
    size_t k = 0;
    for (disp_item_t *it = c->head; it && k < c->batch_n; it = it->next)
        evs[k++] = it->ev;
    return k;
}

/* Builds the head's request in the route's protocol and starts it. */
static int start_request(disp_t *d, disp_conn_t *c, uint64_t timeout_ms)
{
    const bus_event_t *evs[c->batch_n];
    size_t k = head_events(c, evs), len = 0;
    const char *body = NULL, *id = evs[0]->id, *name = ev_name(evs[0]->type);
    char bid[DISP_BATCH_ID_LEN + 1], *owned = NULL;
    int rc = c->rt->proto->body(c->rt->conf, evs, k, &body, &len, &owned, c->last_err,
                                sizeof c->last_err);
    if (rc == 0 && c->rt->proto->keep)
        rc = c->rt->proto->keep(evs[0], &c->meta);
    if (rc != 0) {
        free(owned);
        if (rc == WSG_ENOMEM)
            snprintf(c->last_err, sizeof c->last_err, "out of memory");
        return rc;
    }
    if (k > 1) {
        disp_batch_id(evs[0]->id, evs[k - 1]->id, bid);
        id = bid;
        name = "batch";
    }
    rc = disp_http_start(d, c, c->backend, id, name, body, len, timeout_ms);
    if (rc == 0)
        c->req.body_owned = owned;
    else
        free(owned);
    return rc;
}

static void start_stream(disp_t *d, disp_conn_t *c);

static void start_webhook(disp_t *d, disp_conn_t *c)
{
    c->state = DISP_C_INFLIGHT;
    c->req.routing = false;
    c->be->inflight++;
    if (c->rt->stream) {
        start_stream(d, c);
        return;
    }
    if (c->batch_n == 0)
        c->batch_n = batch_size(c);
    int rc = start_request(d, c, c->rt->conf->delivery.timeout_ms);
    if (rc != 0) {
        c->be->inflight--;
        /* an envelope the protocol cannot express never will be */
        fail_attempt(d, c, rc == WSG_EPROTO, NULL);
        return;
    }
    wsg_count(WSG_M_WEBHOOK_REQUESTS, 1);
}

void disp_backend_pump(disp_t *d, disp_backend_t *be)
{
    while (!d->halt && be->wait_head && be->inflight < be->limit) {
        disp_conn_t *c = be->wait_head;
        if (!(be->wait_head = c->lnext))
            be->wait_tail = NULL;
        c->lnext = NULL;
        start_webhook(d, c);
    }
}

int disp_action_send(bus_t *bus, const char *conn_id, const char *edge, const disp_action_t *a,
                     bus_reply_fn cb, void *ud)
{
    bus_cmd_t cmd = {.op = a->op,
                     .conn_id = conn_id,
                     .data = a->data,
                     .len = a->len,
                     .binary = a->binary,
                     .code = a->code,
                     .reason = a->reason,
                     .initiator = "server",
                     .channel = a->channel};
    /* in order, nobody waiting for the reply: commands from one caller to
     * one edge arrive in the order sent, and the edge applies them in that
     * order; it records subscription changes itself (BUS_EV_SUBSCRIPTION) */
    int rc = bus_cmd_request(bus, edge, &cmd, cb, ud);
    if (rc != 0)
        WSG_LOG(WSG_LOG_WARN, "response action refused by the bus", "conn=%s code=%s", conn_id,
                wsg_err_name(rc));
    return rc;
}

static void send_action(disp_t *d, disp_conn_t *c, const char *edge, const disp_action_t *a)
{
    disp_action_send(d->bus, c->id, edge, a, NULL, NULL); /* fire-and-forget */
}

/* Applies a 2xx answer's actions, in order, through the holding edge.
 * Returns 0, or WSG_EPROTO when the answer is bad and the route's protocol
 * says that fails the attempt (c->last_err says why). */
static int apply_actions(disp_t *d, disp_conn_t *c, const char *edge)
{
    const disp_proto_t *p = c->rt->proto;
    disp_answer_t ans = {0};
    char err[160] = "response too large";
    bool opening = c->head->ev->type == BUS_EV_CONNECT;
    int rc = c->req.truncated ? WSG_EPROTO
                              : p->parse(c->rt->conf, c->req.resp, c->req.resp_len, opening, &ans,
                                         err, sizeof err);
    if (rc != 0) {
        if (p->strict_answer && rc != WSG_ENOMEM) {
            snprintf(c->last_err, sizeof c->last_err, "bad %s answer: %s", p->name, err);
            return rc;
        }
        WSG_LOG(WSG_LOG_WARN, "webhook response actions ignored", "conn=%s route=%s error=%s",
                c->id, c->rt->conf->path, rc == WSG_ENOMEM ? "out of memory" : err);
        return 0;
    }
    if (ans.skipped)
        WSG_LOG(WSG_LOG_WARN, "malformed response actions skipped", "conn=%s route=%s skipped=%zu",
                c->id, c->rt->conf->path, ans.skipped);
    if (ans.ignored)
        WSG_LOG(WSG_LOG_DEBUG, "response events without an action ignored",
                "conn=%s route=%s protocol=%s ignored=%zu", c->id, c->rt->conf->path, p->name,
                ans.ignored);
    for (size_t i = 0; i < ans.n && edge && edge[0]; i++)
        send_action(d, c, edge, &ans.acts[i]);
    disp_actions_free(ans.acts, ans.n);
    if (p->keeps_meta && (rc = disp_meta_merge(&c->meta, c->req.set_meta)) != 0)
        WSG_LOG(WSG_LOG_WARN, "Set-Meta headers not kept", "conn=%s route=%s error=%s", c->id,
                c->rt->conf->path, rc == WSG_ENOMEM ? "out of memory" : "over 8 KiB of meta");
    return 0;
}

static void on_route_answer(disp_t *d, disp_conn_t *c, long status, const char *retry_after)
{
    char *backend = NULL;
    char err[160] = "";
    disp_outcome_t out = disp_classify(status);
    if (out != DISP_OUT_ACK) {
        fail_attempt(d, c, out == DISP_OUT_DEAD, retry_after);
        return;
    }
    int rc = c->req.truncated ? WSG_EPROTO
                              : disp_route_answer_parse(c->req.resp, c->req.resp_len, &backend,
                                                        &c->xh, &c->n_xh, err, sizeof err);
    if (rc != 0) {
        snprintf(c->last_err, sizeof c->last_err, "routing service: %s",
                 c->req.truncated ? "answer too large" : err);
        fail_attempt(d, c, false, NULL);
        return;
    }
    if (backend && !wsg_config_backend_allowed(c->rt->conf, backend)) {
        /* the URL itself is not recorded: it may carry credentials */
        snprintf(c->last_err, sizeof c->last_err,
                 "routing service named a backend outside allowed_backends");
        free(backend);
        fail_attempt(d, c, true, NULL);
        return;
    }
    c->dyn_backend = backend;
    c->backend = backend ? backend : c->rt->conf->backend;
    to_wait(d, c);
}

static void on_webhook_answer(disp_t *d, disp_conn_t *c, long status, const char *retry_after)
{
    disp_outcome_t out = disp_classify(status);
    if (status >= 200 && status < 600)
        wsg_count(status < 300   ? WSG_M_WEBHOOK_2XX
                  : status < 500 ? WSG_M_WEBHOOK_4XX /* 3xx (never followed) counts here too */
                                 : WSG_M_WEBHOOK_5XX,
                  1);
    if (out == DISP_OUT_ACK) {
        const char *edge = NULL;
        size_t k = 0;
        for (disp_item_t *it = c->head; it && k < c->batch_n; it = it->next, k++)
            edge = it->ev->edge_id;
        if (apply_actions(d, c, edge) != 0) {
            fail_attempt(d, c, false, NULL);
            return;
        }
        done_items(d, c, c->batch_n);
        reset_head(c);
        disp_kick(d, c);
        return;
    }
    /* A refusal by the backend is most often a secret that does not match
     * (its signature check failed): say so where the operator looks, the
     * warn line and the dead letter's last_error. */
    if (out == DISP_OUT_DEAD)
        snprintf(c->last_err, sizeof c->last_err, "HTTP %ld%s", status,
                 status == 401 || status == 403
                     ? ": the backend refused the request; does it verify signatures with this "
                       "route's webhook_secret?"
                     : "");
    fail_attempt(d, c, out == DISP_OUT_DEAD, retry_after);
}

/* The dashboard's live tail (common/recent.h): one line per webhook
 * request, naming its (first) event. */
static void tail_webhook(const disp_conn_t *c, double ms)
{
    const bus_event_t *ev = c->head ? c->head->ev : NULL;
    if (!ev)
        return;
    char more[32] = "";
    if (c->batch_n > 1)
        snprintf(more, sizeof more, " (+%zu more)", c->batch_n - 1);
    wsg_recent_add("webhook", "%s %s%s conn=%s route=%s -> %s in %.1f ms, attempt %u",
                   ev_name(ev->type), ev->id, more, ev->conn_id, ev->route ? ev->route : "",
                   c->last_err, ms, c->attempts + 1);
}

/* A request of c completed (or failed) with res. */
void disp_on_done(disp_t *d, disp_conn_t *c, CURLcode res)
{
    long status = 0;
    char retry_after[sizeof c->req.retry_after];
    bool routing = c->req.routing;
    disp_backend_t *be = routing ? NULL : c->be;
    curl_easy_getinfo(c->req.easy, CURLINFO_RESPONSE_CODE, &status);
    if (!routing)
        wsg_observe(WSG_H_WEBHOOK_SECONDS, (double)(disp_now_ns() - c->req.t0_ns) / 1e9);
    if (res != CURLE_OK && !(res == CURLE_WRITE_ERROR && c->req.truncated && status)) {
        status = 0;
        snprintf(c->last_err, sizeof c->last_err, "%s", curl_easy_strerror(res));
        if (!routing)
            wsg_count(WSG_M_WEBHOOK_ERRORS, 1);
    } else {
        snprintf(c->last_err, sizeof c->last_err, "HTTP %ld", status);
    }
    c->last_status = status;
    if (!routing)
        tail_webhook(c, (double)(disp_now_ns() - c->req.t0_ns) / 1e6);
    memcpy(retry_after, c->req.retry_after, sizeof retry_after);
    disp_http_end(d, c);
    if (be)
        be->inflight--;
    if (routing)
        on_route_answer(d, c, status, retry_after);
    else
        on_webhook_answer(d, c, status, retry_after);
    c->req.resp_len = 0;
    if (c->req.resp_cap > 16384) { /* keep small buffers for reuse, not big ones */
        free(c->req.resp);
        c->req.resp = NULL;
        c->req.resp_cap = 0;
    }
    if (be) {
        disp_backend_pump(d, be);
        backend_maybe_free(d, be);
    }
    disp_conn_release(d, c);
}

/* ---- backend streams (disp_stream.h): the same state machine, an ack for a 2xx */

static size_t ack_slot(const char *id)
{
    return (size_t)(wsg_hash(id) & (DISP_ACK_BUCKETS - 1)); /* ids end in random base64 */
}

/* The head batch of c went out on its stream: its events become findable
 * by id, so an ack costs one lookup, not a walk over every connection. */
static void acks_index(disp_t *d, disp_conn_t *c)
{
    size_t k = 0;
    c->acked_n = 0;
    for (disp_item_t *it = c->head; it && k < c->batch_n; it = it->next, k++) {
        size_t h = ack_slot(it->ev->id);
        it->ac = c;
        it->acked = false;
        it->anext = d->acks[h];
        d->acks[h] = it;
    }
}

static void acks_unindex(disp_t *d, disp_conn_t *c)
{
    size_t k = 0;
    for (disp_item_t *it = c->head; it && k < c->batch_n; it = it->next, k++) {
        for (disp_item_t **p = &d->acks[ack_slot(it->ev->id)]; *p; p = &(*p)->anext)
            if (*p == it) {
                *p = it->anext;
                break;
            }
        it->anext = NULL;
        it->ac = NULL;
    }
}

/* The backend acknowledged event id on stream s. Every event of that id in
 * flight counts (the bus may have handed the same event twice); an id not
 * in flight (late, duplicate) changes nothing. */
static void ack_mark(disp_t *d, const disp_stream_t *s, const char *id)
{
    for (disp_item_t *it = d->acks[ack_slot(id)]; it; it = it->anext)
        if (!it->acked && it->ac->rt->stream == s && strcmp(it->ev->id, id) == 0) {
            it->acked = true;
            it->ac->acked_n++;
        }
}

/* Sends c's head batch (batch_max events of it at most, one frame) on its
 * route's stream; the acks of all of them (or the deadline, or the stream
 * going down) end the attempt. */
static void start_stream(disp_t *d, disp_conn_t *c)
{
    if (c->batch_n == 0)
        c->batch_n = batch_size(c);
    const bus_event_t *evs[c->batch_n];
    size_t k = head_events(c, evs), len = 0;
    const char *body = NULL;
    char *owned = NULL;
    int rc = c->rt->proto->body(c->rt->conf, evs, k, &body, &len, &owned, c->last_err,
                                sizeof c->last_err);
    bool send = true;
    disp_users_t *users = disp_stream_users(c->rt->stream);
    if (rc == 0 && users) /* ws-api-gateway: one event a frame */
        rc = disp_wsapi_track(users, evs[0], &send);
    /* the head's id names the frame: a retry still queued is not queued
     * twice; a frame not to send goes empty: done without a write */
    if (rc == 0)
        rc = disp_stream_send(c->rt->stream, evs[0]->id, body, send ? len : 0);
    free(owned);
    if (rc != 0) {
        c->be->inflight--;
        c->last_status = 0;
        snprintf(c->last_err, sizeof c->last_err, "%s",
                 rc == WSG_EUNAVAILABLE ? "backend stream not connected"
                 : rc == WSG_ENOMEM     ? "out of memory"
                                        : c->last_err);
        fail_attempt(d, c, rc == WSG_EPROTO, NULL);
        return;
    }
    wsg_count(WSG_M_WEBHOOK_REQUESTS, 1);
    acks_index(d, c);
    c->retry_at_ms = disp_now_ms() + (int64_t)c->rt->conf->delivery.timeout_ms;
    c->lnext = d->stream_waiting;
    d->stream_waiting = c;
}

/* c left the waiting list: its attempt ended with every ack (acked) or not. */
static void stream_end(disp_t *d, disp_conn_t *c, bool acked, const char *why)
{
    disp_backend_t *be = c->be;
    const bus_event_t *ev = c->head->ev;
    char more[32] = "";
    if (c->batch_n > 1)
        snprintf(more, sizeof more, " (+%zu more)", c->batch_n - 1);
    c->lnext = NULL;
    be->inflight--;
    acks_unindex(d, c);
    wsg_recent_add("webhook", "%s %s%s conn=%s route=%s -> stream %s, attempt %u",
                   ev_name(ev->type), ev->id, more, ev->conn_id, ev->route ? ev->route : "",
                   acked ? "ack" : why, c->attempts + 1);
    if (acked) {
        wsg_count(WSG_M_WEBHOOK_2XX, 1);
        done_items(d, c, c->batch_n);
        reset_head(c);
        disp_kick(d, c);
    } else {
        c->last_status = 0;
        snprintf(c->last_err, sizeof c->last_err, "%s", why);
        wsg_count(WSG_M_WEBHOOK_ERRORS, 1);
        fail_attempt(d, c, false, NULL); /* the whole frame goes again, as a batch */
    }
    disp_backend_pump(d, be);
    backend_maybe_free(d, be);
    disp_conn_release(d, c);
}

/* Ends the waiting attempts that are over: every event acknowledged; with
 * s, every other one on stream s too (it went down); without, with
 * timeouts, those whose deadline passed by now. One walk per turn, however
 * many acks came. */
static void stream_sweep(disp_t *d, const disp_stream_t *s, bool timeouts, int64_t now,
                         int64_t *next_ms)
{
    disp_conn_t *ended = NULL;
    for (disp_conn_t **p = &d->stream_waiting; *p;) {
        disp_conn_t *c = *p;
        bool hit = c->acked_n == c->batch_n ||
                   (s ? c->rt->stream == s : timeouts && c->retry_at_ms <= now);
        if (hit) {
            *p = c->lnext;
            c->lnext = ended;
            ended = c;
            continue;
        }
        if (!s && (*next_ms < 0 || c->retry_at_ms < *next_ms))
            *next_ms = c->retry_at_ms;
        p = &c->lnext;
    }
    while (ended) {
        disp_conn_t *c = ended;
        ended = c->lnext;
        stream_end(d, c, c->acked_n == c->batch_n,
                   s ? "backend stream closed before the ack" : "no ack within delivery.timeout");
    }
}

void disp_stream_turn(disp_t *d, int64_t now, int64_t *next_ms)
{
    disp_snote_t *n = disp_sio_take(d->sio);
    while (n) {
        disp_snote_t *next = n->next;
        /* also while stopping: an ack finishes an event in flight */
        if (n->kind == DISP_SN_ACK)
            ack_mark(d, n->s, n->id);
        else /* in order: acks before it count, what is unacked on s is lost */
            stream_sweep(d, n->s, false, now, next_ms);
        free(n);
        n = next;
    }
    stream_sweep(d, NULL, !d->halt, now, next_ms);
}
