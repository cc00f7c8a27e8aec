/* SPDX-License-Identifier: MIT */
/*
 * test_bus_users.c — user claims (bus.h section 5): in-process they are not
 * kept (WSG_ENOTSUP); on NATS (bus_nats_users.c) against a real nats-server
 * with JetStream when WSGATE_TEST_NATS_URL is set
 * (tests/integration/test_bus_users.py starts one and sets it), else those
 * tests are left out with a message.
 *
 * "Edges" here are buses serving BUS_CMD_HOLDS from a table of connection
 * ids they say they hold, so each test decides what a holder answers. Each
 * test uses its own subject prefix, hence its own claims bucket.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "bus/bus_nats.h"
#include "common/err.h"

static const char *nats_url;
static char run_id[32];

#define HELD_MAX 8

typedef struct {
    pthread_mutex_t mu;
    const char *held[HELD_MAX]; /* connection ids this edge says it holds */
    int asked;                  /* BUS_CMD_HOLDS received */
} edge_t;

static void edge_init(edge_t *e)
{
    memset(e, 0, sizeof *e);
    pthread_mutex_init(&e->mu, NULL);
}

static void edge_hold(edge_t *e, const char *conn, int on)
{
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < HELD_MAX; i++) {
        if (on && !e->held[i]) {
            e->held[i] = conn;
            break;
        }
        if (!on && e->held[i] && strcmp(e->held[i], conn) == 0)
            e->held[i] = NULL;
    }
    pthread_mutex_unlock(&e->mu);
}

static int edge_asked(edge_t *e)
{
    pthread_mutex_lock(&e->mu);
    int n = e->asked;
    pthread_mutex_unlock(&e->mu);
    return n;
}

static void on_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    edge_t *e = ud;
    int st = WSG_EGONE;
    pthread_mutex_lock(&e->mu);
    if (cmd->op == BUS_CMD_HOLDS)
        e->asked++;
    for (int i = 0; i < HELD_MAX; i++)
        if (cmd->op == BUS_CMD_HOLDS && e->held[i] && strcmp(e->held[i], cmd->conn_id) == 0)
            st = 0;
    pthread_mutex_unlock(&e->mu);
    bus_cmd_reply(r, st);
}

/* A started NATS bus serving edge_id (NULL: none) with e. */
static bus_t *open_edge(const char *test, const char *edge_id, edge_t *e)
{
    bus_t *bus = NULL;
    char err[256] = "", prefix[64];
    bus_opts_t o = {.url = nats_url, .name = "test_bus_users", .partitions = 1};
    if (bus_open(&bus, &o, err, sizeof err) != 0)
        fail_msg("bus_open: %s", err);
    snprintf(prefix, sizeof prefix, "u%s_%s", run_id, test);
    bus_nats_tune_t t = {.prefix = prefix, .cmd_timeout_ms = 1000};
    assert_int_equal(bus_nats_tune(bus, &t), 0);
    if (edge_id)
        assert_int_equal(bus_cmd_serve(bus, edge_id, on_cmd, e), 0);
    assert_int_equal(bus_start(bus), 0);
    return bus;
}

static int claim(bus_t *bus, const char *route, const char *user, const char *conn,
                 const char *edge, uint64_t *rev)
{
    bus_user_t u = {.route = route, .user = user, .conn_id = conn, .edge_id = edge};
    return bus_user_claim(bus, &u, rev);
}

static int release(bus_t *bus, const char *route, const char *user, const char *conn,
                   const char *edge, uint64_t rev)
{
    bus_user_t u = {.route = route, .user = user, .conn_id = conn, .edge_id = edge};
    return bus_user_release(bus, &u, rev);
}

static void test_inproc_not_kept(void **state)
{
    (void)state;
    bus_t *bus = NULL;
    char err[256];
    bus_opts_t o = {0};
    assert_int_equal(bus_open(&bus, &o, err, sizeof err), 0);
    assert_int_equal(bus_user_shared(bus), 0);
    uint64_t rev = 7;
    assert_int_equal(claim(bus, "/r", "ann", "c1", "e1", &rev), WSG_ENOTSUP);
    assert_int_equal(rev, 0);
    assert_int_equal(release(bus, "/r", "ann", "c1", "e1", 1), WSG_ENOTSUP);
    assert_int_equal(claim(bus, "/r", "", "c1", "e1", &rev), WSG_EINVAL);
    assert_int_equal(claim(bus, "/r", "ann", "c1", NULL, &rev), WSG_EINVAL);
    bus_cmd_t holds = {.op = BUS_CMD_HOLDS, .conn_id = "c1"};
    assert_int_equal(bus_cmd_request(bus, "nobody", &holds, NULL, NULL), 0);
    bus_free(bus);
    assert_int_equal(bus_user_shared(NULL), 0);
    assert_int_equal(bus_user_claim(NULL, NULL, &rev), WSG_EINVAL);
}

