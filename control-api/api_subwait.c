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
 * without the change WSG_ETIMEOUT).
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
    a->n_sw++;
    pthread_mutex_unlock(&a->sw_mu);
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
        finish_one(w, status);
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

int api_subwait_check(api_t *a)
{
    int64_t now = wsg_mono_ms();
    size_t n = 0;
    pthread_mutex_lock(&a->sw_mu);
    for (api_subwait_t *w = a->sw_head; w; w = w->next)
        n += now - w->since_ms >= API_SUBWAIT_POLL_AFTER_MS;
    pthread_mutex_unlock(&a->sw_mu);
    /* one pass over the waiters old enough, each looked up again by its
     * request (another thread may have completed it meanwhile) */
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&a->sw_mu);
        api_subwait_t *w = a->sw_head;
        for (size_t k = 0; w && k < i; k++)
            w = w->next;
        api_req_t *r = w && now - w->since_ms >= API_SUBWAIT_POLL_AFTER_MS ? w->r : NULL;
        api_subwait_t snap = r ? *w : (api_subwait_t){0};
        char *conn = r ? strdup(w->conn_id) : NULL, *ch = r ? strdup(w->channel) : NULL;
        pthread_mutex_unlock(&a->sw_mu);
        if (!r)
            continue;
        snap.conn_id = conn;
        snap.channel = ch;
        int rc = store_shows(a, &snap, now);
        free(conn);
        free(ch);
        if (rc == 1 && now - snap.since_ms < API_SUBWAIT_MAX_MS)
            continue;
        if (api_subwait_cancel(a, r, rc == 1 ? WSG_ETIMEOUT : rc))
            i--, n--; /* the list moved up by one */
    }
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
