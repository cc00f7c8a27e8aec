/* SPDX-License-Identifier: MIT */
/*
 * netaddr.h — IP addresses, CIDR blocks and the client address of a request
 * that came through trusted proxies (edge.trusted_proxies,
 * api.trusted_proxies; docs/contract.md §2, §6). One rule, used by config validation
 * and by the roles: addresses are parsed with inet_pton only, and an IPv4
 * address written as IPv4-mapped IPv6 (::ffff:a.b.c.d, what a dual-stack
 * socket reports for an IPv4 peer) is that IPv4 address.
 *
 * Pure functions, any thread; a wsg_cidrs_t is read-only once parsed, so
 * any number of threads may match against it.
 */
#ifndef WSG_NETADDR_H
#define WSG_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest address text inet_ntop writes (INET6_ADDRSTRLEN), with its NUL. */
#define WSG_ADDR_TEXT_MAX 46

typedef struct {
    uint8_t b[16]; /* network order; IPv4 in b[0..4) */
    uint8_t v6;    /* 0: IPv4, 1: IPv6 */
} wsg_ip_t;

typedef struct {
    wsg_ip_t net; /* host bits zero */
    uint8_t bits; /* prefix length: 0..32 (IPv4), 0..128 (IPv6) */
} wsg_cidr_t;

typedef struct {
    wsg_cidr_t *v; /* malloc'd */
    size_t n;
} wsg_cidrs_t;

/* Parses an IPv4 or IPv6 address (no port, no brackets, no zone).
 * Returns 0, or WSG_EINVAL. */
int wsg_ip_parse(const char *s, wsg_ip_t *out);

/* Writes ip as inet_ntop does (out: WSG_ADDR_TEXT_MAX bytes). */
void wsg_ip_format(const wsg_ip_t *ip, char *out, size_t outlen);

/* Parses "addr/bits" or a bare address (all bits). Host bits set below the
 * prefix ("10.1.0.0/8") are refused: the block meant is unclear. Returns 0,
 * or WSG_EINVAL with the reason in why (which may be NULL). */
int wsg_cidr_parse(const char *s, wsg_cidr_t *out, char *why, size_t whylen);

/* true when ip lies in c (never across families). */
bool wsg_cidr_match(const wsg_cidr_t *c, const wsg_ip_t *ip);

/* Parses n CIDR texts into out (new; wsg_cidrs_free). Returns 0, or
 * WSG_EINVAL with the first bad entry's reason in why (out then empty). */
int wsg_cidrs_parse(char *const *texts, size_t n, wsg_cidrs_t *out, char *why, size_t whylen);
bool wsg_cidrs_match(const wsg_cidrs_t *set, const wsg_ip_t *ip);
void wsg_cidrs_free(wsg_cidrs_t *set); /* frees what set holds, not set */

/* The client address of a request from peer (its address as text) that
 * carried the X-Forwarded-For header values xff[0..n_xff) in their order
 * (several headers form one list, joined in order). Only when peer lies in
 * trusted is the list believed: it is walked from the right, addresses that
 * lie in trusted are skipped, and the first one that does not is the
 * client's; when every one is trusted, the leftmost is. Empty list elements
 * are skipped. An element that is not an address (a port, "unknown", a
 * typo) where the walk needs one makes the header worthless: the client is
 * the peer. Writes the address (inet_ntop's form) to out (at least
 * WSG_ADDR_TEXT_MAX bytes). Returns 1 when out came from the header, 0 when
 * it is peer (untrusted peer, no header, nothing in it), WSG_EINVAL when it
 * is peer because of a malformed element. */
int wsg_forwarded_client(const wsg_cidrs_t *trusted, const char *peer, const char *const *xff,
                         size_t n_xff, char *out, size_t outlen);

#endif
