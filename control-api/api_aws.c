/* SPDX-License-Identifier: MIT */
/*
 * api_aws.c — API Gateway's @connections management API on the control
 * API (routes with `protocol: aws`, docs/compat.md): POST
 * /@connections/{id} sends the raw body to the connection, GET describes
 * it, DELETE closes it; /<stage>/@connections/{id} too, the path the AWS
 * SDK uses with an endpoint that ends in the stage. Two ways in: an AWS
 * Signature Version 4 by an access key of an aws route (only for that
 * route's connections, and its stage when the path names one), or the
 * control API's bearer token with the scope the /v1 twin needs (send,
 * read, disconnect). Errors are AWS's: {"message": ...} with
 * x-amzn-ErrorType (403 for a bad signature, 410 GoneException for a
 * connection that is not there, 413 PayloadTooLargeException), and a
 * refused request changes nothing. Handlers run on MHD threads, the send
 * and close completions on the edge's.
 */
#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/close.h"
#include "common/envelope.h"
#include "common/err.h"
#include "common/sigv4.h"
#include "control-api/api_int.h"

/* PostToConnection's limit at AWS (128 KiB per message). */
#define AWS_MAX_POST (128 * 1024)

static int aws_error(api_req_t *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int aws_error(api_req_t *r, int status, const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:s}", "message", msg);
    if (!o)
        abort();
    api_json(r, status, o);
    r->err_type = type;
    return API_DONE;
}

static int gone(api_req_t *r)
{
    return aws_error(r, 410, "GoneException", "Connection is gone");
}

static const char *header(void *ud, const char *name)
{
    return MHD_lookup_connection_value(ud, MHD_HEADER_KIND, name);
}

/* The aws route holding access key id, or NULL; *secret its key. */
static const wsg_route_conf_t *key_route(const wsg_config_t *cfg, const char *id,
                                         const wsg_aws_key_conf_t **key)
{
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const wsg_route_conf_t *rt = &cfg->routes[i];
        for (size_t k = 0; rt->protocol == WSG_PROTO_AWS && k < rt->aws.n_access_keys; k++)
            if (strcmp(rt->aws.access_keys[k].id, id) == 0) {
                *key = &rt->aws.access_keys[k];
                return rt;
            }
    }
    return NULL;
}

/* Verifies r's SigV4 signature; *route = the key's route. Returns 0, or
 * answers 403 and returns -1. */
static int check_sigv4(api_req_t *r, const wsg_route_conf_t **route)
{
    static const char *methods[] = {"", "GET", "PUT", "", "POST", "", "", "", "DELETE"};
    wsg_sigv4_auth_t a;
    char err[256];
    const wsg_aws_key_conf_t *key = NULL;
    if (!r->mhd || wsg_sigv4_parse(r->authz, &a, err, sizeof err) != 0)
        return aws_error(r, 403, "IncompleteSignatureException", "%s",
                         r->mhd ? err : "a batch item cannot carry a signature"),
               -1;
    if (!(*route = key_route(r->a->cfg, a.key_id, &key)))
        return aws_error(r, 403, "UnrecognizedClientException",
                         "The security token included in the request is invalid."),
               -1;
    if (r->nsegs == 3 && strcmp(r->segs[0], (*route)->aws.stage) != 0)
        return aws_error(r, 403, "ForbiddenException", "Forbidden"), -1;
    const char *qk[API_MAX_QUERY], *qv[API_MAX_QUERY];
    for (size_t i = 0; i < r->nq; i++) {
        qk[i] = r->q[i].key;
        qv[i] = r->q[i].val;
    }
    wsg_sigv4_req_t rq = {.method = r->method < 9 ? methods[r->method] : "",
                          .path = r->raw_path,
                          .qkeys = qk,
                          .qvals = qv,
                          .nq = r->nq,
                          .header = header,
                          .ud = r->mhd,
                          .body = r->body,
                          .body_len = r->body_len};
    int rc = wsg_sigv4_verify(&rq, &a, key->secret, key->secret_len, (*route)->aws.region,
                              "execute-api", (int64_t)time(NULL), err, sizeof err);
    if (rc == WSG_ENOMEM)
        abort();
    if (rc != 0)
        return aws_error(r, 403, "InvalidSignatureException", "%s", err), -1;
    return 0;
}

/* Who may act: a SigV4 signature (then *route is its key's route) or a
 * bearer token with scope. Returns 0, or answers and returns -1. */
static int aws_auth(api_req_t *r, const char *scope, const wsg_route_conf_t **route)
{
    *route = NULL;
    if (wsg_sigv4_is(r->authz))
        return check_sigv4(r, route);
    if (!r->claims && api_authenticate(r, r->authz) != 0)
        return -1;
    return api_check_scope(r, scope);
}

