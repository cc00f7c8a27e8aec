/* SPDX-License-Identifier: MIT */
/*
 * disp_internal.h — the dispatcher's pure building blocks, shared by its
 * source files and exposed to tests/unit/test_dispatch_*.c: backoff and
 * Retry-After, routing rules, the routing service's answer, batch bodies and
 * ids, response-action parsing. Nothing here does I/O or logs.
 *
 * Threads: every function is reentrant; a compiled disp_rules_t is read-only
 * after disp_rules_new() and may be matched from any thread.
 * Ownership: inputs are borrowed; outputs documented per function.
 */
#ifndef WSG_DISP_INTERNAL_H
#define WSG_DISP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "common/config.h"
#include "common/jwt.h"

/* Retry-After values above this are capped (a backend cannot park an event
 * for a day). */
#define DISP_RETRY_AFTER_CAP_MS 600000u

/* ---- disp_retry.c --------------------------------------------------------- */

/* Delay before retry number `failures` (1 = after the first failed attempt):
 * exponential growth from initial_ms, capped at max_ms, with full jitter
 * inside [initial_ms, cap]; rnd is any uniformly random 64-bit value. */
uint64_t disp_backoff_ms(uint32_t failures, uint64_t initial_ms, uint64_t max_ms, uint64_t rnd);

/* Parses a Retry-After header value: delta-seconds or an HTTP date (RFC 9110
 * 10.2.3), relative to now_s; a date in the past gives 0. The result is capped
 * at cap_ms. Returns 0 or WSG_EINVAL (empty, garbage, negative). */
int disp_retry_after_ms(const char *value, int64_t now_s, uint64_t cap_ms, uint64_t *out_ms);

/* What an HTTP outcome means for the event. */
typedef enum {
    DISP_OUT_ACK = 0,   /* 2xx */
    DISP_OUT_RETRY = 1, /* 5xx, 408, 429, transport error or timeout */
    DISP_OUT_DEAD = 2,  /* any other status */
} disp_outcome_t;

/* status 0 = no HTTP answer (transport error, timeout). */
disp_outcome_t disp_classify(long status);

/* ---- disp_route.c ---------------------------------------------------------- */

typedef struct disp_rules disp_rules_t;

/* Compiles the route's rules (PCRE2, JIT when available). *out is NULL when
 * the route has no rules. Returns 0, WSG_ECONFIG (bad regex; detail in err),
 * WSG_ENOMEM. */
int disp_rules_new(disp_rules_t **out, const wsg_route_conf_t *r, char *err, size_t errlen);
void disp_rules_free(disp_rules_t *rs);

/* The backend of the first rule matching a message payload, or NULL (use the
 * route's default). JSON rules apply to text payloads that are a JSON object
 * whose top-level field equals the rule's string; regex rules to the payload
 * bytes (text, or decoded binary). Borrowed from the config. */
const char *disp_rules_match(const disp_rules_t *rs, const char *payload, size_t len, bool binary);

/* Extracts the payload of a message envelope: *payload is a new buffer
 * (caller frees; decoded bytes for binary), NUL-terminated. Returns 0,
 * WSG_EPROTO (not a message envelope), WSG_ENOMEM. */
int disp_event_payload(const char *body, size_t len, char **payload, size_t *plen, bool *binary);

/* One extra request header chosen by the routing service. */
typedef struct {
    char *name;
    char *value;
} disp_header_t;

/* Parses a routing-service answer {"backend": url, "headers": {..}}.
 * *backend is new (NULL when the answer names none: the route's default);
 * headers are new (free with disp_headers_free). Header names must be tokens,
 * values without CR/LF/NUL, and names the dispatcher sets itself (webhook-*,
 * wsgate-*, content-type, content-length, host, user-agent, expect,
 * transfer-encoding, connection) are refused. Returns 0, WSG_EPROTO (bad
 * answer; detail in err), WSG_ENOMEM. */
int disp_route_answer_parse(const char *body, size_t len, char **backend, disp_header_t **headers,
                            size_t *n_headers, char *err, size_t errlen);
void disp_headers_free(disp_header_t *h, size_t n);

/* ---- disp_actions.c / batches ------------------------------------------------ */

/* {"events":[b0,b1,...]} from stored envelope bodies; *out is new (caller
 * frees), NUL-terminated. Returns 0, WSG_EINVAL (n == 0), WSG_ENOMEM. */
int disp_batch_body(const char *const *bodies, const size_t *lens, size_t n, char **out,
                    size_t *out_len);

