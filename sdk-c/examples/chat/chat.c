/* SPDX-License-Identifier: MIT */
/*
 * chat.c — a chat backend for wsgate on libmicrohttpd and libwsgate.
 *
 * Serves one page (index.html) and a token endpoint to browsers, and
 * receives the gateway's webhooks on POST /events:
 *   {"action":"join","room":"x"}  leaves the current room, joins room x
 *   {"action":"say","text":"hi"}  publishes to the room (channel "room:x")
 *   /who                          lists the room's users (control API)
 *   /kick USER                    disconnects USER's connections (4001)
 * Messages to the page are JSON: {"type":"chat"|"joined"|"who"|"info",...}.
 *
 * No state lives here: the room of a connection is its "room:" channel in
 * the gateway, read back through the control API, so any number of these
 * processes can run behind the gateway.
 *
 * Threads: libmicrohttpd runs handlers on a pool of threads; they share
 * one wsgate_client (safe to share) and read-only globals.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <wsgate/wsgate.h>

static struct {
    const char *listen_port, *api, *api_secret, *whsec, *client_secret, *edge, *page_path;
    char *page;
    wsgate_client *client;
} g;

typedef struct {
    char *body;
    size_t len;
} upload_t;

static enum MHD_Result reply(struct MHD_Connection *mc, unsigned status, const char *ctype,
                             const char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(mc, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* A JSON message for the page, as text (caller frees). */
