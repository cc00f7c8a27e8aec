/* SPDX-License-Identifier: MIT */
/*
 * bus_inproc_bench — throughput and latency of the in-process bus's durable
 * event path: publish -> group commit to SQLite (WAL) -> ack -> delivery to
 * the "dispatch" group -> bus_event_done(). Runs once per thread count
 * (default 1 and 100 publishing threads), each thread one connection with
 * at most --inflight events published and not yet consumed (an edge's
 * clients do not send unboundedly either), and prints one line each:
 *
 *   threads=100 events=200000 secs=1.83 events_per_s=109000 p50_ms=.. p99_ms=.. max_ms=..
 *
 * Latency is publish -> consumer callback, on the monotonic clock. Without
 * --rate the publishers go as fast as the window allows, so latency is
 * mostly queueing (Little's law: inflight / throughput); with --rate R they
 * send R events/s in total on a fixed schedule, which shows the latency at
 * a given load (the target: 20,000/s with p99 <= 20 ms).
 *
 * Then commands, the control API's path to an edge: T caller threads each
 * send a command and wait for its reply (as an API request thread does); the
 * edge's handler queues the reply object to one "edge" thread that replies,
 * as the real edge replies from its lws service thread:
 *
 *   cmds threads=100 cmds=200000 secs=.. cmds_per_s=.. p50_us=.. p99_us=..
 *
 *   bus_inproc_bench [--events N] [--threads 1,100] [--body BYTES] [--inflight N]
 *                    [--rate EVENTS_PER_S] [--cmds N] [--dir DIR]
 */
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"
#include "common/err.h"

typedef struct pub pub_t;

typedef struct {
    bus_t *bus;
    uint64_t *lat_ns; /* one per event, written by the consumer */
    size_t nlat, want;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pub_t *pubs;
    int acks_failed;
} run_t;

