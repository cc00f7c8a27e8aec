/* SPDX-License-Identifier: MIT */
/*
 * status.c — status messages and the calling thread's last problem.
 *
 * The problem lives in fixed thread-local buffers, so recording one can
 * never fail for want of memory, and nothing is left to free when a thread
 * ends. Long bodies and details are cut (the status is always exact).
 * Threads: any; each thread sees only its own problem.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "sdk.h"

static _Thread_local struct {
    wsgate_problem pub;
    char type[256], title[128], detail[512], body[4096];
} tl_problem;

const char *wsgate_strerror(wsgate_status status)
{
    switch (status) {
#define WSGATE_STATUS_CASE(name, num, msg)                                                         \
    case WSGATE_##name:                                                                            \
        return msg;
        WSGATE_STATUS_MAP(WSGATE_STATUS_CASE)
#undef WSGATE_STATUS_CASE
    }
    return "unknown status";
}

const wsgate_problem *wsgate_last_problem(void)
{
    return &tl_problem.pub;
}

const char *wsgate_version(void)
{
    return WSGATE_VERSION_STRING;
}

static void problem_reset(wsgate_status status, long http)
{
    memset(&tl_problem.pub, 0, sizeof tl_problem.pub);
    tl_problem.pub.status = status;
    tl_problem.pub.http_status = (int)http;
}

static const char *keep(char *dst, size_t cap, const char *s)
{
    if (!s)
        return NULL;
    snprintf(dst, cap, "%s", s);
    return dst;
}

wsgate_status sdk_fail(wsgate_status status, const char *fmt, ...)
{
    problem_reset(status, 0);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tl_problem.detail, sizeof tl_problem.detail, fmt, ap);
    va_end(ap);
    tl_problem.pub.detail = tl_problem.detail;
    return status;
}

wsgate_status sdk_fail_http(wsgate_status status, long http, const char *body, size_t len)
{
    problem_reset(status, http);
    if (!body || len == 0)
        return status;
    size_t n = len < sizeof tl_problem.body - 1 ? len : sizeof tl_problem.body - 1;
    memcpy(tl_problem.body, body, n);
    tl_problem.body[n] = '\0';
    tl_problem.pub.body = tl_problem.body;
    json_t *j = json_loadb(body, len, 0, NULL); /* NULL without memory: body only */
    if (json_is_object(j)) {
        tl_problem.pub.type = keep(tl_problem.type, sizeof tl_problem.type,
                                   json_string_value(json_object_get(j, "type")));
        tl_problem.pub.title = keep(tl_problem.title, sizeof tl_problem.title,
                                    json_string_value(json_object_get(j, "title")));
        tl_problem.pub.detail = keep(tl_problem.detail, sizeof tl_problem.detail,
                                     json_string_value(json_object_get(j, "detail")));
    }
    json_decref(j);
    return status;
}

wsgate_status sdk_status_of_http(long http)
{
    if (http >= 200 && http < 300)
        return WSGATE_OK;
    switch (http) {
    case 401:
        return WSGATE_EAUTH;
    case 403:
        return WSGATE_EFORBIDDEN;
    case 404:
        return WSGATE_ENOTFOUND;
    case 410:
        return WSGATE_EGONE;
    case 503:
        return WSGATE_EUNAVAILABLE;
    }
    if (http >= 500)
        return WSGATE_ESERVER;
    return http >= 400 ? WSGATE_EBADREQUEST : WSGATE_EPROTO;
}