static char *page_msg(const char *type, const char *k1, json_t *v1)
{
    json_t *o = json_pack("{s:s,s:o}", "type", type, k1, v1);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

/* The "room:" channel the connection is in, or NULL (caller frees). */
static char *current_room(const char *conn_id)
{
    wsgate_connection *conn = NULL;
    char *room = NULL;
    if (wsgate_connection_get(g.client, conn_id, &conn) != WSGATE_OK)
        return NULL;
    for (size_t i = 0; i < conn->n_channels && !room; i++)
        if (strncmp(conn->channels[i], "room:", 5) == 0)
            room = strdup(conn->channels[i]);
    wsgate_connection_free(conn);
    return room;
}

static void join(wsgate_response *r, const wsgate_event *e, const char *room)
{
    char *old = current_room(e->connection_id), ch[300];
    snprintf(ch, sizeof ch, "room:%s", room);
    if (old && strcmp(old, ch) != 0)
        wsgate_response_unsubscribe(r, old);
    free(old);
    if (wsgate_response_subscribe(r, ch) != WSGATE_OK) {
        wsgate_response_send_text(r, "{\"type\":\"info\",\"text\":\"bad room name\"}");
        return;
    }
    char *m = page_msg("joined", "room", json_string(room));
    if (m)
        wsgate_response_send_text(r, m);
    free(m);
}

static void say(wsgate_response *r, const wsgate_event *e, const char *text)
{
    char *room = current_room(e->connection_id);
    if (!room) {
        wsgate_response_send_text(r, "{\"type\":\"info\",\"text\":\"join a room first\"}");
        return;
    }
    json_t *o = json_pack("{s:s,s:s?,s:s}", "type", "chat", "from", e->user, "text", text);
    char *m = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (m && wsgate_publish(g.client, room, WSGATE_TEXT, m, strlen(m), NULL) != WSGATE_OK)
        wsgate_response_send_text(r, "{\"type\":\"info\",\"text\":\"publish failed\"}");
    free(m);
    json_decref(o);
    free(room);
}

static void who(wsgate_response *r, const wsgate_event *e)
{
    char *room = current_room(e->connection_id);
    json_t *users = json_array();
    wsgate_list_query q = {.channel = room, .limit = 100};
    wsgate_conn_iter *it = NULL;
    const wsgate_connection *c;
    if (room && wsgate_conn_iter_new(&it, g.client, &q) == WSGATE_OK)
        while (wsgate_conn_iter_next(it, &c) == WSGATE_OK)
            json_array_append_new(users, json_string(c->user ? c->user : "(anonymous)"));
    wsgate_conn_iter_free(it);
    free(room);
    char *m = page_msg("who", "users", users);
    if (m)
        wsgate_response_send_text(r, m);
    free(m);
}

static void kick(wsgate_response *r, const wsgate_event *e, const char *user)
{
    char reason[120];
    snprintf(reason, sizeof reason, "kicked by %s", e->user ? e->user : "someone");
    wsgate_status st = wsgate_user_disconnect(g.client, user, 4001, reason);
    char *m = page_msg("info", "text", json_string(st == WSGATE_OK ? "kicked" : "kick failed"));
    if (m)
        wsgate_response_send_text(r, m);
    free(m);
}

static void on_message(wsgate_response *r, const wsgate_event *e)
{
    const char *text = (const char *)e->data;
    if (e->binary)
        return;
    if (strcmp(text, "/who") == 0)
        return who(r, e);
    if (strncmp(text, "/kick ", 6) == 0)
        return kick(r, e, text + 6);
    json_t *j = json_loads(text, 0, NULL);
    const char *action = json_string_value(json_object_get(j, "action"));
    if (action && strcmp(action, "join") == 0 && json_is_string(json_object_get(j, "room")))
        join(r, e, json_string_value(json_object_get(j, "room")));
    else if (action && strcmp(action, "say") == 0 && json_is_string(json_object_get(j, "text")))
        say(r, e, json_string_value(json_object_get(j, "text")));
    else
        say(r, e, text); /* plain text is said in the room */
    json_decref(j);
}

/* POST /events: verify, parse, answer with actions. */
static enum MHD_Result on_events(struct MHD_Connection *mc, const upload_t *up)
{
    const char *id = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "webhook-id");
    const char *ts = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "webhook-timestamp");
    const char *sig = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "webhook-signature");
    if (wsgate_webhook_verify(g.whsec, id, ts, sig, up->body, up->len) != WSGATE_OK)
        return reply(mc, 401, "text/plain", "bad signature\n", 14);
    wsgate_events *evs = NULL;
    wsgate_response *r = NULL;
    char *body = NULL;
    size_t len = 0;
    if (wsgate_events_parse(&evs, up->body, up->len) != WSGATE_OK)
        return reply(mc, 400, "text/plain", "bad event\n", 10);
    if (wsgate_response_new(&r) == WSGATE_OK) {
        for (size_t i = 0; i < wsgate_events_count(evs); i++) {
            const wsgate_event *e = wsgate_events_get(evs, i);
            if (e->type == WSGATE_EVENT_MESSAGE)
                on_message(r, e);
            else if (e->type == WSGATE_EVENT_CONNECT)
                wsgate_response_send_text(r, "{\"type\":\"info\",\"text\":\"welcome\"}");
        }
        wsgate_response_body(r, &body, &len);
    }
    enum MHD_Result ret = body ? reply(mc, 200, "application/json", body, len)
                               : reply(mc, 500, "text/plain", "out of memory\n", 14);
    wsgate_free(body);
    wsgate_response_free(r);
    wsgate_events_free(evs);
    return ret;
}

