/*
 * edge_handshake.c — everything decided before the 101 (SPEC.md §2):
 * exact-path routing (404), plain GET (426), origin (403), connection
 * limits (503 per edge, 429 per IP), JWT (401), one connection per user
 * with `reject` (409), and the authorizer webhook (its 401/403, or 503).
 *
 * lws 4.1 cannot hold an upgrade open: LWS_CALLBACK_HTTP_CONFIRM_UPGRADE
 * must answer at once (0 upgrades now, >0 "I replied", <0 hang up), and an
 * offered subprotocol that no lws protocol is named after (e.g.
 * "bearer.<token>", or any list over 127 bytes) is dropped without a status.
 * So when an authorizer must be asked, or subprotocols were offered, the
 * edge detaches the socket: it dup()s the fd, points the original fd number
 * at a fresh unconnected socket and tells lws to hang up (lws closes only
 * that placeholder), asks the authorizer on its own thread, and then either
 * writes the refusal itself or gives the socket back to lws with
 * lws_adopt_socket_vhost_readbuf() and a rebuilt request (path, key,
 * version; no token, no subprotocol list). That second pass is recognised
 * by its fd and admitted with the stored decision; the chosen subprotocol is
 * added in LWS_CALLBACK_ADD_HEADERS.
 *
 * One connection per user with `reject`: the edge's index (e->edge->users,
 * every loop's connections) refuses a second handshake of a user this edge
 * already holds. When the bus is
 * shared by several edges (cluster mode) the handshake is also detached, and
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

#include "common/err.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/metrics.h"
#include "ws-edge/edge_int.h"

static const char *status_text(int status)
{
    switch (status) {
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 409:
        return "Conflict";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    default:
        return "Service Unavailable";
    }
}

void edge_send_http_status(int fd, int status, const char *extra_headers, const char *body)
{
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n%s\r\n%s",
                     status, status_text(status), strlen(body) + 1,
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

static int refuse(edge_loop_t *e, struct lws *wsi, int status, const char *why, const char *path)
{
    wsg_count(WSG_M_HANDSHAKE_REJECTED, 1);
    WSG_LOG(WSG_LOG_INFO, "handshake refused", "status=%d reason=%s route=%s", status, why, path);
    edge_send_http_status(lws_get_socket_fd(wsi), status,
                          status == 426 ? "Upgrade: websocket\r\n" : NULL, why);
    return -1; /* hang up; lws frees the header table: `in` is gone */
}

int edge_on_http(edge_loop_t *e, struct lws *wsi, const char *uri)
{
    char path[1024];
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0)
        return refuse(e, wsi, 404, "not found", NULL);
    if (!wsg_config_route(e->edge->cfg, path))
        return refuse(e, wsi, 404, "not found", path);
    return refuse(e, wsi, 426, "websocket upgrade required", path);
}

/* Copies header token t into buf; returns its length or -1 when absent. */
static int copy_token(struct lws *wsi, enum lws_token_indexes t, char *buf, int len)
{
    return lws_hdr_total_length(wsi, t) > 0 ? lws_hdr_copy(wsi, buf, len, t) : -1;
}

/* Copies a request header by lower-case name into buf; returns its length or -1. */
static int get_header(struct lws *wsi, const char *name, char *buf, int len)
{
    char want[128];
    int nl = snprintf(want, sizeof want, "%s:", name);
    if (nl <= 1 || (size_t)nl >= sizeof want)
        return -1;
    for (int i = 0; i < (int)sizeof want && want[i]; i++)
        want[i] = (char)((want[i] >= 'A' && want[i] <= 'Z') ? want[i] + 32 : want[i]);
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const unsigned char *s = lws_token_to_string((enum lws_token_indexes)t);
        if (s && strcmp((const char *)s, want) == 0)
            return copy_token(wsi, (enum lws_token_indexes)t, buf, len);
    }
#if defined(LWS_WITH_CUSTOM_HEADERS)
    if (lws_hdr_custom_length(wsi, want, nl) > 0)
        return lws_hdr_custom_copy(wsi, buf, len, want, nl);
#endif
    return -1;
}

