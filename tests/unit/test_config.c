/* SPDX-License-Identifier: MIT */
/*
 * test_config.c — the configuration loader, data-driven like jansson's suites:
 *
 *   tests/data/config/valid/<case>/input.yaml    must load; optional `expect`
 *       lists lines that must appear in wsg_config_describe()'s output
 *   tests/data/config/invalid/<case>/input.yaml  must fail; `error` holds the
 *       exact error text (file name as "input.yaml")
 *   optional `env` in either: NAME=VALUE lines set around the load
 *
 * Each case runs with the case directory as working directory, so relative
 * files (PEM keys, *_FILE secrets) sit beside it. Adding a case needs no C
 * change. The C tests below pin what the data cannot: the header's defaults
 * field by field, the parsers, the examples, the generated docs, and that
 * loading frees everything (LeakSanitizer checks that under ASan; elsewhere
 * glibc's heap statistics do), also when any one allocation fails.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <dlfcn.h>
#include <glob.h>
#include <limits.h>
#include <malloc.h>
#include <unistd.h>

#include "common/config.h"
#include "common/err.h"

#define DATA WSGATE_TEST_DATA "/config"

#if defined(__SANITIZE_ADDRESS__) /* gcc */
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) /* clang */
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Allocation failure injection (plain builds; ASan owns malloc there): the
 * executable's malloc family wins over libc's for every library in the
 * process, so libyaml, PCRE2 and OpenSSL see the failures too. fail_at = N
 * makes the N-th allocation from now fail once; -1 never. fail_dso names
 * the object whose code asked for the allocation that failed. */
static long fail_at = -1;
static char fail_dso[256];
#if !UNDER_ASAN
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t a, size_t b);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

static int inject(void *caller)
{
    Dl_info di;
    if (fail_at < 0 || fail_at-- != 0)
        return 0;
    snprintf(fail_dso, sizeof fail_dso, "%s",
             dladdr(caller, &di) && di.dli_fname ? di.dli_fname : "?");
    return 1;
}

void *malloc(size_t n)
{
    return inject(__builtin_return_address(0)) ? NULL : __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    return inject(__builtin_return_address(0)) ? NULL : __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    return inject(__builtin_return_address(0)) ? NULL : __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}
#endif

/* ---- helpers ---- */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

