/*
 * api_edge_cache.c — which edge holds a connection, remembered for a few
 * seconds (cluster mode). A send, disconnect or subscribe must go to the
 * connection's edge; reading that from PostgreSQL on every call was the
 * cluster API's main cost per send. A connection never moves between edges,
 * so a remembered answer stays right while the connection lives; after it
 * closes, its edge answers "gone" (410) exactly as when the store still
 * listed it. A dead edge has no subscription left on NATS, so a command to
 * it comes back at once as "no responders", which is "gone" too (410); an
 * edge cut off but still subscribed times out (504) — both as with the
 * store's row, which stays until the registry declares the edge lost. An
 * entry is forgotten after API_EDGE_CACHE_TTL_MS, and at once when its edge
 * did not answer 0.
 *
 * Direct-mapped (a new entry replaces whatever hashed to its slot), slots
 * allocated untouched so only used ones cost memory; 64 striped locks. Any
 * thread.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/hash.h"
#include "control-api/api_int.h"

#define SLOTS 65536 /* power of two */
#define STRIPES 64
#define ID_MAX 48
#define EDGE_MAX 80

typedef struct {
    char conn[ID_MAX];
    char edge[EDGE_MAX];
    int64_t until_ms;
} slot_t;

struct api_edge_cache {
    pthread_mutex_t mu[STRIPES];
    slot_t *slots;
};

static uint32_t hash(const char *s)
{
    return (uint32_t)(wsg_hash(s) & (SLOTS - 1));
}

api_edge_cache_t *api_edge_cache_new(void)
{
    api_edge_cache_t *c = calloc(1, sizeof *c);
    if (!c || !(c->slots = calloc(SLOTS, sizeof *c->slots))) {
        free(c);
        return NULL;
    }
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    return c;
}

void api_edge_cache_free(api_edge_cache_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    free(c->slots);
    free(c);
}

int api_edge_cache_get(api_edge_cache_t *c, const char *conn_id, char *edge, size_t len)
{
    uint32_t h = hash(conn_id);
    slot_t *s = &c->slots[h];
    int hit = 0;
    int64_t now = wsg_mono_ms();
    pthread_mutex_lock(&c->mu[h % STRIPES]);
    if (s->until_ms > now && strcmp(s->conn, conn_id) == 0 && strlen(s->edge) < len) {
        memcpy(edge, s->edge, strlen(s->edge) + 1);
        hit = 1;
    }
    pthread_mutex_unlock(&c->mu[h % STRIPES]);
    return hit;
}

void api_edge_cache_put(api_edge_cache_t *c, const char *conn_id, const char *edge_id)
{
    size_t cl = strlen(conn_id), el = strlen(edge_id);
    if (cl >= ID_MAX || el >= EDGE_MAX || !el)
        return; /* not remembered: the store answers next time */
    uint32_t h = hash(conn_id);
    slot_t *s = &c->slots[h];
    pthread_mutex_lock(&c->mu[h % STRIPES]);
    memcpy(s->conn, conn_id, cl + 1);
    memcpy(s->edge, edge_id, el + 1);
    s->until_ms = wsg_mono_ms() + API_EDGE_CACHE_TTL_MS;
    pthread_mutex_unlock(&c->mu[h % STRIPES]);
}

void api_edge_cache_drop(api_edge_cache_t *c, const char *conn_id)
{
    uint32_t h = hash(conn_id);
    slot_t *s = &c->slots[h];
    pthread_mutex_lock(&c->mu[h % STRIPES]);
    if (strcmp(s->conn, conn_id) == 0)
        s->until_ms = 0;
    pthread_mutex_unlock(&c->mu[h % STRIPES]);
}
