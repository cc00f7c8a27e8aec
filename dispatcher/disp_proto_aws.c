/* SPDX-License-Identifier: MIT */
/*
 * disp_proto_aws.c — AWS API Gateway WebSocket APIs (route `protocol: aws`;
 * docs/compat.md says field by field what matches AWS). Each client event
 * goes out alone as the Lambda-proxy event API Gateway hands an
 * integration: requestContext (routeKey $connect, $disconnect, $default or
 * the value the route's route_selection_expression picks from a JSON
 * message, eventType, connectionId, requestId, stage, apiId, identity,
 * authorizer, ...), body and isBase64Encoded, and on $connect the client's
 * headers and query. Only what the stored envelope carries is filled.
 * A 2xx answer to $connect whose body is {"statusCode": non-2xx} refuses the
 * connection (closed 1008, as wsgate's connect webhook runs after the
 * upgrade); with the route's aws.route_response a 2xx answer to a message is
 * sent back to the client ({"statusCode":..,"body":..} or a plain body).
 * Everything else (signing, order, retries, dead letters) is the
 * dispatcher's. Reentrant: any thread.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/b64.h"
#include "common/close.h"
#include "common/envelope.h"
#include "common/err.h"
#include "common/text.h"
#include "dispatcher/disp_proto.h"

#define RSE_PREFIX "$request.body."

int disp_aws_route_key(const char *rse, const char *data, size_t len, char *out, size_t n)
{
    snprintf(out, n, "$default");
    if (!rse || strncmp(rse, RSE_PREFIX, sizeof RSE_PREFIX - 1) != 0 || !data)
        return 0;
    json_t *root = json_loadb(data, len, 0, NULL), *v = root;
    const char *p = rse + sizeof RSE_PREFIX - 1;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t k = dot ? (size_t)(dot - p) : strlen(p);
        char name[128];
        if (k >= sizeof name || !json_is_object(v)) {
            v = NULL;
            break;
        }
        memcpy(name, p, k);
        name[k] = '\0';
        v = json_object_get(v, name);
        p += k + (dot ? 1 : 0);
    }
    /* AWS picks $default for a value no route has; every value is a route
     * key here, but only a non-empty string can be one */
    if (json_is_string(v) && json_string_length(v) > 0 &&
        strlen(json_string_value(v)) == json_string_length(v))
        snprintf(out, n, "%s", json_string_value(v));
    json_decref(root);
    return 0;
}

/* "user-agent" -> "User-Agent": the form clients send (the envelope keeps
 * names in lower case). */
static void header_case(const char *in, char *out, size_t n)
{
    size_t i = 0;
    for (int up = 1; in[i] && i + 1 < n; i++) {
        char c = in[i];
        out[i] = (char)(up && c >= 'a' && c <= 'z' ? c - 32 : c);
        up = c == '-';
    }
    out[i] = '\0';
}

/* headers, multiValueHeaders, queryStringParameters and
 * multiValueQueryStringParameters of a $connect (absent when empty, as AWS). */
static void connect_members(json_t *ev, json_t *env)
{
    json_t *h = json_object(), *mh = json_object(), *q = json_object(), *mq = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(env, "headers"), k, v)
    {
        char name[128];
        header_case(k, name, sizeof name);
        json_object_set(h, name, v);
        json_object_set_new(mh, name, json_pack("[O]", v));
    }
    json_object_foreach(json_object_get(env, "query"), k, v)
    {
        json_object_set(q, k, v);
        json_object_set_new(mq, k, json_pack("[O]", v));
    }
    json_object_set_new(ev, "headers", h);
    json_object_set_new(ev, "multiValueHeaders", mh);
    if (json_object_size(q)) {
        json_object_set_new(ev, "queryStringParameters", q);
        json_object_set_new(ev, "multiValueQueryStringParameters", mq);
    } else {
        json_decref(q);
        json_decref(mq);
    }
}

/* The verified token's user and context claims, where AWS puts a Lambda
 * authorizer's principalId and context; NULL when the connection has none. */
static json_t *authorizer(json_t *env)
{
    json_t *user = json_object_get(env, "user"), *ctx = json_object_get(env, "context");
    if (!json_is_string(user) && json_object_size(ctx) == 0)
        return NULL;
    json_t *a = json_object();
    json_object_update(a, ctx);
    if (json_is_string(user))
        json_object_set(a, "principalId", user);
    return a;
}

static json_t *request_context(const wsg_route_conf_t *r, const bus_event_t *ev, json_t *env,
                               const char *route_key, int64_t ms)
{
    static const char *types[] = {"", "CONNECT", "MESSAGE", "DISCONNECT"};
    char when[40];
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(when, sizeof when, "%d/%b/%Y:%H:%M:%S +0000", &tm);
    const char *ua =
        json_string_value(json_object_get(json_object_get(env, "headers"), "user-agent"));
    json_t *id = json_object(), *rc;
    if (json_is_string(json_object_get(env, "remote_addr")))
        json_object_set(id, "sourceIp", json_object_get(env, "remote_addr"));
    if (ua)
        json_object_set_new(id, "userAgent", json_string(ua));
    rc = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:s,s:s,s:s,s:s}", "routeKey", route_key,
                   "eventType", types[ev->type], "extendedRequestId", ev->id, "requestTime", when,
                   "messageDirection", "IN", "stage", r->aws.stage, "requestTimeEpoch",
                   (json_int_t)ms, "identity", id, "requestId", ev->id, "domainName",
                   r->aws.domain_name, "connectionId", ev->conn_id, "apiId", r->aws.api_id);
    if (!rc)
        abort();
    if (ev->type == BUS_EV_CONNECT)
        json_object_set_new(rc, "connectedAt", json_integer(ms));
    if (ev->type == BUS_EV_MESSAGE)
        json_object_set_new(rc, "messageId", json_string(ev->id));
    if (ev->type == BUS_EV_DISCONNECT) {
        json_object_set(rc, "disconnectStatusCode", json_object_get(env, "code"));
        json_object_set(rc, "disconnectReason", json_object_get(env, "reason"));
    }
    json_t *au = authorizer(env);
    if (au)
        json_object_set_new(rc, "authorizer", au);
    return rc;
}

