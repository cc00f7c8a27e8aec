/* SPDX-License-Identifier: MIT */
/*
 * test_bus_inproc.c — the in-process bus's durable client-event queue, with
 * real threads and real SQLite files in a temp dir: publish -> ack ->
 * consume order, consumer groups and masks, done from another thread,
 * durability across a crashed child process (fork + _exit without
 * closing), no redelivery of consumed events, the bounded queue, the
 * per-group delivery window, last_seq across reopen, bad input.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "bus/bus.h"
#include "bus/bus_int.h"
#include "common/err.h"

#define MAXREC 8192

typedef struct {
    char id[64], conn[64], body[128];
    int type;
    uint64_t seq;
    uint32_t attempt;
    bus_delivery_t *d;
} rec_t;

/* What a consumer group saw; filled on the bus's delivery thread. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rec_t recs[MAXREC];
    int n;
    int done_inline; /* call bus_event_done() from the callback */
    bus_t *bus;
} sink_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ok, failed, last_err;
} acks_t;

static char tmpdir[64];
static char qpath[128];

static int setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/wsg_bus_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(qpath, sizeof qpath, "%s/queue.db", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    char p[160];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", qpath, sfx[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return 0;
}

static void sink_init(sink_t *s, bus_t *bus, int done_inline)
{
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->bus = bus;
    s->done_inline = done_inline;
}

static void on_event(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt)
{
    sink_t *s = ud;
    pthread_mutex_lock(&s->mu);
    if (s->n < MAXREC) {
        rec_t *r = &s->recs[s->n++];
        snprintf(r->id, sizeof r->id, "%s", ev->id);
        snprintf(r->conn, sizeof r->conn, "%s", ev->conn_id);
        snprintf(r->body, sizeof r->body, "%.*s", (int)ev->body_len, ev->body);
        r->type = ev->type;
        r->seq = ev->seq;
        r->attempt = attempt;
        r->d = s->done_inline ? NULL : d;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->done_inline)
        bus_event_done(s->bus, d);
}

static void on_ack(void *ud, int status)
{
    acks_t *a = ud;
    pthread_mutex_lock(&a->mu);
    if (status == 0)
        a->ok++;
    else {
        a->failed++;
        a->last_err = status;
    }
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static struct timespec deadline(int secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += secs;
    return ts;
}

/* Waits (at most 20 s) until *count reaches want; returns the count. */
static int wait_count(pthread_mutex_t *mu, pthread_cond_t *cv, const int *count, int want)
{
    struct timespec ts = deadline(20);
    pthread_mutex_lock(mu);
    while (*count < want && pthread_cond_timedwait(cv, mu, &ts) == 0)
        ;
    int n = *count;
    pthread_mutex_unlock(mu);
    return n;
}

static void publish(bus_t *bus, const char *conn, bus_event_type_t type, uint64_t seq, acks_t *acks)
{
    char id[64], body[64];
    snprintf(id, sizeof id, "evt_%s_%llu", conn, (unsigned long long)seq);
    snprintf(body, sizeof body, "{\"conn\":\"%s\",\"seq\":%llu}", conn, (unsigned long long)seq);
    bus_event_t ev = {.id = id,
                      .type = type,
                      .conn_id = conn,
                      .edge_id = "edge-1",
                      .route = "/chat",
                      .seq = seq,
                      .body = body,
                      .body_len = strlen(body)};
    assert_int_equal(bus_event_publish(bus, &ev, on_ack, acks), 0);
}

static bus_t *open_bus(const char *path)
{
    bus_t *bus = NULL;
    char err[256] = "";
    bus_opts_t o = {.url = "", .queue_path = path};
    int rc = bus_open(&bus, &o, err, sizeof err);
    if (rc != 0)
        fail_msg("bus_open: %s (%s)", err, wsg_err_name(rc));
    return bus;
}

static void acks_init(acks_t *a)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
}

/* A started bus on qpath whose group "dispatch" (every type) records into s,
 * marking done inline or keeping the deliveries; window 0 = default. */
static bus_t *start_sink(sink_t *s, int done_inline, uint32_t window)
{
    bus_t *bus = open_bus(qpath);
    sink_init(s, bus, done_inline);
    bus_inproc_tune(bus, 0, window, 0);
    assert_int_equal(bus_event_subscribe(bus, "dispatch", BUS_EV_ALL, on_event, s), 0);
    assert_int_equal(bus_start(bus), 0);
    return bus;
}

