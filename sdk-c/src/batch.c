/* SPDX-License-Identifier: MIT */
/*
 * batch.c — POST /v1/batch: up to 100 control-API requests in one HTTP
 * request, run by the gateway in order; per-item status and body.
 * Threads: a wsgate_batch is used by one thread at a time; running it on a
 * shared client is fine.
 */
#include <stdlib.h>
#include <string.h>

#include "sdk.h"

#define BATCH_MAX 100

struct wsgate_batch {
    json_t *requests; /* array of {"method","path","body"?,"content_type"?} */
    json_t *results;  /* array from the last run, or NULL */
    char **bodies;    /* JSON text of each result's body, or NULL */
    size_t n_bodies;
};

wsgate_status wsgate_batch_new(wsgate_batch **out)
{
    if (!out)
        return sdk_fail(WSGATE_EINVAL, "out is NULL");
    *out = calloc(1, sizeof **out);
    if (*out && !((*out)->requests = json_array())) {
        free(*out);
        *out = NULL;
    }
    return *out ? WSGATE_OK : sdk_fail(WSGATE_ENOMEM, "out of memory");
}

static void results_clear(wsgate_batch *b)
{
    for (size_t i = 0; i < b->n_bodies; i++)
        free(b->bodies[i]);
    free(b->bodies);
    b->bodies = NULL;
    b->n_bodies = 0;
    json_decref(b->results);
    b->results = NULL;
}

void wsgate_batch_free(wsgate_batch *b)
{
    if (!b)
        return;
    results_clear(b);
    json_decref(b->requests);
    free(b);
}

wsgate_status wsgate_batch_add(wsgate_batch *b, const char *method, const char *path,
                               const char *content_type, const char *body)
{
    if (!b || !method || !path || path[0] != '/')
        return sdk_fail(WSGATE_EINVAL, "batch, method and a path from / are required");
    if (strcmp(method, "GET") && strcmp(method, "POST") && strcmp(method, "PUT") &&
        strcmp(method, "DELETE"))
        return sdk_fail(WSGATE_EINVAL, "method must be GET, POST, PUT or DELETE");
    if (json_array_size(b->requests) >= BATCH_MAX)
        return sdk_fail(WSGATE_EINVAL, "a batch holds at most %d requests", BATCH_MAX);
    if ((body && !sdk_utf8(body, strlen(body))) || !sdk_utf8(path, strlen(path)))
        return sdk_fail(WSGATE_EINVAL, "path and body must be UTF-8");
    json_t *it = json_pack("{s:s,s:s}", "method", method, "path", path);
    int bad = !it;
    if (it && body)
        bad |= json_object_set_new(it, "body", json_string(body));
    if (it && body && content_type)
        bad |= json_object_set_new(it, "content_type", json_string(content_type));
    if (bad) {
        json_decref(it);
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    }
    if (json_array_append_new(b->requests, it) != 0) /* takes it even when it fails */
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    return WSGATE_OK;
}

/* Adds method prefix seg1 [mid [seg2]] [?exclude=] with seg1, seg2 escaped. */
static wsgate_status add_path(wsgate_batch *b, const char *method, const char *prefix,
                              const char *seg1, const char *mid, const char *seg2,
                              const char *exclude, const char *text)
{
    if (!seg1 || !*seg1 || (seg2 && !*seg2))
        return sdk_fail(WSGATE_EINVAL, "names are required");
    sdk_buf_t p = {0};
    sdk_buf_str(&p, prefix);
    sdk_buf_escaped(&p, seg1);
    sdk_buf_str(&p, mid);
    if (seg2)
        sdk_buf_escaped(&p, seg2);
    sdk_buf_query(&p, "exclude", exclude);
    wsgate_status st = p.oom ? sdk_fail(WSGATE_ENOMEM, "out of memory")
                             : wsgate_batch_add(b, method, p.p, NULL, text);
    sdk_buf_free(&p);
    return st;
}

wsgate_status wsgate_batch_send_text(wsgate_batch *b, const char *conn_id, const char *text)
{
    if (!text)
        return sdk_fail(WSGATE_EINVAL, "text is required");
    return add_path(b, "POST", "/v1/connections/", conn_id, "/messages", NULL, NULL, text);
}

wsgate_status wsgate_batch_subscribe(wsgate_batch *b, const char *channel, const char *conn_id)
{
    return add_path(b, "PUT", "/v1/channels/", channel, "/connections/", conn_id, NULL, NULL);
}

wsgate_status wsgate_batch_unsubscribe(wsgate_batch *b, const char *channel, const char *conn_id)
{
    return add_path(b, "DELETE", "/v1/channels/", channel, "/connections/", conn_id, NULL, NULL);
}

wsgate_status wsgate_batch_publish_text(wsgate_batch *b, const char *channel, const char *text,
                                        const char *exclude_conn_id)
{
    if (!text)
        return sdk_fail(WSGATE_EINVAL, "text is required");
    return add_path(b, "POST", "/v1/channels/", channel, "/messages", NULL, exclude_conn_id, text);
}

static wsgate_status take_results(wsgate_batch *b, json_t *j)
{
    json_t *res = json_object_get(j, "results");
    if (!json_is_array(res) || json_array_size(res) != json_array_size(b->requests))
        return sdk_fail(WSGATE_EPROTO, "batch answer without one result per request");
    b->results = json_incref(res);
    b->bodies = calloc(json_array_size(res) + 1, sizeof *b->bodies);
    if (!b->bodies)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    b->n_bodies = json_array_size(res);
    for (size_t i = 0; i < b->n_bodies; i++) {
        json_t *body = json_object_get(json_array_get(res, i), "body");
        if (body && !(b->bodies[i] = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY)))
            return sdk_fail(WSGATE_ENOMEM, "out of memory");
    }
    return WSGATE_OK;
}

wsgate_status wsgate_batch_run(wsgate_client *c, wsgate_batch *b)
{
    if (!c || !b || json_array_size(b->requests) == 0)
        return sdk_fail(WSGATE_EINVAL, "client and a non-empty batch are required");
    results_clear(b);
    json_t *req = json_pack("{s:O}", "requests", b->requests), *ans = NULL;
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return sdk_fail(WSGATE_ENOMEM, "out of memory");
    sdk_req_t rq = {.method = "POST",
                    .path_query = "/v1/batch",
                    .content_type = "application/json",
                    .body = body,
                    .body_len = strlen(body)};
    wsgate_status st = sdk_call(c, &rq, &ans);
    free(body);
    if (st == WSGATE_OK)
        st = take_results(b, ans);
    json_decref(ans);
    if (st != WSGATE_OK)
        results_clear(b);
    return st;
}

size_t wsgate_batch_count(const wsgate_batch *b)
{
    return b ? json_array_size(b->requests) : 0;
}

int wsgate_batch_item_status(const wsgate_batch *b, size_t i)
{
    if (!b || !b->results)
        return 0;
    return (int)json_integer_value(json_object_get(json_array_get(b->results, i), "status"));
}

const char *wsgate_batch_item_body(const wsgate_batch *b, size_t i)
{
    return b && i < b->n_bodies ? b->bodies[i] : NULL;
}
