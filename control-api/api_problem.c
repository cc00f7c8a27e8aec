/* SPDX-License-Identifier: MIT */
/*
 * api_problem.c — the control API's answers: RFC 9457 problem documents
 * (application/problem+json with type, title, status, detail), plain JSON
 * bodies, and the mapping from WSG_E* codes to HTTP statuses.
 *
 * "type" is a URI naming the problem kind under https://wsgate.dev/problems/
 * (not dereferenced by clients; stable across versions).
 */
#include <stdarg.h>
#include <stdio.h>

#include "common/err.h"
#include "common/http.h"
#include "control-api/api_int.h"

static const char *type_slug(int status)
{
    switch (status) {
    case 400:
        return "bad-request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not-found";
    case 405:
        return "method-not-allowed";
    case 410:
        return "connection-gone";
    case 413:
        return "body-too-large";
    case 414:
        return "uri-too-long";
    case 415:
        return "unsupported-media-type";
    case 501:
        return "not-implemented";
    case 503:
        return "unavailable";
    case 504:
        return "timeout";
    default:
        return status >= 500 ? "server-error" : "client-error";
    }
}

json_t *api_problem_json(int status, const char *detail)
{
    char type[96];
    snprintf(type, sizeof type, "https://wsgate.dev/problems/%s", type_slug(status));
    json_t *o = json_pack("{s:s,s:s,s:i}", "type", type, "title", wsg_http_reason(status), "status",
                          status);
    if (!o)
        abort();
    json_t *d = json_string(detail ? detail : "");
    json_object_set_new(o, "detail", d ? d : json_string("(detail not valid UTF-8)"));
    return o;
}

int api_problem(api_req_t *r, int status, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    json_decref(r->resp);
    r->resp = api_problem_json(status, detail);
    r->queued = 0;
    r->is_problem = 1;
    r->status = status;
    r->www_auth = status == 401;
    return API_DONE;
}

int api_json(api_req_t *r, int status, json_t *body_new)
{
    json_decref(r->resp);
    r->resp = body_new;
    r->queued = 0;
    r->is_problem = 0;
    r->status = status;
    return API_DONE;
}

int api_empty(api_req_t *r, int status)
{
    json_decref(r->resp);
    r->resp = NULL;
    r->queued = 0;
    r->status = status;
    return API_DONE;
}

int api_queued(api_req_t *r)
{
    api_empty(r, 200);
    r->queued = 1;
    return API_DONE;
}

int api_from_err(api_req_t *r, int err, const char *what)
{
    switch (err) {
    case WSG_EGONE:
    case WSG_ENOTFOUND:
        return api_problem(r, 410, "%s: connection gone", what);
    case WSG_EINVAL:
        return api_problem(r, 400, "%s: invalid input", what);
    case WSG_ETIMEOUT:
        return api_problem(r, 504, "%s: the edge did not answer", what);
    case WSG_EFULL:
        return api_problem(r, 503, "%s: the connection's queue is full", what);
    case WSG_EUNAVAILABLE:
    case WSG_ESTORE:
    case WSG_EBUS:
        return api_problem(r, 503, "%s: %s", what, wsg_strerror(err));
    default:
        return api_problem(r, 500, "%s: %s", what, wsg_strerror(err));
    }
}
