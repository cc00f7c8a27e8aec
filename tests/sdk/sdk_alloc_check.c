/* SPDX-License-Identifier: MIT */
/*
 * sdk_alloc_check.c — allocation-failure injection on every public
 * function of libwsgate (jansson's "chaos" test, SQLite's malloc faults).
 *
 * The program replaces malloc/calloc/realloc (glibc allows it; every
 * library in the process, libcurl, jansson, OpenSSL and libjwt included,
 * then allocates through them) and runs each scenario again and again,
 * failing its 1st, 2nd, ... allocation, until a run completes without
 * reaching the failure point. Each run must return a status from the map
 * (never crash) and free every block it allocated (no leak on any error
 * path: blocks are tracked with their call stacks; OpenSSL's own caches
 * are exempt); the complete run must return the expected status. ASan replaces malloc itself, so
 * this program is not built in a -DWSGATE_SANITIZE=ON tree (the other SDK tests run there).
 *
 * usage: sdk_alloc_check DATA_DIR [API_URL API_SECRET]
 * With an API URL the control-API calls are injected too (run by
 * test_sdk_client.py against a real gateway).
 */
#include <dlfcn.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wsgate/wsgate.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static long fail_at = -1; /* index of the allocation to fail; -1: none */
static long n_allocs;
static _Thread_local int in_hook;

/* Blocks allocated during a run and not freed yet, with where from. */
#define LIVE_MAX (1 << 16)
#define BT_MAX 10
static struct live {
    void *p;
    int n;
    void *bt[BT_MAX];
} live[LIVE_MAX];
static int tracking;
static int live_lock; /* libcurl's resolver thread allocates too */

static void lock(void)
{
    while (__atomic_exchange_n(&live_lock, 1, __ATOMIC_ACQUIRE))
        ;
}

static void unlock(void)
{
    __atomic_store_n(&live_lock, 0, __ATOMIC_RELEASE);
}

static size_t slot_of(void *p)
{
    return ((size_t)p >> 4) * 2654435761u % LIVE_MAX;
}

static void track(void *p)
{
    if (!tracking || !p || in_hook)
        return;
    in_hook = 1;
    void *bt[BT_MAX];
    int n = backtrace(bt, BT_MAX);
    lock();
    for (size_t i = slot_of(p), k = 0; k < LIVE_MAX; k++, i = (i + 1) % LIVE_MAX)
        if (!live[i].p) {
            live[i].p = p;
            live[i].n = n;
            memcpy(live[i].bt, bt, sizeof bt);
            break;
        }
    unlock();
    in_hook = 0;
}

static void untrack(void *p)
{
    if (!tracking || !p)
        return;
    lock();
    for (size_t i = slot_of(p), k = 0; k < LIVE_MAX; k++, i = (i + 1) % LIVE_MAX)
        if (live[i].p == p) {
            live[i].p = NULL; /* no tombstones: a lookup probes until it finds p */
            break;
        }
    unlock();
}

/* 1 when a frame of the current stack (past the hook) is in library lib. */
static int called_from(const char *lib)
{
    void *bt[24];
    int n = backtrace(bt, 24), found = 0;
    for (int f = 2; f < n && !found; f++) {
        Dl_info di;
        found = dladdr(bt[f], &di) && di.dli_fname && strstr(di.dli_fname, lib);
    }
    return found;
}

/* libjwt 1.10 dereferences NULL when an allocation fails inside
 * jwt_encode_str() (this test found it; the SDK mints through it), so
 * allocations made by libjwt itself are never failed here. */
static int should_fail(void)
{
    if (fail_at < 0 || in_hook)
        return 0;
    in_hook = 1;
    int jwt = called_from("libjwt");
    in_hook = 0;
    if (jwt)
        return 0;
    return __atomic_fetch_add(&n_allocs, 1, __ATOMIC_RELAXED) == fail_at;
}

void *malloc(size_t n)
{
    void *p = should_fail() ? NULL : __libc_malloc(n);
    track(p);
    return p;
}

void *calloc(size_t a, size_t b)
{
    void *p = should_fail() ? NULL : __libc_calloc(a, b);
    track(p);
    return p;
}

void *realloc(void *q, size_t n)
{
    if (should_fail())
        return NULL; /* q stays valid and tracked */
    void *p = __libc_realloc(q, n);
    if (p) {
        untrack(q);
        track(p);
    }
    return p;
}

