/* SPDX-License-Identifier: MIT */
/*
 * api_edge_cache.c — which edge holds a connection (cluster mode), so that
 * a send, disconnect or subscribe goes straight to that edge without a
 * PostgreSQL read.
 *
 * Fed by every connect and disconnect event of the cluster as it is
 * published (bus_event_watch: api.c puts on connect, drops on disconnect),
 * and by the store's row when a lookup missed (api_edge_for). A connection
 * never moves between edges and its id is never reused, so an entry never
 * names an edge that did not hold that connection: at worst one it has
 * left, whose answer (WSG_EGONE, or NATS "no responders" for a dead edge)
 * is then the truth (410) and drops the entry. Missed events (NATS
 * reconnects) only cost misses or such stale entries, never a wrong answer.
 *
 * Bounded: SETS x WAYS entries (4-way set associative, the least recently
 * used of a set is evicted), ids that do not fit are not remembered. Edge
 * ids are kept once in a table of EDGES names; entries name their edge by
 * index and the table's generation, and a full table starts over with the
 * next generation (every entry of the old one becomes a miss). The slot
 * array is allocated untouched, so only used sets cost memory (at most
 * 8 MiB). Counts hits, misses and evictions (metrics.h).
 *
 * Threads: any. STRIPES locks over the sets, one over the edge table; a
 * lookup takes a set's lock, then the table's (never the other way).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "common/metrics.h"
#include "control-api/api_int.h"

#define WAYS 4
#define SETS 65536 /* power of two */
#define STRIPES 64
#define ID_MAX 24  /* an edge's ids are 22 characters */
#define EDGES 1024 /* power of two */
#define EDGE_MAX 128

typedef struct {
    char conn[ID_MAX]; /* "" = free */
    uint32_t gen;      /* of the edge table when the edge was named */
    uint16_t edge;     /* index into the edge table */
    uint16_t used;     /* the cache's tick at the last use (LRU in the set) */
} slot_t;

struct api_edge_cache {
    pthread_mutex_t mu[STRIPES];
    slot_t *slots; /* SETS * WAYS */
    atomic_uint tick;
    pthread_mutex_t edge_mu;
    uint32_t gen;
    size_t n_edges;
    char (*edges)[EDGE_MAX]; /* open addressing by hash; "" = free */
};

api_edge_cache_t *api_edge_cache_new(void)
{
    api_edge_cache_t *c = calloc(1, sizeof *c);
    if (!c || !(c->slots = calloc((size_t)SETS * WAYS, sizeof *c->slots)) ||
        !(c->edges = calloc(EDGES, sizeof *c->edges))) {
        if (c)
            free(c->slots);
        free(c);
        return NULL;
    }
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->mu[i], NULL);
    pthread_mutex_init(&c->edge_mu, NULL);
    c->gen = 1;
    return c;
}

void api_edge_cache_free(api_edge_cache_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->mu[i]);
    pthread_mutex_destroy(&c->edge_mu);
    free(c->slots);
    free(c->edges);
    free(c);
}

/* The index of edge_id in the table (added if new; a full table starts
 * over) and the table's generation. */
static uint16_t edge_index(api_edge_cache_t *c, const char *edge_id, uint32_t *gen)
{
    size_t len = strlen(edge_id) + 1;
    pthread_mutex_lock(&c->edge_mu);
    if (c->n_edges >= EDGES * 3 / 4) { /* keeps probes short */
        memset(c->edges, 0, EDGES * sizeof *c->edges);
        c->n_edges = 0;
        c->gen++;
    }
    size_t i = (size_t)wsg_hash(edge_id) & (EDGES - 1);
    while (c->edges[i][0] && strcmp(c->edges[i], edge_id) != 0)
        i = (i + 1) & (EDGES - 1);
    if (!c->edges[i][0]) {
        memcpy(c->edges[i], edge_id, len);
        c->n_edges++;
    }
    *gen = c->gen;
    pthread_mutex_unlock(&c->edge_mu);
    return (uint16_t)i;
}

static slot_t *set_of(api_edge_cache_t *c, const char *conn_id, pthread_mutex_t **mu)
{
    size_t set = (size_t)(wsg_hash(conn_id) >> 20) & (SETS - 1);
    *mu = &c->mu[set % STRIPES];
    return &c->slots[set * WAYS];
}

static slot_t *find(slot_t *set, const char *conn_id)
{
    for (int w = 0; w < WAYS; w++)
        if (strcmp(set[w].conn, conn_id) == 0)
            return &set[w];
    return NULL;
}

int api_edge_cache_get(api_edge_cache_t *c, const char *conn_id, char *edge, size_t len)
{
    int hit = 0;
    pthread_mutex_t *mu;
    slot_t *set = set_of(c, conn_id, &mu);
    if (*conn_id && strlen(conn_id) < ID_MAX) {
        pthread_mutex_lock(mu);
        slot_t *s = find(set, conn_id);
        if (s) {
            s->used = (uint16_t)atomic_fetch_add(&c->tick, 1);
            pthread_mutex_lock(&c->edge_mu);
            const char *name = c->edges[s->edge];
            size_t n = strlen(name);
            if (s->gen == c->gen && n && n < len) {
                memcpy(edge, name, n + 1);
                hit = 1;
            }
            pthread_mutex_unlock(&c->edge_mu);
            if (!hit)
                s->conn[0] = '\0'; /* its edge table was started over */
        }
        pthread_mutex_unlock(mu);
    }
    wsg_count(hit ? WSG_M_API_LOCATION_HITS : WSG_M_API_LOCATION_MISSES, 1);
    return hit;
}

void api_edge_cache_put(api_edge_cache_t *c, const char *conn_id, const char *edge_id)
{
    size_t cl = strlen(conn_id), el = strlen(edge_id);
    if (!cl || cl >= ID_MAX || !el || el >= EDGE_MAX)
        return; /* not remembered: the store answers next time */
    uint32_t gen;
    uint16_t idx = edge_index(c, edge_id, &gen);
    pthread_mutex_t *mu;
    slot_t *set = set_of(c, conn_id, &mu);
    pthread_mutex_lock(mu);
    slot_t *s = find(set, conn_id);
    uint16_t now = (uint16_t)atomic_fetch_add(&c->tick, 1);
    for (int w = 0; !s && w < WAYS; w++)
        if (!set[w].conn[0])
            s = &set[w];
    if (!s) { /* the least recently used (ticks compared modulo 2^16) */
        s = &set[0];
        for (int w = 1; w < WAYS; w++)
            if ((uint16_t)(now - set[w].used) > (uint16_t)(now - s->used))
                s = &set[w];
        wsg_count(WSG_M_API_LOCATION_EVICTIONS, 1);
    }
    memcpy(s->conn, conn_id, cl + 1);
    s->edge = idx;
    s->gen = gen;
    s->used = now;
    pthread_mutex_unlock(mu);
}

void api_edge_cache_drop(api_edge_cache_t *c, const char *conn_id)
{
    if (!*conn_id || strlen(conn_id) >= ID_MAX)
        return;
    pthread_mutex_t *mu;
    slot_t *set = set_of(c, conn_id, &mu);
    pthread_mutex_lock(mu);
    slot_t *s = find(set, conn_id);
    if (s)
        s->conn[0] = '\0';
    pthread_mutex_unlock(mu);
}
