/* SPDX-License-Identifier: MIT */
/*
 * bus_nats_users.c — user claims of the cluster bus: route option
 * `one_connection_per_user: reject` held across edges (docs/contract.md §2).
 *
 * A claim is one key of the JetStream KeyValue bucket <prefix>_users
 * (History 1, file storage, no TTL, created on the first claim). The key is
 * base64url(SHA-256(route NUL user)), so any route and user make a valid key
 * of fixed size; the value carries the full route and user next to the
 * connection and its edge ("wsgu1 <route> <user> <conn> <edge>", each field
 * nb_tok()-encoded), and a reader compares them instead of trusting the hash.
 *
 * Claim: kvStore_Create, which of two racing claimants only one wins. When
 * the key is taken, the holder's edge is asked with a BUS_CMD_HOLDS command
 * whether it still holds that connection. "No" (WSG_EGONE, which is also
 * what a dead edge gives: no responders) lets the claimant take the key over
 * with kvStore_Update on the revision it read, so of two newcomers racing
 * for a stale claim one wins and the other finds the winner's claim on its
 * next round. Release: a delete marker published with the claim's own
 * revision as the key's expected last one (KV buckets refuse message
 * deletion), so an old owner never deletes a claim that was taken over from
 * it; then the key's subject is purged up to and including that marker
 * (a purge by subject below a sequence), which leaves any claim made after
 * it alone, so the bucket keeps one message per user claimed now, not one
 * per user who ever was. A claimant that read the marker just before the
 * purge fails its update on it and creates the key at its next round.
 *
 * What this does not cover: an edge alive but cut off from NATS answers no
 * probe, so its users can be claimed elsewhere (the registry's edge_lost
 * sweep treats such an edge as gone too, and the edge, back, closes them).
 *
 * The same bucket keeps the lost-edge marks (bus.h, section 6): key
 * "lost.<base64url(SHA-256("lost" NUL edge id))>", put by an API that swept
 * the edge, read and purged by the edge.
 *
 * Threads: any thread that may block (bus.h, section 5).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus_nats.h"
#include "common/b64.h"
#include "common/clock.h"
#include "common/err.h"

#define NB_USER_ROUNDS 4 /* create / probe / take over, before WSG_EUNAVAILABLE */
#define NB_USER_MAGIC "wsgu1"

struct nb_users {
    pthread_mutex_t mu; /* guards kv while it is opened */
    kvStore *kv;
    char subj[NB_PREFIX_MAX + 32];   /* $KV.<prefix>_users. (a key's subject stem) */
    char stream[NB_PREFIX_MAX + 24]; /* KV_<prefix>_users, the bucket's stream */
};

void nb_users_init(nats_bus_t *b)
{
    b->users = bus_xcalloc(sizeof *b->users);
    pthread_mutex_init(&b->users->mu, NULL);
}

void nb_users_free(nats_bus_t *b)
{
    if (!b->users)
        return;
    if (b->users->kv)
        kvStore_Destroy(b->users->kv);
    pthread_mutex_destroy(&b->users->mu);
    free(b->users);
    b->users = NULL;
}

int nb_user_shared(bus_t *bus)
{
    (void)bus;
    return 1;
}

/* What a failed call on the bucket means to our callers: NATS unreachable,
 * or anything else it said. */
static int kv_err(natsStatus s)
{
    return nb_status_to_err(s) == WSG_EUNAVAILABLE ? WSG_EUNAVAILABLE : WSG_EBUS;
}

/* The bucket, created on first use. A bucket made by someone else with
 * more history is refused: one message per key keeps it small. */
static int users_kv(nats_bus_t *b, kvStore **out)
{
    struct nb_users *u = b->users;
    int rc = 0;
    pthread_mutex_lock(&u->mu);
    if (!u->kv) {
        char bucket[NB_PREFIX_MAX + 16];
        snprintf(bucket, sizeof bucket, "%s_users", b->prefix);
        snprintf(u->subj, sizeof u->subj, "$KV.%s.", bucket);
        snprintf(u->stream, sizeof u->stream, "KV_%s", bucket);
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = bucket;
        kc.History = 1;
        kc.StorageType = js_FileStorage;
        kvStore *kv = NULL;
        natsStatus s = js_CreateKeyValue(&kv, b->js, &kc);
        if (s != NATS_OK)
            s = js_KeyValue(&kv, b->js, bucket);
        kvStatus *st = NULL;
        if (s == NATS_OK)
            s = kvStore_Status(&st, kv);
        if (s == NATS_OK && kvStatus_History(st) != 1)
            rc = WSG_EBUS;
        else if (s != NATS_OK)
            rc = kv_err(s);
        kvStatus_Destroy(st);
        if (rc == 0)
            u->kv = kv;
        else if (kv)
            kvStore_Destroy(kv);
    }
    *out = u->kv;
    pthread_mutex_unlock(&u->mu);
    return rc;
}

#define NB_USER_KEY_LEN WSG_B64_LEN(32)

