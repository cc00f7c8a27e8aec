/* SPDX-License-Identifier: MIT */
/*
 * test_dispatch_wsaas.c — the wsaas protocol's pure pieces
 * (dispatcher/disp_proto.h): the method per event, request bodies built
 * from stored envelopes (connect's ws_uri, a message's raw data, an empty
 * DELETE), the Authorization line kept from the connect event, and the
 * connect answer: {"code":"OK"} accepts, anything else closes 1008.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/close.h"
#include "common/err.h"
#include "dispatcher/disp_proto.h"

static const disp_proto_t *P = &disp_proto_wsaas;

static int body_of(const bus_event_t *ev, const char **body, size_t *len, char **owned)
{
    char err[160];
    *owned = NULL;
    return P->body(NULL, &ev, 1, body, len, owned, err, sizeof err);
}

static void table(void **state)
{
    (void)state;
    assert_ptr_equal(disp_proto_for(WSG_PROTO_WSAAS), P);
    assert_true(wsg_protocol_one_event(WSG_PROTO_WSAAS));
    assert_true(P->dead_connect_closes);
    assert_string_equal(P->method(BUS_EV_CONNECT), "POST");
    assert_string_equal(P->method(BUS_EV_MESSAGE), "PUT");
    assert_string_equal(P->method(BUS_EV_DISCONNECT), "DELETE");
    assert_string_equal(P->content_type, "application/json");
}

static void bodies(void **state)
{
    (void)state;
    const char *con = "{\"id\":\"evt_1\",\"type\":\"connect\",\"headers\":{},"
                      "\"wsaas\":{\"ws_uri\":\"http://gw:8081/p/abc\",\"authorization\":\"B x\"}}";
    const char *txt = "{\"id\":\"evt_2\",\"type\":\"message\",\"data\":\"h\\u00e9 \\\"q\\\"\"}";
    const char *bin = "{\"id\":\"evt_3\",\"type\":\"message\",\"binary\":true,"
                      "\"data_base64\":\"AP8A\"}";
    const char *cls = "{\"id\":\"evt_4\",\"type\":\"disconnect\",\"code\":1000}";
    bus_event_t c = {.id = "evt_1", .type = BUS_EV_CONNECT, .body = con, .body_len = strlen(con)};
    bus_event_t t = {.id = "evt_2", .type = BUS_EV_MESSAGE, .body = txt, .body_len = strlen(txt)};
    bus_event_t b = {.id = "evt_3", .type = BUS_EV_MESSAGE, .body = bin, .body_len = strlen(bin)};
    bus_event_t d = {
        .id = "evt_4", .type = BUS_EV_DISCONNECT, .body = cls, .body_len = strlen(cls)};
    const char *body;
    size_t len;
    char *owned;
    assert_int_equal(body_of(&c, &body, &len, &owned), 0);
    assert_string_equal(body, "{\"ws_uri\":\"http://gw:8081/p/abc\"}");
    assert_int_equal(len, strlen(body));
    free(owned);
    assert_int_equal(body_of(&t, &body, &len, &owned), 0);
    assert_int_equal(len, strlen("h\xc3\xa9 \"q\""));
    assert_memory_equal(body, "h\xc3\xa9 \"q\"", len);
    free(owned);
    assert_int_equal(body_of(&b, &body, &len, &owned), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(body, "\x00\xff\x00", 3);
    free(owned);
    assert_int_equal(body_of(&d, &body, &len, &owned), 0);
    assert_int_equal(len, 0);
    assert_null(owned);

    /* a connect without the edge's wsaas member, a message without data */
    const char *nouri = "{\"id\":\"evt_5\",\"type\":\"connect\"}";
    bus_event_t n = {
        .id = "evt_5", .type = BUS_EV_CONNECT, .body = nouri, .body_len = strlen(nouri)};
    assert_int_equal(body_of(&n, &body, &len, &owned), WSG_EPROTO);
    bus_event_t bad = {.id = "evt_6", .type = BUS_EV_MESSAGE, .body = "{}", .body_len = 2};
    assert_int_equal(body_of(&bad, &body, &len, &owned), WSG_EPROTO);
    bus_event_t nj = {.id = "evt_7", .type = BUS_EV_MESSAGE, .body = "{x", .body_len = 2};
    assert_int_equal(body_of(&nj, &body, &len, &owned), WSG_EPROTO);
}

