/* SPDX-License-Identifier: MIT */
/*
 * disp_http.c — one webhook or routing-service request on the dispatcher's
 * curl multi handle: a pooled easy handle (connection reuse through the multi
 * handle's cache), Standard Webhooks headers, a capped response body, the
 * Retry-After header, no redirects, http/https only, TCP_NODELAY; POST, or
 * the method the route's protocol names for the event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/err.h"
#include "common/webhook.h"
#include "dispatcher/disp_core.h"

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    disp_req_t *r = ud;
    size_t n = sz * nm;
    if (r->resp_len + n > r->resp_max) {
        r->truncated = true;
        return 0; /* aborts: CURLE_WRITE_ERROR, checked in disp_on_done() */
    }
    if (r->resp_len + n + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        while (cap < r->resp_len + n + 1)
            cap *= 2;
        char *q = realloc(r->resp, cap);
        if (!q)
            return 0;
        r->resp = q;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, p, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ud)
{
    disp_req_t *r = ud;
    size_t n = sz * nm;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
        size_t v = n - (sizeof name - 1);
        if (v >= sizeof r->retry_after)
            v = sizeof r->retry_after - 1;
        memcpy(r->retry_after, p + sizeof name - 1, v);
        r->retry_after[v] = '\0';
        r->retry_after[strcspn(r->retry_after, "\r\n")] = '\0';
        return n;
    }
    if (disp_meta_header(p, n, &r->set_meta, &r->set_meta_bytes) != 0)
        return 0; /* out of memory: abort the request, it is retried */
    return n;
}

static CURL *easy_get(disp_t *d)
{
    if (d->n_pool > 0) {
        CURL *e = d->pool[--d->n_pool];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

static void easy_put(disp_t *d, CURL *e)
{
    if (d->n_pool == d->cap_pool) {
        size_t cap = d->cap_pool ? d->cap_pool * 2 : 64;
        CURL **p = realloc(d->pool, cap * sizeof *p);
        if (!p) {
            curl_easy_cleanup(e);
            return;
        }
        d->pool = p;
        d->cap_pool = cap;
    }
    d->pool[d->n_pool++] = e;
}

void disp_http_pool_free(disp_t *d)
{
    for (size_t i = 0; i < d->n_pool; i++)
        curl_easy_cleanup(d->pool[i]);
    free(d->pool);
    d->pool = NULL;
    d->n_pool = d->cap_pool = 0;
}

/* The signed headers (with the route protocol's Content-Type and own
 * headers for a webhook), then the routing-service headers of a webhook. */
static int build_headers(disp_conn_t *c, const char *id, const char *event_name, const char *body,
                         size_t len, struct curl_slist **out)
{
    const wsg_route_conf_t *rc = c->rt->conf;
    const disp_proto_t *p = c->req.routing ? &disp_proto_wsgate : c->rt->proto;
    int err = wsg_webhook_headers_ct(rc->webhook_key, rc->webhook_key_len, id, c->id, event_name,
                                     p->content_type, body, len, out);
    if (err == 0 && p->headers)
        err = p->headers(rc, c->id, c->meta, out);
    for (size_t i = 0; err == 0 && !c->req.routing && i < c->n_xh; i++)
        err = wsg_header_add(out, "%s: %s", c->xh[i].name, c->xh[i].value);
    return err;
}

static void set_options(disp_t *d, disp_req_t *r, const char *url, const char *body, size_t len,
                        uint64_t timeout_ms)
{
    CURL *e = r->easy;
    uint64_t connect_ms = timeout_ms < 5000 ? timeout_ms : 5000;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, d->user_agent);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
}

int disp_http_start(disp_t *d, disp_conn_t *c, const char *url, const char *id,
                    const char *event_name, const char *body, size_t len, uint64_t timeout_ms)
{
    disp_req_t *r = &c->req;
    r->resp_len = 0;
    r->truncated = false;
    r->retry_after[0] = '\0';
    curl_slist_free_all(r->set_meta);
    r->set_meta = NULL;
    r->set_meta_bytes = 0;
    r->resp_max = c->rt->conf->delivery.max_response_bytes;
    if (!(r->easy = easy_get(d))) {
        snprintf(c->last_err, sizeof c->last_err, "curl_easy_init failed");
        return WSG_ENOMEM;
    }
    int err = build_headers(c, id, event_name, body, len, &r->hdrs);
    if (err != 0) { /* never sent unsigned or with a header missing */
        snprintf(c->last_err, sizeof c->last_err, "cannot sign or build the request headers: %s",
                 wsg_err_name(err));
        disp_http_end(d, c);
        return err;
    }
    set_options(d, r, url, body, len, timeout_ms);
    const disp_proto_t *p = c->rt->proto;
    if (!r->routing && p->method && c->head) /* a body goes with any method */
        curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, p->method(c->head->ev->type));
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, c);
    int64_t t0 = disp_now_ns();
    CURLMcode mc = curl_multi_add_handle(d->multi, r->easy);
    if (mc != CURLM_OK) {
        snprintf(c->last_err, sizeof c->last_err, "curl: %s", curl_multi_strerror(mc));
        curl_easy_setopt(r->easy, CURLOPT_PRIVATE, NULL);
        disp_http_end(d, c);
        return WSG_EIO;
    }
    r->t0_ns = t0;
    d->inflight++;
    return 0;
}

/* Ends c's request (after completion or on abandon): the easy handle goes
 * back to the pool, headers and a batch body are freed. */
void disp_http_end(disp_t *d, disp_conn_t *c)
{
    disp_req_t *r = &c->req;
    if (r->easy) {
        if (r->t0_ns) { /* it was added to the multi handle */
            curl_multi_remove_handle(d->multi, r->easy);
            d->inflight--;
        }
        easy_put(d, r->easy);
        r->easy = NULL;
    }
    curl_slist_free_all(r->hdrs);
    r->hdrs = NULL;
    free(r->body_owned);
    r->body_owned = NULL;
    r->t0_ns = 0;
}
