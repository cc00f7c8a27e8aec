/* SPDX-License-Identifier: MIT */
/*
 * url.h — which http(s) URLs a route may send its events to (docs/contract.md §3
 * "Routing": no SSRF). Both a backend URL and each allowed prefix are parsed
 * with libcurl's URL API, the parser that later sends the request, so what
 * is checked is what is sent: dot segments resolved, scheme and host
 * compared without case, ports with their defaults filled in.
 *
 * Pure functions: callable from any thread (curl_url needs no global init).
 */
#ifndef WSG_URL_H
#define WSG_URL_H

#include <stdbool.h>
#include <stddef.h>

/* true if v starts with scheme (e.g. "nats://", any case), then a non-empty
 * authority (not '/', '?' or '#'), and holds no space or control character.
 * The shape only; libcurl alone would read "http:///x" as host x. */
bool wsg_url_with_scheme(const char *v, const char *scheme);

/* 0 if url is an absolute http:// or https:// URL with a host that libcurl's
 * parser accepts; otherwise WSG_EINVAL with the reason in why (the URL is
 * not copied into why: it may carry credentials). */
int wsg_url_check_http(const char *url, char *why, size_t n);

/* true if url is shaped like a backend stream's URL: "ws://" or "wss://"
 * (any case) and a non-empty authority (docs/webhooks.md "Backend
 * streams"). */
bool wsg_url_is_stream(const char *url);

/* 0 if url can be a route's backend: wsg_url_check_http(), or a ws:// or
 * wss:// URL that passes it with http:// or https:// in its place; otherwise
 * WSG_EINVAL (or WSG_ENOMEM) with the reason in why. */
int wsg_url_check_backend(const char *url, char *why, size_t n);

/* 0 if prefix can be an allowed_backends entry: wsg_url_check_http() and no
 * query or fragment (a prefix ends in its path); else WSG_EINVAL and why. */
int wsg_url_check_prefix(const char *prefix, char *why, size_t n);

/* true if url is within prefix: both parse (wsg_url_check_http), scheme,
 * host, port and userinfo are the same, and url's path (dot segments
 * resolved) is prefix's path or continues it at a '/' (a prefix path ending
 * in '/' is its own boundary). A prefix with a query admits only that query.
 * Refused whatever the prefix: a path holding %2e, %2f, %5c or '\' (a
 * backend that decodes them would resolve segments libcurl did not). */
bool wsg_url_within(const char *url, const char *prefix);

#endif
