/* SPDX-License-Identifier: MIT */
/*
 * test_http.c — common/http.c: the registered reason phrases the edge and
 * the control API write, and a phrase by class (never another status's
 * phrase) for a status the table does not hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/http.h"

static void registered(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason;
    } want[] = {
        {101, "Switching Protocols"},
        {200, "OK"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {418, "I'm a teapot"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {451, "Unavailable For Legal Reasons"},
        {500, "Internal Server Error"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_string_equal(wsg_http_reason(want[i].status), want[i].reason);
}

static void by_class(void **state)
{
    (void)state;
    assert_string_equal(wsg_http_reason(199), "Informational");
    assert_string_equal(wsg_http_reason(299), "Success");
    assert_string_equal(wsg_http_reason(399), "Redirection");
    assert_string_equal(wsg_http_reason(419), "Client Error");
    assert_string_equal(wsg_http_reason(499), "Client Error");
    assert_string_equal(wsg_http_reason(599), "Server Error");
    assert_string_equal(wsg_http_reason(0), "Unknown");
    assert_string_equal(wsg_http_reason(600), "Unknown");
    assert_string_equal(wsg_http_reason(-503), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registered),
        cmocka_unit_test(by_class),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
