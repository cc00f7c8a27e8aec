/* SPDX-License-Identifier: MIT */
/*
 * config.c — loads wsgate's configuration by walking the schema table of
 * config_schema.c: defaults first, then the YAML file (libyaml's document
 * API, so every node knows its line), then WSGATE_* environment overrides,
 * then the checks that involve several keys. Every error says where:
 * "FILE:LINE: key.path: reason" or "env WSGATE_X: reason". The roles stop at
 * the first; check-config (wsg_config_check_file) collects them all, one per
 * line: the file and the environment are walked whole, then the checks
 * across keys run if those had no error (a bad value would leave its
 * default behind and make them report what is not there).
 *
 * The loader remembers where each value came from (file line or variable
 * name), so a check made after the environment is applied still points at
 * the right place.
 */
#include "common/config.h"
#include "common/config_schema.h"
#include "common/err.h"
#include "common/url.h"
#include "common/whsig.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

_Static_assert(sizeof(wsg_alg_t) == sizeof(int), "CFG_ENUM stores int-sized enums");
_Static_assert(sizeof(wsg_one_conn_t) == sizeof(int), "CFG_ENUM stores int-sized enums");
_Static_assert(sizeof(wsg_protocol_t) == sizeof(int), "CFG_ENUM stores int-sized enums");

#define DKEY 256 /* longest display key, e.g. routes[12].limits.rate_limit.burst */

typedef struct {
    const void *field;
    int line;  /* > 0: set from the file at this line */
    char *env; /* non-NULL: set from this environment variable */
} origin_t;

typedef struct {
    const char *file;
    char *err;
    size_t errlen;
    yaml_document_t *doc;
    origin_t *orig;
    size_t n_orig, cap_orig;
    bool all;        /* collect every error instead of stopping at the first */
    unsigned n_errs; /* errors reported so far */
    size_t err_used; /* bytes of err written, with all */
} ld_t;

#define FIELD(base, k, type) ((type *)((char *)(base) + (k)->off))
#define FIELD2(base, k, type) ((type *)((char *)(base) + (k)->off2))

/* ---- where values came from, and errors that say so ---- */

/* The latest note for field wins; notes are only appended, so a large file
 * costs no quadratic search while it is read. */
static origin_t *origin_find(ld_t *ld, const void *field)
{
    for (size_t i = ld->n_orig; i-- > 0;)
        if (ld->orig[i].field == field)
            return &ld->orig[i];
    return NULL;
}

static int origin_note(ld_t *ld, const void *field, int line, const char *env)
{
    if (ld->n_orig == ld->cap_orig) {
        size_t cap = ld->cap_orig ? ld->cap_orig * 2 : 64;
        origin_t *n = realloc(ld->orig, cap * sizeof *n);
        if (!n)
            return WSG_ENOMEM;
        ld->orig = n;
        ld->cap_orig = cap;
    }
    origin_t *o = &ld->orig[ld->n_orig];
    *o = (origin_t){.field = field, .line = line};
    if (env && !(o->env = strdup(env)))
        return WSG_ENOMEM;
    ld->n_orig++;
    return 0;
}

/* One error: it replaces err, or with ld->all is appended to it as a line
 * (what does not fit is dropped; the count still says how many). */
