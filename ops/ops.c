/* SPDX-License-Identifier: MIT */
/*
 * ops.c — /healthz, /readyz and /metrics of the edge and dispatch roles on a
 * one-thread libmicrohttpd daemon (see ops.h). Answers are small and built
 * per request; nothing here is on a hot path.
 */
#include "ops/ops.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "common/err.h"
#include "common/listen.h"
#include "common/log.h"
#include "common/metrics.h"

struct ops {
    struct MHD_Daemon *mhd;
    ops_ready_fn ready;
    void *ud;
    int port;
};

/* Probes and scrapers send nothing slow; a stuck peer is dropped. */
#define OPS_CONN_TIMEOUT_S 10
#define OPS_MAX_CONNECTIONS 64

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                             const char *ctype)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    enum MHD_Result rc = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body)
        abort();
    return reply(c, status, body, strlen(body), "application/json");
}

/* A problem document (RFC 9457) like the control API's errors. */
static enum MHD_Result reply_problem(struct MHD_Connection *c, unsigned status, const char *title,
                                     const char *detail)
{
    json_t *j = json_pack("{s:s,s:s,s:i,s:s}", "type", "about:blank", "title", title, "status",
                          (int)status, "detail", detail);
    if (!j)
        abort();
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!body)
        abort();
    return reply(c, status, body, strlen(body), "application/problem+json");
}

static enum MHD_Result on_readyz(ops_t *o, struct MHD_Connection *c)
{
    char why[256] = "";
    if (o->ready(o->ud, why, sizeof why) == 1)
        return reply_json(c, 200, json_pack("{s:s}", "status", "ready"));
    char detail[300];
    snprintf(detail, sizeof detail, "not ready: %s", why[0] ? why : "unknown");
    return reply_problem(c, 503, "Service Unavailable", detail);
}

static enum MHD_Result on_metrics(ops_t *o, struct MHD_Connection *c)
{
    char why[256];
    (void)o->ready(o->ud, why, sizeof why); /* refreshes wsgate_bus_up, wsgate_store_up */
    char *out = NULL;
    size_t len = 0;
    if (wsg_metrics_render(&out, &len) != 0)
        return reply_problem(c, 500, "Internal Server Error", "metrics could not be rendered");
    return reply(c, 200, out, len, "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **state)
{
    (void)version;
    (void)upload;
    ops_t *o = cls;
    if (*state == NULL) { /* first call: headers only; answer on the next */
        *state = o;
        return MHD_YES;
    }
    if (*upload_len) {
        *upload_len = 0; /* a body is ignored; the method check below answers */
        return MHD_YES;
    }
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    const char *path = url;
    int known = !strcmp(path, "/healthz") || !strcmp(path, "/readyz") || !strcmp(path, "/metrics");
    if (!known)
        return reply_problem(c, 404, "Not Found",
                             "the ops listener serves /healthz, /readyz "
                             "and /metrics");
    if (!get)
        return reply_problem(c, 405, "Method Not Allowed", "use GET");
    if (!strcmp(path, "/healthz"))
        return reply_json(c, 200, json_pack("{s:s}", "status", "ok"));
    if (!strcmp(path, "/readyz"))
        return on_readyz(o, c);
    return on_metrics(o, c);
}

void ops_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    WSG_LOG(WSG_LOG_WARN, (const char *)cls, "detail=%s", line);
}

int ops_start(ops_t **out, const char *listen, ops_ready_fn ready, void *ud, char *err,
              size_t errlen)
{
    wsg_listen_addr_t addr;
    char why[256];
    if (wsg_listen_addr(listen, &addr, why, sizeof why) != 0)
        return wsg_errf(err, errlen, WSG_ECONFIG, "ops.listen: %s", why);
    ops_t *o = calloc(1, sizeof *o);
    if (!o)
        abort();
    o->ready = ready;
    o->ud = ud;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                     (addr.sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    o->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, o, MHD_OPTION_EXTERNAL_LOGGER,
                              ops_mhd_log, (void *)"ops http server", MHD_OPTION_SOCK_ADDR,
                              (struct sockaddr *)&addr.sa, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)OPS_MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                              (unsigned)OPS_CONN_TIMEOUT_S, MHD_OPTION_END);
    if (!o->mhd) {
        free(o);
        return wsg_errf(err, errlen, WSG_EIO, "ops: cannot listen on %s", listen);
    }
    o->port = ops_mhd_port(o->mhd);
    *out = o;
    return 0;
}

int ops_mhd_port(struct MHD_Daemon *mhd)
{
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
    return di ? di->port : 0;
}

int ops_port(const ops_t *o)
{
    return o ? o->port : 0;
}

void ops_stop(ops_t *o)
{
    if (!o)
        return;
    MHD_stop_daemon(o->mhd);
    free(o);
}
