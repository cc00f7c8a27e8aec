/* SPDX-License-Identifier: MIT */
/*
 * disp_actions.c — request bodies and response actions (docs/contract.md §3):
 * batch bodies built by concatenating the stored envelopes, a batch's stable
 * webhook-id, and the parsing of a 2xx answer's {"actions":[...]} into edge
 * commands. Applying them is dispatch.c's job (it owns the bus).
 */
#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "common/close.h"
#include "common/err.h"
#include "common/text.h"
#include "dispatcher/disp_internal.h"

int disp_batch_body(const char *const *bodies, const size_t *lens, size_t n, char **out,
                    size_t *out_len)
{
    static const char head[] = "{\"events\":[", tail[] = "]}";
    if (n == 0)
        return WSG_EINVAL;
    size_t total = sizeof head - 1 + sizeof tail - 1 + (n - 1);
    for (size_t i = 0; i < n; i++)
        total += lens[i];
    char *p = malloc(total + 1);
    if (!p)
        return WSG_ENOMEM;
    size_t at = 0;
    memcpy(p, head, sizeof head - 1);
    at += sizeof head - 1;
    for (size_t i = 0; i < n; i++) {
        if (i)
            p[at++] = ',';
        memcpy(p + at, bodies[i], lens[i]);
        at += lens[i];
    }
    memcpy(p + at, tail, sizeof tail);
    *out = p;
    *out_len = total;
    return 0;
}

void disp_batch_id(const char *first, const char *last, char out[DISP_BATCH_ID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    memset(md, 0, sizeof md);
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(c, first, strlen(first)) == 1 && EVP_DigestUpdate(c, "\n", 1) == 1 &&
        EVP_DigestUpdate(c, last, strlen(last)) == 1)
        EVP_DigestFinal_ex(c, md, &mdlen);
    EVP_MD_CTX_free(c);
    memcpy(out, "bat_", 4);
    for (int i = 0; i < 16; i++) {
        out[4 + 2 * i] = hex[md[i] >> 4];
        out[5 + 2 * i] = hex[md[i] & 15];
    }
    out[DISP_BATCH_ID_LEN - 1] = '\0';
}

void disp_actions_free(disp_action_t *a, size_t n)
{
    for (size_t i = 0; a && i < n; i++) {
        free(a[i].data);
        free(a[i].reason);
        free(a[i].channel);
    }
    free(a);
}

static bool channel_ok(const char *s, size_t n)
{
    return strlen(s) == n && wsg_channel_valid(s, NULL, 0) == 0; /* no NUL inside, then the rule */
}

static int parse_send(json_t *a, disp_action_t *out)
{
    json_t *d = json_object_get(a, "data"), *b = json_object_get(a, "data_base64");
    if (json_is_string(d) == json_is_string(b))
        return WSG_EINVAL; /* exactly one of them */
    if (json_is_string(d)) {
        out->len = json_string_length(d);
        if (!(out->data = malloc(out->len + 1)))
            return WSG_ENOMEM;
        memcpy(out->data, json_string_value(d), out->len + 1);
        return 0;
    }
    size_t n = json_string_length(b);
    if (!(out->data = malloc(n / 4 * 3 + 4)))
        return WSG_ENOMEM;
    out->binary = 1;
    return wsg_b64_decode(json_string_value(b), n, out->data, &out->len) == 0 ? 0 : WSG_EINVAL;
}

static int parse_close(json_t *a, disp_action_t *out)
{
    json_t *c = json_object_get(a, "code"), *r = json_object_get(a, "reason");
    if ((c && !json_is_integer(c)) || (r && !json_is_string(r)))
        return WSG_EINVAL;
    json_int_t v = c ? json_integer_value(c) : WSG_CLOSE_NORMAL;
    const char *rs = r ? json_string_value(r) : "";
    if (wsg_close_app_check(v, rs, r ? json_string_length(r) : 0, NULL, 0) != 0)
        return WSG_EINVAL;
    out->code = (int)v;
    return (out->reason = strdup(rs)) ? 0 : WSG_ENOMEM;
}

