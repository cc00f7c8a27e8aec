/* SPDX-License-Identifier: MIT */
/*
 * event.c — parses a webhook body (one event envelope, or {"events":[…]}
 * of a batch) into wsgate_event structs (docs/contract.md §3). Strings point into
 * the parsed JSON document, which the wsgate_events keeps alive; only what
 * has no string of its own (decoded binary data, the context's text, the
 * header/query/channel arrays) is allocated per event.
 * Threads: a wsgate_events is used by one thread at a time.
 */
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "sdk.h"

typedef struct {
    wsgate_event pub;
    wsgate_pair *pairs; /* headers then query */
    const char **channels;
    unsigned char *bin;
    char *context;
} ev_slot_t;

struct wsgate_events {
    json_t *root;
    size_t n;
    ev_slot_t *slots;
};

#define BAD(...) sdk_fail(WSGATE_EPROTO, __VA_ARGS__)

static const char *str_member(json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

/* A {name: "value"} object into pairs[*n..]; every value must be a string. */
static int take_pairs(json_t *obj, wsgate_pair *pairs, size_t *n)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (!json_is_string(v))
            return -1;
        pairs[*n].name = k;
        pairs[*n].value = json_string_value(v);
        (*n)++;
    }
    return 0;
}

static wsgate_status parse_connect(json_t *o, ev_slot_t *s)
{
    json_t *h = json_object_get(o, "headers"), *q = json_object_get(o, "query");
    json_t *ch = json_object_get(o, "channels"), *sp = json_object_get(o, "subprotocol");
    if ((h && !json_is_object(h)) || (q && !json_is_object(q)) || (ch && !json_is_array(ch)) ||
        (sp && !json_is_string(sp) && !json_is_null(sp)))
        return BAD("connect: headers, query, channels or subprotocol has the wrong type");
    size_t nh = json_object_size(h), nq = json_object_size(q), nc = json_array_size(ch), n = 0;
    s->pairs = calloc(nh + nq + 1, sizeof *s->pairs);
    s->channels = calloc(nc + 1, sizeof *s->channels);
    if (!s->pairs || !s->channels)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    int bad = take_pairs(h, s->pairs, &n);
    s->pub.n_headers = n;
    if (bad || take_pairs(q, s->pairs, &n) != 0)
        return BAD("connect: a header or query value is not a string");
    s->pub.headers = s->pairs;
    s->pub.query = s->pairs + nh;
    s->pub.n_query = nq;
    for (size_t i = 0; i < nc; i++) {
        if (!(s->channels[i] = json_string_value(json_array_get(ch, i))))
            return BAD("connect: channels holds a non-string");
    }
    s->pub.channels = s->channels;
    s->pub.n_channels = nc;
    s->pub.remote_addr = str_member(o, "remote_addr");
    s->pub.subprotocol = json_string_value(sp);
    return WSGATE_OK;
}

static wsgate_status parse_message(json_t *o, ev_slot_t *s)
{
    json_t *d = json_object_get(o, "data"), *b = json_object_get(o, "data_base64");
    if (!!d == !!b)
        return BAD("message: exactly one of data and data_base64 expected");
    if (d) {
        if (!json_is_string(d))
            return BAD("message: data is not a string");
        s->pub.data = (const unsigned char *)json_string_value(d);
        s->pub.data_len = json_string_length(d);
        return WSGATE_OK;
    }
    const char *t = json_string_value(b);
    size_t tl = t ? json_string_length(b) : 0;
    if (!t)
        return BAD("message: data_base64 is not a string");
    s->bin = malloc(tl / 4 * 3 + 1);
    if (!s->bin)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    if (tl && wsg_b64_decode(t, tl, s->bin, &s->pub.data_len) != 0)
        return BAD("message: data_base64 is not base64");
    s->bin[s->pub.data_len] = 0;
    s->pub.data = s->bin;
    s->pub.binary = 1;
    return WSGATE_OK;
}

