/* SPDX-License-Identifier: MIT */
/*
 * bus_nats_ev.c — client events of the cluster bus on JetStream.
 *
 * Stream <PREFIX>_EVENTS (file storage, limits retention, max age 24 h, a
 * byte bound, Discard New: a full stream refuses new events instead of
 * dropping old ones) holds subjects <prefix>.ev.<k>.<p>.<tok(conn_id)>,
 * k = "s" (connect/disconnect) or "m" (message), p = FNV-1a(conn_id) %
 * partitions. Nats-Msg-Id = the event id (server-side dedup; a replay gets
 * "<id>.replay.<ms>" and carries its id in Wsg-Id); the other
 * fields of bus_event_t travel in Wsg-* headers, the body is the payload.
 *
 * Publishing is js_PublishMsgAsync; the PubAck handler (a NATS thread) maps
 * the natsMsg back to the caller's callback through a pending table bounded
 * by pub_max_pending. Past it, while NATS is away or silent (publish_gate),
 * or when libnats cannot buffer the message, the publish answers WSG_EFULL
 * and takes nothing: the caller offers it again (bus.h).
 *
 * Each group has one durable pull consumer per partition
 * (<tok(group)>_<p>, explicit ack, bound MaxAckPending) and consumes a
 * partition only while it holds the lease <tok(group)>.<p> in the KeyValue
 * bucket <prefix>_leases (TTL lease_ttl_ms, 3 s by default, renewed by the
 * service thread every third of it; fetched only within two thirds of it
 * since the last renewal). A lease whose holder died expires and is created
 * anew by another process, which first restarts the partition's consumer at
 * its ack floor (reclaim_step), so the dead holder's unacked events come
 * again at once instead of after AckWait. One delivery thread per group fetches from its leased
 * partitions and calls the group's bus_event_fn in stream order, so events
 * of one connection reach a group in order even with many processes.
 * Deliveries not yet done are kept "in progress" (natsMsg_InProgress) by the
 * service thread, so a slow consumer is not redelivered behind its back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "bus/bus_nats.h"
#include "common/err.h"
#include "common/log.h"
#include "common/thread.h"
#include "common/hash.h"

struct nb_pub {
    nb_pub_t *next;          /* in its pubs[] bucket */
    nb_pub_t *older, *newer; /* b->oldest .. b->newest, in publish order */
    natsMsg *msg;
    bus_event_ack_fn cb;
    void *ud;
    char *conn; /* the event's connection: poisoned if this one fails */
    int disconnect;
    int64_t at_ms;  /* when it was handed to libnats (mono) */
    uint64_t epoch; /* libnats's reconnect count then */
};

/* A connection one of whose events may not have reached the stream. */
struct nb_poison {
    nb_poison_t *next;
    char *conn;
    int code;      /* the failure that poisoned it; later events get the same */
    int64_t at_ms; /* when (mono): poison_add makes room with the old ones */
};

struct nb_delivery {
    struct bus_delivery base;
    nb_delivery_t *prev, *next;
    nb_group_t *g;
    natsMsg *msg;
    bus_event_t ev;
    char *strs[4];
    int64_t touched;
};

struct nb_group {
    nb_group_t *next;
    nats_bus_t *b;
    char *name, *tok;
    uint32_t mask;
    bus_event_fn fn;
    bus_run_end_fn run_end; /* may be NULL */
    void *ud;
    pthread_t th;
    int th_running;
    natsSubscription **subs; /* delivery thread only */
    uint64_t *rev;           /* service thread only: lease revision, 0 = not ours */
    unsigned char *giving;   /* service thread only: held, fetching stopped, to release */
    uint64_t *give_loops;    /* service thread only: g->loops when giving began */
    uint32_t share;          /* service thread only: the share at the last lease round */
    int64_t next_claim_ms;   /* service thread only: next look for partitions given back */
    atomic_int *want;        /* NB_WANT_*: what the delivery thread does with p */
    atomic_ullong loops;     /* rounds the delivery thread finished */
    pthread_mutex_t mu;      /* the undone list */
    nb_delivery_t *head, *tail;
    natsSubscription *wake;     /* core NATS copy of the group's event subjects */
    natsSubscription *freed;    /* <prefix>.lease.<tok>.free: a member gave leases back */
    atomic_int freed_seen;      /* set by freed's callback, taken by the service thread */
    atomic_llong *hold_until;   /* set by the delivery thread: no fetch from p before (mono ms) */
    atomic_llong *lease_until;  /* set by the service thread: no fetch from p after (mono ms) */
    int64_t *reclaim;           /* service thread only: NB_RECLAIM_CHECK, or the stream
                                   sequence p's consumer is to be created at again */
    atomic_ullong *handed_upto; /* set by the service thread: events of p up to this stream
                                   sequence were handed out by a consumer since restarted */
    atomic_int kicked;          /* an event of a leased partition arrived since the last round */
    atomic_llong *dseq;         /* the consumer's delivery sequence of p's last message this
                                   process got (NB_DSEQ_UNKNOWN: not checked); delivery_follows */
    atomic_int *rebind;         /* set by the service thread: a fresh subscription before the
                                   next fetch of p (the old one may hold another consumer's) */
};

/* want[p]: the lease is not ours / ours, fetched / ours, being given back
 * (not fetched) / being given back, fetched once more (what the server
 * already handed us, so it is delivered before the next holder's first). */
enum { NB_WANT_NONE, NB_WANT_FETCH, NB_WANT_GIVE, NB_WANT_DRAIN };

#define NB_MAX_ACK_PENDING 4096
#define NB_CLAIM_EVERY_MS 1000   /* below its share, a member looks for given-back partitions */
#define NB_LEASE_FREE "free"     /* a lease's value once its holder gave it back */
#define NB_STOP_HANDOVER_MS 5000 /* a stopping process's wait to hand partitions back whole */
#define NB_STOP_POLL_MS 50
#define NB_STOP_SETTLE_MS 200
#define NB_NAK_WAIT_MS 2000 /* a Nak sent as a request: the server's answer */
#define NB_IDLE_MIN_MS 5
#define NB_IDLE_MAX_MS 100
#define NB_LOST_FETCH_MARGIN_MS 2000
#define NB_KICK_RETRY_MS 1    /* after a wake-up: the stream may store the event a moment later */
#define NB_RECLAIM_CHECK (-1) /* reclaim[p]: a lease created anew, its consumer not looked at */
#define NB_RECLAIM_WAIT (-2)  /* reclaim[p]: held out AckWait instead (too much to repeat) */
#define NB_DSEQ_UNKNOWN (-1)  /* dseq[p]: no baseline, the next message sets it */

/* How long a partition is held after a delivery may have been lost: until
 * the server hands it out again (AckWait), plus a margin for its
 * redelivery sweep. */
static int64_t lost_hold_ms(const nats_bus_t *b)
{
    return (int64_t)b->tune.ack_wait_ms + NB_LOST_FETCH_MARGIN_MS;
}

/* ---- publish ---------------------------------------------------------------- */

static size_t pub_bucket(const natsMsg *m)
{
    return (size_t)(((uintptr_t)m >> 4) % NB_BUCKETS);
}

/* Adds p (its msg set) as the newest event out. Caller holds b->mu. */
static void pub_put(nats_bus_t *b, nb_pub_t *p)
{
    size_t i = pub_bucket(p->msg);
    p->next = b->pubs[i];
    b->pubs[i] = p;
    p->older = b->newest;
    p->newer = NULL;
    if (b->newest)
        b->newest->newer = p;
    else
        b->oldest = p;
    b->newest = p;
    b->npubs++;
}

/* Takes m's entry out (NULL: none). Caller holds b->mu. */
static nb_pub_t *pub_take(nats_bus_t *b, const natsMsg *m)
{
    nb_pub_t **pp = &b->pubs[pub_bucket(m)];
    while (*pp && (*pp)->msg != m)
        pp = &(*pp)->next;
    nb_pub_t *p = *pp;
    if (!p)
        return NULL;
    *pp = p->next;
    if (p->older)
        p->older->newer = p->newer;
    else
        b->oldest = p->newer;
    if (p->newer)
        p->newer->older = p->older;
    else
        b->newest = p->older;
    b->npubs--;
    return p;
}

/* ---- poisoned connections and held publishes -------------------------------------
 *
 * The stream may miss an event that was out (published, no PubAck yet) when
 * something broke, and then any later event of its connection that got
 * through would leave a gap in its seqs. libnats 3.4.1 loses buffered bytes
 * without telling the publisher of each: a flush that runs into the write
 * deadline drops its whole write buffer (and shuts the socket, so a
 * reconnect follows); a reconnect whose flush of the reconnect buffer fails
 * drops that buffer; what the old socket held dies with it. What is written
 * after such a loss (a fresh write buffer, the next reconnect buffer) still
 * reaches the stream.
 *
 * So a connection is poisoned when one of its events failed (refused,
 * PubAck error or timeout) or was out across a reconnect (libnats's
 * reconnect count moved since it was published): every later event of it
 * is refused with the status of that first failure (WSG_ENOSPC, WSG_EBUS,
 * else WSG_EUNAVAILABLE: the edge closes the client with 1013), except its
 * disconnect, the last one, which ends the record (docs/contract.md: every
 * connect gets one disconnect). And while a loss may be pending unnoticed,
 * nothing new is handed to libnats: the publish answers WSG_EFULL (not
 * taken: the caller keeps it and its client's reads pause):
 *  - while NATS is away (not connected), for up to pub_timeout_ms; past
 *    that, events are refused (WSG_EUNAVAILABLE), and a disconnect goes
 *    to the reconnect buffer;
 *  - while the oldest event out is NB_STALL_MS old or more. A write
 *    deadline drops a buffer NB_WRITE_DEADLINE_MS after its write began,
 *    which was after every event in it was published: each is older than
 *    NB_STALL_MS by then, so the next event of its connection waits until
 *    that one's PubAck times out and poisons it.
 * Each entry leaves with its connection's disconnect. One added after
 * that disconnect went out (its event failed later, or was out across a
 * reconnect behind it) would stay, so the list is bounded by
 * tune.poison_max, and when full, entries older than tune.poison_keep_ms
 * (60 s) make room: by then the event that poisoned one has long been
 * answered (pub_timeout_ms), and a failure closed its client (1013, its
 * disconnect right behind). Only when none is that old is a connection
 * not poisoned (warned once per full spell). Under b->mu. */

