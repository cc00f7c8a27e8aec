/* SPDX-License-Identifier: MIT */
/*
 * metrics.h — process-wide Prometheus metrics (docs/contract.md §7).
 *
 * Every metric is declared once in the X-macro lists below; there is no
 * registration at run time. Counters and gauges are relaxed atomics, so
 * updating one from a hot path costs one uncontended atomic add. Histograms
 * use fixed log-spaced buckets (seconds).
 *
 *   wsg_count(WSG_M_FRAMES_IN, 1);
 *   wsg_gauge_add(WSG_G_CONNECTIONS, -1);
 *   wsg_observe(WSG_H_WEBHOOK_SECONDS, 0.004);
 *
 * Threads: everything may be called from any thread.
 */
#ifndef WSG_METRICS_H
#define WSG_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* X(ENUM, name, help) — counters (names end in _total). */
#define WSG_COUNTERS(X)                                                                            \
    X(CONN_OPENED, "wsgate_connections_opened_total", "WebSocket connections accepted")            \
    X(CONN_CLOSED, "wsgate_connections_closed_total", "WebSocket connections closed")              \
    X(HANDSHAKE_REJECTED, "wsgate_handshakes_rejected_total", "Handshakes refused")                \
    X(FRAMES_IN, "wsgate_frames_in_total", "Messages received from clients")                       \
    X(FRAMES_OUT, "wsgate_frames_out_total", "Messages written to clients")                        \
    X(BYTES_IN, "wsgate_bytes_in_total", "Payload bytes received from clients")                    \
    X(BYTES_OUT, "wsgate_bytes_out_total", "Payload bytes written to clients")                     \
    X(SLOW_CONSUMER_CLOSES, "wsgate_slow_consumer_closes_total",                                   \
      "Connections closed because their outbound queue was full")                                  \
    X(EVENTS_ACCEPTED, "wsgate_events_accepted_total", "Client events made durable")               \
    X(EVENTS_REFUSED, "wsgate_events_refused_total",                                               \
      "Client events that could not be made durable")                                              \
    X(WEBHOOK_REQUESTS, "wsgate_webhook_requests_total", "Webhook requests sent")                  \
    X(WEBHOOK_2XX, "wsgate_webhook_responses_2xx_total", "Webhook responses 2xx")                  \
    X(WEBHOOK_4XX, "wsgate_webhook_responses_4xx_total", "Webhook responses 4xx")                  \
    X(WEBHOOK_5XX, "wsgate_webhook_responses_5xx_total", "Webhook responses 5xx")                  \
    X(WEBHOOK_ERRORS, "wsgate_webhook_errors_total", "Webhook transport errors and timeouts")      \
    X(WEBHOOK_RETRIES, "wsgate_webhook_retries_total", "Webhook deliveries retried")               \
    X(DEAD_LETTERS, "wsgate_dead_letters_total", "Events moved to the dead-letter store")          \
    X(PUBLISHES, "wsgate_publishes_total", "Channel publishes and broadcasts received")            \
    X(PUBLISH_DELIVERIES, "wsgate_publish_deliveries_total",                                       \
      "Frames queued to clients by publishes and broadcasts")                                      \
    X(API_REQUESTS, "wsgate_api_requests_total", "Control API requests")                           \
    X(API_ERRORS, "wsgate_api_errors_total", "Control API requests answered 4xx/5xx")              \
    X(API_DEADLINE_CLOSES, "wsgate_api_deadline_closes_total",                                     \
      "Control API connections closed because a request was not received in time")                 \
    X(API_LOCATION_EVICTIONS, "wsgate_api_location_cache_evictions_total",                         \
      "Connections the control API's location cache forgot to make room (cluster)")                \
    X(API_LOCATION_STORE_READS, "wsgate_api_location_store_reads_total",                           \
      "Store reads of a connection's edge after a location cache miss (cluster)")

