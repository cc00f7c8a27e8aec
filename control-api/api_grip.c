/* SPDX-License-Identifier: MIT */
/*
 * api_grip.c — Pushpin's GRIP publish API on the control API (routes with
 * `protocol: grip`, docs/compat.md): POST /publish/ with
 * {"items":[{"channel":..,"formats":{"ws-message":{"content":..} or
 * {"content-bin":base64}}}]} publishes each item's ws-message to its channel
 * through the bus, as POST /v1/channels/{ch}/messages does. Same token and
 * scope (publish, and the token's channels claim) as that endpoint. Every
 * item is checked before any is published: a bad one changes nothing.
 * Items without a ws-message format (HTTP streaming formats) reach no
 * WebSocket and are skipped.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "common/err.h"
#include "common/text.h"
#include "control-api/api_int.h"

typedef struct {
    const char *channel;
    unsigned char *data; /* owned */
    size_t len;
    int binary;
} grip_item_t;

/* Checks item i; *out->data is NULL for an item without ws-message.
 * Returns 0, or answers 400/403 and returns -1. */
static int item_read(api_req_t *r, json_t *it, size_t i, grip_item_t *out)
{
    char err[128];
    json_t *ch = json_object_get(it, "channel");
    json_t *ws = json_object_get(json_object_get(it, "formats"), "ws-message");
    if (!json_is_string(ch) || strlen(json_string_value(ch)) != json_string_length(ch))
        return api_problem(r, 400, "items[%zu].channel: a string is required", i), -1;
    if (wsg_channel_valid(json_string_value(ch), err, sizeof err) != 0)
        return api_problem(r, 400, "items[%zu].channel: %s", i, err), -1;
    if (api_require_channel(r, json_string_value(ch)) != 0)
        return -1;
    out->channel = json_string_value(ch);
    if (!ws)
        return 0;
    json_t *t = json_object_get(ws, "content"), *b = json_object_get(ws, "content-bin");
    if (!json_is_object(ws) || json_is_string(t) == json_is_string(b))
        return api_problem(r, 400,
                           "items[%zu].formats.ws-message: one of content or content-bin "
                           "(a string) is required",
                           i),
               -1;
    size_t n = json_string_length(t ? t : b);
    if (!(out->data = malloc(n / 4 * 3 + n + 4)))
        abort();
    if (t) {
        memcpy(out->data, json_string_value(t), n);
        out->len = n;
        return 0;
    }
    out->binary = 1;
    if (wsg_b64_decode(json_string_value(b), n, out->data, &out->len) != 0)
        return api_problem(r, 400, "items[%zu].formats.ws-message.content-bin: not base64", i), -1;
    return 0;
}

static int publish_all(api_req_t *r, grip_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!items[i].data)
            continue;
        bus_publish_t p = {.channel = items[i].channel,
                           .data = items[i].data,
                           .len = items[i].len,
                           .binary = items[i].binary};
        int rc = bus_publish(r->a->bus, &p);
        if (rc != 0)
            return api_from_err(r, rc, "publish");
    }
    static const char ok[] = "Published\n"; /* Pushpin's answer */
    if (!(r->raw = strdup(ok)))
        abort();
    r->raw_len = sizeof ok - 1;
    r->raw_ctype = "text/plain";
    r->status = 200;
    return API_DONE;
}

int api_h_grip_publish(api_req_t *r)
{
    json_error_t je;
    if (r->ctype && !api_media_is(r->ctype, "application/json"))
        return api_problem(r, 415, "Content-Type must be application/json");
    json_t *root = json_loadb(r->body ? r->body : "", r->body_len, 0, &je);
    if (!root)
        return api_problem(r, 400, "body is not JSON: %s", je.text);
    json_t *items = json_object_get(root, "items");
    size_t n = json_array_size(items), i;
    if (!json_is_array(items) || n == 0) {
        json_decref(root);
        return api_problem(r, 400, "\"items\" must be a non-empty array");
    }
    grip_item_t *v = calloc(n, sizeof *v);
    if (!v)
        abort();
    int bad = 0;
    for (i = 0; i < n && !bad; i++)
        bad = json_is_object(json_array_get(items, i))
                  ? item_read(r, json_array_get(items, i), i, &v[i])
                  : (api_problem(r, 400, "items[%zu]: an object is required", i), -1);
    int rc = bad ? API_DONE : publish_all(r, v, n);
    for (i = 0; i < n; i++)
        free(v[i].data);
    free(v);
    json_decref(root);
    return rc;
}
