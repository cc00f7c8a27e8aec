/* SPDX-License-Identifier: MIT */
/*
 * dispatch.h — turns client events from the bus into signed webhooks
 * (docs/contract.md §3) with libcurl multi: per-connection order, retries with
 * backoff, dead letters, batching, routing, response actions.
 *
 * Threads: disp_new/disp_start/disp_stop/disp_free from the owning thread;
 * deliveries run on the dispatcher's own thread.
 */
#ifndef WSG_DISPATCH_H
#define WSG_DISPATCH_H

#include <stddef.h>

#include "bus/bus.h"
#include "common/config.h"

typedef struct disp disp_t;

/* Creates the dispatcher; cfg and bus are borrowed and must outlive it.
 * Registers the "dispatch" consumer group, so call it before bus_start(). */
int disp_new(disp_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen);

/* Starts the delivery thread. */
int disp_start(disp_t *d, char *err, size_t errlen);

/* Stops once the requests in flight finish, or at the latest grace_ms from
 * now (capped at DISP_STOP_GRACE_MS; 0: abandon them at once). Events not yet
 * acknowledged stay in the bus and are delivered again after restart, so
 * abandoning a request loses nothing. */
void disp_stop(disp_t *d, int64_t grace_ms);
void disp_free(disp_t *d);

#endif
