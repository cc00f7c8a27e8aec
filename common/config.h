/* SPDX-License-Identifier: MIT */
/*
 * config.h — wsgate's configuration (docs/contract.md §6), loaded from one YAML file
 * (JSON is YAML too) with WSGATE_* environment overrides and *_FILE secrets.
 *
 * Loading is strict: an unknown key, a value of the wrong type or out of
 * bounds, a missing required key, or a bad duration stops start-up with
 * "file:line: key: why" in the error buffer.
 *
 * Durations are stored in milliseconds ("25s", "1500ms", "2m", "1h", or a
 * bare integer meaning seconds; 0 = off where the key allows it).
 *
 * Ownership: wsg_config_load() returns a new object the caller frees with
 * wsg_config_free(). It is immutable after load; any thread may read it.
 */
#ifndef WSG_CONFIG_H
#define WSG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    WSG_ALG_NONE = 0,
    WSG_ALG_HS256,
    WSG_ALG_HS384,
    WSG_ALG_HS512,
    WSG_ALG_RS256,
    WSG_ALG_RS384,
    WSG_ALG_RS512,
    WSG_ALG_ES256,
    WSG_ALG_ES384,
    WSG_ALG_ES512,
} wsg_alg_t;

/* JWT verification settings (route auth and control-API auth). */
typedef struct {
    bool enabled;  /* a jwt: block was given */
    wsg_alg_t alg; /* pinned algorithm; tokens with another alg are refused */
    char *secret;  /* HS*: shared secret (>= 32 bytes) */
    size_t secret_len;
    char *public_key_file; /* RS or ES: path of a PEM public key */
    char *public_key;      /* RS or ES: PEM text, loaded from public_key_file */
    size_t public_key_len;
    char *issuer;          /* "" = not checked */
    char *audience;        /* "" = not checked */
    char **context_claims; /* claim names copied into the connection context */
    size_t n_context_claims;
    uint32_t leeway_s; /* clock skew allowed for exp/nbf (default 5) */
} wsg_jwt_conf_t;

typedef enum {
    WSG_ONE_CONN_OFF = 0,
    WSG_ONE_CONN_REPLACE,
    WSG_ONE_CONN_REJECT,
} wsg_one_conn_t;

/* What the route's backend speaks (issue 21's compatibility modes). */
typedef enum {
    WSG_PROTO_WSGATE = 0, /* wsgate's JSON envelope and response actions */
    WSG_PROTO_AWS,        /* AWS API Gateway WebSocket APIs (Lambda-proxy events, @connections) */
    WSG_PROTO_GRIP,       /* Pushpin's WebSocket-over-HTTP with GRIP control messages */
    WSG_PROTO_WSAAS,      /* "Web Socket as a Service": POST/PUT/DELETE to the backend */
    WSG_PROTO_WSAPI,      /* "WS API Gateway": a backend stream addressed by user, no acks */
} wsg_protocol_t;

/* 1 when a route of protocol p sends one event per request (or stream
 * frame), never a batch: the original has no batch shape (aws, wsaas,
 * ws-api-gateway). The config check refuses delivery.batch_max above 1 for
 * those; the dispatcher batches only the others. Any thread. */
int wsg_protocol_one_event(wsg_protocol_t p);
/* The config's name of protocol p ("ws-api-gateway"). */
const char *wsg_protocol_name(wsg_protocol_t p);

/* One routing rule: exactly one of json_field+equals or regex is set. */
typedef struct {
    char *json_field; /* top-level field of a JSON text message */
    char *equals;     /* string value it must equal */
    char *regex;      /* PCRE2 pattern matched against the payload */
    char *backend;
    int line; /* line in the config file, for error messages */
} wsg_rule_conf_t;

/* One access key of an aws route's @connections API (AWS Signature V4). */
typedef struct {
    char *id;     /* access key id (the Credential's first part) */
    char *secret; /* secret access key; never printed */
    size_t secret_len;
    int line;
} wsg_aws_key_conf_t;

/* A route's `aws:` block (protocol aws, docs/compat.md). */
typedef struct {
    bool present;
    char *stage;                      /* requestContext.stage and the path prefix; "production" */
    char *region;                     /* SigV4 credential scope region; "us-east-1" */
    char *api_id;                     /* requestContext.apiId; "wsgate" */
    char *domain_name;                /* requestContext.domainName; "" = api.listen */
    char *route_selection_expression; /* "$request.body.<field>"; "" = always $default */
    bool route_response;              /* a MESSAGE's answer body goes back to the client */
    wsg_aws_key_conf_t *access_keys;
    size_t n_access_keys;
    int line;
} wsg_aws_conf_t;

