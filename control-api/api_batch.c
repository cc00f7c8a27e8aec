/* SPDX-License-Identifier: MIT */
/*
 * api_batch.c — POST /v1/batch: up to 100 control-API requests in one body,
 *   {"requests":[{"method":"POST","path":"/v1/connections/ID/messages",
 *                 "body":{"data":"hi"}}, ...]}
 * answered 200 with {"results":[{"status":200,"body":{...}}, ...]} in the
 * same order. Each item runs through the same routing table under the
 * batch's token (its own scope check applies); a string "body" is sent as
 * text/plain unless "content_type" says otherwise, any other JSON value as
 * application/json. Items run in order, each after the previous one was
 * answered (a subscribe is applied before the publish that follows it); an
 * item waiting for the bus suspends the batch, not an MHD thread. A batch
 * cannot contain a batch.
 *
 * Ownership: the parsed request document is freed as soon as every item is
 * prepared, before the first one runs. Everything an item's api_req_t
 * points to therefore lives in its batch_item_t (body and content type are
 * copies made by prepare(), path segments and query belong to the api_req_t
 * as for an HTTP request); finish_batch() frees them all.
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "control-api/api_int.h"

#define BATCH_MAX 100

enum { B_RUNNING = 0, B_WAITING = 1, B_DONE = 2 };

typedef struct {
    api_req_t r;
    char *body;  /* owned: r.body points here (or to "") */
    char *ctype; /* owned: r.ctype points here, or to a literal default */
} batch_item_t;

typedef struct {
    batch_item_t *items;
    size_t n, next;
    atomic_int st; /* the current item: RUNNING -> WAITING/DONE */
} batch_t;

/* Runs items from b->next until one has to wait for the bus; the last one
 * finishes the batch. */
static void pump(api_req_t *r)
{
    batch_t *b = r->scratch;
    while (b->next < b->n) {
        api_req_t *c = &b->items[b->next++].r;
        if (c->status != -1)
            continue; /* refused by prepare() */
        atomic_store(&b->st, B_RUNNING);
        if (api_route(c) == API_DONE)
            continue;
        if (atomic_exchange(&b->st, B_WAITING) == B_DONE)
            continue; /* the reply came inline */
        return;       /* item_done() resumes */
    }
    api_req_reply(r, 0);
}

static void item_done(api_req_t *child)
{
    api_req_t *r = child->owner;
    batch_t *b = r->scratch;
    if (atomic_exchange(&b->st, B_DONE) == B_WAITING)
        pump(r);
}

static void finish_batch(api_req_t *r)
{
    batch_t *b = r->scratch;
    json_t *res = json_array();
    for (size_t i = 0; i < b->n; i++) {
        api_req_t *c = &b->items[i].r;
        json_t *o = json_pack("{s:i}", "status", c->status);
        if (c->resp)
            json_object_set(o, "body", c->resp);
        else if (c->queued)
            json_object_set_new(o, "body", json_loads(API_QUEUED_BODY, 0, NULL));
        json_array_append_new(res, o);
        c->claims = NULL; /* the parent's */
        api_req_clear(c);
        free(b->items[i].body);
        free(b->items[i].ctype);
    }
    free(b->items);
    free(b);
    r->scratch = NULL;
    api_json(r, 200, json_pack("{s:o}", "results", res));
}

/* A copy of a JSON string (the document was parsed without JSON_ALLOW_NUL,
 * so it holds no NUL byte). Aborts on out-of-memory. */
static char *string_copy(const json_t *v)
{
    char *s = strdup(json_string_value(v));
    if (!s)
        abort();
    return s;
}

/* The item's method, or 0 when it is missing or not one of ours. */
static int item_method(const json_t *it)
{
    const char *m = json_string_value(json_object_get(it, "method"));
    return !m                         ? 0
           : strcmp(m, "GET") == 0    ? API_GET
           : strcmp(m, "PUT") == 0    ? API_PUT
           : strcmp(m, "POST") == 0   ? API_POST
           : strcmp(m, "DELETE") == 0 ? API_DELETE
                                      : 0;
}

/* Splits the item's "path" (with an optional query) into c. Returns 0, or
 * answers the item 400 and returns -1. */
static int item_path(api_req_t *c, const json_t *jpath)
{
    char *copy = string_copy(jpath);
    char *q = strchr(copy, '?');
    if (q)
        *q++ = 0;
    int rc = api_split_path(copy, c->segs, &c->nsegs);
    if (rc == 0)
        rc = api_parse_query(q, c);
    free(copy);
    if (rc != 0) {
        api_problem(c, 400, "bad path or query");
        return -1;
    }
    return 0;
}

/* Prepares item it from one element of "requests"; answers it itself on bad
 * input. The item keeps nothing that points into it (see the top). */
static void prepare(api_req_t *parent, batch_item_t *item, const json_t *it)
{
    api_req_t *c = &item->r;
    const json_t *jpath = json_object_get(it, "path"), *jb = json_object_get(it, "body");
    const json_t *jct = json_object_get(it, "content_type");
    c->a = parent->a;
    c->claims = parent->claims;
    c->owner = parent;
    c->done = item_done;
    c->method = item_method(it);
    if (!json_is_object(it) || !c->method || !json_is_string(jpath)) {
        api_problem(c, 400, "each request needs a method (GET/PUT/POST/DELETE) and a path");
        return;
    }
    if (jct && !json_is_string(jct)) {
        api_problem(c, 400, "content_type must be a string");
        return;
    }
    if (item_path(c, jpath) != 0)
        return;
    if (c->nsegs == 2 && strcmp(c->segs[0], "v1") == 0 && strcmp(c->segs[1], "batch") == 0) {
        api_problem(c, 400, "a batch cannot contain a batch");
        return;
    }
    if (json_is_string(jb)) {
        item->body = string_copy(jb);
        c->ctype = "text/plain";
    } else if (jb) {
        item->body = json_dumps(jb, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!item->body)
            abort();
        c->ctype = "application/json";
    }
    if (jct)
        c->ctype = item->ctype = string_copy(jct);
    c->body = item->body ? item->body : "";
    c->body_len = strlen(c->body);
    c->status = -1; /* routed */
}

int api_h_batch(api_req_t *r)
{
    json_error_t je;
    if (!api_media_is(r->ctype, "application/json"))
        return api_problem(r, 415, "a batch is application/json");
    json_t *doc = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    json_t *reqs = json_object_get(doc, "requests");
    if (!doc || !json_is_array(reqs)) {
        json_decref(doc);
        return api_problem(r, 400, "body must be {\"requests\":[...]}%s%s", doc ? "" : ": ",
                           doc ? "" : je.text);
    }
    size_t n = json_array_size(reqs);
    if (n == 0 || n > BATCH_MAX) {
        json_decref(doc);
        return api_problem(r, 400, "a batch holds 1..%d requests", BATCH_MAX);
    }
    batch_t *b = calloc(1, sizeof *b);
    if (!b || !(b->items = calloc(n, sizeof *b->items)))
        abort();
    b->n = n;
    r->scratch = b;
    for (size_t i = 0; i < n; i++)
        prepare(r, &b->items[i], json_array_get(reqs, i));
    json_decref(doc); /* nothing in the items points into it */
    api_req_start(r, 1, finish_batch);
    pump(r);
    return API_ASYNC;
}
