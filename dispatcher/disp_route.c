/* SPDX-License-Identifier: MIT */
/*
 * disp_route.c — picking a message's backend (docs/contract.md §3 "Routing"): the
 * route's ordered rules (a top-level JSON field equal to a string, or a PCRE2
 * regex on the payload, compiled once at start-up with JIT when available),
 * and parsing a routing service's {"backend","headers"} answer. Whether a
 * backend is allowed is wsg_config_backend_allowed() (common/config.c), the
 * same check config loading applies to rules.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <jansson.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/b64.h"
#include "common/err.h"
#include "dispatcher/disp_internal.h"

typedef struct {
    const wsg_rule_conf_t *conf;
    pcre2_code *re; /* NULL for a JSON rule */
} disp_rule_t;

struct disp_rules {
    disp_rule_t *rules;
    size_t n;
    bool any_json;
};

void disp_rules_free(disp_rules_t *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->n; i++)
        pcre2_code_free(rs->rules[i].re);
    free(rs->rules);
    free(rs);
}

static int compile_rule(disp_rule_t *out, const wsg_rule_conf_t *u, char *err, size_t errlen)
{
    int ec;
    PCRE2_SIZE off;
    out->conf = u;
    if (!u->regex)
        return 0;
    out->re = pcre2_compile((PCRE2_SPTR)u->regex, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL);
    if (!out->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return wsg_errf(err, errlen, WSG_ECONFIG, "rule at line %d: regex at offset %zu: %s",
                        u->line, (size_t)off, (const char *)msg);
    }
    (void)pcre2_jit_compile(out->re, PCRE2_JIT_COMPLETE); /* interpreter if no JIT */
    return 0;
}

int disp_rules_new(disp_rules_t **out, const wsg_route_conf_t *r, char *err, size_t errlen)
{
    int rc = 0;
    *out = NULL;
    if (r->n_rules == 0)
        return 0;
    disp_rules_t *rs = calloc(1, sizeof *rs);
    if (!rs || !(rs->rules = calloc(r->n_rules, sizeof *rs->rules))) {
        rc = WSG_ENOMEM;
        goto out;
    }
    for (; rs->n < r->n_rules; rs->n++) {
        if ((rc = compile_rule(&rs->rules[rs->n], &r->rules[rs->n], err, errlen)) != 0)
            goto out;
        if (!rs->rules[rs->n].re)
            rs->any_json = true;
    }
    *out = rs;
    rs = NULL;
out:
    disp_rules_free(rs);
    return rc;
}

static bool regex_matches(pcre2_code *re, const char *p, size_t len)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        return false;
    int n = pcre2_match(re, (PCRE2_SPTR)p, len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return n >= 0;
}

static bool json_matches(json_t *obj, const wsg_rule_conf_t *u)
{
    json_t *v = json_object_get(obj, u->json_field);
    return json_is_string(v) && strcmp(json_string_value(v), u->equals) == 0;
}

const char *disp_rules_match(const disp_rules_t *rs, const char *payload, size_t len, bool binary)
{
    if (!rs || !payload)
        return NULL;
    json_t *obj = NULL;
    if (rs->any_json && !binary) {
        obj = json_loadb(payload, len, JSON_DECODE_ANY, NULL);
        if (obj && !json_is_object(obj)) {
            json_decref(obj);
            obj = NULL;
        }
    }
    const char *hit = NULL;
    for (size_t i = 0; i < rs->n && !hit; i++) {
        const disp_rule_t *u = &rs->rules[i];
        if (u->re ? regex_matches(u->re, payload, len) : (obj && json_matches(obj, u->conf)))
            hit = u->conf->backend;
    }
    json_decref(obj);
    return hit;
}

