/* SPDX-License-Identifier: MIT */
/*
 * bench-backend — a fast webhook backend for the benchmarks, on libmicrohttpd.
 *
 *   POST /authorize  answers {"allow":true,"user":"u<n>"} (authorizer workload)
 *   POST <any>       a wsgate webhook (single or {"events":[…]} batch): for each
 *                    message event whose data is "t=<ns> c=<i> n=<k> …" records
 *                    latency now - t and checks per-connection order; the same
 *                    for an AWS Lambda-proxy event (route protocol: aws) whose
 *                    "body" is such a payload
 *   POST <any> with Content-Type application/websocket-events
 *                    Pushpin's WebSocket-over-HTTP: OPEN is answered with OPEN
 *                    plus GRIP "c:" subscribe control messages for the query
 *                    arguments ch=<channel> and c=<i> (channel "c<i>"), or,
 *                    from wsgate (protocol: grip, which does not forward the
 *                    client's query), "c<Connection-Id>"; TEXT
 *                    payloads are recorded like webhook data; CLOSE is echoed.
 *                    Replies carry Sec-WebSocket-Extensions: grip.
 *   GET  /stats      {"events":…, "messages":…, "out_of_order":…, "duplicates":…,
 *                     "stream_frames":…, "latency_ms":{"p50","p99","max"}}
 *   POST /reset      zeroes the counters
 * With WS_PORT, also a backend stream (docs/webhooks.md "Backend streams")
 * on ws://127.0.0.1:WS_PORT/<any> (libwebsockets, its own thread): each text
 * frame from the gateway (one envelope, or {"events":[…]}) is recorded as a
 * webhook body is, then every event id in it is acknowledged, the ids of all
 * frames read since the last write in one {"ack":[…]} frame. The handshake's
 * JWT is not checked (the bench measures delivery, not auth).
 * Usage: bench-backend PORT [THREADS [WS_PORT]]
 */
#include <libwebsockets.h>
#include <microhttpd.h>
#include <stdint.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hist.h"

#define MAX_CONNS 200000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static hist_t lat;
static long events, messages, out_of_order, duplicates, authorizations, stream_frames;
static uint32_t last_n[MAX_CONNS];
static uint64_t first_ns, last_ns; /* first and last recorded message */

typedef struct {
    char *buf;
    size_t len, cap;
} body_t;

/* Records one payload "t=<ns> c=<i> n=<k> …" (p points after "t="); mu held. */
static void record_one(const char *p, uint64_t now)
{
    unsigned long long t = 0;
    int c = -1;
    unsigned n = 0;
    if (sscanf(p, "%llu c=%d n=%u", &t, &c, &n) != 3)
        return;
    messages++;
    if (!first_ns)
        first_ns = now;
    last_ns = now;
    if (t && t <= now)
        hist_add(&lat, now - t);
    if (c >= 0 && c < MAX_CONNS) {
        if (n <= last_n[c])
            duplicates++;
        else if (n != last_n[c] + 1)
            out_of_order++;
        if (n > last_n[c])
            last_n[c] = n;
    }
}

/* Records every "data":"t=… c=… n=…" in a wsgate webhook body (one
 * "type" per event), and the "body":"t=…" of an AWS Lambda-proxy event
 * (one per request, with an "eventType"). */
static void record(const char *body, size_t len)
{
    static const char *const counted[] = {"\"type\":", "\"eventType\":"};
    static const char *const payload[] = {"\"data\":\"t=", "\"body\":\"t="};
    uint64_t now = hist_now_ns();
    const char *end = body + len;
    pthread_mutex_lock(&mu);
    for (size_t k = 0; k < 2; k++) {
        size_t cl = strlen(counted[k]), pl = strlen(payload[k]);
        for (const char *e = body; (e = memmem(e, (size_t)(end - e), counted[k], cl)); e += cl)
            events++;
        for (const char *p = body; (p = memmem(p, (size_t)(end - p), payload[k], pl));) {
            p += pl;
            record_one(p, now);
        }
    }
    pthread_mutex_unlock(&mu);
}

