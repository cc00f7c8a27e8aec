/* SPDX-License-Identifier: MIT */
/*
 * api_dash.c — the operator dashboard: GET /dashboard (the page, embedded
 * from control-api/dashboard.html, no token: it asks for one) and
 * GET /v1/stats (admin scope), the one JSON summary the page and
 * `wsgate top` poll every second (docs/dashboard.md).
 *
 * /v1/stats costs two aggregate store queries (connections grouped by route
 * and edge; the first channels with member counts) and reads this process's
 * metrics and its ring of recent events (common/recent.h); nothing per
 * message. The store numbers are the whole deployment's; the metrics and
 * the events are this process's (in cluster mode: the API role's, which
 * sees the registry's connects, disconnects and subscriptions but no
 * frames or webhooks).
 *
 * Threads: handlers run on MHD threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/metrics.h"
#include "common/recent.h"
#include "control-api/api_int.h"

#define DASH_GROUPS 200  /* (route, edge) groups listed */
#define DASH_CHANNELS 50 /* channels listed */
#define DASH_EVENTS 100  /* events per answer */

int api_h_dashboard(api_req_t *r)
{
    return api_raw_copy(r, api_dashboard_html, api_dashboard_html_len, "text/html; charset=utf-8");
}

/* This process's counters and gauges, keyed by their Prometheus names
 * without "wsgate_". */
static json_t *process_json(void)
{
    json_t *c = json_object(), *g = json_object();
#define DASH_COUNTER(e, n, h)                                                                      \
    json_object_set_new(c, n + 7, json_integer((json_int_t)wsg_counter_value(WSG_M_##e)));
    WSG_COUNTERS(DASH_COUNTER)
#undef DASH_COUNTER
#define DASH_GAUGE(e, n, h)                                                                        \
    json_object_set_new(g, n + 7, json_integer((json_int_t)wsg_gauge_value(WSG_G_##e)));
    WSG_GAUGES(DASH_GAUGE)
#undef DASH_GAUGE
    static const double q[] = {0.5, 0.99};
    double le[2], sum;
    uint64_t count;
    wsg_histogram_read(WSG_H_WEBHOOK_SECONDS, q, le, 2, &count, &sum);
    json_t *lat = json_pack("{s:I,s:f}", "count", (json_int_t)count, "sum_s", sum);
    /* a bucket's upper bound; null: none yet or past the last bound */
    json_object_set_new(lat, "p50_le_s",
                        le[0] >= 0 && isfinite(le[0]) ? json_real(le[0]) : json_null());
    json_object_set_new(lat, "p99_le_s",
                        le[1] >= 0 && isfinite(le[1]) ? json_real(le[1]) : json_null());
    return json_pack("{s:o,s:o,s:o}", "counters", c, "gauges", g, "webhook_latency", lat);
}

static json_t *events_json(const api_req_t *r, json_int_t *last_out)
{
    uint64_t after = 0, last = 0;
    const char *a = api_query(r, "events_after");
    if (a)
        after = strtoull(a, NULL, 10);
    wsg_recent_t ev[DASH_EVENTS];
    size_t n = wsg_recent_since(after, ev, DASH_EVENTS, &last);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, json_pack("{s:I,s:I,s:s,s:s}", "seq", (json_int_t)ev[i].seq,
                                               "at_ms", (json_int_t)ev[i].at_ms, "kind", ev[i].kind,
                                               "text", ev[i].text));
    *last_out = (json_int_t)last;
    return items;
}

/* Connections by (route, edge) and the first channels, from the store. */
static int store_part(api_req_t *r, json_t *out)
{
    store_conn_counts_t cc = {0};
    store_channel_list_t ch = {0};
    store_t *st = api_store_get(r->a);
    int rc = store_conn_counts(st, DASH_GROUPS, &cc);
    if (rc == 0)
        rc = store_channel_list(st, "", NULL, DASH_CHANNELS, &ch);
    api_store_put(r->a, st);
    if (rc != 0) {
        store_conn_counts_free(&cc);
        return rc;
    }
    json_t *groups = json_array(), *chans = json_array();
    json_int_t total = 0;
    for (size_t i = 0; i < cc.n; i++) {
        total += (json_int_t)cc.items[i].n;
        json_array_append_new(groups, json_pack("{s:s,s:s,s:I}", "route", cc.items[i].route, "edge",
                                                cc.items[i].edge_id, "connections",
                                                (json_int_t)cc.items[i].n));
    }
    for (size_t i = 0; i < ch.n; i++)
        json_array_append_new(chans, json_pack("{s:s,s:I}", "channel", ch.items[i].channel,
                                               "members", (json_int_t)ch.items[i].members));
    json_object_set_new(out, "connections",
                        json_pack("{s:I,s:o,s:b}", "total", total, "by_route_edge", groups, "more",
                                  cc.n == DASH_GROUPS));
    json_object_set_new(out, "channels",
                        json_pack("{s:o,s:b}", "items", chans, "more", ch.next_cursor != NULL));
    store_conn_counts_free(&cc);
    store_channel_list_free(&ch);
    return 0;
}

int api_h_stats(api_req_t *r)
{
    const char *a = api_query(r, "events_after");
    char *end = NULL;
    if (a && (!*a || *a == '-' || (strtoull(a, &end, 10), *end)))
        return api_problem(r, 400, "events_after must be a sequence number");
    json_t *out = json_pack("{s:I,s:s}", "at_ms", (json_int_t)wsg_wall_ms(), "mode",
                            r->a->cluster ? "cluster" : "standalone");
    int rc = store_part(r, out);
    if (rc != 0) {
        json_decref(out);
        return api_from_err(r, rc, "stats");
    }
    json_int_t last = 0;
    json_object_set_new(out, "process", process_json());
    json_object_set_new(out, "events", events_json(r, &last));
    json_object_set_new(out, "events_last", json_integer(last));
    return api_json(r, 200, out);
}
