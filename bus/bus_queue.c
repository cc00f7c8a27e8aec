/* SPDX-License-Identifier: MIT */
/*
 * bus_queue.c — the in-process bus's durable client-event queue.
 *
 * Publishers copy an event into one heap block and append it to a bounded
 * list (full: WSG_EFULL, nothing taken, the publisher offers it again once
 * its earlier events were acked). One writer thread takes everything pending,
 * appends it in one SQLite transaction (WAL, synchronous=NORMAL, exclusive
 * locking: one process owns a queue file), commits, calls the ack
 * callbacks and queues one delivery per interested group to that group's
 * delivery thread (one thread per group: a slow group never delays
 * another). Group commit is what makes this fast: the busier the bus, the
 * more events share one commit.
 *
 * Each group may hold at most `window` deliveries not yet done; beyond that
 * it falls into "backlog": new events stay only in SQLite and the writer
 * reads them back in order (qseq > the group's cursor) once the group has
 * room again. Restart recovery is the same path: every group starts in
 * backlog at cursor 0. So memory stays bounded however slow a consumer is.
 *
 * bus_event_done() puts the delivery on a done list; the writer's next
 * transaction clears the group's bit in the row's `pending` mask and
 * deletes the row when no bit is left (and a consumed disconnect drops the
 * connection's bus_conn_seq row). Dones alone do not wake the writer: they
 * ride along with the next events' transaction, or are written on their
 * own once BQ_DONE_BATCH of them wait or the oldest waited BQ_DONE_DELAY_MS
 * (a crash redelivers at most that much more; bq_free() writes them all).
 * That spares one SQLite transaction and one thread wake-up per event.
 */
#include "bus/bus_queue.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_int.h"
#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"

#define BQ_MAX_GROUPS 62
#define BQ_MAX_BYTES ((size_t)64 << 20) /* event bodies waiting for the writer */
#define BQ_DONE_BATCH 512
#define BQ_DONE_DELAY_MS 20

typedef struct qev qev_t;
struct qev {
    qev_t *next; /* pending list */
    bus_event_ack_fn cb;
    void *ud;
    int64_t qseq;
    uint64_t want; /* group bits that get it */
    uint32_t attempt;
    atomic_uint refs;
    bus_event_t ev; /* strings point into data */
    char data[];
};

typedef struct dlv dlv_t;
struct dlv {
    struct bus_delivery base;
    dlv_t *prev, *next; /* live list (every delivery not yet done) */
    dlv_t *qnext;       /* delivery queue, done list, local batches */
    qev_t *e;
    int group;
};

typedef struct {
    bq_t *q;
    char *name;
    uint32_t mask;
    bus_event_fn fn;
    bus_run_end_fn run_end; /* may be NULL */
    void *ud;
    int64_t gid;
    uint64_t bit;
    int64_t cursor;       /* writer: last qseq handed to this group */
    int backlog;          /* writer: events past cursor are only in SQLite */
    uint32_t outstanding; /* under mu: handed and not done */

    pthread_mutex_t dmu; /* this group's delivery queue and thread */
    pthread_cond_t dcv;
    dlv_t *dq_head, *dq_tail;
    int dstop, dwaiting;
    pthread_t thread;
} group_t;

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_INS,
    S_SEQ,
    S_CLEAR,
    S_DEL,
    S_SEQDEL,
    S_REFILL,
    S_LAST,
    S_HANDED,
    S_COUNT
};