static wsgate_status parse_disconnect(json_t *o, ev_slot_t *s)
{
    json_t *code = json_object_get(o, "code");
    s->pub.reason = str_member(o, "reason");
    s->pub.initiator = str_member(o, "initiator");
    if (!json_is_integer(code) || !s->pub.reason || !s->pub.initiator)
        return BAD("disconnect: code, reason or initiator missing");
    s->pub.code = (int)json_integer_value(code);
    return WSGATE_OK;
}

static wsgate_status parse_common(json_t *o, ev_slot_t *s)
{
    if (!json_is_object(o))
        return BAD("an event is not a JSON object");
    const char *type = str_member(o, "type");
    json_t *seq = json_object_get(o, "seq"), *user = json_object_get(o, "user");
    json_t *ctx = json_object_get(o, "context");
    s->pub.id = str_member(o, "id");
    s->pub.connection_id = str_member(o, "connection_id");
    s->pub.route = str_member(o, "route");
    s->pub.timestamp = str_member(o, "timestamp");
    if (!s->pub.id || !s->pub.connection_id || !s->pub.route || !s->pub.timestamp || !type)
        return BAD("an event needs id, type, connection_id, route and timestamp strings");
    if (!json_is_integer(seq) || json_integer_value(seq) < 1)
        return BAD("event %s: seq is not a positive integer", s->pub.id);
    if ((user && !json_is_string(user) && !json_is_null(user)) || (ctx && !json_is_object(ctx)))
        return BAD("event %s: user or context has the wrong type", s->pub.id);
    s->pub.seq = (int64_t)json_integer_value(seq);
    s->pub.user = json_string_value(user);
    s->context = ctx ? json_dumps(ctx, JSON_COMPACT) : strdup("{}");
    if (!s->context)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    s->pub.context_json = s->context;
    if (strcmp(type, "connect") == 0)
        return s->pub.type = WSGATE_EVENT_CONNECT, parse_connect(o, s);
    if (strcmp(type, "message") == 0)
        return s->pub.type = WSGATE_EVENT_MESSAGE, parse_message(o, s);
    if (strcmp(type, "disconnect") == 0)
        return s->pub.type = WSGATE_EVENT_DISCONNECT, parse_disconnect(o, s);
    return BAD("event %s: unknown type", s->pub.id);
}

wsgate_status wsgate_events_parse(wsgate_events **out, const void *body, size_t len)
{
    if (!out || (!body && len))
        return sdk_fail(WSGATE_EINVAL, "out and body are required");
    *out = NULL;
    json_error_t jerr;
    wsgate_events *evs = calloc(1, sizeof *evs);
    if (!evs)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    wsgate_status st = WSGATE_OK;
    evs->root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *list = json_object_get(evs->root, "events");
    if (!evs->root) {
        st = json_error_code(&jerr) == json_error_out_of_memory
                 ? sdk_fail(WSGATE_ENOMEM, "out of memory")
                 : BAD("body is not JSON: %s", jerr.text);
        goto out;
    }
    if (list && (!json_is_array(list) || json_array_size(list) == 0)) {
        st = BAD("events is not a non-empty array");
        goto out;
    }
    evs->n = list ? json_array_size(list) : 1;
    if (!(evs->slots = calloc(evs->n, sizeof *evs->slots))) {
        st = sdk_fail(WSGATE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < evs->n && st == WSGATE_OK; i++)
        st = parse_common(list ? json_array_get(list, i) : evs->root, &evs->slots[i]);
out:
    if (st != WSGATE_OK)
        wsgate_events_free(evs);
    else
        *out = evs;
    return st;
}

size_t wsgate_events_count(const wsgate_events *evs)
{
    return evs ? evs->n : 0;
}

const wsgate_event *wsgate_events_get(const wsgate_events *evs, size_t i)
{
    return evs && i < evs->n ? &evs->slots[i].pub : NULL;
}

void wsgate_events_free(wsgate_events *evs)
{
    if (!evs)
        return;
    for (size_t i = 0; evs->slots && i < evs->n; i++) {
        free(evs->slots[i].pairs);
        free(evs->slots[i].channels);
        free(evs->slots[i].bin);
        free(evs->slots[i].context);
    }
    free(evs->slots);
    json_decref(evs->root);
    free(evs);
}
