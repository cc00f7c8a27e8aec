/* SPDX-License-Identifier: MIT */
/*
 * edge.c — the edge's lifecycle: creates its loops (edge.threads; each an
 * lws context and vhost on the shared port, SO_REUSEPORT when there are
 * several, and a libev loop), runs their service threads, owns the hand-over
 * queues through which other threads (bus callbacks, the authorizer thread)
 * reach them, and drives the graceful shutdown (stop accepting, close every
 * socket with 1001, wait for the disconnect events to be acknowledged, or
 * shutdown_grace).
 *
 * Debian's lws is built with LWS_MAX_SMP 1 (one service thread per context),
 * so the edge uses several cores with several contexts instead, one per
 * thread, which share nothing lws knows about.
 *
 * Threads: edge_new/edge_free on the owner; edge_run on the thread that
 * serves loop 0 (it starts and joins the others); edge_stop, edge_post and
 * edge_post_conn from any thread (they only take a loop's qmu and call
 * lws_cancel_service, which is thread-safe). Nothing is process-wide: any
 * number of edges may share a process and a bus (edge ids differ).
 */
#include <errno.h>
#include <ev.h>
#include <stdatomic.h>
#include <sched.h>
#include <openssl/rand.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/b64.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/hash.h"
#include "common/listen.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/thread.h"
#include "ws-edge/edge_int.h"

#define EDGE_TICK_US (EDGE_WHEEL_MS * LWS_US_PER_MS)

int64_t edge_now_ms(void)
{
    return wsg_mono_ms();
}

/* The high half of the hash: the maps index buckets by its low bits, which
 * would otherwise be alike for every id of one loop (with a power-of-two
 * loop count a loop's map used 1/n of its buckets). */
edge_loop_t *edge_loop_of(const edge_t *E, const char *conn_id)
{
    return E->loops[E->n_loops > 1 ? (wsg_hash(conn_id) >> 32) % E->n_loops : 0];
}

/* 128 random bits, drawn again until they hash to e (about n_loops draws). */
void edge_make_id(const edge_loop_t *e, char out[EDGE_ID_LEN + 1])
{
    do {
        unsigned char raw[16];
        char tmp[WSG_B64_LEN(16) + 1];
        if (RAND_bytes(raw, sizeof raw) != 1)
            abort(); /* no randomness: ids would collide; refuse to run */
        wsg_b64url_encode(raw, sizeof raw, tmp);
        memcpy(out, tmp, EDGE_ID_LEN);
        out[EDGE_ID_LEN] = '\0';
    } while (edge_loop_of(e->edge, out) != e);
}

edge_q_t *edge_q_new(edge_q_kind_t kind, size_t extra)
{
    edge_q_t *q = calloc(1, sizeof *q + extra);
    if (!q)
        abort();
    q->kind = kind;
    return q;
}

void edge_q_free(edge_q_t *q)
{
    if (!q)
        return;
    if (q->kind == EDGE_Q_PUBLISH)
        edge_msg_unref(q->u.pub.m);
    if (q->kind == EDGE_Q_AUTHZ)
        free(q->u.authz.body);
    free(q);
}

struct edge_life {
    pthread_rwlock_t mu; /* posters read, edge_free writes once */
    edge_t *E;           /* NULL once the edge is freed */
    atomic_long refs;    /* the edge's own + one per event waiting for its ack */
};

static edge_life_t *life_new(edge_t *E)
{
    edge_life_t *l = calloc(1, sizeof *l);
    if (!l)
        abort();
    pthread_rwlock_init(&l->mu, NULL);
    l->E = E;
    atomic_init(&l->refs, 1);
    return l;
}

void edge_life_unref(edge_life_t *l)
{
    if (atomic_fetch_sub(&l->refs, 1) == 1) {
        pthread_rwlock_destroy(&l->mu);
        free(l);
    }
}

edge_life_t *edge_life_ref(edge_t *E)
{
    atomic_fetch_add(&E->life->refs, 1);
    return E->life;
}

