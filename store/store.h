/* SPDX-License-Identifier: MIT */
/*
 * store.h — wsgate's state (docs/contract.md §5): connections, subscriptions, edges,
 * dead letters, schema migrations.
 *
 * Two implementations behind this interface, picked by URL in store_open():
 *   store_sqlite.c  "sqlite:///abs/path.db" or "sqlite://rel.db" (WAL mode)
 *   store_pg.c      "postgres://..." / "postgresql://..." (libpq)
 * Both apply the same migrations/ (embedded in the binary at build time) with
 * store_migrate(), which records each version in schema_migrations and is
 * idempotent. Both pass the one shared test suite in tests/unit/test_store.c.
 *
 * The store never logs: failures come back as WSG_ESTORE (or WSG_EUNAVAILABLE
 * when the server cannot be reached, or SQLite stayed locked past its busy
 * timeout) with the SQL state / message in the error buffer given to
 * store_open() and readable with store_errmsg(). A PostgreSQL handle whose
 * connection broke reconnects by itself on a later call; the API answers 503
 * meanwhile.
 *
 * Threads: a store_t is used by one thread at a time. Open one per thread
 * that needs it; SQLite handles in one process share the file safely.
 *
 * Input rules, the same on both backends: text must be valid UTF-8 without
 * NUL, ids non-empty, page limits 1..1000, cursors exactly as returned by a
 * previous page of the same listing; anything else gives WSG_EINVAL and
 * changes nothing. Pages are ordered by key (connection id, channel name,
 * dead-letter id) and stay stable while rows are added or removed.
 *
 * Ownership: strings passed in are borrowed. Records returned in a
 * store_conn_t / list are owned by the caller and freed with the matching
 * *_free / *_list_free function.
 */
#ifndef WSG_STORE_H
#define WSG_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct store store_t;

/* Opens url ("sqlite://:memory:" too). WSG_EINVAL for an unknown scheme,
 * WSG_EUNAVAILABLE when PostgreSQL cannot be reached, WSG_ESTORE otherwise.
 * Does not migrate. */
int store_open(store_t **out, const char *url, char *err, size_t errlen);
void store_free(store_t *st);

/* Applies every migration not yet recorded, in version order, each in its own
 * transaction; safe when several processes migrate at once. Returns 0,
 * WSG_ESTORE or WSG_EUNAVAILABLE. */
int store_migrate(store_t *st);

/* The highest migration version recorded in the store (0 = none) and the
 * highest one embedded in this binary. Either pointer may be NULL. */
int store_schema_version(store_t *st, int64_t *applied, int64_t *embedded);

/* Detail of the last failure on st (borrowed, valid until the next call). */
const char *store_errmsg(store_t *st);

/* 0 when the store answers a trivial query. */
int store_ping(store_t *st);

/* Batches: every call on st between store_batch_begin() and
 * store_batch_end() runs in one transaction (one commit, one WAL append,
 * instead of one per call). A failed call inside a batch leaves the batch
 * unusable: end it with commit = 0 (rollback) and apply the calls again one
 * by one. store_batch_end() returns the commit's result (0, WSG_ESTORE,
 * WSG_EUNAVAILABLE), or 0 after a rollback; a commit after any failed
 * statement of the batch (even one its caller ignored; "not found" aside)
 * rolls back and returns that failure. Begin returns WSG_EINVAL inside a
 * batch. */
int store_batch_begin(store_t *st);
int store_batch_end(store_t *st, int commit);

/* ---- connections ---------------------------------------------------------- */

typedef struct {
    char *id;
    char *route;
    char *edge_id;
    char *user;         /* may be NULL */
    char *context_json; /* JSON object text, "{}" when empty */
    char *remote_addr;
    int64_t connected_at_ms;
    int64_t last_active_at_ms;
} store_conn_t;

/* Inserts or replaces by id. */
int store_conn_put(store_t *st, const store_conn_t *c);
/* Fills out (caller frees with store_conn_clear) or returns WSG_ENOTFOUND. */
int store_conn_get(store_t *st, const char *id, store_conn_t *out);
/* Deletes the connection and all its subscriptions. Idempotent. */
int store_conn_delete(store_t *st, const char *id);
/* store_conn_delete() of up to STORE_DELETE_MAX ids in one statement per
 * table (the registry after a mass disconnect: one round trip for many).
 * Idempotent; WSG_EINVAL for more ids or a bad one (nothing deleted). */
#define STORE_DELETE_MAX 16
int store_conn_delete_many(store_t *st, const char *const *ids, size_t n);
/* Moves last_active_at forward (never back); WSG_ENOTFOUND for an unknown id. */
int store_conn_touch(store_t *st, const char *id, int64_t last_active_at_ms);
void store_conn_clear(store_conn_t *c);