/* Held: refused without a takeover; gone: taken over; the old owner's
 * release then leaves the new claim alone; the new owner's release drops
 * it, so the next claim needs no probe. */
static void test_claim_takeover_release(void **state)
{
    (void)state;
    edge_t ea, eb;
    edge_init(&ea);
    edge_init(&eb);
    bus_t *a = open_edge("tr", "ea", &ea), *b = open_edge("tr", "eb", &eb);
    assert_int_equal(bus_user_shared(a), 1);
    uint64_t r1 = 0, r2 = 0, r3 = 0;
    assert_int_equal(claim(a, "/chat", "ann", "c1", "ea", &r1), 0);
    assert_true(r1 > 0);
    edge_hold(&ea, "c1", 1);
    assert_int_equal(claim(b, "/chat", "ann", "c2", "eb", &r2), WSG_EEXISTS);
    assert_int_equal(edge_asked(&ea), 1);
    /* another route or another user is another claim */
    assert_int_equal(claim(b, "/other", "ann", "c9", "eb", &r3), 0);
    assert_int_equal(claim(b, "/chat", "ann2", "c8", "eb", &r3), 0);
    /* c1 ends without its release (yet): c2 takes the claim over */
    edge_hold(&ea, "c1", 0);
    edge_hold(&eb, "c2", 1);
    assert_int_equal(claim(b, "/chat", "ann", "c2", "eb", &r2), 0);
    assert_true(r2 > r1);
    assert_int_equal(release(a, "/chat", "ann", "c1", "ea", r1), 0); /* late: no effect */
    assert_int_equal(claim(a, "/chat", "ann", "c3", "ea", &r3), WSG_EEXISTS);
    /* c2's release drops it although eb would still say it holds c2 */
    int asked = edge_asked(&eb);
    assert_int_equal(release(b, "/chat", "ann", "c2", "eb", r2), 0);
    assert_int_equal(claim(a, "/chat", "ann", "c3", "ea", &r3), 0);
    assert_int_equal(edge_asked(&eb), asked);
    assert_int_equal(release(a, "/chat", "ann", "c3", "ea", 0), WSG_EINVAL);
    bus_free(a);
    bus_free(b);
}

/* A claim whose edge is gone (no responders) is taken over at once. */
static void test_dead_edge_taken_over(void **state)
{
    (void)state;
    edge_t ea;
    edge_init(&ea);
    bus_t *a = open_edge("dead", "ea", &ea), *ghost = open_edge("dead", NULL, NULL);
    uint64_t r = 0;
    assert_int_equal(claim(ghost, "/chat", "bob", "g1", "ghost-edge", &r), 0);
    bus_nats_vanish(ghost);
    assert_int_equal(claim(a, "/chat", "bob", "c1", "ea", &r), 0);
    edge_hold(&ea, "c1", 1);
    assert_int_equal(claim(a, "/chat", "bob", "c2", "ea", &r), WSG_EEXISTS);
    bus_free(a);
}

typedef struct {
    bus_t *bus;
    const char *user, *conn, *edge;
    pthread_barrier_t *gate;
    int rc;
} racer_t;

static void *race_one(void *arg)
{
    racer_t *r = arg;
    uint64_t rev = 0;
    pthread_barrier_wait(r->gate);
    r->rc = claim(r->bus, "/chat", r->user, r->conn, r->edge, &rev);
    return NULL;
}

/* Two claimants of a free user at once: one 0, one WSG_EEXISTS; and two
 * newcomers racing for a stale claim: the same. */