static int origin_allowed(const wsg_route_conf_t *r, struct lws *wsi)
{
    if (!r->n_allowed_origins)
        return 1;
    char origin[512];
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0)
        return 0;
    for (size_t i = 0; i < r->n_allowed_origins; i++)
        if (strcasecmp(r->allowed_origins[i], origin) == 0 ||
            strcmp(r->allowed_origins[i], "*") == 0)
            return 1;
    return 0;
}

/* Splits the offered subprotocols; a "bearer.<token>" entry becomes *token. */
static void parse_protocols(struct lws *wsi, edge_conn_t *c, char **token)
{
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
    if (n <= 0)
        return;
    char *buf = malloc((size_t)n + 1);
    if (!buf || lws_hdr_copy(wsi, buf, n + 1, WSI_TOKEN_PROTOCOL) < 0) {
        free(buf);
        return;
    }
    char *save = NULL;
    for (char *t = strtok_r(buf, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
        if (strncmp(t, "bearer.", 7) == 0) {
            if (!*token)
                *token = strdup(t + 7);
            continue;
        }
        char **o = realloc(c->offered, (c->n_offered + 1) * sizeof *o);
        if (!o)
            abort();
        c->offered = o;
        c->offered[c->n_offered++] = strdup(t);
    }
    free(buf);
}

static char *find_token(struct lws *wsi, edge_conn_t *c)
{
    char *token = NULL;
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n > 7) {
        char *buf = malloc((size_t)n + 1);
        if (buf && lws_hdr_copy(wsi, buf, n + 1, WSI_TOKEN_HTTP_AUTHORIZATION) > 7 &&
            strncasecmp(buf, "Bearer ", 7) == 0)
            token = strdup(buf + 7);
        free(buf);
    }
    char q[8192];
    const char *v = token ? NULL : lws_get_urlarg_by_name(wsi, "token=", q, sizeof q);
    if (v) /* points at the value inside q */
        token = strdup(v);
    parse_protocols(wsi, c, &token);
    return token;
}

/* headers (a safe set plus authorizer_headers) and query (without token) as JSON.
 * The safe set is looked up by lws token (get_header's name search costs
 * ~90 strcmp per header, on every handshake). */
static json_t *request_headers(const wsg_route_conf_t *r, struct lws *wsi)
{
    static const struct {
        const char *name;
        int token; /* -1: not an lws token */
    } safe[] = {{"host", WSI_TOKEN_HOST},
                {"origin", WSI_TOKEN_ORIGIN},
                {"user-agent", WSI_TOKEN_HTTP_USER_AGENT},
                {"accept-language", WSI_TOKEN_HTTP_ACCEPT_LANGUAGE},
                {"x-forwarded-for", WSI_TOKEN_X_FORWARDED_FOR},
                {"x-real-ip", -1}};
    json_t *h = json_object();
    char buf[2048];
    for (size_t i = 0; i < sizeof safe / sizeof *safe; i++)
        if ((safe[i].token >= 0
                 ? copy_token(wsi, (enum lws_token_indexes)safe[i].token, buf, sizeof buf)
                 : get_header(wsi, safe[i].name, buf, sizeof buf)) >= 0)
            json_object_set_new(h, safe[i].name, json_string(buf));
    for (size_t i = 0; i < r->auth.n_authorizer_headers; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s", r->auth.authorizer_headers[i]);
        for (char *p = name; *p; p++)
            *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
        if (strcmp(name, "authorization") == 0 || strcmp(name, "cookie") == 0)
            continue; /* never forwarded, whatever the config says */
        if (get_header(wsi, name, buf, sizeof buf) >= 0)
            json_object_set_new(h, name, json_string(buf));
    }
    return h;
}

