/* SPDX-License-Identifier: MIT */
/*
 * fuzz_edge_request.c — libFuzzer target for the edge's HTTP request parser
 * (ws-edge/edge_request.c), which reads every client handshake before lws.
 * The first input byte sets the size of the pieces the rest is fed in (as
 * reads from a socket would split it); with its high bit set the pieces are
 * read in place the way the edge's socket reader does (edge_req_room, then
 * edge_req_feed on what was "read"). The same bytes fed at once must give
 * the same kind of answer (refused, complete or incomplete; which refusal
 * may depend on where a read ends) and, when complete, the same path,
 * headers, query and header end; no byte read may be dropped, and the
 * bytes kept after the headers must be the input's.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws-edge/edge_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds p[0..n) in pieces; *taken: how many bytes the request took. */
static int feed(edge_req_t *r, const char *p, size_t n, size_t piece, int in_place, size_t *taken)
{
    int st = 0;
    size_t i = 0;
    while (i < n && st == 0) {
        size_t k = n - i < piece ? n - i : piece;
        if (in_place) { /* as recv() into edge_req_room's space */
            size_t room;
            char *at = edge_req_room(r, &room);
            if (room == 0)
                abort(); /* the reader would see end of stream */
            if (k > room)
                k = room;
            memcpy(at, p + i, k);
            st = edge_req_feed(r, at, k);
        } else {
            st = edge_req_feed(r, p + i, k);
        }
        i += k;
    }
    *taken = i;
    return st;
}

static int kind(int st)
{
    return st > 1 ? 2 : st;
}

static void check_complete(const edge_req_t *r)
{
    if (!r->path || r->path[0] != '/' || r->body_off > r->len ||
        r->n_headers > EDGE_REQ_MAX_HEADERS)
        abort();
    if (strstr(r->path, "//") || strstr(r->path, "/./") || strstr(r->path, "/../"))
        abort(); /* collapsed */
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *nm = r->buf + r->hname[i].off;
        for (const char *c = nm; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                abort(); /* names are lower case */
        size_t from = 0;
        if (!edge_req_header_from(r, nm, &from) || from > i + 1)
            abort(); /* every header is found, the first of its name first */
    }
    const char *v;
    for (size_t i = 0; edge_req_arg(r, i, &v); i++)
        if (!v || i >= EDGE_REQ_MAX_ARGS)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int in_place = data[0] & 0x80;
    size_t piece = data[0] & 0x7f ? data[0] & 0x7f : 1;
    const char *p = (const char *)data + 1;
    size_t n = size - 1, ta, tb;
    edge_req_t a, b;
    edge_req_init(&a);
    edge_req_init(&b);
    int sa = feed(&a, p, n, piece, in_place, &ta), sb = feed(&b, p, n, n ? n : 1, 0, &tb);
    if (kind(sa) != kind(sb))
        abort(); /* how the bytes were split changed the answer */
    if (kind(sa) != 2 && ta != a.len)
        abort(); /* a byte was read and dropped */
    if (sa == 1) {
        check_complete(&a);
        if (strcmp(a.path, b.path) != 0 || a.n_headers != b.n_headers || a.n_args != b.n_args ||
            a.body_off != b.body_off)
            abort();
        if (memcmp(a.buf + a.body_off, p + a.body_off, a.len - a.body_off) != 0)
            abort(); /* what follows the headers is the client's bytes */
        for (size_t i = 0; i < a.n_headers; i++)
            if (strcmp(a.buf + a.hname[i].off, b.buf + b.hname[i].off) != 0 ||
                strcmp(a.buf + a.hval[i].off, b.buf + b.hval[i].off) != 0)
                abort();
    }
    edge_req_clear(&a);
    edge_req_clear(&b);
    return 0;
}