static bus_t *reopen_keep(sink_t *s)
{
    return start_sink(s, 0, 0);
}

static void test_publish_ack_consume_order(void **state)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    bus_t *bus = start_sink(&s, 1, 0);
    assert_int_equal(bus_healthy(bus), 1);
    publish(bus, "c1", BUS_EV_CONNECT, 1, &a);
    for (uint64_t i = 2; i <= 1000; i++)
        publish(bus, "c1", BUS_EV_MESSAGE, i, &a);
    assert_int_equal(wait_count(&a.mu, &a.cv, &a.ok, 1000), 1000);
    assert_int_equal(a.failed, 0);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 1000), 1000);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(s.recs[i].seq, (uint64_t)i + 1);
        assert_int_equal(s.recs[i].attempt, 1);
        assert_string_equal(s.recs[i].conn, "c1");
        char want[64];
        snprintf(want, sizeof want, "{\"conn\":\"c1\",\"seq\":%d}", i + 1);
        assert_string_equal(s.recs[i].body, want);
    }
    assert_int_equal(s.recs[0].type, BUS_EV_CONNECT);
    assert_string_equal(s.recs[999].id, "evt_c1_1000");
    bus_free(bus);

    /* consumed events are not redelivered */
    acks_init(&a);
    bus = start_sink(&s, 1, 0);
    publish(bus, "c2", BUS_EV_CONNECT, 1, &a);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 1), 1);
    assert_string_equal(s.recs[0].id, "evt_c2_1");
    bus_free(bus); /* joins the threads: nothing else can still arrive */
    assert_int_equal(s.n, 1);
}

static void test_two_groups_masks(void **state)
{
    bus_t *bus = open_bus(qpath);
    static sink_t all, conn;
    acks_t a;
    acks_init(&a);
    sink_init(&all, bus, 1);
    sink_init(&conn, bus, 1);
    assert_int_equal(bus_event_subscribe(bus, "dispatch", BUS_EV_ALL, on_event, &all), 0);
    assert_int_equal(
        bus_event_subscribe(bus, "registry",
                            BUS_EV_MASK(BUS_EV_CONNECT) | BUS_EV_MASK(BUS_EV_DISCONNECT), on_event,
                            &conn),
        0);
    assert_int_equal(bus_event_subscribe(bus, "registry", BUS_EV_ALL, on_event, &conn),
                     WSG_EEXISTS);
    assert_int_equal(bus_start(bus), 0);
    publish(bus, "c1", BUS_EV_CONNECT, 1, &a);
    publish(bus, "c1", BUS_EV_MESSAGE, 2, &a);
    publish(bus, "c1", BUS_EV_MESSAGE, 3, &a);
    publish(bus, "c1", BUS_EV_DISCONNECT, 4, &a);
    assert_int_equal(wait_count(&all.mu, &all.cv, &all.n, 4), 4);
    assert_int_equal(wait_count(&conn.mu, &conn.cv, &conn.n, 2), 2);
    for (int i = 0; i < 4; i++)
        assert_int_equal(all.recs[i].seq, (uint64_t)i + 1);
    assert_int_equal(conn.recs[0].type, BUS_EV_CONNECT);
    assert_int_equal(conn.recs[1].type, BUS_EV_DISCONNECT);
    assert_int_equal(conn.recs[1].seq, 4);
    bus_free(bus);
    assert_int_equal(conn.n, 2);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open, calls;
} gate_t;

