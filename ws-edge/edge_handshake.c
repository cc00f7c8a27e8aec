/* SPDX-License-Identifier: MIT */
/*
 * edge_handshake.c — everything decided before the 101 (docs/contract.md §2):
 * a repeated Host, Origin, Sec-WebSocket-Key, Sec-WebSocket-Version or
 * Authorization header (400), exact-path routing (404), not a version-13
 * upgrade (426), a bad Sec-WebSocket-Key (400), origin (403), connection
 * limits (503 per edge, 429 per IP), the subprotocol (400 when the route
 * lists others only; an offer of bearer.<token> alone is echoed), JWT (401)
 * and its expiry, one connection per user with `reject` (409), and the
 * authorizer webhook (its 401/403, or 503). The client's address — for
 * remote_addr, the authorizer, logs and the per-IP limit — is the peer's,
 * or X-Forwarded-For's when the peer is in edge.trusted_proxies.
 *
 * The request arrives here complete and parsed (edge_request.c), before lws
 * has seen any of it: lws 4.1 cannot hold an upgrade open
 * (LWS_CALLBACK_HTTP_CONFIRM_UPGRADE must answer at once) and drops an
 * offered subprotocol that no lws protocol is named after (e.g.
 * "bearer.<token>") without a status. A refusal is written on the socket
 * here; an admitted request goes to lws rebuilt — path, host, key, version,
 * no token, no subprotocol list — with lws_adopt_socket_vhost_readbuf(), at
 * once or when the authorizer has answered; lws decides nothing itself:
 * its CONFIRM_UPGRADE finds the connection by fd (by_fd) and lets it
 * through, and the chosen subprotocol is added in LWS_CALLBACK_ADD_HEADERS.
 *
 * One connection per user with `reject`: the edge's index (e->edge->users,
 * every loop's connections) refuses a second handshake of a user this edge
 * already holds. When the bus is
 * shared by several edges (cluster mode) the handshake is also held, and
 * once the authorizer (if any) has named the user, a claim thread
 * (edge_authz.c) claims it cluster-wide with bus_user_claim(); its verdict
 * admits the handshake, or refuses it with 409 (another edge holds the user)
 * or 503 (it cannot tell). The connection drops its claim when it ends.
 *
 * Service thread only.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/http.h"
#include "common/text.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/metrics.h"
#include "ws-edge/edge_authz_answer.h"
#include "ws-edge/edge_int.h"

void edge_send_http_status(int fd, int status, const char *extra_headers, const char *body)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n%s",
                     status, wsg_http_reason(status), strlen(body) + 1,
                     extra_headers ? extra_headers : "", body);
    if (n < 0 || (size_t)n >= sizeof buf - 1)
        return;
    buf[n++] = '\n';
    /* Best effort: a refusal this small fits any socket buffer. */
    ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
}

/* per_ip entry of ip moved by delta (under mu). */
static void ip_adjust(edge_t *E, const char *ip, int delta)
{
    uintptr_t n = (uintptr_t)edge_map_get(&E->per_ip, ip);
    n = (uintptr_t)((intptr_t)n + delta);
    if (n == 0)
        edge_map_del(&E->per_ip, ip);
    else
        edge_map_put(&E->per_ip, ip, (void *)n);
}

int edge_admit_take(edge_loop_t *e, const char *ip)
{
    edge_t *E = e->edge;
    const wsg_edge_conf_t *ec = &e->edge->cfg->edge;
    int st = 0;
    pthread_mutex_lock(&E->mu);
    if (ec->max_connections && E->n_admitted >= ec->max_connections)
        st = 503;
    else if (ec->max_connections_per_ip &&
             (uintptr_t)edge_map_get(&E->per_ip, ip) >= ec->max_connections_per_ip)
        st = 429;
    if (st == 0) {
        E->n_admitted++;
        ip_adjust(E, ip, +1);
    }
    pthread_mutex_unlock(&E->mu);
    return st;
}

void edge_admit_release(edge_loop_t *e, const char *ip)
{
    edge_t *E = e->edge;
    pthread_mutex_lock(&E->mu);
    E->n_admitted--;
    ip_adjust(E, ip, -1);
    pthread_mutex_unlock(&E->mu);
}

/* A request refused before it became a connection: answered on fd, closed. */
static void refuse_fd(int fd, int status, const char *why, const char *path, const char *extra,
                      const char *remote)
{
    wsg_count(WSG_M_HANDSHAKE_REJECTED, 1);
    WSG_LOG(WSG_LOG_INFO, "handshake refused", "status=%d reason=%s route=%s remote=%s", status,
            why, path, remote);
    edge_send_http_status(fd, status, extra, why);
    close(fd);
}

/* lws only ever sees requests the edge admitted (edge_accept.c read them), so these
 * two answer what would be a mistake of ours, not a client's. */
static int refuse(struct lws *wsi, int status, const char *why)
{
    wsg_count(WSG_M_HANDSHAKE_REJECTED, 1);
    WSG_LOG(WSG_LOG_WARN, "lws saw a request the edge did not admit", "status=%d", status);
    edge_send_http_status(lws_get_socket_fd(wsi), status, NULL, why);
    return -1; /* hang up */
}

