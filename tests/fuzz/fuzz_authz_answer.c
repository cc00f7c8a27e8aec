/* SPDX-License-Identifier: MIT */
/*
 * fuzz_authz_answer.c — libFuzzer target for an authorizer's 2xx answer
 * (ws-edge/edge_authz.c edge_authz_answer_parse), read during every held
 * handshake of a route with auth.authorizer. The whole input is the body
 * (cut at its first NUL, as the edge reads it). Checks: garbage and
 * "allow": false keep nothing; an admitted answer's context is a JSON
 * object and every channel a string.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws-edge/edge_authz_answer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *body = malloc(size + 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    edge_authz_answer_t a;
    int rc = edge_authz_answer_parse(body, &a);
    if (rc != 0 || !a.allow) {
        if (a.allow || a.user || a.context_json || a.channels || a.n_channels || a.subprotocol)
            abort(); /* a refusal or garbage keeps nothing */
    } else {
        json_t *ctx = a.context_json ? json_loads(a.context_json, 0, NULL) : NULL;
        if (a.context_json && !json_is_object(ctx))
            abort();
        json_decref(ctx);
        for (size_t i = 0; i < a.n_channels; i++)
            if (!a.channels[i])
                abort();
    }
    edge_authz_answer_clear(&a);
    free(body);
    return 0;
}
