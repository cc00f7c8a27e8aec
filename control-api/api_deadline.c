/* SPDX-License-Identifier: MIT */
/*
 * api_deadline.c — the registry of open control-API sockets with their
 * deadlines, and the watchdog thread that shuts down the sockets whose
 * deadline passed. Why and the fd-reuse argument: api_deadline.h.
 *
 * Setting a deadline is one relaxed atomic store on the connection's own
 * MHD thread (the hot send path pays a coarse clock read and that store);
 * only registration, unregistration and the watchdog's sweep take the lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"
#include "control-api/api_deadline.h"

/* How often the watchdog looks: a deadline is enforced at most this late. */
#define SWEEP_MS 200

struct api_sock {
    api_sock_t *prev, *next;
    int fd;
    atomic_int_least64_t deadline_ms; /* CLOCK_MONOTONIC_COARSE ms; 0: none */
};

struct api_deadlines {
    pthread_mutex_t mu; /* the list, and shutdown() on a listed fd */
    pthread_cond_t cv;
    api_sock_t *head;
    uint64_t line_ms;
    pthread_t thread;
    int running;
    int stopping;
};

static int64_t now_ms(void)
{
    return wsg_mono_coarse_ms();
}

void api_deadline_set(api_sock_t *s, uint64_t ms)
{
    if (s)
        atomic_store_explicit(&s->deadline_ms, ms ? now_ms() + (int64_t)ms : 0,
                              memory_order_relaxed);
}

api_sock_t *api_deadline_sock(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_started(api_deadlines_t *d, struct MHD_Connection *conn, void **socket_context)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    api_sock_t *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    s->fd = ci ? ci->connect_fd : -1;
    api_deadline_set(s, d->line_ms);
    pthread_mutex_lock(&d->mu);
    s->next = d->head;
    if (d->head)
        d->head->prev = s;
    d->head = s;
    pthread_mutex_unlock(&d->mu);
    *socket_context = s;
}

static void on_closed(api_deadlines_t *d, void **socket_context)
{
    api_sock_t *s = *socket_context;
    if (!s)
        return;
    pthread_mutex_lock(&d->mu);
    if (s->prev)
        s->prev->next = s->next;
    else
        d->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    pthread_mutex_unlock(&d->mu);
    free(s);
    *socket_context = NULL;
}

void api_deadline_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                         enum MHD_ConnectionNotificationCode toe)
{
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        on_started(cls, conn, socket_context);
    else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
        on_closed(cls, socket_context);
}

/* Shuts down every listed socket past its deadline (under d->mu). Returns
 * how many. */
static unsigned sweep(api_deadlines_t *d)
{
    int64_t now = now_ms();
    unsigned n = 0;
    for (api_sock_t *s = d->head; s; s = s->next) {
        int64_t dl = atomic_load_explicit(&s->deadline_ms, memory_order_relaxed);
        if (dl == 0 || dl > now || s->fd < 0)
            continue;
        shutdown(s->fd, SHUT_RDWR);
        atomic_store_explicit(&s->deadline_ms, 0, memory_order_relaxed);
        n++;
    }
    return n;
}

static void *watchdog(void *arg)
{
    api_deadlines_t *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        struct timespec until = wsg_deadline_in(SWEEP_MS);
        pthread_cond_timedwait(&d->cv, &d->mu, &until);
        if (d->stopping)
            break;
        unsigned n = sweep(d);
        if (n) {
            wsg_count(WSG_M_API_DEADLINE_CLOSES, n);
            WSG_LOG(WSG_LOG_WARN, "api request deadline passed", "connections=%u", n);
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

int api_deadlines_new(api_deadlines_t **out, uint64_t line_ms)
{
    *out = NULL;
    api_deadlines_t *d = calloc(1, sizeof *d);
    if (!d)
        return WSG_ENOMEM;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->line_ms = line_ms;
    if (pthread_create(&d->thread, NULL, watchdog, d) != 0) {
        api_deadlines_free(d);
        return WSG_EIO;
    }
    d->running = 1;
    *out = d;
    return 0;
}

void api_deadlines_stop(api_deadlines_t *d)
{
    if (!d || !d->running)
        return;
    pthread_mutex_lock(&d->mu);
    d->stopping = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    d->running = 0;
}

void api_deadlines_free(api_deadlines_t *d)
{
    if (!d)
        return;
    api_deadlines_stop(d);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}