static int report(ld_t *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int report(ld_t *ld, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ld->n_errs++;
    if (!ld->all)
        return wsg_errf(ld->err, ld->errlen, WSG_ECONFIG, "%s", msg);
    if (ld->err && ld->err_used + 1 < ld->errlen) {
        int w = snprintf(ld->err + ld->err_used, ld->errlen - ld->err_used, "%s%s",
                         ld->err_used ? "\n" : "", msg);
        if (w > 0)
            ld->err_used +=
                (size_t)w < ld->errlen - ld->err_used ? (size_t)w : ld->errlen - ld->err_used - 1;
    }
    return WSG_ECONFIG;
}

/* rc of a step that may have reported an error: 0 (go on) when collecting
 * every error and it was a config error; else rc (stop). */
static int keep_going(const ld_t *ld, int rc)
{
    return ld->all && rc == WSG_ECONFIG ? 0 : rc;
}

static int at_line(ld_t *ld, int line, const char *dkey, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int at_line(ld_t *ld, int line, const char *dkey, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (line > 0)
        return report(ld, "%s:%d: %s: %s", ld->file, line, dkey, why);
    return report(ld, "%s: %s: %s", ld->file, dkey, why);
}

static int at_env(ld_t *ld, const char *name, const char *why)
{
    return report(ld, "env %s: %s", name, why);
}

/* Reports a problem with a field wherever its value came from; line is the
 * fallback (the enclosing block) for values that were never set. */
static int at_field(ld_t *ld, const void *field, int line, const char *dkey, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int at_field(ld_t *ld, const void *field, int line, const char *dkey, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    const origin_t *o = origin_find(ld, field);
    if (o && o->env)
        return at_env(ld, o->env, why);
    return at_line(ld, o && o->line ? o->line : line, dkey, "%s", why);
}

/* ---- setting one key from text (YAML scalar, default or environment) ---- */

static void fmt_bound(const cfg_key_t *k, uint64_t v, char *buf, size_t n)
{
    if (k->type == CFG_DUR || k->type == CFG_DUR_S)
        cfg_format_duration(v, buf, n);
    else
        snprintf(buf, n, "%llu", (unsigned long long)v);
}

static int check_bounds(const cfg_key_t *k, uint64_t v, const char *text, char *why, size_t n)
{
    if (v >= k->min && (!k->max || v <= k->max))
        return 0;
    char lo[32], hi[32];
    fmt_bound(k, k->min, lo, sizeof lo);
    fmt_bound(k, k->max, hi, sizeof hi);
    if (!k->max)
        snprintf(why, n, "'%s' is below the minimum %s", text, lo);
    else
        snprintf(why, n, "'%s' is out of range (%s..%s)", text, lo, hi);
    return WSG_ECONFIG;
}

static int set_number(const cfg_key_t *k, void *base, const char *text, char *why, size_t n)
{
    uint64_t v = 0;
    int rc;
    if (k->type == CFG_DUR || k->type == CFG_DUR_S) {
        if (wsg_parse_duration_ms(text, &v) != 0) {
            snprintf(why, n, "invalid duration '%s' (use 25s, 1500ms, 2m)", text);
            return WSG_ECONFIG;
        }
        if (k->type == CFG_DUR_S && v % 1000) {
            snprintf(why, n, "'%s' is not a whole number of seconds", text);
            return WSG_ECONFIG;
        }
    } else if ((k->flags & CFG_F_BYTES) ? wsg_parse_bytes(text, &v) != 0
                                        : cfg_parse_int(text, &v) != 0) {
        snprintf(why, n, "expected a non-negative integer%s, got '%s'",
                 (k->flags & CFG_F_BYTES) ? " (optionally with K, KiB, M, MiB, G, GiB)" : "", text);
        return WSG_ECONFIG;
    }
    if ((rc = check_bounds(k, v, text, why, n)) != 0)
        return rc;
    if (k->type == CFG_U32)
        *FIELD(base, k, uint32_t) = (uint32_t)v;
    else if (k->type == CFG_DUR_S)
        *FIELD(base, k, uint32_t) = (uint32_t)(v / 1000);
    else
        *FIELD(base, k, uint64_t) = v;
    return 0;
}

static int set_enum(const cfg_key_t *k, void *base, const char *text, char *why, size_t n)
{
    bool b;
    if ((k->flags & CFG_F_OFF_BOOL) && cfg_parse_bool(text, &b) == 0 && !b)
        return *FIELD(base, k, int) = 0, 0;
    for (int i = 0; k->names[i]; i++) {
        if (strcasecmp(text, k->names[i]) != 0)
            continue;
        if ((uint64_t)i < k->min)
            break;
        return *FIELD(base, k, int) = i, 0;
    }
    size_t off = (size_t)snprintf(why, n, "unknown value '%s' (use", text);
    for (int i = (int)k->min; k->names[i] && off < n; i++)
        off +=
            (size_t)snprintf(why + off, n - off, "%s %s", i > (int)k->min ? "," : "", k->names[i]);
    if (off < n)
        snprintf(why + off, n - off, ")");
    return WSG_ECONFIG;
}

static int set_str(const cfg_key_t *k, void *base, const char *text, size_t len, char *why,
                   size_t n)
{
    if (memchr(text, '\0', len)) {
        snprintf(why, n, "contains a NUL byte");
        return WSG_ECONFIG;
    }
    if (k->check && k->check(text, why, n) != 0)
        return WSG_ECONFIG;
    char *copy = strndup(text, len);
    if (!copy)
        return WSG_ENOMEM;
    char **slot = FIELD(base, k, char *);
    free(*slot);
    *slot = copy;
    if (k->off2 != SIZE_MAX)
        *FIELD2(base, k, size_t) = len;
    return 0;
}

/* Sets scalar key k of the struct at base from text. Returns 0, WSG_ENOMEM,
 * or WSG_ECONFIG with the reason in why. */
static int set_text(const cfg_key_t *k, void *base, const char *text, size_t len, char *why,
                    size_t n)
{
    bool b;
    switch (k->type) {
    case CFG_STR:
        return set_str(k, base, text, len, why, n);
    case CFG_BOOL:
        if (cfg_parse_bool(text, &b) != 0) {
            snprintf(why, n, "expected true or false, got '%s'", text);
            return WSG_ECONFIG;
        }
        *FIELD(base, k, bool) = b;
        return 0;
    case CFG_ENUM:
        return set_enum(k, base, text, why, n);
    case CFG_U32:
    case CFG_U64:
    case CFG_DUR:
    case CFG_DUR_S:
        return set_number(k, base, text, why, n);
    default:
        snprintf(why, n, "expected a %s", k->type == CFG_LIST ? "list" : "mapping");
        return WSG_ECONFIG;
    }
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Appends a checked copy of text to list key k. */
static int list_push(const cfg_key_t *k, void *base, const char *text, char *why, size_t n)
{
    char ***list = FIELD(base, k, char **);
    size_t *cnt = FIELD2(base, k, size_t);
    if (k->check && k->check(text, why, n) != 0)
        return WSG_ECONFIG;
    char **grown = realloc(*list, (*cnt + 1) * sizeof *grown);
    if (!grown)
        return WSG_ENOMEM;
    *list = grown;
    if (!(grown[*cnt] = strdup(text)))
        return WSG_ENOMEM;
    (*cnt)++;
    return 0;
}

static void list_clear(const cfg_key_t *k, void *base)
{
    free_list(*FIELD(base, k, char **), *FIELD2(base, k, size_t));
    *FIELD(base, k, char **) = NULL;
    *FIELD2(base, k, size_t) = 0;
}

/* ---- defaults and freeing, both driven by the table ---- */

static int init_scope(const cfg_scope_t *sc, void *base)
{
    char why[256];
    for (size_t i = 0; i < sc->n_keys; i++) {
        const cfg_key_t *k = &sc->keys[i];
        int rc = 0;
        if (k->type == CFG_SCOPE)
            rc = init_scope(k->sub, (char *)base + k->off);
        else if (k->def)
            rc = set_text(k, base, k->def, strlen(k->def), why, sizeof why);
        if (rc != 0)
            return rc == WSG_ENOMEM ? rc : WSG_EINVAL; /* a bad default is a bug in the table */
    }
    return 0;
}

static void free_scope(const cfg_scope_t *sc, void *base)
{
    for (size_t i = 0; i < sc->n_keys; i++) {
        const cfg_key_t *k = &sc->keys[i];
        if (k->type == CFG_STR) {
            free(*FIELD(base, k, char *));
        } else if (k->type == CFG_LIST) {
            free_list(*FIELD(base, k, char **), *FIELD2(base, k, size_t));
        } else if (k->type == CFG_SCOPE) {
            free_scope(k->sub, (char *)base + k->off);
        } else if (k->type == CFG_ITEMS) {
            char *items = *FIELD(base, k, char *);
            for (size_t j = 0; j < *FIELD2(base, k, size_t); j++)
                free_scope(k->sub, items + j * k->sub->size);
            free(items);
        }
    }
}

static void free_extras(wsg_config_t *cfg)
{
    free(cfg->file);
    free(cfg->api.jwt.public_key);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        free(cfg->routes[i].webhook_key);
        free(cfg->routes[i].auth.jwt.public_key);
    }
}

void wsg_config_free(wsg_config_t *cfg)
{
    if (!cfg)
        return;
    free_extras(cfg);
    free_scope(&cfg_root_scope, cfg);
    free(cfg);
}

/* ---- the YAML walk ---- */

static const cfg_key_t *find_key(const cfg_scope_t *sc, const char *path)
{
    for (size_t i = 0; i < sc->n_keys; i++)
        if (strcmp(sc->keys[i].path, path) == 0)
            return &sc->keys[i];
    return NULL;
}

/* True when some key of sc lives below path (path is a mapping level). */
static bool is_group(const cfg_scope_t *sc, const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < sc->n_keys; i++)
        if (strncmp(sc->keys[i].path, path, n) == 0 && sc->keys[i].path[n] == '.')
            return true;
    return false;
}

static int node_line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static const char *node_kind(const yaml_node_t *n)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? "a scalar" : "a quoted string";
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || strcmp(v, "~") == 0 || strcasecmp(v, "null") == 0;
}

static int walk_map(ld_t *ld, const cfg_scope_t *sc, void *base, yaml_node_t *map, const char *rel,
                    const char *dpfx);

static int set_scalar_node(ld_t *ld, const cfg_key_t *k, void *base, yaml_node_t *v,
                           const char *dkey)
{
    char why[512];
    if (v->type != YAML_SCALAR_NODE)
        return at_line(ld, node_line(v), dkey, "expected a value, got %s", node_kind(v));
    const char *text = (const char *)v->data.scalar.value;
    size_t len = v->data.scalar.length;
    bool quoted = v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    if (k->type == CFG_STR && is_null(v))
        text = "", len = 0;
    else if (k->type != CFG_STR && is_null(v))
        return at_line(ld, node_line(v), dkey, "missing value");
    else if (quoted && (k->type == CFG_BOOL || k->type == CFG_U32 || k->type == CFG_U64))
        return at_line(ld, node_line(v), dkey, "expected %s, got a quoted string",
                       k->type == CFG_BOOL ? "true or false" : "an unquoted number");
    int rc = set_text(k, base, text, len, why, sizeof why);
    if (rc == WSG_ECONFIG)
        return at_line(ld, node_line(v), dkey, "%s", why);
    return rc ? rc : origin_note(ld, FIELD(base, k, char), node_line(v), NULL);
}

static int set_list_node(ld_t *ld, const cfg_key_t *k, void *base, yaml_node_t *v, const char *dkey)
{
    char why[512];
    list_clear(k, base);
    if (is_null(v))
        return origin_note(ld, FIELD(base, k, char), node_line(v), NULL);
    if (v->type != YAML_SEQUENCE_NODE)
        return at_line(ld, node_line(v), dkey, "expected a list, got %s", node_kind(v));
    size_t i = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++, i++) {
        yaml_node_t *e = yaml_document_get_node(ld->doc, *it);
        if (e->type != YAML_SCALAR_NODE)
            return at_line(ld, node_line(e), dkey, "item %zu: expected a string, got %s", i,
                           node_kind(e));
        int rc = list_push(k, base, (const char *)e->data.scalar.value, why, sizeof why);
        if (rc == WSG_ECONFIG)
            return at_line(ld, node_line(e), dkey, "item %zu: %s", i, why);
        if (rc)
            return rc;
    }
    return origin_note(ld, FIELD(base, k, char), node_line(v), NULL);
}