/* A consumer stuck until the test opens the gate. */
static void on_event_gated(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt)
{
    gate_t *g = ud;
    pthread_mutex_lock(&g->mu);
    g->calls++;
    pthread_cond_broadcast(&g->cv);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void test_stuck_group_does_not_delay_another(void **state)
{
    bus_t *bus = open_bus(qpath);
    static sink_t fast;
    static gate_t gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    acks_t a;
    acks_init(&a);
    sink_init(&fast, bus, 1);
    assert_int_equal(bus_event_subscribe(bus, "registry", BUS_EV_ALL, on_event_gated, &gate), 0);
    assert_int_equal(bus_event_subscribe(bus, "dispatch", BUS_EV_ALL, on_event, &fast), 0);
    assert_int_equal(bus_start(bus), 0);
    for (uint64_t i = 1; i <= 100; i++)
        publish(bus, "c1", BUS_EV_MESSAGE, i, &a);
    assert_int_equal(wait_count(&gate.mu, &gate.cv, &gate.calls, 1), 1);
    assert_int_equal(wait_count(&fast.mu, &fast.cv, &fast.n, 100), 100);
    pthread_mutex_lock(&gate.mu);
    assert_int_equal(gate.calls, 1); /* still stuck in its first event */
    gate.open = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
    assert_int_equal(wait_count(&gate.mu, &gate.cv, &gate.calls, 100), 100);
    bus_free(bus); /* the gated group never marked done: freed here */
}

typedef struct {
    sink_t *s;
    int from, to;
} doer_t;

static void *done_thread(void *arg)
{
    doer_t *t = arg;
    for (int i = t->from; i < t->to; i++)
        bus_event_done(t->s->bus, t->s->recs[i].d);
    return NULL;
}

static void test_done_from_other_thread(void **state)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    bus_t *bus = reopen_keep(&s);
    for (uint64_t i = 1; i <= 200; i++)
        publish(bus, "c1", i == 1 ? BUS_EV_CONNECT : BUS_EV_MESSAGE, i, &a);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 200), 200);
    doer_t t = {.s = &s, .from = 0, .to = 150};
    pthread_t tid;
    pthread_create(&tid, NULL, done_thread, &t);
    pthread_join(tid, NULL);
    bus_free(bus); /* flushes the dones; 50 stay unconsumed */

    bus = reopen_keep(&s);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 50), 50);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(s.recs[i].seq, (uint64_t)151 + i);
        assert_int_equal(s.recs[i].attempt, 2);
    }
    bus_free(bus);
    assert_int_equal(s.n, 50);
}

/* The child publishes n events, waits for every ack and delivery, and dies
 * without closing anything. */
static void crash_child(int n)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    bus_t *bus = reopen_keep(&s);
    for (int i = 1; i <= n; i++)
        publish(bus, "c9", i == 1 ? BUS_EV_CONNECT : BUS_EV_MESSAGE, (uint64_t)i, &a);
    int ok = wait_count(&a.mu, &a.cv, &a.ok, n) == n && wait_count(&s.mu, &s.cv, &s.n, n) == n &&
             a.failed == 0;
    _exit(ok ? 0 : 3);
}

static void test_crash_durability(void **state)
{
    const int n = 500;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        crash_child(n);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    static sink_t s;
    bus_t *bus = reopen_keep(&s);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, n), n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(s.recs[i].seq, (uint64_t)i + 1);
        assert_int_equal(s.recs[i].attempt, 2);
        assert_string_equal(s.recs[i].conn, "c9");
    }
    uint64_t last = 0;
    assert_int_equal(bus_event_last_seq(bus, "c9", &last), 0);
    assert_int_equal(last, (uint64_t)n);
    doer_t t = {.s = &s, .from = 0, .to = n / 2};
    done_thread(&t);
    bus_free(bus);

    bus = reopen_keep(&s);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, n / 2), n / 2);
    for (int i = 0; i < n / 2; i++) {
        assert_int_equal(s.recs[i].seq, (uint64_t)(n / 2 + i + 1));
        assert_int_equal(s.recs[i].attempt, 3);
    }
    bus_free(bus);
    assert_int_equal(s.n, n / 2);
}

/* Acks of the SIGKILL child, reported to the parent through a pipe. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int acked, fd;
} killack_t;

static void on_kill_ack(void *ud, int status)
{
    killack_t *k = ud;
    pthread_mutex_lock(&k->mu);
    if (status == 0) {
        int seq = ++k->acked; /* acks come in publish order */
        if (write(k->fd, &seq, sizeof seq) != (ssize_t)sizeof seq)
            _exit(4);
    } else {
        _exit(5);
    }
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
}

/* Publishes up to 6000 events, at most 1000 unacknowledged, then waits to
 * be killed. */
