/*
 * api.h — the control API (SPEC.md §4) on libmicrohttpd, and the registry
 * that keeps the store's connections/subscriptions current from bus events.
 *
 * Threads: api_new/api_start/api_stop/api_free from the owning thread;
 * requests are served on libmicrohttpd's own threads.
 */
#ifndef WSG_API_H
#define WSG_API_H

#include <stddef.h>

#include "bus/bus.h"
#include "common/config.h"

typedef struct api api_t;

/* Creates the API; cfg and bus are borrowed and must outlive it. Opens its
 * own store handles from cfg->store. Registers bus consumers (registry,
 * heartbeats), so call it before bus_start(). */
int api_new(api_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen);

/* Starts listening on cfg->api.listen. */
int api_start(api_t *a, char *err, size_t errlen);

/* The port actually bound (useful with port 0). */
int api_port(const api_t *a);

void api_stop(api_t *a);
void api_free(api_t *a);

#endif
