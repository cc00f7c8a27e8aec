/* SPDX-License-Identifier: MIT */
/*
 * disp_proto_wsgate.c — wsgate's own protocol (docs/contract.md §3): the stored JSON
 * envelope posted as-is (no copy), several as {"events":[...]}, and a 2xx
 * answer's {"actions":[...]}. A malformed answer is logged and the events
 * acknowledged: the backend took them. Also disp_proto_for(), the table of
 * every protocol this build has.
 */
#include <stddef.h>

#include "common/err.h"
#include "dispatcher/disp_proto.h"

static int wsgate_body(const wsg_route_conf_t *r, const bus_event_t *const *evs, size_t n,
                       const char **body, size_t *len, char **owned, char *err, size_t errlen)
{
    (void)r;
    (void)err;
    (void)errlen;
    *owned = NULL;
    if (n == 1) {
        *body = evs[0]->body ? evs[0]->body : "";
        *len = evs[0]->body_len;
        return 0;
    }
    const char *bodies[n];
    size_t lens[n];
    for (size_t i = 0; i < n; i++) {
        bodies[i] = evs[i]->body ? evs[i]->body : "";
        lens[i] = evs[i]->body_len;
    }
    int rc = disp_batch_body(bodies, lens, n, owned, len);
    *body = *owned;
    return rc;
}

static int wsgate_parse(const wsg_route_conf_t *r, const char *body, size_t len, bool opening,
                        disp_answer_t *out, char *err, size_t errlen)
{
    (void)r;
    (void)opening;
    out->ignored = 0;
    return disp_actions_parse(body, len, &out->acts, &out->n, &out->skipped, err, errlen);
}

const disp_proto_t disp_proto_wsgate = {
    .name = "wsgate",
    .content_type = "application/json",
    .strict_answer = false,
    .body = wsgate_body,
    .headers = NULL,
    .parse = wsgate_parse,
};

const disp_proto_t *disp_proto_for(wsg_protocol_t p)
{
    switch (p) {
    case WSG_PROTO_WSGATE:
        return &disp_proto_wsgate;
    case WSG_PROTO_GRIP:
        return &disp_proto_grip;
    case WSG_PROTO_AWS:
        return &disp_proto_aws;
    case WSG_PROTO_WSAAS:
        return &disp_proto_wsaas;
    case WSG_PROTO_WSAPI:
        return &disp_proto_wsapi;
    }
    return NULL;
}