static const char *const sql_text[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_INS] = "INSERT INTO bus_events(qseq,id,type,conn_id,edge_id,route,seq,body,pending,"
              "attempts) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,1)",
    [S_SEQ] = "INSERT INTO bus_conn_seq(conn_id,last_seq) VALUES(?1,?2) ON CONFLICT(conn_id) "
              "DO UPDATE SET last_seq=max(last_seq,excluded.last_seq)",
    [S_CLEAR] = "UPDATE bus_events SET pending=pending&~?2 WHERE qseq=?1",
    [S_DEL] = "DELETE FROM bus_events WHERE qseq=?1 AND pending=0",
    [S_SEQDEL] = "DELETE FROM bus_conn_seq WHERE conn_id=?1 AND last_seq<=?2",
    [S_REFILL] = "SELECT qseq,id,type,conn_id,edge_id,route,seq,body,attempts FROM bus_events "
                 "WHERE qseq>?1 AND (pending&?2)!=0 ORDER BY qseq LIMIT ?3",
    [S_LAST] = "SELECT last_seq FROM bus_conn_seq WHERE conn_id=?1",
    [S_HANDED] = "UPDATE bus_groups SET handed=?2 WHERE gid=?1",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS bus_groups(gid INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " handed INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS bus_events(qseq INTEGER PRIMARY KEY, id TEXT NOT NULL,"
    " type INTEGER NOT NULL, conn_id TEXT NOT NULL, edge_id TEXT, route TEXT,"
    " seq INTEGER NOT NULL, body BLOB NOT NULL, pending INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS bus_conn_seq(conn_id TEXT PRIMARY KEY,"
    " last_seq INTEGER NOT NULL) WITHOUT ROWID;"
    "PRAGMA user_version=1;";
#define BQ_SCHEMA_VERSION 1

struct bq {
    bus_t *owner;
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
    pthread_mutex_t dbmu; /* the connection; taken before mu */

    pthread_mutex_t mu; /* pending, done list, live list, outstanding, flags */
    pthread_cond_t cv;
    qev_t *pend_head, *pend_tail;
    uint32_t pend_n;
    size_t pend_bytes; /* their bodies */
    dlv_t *done_head;
    uint32_t done_n;
    int64_t done_since_ms; /* when done_head became non-empty */
    dlv_t live;            /* sentinel */
    int writer_idle, stopping, started;

    pthread_t writer;
    atomic_int healthy;
    int64_t next_qseq; /* writer */
    uint32_t queue_max, window;
    group_t groups[BQ_MAX_GROUPS];
    int ngroups;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void qev_unref(qev_t *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1)
        free(e);
}

/* One block: struct, then id, conn_id, edge_id, route, body (NUL-terminated). */
static qev_t *qev_new(const bus_event_t *ev)
{
    const char *s[4] = {ev->id, ev->conn_id, ev->edge_id, ev->route};
    size_t len[4], total = ev->body_len + 1;
    for (int i = 0; i < 4; i++)
        total += (len[i] = s[i] ? strlen(s[i]) + 1 : 0);
    qev_t *e = bus_xcalloc(sizeof *e + total);
    char *p = e->data;
    const char **dst[4] = {&e->ev.id, &e->ev.conn_id, &e->ev.edge_id, &e->ev.route};
    for (int i = 0; i < 4; i++) {
        if (!s[i])
            continue;
        memcpy(p, s[i], len[i]);
        *dst[i] = p;
        p += len[i];
    }
    if (ev->body_len)
        memcpy(p, ev->body, ev->body_len);
    e->ev.body = p;
    e->ev.body_len = ev->body_len;
    e->ev.type = ev->type;
    e->ev.seq = ev->seq;
    e->attempt = 1;
    atomic_init(&e->refs, 1);
    return e;
}

/* ---- opening ------------------------------------------------------------- */

static int db_fail(bq_t *q, char *err, size_t errlen, const char *what)
{
    if (q->db && sqlite3_errcode(q->db) == SQLITE_BUSY)
        return wsg_errf(err, errlen, WSG_EBUS,
                        "bus queue: %s: the queue file is in use by another bus", what);
    return wsg_errf(err, errlen, WSG_EBUS, "bus queue: %s: %s", what,
                    q->db ? sqlite3_errmsg(q->db) : "out of memory");
}

static int query_int(bq_t *q, const char *sql, int64_t *v)
{
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW;
    if (ok)
        *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

static int db_setup(bq_t *q, const char *path, char *err, size_t errlen)
{
    int64_t version = 0;
    int fl = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path ? path : ":memory:", &q->db, fl, NULL) != SQLITE_OK)
        return db_fail(q, err, errlen, "open");
    sqlite3_busy_timeout(q->db, 2000);
    /* exclusive before WAL: no shared-memory file, and a second process
     * opening the same queue is refused instead of double-delivering */
    if (sqlite3_exec(q->db, "PRAGMA locking_mode=EXCLUSIVE", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(q->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(q->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(q, err, errlen, "set pragmas");
    if (sqlite3_exec(q->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(q, err, errlen, "lock the queue file");
    if (query_int(q, "PRAGMA user_version", &version) != 0)
        return db_fail(q, err, errlen, "read the schema version");
    if (version > BQ_SCHEMA_VERSION)
        return wsg_errf(err, errlen, WSG_EBUS,
                        "bus queue: the queue file has schema version %lld, newer than this "
                        "wsgate's (%d)",
                        (long long)version, BQ_SCHEMA_VERSION);
    if (sqlite3_exec(q->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(q, err, errlen, "create schema");
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(q->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &q->st[i],
                               NULL) != SQLITE_OK)
            return db_fail(q, err, errlen, "prepare");
    if (query_int(q, "SELECT coalesce(max(qseq),0) FROM bus_events", &q->next_qseq) != 0)
        return db_fail(q, err, errlen, "read the queue");
    q->next_qseq++;
    return 0;
}

int bq_open(bq_t **out, bus_t *owner, const char *path, char *err, size_t errlen)
{
    bq_t *q = bus_xcalloc(sizeof *q);
    q->owner = owner;
    q->queue_max = 65536;
    q->window = 16384;
    q->live.prev = q->live.next = &q->live;
    atomic_init(&q->healthy, 1);
    pthread_mutex_init(&q->dbmu, NULL);
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = db_setup(q, path, err, errlen);
    if (rc != 0) {
        bq_free(q);
        q = NULL;
    }
    *out = q;
    return rc;
}

int bq_subscribe(bq_t *q, const char *group, uint32_t type_mask, bus_event_fn fn, void *ud)
{
    if (!group || !*group || !fn || bus_check_type_mask(type_mask) != 0 || q->started)
        return WSG_EINVAL;
    for (int i = 0; i < q->ngroups; i++)
        if (strcmp(q->groups[i].name, group) == 0)
            return WSG_EEXISTS;
    if (q->ngroups == BQ_MAX_GROUPS)
        return WSG_EFULL;
    group_t *g = &q->groups[q->ngroups++];
    g->name = bus_xstrdup(group);
    g->mask = type_mask;
    g->fn = fn;
    g->ud = ud;
    g->q = q;
    pthread_mutex_init(&g->dmu, NULL);
    pthread_cond_init(&g->dcv, NULL);
    return 0;
}

int bq_on_run_end(bq_t *q, const char *group, bus_run_end_fn fn)
{
    for (int i = 0; group && fn && !q->started && i < q->ngroups; i++)
        if (strcmp(q->groups[i].name, group) == 0) {
            q->groups[i].run_end = fn;
            return 0;
        }
    return WSG_EINVAL;
}

void bq_tune(bq_t *q, uint32_t queue_max, uint32_t window)
{
    if (queue_max)
        q->queue_max = queue_max;
    if (window >= 2)
        q->window = window;
}

/* ---- publishing ---------------------------------------------------------- */

int bq_publish(bq_t *q, const bus_event_t *ev, bus_event_ack_fn cb, void *ud)
{
    int rc = 0; /* ev was checked by bus.c */
    qev_t *e = qev_new(ev);
    e->cb = cb;
    e->ud = ud;
    pthread_mutex_lock(&q->mu);
    /* The byte bound is checked before adding: one event larger than all
     * of it still gets in once the list is empty enough, never starves. */
    if (q->stopping)
        rc = WSG_EUNAVAILABLE;
    else if (q->pend_n >= q->queue_max || q->pend_bytes >= BQ_MAX_BYTES)
        rc = WSG_EFULL;
    if (rc == 0) {
        if (q->pend_tail)
            q->pend_tail->next = e;
        else
            q->pend_head = e;
        q->pend_tail = e;
        q->pend_n++;
        q->pend_bytes += ev->body_len;
        if (q->writer_idle)
            pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    if (rc == WSG_EFULL) { /* not taken: the publisher keeps it */
        free(e);
        return rc;
    }
    if (rc != 0) {
        free(e);
        if (cb)
            cb(ud, rc);
    }
    return 0;
}

void bq_capacity(bq_t *q, size_t *events, size_t *bytes)
{
    *events = BUS_CAPACITY_SHARE(q->queue_max);
    *bytes = BUS_CAPACITY_SHARE(BQ_MAX_BYTES);
}

void bq_done(bq_t *q, bus_delivery_t *bd)
{
    dlv_t *d = (dlv_t *)bd;
    pthread_mutex_lock(&q->mu);
    d->prev->next = d->next;
    d->next->prev = d->prev;
    d->prev = d->next = NULL;
    if (!q->done_head)
        q->done_since_ms = mono_ms();
    d->qnext = q->done_head;
    q->done_head = d;
    q->done_n++;
    group_t *grp = &q->groups[d->group];
    grp->outstanding--;
    /* otherwise the writer takes it with the next events or on its timer */
    if (q->writer_idle &&
        (q->done_n >= BQ_DONE_BATCH || (grp->backlog && grp->outstanding <= q->window / 2)))
        pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

int bq_healthy(bq_t *q)
{
    return atomic_load(&q->healthy);
}

int bq_last_seq(bq_t *q, const char *conn_id, uint64_t *seq)
{
    uint64_t best = 0;
    int rc = 0;
    pthread_mutex_lock(&q->dbmu); /* holds off the writer: no batch is in flight */
    pthread_mutex_lock(&q->mu);
    for (qev_t *e = q->pend_head; e; e = e->next)
        if (e->ev.seq > best && strcmp(e->ev.conn_id, conn_id) == 0)
            best = e->ev.seq;
    pthread_mutex_unlock(&q->mu);
    sqlite3_stmt *st = q->st[S_LAST];
    sqlite3_bind_text(st, 1, conn_id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) > best)
        best = (uint64_t)sqlite3_column_int64(st, 0);
    else if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = WSG_EBUS;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&q->dbmu);
    *seq = best;
    return rc;
}

/* ---- the writer ---------------------------------------------------------- */

typedef struct {
    qev_t *events; /* taken from pending, publish order */
    dlv_t *dones;
    dlv_t *out_head[BQ_MAX_GROUPS], *out_tail[BQ_MAX_GROUPS]; /* made by this round */
    uint32_t room[BQ_MAX_GROUPS];
    uint32_t handed[BQ_MAX_GROUPS];
    int64_t cursor0[BQ_MAX_GROUPS]; /* to undo a round that did not commit */
    int backlog0[BQ_MAX_GROUPS];
} round_t;

/* Runs st to its end. On failure errno still holds what the failing system
 * call said (0 before the step: nothing stale), for write_failure(). */
static int step_done(sqlite3_stmt *st)
{
    errno = 0;
    int s = sqlite3_step(st), sys = errno;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    errno = sys;
    return s == SQLITE_DONE || s == SQLITE_ROW ? 0 : -1;
}

static int drop_conn_seq(bq_t *q, const bus_event_t *ev)
{
    sqlite3_stmt *st = q->st[S_SEQDEL];
    sqlite3_bind_text(st, 1, ev->conn_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)ev->seq);
    return step_done(st);
}

static int write_done(bq_t *q, const dlv_t *d)
{
    sqlite3_stmt *st = q->st[S_CLEAR];
    sqlite3_bind_int64(st, 1, d->e->qseq);
    sqlite3_bind_int64(st, 2, (int64_t)q->groups[d->group].bit);
    if (step_done(st) != 0)
        return -1;
    st = q->st[S_DEL];
    sqlite3_bind_int64(st, 1, d->e->qseq);
    if (step_done(st) != 0)
        return -1;
    if (sqlite3_changes(q->db) == 1 && d->e->ev.type == BUS_EV_DISCONNECT)
        return drop_conn_seq(q, &d->e->ev);
    return 0;
}

static int write_event(bq_t *q, qev_t *e)
{
    const bus_event_t *ev = &e->ev;
    e->want = 0;
    for (int g = 0; g < q->ngroups; g++)
        if (q->groups[g].mask & BUS_EV_MASK(ev->type))
            e->want |= q->groups[g].bit;
    e->qseq = q->next_qseq++;
    sqlite3_stmt *st = q->st[S_SEQ];
    sqlite3_bind_text(st, 1, ev->conn_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)ev->seq);
    if (step_done(st) != 0)
        return -1;
    if (!e->want) /* nobody wants it: durable only as the connection's last seq */
        return ev->type == BUS_EV_DISCONNECT ? drop_conn_seq(q, ev) : 0;
    st = q->st[S_INS];
    sqlite3_bind_int64(st, 1, e->qseq);
    sqlite3_bind_text(st, 2, ev->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, (int)ev->type);
    sqlite3_bind_text(st, 4, ev->conn_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, ev->edge_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, ev->route, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (int64_t)ev->seq);
    sqlite3_bind_blob(st, 8, ev->body, (int)ev->body_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, (int64_t)e->want);
    return step_done(st);
}

static void hand(round_t *r, int g, qev_t *e)
{
    dlv_t *d = bus_xcalloc(sizeof *d);
    atomic_fetch_add(&e->refs, 1);
    d->e = e;
    d->group = g;
    if (r->out_tail[g])
        r->out_tail[g]->qnext = d;
    else
        r->out_head[g] = d;
    r->out_tail[g] = d;
    r->room[g]--;
    r->handed[g]++;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Reads group g's events past its cursor back from SQLite, in order. */
static int refill(bq_t *q, round_t *r, int g)
{
    group_t *grp = &q->groups[g];
    uint32_t limit = r->room[g], n = 0;
    sqlite3_stmt *st = q->st[S_REFILL];
    sqlite3_bind_int64(st, 1, grp->cursor);
    sqlite3_bind_int64(st, 2, (int64_t)grp->bit);
    sqlite3_bind_int64(st, 3, limit);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        bus_event_t ev = {.id = col_text(st, 1),
                          .type = (bus_event_type_t)sqlite3_column_int(st, 2),
                          .conn_id = col_text(st, 3),
                          .edge_id = col_text(st, 4),
                          .route = col_text(st, 5),
                          .seq = (uint64_t)sqlite3_column_int64(st, 6),
                          .body = sqlite3_column_blob(st, 7),
                          .body_len = (size_t)sqlite3_column_bytes(st, 7)};
        grp->cursor = sqlite3_column_int64(st, 0);
        n++;
        if (!ev.id || !ev.conn_id) /* NOT NULL in the schema; never trust a file */
            continue;
        qev_t *e = qev_new(&ev);
        e->qseq = grp->cursor;
        e->attempt = (uint32_t)sqlite3_column_int(st, 8);
        hand(r, g, e);
        qev_unref(e);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (s != SQLITE_DONE)
        return -1;
    if (n < limit)
        grp->backlog = 0;
    return 0;
}

/* After a commit: each group gets the new events from memory, unless it is
 * in backlog (then they come back from SQLite once it has room). */
static int hand_round(bq_t *q, round_t *r)
{
    int rc = 0;
    for (int g = 0; g < q->ngroups; g++) {
        group_t *grp = &q->groups[g];
        if (grp->backlog) {
            if (r->room[g] >= q->window / 2 && refill(q, r, g) != 0)
                rc = -1;
            continue;
        }
        for (qev_t *e = r->events; e; e = e->next) {
            if (!(e->want & grp->bit))
                continue;
            if (!r->room[g]) {
                grp->backlog = 1;
                break;
            }
            hand(r, g, e);
            grp->cursor = e->qseq;
        }
    }
    return rc;
}

/* Records how far each group got, so a restart counts an attempt exactly
 * for the events that were handed out. */
static int persist_handed(bq_t *q, const round_t *r)
{
    sqlite3_stmt *st = q->st[S_HANDED];
    for (int g = 0; g < q->ngroups; g++) {
        if (!r->handed[g])
            continue;
        sqlite3_bind_int64(st, 1, q->groups[g].gid);
        sqlite3_bind_int64(st, 2, q->groups[g].cursor);
        if (step_done(st) != 0)
            return -1;
    }
    return 0;
}

/* Why a transaction failed, for the ack callbacks: WSG_ENOSPC when the
 * file could not grow (SQLITE_FULL; or a write error whose errno, sys, says
 * disk or quota full or RLIMIT_FSIZE: SQLite reports those as I/O errors
 * and sqlite3_system_errno() no longer has the errno), else WSG_EBUS. */
static int write_failure(sqlite3 *db, int sys)
{
    return sqlite3_errcode(db) == SQLITE_FULL || sys == ENOSPC || sys == EFBIG || sys == EDQUOT
               ? WSG_ENOSPC
               : WSG_EBUS;
}

/* One transaction: dones first (they free rows), then the new events, then
 * what each group is handed (decided inside, so it commits with them).
 * Returns 0 or write_failure()'s code. */
static int write_round(bq_t *q, round_t *r)
{
    if (step_done(q->st[S_BEGIN]) != 0)
        goto fail;
    for (dlv_t *d = r->dones; d; d = d->qnext)
        if (write_done(q, d) != 0)
            goto fail;
    for (qev_t *e = r->events; e; e = e->next)
        if (write_event(q, e) != 0)
            goto fail;
    if (hand_round(q, r) != 0 || persist_handed(q, r) != 0)
        goto fail;
    if (step_done(q->st[S_COMMIT]) == 0)
        return 0;
fail:;
    int sys = errno, rc = write_failure(q->db, sys); /* errno: from the failed step */
    WSG_LOG(WSG_LOG_ERROR, "bus queue write failed", "error=%s errno=%s code=%s",
            sqlite3_errmsg(q->db), sys ? strerror(sys) : "none", wsg_err_name(rc));
    if (!sqlite3_get_autocommit(q->db))
        step_done(q->st[S_ROLLBACK]);
    return rc;
}

static void free_dlvs(dlv_t *d)
{
    for (dlv_t *next; d; d = next) {
        next = d->qnext;
        qev_unref(d->e);
        free(d);
    }
}

/* The round did not commit: nobody gets its events, cursors go back. */
static void undo_round(bq_t *q, round_t *r)
{
    for (int g = 0; g < q->ngroups; g++) {
        q->groups[g].cursor = r->cursor0[g];
        q->groups[g].backlog = r->backlog0[g];
        free_dlvs(r->out_head[g]);
        r->out_head[g] = r->out_tail[g] = NULL;
        r->handed[g] = 0;
    }
}

/* Under mu. *wake_ms: when to look again (dones due, or dones expected
 * from deliveries still out), -1 = only when signalled. */
static int work_waiting(bq_t *q, int64_t now, int64_t *wake_ms)
{
    *wake_ms = -1;
    if (q->pend_head || q->stopping)
        return 1;
    if (q->done_head && (q->done_n >= BQ_DONE_BATCH || now - q->done_since_ms >= BQ_DONE_DELAY_MS))
        return 1;
    int out = 0;
    for (int g = 0; g < q->ngroups; g++) {
        if (q->groups[g].backlog && q->groups[g].outstanding <= q->window / 2)
            return 1;
        out |= q->groups[g].outstanding > 0;
    }
    if (q->done_head)
        *wake_ms = q->done_since_ms + BQ_DONE_DELAY_MS;
    else if (out) /* their dones come without a signal */
        *wake_ms = now + BQ_DONE_DELAY_MS;
    return 0;
}

static void wait_for_work(bq_t *q)
{
    int64_t wake_ms;
    pthread_mutex_lock(&q->mu);
    while (!work_waiting(q, mono_ms(), &wake_ms)) {
        q->writer_idle = 1;
        if (wake_ms < 0) {
            pthread_cond_wait(&q->cv, &q->mu);
        } else {
            struct timespec ts = {.tv_sec = wake_ms / 1000,
                                  .tv_nsec = (long)(wake_ms % 1000) * 1000000};
            pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        }
        q->writer_idle = 0;
    }
    pthread_mutex_unlock(&q->mu);
}

/* Takes the pending events and dones; notes each group's room. Called
 * under dbmu, so bq_last_seq() never misses a batch in flight. */
static int take_round(bq_t *q, round_t *r)
{
    pthread_mutex_lock(&q->mu);
    int stop = q->stopping;
    r->events = q->pend_head;
    r->dones = q->done_head;
    q->pend_head = q->pend_tail = NULL;
    q->done_head = NULL;
    q->done_n = 0;
    q->pend_n = 0;
    q->pend_bytes = 0;
    for (int g = 0; g < q->ngroups; g++) {
        uint32_t out = q->groups[g].outstanding;
        r->room[g] = stop ? 0 : out < q->window ? q->window - out : 0;
        r->cursor0[g] = q->groups[g].cursor;
        r->backlog0[g] = q->groups[g].backlog;
    }
    pthread_mutex_unlock(&q->mu);
    return stop;
}

static void enqueue(group_t *grp, dlv_t *head, dlv_t *tail)
{
    pthread_mutex_lock(&grp->dmu);
    if (grp->dq_tail)
        grp->dq_tail->qnext = head;
    else
        grp->dq_head = head;
    grp->dq_tail = tail;
    if (grp->dwaiting)
        pthread_cond_signal(&grp->dcv);
    pthread_mutex_unlock(&grp->dmu);
}

/* Acks with status (0: committed), then hands the round's deliveries to
 * each group's thread. */
static void finish_round(bq_t *q, round_t *r, int status)
{
    pthread_mutex_lock(&q->mu);
    for (int g = 0; g < q->ngroups; g++) {
        for (dlv_t *d = r->out_head[g]; d; d = d->qnext) {
            d->base.bus = q->owner;
            d->next = &q->live;
            d->prev = q->live.prev;
            q->live.prev->next = d;
            q->live.prev = d;
        }
        q->groups[g].outstanding += r->handed[g];
    }
    pthread_mutex_unlock(&q->mu);
    for (qev_t *e = r->events; e; e = e->next)
        if (e->cb)
            e->cb(e->ud, status);
    for (int g = 0; g < q->ngroups; g++)
        if (r->out_head[g])
            enqueue(&q->groups[g], r->out_head[g], r->out_tail[g]);
    for (qev_t *e = r->events, *next; e; e = next) {
        next = e->next;
        qev_unref(e);
    }
}

static void requeue_dones(bq_t *q, dlv_t *dones)
{
    if (!dones)
        return;
    dlv_t *last = dones;
    while (last->qnext)
        last = last->qnext;
    pthread_mutex_lock(&q->mu);
    if (!q->done_head)
        q->done_since_ms = mono_ms();
    for (dlv_t *d = dones; d; d = d->qnext)
        q->done_n++;
    last->qnext = q->done_head;
    q->done_head = dones;
    pthread_mutex_unlock(&q->mu);
}

static void *writer_main(void *arg)
{
    bq_t *q = arg;
    wsg_thread_name("bq-writer");
    for (;;) {
        round_t r = {0};
        wait_for_work(q);
        pthread_mutex_lock(&q->dbmu);
        int stop = take_round(q, &r);
        int status = write_round(q, &r), ok = status == 0;
        if (!ok)
            undo_round(q, &r);
        pthread_mutex_unlock(&q->dbmu);
        atomic_store(&q->healthy, ok);
        finish_round(q, &r, status);
        if (ok)
            free_dlvs(r.dones);
        else
            requeue_dones(q, r.dones); /* their rows stay; try again */
        if (stop)                      /* dones left over are redelivered by the next run */
            break;
        if (!ok)
            nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
    }
    return NULL;
}

/* ---- delivery ------------------------------------------------------------ */

/* One thread per group, so a slow group never delays another. */
static void *deliver_main(void *arg)
{
    group_t *grp = arg;
    wsg_thread_name("bq-%s", grp->name);
    for (;;) {
        pthread_mutex_lock(&grp->dmu);
        while (!grp->dq_head && !grp->dstop) {
            grp->dwaiting = 1;
            pthread_cond_wait(&grp->dcv, &grp->dmu);
            grp->dwaiting = 0;
        }
        if (grp->dstop) {
            pthread_mutex_unlock(&grp->dmu);
            break;
        }
        dlv_t *d = grp->dq_head;
        grp->dq_head = grp->dq_tail = NULL;
        pthread_mutex_unlock(&grp->dmu);
        for (dlv_t *next; d; d = next) {
            next = d->qnext; /* d may be done and freed once fn returns */
            d->qnext = NULL;
            grp->fn(grp->ud, &d->e->ev, &d->base, d->e->attempt);
        }
        if (grp->run_end)
            grp->run_end(grp->ud);
    }
    return NULL;
}

/* ---- start and stop ------------------------------------------------------ */

static int assign_groups(bq_t *q)
{
    sqlite3_stmt *ins = NULL, *sel = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(q->db, "INSERT OR IGNORE INTO bus_groups(name) VALUES(?1)", -1, &ins,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(q->db, "SELECT gid FROM bus_groups WHERE name=?1", -1, &sel, NULL) !=
            SQLITE_OK)
        goto out;
    for (int g = 0; g < q->ngroups; g++) {
        sqlite3_bind_text(ins, 1, q->groups[g].name, -1, SQLITE_STATIC);
        sqlite3_bind_text(sel, 1, q->groups[g].name, -1, SQLITE_STATIC);
        if (step_done(ins) != 0 || sqlite3_step(sel) != SQLITE_ROW)
            goto out;
        int64_t gid = sqlite3_column_int64(sel, 0);
        sqlite3_reset(sel);
        if (gid < 1 || gid > BQ_MAX_GROUPS)
            goto out;
        q->groups[g].gid = gid;
        q->groups[g].bit = (uint64_t)1 << (gid - 1);
        q->groups[g].backlog = 1; /* recovery: read back what is unconsumed */
    }
    rc = 0;
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(sel);
    return rc;
}

/* An unconsumed event that a previous run handed to a group that still owes
 * it a done comes back with one more attempt; then every group restarts. */
static const char count_attempt_sql[] =
    "UPDATE bus_events SET attempts=attempts+1 WHERE EXISTS (SELECT 1 FROM bus_groups g"
    " WHERE g.handed>=bus_events.qseq AND (bus_events.pending&(1<<(g.gid-1)))!=0);"
    "UPDATE bus_groups SET handed=0;";

int bq_start(bq_t *q)
{
    if (q->started)
        return WSG_EINVAL;
    pthread_mutex_lock(&q->dbmu);
    int ok = step_done(q->st[S_BEGIN]) == 0 && assign_groups(q) == 0 &&
             sqlite3_exec(q->db, count_attempt_sql, NULL, NULL, NULL) == SQLITE_OK &&
             step_done(q->st[S_COMMIT]) == 0;
    if (!ok)
        step_done(q->st[S_ROLLBACK]);
    pthread_mutex_unlock(&q->dbmu);
    if (!ok)
        return WSG_EBUS;
    if (pthread_create(&q->writer, NULL, writer_main, q) != 0)
        return WSG_EBUS;
    int g = 0;
    while (g < q->ngroups &&
           pthread_create(&q->groups[g].thread, NULL, deliver_main, &q->groups[g]) == 0)
        g++;
    if (g == q->ngroups) {
        q->started = 1;
        return 0;
    }
    while (g-- > 0) { /* the ones started stop again: the bus stays unstarted */
        group_t *grp = &q->groups[g];
        pthread_mutex_lock(&grp->dmu);
        grp->dstop = 1;
        pthread_cond_signal(&grp->dcv);
        pthread_mutex_unlock(&grp->dmu);
        pthread_join(grp->thread, NULL);
        grp->dstop = 0;
    }
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->writer, NULL);
    return WSG_EBUS;
}

static void stop_threads(bq_t *q)
{
    for (int g = 0; g < q->ngroups; g++) {
        group_t *grp = &q->groups[g];
        pthread_mutex_lock(&grp->dmu);
        grp->dstop = 1;
        pthread_cond_signal(&grp->dcv);
        pthread_mutex_unlock(&grp->dmu);
    }
    /* The group threads first: one may be inside its handler, about to mark
     * an event done; the writer must still be there to commit that done, or
     * the event is handed out again after a restart. */
    if (q->started)
        for (int g = 0; g < q->ngroups; g++)
            pthread_join(q->groups[g].thread, NULL);
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (!q->started)
        return;
    pthread_join(q->writer, NULL); /* commits and acks what is pending */
}

void bq_free(bq_t *q)
{
    if (!q)
        return;
    stop_threads(q);
    for (qev_t *e = q->pend_head, *next; e; e = next) { /* never started */
        next = e->next;
        if (e->cb)
            e->cb(e->ud, WSG_EUNAVAILABLE);
        free(e);
    }
    free_dlvs(q->done_head);
    while (q->live.next != &q->live) { /* deliveries nobody marked done */
        dlv_t *d = q->live.next;
        q->live.next = d->next;
        qev_unref(d->e);
        free(d);
    }
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(q->st[i]);
    sqlite3_close(q->db);
    for (int g = 0; g < q->ngroups; g++) {
        free(q->groups[g].name);
        pthread_mutex_destroy(&q->groups[g].dmu);
        pthread_cond_destroy(&q->groups[g].dcv);
    }
    pthread_mutex_destroy(&q->dbmu);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}
