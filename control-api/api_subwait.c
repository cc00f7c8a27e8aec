/* SPDX-License-Identifier: MIT */
/*
 * api_subwait.c — read-your-writes for PUT/DELETE
 * /v1/channels/{ch}/connections/{id}: such a request is answered once the
 * holding edge applied the change (its command reply) AND the change is in
 * the store, so the listing endpoints never contradict an answer the API
 * gave. The edge records every change it applies as a BUS_EV_SUBSCRIPTION
 * event in the connection's ordered stream; the registry (the one writer
 * of subscriptions, api_registry.c) applies it and calls
 * api_subwait_applied(), which completes the oldest request waiting for
 * that (connection, channel, op).
 *
 * In a cluster with several API processes the event may be recorded by
 * another process's registry: api_subwait_check() (the maintenance thread)
 * then finds the store already showing the change and completes the
 * request (a store error answers with that error, API_SUBWAIT_MAX_MS
 * without the change WSG_ETIMEOUT). The store shows only the latest state:
 * a PUT and a DELETE of one membership at once leave it showing one of
 * them. So the edge's replies are numbered as they arrive (one edge holds
 * the connection and applies its commands in order, and its replies come
 * back in that order), and a change seen in the store completes every
 * waiter of the same membership whose change the edge applied before it:
 * the registry wrote those first. Two API processes changing one
 * membership at once are not ordered that way (docs/api.md).
 *
 * A waiter is one of the request's two api_req_reply() shares (the other
 * is the edge's reply). Whoever unlinks it under sw_mu — the registry, the
 * check, the edge's failed reply (api_subwait_cancel), shutdown — gives
 * that share, outside the lock. Any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "control-api/api_int.h"

#define API_SUBWAIT_MAX_MS 10000
#define API_SUBWAIT_POLL_AFTER_MS 100 /* the local registry usually answers first */
#define API_SUBWAIT_GONE_MS 2000

struct api_subwait {
    struct api_subwait *next;
    api_req_t *r;
    char *conn_id, *channel;
    bus_cmd_op_t op;
    int64_t since_ms;
    uint64_t replied; /* the edge's reply's number (sw_replies), 0 before it */
};

void api_subwait_init(api_t *a)
{
    pthread_mutex_init(&a->sw_mu, NULL);
}

int api_subwait_add(api_t *a, api_req_t *r, const char *conn_id, const char *channel,
                    bus_cmd_op_t op)
{
    api_subwait_t *w = calloc(1, sizeof *w);
    if (!w || !(w->conn_id = strdup(conn_id)) || !(w->channel = strdup(channel)))
        abort();
    w->r = r;
    w->op = op;
    w->since_ms = wsg_mono_ms();
    pthread_mutex_lock(&a->sw_mu);
    api_subwait_t **pp = &a->sw_head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = w; /* oldest first */
    int first = a->n_sw++ == 0;
    pthread_mutex_unlock(&a->sw_mu);
    if (first) /* the maintenance thread may be in its one-second sleep */
        api_registry_poke(a);
    return 0;
}

static void finish_one(api_subwait_t *w, int status)
{
    api_req_t *r = w->r;
    free(w->conn_id);
    free(w->channel);
    free(w);
    api_req_reply(r, status);
}

/* 1 when w is the waiter of r (r set), else of (conn_id, channel, op). */
static int matches(const api_subwait_t *w, const api_req_t *r, const char *conn_id,
                   const char *channel, bus_cmd_op_t op)
{
    if (r)
        return w->r == r;
    return w->op == op && conn_id && channel && strcmp(w->conn_id, conn_id) == 0 &&
           strcmp(w->channel, channel) == 0;
}

/* Unlinks the first waiter matching (r) or (conn, channel, op). Caller
 * holds sw_mu. */
static api_subwait_t *take(api_t *a, const api_req_t *r, const char *conn_id, const char *channel,
                           bus_cmd_op_t op)
{
    for (api_subwait_t **pp = &a->sw_head; *pp; pp = &(*pp)->next) {
        api_subwait_t *w = *pp;
        if (!matches(w, r, conn_id, channel, op))
            continue;
        *pp = w->next;
        a->n_sw--;
        return w;
    }
    return NULL;
}

/* Unlinks the waiters of (conn_id, channel) whose edge replied before
 * reply number n into *out (a list). Caller holds sw_mu. */
static void take_older(api_t *a, const char *conn_id, const char *channel, uint64_t n,
                       api_subwait_t **out)
{
    for (api_subwait_t **pp = &a->sw_head; *pp;) {
        api_subwait_t *w = *pp;
        if (w->replied && w->replied < n && strcmp(w->conn_id, conn_id) == 0 &&
            strcmp(w->channel, channel) == 0) {
            *pp = w->next;
            a->n_sw--;
            w->next = *out;
            *out = w;
        } else {
            pp = &w->next;
        }
    }
}

/* Completes w (unlinked) with status and, when it succeeded after its edge
 * replied, the older waiters of its membership. Caller does not hold sw_mu. */
