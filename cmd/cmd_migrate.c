/* SPDX-License-Identifier: MIT */
/*
 * cmd_migrate.c — `wsgate migrate`: applies the migrations embedded in this
 * binary (the .sql files of migrations/, at build time) to the store named by the config
 * file's `store:` key, or by --store URL directly. Idempotent; safe to run
 * from several processes at once (a Helm hook and a start-up, say).
 * Prints the schema version before and after; never prints the URL, which
 * may hold a password.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/config.h"
#include "common/err.h"
#include "store/store.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: wsgate migrate --config FILE\n"
               "       wsgate migrate --store URL\n\n"
               "Applies the schema migrations built into this binary to the store:\n"
               "  --config FILE, -c FILE  take the store URL from FILE's `store:` key\n"
               "                          (default $WSGATE_CONFIG; $WSGATE_STORE overrides)\n"
               "  --store URL             sqlite:///path.db or postgres://user@host/db\n"
               "Exit status: 0 done, 1 store unreachable or a migration failed, 2 usage.\n");
}

/* Parses argv; *store / *config are borrowed from argv or the environment. */
static int parse_args(int argc, char **argv, const char **store, const char **config)
{
    *store = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        bool takes_value =
            strcmp(a, "--store") == 0 || strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0;
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "wsgate migrate: %s needs a value\n\n", a);
            usage(stderr);
            return 2;
        }
        if (strcmp(a, "--store") == 0)
            *store = argv[++i];
        else if (strncmp(a, "--store=", 8) == 0)
            *store = a + 8;
        else if (takes_value)
            i++; /* --config FILE: read by cmd_config_path */
        else if (strncmp(a, "--config=", 9) != 0) {
            fprintf(stderr, "wsgate migrate: unexpected argument '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    *config = cmd_config_path(argc, argv);
    return 0;
}

static int migrate_url(const char *url)
{
    char err[512] = "";
    store_t *st = NULL;
    int rc = store_open(&st, url, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "wsgate migrate: cannot open the store: %s (%s)\n", err, wsg_err_name(rc));
        return rc == WSG_EINVAL ? 2 : 1;
    }
    int64_t before = 0, after = 0, embedded = 0;
    if ((rc = store_schema_version(st, &before, &embedded)) == 0 && (rc = store_migrate(st)) == 0)
        rc = store_schema_version(st, &after, NULL);
    if (rc != 0) {
        fprintf(stderr, "wsgate migrate: %s (%s)\n", store_errmsg(st), wsg_err_name(rc));
        store_free(st);
        return 1;
    }
    store_free(st);
    if (before == after)
        printf("wsgate migrate: schema already at version %" PRId64 "\n", after);
    else
        printf("wsgate migrate: schema migrated from version %" PRId64 " to %" PRId64 "\n", before,
               after);
    if (after > embedded)
        fprintf(stderr,
                "wsgate migrate: warning: the store is at version %" PRId64
                ", newer than this binary's %" PRId64 "\n",
                after, embedded);
    return 0;
}

int cmd_migrate(int argc, char **argv)
{
    const char *store = NULL, *config = NULL;
    int rc = parse_args(argc, argv, &store, &config);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if (store)
        return migrate_url(store);
    if (!config) {
        const char *env = getenv("WSGATE_STORE");
        if (env && *env)
            return migrate_url(env);
        fprintf(stderr, "wsgate migrate: give --config FILE or --store URL\n\n");
        usage(stderr);
        return 2;
    }
    char err[1024] = "";
    wsg_config_t *cfg = NULL;
    if ((rc = wsg_config_load(&cfg, config, err, sizeof err)) != 0) {
        fprintf(stderr, "wsgate migrate: %s\n", err);
        return 2;
    }
    if (!cfg->store || !*cfg->store) {
        fprintf(stderr, "wsgate migrate: %s: no `store:` URL configured\n", config);
        wsg_config_free(cfg);
        return 2;
    }
    rc = migrate_url(cfg->store);
    wsg_config_free(cfg);
    return rc;
}