int edge_on_http(struct lws *wsi)
{
    return refuse(wsi, 400, "bad request");
}

/* 1 when list (comma-separated) holds token, case-insensitively. */
static int list_has(const char *list, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *q = p;
        while (*q && *q != ',')
            q++;
        const char *t = q;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0)
            return 1;
        p = q;
    }
    return 0;
}

/* 1 when any header named lname lists token. */
static int header_has(const edge_req_t *req, const char *lname, const char *token)
{
    size_t from = 0;
    const char *v;
    while ((v = edge_req_header_from(req, lname, &from)))
        if (list_has(v, token))
            return 1;
    return 0;
}

static int origin_allowed(const wsg_route_conf_t *r, const edge_req_t *req)
{
    if (!r->n_allowed_origins)
        return 1;
    const char *origin = edge_req_header(req, "origin");
    if (!origin || !*origin)
        return 0;
    for (size_t i = 0; i < r->n_allowed_origins; i++)
        if (strcasecmp(r->allowed_origins[i], origin) == 0 ||
            strcmp(r->allowed_origins[i], "*") == 0)
            return 1;
    return 0;
}

/* Splits the offered subprotocols (every Sec-WebSocket-Protocol header; the
 * first EDGE_MAX_OFFERED are kept); a "bearer.<token>" entry becomes *token. */
#define EDGE_MAX_OFFERED 32
static void parse_protocols(const edge_req_t *req, edge_conn_t *c, char **token)
{
    size_t from = 0;
    const char *v;
    while ((v = edge_req_header_from(req, "sec-websocket-protocol", &from))) {
        char *buf = strdup(v), *save = NULL;
        if (!buf)
            abort();
        for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
            if (wsg_is_bearer_protocol(t)) {
                if (!c->bearer_offer && !(c->bearer_offer = strdup(t)))
                    abort();
                if (!*token)
                    *token = strdup(t + WSG_BEARER_PREFIX_LEN);
                continue;
            }
            if (c->n_offered == EDGE_MAX_OFFERED)
                continue; /* a client offering more is not browsing */
            char **o = realloc(c->offered, (c->n_offered + 1) * sizeof *o);
            if (!o)
                abort();
            c->offered = o;
            c->offered[c->n_offered++] = strdup(t);
        }
        free(buf);
    }
}

static char *find_token(const edge_req_t *req, edge_conn_t *c)
{
    char *token = NULL;
    const char *auth = edge_req_header(req, "authorization");
    if (auth && strlen(auth) > 7 && strncasecmp(auth, "Bearer ", 7) == 0)
        token = strdup(auth + 7);
    const char *name, *val;
    for (size_t i = 0; !token && (name = edge_req_arg(req, i, &val)); i++)
        if (strcmp(name, "token") == 0)
            token = strdup(val);
    parse_protocols(req, c, &token);
    return token;
}

/* headers (a safe set plus authorizer_headers) and query (without token) as
 * the connect event's JSON members, without braces. */
static char *connect_extra(const wsg_route_conf_t *r, const edge_req_t *req)
{
    static const char *safe[] = {
        "host", "origin", "user-agent", "accept-language", "x-forwarded-for", "x-real-ip"};
    json_t *h = json_object(), *q = json_object();
    for (size_t i = 0; i < sizeof safe / sizeof *safe; i++) {
        const char *v = edge_req_header(req, safe[i]);
        if (v)
            json_object_set_new(h, safe[i], json_string(v));
    }
    for (size_t i = 0; i < r->auth.n_authorizer_headers; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s", r->auth.authorizer_headers[i]);
        for (char *p = name; *p; p++)
            *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
        if (strcmp(name, "authorization") == 0 || strcmp(name, "cookie") == 0)
            continue; /* never forwarded, whatever the config says */
        const char *v = edge_req_header(req, name);
        if (v)
            json_object_set_new(h, name, json_string(v));
    }
    const char *name, *val;
    for (size_t i = 0; (name = edge_req_arg(req, i, &val)); i++) {
        if (strcmp(name, "token") == 0)
            continue;
        json_t *v = json_string(val);
        if (v)
            json_object_set_new(q, name, v);
    }
    json_t *extra = json_pack("{s:o,s:o}", "headers", h, "query", q);
    char *ex = json_dumps(extra, JSON_COMPACT);
    json_decref(extra);
    if (!ex)
        abort();
    size_t exl = strlen(ex);
    char *out = strndup(ex + 1, exl - 2); /* members without the braces */
    free(ex);
    return out;
}

/* A wsaas route's member of its connection's events (docs/compat.md): the
 * client's Authorization header, which that protocol forwards on each
 * request (left out when over EDGE_WSAAS_AUTH_MAX bytes or not UTF-8), on
 * every event, so whichever dispatcher holds the connection's partition has
 * it; and on the connect event the ws_uri its backend pushes to. Kept apart
 * from connect_extra: that also goes to the authorizer, which never sees
 * Authorization. connect: 1 for the connect event's member. */
