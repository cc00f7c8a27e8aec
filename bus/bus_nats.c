/* SPDX-License-Identifier: MIT */
/*
 * bus_nats.c — the cluster implementation of bus.h over NATS (libnats 3.4):
 * the connection and its health, bus lifecycle, the service thread, channel
 * publishes (one core subject per channel, subscribed while bus.c counts
 * interest in it), broadcasts, heartbeats, and the ops table. Handlers,
 * interest counts and command requests are bus.c's: what arrives here is
 * handed to bus_core_*_in(). Client events live
 * in bus_nats_ev.c, commands in bus_nats_cmd.c; docs/bus-nats.md has the
 * subjects and guarantees.
 *
 * Names never reach a subject raw: nb_tok() turns any string into one
 * subject-safe token ("i" + the name when it is [A-Za-z0-9_-]+, else "x" +
 * hex), so a channel called "a.b.>" cannot address other subjects.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "bus/bus_nats.h"
#include "common/err.h"
#include "common/thread.h"
#include "common/hash.h"

#define NB_DELIVERY_POOL 4
#define NB_CHAN_PENDING_MSGS 8192
#define NB_CHAN_PENDING_BYTES (8 * 1024 * 1024)

struct nb_chan {
    nb_chan_t *next;
    natsSubscription *sub;
    char name[]; /* the channel as given */
};

static int plain_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

char *nb_tok(const char *s, size_t n)
{
    int plain = n > 0;
    for (size_t i = 0; i < n && plain; i++)
        plain = plain_char((unsigned char)s[i]);
    char *t = bus_xcalloc(2 + (plain ? n : 2 * n));
    t[0] = plain ? 'i' : 'x';
    if (plain) {
        memcpy(t + 1, s, n);
        return t;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        t[1 + 2 * i] = hex[(unsigned char)s[i] >> 4];
        t[2 + 2 * i] = hex[(unsigned char)s[i] & 15];
    }
    return t;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

char *nb_untok(const char *t, size_t *n)
{
    size_t len = t ? strlen(t) : 0;
    if (len < 1 || (t[0] != 'i' && t[0] != 'x'))
        return NULL;
    if (t[0] == 'i') {
        *n = len - 1;
        return bus_xstrdup(t + 1);
    }
    if ((len - 1) % 2)
        return NULL;
    char *s = bus_xcalloc((len - 1) / 2 + 1);
    for (size_t i = 0; i < (len - 1) / 2; i++) {
        int hi = hexval(t[1 + 2 * i]), lo = hexval(t[2 + 2 * i]);
        if (hi < 0 || lo < 0) {
            free(s);
            return NULL;
        }
        s[i] = (char)(hi << 4 | lo);
    }
    *n = (len - 1) / 2;
    return s;
}

natsStatus nb_hdr_set_tok(natsMsg *m, const char *key, const char *value)
{
    if (!value)
        return NATS_OK;
    char *t = nb_tok(value, strlen(value));
    natsStatus s = natsMsgHeader_Set(m, key, t);
    free(t);
    return s;
}

char *nb_hdr_get_tok(natsMsg *m, const char *key)
{
    const char *v = NULL;
    size_t n;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || !v)
        return NULL;
    char *s = nb_untok(v, &n);
    if (s && strlen(s) != n) { /* an embedded NUL: not a name we produced */
        free(s);
        return NULL;
    }
    return s;
}

int nb_status_to_err(natsStatus s)
{
    switch (s) {
    case NATS_OK:
        return 0;
    case NATS_INSUFFICIENT_BUFFER:
    case NATS_SLOW_CONSUMER:
        return WSG_EFULL;
    case NATS_TIMEOUT:
    case NATS_NO_RESPONDERS:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
    case NATS_NOT_YET_CONNECTED:
    case NATS_DRAINING:
        return WSG_EUNAVAILABLE;
    default:
        return WSG_EBUS;
    }
}

