/* SPDX-License-Identifier: MIT */
/*
 * edge_authz_answer.h — reading an authorizer's 2xx answer (docs/contract.md §2):
 *   {"allow": true, "user": "u1", "context": {...}, "channels": ["a"],
 *    "subprotocol": "v2", "expires_at": 1767225600}
 * Pure (edge_authz.c): no lws, no connection, any thread; the handshake
 * applies the result to its connection (edge_handshake.c), the fuzz target
 * feeds it.
 */
#ifndef WSG_EDGE_AUTHZ_ANSWER_H
#define WSG_EDGE_AUTHZ_ANSWER_H

#include <stddef.h>

typedef struct {
    int allow;          /* 1: admit; 0: "allow": false (nothing else is read) */
    char *user;         /* NULL: none named (the token's user stays) */
    char *context_json; /* compact JSON object; NULL: no "context" */
    char **channels;    /* n_channels strings */
    size_t n_channels;
    char *subprotocol;    /* NULL: none named */
    long long expires_at; /* Unix seconds the admission ends (close 1008); 0: none given */
} edge_authz_answer_t;

/* Parses body (NUL-terminated; NULL allowed) into out, whose fields are new
 * (free with edge_authz_answer_clear). Returns 0 (out->allow says which), or
 * WSG_EPROTO for garbage: not a JSON object, "allow" not a boolean, or with
 * allow true a field of the wrong type (user or subprotocol not a string or
 * null, context not an object, channels not an array of strings, expires_at
 * not a positive number of seconds or null); out is
 * then empty. Aborts on out-of-memory. */
int edge_authz_answer_parse(const char *body, edge_authz_answer_t *out);
void edge_authz_answer_clear(edge_authz_answer_t *a);

#endif
