/* SPDX-License-Identifier: MIT */
/*
 * text.h — one rule each for text from outside (control API, webhook
 * answers, tokens, authorizer answers): valid UTF-8, valid channel names.
 * Pure functions, any thread.
 */
#ifndef WSG_TEXT_H
#define WSG_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* true if s holds a space or a control character (<= 0x20 or 0x7f): not
 * allowed in URLs, listen addresses and paths taken from config. */
bool wsg_has_ctl_or_space(const char *s);

/* Longest channel name, in bytes (docs/contract.md §4). */
#define WSG_CHANNEL_MAX 255

/* 1 if s[0..n) is valid UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing past U+10FFFF), else 0. U+0000 is valid. */
int wsg_utf8_valid(const char *s, size_t n);

/* The same, and no U+0000: for text kept as a C string or in a store text
 * column (PostgreSQL's text type cannot hold it). */
int wsg_utf8_valid_nonul(const char *s, size_t n);

/* 0 if ch (NUL-terminated) is a channel name: 1..WSG_CHANNEL_MAX bytes of
 * UTF-8 without control characters; else WSG_EINVAL with why in err (which
 * may be NULL). */
int wsg_channel_valid(const char *ch, char *err, size_t errlen);

/* 1 when a Sec-WebSocket-Protocol entry is "bearer.<token>": a client token
 * offered where browsers cannot set headers, never an application protocol. */
#define WSG_BEARER_PREFIX "bearer."
#define WSG_BEARER_PREFIX_LEN (sizeof WSG_BEARER_PREFIX - 1)
static inline int wsg_is_bearer_protocol(const char *p)
{
    return p && strncmp(p, WSG_BEARER_PREFIX, WSG_BEARER_PREFIX_LEN) == 0;
}

#endif
