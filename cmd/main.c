/* SPDX-License-Identifier: MIT */
/* main.c — the wsgate binary: picks a sub-command. See cmd.h and README.md. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "wsgate/version.h" /* generated from project(VERSION) */

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"standalone", cmd_standalone, "all roles in one process (SQLite, in-process bus)"},
    {"edge", cmd_edge, "hold client WebSockets (cluster)"},
    {"api", cmd_api, "serve the control API (cluster)"},
    {"dispatch", cmd_dispatch, "deliver client events as webhooks (cluster)"},
    {"migrate", cmd_migrate, "apply migrations/ to the configured store"},
    {"token", cmd_token, "mint a signed JWT for clients or the control API"},
    {"check-config", cmd_check_config, "validate a config file and explain errors"},
    {"top", cmd_top, "live numbers of a running gateway in a terminal"},
    {"secret", cmd_secret, "print a new random whsec_ webhook secret"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: wsgate [command] [--config FILE] [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].help);
    fprintf(f,
            "\nWithout a command wsgate runs standalone. `wsgate COMMAND --help` for details.\n");
}

const char *cmd_config_path(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) && i + 1 < argc)
            return argv[i + 1];
        if (strncmp(argv[i], "--config=", 9) == 0)
            return argv[i] + 9;
    }
    const char *env = getenv("WSGATE_CONFIG");
    return env && *env ? env : NULL;
}

/* glibc gives each busy thread its own malloc arena (up to 8 per core); a
 * burst of connects then leaves memory spread over arenas the edge thread
 * never reuses. Two arenas keep 18,000 idle clients at ~3.8 KiB each instead
 * of ~4.2 KiB (docs/performance.md); per-thread caches keep malloc mostly
 * lock-free anyway. MALLOC_ARENA_MAX in the environment still wins. */
static void limit_malloc_arenas(void)
{
    if (!getenv("MALLOC_ARENA_MAX"))
        mallopt(M_ARENA_MAX, 2);
}

int main(int argc, char **argv)
{
    limit_malloc_arenas();
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0)) {
        printf("wsgate %s\n", WSGATE_VERSION_STRING);
        return 0;
    }
    if (argc < 2 || argv[1][0] == '-')
        return cmd_standalone(argc, argv); /* argv[0] stands in for the command name */
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "wsgate: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
