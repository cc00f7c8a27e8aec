/* SPDX-License-Identifier: MIT */
/*
 * test_dispatch_aws.c — the aws protocol's pure pieces
 * (dispatcher/disp_proto_aws.c): Lambda-proxy events built from stored
 * envelopes (field names and values AWS uses), the route key a
 * route_selection_expression picks, and answers read into actions
 * ($connect refusals, route responses).
 */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "dispatcher/disp_proto.h"

static wsg_route_conf_t route(bool route_response)
{
    wsg_route_conf_t r = {.path = "/ws"};
    r.aws.stage = "prod";
    r.aws.api_id = "api1";
    r.aws.domain_name = "127.0.0.1:8081";
    r.aws.route_selection_expression = "$request.body.action";
    r.aws.route_response = route_response;
    return r;
}

static json_t *event(const wsg_route_conf_t *r, bus_event_type_t t, const char *env)
{
    bus_event_t ev = {
        .id = "evt_1", .type = t, .conn_id = "c1", .body = env, .body_len = strlen(env)};
    char *out = NULL, err[160];
    size_t len = 0;
    assert_int_equal(disp_aws_event(r, &ev, &out, &len, err, sizeof err), 0);
    json_t *j = json_loadb(out, len, 0, NULL);
    assert_non_null(j);
    free(out);
    return j;
}

#define RC(j, k) json_object_get(json_object_get(j, "requestContext"), k)
#define STR(v) json_string_value(v)

static void connect_event(void **state)
{
    (void)state;
    wsg_route_conf_t r = route(false);
    json_t *j = event(&r, BUS_EV_CONNECT,
                      "{\"id\":\"evt_1\",\"type\":\"connect\",\"connection_id\":\"c1\",\"user\":"
                      "\"alice\",\"context\":{\"tenant\":\"acme\"},\"seq\":1,\"timestamp\":"
                      "\"2026-12-07T05:00:01.250Z\",\"remote_addr\":\"127.0.0.1\",\"headers\":{"
                      "\"user-agent\":\"ua/1\",\"host\":\"h\"},\"query\":{\"room\":\"7\"}}");
    assert_string_equal(STR(RC(j, "routeKey")), "$connect");
    assert_string_equal(STR(RC(j, "eventType")), "CONNECT");
    assert_string_equal(STR(RC(j, "connectionId")), "c1");
    assert_string_equal(STR(RC(j, "requestId")), "evt_1");
    assert_string_equal(STR(RC(j, "stage")), "prod");
    assert_string_equal(STR(RC(j, "apiId")), "api1");
    assert_string_equal(STR(RC(j, "domainName")), "127.0.0.1:8081");
    assert_string_equal(STR(RC(j, "messageDirection")), "IN");
    assert_string_equal(STR(RC(j, "requestTime")), "07/Dec/2026:05:00:01 +0000");
    assert_int_equal(json_integer_value(RC(j, "connectedAt")), 1796619601250LL);
    assert_int_equal(json_integer_value(RC(j, "requestTimeEpoch")), 1796619601250LL);
    assert_string_equal(STR(json_object_get(RC(j, "identity"), "sourceIp")), "127.0.0.1");
    assert_string_equal(STR(json_object_get(RC(j, "identity"), "userAgent")), "ua/1");
    assert_string_equal(STR(json_object_get(RC(j, "authorizer"), "principalId")), "alice");
    assert_string_equal(STR(json_object_get(RC(j, "authorizer"), "tenant")), "acme");
    assert_null(RC(j, "messageId"));
    assert_string_equal(STR(json_object_get(json_object_get(j, "headers"), "User-Agent")), "ua/1");
    json_t *mv = json_object_get(json_object_get(j, "multiValueHeaders"), "Host");
    assert_string_equal(STR(json_array_get(mv, 0)), "h");
    assert_string_equal(STR(json_object_get(json_object_get(j, "queryStringParameters"), "room")),
                        "7");
    assert_true(json_is_false(json_object_get(j, "isBase64Encoded")));
    assert_null(json_object_get(j, "body"));
    json_decref(j);
}

static void message_events(void **state)
{
    (void)state;
    wsg_route_conf_t r = route(false);
    json_t *j = event(&r, BUS_EV_MESSAGE,
                      "{\"type\":\"message\",\"user\":null,\"context\":{},\"timestamp\":\"2026-12-"
                      "07T05:00:02Z\",\"data\":\"{\\\"action\\\":\\\"join\\\"}\"}");
    assert_string_equal(STR(RC(j, "routeKey")), "join");
    assert_string_equal(STR(RC(j, "eventType")), "MESSAGE");
    assert_string_equal(STR(RC(j, "messageId")), "evt_1");
    assert_null(RC(j, "authorizer")); /* anonymous: no authorizer context */
    assert_string_equal(STR(json_object_get(j, "body")), "{\"action\":\"join\"}");
    assert_true(json_is_false(json_object_get(j, "isBase64Encoded")));
    assert_null(json_object_get(j, "headers"));
    json_decref(j);
    j = event(&r, BUS_EV_MESSAGE,
              "{\"type\":\"message\",\"timestamp\":\"2026-12-07T05:00:02Z\",\"binary\":true,"
              "\"data_base64\":\"AP8=\"}");
    assert_string_equal(STR(RC(j, "routeKey")), "$default");
    assert_string_equal(STR(json_object_get(j, "body")), "AP8=");
    assert_true(json_is_true(json_object_get(j, "isBase64Encoded")));
    json_decref(j);
}

