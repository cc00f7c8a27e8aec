/* SPDX-License-Identifier: MIT */
/*
 * config_schema.h — private to common/config*.c: the one table that drives
 * parsing, defaults, environment overrides, validation, freeing, the
 * effective-config dump and docs/configuration.md (after Redis's config
 * table). Nothing outside common/config*.c includes this.
 *
 * A scope is a C struct the table describes (the whole config, a route, a
 * JWT block, a routing rule). Its keys' paths are relative to the scope and
 * use dots between mapping levels ("limits.rate_limit.burst"); a key of type
 * CFG_SCOPE embeds another scope (a jwt: block), CFG_ITEMS a YAML sequence of
 * another scope (routes, rules).
 *
 * Threads: the table is constant; any thread may read it.
 */
#ifndef WSG_CONFIG_SCHEMA_H
#define WSG_CONFIG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/config.h"

typedef enum {
    CFG_STR,   /* char *; optional length (size_t) at off2 */
    CFG_BOOL,  /* bool */
    CFG_U32,   /* uint32_t; CFG_F_BYTES allows KiB/MiB/GiB suffixes */
    CFG_U64,   /* uint64_t; likewise */
    CFG_DUR,   /* uint64_t milliseconds */
    CFG_DUR_S, /* uint32_t whole seconds, written as a duration */
    CFG_ENUM,  /* int-sized enum; value = index in names */
    CFG_LIST,  /* char **, count (size_t) at off2; env: comma-separated */
    CFG_SCOPE, /* embedded struct described by sub */
    CFG_ITEMS, /* heap array of sub->size structs at off, count at off2 */
} cfg_type_t;

enum {
    CFG_F_REQUIRED = 1, /* must be non-empty after file and environment */
    CFG_F_SECRET = 2,   /* also from ..._FILE; never printed */
    CFG_F_BYTES = 4,    /* integer may carry a size suffix */
    CFG_F_OFF_BOOL = 8, /* CFG_ENUM: YAML's false/no/off mean index 0 */
};

/* Checks one string value (a CFG_STR, or each element of a CFG_LIST).
 * Returns 0, or nonzero with the reason in why. */
typedef int (*cfg_check_fn)(const char *value, char *why, size_t whylen);

typedef struct cfg_scope cfg_scope_t;

typedef struct {
    const char *path; /* relative to the scope */
    cfg_type_t type;
    size_t off;
    size_t off2;       /* see cfg_type_t; SIZE_MAX when unused */
    const char *def;   /* default as config text; NULL: empty / zero / none */
    uint64_t min, max; /* numeric bounds (durations in ms) */
    unsigned flags;
    cfg_check_fn check;
    const char *const *names; /* CFG_ENUM names, NULL-terminated */
    const cfg_scope_t *sub;   /* CFG_SCOPE, CFG_ITEMS */
    const char *doc;
} cfg_key_t;

struct cfg_scope {
    const char *name;
    const cfg_key_t *keys;
    size_t n_keys;
    size_t size;        /* sizeof the struct */
    size_t present_off; /* bool set when the block is given; SIZE_MAX: none */
    size_t line_off;    /* int line of the block's mapping; SIZE_MAX: none */
};

extern const cfg_scope_t cfg_root_scope;

/* Validators used by the table (common/config_check.c). */
int cfg_check_http_url(const char *v, char *why, size_t n);
int cfg_check_backend_url(const char *v, char *why, size_t n); /* http(s) or ws(s) */
int cfg_check_http_url_or_empty(const char *v, char *why, size_t n);
/* "" or an http(s) URL without query or fragment (a wsaas ws_hostname). */
int cfg_check_ws_hostname(const char *v, char *why, size_t n);
int cfg_check_backend_prefix(const char *v, char *why, size_t n);
int cfg_check_listen(const char *v, char *why, size_t n);
int cfg_check_route_path(const char *v, char *why, size_t n);
int cfg_check_store(const char *v, char *why, size_t n);
int cfg_check_nats(const char *v, char *why, size_t n);
int cfg_check_regex(const char *v, char *why, size_t n);
int cfg_check_whsec(const char *v, char *why, size_t n);
int cfg_check_edge_id(const char *v, char *why, size_t n);
int cfg_check_token(const char *v, char *why, size_t n);
int cfg_check_subprotocol(const char *v, char *why, size_t n);
int cfg_check_nonempty(const char *v, char *why, size_t n);
int cfg_check_log_level(const char *v, char *why, size_t n);
int cfg_check_log_format(const char *v, char *why, size_t n);
int cfg_check_cidr(const char *v, char *why, size_t n);
int cfg_check_aws_key_id(const char *v, char *why, size_t n);
int cfg_check_aws_name(const char *v, char *why, size_t n);
int cfg_check_aws_rse(const char *v, char *why, size_t n);

/* Cluster mode (nats set): every route's webhook attempt (delivery.timeout,
 * plus the routing-service call when the route has one) must end within
 * cluster.ack_wait. Returns 0, or nonzero with the first offending route's
 * index in *route and the reason in why. */
int cfg_check_ack_wait(const wsg_config_t *cfg, size_t *route, char *why, size_t n);

/* Route i's protocol and aws: block agree (config_check.c). Returns 0,
 * WSG_ENOMEM, or nonzero with the key in dkey, its line in *line and the
 * reason in why. */
int cfg_check_aws_route(wsg_config_t *cfg, size_t i, int *line, char *dkey, size_t dn, char *why,
                        size_t n);

/* Reads the PEM public key in file for alg (RSA for RS*, EC on the right
 * curve for ES*). Returns 0 and a new NUL-terminated text in *pem, or
 * nonzero with the reason in why. */
int cfg_load_public_key(const char *file, int alg, char **pem, size_t *len, char *why, size_t n);

/* Scalar parsers shared by the loader: 0 or WSG_EINVAL. */
int cfg_parse_bool(const char *s, bool *out);
int cfg_parse_int(const char *s, uint64_t *out);

/* Reads a whole config file (at most 16 MiB, no NUL) into a new string. On
 * error returns WSG_EIO/WSG_ECONFIG/WSG_ENOMEM with "FILE: reason" in err. */
int cfg_read_config_file(const char *path, char **out, char *err, size_t errlen);

/* For an unknown key path of scope sc: the known key (or group of keys)
 * nearest to it by edit distance, within a third of its length, cut to its
 * depth, into out. Returns 1 if there is one, else 0. */
int cfg_nearest_key(const cfg_scope_t *sc, const char *path, char *out, size_t n);

/* Reads a secret file (at most 64 KiB) into a new NUL-terminated buffer,
 * dropping one trailing newline. Returns 0, WSG_ENOMEM, or WSG_ECONFIG with
 * the reason in why. */
int cfg_read_secret_file(const char *path, char **out, size_t *len, char *why, size_t n);

/* snprintf for key paths and messages: a text longer than the buffer is cut,
 * never overrun. */
void cfg_keyf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Copies url with any "user:password@" shown as "***@", for messages. */
void cfg_mask_url(const char *url, char *out, size_t n);

/* Prints a duration in ms the way the config would write it ("25s"). */
void cfg_format_duration(uint64_t ms, char *buf, size_t n);

/* "routes[0].auth.jwt.secret" + suffix -> "WSGATE_ROUTES_0_AUTH_JWT_SECRET" + suffix. */
void cfg_env_name(const char *dkey, const char *suffix, char *out, size_t n);

#endif
