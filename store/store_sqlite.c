/* SPDX-License-Identifier: MIT */
/*
 * store_sqlite.c — the SQLite backend of the store ops table (store_int.h),
 * for "sqlite:///abs/path.db", "sqlite://relative.db" and "sqlite://:memory:".
 *
 * The file runs in WAL mode with synchronous=NORMAL (committed rows survive a
 * crash of the process; readers never block the writer) and a busy timeout,
 * so several handles and processes share it. Write transactions start with
 * BEGIN IMMEDIATE: taking the write lock up front avoids the deadlock of two
 * readers upgrading at once, which is also what serialises two migrators.
 * Each handle prepares a statement once, on first use, and keeps it.
 * SQLITE_BUSY after the timeout comes back as WSG_EUNAVAILABLE.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "store/store_int.h"

#define BUSY_TIMEOUT_MS 5000

typedef struct {
    sqlite3 *db;
    sqlite3_stmt *stmts[SQ__N];
} sq_t;

static int sq_err(sq_t *s, int code, const char *what, char *err, size_t errlen)
{
    int e = WSG_ESTORE;
    int primary = code & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        e = WSG_EUNAVAILABLE;
    else if (primary == SQLITE_NOMEM)
        e = WSG_ENOMEM;
    return wsg_errf(err, errlen, e, "sqlite: %s: %s (%s)", what,
                    s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(code),
                    sqlite3_errstr(code));
}

static void sq_close(void *impl)
{
    sq_t *s = impl;
    if (!s)
        return;
    for (int i = 0; i < SQ__N; i++)
        sqlite3_finalize(s->stmts[i]);
    sqlite3_close_v2(s->db);
    free(s);
}

static int sq_exec_script(void *impl, const char *sql, char *err, size_t errlen)
{
    sq_t *s = impl;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : sq_err(s, rc, "exec", err, errlen);
}

/* Switching a new file to WAL needs a moment of exclusive access; while
 * another handle holds it SQLite may answer BUSY without consulting the busy
 * handler, so the switch is retried for up to the busy timeout. */
static int set_wal(sq_t *s, char *err, size_t errlen)
{
    int rc = 0;
    for (int waited = 0; waited <= BUSY_TIMEOUT_MS; waited += 10) {
        rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                          NULL);
        if ((rc & 0xff) != SQLITE_BUSY)
            break;
        sqlite3_sleep(10);
    }
    return rc == SQLITE_OK ? 0 : sq_err(s, rc, "journal_mode", err, errlen);
}

static int sq_open(void **impl, const char *url, char *err, size_t errlen)
{
    const char *path = url + strlen("sqlite://");
    *impl = NULL;
    if (!*path)
        return wsg_errf(err, errlen, WSG_EINVAL, "store: sqlite URL without a path");
    if (strchr(path, '?'))
        return wsg_errf(err, errlen, WSG_EINVAL, "store: sqlite URL takes no ?parameters");
    sq_t *s = calloc(1, sizeof *s);
    if (!s)
        return wsg_errf(err, errlen, WSG_ENOMEM, "store: out of memory");
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        rc = sq_err(s, rc, path, err, errlen);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    if ((rc = set_wal(s, err, errlen)) != 0)
        goto fail;
    *impl = s;
    return 0;
fail:
    sq_close(s);
    return rc;
}

static int sq_begin(void *impl, char *err, size_t errlen)
{
    return sq_exec_script(impl, "BEGIN IMMEDIATE", err, errlen);
}

static int sq_commit(void *impl, char *err, size_t errlen)
{
    return sq_exec_script(impl, "COMMIT", err, errlen);
}

static int sq_rollback(void *impl, char *err, size_t errlen)
{
    return sq_exec_script(impl, "ROLLBACK", err, errlen);
}

static int sq_migrate_lock(void *impl, char *err, size_t errlen)
{
    return 0; /* BEGIN IMMEDIATE already holds the database's write lock */
}

/* The shared SQL numbers its parameters $1..$n; SQLite reads those as names,
 * so they become ?1..?n, which bind by number. */
static char *rewrite_params(const char *sql)
{
    char *out = strdup(sql);
    if (!out)
        abort();
    for (char *p = out; *p; p++)
        if (p[0] == '$' && p[1] >= '0' && p[1] <= '9')
            p[0] = '?';
    return out;
}

static int sq_prepare(sq_t *s, int id, const char *sql, sqlite3_stmt **out, char *err,
                      size_t errlen)
{
    if (id < 0 || id >= SQ__N)
        return wsg_errf(err, errlen, WSG_EINVAL, "store: bad statement id %d", id);
    if (!s->stmts[id]) {
        char *text = rewrite_params(sql);
        int rc =
            sqlite3_prepare_v3(s->db, text, -1, SQLITE_PREPARE_PERSISTENT, &s->stmts[id], NULL);
        free(text);
        if (rc != SQLITE_OK)
            return sq_err(s, rc, "prepare", err, errlen);
    }
    *out = s->stmts[id];
    return 0;
}

static int sq_bind(sq_t *s, sqlite3_stmt *stmt, const store_param_t *params, int n, char *err,
                   size_t errlen)
{
    for (int i = 0; i < n; i++) {
        int rc;
        if (params[i].type == SP_TEXT)
            rc = sqlite3_bind_text(stmt, i + 1, params[i].s, -1, SQLITE_STATIC);
        else if (params[i].type == SP_INT)
            rc = sqlite3_bind_int64(stmt, i + 1, params[i].i);
        else
            rc = sqlite3_bind_null(stmt, i + 1);
        if (rc != SQLITE_OK)
            return sq_err(s, rc, "bind", err, errlen);
    }
    return 0;
}

static int sq_query(void *impl, int id, const char *sql, const store_param_t *params, int n,
                    store_row_fn fn, void *ud, uint64_t *changes, char *err, size_t errlen)
{
    sq_t *s = impl;
    sqlite3_stmt *stmt = NULL;
    int rc = sq_prepare(s, id, sql, &stmt, err, errlen);
    if (rc != 0)
        return rc;
    if ((rc = sq_bind(s, stmt, params, n, err, errlen)) != 0)
        goto out;
    store_row_t row = {.ops = &store_sqlite_ops, .res = stmt};
    for (;;) {
        int step = sqlite3_step(stmt);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW) {
            rc = sq_err(s, step, "step", err, errlen);
            goto out;
        }
        if (fn && (rc = fn(ud, &row)) != 0)
            goto out;
        row.row++;
    }
    if (changes)
        *changes = (uint64_t)sqlite3_changes64(s->db);
out:
    sqlite3_reset(stmt); /* ends the statement's read, releasing its lock */
    sqlite3_clear_bindings(stmt);
    return rc;
}

static const char *sq_col_text(const store_row_t *row, int col)
{
    return (const char *)sqlite3_column_text(row->res, col);
}

static int64_t sq_col_int(const store_row_t *row, int col)
{
    return sqlite3_column_int64(row->res, col);
}

const store_ops_t store_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .exec_script = sq_exec_script,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .migrate_lock = sq_migrate_lock,
    .query = sq_query,
    .col_text = sq_col_text,
    .col_int = sq_col_int,
};
