/* SPDX-License-Identifier: MIT */
/*
 * benchpub — HTTP publisher for the benchmarks: POSTs a JSON body to wsgate's
 * control API (/v1/channels/{ch}/messages) or Pushpin's publish API
 * (/publish/) over K keep-alive connections, one request in flight on each,
 * at --rate requests/s in total (0 = as fast as the answers come) for
 * --count requests or --duration seconds. In the body template every "@T@"
 * becomes "t=<monotonic ns> c=0 n=<k>", so receivers measure
 * publish -> receive latency. Prints one JSON object: sent, ok, errors,
 * achieved rate and the API's answer latency.
 * Usage: benchpub --port P --path /publish/ --body '{"…":"@T@"}'
 *                 [--header 'Authorization: Bearer …'] [--conns K]
 *                 [--rate R] [--count N] [--duration S]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hist.h"

#define MAXC 64

typedef struct {
    int fd;
    int busy;
    uint64_t t0;
    char buf[8192];
    size_t len;
} pconn_t;

static struct {
    int port, conns;
    const char *path, *body, *header;
    double rate, duration;
    long count;
} opt = {.port = 0, .conns = 1, .path = "/", .duration = 10, .count = 0};

static pconn_t pc[MAXC];
static hist_t api;
static long sent, ok, errors;

static int dial(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Builds the body with every @T@ replaced; returns its length. */
static size_t make_body(char *out, size_t cap, long k)
{
    char stamp[96];
    snprintf(stamp, sizeof stamp, "t=%llu c=0 n=%ld", (unsigned long long)hist_now_ns(), k);
    size_t n = 0, sl = strlen(stamp);
    for (const char *p = opt.body; *p && n + sl + 1 < cap;) {
        if (strncmp(p, "@T@", 3) == 0) {
            memcpy(out + n, stamp, sl);
            n += sl;
            p += 3;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
    return n;
}

static int send_req(pconn_t *c)
{
    char body[4096], req[8192];
    if (c->fd < 0 && (c->fd = dial()) < 0)
        return -1;
    size_t bl = make_body(body, sizeof body, sent + 1);
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                     "%s%sContent-Length: %zu\r\n\r\n%s",
                     opt.path, opt.port, opt.header ? opt.header : "", opt.header ? "\r\n" : "", bl,
                     body);
    c->t0 = hist_now_ns();
    if (n < 0 || (size_t)n >= sizeof req || write(c->fd, req, (size_t)n) != n) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->busy = 1;
    c->len = 0;
    sent++;
    return 0;
}

/* Reads what is there; when one whole answer arrived records it. */
static void on_read(pconn_t *c)
{
    ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (r <= 0) {
        close(c->fd);
        c->fd = -1;
        c->busy = 0;
        errors++;
        return;
    }
    c->len += (size_t)r;
    c->buf[c->len] = 0;
    char *hend = strstr(c->buf, "\r\n\r\n");
    if (!hend)
        return;
    char *cl = strcasestr(c->buf, "\r\ncontent-length:");
    size_t blen = cl && cl < hend ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    if ((size_t)(hend + 4 - c->buf) + blen > c->len)
        return;
    int status = c->len > 12 ? atoi(c->buf + 9) : 0;
    hist_add(&api, hist_now_ns() - c->t0);
    if (status >= 200 && status < 300)
        ok++;
    else if (errors++ < 3)
        fprintf(stderr, "benchpub: HTTP %d: %.200s\n", status, hend + 4);
    c->busy = 0;
    char *cc = strcasestr(c->buf, "\r\nconnection: close");
    if (cc && cc < hend) { /* Pushpin's publish endpoint closes after each answer */
        close(c->fd);
        c->fd = -1;
    }
}

static void run(void)
{
    uint64_t t0 = hist_now_ns(), end = t0 + (uint64_t)(opt.duration * 1e9);
    struct pollfd pf[MAXC];
    for (;;) {
        uint64_t now = hist_now_ns();
        int busy = 0;
        for (int i = 0; i < opt.conns; i++)
            busy += pc[i].busy;
        int more = now < end && (!opt.count || sent < opt.count);
        if (!more && !busy)
            break;
        if (!more && now > end + 10000000000ull)
            break; /* answers lost for 10 s: give up, they count as errors */
        long due =
            opt.rate > 0 ? (long)((double)(now - t0) / 1e9 * opt.rate) + 1 : sent + opt.conns;
        for (int i = 0; more && i < opt.conns && sent < due; i++)
            if (!pc[i].busy && send_req(&pc[i]) != 0)
                errors++;
        for (int i = 0; i < opt.conns; i++)
            pf[i] = (struct pollfd){.fd = pc[i].busy ? pc[i].fd : -1, .events = POLLIN};
        if (poll(pf, (nfds_t)opt.conns, 1) > 0)
            for (int i = 0; i < opt.conns; i++)
                if (pf[i].revents)
                    on_read(&pc[i]);
    }
    for (int i = 0; i < opt.conns; i++)
        errors += pc[i].busy;
    double secs = (double)(hist_now_ns() - t0) / 1e9;
    printf("{\"sent\":%ld,\"ok\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"per_s\":%.1f,"
           "\"api_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
           sent, ok, errors, secs, secs > 0 ? (double)ok / secs : 0, hist_quantile(&api, .5) / 1e6,
           hist_quantile(&api, .99) / 1e6, api.max_ns / 1e6);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"port", 1, 0, 'p'},   {"path", 1, 0, 'P'},     {"body", 1, 0, 'b'},
        {"header", 1, 0, 'H'}, {"conns", 1, 0, 'c'},    {"rate", 1, 0, 'r'},
        {"count", 1, 0, 'n'},  {"duration", 1, 0, 'd'}, {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 'P':
            opt.path = optarg;
            break;
        case 'b':
            opt.body = optarg;
            break;
        case 'H':
            opt.header = optarg;
            break;
        case 'c':
            opt.conns = atoi(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 'n':
            opt.count = atol(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (opt.port <= 0 || !opt.body || opt.conns < 1 || opt.conns > MAXC)
        goto usage;
    for (int i = 0; i < opt.conns; i++)
        pc[i].fd = -1;
    run();
    return 0;
usage:
    fprintf(stderr, "usage: benchpub --port P --path /publish/ --body JSON-with-@T@ [--header H]\n"
                    "                [--conns K<=64] [--rate R] [--count N] [--duration S]\n");
    return 2;
}