void free(void *p)
{
    untrack(p);
    __libc_free(p);
}

/* A block still live after a run is a leak unless OpenSSL or the dynamic
 * loader allocated it: OpenSSL 3 keeps per-thread error queues and a
 * method cache that a failed fetch may grow, and glibc caches the TLS of
 * finished threads (libcurl's resolver threads) for the next one. */
static int leaks(const char *name, long n)
{
    int bad = 0;
    in_hook = 1;
    for (size_t i = 0; i < LIVE_MAX; i++) {
        if (!live[i].p)
            continue;
        int openssl = 0;
        for (int f = 1; f < live[i].n && !openssl; f++) {
            Dl_info di;
            openssl = dladdr(live[i].bt[f], &di) && di.dli_fname &&
                      (strstr(di.dli_fname, "libcrypto") || strstr(di.dli_fname, "ld-linux"));
        }
        if (!openssl) {
            fprintf(stderr, "FAIL %s: allocation %ld failed: block %p leaked, from\n", name, n,
                    live[i].p);
            backtrace_symbols_fd(live[i].bt, live[i].n, 2);
            bad = 1;
        }
        live[i].p = NULL;
    }
    in_hook = 0;
    return bad;
}

static char data_dir[512], *api_url, *api_secret, ec_key[8192];

