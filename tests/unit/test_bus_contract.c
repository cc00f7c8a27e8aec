/* SPDX-License-Identifier: MIT */
/*
 * test_bus_contract.c — the one bus test suite (bus/bus.h): the same test
 * functions run on the in-process bus and on the NATS bus, as test_store.c
 * runs one suite on both stores. The NATS run starts its own nats-server
 * (`nats-server -js -a 127.0.0.1 -p <free port> -sd <tmpdir>`, found on
 * PATH, in /usr/sbin or as $WSGATE_NATS_SERVER) and stops it by PID; when
 * there is none the test fails.
 *
 * In-process every role shares one bus handle; on NATS each role (API,
 * edge 1, edge 2) has its own handle, as separate processes would, with a
 * subject prefix of its own per test.
 */
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "bus/bus_int.h"
#include "bus/bus_nats.h"
#include "common/err.h"

typedef struct {
    const char *name;
    int nats;
} transport_t;

static transport_t inproc = {.name = "inproc"}, natsbus = {.name = "nats", .nats = 1};
static char nats_url[64];
static char tmpdir[] = "/tmp/wsg_bus_contract_XXXXXX";
static int test_no;

/* ---- opening buses ------------------------------------------------------------ */

typedef struct {
    bus_t *api, *e1, *e2; /* in-process: the same handle three times */
    const transport_t *t;
} buses_t;

static bus_t *open_one(const transport_t *t, const char *prefix, const char *queue)
{
    bus_t *bus = NULL;
    char err[256] = "";
    bus_opts_t o = {
        .url = t->nats ? nats_url : "", .name = "contract", .partitions = 2, .queue_path = queue};
    if (bus_open(&bus, &o, err, sizeof err) != 0)
        fail_msg("bus_open(%s): %s", t->name, err);
    if (t->nats) {
        bus_nats_tune_t tu = {.prefix = prefix, .cmd_timeout_ms = 1500};
        assert_int_equal(bus_nats_tune(bus, &tu), 0);
    } else {
        bus_inproc_tune(bus, 0, 0, 1500);
    }
    return bus;
}

static void open_buses(buses_t *b, const transport_t *t)
{
    char prefix[48];
    snprintf(prefix, sizeof prefix, "c%ld_%d", (long)getpid(), ++test_no);
    b->t = t;
    b->api = open_one(t, prefix, NULL);
    b->e1 = t->nats ? open_one(t, prefix, NULL) : b->api;
    b->e2 = t->nats ? open_one(t, prefix, NULL) : b->api;
}

static void free_buses(buses_t *b)
{
    if (b->e2 != b->api)
        bus_free(b->e2);
    if (b->e1 != b->api)
        bus_free(b->e1);
    bus_free(b->api);
}

static void start_buses(buses_t *b)
{
    assert_int_equal(bus_start(b->api), 0);
    if (b->e1 != b->api)
        assert_int_equal(bus_start(b->e1), 0);
    if (b->e2 != b->api)
        assert_int_equal(bus_start(b->e2), 0);
}

/* ---- recording ------------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    int n;
    int status[256];
} replies_t;

static void on_reply(void *ud, int status)
{
    replies_t *r = ud;
    pthread_mutex_lock(&r->mu);
    if (r->n < 256)
        r->status[r->n] = status;
    r->n++;
    pthread_mutex_unlock(&r->mu);
}

static int count_of(replies_t *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Polls until *get(ud) >= want; bounded (20 s). Returns the last value. */
static int wait_n(replies_t *r, int want)
{
    for (int i = 0; i < 2000 && count_of(r) < want; i++)
        usleep(10000);
    return count_of(r);
}

typedef struct {
    atomic_int calls;
    atomic_int answer; /* status to reply; 1 = hold the reply object */
    atomic_int sleep_ms;
    atomic_int running, finished;
    pthread_mutex_t mu;
    char seen[1024];
    bus_reply_t *held[64];
    atomic_int nheld;
} edge_t;

static void on_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    edge_t *e = ud;
    atomic_fetch_add(&e->running, 1);
    pthread_mutex_lock(&e->mu);
    size_t n = strlen(e->seen);
    snprintf(e->seen + n, sizeof e->seen - n, "%.*s,", (int)cmd->len, (const char *)cmd->data);
    pthread_mutex_unlock(&e->mu);
    if (atomic_load(&e->sleep_ms))
        usleep((useconds_t)atomic_load(&e->sleep_ms) * 1000);
    if (atomic_load(&e->answer) == 1) {
        int i = atomic_fetch_add(&e->nheld, 1);
        e->held[i < 64 ? i : 63] = r;
    } else {
        bus_cmd_reply(r, atomic_load(&e->answer));
    }
    atomic_fetch_add(&e->calls, 1);
    atomic_fetch_sub(&e->running, 1);
    atomic_fetch_add(&e->finished, 1);
}

static void edge_init(edge_t *e, int answer)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
    atomic_store(&e->answer, answer);
}

static bus_cmd_t send_cmd(const char *data)
{
    return (bus_cmd_t){.op = BUS_CMD_SEND,
                       .conn_id = "c1",
                       .data = (const unsigned char *)data,
                       .len = strlen(data)};
}

/* ---- commands ----------------------------------------------------------------------- */

static void test_cmd_order(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    edge_t e;
    edge_init(&e, 0);
    assert_int_equal(bus_cmd_serve(b.e1, "e1", on_cmd, &e), 0);
    assert_int_equal(bus_cmd_serve(b.e1, "e1", on_cmd, &e), WSG_EEXISTS);
    start_buses(&b);
    replies_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char want[1024] = "", data[16];
    for (int i = 0; i < 40; i++) {
        snprintf(data, sizeof data, "%d", i);
        bus_cmd_t c = send_cmd(data);
        assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), 0);
        strcat(want, data);
        strcat(want, ",");
    }
    assert_int_equal(wait_n(&r, 40), 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(r.status[i], 0);
    assert_string_equal(e.seen, want); /* one caller, one edge: in order */
    free_buses(&b);
}

