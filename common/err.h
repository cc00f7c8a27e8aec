/* SPDX-License-Identifier: MIT */
/*
 * err.h — wsgate's error codes.
 *
 * Every fallible function returns int: 0 on success or one of the negative
 * WSG_E* codes below. Codes come from one X-macro so that the enum, the
 * name table and the message table can never drift apart. Detail for humans
 * (file:line of a config error, the SQL state of a store error) goes into an
 * optional caller-supplied error buffer, never into the code.
 *
 * Thread-safety: all functions here are pure and callable from any thread.
 */
#ifndef WSG_ERR_H
#define WSG_ERR_H

#include <stddef.h>

#define WSG_ERRNO_MAP(X)                                                                           \
    X(INVAL, "invalid argument")                                                                   \
    X(NOMEM, "out of memory")                                                                      \
    X(IO, "input/output error")                                                                    \
    X(CONFIG, "invalid configuration")                                                             \
    X(NOTFOUND, "not found")                                                                       \
    X(EXISTS, "already exists")                                                                    \
    X(GONE, "connection gone")                                                                     \
    X(AUTH, "authentication failed")                                                               \
    X(FORBIDDEN, "forbidden")                                                                      \
    X(TOOBIG, "too large")                                                                         \
    X(FULL, "queue full")                                                                          \
    X(TIMEOUT, "timed out")                                                                        \
    X(UNAVAILABLE, "service unavailable")                                                          \
    X(STORE, "store error")                                                                        \
    X(BUS, "bus error")                                                                            \
    X(PROTO, "protocol error")                                                                     \
    X(CLOSED, "closed")                                                                            \
    X(NOTSUP, "not supported")                                                                     \
    X(NOSPC, "no space left for durable data")

enum wsg_err {
    WSG_OK = 0,
    WSG__ERR_BASE = -1000,
#define WSG_ERR_ENUM(name, msg) WSG_E##name,
    WSG_ERRNO_MAP(WSG_ERR_ENUM)
#undef WSG_ERR_ENUM
        WSG__ERR_END
};

/* Human-readable message for err; "unknown error" for anything not from the map.
 * Returns a static string. */
const char *wsg_strerror(int err);

/* The code's name without prefix ("GONE" for WSG_EGONE); static string. */
const char *wsg_err_name(int err);

/* Writes printf-style detail into buf (if buf is not NULL and len > 0) and
 * returns err, so that callers can write `return wsg_errf(buf, len, WSG_EINVAL, ...)`. */
int wsg_errf(char *buf, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