int edge_life_post(edge_life_t *l, edge_loop_t *e, edge_q_t *q)
{
    pthread_rwlock_rdlock(&l->mu);
    int live = l->E != NULL;
    if (live)
        edge_post(e, q);
    pthread_rwlock_unlock(&l->mu);
    edge_life_unref(l);
    return live;
}

void edge_post_conn(edge_t *E, const char *conn_id, edge_q_t *q)
{
    edge_post(edge_loop_of(E, conn_id), q);
}

/* Wakes the service thread only when the queue was empty: drain_queue()
 * takes the whole list at once, so an item pushed onto a non-empty queue is
 * picked up by the wake-up its first item already caused. This saves one
 * pipe write per event ack on the hot path. */
void edge_post(edge_loop_t *e, edge_q_t *q)
{
    pthread_mutex_lock(&e->qmu);
    int was_empty = e->q_head == NULL;
    if (e->q_tail)
        e->q_tail->next = q;
    else
        e->q_head = q;
    e->q_tail = q;
    pthread_mutex_unlock(&e->qmu);
    if (was_empty)
        lws_cancel_service(e->ctx);
}

edge_msg_t *edge_msg_new(const unsigned char *data, size_t len, int binary)
{
    edge_msg_t *m = malloc(sizeof *m + LWS_PRE + len + 1);
    if (!m)
        abort();
    m->refs = 1;
    m->binary = binary ? 1 : 0;
    m->raw = 0;
    m->z_tried = 0;
    m->z = NULL;
    m->len = len;
    if (len && data)
        memcpy(m->buf + LWS_PRE, data, len);
    return m;
}

void edge_msg_unref(edge_msg_t *m)
{
    if (m && --m->refs == 0) {
        edge_msg_unref(m->z);
        free(m);
    }
}

/* ---- the listening sockets ----------------------------------------------
 * Each loop accepts on a socket of its own, all bound to the one port with
 * SO_REUSEPORT when there are several loops: the kernel spreads new
 * connections over them by address hash. lws 4.1 does not set SO_REUSEPORT
 * itself (its LISTEN_SHARE option is inert in Debian's build), hence a
 * listener of our own; an accepted socket's request is read by
 * edge_accept.c, and lws only gets the socket once it is admitted. */
#define EDGE_ACCEPT_BURST 64 /* accepts per wake-up, so one loop cannot starve */

/* A TCP socket bound to addr, SO_REUSEPORT when share; -1 with *why = errno. */
static int bind_port(const wsg_listen_addr_t *addr, int share, int *why)
{
    int fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    int ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
             (!share || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0) &&
             setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0 && /* inherited */
             bind(fd, (const struct sockaddr *)&addr->sa, addr->len) == 0;
    *why = errno;
    if (!ok && fd >= 0)
        close(fd);
    return ok ? fd : -1;
}

/* The loop's listening socket on E->addr; e->port gets its port. */
static int listen_open(edge_loop_t *e, char *err, size_t errlen)
{
    const edge_t *E = e->edge;
    int why, fd = bind_port(&E->addr, E->n_loops > 1, &why);
    if (fd >= 0 && listen(fd, SOMAXCONN) != 0) {
        why = errno;
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return wsg_errf(err, errlen, WSG_EIO, "edge: cannot listen on %s: %s", E->cfg->edge.listen,
                        strerror(why));
    wsg_listen_addr_t bound = {.len = sizeof bound.sa};
    e->port = getsockname(fd, (struct sockaddr *)&bound.sa, &bound.len) == 0
                  ? wsg_listen_port(&bound, -1)
                  : wsg_listen_port((wsg_listen_addr_t *)&E->addr, -1);
    return fd;
}

static void on_listen(struct ev_loop *loop, ev_io *w, int revents)
{
    edge_loop_t *e = w->data;
    (void)loop;
    (void)revents;
    for (int i = 0; i < EDGE_ACCEPT_BURST; i++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(e->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* nothing to accept with: wait for the next tick instead of spinning */
                ev_io_stop(e->loop, &e->listen_w);
                e->listen_paused = 1;
                WSG_LOG(WSG_LOG_WARN, "edge: cannot accept", "loop=%u error=%s", e->idx,
                        strerror(errno));
            }
            return; /* EAGAIN, or a connection that went away before accept */
        }
        if (edge_tls_enabled() && edge_tls_adopt(fd) != 0) {
            close(fd); /* an fd beyond the table (RLIMIT_NOFILE raised later), or no memory */
            continue;
        }
        edge_req_accept(e, fd, &sa); /* its request is read before lws sees it */
    }
}

