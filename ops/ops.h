/* SPDX-License-Identifier: MIT */
/*
 * ops.h — the operations listener of the cluster roles that have no HTTP
 * server of their own (edge, dispatch): GET /healthz (the process answers),
 * GET /readyz (200 when the role's ready callback says so, else 503 with the
 * reason) and GET /metrics (Prometheus text of common/metrics.h), on
 * ops.listen (docs/contract.md §7). The API role serves the same paths on api.listen.
 *
 * One libmicrohttpd thread answers every request, so the ready callback is
 * only ever called from that thread (it may keep a store handle of its own).
 * ops_start/ops_stop are called by the role's main thread.
 */
#ifndef WSG_OPS_H
#define WSG_OPS_H

#include <stdarg.h>
#include <stddef.h>

typedef struct ops ops_t;

/* Returns 1 when the role can take work, 0 when not, with why (a short
 * phrase, e.g. "draining", "bus down") written into why. Also refreshes the
 * health gauges: /metrics calls it before rendering. */
typedef int (*ops_ready_fn)(void *ud, char *why, size_t whylen);

/* Listens on listen ("host:port", common/listen.h; port 0: any free port). */
int ops_start(ops_t **out, const char *listen, ops_ready_fn ready, void *ud, char *err,
              size_t errlen);

/* The bound port (useful with port 0). */
int ops_port(const ops_t *o);

/* Stops listening and frees; NULL is allowed. */
void ops_stop(ops_t *o);

/* Shared with the control API's libmicrohttpd daemon: an
 * MHD_OPTION_EXTERNAL_LOGGER that logs one warning whose message is cls (a
 * string), and the port a started daemon is bound to (0 if unknown). */
void ops_mhd_log(void *cls, const char *fmt, va_list ap);
struct MHD_Daemon;
int ops_mhd_port(struct MHD_Daemon *mhd);

#endif
