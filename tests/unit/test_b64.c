/* SPDX-License-Identifier: MIT */
/*
 * test_b64.c — common/b64.c against the RFC 4648 §10 test vectors (base64,
 * and base64url without padding), a full byte range round trip, and the
 * decoder's refusals: wrong length, characters outside the alphabet,
 * padding anywhere but the end, surrounding whitespace.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/b64.h"
#include "common/err.h"

static const struct {
    const char *plain, *b64, *url;
} vectors[] = {
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

static void rfc4648_encode(void **state)
{
    char out[32];
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        size_t n = strlen(vectors[i].plain);
        assert_int_equal(wsg_b64_encode((const unsigned char *)vectors[i].plain, n, out),
                         strlen(vectors[i].b64));
        assert_string_equal(out, vectors[i].b64);
        assert_int_equal(WSG_B64_LEN(n), strlen(vectors[i].b64));
        assert_int_equal(wsg_b64url_encode((const unsigned char *)vectors[i].plain, n, out),
                         strlen(vectors[i].url));
        assert_string_equal(out, vectors[i].url);
    }
}

static void rfc4648_decode(void **state)
{
    unsigned char out[32];
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        size_t len = 99;
        memset(out, 0xee, sizeof out);
        assert_int_equal(wsg_b64_decode(vectors[i].b64, strlen(vectors[i].b64), out, &len), 0);
        assert_int_equal(len, strlen(vectors[i].plain));
        assert_memory_equal(out, vectors[i].plain, len);
    }
}

/* The two alphabets differ in exactly two characters (RFC 4648 §5). */
static void url_alphabet(void **state)
{
    const unsigned char bytes[] = {0xfb, 0xff, 0xbf};
    char out[8];
    assert_int_equal(wsg_b64_encode(bytes, 3, out), 4);
    assert_string_equal(out, "+/+/");
    assert_int_equal(wsg_b64url_encode(bytes, 3, out), 4);
    assert_string_equal(out, "-_-_");
    assert_int_equal(wsg_b64url_encode(bytes, 2, out), 3);
    assert_string_equal(out, "-_8");
}

static void every_byte_round_trips(void **state)
{
    unsigned char in[256], back[256];
    char text[WSG_B64_LEN(256) + 1];
    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)i;
    for (size_t n = 0; n <= 256; n += 1 + n / 7) {
        size_t tl = wsg_b64_encode(in + 256 - n, n, text), len = 0;
        assert_int_equal(tl, WSG_B64_LEN(n));
        assert_int_equal(wsg_b64_decode(text, tl, back, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(back, in + 256 - n, n);
    }
}

static void decode_refuses_bad_text(void **state)
{
    static const char *const bad[] = {
        "Zg=",      /* not a multiple of 4 */
        "Zg",       /* unpadded: this decoder wants padding */
        "Zm9!",     /* outside the alphabet */
        "Zm9-",     /* base64url character in base64 */
        "Zm9_",     /* idem */
        "Zg==Zm8=", /* padding in the middle */
        "Z=g=",     /* idem */
        "Z===",     /* three padding characters */
        "====",     /* padding only */
        "Zm9v====", /* a whole block of padding */
        " Zm9",     /* whitespace */
        "Zm9v    ", /* trailing whitespace */
        "Zg==    ", /* padding then whitespace */
        "Zm\n9v",   /* embedded newline */
    };
    unsigned char out[16];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = 99;
        int rc = wsg_b64_decode(bad[i], strlen(bad[i]), out, &len);
        if (rc != WSG_EINVAL)
            fail_msg("\"%s\" decoded (rc %d, %zu bytes)", bad[i], rc, len);
    }
    /* a NUL inside the counted length is not base64 either */
    size_t len = 0;
    assert_int_equal(wsg_b64_decode("Zm\0v", 4, out, &len), WSG_EINVAL);
}

/* base64url decoding: the RFC vectors and every byte back, and strictness:
 * no padding, no '+' '/', no length 4k+1, unused trailing bits zero. */
static void url_decode_strict(void **state)
{
    unsigned char in[256], out[WSG_B64URL_DECODED_MAX(WSG_B64_LEN(256))];
    char text[WSG_B64_LEN(256) + 1];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(255 - i);
    for (size_t n = 0; n <= sizeof in; n++) {
        size_t tl = wsg_b64url_encode(in, n, text), len = 99;
        assert_int_equal(wsg_b64url_decode(text, tl, out, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(out, in, n);
    }
    size_t len = 0;
    assert_int_equal(wsg_b64url_decode("Zm9vYg", 6, out, &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "foob", 4);
    static const char *const bad[] = {"Zg==", "Zm9v+g", "Zm9v/g", "Z",   "Zm9vY",
                                      "Zh",   "Zm9",    "Zm!v",   "Zm v"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = wsg_b64url_decode(bad[i], strlen(bad[i]), out, &len);
        if (rc != WSG_EINVAL)
            fail_msg("\"%s\" decoded (rc %d)", bad[i], rc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc4648_encode),
        cmocka_unit_test(rfc4648_decode),
        cmocka_unit_test(url_alphabet),
        cmocka_unit_test(every_byte_round_trips),
        cmocka_unit_test(decode_refuses_bad_text),
        cmocka_unit_test(url_decode_strict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
