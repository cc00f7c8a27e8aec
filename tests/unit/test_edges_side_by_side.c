/* SPDX-License-Identifier: MIT */
/*
 * test_edges_side_by_side.c — no process-wide edge: two edges (ids "ea" and
 * "eb") run in one process on one in-process bus, each with a real
 * WebSocket client. Each client's connect event names its own edge; a
 * command sent to one edge reaches that edge's client only; freeing one
 * edge (which unregisters it from the bus, waiting for its callbacks) leaves
 * the other serving, and commands to the freed one answer WSG_EGONE.
 * Before, the second edge_new() failed with "one edge per process".
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "common/config.h"
#include "common/err.h"
#include "ws-edge/edge.h"

typedef struct {
    pthread_mutex_t mu;
    int n;
    char conn[8][64], edge[8][64];
} conns_t;

static void on_event(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt)
{
    conns_t *c = ud;
    (void)attempt;
    pthread_mutex_lock(&c->mu);
    if (ev->type == BUS_EV_CONNECT && c->n < 8) {
        snprintf(c->conn[c->n], sizeof c->conn[0], "%s", ev->conn_id);
        snprintf(c->edge[c->n], sizeof c->edge[0], "%s", ev->edge_id ? ev->edge_id : "");
        c->n++;
    }
    pthread_mutex_unlock(&c->mu);
    (void)d; /* left undone: the bus is freed at the end of the test */
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, status;
} reply_t;

static void on_reply(void *ud, int status)
{
    reply_t *r = ud;
    pthread_mutex_lock(&r->mu);
    r->status = status;
    r->n++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static int request(bus_t *bus, const char *edge, const bus_cmd_t *c)
{
    reply_t r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    assert_int_equal(bus_cmd_request(bus, edge, c, on_reply, &r), 0);
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&r.mu);
        int n = r.n;
        pthread_mutex_unlock(&r.mu);
        if (n)
            return r.status;
        usleep(10000);
    }
    fail_msg("no reply from %s", edge ? edge : "(any)");
    return 0;
}

static void *run_edge(void *arg)
{
    edge_run(arg);
    return NULL;
}

static int ws_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /chat HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     port);
    assert_int_equal(write(fd, req, (size_t)n), n);
    char buf[1024];
    size_t got = 0;
    while (got < sizeof buf - 1) { /* the response head, byte by byte: no frame is read */
        ssize_t k = read(fd, buf + got, 1);
        assert_true(k == 1);
        got++;
        buf[got] = '\0';
        if (got >= 4 && strcmp(buf + got - 4, "\r\n\r\n") == 0)
            break;
    }
    assert_non_null(strstr(buf, " 101 "));
    return fd;
}

/* Reads one unmasked text frame (short payload) into out. */
static void ws_read_text(int fd, char *out, size_t cap)
{
    unsigned char h[2];
    assert_int_equal(read(fd, h, 2), 2);
    assert_int_equal(h[0], 0x81);
    size_t len = h[1] & 0x7f;
    assert_true(len < 126 && len < cap);
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, out + got, len - got);
        assert_true(k > 0);
        got += (size_t)k;
    }
    out[len] = '\0';
}

static wsg_config_t *config_for(const char *id)
{
    char yaml[1024], err[256] = "";
    snprintf(yaml, sizeof yaml,
             "edge:\n  id: %s\n  listen: 127.0.0.1:0\n  threads: 1\n"
             "routes:\n  - path: /chat\n    backend: http://127.0.0.1:9/events\n"
             "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
             "    auth: {required: false}\n",
             id);
    wsg_config_t *cfg = NULL;
    if (wsg_config_load_string(&cfg, yaml, "t.yaml", err, sizeof err) != 0)
        fail_msg("config: %s", err);
    return cfg;
}

static const char *conn_of(conns_t *c, const char *edge)
{
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&c->mu);
        for (int k = 0; k < c->n; k++)
            if (strcmp(c->edge[k], edge) == 0) {
                pthread_mutex_unlock(&c->mu);
                return c->conn[k];
            }
        pthread_mutex_unlock(&c->mu);
        usleep(10000);
    }
    fail_msg("no connect event from edge %s", edge);
    return NULL;
}

static void test_two_edges_one_bus(void **state)
{
    (void)state;
    char err[256] = "";
    bus_t *bus = NULL;
    bus_opts_t o = {.url = ""};
    assert_int_equal(bus_open(&bus, &o, err, sizeof err), 0);
    conns_t conns = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(bus_event_subscribe(bus, "test", BUS_EV_ALL, on_event, &conns), 0);
    wsg_config_t *ca = config_for("ea"), *cb = config_for("eb"), *cc = config_for("ea");
    edge_t *ea = NULL, *eb = NULL, *dup = NULL;
    if (edge_new(&ea, ca, bus, err, sizeof err) != 0)
        fail_msg("edge ea: %s", err);
    if (edge_new(&eb, cb, bus, err, sizeof err) != 0)
        fail_msg("edge eb: %s", err); /* was: "one edge per process" */
    /* one id is still served once per bus */
    assert_int_equal(edge_new(&dup, cc, bus, err, sizeof err), WSG_EEXISTS);
    assert_int_equal(bus_start(bus), 0);
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, run_edge, ea), 0);
    assert_int_equal(pthread_create(&tb, NULL, run_edge, eb), 0);

    int fa = ws_connect(edge_port(ea)), fb = ws_connect(edge_port(eb));
    char ida[64], idb[64], got[128];
    snprintf(ida, sizeof ida, "%s", conn_of(&conns, "ea"));
    snprintf(idb, sizeof idb, "%s", conn_of(&conns, "eb"));

    bus_cmd_t send = {
        .op = BUS_CMD_SEND, .conn_id = ida, .data = (const unsigned char *)"to-a", .len = 4};
    assert_int_equal(request(bus, "ea", &send), 0);
    ws_read_text(fa, got, sizeof got);
    assert_string_equal(got, "to-a");
    assert_int_equal(request(bus, "eb", &send), WSG_EGONE); /* eb does not hold it */
    send.conn_id = idb;
    send.data = (const unsigned char *)"to-b";
    assert_int_equal(request(bus, NULL, &send), 0); /* any edge: eb holds it */
    ws_read_text(fb, got, sizeof got);
    assert_string_equal(got, "to-b");

    /* freeing ea leaves eb serving */
    edge_stop(ea);
    pthread_join(ta, NULL);
    edge_free(ea);
    bus_cmd_t holds = {.op = BUS_CMD_HOLDS, .conn_id = ida};
    assert_int_equal(request(bus, "ea", &holds), WSG_EGONE);
    send.data = (const unsigned char *)"still";
    send.len = 5;
    assert_int_equal(request(bus, "eb", &send), 0);
    ws_read_text(fb, got, sizeof got);
    assert_string_equal(got, "still");

    edge_stop(eb);
    pthread_join(tb, NULL);
    edge_free(eb);
    close(fa);
    close(fb);
    bus_free(bus);
    wsg_config_free(ca);
    wsg_config_free(cb);
    wsg_config_free(cc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_edges_one_bus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
