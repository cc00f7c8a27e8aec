/* SPDX-License-Identifier: MIT */
/*
 * test_bus_cmd.c — the in-process bus's non-durable traffic: edge commands
 * (handlers and replies on the bus's own consumer thread, order, any edge,
 * gone, timeout, late reply from another thread), channel publishes gated by interest, broadcasts,
 * heartbeats; and bus_open's choice by URL (nats:// reaches the NATS bus, whose errors never echo
 * the URL's credentials).
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "bus/bus_int.h"
#include "common/err.h"

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int status[64];
} replies_t;

typedef struct {
    int answer; /* status to reply at once; 1 = keep r for later */
    int calls;
    char seen[256]; /* conn ids / data seen, in order */
    bus_reply_t *held;
    pthread_t thread; /* thread the handler ran on */
} edge_t;

static bus_t *open_mem(void)
{
    bus_t *bus = NULL;
    char err[256] = "";
    bus_opts_t o = {0};
    int rc = bus_open(&bus, &o, err, sizeof err);
    if (rc != 0)
        fail_msg("bus_open: %s", err);
    return bus;
}

static void replies_init(replies_t *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
}

static void on_reply(void *ud, int status)
{
    replies_t *r = ud;
    pthread_mutex_lock(&r->mu);
    if (r->calls < 64)
        r->status[r->calls] = status;
    r->calls++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int wait_replies(replies_t *r, int want)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&r->mu);
    while (r->calls < want && pthread_cond_timedwait(&r->cv, &r->mu, &ts) == 0)
        ;
    int n = r->calls;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void on_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    edge_t *e = ud;
    e->calls++;
    e->thread = pthread_self();
    size_t n = strlen(e->seen);
    if (cmd->op == BUS_CMD_SEND)
        snprintf(e->seen + n, sizeof e->seen - n, "%.*s,", (int)cmd->len, (const char *)cmd->data);
    else
        snprintf(e->seen + n, sizeof e->seen - n, "%d:%s,", cmd->op, cmd->conn_id);
    if (e->answer == 1)
        e->held = r;
    else
        bus_cmd_reply(r, e->answer);
}

static bus_cmd_t send_cmd(const char *text)
{
    return (bus_cmd_t){.op = BUS_CMD_SEND,
                       .conn_id = "c1",
                       .data = (const unsigned char *)text,
                       .len = strlen(text)};
}

/* Waits until the bus's deliveries of what was sent so far have run. */
static void settle(bus_t *bus)
{
    bus_core_sync(bus);
}

static void test_cmd_in_order_off_caller(void **state)
{
    bus_t *bus = open_mem();
    edge_t e1 = {.answer = 0};
    replies_t r;
    replies_init(&r);
    assert_int_equal(bus_cmd_serve(bus, "e1", on_cmd, &e1), 0);
    assert_int_equal(bus_cmd_serve(bus, "e1", on_cmd, &e1), WSG_EEXISTS);
    assert_int_equal(bus_start(bus), 0);
    const char *msgs[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        bus_cmd_t c = send_cmd(msgs[i]);
        assert_int_equal(bus_cmd_request(bus, "e1", &c, on_reply, &r), 0);
    }
    assert_int_equal(wait_replies(&r, 4), 4);
    assert_false(pthread_equal(e1.thread, pthread_self())); /* never inline */
    assert_string_equal(e1.seen, "a,b,c,d,");
    for (int i = 0; i < 4; i++)
        assert_int_equal(r.status[i], 0);
    bus_cmd_t close = {.op = BUS_CMD_CLOSE, .conn_id = "c7", .code = 4000, .reason = "bye"};
    assert_int_equal(bus_cmd_request(bus, "e1", &close, NULL, NULL), 0); /* fire and forget */
    settle(bus);
    assert_string_equal(e1.seen, "a,b,c,d,2:c7,");
    bus_free(bus);
}

