/* SPDX-License-Identifier: MIT */
/*
 * bus_nats_lease.c — who consumes which partition of a consumer group.
 *
 * A partition is consumed by the process holding the key <tok(group)>.<p>
 * in the KeyValue bucket <prefix>_leases (TTL lease_ttl_ms, 3 s by
 * default). The service thread renews held leases every quarter of the TTL
 * and creates free ones, up to this process's share of the partitions
 * (members announce themselves in the same bucket). A process fetches from
 * a partition only while its lease is surely its own (valid_until). Taking
 * a lease whose consumer still has another process's deliveries out resets
 * the consumer to its ack floor (take_over), so a dead holder's events come
 * again at once and first. Deliveries not yet done are kept in progress.
 *
 * Service thread only, except nb_lease_start / nb_lease_release (bus start
 * and stop, the service thread not running) and nb_partition_held (any).
 */
#include <stdio.h>
#include <string.h>

#include "bus/bus_nats_grp.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"

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
 * partitions back in two steps, keeping per-connection order: first it stops
 * fetching from them (want = 0); from the next round on, once none of its
 * undone deliveries belongs to such a partition, it deletes the lease, and
 * another member creates it at its next round. Service thread only. */

static void member_key(nb_group_t *g, char *buf, size_t n)
{
    snprintf(buf, n, "%.150s.m.%.60s", g->tok, g->b->instance);
}

static uint32_t count_members(nats_bus_t *b, nb_group_t *g)
{
    char prefix[224];
    snprintf(prefix, sizeof prefix, "%.150s.m.", g->tok);
    size_t pl = strlen(prefix);
    kvKeysList keys = {0};
    uint32_t n = 0;
    if (kvStore_Keys(&keys, b->kv, NULL) == NATS_OK)
        for (int i = 0; i < keys.Count; i++)
            n += strncmp(keys.Keys[i], prefix, pl) == 0;
    kvKeysList_Destroy(&keys);
    return n ? n : 1; /* at least this process */
}

/* A partition whose fetch a disconnect cut (fetch_partition): nobody may
 * fetch from it before the lost events are due again, so it is not given
 * away either. */
int nb_partition_held(nb_group_t *g, uint32_t p)
{
    return wsg_mono_ms() < (int64_t)atomic_load(&g->hold_until[p]);
}

/* This process's deliveries of partition p not yet done. */
static int undone_count(nb_group_t *g, uint32_t p)
{
    int n = 0;
    pthread_mutex_lock(&g->mu);
    for (nb_delivery_t *d = g->head; d; d = d->next)
        n += nb_partition_of(g->b, d->ev.conn_id) == p;
    pthread_mutex_unlock(&g->mu);
    return n;
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
    return at && wsg_mono_ms() < at + (int64_t)b->tune.ack_wait_ms + NB_LOST_FETCH_MARGIN_MS;
}

/* ---- take-over ----------------------------------------------------------------------
 *
 * A process that dies (or is cut off) leaves deliveries of its partitions
 * unacked; JetStream hands them out again only when their AckWait (30 s)
 * runs out, and a new owner fetching before that would deliver a
 * connection's later events before them. So the process that creates a
 * lease looks at the partition's consumer first: when it has deliveries
 * outstanding that are not this process's own, it deletes the consumer and
 * creates it again from the first unacked event (AckFloor + 1). Everything
 * after the ack floor comes again, in stream order, at once: events the old
 * owner had already delivered (and acked past the floor) are delivered a
 * second time with the same event id (at-least-once), none overtakes
 * another. If the consumer is gone but not yet created again (NATS failed
 * between the two calls), restart[p] keeps the start and the partition is
 * not fetched from until the consumer exists. */

