/* SPDX-License-Identifier: MIT */
/*
 * store_int.h — inside the store: the ops table (vtable) that the two
 * backends implement, the statement runner that store_*.c use, and the
 * embedded migrations. Not installed, not included outside store/.
 *
 * All SQL lives in store_*.c and is written once, in the dialect both
 * engines accept, with PostgreSQL-style placeholders $1..$n (the SQLite
 * backend rewrites them to ?1..?n). Values are always bound, never spliced
 * into SQL text. Each statement has a fixed id so that a backend can prepare
 * it once per handle and reuse it.
 *
 * Threads: like store_t itself, one thread at a time per handle.
 */
#ifndef WSG_STORE_INT_H
#define WSG_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* ---- embedded migrations (generated from the migrations folder) --------------- */

typedef struct {
    int64_t version;
    const char *name; /* file name, e.g. "0001_init.sql" */
    const char *sql;  /* the whole file, NUL-terminated */
} store_migration_t;

extern const store_migration_t store_migrations[];
extern const size_t store_migrations_n;

/* ---- statements ------------------------------------------------------------- */

/* Fixed statement ids; a backend caches one prepared statement per id. */
enum {
    SQ_MIG_TABLE,
    SQ_MIG_HAS,
    SQ_MIG_RECORD,
    SQ_MIG_MAX,
    SQ_PING,
    SQ_CONN_PUT,
    SQ_CONN_GET,
    SQ_CONN_DELETE,
    SQ_CONN_DELETE_SUBS,
    SQ_CONN_DELETE_MANY,
    SQ_CONN_DELETE_SUBS_MANY,
    SQ_CONN_TOUCH,
    SQ_SUB_ADD,
    SQ_SUB_REMOVE,
    SQ_SUB_GC,
    SQ_SUB_MEMBERS,
    SQ_SUB_CHANNELS,
    SQ_CHANNEL_LIST,
    SQ_EDGE_HEARTBEAT,
    SQ_EDGE_DELETE,
    SQ_EDGE_STALE,
    SQ_DEAD_PUT,
    SQ_DEAD_GET,
    SQ_DEAD_DELETE,
    SQ_DEAD_LIST,
    SQ_DEAD_LIST_ROUTE,
    SQ_CONN_COUNTS,
    SQ_CONN_LIST, /* + a bitmask of filters, see store_conn.c */
    SQ__N = SQ_CONN_LIST + 16
};

typedef enum { SP_NULL, SP_TEXT, SP_INT } store_ptype_t;

typedef struct {
    store_ptype_t type;
    const char *s;
    int64_t i;
} store_param_t;

#define SP_T(str) ((store_param_t){.type = (str) ? SP_TEXT : SP_NULL, .s = (str)})
#define SP_I(n) ((store_param_t){.type = SP_INT, .i = (int64_t)(n)})

/* One result row, read through the backend's column accessors. */
typedef struct store_row {
    const struct store_ops *ops;
    void *res; /* backend's result (PGresult *, sqlite3_stmt *) */
    int row;
} store_row_t;

/* Called per row; return 0 to continue or a negative WSG_E* code to stop. */
typedef int (*store_row_fn)(void *ud, const store_row_t *row);

/*
 * The backend vtable. Every function returning int gives 0 or a WSG_E* code
 * and on failure writes detail into err (errlen bytes).
 *   open         connect / open the database named by url
 *   close        release everything; NULL allowed
 *   exec_script  runs a multi-statement script with no parameters (migrations)
 *   begin        starts a write transaction (SQLite: BEGIN IMMEDIATE); when the
 *                connection was lost it reconnects first
 *   commit/rollback
 *   migrate_lock serialises concurrent migrators inside the current transaction
 *                (PostgreSQL: transaction-scoped advisory lock; SQLite: the
 *                write transaction already does)
 *   query        runs statement id (text sql) with params, calling fn per row
 *                (fn may be NULL); *changes gets the rows changed (may be NULL)
 *   col_text     column text or NULL for SQL NULL; valid until the next row
 *   col_int      column as integer (0 for NULL)
 */
