/* cmd_check_config.c — placeholder until the config loader lands: says so and fails. */
#include <stdio.h>

#include "cmd/cmd.h"

int cmd_check_config(int argc, char **argv)
{
    fprintf(stderr, "wsgate check-config: not built yet\n");
    return 1;
}
