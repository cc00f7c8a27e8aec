/* SPDX-License-Identifier: MIT */
/*
 * store.c — the store's front door: picks the backend by URL scheme, runs
 * statements and transactions through its ops table, applies the embedded
 * migrations, and holds the helpers every store_*.c shares (errors, cursors,
 * UTF-8 checks). The SQL of each record type lives in store_conn.c,
 * store_sub.c and store_misc.c.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/b64.h"
#include "common/err.h"
#include "common/text.h"
#include "store/store_int.h"

int store_open(store_t **out, const char *url, char *err, size_t errlen)
{
    *out = NULL;
    if (!url || !*url)
        return wsg_errf(err, errlen, WSG_EINVAL, "store: empty URL");
    const store_ops_t *ops = NULL;
    if (strncmp(url, "sqlite://", 9) == 0)
        ops = &store_sqlite_ops;
    else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        ops = &store_pg_ops;
    else /* name only the scheme: the rest may hold a password */
        return wsg_errf(err, errlen, WSG_EINVAL,
                        "store: URL must start with sqlite:// or postgres:// (got '%.*s')",
                        (int)strcspn(url, ":/@"), url);
    store_t *st = calloc(1, sizeof *st);
    if (!st)
        return wsg_errf(err, errlen, WSG_ENOMEM, "store: out of memory");
    st->ops = ops;
    const char *d = getenv("WSGATE_TEST_STORE_DELAY_MS");
    st->test_delay_ms = d ? (unsigned)strtoul(d, NULL, 10) : 0;
    int rc = ops->open(&st->impl, url, err, errlen);
    if (rc != 0) {
        free(st);
        return rc;
    }
    *out = st;
    return 0;
}