#define NB_STALL_MS (NB_WRITE_DEADLINE_MS / 2)
#define NB_POISON_SWEEP_MS 100 /* a full list is walked at most this often */

static size_t poison_bucket(const char *conn)
{
    return (size_t)(wsg_hashn(conn, strlen(conn)) % NB_BUCKETS);
}

static nb_poison_t **poison_find(nats_bus_t *b, const char *conn)
{
    nb_poison_t **pp = &b->poison[poison_bucket(conn)];
    while (*pp && strcmp((*pp)->conn, conn) != 0)
        pp = &(*pp)->next;
    return pp;
}

static void poison_free(nats_bus_t *b, nb_poison_t **pp)
{
    nb_poison_t *x = *pp;
    *pp = x->next;
    free(x->conn);
    free(x);
    b->npoison--;
}

/* Drops the entries older than tune.poison_keep_ms. */
static void poison_sweep(nats_bus_t *b, int64_t now)
{
    for (size_t i = 0; i < NB_BUCKETS; i++)
        for (nb_poison_t **pp = &b->poison[i]; *pp;)
            if (now - (*pp)->at_ms >= (int64_t)b->tune.poison_keep_ms)
                poison_free(b, pp);
            else
                pp = &(*pp)->next;
}

static void poison_add(nats_bus_t *b, const char *conn, int code)
{
    if (*poison_find(b, conn))
        return;
    int64_t now = wsg_mono_ms();
    if (b->npoison >= b->tune.poison_max && now - b->poison_swept_ms >= NB_POISON_SWEEP_MS) {
        b->poison_swept_ms = now; /* a walk of the whole list: not for every refusal */
        poison_sweep(b, now);
    }
    if (b->npoison >= b->tune.poison_max) {
        if (!b->poison_full_warned)
            WSG_LOG(WSG_LOG_WARN, "bus: too many connections refused at once: one not refused",
                    "conn=%s entries=%u", conn, (unsigned)b->npoison);
        b->poison_full_warned = 1;
        return;
    }
    b->poison_full_warned = 0;
    nb_poison_t *x = bus_xcalloc(sizeof *x);
    x->conn = bus_xstrdup(conn);
    x->code = code;
    x->at_ms = now;
    nb_poison_t **pp = poison_find(b, conn);
    x->next = *pp; /* NULL: the end of its bucket */
    *pp = x;
    b->npoison++;
}

/* The status that refuses conn's event (0: not poisoned); a disconnect
 * takes it off the list. */
static int poison_check(nats_bus_t *b, const char *conn, int disconnect)
{
    nb_poison_t **pp = poison_find(b, conn);
    if (!*pp)
        return 0;
    if (!disconnect)
        return (*pp)->code;
    poison_free(b, pp);
    return 0;
}

/* libnats's reconnect count, read under its lock: it moves before anything
 * is written to a new connection. */
static uint64_t reconnects(nats_bus_t *b)
{
    uint64_t n = 0;
    if (!b->stats && natsStatistics_Create(&b->stats) != NATS_OK)
        return b->epoch;
    if (natsConnection_GetStats(b->nc, b->stats) != NATS_OK ||
        natsStatistics_GetCounts(b->stats, NULL, NULL, NULL, NULL, &n) != NATS_OK)
        return b->epoch;
    return n;
}

/* Whether an event may be handed to libnats now (0), later (WSG_EFULL) or
 * not at all (WSG_EUNAVAILABLE); poisons what a reconnect may have lost
 * first. Caller holds b->mu. */
static int publish_gate(nats_bus_t *b, int disconnect, int64_t now)
{
    uint64_t epoch = reconnects(b);
    if (epoch != b->epoch) { /* out across a reconnect: a prefix of the list */
        for (nb_pub_t *p = b->oldest; p && p->epoch != epoch; p = p->newer)
            if (!p->disconnect)
                poison_add(b, p->conn, WSG_EUNAVAILABLE);
        b->epoch = epoch;
    }
    if (natsConnection_Status(b->nc) != NATS_CONN_STATUS_CONNECTED) {
        if (!b->away_since_ms)
            b->away_since_ms = now;
        if (now - b->away_since_ms < (int64_t)b->tune.pub_timeout_ms)
            return WSG_EFULL;
        return disconnect ? 0 : WSG_EUNAVAILABLE;
    }
    b->away_since_ms = 0;
    return b->oldest && now - b->oldest->at_ms >= NB_STALL_MS ? WSG_EFULL : 0;
}

/* A NATS thread. Every partition is held as after a cut fetch
 * (fetch_partition, recover_cut): the answer of a fetch that had already
 * returned can still have been on the wire (libnats's no-wait fetch returns
 * before it), lost without any fetch seeing a cut, and the server would
 * hand its events out again only after AckWait, behind later ones. Once
 * connected again and with no delivery of its own out, each held partition's
 * consumer restarts at its ack floor (or stays, when nothing is out). The
 * group list is fixed once the bus started. */
void nb_ev_disconnected(nats_bus_t *b)
{
    atomic_fetch_add(&b->disconnects, 1);
    int64_t now = wsg_mono_ms();
    atomic_store(&b->broke_ms, now);
    if (atomic_load(&b->started))
        for (nb_group_t *g = b->groups; g; g = g->next)
            for (uint32_t p = 0; p < b->partitions; p++)
                atomic_store(&g->hold_until[p], now + lost_hold_ms(b));
}

static void pub_free(nb_pub_t *p)
{
    if (p)
        free(p->conn);
    free(p);
}

static int pub_error(const jsPubAckErr *pae)
{
    if (pae->ErrCode == JSStreamStoreFailedErr || (pae->ErrText && strstr(pae->ErrText, "maximum")))
        return WSG_ENOSPC; /* Discard New: the stream is full */
    if (pae->ErrCode)
        return WSG_EBUS;
    int rc = nb_status_to_err(pae->Err);
    return rc == WSG_EFULL ? WSG_EUNAVAILABLE : rc;
}

void nb_ev_ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *ud);
void nb_ev_ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *ud)
{
    nats_bus_t *b = ud;
    int rc = pae ? pub_error(pae) : pa ? 0 : WSG_EBUS;
    pthread_mutex_lock(&b->mu);
    nb_pub_t *p = pub_take(b, msg);
    /* with the take: no later event of its connection goes out in between */
    if (p && rc != 0 && !p->disconnect)
        poison_add(b, p->conn, rc);
    pthread_mutex_unlock(&b->mu);
    natsMsg_Destroy(msg); /* with an AckHandler, the message is ours again */
    if (!p)
        return;
    if (p->cb)
        p->cb(p->ud, rc);
    pub_free(p);
}

static natsStatus ev_headers(natsMsg *m, const bus_event_t *ev)
{
    char num[32], dedup[160];
    natsStatus s;
    if (ev->replay) { /* JetStream would drop the id it saw within its window */
        snprintf(dedup, sizeof dedup, "%s.replay.%lld", ev->id, (long long)wsg_wall_ms());
        s = nb_hdr_set_tok(m, "Nats-Msg-Id", dedup);
        if (s == NATS_OK)
            s = nb_hdr_set_tok(m, "Wsg-Id", ev->id);
    } else {
        s = nb_hdr_set_tok(m, "Nats-Msg-Id", ev->id);
    }
    snprintf(num, sizeof num, "%d", (int)ev->type);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Wsg-Type", num);
    snprintf(num, sizeof num, "%llu", (unsigned long long)ev->seq);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Wsg-Seq", num);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Conn", ev->conn_id);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Edge", ev->edge_id);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Route", ev->route);
    return s;
}

/* The partition of a connection's events. */
static uint32_t partition_of(const nats_bus_t *b, const char *conn_id)
{
    return (uint32_t)(wsg_hashn(conn_id, strlen(conn_id)) % b->partitions);
}

static char *ev_subject(nats_bus_t *b, int message, const char *conn_id)
{
    size_t n = strlen(conn_id);
    char *t = nb_tok(conn_id, n);
    size_t len = strlen(b->prefix) + strlen(t) + 32;
    char *s = bus_xcalloc(len);
    snprintf(s, len, "%s.ev.%c.%u.%s", b->prefix, message ? 'm' : 's',
             (unsigned)partition_of(b, conn_id), t);
    free(t);
    return s;
}

/* The status that refuses a connection's later events after rc refused
 * one of them: what the stream said, or "unavailable" for anything of the
 * connection to NATS. */
static int refusal(int rc)
{
    return rc == WSG_EBUS || rc == WSG_ENOSPC ? rc : WSG_EUNAVAILABLE;
}

