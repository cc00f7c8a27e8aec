/* SPDX-License-Identifier: MIT */
/*
 * webhook.h — the headers of a request wsgate signs for a backend (event
 * webhooks from the dispatcher, the edge's authorizer call): JSON body,
 * Standard Webhooks signature (whsig.h), wsgate's own headers. One builder,
 * so that every signed request carries the same headers and none goes out
 * unsigned. Any thread; uses libcurl's slist (and so its allocator).
 */
#ifndef WSG_WEBHOOK_H
#define WSG_WEBHOOK_H

#include <curl/curl.h>
#include <stddef.h>

/* Appends the header line fmt... to *l. Returns 0, WSG_ENOMEM (then *l is
 * unchanged) or WSG_EINVAL (the line would be over 8 KiB). */
int wsg_header_add(struct curl_slist **l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Builds, into a new list *out (curl_slist_free_all), the headers of a POST
 * of body[0..len) signed with key at the current wall-clock second:
 * Content-Type: application/json, an empty Expect: (no 100-continue round
 * trip), webhook-id: id, webhook-timestamp, webhook-signature,
 * wsgate-connection-id: conn_id and wsgate-event: event. Returns 0, or an
 * error with *out NULL when signing or any header failed: nothing may be
 * sent then (an unsigned or half-built request never is). */
int wsg_webhook_headers(const unsigned char *key, size_t key_len, const char *id,
                        const char *conn_id, const char *event, const char *body, size_t len,
                        struct curl_slist **out);

/* The same with another Content-Type (a route speaking another protocol,
 * dispatcher/disp_proto.h). */
int wsg_webhook_headers_ct(const unsigned char *key, size_t key_len, const char *id,
                           const char *conn_id, const char *event, const char *content_type,
                           const char *body, size_t len, struct curl_slist **out);

#endif
