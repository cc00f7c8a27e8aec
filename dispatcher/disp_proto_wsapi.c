/* SPDX-License-Identifier: MIT */
/*
 * disp_proto_wsapi.c — seed "WS API Gateway" (route `protocol:
 * ws-api-gateway` on a backend stream; docs/compat.md says what matches
 * it). Each event goes as the seed's own frame, {"event":"open"|"message"|
 * "close","user":...[,"data":...]}, and the backend's actions name a user,
 * not a connection. The seed has no acknowledgements: the stream counts an
 * event delivered once its frame is written (disp_stream.c).
 *
 * The user table says which connection of the route a user is: the
 * delivery thread binds a user when it sends the user's open and unbinds it
 * with the close (disp_wsapi_track); the stream thread looks users up for
 * the backend's actions (disp_users_find; a user it does not know, whose
 * events another dispatcher's stream carries, is looked up in the
 * registry's store: disp_users_lookup). A close of a connection the user
 * no longer is (a newer connection's open went first: `replace`, or
 * reconnects whose events of two connections cross) is not sent: the
 * backend would take it for the newer connection's.
 *
 * Threads: the body is a pure function (delivery thread); the table is
 * under its own mutex, bound and unbound by the delivery thread, read by
 * the stream thread.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/hash.h"
#include "dispatcher/disp_proto.h"

typedef struct user_ent {
    struct user_ent *next;
    char *conn_id;
    char user[];
} user_ent_t;

struct disp_users {
    pthread_mutex_t mu;
    user_ent_t **b;
    size_t nb, n;
};

int disp_users_new(disp_users_t **out)
{
    disp_users_t *t = calloc(1, sizeof *t);
    if (!t || !(t->b = calloc(t->nb = 256, sizeof *t->b))) {
        free(t);
        return WSG_ENOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

void disp_users_free(disp_users_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nb; i++)
        for (user_ent_t *e = t->b[i], *n; e; e = n) {
            n = e->next;
            free(e->conn_id);
            free(e);
        }
    free(t->b);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* The slot of user's entry (the NULL at its chain's end when none); mu held. */
static user_ent_t **slot(disp_users_t *t, const char *user)
{
    user_ent_t **p = &t->b[wsg_hash(user) & (t->nb - 1)];
    while (*p && strcmp((*p)->user, user) != 0)
        p = &(*p)->next;
    return p;
}

/* Doubles the buckets once entries pass twice their number (mu held); on
 * no memory the chains just grow longer. */
static void grow(disp_users_t *t)
{
    size_t nb = t->nb * 2;
    user_ent_t **b = t->n > t->nb * 2 ? calloc(nb, sizeof *b) : NULL;
    if (!b)
        return;
    for (size_t i = 0; i < t->nb; i++)
        for (user_ent_t *e = t->b[i], *n; e; e = n) {
            n = e->next;
            user_ent_t **h = &b[wsg_hash(e->user) & (nb - 1)];
            e->next = *h;
            *h = e;
        }
    free(t->b);
    t->b = b;
    t->nb = nb;
}

static int users_bind(disp_users_t *t, const char *user, const char *conn_id)
{
    char *id = strdup(conn_id);
    if (!id)
        return WSG_ENOMEM;
    pthread_mutex_lock(&t->mu);
    user_ent_t **p = slot(t, user);
    if (!*p) {
        size_t n = strlen(user) + 1;
        if ((*p = calloc(1, sizeof **p + n)) != NULL) {
            memcpy((*p)->user, user, n);
            t->n++;
        }
    }
    int rc = *p ? 0 : WSG_ENOMEM;
    if (*p) {
        free((*p)->conn_id);
        (*p)->conn_id = id;
        id = NULL;
        grow(t);
    }
    pthread_mutex_unlock(&t->mu);
    free(id);
    return rc;
}

/* 1 when conn_id may close user: it was the user's connection (unbound
 * now), or the user has none (a close sent again after a stream drop); 0
 * when another connection is the user's now. */
