/* SPDX-License-Identifier: MIT */
/*
 * test_err.c — common/err.c: every code of WSG_ERRNO_MAP has its own name and
 * message, codes are negative and distinct, 0 is success, and anything outside
 * the map is "unknown"; wsg_errf() formats, truncates and returns its code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"

static const int codes[] = {
#define CODE(name, msg) WSG_E##name,
    WSG_ERRNO_MAP(CODE)
#undef CODE
};
static const char *const names[] = {
#define NAME(name, msg) #name,
    WSG_ERRNO_MAP(NAME)
#undef NAME
};
static const char *const msgs[] = {
#define MSG(name, msg) msg,
    WSG_ERRNO_MAP(MSG)
#undef MSG
};
#define N_CODES (sizeof codes / sizeof codes[0])

static void every_code_has_its_own_name_and_message(void **state)
{
    assert_true(N_CODES >= 18);
    for (size_t i = 0; i < N_CODES; i++) {
        assert_true(codes[i] < 0);
        assert_string_equal(wsg_err_name(codes[i]), names[i]);
        assert_string_equal(wsg_strerror(codes[i]), msgs[i]);
        assert_true(strlen(wsg_strerror(codes[i])) > 0);
        assert_string_not_equal(wsg_strerror(codes[i]), "unknown error");
        assert_string_not_equal(wsg_err_name(codes[i]), "UNKNOWN");
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(codes[i], codes[j]);
            assert_string_not_equal(wsg_err_name(codes[i]), wsg_err_name(codes[j]));
            assert_string_not_equal(wsg_strerror(codes[i]), wsg_strerror(codes[j]));
        }
    }
}

static void known_codes_spot_check(void **state)
{
    assert_string_equal(wsg_err_name(WSG_EGONE), "GONE");
    assert_string_equal(wsg_strerror(WSG_EGONE), "connection gone");
    assert_string_equal(wsg_err_name(WSG_EAUTH), "AUTH");
    assert_string_equal(wsg_strerror(WSG_EINVAL), "invalid argument");
    assert_string_equal(wsg_err_name(WSG_ENOTSUP), "NOTSUP");
}

static void zero_is_success(void **state)
{
    assert_string_equal(wsg_strerror(0), "success");
    assert_string_equal(wsg_err_name(0), "OK");
    assert_int_equal(WSG_OK, 0);
}

static void unknown_codes(void **state)
{
    static const int unknown[] = {1,
                                  42,
                                  -1,
                                  -22,
                                  WSG__ERR_BASE,
                                  WSG__ERR_END,
                                  WSG__ERR_END + 1,
                                  WSG__ERR_BASE - 1,
                                  INT32_MIN,
                                  INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_string_equal(wsg_strerror(unknown[i]), "unknown error");
        assert_string_equal(wsg_err_name(unknown[i]), "UNKNOWN");
    }
}

static void errf_formats_truncates_and_returns_the_code(void **state)
{
    char buf[16];
    assert_int_equal(wsg_errf(buf, sizeof buf, WSG_ECONFIG, "line %d: %s", 7, "bad"), WSG_ECONFIG);
    assert_string_equal(buf, "line 7: bad");
    assert_int_equal(wsg_errf(buf, sizeof buf, WSG_EIO, "%s", "0123456789abcdefghij"), WSG_EIO);
    assert_string_equal(buf, "0123456789abcde"); /* truncated, NUL-terminated */
    assert_int_equal(wsg_errf(NULL, 0, WSG_EAUTH, "ignored %d", 1), WSG_EAUTH);
    memset(buf, 'x', sizeof buf);
    assert_int_equal(wsg_errf(buf, 0, WSG_EAUTH, "ignored"), WSG_EAUTH);
    assert_int_equal(buf[0], 'x'); /* length 0: untouched */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_its_own_name_and_message),
        cmocka_unit_test(known_codes_spot_check),
        cmocka_unit_test(zero_is_success),
        cmocka_unit_test(unknown_codes),
        cmocka_unit_test(errf_formats_truncates_and_returns_the_code),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
