/* SPDX-License-Identifier: MIT */
/*
 * wsload — WebSocket load generator for wsgate's benchmarks (and Pushpin's).
 *
 * One thread, epoll, non-blocking sockets, its own minimal RFC 6455 client
 * framing. Opens N connections from several loopback source addresses
 * (one source address gives only ~28k ports), at most --inflight handshakes
 * at a time, to one or several servers (--url may be repeated: connection i
 * goes to URL i mod n, e.g. both edges of a cluster; one histogram for all),
 * then runs one workload:
 *   idle   hold the connections for --duration seconds, answering pings
 *   send   every connection sends --count text messages "t=<ns> c=<i> n=<k> xxx…"
 *          (--size bytes) at --rate messages/s in total; the backend measures
 *   recv   count messages received until --expect arrive or --duration ends;
 *          latency = now - t of each message (monotonic clock, same machine)
 * Prints one JSON object with connects, failures, handshake latency and (recv)
 * delivery latency percentiles. SIGUSR1 prints the receive statistics of the
 * interval since the previous SIGUSR1 and resets them (stepped workloads);
 * SIGUSR2 prints the same line without resetting.
 * --ready-file F is written (with the number open) once connecting is done;
 * with --start-file G, send mode then waits (at most 60 s) until G exists,
 * so the caller can take its "before" samples before any message is sent.
 * wss:// URLs: TLS through OpenSSL (the server's certificate is not
 * verified: loopback benchmarks with a throw-away certificate). Every
 * connection makes a full handshake unless --tls-resume: then each one
 * offers the newest session ticket this process has received (browsers
 * resume too), and until the first ticket has arrived only one connection
 * is in flight, so only the first connection makes a full handshake. The
 * JSON's tls_resumed counts the handshakes the server let resume.
 * --deflate: offers RFC 7692 permessage-deflate with no context takeover
 * either way; a 101 without it counts as a failed connection. Sent messages
 * of at least --deflate-min bytes (default 256, the edge's own threshold)
 * are deflated on their own (RSV1); received RSV1 messages are inflated
 * before they are counted. The counts of both go into the JSON.
 * Payloads: "t=<ns> c=<i> n=<k> " then JSON-like text (chat records with
 * varying ids and words, about 3:1 under deflate) up to --size bytes.
 * A frame the socket does not take at once waits in a per-connection
 * buffer (written on EPOLLOUT; a TLS write is retried with the same bytes);
 * that connection sends nothing new meanwhile.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include "hist.h"

enum { ST_CONNECTING, ST_TLS, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

typedef struct {
    int fd;
    int state;
    int idx;
    uint64_t t_start;
    uint32_t sent;
    uint32_t rlen;
    unsigned char *rbuf; /* allocated on demand; small frames only */
    uint32_t rcap;
    int close_code;
    SSL *ssl;            /* wss:// only */
    int pmd;             /* permessage-deflate negotiated */
    unsigned char *wbuf; /* a frame (or its rest) the socket did not take yet */
    uint32_t wlen;
} conn_t;

enum { MAX_URLS = 8 };

typedef struct {
    char host[64];
    int port;
    char path[1024];
    int tls;
} url_t;

static struct {
    url_t urls[MAX_URLS];
    int n_urls;
    char **tokens;
    int n_tokens;
    char *sources[16];
    int n_sources;
    int conns, inflight, size;
    long count;
    double rate, duration;
    long expect;
    const char *mode;
    const char *token_mode; /* query | header | protocol */
    int conn_query;         /* append c=<index> to the query (Pushpin: per-connection channel) */
    const char *ready_file; /* created once every connection is open or failed */
    const char *start_file; /* send mode: wait for it after the ready file */
    int deflate, deflate_min;
    int tls_resume; /* offer the newest session ticket (TLS resumption) */
} opt = {.conns = 1,
         .inflight = 200,
         .size = 64,
         .count = 100,
         .duration = 10,
         .mode = "idle",
         .token_mode = "query",
         .deflate_min = 256};