static int take_over(nb_group_t *g, uint32_t p)
{
    nats_bus_t *b = g->b;
    char durable[160];
    nb_consumer_name(g, p, durable, sizeof durable);
    jsErrCode jerr = 0;
    if (!g->restart[p]) {
        jsConsumerInfo *ci = NULL;
        natsStatus s = js_GetConsumerInfo(&ci, b->js, b->stream, durable, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr)
            return 0; /* never created: bind_partition does, from the start */
        if (s != NATS_OK)
            return WSG_EBUS;
        int64_t pending = ci->NumAckPending;
        uint64_t start = ci->AckFloor.Stream + 1, seen = ci->Delivered.Stream;
        jsConsumerInfo_Destroy(ci);
        int mine = undone_count(g, p);
        if (pending <= mine)
            return 0; /* nothing out but ours: they stay valid */
        s = js_DeleteConsumer(b->js, b->stream, durable, NULL, &jerr);
        if (s != NATS_OK && jerr != JSConsumerNotFoundErr)
            return WSG_EBUS;
        g->restart[p] = start;
        atomic_store(&g->seen_upto[p], seen);
        WSG_LOG(WSG_LOG_INFO, "partition taken over: resuming after its ack floor",
                "group=%s partition=%u unacked=%lld from_seq=%llu", g->name, (unsigned)p,
                (long long)(pending - mine), (unsigned long long)start);
    }
    jerr = 0;
    if (nb_add_consumer(g, p, g->restart[p], &jerr) != NATS_OK)
        return WSG_EBUS;
    g->restart[p] = 0;
    return 0;
}

/* NATS_OK with its revision when key holds NB_LEASE_FREE; NATS_NOT_FOUND
 * when it holds nothing (expired, deleted, never taken); otherwise another
 * process holds it (NATS_ERR) or the bucket did not answer. */
static natsStatus free_lease(nats_bus_t *b, const char *key, uint64_t *rev)
{
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, b->kv, key);
    if (s == NATS_OK) {
        const char *v = kvEntry_ValueString(e);
        s = v && strcmp(v, NB_LEASE_FREE) == 0 ? NATS_OK : NATS_ERR;
        *rev = kvEntry_Revision(e);
        kvEntry_Destroy(e);
    }
    return s;
}

/* Gives partition p's lease back: clean (nothing of p out but Nak'd
 * deliveries, nothing waiting in its subscription) as NB_LEASE_FREE, so the
 * next holder resumes without a reset; otherwise deleted, so it resets. If
 * this fails the lease expires by itself (and the next holder resets). */
static void give_back(nats_bus_t *b, nb_group_t *g, uint32_t p, const char *key, int clean)
{
    if (clean)
        kvStore_UpdateString(NULL, b->kv, key, NB_LEASE_FREE, g->rev[p]);
    else
        kvStore_Delete(b->kv, key);
    g->rev[p] = 0;
}

/* One lease: create (free) or renew (ours) it. Returns the NATS status;
 * on success the lease is surely ours until sent + TTL (the bucket counts
 * the TTL from when it stored the write, after sent). */
static natsStatus claim_lease(nats_bus_t *b, nb_group_t *g, uint32_t p, const char *key)
{
    uint64_t rev = 0;
    int64_t sent = wsg_mono_ms();
    natsStatus s;
    int clean = 0;
    if (g->rev[p]) {
        s = kvStore_UpdateString(&rev, b->kv, key, b->instance, g->rev[p]);
    } else if ((s = free_lease(b, key, &rev)) == NATS_OK) {
        clean = 1; /* given back cleanly: take it over that revision */
        s = kvStore_UpdateString(&rev, b->kv, key, b->instance, rev);
    } else if (s == NATS_NOT_FOUND) {
        s = kvStore_CreateString(&rev, b->kv, key, b->instance);
    }
    if (s != NATS_OK)
        return s;
    if (((!g->rev[p] && !clean) || g->restart[p]) && take_over(g, p) != 0 && !g->restart[p]) {
        /* the consumer is as it was: not safe to fetch yet, let the lease go.
         * With restart[p] set (the consumer is gone) it is kept, unfetched
         * (renew_leases), or another process would create the consumer
         * from the stream's start. */
        kvStore_Delete(b->kv, key);
        g->rev[p] = 0;
        return NATS_ERR;
    }
    if (!g->rev[p])
        WSG_LOG(WSG_LOG_INFO, "partition lease taken", "group=%s partition=%u", g->name,
                (unsigned)p);
    g->rev[p] = rev;
    atomic_store(&g->valid_until[p], sent + (int64_t)b->tune.lease_ttl_ms);
    return NATS_OK;
}

