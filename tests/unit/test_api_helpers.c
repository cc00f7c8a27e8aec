/* SPDX-License-Identifier: MIT */
/*
 * test_api_helpers.c — the control API's pure helpers: channel-name rules,
 * channels-claim glob matching, RFC 9457 problem documents, message-body
 * parsing by media type, path and query decoding; the location cache
 * (api_edge_cache.c): hits, drops, LRU eviction within a set, and an edge
 * table that starts over.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/hash.h"
#include "common/metrics.h"
#include "control-api/api_int.h"

static void test_channel_valid(void **state)
{
    (void)state;
    char err[128], name[300];
    assert_int_equal(wsg_channel_valid("room.1", err, sizeof err), 0);
    assert_int_equal(wsg_channel_valid("a/b c*>", err, sizeof err), 0);
    assert_int_equal(wsg_channel_valid("\xc3\xbcn\xc3\xaf", err, sizeof err), 0);
    assert_int_equal(wsg_channel_valid("", err, sizeof err), WSG_EINVAL);
    memset(name, 'c', 255);
    name[255] = 0;
    assert_int_equal(wsg_channel_valid(name, err, sizeof err), 0);
    name[255] = 'c';
    name[256] = 0;
    assert_int_equal(wsg_channel_valid(name, err, sizeof err), WSG_EINVAL);
    assert_non_null(strstr(err, "256"));
    assert_int_equal(wsg_channel_valid("a\x01"
                                       "b",
                                       err, sizeof err),
                     WSG_EINVAL);
    assert_int_equal(wsg_channel_valid("a\tb", err, sizeof err), WSG_EINVAL);
    assert_int_equal(wsg_channel_valid("a\x7f", err, sizeof err), WSG_EINVAL);
    assert_int_equal(wsg_channel_valid("\xff", err, sizeof err), WSG_EINVAL);
    assert_int_equal(wsg_channel_valid("\xc0\x80", err, sizeof err), WSG_EINVAL); /* overlong */
    assert_int_equal(wsg_channel_valid("\xed\xa0\x80", err, sizeof err), WSG_EINVAL);
    assert_int_equal(wsg_channel_valid("\xe2\x82", err, sizeof err), WSG_EINVAL); /* cut */
}

static void test_glob(void **state)
{
    (void)state;
    const char *pats[] = {"room.*", "lobby", "user-?"};
    assert_true(wsg_channels_allow(pats, 3, "room.1"));
    assert_true(wsg_channels_allow(pats, 3, "room.a/b")); /* no FNM_PATHNAME */
    assert_true(wsg_channels_allow(pats, 3, "lobby"));
    assert_true(wsg_channels_allow(pats, 3, "user-7"));
    assert_false(wsg_channels_allow(pats, 3, "user-77"));
    assert_false(wsg_channels_allow(pats, 3, "lobby2"));
    assert_false(wsg_channels_allow(pats, 3, "room"));
    assert_false(wsg_channels_allow(pats, 0, "room.1"));
}

static void test_problem_json(void **state)
{
    (void)state;
    json_t *p = api_problem_json(410, "send: connection gone");
    assert_string_equal(json_string_value(json_object_get(p, "title")), "Gone");
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 410);
    assert_string_equal(json_string_value(json_object_get(p, "detail")), "send: connection gone");
    assert_non_null(strstr(json_string_value(json_object_get(p, "type")), "https://"));
    json_decref(p);
    p = api_problem_json(400, "bad \xff byte"); /* detail must stay valid JSON */
    assert_true(json_is_string(json_object_get(p, "detail")));
    json_decref(p);
    p = api_problem_json(415, "x"); /* the title is common/http.c's phrase */
    assert_string_equal(json_string_value(json_object_get(p, "title")), "Unsupported Media Type");
    json_decref(p);
}

static void test_parse_message(void **state)
{
    (void)state;
    api_msg_t m;
    char err[200];
    assert_int_equal(api_parse_message("text/plain; charset=utf-8", "hi", 2, &m, err, sizeof err),
                     0);
    assert_int_equal(m.binary, 0);
    assert_memory_equal(m.data, "hi", 2);
    free(m.owned);
    assert_int_equal(
        api_parse_message("application/octet-stream", "\xff\x00", 2, &m, err, sizeof err), 0);
    assert_int_equal(m.binary, 1);
    assert_int_equal(m.len, 2);
    free(m.owned);
    const char *j = "{\"data_base64\":\"AAE=\"}";
    assert_int_equal(api_parse_message("Application/JSON", j, strlen(j), &m, err, sizeof err), 0);
    assert_int_equal(m.binary, 1);
    assert_int_equal(m.len, 2);
    free(m.owned);
    assert_int_equal(api_parse_message("application/xml", "<a/>", 4, &m, err, sizeof err), 415);
    assert_int_equal(api_parse_message(NULL, "x", 1, &m, err, sizeof err), 415);
    assert_int_equal(api_parse_message("text/plain", "\xff", 1, &m, err, sizeof err), 400);
    const char *bad[] = {"{",
                         "[]",
                         "{\"data\":1}",
                         "{\"data\":\"a\",\"data_base64\":\"\"}",
                         "{\"data_base64\":\"!!\"}",
                         "{\"data\":\"a\",\"data\":\"b\"}",
                         "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            api_parse_message("application/json", bad[i], strlen(bad[i]), &m, err, sizeof err),
            400);
        assert_null(m.data);
        assert_null(m.owned);
    }
    assert_int_equal(api_media_is("application/jsonx", "application/json"), 0);
}

