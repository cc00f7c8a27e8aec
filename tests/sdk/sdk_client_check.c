/* SPDX-License-Identifier: MIT */
/*
 * sdk_client_check.c — calls every control-API function of libwsgate
 * against a real gateway and checks each answer; run by
 * test_sdk_client.py, which starts the gateway, holds two WebSocket
 * clients (alice = A, bob = B on /chat, with one dead letter already made)
 * and afterwards checks what those clients received.
 *
 * usage: sdk_client_check API_URL API_SECRET CONN_A CONN_B
 *        sdk_client_check verify WHSEC ID TIMESTAMP SIGNATURE BODY_FILE
 *        sdk_client_check refresh URL SECRET
 *        sdk_client_check replay URL SECRET
 * (refresh: a client with a 10 s token lists channels at 0, 4 and 9 s, so
 * that the test's server sees which token each call carried.)
 * (the second verifies and parses one webhook the gateway really sent and
 * prints "<type> <connection_id> <user> <data>").
 * Prints one line per step; exits 1 at the first failed check.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wsgate/wsgate.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            const wsgate_problem *p_ = wsgate_last_problem();                                      \
            fprintf(stderr, " [last problem: %s http=%d detail=%s]\n",                             \
                    wsgate_strerror(p_->status), p_->http_status, p_->detail ? p_->detail : "-");  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define OK(call) CHECK((call) == WSGATE_OK, "%s", #call)

static const char *A, *B;

static int page_has_member(const wsgate_page *p, const char *id)
{
    for (size_t i = 0; i < wsgate_page_count(p); i++)
        if (strcmp(wsgate_page_member(p, i), id) == 0)
            return 1;
    return 0;
}

static void *sender(void *arg)
{
    wsgate_client *c = arg;
    for (int i = 0; i < 25; i++)
        if (wsgate_send_text(c, A, "par") != WSGATE_OK)
            return (void *)1;
    return NULL;
}

static void sends_and_reads(wsgate_client *c)
{
    OK(wsgate_health(c, 0));
    OK(wsgate_health(c, 1));
    OK(wsgate_send_text(c, A, "t1"));
    OK(wsgate_send(c, A, WSGATE_BINARY, "\x00\x01\xff", 3));
    wsgate_connection *conn = NULL;
    OK(wsgate_connection_get(c, A, &conn));
    CHECK(strcmp(conn->id, A) == 0 && conn->user && strcmp(conn->user, "alice") == 0 &&
              strcmp(conn->route, "/chat") == 0 && conn->connected_at_ms > 0,
          "connection_get fields");
    wsgate_connection_free(conn);
    puts("send, binary send, connection_get: ok");
    /* a shared client on four threads */
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, sender, c) == 0, "pthread_create");
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        CHECK(r == NULL, "a parallel send failed");
    }
    puts("100 sends from 4 threads on one client: ok");
}

static void channels(wsgate_client *c)
{
    OK(wsgate_subscribe(c, "room 1/x", A));
    OK(wsgate_subscribe(c, "room 1/x", B));
    OK(wsgate_subscribe(c, "room 1/x", B)); /* idempotent */
    wsgate_page *p = NULL;
    OK(wsgate_channel_members(c, "room 1/x", 0, NULL, &p));
    CHECK(wsgate_page_count(p) == 2 && page_has_member(p, A) && page_has_member(p, B),
          "members of room 1/x");
    wsgate_page_free(p);
    OK(wsgate_channels(c, "room 1", 0, NULL, &p));
    int64_t members = 0;
    CHECK(wsgate_page_count(p) == 1 &&
              strcmp(wsgate_page_channel(p, 0, &members), "room 1/x") == 0 && members == 2,
          "channels with prefix");
    wsgate_page_free(p);
    OK(wsgate_publish(c, "room 1/x", WSGATE_TEXT, "p1", 2, B)); /* A only */
    OK(wsgate_unsubscribe(c, "room 1/x", B));
    OK(wsgate_unsubscribe(c, "room 1/x", B)); /* idempotent */
    OK(wsgate_channel_members(c, "room 1/x", 0, NULL, &p));
    CHECK(wsgate_page_count(p) == 1 && page_has_member(p, A), "members after unsubscribe");
    wsgate_page_free(p);
    OK(wsgate_broadcast(c, "/chat", WSGATE_TEXT, "b1", 2));
    puts("subscribe, members, channels, publish with exclude, unsubscribe, broadcast: ok");
}