void nb_ev_capacity(bus_t *bus, size_t *events, size_t *bytes)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    uint32_t n = b->tune.pub_max_pending < NB_PUB_WINDOW ? b->tune.pub_max_pending : NB_PUB_WINDOW;
    *events = BUS_CAPACITY_SHARE(n);
    *bytes = BUS_CAPACITY_SHARE((size_t)NB_RECONNECT_BUF);
}

int nb_ev_publish(bus_t *bus, const bus_event_t *ev, bus_event_ack_fn cb, void *ud)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (ev->body_len > (size_t)INT32_MAX) /* ev was checked by bus.c */
        return WSG_EINVAL;
    char *subj = ev_subject(b, ev->type == BUS_EV_MESSAGE, ev->conn_id);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, ev->body, (int)ev->body_len);
    free(subj);
    if (s == NATS_OK)
        s = ev_headers(m, ev);
    int rc = atomic_load(&b->stopping) ? WSG_EUNAVAILABLE : nb_status_to_err(s);
    nb_pub_t *p = NULL;
    int disc = ev->type == BUS_EV_DISCONNECT;
    if (rc == 0) {
        int64_t now = wsg_mono_ms();
        pthread_mutex_lock(&b->mu);
        int gate = publish_gate(b, disc, now);
        if ((rc = poison_check(b, ev->conn_id, disc)) != 0) {
            /* refused like the event that poisoned it */
        } else if ((rc = gate) != 0) {
            /* WSG_EFULL: not taken, nothing to poison; or refused */
        } else if (b->npubs >= b->tune.pub_max_pending) {
            rc = WSG_EFULL; /* not taken: no gap, nothing to poison */
        } else {
            p = bus_xcalloc(sizeof *p);
            *p = (nb_pub_t){.msg = m,
                            .cb = cb,
                            .ud = ud,
                            .conn = bus_xstrdup(ev->conn_id),
                            .disconnect = disc,
                            .at_ms = now,
                            .epoch = b->epoch};
            pub_put(b, p);
        }
        if (rc != 0 && rc != WSG_EFULL && !disc)
            poison_add(b, ev->conn_id, rc);
        pthread_mutex_unlock(&b->mu);
    }
    if (rc == 0) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = b->tune.pub_timeout_ms;
        natsMsg *owned = m;
        s = js_PublishMsgAsync(b->js, &owned, &po);
        if (s == NATS_OK)
            return 0; /* the library owns m; the handler answers */
        pthread_mutex_lock(&b->mu);
        pub_free(pub_take(b, m));
        /* libnats could not buffer it (NATS away, reconnect buffer full):
         * not sent, so no gap either; the caller offers it again */
        rc = s == NATS_INSUFFICIENT_BUFFER ? WSG_EFULL : refusal(nb_status_to_err(s));
        if (rc != WSG_EFULL && !disc)
            poison_add(b, ev->conn_id, rc);
        pthread_mutex_unlock(&b->mu);
    }
    natsMsg_Destroy(m);
    if (rc == WSG_EFULL)
        return rc;
    if (cb)
        cb(ud, refusal(rc));
    return 0;
}

/* ---- last seq ------------------------------------------------------------------- */

int nb_ev_last_seq(bus_t *bus, const char *conn_id, uint64_t *seq)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (!conn_id || !*conn_id || !seq)
        return WSG_EINVAL;
    *seq = 0;
    for (int k = 0; k < 2; k++) {
        char *subj = ev_subject(b, k, conn_id);
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetLastMsg(&m, b->js, b->stream, subj, NULL, &jerr);
        free(subj);
        if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
            continue;
        if (s != NATS_OK)
            return WSG_EBUS;
        const char *v = NULL;
        if (natsMsgHeader_Get(m, "Wsg-Seq", &v) == NATS_OK) {
            uint64_t n = strtoull(v, NULL, 10);
            if (n > *seq)
                *seq = n;
        }
        natsMsg_Destroy(m);
    }
    return 0;
}

/* ---- groups ---------------------------------------------------------------------- */

int nb_ev_on_run_end(bus_t *bus, const char *group, bus_run_end_fn fn)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (!group || !fn || atomic_load(&b->started))
        return WSG_EINVAL;
    for (nb_group_t *g = b->groups; g; g = g->next)
        if (strcmp(g->name, group) == 0) {
            g->run_end = fn;
            return 0;
        }
    return WSG_EINVAL;
}

int nb_ev_subscribe(bus_t *bus, const char *group, uint32_t type_mask, bus_event_fn fn, void *ud)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (!group || !*group || !fn || bus_check_type_mask(type_mask) != 0 || atomic_load(&b->started))
        return WSG_EINVAL;
    for (nb_group_t *g = b->groups; g; g = g->next)
        if (strcmp(g->name, group) == 0)
            return WSG_EEXISTS;
    nb_group_t *g = bus_xcalloc(sizeof *g);
    g->b = b;
    g->name = bus_xstrdup(group);
    g->tok = nb_tok(group, strlen(group));
    g->mask = type_mask;
    g->fn = fn;
    g->ud = ud;
    g->subs = bus_xcalloc(b->partitions * sizeof *g->subs);
    g->rev = bus_xcalloc(b->partitions * sizeof *g->rev);
    g->want = bus_xcalloc(b->partitions * sizeof *g->want);
    g->giving = bus_xcalloc(b->partitions);
    g->give_loops = bus_xcalloc(b->partitions * sizeof *g->give_loops);
    g->hold_until = bus_xcalloc(b->partitions * sizeof *g->hold_until);
    g->lease_until = bus_xcalloc(b->partitions * sizeof *g->lease_until);
    g->reclaim = bus_xcalloc(b->partitions * sizeof *g->reclaim);
    g->handed_upto = bus_xcalloc(b->partitions * sizeof *g->handed_upto);
    g->dseq = bus_xcalloc(b->partitions * sizeof *g->dseq);
    for (uint32_t p = 0; p < b->partitions; p++)
        atomic_store(&g->dseq[p], NB_DSEQ_UNKNOWN);
    g->rebind = bus_xcalloc(b->partitions * sizeof *g->rebind);
    pthread_mutex_init(&g->mu, NULL);
    g->next = b->groups;
    b->groups = g;
    return 0;
}

/* The <k> token of the subjects a group consumes: "m", "s" or both. */
static const char *group_kind(const nb_group_t *g)
{
    uint32_t s = BUS_EV_MASK(BUS_EV_CONNECT) | BUS_EV_MASK(BUS_EV_DISCONNECT) |
                 BUS_EV_MASK(BUS_EV_SUBSCRIPTION);
    return !(g->mask & s) ? "m" : !(g->mask & BUS_EV_MASK(BUS_EV_MESSAGE)) ? "s" : "*";
}

static void group_filter(nb_group_t *g, uint32_t p, char *buf, size_t n)
{
    snprintf(buf, n, "%s.ev.%s.%u.*", g->b->prefix, group_kind(g), (unsigned)p);
}

static void durable_name(const nb_group_t *g, uint32_t p, char *buf, size_t n)
{
    snprintf(buf, n, "%.140s_%u", g->tok, (unsigned)p);
}

/* The settings of partition p's durable consumer; durable and filter are
 * the caller's buffers (160 bytes) the config points to. */
static void consumer_config(nb_group_t *g, uint32_t p, jsConsumerConfig *cc, char *durable,
                            char *filter)
{
    durable_name(g, p, durable, 160);
    group_filter(g, p, filter, 160);
    jsConsumerConfig_Init(cc);
    cc->Durable = durable;
    cc->FilterSubject = filter;
    cc->AckPolicy = js_AckExplicit;
    cc->AckWait = (int64_t)g->b->tune.ack_wait_ms * 1000000;
    cc->MaxAckPending = NB_MAX_ACK_PENDING;
    cc->DeliverPolicy = js_DeliverAll;
}

/* Creates (idempotently) the durable consumer of partition p and binds a
 * pull subscription to it; binding never deletes it on unsubscribe. */
static natsStatus bind_partition(nb_group_t *g, uint32_t p)
{
    nats_bus_t *b = g->b;
    char durable[160], filter[160];
    jsConsumerConfig cc;
    consumer_config(g, p, &cc, durable, filter);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddConsumer(&ci, b->js, b->stream, &cc, NULL, &jerr);
    if (s != NATS_OK && jerr != 0) { /* exists with other settings: align them */
        jsConsumerInfo_Destroy(ci);
        ci = NULL;
        s = js_UpdateConsumer(&ci, b->js, b->stream, &cc, NULL, &jerr);
        s = jerr != 0 ? NATS_OK : s; /* not updatable: bind to it as it is */
    }
    jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK)
        return s;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = b->stream;
    so.Consumer = durable;
    so.ManualAck = true;
    return js_PullSubscribe(&g->subs[p], b->js, filter, durable, NULL, &so, &jerr);
}

static void drop_partition(nb_group_t *g, uint32_t p)
{
    if (!g->subs[p])
        return;
    natsSubscription_Unsubscribe(g->subs[p]); /* bound: the consumer stays */
    natsSubscription_Destroy(g->subs[p]);
    g->subs[p] = NULL;
}

static void free_delivery(nb_delivery_t *d)
{
    if (!d)
        return;
    for (int i = 0; i < 4; i++)
        free(d->strs[i]);
    free(d);
}