void nb_wake(nats_bus_t *b)
{
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* ---- connection ------------------------------------------------------------- */

static void on_disconnected(natsConnection *nc, void *ud)
{
    atomic_store(&((nats_bus_t *)ud)->connected, 0);
    nb_ev_disconnected(ud);
}

static void on_reconnected(natsConnection *nc, void *ud)
{
    atomic_store(&((nats_bus_t *)ud)->connected, 1);
}

static void on_closed(natsConnection *nc, void *ud)
{
    nats_bus_t *b = ud;
    atomic_store(&b->connected, 0);
    pthread_mutex_lock(&b->mu);
    atomic_store(&b->closed, 1);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Backoff: 100 ms per failed attempt in a row, at most 2 s. */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *ud)
{
    int64_t d = 100 * (int64_t)attempts;
    return d > 2000 ? 2000 : d;
}

static natsStatus make_options(natsOptions **out, nats_bus_t *b, const bus_opts_t *o)
{
    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);
    /* Every subscription (one per channel with interest) would otherwise get
     * its own delivery thread; a small shared pool keeps order per
     * subscription with a bounded number of threads. */
    if (s == NATS_OK)
        s = nats_SetMessageDeliveryPoolSize(NB_DELIVERY_POOL);
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(no, true);
    if (s == NATS_OK)
        s = natsOptions_SetURL(no, o->url);
    if (s == NATS_OK)
        s = natsOptions_SetName(no, o->name && *o->name ? o->name : "wsgate");
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(no, -1);
    if (s == NATS_OK)
        s = natsOptions_SetCustomReconnectDelay(no, reconnect_delay, b);
    if (s == NATS_OK) /* bounded: past it a publish fails instead of growing */
        s = natsOptions_SetReconnectBufSize(no, NB_RECONNECT_BUF);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(no, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(no, 5000);
    /* A server cut off by the network (packets dropped, no RST) stops taking
     * bytes: a blocking write then waits with the connection's lock held, so
     * neither the ping timer (which would find the connection stale) nor any
     * publisher gets on until TCP retransmits its way through, long after the
     * network healed. With a deadline the write fails, the connection is
     * dropped and reconnected, and events fail into 1013 within their grace. */
    if (s == NATS_OK)
        s = natsOptions_SetWriteDeadline(no, NB_WRITE_DEADLINE_MS);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(no, on_disconnected, b);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(no, on_reconnected, b);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(no, on_closed, b);
    if (s != NATS_OK)
        natsOptions_Destroy(no);
    else
        *out = no;
    return s;
}

static void set_prefix(nats_bus_t *b, const char *p)
{
    snprintf(b->prefix, sizeof b->prefix, "%s", p);
    size_t i = 0;
    for (; p[i] && i < NB_PREFIX_MAX; i++)
        b->stream[i] = (char)(p[i] >= 'a' && p[i] <= 'z' ? p[i] - 32 : p[i]);
    snprintf(b->stream + i, sizeof b->stream - i, "_EVENTS");
}

static void free_handle(nats_bus_t *b)
{
    if (b->js)
        jsCtx_Destroy(b->js);
    if (b->nc)
        natsConnection_Destroy(b->nc);
    free(b->instance);
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->hmu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

void nb_ev_ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *ud);

void bus_nats_vanish(bus_t *bus)
{
    if (!bus || bus->ops != &bus_nats_ops)
        return;
    ((nats_bus_t *)bus)->vanish = 1;
    bus_free(bus);
}

static void fill_defaults(bus_nats_tune_t *t)
{
    if (!t->cmd_timeout_ms)
        t->cmd_timeout_ms = 5000;
    if (!t->any_window_ms)
        t->any_window_ms = t->cmd_timeout_ms;
    if (!t->ack_wait_ms)
        t->ack_wait_ms = 30000;
    if (!t->lease_ttl_ms)
        t->lease_ttl_ms = 3000;
    if (!t->pub_max_pending)
        t->pub_max_pending = 65536;
    if (!t->pub_timeout_ms)
        t->pub_timeout_ms = 5000;
    if (!t->stream_max_bytes)
        t->stream_max_bytes = (int64_t)1 << 30;
    if (!t->restart_max_repeats)
        t->restart_max_repeats = 10000;
    if (!t->poison_max)
        t->poison_max = 65536;
    if (!t->poison_keep_ms)
        t->poison_keep_ms = 60000;
}

static natsStatus connect_bus(nats_bus_t *b, const bus_opts_t *o)
{
    natsOptions *no = NULL;
    natsStatus s = make_options(&no, b, o);
    if (s == NATS_OK)
        s = natsConnection_Connect(&b->nc, no);
    natsOptions_Destroy(no);
    if (s != NATS_OK)
        return s;
    atomic_store(&b->connected, 1);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = nb_ev_ack_handler;
    jo.PublishAsync.AckHandlerClosure = b;
    jo.Wait = NB_JS_WAIT_MS; /* JetStream API calls give up sooner than the default */
    return natsConnection_JetStream(&b->js, b->nc, &jo);
}

static int nats_open(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen)
{
    *out = NULL;
    if (opts->partitions > 1024)
        return wsg_errf(err, errlen, WSG_EINVAL, "bus: partitions must be 1..1024");
    nats_bus_t *b = bus_xcalloc(sizeof *b);
    b->base.ops = &bus_nats_ops;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->hmu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->partitions = opts->partitions ? opts->partitions : 16;
    set_prefix(b, "wsgate");
    b->tune.ack_wait_ms = opts->ack_wait_ms;
    b->tune.lease_ttl_ms = opts->lease_ttl_ms;
    fill_defaults(&b->tune);
    int rc = 0;
    natsStatus s = connect_bus(b, opts);
    if (s != NATS_OK) {
        /* the URL may carry credentials (nats://user:pass@host): never echoed */
        rc = wsg_errf(err, errlen, WSG_EBUS, "bus: cannot connect to NATS: %s",
                      natsStatus_GetText(s));
        goto out;
    }
    natsInbox *ib = NULL;
    if (natsInbox_Create(&ib) == NATS_OK) {
        b->instance = bus_xstrdup((const char *)ib + 7); /* skip "_INBOX." */
        natsInbox_Destroy(ib);
    }
    rc = b->instance ? nb_cmd_open(b) : WSG_EBUS;
    if (rc != 0)
        rc = wsg_errf(err, errlen, rc, "bus: cannot subscribe the reply inbox");
out:
    if (rc != 0) {
        if (b->nc)
            natsConnection_Close(b->nc);
        free_handle(b);
        return rc;
    }
    nb_users_init(b);
    *out = &b->base;
    return 0;
}

int bus_nats_tune(bus_t *bus, const bus_nats_tune_t *t)
{
    if (!bus || bus->ops != &bus_nats_ops || !t)
        return WSG_EINVAL;
    nats_bus_t *b = (nats_bus_t *)bus;
    if (atomic_load(&b->started) || atomic_load(&b->subscribed))
        return WSG_EINVAL;
    if (t->prefix) {
        size_t n = strlen(t->prefix);
        if (n == 0 || n > NB_PREFIX_MAX)
            return WSG_EINVAL;
        for (size_t i = 0; i < n; i++)
            if (!plain_char((unsigned char)t->prefix[i]))
                return WSG_EINVAL;
        set_prefix(b, t->prefix);
    }
#define NB_KEEP(f)                                                                                 \
    if (t->f)                                                                                      \
    b->tune.f = t->f
    NB_KEEP(cmd_timeout_ms);
    NB_KEEP(any_window_ms);
    NB_KEEP(ack_wait_ms);
    NB_KEEP(lease_ttl_ms);
    NB_KEEP(pub_max_pending);
    NB_KEEP(pub_timeout_ms);
    NB_KEEP(stream_max_bytes);
    NB_KEEP(restart_max_repeats);
    NB_KEEP(poison_max);
    NB_KEEP(poison_keep_ms);
#undef NB_KEEP
    bus_core_tune(bus, t->cmd_timeout_ms, t->any_window_ms);
    return 0;
}

/* ---- service thread ---------------------------------------------------------- */

static void *service_main(void *arg)
{
    nats_bus_t *b = arg;
    wsg_thread_name("nats-service");
    while (!atomic_load(&b->stopping)) {
        int64_t now = wsg_mono_ms();
        nb_ev_tick(b, now);
        pthread_mutex_lock(&b->mu);
        if (!atomic_load(&b->stopping)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        pthread_mutex_unlock(&b->mu);
    }
    return NULL;
}

static int nats_start(bus_t *bus)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (atomic_exchange(&b->started, 1))
        return WSG_EINVAL;
    fill_defaults(&b->tune);
    int rc = nb_ev_start(b);
    if (rc != 0)
        return rc;
    if (pthread_create(&b->svc, NULL, service_main, b) != 0)
        return WSG_EBUS;
    b->svc_running = 1;
    return 0;
}

static int nats_healthy(bus_t *bus)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    return atomic_load(&b->connected) && !atomic_load(&b->closed);
}