static int payload_of(json_t *root, char **payload, size_t *plen, bool *binary)
{
    json_t *data = json_object_get(root, "data");
    json_t *b64 = json_object_get(root, "data_base64");
    if (json_is_string(data)) {
        *binary = false;
        *plen = json_string_length(data);
        if (!(*payload = malloc(*plen + 1)))
            return WSG_ENOMEM;
        memcpy(*payload, json_string_value(data), *plen + 1);
        return 0;
    }
    if (!json_is_string(b64))
        return WSG_EPROTO;
    size_t n = json_string_length(b64);
    if (!(*payload = malloc(n / 4 * 3 + 4)))
        return WSG_ENOMEM;
    if (wsg_b64_decode(json_string_value(b64), n, (unsigned char *)*payload, plen) != 0) {
        free(*payload);
        *payload = NULL;
        return WSG_EPROTO;
    }
    (*payload)[*plen] = '\0';
    *binary = true;
    return 0;
}

int disp_event_payload(const char *body, size_t len, char **payload, size_t *plen, bool *binary)
{
    *payload = NULL;
    *plen = 0;
    *binary = false;
    json_t *root = json_loadb(body, len, 0, NULL);
    int rc = json_is_object(root) ? payload_of(root, payload, plen, binary) : WSG_EPROTO;
    json_decref(root);
    return rc;
}

void disp_headers_free(disp_header_t *h, size_t n)
{
    for (size_t i = 0; h && i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

static bool header_name_ok(const char *s)
{
    static const char *const reserved[] = {
        "content-type", "content-length", "host", "user-agent", "transfer-encoding",
        "connection",   "expect",         "te",   "upgrade"};
    if (!*s || strlen(s) > 128)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
            return false;
    if (strncasecmp(s, "webhook-", 8) == 0 || strncasecmp(s, "wsgate-", 7) == 0)
        return false;
    for (size_t i = 0; i < sizeof reserved / sizeof *reserved; i++)
        if (strcasecmp(s, reserved[i]) == 0)
            return false;
    return true;
}

static bool header_value_ok(const char *v, size_t n)
{
    return n <= 4096 && strlen(v) == n && !strpbrk(v, "\r\n");
}

static int parse_headers(json_t *hs, disp_header_t **out, size_t *n, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    if (!hs || json_is_null(hs))
        return 0;
    if (!json_is_object(hs))
        return wsg_errf(err, errlen, WSG_EPROTO, "\"headers\" is not an object");
    if (json_object_size(hs) > 32)
        return wsg_errf(err, errlen, WSG_EPROTO, "more than 32 headers");
    if (json_object_size(hs) && !(*out = calloc(json_object_size(hs), sizeof **out)))
        return WSG_ENOMEM;
    json_object_foreach(hs, k, v)
    {
        if (!json_is_string(v) || !header_name_ok(k) ||
            !header_value_ok(json_string_value(v), json_string_length(v)))
            return wsg_errf(err, errlen, WSG_EPROTO, "header %.64s refused", k);
        disp_header_t *h = &(*out)[*n];
        if (!(h->name = strdup(k)) || !(h->value = strdup(json_string_value(v))))
            return WSG_ENOMEM;
        (*n)++;
    }
    return 0;
}

int disp_route_answer_parse(const char *body, size_t len, char **backend, disp_header_t **headers,
                            size_t *n_headers, char *err, size_t errlen)
{
    int rc = 0;
    *backend = NULL;
    *headers = NULL;
    *n_headers = 0;
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        rc = wsg_errf(err, errlen, WSG_EPROTO, "routing service answer is not a JSON object");
        goto out;
    }
    json_t *b = json_object_get(root, "backend");
    if (b && !json_is_null(b) && !json_is_string(b)) {
        rc = wsg_errf(err, errlen, WSG_EPROTO, "\"backend\" is not a string");
        goto out;
    }
    if (json_is_string(b) && json_string_length(b) > 0 &&
        !(*backend = strdup(json_string_value(b)))) {
        rc = WSG_ENOMEM;
        goto out;
    }
    rc = parse_headers(json_object_get(root, "headers"), headers, n_headers, err, errlen);
out:
    json_decref(root);
    if (rc != 0) {
        free(*backend);
        *backend = NULL;
        disp_headers_free(*headers, *n_headers);
        *headers = NULL;
        *n_headers = 0;
    }
    return rc;
}