static void test_races_have_one_winner(void **state)
{
    (void)state;
    edge_t ea, eb;
    edge_init(&ea);
    edge_init(&eb);
    bus_t *a = open_edge("race", "ea", &ea), *b = open_edge("race", "eb", &eb);
    edge_hold(&ea, "ca", 1);
    edge_hold(&eb, "cb", 1);
    for (int i = 0; i < 20; i++) {
        char user[32];
        snprintf(user, sizeof user, "racer-%d", i);
        if (i % 2) { /* a stale claim first: both newcomers must take it over */
            uint64_t r;
            assert_int_equal(claim(a, "/chat", user, "stale", "ea", &r), 0);
        }
        pthread_barrier_t gate;
        pthread_barrier_init(&gate, NULL, 2);
        racer_t ra = {.bus = a, .user = user, .conn = "ca", .edge = "ea", .gate = &gate};
        racer_t rb = {.bus = b, .user = user, .conn = "cb", .edge = "eb", .gate = &gate};
        pthread_t ta, tb;
        pthread_create(&ta, NULL, race_one, &ra);
        pthread_create(&tb, NULL, race_one, &rb);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&gate);
        if (!((ra.rc == 0 && rb.rc == WSG_EEXISTS) || (ra.rc == WSG_EEXISTS && rb.rc == 0)))
            fail_msg("%s: %s / %s", user, wsg_err_name(ra.rc), wsg_err_name(rb.rc));
    }
    bus_free(a);
    bus_free(b);
}

typedef struct {
    pthread_mutex_t mu;
    bus_reply_t *r[4]; /* held unanswered until the end of the test */
    int n;
} silent_t;

static void silent_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    (void)cmd;
    silent_t *s = ud;
    pthread_mutex_lock(&s->mu);
    if (s->n < 4)
        s->r[s->n++] = r;
    else
        bus_cmd_reply(r, WSG_EGONE);
    pthread_mutex_unlock(&s->mu);
}

/* A holder that does not answer: the claimant cannot tell (WSG_ETIMEOUT)
 * and the claim stays where it was. */
static void test_silent_holder_times_out(void **state)
{
    (void)state;
    bus_t *s = NULL;
    char err[256], prefix[64];
    bus_opts_t o = {.url = nats_url, .name = "test_bus_users", .partitions = 1};
    assert_int_equal(bus_open(&s, &o, err, sizeof err), 0);
    snprintf(prefix, sizeof prefix, "u%s_silent", run_id);
    bus_nats_tune_t t = {.prefix = prefix, .cmd_timeout_ms = 500};
    assert_int_equal(bus_nats_tune(s, &t), 0);
    silent_t q = {.n = 0};
    pthread_mutex_init(&q.mu, NULL);
    assert_int_equal(bus_cmd_serve(s, "es", silent_cmd, &q), 0);
    assert_int_equal(bus_start(s), 0);
    uint64_t r1 = 0, r2 = 0;
    assert_int_equal(claim(s, "/chat", "cy", "c1", "es", &r1), 0);
    assert_int_equal(claim(s, "/chat", "cy", "c2", "es", &r2), WSG_ETIMEOUT);
    assert_int_equal(r2, 0);
    pthread_mutex_lock(&q.mu);
    assert_int_equal(q.n, 1);
    bus_cmd_reply(q.r[0], WSG_EGONE); /* late: ignored by the claimant */
    q.n = 0;
    pthread_mutex_unlock(&q.mu);
    /* still c1's: its release works, then c2 claims without asking */
    assert_int_equal(release(s, "/chat", "cy", "c1", "es", r1), 0);
    assert_int_equal(claim(s, "/chat", "cy", "c2", "es", &r2), 0);
    bus_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inproc_not_kept), /* the only one without a server */
        cmocka_unit_test(test_claim_takeover_release),
        cmocka_unit_test(test_dead_edge_taken_over),
        cmocka_unit_test(test_races_have_one_winner),
        cmocka_unit_test(test_silent_holder_times_out),
    };
    nats_url = getenv("WSGATE_TEST_NATS_URL");
    size_t n = nats_url && *nats_url ? sizeof tests / sizeof *tests : 1;
    if (n == 1)
        print_message("WSGATE_TEST_NATS_URL is not set: NATS server tests skipped\n");
    snprintf(run_id, sizeof run_id, "%ld_%ld", (long)getpid(), (long)time(NULL) % 100000);
    return _cmocka_run_group_tests("test_bus_users", tests, n, NULL, NULL);
}