/* GET /token?user=NAME: a one-hour client token for the gateway's route. */
static enum MHD_Result on_token(struct MHD_Connection *mc)
{
    const char *user = MHD_lookup_connection_value(mc, MHD_GET_ARGUMENT_KIND, "user");
    if (!user || !*user || strlen(user) > 64)
        return reply(mc, 400, "text/plain", "user=NAME required\n", 19);
    wsgate_token_params p = {
        .alg = WSGATE_HS256, .key = g.client_secret, .ttl_s = 3600, .sub = user};
    char *tok = NULL;
    if (wsgate_token_mint(&p, &tok) != WSGATE_OK)
        return reply(mc, 500, "text/plain", "cannot mint\n", 12);
    json_t *o = json_pack("{s:s,s:s}", "token", tok, "ws", g.edge);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    enum MHD_Result ret = s ? reply(mc, 200, "application/json", s, strlen(s))
                            : reply(mc, 500, "text/plain", "out of memory\n", 14);
    free(s);
    json_decref(o);
    wsgate_free(tok);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    if (strcmp(method, "POST") == 0 && strcmp(url, "/events") == 0) {
        upload_t *up = *con_cls;
        if (!up) {
            *con_cls = calloc(1, sizeof *up);
            return *con_cls ? MHD_YES : MHD_NO;
        }
        if (*data_size) {
            char *nb = up->len + *data_size <= (1u << 20)
                           ? realloc(up->body, up->len + *data_size + 1)
                           : NULL;
            if (!nb)
                return MHD_NO;
            memcpy(nb + up->len, data, *data_size);
            up->body = nb;
            up->len += *data_size;
            up->body[up->len] = 0;
            *data_size = 0;
            return MHD_YES;
        }
        return on_events(mc, up);
    }
    if (strcmp(method, "GET") == 0 && strcmp(url, "/token") == 0)
        return on_token(mc);
    if (strcmp(method, "GET") == 0 && strcmp(url, "/") == 0)
        return reply(mc, 200, "text/html; charset=utf-8", g.page, strlen(g.page));
    return reply(mc, 404, "text/plain", "not found\n", 10);
}

static void on_done(void *cls, struct MHD_Connection *mc, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    upload_t *up = *con_cls;
    if (up)
        free(up->body);
    free(up);
    *con_cls = NULL;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = f ? calloc(1, 1 << 20) : NULL;
    if (buf && fread(buf, 1, (1 << 20) - 1, f) == 0) {
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

int main(void)
{
    g.listen_port = env_or("CHAT_PORT", "9000");
    g.api = env_or("CHAT_API", "http://127.0.0.1:8081");
    g.api_secret = env_or("CHAT_API_SECRET", "change-me-api-secret-at-least-32-bytes");
    g.whsec = env_or("CHAT_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    g.client_secret = env_or("CHAT_CLIENT_SECRET", "change-me-client-secret-at-least-32-bytes");
    g.edge = env_or("CHAT_EDGE", "ws://127.0.0.1:8080/chat");
    g.page_path = env_or("CHAT_PAGE", CHAT_PAGE_DEFAULT);
    if (!(g.page = read_file(g.page_path))) {
        fprintf(stderr, "chat: cannot read the page %s (set CHAT_PAGE)\n", g.page_path);
        return 1;
    }
    wsgate_options *o = NULL;
    wsgate_status st = wsgate_options_new(&o);
    if (st == WSGATE_OK)
        st = wsgate_options_set_url(o, g.api);
    if (st == WSGATE_OK)
        st = wsgate_options_set_signing_key(o, WSGATE_HS256, g.api_secret, 0,
                                            "send publish subscribe disconnect read");
    if (st == WSGATE_OK)
        st = wsgate_client_new(&g.client, o);
    wsgate_options_free(o);
    if (st != WSGATE_OK) {
        fprintf(stderr, "chat: %s: %s\n", wsgate_strerror(st),
                wsgate_last_problem()->detail ? wsgate_last_problem()->detail : "");
        return 1;
    }
    sigset_t set; /* blocked before MHD starts its threads: only sigwait() takes them */
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(g.listen_port)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)atoi(g.listen_port), NULL, NULL,
        on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
        on_done, NULL, MHD_OPTION_THREAD_POOL_SIZE, 4, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "chat: cannot listen on port %s\n", g.listen_port);
        return 1;
    }
    fprintf(stderr, "chat: http://127.0.0.1:%s/ (gateway %s, API %s)\n", g.listen_port, g.edge,
            g.api);
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    wsgate_client_free(g.client);
    free(g.page);
    return 0;
}