static conn_t *conns;
static int epfd;
static hist_t hs_hist, rx_hist;
static long n_open, n_failed, n_closed_early, n_received, n_sent;
static long n_pmd, n_no_pmd, n_rx_z, n_tx_z; /* permessage-deflate counts */
static volatile sig_atomic_t stop_flag, dump_flag, peek_flag;
static uint64_t t_dump;  /* start of the current SIGUSR1 interval */
static uint64_t last_rx; /* when the last message arrived */

static void on_sig(int s)
{
    stop_flag = 1;
}

/* SIGUSR1: print the receive statistics of the interval since the last
 * SIGUSR1 (or since every connection opened) and start a new interval. */
static void on_usr1(int s)
{
    dump_flag = 1;
}

/* SIGUSR2: the same line without starting a new interval (to watch a drain). */
static void on_usr2(int s)
{
    peek_flag = 1;
}

static void dump_interval(int reset)
{
    uint64_t now = hist_now_ns();
    printf("{\"interval_s\":%.3f,\"last_rx_s\":%.3f,\"open\":%ld,\"closed_early\":%ld,\"received\":"
           "%ld,\"received_compressed\":%ld,"
           "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
           t_dump ? (double)(now - t_dump) / 1e9 : 0,
           last_rx > t_dump ? (double)(last_rx - t_dump) / 1e9 : 0, n_open, n_closed_early,
           n_received, n_rx_z, hist_quantile(&rx_hist, .5) / 1e6,
           hist_quantile(&rx_hist, .99) / 1e6, rx_hist.max_ns / 1e6);
    fflush(stdout);
    peek_flag = 0;
    if (!reset)
        return;
    memset(&rx_hist, 0, sizeof rx_hist);
    n_received = 0;
    n_rx_z = 0;
    t_dump = now;
    dump_flag = 0;
}

static void parse_url(const char *url)
{
    if (opt.n_urls == MAX_URLS) {
        fprintf(stderr, "wsload: at most %d --url\n", MAX_URLS);
        exit(2);
    }
    url_t *u = &opt.urls[opt.n_urls];
    u->tls = strncmp(url, "wss://", 6) == 0;
    const char *rest = u->tls ? url + 6 : strncmp(url, "ws://", 5) == 0 ? url + 5 : NULL;
    if (!rest || sscanf(rest, "%63[^:/]:%d%1023s", u->host, &u->port, u->path) < 2 || u->port < 1 ||
        u->port > 65535) {
        fprintf(stderr, "wsload: bad --url %s (want ws[s]://host:port/path)\n", url);
        exit(2);
    }
    if (!u->path[0])
        strcpy(u->path, "/");
    opt.n_urls++;
}

static const url_t *url_of(const conn_t *c)
{
    return &opt.urls[c->idx % opt.n_urls];
}

static void load_tokens(const char *file)
{
    FILE *f = fopen(file, "r");
    char line[4096];
    if (!f) {
        perror(file);
        exit(2);
    }
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line)
            continue;
        opt.tokens = realloc(opt.tokens, sizeof(char *) * (size_t)(opt.n_tokens + 1));
        opt.tokens[opt.n_tokens++] = strdup(line);
    }
    fclose(f);
}

static int start_connect(conn_t *c)
{
    const url_t *u = url_of(c);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)u->port)};
    if (inet_pton(AF_INET, u->host, &sa.sin_addr) != 1)
        return -1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.n_sources) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        inet_pton(AF_INET, opt.sources[c->idx % opt.n_sources], &src.sin_addr);
        setsockopt(c->fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
            return -1;
    }
    c->t_start = hist_now_ns();
    c->state = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
        return -1;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void conn_fail(conn_t *c, int was_open);

static SSL_CTX *tls_ctx;
static SSL_SESSION *resume_sess; /* --tls-resume: the newest ticket received */
static long n_resumed;           /* TLS handshakes that resumed a session */

/* OpenSSL hands over each session ticket the server sends (TLS 1.3: after
 * the handshake, read with the first response); the newest is kept. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    if (resume_sess)
        SSL_SESSION_free(resume_sess);
    resume_sess = sess;
    return 1; /* the reference is ours */
}

/* write()/read() of c, through its TLS session on wss://; -1 with EAGAIN
 * when the session needs the socket first. */