static void test_cmd_bad_input(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    edge_t e;
    edge_init(&e, 0);
    replies_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(bus_cmd_serve(b.e1, "", on_cmd, &e), WSG_EINVAL);
    assert_int_equal(bus_cmd_serve(b.e1, "e1", NULL, &e), WSG_EINVAL);
    assert_int_equal(bus_cmd_unserve(b.e1, "never"), WSG_ENOTFOUND);
    bus_cmd_t c = {.op = 99, .conn_id = "c1"};
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), WSG_EINVAL);
    c = (bus_cmd_t){.op = BUS_CMD_SUBSCRIBE, .conn_id = "c1"};
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), WSG_EINVAL);
    c = send_cmd("x");
    assert_int_equal(bus_cmd_request(b.api, "", &c, on_reply, &r), WSG_EINVAL);
    bus_publish_t p = {.channel = "", .data = NULL, .len = 0};
    assert_int_equal(bus_publish(b.api, &p), WSG_EINVAL);
    assert_int_equal(bus_channel_interest(b.e1, "", 1), WSG_EINVAL);
    assert_int_equal(bus_heartbeat(b.e1, "", 0), WSG_EINVAL);
    bus_event_t ev = {.id = "evt_1", .type = BUS_EV_MESSAGE, .conn_id = "c1", .seq = 0};
    assert_int_equal(bus_event_publish(b.e1, &ev, NULL, NULL), WSG_EINVAL);
    assert_int_equal(count_of(&r), 0);
    free_buses(&b);
}

static void test_any_edge_rule(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    replies_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    bus_cmd_t c = send_cmd("x");
    start_buses(&b);
    /* no edge at all */
    assert_int_equal(bus_cmd_request(b.api, NULL, &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 1), 1);
    assert_int_equal(r.status[0], WSG_EGONE);
    edge_t e1, e2;
    edge_init(&e1, WSG_EGONE);
    edge_init(&e2, 0);
    assert_int_equal(bus_cmd_serve(b.e1, "e1", on_cmd, &e1), 0);
    assert_int_equal(bus_cmd_serve(b.e2, "e2", on_cmd, &e2), 0);
    usleep(100 * 1000); /* NATS: the subscriptions reach the server */
    assert_int_equal(bus_cmd_request(b.api, NULL, &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 2), 2);
    assert_int_equal(r.status[1], 0); /* e2 holds it */
    atomic_store(&e2.answer, WSG_EGONE);
    assert_int_equal(bus_cmd_request(b.api, NULL, &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 3), 3);
    assert_int_equal(r.status[2], WSG_EGONE); /* nobody holds it */
    atomic_store(&e2.answer, 1);              /* e2 never answers: the window ends it */
    assert_int_equal(bus_cmd_request(b.api, NULL, &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 4), 4);
    assert_int_equal(r.status[3], WSG_EGONE); /* never WSG_ETIMEOUT for any edge */
    assert_int_equal(atomic_load(&e2.nheld), 1);
    bus_cmd_reply(e2.held[0], 0); /* late: ignored */
    /* to one edge: its own answer */
    atomic_store(&e1.answer, WSG_EFULL);
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 5), 5);
    assert_int_equal(r.status[4], WSG_EFULL);
    assert_int_equal(bus_cmd_request(b.api, "nobody", &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 6), 6);
    assert_int_equal(r.status[5], WSG_EGONE);
    usleep(300 * 1000); /* a second callback for any request would show here */
    assert_int_equal(count_of(&r), 6);
    free_buses(&b);
}

static int wait_atomic(atomic_int *v, int want);

static void count_beat(void *ud, const char *edge_id, int64_t at_ms, int leaving)
{
    (void)edge_id;
    (void)at_ms;
    (void)leaving;
    atomic_fetch_add((atomic_int *)ud, 1);
}

/* Every edge the bus knows answered WSG_EGONE: the verdict comes then, not
 * at the any-edge deadline (set to 20 s here; the wait below is 10 s).
 * In-process the bus knows its registered edges; on NATS the edges whose
 * heartbeats it receives. */
static void test_any_edge_settles_when_all_known_answered(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    bus_core_tune(b.api, 0, 20000);
    atomic_int beats = 0;
    assert_int_equal(bus_heartbeat_serve(b.api, count_beat, &beats), 0);
    edge_t e1, e2;
    edge_init(&e1, WSG_EGONE);
    edge_init(&e2, WSG_EGONE);
    assert_int_equal(bus_cmd_serve(b.e1, "e1", on_cmd, &e1), 0);
    assert_int_equal(bus_cmd_serve(b.e2, "e2", on_cmd, &e2), 0);
    start_buses(&b);
    usleep(100 * 1000);
    assert_int_equal(bus_heartbeat(b.e1, "e1", 0), 0);
    assert_int_equal(bus_heartbeat(b.e2, "e2", 0), 0);
    assert_int_equal(wait_atomic(&beats, 2), 2);
    replies_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    bus_cmd_t c = send_cmd("x");
    assert_int_equal(bus_cmd_request(b.api, NULL, &c, on_reply, &r), 0);
    for (int i = 0; i < 1000 && count_of(&r) < 1; i++)
        usleep(10000);
    assert_int_equal(count_of(&r), 1);
    assert_int_equal(r.status[0], WSG_EGONE);
    assert_int_equal(atomic_load(&e1.calls) + atomic_load(&e2.calls), 2);
    free_buses(&b);
}

