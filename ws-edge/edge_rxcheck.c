/* SPDX-License-Identifier: MIT */
/*
 * edge_rxcheck.c — refuses client frames without the mask bit (RFC 6455
 * §5.1: "The server MUST close the connection upon receiving a frame that
 * is not masked", status 1002), which lws 4.1 cannot do.
 *
 * lws 4.1.6 notes the mask bit of each client frame (this_frame_masked,
 * lib/roles/ws/ops-ws.c), never checks it, and exposes it through no API:
 * an unmasked frame's payload is simply taken as is and delivered. The
 * bytes it parses come from the socket through exactly one call, recv() in
 * lws_ssl_capable_read_no_ssl() (lib/core-net/output.c), after the bytes
 * the edge gave it with the rebuilt request (edge_handshake.c).
 *
 * So the edge follows the frame headers in those bytes: the ones after the
 * request are scanned when the handshake is decided, and this file defines
 * recv() for the process, which lws's calls resolve to. On any thread other
 * than an edge loop's service thread, and for any socket that is not an open
 * connection of that loop, it is recvfrom() and nothing else; for an open
 * connection it also walks the headers of what was read (a few operations
 * per frame: payloads are skipped, not read). When an unmasked frame
 * starts, lws gets only the bytes before it: the frames before it are
 * delivered, then the connection is closed with 1002 and nothing from that
 * frame on reaches lws or the backend. lws reads again only once it has
 * parsed everything read before, so "delivered" is known by counting the
 * data frames lws has yet to finish (edge_rxcheck_frame_done, from
 * LWS_CALLBACK_RECEIVE).
 *
 * The same walk serves permessage-deflate (edge_pmd.c): on a connection that
 * negotiated it, RSV1 of each data message's first frame is noted and
 * cleared in the bytes before lws parses them.
 *
 * On wss:// the read is SSL_read (edge_tls.c): the walk sees plaintext.
 *
 * Service thread only (the table and the connections are the loop's); the
 * recv() definition may be called from any thread and touches nothing
 * unless its thread serves a loop.
 */
#undef _FORTIFY_SOURCE /* recv() is defined here, not wrapped */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "ws-edge/edge_int.h"

/* permessage-deflate: RSV1 of a data message's first frame (lws 4.1 would
 * refuse it: it negotiated no extension) is noted and taken off. RSV1 on a
 * continuation or control frame is left for lws to refuse (1002). */
static void note_rsv1(edge_rxcheck_t *s, unsigned char *b)
{
    unsigned op = *b & 0x0f;
    if (op != 0x1 && op != 0x2)
        return;
    if (s->zn == s->zcap) { /* grow, the ring laid out from 0 again */
        uint32_t cap = s->zcap ? s->zcap * 2 : 64;
        uint8_t *t = calloc(cap / 8, 1);
        if (!t)
            abort();
        for (uint32_t k = 0; k < s->zn; k++) {
            uint32_t at = (s->zhead + k) % s->zcap;
            if (s->zbits[at / 8] >> (at % 8) & 1)
                t[k / 8] |= (uint8_t)(1u << (k % 8));
        }
        free(s->zbits);
        s->zbits = t;
        s->zcap = cap;
        s->zhead = 0;
    }
    uint32_t at = (s->zhead + s->zn++) % s->zcap;
    if (*b & 0x40)
        s->zbits[at / 8] |= (uint8_t)(1u << (at % 8));
    else
        s->zbits[at / 8] &= (uint8_t) ~(1u << (at % 8));
    *b &= (unsigned char)~0x40;
}

int edge_rxcheck_zpop(edge_rxcheck_t *s)
{
    if (!s->zn)
        return 0;
    int bit = s->zbits[s->zhead / 8] >> (s->zhead % 8) & 1;
    s->zhead = (s->zhead + 1) % s->zcap;
    s->zn--;
    return bit;
}

