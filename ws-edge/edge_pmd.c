/* SPDX-License-Identifier: MIT */
/*
 * edge_pmd.c — RFC 7692 permessage-deflate for routes with `compression:
 * on`, without lws's extension (which deflates per connection inside
 * lws_write and keeps an inflate window per connection).
 *
 * Negotiated with no context takeover either way
 * ("permessage-deflate; server_no_context_takeover;
 * client_no_context_takeover"), so every message stands alone:
 * - in: edge_rxcheck.c takes RSV1 off each data message's first frame
 *   before lws parses it (lws 4.1 refuses RSV1 without an extension) and
 *   remembers it; the finished message is inflated here with one raw
 *   inflate stream per loop, its output capped at the route's
 *   max_message_bytes (past it: 1009, so a small "bomb" cannot make the
 *   edge inflate more). No window or stream is kept per connection.
 * - out: a message of at least EDGE_PMD_MIN bytes is deflated once per loop
 *   (one raw deflate stream per loop, reset per message) into a finished
 *   frame with RSV1 (edge_msg_t.z), which every compressed member shares
 *   like the plain buffer; smaller messages, and those deflate does not
 *   shrink, go uncompressed (allowed: RSV1 clear).
 * Per loop, created on first use: the inflater (~39 KiB: 32 KiB window),
 * the deflater (~262 KiB at windowBits 15, memLevel 8) and the two output
 * buffers (up to max_message_bytes, and the largest frame deflated).
 *
 * Service thread only (the state is the loop's).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "common/err.h"
#include "ws-edge/edge_int.h"
#include "ws-edge/edge_request.h"

struct edge_pmd {
    z_stream inf, def;
    unsigned char *ibuf, *dbuf;
    size_t icap, dcap;
};

static edge_pmd_t *pmd_of(edge_loop_t *e)
{
    if (e->pmd)
        return e->pmd;
    edge_pmd_t *z = calloc(1, sizeof *z);
    if (!z || inflateInit2(&z->inf, -15) != Z_OK ||
        deflateInit2(&z->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) !=
            Z_OK)
        abort(); /* out of memory */
    e->pmd = z;
    return z;
}

void edge_pmd_free(edge_pmd_t *z)
{
    if (!z)
        return;
    inflateEnd(&z->inf);
    deflateEnd(&z->def);
    free(z->ibuf);
    free(z->dbuf);
    free(z);
}

/* Feeds in[0..n) to the inflater; 0, WSG_ETOOBIG past max, WSG_EPROTO. */
static int inflate_some(edge_pmd_t *z, const unsigned char *in, size_t n, size_t max, size_t *have)
{
    z->inf.next_in = (unsigned char *)in;
    z->inf.avail_in = (uInt)n;
    for (;;) {
        if (*have == z->icap) {
            if (z->icap > max)
                return WSG_ETOOBIG;
            size_t cap = z->icap ? z->icap * 2 : 4096;
            z->icap = cap > max + 1 ? max + 1 : cap;
            z->ibuf = realloc(z->ibuf, z->icap);
            if (!z->ibuf)
                abort();
        }
        z->inf.next_out = z->ibuf + *have;
        z->inf.avail_out = (uInt)(z->icap - *have);
        int rc = inflate(&z->inf, Z_SYNC_FLUSH);
        *have = z->icap - z->inf.avail_out;
        if (*have > max)
            return WSG_ETOOBIG;
        if (rc == Z_STREAM_END)
            return 0; /* a final block: what follows it is ignored */
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return WSG_EPROTO;
        if (!z->inf.avail_in && z->inf.avail_out)
            return 0;
    }
}