static int known(wsgate_status st)
{
#define KNOWN(n, num, msg)                                                                         \
    if (st == WSGATE_##n)                                                                          \
        return 1;
    WSGATE_STATUS_MAP(KNOWN)
#undef KNOWN
    return 0;
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        wsgate_status st_ = (call);                                                                \
        if (st_ != WSGATE_OK)                                                                      \
            return st_;                                                                            \
    } while (0)

static wsgate_status sc_webhook(void)
{
    char sig[WSGATE_SIGNATURE_LEN];
    const char *s = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    TRY(wsgate_webhook_sign(s, "msg_1", 1614265330, "{}", 2, sig, sizeof sig));
    return wsgate_webhook_verify_at(s, "msg_1", "1614265330", sig, "{}", 2, 1614265330, 300);
}

static wsgate_status sc_events(void)
{
    static const char body[] =
        "{\"events\":[{\"id\":\"e1\",\"type\":\"connect\",\"connection_id\":\"c\",\"route\":\"/r\","
        "\"user\":\"u\",\"context\":{\"a\":1},\"seq\":1,\"timestamp\":\"t\",\"remote_addr\":\"x\","
        "\"headers\":{\"h\":\"v\"},\"query\":{\"q\":\"v\"},\"subprotocol\":null,\"channels\":["
        "\"c\"]},"
        "{\"id\":\"e2\",\"type\":\"message\",\"connection_id\":\"c\",\"route\":\"/"
        "r\",\"context\":{},"
        "\"seq\":2,\"timestamp\":\"t\",\"data_base64\":\"AAE=\",\"binary\":true},"
        "{\"id\":\"e3\",\"type\":\"disconnect\",\"connection_id\":\"c\",\"route\":\"/"
        "r\",\"context\":{},"
        "\"seq\":3,\"timestamp\":\"t\",\"code\":1000,\"reason\":\"\",\"initiator\":\"client\"}]}";
    wsgate_events *evs = NULL;
    TRY(wsgate_events_parse(&evs, body, sizeof body - 1));
    int ok = wsgate_events_count(evs) == 3 && wsgate_events_get(evs, 1)->data_len == 2;
    wsgate_events_free(evs);
    return ok ? WSGATE_OK : WSGATE_EPROTO;
}

static wsgate_status sc_response(void)
{
    wsgate_response *r = NULL;
    char *body = NULL;
    TRY(wsgate_response_new(&r));
    wsgate_status st = wsgate_response_send_text(r, "hi");
    if (st == WSGATE_OK)
        st = wsgate_response_send_binary(r, "\x00\x01", 2);
    if (st == WSGATE_OK)
        st = wsgate_response_subscribe(r, "room");
    if (st == WSGATE_OK)
        st = wsgate_response_unsubscribe(r, "room");
    if (st == WSGATE_OK)
        st = wsgate_response_close(r, 4000, "bye");
    if (st == WSGATE_OK)
        st = wsgate_response_body(r, &body, NULL);
    wsgate_free(body);
    wsgate_response_free(r);
    return st;
}

static wsgate_status sc_token(void)
{
    const char *ch[] = {"room.*"};
    wsgate_token_params p = {.alg = WSGATE_HS256,
                             .key = "a-secret-of-at-least-thirty-two-bytes!",
                             .ttl_s = 60,
                             .sub = "u",
                             .scope = "send",
                             .channels = ch,
                             .n_channels = 1,
                             .extra_json = "{\"t\":1}"};
    char *tok = NULL;
    TRY(wsgate_token_mint(&p, &tok));
    wsgate_free(tok);
    p.alg = WSGATE_ES256;
    p.key = ec_key;
    TRY(wsgate_token_mint(&p, &tok));
    wsgate_free(tok);
    return WSGATE_OK;
}

static wsgate_status make_client(wsgate_client **c, const char *url)
{
    wsgate_options *o = NULL;
    const char *ch[] = {"*"};
    TRY(wsgate_options_new(&o));
    wsgate_status st = wsgate_options_set_url(o, url);
    if (st == WSGATE_OK)
        st = wsgate_options_set_signing_key(
            o, WSGATE_HS256, api_secret ? api_secret : "a-secret-of-at-least-thirty-two-bytes!", 0,
            "admin");
    if (st == WSGATE_OK)
        st = wsgate_options_set_channels(o, ch, api_url ? 0 : 1);
    if (st == WSGATE_OK)
        st = wsgate_options_set_issuer(o, NULL, NULL);
    if (st == WSGATE_OK)
        st = wsgate_options_set_token_ttl(o, 600);
    if (st == WSGATE_OK)
        st = wsgate_options_set_timeouts(o, 5000, 2000);
    if (st == WSGATE_OK)
        st = wsgate_options_set_retries(o, 0);
    if (st == WSGATE_OK)
        st = wsgate_client_new(c, o);
    wsgate_options_free(o);
    return st;
}

static wsgate_status sc_client_offline(void)
{
    wsgate_client *c = NULL;
    TRY(make_client(&c, "http://127.0.0.1:1"));
    wsgate_client_free(c);
    wsgate_batch *b = NULL;
    TRY(wsgate_batch_new(&b));
    wsgate_status st = wsgate_batch_send_text(b, "id", "x");
    if (st == WSGATE_OK)
        st = wsgate_batch_subscribe(b, "ch", "id");
    if (st == WSGATE_OK)
        st = wsgate_batch_unsubscribe(b, "ch", "id");
    if (st == WSGATE_OK)
        st = wsgate_batch_publish_text(b, "ch", "x", "id");
    if (st == WSGATE_OK)
        st = wsgate_batch_add(b, "GET", "/v1/channels", NULL, NULL);
    wsgate_batch_free(b);
    return st;
}

/* Network scenarios: one client each (created and freed inside, so the
 * heap must come back to where it was). The expected status of the
 * complete run is what the gateway answers without faults. */
static wsgate_status sc_net_send_gone(void)
{
    wsgate_client *c = NULL;
    TRY(make_client(&c, api_url));
    wsgate_status st = wsgate_send_text(c, "AAAAAAAAAAAAAAAAAAAAAA", "x");
    if (st == WSGATE_EGONE)
        st = wsgate_disconnect(c, "AAAAAAAAAAAAAAAAAAAAAA", 4000, "r");
    if (st == WSGATE_EGONE)
        st = wsgate_subscribe(c, "ch", "AAAAAAAAAAAAAAAAAAAAAA");
    if (st == WSGATE_EGONE)
        st = wsgate_connection_get(c, "AAAAAAAAAAAAAAAAAAAAAA", &(wsgate_connection *){NULL});
    wsgate_client_free(c);
    return st;
}

static wsgate_status sc_net_reads(void)
{
    wsgate_client *c = NULL;
    wsgate_page *p = NULL;
    wsgate_conn_iter *it = NULL;
    const wsgate_connection *conn;
    TRY(make_client(&c, api_url));
    wsgate_status st = wsgate_health(c, 1);
    if (st == WSGATE_OK)
        st = wsgate_channels(c, "x", 10, NULL, &p);
    wsgate_page_free(p);
    p = NULL;
    if (st == WSGATE_OK)
        st = wsgate_channel_members(c, "x", 10, NULL, &p);
    wsgate_page_free(p);
    p = NULL;
    if (st == WSGATE_OK)
        st = wsgate_dead_letters(c, NULL, 10, NULL, &p);
    wsgate_page_free(p);
    if (st == WSGATE_OK)
        st = wsgate_conn_iter_new(&it, c, &(wsgate_list_query){.limit = 1});
    while (st == WSGATE_OK)
        st = wsgate_conn_iter_next(it, &conn);
    wsgate_conn_iter_free(it);
    wsgate_client_free(c);
    return st == WSGATE_EDONE ? WSGATE_OK : st;
}

static wsgate_status sc_net_writes(void)
{
    wsgate_client *c = NULL;
    wsgate_batch *b = NULL;
    int64_t n = 0;
    TRY(make_client(&c, api_url));
    wsgate_status st = wsgate_publish(c, "x", WSGATE_BINARY, "\x00", 1, "id");
    if (st == WSGATE_OK)
        st = wsgate_broadcast(c, "/none", WSGATE_TEXT, "x", 1);
    if (st == WSGATE_OK)
        st = wsgate_unsubscribe(c, "x", "AAAAAAAAAAAAAAAAAAAAAA");
    if (st == WSGATE_OK)
        st = wsgate_user_send(c, "nobody", WSGATE_TEXT, "x", 1, &n);
    if (st == WSGATE_OK)
        st = wsgate_user_disconnect(c, "nobody", 0, NULL);
    if (st == WSGATE_OK)
        st = wsgate_batch_new(&b);
    if (st == WSGATE_OK)
        st = wsgate_batch_publish_text(b, "x", "y", NULL);
    if (st == WSGATE_OK)
        st = wsgate_batch_run(c, b);
    wsgate_batch_free(b);
    if (st == WSGATE_OK)
        st = wsgate_dead_letter_replay(c, "evt_none") == WSGATE_ENOTFOUND ? WSGATE_OK
                                                                          : WSGATE_EPROTO;
    wsgate_client_free(c);
    return st;
}

static int inject(const char *name, wsgate_status (*fn)(void), wsgate_status want)
{
    wsgate_status st = fn(); /* warm-up: lazy one-time state of the libraries */
    if (st != want) {
        fprintf(stderr, "FAIL %s: without faults got %s, want %s\n", name, wsgate_strerror(st),
                wsgate_strerror(want));
        return 1;
    }
    for (long n = 0;; n++) {
        n_allocs = 0;
        tracking = 1;
        fail_at = n;
        st = fn();
        fail_at = -1;
        tracking = 0;
        if (!known(st)) {
            fprintf(stderr, "FAIL %s: allocation %ld failed: unknown status %d\n", name, n, st);
            return 1;
        }
        if (leaks(name, n))
            return 1;
        if (n_allocs <= n) { /* the fault was never reached: a complete run */
            if (st != want) {
                fprintf(stderr, "FAIL %s: complete run got %s\n", name, wsgate_strerror(st));
                return 1;
            }
            printf("%s: %ld allocations, each failed once: ok\n", name, n);
            return 0;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: %s DATA_DIR [API_URL API_SECRET]\n", argv[0]);
        return 2;
    }
    snprintf(data_dir, sizeof data_dir, "%s", argv[1]);
    char path[600];
    snprintf(path, sizeof path, "%s/keys/ec256_private.pem", data_dir);
    FILE *f = fopen(path, "rb");
    if (!f || fread(ec_key, 1, sizeof ec_key - 1, f) == 0) {
        fprintf(stderr, "cannot read %s\n", path);
        return 2;
    }
    fclose(f);
    void *bt[4];
    backtrace(bt, 4); /* loads libgcc's unwinder now, not inside a run */
    int bad = 0;
    if (argc == 2) {
        bad |= inject("webhook sign and verify", sc_webhook, WSGATE_OK);
        bad |= inject("events parse", sc_events, WSGATE_OK);
        bad |= inject("response actions", sc_response, WSGATE_OK);
        bad |= inject("token mint HS256 and ES256", sc_token, WSGATE_OK);
        bad |= inject("options, client, batch building", sc_client_offline, WSGATE_OK);
    } else {
        api_url = argv[2];
        api_secret = argv[3];
        bad |= inject("send, disconnect, subscribe, get of a gone connection", sc_net_send_gone,
                      WSGATE_EGONE);
        bad |=
            inject("health, channels, members, dead letters, iteration", sc_net_reads, WSGATE_OK);
        bad |= inject("publish, broadcast, unsubscribe, user calls, batch, replay", sc_net_writes,
                      WSGATE_OK);
    }
    puts(bad ? "FAILED" : "ALL OK");
    return bad;
}
