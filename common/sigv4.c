/* SPDX-License-Identifier: MIT */
/*
 * sigv4.c — AWS Signature Version 4 verification (sigv4.h). The canonical
 * request follows AWS's rules for services other than S3: the path as sent
 * with each byte outside the unreserved set percent-encoded once more, the
 * query's pairs encoded and sorted, the signed headers' values trimmed with
 * inner runs of spaces collapsed, the body's SHA-256 (or
 * UNSIGNED-PAYLOAD). SHA-256 and HMAC are OpenSSL's; the final comparison
 * is CRYPTO_memcmp. Reentrant: any thread.
 */
#include "common/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/err.h"
#include "common/jtext.h"

#define ALGO "AWS4-HMAC-SHA256"

int wsg_sigv4_is(const char *authz)
{
    return authz && strncmp(authz, ALGO " ", sizeof ALGO) == 0;
}

/* Copies the value of "name=" in the comma-separated list s (up to the next
 * ',') into out. Returns 0 or -1 (absent, empty or too long). */
static int field(const char *s, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = s; p && *p;) {
        p += strspn(p, " ,");
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && p[len - 1] == ' ')
            len--;
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            if (len - nl - 1 == 0 || len - nl - 1 >= n)
                return -1;
            memcpy(out, p + nl + 1, len - nl - 1);
            out[len - nl - 1] = '\0';
            return 0;
        }
        p = end;
    }
    return -1;
}

int wsg_sigv4_parse(const char *authz, wsg_sigv4_auth_t *out, char *err, size_t errlen)
{
    char cred[512], term[16];
    memset(out, 0, sizeof *out);
    if (!wsg_sigv4_is(authz))
        return wsg_errf(err, errlen, WSG_EINVAL, "not an " ALGO " Authorization header");
    const char *p = authz + sizeof ALGO;
    if (field(p, "Credential", cred, sizeof cred) != 0 ||
        field(p, "SignedHeaders", out->signed_headers, sizeof out->signed_headers) != 0 ||
        field(p, "Signature", out->signature, sizeof out->signature) != 0)
        return wsg_errf(err, errlen, WSG_EINVAL,
                        "Authorization header requires 'Credential', 'SignedHeaders' and "
                        "'Signature' parameters");
    /* AKID/YYYYMMDD/region/service/aws4_request */
    char *parts[5], *save = NULL, *t = strtok_r(cred, "/", &save);
    size_t np = 0;
    for (; t && np < 5; t = strtok_r(NULL, "/", &save))
        parts[np++] = t;
    if (np != 5 || t || strlen(parts[0]) >= sizeof out->key_id || strlen(parts[1]) != 8 ||
        strlen(parts[2]) >= sizeof out->region || strlen(parts[3]) >= sizeof out->service ||
        strlen(parts[4]) >= sizeof term || strcmp(parts[4], "aws4_request") != 0)
        return wsg_errf(err, errlen, WSG_EINVAL,
                        "Credential must be <key id>/<date>/<region>/<service>/aws4_request");
    snprintf(out->key_id, sizeof out->key_id, "%s", parts[0]);
    memcpy(out->date, parts[1], 9);
    snprintf(out->region, sizeof out->region, "%s", parts[2]);
    snprintf(out->service, sizeof out->service, "%s", parts[3]);
    return 0;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(p, n, md, &len, EVP_sha256(), NULL))
        abort(); /* only on out of memory */
    hex(md, len, out);
}

static void hmac(const unsigned char *key, size_t kl, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    if (!HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)msg, strlen(msg), out, &len))
        abort();
}

/* AWS's UriEncode: bytes outside A-Z a-z 0-9 - _ . ~ as %XX; '/' kept when
 * keep_slash. */
static void uri_encode(wsg_sbuf_t *b, const char *s, int keep_slash)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            wsg_sb_put(b, (const char *)&c, 1);
        } else {
            char e[4];
            snprintf(e, sizeof e, "%%%02X", c);
            wsg_sb_put(b, e, 3);
        }
    }
}