static void kept_authorization(void **state)
{
    (void)state;
    const char *con = "{\"type\":\"connect\",\"wsaas\":{\"ws_uri\":\"u\",\"authorization\":"
                      "\"Bearer abc\"}}";
    bus_event_t c = {.id = "e", .type = BUS_EV_CONNECT, .body = con, .body_len = strlen(con)};
    struct curl_slist *kept = NULL, *hdrs = NULL;
    assert_int_equal(P->keep(&c, &kept), 0);
    assert_non_null(kept);
    assert_string_equal(kept->data, "Authorization: Bearer abc");
    assert_null(kept->next);
    assert_int_equal(P->headers(NULL, "id", kept, &hdrs), 0);
    assert_string_equal(hdrs->data, "Authorization: Bearer abc");
    curl_slist_free_all(hdrs);
    curl_slist_free_all(kept);

    /* none given, or one a header line cannot carry: nothing kept */
    const char *none = "{\"type\":\"connect\",\"wsaas\":{\"ws_uri\":\"u\"}}";
    const char *crlf = "{\"type\":\"connect\",\"wsaas\":{\"authorization\":\"a\\r\\nX: y\"}}";
    const char *nul = "{\"type\":\"connect\",\"wsaas\":{\"authorization\":\"a\\u0000b\"}}";
    const char *each[] = {none, crlf, nul, "{x"};
    for (size_t i = 0; i < 4; i++) {
        bus_event_t e = {.id = "e", .type = BUS_EV_CONNECT, .body = each[i]};
        e.body_len = strlen(each[i]);
        kept = NULL;
        assert_int_equal(P->keep(&e, &kept), 0);
        assert_null(kept);
    }
}

static void answers(void **state)
{
    (void)state;
    static const char *const accept[] = {"{\"code\":\"OK\"}", "{\"code\": \"OK\", \"x\": 1}",
                                         " {\"code\":\"OK\"}\n"};
    static const char *const refuse[] = {
        "{\"code\":\"NO\"}", "{\"code\":\"ok\"}", "{}", "", "OK", "{\"code\":1}",
        "[\"OK\"]",          "{\"code\":\"OK\""};
    for (size_t i = 0; i < sizeof accept / sizeof *accept; i++)
        assert_int_equal(disp_wsaas_accepts(accept[i], strlen(accept[i])), 1);
    for (size_t i = 0; i < sizeof refuse / sizeof *refuse; i++)
        assert_int_equal(disp_wsaas_accepts(refuse[i], strlen(refuse[i])), 0);

    char err[64];
    disp_answer_t a;
    assert_int_equal(P->parse(NULL, "{\"code\":\"OK\"}", 13, true, &a, err, sizeof err), 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(P->parse(NULL, "{\"code\":\"NO\"}", 13, true, &a, err, sizeof err), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.acts[0].op, BUS_CMD_CLOSE);
    assert_int_equal(a.acts[0].code, WSG_CLOSE_POLICY);
    assert_string_equal(a.acts[0].reason, "refused by backend");
    disp_actions_free(a.acts, a.n);
    /* answers to PUT and DELETE are not read */
    assert_int_equal(P->parse(NULL, "{\"code\":\"NO\"}", 13, false, &a, err, sizeof err), 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(P->parse(NULL, NULL, 0, false, &a, err, sizeof err), 0);
    assert_int_equal(a.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table),
        cmocka_unit_test(bodies),
        cmocka_unit_test(kept_authorization),
        cmocka_unit_test(answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