int disp_aws_event(const wsg_route_conf_t *r, const bus_event_t *ev, char **out, size_t *len,
                   char *err, size_t errlen)
{
    json_t *env = json_loadb(ev->body ? ev->body : "", ev->body_len, 0, NULL);
    int64_t ms = 0;
    if (!json_is_object(env) || ev->type < BUS_EV_CONNECT || ev->type > BUS_EV_DISCONNECT ||
        wsg_ts_parse(json_string_value(json_object_get(env, "timestamp")), &ms) != 0) {
        json_decref(env);
        return wsg_errf(err, errlen, WSG_EPROTO, "event %s: not an event envelope", ev->id);
    }
    json_t *data = json_object_get(env, "data"), *b64 = json_object_get(env, "data_base64");
    char key[256] = "$connect";
    if (ev->type == BUS_EV_DISCONNECT)
        snprintf(key, sizeof key, "$disconnect");
    if (ev->type == BUS_EV_MESSAGE)
        disp_aws_route_key(json_is_string(data) ? r->aws.route_selection_expression : NULL,
                           json_string_value(data), json_string_length(data), key, sizeof key);
    json_t *o = json_pack("{s:o}", "requestContext", request_context(r, ev, env, key, ms));
    if (ev->type == BUS_EV_CONNECT)
        connect_members(o, env);
    if (ev->type == BUS_EV_MESSAGE)
        json_object_set(o, "body", json_is_string(data) ? data : b64);
    json_object_set_new(o, "isBase64Encoded",
                        json_boolean(ev->type == BUS_EV_MESSAGE && !json_is_string(data)));
    *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    json_decref(env);
    if (!*out)
        return WSG_ENOMEM;
    *len = strlen(*out);
    return 0;
}

/* API Gateway invokes its integration once per event: so does this
 * protocol (wsg_protocol_one_event; the config loader refuses a
 * delivery.batch_max above 1, so the config says what happens). */
static int aws_body(const wsg_route_conf_t *r, const bus_event_t *const *evs, size_t n,
                    const char **body, size_t *len, char **owned, char *err, size_t errlen)
{
    (void)n; /* one event per request: wsg_protocol_one_event */
    int rc = disp_aws_event(r, evs[0], owned, len, err, errlen);
    *body = *owned;
    return rc;
}

static int one_action(disp_answer_t *out, bus_cmd_op_t op)
{
    if (!(out->acts = calloc(1, sizeof *out->acts)))
        return WSG_ENOMEM;
    out->acts[0].op = op;
    out->n = 1;
    return 0;
}

/* A send of p[0..n) (binary when b64, decoded first). */
static int answer_send(disp_answer_t *out, const char *p, size_t n, bool b64, char *err,
                       size_t errlen)
{
    int rc = one_action(out, BUS_CMD_SEND);
    disp_action_t *a = out->acts;
    if (rc != 0 || !(a->data = malloc(n + 4)))
        return WSG_ENOMEM;
    a->binary = b64 || !wsg_utf8_valid(p, n);
    if (!b64) {
        memcpy(a->data, p, n);
        a->len = n;
    } else if (wsg_b64_decode(p, n, a->data, &a->len) != 0) {
        return wsg_errf(err, errlen, WSG_EPROTO, "isBase64Encoded body is not base64");
    }
    return 0;
}

static int aws_parse(const wsg_route_conf_t *r, const char *body, size_t len, bool opening,
                     disp_answer_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t ws = 0;
    while (body && ws < len && strchr(" \t\r\n", body[ws]))
        ws++;
    if (!body || ws == len || (!opening && !(r && r->aws.route_response)))
        return 0;
    json_t *o = json_loadb(body, len, 0, NULL), *st = json_object_get(o, "statusCode");
    json_int_t code = json_integer_value(st);
    int rc = 0;
    if (opening) { /* the Lambda's statusCode is what AWS answers the handshake with */
        if (json_is_integer(st) && (code < 200 || code > 299) &&
            (rc = one_action(out, BUS_CMD_CLOSE)) == 0) {
            out->acts[0].code = WSG_CLOSE_POLICY;
            if (!(out->acts[0].reason = strdup("refused by backend")))
                rc = WSG_ENOMEM;
        }
    } else if (!json_is_integer(st)) {
        rc = answer_send(out, body, len, false, err, errlen);
    } else {
        json_t *b = json_object_get(o, "body");
        if (json_is_string(b))
            rc = answer_send(out, json_string_value(b), json_string_length(b),
                             json_is_true(json_object_get(o, "isBase64Encoded")), err, errlen);
    }
    json_decref(o);
    if (rc != 0) {
        disp_actions_free(out->acts, out->n);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

const disp_proto_t disp_proto_aws = {
    .name = "aws",
    .content_type = "application/json",
    .strict_answer = false,
    .dead_connect_closes = true,
    .body = aws_body,
    .headers = NULL,
    .parse = aws_parse,
};
