/* SPDX-License-Identifier: MIT */
/*
 * listen.h — the socket address of a listen key (edge.listen, api.listen):
 * "host:port", where host is an IPv4 address or a name ("localhost"),
 * "[v6 address]", or empty, "*" or "0.0.0.0" for every IPv4 address
 * ("[::]" for every IPv6 one). The edge binds its loops' sockets to it and
 * the control API hands it to libmicrohttpd, so both accept the same forms.
 * Any thread.
 */
#ifndef WSG_LISTEN_H
#define WSG_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct {
    struct sockaddr_storage sa;
    socklen_t len;
} wsg_listen_addr_t;

/* Returns 0, or WSG_ECONFIG with the reason in why. */
int wsg_listen_addr(const char *listen, wsg_listen_addr_t *out, char *why, size_t whylen);

/* The port of a (bound) address; sets it with port >= 0. */
int wsg_listen_port(wsg_listen_addr_t *a, int port);

#endif
