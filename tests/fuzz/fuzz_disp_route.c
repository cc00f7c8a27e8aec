/* SPDX-License-Identifier: MIT */
/*
 * fuzz_disp_route.c — libFuzzer target for what the dispatcher reads when
 * it picks a backend (dispatcher/disp_route.c, common/url.c). The first
 * input byte picks what the rest is:
 *   even: a routing service's answer, parsed by disp_route_answer_parse();
 *         a backend it names is then checked against the route's
 *         allowed_backends (wsg_config_backend_allowed);
 *   odd:  a stored message envelope, whose payload disp_event_payload()
 *         extracts and the route's rules (JSON field and regex) match.
 * Checks: headers kept are tokens the dispatcher does not set itself with
 * values free of CR/LF; an allowed backend is http://127.0.0.1:9000 under
 * /events or https://hooks.example.com under /t/ once libcurl has parsed
 * it; a rule returns one of the configured backends.
 */
#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dispatcher/disp_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *allowed[] = {"http://127.0.0.1:9000/events", "https://hooks.example.com/t/"};
static wsg_rule_conf_t rules[] = {
    {.json_field = "action", .equals = "join", .backend = "http://127.0.0.1:9000/events/join"},
    {.regex = "^PING|\\d{3,}x$", .backend = "http://127.0.0.1:9000/events/ping"},
};
static wsg_route_conf_t route = {.path = "/chat",
                                 .backend = "http://127.0.0.1:9000/events",
                                 .allowed_backends = allowed,
                                 .n_allowed_backends = 2,
                                 .rules = rules,
                                 .n_rules = 2};

/* What libcurl makes of an allowed URL: host and resolved path. */
static void check_allowed(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *path = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        abort(); /* allowed but not parseable */
    int ok = (strcasecmp(host, "127.0.0.1") == 0 &&
              (strcmp(path, "/events") == 0 || strncmp(path, "/events/", 8) == 0)) ||
             (strcasecmp(host, "hooks.example.com") == 0 && strncmp(path, "/t/", 3) == 0);
    if (!ok || strstr(path, "/../") || strcasestr(path, "%2e") || strcasestr(path, "%2f"))
        abort();
    curl_free(host);
    curl_free(path);
    curl_url_cleanup(u);
}

static void check_headers(const disp_header_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!h[i].name || !h[i].value || !*h[i].name || strpbrk(h[i].value, "\r\n"))
            abort();
        if (strncasecmp(h[i].name, "webhook-", 8) == 0 || strcasecmp(h[i].name, "host") == 0 ||
            strcasecmp(h[i].name, "content-length") == 0 || strpbrk(h[i].name, " :\r\n"))
            abort();
    }
}

static void route_answer(const char *p, size_t n)
{
    char *backend = NULL, err[256];
    disp_header_t *h = NULL;
    size_t nh = 0;
    if (disp_route_answer_parse(p, n, &backend, &h, &nh, err, sizeof err) != 0) {
        if (backend || h || nh)
            abort(); /* a refused answer keeps nothing */
        return;
    }
    check_headers(h, nh);
    if (backend && wsg_config_backend_allowed(&route, backend))
        check_allowed(backend);
    free(backend);
    disp_headers_free(h, nh);
}

static void envelope(const disp_rules_t *rs, const char *p, size_t n)
{
    char *payload = NULL;
    size_t plen = 0;
    bool binary = false;
    if (disp_event_payload(p, n, &payload, &plen, &binary) != 0) {
        if (payload)
            abort();
        return;
    }
    if (payload[plen] != '\0')
        abort();
    const char *hit = disp_rules_match(rs, payload, plen, binary);
    if (hit && hit != rules[0].backend && hit != rules[1].backend)
        abort();
    free(payload);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static disp_rules_t *rs;
    char err[256];
    if (!rs && disp_rules_new(&rs, &route, err, sizeof err) != 0)
        abort();
    if (size < 1)
        return 0;
    if (data[0] % 2 == 0)
        route_answer((const char *)data + 1, size - 1);
    else
        envelope(rs, (const char *)data + 1, size - 1);
    return 0;
}
