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
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "control-api/api_int.h"

#define BATCH_MAX 100

enum { B_RUNNING = 0, B_WAITING = 1, B_DONE = 2 };

typedef struct {
    api_req_t *items;
    char **bodies;
    size_t n, next;
    atomic_int st; /* the current item: RUNNING -> WAITING/DONE */
} batch_t;

/* Runs items from b->next until one has to wait for the bus; the last one
 * finishes the batch. */
static void pump(api_req_t *r)
{
    batch_t *b = r->scratch;
    while (b->next < b->n) {
        api_req_t *c = &b->items[b->next++];
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
        api_req_t *c = &b->items[i];
        json_t *o = json_pack("{s:i}", "status", c->status);
        if (c->resp)
            json_object_set(o, "body", c->resp);
        else if (c->queued)
            json_object_set_new(o, "body", json_loads(API_QUEUED_BODY, 0, NULL));
        json_array_append_new(res, o);
        c->claims = NULL; /* the parent's */
        api_req_clear(c);
        free(b->bodies[i]);
    }
    free(b->items);
    free(b->bodies);
    free(b);
    r->scratch = NULL;
    api_json(r, 200, json_pack("{s:o}", "results", res));
}

/* Prepares child from one item; answers the child itself on bad input. */
static void prepare(api_req_t *parent, api_req_t *c, json_t *it, char **body)
{
    const char *m = json_string_value(json_object_get(it, "method"));
    const char *path = json_string_value(json_object_get(it, "path"));
    json_t *jb = json_object_get(it, "body");
    const char *ct = json_string_value(json_object_get(it, "content_type"));
    c->a = parent->a;
    c->claims = parent->claims;
    c->owner = parent;
    c->done = item_done;
    c->method = !m                         ? 0
                : strcmp(m, "GET") == 0    ? API_GET
                : strcmp(m, "PUT") == 0    ? API_PUT
                : strcmp(m, "POST") == 0   ? API_POST
                : strcmp(m, "DELETE") == 0 ? API_DELETE
                                           : 0;
    if (!json_is_object(it) || !c->method || !path) {
        api_problem(c, 400, "each request needs a method (GET/PUT/POST/DELETE) and a path");
        return;
    }
    char *copy = strdup(path);
    char *q = strchr(copy, '?');
    if (q)
        *q++ = 0;
    int bad = api_split_path(copy, c->segs, &c->nsegs) != 0 || api_parse_query(q, c) != 0;
    free(copy);
    if (bad) {
        api_problem(c, 400, "bad path or query");
        return;
    }
    if (c->nsegs == 2 && strcmp(c->segs[0], "v1") == 0 && strcmp(c->segs[1], "batch") == 0) {
        api_problem(c, 400, "a batch cannot contain a batch");
        return;
    }
    if (json_is_string(jb)) {
        *body = strdup(json_string_value(jb));
        c->ctype = ct ? ct : "text/plain";
    } else if (jb) {
        *body = json_dumps(jb, JSON_COMPACT | JSON_ENCODE_ANY);
        c->ctype = ct ? ct : "application/json";
    }
    c->body = *body ? *body : "";
    c->body_len = *body ? strlen(*body) : 0;
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
    b->items = calloc(n, sizeof *b->items);
    b->bodies = calloc(n, sizeof *b->bodies);
    if (!b || !b->items || !b->bodies)
        abort();
    b->n = n;
    r->scratch = b;
    for (size_t i = 0; i < n; i++)
        prepare(r, &b->items[i], json_array_get(reqs, i), &b->bodies[i]);
    json_decref(doc);
    api_req_start(r, 1, finish_batch);
    pump(r);
    return API_ASYNC;
}
