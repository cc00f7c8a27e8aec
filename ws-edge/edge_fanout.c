/* SPDX-License-Identifier: MIT */
/*
 * edge_fanout.c — writes one message to many connections with two threads.
 *
 * A publish to a channel with many local members is the edge's heaviest job:
 * one send(2) per member (~5-7 µs each on loopback, kernel time), all on the
 * lws service thread. When at least EDGE_FANOUT_MIN members can take the
 * frame right away (edge_conn_writable_now: nothing queued, lws holds
 * nothing back), the service thread hands half of them to a helper thread,
 * writes the other half itself through lws, and waits for the helper before
 * it goes on (fork-join). The helper send(2)s the finished frame (header +
 * payload: the same bytes for every connection) to the file descriptors it
 * was given and touches nothing else. Only plain sockets are given to it
 * (direct_ok, checked per connection): a wss:// connection's frames are
 * sealed by its TLS session (edge_tls.c) and go through lws on the service
 * thread. While it writes, the service thread runs no lws
 * callback, so no connection of the helper's half can be written, closed or
 * freed under it.
 *
 * A frame the kernel did not take whole is finished on the service thread
 * after the join: nothing taken (EAGAIN) -> the normal path
 * (edge_conn_queue); part taken -> the rest goes through lws as raw bytes
 * (lws keeps what the kernel refuses, and the connection's later frames
 * queue behind it, as after a partial direct write); a broken socket is
 * closed as in the direct path.
 *
 * A loop has a helper only when the machine has more CPUs than the edge has
 * loops (edge.threads): otherwise the loops already use every CPU.
 *
 * Threads: edge_fanout_new/edge_fanout_free on the edge's owner;
 * edge_fanout_write on the service thread only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"
#include "common/metrics.h"
#include "common/thread.h"
#include "ws-edge/edge_int.h"

struct edge_fanout {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, busy; /* busy: a job is handed to the helper and not finished */
    /* the job (written by the service thread while busy == 0) */
    const unsigned char *frame;
    size_t flen;
    const int *fds;
    ssize_t *sent; /* per fd: bytes taken, or -1 (broken socket) */
    size_t n;
    /* service-thread scratch, reused across jobs */
    unsigned char *fbuf;
    size_t fcap;
    int *fdv;
    ssize_t *sentv;
    size_t fdcap, sentcap;
};

static void send_all(const unsigned char *frame, size_t flen, const int *fds, ssize_t *sent,
                     size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ssize_t r = send(fds[i], frame, flen, MSG_DONTWAIT | MSG_NOSIGNAL);
        sent[i] = r >= 0 ? r : (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    }
}

static void *helper_main(void *arg)
{
    edge_fanout_t *f = arg;
    wsg_thread_name("edge-fanout");
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->busy && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop)
            break;
        pthread_mutex_unlock(&f->mu);
        send_all(f->frame, f->flen, f->fds, f->sent, f->n);
        pthread_mutex_lock(&f->mu);
        f->busy = 0;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int edge_fanout_new(edge_fanout_t **out, size_t n_loops)
{
    *out = NULL;
    if (sysconf(_SC_NPROCESSORS_ONLN) <= (long)n_loops)
        return 0; /* no spare CPU: a second writer would only take turns with the loops */
    edge_fanout_t *f = calloc(1, sizeof *f);
    if (!f)
        return WSG_ENOMEM;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->th, NULL, helper_main, f) != 0) {
        free(f);
        return 0; /* fan-out stays on the service thread alone */
    }
    *out = f;
    return 0;
}

void edge_fanout_free(edge_fanout_t *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->th, NULL);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f->fbuf);
    free(f->fdv);
    free(f->sentv);
    free(f);
}

static void *grow(void *p, size_t *cap, size_t want, size_t size)
{
    if (want <= *cap)
        return p;
    size_t n = *cap ? *cap : 64;
    while (n < want)
        n *= 2;
    void *q = realloc(p, n * size);
    if (!q)
        abort();
    *cap = n;
    return q;
}