typedef struct {
    uint32_t max_message_bytes;    /* default 131072; close 1009 above */
    uint32_t rate_mps;             /* messages per second; 0 = unlimited; default 100 */
    uint32_t rate_burst;           /* default 200 */
    uint64_t max_outbound_bytes;   /* default 1048576; close 1008 "slow consumer" above */
    uint64_t ping_interval_ms;     /* default 25000 */
    uint64_t idle_timeout_ms;      /* default 60000 */
    uint64_t max_lifetime_ms;      /* default 0 = none */
    uint64_t handshake_timeout_ms; /* default 10000 */
    bool close_on_token_expiry;    /* default true: close 1008 when the token's expiry passes */
} wsg_limits_conf_t;

typedef struct {
    uint64_t timeout_ms;         /* per webhook request; default 10000 */
    uint32_t max_attempts;       /* default 10 */
    uint64_t max_age_ms;         /* default 3600000 (1h); 0 = no age limit */
    uint32_t max_concurrency;    /* requests in flight per backend; default 64 */
    uint32_t batch_max;          /* events per request; default 1 */
    uint64_t backoff_initial_ms; /* default 500 */
    uint64_t backoff_max_ms;     /* default 60000 */
    uint32_t max_response_bytes; /* response body cap; default 1048576 */
} wsg_delivery_conf_t;

typedef struct {
    char *path;                 /* exact request path, starts with '/' */
    char *backend;              /* http(s) URL */
    char *webhook_secret;       /* Standard Webhooks secret ("whsec_" + base64) */
    unsigned char *webhook_key; /* decoded key bytes used for HMAC */
    size_t webhook_key_len;
    struct {
        wsg_jwt_conf_t jwt;
        char *authorizer;               /* URL or "" */
        uint64_t authorizer_timeout_ms; /* default 5000 */
        char **authorizer_headers;      /* request headers forwarded to the authorizer */
        size_t n_authorizer_headers;
        bool required; /* default true */
    } auth;
    char **allowed_origins;
    size_t n_allowed_origins;
    char **subprotocols; /* accepted application subprotocols; none: any offered */
    size_t n_subprotocols;
    wsg_one_conn_t one_connection_per_user;
    int compression;         /* 1 (on): clients that offer permessage-deflate get it (edge_pmd.c) */
    char **allowed_backends; /* URL prefixes; backend is implied */
    size_t n_allowed_backends;
    wsg_rule_conf_t *rules;
    size_t n_rules;
    char *routing_service;   /* URL or "" */
    wsg_protocol_t protocol; /* default wsgate */
    wsg_aws_conf_t aws;      /* protocol aws only */
    char *ws_hostname;       /* wsaas: base URL of this control API in ws_uri, no '/' at its
                              * end; the loader fills in http://<api.listen> when empty */
    wsg_limits_conf_t limits;
    wsg_delivery_conf_t delivery;
    int line;
} wsg_route_conf_t;

/* edge.tls / api.tls: all empty = plain ws:// / http:// */
typedef struct {
    char *cert_file;      /* PEM certificate chain, leaf first */
    char *key_file;       /* PEM private key of the leaf */
    char *client_ca_file; /* api only: PEM CAs a client certificate must chain to; "" = none */
} wsg_tls_conf_t;

typedef struct {
    char *id;                        /* edge id; default "<hostname>-<pid>" */
    char *listen;                    /* host:port; default 127.0.0.1:8080 */
    uint32_t max_connections;        /* per edge; default 100000 */
    uint32_t max_connections_per_ip; /* default 0 = unlimited */
    uint64_t shutdown_grace_ms;      /* default 20000 */
    uint64_t heartbeat_interval_ms;  /* default 5000 */
    uint32_t threads;                /* service threads; default 0 = one per CPU */
    wsg_tls_conf_t tls;              /* wss:// when cert_file is set */
    char **trusted_proxies;          /* CIDRs whose X-Forwarded-For is believed */
    size_t n_trusted_proxies;
} wsg_edge_conf_t;