static ssize_t io_write(conn_t *c, const void *p, size_t n)
{
    if (!c->ssl)
        return write(c->fd, p, n);
    int r = SSL_write(c->ssl, p, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
    ERR_clear_error();
    return -1;
}

static ssize_t io_read(conn_t *c, void *p, size_t n)
{
    if (!c->ssl)
        return read(c->fd, p, n);
    int r = SSL_read(c->ssl, p, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    errno = e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? EAGAIN : EIO;
    return -1;
}

static void send_handshake(conn_t *c)
{
    char req[8192];
    const url_t *u = url_of(c);
    const char *tok = opt.n_tokens ? opt.tokens[c->idx % opt.n_tokens] : NULL;
    int q = tok && strcmp(opt.token_mode, "query") == 0;
    char cq[32] = "";
    if (opt.conn_query)
        snprintf(cq, sizeof cq, "%sc=%d", (q || strchr(u->path, '?')) ? "&" : "?", c->idx);
    int n = snprintf(req, sizeof req,
                     "GET %s%s%s%s%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n",
                     u->path, q ? (strchr(u->path, '?') ? "&" : "?") : "", q ? "token=" : "",
                     q ? tok : "", cq, u->host, u->port);
    if (tok && strcmp(opt.token_mode, "header") == 0)
        n += snprintf(req + n, sizeof req - (size_t)n, "Authorization: Bearer %s\r\n", tok);
    if (tok && strcmp(opt.token_mode, "protocol") == 0)
        n +=
            snprintf(req + n, sizeof req - (size_t)n, "Sec-WebSocket-Protocol: bearer.%s\r\n", tok);
    if (opt.deflate)
        n += snprintf(req + n, sizeof req - (size_t)n,
                      "Sec-WebSocket-Extensions: permessage-deflate; "
                      "client_no_context_takeover; server_no_context_takeover\r\n");
    n += snprintf(req + n, sizeof req - (size_t)n, "\r\n");
    if (io_write(c, req, (size_t)n) != n)
        conn_fail(c, 0); /* reset before the request went out: a failed connect */
    else
        c->state = ST_HANDSHAKE;
}

static void conn_fail(conn_t *c, int was_open)
{
    if (c->state == ST_CLOSED)
        return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl)
        SSL_free(c->ssl);
    c->ssl = NULL;
    free(c->wbuf);
    c->wbuf = NULL;
    c->wlen = 0;
    close(c->fd);
    c->state = ST_CLOSED;
    if (was_open)
        n_closed_early++, n_open--;
    else
        n_failed++;
}

/* Writes what waits in c->wbuf; 0 once it is all out (or on an error,
 * which the next read reports), -1 while the socket still refuses. */
static int flush_pending(conn_t *c)
{
    if (!c->wlen)
        return 0;
    ssize_t w = io_write(c, c->wbuf, c->wlen);
    if (w < 0 && errno == EAGAIN)
        return -1;
    if (w > 0 && !c->ssl && (uint32_t)w < c->wlen) { /* plain: keep the rest */
        memmove(c->wbuf, c->wbuf + w, c->wlen - (size_t)w);
        c->wlen -= (uint32_t)w;
        return -1;
    }
    c->wlen = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

/* Keeps the unwritten part of a frame for EPOLLOUT: its rest on a plain
 * socket, all of it under TLS (SSL_write must be retried with the same
 * bytes). */
static void keep_pending(conn_t *c, const unsigned char *f, size_t len)
{
    c->wbuf = realloc(c->wbuf, len);
    if (!c->wbuf)
        abort();
    memcpy(c->wbuf, f, len);
    c->wlen = (uint32_t)len;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes one masked client frame (text, pong or close); rsv1 marks a
 * permessage-deflate message. 0 when written or queued, -1 when not. */
static int send_frame(conn_t *c, int opcode, const unsigned char *p, size_t len, int rsv1)
{
    unsigned char f[16 + 65536];
    size_t h = 0;
    if (len > 65535 || c->wlen)
        return -1;
    f[h++] = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (len < 126) {
        f[h++] = (unsigned char)(0x80 | len);
    } else {
        f[h++] = 0x80 | 126;
        f[h++] = (unsigned char)(len >> 8);
        f[h++] = (unsigned char)len;
    }
    memset(f + h, 0, 4); /* zero mask: valid and cheap; the payload stays readable */
    h += 4;
    memcpy(f + h, p, len);
    ssize_t w = io_write(c, f, h + len);
    if (w == (ssize_t)(h + len))
        return 0;
    if (w < 0 && errno != EAGAIN)
        return -1;
    if (c->ssl)
        keep_pending(c, f, h + len);
    else
        keep_pending(c, f + (w > 0 ? w : 0), h + len - (size_t)(w > 0 ? w : 0));
    return 0;
}

static z_stream zin, zout; /* raw (windowBits -15), reset per message: no context takeover */
static unsigned char zbuf[1 << 20];

/* Inflates one permessage-deflate message into zbuf; its length or -1. */
static long pmd_inflate(const unsigned char *p, size_t len)
{
    static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
    inflateReset(&zin);
    zin.next_out = zbuf;
    zin.avail_out = sizeof zbuf;
    zin.next_in = (unsigned char *)p;
    zin.avail_in = (uInt)len;
    int r = inflate(&zin, Z_SYNC_FLUSH);
    if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
        return -1;
    zin.next_in = (unsigned char *)tail;
    zin.avail_in = 4;
    r = inflate(&zin, Z_SYNC_FLUSH);
    if ((r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) || zin.avail_out == 0)
        return -1;
    return (long)(sizeof zbuf - zin.avail_out);
}

/* Deflates one message on its own into zbuf (RFC 7692 §7.2.1: the
 * trailing 00 00 ff ff taken off); its length or -1. */
static long pmd_deflate(const unsigned char *p, size_t len)
{
    deflateReset(&zout);
    zout.next_in = (unsigned char *)p;
    zout.avail_in = (uInt)len;
    zout.next_out = zbuf;
    zout.avail_out = 65535 + 4;
    if (deflate(&zout, Z_SYNC_FLUSH) != Z_OK || zout.avail_in || zout.avail_out == 0)
        return -1;
    long n = (long)(65535 + 4 - zout.avail_out);
    return n >= 4 ? n - 4 : -1;
}

static void on_text(conn_t *c, const unsigned char *p, size_t len)
{
    n_received++;
    last_rx = hist_now_ns();
    if (len > 2 && p[0] == 't' && p[1] == '=') {
        uint64_t t = strtoull((const char *)p + 2, NULL, 10), now = hist_now_ns();
        if (t && t <= now)
            hist_add(&rx_hist, now - t);
    }
}

/* Parses complete frames from c->rbuf; returns -1 when the connection closed. */
static int parse_frames(conn_t *c)
{
    uint32_t off = 0;
    while (c->rlen - off >= 2) {
        unsigned char *f = c->rbuf + off;
        int op = f[0] & 0x0f;
        uint64_t len = f[1] & 0x7f;
        uint32_t h = 2;
        if (len == 126) {
            if (c->rlen - off < 4)
                break;
            len = ((uint64_t)f[2] << 8) | f[3];
            h = 4;
        } else if (len == 127) {
            if (c->rlen - off < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = (len << 8) | f[2 + i];
            h = 10;
        }
        if (len > 1 << 20)
            return -1;
        if (c->rlen - off < h + len) {
            if (h + len > c->rcap) {
                c->rcap = (uint32_t)(h + len);
                c->rbuf = realloc(c->rbuf, c->rcap);
            }
            break;
        }
        if ((f[0] & 0x40) && (!c->pmd || (op != 1 && op != 2)))
            return -1; /* RSV1 that nothing negotiated */
        if ((op == 1 || op == 2) && (f[0] & 0x40)) {
            long zn = pmd_inflate(f + h, (size_t)len);
            if (zn < 0)
                return -1;
            n_rx_z++;
            on_text(c, zbuf, (size_t)zn);
        } else if (op == 1 || op == 2)
            on_text(c, f + h, (size_t)len);
        else if (op == 9)
            send_frame(c, 10, f + h, (size_t)len, 0);
        else if (op == 8) {
            c->close_code = len >= 2 ? (f[h] << 8) | f[h + 1] : 1005;
            return -1;
        }
        off += h + (uint32_t)len;
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    return 0;
}

static void on_readable(conn_t *c)
{
    for (;;) {
        if (!c->rbuf || c->rlen == c->rcap) {
            c->rcap = c->rcap ? c->rcap * 2 : 4096;
            c->rbuf = realloc(c->rbuf, c->rcap);
        }
        ssize_t n = io_read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            conn_fail(c, c->state == ST_OPEN);
            return;
        }
        if (n < 0)
            break;
        c->rlen += (uint32_t)n;
        if (c->state == ST_HANDSHAKE) {
            unsigned char *e = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
            if (!e)
                continue;
            if (c->rlen < 12 || memcmp(c->rbuf + 9, "101", 3) != 0) {
                conn_fail(c, 0);
                return;
            }
            if (opt.deflate) { /* asked for: a 101 without it is a failure */
                *e = 0;
                c->pmd = strcasestr((char *)c->rbuf,
                                    "\nSec-WebSocket-Extensions: permessage-deflate") != NULL;
                if (!c->pmd) {
                    n_no_pmd++;
                    conn_fail(c, 0);
                    return;
                }
                n_pmd++;
            }
            hist_add(&hs_hist, hist_now_ns() - c->t_start);
            c->state = ST_OPEN;
            n_open++;
            uint32_t used = (uint32_t)(e + 4 - c->rbuf);
            memmove(c->rbuf, c->rbuf + used, c->rlen - used);
            c->rlen -= used;
        }
        if (c->state == ST_OPEN && parse_frames(c) < 0) {
            conn_fail(c, 1);
            return;
        }
    }
    if (c->state == ST_OPEN && c->rlen == 0 && c->rcap > 4096) {
        free(c->rbuf); /* keep idle connections small */
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

static void on_event(conn_t *c, uint32_t events)
{
    if (c->state == ST_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            conn_fail(c, 0);
            return;
        }
        if (url_of(c)->tls) {
            c->ssl = SSL_new(tls_ctx);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
            /* a copy each: OpenSSL marks the session a connection used not
             * resumable when that connection ends or fails uncleanly */
            SSL_SESSION *copy = resume_sess ? SSL_SESSION_dup(resume_sess) : NULL;
            if (copy) {
                SSL_set_session(c->ssl, copy);
                SSL_SESSION_free(copy);
            }
            c->state = ST_TLS;
        }
    }
    if (c->state == ST_TLS) {
        int r = SSL_do_handshake(c->ssl);
        int e = r == 1 ? 0 : SSL_get_error(c->ssl, r);
        if (e && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            conn_fail(c, 0);
            return;
        }
        struct epoll_event ev = {.events = e == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN,
                                 .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        if (e)
            return;
        n_resumed += SSL_session_reused(c->ssl);
        send_handshake(c);
        return;
    }
    if (c->state == ST_CONNECTING) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        send_handshake(c);
        return;
    }
    if ((events & EPOLLOUT) && c->state == ST_OPEN)
        flush_pending(c);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_readable(c);
}

/* Connections among the first `started` still connecting or handshaking. */
static int in_progress(int started)
{
    int n = 0;
    for (int i = 0; i < started; i++)
        n += conns[i].state == ST_CONNECTING || conns[i].state == ST_TLS ||
             conns[i].state == ST_HANDSHAKE;
    return n;
}

static void poll_once(int timeout_ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(epfd, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++)
        on_event(evs[i].data.ptr, evs[i].events);
    if (dump_flag || peek_flag)
        dump_interval(dump_flag);
}

/* Opens every connection with at most opt.inflight handshakes in flight. */
static void connect_all(double deadline_s)
{
    int next = 0, pending = 0;
    uint64_t deadline = hist_now_ns() + (uint64_t)(deadline_s * 1e9);
    while (!stop_flag && hist_now_ns() < deadline) {
        /* --tls-resume: one at a time until a ticket to offer has come */
        int cap = opt.tls_resume && !resume_sess ? 1 : opt.inflight;
        while (next < opt.conns && pending < cap) {
            conns[next].idx = next;
            if (start_connect(&conns[next]) != 0)
                conn_fail(&conns[next], 0);
            next++;
            pending++;
        }
        poll_once(5);
        pending = in_progress(next);
        if (next == opt.conns && pending == 0)
            break;
    }
}

/* JSON-like text to pad payloads with: chat records with varying ids,
 * users and words (made once; deflate shrinks 1 KiB of it to ~30%, about
 * what it does with real chat JSON, where 'x' padding would shrink to
 * nothing). */
static char fill[65536];

static void make_fill(void)
{
    static const char *words[] = {"hello", "world",  "meeting", "at",    "noon",   "the",
                                  "build", "passed", "deploy",  "queue", "room",   "ok",
                                  "see",   "you",    "later",   "ping",  "thanks", "lunch"};
    unsigned x = 12345, n = 0;
    while (n < sizeof fill - 256) {
        x = x * 1103515245u + 12345u;
        int k = snprintf(
            fill + n, sizeof fill - n,
            "{\"id\":%u,\"user\":\"u-%04u\",\"type\":\"chat.message\",\"text\":\"%s %s %s\","
            "\"ts\":%u},",
            (x >> 8) % 1000000, (x >> 4) % 9973, words[(x >> 3) % 18], words[(x >> 11) % 18],
            words[(x >> 19) % 18], 1700000000u + (x >> 12));
        n += (unsigned)k;
    }
}

static void send_one(conn_t *c)
{
    unsigned char p[65536];
    int n = snprintf((char *)p, sizeof p, "t=%llu c=%d n=%u ", (unsigned long long)hist_now_ns(),
                     c->idx, c->sent + 1);
    size_t len = (size_t)opt.size > (size_t)n ? (size_t)opt.size : (size_t)n;
    if (len > sizeof p)
        len = sizeof p;
    memcpy(p + n, fill, len - (size_t)n);
    int z = c->pmd && len >= (size_t)opt.deflate_min;
    long zn = z ? pmd_deflate(p, len) : -1;
    if (zn >= 0 ? send_frame(c, 1, zbuf, (size_t)zn, 1) == 0 : send_frame(c, 1, p, len, 0) == 0) {
        c->sent++;
        n_sent++;
        n_tx_z += zn >= 0;
    }
}

static void run_send(void)
{
    uint64_t t0 = hist_now_ns(), end = t0 + (uint64_t)(opt.duration * 1e9);
    long total = opt.count * (long)n_open, done = 0;
    int rr = 0;
    while (!stop_flag && done < total && hist_now_ns() < end) {
        double el = (double)(hist_now_ns() - t0) / 1e9;
        long due = opt.rate > 0 ? (long)(el * opt.rate) + 1 : total;
        for (int guard = 0; done < due && done < total && guard < 20000; guard++) {
            conn_t *c = &conns[rr];
            rr = (rr + 1) % opt.conns;
            if (c->state != ST_OPEN || c->sent >= opt.count)
                continue;
            send_one(c);
            done++;
        }
        poll_once(done < due ? 0 : 1);
    }
    uint64_t drain = hist_now_ns() + 2000000000ull;
    while (!stop_flag && hist_now_ns() < drain)
        poll_once(50);
}

static void run_wait(void)
{
    uint64_t end = hist_now_ns() + (uint64_t)(opt.duration * 1e9);
    while (!stop_flag && hist_now_ns() < end && !(opt.expect && n_received >= opt.expect))
        poll_once(20);
}

static void print_result(double connect_s)
{
    printf("{\"mode\":\"%s\",\"conns\":%d,\"open\":%ld,\"failed\":%ld,\"closed_early\":%ld,"
           "\"connect_seconds\":%.3f,\"connects_per_s\":%.1f,"
           "\"handshake_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
           "\"sent\":%ld,\"received\":%ld,"
           "\"deflate\":{\"negotiated\":%ld,\"refused\":%ld,\"sent_compressed\":%ld,"
           "\"received_compressed\":%ld},\"tls_resumed\":%ld,"
           "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
           opt.mode, opt.conns, n_open, n_failed, n_closed_early, connect_s,
           connect_s > 0 ? (double)(n_open) / connect_s : 0, hist_quantile(&hs_hist, .5) / 1e6,
           hist_quantile(&hs_hist, .99) / 1e6, hs_hist.max_ns / 1e6, n_sent, n_received, n_pmd,
           n_no_pmd, n_tx_z, n_rx_z, n_resumed, hist_quantile(&rx_hist, .5) / 1e6,
           hist_quantile(&rx_hist, .99) / 1e6, rx_hist.max_ns / 1e6);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: wsload --url ws://127.0.0.1:8080/chat [--url ...] [--tokens FILE] "
                    "[--token-mode "
                    "query|header|protocol]\n"
                    "              [--conns N] [--inflight N] [--sources 127.0.0.1,127.0.0.2]\n"
                    "              [--mode idle|send|recv] [--count N] [--rate R] [--size B]\n"
                    "              [--duration S] [--expect N] [--conn-query] [--ready-file F]\n"
                    "              [--deflate] [--deflate-min B] [--start-file F]\n"
                    "              [--tls-resume]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {{"url", 1, 0, 'u'},
                                       {"tokens", 1, 0, 't'},
                                       {"token-mode", 1, 0, 'T'},
                                       {"conns", 1, 0, 'c'},
                                       {"inflight", 1, 0, 'i'},
                                       {"sources", 1, 0, 's'},
                                       {"mode", 1, 0, 'm'},
                                       {"count", 1, 0, 'n'},
                                       {"rate", 1, 0, 'r'},
                                       {"size", 1, 0, 'b'},
                                       {"duration", 1, 0, 'd'},
                                       {"expect", 1, 0, 'e'},
                                       {"conn-query", 0, 0, 'Q'},
                                       {"ready-file", 1, 0, 'R'},
                                       {"deflate", 0, 0, 'D'},
                                       {"deflate-min", 1, 0, 'M'},
                                       {"start-file", 1, 0, 'S'},
                                       {"tls-resume", 0, 0, 'X'},
                                       {0, 0, 0, 0}};
    int ch;
    int have_url = 0;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'u':
            parse_url(optarg), have_url = 1;
            break;
        case 't':
            load_tokens(optarg);
            break;
        case 'T':
            opt.token_mode = optarg;
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'i':
            opt.inflight = atoi(optarg);
            break;
        case 's':
            for (char *s = strtok(strdup(optarg), ","); s && opt.n_sources < 16;
                 s = strtok(NULL, ","))
                opt.sources[opt.n_sources++] = s;
            break;
        case 'm':
            opt.mode = optarg;
            break;
        case 'n':
            opt.count = atol(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 'b':
            opt.size = atoi(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        case 'e':
            opt.expect = atol(optarg);
            break;
        case 'Q':
            opt.conn_query = 1;
            break;
        case 'R':
            opt.ready_file = optarg;
            break;
        case 'D':
            opt.deflate = 1;
            break;
        case 'M':
            opt.deflate_min = atoi(optarg);
            break;
        case 'S':
            opt.start_file = optarg;
            break;
        case 'X':
            opt.tls_resume = 1;
            break;
        default:
            usage();
        }
    }
    if (!have_url || opt.conns < 1 || opt.inflight < 1 || opt.size < 1 || opt.size > 65000)
        usage();
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max; /* the hard limit here is 20,000 */
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)opt.conns + 64 > rl.rlim_cur) {
        fprintf(stderr, "wsload: %d connections need more than the open-file limit %llu\n",
                opt.conns, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, on_usr2);
    conns = calloc((size_t)opt.conns, sizeof *conns);
    tls_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_RELEASE_BUFFERS);
    if (opt.tls_resume) { /* tickets to the callback only: no internal client cache */
        SSL_CTX_set_session_cache_mode(tls_ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(tls_ctx, on_new_session);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    make_fill();
    if (inflateInit2(&zin, -15) != Z_OK ||
        deflateInit2(&zout, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    uint64_t t0 = hist_now_ns();
    connect_all(opt.duration + 60);
    double connect_s = (double)(hist_now_ns() - t0) / 1e9;
    t_dump = hist_now_ns();
    if (opt.ready_file) {
        FILE *rf = fopen(opt.ready_file, "w");
        if (rf) {
            fprintf(rf, "%ld\n", n_open);
            fclose(rf);
        }
    }
    if (strcmp(opt.mode, "send") == 0) {
        uint64_t give_up = hist_now_ns() + 60000000000ull;
        while (opt.start_file && access(opt.start_file, F_OK) != 0 && !stop_flag &&
               hist_now_ns() < give_up)
            poll_once(10); /* answers pings meanwhile */
        run_send();
    } else
        run_wait();
    print_result(connect_s);
    return 0;
}
