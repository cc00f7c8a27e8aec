/* SPDX-License-Identifier: MIT */
/*
 * store_pg.c — the PostgreSQL backend of the store ops table (store_int.h),
 * for "postgres://..." and "postgresql://..." URLs (libpq connection URIs).
 *
 * One PGconn per handle. Every statement is prepared once per connection
 * (named "wsg_<id>") and run with PQexecPrepared, parameters bound as text;
 * the only unparameterised SQL is constant: the embedded migrations and
 * transaction control. libpq's notices (e.g. "relation already exists,
 * skipping") are swallowed, because the store never prints.
 *
 * A lost connection (server restart, network) is noticed when a call fails
 * with connection state BAD or a SQLSTATE of class 08 / 57P0x. Outside a
 * transaction the call reconnects and runs once more — every statement the
 * store issues on its own is idempotent; inside a transaction, or when the
 * server still cannot be reached, the call gives WSG_EUNAVAILABLE and the
 * next call tries to reconnect first. Nothing here sleeps or loops: how long
 * to wait between attempts is the caller's business.
 */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "store/store_int.h"

#define MAX_PARAMS 16
/* Transaction-scoped advisory lock that serialises migrators; the key is
 * the bytes of "wsgate" read as one big-endian integer, unlikely to clash with an application's. */
#define MIGRATE_LOCK_SQL "SELECT pg_advisory_xact_lock(131337539384421)"

typedef struct {
    PGconn *conn;
    bool prepared[SQ__N];
    bool in_tx;
} pg_t;

static void quiet_notices(void *arg, const char *message) {}

/* libpq's messages end in a newline; copy without it. */
static int pg_fail(int code, const char *what, const char *msg, char *err, size_t errlen)
{
    size_t n = msg ? strlen(msg) : 0;
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    return wsg_errf(err, errlen, code, "postgres: %s: %.*s", what, (int)n, msg ? msg : "");
}

static bool conn_lost(pg_t *p, const PGresult *res)
{
    if (PQstatus(p->conn) != CONNECTION_OK)
        return true;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
                     strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0);
}

/* Maps a failed result to a WSG_E* code with SQLSTATE and message. */
static int res_fail(pg_t *p, const PGresult *res, const char *what, char *err, size_t errlen)
{
    if (conn_lost(p, res))
        return pg_fail(WSG_EUNAVAILABLE, what, PQerrorMessage(p->conn), err, errlen);
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char detail[400];
    snprintf(detail, sizeof detail, "SQLSTATE %s: %s", state ? state : "?",
             msg ? msg : PQerrorMessage(p->conn));
    return pg_fail(WSG_ESTORE, what, detail, err, errlen);
}

static int reconnect(pg_t *p, char *err, size_t errlen)
{
    PQreset(p->conn);
    memset(p->prepared, 0, sizeof p->prepared);
    p->in_tx = false;
    if (PQstatus(p->conn) != CONNECTION_OK)
        return pg_fail(WSG_EUNAVAILABLE, "reconnect", PQerrorMessage(p->conn), err, errlen);
    return 0;
}

static void pg_close(void *impl)
{
    pg_t *p = impl;
    if (!p)
        return;
    PQfinish(p->conn);
    free(p);
}

/* A URL libpq cannot even parse is the caller's mistake, not an outage. */
/* libpq quotes the piece of a URL or option it refuses ("invalid
 * percent-encoded token: \"pa%zzss\"", "invalid sslmode value: \"...\""),
 * and that piece may be the password. In err, each quoted text is replaced
 * by *** when all is set, else each occurrence of secret. */