/* Sets (set=1) or unsets (set=0) every NAME=VALUE line of the case's env file. */
static void case_env(int set)
{
    char *env = slurp("env");
    if (!env)
        return;
    char *save = NULL;
    for (char *line = strtok_r(env, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        assert_non_null(eq);
        *eq = '\0';
        if (set)
            assert_int_equal(setenv(line, eq + 1, 1), 0);
        else
            unsetenv(line);
    }
    free(env);
}

static char *describe(const wsg_config_t *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    wsg_config_describe(cfg, m);
    fclose(m);
    return buf;
}

/* Every line of the case's `expect` file appears as a whole line in text. */
static void check_expect(const char *name, const char *text)
{
    char *expect = slurp("expect");
    if (!expect)
        return;
    char *save = NULL;
    for (char *line = strtok_r(expect, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char want[1024];
        snprintf(want, sizeof want, "\n%s\n", line);
        char *hay = malloc(strlen(text) + 2);
        hay[0] = '\n';
        strcpy(hay + 1, text);
        if (!strstr(hay, want))
            fail_msg("%s: missing line '%s' in:\n%s", name, line, text);
        free(hay);
    }
    free(expect);
}

typedef struct {
    char dir[PATH_MAX];
    char name[128];
    int valid;
} data_case_t;

static void run_case(void **state)
{
    const data_case_t *c = *state;
    char cwd[PATH_MAX], err[1024] = "";
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(c->dir), 0);
    case_env(1);
    wsg_config_t *cfg = NULL;
    int rc = wsg_config_load(&cfg, "input.yaml", err, sizeof err);
    case_env(0);
    if (c->valid) {
        if (rc != 0)
            fail_msg("%s: expected to load, got %s: %s", c->name, wsg_err_name(rc), err);
        char *text = describe(cfg);
        check_expect(c->name, text);
        free(text);
    } else {
        char *want = slurp("error");
        assert_non_null(want);
        chomp(want);
        if (rc == 0)
            fail_msg("%s: loaded, expected error: %s", c->name, want);
        assert_null(cfg);
        if (strcmp(err, want) != 0)
            fail_msg("%s:\n  expected: %s\n  got:      %s", c->name, want, err);
        free(want);
    }
    wsg_config_free(cfg);
    assert_int_equal(chdir(cwd), 0);
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Appends one test per case directory under DATA/kind. */
static size_t add_cases(struct CMUnitTest **tests, data_case_t **cases, size_t n, const char *kind)
{
    char base[PATH_MAX];
    snprintf(base, sizeof base, "%s/%s", DATA, kind);
    struct dirent **ents = NULL;
    int m = scandir(base, &ents, NULL, by_name);
    assert_true(m > 2);
    for (int i = 0; i < m; i++) {
        if (ents[i]->d_name[0] != '.') {
            *cases = realloc(*cases, (n + 1) * sizeof **cases);
            data_case_t *c = &(*cases)[n];
            if (snprintf(c->dir, sizeof c->dir, "%s/%s", base, ents[i]->d_name) >=
                    (int)sizeof c->dir ||
                snprintf(c->name, sizeof c->name, "%s/%s", kind, ents[i]->d_name) >=
                    (int)sizeof c->name)
                fail_msg("case name too long: %s", ents[i]->d_name);
            c->valid = strcmp(kind, "valid") == 0;
            n++;
        }
        free(ents[i]);
    }
    free(ents);
    *tests = realloc(*tests, n * sizeof **tests);
    return n;
}

/* ---- the C tests ---- */

static wsg_config_t *load_text(const char *yaml)
{
    char err[1024] = "";
    wsg_config_t *cfg = NULL;
    int rc = wsg_config_load_string(&cfg, yaml, "t.yaml", err, sizeof err);
    if (rc != 0)
        fail_msg("load failed: %s", err);
    return cfg;
}

static const char minimal_route[] = "routes:\n"
                                    "  - path: /chat\n"
                                    "    backend: http://127.0.0.1:9000/events\n"
                                    "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                                    "    auth: {jwt: {alg: HS256, secret: "
                                    "\"0123456789abcdef0123456789abcdef\"}}\n";

/* The defaults documented in config.h, field by field, independent of the table. */
static void defaults_match_header(void **state)
{
    wsg_config_t *cfg = load_text(minimal_route);
    assert_string_equal(cfg->file, "t.yaml");
    assert_non_null(cfg->edge.id);
    assert_true(strlen(cfg->edge.id) > 0);
    assert_string_equal(cfg->edge.listen, "127.0.0.1:8080");
    assert_int_equal(cfg->edge.max_connections, 100000);
    assert_int_equal(cfg->edge.max_connections_per_ip, 0);
    assert_int_equal(cfg->edge.shutdown_grace_ms, 20000);
    assert_int_equal(cfg->edge.heartbeat_interval_ms, 5000);
    assert_string_equal(cfg->api.listen, "127.0.0.1:8081");
    assert_false(cfg->api.jwt.enabled);
    assert_int_equal(cfg->api.jwt.leeway_s, 5);
    assert_int_equal(cfg->api.max_connections, 10000);
    assert_int_equal(cfg->api.max_connections_per_ip, 256);
    assert_int_equal(cfg->api.connection_timeout_ms, 30000);
    assert_int_equal(cfg->api.request_timeout_ms, 10000);
    assert_int_equal(cfg->api.max_body_bytes, 1048576);
    assert_int_equal(cfg->api.threads, 2);
    assert_string_equal(cfg->nats, "");
    assert_int_equal(strncmp(cfg->store, "sqlite://", 9), 0);
    assert_string_equal(cfg->log.level, "info");
    assert_string_equal(cfg->log.format, "json");
    assert_int_equal(cfg->log.report_interval_ms, 60000);
    assert_int_equal(cfg->cluster.edge_timeout_ms, 15000);
    assert_int_equal(cfg->n_routes, 1);
    const wsg_route_conf_t *r = &cfg->routes[0];
    assert_int_equal(r->line, 2);
    assert_int_equal(r->webhook_key_len, 24);
    assert_true(r->auth.jwt.enabled);
    assert_int_equal(r->auth.jwt.alg, WSG_ALG_HS256);
    assert_int_equal(r->auth.jwt.secret_len, 32);
    assert_null(r->auth.jwt.public_key);
    assert_string_equal(r->auth.jwt.issuer, "");
    assert_string_equal(r->auth.jwt.audience, "");
    assert_int_equal(r->auth.jwt.n_context_claims, 0);
    assert_string_equal(r->auth.authorizer, "");
    assert_int_equal(r->auth.authorizer_timeout_ms, 5000);
    assert_true(r->auth.required);
    assert_int_equal(r->one_connection_per_user, WSG_ONE_CONN_OFF);
    assert_int_equal(r->n_allowed_origins + r->n_allowed_backends + r->n_rules, 0);
    assert_string_equal(r->routing_service, "");
    assert_int_equal(r->limits.max_message_bytes, 131072);
    assert_int_equal(r->limits.rate_mps, 100);
    assert_int_equal(r->limits.rate_burst, 200);
    assert_int_equal(r->limits.max_outbound_bytes, 1048576);
    assert_int_equal(r->limits.ping_interval_ms, 25000);
    assert_int_equal(r->limits.idle_timeout_ms, 60000);
    assert_int_equal(r->limits.max_lifetime_ms, 0);
    assert_int_equal(r->limits.handshake_timeout_ms, 10000);
    assert_int_equal(r->delivery.timeout_ms, 10000);
    assert_int_equal(r->delivery.max_attempts, 10);
    assert_int_equal(r->delivery.max_age_ms, 3600000);
    assert_int_equal(r->delivery.max_concurrency, 64);
    assert_int_equal(r->delivery.batch_max, 1);
    assert_int_equal(r->delivery.backoff_initial_ms, 500);
    assert_int_equal(r->delivery.backoff_max_ms, 60000);
    assert_int_equal(r->delivery.max_response_bytes, 1048576);
    wsg_config_free(cfg);
}

static void rules_and_keys_are_filled(void **state)
{
    wsg_config_t *cfg =
        load_text("routes:\n"
                  "  - path: /chat\n"
                  "    backend: http://127.0.0.1:9000/events\n"
                  "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                  "    auth: {required: false}\n"
                  "    allowed_backends: [http://127.0.0.1:9001/]\n"
                  "    rules:\n"
                  "      - {json: action, equals: join, backend: http://127.0.0.1:9001/e}\n"
                  "      - {regex: '^PING', backend: http://127.0.0.1:9000/events/ping}\n");
    const wsg_route_conf_t *r = wsg_config_route(cfg, "/chat");
    assert_non_null(r);
    assert_null(wsg_config_route(cfg, "/cha"));
    assert_null(wsg_config_route(cfg, "/chat/"));
    assert_int_equal(r->n_rules, 2);
    assert_string_equal(r->rules[0].json_field, "action");
    assert_string_equal(r->rules[0].equals, "join");
    assert_null(r->rules[0].regex);
    assert_int_equal(r->rules[0].line, 8);
    assert_null(r->rules[1].json_field);
    assert_null(r->rules[1].equals);
    assert_string_equal(r->rules[1].regex, "^PING");
    assert_string_equal(r->rules[1].backend, "http://127.0.0.1:9000/events/ping");
    static const unsigned char key_start[] = {0x31, 0xf2, 0x90, 0xf6};
    assert_memory_equal(r->webhook_key, key_start, sizeof key_start);
    wsg_config_free(cfg);
}

static void backend_prefixes_do_not_stretch(void **state)
{
    wsg_config_t *cfg = load_text("routes:\n"
                                  "  - path: /chat\n"
                                  "    backend: http://127.0.0.1:9000\n"
                                  "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                                  "    auth: {required: false}\n"
                                  "    allowed_backends: [http://10.0.0.1/hooks/]\n");
    const wsg_route_conf_t *r = &cfg->routes[0];
    assert_true(wsg_config_backend_allowed(r, "http://127.0.0.1:9000"));
    assert_true(wsg_config_backend_allowed(r, "http://127.0.0.1:9000/x"));
    assert_true(wsg_config_backend_allowed(r, "http://127.0.0.1:9000?q=1"));
    assert_true(wsg_config_backend_allowed(r, "http://10.0.0.1/hooks/a"));
    assert_false(wsg_config_backend_allowed(r, "http://127.0.0.1:90001/"));
    assert_false(wsg_config_backend_allowed(r, "http://127.0.0.1:9000@evil.example/"));
    assert_false(wsg_config_backend_allowed(r, "http://127.0.0.1:9000.evil.example/"));
    assert_false(wsg_config_backend_allowed(r, "http://10.0.0.1/other"));
    assert_false(wsg_config_backend_allowed(r, "https://127.0.0.1:9000/"));
    assert_false(wsg_config_backend_allowed(r, NULL));
    wsg_config_free(cfg);
}

static void public_key_text_is_loaded(void **state)
{
    char dir[PATH_MAX], cwd[PATH_MAX], err[512];
    snprintf(dir, sizeof dir, "%s/valid/rsa_and_ec_keys", DATA);
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    wsg_config_t *cfg = NULL;
    int rc = wsg_config_load(&cfg, "input.yaml", err, sizeof err);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(cfg->api.jwt.public_key, "-----BEGIN PUBLIC KEY-----"));
    assert_int_equal(cfg->api.jwt.public_key_len, strlen(cfg->api.jwt.public_key));
    assert_non_null(strstr(cfg->routes[0].auth.jwt.public_key, "-----BEGIN PUBLIC KEY-----"));
    assert_int_equal(cfg->routes[0].auth.jwt.n_context_claims, 2);
    assert_int_equal(cfg->routes[0].auth.jwt.leeway_s, 30);
    wsg_config_free(cfg);
}

static void env_wins_and_secret_file_is_trimmed(void **state)
{
    char path[] = "/tmp/wsgate-test-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char secret[] = "a-secret-of-more-than-32-bytes-from-a-file\n";
    assert_int_equal(write(fd, secret, sizeof secret - 1), (ssize_t)(sizeof secret - 1));
    close(fd);
    setenv("WSGATE_API_AUTH_JWT_SECRET_FILE", path, 1);
    setenv("WSGATE_STORE", "sqlite:///tmp/from-env.db", 1);
    wsg_config_t *cfg = load_text("store: sqlite:///tmp/from-file.db\n"
                                  "api: {auth: {jwt: {alg: HS256, secret: "
                                  "\"0123456789abcdef0123456789abcdef\"}}}\n");
    unsetenv("WSGATE_API_AUTH_JWT_SECRET_FILE");
    unsetenv("WSGATE_STORE");
    unlink(path);
    assert_string_equal(cfg->store, "sqlite:///tmp/from-env.db");
    assert_string_equal(cfg->api.jwt.secret, "a-secret-of-more-than-32-bytes-from-a-file");
    assert_int_equal(cfg->api.jwt.secret_len, sizeof secret - 2);
    wsg_config_free(cfg);
}

static void describe_never_shows_secrets(void **state)
{
    wsg_config_t *cfg = load_text(minimal_route);
    char *text = describe(cfg);
    assert_null(strstr(text, "0123456789abcdef"));
    assert_null(strstr(text, "MfKQ9r8GKYqr"));
    assert_non_null(strstr(text, "routes[0].auth.jwt.secret = (secret, 32 bytes)\n"));
    free(text);
    wsg_config_free(cfg);
}

/* Credentials in backend URLs are masked in --verbose as in the summary. */
static void describe_masks_url_credentials(void **state)
{
    wsg_config_t *cfg = load_text("routes:\n"
                                  "  - path: /chat\n"
                                  "    backend: http://u:hunter4@127.0.0.1:9000/events\n"
                                  "    allowed_backends: [\"https://v:hunter5@10.0.0.1:443/\"]\n"
                                  "    webhook_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                                  "    auth: {required: false,"
                                  " authorizer: \"http://w:hunter6@127.0.0.1:9001/auth\"}\n");
    char *text = describe(cfg);
    assert_null(strstr(text, "hunter"));
    assert_non_null(strstr(text, "routes[0].backend = http://***@127.0.0.1:9000/events\n"));
    assert_non_null(strstr(text, "https://***@10.0.0.1:443/"));
    free(text);
    wsg_config_free(cfg);
}

static void durations_parse(void **state)
{
    static const struct {
        const char *in;
        uint64_t ms;
    } ok[] = {{"0", 0},        {"25", 25000},     {"25s", 25000}, {"1500ms", 1500}, {"2m", 120000},
              {"1h", 3600000}, {"3d", 259200000}, {"0ms", 0},     {"007s", 7000}};
    static const char *const bad[] = {"",
                                      "s",
                                      "fast",
                                      "1.5s",
                                      "-1s",
                                      "1 s",
                                      "1sec",
                                      "10M",
                                      "1hh",
                                      " 1s",
                                      "1s ",
                                      "0x10",
                                      "99999999999999999999d"};
    uint64_t v;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(wsg_parse_duration_ms(ok[i].in, &v), 0);
        assert_int_equal(v, ok[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (wsg_parse_duration_ms(bad[i], &v) != WSG_EINVAL)
            fail_msg("'%s' parsed as a duration", bad[i]);
    assert_int_equal(wsg_parse_duration_ms(NULL, &v), WSG_EINVAL);
}

static void sizes_parse(void **state)
{
    uint64_t v;
    assert_int_equal(wsg_parse_bytes("131072", &v), 0);
    assert_int_equal(v, 131072);
    assert_int_equal(wsg_parse_bytes("128KiB", &v), 0);
    assert_int_equal(v, 131072);
    assert_int_equal(wsg_parse_bytes("1M", &v), 0);
    assert_int_equal(v, 1048576);
    assert_int_equal(wsg_parse_bytes("2GiB", &v), 0);
    assert_int_equal(v, 2147483648ull);
    assert_int_equal(wsg_parse_bytes("1KB", &v), WSG_EINVAL);
    assert_int_equal(wsg_parse_bytes("-1", &v), WSG_EINVAL);
    assert_int_equal(wsg_parse_bytes("k", &v), WSG_EINVAL);
    assert_int_equal(wsg_parse_bytes("99999999999999999G", &v), WSG_EINVAL);
}

static void alg_names_round_trip(void **state)
{
    for (int a = WSG_ALG_HS256; a <= WSG_ALG_ES512; a++)
        assert_int_equal(wsg_alg_from_name(wsg_alg_name((wsg_alg_t)a)), a);
    assert_int_equal(wsg_alg_from_name("none"), WSG_ALG_NONE);
    assert_int_equal(wsg_alg_from_name("hs256"), WSG_ALG_NONE);
    assert_int_equal(wsg_alg_from_name(NULL), WSG_ALG_NONE);
    assert_string_equal(wsg_alg_name(WSG_ALG_ES384), "ES384");
}

static void missing_file_is_io_error(void **state)
{
    char err[512] = "";
    wsg_config_t *cfg = (wsg_config_t *)1;
    assert_int_equal(wsg_config_load(&cfg, "/nonexistent/wsgate.yaml", err, sizeof err), WSG_EIO);
    assert_null(cfg);
    assert_string_equal(err, "/nonexistent/wsgate.yaml: cannot open: No such file or directory");
    assert_int_equal(wsg_config_load(&cfg, DATA, err, sizeof err), WSG_EIO);
    assert_null(cfg);
    assert_string_equal(err, DATA ": cannot read: Is a directory");
    wsg_config_free(NULL);
}

static void examples_are_valid(void **state)
{
    glob_t g;
    assert_int_equal(glob(WSGATE_SOURCE_DIR "/examples/*.yaml", 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 1);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char err[1024] = "";
        wsg_config_t *cfg = NULL;
        if (wsg_config_load(&cfg, g.gl_pathv[i], err, sizeof err) != 0)
            fail_msg("%s", err);
        assert_true(cfg->n_routes >= 1);
        wsg_config_free(cfg);
    }
    globfree(&g);
}

static void docs_match_schema(void **state)
{
    char *doc = slurp(WSGATE_SOURCE_DIR "/docs/configuration.md");
    assert_non_null(doc);
    char *gen = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&gen, &len);
    wsg_config_print_schema(m);
    fclose(m);
    if (strcmp(doc, gen) != 0)
        fail_msg("docs/configuration.md is stale: regenerate it with "
                 "`wsgate check-config --print-schema > docs/configuration.md`");
    assert_non_null(strstr(gen, "`WSGATE_ROUTES_<N>_LIMITS_PING_INTERVAL`"));
    assert_non_null(strstr(gen, "`WSGATE_API_AUTH_JWT_SECRET_FILE`"));
    free(doc);
    free(gen);
}

/* glibc's per-thread cache and fast bins keep freed chunks counted as in
 * use; main() re-executes the test with them off so the count is exact. */
#define EXACT_HEAP "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0"

/* Loads every case again and again: under ASan, LeakSanitizer sees every
 * path at exit; in plain builds the heap in use must come back to exactly
 * where it was after each pass. */
static void loading_frees_everything(void **state)
{
    const data_case_t *cases = *state;
    const char *tun = getenv("GLIBC_TUNABLES");
    int exact = !UNDER_ASAN && tun && strcmp(tun, EXACT_HEAP) == 0;
    size_t n = 0;
    while (cases[n].dir[0])
        n++;
    for (int round = 0; round < 3; round++) {
        size_t before = mallinfo2().uordblks;
        for (size_t i = 0; i < n; i++) {
            void *st = (void *)&cases[i];
            run_case(&st);
        }
        size_t after = mallinfo2().uordblks;
        if (exact && round > 0 && after > before) /* round 0 warms up library caches */
            fail_msg("heap grew by %zu bytes over one pass", after - before);
    }
}

/* Fails each allocation of a rich load in turn: every outcome is a clean
 * error or the same config, never a crash, and (exact heap) never a leak. */
static void allocation_failures_are_clean(void **state)
{
    static const char *const dirs[] = {"valid/rsa_and_ec_keys", "valid/env_secret_files",
                                       "valid/spec_example", "invalid/rule_backend_not_allowed"};
    const char *tun = getenv("GLIBC_TUNABLES");
    if (UNDER_ASAN)
        skip();
    int exact = tun && strcmp(tun, EXACT_HEAP) == 0;
    char cwd[PATH_MAX], dir[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof cwd));
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        snprintf(dir, sizeof dir, "%s/%s", DATA, dirs[d]);
        assert_int_equal(chdir(dir), 0);
        case_env(1);
        char err[1024], want_err[1024] = "";
        wsg_config_t *cfg = NULL;
        int want = wsg_config_load(&cfg, "input.yaml", want_err, sizeof want_err);
        char *want_text = want == 0 ? describe(cfg) : NULL;
        wsg_config_free(cfg);
        for (long i = 0;; i++) {
            size_t before = mallinfo2().uordblks;
            cfg = NULL;
            err[0] = '\0';
            fail_at = i;
            int rc = wsg_config_load(&cfg, "input.yaml", err, sizeof err);
            int injected = fail_at < 0;
            fail_at = -1;
            if (rc == 0 && want == 0) {
                char *text = describe(cfg);
                assert_string_equal(text, want_text);
                free(text);
            } else if (rc != want || strcmp(err, want_err) != 0) {
                assert_true(injected);
                assert_true(rc == WSG_ENOMEM || rc == WSG_ECONFIG || rc == WSG_EIO);
                assert_true(err[0] != '\0');
                assert_null(cfg);
            }
            wsg_config_free(cfg);
            /* Failures inside libyaml (0.2.5 drops a node when its stack
             * cannot grow) and OpenSSL (caches) leak in those libraries; the
             * leak check holds wsgate's code and libc calls to account. */
            int theirs = injected && (strstr(fail_dso, "libyaml") || strstr(fail_dso, "libcrypto"));
            if (exact && i > 0 && !theirs && mallinfo2().uordblks > before)
                fail_msg("%s: leak when allocation %ld fails in %s (%s)", dirs[d], i, fail_dso,
                         err);
            if (!injected)
                break; /* the load needed fewer than i allocations: all were tried */
        }
        free(want_text);
        case_env(0);
        assert_int_equal(chdir(cwd), 0);
    }
}

int main(int argc, char **argv)
{
    if (!UNDER_ASAN && !getenv("GLIBC_TUNABLES") && argc >= 1) {
        setenv("GLIBC_TUNABLES", EXACT_HEAP, 1);
        execv("/proc/self/exe", argv); /* on failure, run without the exact heap check */
        unsetenv("GLIBC_TUNABLES");
    }
    struct CMUnitTest *tests = NULL;
    data_case_t *cases = NULL;
    size_t n = add_cases(&tests, &cases, 0, "valid");
    n = add_cases(&tests, &cases, n, "invalid");
    cases = realloc(cases, (n + 1) * sizeof *cases);
    cases[n].dir[0] = '\0';
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(defaults_match_header),
        cmocka_unit_test(rules_and_keys_are_filled),
        cmocka_unit_test(backend_prefixes_do_not_stretch),
        cmocka_unit_test(public_key_text_is_loaded),
        cmocka_unit_test(env_wins_and_secret_file_is_trimmed),
        cmocka_unit_test(describe_never_shows_secrets),
        cmocka_unit_test(describe_masks_url_credentials),
        cmocka_unit_test(durations_parse),
        cmocka_unit_test(sizes_parse),
        cmocka_unit_test(alg_names_round_trip),
        cmocka_unit_test(missing_file_is_io_error),
        cmocka_unit_test(examples_are_valid),
        cmocka_unit_test(docs_match_schema),
        cmocka_unit_test_prestate(loading_frees_everything, cases),
        cmocka_unit_test(allocation_failures_are_clean),
    };
    size_t nf = sizeof fixed / sizeof fixed[0];
    tests = realloc(tests, (n + nf) * sizeof *tests);
    for (size_t i = 0; i < n; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].name, .test_func = run_case, .initial_state = &cases[i]};
    memcpy(tests + n, fixed, sizeof fixed);
    int failed = _cmocka_run_group_tests("config", tests, n + nf, NULL, NULL);
    free(tests);
    free(cases);
    return failed;
}
