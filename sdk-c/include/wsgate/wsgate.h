/* SPDX-License-Identifier: MIT */
/*
 * wsgate.h — libwsgate, the C SDK for backends of the wsgate WebSocket
 * gateway: verify and parse the webhooks the gateway sends (webhook.h),
 * answer them with actions, call the control API (client.h) and mint tokens
 * (token.h). Include this one header; it includes the others.
 *
 * Conventions (as in libcurl and nats.c):
 * - Functions return a wsgate_status: WSGATE_OK (0) or a negative code;
 *   wsgate_strerror() names it. Details of the last failure on the calling
 *   thread (an RFC 9457 problem document from the gateway, or a sentence)
 *   are in wsgate_last_problem().
 * - Opaque handles come in _new/_free pairs; _free(NULL) does nothing.
 *   Every string and buffer passed in is copied (or only read during the
 *   call): the caller keeps ownership. Memory returned to the caller as a
 *   plain string or buffer is freed with wsgate_free().
 * - The library never prints, never exits and never aborts on bad input or
 *   out-of-memory (WSGATE_ENOMEM).
 * - Threads: every function may be called from any thread. A handle is used
 *   by one thread at a time unless its header says it is safe to share
 *   (wsgate_client is).
 */
#ifndef WSGATE_WSGATE_H
#define WSGATE_WSGATE_H

#include <stddef.h>
#include <stdint.h>

#include "wsgate/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WSGATE_API __attribute__((visibility("default")))
#else
#define WSGATE_API
#endif

/* Status codes. The numbers are part of the ABI and never change. */
#define WSGATE_STATUS_MAP(X)                                                                       \
    X(OK, 0, "success")                                                                            \
    X(EINVAL, -1, "invalid argument")                                                              \
    X(ENOMEM, -2, "out of memory")                                                                 \
    X(EGONE, -3, "connection gone (410)")                                                          \
    X(EAUTH, -4, "not authenticated (401)")                                                        \
    X(EFORBIDDEN, -5, "forbidden (403)")                                                           \
    X(ENOTFOUND, -6, "not found (404)")                                                            \
    X(EBADREQUEST, -7, "request refused by the gateway (4xx)")                                     \
    X(EUNAVAILABLE, -8, "gateway unavailable (503), try again")                                    \
    X(ESERVER, -9, "gateway error (5xx)")                                                          \
    X(ETIMEOUT, -10, "timed out")                                                                  \
    X(ETRANSPORT, -11, "cannot reach the gateway")                                                 \
    X(EPROTO, -12, "unexpected answer or malformed input")                                         \
    X(ESIGNATURE, -13, "webhook signature does not match")                                         \
    X(ETIMESTAMP, -14, "webhook timestamp missing, malformed or outside the tolerance")            \
    X(EKEY, -15, "key or secret not usable")                                                       \
    X(EDONE, -16, "no more items")

typedef enum wsgate_status {
#define WSGATE_STATUS_ENUM(name, num, msg) WSGATE_##name = (num),
    WSGATE_STATUS_MAP(WSGATE_STATUS_ENUM)
#undef WSGATE_STATUS_ENUM
} wsgate_status;

/* A human-readable, static message for status ("unknown status" for a
 * number not in the map). Never NULL. Any thread. */
WSGATE_API const char *wsgate_strerror(wsgate_status status);

/* Details of the last failed call on the calling thread. Fields are NULL
 * (or 0) when unknown. The pointer and its strings stay valid until the
 * next libwsgate call on the same thread; copy what you keep. */
typedef struct wsgate_problem {
    wsgate_status status; /* the status that call returned */
    int http_status;      /* HTTP status from the gateway, 0 when none came */
    const char *type;     /* RFC 9457 "type" (e.g. ".../connection-gone") */
    const char *title;    /* RFC 9457 "title" */
    const char *detail;   /* RFC 9457 "detail", or the library's explanation */
    const char *body;     /* the raw answer body (NUL-terminated), when any */
} wsgate_problem;

/* The calling thread's last problem; never NULL (status WSGATE_OK while no
 * call on this thread has failed; a call that succeeds leaves it as it
 * was). Any thread; thread-local, like errno. */
WSGATE_API const wsgate_problem *wsgate_last_problem(void);

/* Frees a string or buffer the library returned (wsgate_token_mint,
 * wsgate_response_body, ...). NULL is allowed. Any thread. */
WSGATE_API void wsgate_free(void *p);

/* The library's version as "MAJOR.MINOR.PATCH" (compare with the
 * WSGATE_VERSION_* macros you compiled against). Any thread. */
WSGATE_API const char *wsgate_version(void);

/* JSON Web Token algorithms (values match the gateway's configuration names). */
typedef enum wsgate_alg {
    WSGATE_HS256 = 1,
    WSGATE_HS384,
    WSGATE_HS512,
    WSGATE_RS256,
    WSGATE_RS384,
    WSGATE_RS512,
    WSGATE_ES256,
    WSGATE_ES384,
    WSGATE_ES512
} wsgate_alg;

/* Frame kinds for send, publish and broadcast. */
typedef enum wsgate_kind { WSGATE_TEXT = 0, WSGATE_BINARY = 1 } wsgate_kind;

#ifdef __cplusplus
}
#endif

#include "wsgate/webhook.h"
#include "wsgate/token.h"
#include "wsgate/client.h"

#endif
