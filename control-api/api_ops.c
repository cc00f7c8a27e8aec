/* SPDX-License-Identifier: MIT */
/*
 * api_ops.c — operations endpoints: /healthz (the process answers),
 * /readyz (store and bus both healthy, else 503), /metrics (Prometheus text
 * from common/metrics.h), /v1/openapi.json (embedded at build time).
 */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/metrics.h"
#include "control-api/api_int.h"

int api_h_healthz(api_req_t *r)
{
    return api_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

int api_h_readyz(api_req_t *r)
{
    store_t *st = api_store_get(r->a);
    int store_ok = store_ping(st) == 0;
    api_store_put(r->a, st);
    int bus_ok = bus_healthy(r->a->bus) == 1;
    wsg_gauge_set(WSG_G_STORE_UP, store_ok);
    wsg_gauge_set(WSG_G_BUS_UP, bus_ok);
    if (store_ok && bus_ok)
        return api_json(r, 200,
                        json_pack("{s:s,s:b,s:b}", "status", "ready", "store", 1, "bus", 1));
    api_problem(r, 503, "not ready: store %s, bus %s", store_ok ? "ok" : "down",
                bus_ok ? "ok" : "down");
    json_object_set_new(r->resp, "store", json_boolean(store_ok));
    json_object_set_new(r->resp, "bus", json_boolean(bus_ok));
    return API_DONE;
}

int api_h_metrics(api_req_t *r)
{
    char *out = NULL;
    size_t len = 0;
    int rc = wsg_metrics_render(&out, &len);
    if (rc != 0)
        return api_from_err(r, rc, "metrics");
    r->raw = out;
    r->raw_len = len;
    r->raw_ctype = "text/plain; version=0.0.4; charset=utf-8";
    r->status = 200;
    return API_DONE;
}

int api_raw_copy(api_req_t *r, const char *data, size_t len, const char *ctype)
{
    r->raw = malloc(len ? len : 1);
    if (!r->raw)
        abort();
    memcpy(r->raw, data, len);
    r->raw_len = len;
    r->raw_ctype = ctype;
    r->status = 200;
    return API_DONE;
}

int api_h_openapi(api_req_t *r)
{
    return api_raw_copy(r, api_openapi_json, api_openapi_json_len, "application/json");
}