/* RFC 6455 §5.2 server frame: FIN, text or binary, unmasked; RSV1 marks a
 * permessage-deflate message (RFC 7692). */
size_t edge_frame_header(unsigned char *h, size_t len, int binary, int rsv1)
{
    h[0] = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | (binary ? 0x2 : 0x1));
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

/* After the join: a frame the kernel did not take whole (service thread). */
static void finish(edge_loop_t *e, edge_conn_t *c, edge_msg_t *m, const unsigned char *frame,
                   size_t flen, ssize_t sent)
{
    if (sent < 0) { /* broken socket: lws closes it, as after a failed direct write */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE + 2, LWS_TO_KILL_ASYNC);
        return;
    }
    if (sent == 0) { /* nothing taken: queue it like any frame */
        edge_conn_queue(e, c, m);
        return;
    }
    size_t rest = flen - (size_t)sent;
    unsigned char *b = malloc(LWS_PRE + rest);
    if (!b)
        abort();
    memcpy(b + LWS_PRE, frame + sent, rest);
    if (lws_write(c->wsi, b + LWS_PRE, rest, LWS_WRITE_RAW) < 0)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_REASON_BASE + 2, LWS_TO_KILL_ASYNC);
    else
        edge_conn_count_out(m);
    free(b);
}

/* May c's frames be send(2)ed by the helper, past lws? Only a plain socket
 * without compression: a TLS one needs its bytes sealed by its session and a
 * record the kernel half took finished with the same bytes, which lws's
 * retry guarantees; a compressed one gets the shared deflated frame
 * (edge_conn_queue), not the helper's plain one. */
static int direct_ok(const edge_conn_t *c, int fd)
{
    return fd >= 0 && !c->rxc.pmd && !edge_tls_is(fd);
}

size_t edge_fanout_write(edge_loop_t *e, edge_conn_t **conns, size_t n, edge_msg_t *m)
{
    edge_fanout_t *f = e->fanout;
    size_t mine = n, done = 0, theirs = 0;
    if (f && n >= EDGE_FANOUT_MIN) {
        mine = n / 2;
        f->fbuf = grow(f->fbuf, &f->fcap, m->len + 10, 1);
        size_t hl = edge_frame_header(f->fbuf, m->len, (int)m->binary, 0);
        memcpy(f->fbuf + hl, m->buf + LWS_PRE, m->len);
        f->fdv = grow(f->fdv, &f->fdcap, n - mine, sizeof *f->fdv);
        f->sentv = grow(f->sentv, &f->sentcap, n - mine, sizeof *f->sentv);
        /* the helper's half, plain sockets moved to its end of conns; the
         * others stay with the service thread, which writes through lws */
        for (size_t i = mine; i < n && (edge_tls_enabled() || e->edge->any_pmd); i++) {
            edge_conn_t *c = conns[i];
            if (!direct_ok(c, lws_get_socket_fd(c->wsi))) {
                conns[i] = conns[mine];
                conns[mine++] = c;
            }
        }
        for (size_t i = mine; i < n; i++)
            f->fdv[theirs++] = lws_get_socket_fd(conns[i]->wsi);
        if (theirs) {
            pthread_mutex_lock(&f->mu);
            f->frame = f->fbuf;
            f->flen = hl + m->len;
            f->fds = f->fdv;
            f->sent = f->sentv;
            f->n = theirs;
            f->busy = 1;
            pthread_cond_signal(&f->cv);
            pthread_mutex_unlock(&f->mu);
        }
    }
    for (size_t i = 0; i < mine; i++)
        if (edge_conn_queue(e, conns[i], m) == 0)
            done++;
    if (!theirs)
        return done;
    pthread_mutex_lock(&f->mu);
    while (f->busy)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
    for (size_t i = 0; i < theirs; i++) {
        if (f->sentv[i] == (ssize_t)f->flen)
            edge_conn_count_out(m);
        else
            finish(e, conns[mine + i], m, f->fbuf, f->flen, f->sentv[i]);
        done += f->sentv[i] >= 0; /* a broken socket got nothing */
    }
    return done;
}
