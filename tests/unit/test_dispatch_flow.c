/* SPDX-License-Identifier: MIT */
/*
 * test_dispatch_flow.c — the dispatcher end to end inside one process: an
 * in-process bus (in memory), a SQLite store in a temp dir, and a small
 * scripted HTTP backend on a loopback port. Checks per-connection order
 * across retries, the Standard Webhooks signature of every attempt, a 4xx
 * dead letter (attempts, status, backend, body) and exhausted retries.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bus/bus.h"
#include "common/config.h"
#include "common/err.h"
#include "common/metrics.h"
#include "common/whsig.h"
#include "dispatcher/disp_core.h"
#include "dispatcher/dispatch.h"
#include "store/store.h"

#define MAXREQ 64

typedef struct {
    pthread_mutex_t mu;
    int lfd, port;
    int n, total;
    char ids[MAXREQ][64];
    char bodies[MAXREQ][256];
    bool signed_ok[MAXREQ];
    const unsigned char *key;
    size_t key_len;
} server_t;

static server_t srv;

/* The script: "fail2" answers 503 twice, "poison" 400, "doomed" 503 always. */
static int status_for(const char *body, int seen_before)
{
    if (strstr(body, "fail2"))
        return seen_before < 2 ? 503 : 200;
    if (strstr(body, "poison"))
        return 400;
    if (strstr(body, "doomed"))
        return 503;
    return 200;
}

static const char *header(const char *head, const char *name, char *out, size_t n)
{
    const char *p = head;
    size_t l = strlen(name);
    out[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, l) == 0 && p[l] == ':') {
            p += l + 1;
            while (*p == ' ')
                p++;
            size_t k = strcspn(p, "\r\n");
            snprintf(out, n, "%.*s", (int)k, p);
            return out;
        }
    }
    return NULL;
}

static int one_request(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    char *end = NULL;
    while (!(end = strstr(buf, "\r\n\r\n"))) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
    }
    char cl[32], id[64], ts[32], sig[128];
    size_t hlen = (size_t)(end + 4 - buf),
           blen = (size_t)atol(header(buf, "Content-Length", cl, sizeof cl) ? cl : "0");
    while (got < hlen + blen) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    buf[hlen + blen] = '\0';
    header(buf, "webhook-id", id, sizeof id);
    header(buf, "webhook-timestamp", ts, sizeof ts);
    header(buf, "webhook-signature", sig, sizeof sig);
    const char *body = buf + hlen;
    pthread_mutex_lock(&srv.mu);
    srv.total++;
    int seen = 0;
    for (int i = 0; i < srv.n; i++)
        seen += strcmp(srv.ids[i], id) == 0;
    if (srv.n < MAXREQ) {
        snprintf(srv.ids[srv.n], sizeof srv.ids[0], "%s", id);
        snprintf(srv.bodies[srv.n], sizeof srv.bodies[0], "%s", body);
        srv.signed_ok[srv.n] = wsg_whsig_verify(srv.key, srv.key_len, id, atoll(ts), body, blen,
                                                sig, time(NULL), 60) == 0;
        srv.n++;
    }
    pthread_mutex_unlock(&srv.mu);
    char resp[128];
    int st = status_for(body, seen);
    int n = snprintf(resp, sizeof resp, "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n", st);
    if (write(fd, resp, (size_t)n) != n)
        return -1;
    memset(buf, 0, cap);
    return 0;
}

static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = calloc(1, 65536);
    while (buf && one_request(fd, buf, 65536) == 0)
        ;
    free(buf);
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(srv.lfd, NULL, NULL);
        if (fd < 0)
            return NULL;
        pthread_t t;
        pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
}

static void server_start(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof sa;
    pthread_mutex_init(&srv.mu, NULL);
    srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(srv.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(srv.lfd, 64), 0);
    getsockname(srv.lfd, (struct sockaddr *)&sa, &l);
    srv.port = ntohs(sa.sin_port);
    pthread_t t;
    pthread_create(&t, NULL, serve, NULL);
    pthread_detach(t);
}

typedef struct {
    int port;      /* backend port; 0 = the scripted server */
    bool keep_dir; /* world_down leaves the files for a restart */
    char dir[128], store[192], queue[192];
    wsg_config_t *cfg;
    bus_t *bus;
    disp_t *disp;
} world_t;

