/* SPDX-License-Identifier: MIT */
/*
 * edge_request.c — a client's HTTP request line and headers, parsed with
 * http-parser (see edge_request.h). Pieces of one element arrive from
 * consecutive feeds of one buffer, so everything is kept as offsets into it
 * (the buffer may move as it grows); names and values are NUL-terminated in
 * place once the headers are complete. Only what an upgrade needs is kept:
 * a body or a pipelined second request is not read (the parser is paused
 * when the headers end).
 */
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "ws-edge/edge_request.h"

_Static_assert(sizeof(http_parser) <= sizeof(((edge_req_t *)0)->parser),
               "edge_req_t.parser holds an http_parser");

#define REQ_BUF_FIRST 1024 /* most upgrade requests fit; grows by doubling */

/* ---- parsing (pure) ------------------------------------------------------ */

static edge_req_t *req_of(http_parser *p)
{
    return p->data;
}

static http_parser *parser_of(edge_req_t *r)
{
    return (http_parser *)(void *)r->parser;
}

static const http_parser *cparser_of(const edge_req_t *r)
{
    return (const http_parser *)(const void *)r->parser;
}

/* A callback's piece at `at`: its offset in the request's buffer. Pieces of
 * one element arrive from consecutive reads of the same buffer, so they are
 * adjacent and join by extending the span. */
static void span_add(edge_req_t *r, edge_span_t *s, const char *at, size_t len)
{
    uint32_t off = (uint32_t)(at - r->buf);
    if (s->len == 0)
        s->off = off;
    s->len = off + (uint32_t)len - s->off;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    edge_req_t *r = req_of(p);
    span_add(r, &r->url, at, len);
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    edge_req_t *r = req_of(p);
    if (r->in_value || r->n_headers == 0) { /* a new header */
        if (r->n_headers == EDGE_REQ_MAX_HEADERS) {
            r->status = 431;
            return 1;
        }
        r->n_headers++;
        r->in_value = 0;
    }
    span_add(r, &r->hname[r->n_headers - 1], at, len);
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    edge_req_t *r = req_of(p);
    if (r->n_headers == 0)
        return 1;
    r->in_value = 1;
    span_add(r, &r->hval[r->n_headers - 1], at, len);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    req_of(p)->complete = 1;
    http_parser_pause(p, 1); /* a body or a second request is not ours to read */
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes s[0..n) into out (n + 1 bytes); '+' is a space when plus.
 * Returns the length, or -1 for a bad escape or an encoded NUL. */
static int pct_decode(const char *s, size_t n, char *out, int plus)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (i + 2 >= n) /* fewer than two digits left */
                return -1;
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi << 4 | lo;
            if (c == 0)
                return -1;
            i += 2;
        } else if (c == '+' && plus) {
            c = ' ';
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (int)o;
}

/* Collapses "//", "/./" and "/../" (never above the root), in place. */
static void normalise_path(char *s)
{
    char *out = s;
    const char *in = s;
    while (*in) {
        if (*in == '/') {
            while (in[1] == '/')
                in++;
            if (in[1] == '.' && (in[2] == '/' || in[2] == '\0')) {
                in += 2;
                continue;
            }
            if (in[1] == '.' && in[2] == '.' && (in[3] == '/' || in[3] == '\0')) {
                in += 3;
                while (out > s && *--out != '/')
                    ;
                continue;
            }
        }
        *out++ = *in++;
    }
    if (out == s)
        *out++ = '/';
    *out = '\0';
}

/* The query's arguments, decoded, as "name\0value\0" pairs in r->args. */
static int split_query(edge_req_t *r, const char *q, size_t n)
{
    /* each argument adds two NULs and drops at most one separator or '=':
     * k <= n arguments need at most n + k + 1 bytes */
    r->args = malloc(2 * n + 2);
    if (!r->args)
        abort();
    char *out = r->args;
    size_t i = 0;
    while (i <= n && n) {
        size_t j = i;
        while (j < n && q[j] != '&' && q[j] != ';')
            j++;
        if (j > i) {
            if (r->n_args == EDGE_REQ_MAX_ARGS)
                return 414;
            size_t eq = i;
            while (eq < j && q[eq] != '=')
                eq++;
            int nl = pct_decode(q + i, eq - i, out, 1);
            if (nl < 0)
                return 400;
            out += nl + 1;
            int vl = eq < j ? pct_decode(q + eq + 1, j - eq - 1, out, 1) : (*out = '\0', 0);
            if (vl < 0)
                return 400;
            out += vl + 1;
            r->n_args++;
        }
        i = j + 1;
    }
    return 0;
}

/* Once the headers are complete: NUL-terminates names and values (lower-case
 * names, values without trailing blanks), decodes the path and the query. */