/* Stops accepting for good: later connections are refused by the kernel
 * (or go to another loop while it still listens). */
static void listen_close(edge_loop_t *e)
{
    if (e->listen_fd < 0)
        return;
    if (e->loop)
        ev_io_stop(e->loop, &e->listen_w);
    close(e->listen_fd);
    e->listen_fd = -1;
}

typedef struct {
    int64_t now;
    int all;
    edge_conn_t *list; /* linked through rx (a pending conn has no rx buffer) */
} reap_t;

static void collect_pending(void *ud, const char *key, void *val)
{
    reap_t *r = ud;
    edge_conn_t *c = val;
    (void)key;
    uint64_t age = (uint64_t)(r->now - c->opened_ms), limit = c->route->limits.handshake_timeout_ms;
    if (!c->pending || (c->admitted && age <= 2 * limit) || (!r->all && age <= limit))
        return;
    c->rx = (unsigned char *)r->list;
    r->list = c;
}

/* Answers 503 to held handshakes that timed out (or all, when draining). */
static void reap_pending(edge_loop_t *e, int all)
{
    reap_t r = {.now = edge_now_ms(), .all = all};
    edge_map_each(&e->by_fd, collect_pending, &r);
    while (r.list) {
        edge_conn_t *c = r.list;
        r.list = (edge_conn_t *)c->rx;
        c->rx = NULL;
        if (c->admitted) /* lws owns the socket but never upgraded it */
            edge_hs_unhold(e, c);
        edge_hs_refuse(e, c, 503, all ? "shutting down" : "handshake timed out");
    }
}

typedef struct {
    edge_loop_t *e;
    int code;
    const char *reason;
} close_all_t;

static void close_one(void *ud, const char *key, void *val)
{
    close_all_t *a = ud;
    edge_conn_t *c = val;
    (void)key;
    if (c->wsi && !c->close_code)
        edge_conn_close(a->e, c, a->code, a->reason, "server");
}

/* Closes every client of the loop with code and reason. */
static void close_all(edge_loop_t *e, int code, const char *reason)
{
    close_all_t a = {.e = e, .code = code, .reason = reason};
    edge_map_each(&e->conns, close_one, &a);
}

static void begin_fence(edge_loop_t *e)
{
    WSG_LOG(WSG_LOG_WARN, "edge fenced: closing every client", "loop=%u connections=%zu", e->idx,
            e->n_conns);
    close_all(e, WSG_CLOSE_RESTART, "edge lost contact with the cluster");
}

static void begin_shutdown(edge_loop_t *e)
{
    if (e->stopping)
        return;
    e->stopping = 1;
    listen_close(e);
    e->stop_deadline_ms = edge_now_ms() + (int64_t)e->edge->cfg->edge.shutdown_grace_ms;
    WSG_LOG(WSG_LOG_INFO, "edge draining", "loop=%u connections=%zu grace_ms=%llu", e->idx,
            e->n_conns, (unsigned long long)e->edge->cfg->edge.shutdown_grace_ms);
    edge_hs_drop_orphan(e);
    close_all(e, WSG_CLOSE_GOING_AWAY, "going away");
    reap_pending(e, 1);
    edge_req_reap(e, edge_now_ms(), 1);
}