/* Decodes m into a delivery; NULL when it is not an event of ours. */
static nb_delivery_t *make_delivery(nb_group_t *g, natsMsg *m)
{
    const char *t = NULL, *q = NULL;
    if (natsMsgHeader_Get(m, "Wsg-Type", &t) != NATS_OK ||
        natsMsgHeader_Get(m, "Wsg-Seq", &q) != NATS_OK)
        return NULL;
    nb_delivery_t *d = bus_xcalloc(sizeof *d);
    d->base.bus = &g->b->base;
    d->g = g;
    d->msg = m;
    d->ev.type = (bus_event_type_t)atoi(t);
    d->ev.seq = strtoull(q, NULL, 10);
    const char *replayed = NULL; /* a replay's own id is in Wsg-Id (ev_headers) */
    d->ev.id = d->strs[0] = nb_hdr_get_tok(
        m, natsMsgHeader_Get(m, "Wsg-Id", &replayed) == NATS_OK ? "Wsg-Id" : "Nats-Msg-Id");
    d->ev.conn_id = d->strs[1] = nb_hdr_get_tok(m, "Wsg-Conn");
    d->ev.edge_id = d->strs[2] = nb_hdr_get_tok(m, "Wsg-Edge");
    d->ev.route = d->strs[3] = nb_hdr_get_tok(m, "Wsg-Route");
    d->ev.body = natsMsg_GetData(m);
    d->ev.body_len = (size_t)natsMsg_GetDataLength(m);
    if (bus_check_event(&d->ev) != 0) {
        free_delivery(d);
        return NULL;
    }
    return d;
}

/* m from partition p's consumer; meta is its metadata (NULL: none). */
static void deliver(nb_group_t *g, uint32_t p, natsMsg *m, const jsMsgMetaData *meta)
{
    nb_delivery_t *d = make_delivery(g, m);
    if (!d || !(g->mask & BUS_EV_MASK(d->ev.type))) {
        natsMsg_Ack(m, NULL); /* not for this group (or not ours): settled */
        natsMsg_Destroy(m);
        free_delivery(d);
        return;
    }
    uint32_t attempt = 1;
    if (meta) {
        attempt = meta->NumDelivered > 0 ? (uint32_t)meta->NumDelivered : 1;
        /* handed out before the consumer restarted: that was an attempt too */
        attempt += meta->Sequence.Stream <= atomic_load(&g->handed_upto[p]);
    }
    d->touched = wsg_mono_ms();
    pthread_mutex_lock(&g->mu);
    d->prev = g->tail;
    if (g->tail)
        g->tail->next = d;
    else
        g->head = d;
    g->tail = d;
    pthread_mutex_unlock(&g->mu);
    g->fn(g->ud, &d->ev, &d->base, attempt);
}

static int partition_held(nb_group_t *g, uint32_t p);
static int undone_in(nb_group_t *g, uint32_t p);

/* The batch of the next fetch on sub. A no-wait fetch without an expiry
 * returns as soon as the subscription is momentarily empty (libnats 3.4.1,
 * natsSub_nextMsg with timeout 0), so its server's answer lands after it and
 * waits in the subscription for the next fetch. That fetch takes the waiting
 * messages first (c of them) and then collects until its count equals the
 * batch it asks the server for, batch - c: with c above half the batch the
 * count is already past that mark and the fetch writes past its array (an
 * ASan heap-buffer-overflow in fetch_partition, seen in CI). An expiry does
 * not help: nats-server 2.9 then holds a no-wait pull until it expires. So
 * the batch is at least twice anything that can be waiting: what waits now
 * plus all the consumer may still have out (MaxAckPending bounds it). */
static int fetch_batch(natsSubscription *sub)
{
    int msgs = 0, bytes = 0;
    if (natsSubscription_GetPending(sub, &msgs, &bytes) != NATS_OK || msgs < 0)
        msgs = 0;
    return 2 * (NB_MAX_ACK_PENDING + msgs);
}

/* ---- deliveries whole ------------------------------------------------------------
 *
 * A partition's consumer numbers every message it hands out (its delivery
 * sequence), whoever asked. Only the lease holder asks, but a pull request
 * another process sent while it held the lease can reach the server late,
 * after that lease expired and was taken (the old holder or the server hung,
 * its requests were still in a socket), and the server then hands that
 * process events it no longer fetches: the connection's later events would
 * reach the new holder first, the taken ones only after AckWait. So the
 * holder checks that each message follows the last one it got (dseq[p]; the
 * baseline comes from the consumer's info, read where the holder decides
 * whether to restart the consumer, or is 0 after a restart). A message
 * that does not follow means deliveries went elsewhere: p is held as after
 * a cut fetch, the message and the rest of its batch are dropped unacked,
 * and once the holder's own deliveries of p are done its consumer restarts
 * at the ack floor (recover_cut), on a fresh subscription. */

/* Whether the message meta describes follows the last one of p (updates
 * dseq[p]); if not, holds p. Delivery thread. */
static int delivery_follows(nb_group_t *g, uint32_t p, const jsMsgMetaData *meta)
{
    nats_bus_t *b = g->b;
    long long last = atomic_load(&g->dseq[p]), got = (long long)meta->Sequence.Consumer;
    if (last == NB_DSEQ_UNKNOWN || got == last + 1) {
        /* a baseline the service thread set meanwhile (a restart) wins */
        atomic_compare_exchange_strong(&g->dseq[p], &last, got);
        return 1;
    }
    atomic_store(&g->dseq[p], NB_DSEQ_UNKNOWN);
    atomic_store(&g->hold_until[p], wsg_mono_ms() + lost_hold_ms(b));
    WSG_LOG(WSG_LOG_WARN, "partition held: deliveries of its consumer went elsewhere",
            "group=%s partition=%u expected=%lld got=%lld", g->name, (unsigned)p, last + 1, got);
    return 0;
}

/* A fetch that was out when the connection to NATS broke may have been
 * answered with events that never reached us. The server hands them out
 * again only when their AckWait runs out, and anything fetched from the
 * partition before then would overtake them (a connection's seq 35 before its
 * 34): so the partition is held that long (plus a margin for the server's
 * redelivery sweep), then its redeliveries come first; and it is not handed
 * to another member meanwhile (renew_leases), which would not know. */
static int fetch_partition(nb_group_t *g, uint32_t p)
{
    nats_bus_t *b = g->b;
    if (partition_held(g, p) || atomic_load(&g->rebind[p]))
        return 0; /* a rebind set before the hold ended goes first */
    jsFetchRequest fr;
    jsFetchRequest_Init(&fr);
    fr.Batch = fetch_batch(g->subs[p]);
    fr.NoWait = true;
    natsMsgList list = {0};
    unsigned breaks = atomic_load(&b->disconnects);
    natsStatus s = natsSubscription_FetchRequest(&list, g->subs[p], &fr);
    if (atomic_load(&b->disconnects) != breaks ||
        (s != NATS_OK && natsConnection_Status(b->nc) != NATS_CONN_STATUS_CONNECTED)) {
        atomic_store(&g->hold_until[p], wsg_mono_ms() + lost_hold_ms(b));
        WSG_LOG(WSG_LOG_WARN, "partition held after a fetch cut by a NATS disconnect",
                "group=%s partition=%u hold_ms=%lld", g->name, (unsigned)p,
                (long long)lost_hold_ms(b));
    }
    int n = 0; /* what did arrive (even with an error) precedes anything lost */
    for (int i = 0; i < list.Count; i++) {
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, list.Msgs[i]) != NATS_OK) {
            meta = NULL;
            atomic_store(&g->dseq[p], NB_DSEQ_UNKNOWN); /* no number: the next one sets it */
        }
        if (meta && !delivery_follows(g, p, meta)) {
            jsMsgMetaData_Destroy(meta);
            break; /* the rest are destroyed unacked: the restart hands them out again */
        }
        deliver(g, p, list.Msgs[i], meta);
        jsMsgMetaData_Destroy(meta);
        list.Msgs[i] = NULL;
        n++;
    }
    natsMsgList_Destroy(&list);
    return n;
}