static enum MHD_Result reply(struct MHD_Connection *conn, int status, const char *type,
                             const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (type)
        MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Appends one TEXT event carrying a GRIP subscribe control message. */
static size_t grip_subscribe(char *out, size_t cap, size_t n, const char *channel)
{
    char msg[320];
    int m = snprintf(msg, sizeof msg, "c:{\"type\":\"subscribe\",\"channel\":\"%s\"}", channel);
    if (m < 0 || (size_t)m >= sizeof msg)
        return n;
    int w = snprintf(out + n, cap - n, "TEXT %x\r\n%s\r\n", m, msg);
    return w > 0 && (size_t)w < cap - n ? n + (size_t)w : n;
}

/* Pushpin's WebSocket-over-HTTP: each event is "TYPE\r\n" or
 * "TYPE <hex length>\r\n<content>\r\n". */
static enum MHD_Result ws_over_http(struct MHD_Connection *conn, const char *body, size_t len)
{
    char out[2048];
    size_t n = 0;
    const char *p = body, *end = body + len;
    uint64_t now = hist_now_ns();
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            return reply(conn, 400, "text/plain", "bad websocket-events body\n");
        char type[16] = "";
        unsigned long clen = 0;
        int have_len = sscanf(p, "%15[A-Z] %lx", type, &clen) == 2;
        const char *content = eol + 2;
        if (have_len && (clen > (size_t)(end - content) || clen + 2 > (size_t)(end - content)))
            return reply(conn, 400, "text/plain", "truncated websocket-events body\n");
        if (strcmp(type, "OPEN") == 0) {
            const char *ch = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "ch");
            const char *ci = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "c");
            n += (size_t)snprintf(out + n, sizeof out - n, "OPEN\r\n");
            if (ch && strlen(ch) < 256)
                n = grip_subscribe(out, sizeof out, n, ch);
            /* wsgate's grip routes do not forward the client's query: the
             * connection's own channel is named after its Connection-Id */
            const char *wid =
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "wsgate-connection-id");
            if (!ci && wid)
                ci = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection-Id");
            if (ci && strlen(ci) < 64) {
                char own[72];
                snprintf(own, sizeof own, "c%s", ci);
                n = grip_subscribe(out, sizeof out, n, own);
            }
            pthread_mutex_lock(&mu);
            authorizations++;
            pthread_mutex_unlock(&mu);
        } else if (strcmp(type, "TEXT") == 0 && have_len) {
            pthread_mutex_lock(&mu);
            events++;
            if (clen > 2 && content[0] == 't' && content[1] == '=')
                record_one(content + 2, now);
            pthread_mutex_unlock(&mu);
        } else if (strcmp(type, "CLOSE") == 0 && n + clen + 32 < sizeof out) {
            n += (size_t)snprintf(out + n, sizeof out - n, "CLOSE %lx\r\n", clen);
            memcpy(out + n, content, clen);
            n += clen;
            n += (size_t)snprintf(out + n, sizeof out - n, "\r\n");
        }
        p = have_len ? content + clen + 2 : content;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(n, out, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/websocket-events");
    MHD_add_response_header(r, "Sec-WebSocket-Extensions", "grip; message-prefix=\"\"");
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result stats(struct MHD_Connection *conn)
{
    char out[512];
    pthread_mutex_lock(&mu);
    snprintf(out, sizeof out,
             "{\"events\":%ld,\"messages\":%ld,\"out_of_order\":%ld,\"duplicates\":%ld,"
             "\"authorizations\":%ld,\"stream_frames\":%ld,\"span_s\":%.3f,"
             "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
             events, messages, out_of_order, duplicates, authorizations, stream_frames,
             first_ns ? (double)(last_ns - first_ns) / 1e9 : 0, hist_quantile(&lat, .5) / 1e6,
             hist_quantile(&lat, .99) / 1e6, lat.max_ns / 1e6);
    pthread_mutex_unlock(&mu);
    return reply(conn, 200, "application/json", out);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **ctx)
{
    body_t *b = *ctx;
    if (!b) {
        *ctx = calloc(1, sizeof *b);
        return MHD_YES;
    }
    if (*upload_size) {
        if (b->len + *upload_size + 1 > b->cap) {
            b->cap = (b->len + *upload_size + 1) * 2;
            b->buf = realloc(b->buf, b->cap);
        }
        memcpy(b->buf + b->len, upload, *upload_size);
        b->len += *upload_size;
        b->buf[b->len] = 0; /* sscanf on payloads never runs past the body */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") == 0 && strcmp(url, "/stats") == 0)
        return stats(conn);
    if (strcmp(url, "/reset") == 0) {
        pthread_mutex_lock(&mu);
        memset(&lat, 0, sizeof lat);
        memset(last_n, 0, sizeof last_n);
        events = messages = out_of_order = duplicates = authorizations = stream_frames = 0;
        first_ns = last_ns = 0;
        pthread_mutex_unlock(&mu);
        return reply(conn, 204, NULL, "");
    }
    if (strcmp(url, "/authorize") == 0) {
        char out[96];
        pthread_mutex_lock(&mu);
        long n = ++authorizations;
        pthread_mutex_unlock(&mu);
        snprintf(out, sizeof out, "{\"allow\":true,\"user\":\"u%ld\"}", n);
        return reply(conn, 200, "application/json", out);
    }
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (ct && strncmp(ct, "application/websocket-events", 28) == 0)
        return ws_over_http(conn, b->buf ? b->buf : "", b->len);
    record(b->buf ? b->buf : "", b->len);
    return reply(conn, 200, NULL, "");
}

static void completed(void *cls, struct MHD_Connection *c, void **ctx,
                      enum MHD_RequestTerminationCode toe)
{
    body_t *b = *ctx;
    if (b)
        free(b->buf);
    free(b);
    *ctx = NULL;
}

/* ---- the backend stream (WS_PORT): the lws service thread only ---------- */

/* Ids to acknowledge are written in frames of at most this many bytes. */
#define ACK_FRAME_MAX (60 * 1024)

typedef struct {
    char *rx; /* the frame being read */
    size_t rx_len, rx_cap;
    char *ack; /* "\"evt_…\",…" waiting to be written */
    size_t ack_len, ack_cap;
} bsess_t;

static void grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    *cap = need * 2;
    if (!(*buf = realloc(*buf, *cap)))
        abort(); /* out of memory: the bench cannot go on */
}

/* Records one frame as a webhook body and queues the ack of each event id
 * in it (every envelope's id starts with "evt_"; payloads are escaped
 * strings, so an unescaped quote inside them cannot match). */
static void bstream_frame(bsess_t *s, const char *f, size_t n)
{
    static const char key[] = "\"id\":\"evt_";
    record(f, n);
    pthread_mutex_lock(&mu);
    stream_frames++;
    pthread_mutex_unlock(&mu);
    const char *end = f + n;
    for (const char *p = f; (p = memmem(p, (size_t)(end - p), key, sizeof key - 1));) {
        p += sizeof key - 1 - 5; /* at the opening quote of the id */
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        if (!q)
            break;
        size_t idl = (size_t)(q - p) + 1;
        grow(&s->ack, &s->ack_cap, s->ack_len + idl + 1);
        memcpy(s->ack + s->ack_len, p, idl);
        s->ack_len += idl;
        s->ack[s->ack_len++] = ',';
        p = q + 1;
    }
}

/* Writes one {"ack":[…]} frame of the ids waiting (at most ACK_FRAME_MAX
 * bytes of them, cut after an id); asks again while some are left. */
static int bstream_write(bsess_t *s, struct lws *wsi)
{
    if (!s->ack_len)
        return 0;
    size_t take = s->ack_len;
    if (take > ACK_FRAME_MAX) {
        take = ACK_FRAME_MAX;
        while (take && s->ack[take - 1] != ',')
            take--;
    }
    unsigned char buf[LWS_PRE + ACK_FRAME_MAX + 16];
    unsigned char *o = buf + LWS_PRE;
    size_t n = (size_t)snprintf((char *)o, 16, "{\"ack\":[");
    memcpy(o + n, s->ack, take - 1); /* without the last comma */
    n += take - 1;
    o[n++] = ']';
    o[n++] = '}';
    memmove(s->ack, s->ack + take, s->ack_len - take);
    s->ack_len -= take;
    if (lws_write(wsi, o, n, LWS_WRITE_TEXT) < (int)n)
        return -1;
    if (s->ack_len)
        lws_callback_on_writable(wsi);
    return 0;
}

static int bstream_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    bsess_t *s = user;
    switch (reason) {
    case LWS_CALLBACK_RECEIVE:
        grow(&s->rx, &s->rx_cap, s->rx_len + len + 1);
        memcpy(s->rx + s->rx_len, in, len);
        s->rx_len += len;
        s->rx[s->rx_len] = 0; /* record()'s sscanf stops here */
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
            return 0;
        bstream_frame(s, s->rx, s->rx_len);
        s->rx_len = 0;
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return bstream_write(s, wsi);
    case LWS_CALLBACK_CLOSED:
        free(s->rx);
        free(s->ack);
        memset(s, 0, sizeof *s);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols bstream_protocols[] = {
    {"wsgate-backend-stream", bstream_cb, sizeof(bsess_t), 64 * 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *bstream_run(void *ctx)
{
    while (lws_service(ctx, 0) >= 0)
        ;
    return NULL;
}

/* Listens on 127.0.0.1:port and serves streams on a thread of its own. */
static int bstream_start(int port)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    lws_set_log_level(LLL_ERR, NULL);
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = bstream_protocols;
    info.gid = -1;
    info.uid = -1;
    struct lws_context *ctx = lws_create_context(&info);
    pthread_t th;
    if (!ctx || pthread_create(&th, NULL, bstream_run, ctx) != 0)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench-backend PORT [THREADS [WS_PORT]]\n");
        return 2;
    }
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO,
                         (uint16_t)atoi(argv[1]), NULL, NULL, handler, NULL,
                         MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, 20000u,
                         MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_NOTIFY_COMPLETED, completed,
                         NULL, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "bench-backend: cannot listen on %s\n", argv[1]);
        return 1;
    }
    if (argc > 3 && bstream_start(atoi(argv[3])) != 0) {
        fprintf(stderr, "bench-backend: cannot serve streams on %s\n", argv[3]);
        return 1;
    }
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGINT);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    int sig;
    sigwait(&s, &sig);
    MHD_stop_daemon(d);
    return 0;
}