static void test_cmd_timeout(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    edge_t e;
    edge_init(&e, 1);
    replies_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(bus_cmd_serve(b.e1, "e1", on_cmd, &e), 0);
    start_buses(&b);
    bus_cmd_t c = send_cmd("slow");
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 1), 1);
    assert_int_equal(r.status[0], WSG_ETIMEOUT);
    for (int i = 0; i < 200 && atomic_load(&e.nheld) < 1; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&e.nheld), 1);
    bus_cmd_reply(e.held[0], 0); /* after the verdict: ignored, freed */
    usleep(200 * 1000);
    assert_int_equal(count_of(&r), 1);
    free_buses(&b);
}

typedef struct {
    bus_t *bus;
    edge_t *e;
    atomic_int unserved_at_finished; /* e->finished when unserve returned */
    atomic_int was_running;
} unserve_arg_t;

static void *unserve_later(void *arg)
{
    unserve_arg_t *u = arg;
    while (!atomic_load(&u->e->running))
        usleep(1000);
    atomic_store(&u->was_running, 1);
    assert_int_equal(bus_cmd_unserve(u->bus, "e1"), 0);
    atomic_store(&u->unserved_at_finished, atomic_load(&u->e->finished));
    return NULL;
}

static void test_unserve_waits_for_callback(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    edge_t e;
    edge_init(&e, 0);
    atomic_store(&e.sleep_ms, 300);
    replies_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(bus_cmd_serve(b.e1, "e1", on_cmd, &e), 0);
    start_buses(&b);
    usleep(100 * 1000);
    unserve_arg_t u = {.bus = b.e1, .e = &e};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, unserve_later, &u), 0);
    bus_cmd_t c = send_cmd("a");
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&u.was_running), 1);
    /* unserve returned only after the running callback had */
    assert_int_equal(atomic_load(&u.unserved_at_finished), 1);
    assert_int_equal(wait_n(&r, 1), 1);
    assert_int_equal(r.status[0], 0);
    atomic_store(&e.sleep_ms, 0);
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 2), 2);
    assert_int_equal(r.status[1], WSG_EGONE); /* no longer served */
    assert_int_equal(atomic_load(&e.calls), 1);
    /* and it can be served again */
    assert_int_equal(bus_cmd_serve(b.e1, "e1", on_cmd, &e), 0);
    usleep(100 * 1000);
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 3), 3);
    assert_int_equal(r.status[2], 0);
    free_buses(&b);
}

/* A command sent once bus_cmd_unserve() has returned is answered
 * WSG_EGONE at once, every time: on NATS the server must have dropped the
 * interest by then, or it routes the command to a subscription libnats has
 * already dropped and the sender waits for its timeout. */
static void test_unserve_then_request_is_gone(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    edge_t e;
    edge_init(&e, 0);
    replies_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    start_buses(&b);
    bus_cmd_t c = send_cmd("a");
    int n = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(bus_cmd_serve(b.e1, "e1", on_cmd, &e), 0);
        usleep(50 * 1000);
        assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), 0);
        n++;
        assert_int_equal(wait_n(&r, n), n);
        assert_int_equal(r.status[n - 1], 0);
        assert_int_equal(bus_cmd_unserve(b.e1, "e1"), 0);
        assert_int_equal(bus_cmd_request(b.api, "e1", &c, on_reply, &r), 0);
        n++;
        assert_int_equal(wait_n(&r, n), n);
        assert_int_equal(r.status[n - 1], WSG_EGONE);
    }
    assert_int_equal(atomic_load(&e.calls), 20);
    free_buses(&b);
}

/* A handler that unregisters itself from its own callback: no deadlock. */
static bus_t *self_bus;
static atomic_int self_calls;
static void on_cmd_self(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    (void)ud;
    (void)cmd;
    atomic_fetch_add(&self_calls, 1);
    assert_int_equal(bus_cmd_unserve(self_bus, "self"), 0);
    bus_cmd_reply(r, 0);
}

static void test_unserve_from_own_callback(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    replies_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    self_bus = b.e1;
    atomic_store(&self_calls, 0);
    assert_int_equal(bus_cmd_serve(b.e1, "self", on_cmd_self, NULL), 0);
    start_buses(&b);
    usleep(100 * 1000);
    bus_cmd_t c = send_cmd("x");
    assert_int_equal(bus_cmd_request(b.api, "self", &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 1), 1);
    assert_int_equal(r.status[0], 0);
    assert_int_equal(bus_cmd_request(b.api, "self", &c, on_reply, &r), 0);
    assert_int_equal(wait_n(&r, 2), 2);
    assert_int_equal(r.status[1], WSG_EGONE);
    assert_int_equal(atomic_load(&self_calls), 1);
    free_buses(&b);
}

/* ---- where callbacks run: consumers ----------------------------------------------------- */

/* A consumer drained by a thread of the test's (as an edge loop drains its
 * own), or by the test itself when thread is 0. */
typedef struct {
    bus_consumer_t *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending, stop, threaded;
    atomic_int wakes;
    pthread_t th;
} tcons_t;