static int set_items_node(ld_t *ld, const cfg_key_t *k, void *base, yaml_node_t *v,
                          const char *dkey)
{
    if (is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return at_line(ld, node_line(v), dkey, "expected a list, got %s", node_kind(v));
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    char *items = n ? calloc(n, k->sub->size) : NULL;
    if (n && !items)
        return WSG_ENOMEM;
    *FIELD(base, k, char *) = items;
    *FIELD2(base, k, size_t) = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *e = yaml_document_get_node(ld->doc, v->data.sequence.items.start[i]);
        char dp[DKEY];
        cfg_keyf(dp, sizeof dp, "%s[%zu].", dkey, i);
        void *item = items + i * k->sub->size;
        int rc = init_scope(k->sub, item);
        if (rc)
            return rc;
        if (k->sub->line_off != SIZE_MAX)
            *(int *)((char *)item + k->sub->line_off) = node_line(e);
        if (e->type != YAML_MAPPING_NODE) {
            dp[strlen(dp) - 1] = '\0';
            rc = at_line(ld, node_line(e), dp, "expected a mapping, got %s", node_kind(e));
        } else {
            rc = walk_map(ld, k->sub, item, e, "", dp);
        }
        if ((rc = keep_going(ld, rc)) != 0)
            return rc;
    }
    return 0;
}

