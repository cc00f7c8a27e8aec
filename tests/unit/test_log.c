/* SPDX-License-Identifier: MIT */
/* test_log.c — the JSON-lines logger: valid JSON, escaping, typed fields, level filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/err.h"
#include "common/log.h"

static int pipefd[2];

static int setup(void **state)
{
    if (pipe(pipefd) != 0)
        return -1;
    wsg_log_set_fd(pipefd[1]);
    return 0;
}

static int teardown(void **state)
{
    wsg_log_set_fd(2);
    close(pipefd[0]);
    close(pipefd[1]);
    return 0;
}

/* Reads what the logger wrote since the last call. */
static char *drain(char *buf, size_t len)
{
    ssize_t n = read(pipefd[0], buf, len - 1);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

static void json_line_has_typed_fields(void **state)
{
    char buf[4096];
    assert_int_equal(wsg_log_setup("debug", "json"), 0);
    WSG_LOG(WSG_LOG_INFO, "client \"connected\"", "conn=%s code=%d bytes=%zu user=%s ctx=%j",
            "c\n1", -7, (size_t)42, (const char *)NULL, "{\"a\":1}");
    char *line = drain(buf, sizeof buf);
    assert_non_null(strchr(line, '\n'));
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "client \"connected\"");
    assert_string_equal(json_string_value(json_object_get(j, "conn")), "c\n1");
    assert_int_equal(json_integer_value(json_object_get(j, "code")), -7);
    assert_int_equal(json_integer_value(json_object_get(j, "bytes")), 42);
    assert_true(json_is_null(json_object_get(j, "user")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "ctx"), "a")), 1);
    assert_non_null(json_object_get(j, "ts"));
    json_decref(j);
}

static void level_filter_drops_below_threshold(void **state)
{
    char buf[4096];
    assert_int_equal(wsg_log_setup("warn", "json"), 0);
    WSG_LOG(WSG_LOG_INFO, "hidden", NULL);
    WSG_LOG(WSG_LOG_ERROR, "shown", NULL);
    char *line = drain(buf, sizeof buf);
    assert_null(strstr(line, "hidden"));
    assert_non_null(strstr(line, "shown"));
}

static void text_format_and_bad_names(void **state)
{
    char buf[4096];
    assert_int_equal(wsg_log_setup("info", "text"), 0);
    WSG_LOG(WSG_LOG_INFO, "hello", "route=%s", "/chat");
    char *line = drain(buf, sizeof buf);
    assert_non_null(strstr(line, " info hello route=/chat\n"));
    assert_int_equal(wsg_log_setup("loud", NULL), WSG_EINVAL);
    assert_int_equal(wsg_log_setup(NULL, "xml"), WSG_EINVAL);
    assert_int_equal(wsg_log_threshold, WSG_LOG_INFO); /* a refused setup changes nothing */
}

/* In text format a value cannot forge a line: control characters are escaped. */
static void text_format_escapes_control_characters(void **state)
{
    char buf[4096];
    assert_int_equal(wsg_log_setup("info", "text"), 0);
    WSG_LOG(WSG_LOG_INFO, "hello\r\nfake", "user=%s", "bob\n2026-01-01T00:00:00.000Z error forged");
    char *line = drain(buf, sizeof buf);
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
    assert_null(strchr(line, '\r'));
    assert_non_null(strstr(line, " info hello\\x0d\\x0afake user=bob\\x0a2026"));
    assert_int_equal(wsg_log_setup(NULL, "json"), 0);
}

static void long_values_are_truncated_not_overflowed(void **state)
{
    char buf[8192];
    char *big = malloc(10000);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    assert_int_equal(wsg_log_setup("info", "json"), 0);
    WSG_LOG(WSG_LOG_INFO, "big", "v=%s", big);
    char *line = drain(buf, sizeof buf);
    assert_true(strlen(line) <= 4096);
    assert_int_equal(line[strlen(line) - 1], '\n');
    free(big);
}

/* A line cut at 4 KiB is still one JSON object: the cut string is closed,
 * fields that no longer fit are left out whole, and "truncated" says so. */
static void cut_lines_stay_valid_json(void **state)
{
    char buf[8192];
    char *big = malloc(10000);
    memset(big, 'x', 9999);
    big[9999] = '\0';
    big[4050] = '"'; /* an escape near the cut must not be split */
    assert_int_equal(wsg_log_setup("info", "json"), 0);
    WSG_LOG(WSG_LOG_INFO, "big", "conn=%s v=%s n=%d ctx=%j", "c1", big, 7, "{\"a\":1}");
    char *line = drain(buf, sizeof buf);
    assert_true(strlen(line) <= 4096);
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "conn")), "c1");
    assert_true(json_string_length(json_object_get(j, "v")) > 3000);
    assert_null(json_object_get(j, "n"));
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    /* a huge message, and a huge raw JSON value that cannot be cut */
    WSG_LOG(WSG_LOG_INFO, big, "conn=%s", "c2");
    j = json_loads(drain(buf, sizeof buf), 0, NULL);
    assert_non_null(j);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    memset(big, '1', 9999);
    WSG_LOG(WSG_LOG_INFO, "raw", "conn=%s big=%j", "c3", big);
    j = json_loads(drain(buf, sizeof buf), 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "conn")), "c3");
    assert_null(json_object_get(j, "big"));
    json_decref(j);
    free(big);
}

/* Bytes that are not UTF-8 (a raw request path, say) become U+FFFD. */
static void invalid_utf8_stays_valid_json(void **state)
{
    char buf[4096];
    assert_int_equal(wsg_log_setup("info", "json"), 0);
    WSG_LOG(WSG_LOG_INFO, "path", "a=%s b=%s c=%s ok=%s", "/x\xff\xfe", "\xc3", "\xed\xa0\x80z",
            "caf\xc3\xa9 \xf0\x9f\x98\x80");
    json_t *j = json_loads(drain(buf, sizeof buf), 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "a")), "/x\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(j, "b")), "\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(j, "ok")),
                        "caf\xc3\xa9 \xf0\x9f\x98\x80");
    assert_non_null(json_object_get(j, "c"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_line_has_typed_fields),
        cmocka_unit_test(level_filter_drops_below_threshold),
        cmocka_unit_test(text_format_and_bad_names),
        cmocka_unit_test(text_format_escapes_control_characters),
        cmocka_unit_test(long_values_are_truncated_not_overflowed),
        cmocka_unit_test(cut_lines_stay_valid_json),
        cmocka_unit_test(invalid_utf8_stays_valid_json),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