static void tcons_wake(void *ud)
{
    tcons_t *t = ud;
    atomic_fetch_add(&t->wakes, 1);
    pthread_mutex_lock(&t->mu);
    t->pending = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

static void *tcons_main(void *arg)
{
    tcons_t *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        if (!t->pending) {
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        t->pending = 0;
        pthread_mutex_unlock(&t->mu);
        bus_consumer_drain(t->c);
        pthread_mutex_lock(&t->mu);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void tcons_open(tcons_t *t, bus_t *bus, int threaded)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    assert_int_equal(bus_consumer_new(bus, tcons_wake, t, &t->c), 0);
    t->threaded = threaded;
    if (threaded)
        assert_int_equal(pthread_create(&t->th, NULL, tcons_main, t), 0);
}

static void tcons_close(tcons_t *t)
{
    if (t->threaded) {
        pthread_mutex_lock(&t->mu);
        t->stop = 1;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&t->mu);
        pthread_join(t->th, NULL);
    }
    bus_consumer_free(t->c);
}

/* Records the thread each kind of callback ran on, and the commands'
 * data in the order they ran. */
typedef struct {
    pthread_mutex_t mu;
    tcons_t *t; /* commands go to its consumer */
    pthread_t cmd_th, pub_th, reply_th, replier_th;
    atomic_int cmds, pubs, replies, reply_status, off_thread;
    int answer;
    char seen[8192];
    int nreplies, status[256];
} where_t;

/* Set while this thread is inside a bus call whose callbacks must not run
 * in its stack: a callback that sees it ran inline. */
static _Thread_local int inside_bus_call;
static atomic_int ran_inline;

static bus_consumer_t *route_where(void *ud, const bus_cmd_t *cmd)
{
    (void)cmd;
    return ((where_t *)ud)->t->c;
}

static void where_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    where_t *w = ud;
    pthread_mutex_lock(&w->mu);
    w->cmd_th = w->replier_th = pthread_self();
    if (w->t && w->t->threaded && !pthread_equal(pthread_self(), w->t->th))
        atomic_fetch_add(&w->off_thread, 1);
    size_t n = strlen(w->seen);
    snprintf(w->seen + n, sizeof w->seen - n, "%.*s,", (int)cmd->len, (const char *)cmd->data);
    pthread_mutex_unlock(&w->mu);
    atomic_fetch_add(&w->cmds, 1);
    if (inside_bus_call)
        atomic_fetch_add(&ran_inline, 1);
    inside_bus_call = 1;
    bus_cmd_reply(r, w->answer); /* its callback must not run in here */
    inside_bus_call = 0;
}

static void where_pub(void *ud, const bus_publish_t *p)
{
    where_t *w = ud;
    (void)p;
    pthread_mutex_lock(&w->mu);
    w->pub_th = pthread_self();
    if (w->t && w->t->threaded && !pthread_equal(pthread_self(), w->t->th))
        atomic_fetch_add(&w->off_thread, 1);
    pthread_mutex_unlock(&w->mu);
    atomic_fetch_add(&w->pubs, 1);
    if (inside_bus_call)
        atomic_fetch_add(&ran_inline, 1);
}

static void where_reply(void *ud, int status)
{
    where_t *w = ud;
    pthread_mutex_lock(&w->mu);
    w->reply_th = pthread_self();
    if (w->nreplies < 256)
        w->status[w->nreplies] = status;
    w->nreplies++;
    pthread_mutex_unlock(&w->mu);
    atomic_store(&w->reply_status, status);
    atomic_fetch_add(&w->replies, 1);
    if (inside_bus_call)
        atomic_fetch_add(&ran_inline, 1);
}

/* Opens t on edge 1's bus (drained by a thread of its own when threaded),
 * serves e1 there with w's handlers (publishes too when pubs), starts. */
static void consumer_setup(buses_t *b, tcons_t *t, where_t *w, int threaded, int pubs)
{
    tcons_open(t, b->e1, threaded);
    assert_int_equal(bus_cmd_serve_on(b->e1, "e1", route_where, where_cmd, w), 0);
    if (pubs)
        assert_int_equal(bus_publish_serve_on(b->e1, t->c, where_pub, w), 0);
    start_buses(b);
    usleep(100 * 1000);
}

/* Handlers registered without a consumer: a command, a publish and a reply
 * never run on the thread that called bus_cmd_request / bus_publish /
 * bus_cmd_reply (in-process they used to run inline in those calls). */
static void test_callbacks_never_inline(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    where_t w = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(bus_cmd_serve(b.e1, "e1", where_cmd, &w), 0);
    assert_int_equal(bus_publish_serve(b.e1, where_pub, &w), 0);
    start_buses(&b);
    usleep(100 * 1000);
    atomic_store(&ran_inline, 0);
    bus_cmd_t c = send_cmd("x");
    bus_publish_t all = {.channel = NULL, .data = (const unsigned char *)"p", .len = 1};
    inside_bus_call = 1;
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, where_reply, &w), 0);
    assert_int_equal(bus_publish(b.api, &all), 0);
    assert_int_equal(bus_cmd_request(b.api, "nobody", &c, where_reply, &w), 0); /* EGONE */
    inside_bus_call = 0;
    assert_int_equal(wait_atomic(&w.replies, 2), 2);
    assert_int_equal(wait_atomic(&w.pubs, 1), 1);
    pthread_mutex_lock(&w.mu);
    assert_int_equal(w.status[0] + w.status[1], WSG_EGONE); /* one 0, one WSG_EGONE */
    assert_false(pthread_equal(w.cmd_th, pthread_self()));
    assert_false(pthread_equal(w.pub_th, pthread_self()));
    assert_false(pthread_equal(w.reply_th, pthread_self()));
    pthread_mutex_unlock(&w.mu);
    /* nor inside bus_cmd_reply(), when the handler replies at once */
    assert_int_equal(atomic_load(&ran_inline), 0);
    free_buses(&b);
}

/* Handlers on a consumer run on the thread that drains it and nowhere
 * else; the reply runs on neither the requester's nor the replier's. */
