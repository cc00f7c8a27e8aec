/* SPDX-License-Identifier: MIT */
/*
 * cmd_run.c — the long-running roles: standalone (every role in one process)
 * and the cluster roles edge, api and dispatch. Loads the config, opens the
 * bus and the store, starts the roles, and turns SIGTERM/SIGINT into a
 * graceful shutdown and SIGHUP into a reload of the TLS certificates. Signals are blocked in every
 * thread and taken by one sigwait() thread, so no handler ever runs inside library code. That
 * thread also hands free heap memory back to the OS every TRIM_INTERVAL_S
 * (malloc_trim): a burst of handshakes leaves freed buffers spread over the
 * malloc arenas of the threads that made them, which glibc keeps resident
 * (docs/performance.md, "Design notes", has the figures).
 * The edge and dispatch roles also serve /healthz, /readyz and /metrics on
 * ops.listen (ops/ops.h) from before start-up until the process ends, so a
 * probe sees "starting" and "draining" as 503 while the process answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/metrics.h"
#include "common/thread.h"
#include "control-api/api.h"
#include "dispatcher/dispatch.h"
#include "ops/ops.h"
#include "store/store.h"
#include "ws-edge/edge.h"

enum { ROLE_EDGE = 1, ROLE_API = 2, ROLE_DISPATCH = 4, ROLE_ALL = 7 };

typedef struct {
    int roles;
    wsg_config_t *cfg;
    bus_t *bus;
    edge_t *edge;
    api_t *api;
    disp_t *disp;
    sigset_t sigs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    int64_t
        stop_deadline_ms; /* wsg_mono_ms() by which the process exits: signal + shutdown_grace */
    int edge_running;     /* set under mu once start-up is complete */
    int serving;          /* under mu: every role started; readyz may say ready */
    ops_t *ops;           /* ops.listen of the edge and dispatch roles */
    store_t *ops_st;      /* the dispatcher's store handle of the ops thread (readyz) */
    pthread_t hb_tid;
    int hb_started;
} run_t;

/* Heartbeats of this process's edge, every edge.heartbeat_interval, until
 * shutdown; then one "leaving" beat so the registry need not wait for the
 * edge timeout. A process that dies stops beating, which is the point.
 *
 * Cluster: the APIs declare an edge lost when they hear no heartbeat for
 * cluster.edge_timeout (edge_lost disconnects, rows deleted) and mark it so
 * on the bus (bus_edge_lost_mark). The edge looks for that mark after each
 * beat (one JetStream read); found, it closes every client (edge_fence),
 * whose disconnects carry the edge_lost ids, instead of keeping clients
 * nobody can reach after being cut off or stalled. Only the mark decides:
 * after an outage of NATS itself the APIs sweep nobody, and nobody is
 * closed. */