static void redact(char *err, size_t errlen, int all, const char *secret)
{
    char out[1024];
    size_t o = 0, sl = secret ? strlen(secret) : 0;
    if (!err || errlen == 0 || (!all && sl == 0))
        return;
    for (const char *p = err; *p && o + 6 < sizeof out;) { /* room for "***" and NUL */
        const char *q = all && *p == '"' ? strchr(p + 1, '"') : NULL;
        if (q || (!all && strncmp(p, secret, sl) == 0)) {
            memcpy(out + o, all ? "\"***\"" : "***", all ? 5 : 3);
            o += all ? 5 : 3;
            p = q ? q + 1 : p + sl;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    snprintf(err, errlen, "%s", out);
}

/* A URL libpq cannot parse: its message, with the quoted pieces hidden.
 * A URL it parses: 0, and a copy of its password (NULL if none) in *password. */
static int check_url(const char *url, char **password, char *err, size_t errlen)
{
    char *msg = NULL;
    *password = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    if (opts) {
        for (PQconninfoOption *o = opts; o->keyword; o++)
            if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
                *password = strdup(o->val);
        PQconninfoFree(opts);
        return 0;
    }
    int rc = pg_fail(WSG_EINVAL, "bad URL", msg ? msg : "out of memory", err, errlen);
    redact(err, errlen, 1, NULL);
    PQfreemem(msg);
    return rc;
}

static int pg_open(void **impl, const char *url, char *err, size_t errlen)
{
    char *password = NULL;
    *impl = NULL;
    int rc = check_url(url, &password, err, errlen);
    if (rc != 0)
        return rc;
    pg_t *p = calloc(1, sizeof *p);
    if (!p) {
        rc = wsg_errf(err, errlen, WSG_ENOMEM, "store: out of memory");
        goto out;
    }
    /* Defaults first: keywords inside the URL (expanded from "dbname") win.
     * Keepalives and tcp_user_timeout turn a server that vanished without a
     * word into a failed call (then WSG_EUNAVAILABLE) within about 30 s
     * instead of a call that hangs for the kernel's two hours. */
    const char *keys[] = {"connect_timeout",
                          "application_name",
                          "client_encoding",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "dbname",
                          NULL};
    const char *vals[] = {"10", "wsgate", "UTF8", "10", "5", "3", "30000", url, NULL};
    p->conn = PQconnectdbParams(keys, vals, 1);
    if (!p->conn) {
        rc = wsg_errf(err, errlen, WSG_ENOMEM, "store: out of memory");
        goto out;
    }
    PQsetNoticeProcessor(p->conn, quiet_notices, NULL);
    if (PQstatus(p->conn) != CONNECTION_OK) {
        rc = pg_fail(WSG_EUNAVAILABLE, "connect", PQerrorMessage(p->conn), err, errlen);
        redact(err, errlen, 0, password); /* e.g. the password given as an option's value */
        goto out;
    }
    *impl = p;
    p = NULL;
out:
    pg_close(p);
    free(password);
    return rc;
}

/* Runs constant SQL without parameters; reconnects once when allowed. */
static int run_simple(pg_t *p, const char *sql, bool may_retry, char *err, size_t errlen)
{
    for (int attempt = 0;; attempt++) {
        if (!p->in_tx && PQstatus(p->conn) != CONNECTION_OK) {
            int rc = reconnect(p, err, errlen);
            if (rc != 0)
                return rc;
        }
        PGresult *res = PQexec(p->conn, sql);
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            PQclear(res);
            return 0;
        }
        bool lost = conn_lost(p, res);
        int rc = res_fail(p, res, "exec", err, errlen);
        PQclear(res);
        if (!lost || !may_retry || p->in_tx || attempt > 0)
            return rc;
    }
}

static int pg_exec_script(void *impl, const char *sql, char *err, size_t errlen)
{
    return run_simple(impl, sql, false, err, errlen);
}

static int pg_begin(void *impl, char *err, size_t errlen)
{
    pg_t *p = impl;
    int rc = run_simple(p, "BEGIN", true, err, errlen);
    if (rc == 0)
        p->in_tx = true;
    return rc;
}

static int pg_end(pg_t *p, const char *sql, char *err, size_t errlen)
{
    int rc = run_simple(p, sql, false, err, errlen);
    p->in_tx = false;
    return rc;
}

static int pg_commit(void *impl, char *err, size_t errlen)
{
    pg_t *p = impl;
    PGresult *res = PQexec(p->conn, "COMMIT");
    p->in_tx = false;
    ExecStatusType s = PQresultStatus(res);
    int rc = 0;
    if (s != PGRES_COMMAND_OK) {
        rc = res_fail(p, res, "commit", err, errlen);
    } else if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        /* COMMIT of a transaction an error had aborted: PostgreSQL rolled
         * it back and says so only in the command tag */
        snprintf(err, errlen, "store: the transaction was rolled back (%s)", PQcmdStatus(res));
        rc = WSG_ESTORE;
    }
    PQclear(res);
    return rc;
}

