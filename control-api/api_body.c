/* SPDX-License-Identifier: MIT */
/*
 * api_body.c — parsing of request bodies and names: a message body by its
 * media type (text/plain -> text frame, application/octet-stream -> binary,
 * application/json {"data"} or {"data_base64"}), channel names in queries
 * (common/text.h says what a valid one is), page limits. Pure functions: the fuzz target
 * tests/fuzz/fuzz_api_body.c drives api_parse_message() directly.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/b64.h"
#include "common/err.h"
#include "common/text.h"
#include "control-api/api_int.h"

int api_query_channel(api_req_t *r, const char *key, const char **out)
{
    char err[128];
    *out = api_query(r, key);
    if (!*out || !**out || wsg_channel_valid(*out, err, sizeof err) == 0)
        return 0;
    api_problem(r, 400, "%s: %s", key, err);
    return -1;
}

int api_media_is(const char *ctype, const char *want)
{
    if (!ctype)
        return 0;
    while (*ctype == ' ')
        ctype++;
    size_t n = strlen(want);
    if (strncasecmp(ctype, want, n) != 0)
        return 0;
    char c = ctype[n];
    return c == 0 || c == ';' || c == ' ';
}

static int parse_json_message(const char *body, size_t len, api_msg_t *out, char *err,
                              size_t errlen)
{
    json_error_t je;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    int st = 400;
    if (!o) {
        wsg_errf(err, errlen, WSG_EINVAL, "malformed JSON: %s", je.text);
        return 400;
    }
    json_t *d = json_object_get(o, "data"), *b = json_object_get(o, "data_base64");
    if (!json_is_object(o) || (!d == !b)) {
        wsg_errf(err, errlen, WSG_EINVAL,
                 "body must be an object with \"data\" or \"data_base64\"");
    } else if (d && !json_is_string(d)) {
        wsg_errf(err, errlen, WSG_EINVAL, "\"data\" must be a string");
    } else if (b && !json_is_string(b)) {
        wsg_errf(err, errlen, WSG_EINVAL, "\"data_base64\" must be a string");
    } else {
        const char *s = json_string_value(d ? d : b);
        size_t n = json_string_length(d ? d : b);
        out->owned = malloc(n + 1);
        if (!out->owned)
            abort();
        out->data = out->owned;
        if (d) {
            memcpy(out->owned, s, n);
            out->len = n;
            st = 0;
        } else if (wsg_b64_decode(s, n, out->owned, &out->len) == 0) {
            out->binary = 1;
            st = 0;
        } else {
            wsg_errf(err, errlen, WSG_EINVAL, "\"data_base64\" is not valid base64");
        }
    }
    json_decref(o);
    if (st != 0) {
        free(out->owned);
        out->owned = NULL;
        out->data = NULL;
    }
    return st;
}

int api_parse_message(const char *ctype, const char *body, size_t len, api_msg_t *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof *out);
    int bin = api_media_is(ctype, "application/octet-stream");
    if (api_media_is(ctype, "application/json"))
        return parse_json_message(body, len, out, err, errlen);
    if (!bin && !api_media_is(ctype, "text/plain")) {
        wsg_errf(err, errlen, WSG_EINVAL,
                 "Content-Type must be text/plain, application/octet-stream or application/json");
        return 415;
    }
    if (!bin && !wsg_utf8_valid(body, len)) {
        wsg_errf(err, errlen, WSG_EINVAL, "text/plain body is not valid UTF-8");
        return 400;
    }
    out->data = (const unsigned char *)body; /* no copy: the body outlives the command */
    out->len = len;
    out->binary = bin;
    return 0;
}

int api_parse_limit(api_req_t *r, size_t *limit)
{
    const char *s = api_query(r, "limit");
    *limit = 100;
    if (!s)
        return 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || v < 1 || v > 1000) {
        api_problem(r, 400, "limit must be 1..1000");
        return -1;
    }
    *limit = v;
    return 0;
}