struct pub {
    run_t *run;
    int idx, n, inflight_max;
    double interval_ns; /* 0: as fast as the window allows */
    size_t body;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_ack(void *ud, int status)
{
    run_t *r = ud;
    if (status != 0) {
        pthread_mutex_lock(&r->mu);
        r->acks_failed++;
        pthread_mutex_unlock(&r->mu);
    }
}

/* body: "<pub index> <publish ns> xxxx..." */
static void on_event(void *ud, const bus_event_t *ev, bus_delivery_t *d, uint32_t attempt)
{
    run_t *r = ud;
    unsigned idx = 0;
    unsigned long long t0 = 0;
    sscanf(ev->body, "%u %llu", &idx, &t0);
    uint64_t lat = now_ns() - t0;
    bus_event_done(r->bus, d);
    pub_t *p = &r->pubs[idx];
    pthread_mutex_lock(&p->mu);
    if (p->inflight-- == p->inflight_max)
        pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_lock(&r->mu);
    if (r->nlat < r->want)
        r->lat_ns[r->nlat] = lat;
    if (++r->nlat == r->want)
        pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void *pub_main(void *arg)
{
    pub_t *p = arg;
    char conn[32], id[64];
    char *body = malloc(p->body + 64);
    snprintf(conn, sizeof conn, "bench-%d", p->idx);
    uint64_t start = now_ns();
    for (int i = 1; i <= p->n; i++) {
        if (p->interval_ns > 0) {
            uint64_t due = start + (uint64_t)(p->interval_ns * (i - 1)), t = now_ns();
            if (due > t)
                nanosleep(&(struct timespec){.tv_sec = (time_t)((due - t) / 1000000000u),
                                             .tv_nsec = (long)((due - t) % 1000000000u)},
                          NULL);
        }
        pthread_mutex_lock(&p->mu);
        while (p->inflight >= p->inflight_max)
            pthread_cond_wait(&p->cv, &p->mu);
        p->inflight++;
        pthread_mutex_unlock(&p->mu);
        int len = snprintf(body, 64, "%d %llu ", p->idx, (unsigned long long)now_ns());
        memset(body + len, 'x', p->body > (size_t)len ? p->body - (size_t)len : 0);
        size_t blen = p->body > (size_t)len ? p->body : (size_t)len;
        body[blen] = 0;
        snprintf(id, sizeof id, "evt_%d_%d", p->idx, i);
        bus_event_t ev = {.id = id,
                          .type = i == 1 ? BUS_EV_CONNECT : BUS_EV_MESSAGE,
                          .conn_id = conn,
                          .edge_id = "edge-bench",
                          .route = "/bench",
                          .seq = (uint64_t)i,
                          .body = body,
                          .body_len = blen};
        if (bus_event_publish(p->run->bus, &ev, on_ack, p->run) != 0)
            abort();
    }
    free(body);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int run_once(const char *dir, int threads, int events, size_t body, int inflight,
                    double rate)
{
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/bench-%d.queue", dir, threads);
    run_t r = {.want = (size_t)events / (size_t)threads * (size_t)threads};
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    r.lat_ns = calloc(r.want, sizeof *r.lat_ns);
    r.pubs = calloc((size_t)threads, sizeof *r.pubs);
    bus_opts_t o = {.url = "", .queue_path = path};
    int rc = bus_open(&r.bus, &o, err, sizeof err);
    if (rc == 0)
        rc = bus_event_subscribe(r.bus, "dispatch", BUS_EV_ALL, on_event, &r);
    if (rc == 0)
        rc = bus_start(r.bus);
    if (rc != 0) {
        fprintf(stderr, "bus: %s %s\n", wsg_err_name(rc), err);
        return 1;
    }
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    uint64_t t0 = now_ns();
    for (int i = 0; i < threads; i++) {
        pub_t *p = &r.pubs[i];
        *p = (pub_t){.run = &r, .idx = i, .n = events / threads, .body = body};
        p->inflight_max = inflight / threads > 0 ? inflight / threads : 1;
        p->interval_ns = rate > 0 ? 1e9 * threads / rate : 0;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->cv, NULL);
        pthread_create(&tid[i], NULL, pub_main, p);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    pthread_mutex_lock(&r.mu);
    while (r.nlat < r.want)
        pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    double secs = (double)(now_ns() - t0) / 1e9;
    bus_free(r.bus);
    qsort(r.lat_ns, r.want, sizeof *r.lat_ns, cmp_u64);
    printf("threads=%d rate=%.0f events=%zu body=%zu secs=%.2f events_per_s=%.0f p50_ms=%.2f "
           "p99_ms=%.2f max_ms=%.2f acks_failed=%d\n",
           threads, rate, r.want, body, secs, (double)r.want / secs, r.lat_ns[r.want / 2] / 1e6,
           r.lat_ns[r.want * 99 / 100] / 1e6, r.lat_ns[r.want - 1] / 1e6, r.acks_failed);
    fflush(stdout);
    const char *sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char f[600];
        snprintf(f, sizeof f, "%s%s", path, sfx[i]);
        unlink(f);
    }
    free(tid);
    free(r.pubs);
    free(r.lat_ns);
    return r.acks_failed ? 1 : 0;
}

/* ---- commands ------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bus_reply_t **q;
    size_t n, cap;
    int stop;
} edge_q_t;

typedef struct {
    bus_t *bus;
    int n;
    uint64_t *lat_ns;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int replied;
} caller_t;

static void on_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    edge_q_t *e = ud;
    pthread_mutex_lock(&e->mu);
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 256;
        e->q = realloc(e->q, e->cap * sizeof *e->q);
        if (!e->q)
            abort();
    }
    e->q[e->n++] = r;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static void *edge_main(void *arg)
{
    edge_q_t *e = arg;
    bus_reply_t **batch = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&e->mu);
    while (!e->stop || e->n) {
        if (!e->n) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        size_t n = e->n;
        if (n > cap && !(batch = realloc(batch, (cap = n) * sizeof *batch)))
            abort();
        memcpy(batch, e->q, n * sizeof *batch);
        e->n = 0;
        pthread_mutex_unlock(&e->mu);
        for (size_t i = 0; i < n; i++)
            bus_cmd_reply(batch[i], 0);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    free(batch);
    return NULL;
}

static void on_cmd_reply(void *ud, int status)
{
    caller_t *c = ud;
    if (status != 0)
        abort();
    pthread_mutex_lock(&c->mu);
    c->replied = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void *caller_main(void *arg)
{
    caller_t *c = arg;
    bus_cmd_t cmd = {
        .op = BUS_CMD_SEND, .conn_id = "conn-1", .data = (const unsigned char *)"hello", .len = 5};
    for (int i = 0; i < c->n; i++) {
        uint64_t t0 = now_ns();
        pthread_mutex_lock(&c->mu);
        c->replied = 0;
        pthread_mutex_unlock(&c->mu);
        if (bus_cmd_request(c->bus, "edge-1", &cmd, on_cmd_reply, c) != 0)
            abort();
        pthread_mutex_lock(&c->mu);
        while (!c->replied)
            pthread_cond_wait(&c->cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
        c->lat_ns[i] = now_ns() - t0;
    }
    return NULL;
}

static int run_cmds(int threads, int cmds)
{
    bus_t *bus = NULL;
    char err[256] = "";
    static edge_q_t e = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    e.stop = 0;
    int per = cmds / threads, rc = bus_open(&bus, &(bus_opts_t){0}, err, sizeof err);
    if (rc == 0)
        rc = bus_cmd_serve(bus, "edge-1", on_cmd, &e);
    if (rc == 0)
        rc = bus_start(bus);
    if (rc != 0) {
        fprintf(stderr, "bus: %s %s\n", wsg_err_name(rc), err);
        return 1;
    }
    pthread_t etid, *tid = calloc((size_t)threads, sizeof *tid);
    caller_t *cs = calloc((size_t)threads, sizeof *cs);
    uint64_t *lat = calloc((size_t)per * (size_t)threads, sizeof *lat);
    pthread_create(&etid, NULL, edge_main, &e);
    uint64_t t0 = now_ns();
    for (int i = 0; i < threads; i++) {
        cs[i] = (caller_t){.bus = bus, .n = per, .lat_ns = lat + (size_t)i * (size_t)per};
        pthread_mutex_init(&cs[i].mu, NULL);
        pthread_cond_init(&cs[i].cv, NULL);
        pthread_create(&tid[i], NULL, caller_main, &cs[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    double secs = (double)(now_ns() - t0) / 1e9;
    pthread_mutex_lock(&e.mu);
    e.stop = 1;
    pthread_cond_signal(&e.cv);
    pthread_mutex_unlock(&e.mu);
    pthread_join(etid, NULL);
    bus_free(bus);
    size_t n = (size_t)per * (size_t)threads;
    qsort(lat, n, sizeof *lat, cmp_u64);
    printf("cmds threads=%d cmds=%zu secs=%.2f cmds_per_s=%.0f p50_us=%.1f p99_us=%.1f\n", threads,
           n, secs, (double)n / secs, lat[n / 2] / 1e3, lat[n * 99 / 100] / 1e3);
    fflush(stdout);
    free(lat);
    free(cs);
    free(tid);
    free(e.q);
    e.q = NULL;
    e.n = e.cap = 0;
    return 0;
}

int main(int argc, char **argv)
{
    int events = 200000, inflight = 8192, cmds = 200000;
    double rate = 0;
    size_t body = 256;
    const char *threads = "1,100", *dir = NULL;
    static const struct option opts[] = {
        {"events", 1, 0, 'e'}, {"threads", 1, 0, 't'}, {"body", 1, 0, 'b'}, {"inflight", 1, 0, 'i'},
        {"dir", 1, 0, 'd'},    {"rate", 1, 0, 'r'},    {"cmds", 1, 0, 'c'}, {0, 0, 0, 0}};
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        if (c == 'e')
            events = atoi(optarg);
        else if (c == 't')
            threads = optarg;
        else if (c == 'b')
            body = (size_t)atol(optarg);
        else if (c == 'i')
            inflight = atoi(optarg);
        else if (c == 'd')
            dir = optarg;
        else if (c == 'r')
            rate = atof(optarg);
        else if (c == 'c')
            cmds = atoi(optarg);
        else
            return 2;
    }
    char tmp[] = "/tmp/wsg_busbench_XXXXXX";
    if (!dir && !(dir = mkdtemp(tmp))) {
        perror("mkdtemp");
        return 1;
    }
    if (events < 1 || inflight < 1 || body > (1 << 20) || rate < 0 || cmds < 0) {
        fprintf(stderr, "bad --events, --inflight, --body, --rate or --cmds\n");
        return 2;
    }
    int status = 0;
    char *list = strdup(threads);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int n = atoi(t);
        if (n < 1 || n > events) {
            fprintf(stderr, "bad thread count '%s'\n", t);
            status = 2;
            break;
        }
        status |= run_once(dir, n, events, body, inflight, rate);
    }
    free(list);
    list = strdup(threads);
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && cmds && !status;
         t = strtok_r(NULL, ",", &save))
        status |= run_cmds(atoi(t) < cmds ? atoi(t) : cmds, cmds);
    free(list);
    if (dir == tmp)
        rmdir(tmp);
    return status;
}
