/* SPDX-License-Identifier: MIT */
/*
 * disp_stream.c — the socket side of backend streams (disp_stream.h,
 * docs/webhooks.md "Backend streams"): one libwebsockets client context
 * with the default poll loop, served by its own thread ("disp-stream"), one
 * client WebSocket per stream route. It connects with Authorization: Bearer
 * <JWT> (HS256 with the route's webhook key, wsg_jwt_mint), reconnects with
 * the route's backoff, writes the frames the delivery thread queued, and
 * reads the backend's frames: acknowledgements become notes for the
 * delivery thread, actions go to the bus at once through the response
 * actions' code (disp_action_send), anything else is answered with an error
 * frame and changes nothing.
 *
 * Threads: see disp_stream.h. Fields marked "stream thread" are touched by
 * the stream thread only (and by disp_sio_free once it has ended); those
 * marked "mu" under io->mu.
 */
#include "dispatcher/disp_stream.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/thread.h"
#include "dispatcher/disp_core.h"
#include "dispatcher/disp_internal.h"

typedef struct sframe {
    struct sframe *next;
    bool error;  /* an error frame (counted in n_err), not an event */
    char id[72]; /* the event's id, to queue it once */
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes, then len bytes of JSON */
} sframe_t;

struct disp_stream {
    disp_sio_t *io;
    const wsg_route_conf_t *conf;
    char *uri;  /* lws_parse_uri's copy of the backend URL: host points into it */
    char *path; /* "/" + the URL's path */
    const char *host;
    char *host_hdr; /* Host: host, with ":port" unless the scheme's default */
    /* ws-api-gateway: its users (disp_proto_wsapi.c); NULL: wsgate. Such a
     * stream has no acks: an event is done once its frame is written. */
    disp_users_t *users;
    int port;
    bool tls;
    /* stream thread */
    struct lws *wsi;
    bool live; /* a connection attempt or connection exists: its end is handled once */
    uint32_t failures;
    lws_sorted_usec_list_t sul;
    char *rx;
    size_t rx_len;
    bool rx_bad;       /* the frame being read is binary or too large */
    disp_sauth_t auth; /* the token this connection presented (disp_sio_auth) */
    /* mu */
    bool up;
    sframe_t *out_head, *out_tail;
    size_t n_err;
};

struct disp_sio {
    bus_t *bus;
    CURLM *wake;
    const wsg_jwt_conf_t *api_jwt; /* enabled: wsgate streams' actions need a token */
    const char *store_url;         /* disp_sio_store */
    store_t *st;                   /* stream thread: user lookups; opened on first use */
    struct lws_context *ctx;
    pthread_t th;
    bool started;
    bool wake_due; /* delivery thread: frames queued for a stream thread not woken */
    uint64_t rng;  /* stream thread: backoff jitter */
    pthread_mutex_t mu;
    bool stop;                     /* mu */
    disp_snote_t *n_head, *n_tail; /* mu */
    size_t n_notes;                /* mu */
    size_t replies;                /* mu: action replies the bus still owes */
    pthread_cond_t cv;             /* signalled when replies drops to 0 */
    disp_stream_t **streams;
    size_t n;
};

static void sframes_free(sframe_t *f)
{
    while (f) {
        sframe_t *n = f->next;
        free(f);
        f = n;
    }
}

static disp_snote_t *note_new(disp_stream_t *s, disp_snote_kind_t k, const char *id)
{
    size_t n = id ? strlen(id) + 1 : 1;
    disp_snote_t *note = calloc(1, sizeof *note + n);
    if (note) {
        note->s = s;
        note->kind = k;
        memcpy(note->id, id ? id : "", n);
    }
    return note;
}

/* Hands the notes head..tail (n of them) to the delivery thread under one
 * lock, with at most one wake-up; acks beyond DISP_STREAM_MAX_NOTES are
 * dropped (their events time out and go again: at-least-once). */
static void notes_post(disp_sio_t *io, disp_snote_t *head, disp_snote_t *tail, size_t n)
{
    if (!head)
        return;
    pthread_mutex_lock(&io->mu);
    bool wake = io->n_head == NULL,
         kept = head->kind == DISP_SN_DOWN || io->n_notes + n <= DISP_STREAM_MAX_NOTES;
    if (kept) {
        if (io->n_tail)
            io->n_tail->next = head;
        else
            io->n_head = head;
        io->n_tail = tail;
        io->n_notes += n;
    }
    pthread_mutex_unlock(&io->mu);
    if (!kept)
        while (head) {
            disp_snote_t *next = head->next;
            free(head);
            head = next;
        }
    if (wake && kept)
        curl_multi_wakeup(io->wake);
}

