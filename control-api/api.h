/* SPDX-License-Identifier: MIT */
/*
 * api.h — the control API (docs/contract.md §4) on libmicrohttpd, and the registry
 * that keeps the store's connections/subscriptions current from bus events.
 *
 * Threads: api_new/api_start/api_stop/api_free from the owning thread;
 * requests are served on libmicrohttpd's own threads (api.threads of them);
 * the registry runs on bus threads and one maintenance thread of its own.
 * Endpoints, scopes and errors: docs/api.md; internals: api_int.h.
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

/* Starts the registry's maintenance thread (which also sends, shortly after
 * start, the edge_lost disconnects of connections a previous standalone run
 * left in the store) and listens on cfg->api.listen (any form
 * common/listen.h takes: IPv4, a name, or a bracketed IPv6 address).
 * Call after bus_start(). Returns 0, WSG_ECONFIG, WSG_EIO. */
int api_start(api_t *a, char *err, size_t errlen);

/* Reloads api.tls's certificate, key and client CAs (SIGHUP; any thread):
 * handshakes from now on use them, open connections keep theirs. On a bad
 * file the old ones stay and the error is logged. No-op without TLS. */
int api_tls_reload(void);

/* The port actually bound (useful with port 0). */
int api_port(const api_t *a);

void api_stop(api_t *a);
void api_free(api_t *a);

#endif
