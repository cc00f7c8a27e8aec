/* SPDX-License-Identifier: MIT */
/*
 * api_deadline.h — total (not idle) deadlines for control-API connections,
 * so that a client sending a byte every few seconds cannot hold a
 * connection slot forever (libmicrohttpd 0.9.75's own timeout only counts
 * idle time, and its per-connection timeout option is idle time too).
 *
 * Each connection carries one deadline (monotonic ms, 0 = none) that the
 * request's life moves along (api.c): connected or previous answer sent ->
 * the next request line is due within api.connection_timeout; request line
 * read -> headers and body due within api.request_timeout; request complete
 * -> none while the handler works (a suspended request ends with its bus
 * command's own timeout); answer queued -> the client must take it within
 * api.request_timeout. A watchdog thread shuts down (shutdown(2)) the
 * socket of every connection past its deadline; libmicrohttpd then sees the
 * end of the stream and closes the connection on its own thread, which
 * frees the slot and the per-IP count.
 *
 * fd reuse: a socket is registered in the MHD_CONNECTION_NOTIFY_STARTED
 * callback and unregistered in MHD_CONNECTION_NOTIFY_CLOSED, which
 * libmicrohttpd 0.9.75 calls before it close()s the fd (daemon.c,
 * MHD_cleanup_connections and new_connection_process_). The watchdog calls
 * shutdown() only under the registry lock on a registered socket, so the fd
 * it shuts down is always still that connection's.
 *
 * Threads: api_deadline_notify runs on MHD threads; api_deadline_set on the
 * MHD thread serving the connection; the watchdog on its own thread;
 * new/stop/free from the thread that owns the API.
 */
#ifndef WSG_API_DEADLINE_H
#define WSG_API_DEADLINE_H

#include <microhttpd.h>
#include <stdint.h>

typedef struct api_deadlines api_deadlines_t;
typedef struct api_sock api_sock_t;

/* Creates the registry and starts its watchdog thread. line_ms: what a new
 * or kept-alive connection gets to send its next request line. Returns 0 or
 * WSG_ENOMEM / WSG_EIO (thread). */
int api_deadlines_new(api_deadlines_t **out, uint64_t line_ms);

/* Stops the watchdog (no socket is shut down after it returns). Call before
 * MHD_stop_daemon. NULL is allowed. */
void api_deadlines_stop(api_deadlines_t *d);

/* Frees the registry; call after MHD_stop_daemon (every connection has been
 * unregistered by then). NULL is allowed. */
void api_deadlines_free(api_deadlines_t *d);

/* The MHD_OPTION_NOTIFY_CONNECTION callback; cls is the api_deadlines_t. */
void api_deadline_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                         enum MHD_ConnectionNotificationCode toe);

/* The registered socket of conn (borrowed, valid until the connection
 * closes), or NULL. */
api_sock_t *api_deadline_sock(struct MHD_Connection *conn);

/* Sets s's deadline to ms from now; 0: none. s may be NULL. */
void api_deadline_set(api_sock_t *s, uint64_t ms);

#endif
