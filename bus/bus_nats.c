/*
 * bus_nats.c — the cluster implementation of bus.h over NATS. Not built
 * yet: opening a nats:// bus is refused with WSG_ENOTSUP so that cluster
 * roles fail at start-up with a clear message instead of pretending.
 *
 * The planned shape (bus_int.h's table): client events on a JetStream
 * stream with file storage, subjects wsgate.ev.<partition> (partition =
 * hash(conn_id) % partitions, so order per connection holds), one durable
 * pull consumer per group; commands on wsgate.cmd.<edge_id> with NATS
 * request/reply; publishes on wsgate.ch.<channel> (edges subscribe per
 * channel with interest) and wsgate.bcast; heartbeats on wsgate.hb.
 */
#include "bus/bus_int.h"
#include "common/err.h"

static int nats_open(bus_t **out, const bus_opts_t *opts, char *err, size_t errlen)
{
    *out = NULL;
    /* the URL may carry credentials (nats://user:pass@host): never echoed */
    return wsg_errf(err, errlen, WSG_ENOTSUP,
                    "cluster mode (NATS) is not built yet; run `wsgate standalone` with "
                    "`nats: \"\"`");
}

/* Only open is filled: it never returns a handle, so no other entry of the
 * table can be reached until the implementation lands. */
const bus_ops_t bus_nats_ops = {
    .name = "nats",
    .open = nats_open,
};