static void kill_child(int fd)
{
    static sink_t s;
    static killack_t k = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    k.fd = fd;
    bus_t *bus = reopen_keep(&s);
    char id[32];
    for (int i = 1; i <= 6000; i++) {
        pthread_mutex_lock(&k.mu);
        while (i - k.acked > 1000)
            pthread_cond_wait(&k.cv, &k.mu);
        pthread_mutex_unlock(&k.mu);
        snprintf(id, sizeof id, "evt_k_%d", i);
        bus_event_t ev = {.id = id,
                          .type = i == 1 ? BUS_EV_CONNECT : BUS_EV_MESSAGE,
                          .conn_id = "ck",
                          .seq = (uint64_t)i,
                          .body = "x",
                          .body_len = 1};
        if (bus_event_publish(bus, &ev, on_kill_ack, &k) != 0)
            _exit(6);
    }
    for (;;)
        pause();
}

static void test_sigkill_while_publishing(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        kill_child(fds[1]);
    }
    close(fds[1]);
    int seq = 0, acked = 0;
    while (acked < 3000 && read(fds[0], &seq, sizeof seq) == (ssize_t)sizeof seq)
        acked = seq;
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    while (read(fds[0], &seq, sizeof seq) == (ssize_t)sizeof seq) /* acks told before death */
        acked = seq;
    close(fds[0]);
    assert_true(acked >= 3000);

    static sink_t s;
    bus_t *bus = reopen_keep(&s);
    assert_true(wait_count(&s.mu, &s.cv, &s.n, acked) >= acked); /* none acked is lost */
    bus_free(bus);
    print_message("acked before SIGKILL: %d, redelivered: %d\n", acked, s.n);
    assert_true(s.n <= MAXREC);
    for (int i = 0; i < s.n && i < MAXREC; i++) { /* in order, no gap, nothing twice */
        assert_int_equal(s.recs[i].seq, (uint64_t)i + 1);
        assert_int_equal(s.recs[i].attempt, 2);
    }
}

/* In a child whose files may not grow past 256 KiB: commits fail, acks say
 * WSG_ENOSPC (the queue file cannot grow: the edge's "storage_full"), the
 * bus reports unhealthy; with the limit lifted it recovers. */
static int disk_full_child(void)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    signal(SIGXFSZ, SIG_IGN);
    bus_t *bus = reopen_keep(&s);
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    struct rlimit small = {.rlim_cur = 256 * 1024, .rlim_max = rl.rlim_max};
    if (setrlimit(RLIMIT_FSIZE, &small) != 0)
        return 10;
    static char body[8192];
    memset(body, 'b', sizeof body - 1);
    int i = 0, failed = 0;
    while (!failed && i < 1000) { /* until a commit fails */
        bus_event_t ev = {.id = "evt_big",
                          .type = BUS_EV_MESSAGE,
                          .conn_id = "cf",
                          .seq = (uint64_t)++i,
                          .body = body,
                          .body_len = sizeof body - 1};
        bus_event_publish(bus, &ev, on_ack, &a);
        pthread_mutex_lock(&a.mu);
        while (a.ok + a.failed < i)
            pthread_cond_wait(&a.cv, &a.mu);
        failed = a.failed;
        pthread_mutex_unlock(&a.mu);
    }
    if (a.failed == 0 || a.last_err != WSG_ENOSPC)
        return 11;
    if (bus_healthy(bus))
        return 12;
    setrlimit(RLIMIT_FSIZE, &rl);
    int ok_before = a.ok;
    publish(bus, "cf", BUS_EV_MESSAGE, (uint64_t)++i, &a);
    if (wait_count(&a.mu, &a.cv, &a.ok, ok_before + 1) != ok_before + 1)
        return 13;
    if (!bus_healthy(bus))
        return 14;
    bus_free(bus);
    return 0;
}