static void *heartbeat_thread(void *arg)
{
    run_t *r = arg;
    wsg_thread_name("heartbeat");
    const char *id = r->cfg->edge.id;
    uint64_t every = r->cfg->edge.heartbeat_interval_ms;
    int cluster = r->cfg->nats && *r->cfg->nats, lost = 0;
    if (cluster) /* a mark left for an earlier process with this id */
        bus_edge_lost_take(r->bus, id, &lost);
    pthread_mutex_lock(&r->mu);
    while (!r->stopping) {
        pthread_mutex_unlock(&r->mu);
        bus_heartbeat(r->bus, id, 0);
        lost = 0;
        if (cluster && bus_edge_lost_take(r->bus, id, &lost) == 0 && lost) {
            WSG_LOG(WSG_LOG_WARN, "edge declared lost by the cluster: closing its clients",
                    "edge=%s", id);
            edge_fence(r->edge);
        }
        struct timespec ts = wsg_deadline_in(every);
        pthread_mutex_lock(&r->mu);
        if (!r->stopping)
            pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

#define TRIM_INTERVAL_S 10

static void *signal_thread(void *arg)
{
    run_t *r = arg;
    wsg_thread_name("signals");
    for (;;) {
        struct timespec every = {.tv_sec = TRIM_INTERVAL_S};
        int sig = sigtimedwait(&r->sigs, NULL, &every);
        if (sig < 0) {
            int err = errno;
            if (err == EAGAIN)
                malloc_trim(0); /* on this thread: no request waits on it */
            if (err == EAGAIN || err == EINTR)
                continue;
            break;
        }
        if (sig == SIGHUP) { /* certificates renewed on disk: load them, keep running */
            edge_tls_reload();
            api_tls_reload();
            continue;
        }
        WSG_LOG(WSG_LOG_INFO, "shutting down", "signal=%d", sig);
        pthread_mutex_lock(&r->mu);
        int again = r->stopping;
        if (!again)
            r->stop_deadline_ms = wsg_mono_ms() + (int64_t)r->cfg->edge.shutdown_grace_ms;
        r->stopping = 1;
        pthread_cond_broadcast(&r->cv);
        if (r->edge && r->edge_running)
            edge_stop(r->edge);
        pthread_mutex_unlock(&r->mu);
        if (again) {
            WSG_LOG(WSG_LOG_WARN, "second signal: exiting now", NULL);
            _exit(1);
        }
    }
    return NULL;
}

/* The SQLite file of the in-process event queue sits beside the store's. */
static char *queue_path_for(const char *store_url)
{
    const char *p = NULL;
    if (strncmp(store_url, "sqlite://", 9) == 0)
        p = store_url + 9;
    if (!p || !*p || strcmp(p, ":memory:") == 0)
        return NULL;
    size_t n = strlen(p);
    char *q = malloc(n + 8);
    if (!q)
        abort();
    memcpy(q, p, n);
    memcpy(q + n, ".queue", 7);
    return q;
}

/* After the queue file could not be opened: which process holds its lock
 * (SQLite takes POSIX record locks, which F_GETLK reports with their PID),
 * so the log can name the file and the process instead of "another bus". */
static void log_queue_holder(const char *qpath)
{
    char cmd[256] = "", proc[64];
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET}; /* the whole file */
    int fd = open(qpath, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type == F_UNLCK) {
        if (fd >= 0)
            close(fd);
        return;
    }
    close(fd);
    snprintf(proc, sizeof proc, "/proc/%ld/cmdline", (long)fl.l_pid);
    FILE *f = fopen(proc, "rb");
    size_t n = f ? fread(cmd, 1, sizeof cmd - 1, f) : 0;
    if (f)
        fclose(f);
    for (size_t i = 0; i < n; i++) /* NUL-separated arguments, shown with spaces */
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[n && cmd[n - 1] == ' ' ? n - 1 : n] = '\0';
    WSG_LOG(WSG_LOG_ERROR, "the queue file is held by another process (stop it first)",
            "queue_file=%s pid=%ld command=%s", qpath, (long)fl.l_pid, cmd);
}

/* readyz of the edge and dispatch roles, on the ops thread: 503 while
 * starting or draining (the edge then refuses new clients but still serves
 * the ones it drains) and while the bus (NATS) is down; the dispatcher also
 * needs its store, where dead letters go. */
static int role_ready(void *ud, char *why, size_t whylen)
{
    run_t *r = ud;
    pthread_mutex_lock(&r->mu);
    int serving = r->serving, stopping = r->stopping;
    pthread_mutex_unlock(&r->mu);
    int bus_ok = serving && bus_healthy(r->bus) == 1;
    if (serving)
        wsg_gauge_set(WSG_G_BUS_UP, bus_ok);
    int store_ok = 1;
    if (serving && (r->roles & ROLE_DISPATCH)) {
        char err[256];
        if (!r->ops_st && store_open(&r->ops_st, r->cfg->store, err, sizeof err) != 0) {
            store_free(r->ops_st);
            r->ops_st = NULL;
        }
        store_ok = r->ops_st && store_ping(r->ops_st) == 0;
        wsg_gauge_set(WSG_G_STORE_UP, store_ok);
    }
    if (stopping)
        snprintf(why, whylen, "draining");
    else if (!serving)
        snprintf(why, whylen, "starting");
    else if (!bus_ok || !store_ok)
        snprintf(why, whylen, "bus %s, store %s", bus_ok ? "ok" : "down", store_ok ? "ok" : "down");
    else
        return 1;
    return 0;
}

static int migrate_store(const char *url)
{
    char err[512] = "";
    store_t *st = NULL;
    int rc = store_open(&st, url, err, sizeof err);
    if (rc == 0 && (rc = store_migrate(st)) != 0)
        snprintf(err, sizeof err, "%s", store_errmsg(st));
    store_free(st);
    if (rc != 0)
        WSG_LOG(WSG_LOG_ERROR, "store migration failed", "store_error=%s code=%s", err,
                wsg_err_name(rc));
    return rc;
}

/* Descriptors kept beyond the configured connection limits: the store, the
 * bus, the dispatcher's and the authorizer's webhook connections, logs. */
#define FD_RESERVE 8192

/* Debian's lws 4.1 walks a table with one entry per allowed file descriptor
 * (the soft RLIMIT_NOFILE when its context is made) whenever it frees a
 * connection, and each edge loop has such a table: the larger the limit,
 * the slower every connection's end (containers often allow 1,048,576, an
 * 8 MB walk; docs/performance.md, "Design notes"). So with the edge role
 * the soft limit is lowered to what the configured limits can use. It is
 * never raised, and the hard limit is left alone. */
static void fit_fd_limit(const run_t *r)
{
    struct rlimit rl;
    if (!(r->roles & ROLE_EDGE) || getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t need = (rlim_t)r->cfg->edge.max_connections + FD_RESERVE;
    if (r->roles & ROLE_API)
        need += r->cfg->api.max_connections;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > need) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
            WSG_LOG(WSG_LOG_INFO, "open-file limit lowered to what the limits can use",
                    "from=%llu to=%llu", (unsigned long long)was, (unsigned long long)need);
    }
}

