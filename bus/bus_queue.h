/* SPDX-License-Identifier: MIT */
/*
 * bus_queue.h — the durable client-event queue of the in-process bus: a
 * bounded in-memory hand-off, one writer thread that group-commits events
 * into a SQLite file (WAL) and one delivery thread per consumer group that
 * hands it the committed events. Only bus_inproc.c uses it; docs/bus.md has the
 * schema and the guarantees.
 *
 * Threads: bq_open, bq_subscribe, bq_tune, bq_start and bq_free from the
 * owning thread (bq_subscribe and bq_tune before bq_start); bq_publish,
 * bq_done, bq_last_seq, bq_capacity and bq_healthy from any thread. Ack
 * callbacks run on the writer thread, or inline in bq_publish when the bus
 * is stopping;
 * a group's callback runs on that group's delivery thread.
 */
#ifndef WSG_BUS_QUEUE_H
#define WSG_BUS_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"

typedef struct bq bq_t;

/* Opens (creating if needed) the queue file; path NULL = in memory. owner
 * is stored in every delivery for bus_event_done(). Returns 0, WSG_EBUS
 * (detail in err: SQLite error, file locked by another process). */
int bq_open(bq_t **out, bus_t *owner, const char *path, char *err, size_t errlen);

/* Registers a consumer group. Returns 0, WSG_EINVAL (bad name or mask,
 * after bq_start), WSG_EEXISTS (same name twice), WSG_EFULL (too many). */
int bq_subscribe(bq_t *q, const char *group, uint32_t type_mask, bus_event_fn fn, void *ud);
int bq_on_run_end(bq_t *q, const char *group, bus_run_end_fn fn);

void bq_tune(bq_t *q, uint32_t queue_max, uint32_t window);

/* Assigns durable group ids, counts one more attempt for every unconsumed
 * event and starts the threads; redelivery comes first. Returns 0, WSG_EBUS. */
int bq_start(bq_t *q);

/* bus_event_publish(): 0 (taken), WSG_EFULL (no room, nothing taken),
 * WSG_EINVAL. */
int bq_publish(bq_t *q, const bus_event_t *ev, bus_event_ack_fn cb, void *ud);
/* bus_event_capacity(): a share of queue_max events and of the byte bound. */
void bq_capacity(bq_t *q, size_t *events, size_t *bytes);
void bq_done(bq_t *q, bus_delivery_t *d);
int bq_last_seq(bq_t *q, const char *conn_id, uint64_t *seq);
int bq_healthy(bq_t *q);

/* Stops delivery, commits and acknowledges what is pending, joins the
 * threads, frees every delivery still held. NULL allowed. */
void bq_free(bq_t *q);

#endif
