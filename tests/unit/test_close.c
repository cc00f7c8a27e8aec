/* SPDX-License-Identifier: MIT */
/*
 * test_close.c — common/close.c: which close codes a client may send, and
 * which code and reason an application (control API, dispatcher action)
 * may close a connection with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/close.h"
#include "common/err.h"

static void peer_codes(void **state)
{
    (void)state;
    for (int code = -1; code < 6000; code++) {
        int want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                   (code >= 3000 && code <= 4999);
        assert_int_equal(wsg_close_peer_code_ok(code), want);
    }
}

static void app_codes(void **state)
{
    (void)state;
    char err[128];
    const long long ok[] = {1000, 4000, 4409, 4999};
    const long long bad[] = {-1, 0, 999, 1001, 1006, 1011, 3000, 3999, 5000, 4294968296LL};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_int_equal(wsg_close_app_check(ok[i], NULL, 0, err, sizeof err), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(wsg_close_app_check(bad[i], "", 0, err, sizeof err), WSG_EINVAL);
        assert_string_equal(err, "code must be 1000 or 4000-4999");
    }
}

static void app_reasons(void **state)
{
    (void)state;
    char r[WSG_CLOSE_REASON_MAX + 2], err[128];
    memset(r, 'a', sizeof r);
    assert_int_equal(wsg_close_app_check(4000, r, WSG_CLOSE_REASON_MAX, err, sizeof err), 0);
    assert_int_equal(wsg_close_app_check(4000, r, WSG_CLOSE_REASON_MAX + 1, err, sizeof err),
                     WSG_EINVAL);
    assert_non_null(strstr(err, "at most 123 bytes"));
    assert_int_equal(wsg_close_app_check(1000, "caf\xc3\xa9", 5, NULL, 0), 0);
    assert_int_equal(wsg_close_app_check(1000, "caf\xc3", 4, NULL, 0), WSG_EINVAL);
    assert_int_equal(wsg_close_app_check(1000, "a\0b", 3, NULL, 0), WSG_EINVAL);
    assert_int_equal(wsg_close_app_check(1000, "", 0, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(peer_codes),
        cmocka_unit_test(app_codes),
        cmocka_unit_test(app_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