static int start_roles(run_t *r, char *err, size_t errlen)
{
    const wsg_config_t *cfg = r->cfg;
    int rc = 0;
    if ((r->roles & ROLE_API) && (rc = api_new(&r->api, cfg, r->bus, err, errlen)) != 0)
        return rc;
    if ((r->roles & ROLE_DISPATCH) && (rc = disp_new(&r->disp, cfg, r->bus, err, errlen)) != 0)
        return rc;
    fit_fd_limit(r); /* before the edge's lws contexts size their tables */
    if ((r->roles & ROLE_EDGE) && (rc = edge_new(&r->edge, cfg, r->bus, err, errlen)) != 0)
        return rc;
    if ((rc = bus_start(r->bus)) != 0)
        return wsg_errf(err, errlen, rc, "bus start failed");
    if (r->api && (rc = api_start(r->api, err, errlen)) != 0)
        return rc;
    if (r->disp && (rc = disp_start(r->disp, err, errlen)) != 0)
        return rc;
    return 0;
}

static void announce(const run_t *r, const char *role)
{
    char edge[64] = "", api[64] = "", ops[64] = "";
    if (r->ops)
        snprintf(ops, sizeof ops, "%d", ops_port(r->ops));
    if (r->edge)
        snprintf(edge, sizeof edge, "%d", edge_port(r->edge));
    if (r->api)
        snprintf(api, sizeof api, "%d", api_port(r->api));
    WSG_LOG(WSG_LOG_INFO, "wsgate ready",
            "role=%s edge_listen=%s edge_port=%s api_listen=%s api_port=%s ops_listen=%s "
            "ops_port=%s",
            role, r->edge ? r->cfg->edge.listen : NULL, r->edge ? edge : NULL,
            r->api ? r->cfg->api.listen : NULL, r->api ? api : NULL,
            r->ops ? r->cfg->ops.listen : NULL, r->ops ? ops : NULL);
}

