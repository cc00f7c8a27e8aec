/* SPDX-License-Identifier: MIT */
/*
 * test_dispatch_pure.c — the dispatcher's pure functions (dispatcher/
 * disp_internal.h): backoff bounds and jitter, Retry-After parsing, outcome
 * classes, routing rules, the allowed_backends prefix check, routing-service
 * answers, batch bodies and ids, response-action parsing with bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/err.h"
#include "dispatcher/disp_internal.h"

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void backoff_bounds_and_jitter(void **state)
{
    (void)state;
    uint64_t seed = 88172645463325252ULL;
    for (uint32_t f = 1; f <= 40; f++) {
        uint64_t cap = 500;
        for (uint32_t i = 1; i < f && cap < 60000; i++)
            cap *= 2;
        if (cap > 60000)
            cap = 60000;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (int k = 0; k < 2000; k++) {
            uint64_t v = disp_backoff_ms(f, 500, 60000, xs(&seed));
            assert_true(v >= 500 && v <= cap);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        /* full jitter: the draws spread over the whole window */
        if (cap > 500) {
            assert_true(lo < 500 + (cap - 500) / 10);
            assert_true(hi > cap - (cap - 500) / 10);
        }
        assert_int_equal(disp_backoff_ms(f, 500, 60000, 0), 500);
        assert_int_equal(disp_backoff_ms(f, 500, 60000, cap - 500), cap);
    }
    /* max below initial, zero initial: still sane */
    assert_int_equal(disp_backoff_ms(3, 1000, 10, 12345), 1000);
    assert_true(disp_backoff_ms(3, 0, 10, 12345) <= 10);
}