static void test_callbacks_on_consumer_thread(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    bus_consumer_t *bad = NULL;
    assert_int_equal(bus_consumer_new(b.e1, NULL, NULL, &bad), WSG_EINVAL);
    assert_int_equal(bus_consumer_new(NULL, tcons_wake, NULL, &bad), WSG_EINVAL);
    tcons_t t;
    where_t w = {.mu = PTHREAD_MUTEX_INITIALIZER, .t = &t};
    consumer_setup(&b, &t, &w, 1, 1);
    atomic_store(&ran_inline, 0);
    for (int i = 0; i < 20; i++) {
        bus_cmd_t c = send_cmd("x");
        assert_int_equal(bus_cmd_request(b.api, "e1", &c, where_reply, &w), 0);
        bus_publish_t all = {.channel = NULL, .data = (const unsigned char *)"p", .len = 1};
        assert_int_equal(bus_publish(b.api, &all), 0);
    }
    assert_int_equal(wait_atomic(&w.replies, 20), 20);
    assert_int_equal(wait_atomic(&w.pubs, 20), 20);
    assert_int_equal(atomic_load(&w.off_thread), 0);
    assert_int_equal(atomic_load(&ran_inline), 0);
    pthread_mutex_lock(&w.mu);
    assert_true(pthread_equal(w.cmd_th, t.th));
    assert_true(pthread_equal(w.pub_th, t.th));
    assert_false(pthread_equal(w.reply_th, pthread_self()));
    assert_false(pthread_equal(w.reply_th, t.th));
    for (int i = 0; i < 20; i++)
        assert_int_equal(w.status[i], 0);
    pthread_mutex_unlock(&w.mu);
    assert_int_equal(bus_cmd_unserve(b.e1, "e1"), 0);
    assert_int_equal(bus_publish_unserve(b.e1, where_pub, &w), 0);
    tcons_close(&t);
    free_buses(&b);
}

/* The wake-up is called when the queue goes from empty to non-empty, not
 * once per item; a drain runs everything queued. The test drains itself. */
static void test_consumer_wakes_on_empty_only(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    tcons_t t;
    where_t w = {.mu = PTHREAD_MUTEX_INITIALIZER, .t = &t};
    consumer_setup(&b, &t, &w, 0, 1);
    bus_consumer_drain(t.c); /* empty: nothing runs */
    assert_int_equal(atomic_load(&w.cmds) + atomic_load(&w.pubs), 0);
    bus_cmd_t c = send_cmd("x");
    bus_publish_t all = {.channel = NULL, .data = (const unsigned char *)"p", .len = 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(bus_cmd_request(b.api, "e1", &c, where_reply, &w), 0);
        assert_int_equal(bus_publish(b.api, &all), 0);
    }
    assert_int_equal(wait_atomic(&t.wakes, 1), 1);
    usleep(300 * 1000); /* NATS: the rest arrives; no further wake-up */
    assert_int_equal(atomic_load(&t.wakes), 1);
    assert_int_equal(atomic_load(&w.cmds) + atomic_load(&w.pubs), 0); /* not drained: none ran */
    bus_consumer_drain(t.c);
    assert_int_equal(atomic_load(&w.cmds), 5);
    assert_int_equal(atomic_load(&w.pubs), 5);
    assert_int_equal(wait_atomic(&w.replies, 5), 5);
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, where_reply, &w), 0);
    assert_int_equal(wait_atomic(&t.wakes, 2), 2); /* empty again: woken again */
    bus_consumer_drain(t.c);
    assert_int_equal(wait_atomic(&w.replies, 6), 6);
    assert_int_equal(bus_cmd_unserve(b.e1, "e1"), 0);
    assert_int_equal(bus_publish_unserve(b.e1, where_pub, &w), 0);
    tcons_close(&t);
    free_buses(&b);
}

typedef struct {
    bus_t *bus;
    where_t *w;
    int k;
} producer_t;

#define ORDER_PRODUCERS 4
#define ORDER_EACH 50

static void *produce(void *arg)
{
    producer_t *p = arg;
    char data[16];
    for (int i = 0; i < ORDER_EACH; i++) {
        snprintf(data, sizeof data, "%d.%d", p->k, i);
        bus_cmd_t c = send_cmd(data);
        assert_int_equal(bus_cmd_request(p->bus, "e1", &c, where_reply, p->w), 0);
    }
    return NULL;
}

/* Several producers at once: each one's commands reach the consumer in the
 * order that producer sent them. */
static void test_consumer_order_per_producer(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    tcons_t t;
    where_t w = {.mu = PTHREAD_MUTEX_INITIALIZER, .t = &t};
    consumer_setup(&b, &t, &w, 1, 0);
    producer_t ps[ORDER_PRODUCERS];
    pthread_t th[ORDER_PRODUCERS];
    for (int k = 0; k < ORDER_PRODUCERS; k++) {
        ps[k] = (producer_t){.bus = b.api, .w = &w, .k = k};
        assert_int_equal(pthread_create(&th[k], NULL, produce, &ps[k]), 0);
    }
    for (int k = 0; k < ORDER_PRODUCERS; k++)
        pthread_join(th[k], NULL);
    int total = ORDER_PRODUCERS * ORDER_EACH;
    assert_int_equal(wait_atomic(&w.replies, total), total);
    assert_int_equal(atomic_load(&w.cmds), total);
    int next[ORDER_PRODUCERS] = {0};
    pthread_mutex_lock(&w.mu);
    for (char *s = w.seen; *s;) {
        int k = -1, i = -1, n = 0;
        assert_int_equal(sscanf(s, "%d.%d,%n", &k, &i, &n), 2);
        assert_true(k >= 0 && k < ORDER_PRODUCERS);
        assert_int_equal(i, next[k]); /* in the order its producer sent */
        next[k]++;
        s += n;
    }
    pthread_mutex_unlock(&w.mu);
    for (int k = 0; k < ORDER_PRODUCERS; k++)
        assert_int_equal(next[k], ORDER_EACH);
    assert_int_equal(atomic_load(&w.off_thread), 0);
    assert_int_equal(bus_cmd_unserve(b.e1, "e1"), 0);
    tcons_close(&t);
    free_buses(&b);
}

