/* SPDX-License-Identifier: MIT */
/* test_whsig.c — Standard Webhooks signatures against the spec's published test vector. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/whsig.h"

static const char *secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
static const char *msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
static const char *body = "{\"test\": 2432232314}";
static const char *expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
static const int64_t ts = 1614265330;

static void sign_matches_reference_vector(void **state)
{
    unsigned char *key = NULL;
    size_t kl = 0;
    char sig[WSG_WHSIG_LEN];
    assert_int_equal(wsg_whsig_key_decode(secret, &key, &kl), 0);
    assert_int_equal(kl, 24);
    assert_int_equal(wsg_whsig_sign(key, kl, msg_id, ts, body, strlen(body), sig, sizeof sig), 0);
    assert_string_equal(sig, expected);
    free(key);
}

static void verify_accepts_any_listed_signature(void **state)
{
    unsigned char *key = NULL;
    size_t kl = 0;
    assert_int_equal(wsg_whsig_key_decode(secret, &key, &kl), 0);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "v1,Zm9vYmFy %s", expected);
    assert_int_equal(wsg_whsig_verify(key, kl, msg_id, ts, body, strlen(body), hdr, ts + 10, 300),
                     0);
    free(key);
}

static void verify_refuses_tampering_and_stale_timestamps(void **state)
{
    unsigned char *key = NULL;
    size_t kl = 0;
    assert_int_equal(wsg_whsig_key_decode(secret, &key, &kl), 0);
    const char *other = "{\"test\": 2432232315}";
    assert_int_equal(wsg_whsig_verify(key, kl, msg_id, ts, other, strlen(other), expected, ts, 300),
                     WSG_EAUTH);
    assert_int_equal(
        wsg_whsig_verify(key, kl, "msg_other", ts, body, strlen(body), expected, ts, 300),
        WSG_EAUTH);
    assert_int_equal(
        wsg_whsig_verify(key, kl, msg_id, ts, body, strlen(body), expected, ts + 301, 300),
        WSG_EAUTH);
    assert_int_equal(wsg_whsig_verify(key, kl, msg_id, ts, body, strlen(body), "", ts, 300),
                     WSG_EAUTH);
    assert_int_equal(wsg_whsig_verify(key, kl, msg_id, ts, body, strlen(body), NULL, ts, 300),
                     WSG_EAUTH);
    free(key);
}

/* The timestamp comes from a request header: extreme values are refused,
 * never wrapped around into the tolerance window (nor undefined behaviour). */
static void verify_refuses_extreme_timestamps(void **state)
{
    unsigned char *key = NULL;
    size_t kl = 0;
    char sig[WSG_WHSIG_LEN];
    assert_int_equal(wsg_whsig_key_decode(secret, &key, &kl), 0);
    const int64_t far[] = {INT64_MAX, INT64_MIN, INT64_MIN + 1};
    for (size_t i = 0; i < sizeof far / sizeof far[0]; i++) {
        assert_int_equal(
            wsg_whsig_sign(key, kl, msg_id, far[i], body, strlen(body), sig, sizeof sig), 0);
        assert_int_equal(
            wsg_whsig_verify(key, kl, msg_id, far[i], body, strlen(body), sig, -1, 300), WSG_EAUTH);
        assert_int_equal(
            wsg_whsig_verify(key, kl, msg_id, far[i], body, strlen(body), sig, ts, 300), WSG_EAUTH);
        assert_int_equal(
            wsg_whsig_verify(key, kl, msg_id, far[i], body, strlen(body), sig, far[i], 300), 0);
    }
    free(key);
}

static void key_decode_rejects_bad_secrets(void **state)
{
    unsigned char *key = NULL;
    size_t kl = 0;
    assert_int_equal(wsg_whsig_key_decode("", &key, &kl), WSG_EINVAL);
    assert_int_equal(wsg_whsig_key_decode("whsec_", &key, &kl), WSG_EINVAL);
    assert_int_equal(wsg_whsig_key_decode("whsec_abc", &key, &kl), WSG_EINVAL);
    assert_int_equal(wsg_whsig_key_decode("whsec_!!!!", &key, &kl), WSG_EINVAL);
    assert_int_equal(wsg_whsig_key_decode("plain-secret", &key, &kl), 0);
    assert_int_equal(kl, 12);
    assert_memory_equal(key, "plain-secret", 12);
    free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sign_matches_reference_vector),
        cmocka_unit_test(verify_accepts_any_listed_signature),
        cmocka_unit_test(verify_refuses_tampering_and_stale_timestamps),
        cmocka_unit_test(verify_refuses_extreme_timestamps),
        cmocka_unit_test(key_decode_rejects_bad_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