/* Reads connection id into c. With a signature, a connection of another
 * route is gone as far as that key can tell. Returns 0, or answers and
 * returns -1. */
static int conn_read(api_req_t *r, const char *id, const wsg_route_conf_t *route, store_conn_t *c)
{
    store_t *st = api_store_get(r->a);
    int rc = store_conn_get(st, id, c);
    api_store_put(r->a, st);
    if (rc == WSG_ENOTFOUND || (rc == 0 && route && strcmp(c->route, route->path) != 0))
        return gone(r), -1;
    if (rc != 0)
        return api_from_err(r, rc, "connection"), -1;
    return 0;
}

static const char *conn_id(const api_req_t *r)
{
    return r->segs[r->nsegs - 1];
}

static void iso(int64_t ms, char out[32])
{
    wsg_ts_format(NULL, ms, out);
}

int api_h_aws_get(api_req_t *r)
{
    const wsg_route_conf_t *route;
    store_conn_t c = {0};
    if (aws_auth(r, WSG_SCOPE_READ, &route) != 0 || conn_read(r, conn_id(r), route, &c) != 0)
        return API_DONE;
    char at[32], last[32];
    iso(c.connected_at_ms, at);
    iso(c.last_active_at_ms ? c.last_active_at_ms : c.connected_at_ms, last);
    json_t *o = json_pack("{s:s,s:{s:s?},s:s}", "connectedAt", at, "identity", "sourceIp",
                          c.remote_addr, "lastActiveAt", last);
    store_conn_clear(&c);
    if (!o)
        abort();
    return api_json(r, 200, o);
}

/* The edge's reply: 0, or the connection is not there (410). */
static void finish(api_req_t *r, int ok_status, const char *what)
{
    int st = atomic_load(&r->first_err);
    if (st == WSG_ENOTFOUND || st == WSG_EGONE)
        gone(r);
    else if (st != 0)
        api_from_err(r, st, what);
    else
        api_empty(r, ok_status);
}

static void finish_post(api_req_t *r)
{
    finish(r, 200, "send");
}

static void finish_delete(api_req_t *r)
{
    finish(r, 204, "disconnect");
}

/* Sends cmd to the connection's edge; finish answers. */
static int command(api_req_t *r, bus_cmd_t *cmd, api_req_fn fin, const char *what)
{
    int rc;
    char eb[128];
    const char *edge = api_edge_for(r, cmd->conn_id, eb, sizeof eb, &rc);
    if (rc != 0)
        return rc == WSG_ENOTFOUND ? gone(r) : api_from_err(r, rc, what);
    api_req_start(r, 1, fin);
    rc = bus_cmd_request(r->a->bus, edge, cmd, api_reply_cb, r);
    return rc != 0 ? api_from_err(r, rc, what) : API_ASYNC;
}

/* With a signature the store says whether the connection is the key's
 * route's; with a token the edge holding it answers, as /v1 does. */
static int check_owner(api_req_t *r, const wsg_route_conf_t *route)
{
    store_conn_t c = {0};
    int rc = route ? conn_read(r, conn_id(r), route, &c) : 0;
    store_conn_clear(&c);
    return rc;
}

int api_h_aws_post(api_req_t *r)
{
    const wsg_route_conf_t *route;
    if (aws_auth(r, WSG_SCOPE_SEND, &route) != 0)
        return API_DONE;
    if (r->body_len > AWS_MAX_POST)
        return aws_error(r, 413, "PayloadTooLargeException",
                         "Message too long: %zu bytes, at most %d", r->body_len, AWS_MAX_POST);
    if (check_owner(r, route) != 0)
        return API_DONE;
    /* AWS sends Data as a text frame; bytes that are not UTF-8 cannot be
     * one, so they go as a binary frame */
    bus_cmd_t cmd = {.op = BUS_CMD_SEND,
                     .conn_id = conn_id(r),
                     .data = (const unsigned char *)r->body,
                     .len = r->body_len,
                     .binary = !wsg_utf8_valid(r->body, r->body_len)};
    return command(r, &cmd, finish_post, "send");
}

int api_h_aws_delete(api_req_t *r)
{
    const wsg_route_conf_t *route;
    if (aws_auth(r, WSG_SCOPE_DISCONNECT, &route) != 0 || check_owner(r, route) != 0)
        return API_DONE;
    bus_cmd_t cmd = {.op = BUS_CMD_CLOSE,
                     .conn_id = conn_id(r),
                     .code = WSG_CLOSE_NORMAL,
                     .reason = "",
                     .initiator = "api"};
    return command(r, &cmd, finish_delete, "disconnect");
}