static char *proto_member(const wsg_route_conf_t *r, const edge_req_t *req, const char *id,
                          int connect)
{
    if (r->protocol != WSG_PROTO_WSAAS)
        return NULL;
    wsg_sbuf_t b = {0};
    const char *auth = edge_req_header(req, "authorization");
    const char *sep = "";
    wsg_sb_puts(&b, "\"wsaas\":{");
    if (connect) {
        size_t n = strlen(r->ws_hostname);
        char *uri = malloc(n + strlen(id) + 2);
        if (!uri)
            abort();
        snprintf(uri, n + strlen(id) + 2, "%s/%s", r->ws_hostname, id);
        wsg_sb_puts(&b, "\"ws_uri\":");
        wsg_sb_str(&b, wsg_json_ok(uri) ? uri : "");
        free(uri);
        sep = ",";
    }
    if (auth && strlen(auth) <= EDGE_WSAAS_AUTH_MAX && wsg_json_ok(auth)) {
        wsg_sb_puts(&b, sep);
        wsg_sb_puts(&b, "\"authorization\":");
        wsg_sb_str(&b, auth);
    }
    wsg_sb_puts(&b, "}");
    if (!b.p)
        abort();
    return b.p;
}

static int check_jwt(edge_loop_t *e, edge_conn_t *c, const char *token, char *why, size_t whylen)
{
    const wsg_route_conf_t *r = c->route;
    if (!token || !r->auth.jwt.enabled) {
        if (r->auth.required && !*r->auth.authorizer) {
            snprintf(why, whylen, "%s", token ? "tokens not accepted" : "token required");
            return WSG_EAUTH;
        }
        return 0;
    }
    wsg_claims_t cl;
    memset(&cl, 0, sizeof cl);
    int rc = wsg_jwt_verify(&r->auth.jwt, token, wsg_wall_s(), &cl, why, whylen);
    if (rc != 0)
        return WSG_EAUTH;
    for (size_t i = 0; i < cl.n_channels; i++) /* checked whole before any is kept */
        if (wsg_channel_valid(cl.channels[i], NULL, 0) != 0) {
            snprintf(why, whylen, "channels claim names an invalid channel");
            wsg_claims_clear(&cl);
            return WSG_EAUTH;
        }
    if (cl.exp)
        edge_conn_set_expiry(c, cl.exp + r->auth.jwt.leeway_s); /* accepted until then */
    if (cl.sub)
        c->user = strdup(cl.sub);
    edge_conn_set_context(c, cl.context_json);
    for (size_t i = 0; i < cl.n_channels; i++) {
        char **ch = realloc(c->channels, (c->n_channels + 1) * sizeof *ch);
        if (!ch)
            abort();
        c->channels = ch;
        c->channels[c->n_channels++] = strdup(cl.channels[i]);
    }
    wsg_claims_clear(&cl);
    return 0;
}

void edge_conn_set_expiry(edge_conn_t *c, int64_t unix_s)
{
    c->expires_ms = 0;
    if (!c->route->limits.close_on_token_expiry)
        return;
    int64_t left = unix_s * 1000 - wsg_wall_ms(); /* the wheel runs on the monotonic clock */
    c->expires_ms = edge_now_ms() + (left > 0 ? left : 0);
    if (!c->expires_ms)
        c->expires_ms = 1;
}

/* Keeps a copy of txt (a JSON object) as c's context; "{}" or NULL: none. */
void edge_conn_set_context(edge_conn_t *c, const char *txt)
{
    free(c->context_json);
    c->context_json = txt && strcmp(txt, "{}") != 0 ? strdup(txt) : NULL;
}

static edge_conn_t *conn_new(const edge_loop_t *e, const wsg_route_conf_t *r, const char *ip)
{
    edge_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    edge_make_id(e, c->id);
    c->route = r;
    c->pending = 1;
    c->hs_fd = -1;
    c->opened_ms = edge_now_ms();
    snprintf(c->remote, sizeof c->remote, "%s", ip);
    return c;
}

static char *user_key(const edge_conn_t *c)
{
    size_t n = strlen(c->route->path) + strlen(c->user) + 2;
    char *k = malloc(n);
    if (!k)
        abort();
    snprintf(k, n, "%s\x1f%s", c->route->path, c->user);
    return k;
}

/* e->edge->users, under its mutex: values are connections of any loop, read
 * only for identity and their (immutable) id; an entry is removed, under the
 * mutex, before its connection is freed. */
static int user_conflict_locked(edge_t *E, const edge_conn_t *c, const char *k)
{
    edge_conn_t *holder = edge_map_get(&E->users, k);
    return holder != NULL && holder != c;
}