void store_test_delay(store_t *st)
{
    if (!st->test_delay_ms)
        return;
    struct timespec ts = {.tv_sec = st->test_delay_ms / 1000,
                          .tv_nsec = (long)(st->test_delay_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

void store_free(store_t *st)
{
    if (!st)
        return;
    st->ops->close(st->impl);
    for (size_t i = 0; i < sizeof st->list_sql / sizeof st->list_sql[0]; i++)
        free(st->list_sql[i]);
    free(st);
}

const char *store_errmsg(store_t *st)
{
    return st ? st->err : "store: no handle";
}

int store_fail(store_t *st, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
    return err;
}

int store_q(store_t *st, int id, const char *sql, const store_param_t *params, int n,
            store_row_fn fn, void *ud, uint64_t *changes)
{
    for (int i = 0; i < n; i++)
        if (params[i].type == SP_TEXT && !wsg_utf8_valid_nonul(params[i].s, strlen(params[i].s)))
            return store_fail(st, WSG_EINVAL, "store: parameter %d is not valid UTF-8", i + 1);
    st->err[0] = '\0';
    int rc = st->ops->query(st->impl, id, sql, params, n, fn, ud, changes, st->err, sizeof st->err);
    if (rc != 0 && rc != WSG_ENOTFOUND && st->batch)
        st->batch_failed = rc; /* PostgreSQL aborted the transaction; SQLite undid the statement */
    return rc;
}

int store_tx_begin(store_t *st)
{
    if (st->batch) /* the batch's transaction holds this one's statements */
        return 0;
    return st->ops->begin(st->impl, st->err, sizeof st->err);
}

int store_tx_end(store_t *st, int rc)
{
    if (st->batch) /* the batch's owner commits or rolls back (store_batch_end) */
        return rc;
    if (rc == 0)
        return st->ops->commit(st->impl, st->err, sizeof st->err);
    char keep[STORE_ERRLEN];
    snprintf(keep, sizeof keep, "%s", st->err);
    st->ops->rollback(st->impl, NULL, 0); /* the first failure is the one to report */
    snprintf(st->err, sizeof st->err, "%s", keep);
    return rc;
}

int store_batch_begin(store_t *st)
{
    if (st->batch)
        return store_fail(st, WSG_EINVAL, "store: a batch is already open");
    int rc = store_tx_begin(st);
    st->batch = rc == 0;
    st->batch_failed = 0;
    return rc;
}

int store_batch_end(store_t *st, int commit)
{
    if (!st->batch)
        return store_fail(st, WSG_EINVAL, "store: no batch is open");
    st->batch = 0;
    if (commit && st->batch_failed) { /* a caller ignored a failure: never half a batch */
        st->ops->rollback(st->impl, NULL, 0);
        return store_fail(st, st->batch_failed, "store: a statement of the batch failed");
    }
    int rc = commit ? store_tx_end(st, 0) : 0;
    if (!commit || rc != 0) /* a failed COMMIT may leave SQLite's transaction open */
        st->ops->rollback(st->impl, NULL, 0);
    return rc;
}

int store_ping(store_t *st)
{
    return store_q(st, SQ_PING, "SELECT 1", NULL, 0, NULL, NULL, NULL);
}

/* ---- migrations ------------------------------------------------------------ */

static const char mig_table_sql[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                    "version BIGINT NOT NULL PRIMARY KEY, "
                                    "applied_at BIGINT NOT NULL)";

static int row_int(void *ud, const store_row_t *row)
{
    *(int64_t *)ud = store_col_int(row, 0);
    return 0;
}

/* Inside a transaction just begun: takes the migration lock and makes sure
 * schema_migrations exists. */
static int mig_lock(store_t *st)
{
    int rc = st->ops->migrate_lock(st->impl, st->err, sizeof st->err);
    return rc ? rc : st->ops->exec_script(st->impl, mig_table_sql, st->err, sizeof st->err);
}

/* Applies one migration unless it is recorded, inside one transaction that
 * holds the migration lock, so a concurrent migrator waits and then sees it. */
static int migrate_one(store_t *st, const store_migration_t *m)
{
    int rc = store_tx_begin(st);
    if (rc != 0)
        return rc;
    if ((rc = mig_lock(st)) != 0)
        goto out;
    int64_t found = 0;
    store_param_t p[2] = {SP_I(m->version), SP_I(wsg_wall_ms())};
    rc = store_q(st, SQ_MIG_HAS, "SELECT 1 FROM schema_migrations WHERE version = $1", p, 1,
                 row_int, &found, NULL);
    if (rc != 0 || found)
        goto out;
    if ((rc = st->ops->exec_script(st->impl, m->sql, st->err, sizeof st->err)) != 0) {
        char detail[STORE_ERRLEN];
        snprintf(detail, sizeof detail, "%s", st->err);
        store_fail(st, rc, "migration %s: %s", m->name, detail);
        goto out;
    }
    rc = store_q(st, SQ_MIG_RECORD,
                 "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", p, 2, NULL,
                 NULL, NULL);
out:
    return store_tx_end(st, rc);
}

int store_migrate(store_t *st)
{
    int64_t applied = 0;
    int rc = store_schema_version(st, &applied, NULL);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < store_migrations_n; i++) {
        if (store_migrations[i].version <= applied)
            continue;
        if ((rc = migrate_one(st, &store_migrations[i])) != 0)
            return rc;
    }
    return 0;
}

/* Creating schema_migrations races between two PostgreSQL sessions (both
 * may try to insert its catalog row), so even reading the version happens
 * inside a transaction holding the migration lock. */
int store_schema_version(store_t *st, int64_t *applied, int64_t *embedded)
{
    if (embedded)
        *embedded = store_migrations_n ? store_migrations[store_migrations_n - 1].version : 0;
    int rc = store_tx_begin(st);
    if (rc != 0)
        return rc;
    if ((rc = mig_lock(st)) != 0)
        goto out;
    int64_t v = 0;
    rc = store_q(st, SQ_MIG_MAX, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", NULL, 0,
                 row_int, &v, NULL);
    if (rc == 0 && applied)
        *applied = v;
out:
    return store_tx_end(st, rc);
}

/* ---- helpers ----------------------------------------------------------------- */

char *store_strdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

char *store_col_dup(const store_row_t *r, int col)
{
    return store_strdup(store_col_text(r, col));
}

int store_check_limit(store_t *st, size_t limit)
{
    if (limit < 1 || limit > 1000)
        return store_fail(st, WSG_EINVAL, "store: limit %zu outside 1..1000", limit);
    return 0;
}

/* Longest key a cursor may carry (ids and channel names are far shorter). */
#define CURSOR_KEY_MAX 1024

char *store_cursor_encode(char kind, const char *key)
{
    size_t n = strlen(key);
    unsigned char *raw = malloc(n + 1);
    char *out = malloc(WSG_B64_LEN(n + 1) + 1);
    if (!raw || !out)
        abort();
    raw[0] = (unsigned char)kind;
    memcpy(raw + 1, key, n);
    wsg_b64url_encode(raw, n + 1, out);
    free(raw);
    return out;
}

int store_cursor_decode(store_t *st, char kind, const char *cursor, char **key)
{
    *key = NULL;
    if (!cursor || !*cursor) {
        *key = store_strdup("");
        return 0;
    }
    size_t n = strlen(cursor);
    if (n > WSG_B64_LEN(CURSOR_KEY_MAX + 1))
        return store_fail(st, WSG_EINVAL, "store: cursor too long");
    /* strict and canonical: a cursor has exactly one spelling */
    unsigned char *raw = malloc(WSG_B64URL_DECODED_MAX(n));
    if (!raw)
        abort();
    size_t len = 0;
    int rc = wsg_b64url_decode(cursor, n, raw, &len);
    if (rc != 0 || len < 2 || raw[0] != (unsigned char)kind ||
        !wsg_utf8_valid_nonul((const char *)raw + 1, len - 1)) {
        free(raw);
        return store_fail(st, WSG_EINVAL, "store: malformed cursor");
    }
    memmove(raw, raw + 1, len - 1);
    raw[len - 1] = '\0';
    *key = (char *)raw;
    return 0;
}
