/* SPDX-License-Identifier: MIT */
/*
 * test_envelope.c — common/envelope.c, the one builder of an event's
 * envelope (the edge's events and the control API's edge_lost disconnects):
 * the exact JSON text of docs/contract.md §3's members, null user and empty context,
 * strings escaped, a disconnect's members, and RFC 3339 timestamps with
 * milliseconds, with or without the per-second cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/envelope.h"

/* 2026-12-06T19:43:15.123Z */
#define T0 1796586195123LL

static void exact_text(void **state)
{
    (void)state;
    wsg_envelope_t env = {.id = "evt_x",
                          .type = "disconnect",
                          .conn_id = "c1",
                          .route = "/chat",
                          .user = "al\"ice",
                          .context_json = "{\"tier\":3}",
                          .seq = 17,
                          .ts_ms = T0};
    wsg_sbuf_t b = {0};
    wsg_envelope_open(&b, &env, NULL);
    wsg_envelope_disconnect(&b, 1006, "", "edge_lost");
    wsg_sb_puts(&b, "}");
    assert_string_equal(b.p, "{\"id\":\"evt_x\",\"type\":\"disconnect\",\"connection_id\":\"c1\","
                             "\"route\":\"/chat\",\"user\":\"al\\\"ice\",\"context\":{\"tier\":3},"
                             "\"seq\":17,\"timestamp\":\"2026-12-06T19:43:15.123Z\","
                             "\"code\":1006,\"reason\":\"\",\"initiator\":\"edge_lost\"}");
    free(b.p);
}

static void anonymous_and_defaults(void **state)
{
    (void)state;
    wsg_envelope_t env = {
        .id = "evt_y", .type = "message", .conn_id = "c2", .route = "/r", .seq = 1, .ts_ms = T0};
    wsg_sbuf_t b = {0};
    wsg_envelope_open(&b, &env, NULL);
    wsg_envelope_disconnect(&b, 4000, "bad \xff reason", NULL);
    wsg_sb_puts(&b, "}");
    json_error_t err;
    json_t *o = json_loads(b.p, 0, &err);
    assert_non_null(o);
    assert_true(json_is_null(json_object_get(o, "user")));
    assert_int_equal(json_object_size(json_object_get(o, "context")), 0);
    assert_string_equal(json_string_value(json_object_get(o, "reason")), ""); /* not UTF-8 */
    assert_string_equal(json_string_value(json_object_get(o, "initiator")), "server");
    assert_int_equal(json_integer_value(json_object_get(o, "code")), 4000);
    json_decref(o);
    free(b.p);
}

static void timestamps(void **state)
{
    (void)state;
    wsg_ts_cache_t cache = {0};
    char a[32], b[32];
    const int64_t ms[] = {T0, T0 + 876, T0 + 877, T0 + 3600 * 1000, 0, 999};
    const char *want[] = {"2026-12-06T19:43:15.123Z", "2026-12-06T19:43:15.999Z",
                          "2026-12-06T19:43:16.000Z", "2026-12-06T20:43:15.123Z",
                          "1970-01-01T00:00:00.000Z", "1970-01-01T00:00:00.999Z"};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        wsg_ts_format(&cache, ms[i], a);
        wsg_ts_format(NULL, ms[i], b);
        assert_string_equal(a, want[i]);
        assert_string_equal(b, want[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_text),
        cmocka_unit_test(anonymous_and_defaults),
        cmocka_unit_test(timestamps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
