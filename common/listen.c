/* SPDX-License-Identifier: MIT */
/*
 * listen.c — see listen.h. getaddrinfo() resolves the host (numeric
 * addresses and names alike); the family follows the written host: IPv6
 * only for a bracketed literal, so "localhost:8080" stays on IPv4 as before.
 */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/listen.h"

int wsg_listen_addr(const char *listen, wsg_listen_addr_t *out, char *why, size_t whylen)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    char host[256];
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    if (!colon || hl >= sizeof host)
        return wsg_errf(why, whylen, WSG_ECONFIG, "'%s' is not host:port", listen ? listen : "");
    const char *h = listen;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || !end || *end || port < 0 || port > 65535)
        return wsg_errf(why, whylen, WSG_ECONFIG, "'%s': the port is not 0..65535", listen);
    struct addrinfo hints = {.ai_family = strchr(host, ':') ? AF_INET6 : AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    int any = !*host || strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0;
    int gai = getaddrinfo(any ? NULL : host, colon + 1, &hints, &ai);
    if (gai != 0)
        return wsg_errf(why, whylen, WSG_ECONFIG, "'%s': %s", listen, gai_strerror(gai));
    memset(out, 0, sizeof *out);
    memcpy(&out->sa, ai->ai_addr, ai->ai_addrlen);
    out->len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int wsg_listen_port(wsg_listen_addr_t *a, int port)
{
    in_port_t *p = a->sa.ss_family == AF_INET6 ? &((struct sockaddr_in6 *)&a->sa)->sin6_port
                                               : &((struct sockaddr_in *)&a->sa)->sin_port;
    if (port >= 0)
        *p = htons((uint16_t)port);
    return ntohs(*p);
}