typedef struct {
    char *k, *v;
} pair_t;

static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static void canonical_query(wsg_sbuf_t *b, const wsg_sigv4_req_t *rq)
{
    pair_t *ps = calloc(rq->nq ? rq->nq : 1, sizeof *ps);
    if (!ps)
        abort();
    for (size_t i = 0; i < rq->nq; i++) {
        wsg_sbuf_t k = {0}, v = {0};
        uri_encode(&k, rq->qkeys[i], 0);
        uri_encode(&v, rq->qvals[i] ? rq->qvals[i] : "", 0);
        wsg_sb_puts(&k, "");
        wsg_sb_puts(&v, "");
        ps[i] = (pair_t){k.p, v.p};
    }
    qsort(ps, rq->nq, sizeof *ps, pair_cmp);
    for (size_t i = 0; i < rq->nq; i++) {
        if (i)
            wsg_sb_puts(b, "&");
        wsg_sb_puts(b, ps[i].k);
        wsg_sb_puts(b, "=");
        wsg_sb_puts(b, ps[i].v);
        free(ps[i].k);
        free(ps[i].v);
    }
    free(ps);
}

/* "name:value\n" for each signed header, value trimmed and inner runs of
 * spaces collapsed. Returns 0, or -1 with the missing header in err. */
static int canonical_headers(wsg_sbuf_t *b, const wsg_sigv4_req_t *rq, const char *signed_h,
                             char *err, size_t errlen)
{
    const char *p = signed_h;
    while (*p) {
        const char *e = strchr(p, ';');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char name[128];
        if (n == 0 || n >= sizeof name)
            return wsg_errf(err, errlen, -1, "bad SignedHeaders");
        memcpy(name, p, n);
        name[n] = '\0';
        const char *v = rq->header(rq->ud, name);
        if (!v)
            return wsg_errf(err, errlen, -1, "signed header '%s' is not in the request", name);
        wsg_sb_puts(b, name);
        wsg_sb_puts(b, ":");
        v += strspn(v, " \t");
        size_t vl = strlen(v);
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        for (size_t i = 0; i < vl; i++)
            if (!(v[i] == ' ' && i && v[i - 1] == ' '))
                wsg_sb_put(b, v + i, 1);
        wsg_sb_puts(b, "\n");
        p += n + (e ? 1 : 0);
    }
    return 0;
}