static void world_up(world_t *w)
{
    char err[512] = "", yaml[1024];
    if (!w->dir[0]) {
        snprintf(w->dir, sizeof w->dir, "/tmp/wsg-disp-XXXXXX");
        assert_non_null(mkdtemp(w->dir));
    }
    snprintf(w->store, sizeof w->store, "sqlite://%s/s.db", w->dir);
    snprintf(w->queue, sizeof w->queue, "%s/q.db", w->dir);
    store_t *st = NULL;
    assert_int_equal(store_open(&st, w->store, err, sizeof err), 0);
    assert_int_equal(store_migrate(st), 0);
    store_free(st);
    snprintf(yaml, sizeof yaml,
             "store: %s\nroutes:\n  - path: /chat\n    backend: http://127.0.0.1:%d/events\n"
             "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
             "    auth: {required: false}\n"
             "    delivery: {backoff_initial: 10ms, backoff_max: 20ms, max_attempts: 3,"
             " timeout: 60s}\n",
             w->store, w->port ? w->port : srv.port);
    int rc = wsg_config_load_string(&w->cfg, yaml, "test.yaml", err, sizeof err);
    if (rc != 0)
        fail_msg("config: %s", err);
    srv.key = w->cfg->routes[0].webhook_key;
    srv.key_len = w->cfg->routes[0].webhook_key_len;
    bus_opts_t o = {.url = "", .queue_path = w->keep_dir ? w->queue : NULL};
    assert_int_equal(bus_open(&w->bus, &o, err, sizeof err), 0);
    assert_int_equal(disp_new(&w->disp, w->cfg, w->bus, err, sizeof err), 0);
    assert_int_equal(bus_start(w->bus), 0);
    assert_int_equal(disp_start(w->disp, err, sizeof err), 0);
}

static void world_down(world_t *w)
{
    disp_stop(w->disp, DISP_STOP_GRACE_MS);
    disp_free(w->disp);
    bus_free(w->bus);
    wsg_config_free(w->cfg);
    if (w->keep_dir)
        return;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
    assert_int_equal(system(cmd), 0);
}

static void publish(world_t *w, const char *conn, uint64_t seq, const char *data)
{
    char id[64], body[200];
    snprintf(id, sizeof id, "evt_%s_%llu", conn, (unsigned long long)seq);
    snprintf(body, sizeof body, "{\"id\":\"%s\",\"type\":\"message\",\"seq\":%llu,\"data\":\"%s\"}",
             id, (unsigned long long)seq, data);
    bus_event_t ev = {.id = id,
                      .type = BUS_EV_MESSAGE,
                      .conn_id = conn,
                      .edge_id = "edge-1",
                      .route = "/chat",
                      .seq = seq,
                      .body = body,
                      .body_len = strlen(body)};
    assert_int_equal(bus_event_publish(w->bus, &ev, NULL, NULL), 0);
}

static int count_of(const char *needle)
{
    int k = 0;
    pthread_mutex_lock(&srv.mu);
    for (int i = 0; i < srv.n; i++)
        k += strstr(srv.bodies[i], needle) != NULL;
    pthread_mutex_unlock(&srv.mu);
    return k;
}

static void wait_count(const char *needle, int n)
{
    for (int i = 0; i < 1000 && count_of(needle) < n; i++)
        usleep(10000);
    assert_int_equal(count_of(needle), n);
}

static void dead_letter(world_t *w, const char *id, store_dead_t *out)
{
    char err[256];
    store_t *st = NULL;
    assert_int_equal(store_open(&st, w->store, err, sizeof err), 0);
    int rc = WSG_ENOTFOUND;
    for (int i = 0; i < 500 && (rc = store_dead_get(st, id, out)) == WSG_ENOTFOUND; i++)
        usleep(10000);
    assert_int_equal(rc, 0);
    store_free(st);
}

