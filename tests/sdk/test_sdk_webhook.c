/* SPDX-License-Identifier: MIT */
/*
 * test_sdk_webhook.c — libwsgate's webhook side: Standard Webhooks
 * verification on the spec's own test vectors (tests/data/sdk/
 * webhook_vectors.json), event parsing of every valid and invalid case
 * under tests/data/sdk/events/, and the response builder's actions.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "wsgate/wsgate.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static wsgate_status status_named(const char *name)
{
#define NAMED(n, num, msg)                                                                         \
    if (strcmp(name, #n) == 0)                                                                     \
        return WSGATE_##n;
    WSGATE_STATUS_MAP(NAMED)
#undef NAMED
    fail_msg("unknown status %s", name);
    return WSGATE_OK;
}

static const char *str_or(json_t *o, const char *k, const char *dflt)
{
    json_t *v = json_object_get(o, k);
    return v ? json_string_value(v) : dflt;
}

static void test_vectors(void **state)
{
    json_t *root = json_load_file(WSGATE_TEST_DATA "/sdk/webhook_vectors.json", 0, NULL);
    assert_non_null(root);
    const char *secret = json_string_value(json_object_get(root, "secret"));
    const char *id = json_string_value(json_object_get(root, "msg_id"));
    const char *body = json_string_value(json_object_get(root, "body"));
    json_int_t now = json_integer_value(json_object_get(root, "now"));
    json_t *sign = json_object_get(root, "sign");
    char sig[WSGATE_SIGNATURE_LEN];
    assert_int_equal(wsgate_webhook_sign(secret, id,
                                         json_integer_value(json_object_get(sign, "timestamp")),
                                         body, strlen(body), sig, sizeof sig),
                     WSGATE_OK);
    assert_string_equal(sig, json_string_value(json_object_get(sign, "expected")));
    size_t i, n = 0;
    json_t *c;
    json_array_foreach(json_object_get(root, "verify"), i, c)
    {
        const char *cb = str_or(c, "body", body);
        json_t *cnow = json_object_get(c, "now");
        wsgate_status got = wsgate_webhook_verify_at(
            str_or(c, "secret", secret), str_or(c, "msg_id", id), str_or(c, "timestamp", NULL),
            str_or(c, "signature", NULL), cb, strlen(cb), cnow ? json_integer_value(cnow) : now,
            WSGATE_WEBHOOK_TOLERANCE);
        wsgate_status want = status_named(json_string_value(json_object_get(c, "expect")));
        if (got != want)
            fail_msg("case '%s': got %s, want %s", json_string_value(json_object_get(c, "name")),
                     wsgate_strerror(got), wsgate_strerror(want));
        if (got != WSGATE_OK)
            assert_int_equal(wsgate_last_problem()->status, got);
        n++;
    }
    assert_true(n >= 10);
    json_decref(root);
}

/* Signed now, verified by the default-clock entry point; a stale one is refused. */
static void test_verify_now(void **state)
{
    const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", *body = "{}";
    char sig[WSGATE_SIGNATURE_LEN], ts[32];
    long long now = (long long)time(NULL);
    assert_int_equal(wsgate_webhook_sign(secret, "evt_1", now, body, 2, sig, sizeof sig), 0);
    snprintf(ts, sizeof ts, "%lld", now);
    assert_int_equal(wsgate_webhook_verify(secret, "evt_1", ts, sig, body, 2), WSGATE_OK);
    assert_int_equal(wsgate_webhook_verify(secret, "evt_2", ts, sig, body, 2), WSGATE_ESIGNATURE);
    snprintf(ts, sizeof ts, "%lld", now - 400);
    assert_int_equal(wsgate_webhook_verify(secret, "evt_1", ts, sig, body, 2), WSGATE_ETIMESTAMP);
    assert_non_null(wsgate_last_problem()->detail);
}

static wsgate_events *parse_file(const char *dir, const char *name, wsgate_status *st)
{
    char path[512];
    size_t len;
    snprintf(path, sizeof path, WSGATE_TEST_DATA "/sdk/events/%s/%s", dir, name);
    char *body = slurp(path, &len);
    wsgate_events *evs = (wsgate_events *)0x1;
    *st = wsgate_events_parse(&evs, body, len);
    free(body);
    return evs;
}

static const char *pair(const wsgate_pair *p, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0)
            return p[i].value;
    return NULL;
}

static void check_valid(const char *name, const wsgate_events *evs)
{
    const wsgate_event *e = wsgate_events_get(evs, 0);
    if (strcmp(name, "connect.json") == 0) {
        assert_int_equal(e->type, WSGATE_EVENT_CONNECT);
        assert_string_equal(e->id, "evt_c1");
        assert_string_equal(e->user, "alice");
        assert_string_equal(e->context_json, "{\"tenant\":\"acme\"}");
        assert_int_equal(e->seq, 1);
        assert_string_equal(e->remote_addr, "127.0.0.1");
        assert_string_equal(e->subprotocol, "chat.v1");
        assert_int_equal(e->n_headers, 2);
        assert_string_equal(pair(e->headers, e->n_headers, "x-trace"), "t-1");
        assert_int_equal(e->n_query, 1);
        assert_string_equal(pair(e->query, e->n_query, "room"), "42");
        assert_int_equal(e->n_channels, 2);
        assert_string_equal(e->channels[1], "room.42");
    } else if (strcmp(name, "message_text.json") == 0) {
        assert_int_equal(e->type, WSGATE_EVENT_MESSAGE);
        assert_int_equal(e->binary, 0);
        assert_int_equal(e->data_len, 6);
        assert_string_equal((const char *)e->data, "h\xc3\xa9llo");
    } else if (strcmp(name, "message_binary.json") == 0) {
        assert_int_equal(e->binary, 1);
        assert_int_equal(e->data_len, 4);
        assert_memory_equal(e->data, "\x00\x01\xfe\xff", 4);
    } else if (strcmp(name, "disconnect.json") == 0) {
        assert_int_equal(e->type, WSGATE_EVENT_DISCONNECT);
        assert_int_equal(e->code, 4000);
        assert_string_equal(e->reason, "kicked");
        assert_string_equal(e->initiator, "api");
    } else if (strcmp(name, "batch.json") == 0) {
        assert_int_equal(wsgate_events_count(evs), 3);
        assert_null(e->user);
        assert_string_equal((const char *)wsgate_events_get(evs, 1)->data, "two");
        assert_int_equal(wsgate_events_get(evs, 2)->code, 1001);
        assert_string_equal(wsgate_events_get(evs, 2)->initiator, "timeout");
        assert_null(wsgate_events_get(evs, 3));
    } else if (strcmp(name, "connect_anonymous.json") == 0) {
        assert_null(e->user);
        assert_null(e->subprotocol);
        assert_int_equal(e->n_headers + e->n_query + e->n_channels, 0);
    } else if (strcmp(name, "message_empty_binary.json") == 0) {
        assert_int_equal(e->binary, 1);
        assert_int_equal(e->data_len, 0);
    } else {
        fail_msg("valid case %s has no checks: add them here", name);
    }
}