static int nats_roundtrip(bus_t *bus, int timeout_ms)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (!nats_healthy(bus))
        return WSG_EUNAVAILABLE;
    return natsConnection_FlushTimeout(b->nc, timeout_ms) == NATS_OK ? 0 : WSG_EUNAVAILABLE;
}

static void unsubscribe_all_channels(nats_bus_t *b)
{
    for (size_t i = 0; i < NB_BUCKETS; i++) {
        while (b->chans[i]) {
            nb_chan_t *c = b->chans[i];
            b->chans[i] = c->next;
            natsSubscription_Destroy(c->sub);
            free(c);
        }
    }
}

static void nats_free(bus_t *bus)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    atomic_store(&b->stopping, 1);
    nb_wake(b);
    if (b->svc_running)
        pthread_join(b->svc, NULL);
    nb_ev_stop(b);   /* joins group threads, naks undone, releases leases */
    jsPubOptions po; /* PubAcks still due get their answer, bounded */
    jsPubOptions_Init(&po);
    po.MaxWait = b->tune.pub_timeout_ms;
    if (!b->vanish)
        js_PublishAsyncComplete(b->js, &po);
    /* Drain: unsubscribes everything, lets running callbacks finish, flushes
     * what we published, then closes; bounded. */
    if (natsConnection_DrainTimeout(b->nc, 3000) != NATS_OK)
        natsConnection_Close(b->nc);
    pthread_mutex_lock(&b->mu);
    int64_t until = wsg_mono_ms() + 5000;
    while (!atomic_load(&b->closed) && wsg_mono_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
    natsConnection_Close(b->nc);
    nb_ev_free(b); /* fails PubAcks never received with WSG_EUNAVAILABLE */
    nb_cmd_free(b);
    nb_users_free(b);
    unsubscribe_all_channels(b);
    if (b->bcast_sub)
        natsSubscription_Destroy(b->bcast_sub);
    if (b->hb_sub)
        natsSubscription_Destroy(b->hb_sub);
    if (b->watch_sub)
        natsSubscription_Destroy(b->watch_sub);
    free_handle(b);
}

