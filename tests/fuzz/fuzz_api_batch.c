/* SPDX-License-Identifier: MIT */
/*
 * fuzz_api_batch.c — libFuzzer target for POST /v1/batch through the
 * control API's own routing (control-api/api_batch.c and, through its
 * items, every handler and body parser: a batch item names any method,
 * path, query, body and content type). The input's first byte picks the
 * token the batch runs under (its scope, and whether its channels claim
 * restricts it); the rest is the request body.
 *
 * The API is real (api_new) on a real SQLite store in a temp dir and the
 * in-process bus; one fake edge answers every command at once (0 for
 * connection ids starting with "c", else gone), so sends, closes and
 * subscriptions run their whole path. Each input is reseeded with one
 * connection c1 on route /chat subscribed to room.1, and one dead letter
 * dl1. MHD is not started: requests are handed to api_route() as api.c
 * does after reading them. The temp dir goes at exit (not after a crash).
 *
 * Checks: every batch is answered (within 30 s) exactly once, with 200 and
 * one result per request, or a 4xx problem.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "control-api/api_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *scopes[] = {"admin",   "send publish subscribe read disconnect",
                               "read",    "send",
                               "publish", "subscribe",
                               "",        "disconnect"};
static char *channel_claims[] = {"room.*", "a"};

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} waiter_t;

static waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
static api_t *api;
static bus_t *bus;
static wsg_config_t *cfg;

/* The fake edge holds every connection whose id starts with 'c'. A
 * subscription change it applies is what the registry would record next
 * (api_registry.c): the API's waiter for it is completed here. */
static void on_cmd(void *ud, const bus_cmd_t *cmd, bus_reply_t *r)
{
    (void)ud;
    int held = cmd->conn_id && cmd->conn_id[0] == 'c';
    if (held && (cmd->op == BUS_CMD_SUBSCRIBE || cmd->op == BUS_CMD_UNSUBSCRIBE))
        api_subwait_applied(api, cmd->conn_id, cmd->channel, cmd->op, 0);
    bus_cmd_reply(r, held ? 0 : WSG_EGONE);
}

static void on_done(api_req_t *r)
{
    (void)r;
    pthread_mutex_lock(&w.mu);
    w.done++;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
}

static char dir[] = "/tmp/wsgate-fuzz-api-XXXXXX";

static void remove_dir(void)
{
    char path[sizeof dir + 300];
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void setup(void)
{
    char yaml[1024], err[512];
    wsg_log_setup("error", "json");
    if (!mkdtemp(dir))
        abort();
    atexit(remove_dir);
    snprintf(yaml, sizeof yaml,
             "store: sqlite://%s/wsgate.db\n"
             "routes:\n"
             "  - path: /chat\n"
             "    backend: http://127.0.0.1:9/events\n"
             "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
             "    auth: {required: false}\n",
             dir);
    store_t *st = NULL;
    bus_opts_t bo = {.url = ""};
    if (wsg_config_load_string(&cfg, yaml, "fuzz.yaml", err, sizeof err) != 0 ||
        store_open(&st, cfg->store, err, sizeof err) != 0 || store_migrate(st) != 0 ||
        bus_open(&bus, &bo, err, sizeof err) != 0 || api_new(&api, cfg, bus, err, sizeof err) ||
        bus_cmd_serve(bus, "fuzz-edge", on_cmd, NULL) != 0 || bus_start(bus) != 0) {
        fprintf(stderr, "fuzz_api_batch: setup failed: %s\n", err);
        abort();
    }
    store_free(st);
}

static void reseed(void)
{
    store_t *st = api_store_get(api);
    int64_t now = (int64_t)time(NULL) * 1000;
    store_conn_t c = {.id = "c1",
                      .route = "/chat",
                      .edge_id = "fuzz-edge",
                      .user = "alice",
                      .context_json = "{}",
                      .remote_addr = "127.0.0.1",
                      .connected_at_ms = now,
                      .last_active_at_ms = now};
    store_dead_t d = {.id = "dl1",
                      .conn_id = "c1",
                      .route = "/chat",
                      .backend = "http://127.0.0.1:9/events",
                      .event_json = "{\"type\":\"message\",\"seq\":2,\"data\":\"x\"}",
                      .attempts = 1,
                      .last_status = 400,
                      .last_error = "HTTP 400",
                      .created_at_ms = now};
    if (store_conn_put(st, &c) != 0 || store_sub_add(st, "room.1", "c1") != 0 ||
        store_dead_put(st, &d) != 0)
        abort();
    api_store_put(api, st);
}

static void wait_done(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        if (pthread_cond_timedwait(&w.cv, &w.mu, &until) != 0) {
            fprintf(stderr, "fuzz_api_batch: a batch was never answered\n");
            abort();
        }
    pthread_mutex_unlock(&w.mu);
}

static void check_answer(const api_req_t *r)
{
    if (r->status == 200) {
        json_t *res = json_object_get(r->resp, "results");
        if (!json_is_array(res) || json_array_size(res) == 0 || json_array_size(res) > 100)
            abort(); /* one result per request, 1..100 */
        return;
    }
    if (r->status < 400 || r->status > 499 || !r->is_problem)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!api)
        setup();
    if (size < 1)
        return 0;
    reseed();
    wsg_claims_t claims = {.sub = "fuzz",
                           .scope = (char *)scopes[data[0] & 7],
                           .channels = data[0] & 8 ? channel_claims : NULL,
                           .n_channels = data[0] & 8 ? 2 : 0};
    api_req_t r = {.a = api,
                   .method = API_POST,
                   .ctype = data[0] & 16 ? "application/json; charset=utf-8" : "application/json",
                   .body = (const char *)data + 1,
                   .body_len = size - 1,
                   .claims = &claims,
                   .done = on_done};
    if (api_split_path("/v1/batch", r.segs, &r.nsegs) != 0)
        abort();
    w.done = 0;
    if (api_route(&r) == API_ASYNC)
        wait_done();
    else if (w.done)
        abort(); /* answered inline and also through done */
    check_answer(&r);
    api_req_clear(&r);
    return 0;
}
