/* SPDX-License-Identifier: MIT */
/*
 * store_conn.c — the connection registry (table connections): put, get,
 * delete (with the connection's subscriptions), touch, and the filtered,
 * paginated listing behind GET /v1/connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "store/store_int.h"

#define CONN_COLS                                                                                  \
    "c.id, c.route, c.edge_id, c.user_id, c.context, c.remote_addr, c.connected_at, "              \
    "c.last_active_at"

static void conn_from_row(const store_row_t *r, store_conn_t *c)
{
    c->id = store_col_dup(r, 0);
    c->route = store_col_dup(r, 1);
    c->edge_id = store_col_dup(r, 2);
    c->user = store_col_dup(r, 3);
    c->context_json = store_col_dup(r, 4);
    c->remote_addr = store_col_dup(r, 5);
    c->connected_at_ms = store_col_int(r, 6);
    c->last_active_at_ms = store_col_int(r, 7);
}

static int check_id(store_t *st, const char *what, const char *id)
{
    if (!id || !*id)
        return store_fail(st, WSG_EINVAL, "store: %s must not be empty", what);
    return 0;
}

int store_conn_put(store_t *st, const store_conn_t *c)
{
    int rc;
    if ((rc = check_id(st, "connection id", c->id)) != 0 ||
        (rc = check_id(st, "route", c->route)) != 0 ||
        (rc = check_id(st, "edge id", c->edge_id)) != 0)
        return rc;
    store_param_t p[] = {
        SP_T(c->id),
        SP_T(c->route),
        SP_T(c->edge_id),
        SP_T(c->user),
        SP_T(c->context_json ? c->context_json : "{}"),
        SP_T(c->remote_addr ? c->remote_addr : ""),
        SP_I(c->connected_at_ms),
        SP_I(c->last_active_at_ms),
    };
    return store_q(st, SQ_CONN_PUT,
                   "INSERT INTO connections (id, route, edge_id, user_id, context, remote_addr, "
                   "connected_at, last_active_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                   "ON CONFLICT (id) DO UPDATE SET route = excluded.route, "
                   "edge_id = excluded.edge_id, user_id = excluded.user_id, "
                   "context = excluded.context, remote_addr = excluded.remote_addr, "
                   "connected_at = excluded.connected_at, "
                   "last_active_at = excluded.last_active_at",
                   p, 8, NULL, NULL, NULL);
}

static int conn_row_one(void *ud, const store_row_t *r)
{
    conn_from_row(r, ud);
    return 0;
}

int store_conn_get(store_t *st, const char *id, store_conn_t *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_id(st, "connection id", id);
    if (rc != 0)
        return rc;
    store_param_t p[] = {SP_T(id)};
    rc = store_q(st, SQ_CONN_GET, "SELECT " CONN_COLS " FROM connections c WHERE c.id = $1", p, 1,
                 conn_row_one, out, NULL);
    if (rc == 0 && !out->id)
        rc = store_fail(st, WSG_ENOTFOUND, "store: no connection %s", id);
    return rc;
}

int store_conn_delete(store_t *st, const char *id)
{
    int rc = check_id(st, "connection id", id);
    if (rc != 0 || (rc = store_tx_begin(st)) != 0)
        return rc;
    store_param_t p[] = {SP_T(id)};
    rc = store_q(st, SQ_CONN_DELETE_SUBS, "DELETE FROM subscriptions WHERE connection_id = $1", p,
                 1, NULL, NULL, NULL);
    if (rc == 0)
        rc = store_q(st, SQ_CONN_DELETE, "DELETE FROM connections WHERE id = $1", p, 1, NULL, NULL,
                     NULL);
    return store_tx_end(st, rc);
}

/* The parameter list "$1,...,$16" of the statements below. */
#define IDS16 "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16"

int store_conn_delete_many(store_t *st, const char *const *ids, size_t n)
{
    _Static_assert(STORE_DELETE_MAX == 16, "IDS16 names STORE_DELETE_MAX parameters");
    if (n > STORE_DELETE_MAX)
        return store_fail(st, WSG_EINVAL, "store: more than %d ids", STORE_DELETE_MAX);
    store_param_t p[STORE_DELETE_MAX];
    for (size_t i = 0; i < STORE_DELETE_MAX; i++) {
        int rc = i < n ? check_id(st, "connection id", ids[i]) : 0;
        if (rc != 0)
            return rc;
        p[i] = SP_T(i < n ? ids[i] : NULL); /* NULL matches no row */
    }
    int rc = n ? store_tx_begin(st) : 0;
    if (rc != 0 || !n)
        return rc;
    rc = store_q(st, SQ_CONN_DELETE_SUBS_MANY,
                 "DELETE FROM subscriptions WHERE connection_id IN (" IDS16 ")", p,
                 STORE_DELETE_MAX, NULL, NULL, NULL);
    if (rc == 0)
        rc = store_q(st, SQ_CONN_DELETE_MANY, "DELETE FROM connections WHERE id IN (" IDS16 ")", p,
                     STORE_DELETE_MAX, NULL, NULL, NULL);
    return store_tx_end(st, rc);
}

/* Moves last_active_at forward only: touches may arrive out of order. */
int store_conn_touch(store_t *st, const char *id, int64_t last_active_at_ms)
{
    int rc = check_id(st, "connection id", id);
    if (rc != 0)
        return rc;
    store_param_t p[] = {SP_T(id), SP_I(last_active_at_ms)};
    uint64_t changed = 0;
    rc = store_q(st, SQ_CONN_TOUCH,
                 "UPDATE connections SET last_active_at = CASE WHEN last_active_at < $2 "
                 "THEN $2 ELSE last_active_at END WHERE id = $1",
                 p, 2, NULL, NULL, &changed);
    if (rc == 0 && changed == 0)
        rc = store_fail(st, WSG_ENOTFOUND, "store: no connection %s", id);
    return rc;
}