/* ---- channels and broadcasts ---------------------------------------------------- */

static void on_publish(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *ud)
{
    nats_bus_t *b = ud;
    const char *subj = natsMsg_GetSubject(m);
    size_t plen = strlen(b->prefix), n = 0;
    char *channel = NULL, *route = nb_hdr_get_tok(m, "Wsg-Route");
    char *exclude = nb_hdr_get_tok(m, "Wsg-Exclude");
    const char *bin = NULL;
    int ok = 1;
    if (strncmp(subj + plen, ".ch.", 4) == 0) {
        channel = nb_untok(subj + plen + 4, &n);
        ok = channel && strlen(channel) == n;
    }
    natsMsgHeader_Get(m, "Wsg-Binary", &bin);
    bus_publish_t p = {.channel = channel,
                       .route = channel ? NULL : route,
                       .exclude = exclude,
                       .data = (const unsigned char *)natsMsg_GetData(m),
                       .len = (size_t)natsMsg_GetDataLength(m),
                       .binary = bin && strcmp(bin, "1") == 0};
    if (ok)
        bus_core_publish_in(&b->base, &p);
    free(channel);
    free(route);
    free(exclude);
    natsMsg_Destroy(m);
}

static char *channel_subject(nats_bus_t *b, const char *channel)
{
    char *t = nb_tok(channel, strlen(channel));
    size_t n = strlen(b->prefix) + strlen(t) + 8;
    char *s = bus_xcalloc(n);
    snprintf(s, n, "%s.ch.%s", b->prefix, t);
    free(t);
    return s;
}

