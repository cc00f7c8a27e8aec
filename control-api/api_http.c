/* SPDX-License-Identifier: MIT */
/*
 * api_http.c — the HTTP/1.1 message-framing rules (RFC 9112 §2.2, §3, §6)
 * that libmicrohttpd 0.9.75 does not enforce, checked on a request's head
 * before its body is read, as HAProxy refuses them:
 *
 *   - a field name that is not a token ("Transfer-Encoding :" has a space
 *     before the colon; MHD keeps "Transfer-Encoding " as the name and
 *     frames the body by Content-Length instead) -> 400;
 *   - Transfer-Encoding together with Content-Length (MHD silently prefers
 *     Transfer-Encoding: the classic request-smuggling pair) -> 400;
 *   - Content-Length given more than once with differing values (MHD uses
 *     the first) -> 400;
 *   - a transfer coding other than chunked (MHD would read the body until
 *     the connection closes and never answer) -> 501;
 *   - Transfer-Encoding that is not exactly one "chunked" (listed twice,
 *     two fields, trailing spaces MHD would not decode as chunked), or in an
 *     HTTP/1.0 request -> 400;
 *   - a request-target with whitespace or a control character (MHD accepts
 *     spaces in it) -> 400; longer than API_URI_MAX -> 414.
 *
 * api.c answers these on the first access-handler call, before the body:
 * libmicrohttpd then refuses to read the body or any request pipelined
 * after it and closes the connection once the answer is sent.
 *
 * MHD_OPTION_STRICT_FOR_CLIENT does not cover this in 0.9.75: at 1 it only
 * requires Host and refuses spaces in the request-target, at -1 only
 * whitespace before a colon (never both), and it answers with its own HTML
 * page instead of a problem document.
 *
 * Threads: pure functions of the connection being served; MHD threads.
 */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "control-api/api_int.h"

typedef struct {
    const char *bad_name; /* first field name that is not a token */
    size_t bad_name_len;
    const char *cl; /* first Content-Length value */
    size_t cl_len;
    unsigned n_cl, n_te, n_chunked;
    int cl_differ;
    int te_exact;        /* the one Transfer-Encoding value is "chunked" as MHD decodes it */
    const char *unknown; /* first transfer coding that is not chunked */
    size_t unknown_len;
} head_t;

static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_token(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

static int name_is(const char *key, size_t n, const char *want)
{
    return n == strlen(want) && strncasecmp(key, want, n) == 0;
}

/* Counts the codings of one Transfer-Encoding value (a comma list; empty
 * elements are ignored as RFC 9110 §5.6.1 asks). */
static void te_codings(head_t *h, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && v[e] != ',')
            e++;
        size_t a = i, b = e;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (b - a == 7 && strncasecmp(v + a, "chunked", 7) == 0) {
            h->n_chunked++;
        } else if (b > a && !h->unknown) {
            h->unknown = v + a;
            h->unknown_len = b - a;
        }
        i = e + 1;
    }
}

static enum MHD_Result on_field(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_len,
                                const char *value, size_t value_len)
{
    (void)kind;
    head_t *h = cls;
    if (!value)
        value = "", value_len = 0;
    if (!is_token(key, key_len)) {
        h->bad_name = key;
        h->bad_name_len = key_len;
        return MHD_NO;
    }
    if (name_is(key, key_len, "Content-Length")) {
        if (h->n_cl++ == 0) {
            h->cl = value;
            h->cl_len = value_len;
        } else if (value_len != h->cl_len || memcmp(value, h->cl, value_len) != 0) {
            h->cl_differ = 1;
        }
    } else if (name_is(key, key_len, "Transfer-Encoding")) {
        h->n_te++;
        h->te_exact = value_len == 7 && strncasecmp(value, "chunked", 7) == 0;
        te_codings(h, value, value_len);
    }
    return MHD_YES;
}

static int refuse(int status, char *detail, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(int status, char *detail, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, len, fmt, ap);
    va_end(ap);
    return status;
}

/* A field name or coding as far as a detail message shows it. */
#define SHOWN(n) ((int)((n) > 64 ? 64 : (n)))

int api_http_check_head(struct MHD_Connection *conn, const char *version, char *detail, size_t len)
{
    head_t h = {0};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, on_field, &h);
    if (h.bad_name)
        return refuse(400, detail, len,
                      "header field name '%.*s' is not a token (whitespace before the colon?)",
                      SHOWN(h.bad_name_len), h.bad_name);
    if (h.n_te && h.n_cl)
        return refuse(400, detail, len, "Content-Length together with Transfer-Encoding");
    if (h.unknown)
        return refuse(501, detail, len, "transfer coding '%.*s' is not supported (only chunked)",
                      SHOWN(h.unknown_len), h.unknown);
    if (h.n_te && (h.n_te != 1 || h.n_chunked != 1 || !h.te_exact))
        return refuse(400, detail, len, "Transfer-Encoding must be exactly one 'chunked'");
    if (h.n_te && version && strcmp(version, MHD_HTTP_VERSION_1_0) == 0)
        return refuse(400, detail, len, "Transfer-Encoding in an HTTP/1.0 request");
    if (h.cl_differ)
        return refuse(400, detail, len, "Content-Length given with differing values");
    return 0;
}

int api_http_check_target(const char *uri, size_t *len)
{
    size_t n = strlen(uri);
    *len = n;
    if (n > API_URI_MAX)
        return 414;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= 0x20 || c == 0x7f)
            return 400;
    }
    return 0;
}

int api_http_refuse_target(api_req_t *r, int status, size_t len)
{
    if (status == 414)
        return api_problem(r, 414, "request-target is %zu bytes, over %d", len, API_URI_MAX);
    return api_problem(r, 400, "request-target has whitespace or a control character");
}