static void note_post(disp_sio_t *io, disp_stream_t *s, disp_snote_kind_t k, const char *id)
{
    disp_snote_t *note = note_new(s, k, id);
    notes_post(io, note, note, 1); /* none: an ack lost, the event goes again */
}

/* The acks of one frame, handed over together. */
static void acks_post(disp_stream_t *s, char *const *ids, size_t n)
{
    disp_snote_t *head = NULL, *tail = NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        disp_snote_t *note = note_new(s, DISP_SN_ACK, ids[i]);
        if (!note)
            continue; /* an ack lost: the event times out and goes again */
        if (tail)
            tail->next = note;
        else
            head = note;
        tail = note;
        k++;
    }
    notes_post(s->io, head, tail, k);
}

disp_users_t *disp_stream_users(const disp_stream_t *s)
{
    return s->users;
}

disp_snote_t *disp_sio_take(disp_sio_t *io)
{
    if (!io)
        return NULL;
    pthread_mutex_lock(&io->mu);
    disp_snote_t *l = io->n_head;
    io->n_head = io->n_tail = NULL;
    io->n_notes = 0;
    pthread_mutex_unlock(&io->mu);
    return l;
}

/* Appends f to s's frames to write (mu held). */
static void out_append(disp_stream_t *s, sframe_t *f)
{
    if (s->out_tail)
        s->out_tail->next = f;
    else
        s->out_head = f;
    s->out_tail = f;
}

static sframe_t *sframe_new(const char *json, size_t len)
{
    sframe_t *f = calloc(1, sizeof *f + LWS_PRE + len);
    if (f) {
        f->len = len;
        memcpy(f->buf + LWS_PRE, json, len);
    }
    return f;
}

int disp_stream_send(disp_stream_t *s, const char *id, const char *body, size_t len)
{
    sframe_t *f = sframe_new(body, len);
    if (!f)
        return WSG_ENOMEM;
    snprintf(f->id, sizeof f->id, "%s", id);
    pthread_mutex_lock(&s->io->mu);
    int rc = s->up ? 0 : WSG_EUNAVAILABLE;
    bool wake = s->out_head == NULL; /* else the stream thread is still writing */
    for (sframe_t *o = s->out_head; rc == 0 && o; o = o->next)
        if (!o->error && strcmp(o->id, f->id) == 0)
            rc = 1; /* still waiting to be written: once is enough */
    if (rc == 0)
        out_append(s, f);
    pthread_mutex_unlock(&s->io->mu);
    if (rc != 0)
        free(f);
    if (rc == 0 && wake) /* one wake-up for all a turn queues (disp_sio_flush) */
        s->io->wake_due = true;
    return rc < 0 ? rc : 0;
}

void disp_sio_flush(disp_sio_t *io)
{
    if (io && io->wake_due) {
        io->wake_due = false;
        lws_cancel_service(io->ctx);
    }
}

/* Queues {"error":{"status":status,"detail":detail[,"action",key:id]}} on s
 * while it is up (any thread: the stream thread writes it once woken); key:
 * "connection_id" or "user". */
static void queue_error(disp_stream_t *s, int status, const char *detail, const char *action,
                        const char *key, const char *id)
{
    json_t *j = json_pack("{s:{s:i,s:s}}", "error", "status", status, "detail", detail);
    json_t *e = json_object_get(j, "error");
    if (e && action)
        json_object_set_new(e, "action", json_string(action));
    if (e && id)
        json_object_set_new(e, key, json_string(id));
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    sframe_t *f = txt ? sframe_new(txt, strlen(txt)) : NULL;
    json_decref(j);
    free(txt);
    if (!f)
        return;
    f->error = true;
    pthread_mutex_lock(&s->io->mu);
    bool kept = s->up && s->n_err < DISP_STREAM_MAX_ERRORS, wake = s->out_head == NULL;
    if (kept) {
        out_append(s, f);
        s->n_err++;
    }
    pthread_mutex_unlock(&s->io->mu);
    if (!kept) {
        free(f);
        WSG_LOG(WSG_LOG_WARN, "backend stream error reply dropped (backend gone or not reading)",
                "route=%s status=%d", s->conf->path, status);
        return;
    }
    if (wake) /* the stream thread asks to write (wake_writers) */
        lws_cancel_service(s->io->ctx);
}

