/* cmd_token.c — placeholder for `wsgate token` until common/jwt.c lands: says so and fails. */
#include <stdio.h>

#include "cmd/cmd.h"

int cmd_token(int argc, char **argv)
{
    fprintf(stderr, "wsgate token: not built yet\n");
    return 1;
}