/* X(ENUM, name, labels, help) — counters with labels; consecutive entries of
 * one name are one family. Counted with wsg_count like the others. */
#define WSG_LABELLED_COUNTERS(X)                                                                   \
    X(READ_PAUSES_BUS_FULL, "wsgate_read_pauses_total", "cause=\"bus_full\"",                      \
      "Times the edge stopped reading from a client while its events waited for the bus")          \
    X(READ_PAUSES_UNACKED, "wsgate_read_pauses_total", "cause=\"connection_unacked\"", NULL)       \
    X(UNDURABLE_CLOSES_NOSPC, "wsgate_undurable_closes_total", "cause=\"storage_full\"",           \
      "Clients closed with 1013 because one of their events could not be made durable")            \
    X(UNDURABLE_CLOSES_UNAVAILABLE, "wsgate_undurable_closes_total", "cause=\"bus_unavailable\"",  \
      NULL)                                                                                        \
    X(UNDURABLE_CLOSES_BUS, "wsgate_undurable_closes_total", "cause=\"bus_error\"", NULL)          \
    X(API_LOCATION_HITS, "wsgate_api_location_cache_lookups_total", "result=\"hit\"",              \
      "Control API lookups of the edge holding a connection in its location cache (cluster)")      \
    X(API_LOCATION_MISSES, "wsgate_api_location_cache_lookups_total", "result=\"miss\"", NULL)

/* X(ENUM, name, help) — gauges. */
#define WSG_GAUGES(X)                                                                              \
    X(CONNECTIONS, "wsgate_connections", "Open WebSocket connections on this process")             \
    X(EVENTS_PENDING, "wsgate_events_pending", "Client events accepted but not yet delivered")     \
    X(STORE_UP, "wsgate_store_up", "1 when the store answers")                                     \
    X(BUS_UP, "wsgate_bus_up", "1 when the bus is connected")

/* X(ENUM, name, help) — histograms in seconds. */
#define WSG_HISTOGRAMS(X)                                                                          \
    X(WEBHOOK_SECONDS, "wsgate_webhook_duration_seconds", "Webhook request latency")               \
    X(EVENT_SECONDS, "wsgate_event_delivery_seconds",                                              \
      "Client event accepted -> acknowledged by the backend")

enum {
#define WSG_M_ENUM(e, n, h) WSG_M_##e,
#define WSG_ML_ENUM(e, n, l, h) WSG_M_##e,
    WSG_COUNTERS(WSG_M_ENUM) WSG_LABELLED_COUNTERS(WSG_ML_ENUM) WSG_M__COUNT
#undef WSG_ML_ENUM
#undef WSG_M_ENUM
};
enum {
#define WSG_G_ENUM(e, n, h) WSG_G_##e,
    WSG_GAUGES(WSG_G_ENUM) WSG_G__COUNT
#undef WSG_G_ENUM
};
enum {
#define WSG_H_ENUM(e, n, h) WSG_H_##e,
    WSG_HISTOGRAMS(WSG_H_ENUM) WSG_H__COUNT
#undef WSG_H_ENUM
};

void wsg_count(int counter, uint64_t n);
void wsg_gauge_set(int gauge, int64_t v);
void wsg_gauge_add(int gauge, int64_t delta);
void wsg_observe(int histogram, double seconds);

uint64_t wsg_counter_value(int counter);
int64_t wsg_gauge_value(int gauge);
/* A histogram so far: *count observations summing to *sum seconds; q_le[i]
 * gets the upper bound of the bucket holding quantile q[i] (0 < q <= 1),
 * -1 with no observation, +Inf (HUGE_VAL) past the last bound. */
void wsg_histogram_read(int histogram, const double *q, double *q_le, size_t nq, uint64_t *count,
                        double *sum);

/* Renders every metric in Prometheus text format 0.0.4 into a new buffer
 * (caller frees). Returns 0 or WSG_ENOMEM. */
int wsg_metrics_render(char **out, size_t *len);

#endif