/* Returns 1 when woken (or found woken) by wake_cb. */
static int idle_wait(nats_bus_t *b, nb_group_t *g, int ms)
{
    pthread_mutex_lock(&b->mu);
    if (!atomic_load(&b->stopping) && !atomic_load(&g->kicked)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += ms * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
    return atomic_exchange(&g->kicked, 0);
}

/* The group's delivery thread: binds what it holds a lease for and fetches
 * round-robin from those. When a round brings nothing it idles, 5 ms at
 * first and doubling up to 100 ms, so an idle group costs the server a few
 * hundred no-wait pulls a second at most. An idle group does not make the
 * first event after a quiet spell wait that long: a core NATS subscription
 * on the group's event subjects (wake_cb) wakes it as soon as an event of a
 * partition it holds is published (libnats 3.4 has no asynchronous pull). */
/* A NATS thread: the stream's subjects are plain subjects too, so every
 * published event also reaches this subscription. Only the subject is read:
 * <prefix>.ev.<k>.<p>.<conn>. */
static void wake_cb(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    nb_group_t *g = closure;
    nats_bus_t *b = g->b;
    (void)nc;
    (void)sub;
    const char *subj = natsMsg_GetSubject(m);
    size_t pl = strlen(b->prefix);
    unsigned long p = 0;
    int ours = 1; /* a subject not of the expected shape: wake anyway */
    if (strlen(subj) > pl + 6 && subj[pl + 5] == '.') {
        char *end = NULL;
        p = strtoul(subj + pl + 6, &end, 10);
        if (end && *end == '.' && p < b->partitions)
            ours = atomic_load(&g->want[p]) == NB_WANT_FETCH;
    }
    natsMsg_Destroy(m);
    if (ours && !atomic_exchange(&g->kicked, 1)) {
        pthread_mutex_lock(&b->mu);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
    }
}

static void *group_main(void *arg)
{
    nb_group_t *g = arg;
    wsg_thread_name("nats-%s", g->name);
    nats_bus_t *b = g->b;
    int idle_ms = NB_IDLE_MIN_MS;
    while (!atomic_load(&b->stopping)) {
        int got = 0;
        for (uint32_t p = 0; p < b->partitions && !atomic_load(&b->stopping); p++) {
            int want = atomic_load(&g->want[p]), up = atomic_load(&b->connected);
            /* a lease not renewed in time may be someone else's by now */
            up = up && wsg_mono_ms() < (int64_t)atomic_load(&g->lease_until[p]);
            /* a fresh subscription (set_baseline) once no delivery of the old
             * one is undone: acks need their subscription */
            int stale = atomic_load(&g->rebind[p]);
            if (stale && (!g->subs[p] || !undone_in(g, p)) && atomic_exchange(&g->rebind[p], 0)) {
                drop_partition(g, p);
                stale = 0;
            }
            /* not while held: a restart may be between its delete and create */
            if ((want == NB_WANT_FETCH || want == NB_WANT_DRAIN) && up && !g->subs[p] &&
                !partition_held(g, p) && bind_partition(g, p) != NATS_OK)
                g->subs[p] = NULL;
            /* a lost lease only stops fetching: the bound subscription stays
             * until bus_free, so acks of deliveries still out stay valid */
            int fetch =
                up && g->subs[p] && !stale && (want == NB_WANT_FETCH || want == NB_WANT_DRAIN);
            int n = fetch ? fetch_partition(g, p) : 0;
            if (want == NB_WANT_DRAIN) {
                int drain = NB_WANT_DRAIN;
                atomic_compare_exchange_strong(&g->want[p], &drain, NB_WANT_GIVE);
            }
            /* a run is one fetch: a consumer batching over it (the registry
             * holds its lock and a store transaction) never waits through
             * the next partition's round trip or a bind */
            if (n && g->run_end)
                g->run_end(g->ud);
            got += n;
        }
        atomic_fetch_add(&g->loops, 1);
        if (got) {
            idle_ms = NB_IDLE_MIN_MS;
            continue;
        }
        if (idle_wait(b, g, idle_ms))
            idle_ms = NB_KICK_RETRY_MS; /* the event may not be stored yet: look again soon */
        else
            idle_ms = idle_ms * 2 > NB_IDLE_MAX_MS ? NB_IDLE_MAX_MS : idle_ms * 2;
    }
    return NULL;
}

void nb_ev_done(bus_t *bus, bus_delivery_t *dd)
{
    nb_delivery_t *d = (nb_delivery_t *)dd;
    nb_group_t *g = d->g;
    pthread_mutex_lock(&g->mu);
    if (d->prev)
        d->prev->next = d->next;
    else
        g->head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        g->tail = d->prev;
    /* under the lock: once no delivery of p is undone (undone_in), the
     * delivery thread may free the subscription the ack goes through */
    natsMsg_Ack(d->msg, NULL);
    pthread_mutex_unlock(&g->mu);
    natsMsg_Destroy(d->msg);
    free_delivery(d);
}

/* ---- leases and keep-alive (service thread) ---------------------------------------- */

static void lease_key(nb_group_t *g, uint32_t p, char *buf, size_t n)
{
    snprintf(buf, n, "%.200s.%u", g->tok, (unsigned)p);
}

/* ---- partition shares --------------------------------------------------------------
 *
 * Every process of a group announces itself with the key <tok(group)>.m.<instance>
 * (renewed each lease round, gone after the lease TTL) and holds at most its
 * share, ceil(partitions / members), so two dispatchers split the partitions
 * instead of the first one taking them all. A process above its share gives
 * partitions back, keeping per-connection order:
 *  1. it stops fetching from them (want = NB_WANT_GIVE), at a lease round;
 *  2. at every tick after that (give_back) it checks that nothing of the
 *     partition is still out: no undone delivery, no fetch of it running (the
 *     delivery thread finished a round since), and the server counts no
 *     pull request waiting and no message of the consumer delivered and not
 *     acked (a fetch's answer can
 *     land after the fetch returned: such messages are fetched once more,
 *     NB_WANT_DRAIN, and delivered first);
 *  3. it then marks the lease NB_LEASE_FREE and says so on
 *     <prefix>.lease.<tok>.free; a member below its share takes it at once
 *     (or within NB_CLAIM_EVERY_MS if the word was lost: claim_given), so a
 *     joining member gets its share right after the holder's next round.
 * A stopping process does the same for all its leases (release_at_stop),
 * after Nak'ing what it had out and removing its member key, so the others
 * recount and take its share at once. Service thread only, except
 * release_at_stop (bus stop, the service thread joined). */

static void member_key(nb_group_t *g, char *buf, size_t n)
{
    snprintf(buf, n, "%.150s.m.%.60s", g->tok, g->b->instance);
}

/* g->share from the members' keys in the lease bucket: partitions / members,
 * rounded up. When they cannot be read the share stays (all of them before
 * the first count). The read is bounded: kvStore_Keys without a Timeout
 * waits for ever for a key the watcher was told of, and one that expired
 * or was superseded meanwhile never comes (libnats 3.4.1), which stopped
 * the service thread, and with it every lease renewal. */
static void recount_share(nats_bus_t *b, nb_group_t *g)
{
    char prefix[224];
    snprintf(prefix, sizeof prefix, "%.150s.m.", g->tok);
    size_t pl = strlen(prefix);
    kvKeysList keys = {0};
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    o.Timeout = NB_JS_WAIT_MS;
    uint32_t n = 0;
    natsStatus s = kvStore_Keys(&keys, b->kv, &o);
    if (s == NATS_OK)
        for (int i = 0; i < keys.Count; i++)
            n += strncmp(keys.Keys[i], prefix, pl) == 0;
    kvKeysList_Destroy(&keys);
    if (s != NATS_OK && g->share)
        return;
    n = n ? n : 1; /* at least this process */
    g->share = (b->partitions + n - 1) / n;
}

/* A partition whose fetch a disconnect cut (fetch_partition): nobody may
 * fetch from it before the lost events are due again, so it is not given
 * away either. */
static int partition_held(nb_group_t *g, uint32_t p)
{
    return wsg_mono_ms() < (int64_t)atomic_load(&g->hold_until[p]);
}

static int undone_in(nb_group_t *g, uint32_t p)
{
    int found = 0;
    pthread_mutex_lock(&g->mu);
    for (nb_delivery_t *d = g->head; d && !found; d = d->next)
        found = partition_of(g->b, d->ev.conn_id) == p;
    pthread_mutex_unlock(&g->mu);
    return found;
}

/* Within AckWait (+ margin) of a NATS outage no partition is given away:
 * a delivery the server made while the connection broke may not have
 * reached this process without any fetch of ours noticing (so no partition
 * is held); the server hands it out again only after its AckWait, and a new
 * owner fetching meanwhile would deliver the connection's later events
 * first. Kept, unfetched, the partition's redeliveries wait for the next
 * owner and come first. */
static int outage_recent(nats_bus_t *b)
{
    int64_t at = atomic_load(&b->broke_ms);
    return at && wsg_mono_ms() < at + lost_hold_ms(b);
}

/* Partition p's consumer as the server has it: 0 with *ci (the caller
 * destroys it), WSG_ENOTFOUND when there is none (yet), -1 when the server
 * did not say. */
static int consumer_info(nb_group_t *g, uint32_t p, jsConsumerInfo **ci)
{
    char durable[160];
    durable_name(g, p, durable, sizeof durable);
    jsErrCode jerr = 0;
    *ci = NULL;
    if (js_GetConsumerInfo(ci, g->b->js, g->b->stream, durable, NULL, &jerr) == NATS_OK && *ci)
        return 0;
    jsConsumerInfo_Destroy(*ci);
    *ci = NULL;
    return jerr == JSConsumerNotFoundErr ? WSG_ENOTFOUND : -1;
}

/* What partition p's consumer has out, by the server: messages delivered
 * and not acked (*pending; a Nak'ed one stays counted until redelivered)
 * and pull requests not answered yet (*waiting: one being served may still
 * hand us messages); nothing when there is no consumer yet. 0, or -1 when
 * the server did not say. */
static int consumer_out(nb_group_t *g, uint32_t p, int64_t *pending, int64_t *waiting)
{
    jsConsumerInfo *ci = NULL;
    int rc = consumer_info(g, p, &ci);
    *pending = rc == 0 ? ci->NumAckPending : 0;
    *waiting = rc == 0 ? ci->NumWaiting : 0;
    jsConsumerInfo_Destroy(ci);
    return rc == WSG_ENOTFOUND ? 0 : rc; /* never bound: nothing out */
}

#define NB_FREED_SUBJ_MAX (NB_PREFIX_MAX + 170)

static void freed_subject(nb_group_t *g, char *buf, size_t n)
{
    snprintf(buf, n, "%s.lease.%.150s.free", g->b->prefix, g->tok);
}

/* Tells the group's members that leases were marked NB_LEASE_FREE, so one
 * below its share (or whose share grew: a member is leaving) takes them now
 * (at most once: without it they look every NB_CLAIM_EVERY_MS, or at their
 * next round). */
static void announce_free(nats_bus_t *b, nb_group_t *g)
{
    char subj[NB_FREED_SUBJ_MAX];
    freed_subject(g, subj, sizeof subj);
    natsConnection_PublishString(b->nc, subj, "");
}

/* A NATS thread. */
static void freed_cb(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    nb_group_t *g = closure;
    (void)nc;
    (void)sub;
    natsMsg_Destroy(m);
    atomic_store(&g->freed_seen, 1);
    nb_wake(g->b);
}

/* Step 2-3 above for every partition being given back. */
static void give_back(nats_bus_t *b, nb_group_t *g)
{
    char key[224];
    int freed = 0;
    for (uint32_t p = 0; p < b->partitions && !atomic_load(&b->stopping); p++) {
        if (!g->giving[p] || atomic_load(&g->want[p]) != NB_WANT_GIVE ||
            atomic_load(&g->loops) < g->give_loops[p] + 2 || undone_in(g, p) ||
            partition_held(g, p) || outage_recent(b))
            continue;
        int64_t out = 0, waiting = 0;
        if (consumer_out(g, p, &out, &waiting) != 0 || waiting > 0)
            continue;  /* look again at the next tick */
        if (out > 0) { /* handed to us, not seen: fetch once more, deliver first */
            g->give_loops[p] = atomic_load(&g->loops);
            atomic_store(&g->want[p], NB_WANT_DRAIN);
            continue;
        }
        lease_key(g, p, key, sizeof key);
        uint64_t rev = 0; /* if it fails the lease expires by itself */
        freed += kvStore_UpdateString(&rev, b->kv, key, NB_LEASE_FREE, g->rev[p]) == NATS_OK;
        g->rev[p] = 0;
        g->giving[p] = 0;
        atomic_store(&g->want[p], NB_WANT_NONE);
    }
    if (freed)
        announce_free(b, g);
}

/* Takes the lease of p when its holder gave it back (its value is
 * NB_LEASE_FREE): an update on the revision read, so of two takers one
 * wins. Returns the new revision, 0 when not taken. */
static uint64_t take_given(nats_bus_t *b, const char *key)
{
    kvEntry *e = NULL;
    uint64_t rev = 0;
    if (kvStore_Get(&e, b->kv, key) == NATS_OK && e &&
        strcmp(kvEntry_ValueString(e), NB_LEASE_FREE) == 0 &&
        kvStore_UpdateString(&rev, b->kv, key, b->instance, kvEntry_Revision(e)) != NATS_OK)
        rev = 0;
    kvEntry_Destroy(e);
    return rev;
}

/* A lease written at mono time at (before the request went) lives at least
 * lease_ttl_ms from then on the server; it is renewed every third of that,
 * and p is fetched only within two thirds of it (the delivery thread checks
 * lease_until), so a process that cannot renew stops fetching before its
 * lease can go to another. */
static void lease_kept(nats_bus_t *b, nb_group_t *g, uint32_t p, int64_t at)
{
    atomic_store(&g->lease_until[p], at + (int64_t)b->tune.lease_ttl_ms * 2 / 3);
}

/* ---- taking over from a holder that died -------------------------------------------
 *
 * A lease created anew (neither renewed nor given back: its holder was
 * killed, or could not renew it within the TTL) may leave events that holder
 * fetched and never acked. The server hands those out again only when their
 * AckWait (30 s by default) runs out, and a fetch of the partition before
 * that would deliver the connections' later events first. So the new holder
 * restarts the partition's consumer at its ack floor: it deletes the durable
 * consumer and creates it again delivering from the first stream sequence
 * not acked (AckFloor + 1). What the old holder had out comes again at once,
 * in stream order, before anything later; what it acked beyond the floor
 * comes again too (a duplicate, same event id and webhook-id, as
 * at-least-once allows). Both holders deliver a connection's events in
 * order, so the first delivery of each stays in order. A consumer with
 * nothing out (a new cluster, a partition given back) is left as it is, and
 * so is one whose outstanding events are this process's own, still being
 * delivered (it lost and took back the lease across a NATS outage). The
 * partition is not fetched until its consumer is back; a step that fails is
 * tried again at the next round. Service thread only. */

/* p's consumer hands out next the message after delivery sequence dseq
 * (NB_DSEQ_UNKNOWN: not checked until one arrives); the delivery thread
 * takes a fresh subscription first. Service thread, while p is not fetched
 * (not ours yet, or held). */
static void set_baseline(nb_group_t *g, uint32_t p, int64_t dseq)
{
    atomic_store(&g->dseq[p], dseq);
    atomic_store(&g->rebind[p], 1);
}

/* The stream sequence p's consumer restarts at, 0 when it stays as it is,
 * -1 when the server did not answer, NB_RECLAIM_WAIT when the restart would
 * repeat more than restart_max_repeats events acked beyond the floor (an
 * event long in retries holds the floor back): p is held then for AckWait
 * (plus margin) from now, after which the server hands out what the old
 * holder left, first. Deletes the consumer when it restarts; why: what the
 * log says. */
static int64_t restart_point(nats_bus_t *b, nb_group_t *g, uint32_t p, const char *why)
{
    jsConsumerInfo *ci = NULL;
    int rc = consumer_info(g, p, &ci);
    int64_t from = 0, pending = 0, repeats = 0, delivered = 0;
    uint64_t handed = 0;
    if (rc == 0 && (ci->NumAckPending > 0 || ci->NumWaiting > 0)) {
        from = (int64_t)ci->AckFloor.Stream + 1;
        pending = ci->NumAckPending;
        handed = ci->Delivered.Stream;
        repeats = (int64_t)(ci->Delivered.Consumer - ci->AckFloor.Consumer) - pending;
    }
    if (rc == 0)
        delivered = (int64_t)ci->Delivered.Consumer;
    jsConsumerInfo_Destroy(ci);
    if (rc != 0 && rc != WSG_ENOTFOUND)
        return -1;
    int undone = undone_in(g, p);
    if (!from || undone) {
        /* it stays: what it hands out from now on follows what it handed out
         * so far (none yet: bind_partition creates it); with deliveries of
         * ours undone, our own count goes on */
        if (!undone)
            set_baseline(g, p, delivered);
        return 0;
    }
    if (repeats > (int64_t)b->tune.restart_max_repeats) {
        int64_t wait = lost_hold_ms(b);
        set_baseline(g, p, NB_DSEQ_UNKNOWN); /* AckWait's redeliveries come first, unnumbered */
        atomic_store(&g->hold_until[p], wsg_mono_ms() + wait);
        WSG_LOG(WSG_LOG_WARN, "partition waits out AckWait: a restart would repeat too much",
                "group=%s partition=%u why=%s repeats=%lld unacked=%lld hold_ms=%lld", g->name,
                (unsigned)p, why, (long long)repeats, (long long)pending, (long long)wait);
        return NB_RECLAIM_WAIT;
    }
    char durable[160];
    durable_name(g, p, durable, sizeof durable);
    jsErrCode jerr = 0;
    if (js_DeleteConsumer(b->js, b->stream, durable, NULL, &jerr) != NATS_OK &&
        jerr != JSConsumerNotFoundErr)
        return -1;
    if (handed > atomic_load(&g->handed_upto[p]))
        atomic_store(&g->handed_upto[p], handed);
    WSG_LOG(WSG_LOG_INFO, "partition consumer restarts at the ack floor",
            "group=%s partition=%u why=%s from_seq=%lld unacked=%lld", g->name, (unsigned)p, why,
            (long long)from, (long long)pending);
    return from;
}

/* Returns 1 when p's consumer is ready to be fetched from. */
static int reclaim_step(nats_bus_t *b, nb_group_t *g, uint32_t p, const char *why)
{
    if (g->reclaim[p] == NB_RECLAIM_CHECK) {
        int64_t from = restart_point(b, g, p, why);
        if (from == -1)
            return 0;
        g->reclaim[p] = from;
    }
    if (g->reclaim[p] > 0) {
        char durable[160], filter[160];
        jsConsumerConfig cc;
        consumer_config(g, p, &cc, durable, filter);
        cc.DeliverPolicy = js_DeliverByStartSequence;
        cc.OptStartSeq = (uint64_t)g->reclaim[p];
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_AddConsumer(&ci, b->js, b->stream, &cc, NULL, &jerr);
        jsConsumerInfo_Destroy(ci);
        ci = NULL;
        /* no answer may still have created it: there is one if the server says so */
        int there = s == NATS_OK || consumer_info(g, p, &ci) == 0;
        jsConsumerInfo_Destroy(ci);
        if (!there)
            return 0;
        g->reclaim[p] = 0;
        set_baseline(g, p, 0); /* the new consumer numbers from 1 */
    }
    return 1; /* NB_RECLAIM_WAIT: ready, and held (partition_held) */
}

/* A partition held after a cut fetch (fetch_partition) waits for the lost
 * events' AckWait only while deliveries of its own are still out (their
 * first copies must stay first); once none is, its consumer restarts at the
 * ack floor, or stays as it is when the server shows nothing out (nothing was
 * lost), and the partition is fetched again at once. One being given back
 * too: give_back hands it over once it is no longer held, and the taker
 * starts at the restarted consumer's ack floor. */
static void recover_cut(nats_bus_t *b, nb_group_t *g)
{
    for (uint32_t p = 0; p < b->partitions && !atomic_load(&b->stopping); p++) {
        int held = partition_held(g, p);
        if (g->reclaim[p] == NB_RECLAIM_WAIT && !held)
            g->reclaim[p] = 0; /* waited out */
        if (!g->rev[p] || !held || undone_in(g, p) || g->reclaim[p] == NB_RECLAIM_WAIT)
            continue;
        if (!g->reclaim[p])
            g->reclaim[p] = NB_RECLAIM_CHECK;
        if (reclaim_step(b, g, p, "fetch_cut") && g->reclaim[p] != NB_RECLAIM_WAIT)
            atomic_store(&g->hold_until[p], 0);
    }
}

static uint32_t held_count(nats_bus_t *b, nb_group_t *g)
{
    uint32_t held = 0;
    for (uint32_t p = 0; p < b->partitions; p++)
        held += g->rev[p] && !g->giving[p];
    return held;
}

/* The baseline of a partition given back is what its consumer handed out
 * so far. What is out then is what its holder Nak'ed when it stopped (it
 * comes again numbered anew) or what a request still waiting will bring
 * (past the baseline: a gap). A request of that holder read after this
 * and its check (it waited for none to be out) would go unnoticed. */
static void given_baseline(nb_group_t *g, uint32_t p)
{
    if (undone_in(g, p))
        return; /* ours from before: our own count goes on */
    jsConsumerInfo *ci = NULL;
    int rc = consumer_info(g, p, &ci);
    int64_t base = rc == 0 ? (int64_t)ci->Delivered.Consumer : NB_DSEQ_UNKNOWN;
    set_baseline(g, p, rc == WSG_ENOTFOUND ? 0 : base);
    jsConsumerInfo_Destroy(ci);
}

/* Between lease rounds: a member below its share takes leases given back. */
static void claim_given(nats_bus_t *b, nb_group_t *g)
{
    char key[224];
    uint32_t held = held_count(b, g);
    for (uint32_t p = 0; p < b->partitions && held < g->share && !atomic_load(&b->stopping); p++) {
        if (g->rev[p])
            continue;
        lease_key(g, p, key, sizeof key);
        int64_t at = wsg_mono_ms();
        uint64_t rev = take_given(b, key);
        if (!rev)
            continue;
        g->rev[p] = rev;
        held++;
        lease_kept(b, g, p, at);
        given_baseline(g, p);
        atomic_store(&g->want[p], NB_WANT_FETCH);
    }
}

static void renew_leases(nats_bus_t *b, nb_group_t *g)
{
    char key[224];
    int64_t at = wsg_mono_ms();
    member_key(g, key, sizeof key);
    kvStore_PutString(NULL, b->kv, key, "1");
    recount_share(b, g);
    uint32_t share = g->share, held = held_count(b, g);
    for (uint32_t p = 0; p < b->partitions && !atomic_load(&b->stopping); p++) {
        if (!g->rev[p] && held >= share)
            continue; /* someone else's turn */
        lease_key(g, p, key, sizeof key);
        uint64_t rev = 0;
        natsStatus s;
        if (g->rev[p])
            s = kvStore_UpdateString(&rev, b->kv, key, b->instance, g->rev[p]);
        else if ((s = kvStore_CreateString(&rev, b->kv, key, b->instance)) == NATS_OK)
            g->reclaim[p] = NB_RECLAIM_CHECK; /* nobody gave it back: see reclaim_step */
        else if ((rev = take_given(b, key)) != 0) {
            s = NATS_OK;
            given_baseline(g, p);
        }
        if (s != NATS_OK && g->rev[p] && nb_status_to_err(s) == WSG_EUNAVAILABLE)
            continue; /* no answer: keep what we hold (not fetched past lease_until) */
        if (s == NATS_OK && !g->rev[p])
            held++;
        else if (s != NATS_OK && g->rev[p] && !g->giving[p])
            held--;
        if (s != NATS_OK)
            g->giving[p] = 0;
        g->rev[p] = s == NATS_OK ? rev : 0;
        if (s == NATS_OK)
            lease_kept(b, g, p, at);
        else
            g->reclaim[p] = 0; /* another holder's business now */
        if (!g->giving[p])
            atomic_store(&g->want[p], s == NATS_OK && reclaim_step(b, g, p, "taken_over")
                                          ? NB_WANT_FETCH
                                          : NB_WANT_NONE);
        else if (s != NATS_OK)
            atomic_store(&g->want[p], NB_WANT_NONE);
    }
    /* above the share (a member joined): stop fetching from the last ones */
    for (uint32_t p = b->partitions; p-- > 0 && held > share;)
        if (g->rev[p] && !g->giving[p]) {
            g->giving[p] = 1;
            g->give_loops[p] = atomic_load(&g->loops);
            atomic_store(&g->want[p], NB_WANT_GIVE);
            held--;
        }
}

static void keep_in_progress(nats_bus_t *b, nb_group_t *g, int64_t now)
{
    int64_t every = b->tune.ack_wait_ms / 3;
    pthread_mutex_lock(&g->mu);
    for (nb_delivery_t *d = g->head; d; d = d->next) {
        if (now - d->touched >= every) {
            natsMsg_InProgress(d->msg, NULL);
            d->touched = now;
        }
    }
    pthread_mutex_unlock(&g->mu);
}

void nb_ev_tick(nats_bus_t *b, int64_t now)
{
    int leases = now >= b->next_lease_ms && b->kv && atomic_load(&b->connected);
    if (leases)
        b->next_lease_ms = now + b->tune.lease_ttl_ms / 3;
    for (nb_group_t *g = b->groups; g; g = g->next) {
        if (b->kv && atomic_load(&b->connected))
            recover_cut(b, g);
        if (leases)
            renew_leases(b, g);
        else if (b->kv && atomic_load(&b->connected)) {
            give_back(b, g);
            if (atomic_exchange(&g->freed_seen, 0)) { /* maybe a member left: recount */
                recount_share(b, g);
                claim_given(b, g);
            } else if (now >= g->next_claim_ms) {
                g->next_claim_ms = now + NB_CLAIM_EVERY_MS;
                claim_given(b, g);
            }
        }
        keep_in_progress(b, g, now);
    }
}

/* ---- start and stop ---------------------------------------------------------------- */

static natsStatus ensure_stream(nats_bus_t *b)
{
    char subj[NB_PREFIX_MAX + 8];
    snprintf(subj, sizeof subj, "%s.ev.>", b->prefix);
    const char *subjects[1] = {subj};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = b->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Retention = js_LimitsPolicy;
    sc.Discard = js_DiscardNew;
    sc.MaxAge = (int64_t)24 * 3600 * 1000000000LL;
    sc.MaxBytes = b->tune.stream_max_bytes;
    sc.Duplicates = (int64_t)120 * 1000000000LL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, b->js, &sc, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr)
        s = js_UpdateStream(&si, b->js, &sc, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    return s;
}

/* A bucket made with another lease TTL (an older version's 45 s, another
 * cluster.lease_ttl) gets this one: the TTL is its stream's MaxAge. The
 * processes of a group should share one cluster.lease_ttl; the last to
 * start sets it. Failing leaves the bucket as it was (logged). */
static void align_lease_ttl(nats_bus_t *b, const char *bucket, int64_t ttl_ns)
{
    char stream[NB_PREFIX_MAX + 24];
    snprintf(stream, sizeof stream, "KV_%s", bucket);
    jsStreamInfo *si = NULL, *up = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, b->js, stream, NULL, &jerr) == NATS_OK && si && si->Config &&
        si->Config->MaxAge != ttl_ns) {
        int64_t was = si->Config->MaxAge;
        si->Config->MaxAge = ttl_ns;
        if (si->Config->Duplicates > ttl_ns) /* the server wants it within MaxAge */
            si->Config->Duplicates = ttl_ns;
        natsStatus s = js_UpdateStream(&up, b->js, si->Config, NULL, &jerr);
        WSG_LOG(s == NATS_OK ? WSG_LOG_INFO : WSG_LOG_WARN,
                s == NATS_OK ? "lease bucket TTL changed" : "lease bucket TTL not changed",
                "bucket=%s from_ms=%lld to_ms=%lld js_error=%d", bucket, (long long)(was / 1000000),
                (long long)(ttl_ns / 1000000), (int)jerr);
    }
    jsStreamInfo_Destroy(up);
    jsStreamInfo_Destroy(si);
}

