/* pending.c — placeholder until the store is built; refuses to run. Delete when store.c lands. */
#include "common/err.h"
#include "store/store.h"
int store_open(store_t **out, const char *url, char *err, size_t errlen)
{
    *out = NULL;
    return wsg_errf(err, errlen, WSG_ENOTSUP, "store: not built yet");
}
void store_free(store_t *st) {}
int store_migrate(store_t *st)
{
    return WSG_ENOTSUP;
}
const char *store_errmsg(store_t *st)
{
    return "store: not built yet";
}