int edge_pmd_inflate(edge_loop_t *e, const unsigned char *in, size_t n, size_t max,
                     const unsigned char **out, size_t *out_len)
{
    static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff}; /* RFC 7692 §7.2.2 */
    edge_pmd_t *z = pmd_of(e);
    size_t have = 0;
    inflateReset(&z->inf);
    int rc = inflate_some(z, in, n, max, &have);
    if (rc == 0)
        rc = inflate_some(z, tail, sizeof tail, max, &have);
    *out = z->ibuf;
    *out_len = have;
    return rc;
}

edge_msg_t *edge_pmd_frame(edge_loop_t *e, edge_msg_t *m)
{
    if (m->z || m->raw || m->len < EDGE_PMD_MIN || m->z_tried)
        return m->z;
    m->z_tried = 1;
    edge_pmd_t *z = pmd_of(e);
    size_t bound = deflateBound(&z->def, m->len) + 16;
    if (bound > z->dcap) {
        z->dbuf = realloc(z->dbuf, bound);
        if (!z->dbuf)
            abort();
        z->dcap = bound;
    }
    deflateReset(&z->def);
    z->def.next_in = m->buf + LWS_PRE;
    z->def.avail_in = (uInt)m->len;
    z->def.next_out = z->dbuf;
    z->def.avail_out = (uInt)z->dcap;
    int rc = deflate(&z->def, Z_SYNC_FLUSH);
    size_t n = z->dcap - z->def.avail_out;
    if (rc != Z_OK || z->def.avail_in || n < 4)
        return NULL;
    n -= 4; /* the empty stored block's 00 00 ff ff (RFC 7692 §7.2.1) */
    if (n + 8 >= m->len)
        return NULL; /* no gain: the plain frame goes */
    unsigned char h[10];
    size_t hl = edge_frame_header(h, n, (int)m->binary, 1);
    edge_msg_t *f = edge_msg_new(NULL, hl + n, (int)m->binary);
    memcpy(f->buf + LWS_PRE, h, hl);
    memcpy(f->buf + LWS_PRE + hl, z->dbuf, n);
    f->raw = 1;
    m->z = f;
    return f;
}

/* One offer's parameters ("; a; b=1"): acceptable without context takeover
 * and with our window (15)? */
static int offer_ok(char *params)
{
    int seen[4] = {0};
    static const char *const names[] = {"client_no_context_takeover", "server_no_context_takeover",
                                        "client_max_window_bits", "server_max_window_bits"};
    char *save = NULL;
    for (char *p = strtok_r(params, ";", &save); p; p = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(p, '=');
        char *val = eq ? eq + 1 : NULL;
        if (eq)
            *eq = '\0';
        p += strspn(p, " \t");
        p[strcspn(p, " \t")] = '\0';
        size_t i = 0;
        while (i < 4 && strcasecmp(p, names[i]) != 0)
            i++;
        if (i == 4 || seen[i]++)
            return 0; /* unknown or repeated: decline this offer (§7) */
        if (val) {
            val += strspn(val, " \t\"");
            int bits = atoi(val);
            if (i < 2 || bits < 8 || bits > 15 || (i == 3 && bits != 15))
                return 0; /* server_max_window_bits < 15: we deflate with 15 */
        } else if (i == 3) {
            return 0;
        }
    }
    return 1;
}

int edge_pmd_offered(const edge_req_t *req)
{
    size_t from = 0;
    const char *v;
    while ((v = edge_req_header_from(req, "sec-websocket-extensions", &from))) {
        char *copy = strdup(v), *save = NULL;
        if (!copy)
            abort();
        int ok = 0;
        for (char *o = strtok_r(copy, ",", &save); o && !ok; o = strtok_r(NULL, ",", &save)) {
            o += strspn(o, " \t");
            size_t nl = strcspn(o, "; \t");
            if (nl != 18 || strncasecmp(o, "permessage-deflate", 18) != 0)
                continue;
            char *params = o + nl;
            params += strspn(params, " \t");
            ok = !*params || (*params == ';' && offer_ok(params + 1));
        }
        free(copy);
        if (ok)
            return 1;
    }
    return 0;
}
