/* SPDX-License-Identifier: MIT */
/*
 * edge_map.c — a small chained hash map from strings to pointers, used by
 * the edge for its connection, channel, per-IP and per-user indexes. Grows
 * by doubling; keys are copied. Service thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "common/hash.h"
#include "ws-edge/edge_int.h"

static size_t map_hash(const char *s)
{
    return (size_t)wsg_hash(s);
}

static void map_grow(edge_map_t *m)
{
    size_t nb = m->nb ? m->nb * 2 : 16;
    edge_map_ent_t **b = calloc(nb, sizeof *b);
    if (!b)
        abort();
    for (size_t i = 0; i < m->nb; i++) {
        edge_map_ent_t *x = m->b[i], *next;
        for (; x; x = next) {
            next = x->next;
            size_t j = map_hash(x->key) & (nb - 1);
            x->next = b[j];
            b[j] = x;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

void *edge_map_get(const edge_map_t *m, const char *key)
{
    if (!m->nb)
        return NULL;
    for (edge_map_ent_t *x = m->b[map_hash(key) & (m->nb - 1)]; x; x = x->next)
        if (strcmp(x->key, key) == 0)
            return x->val;
    return NULL;
}

void edge_map_put(edge_map_t *m, const char *key, void *val)
{
    if (m->nb) {
        for (edge_map_ent_t *x = m->b[map_hash(key) & (m->nb - 1)]; x; x = x->next)
            if (strcmp(x->key, key) == 0) {
                x->val = val;
                return;
            }
    }
    if (m->n + 1 > m->nb)
        map_grow(m);
    size_t kl = strlen(key);
    edge_map_ent_t *x = malloc(sizeof *x + kl + 1);
    if (!x)
        abort();
    memcpy(x->key, key, kl + 1);
    x->val = val;
    size_t j = map_hash(key) & (m->nb - 1);
    x->next = m->b[j];
    m->b[j] = x;
    m->n++;
}

void *edge_map_del(edge_map_t *m, const char *key)
{
    if (!m->nb)
        return NULL;
    edge_map_ent_t **pp = &m->b[map_hash(key) & (m->nb - 1)];
    for (; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            edge_map_ent_t *x = *pp;
            void *v = x->val;
            *pp = x->next;
            free(x);
            m->n--;
            return v;
        }
    }
    return NULL;
}

void edge_map_each(const edge_map_t *m, void (*fn)(void *ud, const char *key, void *val), void *ud)
{
    for (size_t i = 0; i < m->nb; i++)
        for (edge_map_ent_t *x = m->b[i]; x; x = x->next)
            fn(ud, x->key, x->val);
}

void edge_map_free(edge_map_t *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        edge_map_ent_t *x = m->b[i], *next;
        for (; x; x = next) {
            next = x->next;
            free(x);
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}