static int users_unbind(disp_users_t *t, const char *user, const char *conn_id)
{
    pthread_mutex_lock(&t->mu);
    user_ent_t **p = slot(t, user), *e = *p;
    int ok = !e || strcmp(e->conn_id, conn_id) == 0;
    if (e && ok) {
        *p = e->next;
        t->n--;
        free(e->conn_id);
        free(e);
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

int disp_users_find(disp_users_t *t, const char *user, char **conn_id)
{
    pthread_mutex_lock(&t->mu);
    user_ent_t *e = *slot(t, user);
    char *id = e ? strdup(e->conn_id) : NULL;
    int rc = !e ? WSG_ENOTFOUND : id ? 0 : WSG_ENOMEM;
    pthread_mutex_unlock(&t->mu);
    *conn_id = id;
    return rc;
}

int disp_users_lookup(store_t *st, const char *route, const char *user, char **conn_id)
{
    *conn_id = NULL;
    store_conn_query_t q = {.user = user, .route = route, .limit = 1};
    store_conn_list_t l = {0};
    int rc = store_conn_list(st, &q, &l);
    if (rc == 0 && l.n == 0)
        rc = WSG_ENOTFOUND;
    if (rc == 0 && !(*conn_id = strdup(l.items[0].id)))
        rc = WSG_ENOMEM;
    store_conn_list_free(&l);
    return rc;
}

int disp_wsapi_track(disp_users_t *t, const bus_event_t *ev, bool *send)
{
    *send = true;
    if (ev->type == BUS_EV_MESSAGE)
        return 0;
    json_error_t je;
    json_t *env = json_loadb(ev->body ? ev->body : "", ev->body_len, 0, &je);
    const char *user = json_string_value(json_object_get(env, "user"));
    int rc = 0;
    if (user && ev->type == BUS_EV_CONNECT)
        rc = users_bind(t, user, ev->conn_id);
    else if (user)
        *send = users_unbind(t, user, ev->conn_id) != 0;
    json_decref(env);
    return rc;
}

/* The seed's frame of one envelope: "user" must be there (the edge admits
 * no connection without one on such a route). */
static int wsapi_frame(json_t *env, bus_event_type_t type, char **out)
{
    static const char *const names[] = {
        [BUS_EV_CONNECT] = "open", [BUS_EV_MESSAGE] = "message", [BUS_EV_DISCONNECT] = "close"};
    json_t *user = json_object_get(env, "user");
    if (!json_is_string(user) || type < BUS_EV_CONNECT || type > BUS_EV_DISCONNECT)
        return WSG_EPROTO;
    json_t *f = json_pack("{s:s,s:O}", "event", names[type], "user", user);
    if (f && type == BUS_EV_MESSAGE) {
        /* binary data stays base64 under its own name: the seed had text only */
        json_t *d = json_object_get(env, "data"), *b = json_object_get(env, "data_base64");
        if (!json_is_string(d) && !json_is_string(b)) {
            json_decref(f);
            return WSG_EPROTO;
        }
        json_object_set(f, json_is_string(d) ? "data" : "data_base64", json_is_string(d) ? d : b);
    }
    *out = f ? json_dumps(f, JSON_COMPACT) : NULL;
    json_decref(f);
    return *out ? 0 : WSG_ENOMEM;
}

static int wsapi_body(const wsg_route_conf_t *r, const bus_event_t *const *evs, size_t n,
                      const char **body, size_t *len, char **owned, char *err, size_t errlen)
{
    const bus_event_t *ev = evs[0];
    (void)r;
    (void)n; /* a stream sends one event per frame */
    *owned = NULL;
    json_error_t je;
    json_t *env = json_loadb(ev->body ? ev->body : "", ev->body_len, 0, &je);
    int rc = env ? wsapi_frame(env, ev->type, owned) : WSG_EPROTO;
    json_decref(env);
    if (rc == WSG_EPROTO)
        return wsg_errf(err, errlen, rc, "event %s: %s", ev->id,
                        env ? "no user, or a message without data" : "envelope is not JSON");
    if (rc == 0) {
        *body = *owned;
        *len = strlen(*owned);
    }
    return rc;
}

/* Never called: a stream route has no HTTP answers. */
static int wsapi_parse(const wsg_route_conf_t *r, const char *body, size_t len, bool opening,
                       disp_answer_t *out, char *err, size_t errlen)
{
    (void)r;
    (void)body;
    (void)len;
    (void)opening;
    (void)err;
    (void)errlen;
    memset(out, 0, sizeof *out);
    return 0;
}

const disp_proto_t disp_proto_wsapi = {
    .name = "ws-api-gateway",
    .content_type = "application/json",
    .strict_answer = false,
    .body = wsapi_body,
    .parse = wsapi_parse,
};