int edge_user_reserve(edge_loop_t *e, edge_conn_t *c)
{
    if (!c->user && c->route->protocol == WSG_PROTO_WSAPI)
        return WSG_EFORBIDDEN; /* its backend could never address it */
    if (!c->user || c->route->one_connection_per_user != WSG_ONE_CONN_REJECT)
        return 0;
    char *k = user_key(c);
    pthread_mutex_lock(&e->edge->mu);
    int taken = user_conflict_locked(e->edge, c, k);
    if (!taken) {
        edge_map_put(&e->edge->users, k, c);
        c->in_user_index = 1;
    }
    pthread_mutex_unlock(&e->edge->mu);
    free(k);
    return taken ? WSG_EEXISTS : 0;
}

int edge_user_refusal(int rc, const char **why)
{
    if (rc == WSG_EFORBIDDEN) {
        *why = "this route needs a user (a token with a subject, or an authorizer naming one)";
        return 403;
    }
    *why = "user already connected";
    return 409;
}

/* `replace`: closes the connection with id (4409), on whichever loop holds it. */
static void close_replaced(edge_loop_t *e, const char *id)
{
    edge_loop_t *owner = edge_loop_of(e->edge, id);
    if (owner == e) {
        edge_conn_t *old = edge_map_get(&e->conns, id);
        if (old && old->wsi)
            edge_conn_close(e, old, WSG_CLOSE_REPLACED, "replaced", "server");
        return;
    }
    size_t il = strlen(id);
    edge_q_t *q = edge_q_new(EDGE_Q_CMD, il + 1 + sizeof "replaced" + sizeof "server");
    char *cur = q->store;
    bus_cmd_t *cmd = &q->u.cmd.cmd;
    cmd->op = BUS_CMD_CLOSE;
    cmd->code = WSG_CLOSE_REPLACED;
    cmd->conn_id = memcpy(cur, id, il + 1);
    cur += il + 1;
    cmd->reason = memcpy(cur, "replaced", sizeof "replaced");
    cur += sizeof "replaced";
    cmd->initiator = memcpy(cur, "server", sizeof "server");
    edge_post(owner, q); /* no reply: nobody waits */
}

void edge_user_index(edge_loop_t *e, edge_conn_t *c, int on)
{
    if (!c->user)
        return;
    edge_t *E = e->edge;
    char *k = user_key(c);
    if (on) {
        char old_id[EDGE_ID_LEN + 1] = "";
        pthread_mutex_lock(&E->mu);
        edge_conn_t *old = edge_map_get(&E->users, k);
        if (old && old != c && c->route->one_connection_per_user == WSG_ONE_CONN_REPLACE)
            memcpy(old_id, old->id, sizeof old_id); /* alive while it is in the index */
        edge_map_put(&E->users, k, c);
        c->in_user_index = 1;
        pthread_mutex_unlock(&E->mu);
        if (*old_id)
            close_replaced(e, old_id);
    } else {
        pthread_mutex_lock(&E->mu);
        if (c->in_user_index && edge_map_get(&E->users, k) == c)
            edge_map_del(&E->users, k);
        pthread_mutex_unlock(&E->mu);
        c->in_user_index = 0;
        if (c->claim_rev) /* the cluster claim goes with it */
            edge_claim_release(e->edge->authz, c->route->path, c->user, c->id, c->claim_rev);
        c->claim_rev = 0;
    }
    free(k);
}

static void conn_register(edge_loop_t *e, edge_conn_t *c)
{
    edge_map_put(&e->conns, c->id, c);
    e->n_conns++;
}

/* Undoes conn_register for a connection that never opened; replies to held
 * commands with WSG_EGONE. */
static void conn_unregister(edge_loop_t *e, edge_conn_t *c)
{
    if (edge_map_get(&e->conns, c->id) == c) {
        edge_map_del(&e->conns, c->id);
        e->n_conns--;
    }
    if (c->counted)
        edge_admit_release(e, c->remote);
    c->counted = 0;
    edge_user_index(e, c, 0); /* a `reject` reservation */
    edge_hs_unhold(e, c);
    while (c->held) {
        edge_held_t *h = c->held;
        c->held = h->next;
        bus_cmd_reply(h->q->u.cmd.reply, WSG_EGONE);
        edge_q_free(h->q);
        free(h);
    }
}

void edge_hs_refuse(edge_loop_t *e, edge_conn_t *c, int status, const char *why)
{
    wsg_count(WSG_M_HANDSHAKE_REJECTED, 1);
    WSG_LOG(WSG_LOG_INFO, "handshake refused",
            "conn=%s route=%s user=%s status=%d reason=%s remote=%s", c->id, c->route->path,
            c->user, status, why, c->remote);
    if (c->hs_fd >= 0) {
        edge_send_http_status(c->hs_fd, status, NULL, why);
        close(c->hs_fd);
    }
    conn_unregister(e, c); /* forgets hs_fd too */
    edge_conn_free(c);
}

/* The authorizer's request body, written directly: headers and query are
 * the connect event's (connect_extra, serialised once), the rest are a few
 * strings, so nothing is built as a jansson tree and dumped a second time.
 * Strings that are not valid UTF-8 are left out, as json_string() would. */