/* Unregistered while items wait in its consumer's queue: the queued
 * commands are answered WSG_EGONE, the queued publishes dropped, and no
 * callback of the handler runs. */
static void test_unserve_with_queued_items(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    tcons_t t;
    where_t w = {.mu = PTHREAD_MUTEX_INITIALIZER, .t = &t};
    consumer_setup(&b, &t, &w, 0, 1);
    bus_cmd_t c = send_cmd("x");
    bus_publish_t all = {.channel = NULL, .data = (const unsigned char *)"p", .len = 1};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bus_cmd_request(b.api, "e1", &c, where_reply, &w), 0);
        assert_int_equal(bus_publish(b.api, &all), 0);
    }
    assert_int_equal(wait_atomic(&t.wakes, 1), 1);
    usleep(300 * 1000); /* NATS: all of them are queued */
    assert_int_equal(atomic_load(&w.replies), 0);
    assert_int_equal(bus_cmd_unserve(b.e1, "e1"), 0);
    assert_int_equal(bus_publish_unserve(b.e1, where_pub, &w), 0);
    bus_consumer_drain(t.c);
    assert_int_equal(wait_atomic(&w.replies, 3), 3);
    assert_int_equal(atomic_load(&w.cmds), 0);
    assert_int_equal(atomic_load(&w.pubs), 0);
    pthread_mutex_lock(&w.mu);
    for (int i = 0; i < 3; i++)
        assert_int_equal(w.status[i], WSG_EGONE);
    pthread_mutex_unlock(&w.mu);
    /* the same when the consumer is freed with items queued */
    assert_int_equal(bus_cmd_serve_on(b.e1, "e1", route_where, where_cmd, &w), 0);
    usleep(100 * 1000);
    assert_int_equal(bus_cmd_request(b.api, "e1", &c, where_reply, &w), 0);
    assert_int_equal(wait_atomic(&t.wakes, 2), 2);
    assert_int_equal(bus_cmd_unserve(b.e1, "e1"), 0);
    tcons_close(&t);
    assert_int_equal(wait_atomic(&w.replies, 4), 4);
    assert_int_equal(w.status[3], WSG_EGONE);
    assert_int_equal(atomic_load(&w.cmds), 0);
    free_buses(&b);
}

/* ---- publishes and interest ----------------------------------------------------------- */

typedef struct {
    atomic_int calls;
    atomic_int sleep_ms, running, finished;
    char last[64];
} pubsink_t;

static void on_publish(void *ud, const bus_publish_t *p)
{
    pubsink_t *s = ud;
    atomic_fetch_add(&s->running, 1);
    snprintf(s->last, sizeof s->last, "%.*s", (int)p->len, (const char *)p->data);
    if (atomic_load(&s->sleep_ms))
        usleep((useconds_t)atomic_load(&s->sleep_ms) * 1000);
    atomic_fetch_add(&s->calls, 1);
    atomic_fetch_sub(&s->running, 1);
    atomic_fetch_add(&s->finished, 1);
}

static int wait_atomic(atomic_int *v, int want)
{
    for (int i = 0; i < 2000 && atomic_load(v) < want; i++)
        usleep(10000);
    return atomic_load(v);
}

static void publish_text(bus_t *bus, const char *channel, const char *text)
{
    bus_publish_t p = {
        .channel = channel, .data = (const unsigned char *)text, .len = strlen(text)};
    assert_int_equal(bus_publish(bus, &p), 0);
}

static void test_interest_counts(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    pubsink_t s = {0};
    assert_int_equal(bus_publish_serve(b.e1, on_publish, &s), 0);
    start_buses(&b);
    assert_int_equal(bus_channel_interest(b.e1, "room", 1), 0);
    assert_int_equal(bus_channel_interest(b.e1, "room", 1), 0);
    usleep(100 * 1000);
    publish_text(b.api, "room", "one");
    assert_int_equal(wait_atomic(&s.calls, 1), 1);
    assert_int_equal(bus_channel_interest(b.e1, "room", 0), 0); /* one left */
    usleep(100 * 1000);
    publish_text(b.api, "room", "two");
    assert_int_equal(wait_atomic(&s.calls, 2), 2);
    assert_string_equal(s.last, "two");
    assert_int_equal(bus_channel_interest(b.e1, "room", 0), 0); /* none left */
    usleep(100 * 1000);
    publish_text(b.api, "room", "three");
    publish_text(b.api, "other", "four");
    usleep(300 * 1000);
    assert_int_equal(atomic_load(&s.calls), 2);
    assert_int_equal(bus_channel_interest(b.e1, "room", 0), WSG_ENOTFOUND);
    /* a broadcast needs no interest */
    bus_publish_t all = {.channel = NULL, .data = (const unsigned char *)"b", .len = 1};
    assert_int_equal(bus_publish(b.api, &all), 0);
    assert_int_equal(wait_atomic(&s.calls, 3), 3);
    free_buses(&b);
}

typedef struct {
    bus_t *bus;
    pubsink_t *s;
    atomic_int finished_at_return;
} pub_unserve_t;

static void *pub_unserve_later(void *arg)
{
    pub_unserve_t *u = arg;
    while (!atomic_load(&u->s->running))
        usleep(1000);
    assert_int_equal(bus_publish_unserve(u->bus, on_publish, u->s), 0);
    atomic_store(&u->finished_at_return, atomic_load(&u->s->finished));
    return NULL;
}