static int set_node(ld_t *ld, const cfg_key_t *k, void *base, yaml_node_t *v, const char *dpfx)
{
    char dkey[DKEY];
    cfg_keyf(dkey, sizeof dkey, "%s%s", dpfx, k->path);
    if (k->type == CFG_LIST)
        return set_list_node(ld, k, base, v, dkey);
    if (k->type == CFG_ITEMS)
        return set_items_node(ld, k, base, v, dkey);
    if (k->type != CFG_SCOPE)
        return set_scalar_node(ld, k, base, v, dkey);
    if (v->type != YAML_MAPPING_NODE)
        return at_line(ld, node_line(v), dkey, "expected a mapping, got %s", node_kind(v));
    void *sub = (char *)base + k->off;
    if (k->sub->present_off != SIZE_MAX)
        *(bool *)((char *)sub + k->sub->present_off) = true;
    char dp[DKEY];
    cfg_keyf(dp, sizeof dp, "%s.", dkey);
    int rc = origin_note(ld, sub, node_line(v), NULL); /* the block's line, for its checks */
    return rc ? rc : walk_map(ld, k->sub, sub, v, "", dp);
}

static bool seen_before(ld_t *ld, yaml_node_t *map, yaml_node_pair_t *p, const char *key)
{
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *kn = yaml_document_get_node(ld->doc, q->key);
        if (kn->type == YAML_SCALAR_NODE && strcmp((const char *)kn->data.scalar.value, key) == 0)
            return true;
    }
    return false;
}

/* Applies the mapping at map to scope sc; rel is the key prefix inside the
 * scope ("limits."), dpfx the display prefix of the scope ("routes[0]."). */
static int walk_map(ld_t *ld, const cfg_scope_t *sc, void *base, yaml_node_t *map, const char *rel,
                    const char *dpfx)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(ld->doc, p->value);
        char path[DKEY], dkey[DKEY], hint[DKEY + 32] = "";
        int rc;
        if (kn->type != YAML_SCALAR_NODE) {
            rc = at_line(ld, node_line(kn), *dpfx || *rel ? dpfx : "(top level)",
                         "keys must be plain names, got %s", node_kind(kn));
            if ((rc = keep_going(ld, rc)) != 0)
                return rc;
            continue;
        }
        const char *key = (const char *)kn->data.scalar.value;
        cfg_keyf(path, sizeof path, "%s%s", rel, key);
        cfg_keyf(dkey, sizeof dkey, "%s%s", dpfx, path);
        const cfg_key_t *k = find_key(sc, path);
        if (seen_before(ld, map, p, key)) {
            rc = at_line(ld, node_line(kn), dkey, "duplicate key");
        } else if (k) {
            rc = set_node(ld, k, base, vn, dpfx);
        } else if (is_group(sc, path)) {
            if (vn->type != YAML_MAPPING_NODE) {
                rc = at_line(ld, node_line(vn), dkey, "expected a mapping, got %s", node_kind(vn));
            } else {
                strcat(path, ".");
                rc = walk_map(ld, sc, base, vn, path, dpfx);
            }
        } else {
            char near[DKEY];
            if (cfg_nearest_key(sc, path, near, sizeof near))
                cfg_keyf(hint, sizeof hint, "; did you mean %s%s?", dpfx, near);
            rc = at_line(ld, node_line(kn), dkey, "unknown key%s", hint);
        }
        if ((rc = keep_going(ld, rc)) != 0)
            return rc;
    }
    return 0;
}

/* ---- WSGATE_* environment overrides ---- */

/* Comma-separated list from the environment; blanks around items dropped. */
static int env_list(const cfg_key_t *k, void *base, const char *v, char *why, size_t n)
{
    list_clear(k, base);
    char *copy = strdup(v), *save = NULL;
    if (!copy)
        return WSG_ENOMEM;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t))
            t++;
        for (size_t e = strlen(t); e && isspace((unsigned char)t[e - 1]); e--)
            t[e - 1] = '\0';
        if (*t)
            rc = list_push(k, base, t, why, n);
    }
    free(copy);
    return rc;
}

static int env_key(ld_t *ld, const cfg_key_t *k, void *base, const char *dkey, bool *hit)
{
    char name[DKEY + 16], fname[DKEY + 16], why[512];
    cfg_env_name(dkey, NULL, name, sizeof name);
    cfg_env_name(dkey, "_FILE", fname, sizeof fname);
    const char *v = getenv(name);
    const char *fpath = (k->flags & CFG_F_SECRET) ? getenv(fname) : NULL;
    if (!v && !fpath)
        return 0;
    if (v && fpath)
        return at_env(ld, name, "set both it and its _FILE variant; give only one");
    const char *src = fpath ? fname : name;
    char *buf = NULL;
    size_t len = v ? strlen(v) : 0;
    int rc = fpath ? cfg_read_secret_file(fpath, &buf, &len, why, sizeof why) : 0;
    if (rc == 0) {
        v = buf ? buf : v;
        rc = k->type == CFG_LIST ? env_list(k, base, v, why, sizeof why)
                                 : set_text(k, base, v, len, why, sizeof why);
    }
    free(buf);
    if (rc == WSG_ECONFIG)
        return at_env(ld, src, why);
    *hit = true;
    return rc ? rc : origin_note(ld, FIELD(base, k, char), 0, src);
}

