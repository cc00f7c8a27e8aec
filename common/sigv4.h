/* SPDX-License-Identifier: MIT */
/*
 * sigv4.h — verifying AWS Signature Version 4 (the Authorization header
 * form, "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...")
 * as AWS's services do: the canonical request rebuilt from what arrived,
 * the string to sign, the signing key derived from the secret, the
 * signature compared in constant time. For the @connections API of routes
 * with `protocol: aws` (control-api/api_aws.c). Hashes and HMACs are
 * OpenSSL's. Reentrant: any thread.
 */
#ifndef WSG_SIGV4_H
#define WSG_SIGV4_H

#include <stddef.h>
#include <stdint.h>

/* Clock skew AWS allows between x-amz-date and its own clock. */
#define WSG_SIGV4_SKEW_S (15 * 60)

/* The parts of an Authorization header. */
typedef struct {
    char key_id[129];
    char date[9]; /* YYYYMMDD of the credential scope */
    char region[65];
    char service[65];
    char signed_headers[1024]; /* "host;x-amz-date", lower case, sorted */
    char signature[65];        /* lower-case hex */
} wsg_sigv4_auth_t;

/* What the request carried. header(ud, name) returns the value of header
 * name (lower case; repeated headers joined with ","), or NULL. */
typedef struct {
    const char *method;
    const char *path;   /* as sent (percent-encoded), without the query */
    const char **qkeys; /* decoded query keys and values, nq of each */
    const char **qvals;
    size_t nq;
    const char *(*header)(void *ud, const char *name);
    void *ud;
    const void *body;
    size_t body_len;
} wsg_sigv4_req_t;

/* 1 when authz starts with the SigV4 algorithm name. */
int wsg_sigv4_is(const char *authz);

/* Parses an Authorization header. Returns 0, or WSG_EINVAL with the reason
 * in err. */
int wsg_sigv4_parse(const char *authz, wsg_sigv4_auth_t *out, char *err, size_t errlen);

/* Verifies rq against a (parsed) with the secret: the credential scope's
 * region and service, an x-amz-date within WSG_SIGV4_SKEW_S of now_s and on
 * the scope's date, host and x-amz-date among the signed headers, an
 * x-amz-content-sha256 (when present) that is the body's hash or
 * UNSIGNED-PAYLOAD, and the signature. Returns 0, WSG_EAUTH (reason in
 * err), WSG_ENOMEM. */
int wsg_sigv4_verify(const wsg_sigv4_req_t *rq, const wsg_sigv4_auth_t *a, const char *secret,
                     size_t secret_len, const char *region, const char *service, int64_t now_s,
                     char *err, size_t errlen);

#endif
