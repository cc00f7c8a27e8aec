/* SPDX-License-Identifier: MIT */
/*
 * api_users.c — /v1/users/{user}: send to or disconnect every connection of
 * a user. The user's connections are listed from the store (page by page);
 * each gets a fire-and-forget command, so the answer (202 / 204) means
 * "handed to the edges", not "delivered".
 */
#include <stdlib.h>

#include "common/err.h"
#include "control-api/api_int.h"

int api_close_args(api_req_t *r, int *code, const char **reason);

/* Runs cmd (conn_id filled per connection) for every connection of user.
 * Returns 0 or a WSG_E* code; *n counts connections. */
static int for_user(api_req_t *r, const char *user, bus_cmd_t *cmd, size_t *n)
{
    store_t *st = api_store_get(r->a);
    char *cursor = NULL;
    int rc = 0;
    *n = 0;
    do {
        store_conn_query_t q = {.user = user, .cursor = cursor, .limit = 1000};
        store_conn_list_t l = {0};
        rc = store_conn_list(st, &q, &l);
        free(cursor);
        cursor = NULL;
        if (rc != 0)
            break;
        for (size_t i = 0; i < l.n; i++) {
            cmd->conn_id = l.items[i].id;
            const char *edge = r->a->cluster ? l.items[i].edge_id : NULL;
            if (bus_cmd_request(r->a->bus, edge, cmd, NULL, NULL) == 0)
                (*n)++;
        }
        cursor = l.next_cursor;
        l.next_cursor = NULL;
        store_conn_list_free(&l);
    } while (cursor);
    api_store_put(r->a, st);
    return rc;
}

int api_h_user_send(api_req_t *r)
{
    api_msg_t m;
    char err[200];
    int st = api_parse_message(r->ctype, r->body, r->body_len, &m, err, sizeof err);
    if (st != 0)
        return api_problem(r, st, "%s", err);
    bus_cmd_t cmd = {.op = BUS_CMD_SEND, .data = m.data, .len = m.len, .binary = m.binary};
    size_t n;
    int rc = for_user(r, r->segs[2], &cmd, &n);
    free(m.owned);
    if (rc != 0)
        return api_from_err(r, rc, "user send");
    return api_json(r, 202, json_pack("{s:I}", "connections", (json_int_t)n));
}

int api_h_user_delete(api_req_t *r)
{
    int code;
    const char *reason;
    if (api_close_args(r, &code, &reason) != 0)
        return API_DONE;
    bus_cmd_t cmd = {
        .op = BUS_CMD_CLOSE, .code = code, .reason = reason ? reason : "", .initiator = "api"};
    size_t n;
    int rc = for_user(r, r->segs[2], &cmd, &n);
    if (rc != 0)
        return api_from_err(r, rc, "user disconnect");
    return api_empty(r, 204);
}