/* An override for list item N where the file has fewer items cannot apply. */
static int env_stray_items(ld_t *ld, const char *dkey, size_t count)
{
    extern char **environ;
    char prefix[DKEY + 16], why[512];
    cfg_env_name(dkey, "_", prefix, sizeof prefix);
    size_t pl = strlen(prefix);
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, prefix, pl) != 0 || !isdigit((unsigned char)(*e)[pl]))
            continue;
        char *end;
        unsigned long idx = strtoul(*e + pl, &end, 10);
        if (*end != '_' || idx < count)
            continue;
        const char *eq = strchr(*e, '=');
        char name[DKEY + 16];
        snprintf(name, sizeof name, "%.*s", (int)(eq ? eq - *e : (long)strlen(*e)), *e);
        cfg_keyf(why, sizeof why, "the config file has no %s[%lu] (it lists %zu)", dkey, idx,
                 count);
        return at_env(ld, name, why);
    }
    return 0;
}

static int env_scope(ld_t *ld, const cfg_scope_t *sc, void *base, const char *dpfx, bool *hit)
{
    int rc = 0;
    for (size_t i = 0; i < sc->n_keys && rc == 0; i++) {
        const cfg_key_t *k = &sc->keys[i];
        char dkey[DKEY], dp[DKEY];
        cfg_keyf(dkey, sizeof dkey, "%s%s", dpfx, k->path);
        if (k->type == CFG_SCOPE) {
            bool sub_hit = false;
            cfg_keyf(dp, sizeof dp, "%s.", dkey);
            void *sub = (char *)base + k->off;
            rc = keep_going(ld, env_scope(ld, k->sub, sub, dp, &sub_hit));
            if (sub_hit && k->sub->present_off != SIZE_MAX)
                *(bool *)((char *)sub + k->sub->present_off) = true;
            *hit = *hit || sub_hit;
        } else if (k->type == CFG_ITEMS) {
            size_t n = *FIELD2(base, k, size_t);
            for (size_t j = 0; j < n && rc == 0; j++) {
                cfg_keyf(dp, sizeof dp, "%s[%zu].", dkey, j);
                rc = env_scope(ld, k->sub, *FIELD(base, k, char *) + j * k->sub->size, dp, hit);
                rc = keep_going(ld, rc);
            }
            if (rc == 0)
                rc = keep_going(ld, env_stray_items(ld, dkey, n));
        } else {
            rc = keep_going(ld, env_key(ld, k, base, dkey, hit));
        }
    }
    return rc;
}

/* ---- checks across keys, after file and environment ---- */

static int check_required(ld_t *ld, const cfg_scope_t *sc, void *base, const char *dpfx, int line)
{
    for (size_t i = 0; i < sc->n_keys; i++) {
        const cfg_key_t *k = &sc->keys[i];
        char dkey[DKEY], dp[DKEY];
        cfg_keyf(dkey, sizeof dkey, "%s%s", dpfx, k->path);
        if (k->type == CFG_ITEMS) {
            char *items = *FIELD(base, k, char *);
            for (size_t j = 0; j < *FIELD2(base, k, size_t); j++) {
                void *item = items + j * k->sub->size;
                int il =
                    k->sub->line_off != SIZE_MAX ? *(int *)((char *)item + k->sub->line_off) : line;
                cfg_keyf(dp, sizeof dp, "%s[%zu].", dkey, j);
                int rc = keep_going(ld, check_required(ld, k->sub, item, dp, il));
                if (rc)
                    return rc;
            }
        }
        if (!(k->flags & CFG_F_REQUIRED) || k->type != CFG_STR)
            continue;
        const char *s = *FIELD(base, k, char *);
        int rc = 0;
        if (!s)
            rc = at_line(ld, line, dkey, "required key missing");
        else if (!*s)
            rc = at_field(ld, FIELD(base, k, char), line, dkey, "must not be empty");
        if ((rc = keep_going(ld, rc)) != 0)
            return rc;
    }
    return 0;
}

static bool alg_is_hmac(wsg_alg_t a)
{
    return a == WSG_ALG_HS256 || a == WSG_ALG_HS384 || a == WSG_ALG_HS512;
}