static int nats_publish(bus_t *bus, const bus_publish_t *p)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (p->len > (size_t)INT32_MAX)
        return WSG_EINVAL;
    char bsubj[NB_PREFIX_MAX + 8];
    snprintf(bsubj, sizeof bsubj, "%s.bcast", b->prefix);
    char *csubj = p->channel ? channel_subject(b, p->channel) : NULL;
    natsMsg *m = NULL;
    natsStatus s =
        natsMsg_Create(&m, csubj ? csubj : bsubj, NULL, (const char *)p->data, (int)p->len);
    if (s == NATS_OK && !p->channel)
        s = nb_hdr_set_tok(m, "Wsg-Route", p->route);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Exclude", p->exclude);
    if (s == NATS_OK && p->binary)
        s = natsMsgHeader_Set(m, "Wsg-Binary", "1");
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(b->nc, m);
    natsMsg_Destroy(m);
    free(csubj);
    return nb_status_to_err(s);
}

static int nats_listen_publishes(bus_t *bus)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    atomic_store(&b->subscribed, 1);
    int rc = 0;
    pthread_mutex_lock(&b->hmu);
    if (!b->bcast_sub) {
        char subj[NB_PREFIX_MAX + 8];
        snprintf(subj, sizeof subj, "%s.bcast", b->prefix);
        rc = nb_status_to_err(natsConnection_Subscribe(&b->bcast_sub, b->nc, subj, on_publish, b));
    }
    pthread_mutex_unlock(&b->hmu);
    return rc;
}

static nb_chan_t **chan_slot(nats_bus_t *b, const char *channel)
{
    nb_chan_t **pp = &b->chans[wsg_hashn(channel, strlen(channel)) % NB_BUCKETS];
    while (*pp && strcmp((*pp)->name, channel) != 0)
        pp = &(*pp)->next;
    return pp;
}

static int interest_on(nats_bus_t *b, nb_chan_t **pp, const char *channel)
{
    atomic_store(&b->subscribed, 1);
    size_t n = strlen(channel) + 1;
    nb_chan_t *c = bus_xcalloc(sizeof *c + n);
    memcpy(c->name, channel, n);
    char *subj = channel_subject(b, channel);
    natsStatus s = natsConnection_Subscribe(&c->sub, b->nc, subj, on_publish, b);
    free(subj);
    if (s == NATS_OK) /* a stalled edge drops publishes past this, never grows */
        s = natsSubscription_SetPendingLimits(c->sub, NB_CHAN_PENDING_MSGS, NB_CHAN_PENDING_BYTES);
    if (s != NATS_OK && c->sub)
        natsSubscription_Destroy(c->sub);
    if (s != NATS_OK) {
        free(c);
        return nb_status_to_err(s);
    }
    *pp = c;
    return 0;
}

/* bus.c calls this on a channel's 0 -> 1 and 1 -> 0 only. */
static int nats_interest(bus_t *bus, const char *channel, int on)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    int rc = 0;
    pthread_mutex_lock(&b->hmu);
    nb_chan_t **pp = chan_slot(b, channel);
    if (on && !*pp) {
        rc = interest_on(b, pp, channel);
    } else if (!on && *pp) {
        nb_chan_t *c = *pp;
        *pp = c->next;
        natsSubscription_Unsubscribe(c->sub);
        natsSubscription_Destroy(c->sub);
        free(c);
    }
    pthread_mutex_unlock(&b->hmu);
    return rc;
}

/* ---- heartbeats ------------------------------------------------------------------- */

static void on_heartbeat(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *ud)
{
    nats_bus_t *b = ud;
    char *edge = nb_hdr_get_tok(m, "Wsg-Edge");
    const char *at = NULL, *leaving = NULL;
    natsMsgHeader_Get(m, "Wsg-At", &at);
    natsMsgHeader_Get(m, "Wsg-Leaving", &leaving);
    if (edge && *edge && at)
        bus_core_heartbeat_in(&b->base, edge, strtoll(at, NULL, 10),
                              leaving && strcmp(leaving, "1") == 0);
    free(edge);
    natsMsg_Destroy(m);
}

