/* SPDX-License-Identifier: MIT */
/*
 * store_misc.c — edges (table edges: heartbeats, stale detection) and dead
 * letters (table dead_letters: events whose delivery gave up, kept for
 * inspection and replay through the control API).
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "store/store_int.h"

static int check_id(store_t *st, const char *what, const char *id)
{
    if (!id || !*id)
        return store_fail(st, WSG_EINVAL, "store: %s must not be empty", what);
    return 0;
}

/* ---- edges ------------------------------------------------------------------- */

int store_edge_heartbeat(store_t *st, const char *edge_id, int64_t at_ms)
{
    int rc = check_id(st, "edge id", edge_id);
    if (rc != 0)
        return rc;
    store_param_t p[] = {SP_T(edge_id), SP_I(at_ms)};
    return store_q(st, SQ_EDGE_HEARTBEAT,
                   "INSERT INTO edges (id, heartbeat_at) VALUES ($1, $2) "
                   "ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                   p, 2, NULL, NULL, NULL);
}

int store_edge_delete(store_t *st, const char *edge_id)
{
    int rc = check_id(st, "edge id", edge_id);
    if (rc != 0)
        return rc;
    store_param_t p[] = {SP_T(edge_id)};
    return store_q(st, SQ_EDGE_DELETE, "DELETE FROM edges WHERE id = $1", p, 1, NULL, NULL, NULL);
}

int store_edge_stale(store_t *st, int64_t before_ms, store_str_list_t *out)
{
    memset(out, 0, sizeof *out);
    store_param_t p[] = {SP_I(before_ms)};
    return store_q_strings(st, SQ_EDGE_STALE,
                           "SELECT id FROM edges WHERE heartbeat_at < $1 ORDER BY id", p, 1, 0, 0,
                           out);
}

/* ---- dead letters ---------------------------------------------------------------- */

#define DEAD_COLS                                                                                  \
    "id, connection_id, route, backend, event, attempts, last_status, last_error, created_at"

static void dead_from_row(const store_row_t *r, store_dead_t *d)
{
    d->id = store_col_dup(r, 0);
    d->conn_id = store_col_dup(r, 1);
    d->route = store_col_dup(r, 2);
    d->backend = store_col_dup(r, 3);
    d->event_json = store_col_dup(r, 4);
    d->attempts = (int)store_col_int(r, 5);
    d->last_status = (int)store_col_int(r, 6);
    d->last_error = store_col_dup(r, 7);
    d->created_at_ms = store_col_int(r, 8);
}

/* Inserts or replaces by id: a replayed event that fails again is updated. */
int store_dead_put(store_t *st, const store_dead_t *d)
{
    int rc;
    if ((rc = check_id(st, "dead letter id", d->id)) != 0 ||
        (rc = check_id(st, "connection id", d->conn_id)) != 0 ||
        (rc = check_id(st, "route", d->route)) != 0 ||
        (rc = check_id(st, "backend", d->backend)) != 0 ||
        (rc = check_id(st, "event", d->event_json)) != 0)
        return rc;
    store_param_t p[] = {
        SP_T(d->id),
        SP_T(d->conn_id),
        SP_T(d->route),
        SP_T(d->backend),
        SP_T(d->event_json),
        SP_I(d->attempts),
        SP_I(d->last_status),
        SP_T(d->last_error ? d->last_error : ""),
        SP_I(d->created_at_ms),
    };
    return store_q(st, SQ_DEAD_PUT,
                   "INSERT INTO dead_letters (" DEAD_COLS ") "
                   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                   "ON CONFLICT (id) DO UPDATE SET connection_id = excluded.connection_id, "
                   "route = excluded.route, backend = excluded.backend, "
                   "event = excluded.event, attempts = excluded.attempts, "
                   "last_status = excluded.last_status, last_error = excluded.last_error, "
                   "created_at = excluded.created_at",
                   p, 9, NULL, NULL, NULL);
}

static int dead_row_one(void *ud, const store_row_t *r)
{
    dead_from_row(r, ud);
    return 0;
}

int store_dead_get(store_t *st, const char *id, store_dead_t *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_id(st, "dead letter id", id);
    if (rc != 0)
        return rc;
    store_param_t p[] = {SP_T(id)};
    rc = store_q(st, SQ_DEAD_GET, "SELECT " DEAD_COLS " FROM dead_letters WHERE id = $1", p, 1,
                 dead_row_one, out, NULL);
    if (rc == 0 && !out->id)
        rc = store_fail(st, WSG_ENOTFOUND, "store: no dead letter %s", id);
    return rc;
}

int store_dead_delete(store_t *st, const char *id)
{
    int rc = check_id(st, "dead letter id", id);
    if (rc != 0)
        return rc;
    store_param_t p[] = {SP_T(id)};
    return store_q(st, SQ_DEAD_DELETE, "DELETE FROM dead_letters WHERE id = $1", p, 1, NULL, NULL,
                   NULL);
}

void store_dead_clear(store_dead_t *d)
{
    if (!d)
        return;
    free(d->id);
    free(d->conn_id);
    free(d->route);
    free(d->backend);
    free(d->event_json);
    free(d->last_error);
    memset(d, 0, sizeof *d);
}

typedef struct {
    store_dead_list_t *out;
    size_t cap;
} dead_acc_t;

static int dead_row_append(void *ud, const store_row_t *r)
{
    dead_acc_t *a = ud;
    if (a->out->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->out->items = realloc(a->out->items, a->cap * sizeof *a->out->items);
        if (!a->out->items)
            abort();
    }
    dead_from_row(r, &a->out->items[a->out->n++]);
    return 0;
}

int store_dead_list(store_t *st, const char *route, const char *cursor, size_t limit,
                    store_dead_list_t *out)
{
    memset(out, 0, sizeof *out);
    char *after = NULL;
    int rc = store_check_limit(st, limit);
    if (rc != 0 || (rc = store_cursor_decode(st, 'd', cursor, &after)) != 0)
        return rc;
    dead_acc_t acc = {.out = out};
    if (route) {
        store_param_t p[] = {SP_T(after), SP_I(limit + 1), SP_T(route)};
        rc = store_q(st, SQ_DEAD_LIST_ROUTE,
                     "SELECT " DEAD_COLS " FROM dead_letters WHERE id > $1 AND route = $3 "
                     "ORDER BY id LIMIT $2",
                     p, 3, dead_row_append, &acc, NULL);
    } else {
        store_param_t p[] = {SP_T(after), SP_I(limit + 1)};
        rc = store_q(st, SQ_DEAD_LIST,
                     "SELECT " DEAD_COLS " FROM dead_letters WHERE id > $1 ORDER BY id LIMIT $2", p,
                     2, dead_row_append, &acc, NULL);
    }
    free(after);
    if (rc != 0) {
        store_dead_list_free(out);
        return rc;
    }
    if (out->n > limit) {
        store_dead_clear(&out->items[--out->n]);
        out->next_cursor = store_cursor_encode('d', out->items[out->n - 1].id);
    }
    return 0;
}

void store_dead_list_free(store_dead_list_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        store_dead_clear(&l->items[i]);
    free(l->items);
    free(l->next_cursor);
    memset(l, 0, sizeof *l);
}