typedef struct {
    store_conn_t *items;
    size_t n;
    char *next_cursor; /* NULL when there are no more pages */
} store_conn_list_t;

typedef struct {
    const char *user; /* filters; NULL = any */
    const char *route;
    const char *channel;
    const char *edge_id;
    const char *cursor; /* opaque, from a previous page's next_cursor */
    size_t limit;       /* 1..1000 */
} store_conn_query_t;

/* Lists connections ordered by id. Returns WSG_EINVAL for a bad cursor. */
int store_conn_list(store_t *st, const store_conn_query_t *q, store_conn_list_t *out);
void store_conn_list_free(store_conn_list_t *l);

typedef struct {
    char *route;
    char *edge_id;
    uint64_t n;
} store_conn_count_t;

typedef struct {
    store_conn_count_t *items;
    size_t n;
} store_conn_counts_t;

/* Open connections grouped by (route, edge), largest groups first, at most
 * limit (1..1000) groups: one aggregate query, for the dashboard. */
int store_conn_counts(store_t *st, size_t limit, store_conn_counts_t *out);
void store_conn_counts_free(store_conn_counts_t *l);

/* ---- subscriptions --------------------------------------------------------- */

typedef struct {
    char **items;
    size_t n;
    char *next_cursor;
} store_str_list_t;

/* Idempotent. store_sub_add does not require the connection row to exist
 * (the registry, their one writer, records them in each connection's event
 * order, after its connect; a row whose connection is gone can still be
 * left by a registry that died mid-way). store_sub_gc() removes
 * subscriptions whose connection is gone; the registry runs it
 * periodically. */
int store_sub_add(store_t *st, const char *channel, const char *conn_id);
int store_sub_remove(store_t *st, const char *channel, const char *conn_id);
int store_sub_gc(store_t *st, uint64_t *removed);
/* store_sub_gc() spares orphans younger than STORE_SUB_GC_GRACE_MS (their
 * connection may not be recorded yet); this removes every orphan recorded
 * before before_ms (wall clock, ms). */
#define STORE_SUB_GC_GRACE_MS 60000
int store_sub_gc_before(store_t *st, int64_t before_ms, uint64_t *removed);

/* Members of a channel, ordered by connection id, paginated. */
int store_sub_members(store_t *st, const char *channel, const char *cursor, size_t limit,
                      store_str_list_t *out);

/* Channels of one connection (all of them, sorted). */
int store_sub_channels(store_t *st, const char *conn_id, store_str_list_t *out);
void store_str_list_free(store_str_list_t *l);

typedef struct {
    char *channel;
    uint64_t members;
} store_channel_t;

typedef struct {
    store_channel_t *items;
    size_t n;
    char *next_cursor;
} store_channel_list_t;

/* Channels whose name starts with prefix ("" = all) with member counts. */
int store_channel_list(store_t *st, const char *prefix, const char *cursor, size_t limit,
                       store_channel_list_t *out);
void store_channel_list_free(store_channel_list_t *l);

/* ---- edges ------------------------------------------------------------------ */

/* Inserts or updates the edge's row. */
int store_edge_heartbeat(store_t *st, const char *edge_id, int64_t at_ms);
/* Deletes the edge's row only (its connections are the caller's to clean up,
 * after it has published their edge_lost disconnects). Idempotent. */
int store_edge_delete(store_t *st, const char *edge_id);
/* Edges whose last heartbeat is older than before_ms, sorted, all of them. */
int store_edge_stale(store_t *st, int64_t before_ms, store_str_list_t *out);

/* ---- dead letters ----------------------------------------------------------- */

typedef struct {
    char *id; /* the event id */
    char *conn_id;
    char *route;
    char *backend;
    char *event_json; /* the event envelope as delivered */
    int attempts;
    int last_status; /* HTTP status of the last attempt, 0 if none */
    char *last_error;
    int64_t created_at_ms;
} store_dead_t;

/* Inserts or replaces by id (a replay that fails again updates the row). */
int store_dead_put(store_t *st, const store_dead_t *d);
/* Fills out (free with store_dead_clear) or returns WSG_ENOTFOUND. */
int store_dead_get(store_t *st, const char *id, store_dead_t *out);
/* Idempotent. */
int store_dead_delete(store_t *st, const char *id);
void store_dead_clear(store_dead_t *d);

typedef struct {
    store_dead_t *items;
    size_t n;
    char *next_cursor;
} store_dead_list_t;

/* Dead letters ordered by id, optionally of one route (NULL = all). */
int store_dead_list(store_t *st, const char *route, const char *cursor, size_t limit,
                    store_dead_list_t *out);
void store_dead_list_free(store_dead_list_t *l);

#endif
