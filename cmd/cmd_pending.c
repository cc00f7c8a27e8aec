/* cmd_pending.c — placeholder for `wsgate migrate` until store/ lands: says so and fails. */
#include <stdio.h>

#include "cmd/cmd.h"

int cmd_migrate(int argc, char **argv)
{
    fprintf(stderr, "wsgate migrate: not built yet\n");
    return 1;
}