static void test_publish_unserve_waits(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    pubsink_t s = {0}, other = {0};
    assert_int_equal(bus_publish_serve(b.e1, on_publish, &s), 0);
    assert_int_equal(bus_publish_serve(b.e1, on_publish, &other), 0);
    assert_int_equal(bus_publish_unserve(b.e1, on_publish, &b), WSG_ENOTFOUND);
    start_buses(&b);
    atomic_store(&s.sleep_ms, 300);
    usleep(100 * 1000);
    pub_unserve_t u = {.bus = b.e1, .s = &s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pub_unserve_later, &u), 0);
    bus_publish_t all = {.channel = NULL, .data = (const unsigned char *)"x", .len = 1};
    assert_int_equal(bus_publish(b.api, &all), 0);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&u.finished_at_return), 1);
    assert_int_equal(bus_publish(b.api, &all), 0);
    assert_int_equal(wait_atomic(&other.calls, 2), 2);
    usleep(100 * 1000);
    assert_int_equal(atomic_load(&s.calls), 1); /* none after unserve returned */
    free_buses(&b);
}

/* ---- heartbeats --------------------------------------------------------------------- */

typedef struct {
    atomic_int calls;
    atomic_int on_caller; /* ran on the thread that called bus_heartbeat */
    pthread_t caller;
    char edge[32];
} hbsink_t;

static void on_heartbeat(void *ud, const char *edge_id, int64_t at_ms, int leaving)
{
    hbsink_t *h = ud;
    (void)at_ms;
    (void)leaving;
    if (pthread_equal(pthread_self(), h->caller))
        atomic_store(&h->on_caller, 1);
    snprintf(h->edge, sizeof h->edge, "%s", edge_id);
    atomic_fetch_add(&h->calls, 1);
}

static void test_heartbeats(void **state)
{
    buses_t b;
    open_buses(&b, *state);
    hbsink_t h = {.caller = pthread_self()};
    assert_int_equal(bus_heartbeat_serve(b.api, on_heartbeat, &h), 0);
    start_buses(&b);
    usleep(100 * 1000);
    assert_int_equal(bus_heartbeat(b.e1, "edge-h", 0), 0);
    assert_int_equal(wait_atomic(&h.calls, 1), 1);
    assert_string_equal(h.edge, "edge-h");
    assert_int_equal(atomic_load(&h.on_caller), 0); /* never the sender's thread */
    assert_int_equal(bus_heartbeat_unserve(b.api, on_heartbeat, &h), 0);
    assert_int_equal(bus_heartbeat(b.e1, "edge-h", 1), 0);
    usleep(300 * 1000);
    assert_int_equal(atomic_load(&h.calls), 1);
    free_buses(&b);
}

/* ---- events --------------------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    bus_t *bus;
    int n;
    uint64_t seq[256];
    uint32_t attempt[256];
    int keep_seq; /* this seq is left undone */
    atomic_int running, finished, sleep_ms;
} evsink_t;

static void on_event(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt)
{
    evsink_t *s = ud;
    atomic_fetch_add(&s->running, 1);
    if (atomic_load(&s->sleep_ms))
        usleep((useconds_t)atomic_load(&s->sleep_ms) * 1000);
    pthread_mutex_lock(&s->mu);
    if (s->n < 256) {
        s->seq[s->n] = ev->seq;
        s->attempt[s->n] = attempt;
    }
    s->n++;
    pthread_mutex_unlock(&s->mu);
    if ((int)ev->seq != s->keep_seq)
        bus_event_done(s->bus, d);
    atomic_fetch_sub(&s->running, 1);
    atomic_fetch_add(&s->finished, 1);
}

