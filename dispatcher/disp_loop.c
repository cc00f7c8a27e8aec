/*
 * disp_loop.c — the dispatcher thread's wait: one epoll set holding the
 * sockets libcurl asks for (CURLMOPT_SOCKETFUNCTION) plus an eventfd that
 * bus callbacks and disp_stop() write to wake the thread, and libcurl's
 * single timer (CURLMOPT_TIMERFUNCTION). Only sockets with activity are
 * handed to curl_multi_socket_action(), so a turn costs what is ready, not
 * what is in flight (curl_multi_poll() + curl_multi_perform() polled and
 * walked every request on every turn).
 *
 * Threads: disp_wake() from any thread; everything else on the delivery
 * thread (disp_loop_init/free from the owning thread before/after it runs).
 */
#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/err.h"
#include "dispatcher/disp_core.h"

#define DISP_EPOLL_BATCH 64

/* libcurl tells which socket to watch for what; socketp marks "in the set". */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    disp_t *d = userp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (socketp)
            epoll_ctl(d->epfd, EPOLL_CTL_DEL, s, NULL); /* may be closed already */
        curl_multi_assign(d->multi, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.data.fd = s};
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        ev.events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        ev.events |= EPOLLOUT;
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(d->epfd, op, s, &ev) != 0 && op == EPOLL_CTL_MOD && errno == ENOENT)
        epoll_ctl(d->epfd, EPOLL_CTL_ADD, s, &ev);
    curl_multi_assign(d->multi, s, (void *)1);
    return 0;
}

/* libcurl's timer: -1 = none, else run CURL_SOCKET_TIMEOUT in timeout_ms. */
static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    disp_t *d = userp;
    (void)multi;
    d->curl_at_ms = timeout_ms < 0 ? -1 : disp_now_ms() + timeout_ms;
    return 0;
}

int disp_loop_init(disp_t *d)
{
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    d->curl_at_ms = -1;
    if (d->epfd < 0 || d->evfd < 0)
        return WSG_EIO;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = d->evfd};
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->evfd, &ev) != 0)
        return WSG_EIO;
    curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
    curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
    return 0;
}

void disp_loop_free(disp_t *d)
{
    if (d->epfd >= 0)
        close(d->epfd);
    if (d->evfd >= 0)
        close(d->evfd);
    d->epfd = d->evfd = -1;
}

void disp_wake(disp_t *d)
{
    uint64_t one = 1;
    ssize_t n = write(d->evfd, &one, sizeof one); /* EAGAIN: already pending */
    (void)n;
}

/* Runs libcurl's timer if it is due; returns ms until it is, or -1. */
int64_t disp_loop_timer(disp_t *d, int64_t now)
{
    int running = 0;
    if (d->curl_at_ms >= 0 && d->curl_at_ms <= now) {
        d->curl_at_ms = -1;
        curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    return d->curl_at_ms < 0 ? -1 : d->curl_at_ms - now;
}

/* Waits at most timeout_ms for a socket, a wake-up or libcurl's timer and
 * hands ready sockets to libcurl. */
void disp_loop_wait(disp_t *d, int timeout_ms)
{
    struct epoll_event evs[DISP_EPOLL_BATCH];
    int64_t now = disp_now_ms();
    int64_t curl_left = disp_loop_timer(d, now);
    if (curl_left >= 0 && curl_left < timeout_ms)
        timeout_ms = (int)curl_left;
    int n = epoll_wait(d->epfd, evs, DISP_EPOLL_BATCH, timeout_ms);
    for (int i = 0; i < n; i++) {
        int running = 0, fd = evs[i].data.fd;
        if (fd == d->evfd) {
            uint64_t v;
            ssize_t r = read(d->evfd, &v, sizeof v);
            (void)r;
            continue;
        }
        int flags = 0;
        if (evs[i].events & (EPOLLIN | EPOLLHUP))
            flags |= CURL_CSELECT_IN;
        if (evs[i].events & EPOLLOUT)
            flags |= CURL_CSELECT_OUT;
        if (evs[i].events & EPOLLERR)
            flags |= CURL_CSELECT_ERR;
        curl_multi_socket_action(d->multi, fd, flags, &running);
    }
    disp_loop_timer(d, disp_now_ms());
}