static json_t *request_query(struct lws *wsi)
{
    json_t *q = json_object();
    char buf[4096];
    for (int i = 0; lws_hdr_copy_fragment(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
         i++) {
        char *eq = strchr(buf, '=');
        if (eq)
            *eq = '\0';
        if (strcmp(buf, "token") == 0)
            continue;
        json_t *v = json_string(eq ? eq + 1 : "");
        if (v)
            json_object_set_new(q, buf, v);
    }
    return q;
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
    int rc = wsg_jwt_verify(&r->auth.jwt, token, (int64_t)time(NULL), &cl, why, whylen);
    if (rc != 0)
        return WSG_EAUTH;
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

/* `replace`: closes the connection with id (4409), on whichever loop holds it. */
static void close_replaced(edge_loop_t *e, const char *id)
{
    edge_loop_t *owner = edge_loop_of(e->edge, id);
    if (owner == e) {
        edge_conn_t *old = edge_map_get(&e->conns, id);
        if (old && old->wsi)
            edge_conn_close(e, old, 4409, "replaced", "server");
        return;
    }
    size_t il = strlen(id);
    edge_q_t *q = edge_q_new(EDGE_Q_CMD, il + 1 + sizeof "replaced" + sizeof "server");
    char *cur = q->store;
    bus_cmd_t *cmd = &q->u.cmd.cmd;
    cmd->op = BUS_CMD_CLOSE;
    cmd->code = 4409;
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
    if (c->hs_fd >= 0) {
        char k[16];
        snprintf(k, sizeof k, "%d", c->hs_fd);
        if (edge_map_get(&e->by_fd, k) == c)
            edge_map_del(&e->by_fd, k);
    }
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
    WSG_LOG(WSG_LOG_INFO, "handshake refused", "conn=%s route=%s user=%s status=%d reason=%s",
            c->id, c->route->path, c->user, status, why);
    if (c->hs_fd >= 0) {
        edge_send_http_status(c->hs_fd, status, NULL, why);
        close(c->hs_fd);
    }
    conn_unregister(e, c);
    c->hs_fd = -1;
    edge_conn_free(c);
}

/* The authorizer's request body, written directly: headers and query are
 * the connect event's (connect_extra, serialised once), the rest are a few
 * strings, so nothing is built as a jansson tree and dumped a second time.
 * Strings that are not valid UTF-8 are left out, as json_string() would. */
static char *authz_body(const edge_conn_t *c)
{
    edge_sbuf_t b = {0};
    edge_sb_put(&b, "{\"connection_id\":", 17);
    edge_sb_str(&b, c->id);
    if (edge_json_ok(c->route->path))
        edge_sb_member(&b, "path", c->route->path);
    edge_sb_put(&b, ",", 1);
    edge_sb_put(&b, c->connect_extra, strlen(c->connect_extra));
    edge_sb_member(&b, "remote_addr", c->remote);
    edge_sb_put(&b, ",\"subprotocols\":[", 17);
    int first = 1;
    for (size_t i = 0; i < c->n_offered; i++) {
        if (!edge_json_ok(c->offered[i]))
            continue;
        if (!first)
            edge_sb_put(&b, ",", 1);
        edge_sb_str(&b, c->offered[i]);
        first = 0;
    }
    edge_sb_put(&b, "]", 1);
    if (c->user && edge_json_ok(c->user))
        edge_sb_member(&b, "user", c->user);
    edge_sb_put(&b, "}", 1);
    return b.p;
}

static int build_resume(edge_conn_t *c, struct lws *wsi)
{
    char key[64], ver[8], host[256];
    if (lws_hdr_copy(wsi, key, sizeof key, WSI_TOKEN_KEY) <= 0)
        return WSG_EPROTO;
    if (lws_hdr_copy(wsi, ver, sizeof ver, WSI_TOKEN_VERSION) <= 0)
        snprintf(ver, sizeof ver, "13");
    if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
        snprintf(host, sizeof host, "localhost");
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: "
                     "Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\n\r\n",
                     c->route->path, host, key, ver);
    if (n < 0 || (size_t)n >= sizeof buf)
        return WSG_ETOOBIG;
    c->hs_req = strdup(buf);
    return 0;
}

/* Takes the socket away from lws (see the file comment). Returns 0 or -1. */
static int detach_socket(edge_loop_t *e, edge_conn_t *c, struct lws *wsi)
{
    int fd = lws_get_socket_fd(wsi);
    int held = dup(fd);
    if (held < 0)
        return -1;
    int ph = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ph < 0 || dup2(ph, fd) < 0) {
        if (ph >= 0)
            close(ph);
        close(held);
        return -1;
    }
    close(ph);
    c->hs_fd = held;
    char k[16];
    snprintf(k, sizeof k, "%d", held);
    edge_map_put(&e->by_fd, k, c);
    return 0;
}