static int finish(edge_req_t *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        char *nm = r->buf + r->hname[i].off;
        for (uint32_t k = 0; k < r->hname[i].len; k++)
            nm[k] = (char)((nm[k] >= 'A' && nm[k] <= 'Z') ? nm[k] + 32 : nm[k]);
        nm[r->hname[i].len] = '\0'; /* was ':' */
        char *v = r->buf + r->hval[i].off;
        uint32_t vl = r->hval[i].len;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        if (r->hval[i].len == 0) /* an empty value: point at the name's NUL */
            r->hval[i].off = r->hname[i].off + r->hname[i].len;
        else
            v[vl] = '\0'; /* was '\r', '\n' or a blank */
        r->hval[i].len = vl;
    }
    const char *url = r->buf + r->url.off;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (r->url.len == 0 || http_parser_parse_url(url, r->url.len, 0, &u) != 0)
        return 400;
    const char *path = "/";
    size_t pl = 1;
    if (u.field_set & (1 << UF_PATH)) {
        path = url + u.field_data[UF_PATH].off;
        pl = u.field_data[UF_PATH].len;
    }
    r->path = malloc(pl + 2);
    if (!r->path)
        abort();
    if (pct_decode(path, pl, r->path, 0) < 0 || r->path[0] != '/')
        return 400; /* a bad escape, or not a path ("*", "host:port") */
    normalise_path(r->path);
    if (u.field_set & (1 << UF_QUERY))
        return split_query(r, url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    return 0;
}

void edge_req_init(edge_req_t *r)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    http_parser_init(parser_of(r), HTTP_REQUEST);
    parser_of(r)->data = r;
}

int edge_req_feed(edge_req_t *r, const char *data, size_t n)
{
    if (r->complete || r->status)
        return r->status ? r->status : 1;
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : REQ_BUF_FIRST;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->buf, cap);
        if (!b)
            abort();
        r->buf = b;
        r->cap = cap;
    }
    if (r->buf + r->len != data) /* the socket reader reads in place */
        memmove(r->buf + r->len, data, n);
    size_t at = r->len;
    r->len += n;
    r->buf[r->len] = '\0';
    /* The header block must end within the limit; what follows it in the
     * same read is kept (the client's first frames, for lws). */
    size_t pn = n < EDGE_REQ_MAX_BYTES - at ? n : EDGE_REQ_MAX_BYTES - at;
    size_t used = pn ? http_parser_execute(parser_of(r), &settings, r->buf + at, pn) : 0;
    /* (no bytes would tell the parser the stream ended) */
    if (r->status)
        return r->status;
    enum http_errno err = HTTP_PARSER_ERRNO(parser_of(r));
    if (r->complete) {
        /* paused in on_headers_complete: `used` stops at the final '\n' */
        r->body_off = at + used + 1 <= r->len ? at + used + 1 : r->len;
        int st = finish(r);
        return st ? (r->status = st) : 1;
    }
    if (err != HPE_OK)
        return r->status = 400;
    if (at + pn >= EDGE_REQ_MAX_BYTES)
        return r->status = 431;
    return 0;
}

char *edge_req_room(edge_req_t *r, size_t *n)
{
    size_t want = r->len + 512 + 1;
    if (want > EDGE_REQ_MAX_BYTES + 1)
        want = EDGE_REQ_MAX_BYTES + 1; /* what the limit allows, and the NUL */
    if (r->cap < want) {
        size_t cap = r->cap ? r->cap : REQ_BUF_FIRST;
        while (cap < want)
            cap *= 2;
        if (cap > EDGE_REQ_MAX_BYTES + 1)
            cap = EDGE_REQ_MAX_BYTES + 1;
        char *b = realloc(r->buf, cap);
        if (!b)
            abort();
        r->buf = b;
        r->cap = cap;
    }
    size_t room = r->cap - r->len - 1, left = EDGE_REQ_MAX_BYTES - r->len;
    *n = room < left ? room : left; /* the rest stays in the socket, for lws */
    return r->buf + r->len;
}

void edge_req_clear(edge_req_t *r)
{
    free(r->buf);
    free(r->path);
    free(r->args);
    r->buf = r->path = r->args = NULL;
}

int edge_req_is_get(const edge_req_t *r)
{
    return cparser_of(r)->method == HTTP_GET;
}

const char *edge_req_header_from(const edge_req_t *r, const char *lname, size_t *from)
{
    for (size_t i = *from; i < r->n_headers; i++)
        if (strcmp(r->buf + r->hname[i].off, lname) == 0) {
            *from = i + 1;
            return r->buf + r->hval[i].off;
        }
    *from = r->n_headers;
    return NULL;
}

const char *edge_req_header(const edge_req_t *r, const char *lname)
{
    size_t from = 0;
    return edge_req_header_from(r, lname, &from);
}

const char *edge_req_arg(const edge_req_t *r, size_t i, const char **value)
{
    if (i >= r->n_args)
        return NULL;
    const char *p = r->args;
    for (size_t k = 0; k < i; k++) {
        p += strlen(p) + 1;
        p += strlen(p) + 1;
    }
    *value = p + strlen(p) + 1;
    return p;
}