static int nats_heartbeat(bus_t *bus, const char *edge_id, int leaving)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    char subj[NB_PREFIX_MAX + 8], at[32];
    snprintf(subj, sizeof subj, "%s.hb", b->prefix);
    snprintf(at, sizeof at, "%lld", (long long)wsg_wall_ms());
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, NULL, 0);
    if (s == NATS_OK)
        s = nb_hdr_set_tok(m, "Wsg-Edge", edge_id);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Wsg-At", at);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Wsg-Leaving", leaving ? "1" : "0");
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(b->nc, m);
    natsMsg_Destroy(m);
    return nb_status_to_err(s);
}

static int nats_listen_heartbeats(bus_t *bus)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    atomic_store(&b->subscribed, 1);
    int rc = 0;
    pthread_mutex_lock(&b->hmu);
    if (!b->hb_sub) {
        char subj[NB_PREFIX_MAX + 8];
        snprintf(subj, sizeof subj, "%s.hb", b->prefix);
        rc = nb_status_to_err(natsConnection_Subscribe(&b->hb_sub, b->nc, subj, on_heartbeat, b));
    }
    pthread_mutex_unlock(&b->hmu);
    return rc;
}

/* ---- where connections live (bus_event_watch) ------------------------------------ */

/* A NATS thread: the stream's subjects are plain subjects too, so a core
 * subscription on <prefix>.ev.s.> gets a copy of every connect, disconnect
 * and subscription event as it is published (bus_nats_ev.c), unacked. */
static void on_watch(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *ud)
{
    nats_bus_t *b = ud;
    (void)nc;
    (void)sub;
    const char *t = NULL;
    if (natsMsgHeader_Get(m, "Wsg-Type", &t) == NATS_OK && t) {
        int type = atoi(t);
        char *conn = nb_hdr_get_tok(m, "Wsg-Conn"), *edge = nb_hdr_get_tok(m, "Wsg-Edge");
        if (conn && *conn)
            bus_core_watch_in(&b->base, (bus_event_type_t)type, conn, edge);
        free(conn);
        free(edge);
    }
    natsMsg_Destroy(m);
}

static int nats_listen_watch(bus_t *bus)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    atomic_store(&b->subscribed, 1);
    int rc = 0;
    pthread_mutex_lock(&b->hmu);
    if (!b->watch_sub) {
        char subj[NB_PREFIX_MAX + 16];
        snprintf(subj, sizeof subj, "%s.ev.s.>", b->prefix);
        rc = nb_status_to_err(natsConnection_Subscribe(&b->watch_sub, b->nc, subj, on_watch, b));
    }
    pthread_mutex_unlock(&b->hmu);
    return rc;
}

const bus_ops_t bus_nats_ops = {
    .name = "nats",
    .open = nats_open,
    .start = nats_start,
    .free = nats_free,
    .healthy = nats_healthy,
    .roundtrip = nats_roundtrip,
    .event_publish = nb_ev_publish,
    .event_capacity = nb_ev_capacity,
    .event_subscribe = nb_ev_subscribe,
    .event_on_run_end = nb_ev_on_run_end,
    .event_done = nb_ev_done,
    .event_last_seq = nb_ev_last_seq,
    .cmd_send = nb_cmd_send,
    .cmd_reply = nb_cmd_reply,
    .serve = nb_cmd_serve,
    .publish = nats_publish,
    .listen_publishes = nats_listen_publishes,
    .listen_heartbeats = nats_listen_heartbeats,
    .listen_watch = nats_listen_watch,
    .interest = nats_interest,
    .heartbeat = nats_heartbeat,
    .user_shared = nb_user_shared,
    .user_claim = nb_user_claim,
    .user_release = nb_user_release,
    .edge_lost_mark = nb_edge_lost_mark,
    .edge_lost_take = nb_edge_lost_take,
};