size_t edge_rxcheck_scan(edge_rxcheck_t *s, unsigned char *p, size_t n)
{
    if (s->unmasked)
        return 0;
    /* Of the frames before p, only one whose key or payload runs on into p
     * can still be undelivered (lws parses all it has before reading). */
    uint32_t wait = !s->hdr_len && s->skip && s->data;
    size_t i = 0;
    while (i < n) {
        if (s->skip) {
            size_t take = s->skip < n - i ? (size_t)s->skip : n - i;
            s->skip -= take;
            i += take;
            continue;
        }
        if (!s->hdr_len && s->pmd)
            note_rsv1(s, &p[i]);
        s->hdr[s->hdr_len++] = p[i++];
        if (s->hdr_len < 2)
            continue;
        if (!(s->hdr[1] & 0x80)) {
            s->unmasked = 1;
            s->wait = wait;
            return i >= 2 ? i - 2 : 0; /* where this header starts (in p, or before it) */
        }
        unsigned len7 = s->hdr[1] & 0x7f;
        size_t hl = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
        if (s->hdr_len < hl)
            continue;
        uint64_t len = len7;
        if (hl > 2) {
            len = 0;
            for (size_t k = 2; k < hl; k++)
                len = len << 8 | s->hdr[k];
        }
        /* lws refuses lengths with bit 63 set; never wrap in the meantime */
        s->skip = len < UINT64_MAX - 4 ? len + 4 : UINT64_MAX; /* key, then payload */
        s->data = !(s->hdr[0] & 0x08);
        s->hdr_len = 0;
        wait += s->data;
    }
    return n;
}

/* The loop this thread serves; lws's reads happen on it. */
static __thread edge_loop_t *rx_loop;

void edge_rxcheck_thread(edge_loop_t *e)
{
    rx_loop = e;
}

int edge_rxcheck_open(edge_loop_t *e, edge_conn_t *c)
{
    int fd = lws_get_socket_fd(c->wsi);
    if (fd < 0)
        return 0;
    if ((size_t)fd >= e->rx_conns_cap) {
        size_t cap = e->rx_conns_cap ? e->rx_conns_cap : 1024;
        while (cap <= (size_t)fd)
            cap *= 2;
        edge_conn_t **t = realloc(e->rx_conns, cap * sizeof *t);
        if (!t)
            abort();
        memset(t + e->rx_conns_cap, 0, (cap - e->rx_conns_cap) * sizeof *t);
        e->rx_conns = t;
        e->rx_conns_cap = cap;
    }
    e->rx_conns[fd] = c;
    return c->rxc.unmasked && !c->rxc.wait;
}

void edge_rxcheck_closed(edge_loop_t *e, edge_conn_t *c)
{
    int fd = c->wsi ? lws_get_socket_fd(c->wsi) : -1;
    if (fd >= 0 && (size_t)fd < e->rx_conns_cap && e->rx_conns[fd] == c)
        e->rx_conns[fd] = NULL;
}

/* Closes c with 1002 from inside lws's read: the error makes lws close the
 * connection, sending the close frame set here. */
static ssize_t refuse(edge_conn_t *c)
{
    edge_conn_fail(rx_loop, c, WSG_CLOSE_PROTOCOL, EDGE_UNMASKED_REASON);
    errno = EPROTO;
    return -1;
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    edge_loop_t *e = rx_loop;
    edge_conn_t *c = e && fd >= 0 && (size_t)fd < e->rx_conns_cap ? e->rx_conns[fd] : NULL;
    if (c && c->rxc.unmasked) /* lws parsed what came before the frame */
        return refuse(c);
    ssize_t n = edge_tls_read(fd, buf, len, flags); /* recvfrom() unless the socket is TLS */
    if (e && n > 0)
        edge_tls_kick(e, fd); /* plaintext left inside OpenSSL: read again */
    if (!c || n <= 0 || (flags & MSG_PEEK))
        return n;
    size_t ok = edge_rxcheck_scan(&c->rxc, buf, (size_t)n);
    if (!c->rxc.unmasked)
        return n;
    if (!c->rxc.wait || !ok) /* nothing before it is left to deliver */
        return refuse(c);
    return (ssize_t)ok; /* edge_on_receive closes after the last of these */
}