static void test_commit_failure_acks_enospc(void **state)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(disk_full_child());
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_queue_full(void **state)
{
    bus_t *bus = open_bus(NULL);
    static sink_t s;
    acks_t a;
    acks_init(&a);
    sink_init(&s, bus, 1);
    bus_inproc_tune(bus, 4, 0, 0);
    assert_int_equal(bus_event_subscribe(bus, "dispatch", BUS_EV_ALL, on_event, &s), 0);
    size_t cap_events = 0, cap_bytes = 0;
    assert_int_equal(bus_event_capacity(bus, &cap_events, &cap_bytes), 0);
    assert_int_equal(cap_events, 4); /* 4 - 4/16: all of it */
    assert_true(cap_bytes >= 1 << 20);
    for (uint64_t i = 1; i <= 4; i++) /* the writer is not running yet */
        publish(bus, "c1", BUS_EV_MESSAGE, i, &a);
    assert_int_equal(a.ok + a.failed, 0);
    /* full: WSG_EFULL at once, nothing taken, no ack; the same event is
     * offered again once there is room */
    char body[] = "{}";
    bus_event_t ev = {.id = "evt_c1_5",
                      .type = BUS_EV_MESSAGE,
                      .conn_id = "c1",
                      .seq = 5,
                      .body = body,
                      .body_len = 2};
    assert_int_equal(bus_event_publish(bus, &ev, on_ack, &a), WSG_EFULL);
    assert_int_equal(a.ok + a.failed, 0);
    assert_int_equal(bus_start(bus), 0);
    assert_int_equal(wait_count(&a.mu, &a.cv, &a.ok, 4), 4);
    publish(bus, "c1", BUS_EV_MESSAGE, 5, &a);
    assert_int_equal(wait_count(&a.mu, &a.cv, &a.ok, 5), 5);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 5), 5);
    assert_int_equal(s.recs[4].seq, 5);
    bus_free(bus);
    assert_int_equal(s.n, 5);
    assert_int_equal(a.failed, 0);
}

static void test_window_bounds_deliveries(void **state)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    bus_t *bus = start_sink(&s, 0, 8);
    for (uint64_t i = 1; i <= 100; i++)
        publish(bus, "c1", BUS_EV_MESSAGE, i, &a);
    assert_int_equal(wait_count(&a.mu, &a.cv, &a.ok, 100), 100);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 8), 8);
    int done = 0;
    while (done < 100) { /* at most 8 handed out before they are done */
        pthread_mutex_lock(&s.mu);
        int n = s.n;
        pthread_mutex_unlock(&s.mu);
        assert_true(n - done <= 8);
        for (; done < n; done++)
            bus_event_done(bus, s.recs[done].d);
        if (done < 100)
            assert_true(wait_count(&s.mu, &s.cv, &s.n, done + 1) > done);
    }
    for (int i = 0; i < 100; i++) {
        assert_int_equal(s.recs[i].seq, (uint64_t)i + 1);
        assert_int_equal(s.recs[i].attempt, 1);
    }
    bus_free(bus);
    assert_int_equal(s.n, 100);
}

/* attempt counts deliveries: after a restart, only what was handed out
 * before comes back with attempt 2; what waited in SQLite gets attempt 1. */
static void test_attempt_counts_only_handed_events(void **state)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    bus_t *bus = start_sink(&s, 0, 8);
    for (uint64_t i = 1; i <= 20; i++)
        publish(bus, "c1", BUS_EV_MESSAGE, i, &a);
    assert_int_equal(wait_count(&a.mu, &a.cv, &a.ok, 20), 20);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 8), 8);
    bus_event_done(bus, s.recs[0].d); /* one consumed, 7 handed and owed */
    bus_free(bus);
    assert_int_equal(s.n, 8); /* the window held the rest back */

    bus = reopen_keep(&s);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 19), 19);
    for (int i = 0; i < 19; i++) {
        assert_int_equal(s.recs[i].seq, (uint64_t)i + 2);
        assert_int_equal(s.recs[i].attempt, i < 7 ? 2 : 1);
    }
    bus_free(bus);
    bus = reopen_keep(&s); /* all 19 were handed in the second run */
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 19), 19);
    for (int i = 0; i < 19; i++)
        assert_int_equal(s.recs[i].attempt, i < 7 ? 3 : 2);
    bus_free(bus);
}

/* Polls last_seq until it equals want (the writer drops rows asynchronously). */
static uint64_t wait_last_seq(bus_t *bus, const char *conn, uint64_t want)
{
    uint64_t v = 0;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(bus_event_last_seq(bus, conn, &v), 0);
        if (v == want)
            break;
        usleep(5000);
    }
    return v;
}