/* 1 when name is one of the ';'-separated list. */
static int listed(const char *list, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = list; p;) {
        const char *e = strchr(p, ';');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == nl && strncmp(p, name, n) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

/* The x-amz-date as Unix seconds; -1 when missing or malformed. */
static int64_t amz_date(const char *v)
{
    struct tm tm = {0};
    char z = 0;
    if (!v || strlen(v) != 16 ||
        sscanf(v, "%4d%2d%2dT%2d%2d%2d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &z) != 7 ||
        z != 'Z')
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

/* The scope, date and payload checks. Returns 0 or WSG_EAUTH. */
static int check_scope(const wsg_sigv4_req_t *rq, const wsg_sigv4_auth_t *a, const char *region,
                       const char *service, int64_t now_s, char *err, size_t errlen)
{
    const char *date = rq->header(rq->ud, "x-amz-date");
    int64_t t = amz_date(date);
    if (strcmp(a->service, service) != 0)
        return wsg_errf(err, errlen, WSG_EAUTH,
                        "Credential should be scoped to correct service: '%s'.", service);
    if (strcmp(a->region, region) != 0)
        return wsg_errf(err, errlen, WSG_EAUTH,
                        "Credential should be scoped to a valid region, not '%s'.", a->region);
    if (t < 0)
        return wsg_errf(err, errlen, WSG_EAUTH, "Missing or malformed X-Amz-Date header");
    if (strncmp(date, a->date, 8) != 0)
        return wsg_errf(err, errlen, WSG_EAUTH,
                        "Credential should be scoped to the date of X-Amz-Date (%.8s).", date);
    if (t < now_s - WSG_SIGV4_SKEW_S || t > now_s + WSG_SIGV4_SKEW_S)
        return wsg_errf(err, errlen, WSG_EAUTH,
                        "Signature expired: %s is more than 15 minutes from the server's time",
                        date);
    if (!listed(a->signed_headers, "host") || !listed(a->signed_headers, "x-amz-date"))
        return wsg_errf(err, errlen, WSG_EAUTH, "SignedHeaders must include host and x-amz-date");
    return 0;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service),
 * "aws4_request"). Returns 0 or WSG_ENOMEM. */
static int signing_key(const char *secret, size_t secret_len, const wsg_sigv4_auth_t *a,
                       unsigned char k[32])
{
    size_t kl = 4 + secret_len;
    unsigned char *k0 = malloc(kl);
    if (!k0)
        return WSG_ENOMEM;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, secret_len);
    hmac(k0, kl, a->date, k);
    OPENSSL_cleanse(k0, kl);
    free(k0);
    hmac(k, 32, a->region, k);
    hmac(k, 32, a->service, k);
    hmac(k, 32, "aws4_request", k);
    return 0;
}

int wsg_sigv4_verify(const wsg_sigv4_req_t *rq, const wsg_sigv4_auth_t *a, const char *secret,
                     size_t secret_len, const char *region, const char *service, int64_t now_s,
                     char *err, size_t errlen)
{
    int rc = check_scope(rq, a, region, service, now_s, err, errlen);
    if (rc != 0)
        return rc;
    char payload[65];
    const char *given = rq->header(rq->ud, "x-amz-content-sha256");
    sha256_hex(rq->body ? rq->body : "", rq->body_len, payload);
    if (given && strcmp(given, "UNSIGNED-PAYLOAD") == 0)
        snprintf(payload, sizeof payload, "UNSIGNED-PAYLOAD");
    else if (given && strcasecmp(given, payload) != 0)
        return wsg_errf(err, errlen, WSG_EAUTH,
                        "The provided 'x-amz-content-sha256' header does not match what was "
                        "computed.");
    wsg_sbuf_t c = {0};
    wsg_sb_puts(&c, rq->method);
    wsg_sb_puts(&c, "\n");
    uri_encode(&c, rq->path && *rq->path ? rq->path : "/", 1);
    wsg_sb_puts(&c, "\n");
    canonical_query(&c, rq);
    wsg_sb_puts(&c, "\n");
    if (canonical_headers(&c, rq, a->signed_headers, err, errlen) != 0) {
        free(c.p);
        return WSG_EAUTH;
    }
    wsg_sb_puts(&c, "\n");
    wsg_sb_puts(&c, a->signed_headers);
    wsg_sb_puts(&c, "\n");
    wsg_sb_puts(&c, payload);
    char creq_hash[65], sts[512], want[65];
    sha256_hex(c.p, c.len, creq_hash);
    free(c.p);
    snprintf(sts, sizeof sts, ALGO "\n%s\n%s/%s/%s/aws4_request\n%s",
             rq->header(rq->ud, "x-amz-date"), a->date, a->region, a->service, creq_hash);
    unsigned char k[32], sig[32];
    if (signing_key(secret, secret_len, a, k) != 0)
        return WSG_ENOMEM;
    hmac(k, 32, sts, sig);
    OPENSSL_cleanse(k, sizeof k);
    hex(sig, 32, want);
    if (strlen(a->signature) != 64 || CRYPTO_memcmp(want, a->signature, 64) != 0)
        return wsg_errf(err, errlen, WSG_EAUTH,
                        "The request signature we calculated does not match the signature you "
                        "provided. Check your AWS Secret Access Key and signing method.");
    return 0;
}