static void wait_for_signal(run_t *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->stopping)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void usage(FILE *f, const char *role)
{
    static const char *const what[][2] = {
        {"standalone", "Runs every role in one process: edge, control API and dispatcher, with a\n"
                       "SQLite store and an in-process bus (its queue file beside the store).\n"},
        {"edge", "Holds client WebSockets and publishes their events on NATS (cluster mode);\n"
                 "serves /healthz, /readyz and /metrics on ops.listen.\n"},
        {"api", "Serves the control API and keeps the connection registry (cluster mode).\n"},
        {"dispatch", "Delivers client events from NATS as signed webhooks (cluster mode);\n"
                     "serves /healthz, /readyz and /metrics on ops.listen.\n"},
    };
    fprintf(f, "usage: wsgate %s --config FILE\n\n", role);
    for (size_t i = 0; i < sizeof what / sizeof what[0]; i++)
        if (strcmp(what[i][0], role) == 0)
            fputs(what[i][1], f);
    fprintf(f,
            "\n"
            "  -c, --config FILE  the configuration file (default: $WSGATE_CONFIG);\n"
            "                     WSGATE_* variables override its keys\n%s"
            "  -h, --help         this help\n"
            "\n"
            "SIGTERM or SIGINT drains and stops (a second one exits at once); SIGHUP\n"
            "reloads the TLS certificates. LOG_LEVEL and LOG_FORMAT override log.*.\n"
            "Exit status: 0 stopped cleanly, 1 runtime failure, 2 usage or config error.\n",
            strcmp(role, "standalone") == 0
                ? "                     none, with API_URI set: one wsaas route at /, from\n"
                  "                     API_URI, WS_HOSTNAME, WS_TIMEOUT (docs/compat.md)\n"
                : "");
}

/* Only --config/-c and --help/-h exist; anything else is refused rather than
 * ignored, so a mistyped flag never starts a server the user did not ask for.
 * Options are taken in order: the first --help or bad argument decides.
 * Returns 0 to run, else the exit status (help printed: 0; bad usage: 2). */
static int parse_run_args(int argc, char **argv, const char *role)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout, role);
            return -1;
        }
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (++i < argc)
                continue;
            fprintf(stderr, "wsgate %s: %s needs a FILE\n", role, a);
        } else if (strncmp(a, "--config=", 9) == 0) {
            continue;
        } else {
            fprintf(stderr, "wsgate %s: %s '%s' (see wsgate %s --help)\n", role,
                    a[0] == '-' ? "unknown option" : "unexpected argument", a, role);
        }
        return 2;
    }
    return 0;
}

