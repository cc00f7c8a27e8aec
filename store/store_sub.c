/* SPDX-License-Identifier: MIT */
/*
 * store_sub.c — subscriptions (table subscriptions, keyed both ways): add and
 * remove (idempotent), garbage collection of orphans, channel members,
 * channels of a connection, and the channel listing with member counts.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/err.h"
#include "store/store_int.h"

static int check_pair(store_t *st, const char *channel, const char *conn_id)
{
    if (!channel || !*channel)
        return store_fail(st, WSG_EINVAL, "store: channel must not be empty");
    if (!conn_id || !*conn_id)
        return store_fail(st, WSG_EINVAL, "store: connection id must not be empty");
    return 0;
}

int store_sub_add(store_t *st, const char *channel, const char *conn_id)
{
    int rc = check_pair(st, channel, conn_id);
    if (rc != 0)
        return rc;
    store_test_delay(st);
    store_param_t p[] = {SP_T(channel), SP_T(conn_id), SP_I(wsg_wall_ms())};
    return store_q(st, SQ_SUB_ADD,
                   "INSERT INTO subscriptions (channel, connection_id, created_at) "
                   "VALUES ($1, $2, $3) ON CONFLICT (channel, connection_id) DO NOTHING",
                   p, 3, NULL, NULL, NULL);
}

int store_sub_remove(store_t *st, const char *channel, const char *conn_id)
{
    int rc = check_pair(st, channel, conn_id);
    if (rc != 0)
        return rc;
    store_test_delay(st);
    store_param_t p[] = {SP_T(channel), SP_T(conn_id)};
    return store_q(st, SQ_SUB_REMOVE,
                   "DELETE FROM subscriptions WHERE channel = $1 AND connection_id = $2", p, 2,
                   NULL, NULL, NULL);
}

int store_sub_gc_before(store_t *st, int64_t before_ms, uint64_t *removed)
{
    uint64_t n = 0;
    store_param_t p[] = {SP_I(before_ms)};
    int rc = store_q(st, SQ_SUB_GC,
                     "DELETE FROM subscriptions WHERE created_at < $1 AND NOT EXISTS "
                     "(SELECT 1 FROM connections c WHERE c.id = subscriptions.connection_id)",
                     p, 1, NULL, NULL, &n);
    if (removed)
        *removed = rc == 0 ? n : 0;
    return rc;
}

int store_sub_gc(store_t *st, uint64_t *removed)
{
    return store_sub_gc_before(st, wsg_wall_ms() - STORE_SUB_GC_GRACE_MS, removed);
}

/* ---- string lists -------------------------------------------------------------- */

typedef struct {
    store_str_list_t *out;
    size_t cap;
} str_acc_t;

static int str_row_append(void *ud, const store_row_t *r)
{
    str_acc_t *a = ud;
    if (a->out->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->out->items = realloc(a->out->items, a->cap * sizeof *a->out->items);
        if (!a->out->items)
            abort();
    }
    a->out->items[a->out->n++] = store_col_dup(r, 0);
    return 0;
}

void store_str_list_free(store_str_list_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    free(l->next_cursor);
    memset(l, 0, sizeof *l);
}

int store_q_strings(store_t *st, int id, const char *sql, const store_param_t *p, int n,
                    size_t limit, char kind, store_str_list_t *out)
{
    str_acc_t acc = {.out = out};
    int rc = store_q(st, id, sql, p, n, str_row_append, &acc, NULL);
    if (rc != 0) {
        store_str_list_free(out);
        return rc;
    }
    if (limit && out->n > limit) {
        free(out->items[--out->n]);
        out->next_cursor = store_cursor_encode(kind, out->items[out->n - 1]);
    }
    return 0;
}

int store_sub_members(store_t *st, const char *channel, const char *cursor, size_t limit,
                      store_str_list_t *out)
{
    memset(out, 0, sizeof *out);
    char *after = NULL;
    int rc = check_pair(st, channel, "-");
    if (rc != 0 || (rc = store_check_limit(st, limit)) != 0 ||
        (rc = store_cursor_decode(st, 'm', cursor, &after)) != 0)
        return rc;
    store_param_t p[] = {SP_T(channel), SP_T(after), SP_I(limit + 1)};
    rc = store_q_strings(st, SQ_SUB_MEMBERS,
                         "SELECT connection_id FROM subscriptions WHERE channel = $1 "
                         "AND connection_id > $2 ORDER BY connection_id LIMIT $3",
                         p, 3, limit, 'm', out);
    free(after);
    return rc;
}

int store_sub_channels(store_t *st, const char *conn_id, store_str_list_t *out)
{
    memset(out, 0, sizeof *out);
    int rc = check_pair(st, "-", conn_id);
    if (rc != 0)
        return rc;
    store_param_t p[] = {SP_T(conn_id)};
    return store_q_strings(
        st, SQ_SUB_CHANNELS,
        "SELECT channel FROM subscriptions WHERE connection_id = $1 ORDER BY channel", p, 1, 0, 0,
        out);
}

/* ---- channels ----------------------------------------------------------------- */

typedef struct {
    store_channel_list_t *out;
    size_t cap;
} chan_acc_t;

static int chan_row_append(void *ud, const store_row_t *r)
{
    chan_acc_t *a = ud;
    if (a->out->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->out->items = realloc(a->out->items, a->cap * sizeof *a->out->items);
        if (!a->out->items)
            abort();
    }
    store_channel_t *c = &a->out->items[a->out->n++];
    c->channel = store_col_dup(r, 0);
    c->members = (uint64_t)store_col_int(r, 1);
    return 0;
}

/* The prefix test compares characters (substr/length count characters on
 * both engines), so it means the same for any UTF-8 prefix and needs no
 * LIKE escaping. */
int store_channel_list(store_t *st, const char *prefix, const char *cursor, size_t limit,
                       store_channel_list_t *out)
{
    memset(out, 0, sizeof *out);
    char *after = NULL;
    int rc = store_check_limit(st, limit);
    if (rc != 0 || (rc = store_cursor_decode(st, 'h', cursor, &after)) != 0)
        return rc;
    store_param_t p[] = {SP_T(prefix ? prefix : ""), SP_T(after), SP_I(limit + 1)};
    chan_acc_t acc = {.out = out};
    rc = store_q(st, SQ_CHANNEL_LIST,
                 "SELECT channel, COUNT(*) FROM subscriptions "
                 "WHERE substr(channel, 1, length(CAST($1 AS TEXT))) = CAST($1 AS TEXT) "
                 "AND channel > $2 GROUP BY channel ORDER BY channel LIMIT $3",
                 p, 3, chan_row_append, &acc, NULL);
    free(after);
    if (rc != 0) {
        store_channel_list_free(out);
        return rc;
    }
    if (out->n > limit) {
        free(out->items[--out->n].channel);
        out->next_cursor = store_cursor_encode('h', out->items[out->n - 1].channel);
    }
    return 0;
}

void store_channel_list_free(store_channel_list_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].channel);
    free(l->items);
    free(l->next_cursor);
    memset(l, 0, sizeof *l);
}
