/*
 * api_body.c — parsing of request bodies and names: a message body by its
 * media type (text/plain -> text frame, application/octet-stream -> binary,
 * application/json {"data"} or {"data_base64"}), channel-name validation,
 * page limits. Pure functions: the fuzz target tests/fuzz/fuzz_api_body.c
 * drives api_parse_message() directly.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/b64.h"
#include "common/err.h"
#include "control-api/api_int.h"

int api_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t k;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            k = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3, min = 0x10000, c &= 0x07;
        } else {
            return 0;
        }
        if (i + k >= n)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (p[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

int api_channel_valid(const char *ch, char *err, size_t errlen)
{
    size_t n = strlen(ch);
    if (n == 0)
        return wsg_errf(err, errlen, WSG_EINVAL, "channel name is empty");
    if (n > API_CHANNEL_MAX)
        return wsg_errf(err, errlen, WSG_EINVAL, "channel name is %zu bytes, over %d", n,
                        API_CHANNEL_MAX);
    if (!api_utf8_valid(ch, n))
        return wsg_errf(err, errlen, WSG_EINVAL, "channel name is not valid UTF-8");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ch[i];
        if (c < 0x20 || c == 0x7f)
            return wsg_errf(err, errlen, WSG_EINVAL, "channel name has a control character");
    }
    return 0;
}

int api_query_channel(api_req_t *r, const char *key, const char **out)
{
    char err[128];
    *out = api_query(r, key);
    if (!*out || !**out || api_channel_valid(*out, err, sizeof err) == 0)
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
    if (!bin && !api_utf8_valid(body, len)) {
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