static char *authz_body(const edge_conn_t *c)
{
    wsg_sbuf_t b = {0};
    wsg_sb_put(&b, "{\"connection_id\":", 17);
    wsg_sb_str(&b, c->id);
    if (wsg_json_ok(c->route->path))
        wsg_sb_member(&b, "path", c->route->path);
    wsg_sb_put(&b, ",", 1);
    wsg_sb_put(&b, c->connect_extra, strlen(c->connect_extra));
    wsg_sb_member(&b, "remote_addr", c->remote);
    wsg_sb_put(&b, ",\"subprotocols\":[", 17);
    int first = 1;
    for (size_t i = 0; i < c->n_offered; i++) {
        if (!wsg_json_ok(c->offered[i]))
            continue;
        if (!first)
            wsg_sb_put(&b, ",", 1);
        wsg_sb_str(&b, c->offered[i]);
        first = 0;
    }
    wsg_sb_put(&b, "]", 1);
    if (c->user && wsg_json_ok(c->user))
        wsg_sb_member(&b, "user", c->user);
    wsg_sb_put(&b, "}", 1);
    return b.p;
}

/* The request lws gets once c is admitted: what it needs to upgrade, then
 * any bytes the client sent after its headers, up to an unmasked frame
 * (edge_rxcheck.c). On wss:// that includes what OpenSSL decrypted and
 * holds of fd (the rest of the record the headers ended in: the client's
 * first frames, when it wrote them with the request): no read event would
 * announce it, and a read event fed to lws right after the adoption only
 * drains lws's copy of this buffer. */
static int build_resume(edge_conn_t *c, const edge_req_t *req, int fd)
{
    const char *key = edge_req_header(req, "sec-websocket-key");
    const char *host = edge_req_header(req, "host");
    if (!host || !*host || strpbrk(host, "\r\n"))
        host = "localhost";
    size_t tail = req->len - req->body_off, held = edge_tls_held(fd);
    size_t cap = strlen(c->route->path) + strlen(host) + strlen(key) + 160 + tail + held;
    c->hs_req = malloc(cap);
    if (!c->hs_req)
        abort();
    int n = snprintf(c->hs_req, cap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     c->route->path, host, key);
    if (n < 0 || (size_t)n + tail + held >= cap)
        return WSG_ETOOBIG;
    unsigned char *after = (unsigned char *)c->hs_req + n;
    memcpy(after, req->buf + req->body_off, tail);
    ssize_t got = held ? edge_tls_read(fd, after + tail, held, 0) : 0;
    /* one scan over both: it counts the frames an unmasked one follows */
    size_t ok = edge_rxcheck_scan(&c->rxc, after, tail + (got > 0 ? (size_t)got : 0));
    c->hs_req_len = (size_t)n + ok;
    return 0;
}

static void fd_key(int fd, char k[16])
{
    snprintf(k, 16, "%d", fd);
}

void edge_hs_unhold(edge_loop_t *e, edge_conn_t *c)
{
    if (c->hs_fd < 0)
        return;
    char k[16];
    fd_key(c->hs_fd, k);
    if (edge_map_get(&e->by_fd, k) == c)
        edge_map_del(&e->by_fd, k);
    c->hs_fd = -1;
}

/* c's decision is pending on fd (or lws is about to get it): by_fd finds c
 * from lws's CONFIRM_UPGRADE, the tick times it out. An entry already there
 * is stale: while the edge or lws held that fd the kernel could not hand
 * its number out again, so lws closed it before upgrading (its connection
 * never opened, and goes now rather than keeping its slots). */
static void hold_fd(edge_loop_t *e, edge_conn_t *c, int fd)
{
    char k[16];
    fd_key(fd, k);
    edge_conn_t *stale = edge_map_get(&e->by_fd, k);
    if (stale) {
        WSG_LOG(WSG_LOG_WARN, "handshake lost in lws", "conn=%s route=%s", stale->id,
                stale->route->path);
        stale->hs_fd = -1;
        conn_unregister(e, stale);
        edge_conn_free(stale);
    }
    c->hs_fd = fd;
    edge_map_put(&e->by_fd, k, c);
}

static int list_holds(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) /* subprotocol names are case-sensitive */
            return 1;
    return 0;
}

static void set_subprotocol(edge_conn_t *c, const char *sp)
{
    free(c->subprotocol);
    c->subprotocol = NULL;
    if (sp && !(c->subprotocol = strdup(sp)))
        abort();
}

/* "subprotocol not accepted; accepted: a, b" in why, cut to fit. */
static void accepted_list(const wsg_route_conf_t *r, char *why, size_t whylen)
{
    size_t n = (size_t)snprintf(why, whylen, "subprotocol not accepted; accepted:");
    for (size_t i = 0; i < r->n_subprotocols && n < whylen; i++)
        n += (size_t)snprintf(why + n, whylen - n, "%s %s", i ? "," : "", r->subprotocols[i]);
}

/* The subprotocol of the 101 (docs/contract.md §2): the first the client offered
 * that the route lists (the first offered when it lists none); a client
 * that offered only bearer.<token> entries gets the first of them back, as
 * a browser fails a 101 that names none of its offers. Returns 0, or 400
 * with the accepted list in why when the route lists protocols and the
 * client offered others only. An authorizer may choose another offer. */