static void test_cmd_any_edge_and_gone(void **state)
{
    bus_t *bus = open_mem();
    edge_t e1 = {.answer = WSG_EGONE}, e2 = {.answer = 0}, e3 = {.answer = WSG_EGONE};
    replies_t r;
    replies_init(&r);
    bus_cmd_t c = send_cmd("x");
    assert_int_equal(bus_cmd_request(bus, NULL, &c, on_reply, &r), 0); /* no edge at all */
    settle(bus);
    assert_int_equal(r.status[0], WSG_EGONE);
    assert_int_equal(bus_cmd_serve(bus, "e1", on_cmd, &e1), 0);
    assert_int_equal(bus_cmd_serve(bus, "e2", on_cmd, &e2), 0);
    assert_int_equal(bus_start(bus), 0);
    assert_int_equal(bus_cmd_request(bus, NULL, &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.status[1], 0); /* e2 holds it */
    assert_int_equal(e1.calls + e2.calls, 2);
    assert_int_equal(bus_cmd_request(bus, "e1", &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.status[2], WSG_EGONE);
    assert_int_equal(bus_cmd_request(bus, "nope", &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.status[3], WSG_EGONE);
    assert_int_equal(e1.calls, 2);
    e2.answer = WSG_EGONE;
    assert_int_equal(bus_cmd_serve(bus, "e3", on_cmd, &e3), 0);
    assert_int_equal(bus_cmd_request(bus, NULL, &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.calls, 5);
    assert_int_equal(r.status[4], WSG_EGONE); /* nobody holds it */
    assert_int_equal(e3.calls, 1);
    e1.answer = WSG_EFULL;
    assert_int_equal(bus_cmd_request(bus, "e1", &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.status[5], WSG_EFULL); /* to one edge: its answer */
    assert_int_equal(bus_cmd_request(bus, NULL, &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.status[6], WSG_EGONE); /* to any edge: 0 or gone */
    assert_int_equal(r.calls, 7);
    bus_free(bus);
}

static void test_cmd_bad_input(void **state)
{
    bus_t *bus = open_mem();
    replies_t r;
    replies_init(&r);
    edge_t e1 = {.answer = 0};
    assert_int_equal(bus_cmd_serve(bus, "", on_cmd, &e1), WSG_EINVAL);
    assert_int_equal(bus_cmd_serve(bus, "e1", NULL, &e1), WSG_EINVAL);
    assert_int_equal(bus_cmd_serve(bus, "e1", on_cmd, &e1), 0);
    bus_cmd_t c = {.op = 99, .conn_id = "c1"};
    assert_int_equal(bus_cmd_request(bus, "e1", &c, on_reply, &r), WSG_EINVAL);
    c = (bus_cmd_t){.op = BUS_CMD_SUBSCRIBE, .conn_id = "c1"}; /* no channel */
    assert_int_equal(bus_cmd_request(bus, "e1", &c, on_reply, &r), WSG_EINVAL);
    c = (bus_cmd_t){.op = BUS_CMD_SEND, .conn_id = NULL};
    assert_int_equal(bus_cmd_request(bus, "e1", &c, on_reply, &r), WSG_EINVAL);
    assert_int_equal(r.calls, 0);
    assert_int_equal(e1.calls, 0);
    bus_free(bus);
}

typedef struct {
    bus_reply_t *r;
    int status;
} late_t;

static void *reply_later(void *arg)
{
    late_t *l = arg;
    bus_cmd_reply(l->r, l->status);
    return NULL;
}

static void test_cmd_reply_from_other_thread(void **state)
{
    bus_t *bus = open_mem();
    edge_t e1 = {.answer = 1};
    replies_t r;
    replies_init(&r);
    assert_int_equal(bus_cmd_serve(bus, "e1", on_cmd, &e1), 0);
    assert_int_equal(bus_start(bus), 0);
    bus_cmd_t c = send_cmd("q");
    assert_int_equal(bus_cmd_request(bus, "e1", &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.calls, 0);
    assert_non_null(e1.held);
    late_t l = {.r = e1.held, .status = WSG_EFULL};
    pthread_t tid;
    pthread_create(&tid, NULL, reply_later, &l);
    pthread_join(tid, NULL);
    assert_int_equal(wait_replies(&r, 1), 1);
    assert_int_equal(r.status[0], WSG_EFULL);
    bus_free(bus);
}

static void test_cmd_timeout_then_late_reply(void **state)
{
    bus_t *bus = open_mem();
    bus_inproc_tune(bus, 0, 0, 150);
    edge_t e1 = {.answer = 1}, e2 = {.answer = 1};
    replies_t r;
    replies_init(&r);
    assert_int_equal(bus_cmd_serve(bus, "e1", on_cmd, &e1), 0);
    assert_int_equal(bus_start(bus), 0);
    bus_cmd_t c = send_cmd("slow");
    assert_int_equal(bus_cmd_request(bus, "e1", &c, on_reply, &r), 0);
    assert_int_equal(wait_replies(&r, 1), 1);
    assert_int_equal(r.status[0], WSG_ETIMEOUT);
    late_t l = {.r = e1.held, .status = 0};
    pthread_t tid;
    pthread_create(&tid, NULL, reply_later, &l); /* ignored, and freed safely */
    pthread_join(tid, NULL);
    /* any edge, one answers EGONE and one not at all: WSG_EGONE at the
     * deadline, exactly once (bus.h's any-edge rule) */
    assert_int_equal(bus_cmd_serve(bus, "e2", on_cmd, &e2), 0);
    assert_int_equal(bus_cmd_request(bus, NULL, &c, on_reply, &r), 0);
    settle(bus);
    bus_cmd_reply(e1.held, WSG_EGONE);
    assert_int_equal(wait_replies(&r, 2), 2);
    assert_int_equal(r.status[1], WSG_EGONE);
    bus_cmd_reply(e2.held, 0);
    usleep(300 * 1000); /* a second callback would show up here */
    assert_int_equal(r.calls, 2);
    bus_free(bus);
}

typedef struct {
    int calls;
    char last_channel[64], last_route[64], last_exclude[64], last_data[64];
    int last_binary;
} pubsink_t;

static void on_publish(void *ud, const bus_publish_t *p)
{
    pubsink_t *s = ud;
    s->calls++;
    snprintf(s->last_channel, sizeof s->last_channel, "%s", p->channel ? p->channel : "(bcast)");
    snprintf(s->last_route, sizeof s->last_route, "%s", p->route ? p->route : "(all)");
    snprintf(s->last_exclude, sizeof s->last_exclude, "%s", p->exclude ? p->exclude : "-");
    snprintf(s->last_data, sizeof s->last_data, "%.*s", (int)p->len, (const char *)p->data);
    s->last_binary = p->binary;
}

static void test_publish_interest(void **state)
{
    bus_t *bus = open_mem();
    pubsink_t s = {0};
    assert_int_equal(bus_publish_serve(bus, on_publish, &s), 0);
    assert_int_equal(bus_start(bus), 0);
    bus_publish_t p = {.channel = "room", .data = (const unsigned char *)"hi", .len = 2};
    assert_int_equal(bus_publish(bus, &p), 0);
    settle(bus);
    assert_int_equal(s.calls, 0); /* no interest yet */
    assert_int_equal(bus_channel_interest(bus, "room", 1), 0);
    assert_int_equal(bus_channel_interest(bus, "room", 1), 0);
    p.exclude = "c3";
    assert_int_equal(bus_publish(bus, &p), 0);
    settle(bus);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.last_channel, "room");
    assert_string_equal(s.last_exclude, "c3");
    assert_string_equal(s.last_data, "hi");
    bus_publish_t other = {.channel = "lobby", .data = (const unsigned char *)"x", .len = 1};
    assert_int_equal(bus_publish(bus, &other), 0);
    settle(bus);
    assert_int_equal(s.calls, 1);
    assert_int_equal(bus_channel_interest(bus, "room", 0), 0);
    assert_int_equal(bus_publish(bus, &p), 0);
    settle(bus);
    assert_int_equal(s.calls, 2); /* one declaration left */
    assert_int_equal(bus_channel_interest(bus, "room", 0), 0);
    assert_int_equal(bus_publish(bus, &p), 0);
    settle(bus);
    assert_int_equal(s.calls, 2);
    assert_int_equal(bus_channel_interest(bus, "room", 0), WSG_ENOTFOUND);
    assert_int_equal(bus_channel_interest(bus, "", 1), WSG_EINVAL);
    p.channel = "";
    assert_int_equal(bus_publish(bus, &p), WSG_EINVAL);
    bus_free(bus);
}

static void test_interest_many_channels(void **state)
{
    bus_t *bus = open_mem();
    pubsink_t s = {0};
    assert_int_equal(bus_publish_serve(bus, on_publish, &s), 0);
    char name[32];
    for (int i = 0; i < 5000; i++) { /* grows the hash set several times */
        snprintf(name, sizeof name, "ch-%d", i);
        assert_int_equal(bus_channel_interest(bus, name, 1), 0);
    }
    for (int i = 0; i < 5000; i += 2) {
        snprintf(name, sizeof name, "ch-%d", i);
        assert_int_equal(bus_channel_interest(bus, name, 0), 0);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "ch-%d", i);
        bus_publish_t p = {.channel = name, .data = (const unsigned char *)"", .len = 0};
        assert_int_equal(bus_publish(bus, &p), 0);
    }
    settle(bus);
    assert_int_equal(s.calls, 2500);
    bus_free(bus);
}

static void test_broadcast_always(void **state)
{
    bus_t *bus = open_mem();
    pubsink_t s1 = {0}, s2 = {0};
    assert_int_equal(bus_publish_serve(bus, on_publish, &s1), 0);
    assert_int_equal(bus_publish_serve(bus, on_publish, &s2), 0);
    bus_publish_t p = {
        .route = "/game", .data = (const unsigned char *)"\x01\x02", .len = 2, .binary = 1};
    assert_int_equal(bus_publish(bus, &p), 0);
    settle(bus);
    assert_int_equal(s1.calls, 1);
    assert_int_equal(s2.calls, 1);
    assert_string_equal(s1.last_channel, "(bcast)");
    assert_string_equal(s1.last_route, "/game");
    assert_int_equal(s1.last_binary, 1);
    p.route = NULL;
    assert_int_equal(bus_publish(bus, &p), 0);
    settle(bus);
    assert_string_equal(s2.last_route, "(all)");
    bus_free(bus);
}

static void test_many_edges_and_handlers(void **state)
{
    bus_t *bus = open_mem();
    edge_t e[12];
    pubsink_t ps[10];
    replies_t r;
    replies_init(&r);
    char id[16];
    for (int i = 0; i < 12; i++) {
        e[i] = (edge_t){.answer = i == 11 ? 0 : WSG_EGONE};
        snprintf(id, sizeof id, "edge-%d", i);
        assert_int_equal(bus_cmd_serve(bus, id, on_cmd, &e[i]), 0);
    }
    for (int i = 0; i < 10; i++) {
        ps[i] = (pubsink_t){0};
        assert_int_equal(bus_publish_serve(bus, on_publish, &ps[i]), 0);
    }
    assert_int_equal(bus_start(bus), 0);
    bus_cmd_t c = send_cmd("m");
    assert_int_equal(bus_cmd_request(bus, NULL, &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status[0], 0); /* the last edge holds it */
    for (int i = 0; i < 12; i++)
        assert_int_equal(e[i].calls, 1);
    assert_int_equal(bus_cmd_request(bus, "edge-7", &c, on_reply, &r), 0);
    settle(bus);
    assert_int_equal(r.status[1], WSG_EGONE);
    assert_int_equal(e[7].calls, 2);
    bus_publish_t p = {.data = (const unsigned char *)"b", .len = 1};
    assert_int_equal(bus_publish(bus, &p), 0);
    settle(bus);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ps[i].calls, 1);
    bus_free(bus);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    char ids[8][32];
    int leaving[8];
    int64_t at[8];
    pthread_t thread;
} hbsink_t;

static void on_heartbeat(void *ud, const char *edge_id, int64_t at_ms, int leaving)
{
    hbsink_t *h = ud;
    pthread_mutex_lock(&h->mu);
    if (h->n < 8) {
        snprintf(h->ids[h->n], sizeof h->ids[0], "%s", edge_id);
        h->leaving[h->n] = leaving;
        h->at[h->n] = at_ms;
    }
    h->n++;
    h->thread = pthread_self();
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static int wait_hb(hbsink_t *h, int want)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 20;
    pthread_mutex_lock(&h->mu);
    while (h->n < want && pthread_cond_timedwait(&h->cv, &h->mu, &ts) == 0)
        ;
    int n = h->n;
    pthread_mutex_unlock(&h->mu);
    return n;
}

static void test_heartbeats(void **state)
{
    bus_t *bus = open_mem();
    static hbsink_t a, b;
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    assert_int_equal(bus_heartbeat_serve(bus, on_heartbeat, &a), 0);
    assert_int_equal(bus_heartbeat_serve(bus, on_heartbeat, &b), 0);
    assert_int_equal(bus_start(bus), 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    assert_int_equal(bus_heartbeat(bus, "edge-a", 0), 0);
    assert_int_equal(bus_heartbeat(bus, "edge-a", 1), 0);
    assert_int_equal(bus_heartbeat(bus, "", 0), WSG_EINVAL);
    assert_int_equal(wait_hb(&a, 2), 2);
    assert_int_equal(wait_hb(&b, 2), 2);
    assert_string_equal(a.ids[0], "edge-a");
    assert_int_equal(a.leaving[0], 0);
    assert_int_equal(a.leaving[1], 1);
    assert_string_equal(b.ids[1], "edge-a");
    assert_true(a.at[0] >= (int64_t)now.tv_sec * 1000 - 1000); /* wall-clock ms */
    assert_false(pthread_equal(a.thread, pthread_self()));     /* a bus thread */
    bus_free(bus);
}

/* A loopback port nobody listens on: bound to port 0, then released. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_open_by_url(void **state)
{
    bus_t *bus = (bus_t *)&bus;
    char err[256] = "", url[128];
    /* a nats:// URL selects the NATS bus; with no server there it fails
     * with WSG_EBUS, and the credentials in the URL are never echoed */
    snprintf(url, sizeof url, "nats://user:s3cret@127.0.0.1:%d", closed_port());
    bus_opts_t o = {.url = url, .name = "test"};
    assert_int_equal(bus_open(&bus, &o, err, sizeof err), WSG_EBUS);
    assert_null(bus);
    assert_non_null(strstr(err, "cannot connect to NATS"));
    assert_null(strstr(err, "s3cret"));
    o.url = "http://user:s3cret@127.0.0.1:4222";
    assert_int_equal(bus_open(&bus, &o, err, sizeof err), WSG_EINVAL);
    assert_non_null(strstr(err, "unsupported URL"));
    assert_null(strstr(err, "s3cret"));
    assert_int_equal(bus_open(&bus, NULL, err, sizeof err), 0); /* in-process, in memory */
    assert_int_equal(bus_healthy(bus), 0);                      /* not started */
    assert_int_equal(bus_start(bus), 0);
    assert_int_equal(bus_healthy(bus), 1);
    bus_free(bus);
    o.url = "";
    o.queue_path = "/nonexistent-dir/q.db";
    assert_int_equal(bus_open(&bus, &o, err, sizeof err), WSG_EBUS);
    assert_null(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_in_order_off_caller),
        cmocka_unit_test(test_cmd_any_edge_and_gone),
        cmocka_unit_test(test_cmd_bad_input),
        cmocka_unit_test(test_cmd_reply_from_other_thread),
        cmocka_unit_test(test_cmd_timeout_then_late_reply),
        cmocka_unit_test(test_publish_interest),
        cmocka_unit_test(test_interest_many_channels),
        cmocka_unit_test(test_broadcast_always),
        cmocka_unit_test(test_many_edges_and_handlers),
        cmocka_unit_test(test_heartbeats),
        cmocka_unit_test(test_open_by_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