static void choose_subprotocol(edge_conn_t *c, const char *wanted)
{
    free(c->subprotocol);
    c->subprotocol = NULL;
    for (size_t i = 0; i < c->n_offered; i++)
        if (!wanted || strcmp(wanted, c->offered[i]) == 0) {
            c->subprotocol = strdup(c->offered[i]);
            return;
        }
}

/* Second pass: the replayed request of an admitted, detached socket. */
static int confirm_resumed(edge_loop_t *e, edge_conn_t *c, struct lws *wsi)
{
    char k[16];
    snprintf(k, sizeof k, "%d", c->hs_fd);
    edge_map_del(&e->by_fd, k);
    c->hs_fd = -1; /* lws owns the socket again */
    e->upgrading = c;
    e->upgrading_wsi = wsi;
    return 0;
}

static edge_conn_t *resumed_conn(edge_loop_t *e, struct lws *wsi)
{
    char k[16];
    snprintf(k, sizeof k, "%d", lws_get_socket_fd(wsi));
    edge_conn_t *c = edge_map_get(&e->by_fd, k);
    return c && c->admitted ? c : NULL;
}

/* ip (48 bytes) receives the peer address. */
static int admit_checks(edge_loop_t *e, struct lws *wsi, const wsg_route_conf_t *r,
                        const char *path, char *ip)
{
    char up[32];
    if (lws_hdr_copy(wsi, up, sizeof up, WSI_TOKEN_UPGRADE) <= 0 || strcasecmp(up, "websocket"))
        return refuse(e, wsi, 426, "websocket upgrade required", path);
    if (!origin_allowed(r, wsi))
        return refuse(e, wsi, 403, "origin not allowed", path);
    if (e->stopping)
        return refuse(e, wsi, 503, "too many connections", path);
    ip[0] = '\0';
    lws_get_peer_simple(wsi, ip, 48);
    int st = edge_admit_take(e, ip); /* the caller's connection holds it from here */
    if (st)
        return refuse(e, wsi, st,
                      st == 429 ? "too many connections from this address" : "too many connections",
                      path);
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

int edge_on_confirm_upgrade(edge_loop_t *e, struct lws *wsi)
{
    char path[1024], why[256] = "", ip[48];
    edge_hs_drop_orphan(e); /* an admitted upgrade whose 101 never went out */
    edge_conn_t *c = resumed_conn(e, wsi);
    if (c)
        return confirm_resumed(e, c, wsi);
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0)
        return refuse(e, wsi, 404, "not found", NULL);
    const wsg_route_conf_t *r = wsg_config_route(e->edge->cfg, path);
    if (!r)
        return refuse(e, wsi, 404, "not found", path);
    int rc = admit_checks(e, wsi, r, path, ip);
    if (rc)
        return rc;
    c = conn_new(e, r, ip);
    c->counted = 1; /* admit_checks took its slot */
    char *token = find_token(wsi, c);
    rc = check_jwt(e, c, token, why, sizeof why);
    free(token);
    if (rc != 0 || edge_user_reserve(e, c) != 0) {
        int st = rc ? 401 : 409;
        edge_admit_release(e, c->remote);
        edge_conn_free(c);
        return refuse(e, wsi, st, rc ? why : "user already connected", path);
    }
    json_t *extra =
        json_pack("{s:o,s:o}", "headers", request_headers(r, wsi), "query", request_query(wsi));
    char *ex = json_dumps(extra, JSON_COMPACT);
    json_decref(extra);
    size_t exl = strlen(ex);
    c->connect_extra = strndup(ex + 1, exl - 2); /* members without the braces */
    free(ex);
    conn_register(e, c);
    if (!*r->auth.authorizer && !c->n_offered && !lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL) &&
        !edge_claim_needed(e, c)) {
        e->upgrading = c;
        e->upgrading_wsi = wsi;
        return 0; /* upgrade now */
    }
    return edge_hs_detach(e, c, wsi);
}