static void drain_queue(edge_loop_t *e)
{
    bus_consumer_drain(e->bc); /* bus commands and publishes */
    pthread_mutex_lock(&e->qmu);
    edge_q_t *q = e->q_head;
    e->q_head = e->q_tail = NULL;
    int stop = e->stop_requested, fence = e->fence_requested;
    e->fence_requested = 0;
    pthread_mutex_unlock(&e->qmu);
    while (q) {
        edge_q_t *next = q->next;
        q->next = NULL;
        switch (q->kind) {
        case EDGE_Q_CMD:
            edge_apply_cmd(e, q);
            break;
        case EDGE_Q_PUBLISH:
            edge_apply_publish(e, q);
            edge_q_free(q);
            break;
        case EDGE_Q_ACK:
            edge_on_ack(e, q);
            edge_q_free(q);
            break;
        case EDGE_Q_AUTHZ:
            edge_on_authz_result(e, q);
            edge_q_free(q);
            break;
        }
        q = next;
    }
    edge_flush_replies(e);
    if (fence && !e->stopping)
        begin_fence(e);
    if (stop)
        begin_shutdown(e);
}

static void tick(lws_sorted_usec_list_t *sul)
{
    edge_loop_t *e = lws_container_of(sul, edge_loop_t, sul_tick);
    edge_hs_drop_orphan(e);
    reap_pending(e, 0);
    edge_req_reap(e, edge_now_ms(), 0);
    edge_timer_run(e, edge_now_ms());
    edge_events_pump(e); /* the bus's room may have been taken by others: try again */
    if (e->listen_paused && e->listen_fd >= 0) {
        e->listen_paused = 0;
        ev_io_start(e->loop, &e->listen_w);
    }
    lws_sul_schedule(e->ctx, 0, &e->sul_tick, tick, EDGE_TICK_US);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    edge_loop_t *e = ctx ? lws_context_user(ctx) : NULL;
    edge_conn_t **slot = user;
    if (!e)
        return 0;
    switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return e->stopping ? -1 : 0;
    case LWS_CALLBACK_HTTP:
        return edge_on_http(wsi);
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        /* `in` is deliberately never read here: after a refusal lws frees the
         * header table it points into (CVE-2025-11677). */
        return edge_on_confirm_upgrade(e, wsi);
    case LWS_CALLBACK_ADD_HEADERS:
        return edge_on_add_headers(e, wsi, in);
    case LWS_CALLBACK_ESTABLISHED:
        return edge_on_established(e, wsi, slot);
    case LWS_CALLBACK_RECEIVE:
        return slot && *slot ? edge_on_receive(e, *slot, in, len) : -1;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (slot && *slot)
            (*slot)->last_rx_ms = edge_now_ms();
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return slot && *slot ? edge_on_writeable(e, *slot) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        return slot && *slot ? edge_on_peer_close(e, *slot, in, len) : 0;
    case LWS_CALLBACK_CLOSED:
        if (slot && *slot) {
            edge_on_closed(e, *slot);
            *slot = NULL;
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        drain_queue(e);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    /* rx_buffer_size: lws allocates it for every open socket (idle ones too), so
     * it is small; larger messages arrive in pieces and are reassembled. */
    {"wsgate", callback, sizeof(edge_conn_t *), 512, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_bridge(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    /* lws 4.1 reports every socket given to it with lws_adopt_socket_readbuf
     * (every admitted connection: edge_accept.c read its request) at error
     * level: routine. */
    int routine = strstr(line, "adopt_socket_readbuf: calling service") != NULL;
    WSG_LOG(level == LLL_ERR && !routine ? WSG_LOG_WARN : WSG_LOG_DEBUG, "lws", "detail=%.*s",
            (int)n, line);
}

uint64_t edge_header_timeout_ms(const wsg_config_t *cfg)
{
    uint64_t ms = 0;
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (!ms || cfg->routes[i].limits.handshake_timeout_ms < ms)
            ms = cfg->routes[i].limits.handshake_timeout_ms;
    return ms ? ms : 10000;
}

/* The edge times pings and idle clients itself (edge_timer.c). lws's own
 * "validity" timer would otherwise be re-armed on every received frame, and
 * lws keeps its timers in one sorted list: O(connections) per frame. A policy
 * without a hangup time turns it off. */
static const lws_retry_bo_t no_validity_checks = {.secs_since_valid_ping = 0,
                                                  .secs_since_valid_hangup = 0};

/* The loop's lws context: a vhost without a listener of its own (the loop
 * accepts on its socket and hands each connection to lws). */
static int create_context(edge_loop_t *e, char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.user = e;
    info.gid = -1;
    info.uid = -1;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (e->edge->addr.sa.ss_family == AF_INET6)
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
    info.max_http_header_data = 16384;
    info.max_http_header_pool = 1024;
    /* lws gets a socket with its (rebuilt) request already read; these bound
     * what is left of its handshake. The header phase is edge_accept.c's. */
    info.timeout_secs = (unsigned)((edge_header_timeout_ms(e->edge->cfg) + 999) / 1000);
    info.timeout_secs_ah_idle = info.timeout_secs;
    info.ka_time = 0;
    info.fd_limit_per_thread = 0;
    info.pt_serv_buf_size = 65536;
    info.retry_and_idle_policy = &no_validity_checks;
    /* lws's own poll() loop walks every socket on each wake-up and costs
     * O(connections) per ping at tens of thousands of idle clients; libev
     * (epoll) wakes for the ready sockets only. The loop is ours ("foreign"
     * to lws): edge_run turns it, lws installs no signal watcher in it, and
     * the loop outlives the context. */
    e->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
    if (!e->loop)
        return wsg_errf(err, errlen, WSG_EIO, "edge: cannot create the event loop (epoll)");
    void *loops[1] = {e->loop};
    info.options |= LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = loops;
    e->ctx = lws_create_context(&info);
    if (!e->ctx)
        return wsg_errf(err, errlen, WSG_EIO, "edge: cannot listen on %s",
                        e->edge->cfg->edge.listen);
    e->vh = lws_get_vhost_by_name(e->ctx, "default");
    if (!e->vh)
        return wsg_errf(err, errlen, WSG_EIO, "edge: lws made no vhost");
    return 0;
}

/* SO_REUSEPORT would let the loops' sockets join a port that another
 * process already listens on with it (another wsgate started by mistake):
 * a plain bind first, so that is refused as "address in use" as before. */
static int port_free(const wsg_listen_addr_t *addr)
{
    int why, fd = bind_port(addr, 0, &why);
    if (fd >= 0)
        close(fd);
    return fd >= 0 || why != EADDRINUSE; /* other failures: listen_open reports them */
}

/* The bus queued a command or publish for the loop: its drain runs it. */
static void loop_wake(void *ud)
{
    edge_loop_t *e = ud;
    lws_cancel_service(e->ctx);
}

static int loop_new(edge_t *E, unsigned idx, char *err, size_t errlen)
{
    edge_loop_t *e = calloc(1, sizeof *e);
    if (!e)
        return wsg_errf(err, errlen, WSG_ENOMEM, "edge: out of memory");
    E->loops[idx] = e;
    e->edge = E;
    e->idx = idx;
    pthread_mutex_init(&e->qmu, NULL);
    if (RAND_bytes(e->evid_prefix, sizeof e->evid_prefix) != 1)
        abort(); /* no randomness: ids of two runs could collide; refuse to run */
    e->listen_fd = -1;
    int rc = create_context(e, err, errlen);
    if (rc == 0) {
        int fd = listen_open(e, err, errlen);
        rc = fd < 0 ? fd : 0;
        if (fd >= 0) {
            e->listen_fd = fd;
            ev_io_init(&e->listen_w, on_listen, fd, EV_READ);
            e->listen_w.data = e;
            ev_io_start(e->loop, &e->listen_w);
        }
    }
    if (rc == 0 && (rc = edge_fanout_new(&e->fanout, E->n_loops)) != 0)
        wsg_errf(err, errlen, rc, "edge: cannot start the fan-out writer");
    if (rc == 0 && (rc = bus_consumer_new(E->bus, loop_wake, e, &e->bc)) != 0)
        wsg_errf(err, errlen, rc, "edge: cannot make the loop's bus consumer");
    return rc;
}

#define EDGE_LOOPS_DEFAULT_MAX 16

/* The CPUs this process may use: its affinity mask, and a cgroup v2 CPU
 * quota (a container limited to 2 CPUs on a 64-CPU host gets 2). */
static long usable_cpus(void)
{
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set)
                                                         : sysconf(_SC_NPROCESSORS_ONLN);
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        long long quota, period;
        if (fscanf(f, "%lld %lld", &quota, &period) == 2 && quota > 0 && period > 0 &&
            (quota + period - 1) / period < n)
            n = (long)((quota + period - 1) / period);
        fclose(f); /* "max 100000": no quota */
    }
    return n;
}

/* edge.threads, or one loop per usable CPU (at most EDGE_LOOPS_DEFAULT_MAX:
 * each loop's lws context has tables sized by the open-file limit). */
static size_t loop_count(const wsg_config_t *cfg)
{
    long n = cfg->edge.threads ? (long)cfg->edge.threads : usable_cpus();
    if (!cfg->edge.threads && n > EDGE_LOOPS_DEFAULT_MAX)
        n = EDGE_LOOPS_DEFAULT_MAX;
    return n < 1 ? 1 : (size_t)n;
}

int edge_new(edge_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen)
{
    *out = NULL;
    wsg_listen_addr_t addr;
    char why[256];
    if (wsg_listen_addr(cfg->edge.listen, &addr, why, sizeof why) != 0)
        return wsg_errf(err, errlen, WSG_ECONFIG, "edge.listen: %s", why);
    edge_t *E = calloc(1, sizeof *E);
    if (!E)
        return wsg_errf(err, errlen, WSG_ENOMEM, "edge: out of memory");
    if (wsg_cidrs_parse(cfg->edge.trusted_proxies, cfg->edge.n_trusted_proxies, &E->trusted, why,
                        sizeof why) != 0) {
        free(E);
        return wsg_errf(err, errlen, WSG_ECONFIG, "edge.trusted_proxies: %s", why);
    }
    E->addr = addr;
    E->cfg = cfg;
    E->bus = bus;
    pthread_mutex_init(&E->mu, NULL);
    E->edge_id = strdup(cfg->edge.id && *cfg->edge.id ? cfg->edge.id : "edge");
    E->n_loops = loop_count(cfg);
    for (size_t i = 0; i < cfg->n_routes; i++)
        E->any_pmd |= cfg->routes[i].compression;
    int trc = edge_tls_init(cfg, err, errlen); /* before any socket is accepted */
    if (trc != 0) {
        wsg_cidrs_free(&E->trusted);
        free(E->edge_id);
        pthread_mutex_destroy(&E->mu);
        free(E);
        return trc;
    }
    E->loops = calloc(E->n_loops, sizeof *E->loops);
    E->threads = calloc(E->n_loops, sizeof *E->threads);
    if (!E->edge_id || !E->loops || !E->threads)
        abort();
    E->life = life_new(E);
    int rc = 0;
    /* lws 4.1 formats every log line into one static buffer: with several
     * loops logging at once the lines would be garbled (a data race), so its
     * own lines are only passed on with one loop. wsgate logs what matters. */
    lws_set_log_level(E->n_loops > 1 ? 0 : LLL_ERR, lws_log_bridge);
    if (E->n_loops > 1 && wsg_listen_port(&E->addr, -1) && !port_free(&E->addr))
        rc = wsg_errf(err, errlen, WSG_EIO, "edge: cannot listen on %s: address in use",
                      cfg->edge.listen);
    for (size_t i = 0; rc == 0 && i < E->n_loops; i++) {
        rc = loop_new(E, (unsigned)i, err, errlen);
        if (rc == 0 && i == 0) /* the others join the port loop 0 got (port 0: any) */
            E->port = wsg_listen_port(&E->addr, E->loops[0]->port);
    }
    if (rc == 0) {
        edge_events_budget(E);
        rc = edge_authz_new(&E->authz, E, err, errlen);
    }
    if (rc == 0 && (rc = bus_cmd_serve_on(bus, E->edge_id, edge_bus_route, edge_bus_cmd, E)) != 0)
        wsg_errf(err, errlen, rc, "edge: cannot serve commands for %s", E->edge_id);
    E->serving_cmd = rc == 0;
    for (size_t i = 0; rc == 0 && i < E->n_loops; i++) {
        edge_loop_t *l = E->loops[i];
        if ((rc = bus_publish_serve_on(bus, l->bc, edge_bus_publish, l)) != 0)
            wsg_errf(err, errlen, rc, "edge: cannot serve publishes");
        l->serving_pub = rc == 0;
    }
    if (rc != 0) {
        edge_free(E);
        return rc;
    }
    WSG_LOG(WSG_LOG_INFO, "edge listening", "port=%d threads=%zu tls=%s", E->port, E->n_loops,
            edge_tls_enabled() ? "on" : "off");
    *out = E;
    return 0;
}

static int drained(edge_loop_t *e)
{
    if (!e->stopping)
        return 0;
    if (e->n_conns == 0 && e->acks_outstanding == 0 && !e->parked_head)
        return 1;
    return edge_now_ms() >= e->stop_deadline_ms;
}

static void loop_run(edge_loop_t *e)
{
    edge_rxcheck_thread(e);
    lws_sul_schedule(e->ctx, 0, &e->sul_tick, tick, EDGE_TICK_US);
    drain_queue(e);
    while (!drained(e))
        ev_run(e->loop, EVRUN_ONCE);
    edge_rxcheck_thread(NULL); /* loops are freed later, all from the main thread */
    if (e->n_conns || e->acks_outstanding || e->parked_head)
        WSG_LOG(WSG_LOG_WARN, "edge shutdown grace expired",
                "loop=%u connections=%zu acks_pending=%zu events_unpublished=%zu", e->idx,
                e->n_conns, e->acks_outstanding, e->n_parked);
    else
        WSG_LOG(WSG_LOG_INFO, "edge drained", "loop=%u", e->idx);
}

static void *loop_main(void *arg)
{
    edge_loop_t *e = arg;
    wsg_thread_name("edge-loop-%u", e->idx);
    loop_run(e);
    return NULL;
}

int edge_run(edge_t *E)
{
    int rc = 0;
    for (size_t i = 1; i < E->n_loops; i++) {
        if (pthread_create(&E->threads[i], NULL, loop_main, E->loops[i]) != 0) {
            WSG_LOG(WSG_LOG_ERROR, "edge: cannot start a service thread", "loop=%zu", i);
            rc = WSG_EIO;
            edge_stop(E); /* the started ones drain and end */
            for (size_t j = i; j < E->n_loops; j++)
                listen_close(E->loops[j]); /* never served: the kernel stops queuing to them */
            break;
        }
        E->n_threads = i;
    }
    loop_run(E->loops[0]); /* on the caller's thread, which keeps its name (the process's) */
    for (size_t i = 1; i <= E->n_threads; i++)
        pthread_join(E->threads[i], NULL);
    E->n_threads = 0;
    return rc;
}

/* Sets each loop's fence_requested (fence) or stop_requested under its qmu
 * and wakes the loop, whose drain_queue() acts on it. Any thread. */
static void request_all(edge_t *E, int fence)
{
    for (size_t i = 0; E && i < E->n_loops; i++) {
        edge_loop_t *e = E->loops[i];
        if (!e)
            continue;
        pthread_mutex_lock(&e->qmu);
        *(fence ? &e->fence_requested : &e->stop_requested) = 1;
        pthread_mutex_unlock(&e->qmu);
        if (e->ctx)
            lws_cancel_service(e->ctx);
    }
}

void edge_stop(edge_t *E)
{
    request_all(E, 0);
}

void edge_fence(edge_t *E)
{
    request_all(E, 1);
}

int edge_port(const edge_t *E)
{
    return E ? E->port : 0;
}

static void free_conn_ent(void *ud, const char *key, void *val)
{
    edge_conn_t *c = val;
    (void)ud;
    (void)key;
    if (c->hs_fd >= 0) /* a handshake held for the authorizer */
        close(c->hs_fd);
    while (c->held) {
        edge_held_t *h = c->held;
        c->held = h->next;
        bus_cmd_reply(h->q->u.cmd.reply, WSG_EGONE);
        edge_q_free(h->q);
        free(h);
    }
    edge_conn_free(c);
}

static void loop_free(edge_loop_t *e)
{
    if (!e)
        return;
    bus_consumer_free(e->bc); /* unserved: commands left are answered WSG_EGONE */
    e->bc = NULL;
    edge_fanout_free(e->fanout);
    e->fanout = NULL; /* a publish drained during the context's destruction writes alone */
    listen_close(e);
    free(e->fan_conns);
    e->fan_conns = NULL;
    e->fan_cap = 0;
    if (e->loop)
        edge_req_reap(e, 0, 1); /* requests still being read */
    if (e->ctx)
        lws_context_destroy(e->ctx); /* closes what is left; CLOSED frees those conns */
    if (e->loop)
        ev_loop_destroy(e->loop);
    edge_map_each(&e->conns, free_conn_ent, NULL);
    edge_map_free(&e->conns);
    edge_events_drop_parked(e); /* grace expired: counted in its warning */
    edge_map_free(&e->by_fd);
    edge_map_free(&e->channels);
    edge_pmd_free(e->pmd); /* after the context: its last publishes may deflate */
    free(e->rx_conns);
    edge_q_t *q = e->q_head;
    while (q) {
        edge_q_t *next = q->next;
        if (q->kind == EDGE_Q_CMD)
            bus_cmd_reply(q->u.cmd.reply, WSG_EGONE);
        edge_q_free(q);
        q = next;
    }
    pthread_mutex_destroy(&e->qmu);
    free(e);
}

void edge_free(edge_t *E)
{
    if (!E)
        return;
    /* From here on no command or publish reaches E (the bus answers
     * commands WSG_EGONE), and the ones running have returned. */
    if (E->serving_cmd)
        bus_cmd_unserve(E->bus, E->edge_id);
    for (size_t i = 0; i < E->n_loops; i++)
        if (E->loops && E->loops[i] && E->loops[i]->serving_pub)
            bus_publish_unserve(E->bus, edge_bus_publish, E->loops[i]);
    if (E->life) { /* acks still owed by the bus find the edge gone */
        pthread_rwlock_wrlock(&E->life->mu);
        E->life->E = NULL;
        pthread_rwlock_unlock(&E->life->mu);
        edge_life_unref(E->life);
    }
    edge_authz_t *authz = E->authz;
    E->authz = NULL;        /* connections closed from now on release nothing */
    edge_authz_free(authz); /* no more results posted after this */
    for (size_t i = 0; i < E->n_loops; i++) {
        loop_free(E->loops[i]);
        E->loops[i] = NULL;
    }
    edge_map_free(&E->per_ip);
    edge_map_free(&E->users);
    wsg_cidrs_free(&E->trusted);
    pthread_mutex_destroy(&E->mu);
    free(E->loops);
    free(E->threads);
    free(E->edge_id);
    free(E);
    edge_tls_free();
}
