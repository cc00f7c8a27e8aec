/* SPDX-License-Identifier: MIT */
/*
 * close.h — WebSocket close codes by name (RFC 6455 §7.4.1 and the IANA
 * registry) and the one rule for a close that comes from outside: a code
 * a client may send, and a code and reason an application may ask for
 * (control API DELETE /v1/connections/{id}, the dispatcher's "close"
 * action). Pure functions, any thread.
 */
#ifndef WSG_CLOSE_H
#define WSG_CLOSE_H

#include <stdbool.h>
#include <stddef.h>

enum {
    WSG_CLOSE_NORMAL = 1000,
    WSG_CLOSE_GOING_AWAY = 1001,   /* shutdown, idle timeout, max lifetime */
    WSG_CLOSE_PROTOCOL = 1002,     /* protocol error (e.g. an unmasked frame) */
    WSG_CLOSE_UNSUPPORTED = 1003,  /* a data type the endpoint cannot take */
    WSG_CLOSE_NO_STATUS = 1005,    /* never sent: a close frame without a code */
    WSG_CLOSE_ABNORMAL = 1006,     /* never sent: no close frame (edge_lost too) */
    WSG_CLOSE_INVALID_DATA = 1007, /* text that is not UTF-8 */
    WSG_CLOSE_POLICY = 1008,       /* rate limit, slow consumer, token expired */
    WSG_CLOSE_TOO_BIG = 1009,      /* over max_message_bytes */
    WSG_CLOSE_EXTENSION = 1010,    /* client: an extension the server did not agree to */
    WSG_CLOSE_INTERNAL = 1011,     /* the gateway failed */
    WSG_CLOSE_RESTART = 1012,
    WSG_CLOSE_TRY_AGAIN = 1013, /* the message could not be made durable */
    WSG_CLOSE_BAD_GATEWAY = 1014,
    WSG_CLOSE_TLS = 1015,      /* never sent: TLS handshake failed */
    WSG_CLOSE_APP_MIN = 4000,  /* 4000-4999 belong to the application */
    WSG_CLOSE_REPLACED = 4409, /* one_connection_per_user: replace */
    WSG_CLOSE_APP_MAX = 4999,
};

/* A close reason's longest length in bytes: a control frame holds 125 bytes,
 * 2 of them the code (RFC 6455 §5.5). */
#define WSG_CLOSE_REASON_MAX 123

/* true if a client may send code in a close frame: 1000-1003, 1007-1014 and
 * 3000-4999 (not the never-sent 1004-1006 and 1015, not unassigned ranges). */
bool wsg_close_peer_code_ok(int code);

/* 0 if an application may close a connection with code and reason[0..len)
 * (reason may be NULL: none): code 1000 or 4000-4999, the reason UTF-8
 * without NUL of at most WSG_CLOSE_REASON_MAX bytes; else WSG_EINVAL with
 * why in err (which may be NULL). */
int wsg_close_app_check(long long code, const char *reason, size_t len, char *err, size_t errlen);

#endif
