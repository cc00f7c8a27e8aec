/* SPDX-License-Identifier: MIT */
/*
 * response.c — the body a backend answers a webhook with: {"actions":[…]}
 * (send, subscribe, unsubscribe, close), checked here with the gateway's
 * own rules (common/text.c) so that no action is silently skipped there.
 * Threads: a wsgate_response is used by one thread at a time.
 */
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "common/text.h"
#include "sdk.h"

struct wsgate_response {
    json_t *actions; /* array */
};

wsgate_status wsgate_response_new(wsgate_response **out)
{
    if (!out)
        return sdk_fail(WSGATE_EINVAL, "out is NULL");
    *out = NULL;
    wsgate_response *r = calloc(1, sizeof *r);
    if (r)
        r->actions = json_array();
    if (!r || !r->actions) {
        free(r);
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    }
    *out = r;
    return WSGATE_OK;
}

void wsgate_response_free(wsgate_response *r)
{
    if (!r)
        return;
    json_decref(r->actions);
    free(r);
}

/* Appends the action (taking it); NULL means a json_* call ran out of memory. */
static wsgate_status add(wsgate_response *r, json_t *action)
{
    if (!action || json_array_append_new(r->actions, action) != 0)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    return WSGATE_OK;
}

wsgate_status wsgate_response_send_text(wsgate_response *r, const char *text)
{
    if (!r || !text)
        return sdk_fail(WSGATE_EINVAL, "response and text are required");
    if (!wsg_utf8_valid(text, strlen(text)))
        return sdk_fail(WSGATE_EINVAL, "text is not UTF-8");
    return add(r, json_pack("{s:s,s:s}", "action", "send", "data", text));
}

wsgate_status wsgate_response_send_binary(wsgate_response *r, const void *data, size_t len)
{
    if (!r || (!data && len))
        return sdk_fail(WSGATE_EINVAL, "response and data are required");
    char *b64 = malloc(WSG_B64_LEN(len) + 1);
    if (!b64)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    wsg_b64_encode(data ? data : (const void *)"", len, b64);
    wsgate_status st = add(r, json_pack("{s:s,s:s}", "action", "send", "data_base64", b64));
    free(b64);
    return st;
}

static wsgate_status channel_action(wsgate_response *r, const char *verb, const char *channel)
{
    char why[128];
    if (!r || !channel)
        return sdk_fail(WSGATE_EINVAL, "response and channel are required");
    if (wsg_channel_valid(channel, why, sizeof why) != 0)
        return sdk_fail(WSGATE_EINVAL, "%s", why);
    return add(r, json_pack("{s:s,s:s}", "action", verb, "channel", channel));
}

wsgate_status wsgate_response_subscribe(wsgate_response *r, const char *channel)
{
    return channel_action(r, "subscribe", channel);
}

wsgate_status wsgate_response_unsubscribe(wsgate_response *r, const char *channel)
{
    return channel_action(r, "unsubscribe", channel);
}

wsgate_status wsgate_response_close(wsgate_response *r, int code, const char *reason)
{
    if (!r)
        return sdk_fail(WSGATE_EINVAL, "response is NULL");
    if (code != 1000 && (code < 4000 || code > 4999))
        return sdk_fail(WSGATE_EINVAL, "close code must be 1000 or 4000-4999");
    if (reason && (strlen(reason) > 123 || !wsg_utf8_valid(reason, strlen(reason))))
        return sdk_fail(WSGATE_EINVAL, "close reason must be at most 123 bytes of UTF-8");
    return add(r, json_pack("{s:s,s:i,s:s}", "action", "close", "code", code, "reason",
                            reason ? reason : ""));
}

wsgate_status wsgate_response_body(const wsgate_response *r, char **body, size_t *len)
{
    if (!r || !body)
        return sdk_fail(WSGATE_EINVAL, "response and body are required");
    json_t *o = json_pack("{s:O}", "actions", r->actions);
    *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!*body)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    if (len)
        *len = strlen(*body);
    return WSGATE_OK;
}
