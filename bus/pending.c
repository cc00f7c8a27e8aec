/* pending.c — placeholder until the buses are built; refuses to run. Delete when bus.c lands. */
#include "bus/bus.h"
#include "common/err.h"
int bus_open(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen)
{
    *out = NULL;
    return wsg_errf(err, errlen, WSG_ENOTSUP, "bus: not built yet");
}
int bus_start(bus_t *bus)
{
    return WSG_ENOTSUP;
}
void bus_free(bus_t *bus) {}
