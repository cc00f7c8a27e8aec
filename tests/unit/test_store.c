/* SPDX-License-Identifier: MIT */
/*
 * test_store.c — the one shared store test suite (store/store.h). The same
 * test functions run against SQLite (a fresh file in a temp dir per test)
 * always, and against PostgreSQL when WSGATE_TEST_PG_URL is set (each test
 * starts from an emptied "public" schema of that database — do not point it
 * at data you want to keep). tests/integration/test_store_pg.py starts a real
 * server and runs this binary; it also passes WSGATE_TEST_PG_CONTROL="W,R",
 * two pipe fds on which the restart test asks it to stop and start the
 * server ("stop\n"/"start\n", answered "ok\n").
 */
#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/err.h"
#include "store/store.h"
#include "store/store_int.h"

typedef struct {
    const char *name;
    const char *pg_url; /* NULL for SQLite */
} backend_t;

static const backend_t *backend;

typedef struct {
    store_t *st;
    char dir[64];
    char url[128];
    int round;
} fx_t;

/* ---- fixtures ------------------------------------------------------------------ */

static void no_notices(void *arg, const char *msg) {}

static void pg_reset(const char *url)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQsetNoticeProcessor(c, no_notices, NULL);
    PGresult *r = PQexec(c, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("reset: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* A store URL naming an empty database: a new SQLite file, or the PG
 * database with its schema emptied. */
static const char *fresh_url(fx_t *fx)
{
    if (backend->pg_url) {
        pg_reset(backend->pg_url);
        return backend->pg_url;
    }
    snprintf(fx->url, sizeof fx->url, "sqlite://%s/t%d.db", fx->dir, fx->round++);
    return fx->url;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/wsg_store_XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    char err[512] = "";
    const char *url = fresh_url(fx);
    if (store_open(&fx->st, url, err, sizeof err) != 0) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    if (store_migrate(fx->st) != 0) {
        fprintf(stderr, "store_migrate: %s\n", store_errmsg(fx->st));
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    store_free(fx->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        return -1;
    free(fx);
    return 0;
}

#define ST (((fx_t *)*state)->st)
#define OK(expr) assert_int_equal((expr), 0)

static void put_conn(store_t *st, const char *id, const char *route, const char *edge,
                     const char *user)
{
    store_conn_t c = {.id = (char *)id,
                      .route = (char *)route,
                      .edge_id = (char *)edge,
                      .user = (char *)user,
                      .context_json = "{\"k\":1}",
                      .remote_addr = "127.0.0.1",
                      .connected_at_ms = 1000,
                      .last_active_at_ms = 2000};
    int rc = store_conn_put(st, &c);
    if (rc != 0)
        fail_msg("put %s: %s", id, store_errmsg(st));
}

/* ---- migrations ------------------------------------------------------------------ */

static void test_migrate_twice(void **state)
{
    int64_t applied = -1, embedded = -1;
    OK(store_schema_version(ST, &applied, &embedded));
    assert_true(embedded >= 1);
    assert_int_equal(applied, embedded);
    OK(store_migrate(ST));
    OK(store_migrate(ST));
    OK(store_schema_version(ST, &applied, NULL));
    assert_int_equal(applied, embedded);
    put_conn(ST, "c1", "/chat", "e1", "u");
    OK(store_migrate(ST)); /* data survives a re-run */
    store_conn_t c;
    OK(store_conn_get(ST, "c1", &c));
    store_conn_clear(&c);
}

typedef struct {
    const char *url;
    int rc;
    char err[512];
} mig_arg_t;

static void *migrate_thread(void *p)
{
    mig_arg_t *a = p;
    store_t *st = NULL;
    a->rc = store_open(&st, a->url, a->err, sizeof a->err);
    if (a->rc == 0 && (a->rc = store_migrate(st)) != 0)
        snprintf(a->err, sizeof a->err, "%s", store_errmsg(st));
    store_free(st);
    return NULL;
}

/* Several handles migrate one empty database at the same moment: every one
 * succeeds and each version is recorded once (a duplicate would fail on
 * schema_migrations' primary key, a half-applied schema on CREATE TABLE). */
static void test_migrate_concurrent(void **state)
{
    fx_t *fx = *state;
    for (int round = 0; round < 4; round++) {
        const char *url = fresh_url(fx);
        enum { N = 4 };
        pthread_t t[N];
        mig_arg_t a[N];
        for (int i = 0; i < N; i++) {
            a[i] = (mig_arg_t){.url = url};
            assert_int_equal(pthread_create(&t[i], NULL, migrate_thread, &a[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            if (a[i].rc != 0)
                fail_msg("round %d migrator %d: %s: %s", round, i, wsg_err_name(a[i].rc), a[i].err);
        }
        store_t *st = NULL;
        char err[512];
        OK(store_open(&st, url, err, sizeof err));
        int64_t applied = 0, embedded = 0;
        OK(store_schema_version(st, &applied, &embedded));
        assert_int_equal(applied, embedded);
        store_free(st);
    }
}

/* ---- connections ------------------------------------------------------------------ */

static void test_conn_crud(void **state)
{
    store_conn_t c;
    assert_int_equal(store_conn_get(ST, "nope", &c), WSG_ENOTFOUND);
    put_conn(ST, "c1", "/chat", "e1", "alice");
    OK(store_conn_get(ST, "c1", &c));
    assert_string_equal(c.id, "c1");
    assert_string_equal(c.route, "/chat");
    assert_string_equal(c.edge_id, "e1");
    assert_string_equal(c.user, "alice");
    assert_string_equal(c.context_json, "{\"k\":1}");
    assert_string_equal(c.remote_addr, "127.0.0.1");
    assert_int_equal(c.connected_at_ms, 1000);
    assert_int_equal(c.last_active_at_ms, 2000);
    store_conn_clear(&c);

    /* replace by id; NULL user and context */
    store_conn_t r = {.id = "c1", .route = "/game", .edge_id = "e2", .connected_at_ms = 5};
    OK(store_conn_put(ST, &r));
    OK(store_conn_get(ST, "c1", &c));
    assert_string_equal(c.route, "/game");
    assert_null(c.user);
    assert_string_equal(c.context_json, "{}");
    assert_string_equal(c.remote_addr, "");
    store_conn_clear(&c);

    OK(store_conn_touch(ST, "c1", 9000));
    OK(store_conn_touch(ST, "c1", 8000)); /* older touch does not move it back */
    OK(store_conn_get(ST, "c1", &c));
    assert_int_equal(c.last_active_at_ms, 9000);
    store_conn_clear(&c);
    assert_int_equal(store_conn_touch(ST, "ghost", 1), WSG_ENOTFOUND);

    OK(store_conn_delete(ST, "c1"));
    assert_int_equal(store_conn_get(ST, "c1", &c), WSG_ENOTFOUND);
    OK(store_conn_delete(ST, "c1")); /* idempotent */

    store_conn_t bad = {.id = "", .route = "/chat", .edge_id = "e1"};
    assert_int_equal(store_conn_put(ST, &bad), WSG_EINVAL);
}

/* A batch is one transaction: committed all together, or rolled back
 * all together (store calls that run their own transaction join it). */
static void test_batch(void **state)
{
    store_conn_t c;
    put_conn(ST, "old", "/chat", "e1", "alice");
    OK(store_batch_begin(ST));
    assert_int_equal(store_batch_begin(ST), WSG_EINVAL);
    put_conn(ST, "b1", "/chat", "e1", "bob");
    OK(store_sub_add(ST, "room", "b1"));
    OK(store_conn_delete(ST, "old")); /* its own transaction joins the batch */
    OK(store_batch_end(ST, 1));
    assert_int_equal(store_batch_end(ST, 1), WSG_EINVAL);
    OK(store_conn_get(ST, "b1", &c));
    store_conn_clear(&c);
    assert_int_equal(store_conn_get(ST, "old", &c), WSG_ENOTFOUND);

    OK(store_batch_begin(ST));
    put_conn(ST, "b2", "/chat", "e1", "carol");
    OK(store_conn_delete(ST, "b1"));
    store_conn_t bad = {.id = "", .route = "/chat", .edge_id = "e1"};
    assert_int_equal(store_conn_put(ST, &bad), WSG_EINVAL);
    OK(store_batch_end(ST, 0)); /* rolled back: nothing of it stays */
    assert_int_equal(store_conn_get(ST, "b2", &c), WSG_ENOTFOUND);
    OK(store_conn_get(ST, "b1", &c));
    store_conn_clear(&c);
    store_str_list_t l;
    OK(store_sub_channels(ST, "b1", &l));
    assert_int_equal(l.n, 1);
    store_str_list_free(&l);

    /* a statement that fails inside a batch (PostgreSQL then aborts the
     * transaction and would answer COMMIT with ROLLBACK) makes the commit
     * fail, even when its caller ignored the failure: nothing is stored */
    OK(store_batch_begin(ST));
    put_conn(ST, "b4", "/chat", "e1", "erin");
    assert_int_not_equal(
        store_q(ST, SQ_PING, "SELECT no_such_column FROM connections", NULL, 0, NULL, NULL, NULL),
        0);
    store_conn_t b5 = {.id = "b5", .route = "/chat", .edge_id = "e1", .connected_at_ms = 1};
    (void)store_conn_put(ST, &b5); /* fails on PostgreSQL (aborted), works on SQLite */
    assert_int_not_equal(store_batch_end(ST, 1), 0);
    assert_int_equal(store_conn_get(ST, "b4", &c), WSG_ENOTFOUND);
    assert_int_equal(store_conn_get(ST, "b5", &c), WSG_ENOTFOUND);

    /* after a batch, calls commit on their own again */
    put_conn(ST, "b3", "/chat", "e1", "dave");
    OK(store_conn_get(ST, "b3", &c));
    store_conn_clear(&c);
}

static void test_conn_delete_drops_subscriptions(void **state)
{
    put_conn(ST, "c1", "/chat", "e1", "alice");
    OK(store_sub_add(ST, "room", "c1"));
    OK(store_sub_add(ST, "lobby", "c1"));
    OK(store_conn_delete(ST, "c1"));
    store_str_list_t l;
    OK(store_sub_channels(ST, "c1", &l));
    assert_int_equal(l.n, 0);
    store_str_list_free(&l);
    OK(store_sub_members(ST, "room", NULL, 10, &l));
    assert_int_equal(l.n, 0);
    store_str_list_free(&l);
}

/* Many at once: only the ids given go, with their subscriptions; a bad id
 * or too many change nothing. */
static void test_conn_delete_many(void **state)
{
    char ids[STORE_DELETE_MAX + 2][8];
    const char *p[STORE_DELETE_MAX + 1];
    for (int i = 0; i < STORE_DELETE_MAX + 2; i++) {
        snprintf(ids[i], sizeof ids[i], "m%02d", i);
        put_conn(ST, ids[i], "/chat", "e1", "alice");
        OK(store_sub_add(ST, "room", ids[i]));
    }
    for (int i = 0; i <= STORE_DELETE_MAX; i++)
        p[i] = ids[i];
    assert_int_equal(store_conn_delete_many(ST, p, STORE_DELETE_MAX + 1), WSG_EINVAL);
    const char *bad[2] = {ids[0], ""};
    assert_int_equal(store_conn_delete_many(ST, bad, 2), WSG_EINVAL);
    OK(store_conn_delete_many(ST, p, 0));
    OK(store_conn_delete_many(ST, p + 1, 3)); /* m01..m03 */
    OK(store_conn_delete_many(ST, p + 1, 3)); /* idempotent */
    store_conn_t c;
    for (int i = 0; i < STORE_DELETE_MAX + 2; i++) {
        int gone = i >= 1 && i <= 3;
        assert_int_equal(store_conn_get(ST, ids[i], &c), gone ? WSG_ENOTFOUND : 0);
        store_conn_clear(&c);
    }
    OK(store_conn_delete_many(ST, p, STORE_DELETE_MAX)); /* a full statement */
    store_str_list_t l;
    OK(store_sub_members(ST, "room", NULL, 100, &l));
    assert_int_equal(l.n, 2); /* m16, m17 */
    store_str_list_free(&l);
}

/* 30 connections: c00..c29; user u<i%3>, route /r<i%2>, edge e<i%5>; every
 * 4th subscribed to "ch". */
static void seed_30(store_t *st)
{
    for (int i = 0; i < 30; i++) {
        char id[8], user[8], route[8], edge[8];
        snprintf(id, sizeof id, "c%02d", i);
        snprintf(user, sizeof user, "u%d", i % 3);
        snprintf(route, sizeof route, "/r%d", i % 2);
        snprintf(edge, sizeof edge, "e%d", i % 5);
        put_conn(st, id, route, edge, user);
        if (i % 4 == 0)
            OK(store_sub_add(st, "ch", id));
    }
}

/* Counts the whole listing for q, page by page, checking order and that
 * every row satisfies pred(i) where i is the number in its id. */
static size_t list_all(store_t *st, store_conn_query_t q, int (*pred)(int))
{
    size_t total = 0;
    char last[16] = "";
    char *cursor = NULL;
    for (int pages = 0; pages < 100; pages++) {
        store_conn_list_t l;
        q.cursor = cursor;
        int rc = store_conn_list(st, &q, &l);
        if (rc != 0)
            fail_msg("list: %s", store_errmsg(st));
        assert_true(l.n <= q.limit);
        for (size_t i = 0; i < l.n; i++) {
            assert_true(strcmp(l.items[i].id, last) > 0);
            snprintf(last, sizeof last, "%s", l.items[i].id);
            assert_true(pred(atoi(l.items[i].id + 1)));
        }
        total += l.n;
        free(cursor);
        cursor = l.next_cursor ? strdup(l.next_cursor) : NULL;
        if (cursor)
            assert_int_equal(l.n, q.limit);
        store_conn_list_free(&l);
        if (!cursor)
            return total;
    }
    fail_msg("listing did not end");
    return 0;
}

static int p_all(int i)
{
    return 1;
}
static int p_u1(int i)
{
    return i % 3 == 1;
}
static int p_r0(int i)
{
    return i % 2 == 0;
}
static int p_e2(int i)
{
    return i % 5 == 2;
}
static int p_ch(int i)
{
    return i % 4 == 0;
}
static int p_ch_r0_u0(int i)
{
    return i % 4 == 0 && i % 2 == 0 && i % 3 == 0;
}

static void test_conn_list_filters(void **state)
{
    seed_30(ST);
    store_conn_query_t q = {.limit = 1000};
    assert_int_equal(list_all(ST, q, p_all), 30);
    assert_int_equal(list_all(ST, (store_conn_query_t){.user = "u1", .limit = 4}, p_u1), 10);
    assert_int_equal(list_all(ST, (store_conn_query_t){.route = "/r0", .limit = 3}, p_r0), 15);
    assert_int_equal(list_all(ST, (store_conn_query_t){.edge_id = "e2", .limit = 2}, p_e2), 6);
    assert_int_equal(list_all(ST, (store_conn_query_t){.channel = "ch", .limit = 3}, p_ch), 8);
    store_conn_query_t all3 = {.channel = "ch", .route = "/r0", .user = "u0", .limit = 1};
    assert_int_equal(list_all(ST, all3, p_ch_r0_u0), 3); /* c00 c12 c24 */
    assert_int_equal(list_all(ST, (store_conn_query_t){.user = "nobody", .limit = 5}, p_all), 0);
    assert_int_equal(list_all(ST, (store_conn_query_t){.channel = "none", .limit = 5}, p_all), 0);
}

/* The dashboard's connections per (route, edge): largest groups first. */
static void test_conn_counts(void **state)
{
    seed_30(ST); /* ten (route, edge) groups of three */
    put_conn(ST, "c30", "/r0", "e0", "u0");
    store_conn_counts_t l;
    OK(store_conn_counts(ST, 1000, &l));
    assert_int_equal(l.n, 10);
    assert_string_equal(l.items[0].route, "/r0");
    assert_string_equal(l.items[0].edge_id, "e0");
    assert_int_equal(l.items[0].n, 4);
    uint64_t total = 0;
    for (size_t i = 0; i < l.n; i++)
        total += l.items[i].n;
    assert_int_equal(total, 31);
    assert_string_equal(l.items[1].route, "/r0"); /* ties by route, then edge */
    assert_string_equal(l.items[1].edge_id, "e1");
    assert_int_equal(l.items[1].n, 3);
    store_conn_counts_free(&l);
    OK(store_conn_counts(ST, 3, &l));
    assert_int_equal(l.n, 3);
    store_conn_counts_free(&l);
    assert_int_equal(store_conn_counts(ST, 0, &l), WSG_EINVAL);
    assert_int_equal(l.n, 0);
}

static void test_conn_list_pages(void **state)
{
    seed_30(ST);
    size_t sizes[] = {10, 1, 7, 29, 30, 31};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        assert_int_equal(list_all(ST, (store_conn_query_t){.limit = sizes[i]}, p_all), 30);

    /* Rows added before the cursor do not shift later pages. */
    store_conn_list_t a, b;
    OK(store_conn_list(ST, &(store_conn_query_t){.limit = 10}, &a));
    assert_string_equal(a.items[9].id, "c09");
    assert_non_null(a.next_cursor);
    put_conn(ST, "c00a", "/r0", "e0", "u0");
    OK(store_conn_delete(ST, "c05"));
    OK(store_conn_list(ST, &(store_conn_query_t){.limit = 10, .cursor = a.next_cursor}, &b));
    assert_string_equal(b.items[0].id, "c10");
    assert_string_equal(b.items[9].id, "c19");
    store_conn_list_free(&a);
    store_conn_list_free(&b);
}

static void test_bad_cursor_and_limit(void **state)
{
    seed_30(ST);
    store_conn_list_t l;
    const char *bad[] = {
        "!!!", "%%", "a", "Y2", "Yw==", "eGMwMQ", "Yy", "Yw", "Y2MwMQ=", "Y2MwMQx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = store_conn_list(ST, &(store_conn_query_t){.limit = 5, .cursor = bad[i]}, &l);
        if (rc != WSG_EINVAL)
            fail_msg("cursor '%s' gave %d", bad[i], rc);
        assert_int_equal(l.n, 0);
    }
    assert_int_equal(store_conn_list(ST, &(store_conn_query_t){.limit = 0}, &l), WSG_EINVAL);
    assert_int_equal(store_conn_list(ST, &(store_conn_query_t){.limit = 1001}, &l), WSG_EINVAL);

    /* A members cursor is not a connections cursor, nor the other way. */
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof id, "m%d", i);
        OK(store_sub_add(ST, "room", id));
    }
    store_str_list_t m;
    OK(store_sub_members(ST, "room", NULL, 2, &m));
    assert_non_null(m.next_cursor);
    assert_int_equal(
        store_conn_list(ST, &(store_conn_query_t){.limit = 5, .cursor = m.next_cursor}, &l),
        WSG_EINVAL);
    OK(store_conn_list(ST, &(store_conn_query_t){.limit = 5}, &l));
    store_str_list_t m2;
    assert_int_equal(store_sub_members(ST, "room", l.next_cursor, 2, &m2), WSG_EINVAL);
    store_channel_list_t cl;
    assert_int_equal(store_channel_list(ST, "", "!!", 5, &cl), WSG_EINVAL);
    store_dead_list_t dl;
    assert_int_equal(store_dead_list(ST, NULL, l.next_cursor, 5, &dl), WSG_EINVAL);
    assert_int_equal(store_dead_list(ST, NULL, NULL, 0, &dl), WSG_EINVAL);
    store_conn_list_free(&l);
    store_str_list_free(&m);
}

/* ---- subscriptions ------------------------------------------------------------------ */

static void assert_list(const store_str_list_t *l, size_t n, const char *const *want)
{
    assert_int_equal(l->n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(l->items[i], want[i]);
}

static void test_sub_both_ways(void **state)
{
    OK(store_sub_add(ST, "b", "c1"));
    OK(store_sub_add(ST, "a", "c1"));
    OK(store_sub_add(ST, "a", "c2"));
    OK(store_sub_add(ST, "a", "c2")); /* idempotent */
    store_str_list_t l;
    OK(store_sub_members(ST, "a", NULL, 100, &l));
    assert_list(&l, 2, (const char *[]){"c1", "c2"});
    assert_null(l.next_cursor);
    store_str_list_free(&l);
    OK(store_sub_channels(ST, "c1", &l));
    assert_list(&l, 2, (const char *[]){"a", "b"});
    store_str_list_free(&l);

    OK(store_sub_remove(ST, "a", "c1"));
    OK(store_sub_remove(ST, "a", "c1")); /* idempotent */
    OK(store_sub_remove(ST, "never", "c9"));
    OK(store_sub_members(ST, "a", NULL, 100, &l));
    assert_list(&l, 1, (const char *[]){"c2"});
    store_str_list_free(&l);
    OK(store_sub_channels(ST, "c1", &l));
    assert_list(&l, 1, (const char *[]){"b"});
    store_str_list_free(&l);
    assert_int_equal(store_sub_add(ST, "", "c1"), WSG_EINVAL);
    assert_int_equal(store_sub_add(ST, "a", ""), WSG_EINVAL);
}

static void test_sub_gc(void **state)
{
    put_conn(ST, "live", "/chat", "e1", "u");
    OK(store_sub_add(ST, "room", "live"));
    OK(store_sub_add(ST, "room", "ghost"));
    uint64_t removed = 99;
    OK(store_sub_gc(ST, &removed)); /* the ghost is younger than the grace */
    assert_int_equal(removed, 0);
    OK(store_sub_gc_before(ST, INT64_MAX / 2, &removed));
    assert_int_equal(removed, 1);
    store_str_list_t l;
    OK(store_sub_members(ST, "room", NULL, 10, &l));
    assert_list(&l, 1, (const char *[]){"live"});
    store_str_list_free(&l);
    OK(store_sub_gc_before(ST, INT64_MAX / 2, &removed));
    assert_int_equal(removed, 0);
}

static void test_members_pages(void **state)
{
    for (int i = 0; i < 25; i++) {
        char id[8];
        snprintf(id, sizeof id, "k%02d", i);
        OK(store_sub_add(ST, "big", id));
        OK(store_sub_add(ST, "other", id));
    }
    char *cursor = NULL;
    size_t sizes[4] = {0}, got = 0, page = 0;
    do {
        store_str_list_t l;
        OK(store_sub_members(ST, "big", cursor, 7, &l));
        for (size_t i = 0; i < l.n; i++) {
            char want[8];
            snprintf(want, sizeof want, "k%02zu", got++);
            assert_string_equal(l.items[i], want);
        }
        assert_true(page < 4);
        sizes[page++] = l.n;
        free(cursor);
        cursor = l.next_cursor ? strdup(l.next_cursor) : NULL;
        store_str_list_free(&l);
    } while (cursor);
    assert_int_equal(page, 4);
    assert_int_equal(sizes[3], 4);
    assert_int_equal(got, 25);
}

static void test_channel_list(void **state)
{
    const char *subs[][2] = {{"chat.a", "1"}, {"chat.a", "2"}, {"chat.b", "1"}, {"game.x", "1"},
                             {"game.x", "2"}, {"game.x", "3"}, {"chat_c", "1"}, {"CHAT.d", "1"}};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        OK(store_sub_add(ST, subs[i][0], subs[i][1]));
    store_channel_list_t l;
    OK(store_channel_list(ST, "chat.", NULL, 100, &l));
    assert_int_equal(l.n, 2); /* not chat_c (no LIKE wildcard), not CHAT.d (case) */
    assert_string_equal(l.items[0].channel, "chat.a");
    assert_int_equal(l.items[0].members, 2);
    assert_string_equal(l.items[1].channel, "chat.b");
    assert_int_equal(l.items[1].members, 1);
    assert_null(l.next_cursor);
    store_channel_list_free(&l);
    OK(store_channel_list(ST, "zzz", NULL, 100, &l));
    assert_int_equal(l.n, 0);
    store_channel_list_free(&l);

    /* all five, one per page */
    char *cursor = NULL;
    size_t total = 0;
    uint64_t members = 0;
    do {
        OK(store_channel_list(ST, "", cursor, 1, &l));
        assert_int_equal(l.n, 1);
        total++;
        members += l.items[0].members;
        free(cursor);
        cursor = l.next_cursor ? strdup(l.next_cursor) : NULL;
        store_channel_list_free(&l);
    } while (cursor && total < 10);
    assert_int_equal(total, 5);
    assert_int_equal(members, 8);
    OK(store_channel_list(ST, NULL, NULL, 1000, &l)); /* NULL prefix = all */
    assert_int_equal(l.n, 5);
    store_channel_list_free(&l);
}

/* ---- edges ---------------------------------------------------------------------------- */

static void test_edges(void **state)
{
    OK(store_edge_heartbeat(ST, "e1", 1000));
    OK(store_edge_heartbeat(ST, "e2", 5000));
    store_str_list_t l;
    OK(store_edge_stale(ST, 3000, &l));
    assert_list(&l, 1, (const char *[]){"e1"});
    store_str_list_free(&l);
    OK(store_edge_heartbeat(ST, "e1", 6000));
    OK(store_edge_stale(ST, 3000, &l));
    assert_int_equal(l.n, 0);
    store_str_list_free(&l);
    OK(store_edge_stale(ST, 10000, &l));
    assert_list(&l, 2, (const char *[]){"e1", "e2"});
    store_str_list_free(&l);
    OK(store_edge_delete(ST, "e2"));
    OK(store_edge_delete(ST, "e2"));
    OK(store_edge_stale(ST, 10000, &l));
    assert_list(&l, 1, (const char *[]){"e1"});
    store_str_list_free(&l);
    assert_int_equal(store_edge_heartbeat(ST, "", 1), WSG_EINVAL);
}

/* ---- dead letters ---------------------------------------------------------------------- */

static void put_dead(store_t *st, const char *id, const char *route, int attempts)
{
    store_dead_t d = {.id = (char *)id,
                      .conn_id = "c1",
                      .route = (char *)route,
                      .backend = "http://127.0.0.1:9/e",
                      .event_json = "{\"id\":\"x\",\"data\":\"h\\u00e9\"}",
                      .attempts = attempts,
                      .last_status = 500,
                      .last_error = "HTTP 500",
                      .created_at_ms = 1234567890123LL};
    if (store_dead_put(st, &d) != 0)
        fail_msg("dead put: %s", store_errmsg(st));
}

static void test_dead_letters(void **state)
{
    put_dead(ST, "evt_3", "/chat", 10);
    put_dead(ST, "evt_1", "/chat", 10);
    put_dead(ST, "evt_2", "/game", 10);
    put_dead(ST, "evt_1", "/chat", 11); /* replaces */
    store_dead_t d;
    OK(store_dead_get(ST, "evt_1", &d));
    assert_string_equal(d.conn_id, "c1");
    assert_string_equal(d.route, "/chat");
    assert_string_equal(d.backend, "http://127.0.0.1:9/e");
    assert_string_equal(d.event_json, "{\"id\":\"x\",\"data\":\"h\\u00e9\"}");
    assert_int_equal(d.attempts, 11);
    assert_int_equal(d.last_status, 500);
    assert_string_equal(d.last_error, "HTTP 500");
    assert_int_equal(d.created_at_ms, 1234567890123LL);
    store_dead_clear(&d);

    store_dead_list_t l, l2;
    OK(store_dead_list(ST, NULL, NULL, 2, &l));
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].id, "evt_1");
    assert_string_equal(l.items[1].id, "evt_2");
    assert_non_null(l.next_cursor);
    OK(store_dead_list(ST, NULL, l.next_cursor, 2, &l2));
    assert_int_equal(l2.n, 1);
    assert_string_equal(l2.items[0].id, "evt_3");
    assert_null(l2.next_cursor);
    store_dead_list_free(&l);
    store_dead_list_free(&l2);
    OK(store_dead_list(ST, "/chat", NULL, 1000, &l));
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].id, "evt_1");
    assert_string_equal(l.items[1].id, "evt_3");
    store_dead_list_free(&l);

    OK(store_dead_delete(ST, "evt_1"));
    OK(store_dead_delete(ST, "evt_1"));
    assert_int_equal(store_dead_get(ST, "evt_1", &d), WSG_ENOTFOUND);
    OK(store_dead_list(ST, "/chat", NULL, 1000, &l));
    assert_int_equal(l.n, 1);
    store_dead_list_free(&l);
}

/* ---- unicode and bad text ------------------------------------------------------------------ */

static void test_unicode(void **state)
{
    const char *ch = "聊天/🎉 ünï"; /* multi-byte, 4-byte, space */
    put_conn(ST, "c1", "/chat", "e1", "Zoë");
    OK(store_sub_add(ST, ch, "c1"));
    OK(store_sub_add(ST, "聊天/other", "c1"));
    store_str_list_t l;
    OK(store_sub_channels(ST, "c1", &l));
    assert_int_equal(l.n, 2);
    assert_true(strcmp(l.items[0], ch) == 0 || strcmp(l.items[1], ch) == 0);
    store_str_list_free(&l);
    OK(store_sub_members(ST, ch, NULL, 10, &l));
    assert_list(&l, 1, (const char *[]){"c1"});
    store_str_list_free(&l);
    store_channel_list_t cl;
    OK(store_channel_list(ST, "聊", NULL, 1, &cl)); /* prefix ends inside no character */
    assert_int_equal(cl.n, 1);
    assert_non_null(cl.next_cursor);
    store_channel_list_t cl2;
    OK(store_channel_list(ST, "聊", cl.next_cursor, 1, &cl2));
    assert_int_equal(cl2.n, 1);
    assert_string_not_equal(cl.items[0].channel, cl2.items[0].channel);
    store_channel_list_free(&cl);
    store_channel_list_free(&cl2);
    store_conn_list_t cs;
    OK(store_conn_list(ST, &(store_conn_query_t){.user = "Zoë", .channel = ch, .limit = 5}, &cs));
    assert_int_equal(cs.n, 1);
    store_conn_list_free(&cs);

    /* Invalid UTF-8 is refused the same way on both engines and changes nothing. */
    assert_int_equal(store_sub_add(ST, "bad\xff", "c1"), WSG_EINVAL);
    assert_int_equal(store_sub_add(ST, "bad\xc0\xaf", "c1"), WSG_EINVAL);     /* overlong '/' */
    assert_int_equal(store_sub_add(ST, "bad\xed\xa0\x80", "c1"), WSG_EINVAL); /* surrogate */
    OK(store_sub_channels(ST, "c1", &l));
    assert_int_equal(l.n, 2);
    store_str_list_free(&l);
}

/* Values never become SQL: text that looks like SQL is stored verbatim. */
static void test_sql_looking_text(void **state)
{
    const char *evil[] = {
        "'; DROP TABLE connections; --", "a' OR '1'='1", "$1", "?1", "%_%", "\\'\"", "--"};
    put_conn(ST, "victim", "/chat", "e1", "u");
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        put_conn(ST, evil[i], evil[i], evil[i], evil[i]);
        OK(store_sub_add(ST, evil[i], evil[i]));
        store_conn_t c;
        OK(store_conn_get(ST, evil[i], &c));
        assert_string_equal(c.route, evil[i]);
        assert_string_equal(c.user, evil[i]);
        store_conn_clear(&c);
        store_str_list_t l;
        OK(store_sub_members(ST, evil[i], NULL, 10, &l));
        assert_list(&l, 1, (const char *[]){evil[i]});
        store_str_list_free(&l);
        store_conn_list_t cl;
        OK(store_conn_list(ST, &(store_conn_query_t){.user = evil[i], .limit = 10}, &cl));
        assert_int_equal(cl.n, 1);
        store_conn_list_free(&cl);
    }
    store_conn_t c;
    OK(store_conn_get(ST, "victim", &c));
    store_conn_clear(&c);
    store_channel_list_t ch;
    OK(store_channel_list(ST, "%", NULL, 100, &ch)); /* '%' is no wildcard */
    assert_int_equal(ch.n, 1);
    assert_string_equal(ch.items[0].channel, "%_%");
    store_channel_list_free(&ch);
}

typedef struct {
    const char *url;
    int id;
    int rc;
    char err[512];
} writer_arg_t;

enum { WRITERS = 4, WRITES = 150 };

static void *writer_thread(void *p)
{
    writer_arg_t *a = p;
    store_t *st = NULL;
    a->rc = store_open(&st, a->url, a->err, sizeof a->err);
    for (int i = 0; a->rc == 0 && i < WRITES; i++) {
        char id[32];
        snprintf(id, sizeof id, "w%d-%03d", a->id, i);
        store_conn_t c = {.id = id, .route = "/chat", .edge_id = "e1", .connected_at_ms = i};
        if ((a->rc = store_conn_put(st, &c)) == 0 && (a->rc = store_sub_add(st, "busy", id)) == 0)
            a->rc = (i % 3 == 0) ? store_conn_delete(st, id) : 0;
        if (a->rc != 0)
            snprintf(a->err, sizeof a->err, "%s", store_errmsg(st));
    }
    store_free(st);
    return NULL;
}

/* Several handles write at once (SQLite: WAL + busy timeout + BEGIN
 * IMMEDIATE; PostgreSQL: separate sessions): every write lands. */
static void test_concurrent_writers(void **state)
{
    fx_t *fx = *state;
    const char *url = backend->pg_url ? backend->pg_url : fx->url;
    pthread_t t[WRITERS];
    writer_arg_t a[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        a[i] = (writer_arg_t){.url = url, .id = i};
        assert_int_equal(pthread_create(&t[i], NULL, writer_thread, &a[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(t[i], NULL);
        if (a[i].rc != 0)
            fail_msg("writer %d: %s: %s", i, wsg_err_name(a[i].rc), a[i].err);
    }
    size_t kept = WRITERS * (WRITES - (WRITES + 2) / 3);
    assert_int_equal(list_all(ST, (store_conn_query_t){.limit = 1000}, p_all), kept);
    store_channel_list_t ch;
    OK(store_channel_list(ST, "busy", NULL, 10, &ch));
    assert_int_equal(ch.n, 1);
    assert_int_equal(ch.items[0].members, kept);
    store_channel_list_free(&ch);
}

/* ---- PostgreSQL restart ------------------------------------------------------------------------
 */

static void pg_control(const char *what)
{
    const char *env = getenv("WSGATE_TEST_PG_CONTROL");
    int wfd = -1, rfd = -1;
    assert_int_equal(sscanf(env, "%d,%d", &wfd, &rfd), 2);
    char line[16];
    int n = snprintf(line, sizeof line, "%s\n", what);
    assert_int_equal(write(wfd, line, (size_t)n), n);
    char answer[8] = "";
    size_t got = 0;
    while (got < 3) {
        ssize_t r = read(rfd, answer + got, 3 - got);
        if (r <= 0)
            fail_msg("control pipe closed while waiting for '%s'", what);
        got += (size_t)r;
    }
    assert_memory_equal(answer, "ok\n", 3);
}

static void test_pg_restart(void **state)
{
    if (!getenv("WSGATE_TEST_PG_CONTROL")) {
        printf("      skipped: WSGATE_TEST_PG_CONTROL not set (run test_store_pg.py)\n");
        skip();
    }
    put_conn(ST, "c1", "/chat", "e1", "alice");
    OK(store_sub_add(ST, "room", "c1"));
    pg_control("stop");
    store_conn_t c;
    assert_int_equal(store_conn_get(ST, "c1", &c), WSG_EUNAVAILABLE);
    assert_true(strlen(store_errmsg(ST)) > 0);
    assert_int_equal(store_ping(ST), WSG_EUNAVAILABLE);
    assert_int_equal(store_conn_delete(ST, "c1"), WSG_EUNAVAILABLE); /* in a transaction */
    assert_int_equal(store_sub_add(ST, "room", "c2"), WSG_EUNAVAILABLE);
    pg_control("start");
    OK(store_ping(ST));
    OK(store_conn_get(ST, "c1", &c)); /* nothing was lost, nothing half-done */
    assert_string_equal(c.user, "alice");
    store_conn_clear(&c);
    OK(store_sub_add(ST, "room", "c2"));
    store_str_list_t l;
    OK(store_sub_members(ST, "room", NULL, 10, &l));
    assert_list(&l, 2, (const char *[]){"c1", "c2"});
    store_str_list_free(&l);

    /* A restart between two calls: the next call reconnects by itself. */
    pg_control("stop");
    pg_control("start");
    OK(store_conn_get(ST, "c1", &c));
    store_conn_clear(&c);
}

/* ---- opening ------------------------------------------------------------------------------------
 */

static void test_open_errors(void **state)
{
    store_t *st = (store_t *)1;
    char err[256] = "";
    assert_int_equal(store_open(&st, "mysql://x/y", err, sizeof err), WSG_EINVAL);
    assert_null(st);
    assert_true(strlen(err) > 0);
    assert_int_equal(store_open(&st, "", err, sizeof err), WSG_EINVAL);
    assert_int_equal(store_open(&st, "sqlite://", err, sizeof err), WSG_EINVAL);
    assert_int_equal(store_open(&st, "sqlite:///tmp/x.db?mode=ro", err, sizeof err), WSG_EINVAL);
    assert_int_equal(store_open(&st, "sqlite:///nonexistent-dir/x/y.db", err, sizeof err),
                     WSG_ESTORE);
    assert_int_equal(store_open(&st, "postgresql://h/db?nosuchoption=1", err, sizeof err),
                     WSG_EINVAL);
    /* nothing listens on port 1 */
    assert_int_equal(store_open(&st, "postgres://wsgate@127.0.0.1:1/x", err, sizeof err),
                     WSG_EUNAVAILABLE);
    assert_null(st);
    store_free(NULL);
    /* libpq echoes parts of a URL it refuses: the password never reaches err */
    static const char *const leaky[] = {
        "postgres://user:s3cr%zzet@127.0.0.1:1/x", "postgres://user:s3cret@[::1/x",
        "postgres://user:s3cret@127.0.0.1:1/x?s3cret=1",
        "postgres://user:s3cret@127.0.0.1:1/x?sslmode=s3cret",
        "postgres://user:s3cret@127.0.0.1:1/x?application_name=s3cret&sslmode=bad"};
    for (size_t i = 0; i < sizeof leaky / sizeof leaky[0]; i++) {
        err[0] = '\0';
        assert_true(store_open(&st, leaky[i], err, sizeof err) != 0);
        assert_null(st);
        if (strlen(err) == 0 || strstr(err, "s3cr"))
            fail_msg("%s -> \"%s\"", leaky[i], err);
    }

    OK(store_open(&st, "sqlite://:memory:", err, sizeof err));
    OK(store_migrate(st));
    OK(store_ping(st));
    store_free(st);
}

/* Cursors come from query strings: any text gives a page or WSG_EINVAL,
 * never a crash (this runs under ASan in `make sanitize`). A valid cursor
 * of the right kind resumes after its key. */
static void test_random_cursors(void **state)
{
    store_t *st = NULL;
    char err[256];
    OK(store_open(&st, "sqlite://:memory:", err, sizeof err));
    OK(store_migrate(st));
    put_conn(st, "b", "/r", "e", NULL);
    put_conn(st, "d", "/r", "e", NULL);
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/";
    unsigned seed = 12345;
    for (int i = 0; i < 5000; i++) {
        char cur[24];
        size_t n = 1 + (size_t)(rand_r(&seed) % 20);
        for (size_t k = 0; k < n; k++)
            cur[k] = (i % 7 == 0) ? (char)(1 + rand_r(&seed) % 255)
                                  : alpha[rand_r(&seed) % (sizeof alpha - 1)];
        cur[n] = '\0';
        store_conn_list_t l;
        int rc = store_conn_list(st, &(store_conn_query_t){.cursor = cur, .limit = 5}, &l);
        assert_true(rc == 0 || rc == WSG_EINVAL);
        store_conn_list_free(&l);
    }
    store_conn_list_t l;
    OK(store_conn_list(st, &(store_conn_query_t){.cursor = "Y2M", .limit = 5}, &l)); /* "cc" */
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, "d");
    store_conn_list_free(&l);
    store_free(st);
}

#define SHARED_TESTS                                                                               \
    cmocka_unit_test_setup_teardown(test_migrate_twice, setup, teardown),                          \
        cmocka_unit_test_setup_teardown(test_migrate_concurrent, setup, teardown),                 \
        cmocka_unit_test_setup_teardown(test_conn_crud, setup, teardown),                          \
        cmocka_unit_test_setup_teardown(test_conn_delete_drops_subscriptions, setup, teardown),    \
        cmocka_unit_test_setup_teardown(test_conn_delete_many, setup, teardown),                   \
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),                              \
        cmocka_unit_test_setup_teardown(test_conn_list_filters, setup, teardown),                  \
        cmocka_unit_test_setup_teardown(test_conn_list_pages, setup, teardown),                    \
        cmocka_unit_test_setup_teardown(test_conn_counts, setup, teardown),                        \
        cmocka_unit_test_setup_teardown(test_bad_cursor_and_limit, setup, teardown),               \
        cmocka_unit_test_setup_teardown(test_sub_both_ways, setup, teardown),                      \
        cmocka_unit_test_setup_teardown(test_sub_gc, setup, teardown),                             \
        cmocka_unit_test_setup_teardown(test_members_pages, setup, teardown),                      \
        cmocka_unit_test_setup_teardown(test_channel_list, setup, teardown),                       \
        cmocka_unit_test_setup_teardown(test_edges, setup, teardown),                              \
        cmocka_unit_test_setup_teardown(test_dead_letters, setup, teardown),                       \
        cmocka_unit_test_setup_teardown(test_unicode, setup, teardown),                            \
        cmocka_unit_test_setup_teardown(test_sql_looking_text, setup, teardown),                   \
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown)

int main(void)
{
    static const backend_t sqlite = {.name = "sqlite"};
    static backend_t pg = {.name = "postgres"};
    const struct CMUnitTest open_tests[] = {cmocka_unit_test(test_open_errors),
                                            cmocka_unit_test(test_random_cursors)};
    const struct CMUnitTest sqlite_tests[] = {SHARED_TESTS};
    const struct CMUnitTest pg_tests[] = {
        SHARED_TESTS, cmocka_unit_test_setup_teardown(test_pg_restart, setup, teardown)};
    int failed = cmocka_run_group_tests_name("store_open", open_tests, NULL, NULL);
    backend = &sqlite;
    failed += cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);
    pg.pg_url = getenv("WSGATE_TEST_PG_URL");
    if (pg.pg_url && *pg.pg_url) {
        backend = &pg;
        failed += cmocka_run_group_tests_name("postgres", pg_tests, NULL, NULL);
    } else {
        printf("[  SKIPPED ] postgres: WSGATE_TEST_PG_URL is not set; the PostgreSQL run of this "
               "suite is in tests/integration/test_store_pg.py\n");
    }
    return failed ? 1 : 0;
}