static void finish_with_older(api_t *a, api_subwait_t *w, int status)
{
    api_subwait_t *older = NULL;
    if (status == 0 && w->replied) {
        pthread_mutex_lock(&a->sw_mu);
        take_older(a, w->conn_id, w->channel, w->replied, &older);
        pthread_mutex_unlock(&a->sw_mu);
    }
    finish_one(w, status);
    while (older) {
        api_subwait_t *next = older->next;
        finish_one(older, 0);
        older = next;
    }
}

void api_subwait_replied(api_t *a, api_req_t *r, const char *conn_id, const char *channel)
{
    api_subwait_t *older = NULL;
    pthread_mutex_lock(&a->sw_mu);
    uint64_t n = ++a->sw_replies;
    api_subwait_t *w = a->sw_head;
    while (w && w->r != r)
        w = w->next;
    if (w)
        w->replied = n;
    else /* already seen in the store: so are the changes applied before it */
        take_older(a, conn_id, channel, n, &older);
    pthread_mutex_unlock(&a->sw_mu);
    while (older) {
        api_subwait_t *next = older->next;
        finish_one(older, 0);
        older = next;
    }
}

int api_subwait_cancel(api_t *a, api_req_t *r, int status)
{
    pthread_mutex_lock(&a->sw_mu);
    api_subwait_t *w = take(a, r, NULL, NULL, 0);
    pthread_mutex_unlock(&a->sw_mu);
    if (w)
        finish_one(w, status);
    return w != NULL;
}

void api_subwait_applied(api_t *a, const char *conn_id, const char *channel, bus_cmd_op_t op,
                         int status)
{
    if (!a->n_sw) /* racy peek: a waiter added now waits for a later event */
        return;
    pthread_mutex_lock(&a->sw_mu);
    api_subwait_t *w = take(a, NULL, conn_id, channel, op);
    pthread_mutex_unlock(&a->sw_mu);
    if (w)
        finish_with_older(a, w, status);
}

/* 0 when the store shows w's change, 1 when not yet, or an error. The
 * subscription row alone decides (the registry writes it whether or not the
 * connection's row is there yet). A subscribe not shown while the store
 * does not know the connection for API_SUBWAIT_GONE_MS answers WSG_EGONE:
 * it closed, and its disconnect removed the row before anyone looked. */
static int store_shows(api_t *a, const api_subwait_t *w, int64_t now)
{
    store_t *st = api_store_get(a);
    store_str_list_t l = {0};
    store_conn_t c = {0};
    int rc = store_sub_channels(st, w->conn_id, &l), member = 0;
    for (size_t i = 0; rc == 0 && i < l.n && !member; i++)
        member = strcmp(l.items[i], w->channel) == 0;
    store_str_list_free(&l);
    if (rc == 0 && member != (w->op == BUS_CMD_SUBSCRIBE)) {
        rc = 1;
        if (w->op == BUS_CMD_SUBSCRIBE && now - w->since_ms >= API_SUBWAIT_GONE_MS &&
            store_conn_get(st, w->conn_id, &c) == WSG_ENOTFOUND)
            rc = WSG_EGONE;
        store_conn_clear(&c);
    }
    api_store_put(a, st);
    return rc;
}

/* One pass over the waiters old enough, each looked up again by its
 * request when its turn comes (another thread, or a cascade of this pass,
 * may have completed it meanwhile). */
int api_subwait_check(api_t *a)
{
    int64_t now = wsg_mono_ms();
    size_t n = 0, cap = 0;
    api_req_t **due = NULL;
    pthread_mutex_lock(&a->sw_mu);
    for (api_subwait_t *w = a->sw_head; w; w = w->next)
        cap++;
    if (cap && !(due = malloc(cap * sizeof *due)))
        abort();
    for (api_subwait_t *w = a->sw_head; w; w = w->next)
        if (now - w->since_ms >= API_SUBWAIT_POLL_AFTER_MS)
            due[n++] = w->r;
    pthread_mutex_unlock(&a->sw_mu);
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&a->sw_mu);
        api_subwait_t *w = a->sw_head;
        while (w && w->r != due[i])
            w = w->next;
        api_subwait_t snap = w ? *w : (api_subwait_t){0};
        char *conn = w ? strdup(w->conn_id) : NULL, *ch = w ? strdup(w->channel) : NULL;
        pthread_mutex_unlock(&a->sw_mu);
        if (!w)
            continue;
        if (!conn || !ch)
            abort();
        snap.conn_id = conn;
        snap.channel = ch;
        int rc = store_shows(a, &snap, now);
        free(conn);
        free(ch);
        if (rc == 1 && now - snap.since_ms < API_SUBWAIT_MAX_MS)
            continue;
        pthread_mutex_lock(&a->sw_mu);
        api_subwait_t *done = take(a, due[i], NULL, NULL, 0);
        pthread_mutex_unlock(&a->sw_mu);
        if (done)
            finish_with_older(a, done, rc == 1 ? WSG_ETIMEOUT : rc);
    }
    free(due);
    return a->n_sw != 0;
}

void api_subwait_stop(api_t *a)
{
    for (;;) {
        pthread_mutex_lock(&a->sw_mu);
        api_subwait_t *w = a->sw_head;
        if (w) {
            a->sw_head = w->next;
            a->n_sw--;
        }
        pthread_mutex_unlock(&a->sw_mu);
        if (!w)
            return;
        finish_one(w, WSG_EUNAVAILABLE);
    }
}
