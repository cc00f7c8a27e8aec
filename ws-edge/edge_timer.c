/* SPDX-License-Identifier: MIT */
/*
 * edge_timer.c — the deadlines of open connections (next ping, idle timeout,
 * max lifetime) on one hashed timing wheel.
 *
 * Why not lws_set_timer_usecs: lws 4.1 keeps every timer of a service thread
 * in one list sorted by deadline, so each re-arm walks it — at 10,000 idle
 * clients pinged every few seconds that walk was ~90% of the edge's CPU.
 * Here arming and disarming are O(1): slot = deadline / EDGE_WHEEL_MS modulo
 * EDGE_WHEEL_SLOTS, an intrusive list per slot (t_next / t_pprev in the
 * connection). A slot is processed once it lies wholly in the past, so a
 * deadline fires at most one slot (plus a tick) late; a deadline more than
 * one turn ahead waits in its slot and is skipped until its turn comes. The
 * edge's tick calls edge_timer_run.
 *
 * Threads: the edge's service thread only.
 */
#include "ws-edge/edge_int.h"

static int64_t slot_of(int64_t ms)
{
    return ms / EDGE_WHEEL_MS;
}

static void link_into(edge_conn_t **head, edge_conn_t *c)
{
    c->t_next = *head;
    if (*head)
        (*head)->t_pprev = &c->t_next;
    *head = c;
    c->t_pprev = head;
}

void edge_timer_disarm(edge_conn_t *c)
{
    if (!c->t_pprev)
        return;
    *c->t_pprev = c->t_next;
    if (c->t_next)
        c->t_next->t_pprev = c->t_pprev;
    c->t_next = NULL;
    c->t_pprev = NULL;
}

void edge_timer_arm(edge_loop_t *e, edge_conn_t *c, int64_t at_ms)
{
    edge_wheel_t *w = &e->wheel;
    edge_timer_disarm(c);
    c->t_at = at_ms;
    int64_t s = slot_of(at_ms);
    if (w->done && s <= w->done) /* that slot was (or is being) processed */
        s = w->done + 1;
    link_into(&w->slot[s % EDGE_WHEEL_SLOTS], c);
}

void edge_timer_run(edge_loop_t *e, int64_t now)
{
    edge_wheel_t *w = &e->wheel;
    int64_t until = slot_of(now) - 1; /* the last slot wholly in the past */
    if (!w->done)
        w->done = until - 1;
    /* After a stall longer than a turn, one pass over every slot still
     * visits every connection once. */
    for (int n = 0; w->done < until && n < EDGE_WHEEL_SLOTS; n++) {
        w->done++;
        edge_conn_t **head = &w->slot[w->done % EDGE_WHEEL_SLOTS];
        edge_conn_t *later = NULL; /* a later turn's deadlines, put back after */
        while (*head) {
            edge_conn_t *c = *head;
            edge_timer_disarm(c);
            if (c->t_at > now)
                link_into(&later, c);
            else
                edge_on_timer(e, c); /* re-arms c in a slot after w->done */
        }
        while (later) {
            edge_conn_t *c = later;
            edge_timer_disarm(c);
            link_into(head, c);
        }
    }
    if (w->done < until)
        w->done = until;
}