static int pg_rollback(void *impl, char *err, size_t errlen)
{
    return pg_end(impl, "ROLLBACK", err, errlen);
}

static int pg_migrate_lock(void *impl, char *err, size_t errlen)
{
    return run_simple(impl, MIGRATE_LOCK_SQL, false, err, errlen);
}

/* Prepares statement id on this connection if it is not yet, then runs it. */
static PGresult *exec_prepared(pg_t *p, int id, const char *sql, const char *const *values, int n)
{
    char name[32];
    snprintf(name, sizeof name, "wsg_%d", id);
    if (!p->prepared[id]) {
        PGresult *res = PQprepare(p->conn, name, sql, n, NULL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            return res;
        PQclear(res);
        p->prepared[id] = true;
    }
    return PQexecPrepared(p->conn, name, n, values, NULL, NULL, 0);
}

static int deliver_rows(PGresult *res, store_row_fn fn, void *ud, uint64_t *changes)
{
    store_row_t row = {.ops = &store_pg_ops, .res = res};
    if (fn)
        for (row.row = 0; row.row < PQntuples(res); row.row++) {
            int rc = fn(ud, &row);
            if (rc != 0)
                return rc;
        }
    if (changes)
        *changes = strtoull(PQcmdTuples(res), NULL, 10);
    return 0;
}

static int pg_query(void *impl, int id, const char *sql, const store_param_t *params, int n,
                    store_row_fn fn, void *ud, uint64_t *changes, char *err, size_t errlen)
{
    pg_t *p = impl;
    if (id < 0 || id >= SQ__N || n > MAX_PARAMS)
        return wsg_errf(err, errlen, WSG_EINVAL, "store: bad statement %d/%d", id, n);
    char ints[MAX_PARAMS][24];
    const char *values[MAX_PARAMS];
    for (int i = 0; i < n; i++) {
        values[i] = params[i].type == SP_TEXT ? params[i].s : NULL;
        if (params[i].type == SP_INT) {
            snprintf(ints[i], sizeof ints[i], "%lld", (long long)params[i].i);
            values[i] = ints[i];
        }
    }
    for (int attempt = 0;; attempt++) {
        if (!p->in_tx && PQstatus(p->conn) != CONNECTION_OK) {
            int rc = reconnect(p, err, errlen);
            if (rc != 0)
                return rc;
        }
        PGresult *res = exec_prepared(p, id, sql, values, n);
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            int rc = deliver_rows(res, fn, ud, changes);
            PQclear(res);
            return rc;
        }
        bool lost = conn_lost(p, res);
        int rc = res_fail(p, res, "query", err, errlen);
        PQclear(res);
        if (!lost || p->in_tx || attempt > 0)
            return rc;
    }
}

static const char *pg_col_text(const store_row_t *row, int col)
{
    if (PQgetisnull(row->res, row->row, col))
        return NULL;
    return PQgetvalue(row->res, row->row, col);
}

static int64_t pg_col_int(const store_row_t *row, int col)
{
    const char *v = pg_col_text(row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

const store_ops_t store_pg_ops = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .exec_script = pg_exec_script,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .migrate_lock = pg_migrate_lock,
    .query = pg_query,
    .col_text = pg_col_text,
    .col_int = pg_col_int,
};