static int run_roles(int argc, char **argv, int roles, const char *role)
{
    /* Static: the detached signal thread uses r until the process ends,
     * after this function has returned. A process runs its roles once. */
    static run_t r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    r.roles = roles;
    char err[1024] = "";
    int rc, status = 1;
    if ((rc = parse_run_args(argc, argv, role)) != 0)
        return rc < 0 ? 0 : rc;
    const char *path = cmd_config_path(argc, argv);

    if (wsg_log_setup_env() != 0) {
        fprintf(stderr, "wsgate: LOG_LEVEL must be error|warn|info|debug, LOG_FORMAT json|text\n");
        return 2;
    }
    const char *api_uri = getenv("API_URI");
    bool wsaas = !path && roles == ROLE_ALL && api_uri && *api_uri;
    if (!path && !wsaas) {
        fprintf(stderr, "wsgate %s: --config FILE is required (or set WSGATE_CONFIG%s)\n", role,
                roles == ROLE_ALL ? ", or API_URI for a wsaas gateway without a config file" : "");
        return 2;
    }
    rc = wsaas ? cmd_wsaas_config(&r.cfg, err, sizeof err)
               : wsg_config_load(&r.cfg, path, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "wsgate: %s\n", err);
        return 2;
    }
    if (!getenv("LOG_LEVEL") || !getenv("LOG_FORMAT"))
        wsg_log_setup(getenv("LOG_LEVEL") ? NULL : r.cfg->log.level,
                      getenv("LOG_FORMAT") ? NULL : r.cfg->log.format);

    sigemptyset(&r.sigs);
    sigaddset(&r.sigs, SIGTERM);
    sigaddset(&r.sigs, SIGINT);
    sigaddset(&r.sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &r.sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file that may not grow fails the write (EFBIG) */
    pthread_t sig_tid;
    pthread_create(&sig_tid, NULL, signal_thread, &r);
    pthread_detach(sig_tid);

    /* the api role serves the ops paths on api.listen; standalone too */
    if ((roles == ROLE_EDGE || roles == ROLE_DISPATCH) &&
        (rc = ops_start(&r.ops, r.cfg->ops.listen, role_ready, &r, err, sizeof err)) != 0) {
        WSG_LOG(WSG_LOG_ERROR, "start-up failed", "error=%s code=%s", err, wsg_err_name(rc));
        goto out;
    }
    if ((roles & (ROLE_API | ROLE_DISPATCH)) && migrate_store(r.cfg->store) != 0)
        goto out;

    char *qpath = roles == ROLE_ALL ? queue_path_for(r.cfg->store) : NULL;
    bus_opts_t bo = {.url = r.cfg->nats,
                     .queue_path = qpath,
                     .name = role,
                     .ack_wait_ms = (uint32_t)r.cfg->cluster.ack_wait_ms,
                     .lease_ttl_ms = (uint32_t)r.cfg->cluster.lease_ttl_ms};
    if (roles != ROLE_ALL && (!r.cfg->nats || !*r.cfg->nats)) {
        fprintf(stderr, "wsgate %s: cluster roles need `nats:` set (or use `wsgate standalone`)\n",
                role);
        free(qpath);
        status = 2;
        goto out;
    }
    rc = bus_open(&r.bus, &bo, err, sizeof err);
    if (rc != 0) {
        WSG_LOG(WSG_LOG_ERROR, "bus open failed", "error=%s code=%s queue_file=%s", err,
                wsg_err_name(rc), qpath);
        if (qpath)
            log_queue_holder(qpath);
    }
    free(qpath);
    if (rc != 0)
        goto out;
    if ((rc = start_roles(&r, err, sizeof err)) != 0) {
        WSG_LOG(WSG_LOG_ERROR, "start-up failed", "error=%s code=%s", err, wsg_err_name(rc));
        goto out;
    }
    if (r.edge && pthread_create(&r.hb_tid, NULL, heartbeat_thread, &r) == 0)
        r.hb_started = 1;
    announce(&r, role);
    pthread_mutex_lock(&r.mu);
    r.edge_running = 1;
    r.serving = 1;
    if (r.stopping && r.edge) /* a signal came during start-up */
        edge_stop(r.edge);
    pthread_mutex_unlock(&r.mu);
    if (r.edge)
        rc = edge_run(r.edge); /* returns once drained after SIGTERM */
    else
        wait_for_signal(&r);
    status = rc == 0 ? 0 : 1;
out:
    pthread_mutex_lock(&r.mu);
    r.edge_running = 0;
    if (!r.stopping) /* start-up failed or the edge ended on its own */
        r.stop_deadline_ms = wsg_mono_ms() + (r.cfg ? (int64_t)r.cfg->edge.shutdown_grace_ms : 0);
    r.stopping = 1;
    int64_t grace_left = r.stop_deadline_ms - wsg_mono_ms();
    pthread_cond_broadcast(&r.cv);
    pthread_mutex_unlock(&r.mu);
    if (r.hb_started) {
        pthread_join(r.hb_tid, NULL);
        bus_heartbeat(r.bus, r.cfg->edge.id, 1);
    }
    /* The edge has drained. Stop the threads that could still send it
     * commands (API requests, webhook actions), free it (it answers what it
     * still holds and unregisters from the bus), free the dispatcher (it
     * unsubscribes, waiting for its callbacks), then the bus, whose
     * remaining callbacks point into the API, and only then the API. */
    api_stop(r.api);
    disp_stop(r.disp, grace_left); /* what is in flight stays queued: delivered after restart */
    ops_stop(r.ops); /* answered "draining" until here; its ready callback reads the bus */
    r.ops = NULL;
    store_free(r.ops_st);
    r.ops_st = NULL;
    edge_free(r.edge);
    r.edge = NULL;
    disp_free(r.disp);
    bus_free(r.bus);
    api_free(r.api);
    wsg_config_free(r.cfg);
    WSG_LOG(WSG_LOG_INFO, "stopped", "status=%d", status);
    return status;
}

int cmd_standalone(int argc, char **argv)
{
    return run_roles(argc, argv, ROLE_ALL, "standalone");
}

int cmd_edge(int argc, char **argv)
{
    return run_roles(argc, argv, ROLE_EDGE, "edge");
}

int cmd_api(int argc, char **argv)
{
    return run_roles(argc, argv, ROLE_API, "api");
}

int cmd_dispatch(int argc, char **argv)
{
    return run_roles(argc, argv, ROLE_DISPATCH, "dispatch");
}