static void test_last_seq_across_reopen(void **state)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    bus_t *bus = start_sink(&s, 1, 0);
    publish(bus, "c1", BUS_EV_CONNECT, 1, &a);
    publish(bus, "c1", BUS_EV_MESSAGE, 2, &a);
    publish(bus, "c1", BUS_EV_MESSAGE, 3, &a);
    publish(bus, "c2", BUS_EV_CONNECT, 1, &a);
    uint64_t v = 99;
    assert_int_equal(bus_event_last_seq(bus, "c1", &v), 0);
    assert_int_equal(v, 3); /* published counts, committed or not */
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 4), 4);
    bus_free(bus);

    bus = start_sink(&s, 1, 0);
    assert_int_equal(bus_event_last_seq(bus, "c1", &v), 0);
    assert_int_equal(v, 3); /* consumed, yet still known */
    assert_int_equal(bus_event_last_seq(bus, "nobody", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(bus_event_last_seq(bus, NULL, &v), WSG_EINVAL);
    publish(bus, "c1", BUS_EV_DISCONNECT, 4, &a);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 1), 1);
    assert_int_equal(wait_last_seq(bus, "c1", 0), 0); /* disconnect consumed: forgotten */
    assert_int_equal(wait_last_seq(bus, "c2", 1), 1);
    bus_free(bus);
}

typedef struct {
    bus_t *bus;
    acks_t *acks;
    char conn[16];
    int n;
} pub_thread_t;

static void *pub_main(void *arg)
{
    pub_thread_t *p = arg;
    for (int i = 1; i <= p->n; i++)
        publish(p->bus, p->conn, BUS_EV_MESSAGE, (uint64_t)i, p->acks);
    return NULL;
}

static void test_many_publishers_keep_per_conn_order(void **state)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    bus_t *bus = start_sink(&s, 1, 0);
    pub_thread_t p[4];
    pthread_t tid[4];
    for (int t = 0; t < 4; t++) {
        p[t] = (pub_thread_t){.bus = bus, .acks = &a, .n = 500};
        snprintf(p[t].conn, sizeof p[t].conn, "t%d", t);
        pthread_create(&tid[t], NULL, pub_main, &p[t]);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(tid[t], NULL);
    assert_int_equal(wait_count(&a.mu, &a.cv, &a.ok, 2000), 2000);
    assert_int_equal(wait_count(&s.mu, &s.cv, &s.n, 2000), 2000);
    uint64_t next[4] = {1, 1, 1, 1};
    for (int i = 0; i < 2000; i++) {
        int t = s.recs[i].conn[1] - '0';
        assert_int_equal(s.recs[i].seq, next[t]);
        next[t]++;
    }
    bus_free(bus);
}

/* A consumer that acks only at the end of each run (as the registry does
 * with its store transaction): with a window of 16 and 400 events, the
 * group stalls unless every run is ended. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bus_t *bus;
    bus_delivery_t *run[16];
    int in_run, runs, delivered, done, wrong_thread;
    pthread_t th;
    int th_known;
} runs_t;

static void on_run_event(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt)
{
    (void)ev;
    (void)attempt;
    runs_t *r = ud;
    pthread_mutex_lock(&r->mu);
    if (!r->th_known) {
        r->th = pthread_self();
        r->th_known = 1;
    }
    r->wrong_thread += !pthread_equal(r->th, pthread_self());
    assert_true(r->in_run < 16); /* never more than the window in one run */
    r->run[r->in_run++] = d;
    r->delivered++;
    pthread_mutex_unlock(&r->mu);
}

static void on_run_end(void *ud)
{
    runs_t *r = ud;
    pthread_mutex_lock(&r->mu);
    r->wrong_thread += !r->th_known || !pthread_equal(r->th, pthread_self());
    for (int i = 0; i < r->in_run; i++)
        bus_event_done(r->bus, r->run[i]);
    r->done += r->in_run;
    r->in_run = 0;
    r->runs++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void test_run_end_follows_every_run(void **state)
{
    static runs_t r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    acks_t a;
    acks_init(&a);
    bus_t *bus = open_bus(qpath);
    r.bus = bus;
    bus_inproc_tune(bus, 0, 16, 0);
    assert_int_equal(bus_event_on_run_end(bus, "registry", on_run_end), WSG_EINVAL); /* unknown */
    assert_int_equal(bus_event_subscribe(bus, "registry", BUS_EV_ALL, on_run_event, &r), 0);
    assert_int_equal(bus_event_on_run_end(bus, "registry", NULL), WSG_EINVAL);
    assert_int_equal(bus_event_on_run_end(bus, "registry", on_run_end), 0);
    assert_int_equal(bus_start(bus), 0);
    assert_int_equal(bus_event_on_run_end(bus, "registry", on_run_end), WSG_EINVAL); /* started */
    for (int i = 1; i <= 400; i++)
        publish(bus, i % 2 ? "c1" : "c2", BUS_EV_MESSAGE, (uint64_t)(i + 1) / 2, &a);
    assert_int_equal(wait_count(&r.mu, &r.cv, &r.done, 400), 400);
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.delivered, 400);
    assert_int_equal(r.in_run, 0);
    assert_int_equal(r.wrong_thread, 0);
    assert_true(r.runs >= 25); /* 400 events, at most 16 per run */
    pthread_mutex_unlock(&r.mu);
    bus_free(bus);
}