static void lists_and_users(wsgate_client *c)
{
    wsgate_list_query q = {.route = "/chat", .limit = 1};
    wsgate_page *p = NULL;
    OK(wsgate_connections_list(c, &q, &p));
    CHECK(wsgate_page_count(p) == 1 && wsgate_page_next_cursor(p), "first page of one");
    wsgate_page_free(p);
    wsgate_conn_iter *it = NULL;
    OK(wsgate_conn_iter_new(&it, c, &q));
    const wsgate_connection *conn;
    int n = 0, seen_a = 0, seen_b = 0;
    wsgate_status st;
    while ((st = wsgate_conn_iter_next(it, &conn)) == WSGATE_OK) {
        seen_a |= strcmp(conn->id, A) == 0;
        seen_b |= strcmp(conn->id, B) == 0;
        n++;
    }
    CHECK(st == WSGATE_EDONE && n == 2 && seen_a && seen_b, "iterated %d connections", n);
    wsgate_conn_iter_free(it);
    q = (wsgate_list_query){.user = "bob"};
    OK(wsgate_connections_list(c, &q, &p));
    CHECK(wsgate_page_count(p) == 1 && strcmp(wsgate_page_connection(p, 0)->id, B) == 0,
          "list by user");
    wsgate_page_free(p);
    int64_t nconn = -1;
    OK(wsgate_user_send(c, "bob", WSGATE_TEXT, "u1", 2, &nconn));
    CHECK(nconn == 1, "user send reached %lld", (long long)nconn);
    puts("list pages, cursor iteration, list by user, user send: ok");
}

static void batch(wsgate_client *c)
{
    wsgate_batch *b = NULL;
    OK(wsgate_batch_new(&b));
    OK(wsgate_batch_send_text(b, A, "bt"));
    OK(wsgate_batch_subscribe(b, "room2", A));
    OK(wsgate_batch_publish_text(b, "room2", "bp", NULL));
    OK(wsgate_batch_unsubscribe(b, "room2", A));
    OK(wsgate_batch_send_text(b, "no-such-connection", "x"));
    OK(wsgate_batch_add(b, "GET", "/v1/channels?prefix=room2", NULL, NULL));
    OK(wsgate_batch_run(c, b));
    int want[] = {200, 204, 202, 204, 410, 200};
    CHECK(wsgate_batch_count(b) == 6, "batch count");
    for (size_t i = 0; i < 6; i++)
        CHECK(wsgate_batch_item_status(b, i) == want[i], "batch item %zu: %d", i,
              wsgate_batch_item_status(b, i));
    CHECK(wsgate_batch_item_body(b, 5) && strstr(wsgate_batch_item_body(b, 5), "items"),
          "batch GET body");
    wsgate_batch_free(b);
    puts("batch: ok");
}

static void dead_letters(wsgate_client *c)
{
    wsgate_page *p = NULL;
    OK(wsgate_dead_letters(c, "/chat", 0, NULL, &p));
    CHECK(wsgate_page_count(p) >= 1, "a dead letter is listed");
    const char *item = wsgate_page_item_json(p, 0);
    const char *idp = strstr(item, "\"id\":\"");
    CHECK(idp, "dead letter has an id: %s", item);
    char id[128];
    CHECK(sscanf(idp + 6, "%127[^\"]", id) == 1, "dead letter id");
    wsgate_page_free(p);
    OK(wsgate_dead_letter_replay(c, id));
    CHECK(wsgate_dead_letter_replay(c, "evt_does_not_exist") == WSGATE_ENOTFOUND,
          "replay of an unknown id");
    puts("dead letters list and replay: ok");
}

static void errors(wsgate_client *c, const char *url, const char *secret)
{
    CHECK(wsgate_send_text(c, "AAAAAAAAAAAAAAAAAAAAAA", "x") == WSGATE_EGONE, "send to gone");
    const wsgate_problem *pr = wsgate_last_problem();
    CHECK(pr->http_status == 410 && pr->type && strstr(pr->type, "connection-gone") && pr->body,
          "410 problem details");
    /* a read-only token, given fixed */
    wsgate_token_params tp = {.alg = WSGATE_HS256, .key = secret, .ttl_s = 60, .scope = "read"};
    char *tok = NULL;
    OK(wsgate_token_mint(&tp, &tok));
    wsgate_options *o = NULL;
    wsgate_client *ro = NULL;
    OK(wsgate_options_new(&o));
    OK(wsgate_options_set_url(o, url));
    OK(wsgate_options_set_token(o, tok));
    OK(wsgate_client_new(&ro, o));
    wsgate_options_free(o);
    wsgate_free(tok);
    CHECK(wsgate_send_text(ro, A, "x") == WSGATE_EFORBIDDEN, "send with a read token");
    CHECK(wsgate_last_problem()->http_status == 403, "403 problem");
    wsgate_page *p = NULL;
    OK(wsgate_channels(ro, NULL, 0, NULL, &p));
    wsgate_page_free(p);
    wsgate_client_free(ro);
    /* a channel-limited token may not broadcast */
    wsgate_client *lim = NULL;
    const char *globs[] = {"room*"};
    OK(wsgate_options_new(&o));
    OK(wsgate_options_set_url(o, url));
    OK(wsgate_options_set_signing_key(o, WSGATE_HS256, secret, 0, "publish"));
    OK(wsgate_options_set_channels(o, globs, 1));
    OK(wsgate_client_new(&lim, o));
    wsgate_options_free(o);
    CHECK(wsgate_broadcast(lim, NULL, WSGATE_TEXT, "x", 1) == WSGATE_EFORBIDDEN,
          "broadcast with a channels claim");
    CHECK(wsgate_publish(lim, "other", WSGATE_TEXT, "x", 1, NULL) == WSGATE_EFORBIDDEN,
          "publish outside the globs");
    OK(wsgate_publish(lim, "room-none", WSGATE_TEXT, "x", 1, NULL));
    wsgate_client_free(lim);
    puts("410 gone, 403 scope and channels claim, problem details: ok");
}