static int select_subprotocol(edge_conn_t *c, char *why, size_t whylen)
{
    const wsg_route_conf_t *r = c->route;
    const char *pick = NULL;
    for (size_t i = 0; i < c->n_offered && !pick; i++)
        if (!r->n_subprotocols || list_holds(r->subprotocols, r->n_subprotocols, c->offered[i]))
            pick = c->offered[i];
    if (!pick && c->n_offered) {
        accepted_list(r, why, whylen);
        return 400;
    }
    set_subprotocol(c, pick ? pick : c->bearer_offer);
    free(c->bearer_offer); /* an authorizer only chooses among c->offered */
    c->bearer_offer = NULL;
    return 0;
}

void edge_hs_drop_orphan(edge_loop_t *e)
{
    if (!e->upgrading)
        return;
    edge_conn_t *c = e->upgrading;
    e->upgrading = NULL;
    e->upgrading_wsi = NULL;
    conn_unregister(e, c);
    edge_conn_free(c);
}

/* lws's pass over the rebuilt request of an admitted connection. The user
 * index takes c here, before lws writes the 101 (ESTABLISHED comes after
 * that write): a client may open its next connection as soon as it reads
 * the 101, and under `replace` that one must find this one in the index,
 * whichever loop gets to ESTABLISHED first (CI once saw the older one's
 * late ESTABLISHED close the newer one). */
int edge_on_confirm_upgrade(edge_loop_t *e, struct lws *wsi)
{
    edge_hs_drop_orphan(e); /* an admitted upgrade whose 101 never went out */
    char k[16];
    fd_key(lws_get_socket_fd(wsi), k);
    edge_conn_t *c = edge_map_get(&e->by_fd, k);
    if (!c || !c->admitted)
        return refuse(wsi, 400, "bad request");
    edge_hs_unhold(e, c); /* lws owns the socket */
    e->upgrading = c;
    e->upgrading_wsi = wsi;
    edge_user_index(e, c, 1); /* an orphan leaves it again (conn_unregister) */
    return 0;
}

/* Gives an admitted connection's socket to lws with the rebuilt request;
 * lws upgrades it in this call (edge_on_confirm_upgrade, ESTABLISHED). */
static void hs_admit(edge_loop_t *e, edge_conn_t *c)
{
    c->admitted = 1;
    if (!lws_adopt_socket_vhost_readbuf(e->vh, c->hs_fd, c->hs_req, c->hs_req_len)) {
        edge_hs_unhold(e, c); /* lws closed the socket */
        WSG_LOG(WSG_LOG_WARN, "handshake lost on adoption", "conn=%s route=%s", c->id,
                c->route->path);
        conn_unregister(e, c);
        edge_conn_free(c);
    }
}

/* Asks the authorizer for c (or, for subprotocols or a user claim alone,
 * goes on at the next queue drain); the answer comes to edge_on_authz_result. */
static void hold_for_authz(edge_loop_t *e, edge_conn_t *c)
{
    const wsg_route_conf_t *r = c->route;
    if (!*r->auth.authorizer) {
        edge_q_t *item = edge_q_new(EDGE_Q_AUTHZ, 0);
        memcpy(item->u.authz.conn_id, c->id, sizeof c->id);
        item->u.authz.status = -1;
        edge_post(e, item);
        return;
    }
    edge_authz_req_t areq = {.url = r->auth.authorizer,
                             .key = r->webhook_key,
                             .key_len = r->webhook_key_len,
                             .body = authz_body(c),
                             .timeout_ms = r->auth.authorizer_timeout_ms};
    memcpy(areq.conn_id, c->id, sizeof c->id);
    if (edge_authz_start(e->edge->authz, &areq) != 0)
        edge_hs_refuse(e, c, 503, "authorizer unavailable");
}

/* Headers whose value the edge acts on and that a request may hold only
 * once (none of them is a comma-separated list): with two, the edge and
 * whatever stands before it (a proxy, the authorizer, the backend reading
 * the connect event) could each take a different one. RFC 9110 §5.3, RFC
 * 9112 §3.2 (Host), RFC 6454 §7.3 (Origin), RFC 6455 §4.1. */
static const char *const single_headers[] = {"host", "origin", "sec-websocket-key",
                                             "sec-websocket-version", "authorization"};

/* The first header of single_headers that req holds more than once, or NULL. */
static const char *repeated_header(const edge_req_t *req)
{
    for (size_t i = 0; i < sizeof single_headers / sizeof *single_headers; i++) {
        size_t from = 0;
        if (edge_req_header_from(req, single_headers[i], &from) &&
            edge_req_header_from(req, single_headers[i], &from))
            return single_headers[i];
    }
    return NULL;
}

/* A refusal before a connection exists, or 0: the request is an upgrade
 * this route takes from this client now. *extra: headers for the answer. */