static void send_error(disp_stream_t *s, const char *detail)
{
    queue_error(s, 400, detail, NULL, NULL, NULL);
}

/* An action whose reply the bus owes; what its error frame names: the
 * connection, or on a ws-api-gateway stream (s->users) the user it was
 * addressed to. */
typedef struct {
    disp_stream_t *s;
    char action[16];
    char id[];
} areply_t;

#define NO_USER_CONN "no connection of this user on the route"

static const char *const action_names[] = {
    [BUS_CMD_SEND] = "send",           [BUS_CMD_CLOSE] = "close",
    [BUS_CMD_SUBSCRIBE] = "subscribe", [BUS_CMD_UNSUBSCRIBE] = "unsubscribe",
    [BUS_CMD_HOLDS] = "holds",
};

static int reply_http_status(int status)
{
    switch (status) {
    case WSG_EGONE:
        return 410;
    case WSG_ETIMEOUT:
        return 504;
    case WSG_EFULL:
    case WSG_EUNAVAILABLE:
        return 503;
    default:
        return 500;
    }
}

static const char *reply_detail(int status)
{
    switch (status) {
    case WSG_EGONE:
        return "no edge holds the connection";
    case WSG_ETIMEOUT:
        return "the edge holding the connection did not answer";
    case WSG_EFULL:
        return "the edge is overloaded, try again";
    default:
        return "the bus cannot reach the edges";
    }
}

/* The edge's answer to an action (a bus thread, or inline for a refusal). */
static void on_action_reply(void *ud, int status)
{
    areply_t *r = ud;
    disp_sio_t *io = r->s->io;
    bool by_user = r->s->users != NULL;
    /* a user's connection that ended after its lookup (the registry drops
     * its row a moment after the close event): the user has none now */
    if (status == WSG_EGONE && by_user)
        queue_error(r->s, 404, NO_USER_CONN, r->action, "user", r->id);
    else if (status != 0)
        queue_error(r->s, reply_http_status(status), reply_detail(status), r->action,
                    by_user ? "user" : "connection_id", r->id);
    free(r);
    pthread_mutex_lock(&io->mu);
    if (--io->replies == 0)
        pthread_cond_broadcast(&io->cv);
    pthread_mutex_unlock(&io->mu);
}

/* Applies an action through the response actions' code; a reply that is
 * not 0 comes back to the backend as an error frame naming id (the
 * ws-api-gateway user the action was addressed to, else the connection). */
static void apply_action(disp_stream_t *s, const disp_frame_t *fr, const char *id)
{
    size_t n = strlen(id) + 1;
    areply_t *r = calloc(1, sizeof *r + n);
    if (!r) {
        send_error(s, "out of memory");
        return;
    }
    r->s = s;
    snprintf(r->action, sizeof r->action, "%s", action_names[fr->act.op]);
    memcpy(r->id, id, n);
    pthread_mutex_lock(&s->io->mu);
    s->io->replies++;
    pthread_mutex_unlock(&s->io->mu);
    /* no edge named: the one that holds the connection applies it */
    int rc = disp_action_send(s->io->bus, fr->conn_id, NULL, &fr->act, on_action_reply, r);
    if (rc != 0)
        on_action_reply(r, rc);
}

/* ws-api-gateway: user's connection from the registry's store (stream thread). */
static int user_from_store(disp_sio_t *io, const char *route, const char *user, char **id)
{
    char err[256];
    if (!io->store_url)
        return WSG_ENOTFOUND;
    if (!io->st && store_open(&io->st, io->store_url, err, sizeof err) != 0) {
        WSG_LOG(WSG_LOG_WARN, "backend stream: cannot open the store", "error=%s", err);
        store_free(io->st);
        io->st = NULL;
        return WSG_ENOTFOUND;
    }
    return disp_users_lookup(io->st, route, user, id);
}

/* fr's user becomes its connection; the user goes to *user (the caller
 * frees it). Returns 0, or nonzero with the error frame queued. */
