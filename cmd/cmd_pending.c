/* cmd_pending.c — sub-commands not built yet: they say so and fail. */
#include <stdio.h>

#include "cmd/cmd.h"

static int pending(const char *name)
{
    fprintf(stderr, "wsgate %s: not built yet\n", name);
    return 1;
}
int cmd_migrate(int argc, char **argv) { return pending("migrate"); }
int cmd_token(int argc, char **argv) { return pending("token"); }
int cmd_check_config(int argc, char **argv) { return pending("check-config"); }