static void test_paths(void **state)
{
    (void)state;
    api_req_t r = {0};
    assert_int_equal(api_split_path("/v1/channels/a%2Fb/connections/x", r.segs, &r.nsegs), 0);
    assert_int_equal(r.nsegs, 5);
    assert_string_equal(r.segs[2], "a/b");
    api_req_clear(&r);
    assert_int_equal(api_split_path("/v1/channels/a%00b", r.segs, &r.nsegs), WSG_EINVAL);
    api_req_clear(&r);
    assert_int_equal(api_split_path("/v1/channels/a%zz", r.segs, &r.nsegs), WSG_EINVAL);
    api_req_clear(&r);
    /* a malformed name is bad input (400); a path of no route's shape is 404 */
    assert_int_equal(api_split_path("/v1//x", r.segs, &r.nsegs), WSG_ENOTFOUND);
    api_req_clear(&r);
    assert_int_equal(api_split_path("/1/2/3/4/5/6/7/8/9", r.segs, &r.nsegs), WSG_ENOTFOUND);
    api_req_clear(&r);
    assert_int_equal(api_split_path("v1", r.segs, &r.nsegs), WSG_ENOTFOUND);
    api_req_clear(&r);
    assert_int_equal(api_parse_query("route=%2Fchat&x=a+b&flag", &r), 0);
    assert_string_equal(api_query(&r, "route"), "/chat");
    assert_string_equal(api_query(&r, "x"), "a b");
    assert_string_equal(api_query(&r, "flag"), "");
    assert_null(api_query(&r, "nope"));
    api_req_clear(&r);
    assert_true(api_route_known("POST", "/v1/connections/abc/messages"));
    assert_true(api_route_known("GET", "/readyz"));
    assert_false(api_route_known("PUT", "/v1/connections/abc"));
    assert_false(api_route_known("GET", "/v2/connections"));
}

/* n ids (22 characters, like an edge's) that fall into one set of the
 * cache: its index is bits 20.. of the hash (api_edge_cache.c). */
static void same_set_ids(char ids[][24], int n)
{
    uint64_t want = 0;
    int got = 0;
    for (unsigned long i = 0; got < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "id%020lu", i);
        uint64_t set = (wsg_hash(id) >> 20) & 65535;
        if (got == 0)
            want = set;
        if (set == want)
            memcpy(ids[got++], id, sizeof id);
    }
}

static void test_edge_cache(void **state)
{
    (void)state;
    api_edge_cache_t *c = api_edge_cache_new();
    char edge[80], ids[5][24];
    assert_non_null(c);
    assert_int_equal(api_edge_cache_get(c, "nobody", edge, sizeof edge), 0);
    api_edge_cache_put(c, "conn-a", "edge-1");
    assert_int_equal(api_edge_cache_get(c, "conn-a", edge, sizeof edge), 1);
    assert_string_equal(edge, "edge-1");
    assert_int_equal(api_edge_cache_get(c, "conn-a", edge, 4), 0); /* does not fit */
    api_edge_cache_drop(c, "conn-a");
    assert_int_equal(api_edge_cache_get(c, "conn-a", edge, sizeof edge), 0);
    api_edge_cache_put(c, "an-id-longer-than-the-cache-keeps-at-all", "edge-1");
    assert_int_equal(
        api_edge_cache_get(c, "an-id-longer-than-the-cache-keeps-at-all", edge, sizeof edge), 0);

    /* 4 ways: a fifth id of a set evicts the least recently used */
    same_set_ids(ids, 5);
    uint64_t ev0 = wsg_counter_value(WSG_M_API_LOCATION_EVICTIONS);
    for (int i = 0; i < 4; i++)
        api_edge_cache_put(c, ids[i], i % 2 ? "edge-1" : "edge-2");
    assert_int_equal(api_edge_cache_get(c, ids[0], edge, sizeof edge), 1); /* used again */
    api_edge_cache_put(c, ids[4], "edge-3");
    assert_int_equal(wsg_counter_value(WSG_M_API_LOCATION_EVICTIONS) - ev0, 1);
    assert_int_equal(api_edge_cache_get(c, ids[1], edge, sizeof edge), 0);
    for (int i = 0; i < 5; i++)
        if (i != 1)
            assert_int_equal(api_edge_cache_get(c, ids[i], edge, sizeof edge), 1);
    assert_string_equal(edge, "edge-3");

    /* a full edge table starts over: entries naming the old ones miss,
     * never another edge */
    api_edge_cache_put(c, "conn-b", "edge-old");
    for (int i = 0; i < 1024; i++) {
        char id[24], e[24];
        snprintf(id, sizeof id, "x%d", i);
        snprintf(e, sizeof e, "edge-n%d", i);
        api_edge_cache_put(c, id, e);
    }
    assert_int_equal(api_edge_cache_get(c, "conn-b", edge, sizeof edge), 0);
    assert_int_equal(api_edge_cache_get(c, "x1023", edge, sizeof edge), 1);
    assert_string_equal(edge, "edge-n1023");
    api_edge_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_valid), cmocka_unit_test(test_glob),
        cmocka_unit_test(test_problem_json),  cmocka_unit_test(test_parse_message),
        cmocka_unit_test(test_paths),         cmocka_unit_test(test_edge_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