typedef struct store_ops {
    const char *name;
    int (*open)(void **impl, const char *url, char *err, size_t errlen);
    void (*close)(void *impl);
    int (*exec_script)(void *impl, const char *sql, char *err, size_t errlen);
    int (*begin)(void *impl, char *err, size_t errlen);
    int (*commit)(void *impl, char *err, size_t errlen);
    int (*rollback)(void *impl, char *err, size_t errlen);
    int (*migrate_lock)(void *impl, char *err, size_t errlen);
    int (*query)(void *impl, int id, const char *sql, const store_param_t *params, int n,
                 store_row_fn fn, void *ud, uint64_t *changes, char *err, size_t errlen);
    const char *(*col_text)(const store_row_t *row, int col);
    int64_t (*col_int)(const store_row_t *row, int col);
} store_ops_t;

extern const store_ops_t store_sqlite_ops;
extern const store_ops_t store_pg_ops;

#define STORE_ERRLEN 512

struct store {
    const store_ops_t *ops;
    void *impl;
    char err[STORE_ERRLEN];
    char *list_sql[16];     /* composed SQL of store_conn_list's filter variants */
    int batch;              /* inside store_batch_begin/end: store_tx_* are no-ops */
    int batch_failed;       /* a statement failed inside the batch: it cannot commit */
    unsigned test_delay_ms; /* WSGATE_TEST_STORE_DELAY_MS (store_test_delay) */
};

/* Test-only: a subscription write first sleeps WSGATE_TEST_STORE_DELAY_MS
 * (read when the handle is opened, at start-up; 0 or unset = none), so a
 * test can prove no latency-sensitive thread waits for the store. */
void store_test_delay(store_t *st);

/* Runs one statement on st (see store_ops_t.query); checks every text
 * parameter is valid UTF-8 first (WSG_EINVAL otherwise) so that both
 * backends refuse the same input. */
int store_q(store_t *st, int id, const char *sql, const store_param_t *params, int n,
            store_row_fn fn, void *ud, uint64_t *changes);

/* Transactions on st; store_tx_end commits when rc == 0, else rolls back,
 * and returns rc (or the commit's failure). */
int store_tx_begin(store_t *st);
int store_tx_end(store_t *st, int rc);

static inline const char *store_col_text(const store_row_t *r, int col)
{
    return r->ops->col_text(r, col);
}
static inline int64_t store_col_int(const store_row_t *r, int col)
{
    return r->ops->col_int(r, col);
}

/* ---- helpers shared by store_*.c -------------------------------------------- */

/* strdup that aborts on out-of-memory (the store runs in servers); NULL -> NULL. */
char *store_strdup(const char *s);
/* Column text duplicated; SQL NULL gives NULL. */
char *store_col_dup(const store_row_t *r, int col);

/* Sets st->err and returns err. */
int store_fail(store_t *st, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Runs a statement whose rows are one text column into out (new; free with
 * store_str_list_free). With limit > 0 the statement was given limit + 1
 * and an extra row means another page: it is dropped and next_cursor made
 * from the last kept row with cursor kind `kind`. */
int store_q_strings(store_t *st, int id, const char *sql, const store_param_t *p, int n,
                    size_t limit, char kind, store_str_list_t *out);

/* Checks limit is within 1..1000 (WSG_EINVAL otherwise). */
int store_check_limit(store_t *st, size_t limit);

/* Cursors: base64url of a one-letter kind followed by the last key of the
 * previous page. store_cursor_decode gives "" for a NULL/empty cursor (start
 * from the beginning) and WSG_EINVAL for a malformed one or one of another
 * kind; *key is new (free it). store_cursor_encode returns a new string. */
int store_cursor_decode(store_t *st, char kind, const char *cursor, char **key);
char *store_cursor_encode(char kind, const char *key);

#endif