static void disconnect_event(void **state)
{
    (void)state;
    wsg_route_conf_t r = route(false);
    json_t *j = event(&r, BUS_EV_DISCONNECT,
                      "{\"type\":\"disconnect\",\"timestamp\":\"2026-12-07T05:00:03.000Z\","
                      "\"code\":4001,\"reason\":\"bye\",\"initiator\":\"client\"}");
    assert_string_equal(STR(RC(j, "routeKey")), "$disconnect");
    assert_string_equal(STR(RC(j, "eventType")), "DISCONNECT");
    assert_int_equal(json_integer_value(RC(j, "disconnectStatusCode")), 4001);
    assert_string_equal(STR(RC(j, "disconnectReason")), "bye");
    json_decref(j);
}

static void not_an_envelope(void **state)
{
    (void)state;
    wsg_route_conf_t r = route(false);
    bus_event_t ev = {.id = "evt_9", .type = BUS_EV_MESSAGE, .body = "[1]", .body_len = 3};
    char *out = NULL, err[160];
    size_t len;
    assert_int_equal(disp_aws_event(&r, &ev, &out, &len, err, sizeof err), WSG_EPROTO);
    assert_null(out);
}

static void route_keys(void **state)
{
    (void)state;
    char k[64];
    const char *rse = "$request.body.a.b";
    disp_aws_route_key(rse, "{\"a\":{\"b\":\"x\"}}", 15, k, sizeof k);
    assert_string_equal(k, "x");
    disp_aws_route_key(rse, "{\"a\":{\"b\":1}}", 13, k, sizeof k);
    assert_string_equal(k, "$default");
    disp_aws_route_key(rse, "{\"a\":\"b\"}", 9, k, sizeof k);
    assert_string_equal(k, "$default");
    disp_aws_route_key(rse, "not json", 8, k, sizeof k);
    assert_string_equal(k, "$default");
    disp_aws_route_key("", "{\"a\":{\"b\":\"x\"}}", 15, k, sizeof k);
    assert_string_equal(k, "$default");
}

static int parse(bool rr, const char *body, bool opening, disp_answer_t *a)
{
    wsg_route_conf_t r = route(rr);
    char err[160];
    return disp_proto_aws.parse(&r, body, strlen(body), opening, a, err, sizeof err);
}

static void answers(void **state)
{
    (void)state;
    disp_answer_t a;
    assert_int_equal(parse(false, "{\"statusCode\":403}", true, &a), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.acts[0].op, BUS_CMD_CLOSE);
    assert_int_equal(a.acts[0].code, 1008);
    disp_actions_free(a.acts, a.n);
    assert_int_equal(parse(false, "{\"statusCode\":200}", true, &a), 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(parse(false, "{\"statusCode\":200,\"body\":\"x\"}", false, &a), 0);
    assert_int_equal(a.n, 0); /* route_response off */
    assert_int_equal(parse(true, "{\"statusCode\":200,\"body\":\"pong\"}", false, &a), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.acts[0].op, BUS_CMD_SEND);
    assert_int_equal(a.acts[0].len, 4);
    assert_memory_equal(a.acts[0].data, "pong", 4);
    assert_false(a.acts[0].binary);
    disp_actions_free(a.acts, a.n);
    assert_int_equal(
        parse(true, "{\"statusCode\":200,\"body\":\"AP8=\",\"isBase64Encoded\":true}", false, &a),
        0);
    assert_int_equal(a.acts[0].len, 2);
    assert_true(a.acts[0].binary);
    disp_actions_free(a.acts, a.n);
    assert_int_equal(parse(true, "plain text", false, &a), 0);
    assert_int_equal(a.acts[0].len, 10);
    disp_actions_free(a.acts, a.n);
    assert_int_equal(parse(true, "  \n", false, &a), 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(
        parse(true, "{\"statusCode\":200,\"body\":\"@@\",\"isBase64Encoded\":true}", false, &a),
        WSG_EPROTO);
    assert_int_equal(a.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connect_event),    cmocka_unit_test(message_events),
        cmocka_unit_test(disconnect_event), cmocka_unit_test(not_an_envelope),
        cmocka_unit_test(route_keys),       cmocka_unit_test(answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
