/* pending.c — placeholder until the dispatcher is built; refuses to run. Delete when dispatch.c
 * lands. */
#include "common/err.h"
#include "dispatcher/dispatch.h"
int disp_new(disp_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen)
{
    *out = NULL;
    return wsg_errf(err, errlen, WSG_ENOTSUP, "dispatcher: not built yet");
}
int disp_start(disp_t *d, char *err, size_t errlen)
{
    return WSG_ENOTSUP;
}
void disp_stop(disp_t *d) {}
void disp_free(disp_t *d) {}