int edge_hs_detach(edge_loop_t *e, edge_conn_t *c, struct lws *wsi)
{
    const wsg_route_conf_t *r = c->route;
    char *body = *r->auth.authorizer ? authz_body(c) : NULL;
    if (build_resume(c, wsi) != 0 || detach_socket(e, c, wsi) != 0) {
        free(body);
        conn_unregister(e, c);
        edge_conn_free(c);
        return refuse(e, wsi, 503, "cannot hold the handshake", r->path);
    }
    if (!body) { /* subprotocols or a user claim only: go on at the next queue drain */
        edge_q_t *item = edge_q_new(EDGE_Q_AUTHZ, 0);
        memcpy(item->u.authz.conn_id, c->id, sizeof c->id);
        item->u.authz.status = -1;
        edge_post(e, item);
        return -1; /* lws closes only the placeholder socket */
    }
    edge_authz_req_t req = {.url = r->auth.authorizer,
                            .key = r->webhook_key,
                            .key_len = r->webhook_key_len,
                            .body = body,
                            .timeout_ms = r->auth.authorizer_timeout_ms};
    memcpy(req.conn_id, c->id, sizeof c->id);
    if (edge_authz_start(e->edge->authz, &req) != 0) {
        edge_hs_refuse(e, c, 503, "authorizer unavailable");
        return -1;
    }
    return -1;
}

static int add_channels(edge_conn_t *c, json_t *arr)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v))
            return WSG_EPROTO;
        char **ch = realloc(c->channels, (c->n_channels + 1) * sizeof *ch);
        if (!ch)
            abort();
        c->channels = ch;
        c->channels[c->n_channels++] = strdup(json_string_value(v));
    }
    return 0;
}

/* Applies a 2xx authorizer answer. Returns 0 (admit), 403 (allow false), 503 (garbage). */
static int apply_authz_answer(edge_conn_t *c, const char *body)
{
    json_error_t jerr;
    json_t *o = body ? json_loads(body, 0, &jerr) : NULL;
    int st = 503;
    if (!json_is_object(o))
        goto out;
    json_t *allow = json_object_get(o, "allow");
    if (!json_is_boolean(allow)) {
        st = 503;
        goto out;
    }
    if (!json_is_true(allow)) {
        st = 403;
        goto out;
    }
    json_t *user = json_object_get(o, "user"), *ctx = json_object_get(o, "context");
    json_t *chans = json_object_get(o, "channels"), *sp = json_object_get(o, "subprotocol");
    if ((user && !json_is_string(user) && !json_is_null(user)) || (ctx && !json_is_object(ctx)) ||
        (chans && !json_is_array(chans)) || (sp && !json_is_string(sp) && !json_is_null(sp)))
        goto out;
    if (json_is_string(user)) {
        free(c->user);
        c->user = strdup(json_string_value(user));
    }
    if (ctx) {
        char *txt = json_dumps(ctx, JSON_COMPACT);
        edge_conn_set_context(c, txt);
        free(txt);
    }
    if (chans && add_channels(c, chans) != 0)
        goto out;
    choose_subprotocol(c, json_is_string(sp) ? json_string_value(sp) : NULL);
    st = 0;
out:
    json_decref(o);
    return st;
}

/* Gives an admitted detached socket back to lws with the rebuilt request. */
static void hs_admit(edge_loop_t *e, edge_conn_t *c)
{
    c->admitted = 1;
    int fd = c->hs_fd;
    if (!lws_adopt_socket_vhost_readbuf(e->vh, fd, c->hs_req, strlen(c->hs_req))) {
        /* lws closed fd */
        c->hs_fd = -1;
        char k[16];
        snprintf(k, sizeof k, "%d", fd);
        if (edge_map_get(&e->by_fd, k) == c)
            edge_map_del(&e->by_fd, k);
        WSG_LOG(WSG_LOG_WARN, "handshake lost on re-adoption", "conn=%s route=%s", c->id,
                c->route->path);
        conn_unregister(e, c);
        edge_conn_free(c);
    }
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
    if (st == -1) {
        choose_subprotocol(c, NULL);
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
        edge_hs_refuse(e, c, st, st == 403 ? "refused by the authorizer" : "authorizer failed");
        return;
    }
    if (edge_user_reserve(e, c) != 0) {
        edge_hs_refuse(e, c, 409, "user already connected");
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
    if (!c || e->upgrading_wsi != wsi || !c->subprotocol)
        return 0;
    unsigned char *p = (unsigned char *)a->p, *end = p + a->max_len;
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_PROTOCOL, (unsigned char *)c->subprotocol,
                                     (int)strlen(c->subprotocol), &p, end))
        return -1;
    a->max_len -= (int)(p - (unsigned char *)a->p);
    a->p = (char *)p;
    return 0;
}
