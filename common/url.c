/* SPDX-License-Identifier: MIT */
/*
 * url.c — backend URL checks on libcurl's URL API (url.h). Thread: any.
 */
#include "common/url.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "common/text.h"

enum { P_SCHEME, P_USER, P_PASSWORD, P_OPTIONS, P_HOST, P_ZONEID, P_PORT, P_PATH, P_QUERY, P_N };

static const CURLUPart parts[P_N] = {CURLUPART_SCHEME,  CURLUPART_USER, CURLUPART_PASSWORD,
                                     CURLUPART_OPTIONS, CURLUPART_HOST, CURLUPART_ZONEID,
                                     CURLUPART_PORT,    CURLUPART_PATH, CURLUPART_QUERY};

typedef struct {
    char *part[P_N]; /* NULL where the URL has none */
    bool fragment;
} url_parts_t;

static void parts_free(url_parts_t *u)
{
    for (int i = 0; i < P_N; i++)
        curl_free(u->part[i]);
}

bool wsg_url_with_scheme(const char *v, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncasecmp(v, scheme, n) == 0 && v[n] && !strchr("/?#", v[n]) &&
           !wsg_has_ctl_or_space(v);
}

/* "http://" or "https://" and a non-empty authority (wsg_url_with_scheme). */
static bool http_shaped(const char *v)
{
    return wsg_url_with_scheme(v, "http://") || wsg_url_with_scheme(v, "https://");
}

/* Parses url into u (zeroed on failure). Returns 0, WSG_EINVAL (why set) or
 * WSG_ENOMEM. */
static int parse(const char *url, url_parts_t *u, char *why, size_t n)
{
    memset(u, 0, sizeof *u);
    if (!url || !http_shaped(url))
        return wsg_errf(why, n, WSG_EINVAL, "not an http:// or https:// URL");
    CURLU *h = curl_url();
    if (!h)
        return WSG_ENOMEM;
    int rc = 0;
    CURLUcode uc = curl_url_set(h, CURLUPART_URL, url, 0);
    for (int i = 0; i < P_N && uc == CURLUE_OK; i++) {
        uc = curl_url_get(h, parts[i], &u->part[i], i == P_PORT ? CURLU_DEFAULT_PORT : 0);
        if (uc != CURLUE_OK && uc != CURLUE_OUT_OF_MEMORY && i != P_SCHEME && i != P_HOST &&
            i != P_PORT && i != P_PATH)
            uc = CURLUE_OK; /* an optional part the URL does not have */
    }
    char *frag = NULL;
    if (uc == CURLUE_OK && curl_url_get(h, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK)
        u->fragment = true;
    curl_free(frag);
    if (uc == CURLUE_OUT_OF_MEMORY)
        rc = WSG_ENOMEM;
    else if (uc != CURLUE_OK)
        rc = wsg_errf(why, n, WSG_EINVAL, "not a valid URL (%s)", curl_url_strerror(uc));
    else if (strcmp(u->part[P_SCHEME], "http") != 0 && strcmp(u->part[P_SCHEME], "https") != 0)
        rc = wsg_errf(why, n, WSG_EINVAL, "not an http:// or https:// URL");
    curl_url_cleanup(h);
    if (rc != 0)
        parts_free(u);
    return rc;
}

int wsg_url_check_http(const char *url, char *why, size_t n)
{
    url_parts_t u;
    int rc = parse(url, &u, why, n);
    if (rc == 0)
        parts_free(&u);
    return rc;
}

bool wsg_url_is_stream(const char *url)
{
    return url && (wsg_url_with_scheme(url, "ws://") || wsg_url_with_scheme(url, "wss://"));
}

int wsg_url_check_backend(const char *url, char *why, size_t n)
{
    if (!wsg_url_is_stream(url))
        return wsg_url_check_http(url, why, n);
    /* the same parser and rules as a webhook URL: "ws" -> "http", "wss" -> "https" */
    size_t len = strlen(url);
    char *h = malloc(len + 3);
    if (!h)
        return WSG_ENOMEM;
    memcpy(h, "http", 4);
    memcpy(h + 4, url + 2, len - 1); /* "s://..." or "://..." and the NUL */
    int rc = wsg_url_check_http(h, why, n);
    free(h);
    return rc;
}

int wsg_url_check_prefix(const char *prefix, char *why, size_t n)
{
    url_parts_t u;
    int rc = parse(prefix, &u, why, n);
    if (rc != 0)
        return rc;
    if (u.part[P_QUERY] || u.fragment)
        rc = wsg_errf(why, n, WSG_EINVAL, "not a prefix (it has a query or fragment)");
    parts_free(&u);
    return rc;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* A path a decoding backend could read differently from libcurl. */
static bool path_ambiguous(const char *p)
{
    return strchr(p, '\\') || strcasestr(p, "%2e") || strcasestr(p, "%2f") || strcasestr(p, "%5c");
}

static bool path_within(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return false;
    return (n > 0 && prefix[n - 1] == '/') || path[n] == '\0' || path[n] == '/';
}

bool wsg_url_within(const char *url, const char *prefix)
{
    url_parts_t c, p;
    if (parse(url, &c, NULL, 0) != 0)
        return false;
    if (parse(prefix, &p, NULL, 0) != 0) {
        parts_free(&c);
        return false;
    }
    bool ok = strcmp(c.part[P_SCHEME], p.part[P_SCHEME]) == 0 &&
              strcasecmp(c.part[P_HOST], p.part[P_HOST]) == 0 &&
              same(c.part[P_ZONEID], p.part[P_ZONEID]) && same(c.part[P_PORT], p.part[P_PORT]) &&
              same(c.part[P_USER], p.part[P_USER]) &&
              same(c.part[P_PASSWORD], p.part[P_PASSWORD]) &&
              same(c.part[P_OPTIONS], p.part[P_OPTIONS]) && !path_ambiguous(c.part[P_PATH]) &&
              path_within(c.part[P_PATH], p.part[P_PATH]) &&
              (!p.part[P_QUERY] || same(c.part[P_QUERY], p.part[P_QUERY]));
    parts_free(&c);
    parts_free(&p);
    return ok;
}