static void retry_after_parsing(void **state)
{
    (void)state;
    uint64_t ms = 7;
    const int64_t now = 1445412450; /* Wed, 21 Oct 2015 07:27:30 GMT */
    assert_int_equal(disp_retry_after_ms("1", now, 600000, &ms), 0);
    assert_int_equal(ms, 1000);
    assert_int_equal(disp_retry_after_ms(" 120 ", now, 600000, &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(disp_retry_after_ms("0", now, 600000, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(disp_retry_after_ms("99999999999999999999999", now, 600000, &ms), 0);
    assert_int_equal(ms, 600000);
    assert_int_equal(disp_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", now, 600000, &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(disp_retry_after_ms("Wed, 21 Oct 2015 07:00:00 GMT", now, 600000, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(disp_retry_after_ms("Thu, 22 Oct 2015 07:28:00 GMT", now, 600000, &ms), 0);
    assert_int_equal(ms, 600000);
    const char *bad[] = {"", "   ", "abc", "-1", "1.5", "5 s", "soon", "Wed", "0x10", "+3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ms = 42;
        assert_int_equal(disp_retry_after_ms(bad[i], now, 600000, &ms), WSG_EINVAL);
        assert_int_equal(ms, 42);
    }
    assert_int_equal(disp_retry_after_ms(NULL, now, 600000, &ms), WSG_EINVAL);
}

static void outcome_classes(void **state)
{
    (void)state;
    long ack[] = {200, 201, 202, 204, 299};
    long retry[] = {0, 408, 429, 500, 502, 503, 504, 599};
    long dead[] = {100, 301, 302, 400, 401, 403, 404, 410, 413, 422};
    for (size_t i = 0; i < sizeof ack / sizeof *ack; i++)
        assert_int_equal(disp_classify(ack[i]), DISP_OUT_ACK);
    for (size_t i = 0; i < sizeof retry / sizeof *retry; i++)
        assert_int_equal(disp_classify(retry[i]), DISP_OUT_RETRY);
    for (size_t i = 0; i < sizeof dead / sizeof *dead; i++)
        assert_int_equal(disp_classify(dead[i]), DISP_OUT_DEAD);
}

#define B_DEF "http://127.0.0.1:9000/events"
#define B_JOIN "http://127.0.0.1:9001/join"
#define B_PING "http://127.0.0.1:9002/ping"
#define B_BYTES "http://127.0.0.1:9003/bytes"

static void rules_match(void **state)
{
    (void)state;
    wsg_rule_conf_t rules[] = {
        {.json_field = "action", .equals = "join", .backend = B_JOIN},
        {.regex = "^PING", .backend = B_PING},
        {.regex = "^\\x00\\x01", .backend = B_BYTES},
        {.json_field = "action", .equals = "ping-json", .backend = B_JOIN},
    };
    wsg_route_conf_t r = {.path = "/chat", .backend = B_DEF, .rules = rules, .n_rules = 4};
    disp_rules_t *rs = NULL;
    char err[256];
    assert_int_equal(disp_rules_new(&rs, &r, err, sizeof err), 0);
    assert_non_null(rs);
#define M(s, bin) disp_rules_match(rs, s, sizeof(s) - 1, bin)
    assert_string_equal(M("{\"action\":\"join\",\"room\":1}", false), B_JOIN);
    assert_string_equal(M("PING 1", false), B_PING);
    assert_string_equal(M("PINGPONG", false), B_PING);
    assert_null(M("not PING", false));
    assert_null(M("{\"action\":\"leave\"}", false));
    assert_null(M("{\"action\":\"join\"", false));          /* not JSON */
    assert_null(M("[{\"action\":\"join\"}]", false));       /* not an object */
    assert_null(M("{\"x\":{\"action\":\"join\"}}", false)); /* not top-level */
    assert_null(M("{\"action\":1}", false));                /* not a string */
    assert_null(M("{\"action\":\"join\"}", true));          /* binary: no JSON rules */
    assert_string_equal(M("\x00\x01rest", true), B_BYTES);  /* regex on bytes */
    assert_string_equal(M("PING binary", true), B_PING);
    /* order: a JSON message that also starts with... the first rule wins */
    assert_string_equal(M("{\"action\":\"ping-json\"}", false), B_JOIN);
    assert_null(disp_rules_match(rs, NULL, 0, false));
#undef M
    disp_rules_free(rs);

    wsg_rule_conf_t first_regex[] = {{.regex = "join", .backend = B_PING},
                                     {.json_field = "action", .equals = "join", .backend = B_JOIN}};
    r.rules = first_regex;
    r.n_rules = 2;
    assert_int_equal(disp_rules_new(&rs, &r, err, sizeof err), 0);
    assert_string_equal(disp_rules_match(rs, "{\"action\":\"join\"}", 17, false), B_PING);
    disp_rules_free(rs);

    wsg_rule_conf_t broken[] = {{.regex = "(unclosed", .backend = B_PING, .line = 12}};
    r.rules = broken;
    r.n_rules = 1;
    rs = (disp_rules_t *)&r; /* must be reset */
    assert_int_equal(disp_rules_new(&rs, &r, err, sizeof err), WSG_ECONFIG);
    assert_null(rs);
    assert_non_null(strstr(err, "line 12"));
    r.n_rules = 0;
    assert_int_equal(disp_rules_new(&rs, &r, err, sizeof err), 0);
    assert_null(rs);
    assert_null(disp_rules_match(NULL, "x", 1, false));
}

static void event_payload(void **state)
{
    (void)state;
    char *p = NULL;
    size_t n = 0;
    bool bin = true;
    const char *txt = "{\"id\":\"evt_1\",\"type\":\"message\",\"data\":\"h\\u00e9llo\"}";
    assert_int_equal(disp_event_payload(txt, strlen(txt), &p, &n, &bin), 0);
    assert_false(bin);
    assert_int_equal(n, 6);
    assert_memory_equal(p, "h\xc3\xa9llo", 6);
    free(p);
    const char *b = "{\"type\":\"message\",\"binary\":true,\"data_base64\":\"AAH+/w==\"}";
    assert_int_equal(disp_event_payload(b, strlen(b), &p, &n, &bin), 0);
    assert_true(bin);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "\x00\x01\xfe\xff", 4);
    free(p);
    const char *bad[] = {"{\"type\":\"connect\"}", "not json", "[1]",
                         "{\"data_base64\":\"!!!notbase64\"}", "{\"data\":5}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(disp_event_payload(bad[i], strlen(bad[i]), &p, &n, &bin), WSG_EPROTO);
        assert_null(p);
    }
}

static void allowed_backends_prefix(void **state)
{
    (void)state;
    char *allowed[] = {"http://127.0.0.1:9000", "https://hooks.example.com/tenant/"};
    wsg_route_conf_t r = {.backend = "http://127.0.0.1:8000/events",
                          .allowed_backends = allowed,
                          .n_allowed_backends = 2};
    assert_true(wsg_config_backend_allowed(&r, "http://127.0.0.1:8000/events"));
    assert_true(wsg_config_backend_allowed(&r, "http://127.0.0.1:9000"));
    assert_true(wsg_config_backend_allowed(&r, "http://127.0.0.1:9000/"));
    assert_true(wsg_config_backend_allowed(&r, "http://127.0.0.1:9000/any/path?x=1"));
    assert_true(wsg_config_backend_allowed(&r, "https://hooks.example.com/tenant/a"));
    assert_false(wsg_config_backend_allowed(&r, "http://127.0.0.1:90001"));
    assert_false(wsg_config_backend_allowed(&r, "http://127.0.0.1:90001/"));
    assert_false(wsg_config_backend_allowed(&r, "http://127.0.0.1:9000@evil/"));
    assert_false(wsg_config_backend_allowed(&r, "http://127.0.0.1:9000@evil.com"));
    assert_false(wsg_config_backend_allowed(&r, "http://127.0.0.1:9000.evil.com/"));
    assert_false(wsg_config_backend_allowed(&r, "http://127.0.0.1:9001/"));
    assert_false(wsg_config_backend_allowed(&r, "https://127.0.0.1:9000/"));
    assert_false(wsg_config_backend_allowed(&r, "https://hooks.example.com/tenantevil"));
    assert_false(wsg_config_backend_allowed(&r, "http://169.254.169.254/latest/meta-data"));
    assert_false(wsg_config_backend_allowed(&r, ""));
    assert_false(wsg_config_backend_allowed(&r, NULL));
}

/* Parsed, not compared as strings: what libcurl would send is what counts. */
static void allowed_backends_parsed(void **state)
{
    (void)state;
    char *allowed[] = {"http://127.0.0.1:9000/events", "https://Hooks.Example.com/t/",
                       "http://u:pw@10.0.0.1/"};
    wsg_route_conf_t r = {.backend = "http://127.0.0.1:8000/in?key=1",
                          .allowed_backends = allowed,
                          .n_allowed_backends = 3};
    static const char *const ok[] = {"http://127.0.0.1:9000/events",
                                     "http://127.0.0.1:9000/events/",
                                     "http://127.0.0.1:9000/events/a?x=../..",
                                     "http://127.0.0.1:9000/events/a/../b",
                                     "HTTP://127.0.0.1:9000/events/x",
                                     "https://hooks.example.COM/t/x",
                                     "https://hooks.example.com:443/t/",
                                     "http://127.0.0.1:9000/events#frag",
                                     "http://u:pw@10.0.0.1/x",
                                     "http://127.0.0.1:8000/in?key=1",
                                     "http://127.1:9000/events/x"};
    static const char *const bad[] = {"http://127.0.0.1:9000/events/../admin/delete-all",
                                      "http://127.0.0.1:9000/events/..",
                                      "http://127.0.0.1:9000/events/%2e%2e/admin",
                                      "http://127.0.0.1:9000/events/%2E%2e/admin",
                                      "http://127.0.0.1:9000/events/.%2E/admin",
                                      "http://127.0.0.1:9000/events%2f..%2fadmin",
                                      "http://127.0.0.1:9000/events/..%5cadmin",
                                      "http://127.0.0.1:9000/events/..\\admin",
                                      "http://127.0.0.1:9000/eventsX/admin",
                                      "http://127.0.0.1:9000/EVENTS/x",
                                      "http://127.0.0.1:9000@evil/",
                                      "http://127.0.0.1:9000/events@evil/",
                                      "http://user@127.0.0.1:9000/events/x",
                                      "http://10.0.0.1/x",
                                      "http://u:other@10.0.0.1/x",
                                      "http://127.0.0.1:9001/events",
                                      "https://127.0.0.1:9000/events",
                                      "https://hooks.example.com/tx",
                                      "https://hooks.example.com:8443/t/",
                                      "http://127.0.0.1:8000/in",
                                      "http://127.0.0.1:8000/in?key=2",
                                      "http:///127.0.0.1:9000/events",
                                      "http:/127.0.0.1:9000/events",
                                      "http://127.0.0.1:99999/events",
                                      "http://127.0.0.1:9000/events/a b",
                                      "ftp://127.0.0.1:9000/events",
                                      "127.0.0.1:9000/events",
                                      "//127.0.0.1:9000/events"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        if (!wsg_config_backend_allowed(&r, ok[i]))
            fail_msg("refused %s", ok[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (wsg_config_backend_allowed(&r, bad[i]))
            fail_msg("allowed %s", bad[i]);
}

static void routing_answers(void **state)
{
    (void)state;
    char *be = NULL, err[256];
    disp_header_t *h = NULL;
    size_t nh = 0;
    const char *ok = "{\"backend\":\"http://x:1/e\",\"headers\":{\"X-Shard\":\"7\"}}";
    assert_int_equal(disp_route_answer_parse(ok, strlen(ok), &be, &h, &nh, err, sizeof err), 0);
    assert_string_equal(be, "http://x:1/e");
    assert_int_equal(nh, 1);
    assert_string_equal(h[0].name, "X-Shard");
    assert_string_equal(h[0].value, "7");
    free(be);
    disp_headers_free(h, nh);
    assert_int_equal(disp_route_answer_parse("{}", 2, &be, &h, &nh, err, sizeof err), 0);
    assert_null(be);
    assert_int_equal(nh, 0);
    const char *bad[] = {"",
                         "nope",
                         "[]",
                         "{\"backend\":5}",
                         "{\"headers\":[]}",
                         "{\"headers\":{\"X\":1}}",
                         "{\"headers\":{\"X\":\"a\\r\\nInjected: 1\"}}",
                         "{\"headers\":{\"webhook-signature\":\"v1,forged\"}}",
                         "{\"headers\":{\"Content-Type\":\"text/plain\"}}",
                         "{\"headers\":{\"bad name\":\"v\"}}",
                         "{\"headers\":{\"Wsgate-Event\":\"x\"}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        be = (char *)"sentinel";
        assert_int_equal(
            disp_route_answer_parse(bad[i], strlen(bad[i]), &be, &h, &nh, err, sizeof err),
            WSG_EPROTO);
        assert_null(be);
        assert_null(h);
        assert_int_equal(nh, 0);
    }
}

static void batch_bodies_and_ids(void **state)
{
    (void)state;
    const char *bodies[] = {"{\"id\":\"a\"}", "{\"id\":\"b\"}", "{\"id\":\"c\"}"};
    size_t lens[] = {10, 10, 10};
    char *out = NULL;
    size_t n = 0;
    assert_int_equal(disp_batch_body(bodies, lens, 3, &out, &n), 0);
    assert_string_equal(out, "{\"events\":[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]}");
    assert_int_equal(n, strlen(out));
    json_t *j = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 3);
    json_decref(j);
    free(out);
    lens[0] = 6; /* a prefix of a body is taken as given: lengths rule */
    assert_int_equal(disp_batch_body(bodies, lens, 1, &out, &n), 0);
    assert_string_equal(out, "{\"events\":[{\"id\":]}");
    free(out);
    out = NULL;
    assert_int_equal(disp_batch_body(bodies, lens, 0, &out, &n), WSG_EINVAL);
    assert_null(out);

    char a[DISP_BATCH_ID_LEN + 1], b[DISP_BATCH_ID_LEN + 1], c[DISP_BATCH_ID_LEN + 1];
    disp_batch_id("evt_1", "evt_5", a);
    disp_batch_id("evt_1", "evt_5", b);
    disp_batch_id("evt_1", "evt_6", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), DISP_BATCH_ID_LEN - 1);
    assert_memory_equal(a, "bat_", 4);
    disp_batch_id("evt_1\nevt", "5", c); /* the separator cannot be forged by ids */
    disp_batch_id("evt_1", "evt\n5", b);
    assert_string_not_equal(a, b);
}

static void actions_good(void **state)
{
    (void)state;
    disp_action_t *a = NULL;
    size_t n = 0, sk = 9;
    char err[256];
    const char *body =
        "{\"actions\":[{\"action\":\"send\",\"data\":\"one\"},"
        "{\"action\":\"send\",\"data_base64\":\"AAE=\"},"
        "{\"action\":\"subscribe\",\"channel\":\"room1\"},"
        "{\"action\":\"unsubscribe\",\"channel\":\"room2\"},"
        "{\"action\":\"close\",\"code\":4000,\"reason\":\"kicked\"},{\"action\":\"close\"}]}";
    assert_int_equal(disp_actions_parse(body, strlen(body), &a, &n, &sk, err, sizeof err), 0);
    assert_int_equal(n, 6);
    assert_int_equal(sk, 0);
    assert_int_equal(a[0].op, BUS_CMD_SEND);
    assert_int_equal(a[0].len, 3);
    assert_memory_equal(a[0].data, "one", 3);
    assert_false(a[0].binary);
    assert_int_equal(a[1].op, BUS_CMD_SEND);
    assert_true(a[1].binary);
    assert_int_equal(a[1].len, 2);
    assert_memory_equal(a[1].data, "\x00\x01", 2);
    assert_int_equal(a[2].op, BUS_CMD_SUBSCRIBE);
    assert_string_equal(a[2].channel, "room1");
    assert_int_equal(a[3].op, BUS_CMD_UNSUBSCRIBE);
    assert_int_equal(a[4].op, BUS_CMD_CLOSE);
    assert_int_equal(a[4].code, 4000);
    assert_string_equal(a[4].reason, "kicked");
    assert_int_equal(a[5].code, 1000);
    disp_actions_free(a, n);
}

static void actions_bad_input(void **state)
{
    (void)state;
    disp_action_t *a = NULL;
    size_t n = 0, sk = 0;
    char err[256];
    const char *nothing[] = {"",   "   \r\n\t",       "{}", "{\"hello\":\"world\"}", "[1,2]",
                             "17", "{\"actions\":[]}"};
    for (size_t i = 0; i < sizeof nothing / sizeof *nothing; i++) {
        assert_int_equal(
            disp_actions_parse(nothing[i], strlen(nothing[i]), &a, &n, &sk, err, sizeof err), 0);
        assert_int_equal(n, 0);
        assert_int_equal(sk, 0);
        disp_actions_free(a, n);
    }
    assert_int_equal(disp_actions_parse(NULL, 0, &a, &n, &sk, err, sizeof err), 0);
    const char *proto[] = {"this is not json{", "{\"actions\":\"send\"}", "{\"actions\":{}}",
                           "{\"actions\":[", "\xff\xfe"};
    for (size_t i = 0; i < sizeof proto / sizeof *proto; i++) {
        a = (disp_action_t *)err;
        assert_int_equal(
            disp_actions_parse(proto[i], strlen(proto[i]), &a, &n, &sk, err, sizeof err),
            WSG_EPROTO);
        assert_null(a);
        assert_int_equal(n, 0);
    }
    char longreason[200];
    memset(longreason, 'r', 124);
    longreason[124] = '\0';
    char body[1024];
    snprintf(body, sizeof body,
             "{\"actions\":[{\"action\":\"explode\"},{\"action\":\"send\"},"
             "{\"action\":\"send\",\"data\":\"x\",\"data_base64\":\"eA==\"},"
             "{\"action\":\"send\",\"data_base64\":\"!!\"},{\"action\":\"send\",\"data\":5},"
             "{\"action\":\"close\",\"code\":\"x\"},{\"action\":\"close\",\"code\":999},"
             "{\"action\":\"close\",\"code\":1001},{\"action\":\"close\",\"code\":3999},"
             "{\"action\":\"close\",\"code\":5000},{\"action\":\"close\",\"reason\":\"%s\"},"
             "{\"action\":\"subscribe\"},{\"action\":\"subscribe\",\"channel\":\"\"},"
             "{\"action\":\"subscribe\",\"channel\":\"a\\u0001b\"},17,null,[],"
             "{\"action\":5},{\"data\":\"no action\"},"
             "{\"action\":\"send\",\"data\":\"after\"},{\"action\":\"close\",\"code\":4999}]}",
             longreason);
    assert_int_equal(disp_actions_parse(body, strlen(body), &a, &n, &sk, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(sk, 19);
    assert_int_equal(a[0].op, BUS_CMD_SEND);
    assert_memory_equal(a[0].data, "after", 5);
    assert_int_equal(a[1].op, BUS_CMD_CLOSE);
    assert_int_equal(a[1].code, 4999);
    disp_actions_free(a, n);
}

/* Backend stream frames (docs/webhooks.md "Backend streams"). */
static void stream_frames_good(void **state)
{
    (void)state;
    disp_frame_t f;
    char err[192];
    const char *one = "{\"ack\":\"evt_1\"}";
    assert_int_equal(disp_frame_parse(one, strlen(one), &f, err, sizeof err), 0);
    assert_int_equal(f.kind, DISP_FRAME_ACK);
    assert_int_equal(f.n_ids, 1);
    assert_string_equal(f.ids[0], "evt_1");
    disp_frame_clear(&f);
    const char *many = "{\"ack\":[\"evt_1\",\"evt_2\"]}";
    assert_int_equal(disp_frame_parse(many, strlen(many), &f, err, sizeof err), 0);
    assert_int_equal(f.n_ids, 2);
    assert_string_equal(f.ids[1], "evt_2");
    disp_frame_clear(&f);
    const char *send = "{\"action\":\"send\",\"connection_id\":\"c1\",\"data_base64\":\"AAE=\"}";
    assert_int_equal(disp_frame_parse(send, strlen(send), &f, err, sizeof err), 0);
    assert_int_equal(f.kind, DISP_FRAME_ACTION);
    assert_string_equal(f.conn_id, "c1");
    assert_int_equal(f.act.op, BUS_CMD_SEND);
    assert_int_equal(f.act.binary, 1);
    assert_int_equal(f.act.len, 2);
    disp_frame_clear(&f);
    const char *close = "{\"action\":\"close\",\"connection_id\":\"c1\",\"code\":4001}";
    assert_int_equal(disp_frame_parse(close, strlen(close), &f, err, sizeof err), 0);
    assert_int_equal(f.act.op, BUS_CMD_CLOSE);
    assert_int_equal(f.act.code, 4001);
    disp_frame_clear(&f);
    const char *pub =
        "{\"action\":\"publish\",\"channel\":\"room\",\"data\":\"hi\",\"exclude\":\"c2\"}";
    assert_int_equal(disp_frame_parse(pub, strlen(pub), &f, err, sizeof err), 0);
    assert_int_equal(f.kind, DISP_FRAME_PUBLISH);
    assert_string_equal(f.act.channel, "room");
    assert_string_equal(f.conn_id, "c2");
    assert_memory_equal(f.act.data, "hi", 2);
    disp_frame_clear(&f);
}

static void stream_frames_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "5",
        "{}",
        "{\"hello\":1}",
        "{\"ack\":5}",
        "{\"ack\":[]}",
        "{\"ack\":[\"ok\",7]}",
        "{\"ack\":\"has space\"}",
        "{\"ack\":\"\"}",
        "{\"action\":\"send\",\"data\":\"no id\"}",
        "{\"action\":\"send\",\"connection_id\":\"c1\"}",
        "{\"action\":\"send\",\"connection_id\":5,\"data\":\"x\"}",
        "{\"action\":\"explode\",\"connection_id\":\"c1\"}",
        "{\"action\":\"close\",\"connection_id\":\"c1\",\"code\":1006}",
        "{\"action\":\"subscribe\",\"connection_id\":\"c1\",\"channel\":\"\"}",
        "{\"action\":\"publish\",\"data\":\"no channel\"}",
        "{\"action\":\"publish\",\"channel\":\"room\"}",
        "{\"action\":\"publish\",\"channel\":\"room\",\"data\":\"x\",\"exclude\":3}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        disp_frame_t f;
        char err[192] = "";
        assert_int_equal(disp_frame_parse(bad[i], strlen(bad[i]), &f, err, sizeof err), WSG_EINVAL);
        assert_true(err[0] != '\0');
        assert_null(f.ids);
        assert_null(f.conn_id);
        assert_null(f.act.data);
    }
    char big[16 * 1100] = "{\"ack\":[";
    for (int i = 0; i <= DISP_FRAME_MAX_ACKS; i++)
        strcat(big, i ? ",\"e\"" : "\"e\"");
    strcat(big, "]}");
    disp_frame_t f;
    char err[192];
    assert_int_equal(disp_frame_parse(big, strlen(big), &f, err, sizeof err), WSG_EINVAL);
}

/* ws-api-gateway's frames (by user) and {"auth":...} frames. */
static void stream_frames_user_and_auth(void **state)
{
    (void)state;
    disp_frame_t f;
    char err[192];
    const char *send = "{\"action\":\"send\",\"user\":\"ann smith\",\"data\":\"hi\"}";
    assert_int_equal(disp_frame_parse_user(send, strlen(send), &f, err, sizeof err), 0);
    assert_int_equal(f.kind, DISP_FRAME_ACTION);
    assert_string_equal(f.conn_id, "ann smith"); /* the user, resolved by the stream */
    assert_int_equal(f.act.op, BUS_CMD_SEND);
    disp_frame_clear(&f);
    const char *close = "{\"action\":\"close\",\"user\":\"ann\",\"code\":4000,\"reason\":\"r\"}";
    assert_int_equal(disp_frame_parse_user(close, strlen(close), &f, err, sizeof err), 0);
    assert_int_equal(f.act.code, 4000);
    assert_string_equal(f.act.reason, "r");
    disp_frame_clear(&f);
    static const char *const bad_user[] = {
        "{\"ack\":\"evt_1\"}",
        "{\"auth\":\"tok\"}",
        "{\"action\":\"send\",\"connection_id\":\"c1\",\"data\":\"x\"}",
        "{\"action\":\"send\",\"user\":\"\",\"data\":\"x\"}",
        "{\"action\":\"send\",\"user\":\"ann\"}",
        "{\"action\":\"publish\",\"user\":\"ann\",\"channel\":\"c\",\"data\":\"x\"}",
        "{\"action\":\"subscribe\",\"user\":\"ann\",\"channel\":\"c\"}",
    };
    for (size_t i = 0; i < sizeof bad_user / sizeof *bad_user; i++) {
        assert_int_equal(
            disp_frame_parse_user(bad_user[i], strlen(bad_user[i]), &f, err, sizeof err),
            WSG_EINVAL);
        assert_null(f.conn_id);
    }
    const char *auth = "{\"auth\":\"a.b.c\"}";
    assert_int_equal(disp_frame_parse(auth, strlen(auth), &f, err, sizeof err), 0);
    assert_int_equal(f.kind, DISP_FRAME_AUTH);
    assert_string_equal(f.token, "a.b.c");
    disp_frame_clear(&f);
    const char *noauth = "{\"auth\":5}";
    assert_int_equal(disp_frame_parse(noauth, strlen(noauth), &f, err, sizeof err), WSG_EINVAL);
    assert_null(f.token);
}

/* The scope each stream action needs (disp_sauth.c). */
static void stream_action_scopes(void **state)
{
    (void)state;
    wsg_jwt_conf_t conf = {.enabled = true, .alg = WSG_ALG_HS256};
    disp_sauth_t a = {0};
    disp_frame_t f = {.kind = DISP_FRAME_ACTION, .act = {.op = BUS_CMD_SEND}};
    char err[256];
    assert_int_equal(disp_sauth_check(&a, &conf, &f, 100, err, sizeof err), 401);
    a.token = strdup("t");
    a.claims.scope = strdup("send");
    a.claims.exp = 1000;
    assert_int_equal(disp_sauth_check(&a, &conf, &f, 100, err, sizeof err), 0);
    f.act.op = BUS_CMD_CLOSE;
    assert_int_equal(disp_sauth_check(&a, &conf, &f, 100, err, sizeof err), 403);
    assert_non_null(strstr(err, "'disconnect'"));
    f.act.op = BUS_CMD_UNSUBSCRIBE;
    assert_int_equal(disp_sauth_check(&a, &conf, &f, 100, err, sizeof err), 403);
    assert_non_null(strstr(err, "'subscribe'"));
    f.kind = DISP_FRAME_PUBLISH;
    assert_int_equal(disp_sauth_check(&a, &conf, &f, 100, err, sizeof err), 403);
    assert_non_null(strstr(err, "'publish'"));
    free(a.claims.scope);
    a.claims.scope = strdup("admin");
    assert_int_equal(disp_sauth_check(&a, &conf, &f, 100, err, sizeof err), 0);
    /* past exp: verified again, and "t" is no token */
    assert_int_equal(disp_sauth_check(&a, &conf, &f, 1000, err, sizeof err), 401);
    disp_sauth_clear(&a);
    assert_null(a.token);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_bounds_and_jitter),
        cmocka_unit_test(stream_frames_user_and_auth),
        cmocka_unit_test(stream_action_scopes),
        cmocka_unit_test(retry_after_parsing),
        cmocka_unit_test(outcome_classes),
        cmocka_unit_test(rules_match),
        cmocka_unit_test(event_payload),
        cmocka_unit_test(allowed_backends_prefix),
        cmocka_unit_test(allowed_backends_parsed),
        cmocka_unit_test(routing_answers),
        cmocka_unit_test(batch_bodies_and_ids),
        cmocka_unit_test(actions_good),
        cmocka_unit_test(actions_bad_input),
        cmocka_unit_test(stream_frames_good),
        cmocka_unit_test(stream_frames_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
