/* SPDX-License-Identifier: MIT */
/*
 * test_sigv4.c — AWS Signature Version 4 verification (common/sigv4.c)
 * against AWS's own published test suite (aws-sig-v4-test-suite,
 * get-vanilla-query-order-key-case: credential scope
 * AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, secret
 * wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY), and what must be refused: a
 * wrong secret, a changed request, a stale date, another region or
 * service, a body that does not match x-amz-content-sha256, malformed
 * headers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/sigv4.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
/* 2015-08-30T12:36:00Z */
#define VECTOR_TIME 1440938160
#define AUTHZ                                                                                      \
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "            \
    "SignedHeaders=host;x-amz-date, "                                                              \
    "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"

typedef struct {
    const char *host, *date, *sha;
} hdrs_t;

static const char *header(void *ud, const char *name)
{
    hdrs_t *h = ud;
    if (strcmp(name, "host") == 0)
        return h->host;
    if (strcmp(name, "x-amz-date") == 0)
        return h->date;
    if (strcmp(name, "x-amz-content-sha256") == 0)
        return h->sha;
    return NULL;
}

static const char *qk[] = {"Param2", "Param1"}, *qv[] = {"value2", "value1"};

static int verify(const char *authz, hdrs_t *h, const char *secret, const char *path,
                  const char *body, int64_t now, char *err, size_t n)
{
    wsg_sigv4_auth_t a;
    int rc = wsg_sigv4_parse(authz, &a, err, n);
    if (rc != 0)
        return rc;
    wsg_sigv4_req_t rq = {.method = "GET",
                          .path = path,
                          .qkeys = qk,
                          .qvals = qv,
                          .nq = 2,
                          .header = header,
                          .ud = h,
                          .body = body,
                          .body_len = strlen(body)};
    return wsg_sigv4_verify(&rq, &a, secret, strlen(secret), "us-east-1", "service", now, err, n);
}

static void aws_test_vector(void **state)
{
    (void)state;
    hdrs_t h = {"example.amazonaws.com", "20150830T123600Z", NULL};
    char err[256] = "";
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME, err, sizeof err), 0);
    /* skew: 15 minutes either way is allowed, a second more is not */
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME + 900, err, sizeof err), 0);
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME - 900, err, sizeof err), 0);
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME + 901, err, sizeof err),
                     WSG_EAUTH);
    assert_non_null(strstr(err, "Signature expired"));
    /* the payload hash header is checked against the body */
    h.sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME, err, sizeof err), 0);
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "x", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    assert_non_null(strstr(err, "x-amz-content-sha256"));
}

static void refusals(void **state)
{
    (void)state;
    hdrs_t h = {"example.amazonaws.com", "20150830T123600Z", NULL};
    char err[256] = "";
    assert_int_equal(verify(AUTHZ, &h, "wrong", "/", "", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    assert_non_null(strstr(err, "does not match"));
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/x", "", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    /* the body is signed: unsigned payload only when the signer said so */
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "x", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    h.host = "other.example";
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    h.host = "example.amazonaws.com";
    h.date = "20150830T123601Z";
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    h.date = "20150831T000000Z"; /* not the scope's date */
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME + 41040, err, sizeof err),
                     WSG_EAUTH);
    assert_non_null(strstr(err, "date"));
    h.date = NULL;
    assert_int_equal(verify(AUTHZ, &h, SECRET, "/", "", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    h.date = "20150830T123600Z";
    const char *region = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-1/service/"
                         "aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    assert_int_equal(verify(region, &h, SECRET, "/", "", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    assert_non_null(strstr(err, "region"));
    const char *svc = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/"
                      "aws4_request, SignedHeaders=host;x-amz-date, Signature=00";
    assert_int_equal(verify(svc, &h, SECRET, "/", "", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
    assert_non_null(strstr(err, "service"));
    const char *nohost = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
                         "aws4_request, SignedHeaders=x-amz-date, Signature=00";
    assert_int_equal(verify(nohost, &h, SECRET, "/", "", VECTOR_TIME, err, sizeof err), WSG_EAUTH);
}

static void parsing(void **state)
{
    (void)state;
    wsg_sigv4_auth_t a;
    char err[256];
    assert_true(wsg_sigv4_is(AUTHZ));
    assert_false(wsg_sigv4_is("Bearer x"));
    assert_int_equal(wsg_sigv4_parse(AUTHZ, &a, err, sizeof err), 0);
    assert_string_equal(a.key_id, "AKIDEXAMPLE");
    assert_string_equal(a.date, "20150830");
    assert_string_equal(a.region, "us-east-1");
    assert_string_equal(a.service, "service");
    assert_string_equal(a.signed_headers, "host;x-amz-date");
    const char *bad[] = {
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKID/2015083/us-east-1/service/aws4_request, "
        "SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws5_request, "
        "SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request/x, "
        "SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA1 Credential=AKID/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host, Signature=00",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(wsg_sigv4_parse(bad[i], &a, err, sizeof err), WSG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aws_test_vector),
        cmocka_unit_test(refusals),
        cmocka_unit_test(parsing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
