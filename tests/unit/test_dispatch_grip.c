/* SPDX-License-Identifier: MIT */
/*
 * test_dispatch_grip.c — the grip protocol's pure pieces
 * (dispatcher/disp_proto.h): event bodies built from stored envelopes,
 * answers read into actions (control messages, prefixes, CLOSE codes,
 * refusals, bad framing), Set-Meta-* capture and merging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "dispatcher/disp_proto.h"

static int parse(const char *body, bool opening, disp_answer_t *a)
{
    char err[160];
    return disp_grip_parse(NULL, body, strlen(body), opening, a, err, sizeof err);
}

static void bodies(void **state)
{
    (void)state;
    const char *msg = "{\"id\":\"evt_2\",\"type\":\"message\",\"data\":\"hi\"}";
    const char *bin =
        "{\"id\":\"evt_3\",\"type\":\"message\",\"binary\":true,\"data_base64\":\"AP8=\"}";
    const char *cls = "{\"id\":\"evt_4\",\"type\":\"disconnect\",\"code\":4001,\"reason\":\"bye\","
                      "\"initiator\":\"client\"}";
    bus_event_t evs[4] = {
        {.id = "evt_1", .type = BUS_EV_CONNECT, .body = "{}", .body_len = 2},
        {.id = "evt_2", .type = BUS_EV_MESSAGE, .body = msg, .body_len = strlen(msg)},
        {.id = "evt_3", .type = BUS_EV_MESSAGE, .body = bin, .body_len = strlen(bin)},
        {.id = "evt_4", .type = BUS_EV_DISCONNECT, .body = cls, .body_len = strlen(cls)},
    };
    const bus_event_t *p[4] = {&evs[0], &evs[1], &evs[2], &evs[3]};
    const char *body;
    size_t len;
    char *owned = NULL, err[128];
    assert_int_equal(disp_proto_grip.body(NULL, p, 4, &body, &len, &owned, err, sizeof err), 0);
    static const char want[] = "OPEN\r\nTEXT 2\r\nhi\r\nBINARY 2\r\n\x00\xff\r\n"
                               "CLOSE 5\r\n\x0f\xa1"
                               "bye\r\n";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(body, want, len);
    free(owned);

    const char *lost = "{\"type\":\"disconnect\",\"code\":1006,\"initiator\":\"edge_lost\"}";
    bus_event_t l = {
        .id = "evt_5", .type = BUS_EV_DISCONNECT, .body = lost, .body_len = strlen(lost)};
    const bus_event_t *lp = &l;
    assert_int_equal(disp_proto_grip.body(NULL, &lp, 1, &body, &len, &owned, err, sizeof err), 0);
    assert_string_equal(body, "DISCONNECT\r\n");
    free(owned);

    bus_event_t bad = {.id = "evt_6", .type = BUS_EV_MESSAGE, .body = "{x", .body_len = 2};
    const bus_event_t *bp = &bad;
    assert_int_equal(disp_proto_grip.body(NULL, &bp, 1, &body, &len, &owned, err, sizeof err),
                     WSG_EPROTO);
}

static void answers(void **state)
{
    (void)state;
    disp_answer_t a;
    assert_int_equal(parse("OPEN\r\nTEXT 27\r\nc:{\"type\":\"subscribe\",\"channel\":\"room\"}\r\n"
                           "TEXT 4\r\nm:hi\r\nBINARY 1\r\nx\r\nPING\r\n"
                           "TEXT 13\r\nc:{\"type\":\"detach\"}\r\n",
                           true, &a),
                     0);
    assert_int_equal(a.n, 3);
    assert_int_equal(a.acts[0].op, BUS_CMD_SUBSCRIBE);
    assert_string_equal(a.acts[0].channel, "room");
    assert_int_equal(a.acts[1].op, BUS_CMD_SEND);
    assert_string_equal((char *)a.acts[1].data, "hi");
    assert_int_equal(a.acts[2].binary, 1);
    assert_int_equal(a.ignored, 2); /* PING, detach */
    disp_actions_free(a.acts, a.n);

    assert_int_equal(parse("CLOSE 6\r\n\x0f\xa2"
                           "done\r\nCLOSE 2\r\n\x03\xe9\r\nDISCONNECT\r\n",
                           false, &a),
                     0);
    assert_int_equal(a.n, 2); /* 1001 is the gateway's, skipped */
    assert_int_equal(a.skipped, 1);
    assert_int_equal(a.acts[0].code, 4002);
    assert_string_equal(a.acts[0].reason, "done");
    assert_int_equal(a.acts[1].code, 1000);
    disp_actions_free(a.acts, a.n);

    /* an answer to OPEN without OPEN refuses: only the close is left */
    assert_int_equal(parse("TEXT 2\r\nhi\r\n", true, &a), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.acts[0].op, BUS_CMD_CLOSE);
    assert_int_equal(a.acts[0].code, 1008);
    disp_actions_free(a.acts, a.n);
    assert_int_equal(parse("", true, &a), 0);
    assert_int_equal(a.n, 1);
    disp_actions_free(a.acts, a.n);
    assert_int_equal(parse("", false, &a), 0);
    assert_int_equal(a.n, 0);

    const char *bad[] = {"garbage", "TEXT 5\r\nhi\r\n", "TEXT zz\r\nhi\r\n", "TEXT 2\r\nhi",
                         "OPEN",    "NOPE\r\n",         "TEXT 2\r\nhiXX\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], false, &a), WSG_EPROTO);
        assert_int_equal(a.n, 0);
        assert_null(a.acts);
    }
}

static void meta(void **state)
{
    (void)state;
    struct curl_slist *set = NULL, *m = NULL;
    size_t bytes = 0;
    const char *lines[] = {"Set-Meta-User: alice\r\n", "set-meta-Room:  42 \r\n",
                           "Set-Meta-Bad\x01: x\r\n", "Set-Meta-X: a\x01\r\n",
                           "Content-Type: text/plain\r\n"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        assert_int_equal(disp_meta_header(lines[i], strlen(lines[i]), &set, &bytes), 0);
    assert_non_null(set);
    assert_string_equal(set->data, "Meta-User: alice");
    assert_string_equal(set->next->data, "Meta-Room: 42");
    assert_null(set->next->next);
    assert_int_equal(disp_meta_merge(&m, set), 0);
    curl_slist_free_all(set);
    set = NULL;
    bytes = 0;
    const char *upd[] = {"Set-Meta-user: \r\n", "Set-Meta-Room: 43\r\n"};
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(disp_meta_header(upd[i], strlen(upd[i]), &set, &bytes), 0);
    assert_int_equal(disp_meta_merge(&m, set), 0);
    assert_string_equal(m->data, "Meta-Room: 43");
    assert_null(m->next);
    curl_slist_free_all(set);
    curl_slist_free_all(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bodies),
        cmocka_unit_test(answers),
        cmocka_unit_test(meta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