static int user_to_conn(disp_stream_t *s, disp_frame_t *fr, char **user)
{
    char *id = NULL;
    int rc = disp_users_find(s->users, fr->conn_id, &id);
    if (rc == WSG_ENOTFOUND)
        rc = user_from_store(s->io, s->conf->path, fr->conn_id, &id);
    if (rc != 0) {
        queue_error(s, rc == WSG_ENOMEM ? 500 : 404,
                    rc == WSG_ENOMEM ? "out of memory" : NO_USER_CONN, action_names[fr->act.op],
                    "user", fr->conn_id);
        return rc;
    }
    *user = fr->conn_id;
    fr->conn_id = id;
    return 0;
}

/* Whether fr may be applied (disp_sauth.c); a refusal is answered with an
 * error frame. ws-api-gateway streams have no tokens: their actions reach
 * their route's users only. */
static bool authorized(disp_stream_t *s, const disp_frame_t *fr)
{
    const wsg_jwt_conf_t *conf = s->io->api_jwt;
    if (!conf || !conf->enabled || s->users || fr->kind == DISP_FRAME_ACK)
        return true;
    char err[256] = "";
    int64_t now = wsg_wall_s();
    int st = fr->kind == DISP_FRAME_AUTH
                 ? disp_sauth_set(&s->auth, conf, fr->token, now, err, sizeof err)
                 : disp_sauth_check(&s->auth, conf, fr, now, err, sizeof err);
    if (st == 0)
        return fr->kind != DISP_FRAME_AUTH; /* an auth frame is done here */
    bool pub = fr->kind == DISP_FRAME_PUBLISH;
    queue_error(s,
                st == WSG_ENOMEM  ? 500
                : st == WSG_EAUTH ? 401
                                  : st,
                st == WSG_ENOMEM ? "out of memory" : err,
                fr->kind == DISP_FRAME_AUTH ? "auth"
                : pub                       ? "publish"
                                            : action_names[fr->act.op],
                pub ? "channel" : "connection_id", pub ? fr->act.channel : fr->conn_id);
    return false;
}

/* Applies one complete text frame from the backend (stream thread). */
static void on_frame(disp_stream_t *s, const char *p, size_t n)
{
    disp_frame_t fr;
    char err[192] = "", *user = NULL;
    int rc = s->users ? disp_frame_parse_user(p, n, &fr, err, sizeof err)
                      : disp_frame_parse(p, n, &fr, err, sizeof err);
    if (rc == 0 && ((s->users && user_to_conn(s, &fr, &user) != 0) || !authorized(s, &fr))) {
        disp_frame_clear(&fr);
        free(user);
        return;
    }
    if (rc != 0) {
        WSG_LOG(WSG_LOG_WARN, "backend stream frame refused", "route=%s error=%s", s->conf->path,
                rc == WSG_ENOMEM ? "out of memory" : err);
        send_error(s, rc == WSG_ENOMEM ? "out of memory" : err);
        return;
    }
    if (fr.kind == DISP_FRAME_AUTH) {
        /* no API auth configured: nothing to hold, every action is allowed */
    } else if (fr.kind == DISP_FRAME_ACK) {
        acks_post(s, fr.ids, fr.n_ids);
    } else if (fr.kind == DISP_FRAME_PUBLISH) {
        bus_publish_t pub = {.channel = fr.act.channel,
                             .exclude = fr.conn_id,
                             .data = fr.act.data,
                             .len = fr.act.len,
                             .binary = fr.act.binary};
        if ((rc = bus_publish(s->io->bus, &pub)) != 0)
            WSG_LOG(WSG_LOG_WARN, "backend stream publish refused by the bus", "route=%s code=%s",
                    s->conf->path, wsg_err_name(rc));
    } else {
        apply_action(s, &fr, user ? user : fr.conn_id);
    }
    disp_frame_clear(&fr);
    free(user);
}

static void on_receive(disp_stream_t *s, struct lws *wsi, const void *in, size_t len)
{
    if (lws_frame_is_binary(wsi))
        s->rx_bad = true;
    if (!s->rx_bad && s->rx_len + len > DISP_STREAM_MAX_FRAME)
        s->rx_bad = true;
    if (!s->rx_bad) {
        char *q = realloc(s->rx, s->rx_len + len + 1);
        if (!q)
            s->rx_bad = true;
        else {
            s->rx = q;
            memcpy(s->rx + s->rx_len, in, len);
            s->rx_len += len;
        }
    }
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
        return;
    if (s->rx_bad)
        send_error(s, "a frame must be a JSON text frame of at most 1 MiB");
    else
        on_frame(s, s->rx, s->rx_len);
    free(s->rx);
    s->rx = NULL;
    s->rx_len = 0;
    s->rx_bad = false;
}

