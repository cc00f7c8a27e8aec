/* SPDX-License-Identifier: MIT */
/*
 * edge_request.h — a client's HTTP request (line and headers), parsed from
 * bytes fed in pieces with http-parser (edge_request.c). Pure: no sockets,
 * no lws (whose headers clash with http-parser's), any thread, one request
 * per caller. The edge reads sockets into it (edge_accept.c) and decides on
 * it (edge_handshake.c); the fuzz target feeds it.
 */
#ifndef WSG_EDGE_REQUEST_H
#define WSG_EDGE_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#define EDGE_REQ_MAX_BYTES 16384 /* request line and headers: 431 beyond */
#define EDGE_REQ_MAX_HEADERS 64  /* 431 beyond */
#define EDGE_REQ_MAX_ARGS 64     /* query arguments: 414 beyond */
/* Longest Authorization header a wsaas route forwards to its backend. */
#define EDGE_WSAAS_AUTH_MAX 8192

typedef struct {
    uint32_t off, len; /* in edge_req_t.buf */
} edge_span_t;

typedef struct edge_req {
    int fd;                               /* the socket it came on (the reader's; -1 once taken) */
    char remote[48];                      /* the peer's address as text (the reader's) */
    _Alignas(8) unsigned char parser[64]; /* http-parser's state */
    char *buf;                            /* what was fed, NUL-terminated */
    size_t len, cap;
    edge_span_t url, hname[EDGE_REQ_MAX_HEADERS], hval[EDGE_REQ_MAX_HEADERS];
    size_t n_headers;
    int in_value;    /* the last piece parsed was a header value */
    int complete;    /* the headers are complete and parsed */
    int status;      /* != 0: refused with this status */
    size_t body_off; /* bytes after the header block start here */
    char *path;      /* decoded; "//", "/./", "/../" collapsed */
    char *args;      /* decoded query arguments: "name\0value\0" ... */
    size_t n_args;
} edge_req_t;

void edge_req_init(edge_req_t *r);
/* Appends data; the socket reader may pass r->buf + r->len (read in place,
 * with edge_req_room first). Returns 0 (more needed), 1 (complete), or the
 * status refusing the request (400, 414, 431). */
int edge_req_feed(edge_req_t *r, const char *data, size_t n);
/* Makes room to read in place: returns where (r->buf + r->len) and *n how
 * many bytes may go there (> 0 while edge_req_feed has answered 0). */
char *edge_req_room(edge_req_t *r, size_t *n);
void edge_req_clear(edge_req_t *r); /* frees what r holds, not r */
int edge_req_is_get(const edge_req_t *r);
/* The value of the first header named lname (lower case), or NULL; _from
 * goes on after *from (start at 0) to find every one. */
const char *edge_req_header(const edge_req_t *r, const char *lname);
const char *edge_req_header_from(const edge_req_t *r, const char *lname, size_t *from);
/* Query argument i's name (NULL past the last) and *value ("" without '='). */
const char *edge_req_arg(const edge_req_t *r, size_t i, const char **value);

#endif