/* base64url(SHA-256(a NUL b)): a key of fixed size for any two strings. */
static void digest_key(const char *a, const char *b, char key[NB_USER_KEY_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    /* a with its NUL: no other pair hashes the same bytes */
    if (!x || EVP_DigestInit_ex(x, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(x, a, strlen(a) + 1) != 1 || EVP_DigestUpdate(x, b, strlen(b)) != 1 ||
        EVP_DigestFinal_ex(x, md, &n) != 1)
        abort(); /* out of memory */
    EVP_MD_CTX_free(x);
    wsg_b64url_encode(md, n, key);
}

static void user_key(const bus_user_t *u, char key[NB_USER_KEY_LEN + 1])
{
    digest_key(u->route, u->user, key);
}

/* "wsgu1 <route> <user> <conn> <edge>", nb_tok() fields; heap. */
static char *claim_value(const bus_user_t *u)
{
    const char *f[4] = {u->route, u->user, u->conn_id, u->edge_id};
    char *t[4];
    size_t n = sizeof NB_USER_MAGIC;
    for (int i = 0; i < 4; i++) {
        t[i] = nb_tok(f[i], strlen(f[i]));
        n += strlen(t[i]) + 1;
    }
    char *v = bus_xcalloc(n);
    snprintf(v, n, "%s %s %s %s %s", NB_USER_MAGIC, t[0], t[1], t[2], t[3]);
    for (int i = 0; i < 4; i++)
        free(t[i]);
    return v;
}

typedef struct {
    char *f[4]; /* route, user, conn, edge */
} holder_t;

static void holder_clear(holder_t *h)
{
    for (int i = 0; i < 4; i++)
        free(h->f[i]);
    memset(h, 0, sizeof *h);
}

/* Parses a stored claim. 0 or WSG_EBUS (not a value claim_value() wrote). */
static int holder_parse(holder_t *h, const char *data, int len)
{
    memset(h, 0, sizeof *h);
    if (len <= 0 || len > 65536)
        return WSG_EBUS;
    char *v = bus_xcalloc((size_t)len + 1);
    memcpy(v, data, (size_t)len);
    char *save = NULL, *tok = strtok_r(v, " ", &save);
    int rc = tok && strcmp(tok, NB_USER_MAGIC) == 0 ? 0 : WSG_EBUS;
    for (int i = 0; i < 4 && rc == 0; i++) {
        size_t n = 0;
        tok = strtok_r(NULL, " ", &save);
        h->f[i] = tok ? nb_untok(tok, &n) : NULL;
        if (!h->f[i] || strlen(h->f[i]) != n)
            rc = WSG_EBUS;
    }
    if (rc == 0 && strtok_r(NULL, " ", &save))
        rc = WSG_EBUS;
    free(v);
    if (rc != 0)
        holder_clear(h);
    return rc;
}

/* ---- asking the holder's edge ------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status, refs; /* refs: the waiter and the reply callback */
} probe_t;

static void probe_unref(probe_t *p)
{
    pthread_mutex_lock(&p->mu);
    int last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (!last)
        return;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

static void on_probe_reply(void *ud, int status)
{
    probe_t *p = ud;
    pthread_mutex_lock(&p->mu);
    p->status = status;
    p->done = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    probe_unref(p);
}

/* 0 when edge_id answers that it holds conn_id, WSG_EGONE when it does not
 * (or no edge listens), WSG_ETIMEOUT / WSG_EUNAVAILABLE when unknown. The
 * command layer times the request out; the wait here is bounded past that
 * in case the service thread is gone. */
static int probe_holder(nats_bus_t *b, const char *edge_id, const char *conn_id)
{
    probe_t *p = bus_xcalloc(sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->refs = 2;
    bus_cmd_t cmd = {.op = BUS_CMD_HOLDS, .conn_id = conn_id};
    int rc = bus_cmd_request(&b->base, edge_id, &cmd, on_probe_reply, p);
    if (rc != 0) {
        p->refs = 1; /* the callback will not run */
        probe_unref(p);
        return rc;
    }
    int64_t until = wsg_mono_ms() + (int64_t)b->tune.cmd_timeout_ms + 2000;
    pthread_mutex_lock(&p->mu);
    while (!p->done && wsg_mono_ms() < until) {
        struct timespec ts = wsg_deadline_in(100);
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    rc = p->done ? p->status : WSG_ETIMEOUT;
    pthread_mutex_unlock(&p->mu);
    probe_unref(p);
    return rc;
}

/* ---- claim and release ----------------------------------------------------------- */

/* One round against a key that exists: 0 (ours now, *rev set), WSG_EEXISTS
 * (held by a live connection), 1 (it changed meanwhile: go round again), or
 * a WSG_E* error. */
static int contest(nats_bus_t *b, kvStore *kv, const char *key, const bus_user_t *u,
                   const char *val, uint64_t *rev)
{
    kvEntry *ent = NULL;
    natsStatus s = kvStore_Get(&ent, kv, key);
    if (s == NATS_NOT_FOUND)
        return 1; /* released meanwhile */
    if (s != NATS_OK)
        return kv_err(s);
    holder_t h;
    uint64_t seen = kvEntry_Revision(ent);
    int rc = holder_parse(&h, kvEntry_Value(ent), kvEntry_ValueLen(ent));
    kvEntry_Destroy(ent);
    if (rc != 0)
        return rc;
    if (strcmp(h.f[0], u->route) != 0 || strcmp(h.f[1], u->user) != 0) {
        rc = WSG_EBUS; /* another user under the same hash: never overwritten */
    } else if (strcmp(h.f[2], u->conn_id) == 0) {
        *rev = seen; /* our own create, whose answer was lost */
    } else if ((rc = probe_holder(b, h.f[3], h.f[2])) == 0) {
        rc = WSG_EEXISTS;
    } else if (rc == WSG_EGONE) {
        s = kvStore_UpdateString(rev, kv, key, val, seen);
        rc = s == NATS_OK ? 0 : 1; /* lost the race for the stale claim: look again */
    }
    holder_clear(&h);
    return rc;
}

int nb_user_claim(bus_t *bus, const bus_user_t *u, uint64_t *rev)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    *rev = 0; /* u was checked by bus.c */
    kvStore *kv = NULL;
    int rc = users_kv(b, &kv);
    if (rc != 0)
        return rc;
    char key[NB_USER_KEY_LEN + 1];
    user_key(u, key);
    char *val = claim_value(u);
    rc = WSG_EUNAVAILABLE;
    for (int round = 0; round < NB_USER_ROUNDS; round++) {
        uint64_t r = 0;
        natsStatus s = kvStore_CreateString(&r, kv, key, val);
        if (s == NATS_OK) {
            *rev = r;
            rc = 0;
            break;
        }
        if (nb_status_to_err(s) == WSG_EUNAVAILABLE) {
            rc = WSG_EUNAVAILABLE;
            break;
        }
        rc = contest(b, kv, key, u, val, &r);
        if (rc == 0)
            *rev = r;
        if (rc != 1)
            break;
        rc = WSG_EUNAVAILABLE; /* if this was the last round */
    }
    free(val);
    return rc;
}

int nb_user_release(bus_t *bus, const bus_user_t *u, uint64_t rev)
{
    nats_bus_t *b = (nats_bus_t *)bus;
    if (rev == 0) /* u was checked by bus.c */
        return WSG_EINVAL;
    kvStore *kv = NULL;
    int rc = users_kv(b, &kv);
    if (rc != 0)
        return rc;
    char key[NB_USER_KEY_LEN + 1], subj[sizeof b->users->subj + NB_USER_KEY_LEN];
    user_key(u, key);
    snprintf(subj, sizeof subj, "%s%s", b->users->subj, key);
    /* kvStore_Delete with an expected revision: a delete marker that only
     * lands while rev is still the key's last message. */
    natsMsg *m = NULL;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.ExpectLastSubjectSeq = rev;
    natsStatus s = natsMsg_Create(&m, subj, NULL, NULL, 0);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
    if (s == NATS_OK)
        s = js_PublishMsg(&pa, b->js, m, &po, &jerr);
    uint64_t marker = s == NATS_OK && pa ? pa->Sequence : 0;
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    if (marker) { /* a purge that fails leaves the marker: harmless */
        jsOptions o;
        jsOptions_Init(&o);
        o.Stream.Purge.Subject = subj;
        o.Stream.Purge.Sequence = marker + 1; /* up to, not including */
        js_PurgeStream(b->js, b->users->stream, &o, NULL);
    }
    if (s == NATS_OK || jerr == JSStreamWrongLastSequenceErr)
        return 0; /* dropped, or taken over meanwhile (left alone) */
    return kv_err(s);
}

/* ---- lost edges ------------------------------------------------------------ */

/* "lost.<digest of the edge id>": beside the claims, never one of them (a
 * claim's key has no dot). */
static int lost_kv(bus_t *bus, const char *edge_id, kvStore **kv, char key[NB_USER_KEY_LEN + 6])
{
    memcpy(key, "lost.", 5);
    digest_key("lost", edge_id, key + 5);
    return users_kv((nats_bus_t *)bus, kv);
}

int nb_edge_lost_mark(bus_t *bus, const char *edge_id)
{
    kvStore *kv = NULL;
    char key[NB_USER_KEY_LEN + 6];
    int rc = lost_kv(bus, edge_id, &kv, key);
    if (rc != 0)
        return rc;
    natsStatus s = kvStore_PutString(NULL, kv, key, "lost");
    if (s == NATS_OK)
        return 0;
    return kv_err(s);
}

int nb_edge_lost_take(bus_t *bus, const char *edge_id, int *lost)
{
    kvStore *kv = NULL;
    char key[NB_USER_KEY_LEN + 6];
    int rc = lost_kv(bus, edge_id, &kv, key);
    if (rc != 0)
        return rc;
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, kv, key);
    kvEntry_Destroy(e);
    if (s == NATS_NOT_FOUND)
        return 0; /* never marked, or taken already */
    if (s == NATS_OK) {
        *lost = 1;
        s = kvStore_Purge(kv, key, NULL); /* left in place, it is seen again: harmless */
    }
    if (s == NATS_OK)
        return 0;
    return kv_err(s);
}
