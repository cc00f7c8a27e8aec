/* SPDX-License-Identifier: MIT */
/*
 * edge_accept.c — an accepted client socket until its HTTP request line and
 * headers are complete, before lws sees anything of it.
 *
 * Why not let lws read it: lws 4.1 must decide an upgrade in the same call
 * that completes its headers, so a handshake that waits for the authorizer
 * (or a cluster user claim) had to be taken back from lws — its socket
 * dup()ed, a placeholder put in its place and that wsi closed. Every wsi lws
 * closes runs a sanity check that dereferences every live wsi of its context
 * (Debian's build, lib/plat/unix/unix-fds.c), so each authorized handshake
 * cost O(open connections). Now the edge reads the request itself
 * (edge_request.c parses it), edge_handshake.c decides on it, and only an
 * admitted request reaches lws, rebuilt, once. A refusal is written without
 * lws.
 *
 * Bounds: the request line and headers together at most EDGE_REQ_MAX_BYTES
 * (431 beyond), EDGE_REQ_MAX_HEADERS headers (431), EDGE_REQ_MAX_ARGS query
 * arguments (414); a request incomplete after the strictest route's
 * handshake_timeout is answered 408 (a loop's requests are listed in accept
 * order and share one timeout, so only the oldest are looked at); at most
 * EDGE_REQ_MAX_PENDING being read per loop: a new socket beyond that
 * makes the oldest one go with 408 (a client holding many sockets open
 * without finishing a request cannot stop the loop from accepting).
 *
 * Service thread only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "ws-edge/edge_int.h"

struct edge_reading {
    edge_reading_t *next, *prev; /* the loop's list, oldest first */
    edge_loop_t *e;
    ev_io w;
    int64_t accepted_ms;
    edge_req_t req;
};

static void req_unlink(edge_loop_t *e, edge_reading_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        e->reqs_head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        e->reqs_tail = r->prev;
    r->next = r->prev = NULL;
    e->n_reqs--;
}

/* Ends r: answers status (0: none) on its socket if it still has one. */
static void req_end(edge_loop_t *e, edge_reading_t *r, int status, const char *why)
{
    ev_io_stop(e->loop, &r->w);
    req_unlink(e, r);
    if (r->req.fd >= 0) {
        if (status)
            edge_send_http_status(r->req.fd, status, NULL, why);
        close(r->req.fd);
    }
    edge_req_clear(&r->req);
    free(r);
}

static const char *why_of(int status)
{
    switch (status) {
    case 408:
        return "request timed out";
    case 414:
        return "too many query arguments";
    case 431:
        return "request headers too large";
    default:
        return "bad request";
    }
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    edge_reading_t *r = w->data;
    edge_loop_t *e = r->e;
    (void)loop;
    (void)revents;
    for (;;) {
        size_t room;
        char *at = edge_req_room(&r->req, &room);
        ssize_t n = recv(r->req.fd, at, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* wait for more */
        if (n <= 0) {
            req_end(e, r, 0, NULL); /* the client went away */
            return;
        }
        int st = edge_req_feed(&r->req, at, (size_t)n);
        if (st == 0)
            continue;
        if (st != 1) {
            wsg_count(WSG_M_HANDSHAKE_REJECTED, 1);
            WSG_LOG(WSG_LOG_INFO, "handshake refused", "status=%d reason=%s remote=%s", st,
                    why_of(st), r->req.remote);
            req_end(e, r, st, why_of(st));
            return;
        }
        ev_io_stop(e->loop, &r->w);
        req_unlink(e, r);
        edge_hs_decide(e, &r->req); /* takes the socket */
        edge_req_clear(&r->req);
        free(r);
        return;
    }
}

void edge_req_accept(edge_loop_t *e, int fd, const struct sockaddr_storage *sa)
{
    if (e->n_reqs >= EDGE_REQ_MAX_PENDING) { /* the slowest makes room */
        wsg_count(WSG_M_HANDSHAKE_REJECTED, 1);
        WSG_LOG(WSG_LOG_INFO, "handshake refused", "status=408 reason=%s remote=%s",
                "too many requests being read", e->reqs_head->req.remote);
        req_end(e, e->reqs_head, 408, why_of(408));
    }
    edge_reading_t *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    edge_req_init(&r->req);
    r->e = e;
    r->req.fd = fd;
    r->accepted_ms = edge_now_ms();
    const void *a = sa->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->ss_family, a, r->req.remote, sizeof r->req.remote))
        r->req.remote[0] = '\0';
    r->prev = e->reqs_tail;
    if (e->reqs_tail)
        e->reqs_tail->next = r;
    else
        e->reqs_head = r;
    e->reqs_tail = r;
    e->n_reqs++;
    ev_io_init(&r->w, on_readable, fd, EV_READ);
    r->w.data = r;
    ev_io_start(e->loop, &r->w);
    on_readable(e->loop, &r->w, EV_READ); /* the request is usually there already */
}

void edge_req_reap(edge_loop_t *e, int64_t now, int all)
{
    uint64_t limit = edge_header_timeout_ms(e->edge->cfg);
    while (e->reqs_head && (all || (uint64_t)(now - e->reqs_head->accepted_ms) > limit))
        req_end(e, e->reqs_head, all ? 503 : 408, all ? "shutting down" : why_of(408));
}