static int check_jwt(ld_t *ld, wsg_jwt_conf_t *j, const char *dpfx)
{
    char dkey[DKEY], why[512];
    const origin_t *o = origin_find(ld, j);
    int line = o ? o->line : 0;
    const char *an = wsg_alg_name(j->alg);
    bool has_secret = j->secret && *j->secret;
    bool has_file = j->public_key_file && *j->public_key_file;
#define KEY(name) (cfg_keyf(dkey, sizeof dkey, "%s%s", dpfx, name), dkey)
    if (!j->enabled)
        return 0;
    if (j->alg == WSG_ALG_NONE)
        return at_line(ld, line, KEY("alg"), "required key missing (HS256, RS256, ES256, ...)");
    if (alg_is_hmac(j->alg)) {
        if (has_file)
            return at_field(ld, &j->public_key_file, line, KEY("public_key_file"),
                            "is for RS*/ES* keys; %s uses secret", an);
        if (!j->secret)
            return at_line(ld, line, KEY("secret"), "required key missing for %s", an);
        /* RFC 7518 3.2: a key at least as long as the hash output. */
        size_t min = j->alg == WSG_ALG_HS256 ? 32 : j->alg == WSG_ALG_HS384 ? 48 : 64;
        if (j->secret_len < min)
            return at_field(ld, &j->secret, line, KEY("secret"),
                            "%s secret must be at least %zu bytes (got %zu)", an, min,
                            j->secret_len);
        return 0;
    }
    if (has_secret)
        return at_field(ld, &j->secret, line, KEY("secret"),
                        "is for HS* algorithms; %s uses public_key_file", an);
    if (!has_file)
        return at_line(ld, line, KEY("public_key_file"), "required key missing for %s", an);
    int rc = cfg_load_public_key(j->public_key_file, j->alg, &j->public_key, &j->public_key_len,
                                 why, sizeof why);
    if (rc == WSG_ENOMEM)
        return rc;
    return rc ? at_field(ld, &j->public_key_file, line, KEY("public_key_file"), "%s", why) : 0;
#undef KEY
}

static int check_rule(ld_t *ld, const wsg_route_conf_t *r, wsg_rule_conf_t *u, const char *dp)
{
    bool js = u->json_field != NULL, eq = u->equals != NULL, re = u->regex != NULL;
    char dkey[DKEY];
    if (re && (js || eq))
        return at_line(ld, u->line, dp, "give either json+equals or regex, not both");
    if (!re && !js && !eq)
        return at_line(ld, u->line, dp, "needs json+equals or regex");
    if (js != eq)
        return at_line(ld, u->line, dp, "json and equals go together (%s is missing)",
                       js ? "equals" : "json");
    cfg_keyf(dkey, sizeof dkey, "%s.backend", dp);
    char shown[256];
    cfg_mask_url(u->backend, shown, sizeof shown);
    if (!wsg_config_backend_allowed(r, u->backend))
        return at_field(ld, &u->backend, u->line, dkey,
                        "'%s' is not within allowed_backends (the route's backend is implied)",
                        shown);
    return 0;
}

/* A route whose backend is a stream (ws:// or wss://) has one backend and
 * speaks wsgate's envelope over it, or the seed "WS API Gateway"'s frames:
 * no rules, routing service or other protocol (docs/webhooks.md "Backend
 * streams"). ws-api-gateway exists only on a stream, and addresses clients
 * by user: one connection per user is the route's, never `off`
 * (docs/compat.md). */
static int check_stream_route(ld_t *ld, wsg_route_conf_t *r, size_t i)
{
    char dkey[DKEY];
    bool wsapi = r->protocol == WSG_PROTO_WSAPI;
    cfg_keyf(dkey, sizeof dkey, "routes[%zu].protocol", i);
    if (!wsg_url_is_stream(r->backend))
        return wsapi ? at_field(ld, &r->protocol, r->line, dkey,
                                "ws-api-gateway needs a ws:// or wss:// backend (a stream)")
                     : 0;
    if (r->protocol != WSG_PROTO_WSGATE && !wsapi)
        return at_field(
            ld, &r->protocol, r->line, dkey,
            "a ws:// or wss:// backend (a stream) speaks wsgate or ws-api-gateway only");
    if (r->n_rules) {
        cfg_keyf(dkey, sizeof dkey, "routes[%zu].rules", i);
        return at_line(ld, r->line, dkey, "not allowed with a ws:// or wss:// backend (a stream)");
    }
    if (r->routing_service && r->routing_service[0]) {
        cfg_keyf(dkey, sizeof dkey, "routes[%zu].routing_service", i);
        return at_field(ld, &r->routing_service, r->line, dkey,
                        "not allowed with a ws:// or wss:// backend (a stream)");
    }
    if (wsapi && r->one_connection_per_user == WSG_ONE_CONN_OFF) {
        cfg_keyf(dkey, sizeof dkey, "routes[%zu].one_connection_per_user", i);
        return at_field(ld, &r->one_connection_per_user, r->line, dkey,
                        "protocol ws-api-gateway addresses clients by user: set replace (the "
                        "newest connection of a user is the one) or reject");
    }
    return 0;
}

/* A wsaas route's ws_hostname: http://<api.listen> when not given (":port"
 * as localhost:port), and never with a '/' at its end (ws_uri adds "/<id>"). */
static int ws_hostname_default(const wsg_config_t *cfg, wsg_route_conf_t *r)
{
    char *v = r->ws_hostname;
    if (r->protocol == WSG_PROTO_WSAAS && (!v || !*v)) {
        const char *host = cfg->api.listen[0] == ':' ? "localhost" : "";
        size_t n = strlen(cfg->api.listen) + strlen(host) + sizeof "http://";
        if (!(v = malloc(n)))
            return WSG_ENOMEM;
        snprintf(v, n, "http://%s%s", host, cfg->api.listen);
        free(r->ws_hostname);
        r->ws_hostname = v;
    }
    for (size_t n = v ? strlen(v) : 0; n > 0 && v[n - 1] == '/'; n--)
        v[n - 1] = '\0';
    return 0;
}

