/* SPDX-License-Identifier: MIT */
/*
 * edge.h — the client side (docs/contract.md §2): holds WebSocket connections with
 * libwebsockets, authenticates handshakes, enforces limits, turns client
 * events into bus events and applies bus commands and publishes to sockets.
 *
 * Threads: edge_new/edge_free on the owning thread; edge_run() serves the
 * first of the edge's edge.threads loops on the calling thread and the
 * others on threads of its own (each an lws context: Debian's lws has
 * LWS_MAX_SMP 1), and returns after edge_stop() once every loop's sockets
 * are closed and their disconnect events accepted, or when shutdown_grace
 * expires. edge_stop() may be called from any thread.
 */
#ifndef WSG_EDGE_H
#define WSG_EDGE_H

#include <stddef.h>

#include "bus/bus.h"
#include "common/config.h"

typedef struct edge edge_t;

/* Creates the edge and binds its listening socket (cfg->edge.listen).
 * cfg and bus are borrowed and must outlive the edge. Registers the edge's
 * bus handlers, so call it before bus_start(). One edge per process:
 * WSG_EEXISTS while another is alive (bus callbacks arriving after
 * edge_free() are answered WSG_EGONE through that process-wide slot). */
int edge_new(edge_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen);

/* Serves until stopped and drained. Returns 0 or a WSG_E* code. */
int edge_run(edge_t *e);

/* Begins graceful shutdown: stop accepting, close sockets with 1001, flush. */
void edge_stop(edge_t *e);

/* The cluster may have declared this edge lost (it was not heard for
 * cluster.edge_timeout): closes every client with 1012 "edge lost contact
 * with the cluster", so none stays open without a row or after its
 * edge_lost disconnect; each disconnect carries the id an API gave the
 * edge_lost one (wsg_disconnect_event_id), so the backend gets one. Keeps
 * serving new connections. Any thread. */
void edge_fence(edge_t *e);

/* Reloads edge.tls's certificate and key (SIGHUP; any thread): new
 * connections get them, open ones keep theirs. On a bad file the old ones
 * stay and the error is logged; returns 0 or WSG_ECONFIG. No-op without TLS. */
int edge_tls_reload(void);

/* The port actually bound (useful with port 0). */
int edge_port(const edge_t *e);

void edge_free(edge_t *e);

#endif
