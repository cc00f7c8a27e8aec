/* SPDX-License-Identifier: MIT */
/*
 * api_wsaas.c — seed "Web Socket as a Service"'s push API on the control API
 * (routes with `protocol: wsaas`, docs/compat.md): the backend got
 * ws_uri = "<ws_hostname>/<id>" on connect; `PUT <ws_uri>` sends the body to
 * the client (a text frame when it is UTF-8, else binary) and `DELETE
 * <ws_uri>` closes the connection (1000). Served at the path of ws_hostname
 * plus one segment, for each wsaas route, where no other route of the API
 * matches. Answers as the original: 200 {"code":"OK"}, and {"code":
 * "NOT_FOUND"} with 404 (the connection is of another route) or 410 (no edge
 * holds it: closed, or never was).
 *
 * Auth: with api.auth.jwt configured, a bearer token with the send (PUT) or
 * disconnect (DELETE) scope, as /v1/connections; without one, none (the
 * original had none; the connection id in ws_uri is 128 random bits).
 *
 * Threads: MHD threads; the finish runs on the replying edge's thread.
 */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "common/close.h"
#include "common/err.h"
#include "common/text.h"
#include "control-api/api_int.h"

/* 1 when the path of ws_hostname, in segments, is r's segments but the last. */
static int prefix_matches(const api_req_t *r, const char *ws_hostname)
{
    CURLU *u = curl_url();
    char *path = NULL;
    int ok = u && curl_url_set(u, CURLUPART_URL, ws_hostname, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK;
    size_t k = 0;
    for (const char *p = path; ok && p && *p;) {
        while (*p == '/')
            p++;
        size_t n = strcspn(p, "/");
        if (n == 0)
            break;
        ok = k + 1 < r->nsegs && strlen(r->segs[k]) == n && memcmp(r->segs[k], p, n) == 0;
        k++;
        p += n;
    }
    curl_free(path);
    curl_url_cleanup(u);
    return ok && k + 1 == r->nsegs;
}

static const wsg_route_conf_t *route_for(const api_req_t *r)
{
    const wsg_config_t *cfg = r->a->cfg;
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (cfg->routes[i].protocol == WSG_PROTO_WSAAS &&
            prefix_matches(r, cfg->routes[i].ws_hostname))
            return &cfg->routes[i];
    return NULL;
}

int api_wsaas_path(const api_req_t *r)
{
    return (r->method == API_PUT || r->method == API_DELETE) && r->nsegs > 0 && route_for(r);
}

static int code_answer(api_req_t *r, int status, const char *code)
{
    json_t *o = json_pack("{s:s}", "code", code);
    if (!o)
        abort();
    return api_json(r, status, o);
}

static void finish(api_req_t *r)
{
    int st = atomic_load(&r->first_err);
    if (st == 0)
        code_answer(r, 200, "OK");
    else if (st == WSG_EGONE || st == WSG_ENOTFOUND)
        code_answer(r, 410, "NOT_FOUND");
    else
        api_from_err(r, st, r->method == API_PUT ? "send" : "disconnect");
}

/* 0 when id is not recorded (yet: the registry may still be consuming its
 * connect) or is a connection of route rt; else answers 404 or a store
 * error and returns -1. */
static int check_route(api_req_t *r, const char *id, const wsg_route_conf_t *rt)
{
    store_t *st = api_store_get(r->a);
    store_conn_t c = {0};
    int rc = store_conn_get(st, id, &c);
    api_store_put(r->a, st);
    int same = rc == 0 && c.route && strcmp(c.route, rt->path) == 0;
    store_conn_clear(&c);
    if (rc == WSG_ENOTFOUND || same)
        return 0;
    if (rc == 0)
        code_answer(r, 404, "NOT_FOUND");
    else
        api_from_err(r, rc, "lookup");
    return -1;
}

int api_h_wsaas(api_req_t *r)
{
    const wsg_route_conf_t *rt = route_for(r);
    const char *id = r->segs[r->nsegs - 1];
    bool put = r->method == API_PUT;
    if (r->a->cfg->api.jwt.enabled &&
        ((!r->claims && api_authenticate(r, r->authz) != 0) ||
         api_check_scope(r, put ? WSG_SCOPE_SEND : WSG_SCOPE_DISCONNECT) != 0))
        return API_DONE;
    if (!rt || check_route(r, id, rt) != 0)
        return rt ? API_DONE : code_answer(r, 404, "NOT_FOUND");
    char eb[128];
    int rc;
    const char *edge = api_edge_for(r, id, eb, sizeof eb, &rc);
    if (rc != 0)
        return api_from_err(r, rc, put ? "send" : "disconnect");
    bus_cmd_t cmd = {.conn_id = id, .initiator = "api"};
    if (put) {
        cmd.op = BUS_CMD_SEND;
        cmd.data = (const unsigned char *)(r->body ? r->body : "");
        cmd.len = r->body_len;
        cmd.binary = !wsg_utf8_valid(cmd.data ? (const char *)cmd.data : "", cmd.len);
    } else {
        cmd.op = BUS_CMD_CLOSE;
        cmd.code = WSG_CLOSE_NORMAL;
        cmd.reason = "";
    }
    api_req_start(r, 1, finish);
    rc = bus_cmd_request(r->a->bus, edge, &cmd, api_reply_cb, r);
    return rc != 0 ? api_from_err(r, rc, put ? "send" : "disconnect") : API_ASYNC;
}
