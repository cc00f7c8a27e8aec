/* SPDX-License-Identifier: MIT */
/*
 * cmd.h — the sub-commands of the one wsgate binary. Each takes the
 * arguments after its own name (argv[0] is the sub-command) and returns the
 * process exit status: 0 ok, 1 runtime failure, 2 usage or config error.
 */
#ifndef WSG_CMD_H
#define WSG_CMD_H

#include <stddef.h>

#include "common/config.h"

int cmd_standalone(int argc, char **argv);
int cmd_edge(int argc, char **argv);
int cmd_api(int argc, char **argv);
int cmd_dispatch(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_check_config(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_secret(int argc, char **argv);

/* Finds "--config FILE" / "-c FILE" / "--config=FILE" in argv; falls back to
 * $WSGATE_CONFIG, then to NULL. Borrowed string. */
const char *cmd_config_path(int argc, char **argv);

/* cmd_wsaas.c: the configuration of a gateway started with no config file
 * and API_URI set (seed "Web Socket as a Service"'s environment variables).
 * Returns 0 (*out new), WSG_ECONFIG (why in err) or WSG_ENOMEM. */
int cmd_wsaas_config(wsg_config_t **out, char *err, size_t errlen);

#endif