static int verify_webhook(char **argv)
{
    FILE *f = fopen(argv[6], "rb");
    CHECK(f, "cannot open %s", argv[6]);
    static char body[1 << 16];
    size_t n = fread(body, 1, sizeof body, f);
    fclose(f);
    OK(wsgate_webhook_verify(argv[2], argv[3], argv[4], argv[5], body, n));
    wsgate_events *evs = NULL;
    OK(wsgate_events_parse(&evs, body, n));
    const wsgate_event *e = wsgate_events_get(evs, 0);
    printf("%d %s %s %s\n", (int)e->type, e->connection_id, e->user ? e->user : "-",
           e->data ? (const char *)e->data : "-");
    wsgate_events_free(evs);
    body[0] ^= 1; /* one flipped byte is refused */
    CHECK(wsgate_webhook_verify(argv[2], argv[3], argv[4], argv[5], body, n) == WSGATE_ESIGNATURE,
          "tampered body accepted");
    return 0;
}

static int refresh(char **argv)
{
    wsgate_options *o = NULL;
    wsgate_client *c = NULL;
    OK(wsgate_options_new(&o));
    OK(wsgate_options_set_url(o, argv[2]));
    OK(wsgate_options_set_signing_key(o, WSGATE_HS256, argv[3], 0, "read"));
    OK(wsgate_options_set_token_ttl(o, 10));
    OK(wsgate_client_new(&c, o));
    wsgate_options_free(o);
    for (int i = 0; i < 3; i++) {
        wsgate_page *p = NULL;
        OK(wsgate_channels(c, NULL, 0, NULL, &p));
        wsgate_page_free(p);
        if (i < 2)
            sleep(i == 0 ? 4 : 5);
    }
    wsgate_client_free(c);
    puts("ALL OK");
    return 0;
}

/* replay: replays the first dead letter (test_sdk_cluster.py). */
static int replay_first(char **argv)
{
    wsgate_options *o = NULL;
    wsgate_client *c = NULL;
    OK(wsgate_options_new(&o));
    OK(wsgate_options_set_url(o, argv[2]));
    OK(wsgate_options_set_signing_key(o, WSGATE_HS256, argv[3], 0, NULL));
    OK(wsgate_client_new(&c, o));
    wsgate_options_free(o);
    dead_letters(c);
    wsgate_client_free(c);
    puts("ALL OK");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "replay") == 0)
        return replay_first(argv);
    if (argc == 4 && strcmp(argv[1], "refresh") == 0)
        return refresh(argv);
    if (argc == 7 && strcmp(argv[1], "verify") == 0)
        return verify_webhook(argv);
    if (argc != 5) {
        fprintf(stderr, "usage: %s API_URL API_SECRET CONN_A CONN_B\n", argv[0]);
        return 2;
    }
    A = argv[3];
    B = argv[4];
    wsgate_options *o = NULL;
    wsgate_client *c = NULL;
    OK(wsgate_options_new(&o));
    OK(wsgate_options_set_url(o, argv[1]));
    OK(wsgate_options_set_signing_key(o, WSGATE_HS256, argv[2], 0, NULL));
    OK(wsgate_options_set_timeouts(o, 8000, 2000));
    OK(wsgate_client_new(&c, o));
    wsgate_options_free(o);
    sends_and_reads(c);
    channels(c);
    lists_and_users(c);
    batch(c);
    dead_letters(c);
    errors(c, argv[1], argv[2]);
    OK(wsgate_disconnect(c, A, 4000, "bye"));
    OK(wsgate_user_disconnect(c, "bob", 4001, "bye bob"));
    puts("disconnect, user disconnect: ok");
    wsgate_client_free(c);
    puts("ALL OK");
    return 0;
}
