/* SPDX-License-Identifier: MIT */
/*
 * test_webhook.c — common/webhook.c, the headers of every signed request
 * (dispatcher webhooks, the edge's authorizer call): all of them present,
 * a signature that verifies, and on any failure — signing refused, or any
 * one of libcurl's allocations failing (injected through
 * curl_global_init_mem) — an error and no list at all, so that nothing can
 * go out unsigned or with a header missing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/webhook.h"
#include "common/whsig.h"

/* libcurl's allocations: the fail_at-th one from now fails (0: none). */
static long alloc_n, fail_at;

static int fail_now(void)
{
    return fail_at && ++alloc_n == fail_at;
}
static void *t_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}
static void *t_calloc(size_t k, size_t n)
{
    return fail_now() ? NULL : calloc(k, n);
}
static void *t_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}
static char *t_strdup(const char *s)
{
    return fail_now() ? NULL : strdup(s);
}

static const unsigned char key[] = "0123456789abcdef0123456789abcdef";
static const char body[] = "{\"type\":\"connect\"}";

static const char *find(const struct curl_slist *l, const char *name)
{
    size_t n = strlen(name);
    for (; l; l = l->next)
        if (strncmp(l->data, name, n) == 0 && l->data[n] == ':')
            return l->data[n + 1] == ' ' ? l->data + n + 2 : l->data + n + 1;
    return NULL;
}

static void all_headers_signed(void **state)
{
    (void)state;
    struct curl_slist *l = NULL;
    assert_int_equal(wsg_webhook_headers(key, sizeof key - 1, "evt_1", "conn_1", "connect", body,
                                         strlen(body), &l),
                     0);
    size_t n = 0;
    for (const struct curl_slist *p = l; p; p = p->next)
        n++;
    assert_int_equal(n, 7);
    assert_string_equal(find(l, "Content-Type"), "application/json");
    assert_string_equal(find(l, "Expect"), "");
    assert_string_equal(find(l, "webhook-id"), "evt_1");
    assert_string_equal(find(l, "wsgate-connection-id"), "conn_1");
    assert_string_equal(find(l, "wsgate-event"), "connect");
    long long ts = atoll(find(l, "webhook-timestamp"));
    long long now = wsg_wall_ms() / 1000;
    assert_true(ts >= now - 5 && ts <= now);
    assert_int_equal(wsg_whsig_verify(key, sizeof key - 1, "evt_1", ts, body, strlen(body),
                                      find(l, "webhook-signature"), now, 5),
                     0);
    curl_slist_free_all(l);
}

static void failed_signature_sends_nothing(void **state)
{
    (void)state;
    char id[300];
    memset(id, 'i', sizeof id - 1);
    id[sizeof id - 1] = '\0'; /* longer than whsig accepts: signing fails */
    struct curl_slist *l = (struct curl_slist *)&l;
    assert_int_not_equal(
        wsg_webhook_headers(key, sizeof key - 1, id, "c", "connect", body, strlen(body), &l), 0);
    assert_null(l);
}

static void every_allocation_failure(void **state)
{
    (void)state;
    int failures = 0;
    for (long k = 1;; k++) {
        struct curl_slist *l = NULL;
        alloc_n = 0;
        fail_at = k;
        int rc = wsg_webhook_headers(key, sizeof key - 1, "evt_1", "conn_1", "message", body,
                                     strlen(body), &l);
        long used = alloc_n;
        fail_at = 0;
        if (used < k) { /* all of them succeeded: the whole list */
            assert_int_equal(rc, 0);
            assert_non_null(find(l, "webhook-signature"));
            curl_slist_free_all(l);
            break;
        }
        failures++;
        assert_int_equal(rc, WSG_ENOMEM);
        assert_null(l);
    }
    assert_true(failures >= 7); /* at least one allocation per header */
}

static void long_header_line(void **state)
{
    (void)state;
    char v[2000];
    memset(v, 'v', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    struct curl_slist *l = NULL;
    assert_int_equal(wsg_header_add(&l, "x-long: %s", v), 0);
    assert_int_equal(strlen(find(l, "x-long")), sizeof v - 1);
    char *huge = malloc(9000);
    assert_non_null(huge);
    memset(huge, 'h', 8999);
    huge[8999] = '\0';
    assert_int_equal(wsg_header_add(&l, "x-huge: %s", huge), WSG_EINVAL);
    assert_null(l->next);
    free(huge);
    curl_slist_free_all(l);
}

int main(void)
{
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, t_malloc, free, t_realloc, t_strdup, t_calloc) !=
        CURLE_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(all_headers_signed),
        cmocka_unit_test(failed_signature_sends_nothing),
        cmocka_unit_test(every_allocation_failure),
        cmocka_unit_test(long_header_line),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
