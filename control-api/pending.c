/* pending.c — placeholder until the control API is built; refuses to run. Delete when api.c lands.
 */
#include "common/err.h"
#include "control-api/api.h"
int api_new(api_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen)
{
    *out = NULL;
    return wsg_errf(err, errlen, WSG_ENOTSUP, "control api: not built yet");
}
int api_start(api_t *a, char *err, size_t errlen)
{
    return WSG_ENOTSUP;
}
int api_port(const api_t *a)
{
    return 0;
}
void api_stop(api_t *a) {}
void api_free(api_t *a) {}