static natsStatus ensure_leases(nats_bus_t *b)
{
    char bucket[NB_PREFIX_MAX + 16];
    snprintf(bucket, sizeof bucket, "%s_leases", b->prefix);
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = bucket;
    kc.History = 1;
    kc.TTL = (int64_t)b->tune.lease_ttl_ms * 1000000;
    kc.StorageType = js_FileStorage;
    natsStatus s = js_CreateKeyValue(&b->kv, b->js, &kc);
    if (s != NATS_OK) /* exists, maybe with another TTL */
        s = js_KeyValue(&b->kv, b->js, bucket);
    if (s == NATS_OK)
        align_lease_ttl(b, bucket, kc.TTL);
    return s;
}

int nb_ev_start(nats_bus_t *b)
{
    if (ensure_stream(b) != NATS_OK)
        return WSG_EBUS;
    if (!b->groups)
        return 0;
    if (ensure_leases(b) != NATS_OK)
        return WSG_EBUS;
    for (nb_group_t *g = b->groups; g; g = g->next)
        renew_leases(b, g);
    b->next_lease_ms = wsg_mono_ms() + b->tune.lease_ttl_ms / 3;
    for (nb_group_t *g = b->groups; g; g = g->next) {
        char subj[160];
        snprintf(subj, sizeof subj, "%s.ev.%s.>", b->prefix, group_kind(g));
        /* without it the group still works, polling (up to NB_IDLE_MAX_MS late) */
        if (natsConnection_Subscribe(&g->wake, b->nc, subj, wake_cb, g) != NATS_OK)
            g->wake = NULL;
        char fsubj[NB_FREED_SUBJ_MAX]; /* without it: the next claim look or round */
        freed_subject(g, fsubj, sizeof fsubj);
        if (natsConnection_Subscribe(&g->freed, b->nc, fsubj, freed_cb, g) != NATS_OK)
            g->freed = NULL;
        if (pthread_create(&g->th, NULL, group_main, g) != 0)
            return WSG_EBUS;
        g->th_running = 1;
    }
    return 0;
}