static int parse_action(json_t *a, disp_action_t *out)
{
    memset(out, 0, sizeof *out);
    const char *kind = json_string_value(json_object_get(a, "action"));
    if (!kind)
        return WSG_EINVAL;
    if (strcmp(kind, "send") == 0) {
        out->op = BUS_CMD_SEND;
        return parse_send(a, out);
    }
    if (strcmp(kind, "close") == 0) {
        out->op = BUS_CMD_CLOSE;
        return parse_close(a, out);
    }
    bool sub = strcmp(kind, "subscribe") == 0;
    if (!sub && strcmp(kind, "unsubscribe") != 0)
        return WSG_EINVAL;
    out->op = sub ? BUS_CMD_SUBSCRIBE : BUS_CMD_UNSUBSCRIBE;
    json_t *ch = json_object_get(a, "channel");
    if (!json_is_string(ch) || !channel_ok(json_string_value(ch), json_string_length(ch)))
        return WSG_EINVAL;
    return (out->channel = strdup(json_string_value(ch))) ? 0 : WSG_ENOMEM;
}

void disp_frame_clear(disp_frame_t *f)
{
    for (size_t i = 0; f->ids && i < f->n_ids; i++)
        free(f->ids[i]);
    free(f->ids);
    free(f->conn_id);
    free(f->token);
    free(f->act.data);
    free(f->act.reason);
    free(f->act.channel);
    memset(f, 0, sizeof *f);
}

/* An id or connection id: 1..128 printable ASCII characters. */
static bool id_ok(json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (!s || n == 0 || n > 128 || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] == 0x7f || (unsigned char)s[i] >= 0x80)
            return false;
    return true;
}

static int frame_acks(json_t *ack, disp_frame_t *out, char *err, size_t errlen)
{
    size_t n = json_is_array(ack) ? json_array_size(ack) : 1;
    if (!json_is_array(ack) && !id_ok(ack))
        return wsg_errf(err, errlen, WSG_EINVAL, "\"ack\" is not an event id or an array of them");
    if (n == 0 || n > DISP_FRAME_MAX_ACKS)
        return wsg_errf(err, errlen, WSG_EINVAL, "\"ack\" needs 1 to %d event ids",
                        DISP_FRAME_MAX_ACKS);
    out->kind = DISP_FRAME_ACK;
    if (!(out->ids = calloc(n, sizeof *out->ids)))
        return WSG_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_is_array(ack) ? json_array_get(ack, i) : ack;
        if (!id_ok(v))
            return wsg_errf(err, errlen, WSG_EINVAL, "\"ack\"[%zu] is not an event id", i);
        if (!(out->ids[i] = strdup(json_string_value(v))))
            return WSG_ENOMEM;
        out->n_ids++;
    }
    return 0;
}

static int frame_publish(json_t *root, disp_frame_t *out, char *err, size_t errlen)
{
    json_t *ch = json_object_get(root, "channel"), *ex = json_object_get(root, "exclude");
    out->kind = DISP_FRAME_PUBLISH;
    if (!json_is_string(ch) || !channel_ok(json_string_value(ch), json_string_length(ch)))
        return wsg_errf(err, errlen, WSG_EINVAL, "publish needs a valid \"channel\"");
    if (ex && !id_ok(ex))
        return wsg_errf(err, errlen, WSG_EINVAL, "\"exclude\" is not a connection id");
    int rc = parse_send(root, &out->act);
    if (rc == WSG_EINVAL)
        return wsg_errf(err, errlen, rc,
                        "publish needs exactly one of \"data\" (text) and "
                        "\"data_base64\" (valid base64)");
    if (rc != 0)
        return rc;
    if (!(out->act.channel = strdup(json_string_value(ch))) ||
        (ex && !(out->conn_id = strdup(json_string_value(ex)))))
        return WSG_ENOMEM;
    return 0;
}

/* A user a ws-api-gateway backend names: 1..1024 bytes of text, no NUL. */
static bool user_ok(json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    return s && n > 0 && n <= 1024 && strlen(s) == n;
}

/* An action addressed by key: "connection_id" (wsgate), or "user"
 * (ws-api-gateway: send and close only, as the seed). */
