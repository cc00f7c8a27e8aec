/* SPDX-License-Identifier: MIT */
/*
 * test_dispatch_wsapi.c — the ws-api-gateway protocol's pure pieces
 * (dispatcher/disp_proto.h): the seed's frames built from stored envelopes
 * (open, message with data or data_base64, close; no user refused), and
 * the user table: an open binds, a close unbinds, a close of a connection
 * the user no longer is goes unsent, a close sent again finds no entry and
 * goes.
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

static const disp_proto_t *P = &disp_proto_wsapi;

static bus_event_t ev(bus_event_type_t t, const char *conn, const char *body)
{
    return (bus_event_t){
        .id = "evt_1", .type = t, .conn_id = conn, .body = body, .body_len = strlen(body)};
}

static void frame_is(const bus_event_t *e, const char *want)
{
    const char *body = NULL;
    char *owned = NULL, err[160];
    size_t len = 0;
    assert_int_equal(P->body(NULL, &e, 1, &body, &len, &owned, err, sizeof err), 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(body, want, len);
    free(owned);
}

static void frames(void **state)
{
    (void)state;
    assert_ptr_equal(disp_proto_for(WSG_PROTO_WSAPI), P);
    bus_event_t o = ev(BUS_EV_CONNECT, "c1", "{\"type\":\"connect\",\"user\":\"ann\",\"seq\":1}");
    frame_is(&o, "{\"event\":\"open\",\"user\":\"ann\"}");
    bus_event_t m = ev(BUS_EV_MESSAGE, "c1", "{\"user\":\"ann\",\"data\":\"hi \\\"you\\\"\"}");
    frame_is(&m, "{\"event\":\"message\",\"user\":\"ann\",\"data\":\"hi \\\"you\\\"\"}");
    bus_event_t b = ev(BUS_EV_MESSAGE, "c1", "{\"user\":\"ann\",\"data_base64\":\"AAE=\"}");
    frame_is(&b, "{\"event\":\"message\",\"user\":\"ann\",\"data_base64\":\"AAE=\"}");
    bus_event_t c = ev(BUS_EV_DISCONNECT, "c1", "{\"user\":\"ann\",\"code\":1000}");
    frame_is(&c, "{\"event\":\"close\",\"user\":\"ann\"}");
    static const char *const bad[] = {"not json", "{\"user\":null,\"data\":\"x\"}",
                                      "{\"user\":\"ann\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        bus_event_t e = ev(BUS_EV_MESSAGE, "c1", bad[i]), *pe = &e;
        const char *body = NULL;
        char *owned = NULL, err[160] = "";
        size_t len = 0;
        assert_int_equal(
            P->body(NULL, (const bus_event_t *const *)&pe, 1, &body, &len, &owned, err, sizeof err),
            WSG_EPROTO);
        assert_null(owned);
        assert_true(err[0] != '\0');
    }
}

static void track(disp_users_t *t, bus_event_type_t type, const char *conn, bool want_send)
{
    bus_event_t e = ev(type, conn, "{\"user\":\"ann\"}");
    bool send = !want_send;
    assert_int_equal(disp_wsapi_track(t, &e, &send), 0);
    assert_int_equal(send, want_send);
}

static void find_is(disp_users_t *t, const char *want)
{
    char *id = NULL;
    assert_int_equal(disp_users_find(t, "ann", &id), want ? 0 : WSG_ENOTFOUND);
    if (want)
        assert_string_equal(id, want);
    free(id);
}

static void users(void **state)
{
    (void)state;
    disp_users_t *t;
    assert_int_equal(disp_users_new(&t), 0);
    find_is(t, NULL);
    track(t, BUS_EV_CONNECT, "c1", true);
    find_is(t, "c1");
    track(t, BUS_EV_MESSAGE, "c1", true);
    track(t, BUS_EV_CONNECT, "c2", true); /* replace: the newer's open first */
    find_is(t, "c2");
    track(t, BUS_EV_DISCONNECT, "c1", false); /* the older's close: not sent */
    find_is(t, "c2");
    track(t, BUS_EV_DISCONNECT, "c2", true);
    find_is(t, NULL);
    track(t, BUS_EV_DISCONNECT, "c2", true); /* sent again after a stream drop */
    /* many users: the table grows and keeps them all */
    char user[32], conn[32], body[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(user, sizeof user, "u%d", i);
        snprintf(conn, sizeof conn, "c%d", i);
        snprintf(body, sizeof body, "{\"user\":\"%s\"}", user);
        bus_event_t e = ev(BUS_EV_CONNECT, conn, body);
        bool send;
        assert_int_equal(disp_wsapi_track(t, &e, &send), 0);
    }
    for (int i = 0; i < 5000; i += 499) {
        char *id = NULL;
        snprintf(user, sizeof user, "u%d", i);
        snprintf(conn, sizeof conn, "c%d", i);
        assert_int_equal(disp_users_find(t, user, &id), 0);
        assert_string_equal(id, conn);
        free(id);
    }
    disp_users_free(t);
    disp_users_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(frames),
        cmocka_unit_test(users),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