static void renew_leases(nats_bus_t *b, nb_group_t *g)
{
    char key[224];
    member_key(g, key, sizeof key);
    kvStore_PutString(NULL, b->kv, key, "1");
    uint32_t members = count_members(b, g);
    uint32_t share = (b->partitions + members - 1) / members, held = 0;
    for (uint32_t p = 0; p < b->partitions; p++)
        held += g->rev[p] && !g->giving[p];
    for (uint32_t p = 0; p < b->partitions && !atomic_load(&b->stopping); p++) {
        lease_key(g, p, key, sizeof key);
        if (g->giving[p] && !undone_count(g, p) && !nb_partition_held(g, p) && !outage_recent(b)) {
            give_back(b, g, p, key, 0); /* a late fetch answer may wait unseen */
            WSG_LOG(WSG_LOG_INFO, "partition lease given back", "group=%s partition=%u members=%u",
                    g->name, (unsigned)p, (unsigned)members);
            g->rev[p] = 0;
            g->giving[p] = 0;
            continue;
        }
        if (!g->rev[p] && held >= share)
            continue; /* someone else's turn */
        int had = g->rev[p] != 0;
        natsStatus s = claim_lease(b, g, p, key);
        if (s != NATS_OK && had && nb_status_to_err(s) == WSG_EUNAVAILABLE)
            continue; /* no answer: keep it (fetching stops when valid_until passes) */
        if (s == NATS_OK && !had)
            held++;
        else if (s != NATS_OK && had && !g->giving[p])
            held--;
        if (s != NATS_OK) {
            g->giving[p] = 0;
            g->rev[p] = 0;
        }
        atomic_store(&g->want[p], s == NATS_OK && !g->giving[p] && !g->restart[p]);
    }
    /* above the share (a member joined): stop fetching from the last ones */
    for (uint32_t p = b->partitions; p-- > 0 && held > share;)
        if (g->rev[p] && !g->giving[p]) {
            atomic_store(&g->want[p], 0);
            g->giving[p] = 1;
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
        b->next_lease_ms = now + b->tune.lease_ttl_ms / 4;
    for (nb_group_t *g = b->groups; g; g = g->next) {
        if (leases)
            renew_leases(b, g);
        keep_in_progress(b, g, now);
    }
}

/* Gives an existing lease bucket this process's lease TTL: the fail-over
 * time follows the configuration, not whoever created the bucket first.
 * If it fails the bucket stays as it is (leases still work, slower). */
static void align_lease_ttl(nats_bus_t *b, const char *bucket)
{
    char name[NB_PREFIX_MAX + 24];
    snprintf(name, sizeof name, "KV_%s", bucket);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    int64_t ttl = (int64_t)b->tune.lease_ttl_ms * 1000000;
    if (js_GetStreamInfo(&si, b->js, name, NULL, &jerr) == NATS_OK && si->Config &&
        si->Config->MaxAge != ttl) {
        si->Config->MaxAge = ttl;
        si->Config->Duplicates = ttl; /* may not exceed MaxAge */
        jsStreamInfo *up = NULL;
        if (js_UpdateStream(&up, b->js, si->Config, NULL, &jerr) != NATS_OK)
            WSG_LOG(WSG_LOG_WARN, "cannot change the lease bucket's TTL", "bucket=%s err=%d",
                    bucket, (int)jerr);
        jsStreamInfo_Destroy(up);
    }
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
    if (s != NATS_OK) { /* exists, maybe with another TTL (an older release's 45 s) */
        align_lease_ttl(b, bucket);
        s = js_KeyValue(&b->kv, b->js, bucket);
    }
    return s;
}

natsStatus nb_lease_start(nats_bus_t *b)
{
    natsStatus s = ensure_leases(b);
    if (s != NATS_OK)
        return s;
    for (nb_group_t *g = b->groups; g; g = g->next)
        renew_leases(b, g);
    b->next_lease_ms = wsg_mono_ms() + b->tune.lease_ttl_ms / 4;
    return NATS_OK;
}

void nb_lease_release(nats_bus_t *b, nb_group_t *g)
{
    int can = b->kv && !b->vanish && atomic_load(&b->connected);
    char key[224];
    if (can) /* the Naks of nb_ev_stop reach the server before the leases go */
        natsConnection_FlushTimeout(b->nc, 1000);
    for (uint32_t p = 0; p < b->partitions; p++) {
        lease_key(g, p, key, sizeof key);
        if (g->rev[p] && can && !g->restart[p])
            give_back(b, g, p, key, g->clean[p]);
        g->rev[p] = 0;
    }
    if (can && b->instance) {
        member_key(g, key, sizeof key); /* the others take our share at once */
        kvStore_Delete(b->kv, key);
    }
}