static void for_each_case(const char *dir, int valid)
{
    char path[512];
    snprintf(path, sizeof path, WSGATE_TEST_DATA "/sdk/events/%s", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (!strstr(de->d_name, ".json"))
            continue;
        wsgate_status st;
        wsgate_events *evs = parse_file(dir, de->d_name, &st);
        if (valid) {
            if (st != WSGATE_OK)
                fail_msg("%s: %s (%s)", de->d_name, wsgate_strerror(st),
                         wsgate_last_problem()->detail);
            check_valid(de->d_name, evs);
        } else {
            if (st != WSGATE_EPROTO)
                fail_msg("%s: got %s, want EPROTO", de->d_name, wsgate_strerror(st));
            assert_null(evs);
            assert_non_null(wsgate_last_problem()->detail);
        }
        wsgate_events_free(evs);
        n++;
    }
    closedir(d);
    assert_true(n >= 7);
}

static void test_events_valid(void **state)
{
    for_each_case("valid", 1);
}

static void test_events_invalid(void **state)
{
    for_each_case("invalid", 0);
}

static void test_response_actions(void **state)
{
    wsgate_response *r = NULL;
    char *body = NULL;
    size_t len = 0;
    assert_int_equal(wsgate_response_new(&r), WSGATE_OK);
    assert_int_equal(wsgate_response_body(r, &body, &len), WSGATE_OK);
    assert_string_equal(body, "{\"actions\":[]}");
    wsgate_free(body);
    assert_int_equal(wsgate_response_send_text(r, "hi \"you\""), WSGATE_OK);
    assert_int_equal(wsgate_response_send_binary(r, "\x00\x01", 2), WSGATE_OK);
    assert_int_equal(wsgate_response_subscribe(r, "room.1"), WSGATE_OK);
    assert_int_equal(wsgate_response_unsubscribe(r, "lobby"), WSGATE_OK);
    assert_int_equal(wsgate_response_close(r, 4000, "kicked"), WSGATE_OK);
    /* refused, and nothing added */
    assert_int_equal(wsgate_response_send_text(r, "\xff"), WSGATE_EINVAL);
    assert_int_equal(wsgate_response_subscribe(r, ""), WSGATE_EINVAL);
    assert_int_equal(wsgate_response_subscribe(r, "a\nb"), WSGATE_EINVAL);
    char long_ch[300];
    memset(long_ch, 'c', sizeof long_ch - 1);
    long_ch[299] = 0;
    assert_int_equal(wsgate_response_unsubscribe(r, long_ch), WSGATE_EINVAL);
    assert_int_equal(wsgate_response_close(r, 1001, NULL), WSGATE_EINVAL);
    assert_int_equal(wsgate_response_close(r, 5000, NULL), WSGATE_EINVAL);
    char long_reason[130];
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[129] = 0;
    assert_int_equal(wsgate_response_close(r, 4000, long_reason), WSGATE_EINVAL);
    assert_int_equal(wsgate_response_body(r, &body, &len), WSGATE_OK);
    assert_string_equal(body, "{\"actions\":[{\"action\":\"send\",\"data\":\"hi \\\"you\\\"\"},"
                              "{\"action\":\"send\",\"data_base64\":\"AAE=\"},"
                              "{\"action\":\"subscribe\",\"channel\":\"room.1\"},"
                              "{\"action\":\"unsubscribe\",\"channel\":\"lobby\"},"
                              "{\"action\":\"close\",\"code\":4000,\"reason\":\"kicked\"}]}");
    assert_int_equal(len, strlen(body));
    wsgate_free(body);
    wsgate_response_free(r);
    wsgate_response_free(NULL);
}

static void test_status_and_version(void **state)
{
    assert_string_equal(wsgate_strerror(WSGATE_EGONE), "connection gone (410)");
    assert_string_equal(wsgate_strerror((wsgate_status)-999), "unknown status");
    assert_string_equal(wsgate_version(), WSGATE_VERSION_STRING);
    assert_true(WSGATE_VERSION_NUM > 0);
    assert_int_equal(wsgate_events_parse(NULL, "{}", 2), WSGATE_EINVAL);
    assert_int_equal(wsgate_last_problem()->status, WSGATE_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),          cmocka_unit_test(test_verify_now),
        cmocka_unit_test(test_events_valid),     cmocka_unit_test(test_events_invalid),
        cmocka_unit_test(test_response_actions), cmocka_unit_test(test_status_and_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
