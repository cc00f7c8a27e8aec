/* pending_config.c — placeholder until config.c lands; refuses every file. */
#include "common/config.h"
#include "common/err.h"
int wsg_config_load(wsg_config_t **out, const char *path, char *err, size_t errlen)
{
    *out = NULL;
    return wsg_errf(err, errlen, WSG_ENOTSUP, "%s: config loader not built yet", path);
}
void wsg_config_free(wsg_config_t *cfg) {}