static int frame_action(json_t *root, const char *key, disp_frame_t *out, char *err, size_t errlen)
{
    const char *kind = json_string_value(json_object_get(root, "action"));
    bool by_user = strcmp(key, "user") == 0;
    if (!by_user && kind && strcmp(kind, "publish") == 0)
        return frame_publish(root, out, err, errlen);
    out->kind = DISP_FRAME_ACTION;
    json_t *id = json_object_get(root, key);
    if (by_user && kind && strcmp(kind, "send") != 0 && strcmp(kind, "close") != 0)
        return wsg_errf(err, errlen, WSG_EINVAL, "unknown action \"%s\" (send or close)", kind);
    if (by_user ? !user_ok(id) : !id_ok(id))
        return wsg_errf(err, errlen, WSG_EINVAL, "\"%s\" missing or not a %s", key,
                        by_user ? "user" : "connection id");
    int rc = parse_action(root, &out->act); /* the fields of a webhook's response action */
    if (rc == WSG_EINVAL)
        return wsg_errf(err, errlen, rc, "%s%s%s", kind ? "bad \"" : "",
                        kind ? kind : "no \"action\"",
                        kind ? "\" action (unknown, or a field missing or invalid)" : "");
    if (rc != 0)
        return rc;
    return (out->conn_id = strdup(json_string_value(id))) ? 0 : WSG_ENOMEM;
}

static int frame_auth(json_t *tok, disp_frame_t *out, char *err, size_t errlen)
{
    size_t n = json_string_length(tok);
    out->kind = DISP_FRAME_AUTH;
    if (!json_is_string(tok) || n == 0 || n > DISP_FRAME_MAX_TOKEN ||
        strlen(json_string_value(tok)) != n)
        return wsg_errf(err, errlen, WSG_EINVAL, "\"auth\" is not a token (1 to %d bytes)",
                        DISP_FRAME_MAX_TOKEN);
    return (out->token = strdup(json_string_value(tok))) ? 0 : WSG_ENOMEM;
}

static int frame_parse(const char *body, size_t len, bool by_user, disp_frame_t *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    int rc;
    if (!json_is_object(root))
        rc = wsg_errf(err, errlen, WSG_EINVAL, "not a JSON object%s%s", root ? "" : ": ",
                      root ? "" : je.text);
    else if (!by_user && json_object_get(root, "auth"))
        rc = frame_auth(json_object_get(root, "auth"), out, err, errlen);
    else if (!by_user && json_object_get(root, "ack"))
        rc = frame_acks(json_object_get(root, "ack"), out, err, errlen);
    else if (json_object_get(root, "action"))
        rc = frame_action(root, by_user ? "user" : "connection_id", out, err, errlen);
    else
        rc = wsg_errf(err, errlen, WSG_EINVAL, "%s",
                      by_user ? "no \"action\"" : "neither \"ack\" nor \"action\"");
    json_decref(root);
    if (rc != 0)
        disp_frame_clear(out);
    return rc;
}

int disp_frame_parse(const char *body, size_t len, disp_frame_t *out, char *err, size_t errlen)
{
    return frame_parse(body, len, false, out, err, errlen);
}

int disp_frame_parse_user(const char *body, size_t len, disp_frame_t *out, char *err, size_t errlen)
{
    return frame_parse(body, len, true, out, err, errlen);
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i]))
            return false;
    return true;
}

int disp_actions_parse(const char *body, size_t len, disp_action_t **out, size_t *n,
                       size_t *skipped, char *err, size_t errlen)
{
    int rc = 0;
    *out = NULL;
    *n = 0;
    *skipped = 0;
    if (!body || blank(body, len))
        return 0;
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!root)
        return wsg_errf(err, errlen, WSG_EPROTO, "response body is not JSON: %s", je.text);
    json_t *acts = json_is_object(root) ? json_object_get(root, "actions") : NULL;
    if (!acts)
        goto out;
    if (!json_is_array(acts)) {
        rc = wsg_errf(err, errlen, WSG_EPROTO, "\"actions\" is not an array");
        goto out;
    }
    if (json_array_size(acts) && !(*out = calloc(json_array_size(acts), sizeof **out))) {
        rc = WSG_ENOMEM;
        goto out;
    }
    size_t i;
    json_t *a;
    json_array_foreach(acts, i, a)
    {
        int r = json_is_object(a) ? parse_action(a, &(*out)[*n]) : WSG_EINVAL;
        if (r == 0) {
            (*n)++;
            continue;
        }
        free((*out)[*n].data);
        free((*out)[*n].reason);
        free((*out)[*n].channel);
        memset(&(*out)[*n], 0, sizeof **out);
        if (r == WSG_ENOMEM) {
            rc = r;
            goto out;
        }
        (*skipped)++;
    }
out:
    json_decref(root);
    if (rc != 0) {
        disp_actions_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}