static void test_bad_input_refused(void **state)
{
    static sink_t s;
    acks_t a;
    acks_init(&a);
    bus_t *bus = open_bus(NULL);
    sink_init(&s, bus, 1);
    bus_event_t ev = {.id = "evt_1", .type = BUS_EV_MESSAGE, .conn_id = "c1", .seq = 1};
    ev.id = NULL;
    assert_int_equal(bus_event_publish(bus, &ev, on_ack, &a), WSG_EINVAL);
    ev.id = "evt_1";
    ev.type = 9;
    assert_int_equal(bus_event_publish(bus, &ev, on_ack, &a), WSG_EINVAL);
    ev.type = BUS_EV_MESSAGE;
    ev.seq = 0;
    assert_int_equal(bus_event_publish(bus, &ev, on_ack, &a), WSG_EINVAL);
    ev.seq = 1;
    ev.body_len = 5; /* body NULL */
    assert_int_equal(bus_event_publish(bus, &ev, on_ack, &a), WSG_EINVAL);
    assert_int_equal(a.ok + a.failed, 0); /* refused input is never acked */
    assert_int_equal(bus_event_subscribe(bus, "", BUS_EV_ALL, on_event, &s), WSG_EINVAL);
    assert_int_equal(bus_event_subscribe(bus, "g", 1u << 9, on_event, &s), WSG_EINVAL);
    assert_int_equal(bus_event_subscribe(bus, "g", BUS_EV_ALL, NULL, &s), WSG_EINVAL);
    assert_int_equal(bus_start(bus), 0);
    assert_int_equal(bus_start(bus), WSG_EINVAL);
    assert_int_equal(bus_event_subscribe(bus, "late", BUS_EV_ALL, on_event, &s), WSG_EINVAL);
    bus_free(bus);
    bus_free(NULL);
}

static void test_queue_file_owned_by_one_bus(void **state)
{
    bus_t *first = open_bus(qpath), *second = NULL;
    char err[256] = "";
    bus_opts_t o = {.queue_path = qpath};
    assert_int_equal(bus_open(&second, &o, err, sizeof err), WSG_EBUS);
    assert_null(second);
    assert_non_null(strstr(err, "in use"));
    bus_free(first);
    assert_int_equal(bus_open(&second, &o, err, sizeof err), 0);
    bus_free(second);
}

static void test_foreign_files_refused(void **state)
{
    bus_t *bus = NULL;
    char err[256] = "";
    bus_opts_t o = {.queue_path = qpath};
    sqlite3 *db = NULL; /* a queue written by a newer wsgate */
    assert_int_equal(sqlite3_open(qpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=7", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(bus_open(&bus, &o, err, sizeof err), WSG_EBUS);
    assert_null(bus);
    assert_non_null(strstr(err, "schema version 7"));
    FILE *f = fopen(qpath, "w"); /* not a database at all */
    assert_non_null(f);
    for (int i = 0; i < 100; i++)
        fputs("this is not a SQLite file\n", f);
    fclose(f);
    assert_int_equal(bus_open(&bus, &o, err, sizeof err), WSG_EBUS);
    assert_null(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publish_ack_consume_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_groups_masks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_from_other_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stuck_group_does_not_delay_another, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_durability, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_while_publishing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failure_acks_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_bounds_deliveries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempt_counts_only_handed_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_seq_across_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_publishers_keep_per_conn_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_end_follows_every_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_file_owned_by_one_bus, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_files_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