typedef struct {
    char *listen;                    /* host:port; default 127.0.0.1:8081 */
    wsg_jwt_conf_t jwt;              /* api.auth.jwt */
    uint32_t max_connections;        /* default 10000 */
    uint32_t max_connections_per_ip; /* default 256; 0 = unlimited */
    uint64_t connection_timeout_ms;  /* default 30000 */
    uint64_t request_timeout_ms;     /* default 10000 */
    uint32_t max_body_bytes;         /* default 1048576 */
    uint32_t threads;                /* default 2 */
    wsg_tls_conf_t tls;              /* https:// when cert_file is set */
    char **trusted_proxies;          /* CIDRs whose X-Forwarded-For is believed */
    size_t n_trusted_proxies;
} wsg_api_conf_t;

typedef struct {
    char *file; /* path it was loaded from */
    wsg_edge_conf_t edge;
    wsg_api_conf_t api;
    struct {
        char *listen; /* /healthz /readyz /metrics of edge and dispatch; default 127.0.0.1:9090 */
    } ops;
    char *store; /* sqlite:///path or postgres://... */
    char *nats;  /* "" = in-process bus */
    struct {
        char *level;                 /* error|warn|info|debug; default info */
        char *format;                /* json|text; default json */
        uint64_t report_interval_ms; /* periodic state report; default 60000; 0 = off */
    } log;
    struct {
        uint64_t edge_timeout_ms; /* edge declared lost after this; default 15000 */
        uint64_t ack_wait_ms;     /* JetStream AckWait of event consumers; default 30000 */
        uint64_t lease_ttl_ms;    /* partition lease lifetime; default 3000 */
    } cluster;
    wsg_route_conf_t *routes;
    size_t n_routes;
} wsg_config_t;

/* Loads and validates path, applying WSGATE_* overrides from the environment.
 * On error returns WSG_ECONFIG (or WSG_EIO/WSG_ENOMEM) and writes
 * "file:line: key: reason" into err. */
int wsg_config_load(wsg_config_t **out, const char *path, char *err, size_t errlen);

/* The same, for check-config: does not stop at the first error but writes
 * every one into err, a line each ("FILE:LINE: key: reason", an unknown key
 * with "; did you mean KEY?" when a known one is close), and their number
 * into *n_errs (may be NULL). The checks across keys run once the file and
 * the environment have no error. */
int wsg_config_check_file(wsg_config_t **out, const char *path, char *err, size_t errlen,
                          unsigned *n_errs);

/* Same as wsg_config_load, from YAML text in memory; name is used in error messages. */
int wsg_config_load_string(wsg_config_t **out, const char *yaml, const char *name, char *err,
                           size_t errlen);

void wsg_config_free(wsg_config_t *cfg);

/* The route with exactly this path, or NULL. Borrowed pointer. */
const wsg_route_conf_t *wsg_config_route(const wsg_config_t *cfg, const char *path);

/* true if url may receive the route's events: it is within (wsg_url_within,
 * common/url.h) the route's backend or one of allowed_backends, compared
 * after parsing with libcurl's URL API: same scheme, host, port and
 * userinfo, and a path that stays under the prefix's on a '/' boundary once
 * dot segments are resolved ("http://a:80/events" admits neither
 * "http://a:8080/events" nor "http://a:80/events/../admin" nor
 * "http://a:80/eventsX"). For rules (checked at load) and routing-service
 * answers. */
bool wsg_config_backend_allowed(const wsg_route_conf_t *r, const char *url);

/* Parses "25s", "1500ms", "2m", "1h", "3d" or a bare integer (seconds) into
 * milliseconds. Returns 0 or WSG_EINVAL. */
int wsg_parse_duration_ms(const char *s, uint64_t *out_ms);

/* Parses a byte size: integer with optional KiB/MiB/GiB (or K/M/G) suffix. */
int wsg_parse_bytes(const char *s, uint64_t *out);

/* Algorithm name <-> enum. Returns WSG_ALG_NONE for unknown names. */
wsg_alg_t wsg_alg_from_name(const char *name);
const char *wsg_alg_name(wsg_alg_t alg);

/* Writes the reference of every key (type, default, bounds, environment
 * variable, meaning) as markdown: docs/configuration.md is this output. */
void wsg_config_print_schema(FILE *f);

/* Writes the effective configuration as "key = value" lines; secrets show
 * only their length, never their value. */
void wsg_config_describe(const wsg_config_t *cfg, FILE *f);

#endif