static int request_checks(edge_loop_t *e, const edge_req_t *req, const wsg_route_conf_t *r,
                          const char **why, const char **extra)
{
    if (!edge_req_is_get(req) || !header_has(req, "upgrade", "websocket") ||
        !header_has(req, "connection", "upgrade")) {
        *extra = "Upgrade: websocket\r\n";
        return *why = "websocket upgrade required", 426;
    }
    const char *ver = edge_req_header(req, "sec-websocket-version");
    if (!ver || strcmp(ver, "13") != 0) {
        *extra = "Sec-WebSocket-Version: 13\r\n";
        return *why = "websocket version 13 required", 426;
    }
    const char *key = edge_req_header(req, "sec-websocket-key");
    if (!key || strlen(key) != 24 ||
        strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789+/=") != 24)
        return *why = "bad Sec-WebSocket-Key", 400;
    if (!origin_allowed(r, req))
        return *why = "origin not allowed", 403;
    if (e->stopping)
        return *why = "too many connections", 503;
    return 0;
}

_Static_assert(sizeof(((edge_conn_t *)0)->remote) >= WSG_ADDR_TEXT_MAX,
               "edge_conn_t.remote holds any address inet_ntop writes");

/* The client's address (docs/contract.md §2): the peer's, or the one X-Forwarded-For
 * gives when the peer is a trusted proxy (edge.trusted_proxies; the rule is
 * wsg_forwarded_client's). */
static void client_addr(const edge_loop_t *e, const edge_req_t *req, char *out, size_t outlen)
{
    const char *xff[EDGE_REQ_MAX_HEADERS];
    size_t n = 0, from = 0;
    const char *v;
    while (e->edge->trusted.n && n < EDGE_REQ_MAX_HEADERS &&
           (v = edge_req_header_from(req, "x-forwarded-for", &from)))
        xff[n++] = v;
    if (wsg_forwarded_client(&e->edge->trusted, req->remote, xff, n, out, outlen) < 0)
        WSG_LOG(WSG_LOG_INFO, "X-Forwarded-For ignored: not a list of addresses", "remote=%s",
                req->remote);
}

void edge_hs_decide(edge_loop_t *e, edge_req_t *req)
{
    int fd = req->fd;
    req->fd = -1;
    const char *why = NULL, *extra = NULL;
    char client[sizeof((edge_conn_t *)0)->remote];
    client_addr(e, req, client, sizeof client);
    const char *twice = repeated_header(req);
    if (twice) { /* malformed, whatever the route */
        char msg[64];
        snprintf(msg, sizeof msg, "repeated %s header", twice);
        refuse_fd(fd, 400, msg, req->path, NULL, client);
        return;
    }
    const wsg_route_conf_t *r = wsg_config_route(e->edge->cfg, req->path);
    if (!r) {
        refuse_fd(fd, 404, "not found", req->path, NULL, client);
        return;
    }
    int st = request_checks(e, req, r, &why, &extra);
    if (st == 0 && (st = edge_admit_take(e, client)) != 0) /* held by c from here */
        why = st == 429 ? "too many connections from this address" : "too many connections";
    if (st) {
        refuse_fd(fd, st, why, r->path, extra, client);
        return;
    }
    edge_conn_t *c = conn_new(e, r, client);
    c->counted = 1;
    char jwhy[512] = "";
    char *token = find_token(req, c);
    st = select_subprotocol(c, jwhy, sizeof jwhy);
    if (st == 0 && check_jwt(e, c, token, jwhy, sizeof jwhy) != 0)
        st = 401;
    int ur = st == 0 ? edge_user_reserve(e, c) : 0;
    if (ur != 0) {
        const char *uwhy;
        st = edge_user_refusal(ur, &uwhy);
        snprintf(jwhy, sizeof jwhy, "%s", uwhy);
    }
    free(token);
    if (st) {
        edge_admit_release(e, c->remote);
        edge_conn_free(c);
        refuse_fd(fd, st, jwhy, r->path, NULL, client);
        return;
    }
    c->connect_extra = connect_extra(r, req);
    c->proto_extra = proto_member(r, req, c->id, 1);
    c->proto_every = proto_member(r, req, c->id, 0);
    c->rxc.pmd = r->compression && edge_pmd_offered(req); /* before the scan of build_resume */
    if (build_resume(c, req, fd) != 0) {
        edge_admit_release(e, c->remote);
        edge_user_index(e, c, 0);
        edge_conn_free(c);
        refuse_fd(fd, 431, "request headers too large", r->path, NULL, client);
        return;
    }
    conn_register(e, c);
    hold_fd(e, c, fd);
    if (!*r->auth.authorizer && !c->n_offered && !edge_claim_needed(e, c))
        hs_admit(e, c); /* upgrade now */
    else
        hold_for_authz(e, c);
}

/* Applies a 2xx authorizer answer. Returns 0 (admit), 401 (its expires_at has
 * passed), 403 (allow false), 503 (garbage, a subprotocol not offered). */
static int apply_authz_answer(edge_conn_t *c, const char *body)
{
    edge_authz_answer_t a;
    if (edge_authz_answer_parse(body, &a) != 0)
        return 503;
    if (!a.allow) {
        edge_authz_answer_clear(&a);
        return 403;
    }
    if (a.user) {
        free(c->user);
        c->user = a.user;
        a.user = NULL;
    }
    if (a.context_json)
        edge_conn_set_context(c, a.context_json);
    if (a.n_channels) {
        char **ch = realloc(c->channels, (c->n_channels + a.n_channels) * sizeof *ch);
        if (!ch)
            abort();
        c->channels = ch;
        memcpy(ch + c->n_channels, a.channels, a.n_channels * sizeof *ch);
        c->n_channels += a.n_channels;
        a.n_channels = 0; /* the strings are c's now */
    }
    int st = 0;
    if (a.expires_at) { /* replaces the JWT's, like user and context */
        if (a.expires_at <= (int64_t)time(NULL))
            st = 401;
        edge_conn_set_expiry(c, a.expires_at);
    }
    if (st == 0 && a.subprotocol && !list_holds(c->offered, c->n_offered, a.subprotocol)) {
        WSG_LOG(WSG_LOG_WARN, "authorizer chose a subprotocol the client did not offer",
                "conn=%s route=%s", c->id, c->route->path);
        st = 503; /* the 101 may only name an offer (RFC 6455 §4.2.2) */
    } else if (st == 0 && a.subprotocol) {
        set_subprotocol(c, a.subprotocol);
    }
    edge_authz_answer_clear(&a);
    return st;
}

/* A claim thread's verdict on c's user (c NULL: the handshake is gone). */
static void on_claim_verdict(edge_loop_t *e, edge_conn_t *c, edge_q_t *q)
{
    int st = q->u.authz.status;
    if (!c || !c->claiming || c->hs_fd < 0 || c->admitted) {
        if (st == 0) /* timed out meanwhile: the claim it made goes */
            edge_claim_release(e->edge->authz, q->store, q->u.authz.body, q->u.authz.conn_id,
                               q->u.authz.rev);
        return;
    }
    c->claiming = 0;
    if (st == 0) {
        c->claim_rev = q->u.authz.rev;
        hs_admit(e, c);
    } else if (st == WSG_EEXISTS) {
        edge_hs_refuse(e, c, 409, "user already connected");
    } else {
        WSG_LOG(WSG_LOG_WARN, "user claim failed", "conn=%s route=%s code=%s", c->id,
                c->route->path, wsg_err_name(st));
        edge_hs_refuse(e, c, 503, "cannot check the user's other connections");
    }
}

void edge_on_authz_result(edge_loop_t *e, edge_q_t *q)
{
    edge_conn_t *c = edge_map_get(&e->conns, q->u.authz.conn_id);
    if (q->u.authz.claim) {
        on_claim_verdict(e, c, q);
        return;
    }
    if (!c || !c->pending || c->hs_fd < 0 || c->admitted || c->claiming)
        return; /* timed out meanwhile */
    int st = q->u.authz.status;
    if (st == -1) { /* no authorizer: the subprotocol was chosen with the request */
        st = 0;
    } else if (st == 401 || st == 403) {
        edge_hs_refuse(e, c, st, "refused by the authorizer");
        return;
    } else if (st >= 200 && st < 300) {
        edge_user_index(e, c, 0); /* the answer may name another user */
        st = apply_authz_answer(c, q->u.authz.body);
    } else {
        st = 503;
    }
    if (st != 0) {
        edge_hs_refuse(e, c, st,
                       st == 403   ? "refused by the authorizer"
                       : st == 401 ? "token expired"
                                   : "authorizer failed");
        return;
    }
    int ur = edge_user_reserve(e, c);
    if (ur != 0) {
        const char *uwhy;
        st = edge_user_refusal(ur, &uwhy);
        edge_hs_refuse(e, c, st, uwhy);
        return;
    }
    if (!edge_claim_needed(e, c)) {
        hs_admit(e, c);
    } else if (edge_claim_start(e->edge->authz, c) == 0) {
        c->claiming = 1; /* on_claim_verdict goes on */
    } else {
        edge_hs_refuse(e, c, 503, "cannot check the user's other connections");
    }
}

int edge_on_add_headers(edge_loop_t *e, struct lws *wsi, void *in)
{
    struct lws_process_html_args *a = in;
    edge_conn_t *c = e->upgrading;
    if (!c || e->upgrading_wsi != wsi || (!c->subprotocol && !c->rxc.pmd))
        return 0;
    unsigned char *p = (unsigned char *)a->p, *end = p + a->max_len;
    if (c->subprotocol &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_PROTOCOL, (unsigned char *)c->subprotocol,
                                     (int)strlen(c->subprotocol), &p, end))
        return -1;
    if (c->rxc.pmd &&
        lws_add_http_header_by_name(wsi, (const unsigned char *)"sec-websocket-extensions:",
                                    (const unsigned char *)EDGE_PMD_ANSWER,
                                    (int)strlen(EDGE_PMD_ANSWER), &p, end))
        return -1;
    a->max_len -= (int)(p - (unsigned char *)a->p);
    a->p = (char *)p;
    return 0;
}