/* A batch's stable webhook-id from its first and last event ids:
 * "bat_" + hex of the first 16 bytes of SHA-256(first "\n" last). */
#define DISP_BATCH_ID_LEN 37
void disp_batch_id(const char *first, const char *last, char out[DISP_BATCH_ID_LEN + 1]);

/* One response action, ready for bus_cmd_request(). */
typedef struct {
    bus_cmd_op_t op;
    unsigned char *data; /* SEND */
    size_t len;
    int binary;
    int code; /* CLOSE: 1000 or 4000-4999 */
    char *reason;
    char *channel; /* SUBSCRIBE/UNSUBSCRIBE */
} disp_action_t;

/* Parses a 2xx response body. An empty (or all-whitespace) body, or an
 * object without "actions", gives no actions. Malformed entries are skipped
 * and counted in *skipped. Returns 0, WSG_EPROTO (not JSON, or "actions" not
 * an array; detail in err; no actions), WSG_ENOMEM. *out is new (free with
 * disp_actions_free). */
int disp_actions_parse(const char *body, size_t len, disp_action_t **out, size_t *n,
                       size_t *skipped, char *err, size_t errlen);
void disp_actions_free(disp_action_t *a, size_t n);

/* ---- disp_actions.c: frames a backend stream sends (docs/webhooks.md) ------ */

/* Most event ids one {"ack":[...]} frame may carry. */
#define DISP_FRAME_MAX_ACKS 1024

typedef enum {
    DISP_FRAME_ACK = 1,     /* ids[0..n_ids) */
    DISP_FRAME_ACTION = 2,  /* act, for connection conn_id */
    DISP_FRAME_PUBLISH = 3, /* act.channel, act.data/len/binary; conn_id: exclude or NULL */
    DISP_FRAME_AUTH = 4,    /* token: a control-API token for the actions that follow */
} disp_frame_kind_t;

/* Longest token an {"auth":...} frame may carry. */
#define DISP_FRAME_MAX_TOKEN 16384

typedef struct {
    disp_frame_kind_t kind;
    char **ids;
    size_t n_ids;
    char *conn_id;
    char *token;
    disp_action_t act;
} disp_frame_t;

/* Parses one text frame from a backend stream: {"auth":"<token>"},
 * {"ack":"id"}, {"ack":[ids]},
 * {"action":"send"|"close"|"subscribe"|"unsubscribe","connection_id":...}
 * with a response action's fields, or {"action":"publish","channel":...,
 * "data"|"data_base64":..., "exclude"?}. Returns 0 (out filled; free with
 * disp_frame_clear), WSG_EINVAL (detail in err; out empty), WSG_ENOMEM. */
int disp_frame_parse(const char *body, size_t len, disp_frame_t *out, char *err, size_t errlen);
/* Parses one frame a ws-api-gateway backend sends (the seed's shapes):
 * {"action":"send","user":...,"data"|"data_base64":...} or
 * {"action":"close","user":...,"code"?,"reason"?}. out->conn_id holds the
 * user (the caller resolves it to a connection). Returns as
 * disp_frame_parse. */
int disp_frame_parse_user(const char *body, size_t len, disp_frame_t *out, char *err,
                          size_t errlen);
void disp_frame_clear(disp_frame_t *f);

/* ---- disp_sauth.c: authorization of a stream's actions (docs/webhooks.md) -- */

/* What the backend presented on one stream connection. */
typedef struct {
    char *token; /* the last token that verified; NULL: none yet */
    wsg_claims_t claims;
} disp_sauth_t;

/* An {"auth":token} frame, at now_s: token verified against conf (the
 * control API's api.auth.jwt) replaces what a holds. Returns 0, WSG_EAUTH
 * (reason in err; a unchanged), WSG_ENOMEM. */
int disp_sauth_set(disp_sauth_t *a, const wsg_jwt_conf_t *conf, const char *token, int64_t now_s,
                   char *err, size_t errlen);
/* Whether action frame fr may be applied under a at now_s, with the scope
 * and channel rules of the control API's matching endpoint: 0, 401 (no
 * token yet, or it no longer verifies once its exp passed) or 403 (scope or
 * channel), the reason in err. */
int disp_sauth_check(disp_sauth_t *a, const wsg_jwt_conf_t *conf, const disp_frame_t *fr,
                     int64_t now_s, char *err, size_t errlen);
void disp_sauth_clear(disp_sauth_t *a);

#endif