/* Naks m. With sync, as a request: the server answers once it processed
 * it, and since a consumer processes its acks in order, every earlier Nak
 * of that consumer too. 1 when sent (with sync: confirmed). */
static int nak(nats_bus_t *b, natsMsg *m, int sync)
{
    if (!sync)
        return natsMsg_Nak(m, NULL) == NATS_OK;
    const char *ack = natsMsg_GetReply(m);
    natsMsg *r = NULL;
    natsStatus s =
        ack ? natsConnection_RequestString(&r, b->nc, ack, "-NAK", NB_NAK_WAIT_MS) : NATS_ERR;
    natsMsg_Destroy(r);
    return s == NATS_OK;
}

/* ---- stop: handing partitions over -------------------------------------------------
 *
 * A stopping process first accounts for everything the server handed it:
 * per held partition, the undone deliveries plus what waits in the
 * subscription (a no-wait fetch's answer lands after the fetch returned;
 * such messages are fetched here, never delivered) must be exactly what
 * the server counts as delivered-unacked, with no pull request of ours
 * waiting. Only then does it Nak them all, oldest first (redelivered first
 * and in that order), the last one of each partition as a request so the
 * server processed them before the lease is marked free. Nothing is Nak'ed
 * before the accounting: a fetch made after a Nak would get the Nak'ed
 * message back. A partition not accounted for within NB_STOP_HANDOVER_MS
 * (its messages lost with a NATS outage, say) keeps its lease until the TTL
 * runs out, as after a crash: what it had out is due again by then. */