/* Each check of a route reports on its own: with ld->all every one runs. */
static int check_route(ld_t *ld, wsg_config_t *cfg, size_t i)
{
    wsg_route_conf_t *r = &cfg->routes[i];
    char dp[DKEY], dkey[DKEY];
    int rc = 0;
    for (size_t j = 0; j < i && rc == 0; j++)
        if (strcmp(cfg->routes[j].path, r->path) == 0) {
            cfg_keyf(dkey, sizeof dkey, "routes[%zu].path", i);
            rc = keep_going(ld, at_field(ld, &r->path, r->line, dkey,
                                         "'%s' is already routes[%zu].path", r->path, j));
            break;
        }
    cfg_keyf(dkey, sizeof dkey, "routes[%zu].webhook_secret", i);
    int k = rc ? 0 : wsg_whsig_key_decode(r->webhook_secret, &r->webhook_key, &r->webhook_key_len);
    if (k)
        rc = k == WSG_ENOMEM
                 ? k
                 : keep_going(ld, at_field(ld, &r->webhook_secret, r->line, dkey, "bad key"));
    cfg_keyf(dp, sizeof dp, "routes[%zu].auth.jwt.", i);
    if (rc == 0)
        rc = keep_going(ld, check_jwt(ld, &r->auth.jwt, dp));
    cfg_keyf(dkey, sizeof dkey, "routes[%zu].auth.required", i);
    if (rc == 0 && r->auth.required && !r->auth.jwt.enabled && !*r->auth.authorizer)
        rc = keep_going(ld, at_field(ld, &r->auth.required, r->line, dkey,
                                     "true needs auth.jwt or auth.authorizer (or required: "
                                     "false for anonymous clients)"));
    if (rc == 0)
        rc = keep_going(ld, check_stream_route(ld, r, i));
    for (size_t j = 0; j < r->n_rules && rc == 0; j++) {
        cfg_keyf(dp, sizeof dp, "routes[%zu].rules[%zu]", i, j);
        rc = keep_going(ld, check_rule(ld, r, &r->rules[j], dp));
    }
    cfg_keyf(dkey, sizeof dkey, "routes[%zu].protocol", i);
    char why[256];
    int line = r->line;
    int ar = rc ? 0 : cfg_check_aws_route(cfg, i, &line, dkey, sizeof dkey, why, sizeof why);
    if (ar)
        rc = ar == WSG_ENOMEM ? ar : keep_going(ld, at_line(ld, line, dkey, "%s", why));
    if (rc == 0)
        rc = ws_hostname_default(cfg, r);
    cfg_keyf(dkey, sizeof dkey, "routes[%zu].delivery.batch_max", i);
    if (rc == 0 && r->delivery.batch_max > 1 && wsg_protocol_one_event(r->protocol))
        rc = keep_going(ld, at_field(ld, &r->delivery.batch_max, r->line, dkey,
                                     "must be 1 with protocol: %s (one event per request, as "
                                     "the original)",
                                     wsg_protocol_name(r->protocol)));
    cfg_keyf(dkey, sizeof dkey, "routes[%zu].delivery.backoff_max", i);
    if (rc == 0 && r->delivery.backoff_max_ms < r->delivery.backoff_initial_ms)
        rc = at_field(ld, &r->delivery.backoff_max_ms, r->line, dkey,
                      "is below delivery.backoff_initial");
    return rc;
}

