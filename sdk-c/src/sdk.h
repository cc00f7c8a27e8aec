/* SPDX-License-Identifier: MIT */
/*
 * sdk.h — libwsgate's internals shared by its source files (never
 * installed): the thread-local problem, a growable byte buffer, and the
 * client's request function.
 *
 * Threads: sdk_fail*() write the calling thread's problem; sdk_buf_t is
 * owned by one thread; sdk_call() may run on many threads at once.
 */
#ifndef WSGATE_SDK_H
#define WSGATE_SDK_H

#include <jansson.h>
#include <stdarg.h>

#include "wsgate/wsgate.h"

/* Sets the calling thread's problem (no HTTP status) and returns status. */
wsgate_status sdk_fail(wsgate_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sets the problem from an HTTP answer (problem+json or any body). */
wsgate_status sdk_fail_http(wsgate_status status, long http, const char *body, size_t len);

/* The status an HTTP code maps to (WSGATE_OK for 2xx). */
wsgate_status sdk_status_of_http(long http);

/* Growable buffer; on allocation failure it sets oom and stops growing. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sdk_buf_t;

void sdk_buf_add(sdk_buf_t *b, const void *s, size_t n);
void sdk_buf_str(sdk_buf_t *b, const char *s);
/* Appends s percent-encoded (everything but RFC 3986 unreserved bytes). */
void sdk_buf_escaped(sdk_buf_t *b, const char *s);
/* Appends "?name=value" or "&name=value" (value escaped) when value is not NULL. */
void sdk_buf_query(sdk_buf_t *b, const char *name, const char *value);
void sdk_buf_free(sdk_buf_t *b);

/* strdup that accepts NULL (returns NULL) and reports failure in *oom. */
char *sdk_strdup(const char *s, int *oom);

/* 1 when s is valid UTF-8 (NUL-terminated). */
int sdk_utf8(const char *s, size_t n);

/* One request to the control API. path_query already escaped, from "/". */
typedef struct {
    const char *method;
    const char *path_query;
    const char *content_type; /* NULL: no body */
    const void *body;
    size_t body_len;
    int no_auth; /* /healthz, /readyz */
} sdk_req_t;

/* Runs the request (retried when the method is idempotent). On a 2xx
 * answer returns WSGATE_OK and, when json is not NULL, the parsed body in
 * *json (NULL for an empty body); otherwise a status with the problem set. */
wsgate_status sdk_call(wsgate_client *c, const sdk_req_t *rq, json_t **json);

/* sdk_call() with a body of kind/data/len (text/plain or octet-stream). */
wsgate_status sdk_call_frame(wsgate_client *c, const char *path_query, wsgate_kind kind,
                             const void *data, size_t len, json_t **json);

#endif