/* The next frame to write, or NULL; *more: others wait behind it. */
static sframe_t *out_pop(disp_stream_t *s, bool *more)
{
    pthread_mutex_lock(&s->io->mu);
    sframe_t *f = s->out_head;
    if (f && !(s->out_head = f->next))
        s->out_tail = NULL;
    if (f && f->error)
        s->n_err--;
    *more = s->out_head != NULL;
    pthread_mutex_unlock(&s->io->mu);
    return f;
}

/* Writes queued frames while the socket takes them (at most a burst per
 * callback, so one stream cannot hold the thread), then asks again. */
static void on_writable(disp_stream_t *s, struct lws *wsi)
{
    bool more = true;
    for (int i = 0; more && i < DISP_STREAM_WRITE_BURST; i++) {
        sframe_t *f = out_pop(s, &more);
        if (!f)
            return;
        /* an empty event frame is one not to send (disp_wsapi_track) */
        int n = f->len ? lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT) : 0;
        if (n >= 0 && s->users && !f->error) /* the seed's backends never ack */
            note_post(s->io, s, DISP_SN_ACK, f->id);
        free(f);
        if (n < 0)
            return; /* lws closes the connection: the close callback follows */
        if (lws_send_pipe_choked(wsi))
            break;
    }
    if (more)
        lws_callback_on_writable(wsi);
}

static void connect_cb(lws_sorted_usec_list_t *sul);

/* The connection (or its attempt) ended: everything in flight on it is
 * lost; tell the delivery thread and try again after a backoff. */
static void stream_down(disp_stream_t *s, const char *why)
{
    if (!s->live)
        return;
    s->live = false;
    pthread_mutex_lock(&s->io->mu);
    bool stopping = s->io->stop;
    pthread_mutex_unlock(&s->io->mu);
    if (stopping) { /* lws_context_destroy: no delivery thread listens, no retry */
        s->wsi = NULL;
        return;
    }
    s->wsi = NULL;
    free(s->rx);
    s->rx = NULL;
    s->rx_len = 0;
    s->rx_bad = false;
    disp_sauth_clear(&s->auth); /* a new connection authenticates again */
    pthread_mutex_lock(&s->io->mu);
    bool was_up = s->up;
    s->up = false;
    sframe_t *drop = s->out_head;
    s->out_head = s->out_tail = NULL;
    s->n_err = 0;
    pthread_mutex_unlock(&s->io->mu);
    sframes_free(drop);
    note_post(s->io, s, DISP_SN_DOWN, NULL);
    s->failures++;
    const wsg_delivery_conf_t *dc = &s->conf->delivery;
    uint64_t x = s->io->rng = s->io->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    uint64_t delay = disp_backoff_ms(s->failures, dc->backoff_initial_ms, dc->backoff_max_ms, x);
    WSG_LOG(was_up ? WSG_LOG_WARN : WSG_LOG_INFO, "backend stream down",
            "route=%s error=%s retry_ms=%llu", s->conf->path, why, (unsigned long long)delay);
    lws_sul_schedule(s->io->ctx, 0, &s->sul, connect_cb, (lws_usec_t)delay * 1000);
}

static int add_auth(disp_stream_t *s, struct lws *wsi, unsigned char **p, unsigned char *end)
{
    char *tok = NULL, err[128] = "";
    wsg_mint_t m = {.alg = WSG_ALG_HS256,
                    .key = (const char *)s->conf->webhook_key,
                    .key_len = s->conf->webhook_key_len,
                    .sub = s->conf->path,
                    .issuer = "wsgate",
                    .audience = s->conf->backend,
                    .exp = wsg_wall_s() + DISP_STREAM_JWT_TTL_S};
    if (wsg_jwt_mint(&m, &tok, err, sizeof err) != 0) {
        WSG_LOG(WSG_LOG_ERROR, "backend stream token not signed", "route=%s error=%s",
                s->conf->path, err);
        return -1; /* never connect unsigned */
    }
    size_t n = strlen(tok) + 8;
    char *v = malloc(n);
    int rc = -1;
    if (v) {
        snprintf(v, n, "Bearer %s", tok);
        rc = lws_add_http_header_by_name(wsi, (const unsigned char *)"authorization:",
                                         (const unsigned char *)v, (int)strlen(v), p, end);
    }
    free(v);
    free(tok);
    return rc ? -1 : 0;
}