static int default_edge_id(wsg_config_t *cfg)
{
    char host[64] = "", id[96];
    if (cfg->edge.id)
        return 0;
    if (gethostname(host, sizeof host - 1) != 0 || !*host)
        snprintf(host, sizeof host, "edge");
    for (char *c = host; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
            *c = '-';
    snprintf(id, sizeof id, "%s-%ld", host, (long)getpid());
    return (cfg->edge.id = strdup(id)) ? 0 : WSG_ENOMEM;
}

static int check_ack_wait(ld_t *ld, wsg_config_t *cfg)
{
    char why[512], dkey[DKEY];
    size_t i = 0;
    if (cfg_check_ack_wait(cfg, &i, why, sizeof why) == 0)
        return 0;
    cfg_keyf(dkey, sizeof dkey, "routes[%zu].delivery.timeout", i);
    return at_field(ld, &cfg->routes[i].delivery.timeout_ms, cfg->routes[i].line, dkey, "%s", why);
}

/* Both files or neither; each readable now (its contents are checked when
 * the role starts: a bad PEM stops start-up with OpenSSL's or GnuTLS's reason). */
static int check_tls(ld_t *ld, wsg_tls_conf_t *t, const char *dpfx)
{
    char dkey[DKEY];
    char **files[] = {&t->cert_file, &t->key_file, &t->client_ca_file};
    const char *names[] = {"cert_file", "key_file", "client_ca_file"};
    bool cert = *t->cert_file, key = *t->key_file;
    if (cert != key) {
        cfg_keyf(dkey, sizeof dkey, "%s%s", dpfx, cert ? "key_file" : "cert_file");
        return at_field(ld, cert ? &t->cert_file : &t->key_file, 0, dkey,
                        "required with %s%s (both or neither)", dpfx,
                        cert ? "cert_file" : "key_file");
    }
    if (t->client_ca_file && *t->client_ca_file && !cert) {
        cfg_keyf(dkey, sizeof dkey, "%sclient_ca_file", dpfx);
        return at_field(ld, &t->client_ca_file, 0, dkey, "needs cert_file and key_file");
    }
    for (size_t i = 0; i < 3; i++) {
        const char *f = *files[i];
        if (!f || !*f || access(f, R_OK) == 0)
            continue;
        cfg_keyf(dkey, sizeof dkey, "%s%s", dpfx, names[i]);
        return at_field(ld, files[i], 0, dkey, "cannot read '%s': %s", f, strerror(errno));
    }
    return 0;
}

static int check_all(ld_t *ld, wsg_config_t *cfg)
{
    int rc = keep_going(ld, check_required(ld, &cfg_root_scope, cfg, "", 0));
    if (rc == 0)
        rc = keep_going(ld, check_jwt(ld, &cfg->api.jwt, "api.auth.jwt."));
    if (rc == 0)
        rc = keep_going(ld, check_tls(ld, &cfg->edge.tls, "edge.tls."));
    if (rc == 0)
        rc = keep_going(ld, check_tls(ld, &cfg->api.tls, "api.tls."));
    for (size_t i = 0; i < cfg->n_routes && rc == 0; i++)
        rc = keep_going(ld, check_route(ld, cfg, i));
    if (rc == 0 && ld->n_errs == 0) /* it compares routes checked above */
        rc = check_ack_wait(ld, cfg);
    if (rc == 0 && ld->n_errs)
        rc = WSG_ECONFIG;
    return rc ? rc : default_edge_id(cfg);
}

/* ---- entry points ---- */

static int parse_yaml(ld_t *ld, wsg_config_t *cfg, const char *yaml)
{
    yaml_parser_t p;
    yaml_document_t doc, extra;
    int rc = 0;
    if (!yaml_parser_initialize(&p))
        return WSG_ENOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, strlen(yaml));
    if (!yaml_parser_load(&p, &doc)) {
        rc = wsg_errf(ld->err, ld->errlen, WSG_ECONFIG, "%s:%d: YAML: %s%s%s", ld->file,
                      (int)p.problem_mark.line + 1, p.problem ? p.problem : "syntax error",
                      p.context ? " " : "", p.context ? p.context : "");
        goto out_parser;
    }
    ld->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        rc = wsg_errf(ld->err, ld->errlen, WSG_ECONFIG,
                      "%s: empty configuration (write {} for all defaults)", ld->file);
    else if (root->type != YAML_MAPPING_NODE)
        rc = at_line(ld, node_line(root), "(top level)", "expected a mapping, got %s",
                     node_kind(root));
    else
        rc = walk_map(ld, &cfg_root_scope, cfg, root, "", "");
    if (rc == 0 && yaml_parser_load(&p, &extra)) {
        if (yaml_document_get_root_node(&extra))
            rc = wsg_errf(ld->err, ld->errlen, WSG_ECONFIG, "%s:%d: more than one YAML document",
                          ld->file, (int)extra.start_mark.line + 1);
        yaml_document_delete(&extra);
    }
    ld->doc = NULL;
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&p);
    return rc;
}

/* The loader of both modes: all collects every error (check-config), one
 * per line of err, and counts them in *n_errs when given. */
static int load_string(wsg_config_t **out, const char *yaml, const char *name, char *err,
                       size_t errlen, bool all, unsigned *n_errs)
{
    ld_t ld = {.file = name ? name : "(config)", .err = err, .errlen = errlen, .all = all};
    wsg_config_t *cfg = calloc(1, sizeof *cfg);
    bool hit = false;
    int rc = WSG_ENOMEM;
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!cfg || !(cfg->file = strdup(ld.file)))
        goto out;
    if ((rc = init_scope(&cfg_root_scope, cfg)) != 0)
        goto out;
    if ((rc = parse_yaml(&ld, cfg, yaml)) != 0 && rc != WSG_ECONFIG)
        goto out;
    if (rc == 0 || ld.all) /* the environment's errors too, beside the file's */
        rc = keep_going(&ld, env_scope(&ld, &cfg_root_scope, cfg, "", &hit));
    if (rc == 0 && ld.n_errs)
        rc = WSG_ECONFIG;
    if (rc == 0)
        rc = check_all(&ld, cfg);
out:
    for (size_t i = 0; i < ld.n_orig; i++)
        free(ld.orig[i].env);
    free(ld.orig);
    if (rc == WSG_ENOMEM)
        wsg_errf(err, errlen, rc, "%s: out of memory", ld.file);
    if (n_errs)
        *n_errs = rc == 0 ? 0 : ld.n_errs ? ld.n_errs : 1;
    if (rc != 0) {
        wsg_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int wsg_config_load_string(wsg_config_t **out, const char *yaml, const char *name, char *err,
                           size_t errlen)
{
    return load_string(out, yaml, name, err, errlen, false, NULL);
}

static int load_file(wsg_config_t **out, const char *path, char *err, size_t errlen, bool all,
                     unsigned *n_errs)
{
    char *buf = NULL;
    *out = NULL;
    if (n_errs)
        *n_errs = 1;
    int rc = cfg_read_config_file(path, &buf, err, errlen);
    if (rc == 0)
        rc = load_string(out, buf, path, err, errlen, all, n_errs);
    free(buf);
    return rc;
}

int wsg_config_load(wsg_config_t **out, const char *path, char *err, size_t errlen)
{
    return load_file(out, path, err, errlen, false, NULL);
}

int wsg_config_check_file(wsg_config_t **out, const char *path, char *err, size_t errlen,
                          unsigned *n_errs)
{
    return load_file(out, path, err, errlen, true, n_errs);
}

const wsg_route_conf_t *wsg_config_route(const wsg_config_t *cfg, const char *path)
{
    for (size_t i = 0; cfg && path && i < cfg->n_routes; i++)
        if (strcmp(cfg->routes[i].path, path) == 0)
            return &cfg->routes[i];
    return NULL;
}