static int ev_count(evsink_t *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->n;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void wait_events(evsink_t *s, int want)
{
    for (int i = 0; i < 2000 && ev_count(s) < want; i++)
        usleep(10000);
    assert_int_equal(ev_count(s), want);
}

static void publish_event(bus_t *bus, const char *conn, uint64_t seq, replies_t *acks)
{
    char id[64], body[64];
    snprintf(id, sizeof id, "evt_%s_%llu", conn, (unsigned long long)seq);
    int n = snprintf(body, sizeof body, "{\"seq\":%llu}", (unsigned long long)seq);
    bus_event_t ev = {.id = id,
                      .type = BUS_EV_MESSAGE,
                      .conn_id = conn,
                      .edge_id = "e1",
                      .route = "/r",
                      .seq = seq,
                      .body = body,
                      .body_len = (size_t)n};
    assert_int_equal(bus_event_publish(bus, &ev, on_reply, acks), 0);
}

static bus_t *reopen(const transport_t *t, const char *prefix, const char *queue)
{
    return open_one(t, prefix, queue);
}

static void test_events_order_and_redelivery(void **state)
{
    const transport_t *t = *state;
    char prefix[48], queue[256];
    snprintf(prefix, sizeof prefix, "c%ld_%d", (long)getpid(), ++test_no);
    snprintf(queue, sizeof queue, "%s/q%d.db", tmpdir, test_no);
    bus_t *bus = reopen(t, prefix, queue);
    evsink_t s = {.mu = PTHREAD_MUTEX_INITIALIZER, .bus = bus, .keep_seq = 7};
    assert_int_equal(bus_event_subscribe(bus, "g", BUS_EV_ALL, on_event, &s), 0);
    assert_int_equal(bus_event_subscribe(bus, "g", BUS_EV_ALL, on_event, &s), WSG_EEXISTS);
    assert_int_equal(bus_start(bus), 0);
    replies_t acks = {.mu = PTHREAD_MUTEX_INITIALIZER};
    for (uint64_t i = 1; i <= 20; i++)
        publish_event(bus, "conn-a", i, &acks);
    assert_int_equal(wait_n(&acks, 20), 20);
    for (int i = 0; i < 20; i++)
        assert_int_equal(acks.status[i], 0);
    wait_events(&s, 20);
    for (int i = 0; i < 20; i++) { /* in order per connection, first attempt */
        assert_int_equal(s.seq[i], (uint64_t)i + 1);
        assert_int_equal(s.attempt[i], 1);
    }
    bus_free(bus); /* seq 7 was never done: at-least-once brings it back */
    bus = reopen(t, prefix, queue);
    evsink_t again = {.mu = PTHREAD_MUTEX_INITIALIZER, .bus = bus, .keep_seq = -1};
    assert_int_equal(bus_event_subscribe(bus, "g", BUS_EV_ALL, on_event, &again), 0);
    assert_int_equal(bus_start(bus), 0);
    wait_events(&again, 1);
    assert_int_equal(again.seq[0], 7);
    assert_int_equal(again.attempt[0], 2);
    usleep(300 * 1000);
    assert_int_equal(ev_count(&again), 1); /* the done ones stay done */
    bus_free(bus);
}

typedef struct {
    bus_t *bus;
    evsink_t *s;
    atomic_int finished_at_return;
} ev_unsub_t;

static void *ev_unsub_later(void *arg)
{
    ev_unsub_t *u = arg;
    while (!atomic_load(&u->s->running))
        usleep(1000);
    assert_int_equal(bus_event_unsubscribe(u->bus, "g"), 0);
    atomic_store(&u->finished_at_return, atomic_load(&u->s->finished));
    return NULL;
}

static void test_event_unsubscribe_waits(void **state)
{
    const transport_t *t = *state;
    char prefix[48], queue[256];
    snprintf(prefix, sizeof prefix, "c%ld_%d", (long)getpid(), ++test_no);
    snprintf(queue, sizeof queue, "%s/q%d.db", tmpdir, test_no);
    bus_t *bus = reopen(t, prefix, queue);
    evsink_t s = {.mu = PTHREAD_MUTEX_INITIALIZER, .bus = bus, .keep_seq = -1};
    atomic_store(&s.sleep_ms, 300);
    assert_int_equal(bus_event_subscribe(bus, "g", BUS_EV_ALL, on_event, &s), 0);
    assert_int_equal(bus_start(bus), 0);
    ev_unsub_t u = {.bus = bus, .s = &s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ev_unsub_later, &u), 0);
    replies_t acks = {.mu = PTHREAD_MUTEX_INITIALIZER};
    publish_event(bus, "conn-u", 1, &acks);
    publish_event(bus, "conn-u", 2, &acks);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&u.finished_at_return), 1);
    usleep(500 * 1000);
    assert_int_equal(ev_count(&s), 1); /* none after unsubscribe returned */
    assert_int_equal(bus_event_unsubscribe(bus, "g"), WSG_ENOTFOUND);
    bus_free(bus);
}

/* ---- the nats-server ---------------------------------------------------------------- */

static pid_t nats_pid;

static const char *find_nats_server(void)
{
    static const char *cands[] = {NULL, "/usr/sbin/nats-server", "/usr/bin/nats-server",
                                  "/usr/local/bin/nats-server"};
    cands[0] = getenv("WSGATE_NATS_SERVER");
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (cands[i] && access(cands[i], X_OK) == 0)
            return cands[i];
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int start_nats(void)
{
    const char *bin = find_nats_server();
    int port = free_port();
    if (!bin || port < 0) {
        fprintf(stderr, "nats-server not found (set WSGATE_NATS_SERVER)\n");
        return -1;
    }
    char ports[16], sd[300], logf[300];
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(sd, sizeof sd, "%s/js", tmpdir);
    snprintf(logf, sizeof logf, "%s/nats.log", tmpdir);
    pid_t parent = getpid();
    nats_pid = fork();
    if (nats_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlives a crashed test */
        if (getppid() != parent)
            _exit(1);
        execl(bin, bin, "-js", "-a", "127.0.0.1", "-p", ports, "-sd", sd, "-l", logf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && nats_pid > 0 && !port_open(port); i++)
        usleep(50 * 1000);
    if (nats_pid < 0 || !port_open(port)) {
        fprintf(stderr, "nats-server did not start on port %d\n", port);
        return -1;
    }
    snprintf(nats_url, sizeof nats_url, "nats://127.0.0.1:%d", port);
    return 0;
}

static void stop_nats(void)
{
    if (nats_pid > 0) {
        kill(nats_pid, SIGTERM);
        waitpid(nats_pid, NULL, 0);
        nats_pid = 0;
    }
}

#define BOTH(fn)                                                                                   \
    {"inproc:" #fn, fn, NULL, NULL, &inproc},                                                      \
    {                                                                                              \
        "nats:" #fn, fn, NULL, NULL, &natsbus                                                      \
    }

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    if (start_nats() != 0) {
        stop_nats();
        return 1; /* a missing nats-server fails the suite, never skips it */
    }
    const struct CMUnitTest tests[] = {
        BOTH(test_cmd_order),
        BOTH(test_cmd_bad_input),
        BOTH(test_any_edge_rule),
        BOTH(test_any_edge_settles_when_all_known_answered),
        BOTH(test_cmd_timeout),
        BOTH(test_unserve_waits_for_callback),
        BOTH(test_unserve_then_request_is_gone),
        BOTH(test_unserve_from_own_callback),
        BOTH(test_callbacks_never_inline),
        BOTH(test_callbacks_on_consumer_thread),
        BOTH(test_consumer_wakes_on_empty_only),
        BOTH(test_consumer_order_per_producer),
        BOTH(test_unserve_with_queued_items),
        BOTH(test_interest_counts),
        BOTH(test_publish_unserve_waits),
        BOTH(test_heartbeats),
        BOTH(test_events_order_and_redelivery),
        BOTH(test_event_unsubscribe_waits),
    };
    if (getenv("WSGATE_TEST_FILTER")) /* e.g. "nats:*" */
        cmocka_set_test_filter(getenv("WSGATE_TEST_FILTER"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    stop_nats();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return rc;
}