typedef struct {
    natsMsg **v; /* fetched at stop, never delivered; stream order per partition */
    uint32_t *part;
    size_t n, cap;
} nb_drained_t;

static void drained_add(nb_drained_t *dr, natsMsg *m, uint32_t p)
{
    if (dr->n == dr->cap) {
        dr->cap = dr->cap ? dr->cap * 2 : 64;
        dr->v = realloc(dr->v, dr->cap * sizeof *dr->v);
        dr->part = realloc(dr->part, dr->cap * sizeof *dr->part);
        if (!dr->v || !dr->part)
            abort();
    }
    dr->v[dr->n] = m;
    dr->part[dr->n++] = p;
}

/* 1 when partition p's messages out are all in our hands (held[p]); else
 * takes what waits in its subscription into dr. */
static int accounted(nb_group_t *g, uint32_t p, uint32_t *held, nb_drained_t *dr)
{
    int64_t out = 0, waiting = 0;
    if (consumer_out(g, p, &out, &waiting) != 0 || waiting > 0)
        return 0;
    if (out == held[p])
        return 1;
    natsSubscription *sub = g->subs[p];
    int msgs = 0, bytes = 0;
    if (out > held[p] && sub && natsSubscription_GetPending(sub, &msgs, &bytes) == NATS_OK &&
        msgs > 0) {
        jsFetchRequest fr; /* what waits only: a message never fits in MaxBytes 1 */
        jsFetchRequest_Init(&fr);
        fr.Batch = fetch_batch(sub);
        fr.MaxBytes = 1;
        fr.NoWait = true;
        natsMsgList list = {0};
        natsSubscription_FetchRequest(&list, sub, &fr);
        for (int i = 0; i < list.Count; i++) {
            drained_add(dr, list.Msgs[i], p);
            list.Msgs[i] = NULL;
            held[p]++;
        }
        natsMsgList_Destroy(&list);
    }
    return 0;
}

/* Marks in ok[] the held partitions accounted for within the bound. */
static void account_all(nats_bus_t *b, nb_group_t *g, uint32_t *held, nb_drained_t *dr,
                        unsigned char *ok)
{
    int64_t until = wsg_mono_ms() + NB_STOP_HANDOVER_MS;
    struct timespec settle = {0, NB_STOP_SETTLE_MS * 1000000L}; /* late answers land */
    nanosleep(&settle, NULL);
    for (;;) {
        uint32_t left = 0;
        for (uint32_t p = 0; p < b->partitions; p++)
            if (g->rev[p] && !ok[p] && !(ok[p] = (unsigned char)accounted(g, p, held, dr)))
                left++;
        if (!left)
            return;
        if (wsg_mono_ms() >= until) {
            WSG_LOG(WSG_LOG_WARN, "partitions left to their lease TTL at stop",
                    "group=%s partitions=%u lease_ttl_ms=%u", g->name, (unsigned)left,
                    (unsigned)b->tune.lease_ttl_ms);
            return;
        }
        struct timespec ts = {0, NB_STOP_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Naks m, the left[p]-th last Nak of p (the last one is sync when p is to
 * be freed); a failed one keeps p's lease (ok[p] = 0). */
static void nak_counted(nats_bus_t *b, natsMsg *m, uint32_t p, uint32_t *left, unsigned char *ok)
{
    int last = --left[p] == 0;
    if (!nak(b, m, last && ok[p]))
        ok[p] = 0;
}

/* Hands group g's partitions over (see above); live: connected to NATS. */
static void hand_over(nats_bus_t *b, nb_group_t *g, int live, uint32_t *held, unsigned char *ok)
{
    nb_drained_t dr = {0};
    memset(held, 0, b->partitions * sizeof *held);
    memset(ok, 0, b->partitions);
    for (nb_delivery_t *d = g->head; d; d = d->next)
        held[partition_of(b, d->ev.conn_id)]++;
    if (live)
        account_all(b, g, held, &dr, ok);
    for (nb_delivery_t *d = g->head; d; d = g->head) { /* oldest first */
        g->head = d->next;
        if (!b->vanish)
            nak_counted(b, d->msg, partition_of(b, d->ev.conn_id), held, ok);
        natsMsg_Destroy(d->msg);
        free_delivery(d);
    }
    g->tail = NULL;
    for (size_t i = 0; i < dr.n; i++) { /* after the undone ones: fetched later */
        if (!b->vanish)
            nak_counted(b, dr.v[i], dr.part[i], held, ok);
        natsMsg_Destroy(dr.v[i]);
    }
    free(dr.v);
    free(dr.part);
    if (!live)
        return;
    char key[224];
    uint32_t freed = 0;
    for (uint32_t p = 0; p < b->partitions; p++) {
        if (!g->rev[p] || !ok[p])
            continue;
        lease_key(g, p, key, sizeof key);
        freed += kvStore_UpdateString(NULL, b->kv, key, NB_LEASE_FREE, g->rev[p]) == NATS_OK;
        g->rev[p] = 0;
    }
    if (freed)
        announce_free(b, g);
}

/* Joins the delivery threads and hands the partitions over: undone
 * deliveries Nak'ed (redelivered at once, first, attempt + 1), leases
 * marked free, or left to their TTL. */
void nb_ev_stop(nats_bus_t *b)
{
    int live = b->kv && !b->vanish && atomic_load(&b->connected);
    uint32_t *held = bus_xcalloc(b->partitions * sizeof *held);
    unsigned char *ok = bus_xcalloc(b->partitions);
    for (nb_group_t *g = b->groups; g; g = g->next) {
        natsSubscription *subs[2] = {g->wake, g->freed};
        for (int i = 0; i < 2; i++)
            if (subs[i]) {
                natsSubscription_Unsubscribe(subs[i]);
                natsSubscription_Destroy(subs[i]);
            }
        g->wake = g->freed = NULL;
        if (g->th_running)
            pthread_join(g->th, NULL);
        g->th_running = 0;
        if (live) {
            char key[224];
            member_key(g, key, sizeof key); /* first: the others count without us */
            kvStore_Delete(b->kv, key);
        }
        hand_over(b, g, live, held, ok);
        for (uint32_t p = 0; p < b->partitions; p++) {
            drop_partition(g, p);
            g->rev[p] = 0;
        }
    }
    free(held);
    free(ok);
}

/* After the connection closed: PubAcks that never came fail, groups go. */
void nb_ev_free(nats_bus_t *b)
{
    for (size_t i = 0; i < NB_BUCKETS; i++) {
        while (b->pubs[i]) {
            nb_pub_t *p = b->pubs[i];
            b->pubs[i] = p->next;
            if (p->cb)
                p->cb(p->ud, WSG_EUNAVAILABLE);
            pub_free(p);
        }
        b->oldest = b->newest = NULL;
        while (b->poison[i]) {
            nb_poison_t *x = b->poison[i];
            b->poison[i] = x->next;
            free(x->conn);
            free(x);
        }
    }
    b->npubs = 0;
    b->npoison = 0;
    natsStatistics_Destroy(b->stats);
    b->stats = NULL;
    while (b->groups) {
        nb_group_t *g = b->groups;
        b->groups = g->next;
        pthread_mutex_destroy(&g->mu);
        free(g->subs);
        free(g->rev);
        free(g->want);
        free(g->giving);
        free(g->give_loops);
        free(g->hold_until);
        free(g->dseq);
        free(g->rebind);
        free(g->lease_until);
        free(g->reclaim);
        free(g->handed_upto);
        free(g->name);
        free(g->tok);
        free(g);
    }
    if (b->kv)
        kvStore_Destroy(b->kv);
    b->kv = NULL;
}
