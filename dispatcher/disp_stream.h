/* SPDX-License-Identifier: MIT */
/*
 * disp_stream.h — backend streams (docs/webhooks.md "Backend streams"): one
 * WebSocket per route whose backend is a ws:// or wss:// URL, opened by the
 * dispatcher with a signed JWT. disp_stream.c owns the socket side: one lws
 * client context on its own thread ("disp-stream"), never an edge loop,
 * which connects and reconnects with backoff, writes event frames, reads
 * acknowledgements (handed back as notes) and actions (applied on the bus
 * at once, like response actions). What is in flight, order, retries and
 * dead letters stay the delivery thread's (disp_deliver.c), the same state
 * machine as webhooks.
 *
 * Threads: disp_sio_new/add/start/stop/free from the dispatcher's owner;
 * disp_stream_send, disp_sio_flush and disp_sio_take from the delivery thread; everything
 * else runs on the stream thread. The two meet under one mutex: the frames
 * to write (the stream thread woken once a delivery turn, disp_sio_flush:
 * lws_cancel_service) and the notes to read (curl_multi_wakeup).
 */
#ifndef WSG_DISP_STREAM_H
#define WSG_DISP_STREAM_H

#include <curl/curl.h>
#include <stddef.h>

#include "bus/bus.h"
#include "common/config.h"

typedef struct disp_sio disp_sio_t;
typedef struct disp_stream disp_stream_t;

/* Largest frame read from a backend; a larger one is refused (400). */
#define DISP_STREAM_MAX_FRAME (1024 * 1024)
/* Error frames waiting to be written at most; more are dropped (logged). */
#define DISP_STREAM_MAX_ERRORS 64
/* Notes waiting for the delivery thread at most; an ack beyond it is
 * dropped (its event times out and is sent again: at-least-once). */
#define DISP_STREAM_MAX_NOTES 65536
/* disp_sio_free waits at most this long for the bus's replies to actions
 * (a command's own timeout is 5 s). */
#define DISP_STREAM_REPLY_WAIT_S 10
/* Frames written per writable callback at most. */
#define DISP_STREAM_WRITE_BURST 64
/* Lifetime of the handshake's JWT. */
#define DISP_STREAM_JWT_TTL_S 60

typedef enum {
    DISP_SN_ACK = 1, /* the backend acknowledged event id */
    DISP_SN_DOWN,    /* the stream closed: what was in flight on it is lost */
} disp_snote_kind_t;

/* A note for the delivery thread; free with free(). */
typedef struct disp_snote {
    struct disp_snote *next;
    disp_stream_t *s;
    disp_snote_kind_t kind;
    char id[]; /* DISP_SN_ACK */
} disp_snote_t;

/* bus and wake (the delivery thread's curl multi handle) are borrowed. */
int disp_sio_new(disp_sio_t **out, bus_t *bus, CURLM *wake);
/* With api_jwt enabled (the control API's api.auth.jwt; borrowed), the
 * actions of a wsgate stream need a token of the API's over it
 * (disp_sauth.c). Before disp_sio_start. */
void disp_sio_auth(disp_sio_t *io, const wsg_jwt_conf_t *api_jwt);
/* store_url (borrowed): where the stream thread looks up a ws-api-gateway
 * user its table does not hold (disp_users_lookup), with a store handle of
 * its own, opened on first use. */
void disp_sio_store(disp_sio_t *io, const char *store_url);
/* Adds the stream of route r (its backend a ws:// or wss:// URL), before
 * disp_sio_start. Returns 0, WSG_EINVAL (URL; detail in err), WSG_ENOMEM. */
int disp_sio_add(disp_sio_t *io, const wsg_route_conf_t *r, disp_stream_t **out, char *err,
                 size_t errlen);
int disp_sio_start(disp_sio_t *io, char *err, size_t errlen);
/* Stops the stream thread; the sockets close in disp_sio_free. */
void disp_sio_stop(disp_sio_t *io);
void disp_sio_free(disp_sio_t *io);

/* Queues event id's frame body[0..len) (copied) on stream s. A frame of the
 * same id still waiting to be written is not queued twice. The stream
 * thread is woken by disp_sio_flush, once for every frame queued since.
 * Returns 0, WSG_EUNAVAILABLE (the stream is not up), WSG_ENOMEM. */
int disp_stream_send(disp_stream_t *s, const char *id, const char *body, size_t len);
/* ws-api-gateway: the users of stream s (delivery thread: bind and unbind
 * with disp_wsapi_track); NULL for a wsgate stream. */
typedef struct disp_users disp_users_t;
disp_users_t *disp_stream_users(const disp_stream_t *s);
/* Wakes the stream thread if frames were queued since the last call: the
 * delivery thread calls it once a turn, before it sleeps. */
void disp_sio_flush(disp_sio_t *io);
/* The notes waiting, oldest first (a list the caller frees), or NULL. */
disp_snote_t *disp_sio_take(disp_sio_t *io);

#endif