static int on_established(disp_stream_t *s, struct lws *wsi)
{
    s->failures = 0;
    s->wsi = wsi;
    pthread_mutex_lock(&s->io->mu);
    s->up = true;
    pthread_mutex_unlock(&s->io->mu);
    WSG_LOG(WSG_LOG_INFO, "backend stream up", "route=%s", s->conf->path);
    lws_callback_on_writable(wsi);
    return 0;
}

static void wake_writers(disp_sio_t *io)
{
    for (size_t i = 0; i < io->n; i++) {
        disp_stream_t *s = io->streams[i];
        pthread_mutex_lock(&io->mu);
        bool pending = s->up && s->out_head;
        pthread_mutex_unlock(&io->mu);
        if (pending && s->wsi)
            lws_callback_on_writable(s->wsi);
    }
}

static int stream_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    disp_stream_t *s = user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        wake_writers(lws_context_user(lws_get_context(wsi)));
        return 0;
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
        return s ? add_auth(s, wsi, (unsigned char **)in, *(unsigned char **)in + len) : -1;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        return s ? on_established(s, wsi) : -1;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (s)
            on_receive(s, wsi, in, len);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (s)
            on_writable(s, wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (s)
            stream_down(s, in && len ? (const char *)in : "connection failed");
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (s)
            stream_down(s, "closed");
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {"wsgate-backend-stream", stream_cb, 0, 64 * 1024, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* Keep-alive: a backend that stops answering pings is dropped (reconnect). */
static const lws_retry_bo_t keepalive = {.secs_since_valid_ping = 20,
                                         .secs_since_valid_hangup = 60};

static void connect_cb(lws_sorted_usec_list_t *sul)
{
    disp_stream_t *s = lws_container_of(sul, disp_stream_t, sul);
    pthread_mutex_lock(&s->io->mu);
    bool stop = s->io->stop;
    pthread_mutex_unlock(&s->io->mu);
    if (stop || s->live)
        return;
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = s->io->ctx;
    ci.address = s->host;
    ci.port = s->port;
    ci.ssl_connection = s->tls ? LCCSCF_USE_SSL : 0;
    ci.path = s->path;
    ci.host = s->host_hdr;
    ci.origin = s->host_hdr;
    ci.ietf_version_or_minus_one = -1;
    ci.userdata = s;
    ci.local_protocol_name = protocols[0].name;
    ci.retry_and_idle_policy = &keepalive;
    s->live = true;
    struct lws *w = lws_client_connect_via_info(&ci);
    if (!w)
        stream_down(s, "cannot start a connection"); /* no-op if lws reported it already */
    else if (s->live)
        s->wsi = w;
}

static void *sio_run(void *arg)
{
    disp_sio_t *io = arg;
    wsg_thread_name("disp-stream");
    for (;;) {
        pthread_mutex_lock(&io->mu);
        bool stop = io->stop;
        pthread_mutex_unlock(&io->mu);
        if (stop || lws_service(io->ctx, 0) < 0)
            break;
    }
    return NULL;
}

int disp_sio_new(disp_sio_t **out, bus_t *bus, CURLM *wake)
{
    disp_sio_t *io = calloc(1, sizeof *io);
    if (!io)
        return WSG_ENOMEM;
    io->bus = bus;
    io->wake = wake;
    io->rng = (uint64_t)wsg_mono_ns() | 1;
    /* lws's own lines are plain text on stderr, formatted in one static
     * buffer: silent here (the stream logs its ups and downs itself). An edge
     * in the same process sets the level again after this (edge_new). */
    lws_set_log_level(0, NULL);
    pthread_mutex_init(&io->mu, NULL);
    pthread_cond_init(&io->cv, NULL);
    *out = io;
    return 0;
}

void disp_sio_auth(disp_sio_t *io, const wsg_jwt_conf_t *api_jwt)
{
    io->api_jwt = api_jwt;
}

void disp_sio_store(disp_sio_t *io, const char *store_url)
{
    io->store_url = store_url;
}

int disp_sio_add(disp_sio_t *io, const wsg_route_conf_t *r, disp_stream_t **out, char *err,
                 size_t errlen)
{
    const char *prot = NULL, *host = NULL, *path = NULL;
    disp_stream_t **v = realloc(io->streams, (io->n + 1) * sizeof *v);
    if (!v)
        return WSG_ENOMEM;
    io->streams = v;
    disp_stream_t *s = calloc(1, sizeof *s);
    if (!s || !(s->uri = strdup(r->backend))) {
        free(s);
        return WSG_ENOMEM;
    }
    s->io = io;
    s->conf = r;
    io->streams[io->n++] = s;
    if (r->protocol == WSG_PROTO_WSAPI && disp_users_new(&s->users) != 0)
        return WSG_ENOMEM;
    if (lws_parse_uri(s->uri, &prot, &host, &s->port, &path) != 0 || !host || !*host)
        return wsg_errf(err, errlen, WSG_EINVAL, "route %s: backend stream URL not understood",
                        r->path);
    s->tls = strcmp(prot, "wss") == 0 || strcmp(prot, "WSS") == 0;
    s->host = host;
    size_t n = strlen(path) + 2;
    if (!(s->path = malloc(n)))
        return WSG_ENOMEM;
    snprintf(s->path, n, "/%s", path);
    n = strlen(host) + 8;
    if (!(s->host_hdr = malloc(n)))
        return WSG_ENOMEM;
    if (s->port == (s->tls ? 443 : 80))
        snprintf(s->host_hdr, n, "%s", host);
    else
        snprintf(s->host_hdr, n, "%s:%d", host, s->port);
    *out = s;
    return 0;
}

int disp_sio_start(disp_sio_t *io, char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.gid = -1;
    info.uid = -1;
    info.user = io;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    if (!(io->ctx = lws_create_context(&info)))
        return wsg_errf(err, errlen, WSG_ENOMEM, "dispatcher: cannot create the stream context");
    /* before the thread exists: the schedule is the service thread's */
    for (size_t i = 0; i < io->n; i++)
        lws_sul_schedule(io->ctx, 0, &io->streams[i]->sul, connect_cb, 1);
    if (pthread_create(&io->th, NULL, sio_run, io) != 0)
        return wsg_errf(err, errlen, WSG_ENOMEM, "dispatcher: cannot start the stream thread");
    io->started = true;
    return 0;
}

void disp_sio_stop(disp_sio_t *io)
{
    if (!io)
        return;
    pthread_mutex_lock(&io->mu);
    io->stop = true;
    pthread_mutex_unlock(&io->mu);
    if (!io->started)
        return;
    lws_cancel_service(io->ctx);
    pthread_join(io->th, NULL);
    io->started = false;
}

/* Waits (bounded) for the bus to answer every action sent; false if it
 * still owes some after that. */
static bool replies_drained(disp_sio_t *io)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += DISP_STREAM_REPLY_WAIT_S;
    pthread_mutex_lock(&io->mu);
    while (io->replies && pthread_cond_timedwait(&io->cv, &io->mu, &until) == 0)
        ;
    bool drained = io->replies == 0;
    pthread_mutex_unlock(&io->mu);
    return drained;
}

void disp_sio_free(disp_sio_t *io)
{
    if (!io)
        return;
    disp_sio_stop(io);
    if (!replies_drained(io)) { /* a late reply would find freed memory: keep it */
        WSG_LOG(WSG_LOG_ERROR, "backend stream state kept: the bus still owes action replies",
                "streams=%zu", io->n);
        return;
    }
    if (io->ctx)
        lws_context_destroy(io->ctx); /* closes the sockets; their callbacks run here */
    for (size_t i = 0; i < io->n; i++) {
        disp_stream_t *s = io->streams[i];
        sframes_free(s->out_head);
        free(s->rx);
        free(s->uri);
        free(s->path);
        free(s->host_hdr);
        disp_users_free(s->users);
        disp_sauth_clear(&s->auth);
        free(s);
    }
    free(io->streams);
    store_free(io->st);
    for (disp_snote_t *n = io->n_head; n;) {
        disp_snote_t *next = n->next;
        free(n);
        n = next;
    }
    pthread_mutex_destroy(&io->mu);
    pthread_cond_destroy(&io->cv);
    free(io);
}