static void order_retries_and_dead_letters(void **state)
{
    (void)state;
    world_t w = {0};
    srv.n = 0;
    world_up(&w);
    publish(&w, "A", 1, "A1-fail2");
    publish(&w, "A", 2, "A2-poison");
    publish(&w, "A", 3, "A3-ok");
    publish(&w, "B", 1, "B1-ok");
    wait_count("A3-ok", 1);
    wait_count("B1-ok", 1);
    pthread_mutex_lock(&srv.mu);
    const char *want[] = {"A1-fail2", "A1-fail2", "A1-fail2", "A2-poison", "A3-ok"};
    int k = 0;
    for (int i = 0; i < srv.n; i++) {
        assert_true(srv.signed_ok[i]);
        if (srv.bodies[i][0] && strstr(srv.bodies[i], "\"A")) {
            assert_true(k < 5);
            assert_non_null(strstr(srv.bodies[i], want[k]));
            k++;
        }
    }
    assert_int_equal(k, 5);
    for (int i = 0; i < srv.n; i++) { /* webhook-id is the event id, on every retry too */
        char want_id[80];
        snprintf(want_id, sizeof want_id, "\"id\":\"%s\"", srv.ids[i]);
        assert_non_null(strstr(srv.bodies[i], want_id));
    }
    pthread_mutex_unlock(&srv.mu);
    store_dead_t dl = {0};
    dead_letter(&w, "evt_A_2", &dl);
    assert_int_equal(dl.attempts, 1);
    assert_int_equal(dl.last_status, 400);
    assert_string_equal(dl.conn_id, "A");
    assert_string_equal(dl.route, "/chat");
    assert_non_null(strstr(dl.backend, "/events"));
    assert_non_null(strstr(dl.event_json, "A2-poison"));
    store_dead_clear(&dl);
    world_down(&w);
}

static void exhausted_retries(void **state)
{
    (void)state;
    world_t w = {0};
    srv.n = 0;
    world_up(&w);
    publish(&w, "C", 1, "C1-doomed");
    publish(&w, "C", 2, "C2-ok");
    wait_count("C2-ok", 1);
    assert_int_equal(count_of("C1-doomed"), 3);
    store_dead_t dl = {0};
    dead_letter(&w, "evt_C_1", &dl);
    assert_int_equal(dl.attempts, 3);
    assert_int_equal(dl.last_status, 503);
    store_dead_clear(&dl);
    world_down(&w);
}

/* A backend that never answers: a listening socket nobody accepts on. */
static int hang_port(int *fd)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof sa;
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(*fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(*fd, 1024), 0);
    getsockname(*fd, (struct sockaddr *)&sa, &l);
    return ntohs(sa.sin_port);
}

static int64_t pending_when_steady(void)
{
    int64_t last = -1, v = 0;
    for (int i = 0; i < 100; i++) {
        usleep(50000);
        v = wsg_gauge_value(WSG_G_EVENTS_PENDING);
        if (v == last && v > 0)
            break;
        last = v;
    }
    return v;
}

/* With a backend that hangs, the dispatcher holds at most DISP_MAX_HELD
 * events (the rest wait in the bus); stopping abandons what is in flight;
 * after a restart every event is delivered. */
static void bounded_then_redelivered(void **state)
{
    (void)state;
    enum { CONNS = 100, PER = 90 };
    int hfd;
    world_t w = {.keep_dir = true};
    w.port = hang_port(&hfd);
    int64_t before = wsg_gauge_value(WSG_G_EVENTS_PENDING);
    world_up(&w);
    for (int i = 0; i < CONNS * PER; i++) {
        char c[16];
        snprintf(c, sizeof c, "k%03d", i % CONNS);
        publish(&w, c, (uint64_t)(i / CONNS + 1), "held");
    }
    int64_t held = pending_when_steady() - before;
    assert_true(held > 0);
    assert_true(held <= DISP_MAX_HELD);
    assert_true(CONNS * PER > DISP_MAX_HELD);
    world_down(&w); /* in flight: abandoned; nothing acknowledged */
    close(hfd);
    srv.n = srv.total = 0;
    w.port = 0;
    w.keep_dir = true;
    world_up(&w);
    for (int i = 0; i < 1000 && srv.total < CONNS * PER; i++)
        usleep(10000);
    assert_true(srv.total >= CONNS * PER);
    w.keep_dir = false;
    world_down(&w);
}

int main(void)
{
    server_start();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(order_retries_and_dead_letters),
        cmocka_unit_test(exhausted_retries),
        cmocka_unit_test(bounded_then_redelivered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