void store_conn_clear(store_conn_t *c)
{
    if (!c)
        return;
    free(c->id);
    free(c->route);
    free(c->edge_id);
    free(c->user);
    free(c->context_json);
    free(c->remote_addr);
    memset(c, 0, sizeof *c);
}

/* ---- listing ----------------------------------------------------------------- */

enum { F_USER = 1, F_ROUTE = 2, F_CHANNEL = 4, F_EDGE = 8 };

/* Composes the listing for one combination of filters from constant pieces;
 * values stay bound parameters. With a channel the walk follows the
 * subscriptions key (channel, connection_id) so that it is an index range. */
static const char *list_sql(store_t *st, unsigned mask)
{
    if (st->list_sql[mask])
        return st->list_sql[mask];
    char sql[768];
    int n = 2; /* $1 is the cursor */
    const char *key = (mask & F_CHANNEL) ? "s.connection_id" : "c.id";
    int len =
        snprintf(sql, sizeof sql, "SELECT " CONN_COLS " FROM %s WHERE %s > $1",
                 (mask & F_CHANNEL) ? "subscriptions s JOIN connections c ON c.id = s.connection_id"
                                    : "connections c",
                 key);
    static const struct {
        unsigned bit;
        const char *column;
    } filters[] = {{F_CHANNEL, "s.channel"},
                   {F_USER, "c.user_id"},
                   {F_ROUTE, "c.route"},
                   {F_EDGE, "c.edge_id"}};
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        if (mask & filters[i].bit)
            len += snprintf(sql + len, sizeof sql - (size_t)len, " AND %s = $%d", filters[i].column,
                            n++);
    snprintf(sql + len, sizeof sql - (size_t)len, " ORDER BY %s LIMIT $%d", key, n);
    st->list_sql[mask] = store_strdup(sql);
    return st->list_sql[mask];
}

typedef struct {
    store_conn_list_t *out;
    size_t cap;
} conn_acc_t;

static int conn_row_append(void *ud, const store_row_t *r)
{
    conn_acc_t *a = ud;
    if (a->out->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->out->items = realloc(a->out->items, a->cap * sizeof *a->out->items);
        if (!a->out->items)
            abort();
    }
    conn_from_row(r, &a->out->items[a->out->n++]);
    return 0;
}

int store_conn_list(store_t *st, const store_conn_query_t *q, store_conn_list_t *out)
{
    memset(out, 0, sizeof *out);
    char *after = NULL;
    int rc = store_check_limit(st, q->limit);
    if (rc != 0 || (rc = store_cursor_decode(st, 'c', q->cursor, &after)) != 0)
        return rc;
    unsigned mask = (q->user ? F_USER : 0) | (q->route ? F_ROUTE : 0) |
                    (q->channel ? F_CHANNEL : 0) | (q->edge_id ? F_EDGE : 0);
    store_param_t p[6];
    int n = 0;
    p[n++] = SP_T(after);
    const char *vals[] = {q->channel, q->user, q->route, q->edge_id};
    for (size_t i = 0; i < 4; i++)
        if (vals[i])
            p[n++] = SP_T(vals[i]);
    p[n++] = SP_I(q->limit + 1); /* one more tells whether another page exists */
    conn_acc_t acc = {.out = out};
    rc = store_q(st, SQ_CONN_LIST + (int)mask, list_sql(st, mask), p, n, conn_row_append, &acc,
                 NULL);
    free(after);
    if (rc != 0) {
        store_conn_list_free(out);
        return rc;
    }
    if (out->n > q->limit) {
        store_conn_clear(&out->items[--out->n]);
        out->next_cursor = store_cursor_encode('c', out->items[out->n - 1].id);
    }
    return 0;
}

void store_conn_list_free(store_conn_list_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        store_conn_clear(&l->items[i]);
    free(l->items);
    free(l->next_cursor);
    memset(l, 0, sizeof *l);
}

/* ---- counts ------------------------------------------------------------------ */

typedef struct {
    store_conn_counts_t *out;
    size_t cap;
} count_acc_t;

static int count_row_append(void *ud, const store_row_t *r)
{
    count_acc_t *a = ud;
    if (a->out->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->out->items = realloc(a->out->items, a->cap * sizeof *a->out->items);
        if (!a->out->items)
            abort();
    }
    store_conn_count_t *c = &a->out->items[a->out->n++];
    c->route = store_col_dup(r, 0);
    c->edge_id = store_col_dup(r, 1);
    c->n = (uint64_t)store_col_int(r, 2);
    return 0;
}

int store_conn_counts(store_t *st, size_t limit, store_conn_counts_t *out)
{
    memset(out, 0, sizeof *out);
    int rc = store_check_limit(st, limit);
    if (rc != 0)
        return rc;
    store_param_t p[] = {SP_I(limit)};
    count_acc_t acc = {.out = out};
    rc = store_q(st, SQ_CONN_COUNTS,
                 "SELECT route, edge_id, COUNT(*) FROM connections GROUP BY route, edge_id "
                 "ORDER BY COUNT(*) DESC, route, edge_id LIMIT $1",
                 p, 1, count_row_append, &acc, NULL);
    if (rc != 0)
        store_conn_counts_free(out);
    return rc;
}

void store_conn_counts_free(store_conn_counts_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].route);
        free(l->items[i].edge_id);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}
