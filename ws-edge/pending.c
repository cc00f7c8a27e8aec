/* pending.c — placeholder until the edge is built; refuses to run. Delete when edge.c lands. */
#include "common/err.h"
#include "ws-edge/edge.h"
int edge_new(edge_t **out, const wsg_config_t *cfg, bus_t *bus, char *err, size_t errlen)
{
    *out = NULL;
    return wsg_errf(err, errlen, WSG_ENOTSUP, "edge: not built yet");
}
int edge_run(edge_t *e)
{
    return WSG_ENOTSUP;
}
void edge_stop(edge_t *e) {}
int edge_port(const edge_t *e)
{
    return 0;
}
void edge_free(edge_t *e) {}
