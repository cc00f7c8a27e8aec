/* SPDX-License-Identifier: MIT */
/*
 * cmd_check_config.c — `wsgate check-config`: loads a config file exactly
 * as the roles would (file, then WSGATE_* environment, then every check)
 * and either prints a short summary (exit 0) or every error on stderr, a
 * "FILE:LINE: key: reason" line each, with "did you mean KEY?" for a
 * misspelt key, then their count when there are several (exit 2). The summary never shows secrets:
 * store and NATS URLs appear as their kind only and userinfo in backend URLs is masked.
 * --print-schema writes the markdown key reference (docs/configuration.md).
 */
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/config.h"
#include "common/config_schema.h"
#include "common/err.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: wsgate check-config [--config FILE] [--verbose]\n"
               "       wsgate check-config --print-schema\n"
               "\n"
               "Validates a configuration file with its WSGATE_* environment overrides and\n"
               "prints a summary; on errors prints each as FILE:LINE: key: reason (with\n"
               "\"did you mean KEY?\" for a misspelt key) and exits 2.\n"
               "\n"
               "  -c, --config FILE  the file to check (default: $WSGATE_CONFIG)\n"
               "  -v, --verbose      also print every effective value (secrets as lengths)\n"
               "  --print-schema     print the key reference as markdown and exit\n"
               "  -h, --help         this help\n");
}

static const char *route_auth(const wsg_route_conf_t *r, char *buf, size_t n)
{
    const char *jwt = r->auth.jwt.enabled ? wsg_alg_name(r->auth.jwt.alg) : NULL;
    const char *az = *r->auth.authorizer ? "authorizer" : NULL;
    snprintf(buf, n, "%s%s%s%s%s", jwt ? "jwt " : "", jwt ? jwt : "", jwt && az ? " + " : "",
             az ? az : "", r->auth.required ? "" : (jwt || az ? ", optional" : "anonymous"));
    return buf;
}

static void summary(const wsg_config_t *cfg)
{
    char buf[128], url[4096];
    printf("%s: OK\n", cfg->file);
    printf("  edge:   %s (id %s)\n", cfg->edge.listen, cfg->edge.id);
    printf("  api:    %s (auth: %s)\n", cfg->api.listen,
           cfg->api.jwt.enabled ? wsg_alg_name(cfg->api.jwt.alg)
                                : "none: anyone who reaches it may use it");
    printf("  store:  %s\n", strncmp(cfg->store, "sqlite:", 7) == 0 ? "sqlite" : "postgres");
    printf("  bus:    %s\n", *cfg->nats ? "nats (cluster)" : "in-process (standalone)");
    printf("  routes: %zu\n", cfg->n_routes);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const wsg_route_conf_t *r = &cfg->routes[i];
        cfg_mask_url(r->backend, url, sizeof url); /* user:password@ shown as ***@ */
        printf("    %s -> %s", r->path, url);
        printf(" (auth: %s; rules: %zu%s", route_auth(r, buf, sizeof buf), r->n_rules,
               *r->routing_service ? "; routing service" : "");
        if (r->protocol != WSG_PROTO_WSGATE)
            printf("; protocol: %s", wsg_protocol_name(r->protocol));
        printf(")\n");
    }
}

int cmd_check_config(int argc, char **argv)
{
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--print-schema") == 0) {
            wsg_config_print_schema(stdout);
            return 0;
        }
        if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            verbose = 1;
        } else if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
            if (++i >= argc) {
                fprintf(stderr, "wsgate check-config: %s needs a FILE\n", a);
                return 2;
            }
        } else if (strncmp(a, "--config=", 9) != 0) {
            fprintf(stderr, "wsgate check-config: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    const char *path = cmd_config_path(argc, argv);
    if (!path) {
        fprintf(stderr, "wsgate check-config: give --config FILE (or set WSGATE_CONFIG)\n");
        return 2;
    }
    static char err[65536]; /* every error, a line each */
    unsigned n_errs = 0;
    wsg_config_t *cfg = NULL;
    if (wsg_config_check_file(&cfg, path, err, sizeof err, &n_errs) != 0) {
        fprintf(stderr, "%s\n", err);
        if (n_errs > 1)
            fprintf(stderr, "%s: %u errors\n", path, n_errs);
        return 2;
    }
    summary(cfg);
    if (verbose)
        wsg_config_describe(cfg, stdout);
    wsg_config_free(cfg);
    return 0;
}
