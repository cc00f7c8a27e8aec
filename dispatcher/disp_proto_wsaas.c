/* SPDX-License-Identifier: MIT */
/*
 * disp_proto_wsaas.c — seed "Web Socket as a Service" (route `protocol:
 * wsaas`; docs/compat.md says field by field what matches it). One event per
 * request to the route's backend (the original's API_URI), the method
 * saying which: POST {"ws_uri":"<ws_hostname>/<id>"} on connect, PUT with
 * the client's message as the body, DELETE with an empty body after the
 * close. The client's Authorization header (the "wsaas" member the edge
 * writes into each of the connection's events) goes on every request of
 * the connection, as the original sends it. An answer to the POST other than {"code":"OK"}
 * closes the connection 1008 "refused by backend" (the original refused the
 * upgrade; wsgate's connect webhook runs after it); answers to PUT and
 * DELETE are not read, as in the original. wsgate's signature headers go
 * along (the original had none); order, retries and dead letters are the
 * dispatcher's.
 *
 * Threads: pure functions, called on the dispatcher's delivery thread.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "common/close.h"
#include "common/err.h"
#include "common/text.h"
#include "common/webhook.h"
#include "dispatcher/disp_proto.h"

static const char *wsaas_method(bus_event_type_t t)
{
    return t == BUS_EV_CONNECT ? "POST" : t == BUS_EV_MESSAGE ? "PUT" : "DELETE";
}

/* The body of a message: the text as is, binary data decoded. */
static int message_body(json_t *env, char **out, size_t *len)
{
    json_t *d = json_object_get(env, "data"), *b64 = json_object_get(env, "data_base64");
    json_t *s = json_is_string(d) ? d : b64;
    if (!json_is_string(s))
        return WSG_EPROTO;
    size_t n = json_string_length(s);
    if (!(*out = malloc(n + 1)))
        return WSG_ENOMEM;
    if (s == d) {
        memcpy(*out, json_string_value(d), n);
        *len = n;
        return 0;
    }
    if (wsg_b64_decode(json_string_value(b64), n, (unsigned char *)*out, len) != 0) {
        free(*out);
        *out = NULL;
        return WSG_EPROTO;
    }
    return 0;
}

/* {"ws_uri":..} from the connect envelope's "wsaas" member. */
static int connect_body(json_t *env, char **out, size_t *len)
{
    json_t *uri = json_object_get(json_object_get(env, "wsaas"), "ws_uri");
    if (!json_is_string(uri) || json_string_length(uri) == 0)
        return WSG_EPROTO;
    json_t *o = json_pack("{s:O}", "ws_uri", uri);
    *out = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!*out)
        return WSG_ENOMEM;
    *len = strlen(*out);
    return 0;
}

static int wsaas_body(const wsg_route_conf_t *r, const bus_event_t *const *evs, size_t n,
                      const char **body, size_t *len, char **owned, char *err, size_t errlen)
{
    const bus_event_t *ev = evs[0];
    (void)r;
    (void)n; /* one event per request: wsg_protocol_one_event */
    *owned = NULL;
    *body = "";
    *len = 0;
    if (ev->type == BUS_EV_DISCONNECT)
        return 0;
    json_error_t je;
    json_t *env = json_loadb(ev->body ? ev->body : "", ev->body_len, 0, &je);
    if (!env)
        return wsg_errf(err, errlen, WSG_EPROTO, "event %s: envelope is not JSON", ev->id);
    int rc =
        ev->type == BUS_EV_CONNECT ? connect_body(env, owned, len) : message_body(env, owned, len);
    json_decref(env);
    if (rc == WSG_EPROTO)
        return wsg_errf(err, errlen, rc, "event %s: no %s", ev->id,
                        ev->type == BUS_EV_CONNECT ? "wsaas.ws_uri (an edge without wsaas?)"
                                                   : "data or data_base64");
    if (rc == 0)
        *body = *owned;
    return rc;
}

static int wsaas_keep(const bus_event_t *ev, struct curl_slist **kept)
{
    json_error_t je;
    json_t *env = json_loadb(ev->body ? ev->body : "", ev->body_len, 0, &je);
    json_t *w = json_object_get(env, "wsaas");
    json_t *a = json_object_get(w, "authorization");
    const char *v = json_string_value(a);
    struct curl_slist *l = NULL;
    int rc = 0;
    /* the edge took it from a parsed header line: a control character is
     * never there, but a header line is never built from one either */
    if (v && strlen(v) == json_string_length(a) && !strpbrk(v, "\r\n"))
        rc = wsg_header_add(&l, "Authorization: %s", v);
    if (rc == 0 && json_is_object(w)) { /* the edge's word: replaces what was kept */
        curl_slist_free_all(*kept);
        *kept = l;
        l = NULL;
    }
    curl_slist_free_all(l);
    json_decref(env);
    return rc;
}

static int wsaas_headers(const wsg_route_conf_t *r, const char *conn_id,
                         const struct curl_slist *meta, struct curl_slist **l)
{
    (void)r;
    (void)conn_id;
    int rc = 0;
    for (; rc == 0 && meta; meta = meta->next)
        rc = wsg_header_add(l, "%s", meta->data);
    return rc;
}

int disp_wsaas_accepts(const char *body, size_t len)
{
    json_error_t je;
    json_t *o = body ? json_loadb(body, len, 0, &je) : NULL;
    const char *code = json_string_value(json_object_get(o, "code"));
    int ok = code && strcmp(code, "OK") == 0;
    json_decref(o);
    return ok;
}

static int wsaas_parse(const wsg_route_conf_t *r, const char *body, size_t len, bool opening,
                       disp_answer_t *out, char *err, size_t errlen)
{
    (void)r;
    (void)err;
    (void)errlen;
    memset(out, 0, sizeof *out);
    if (!opening || disp_wsaas_accepts(body, len))
        return 0;
    static const char why[] = "refused by backend";
    if (!(out->acts = calloc(1, sizeof *out->acts)) || !(out->acts->reason = strdup(why))) {
        free(out->acts);
        out->acts = NULL;
        return WSG_ENOMEM;
    }
    out->acts->op = BUS_CMD_CLOSE;
    out->acts->code = WSG_CLOSE_POLICY;
    out->n = 1;
    return 0;
}

const disp_proto_t disp_proto_wsaas = {
    .name = "wsaas",
    .content_type = "application/json", /* the original's, on every request */
    .strict_answer = false,
    .dead_connect_closes = true,
    .keeps_meta = false,
    .body = wsaas_body,
    .headers = wsaas_headers,
    .parse = wsaas_parse,
    .method = wsaas_method,
    .keep = wsaas_keep,
};
