/* SPDX-License-Identifier: MIT */
/*
 * test_metrics.c — the Prometheus registry of common/metrics.c: counters,
 * labelled counter families, gauges, histogram buckets and sums in the
 * rendered text, and durations a
 * caller's clock may get wrong (negative, NaN, absurdly large) kept sane.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/metrics.h"
#include "common/recent.h"

/* The value on the line that starts with "name " (or name{...} when given). */
static double metric(const char *text, const char *name)
{
    char key[160];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    if (!p)
        fail_msg("no %s in the rendering", name);
    return strtod(p + strlen(key), NULL);
}

/* The rendering, heap, or fails the test. The buffer comes back through
 * a parameter: returned from here, gcc -O3 took it for a pointer to this
 * function's local (-Wdangling-pointer). */
static void render_to(char **out)
{
    size_t len = 0;
    *out = NULL;
    assert_int_equal(wsg_metrics_render(out, &len), 0);
    assert_int_equal(strlen(*out), len);
}

static void counters_gauges_and_buckets(void **state)
{
    wsg_count(WSG_M_FRAMES_IN, 3);
    wsg_gauge_set(WSG_G_CONNECTIONS, 5);
    wsg_gauge_add(WSG_G_CONNECTIONS, -2);
    wsg_observe(WSG_H_WEBHOOK_SECONDS, 0.004);
    wsg_observe(WSG_H_WEBHOOK_SECONDS, 100);
    char *t;
    render_to(&t);
    assert_true(metric(t, "wsgate_frames_in_total") == 3);
    assert_true(metric(t, "wsgate_connections") == 3);
    assert_true(metric(t, "wsgate_webhook_duration_seconds_bucket{le=\"0.005\"}") == 1);
    assert_true(metric(t, "wsgate_webhook_duration_seconds_bucket{le=\"30\"}") == 1);
    assert_true(metric(t, "wsgate_webhook_duration_seconds_bucket{le=\"+Inf\"}") == 2);
    assert_true(metric(t, "wsgate_webhook_duration_seconds_count") == 2);
    assert_true(fabs(metric(t, "wsgate_webhook_duration_seconds_sum") - 100.004) < 1e-6);
    free(t);
}

/* A negative or NaN duration (a wall clock stepped back) counts in the
 * first bucket as 0 s; a huge one in +Inf, capped at 1e9 s, so that the sum
 * is never wrapped around by a conversion out of range. */
static void bad_durations_do_not_wrap_the_sum(void **state)
{
    wsg_observe(WSG_H_EVENT_SECONDS, -1.0);
    wsg_observe(WSG_H_EVENT_SECONDS, NAN);
    char *t;
    render_to(&t);
    assert_true(metric(t, "wsgate_event_delivery_seconds_count") == 2);
    assert_true(metric(t, "wsgate_event_delivery_seconds_bucket{le=\"0.0005\"}") == 2);
    assert_true(metric(t, "wsgate_event_delivery_seconds_sum") == 0);
    free(t);
    wsg_observe(WSG_H_EVENT_SECONDS, 1e300); /* capped at 1e9 s */
    render_to(&t);
    assert_true(metric(t, "wsgate_event_delivery_seconds_bucket{le=\"30\"}") == 2);
    assert_true(metric(t, "wsgate_event_delivery_seconds_bucket{le=\"+Inf\"}") == 3);
    assert_true(metric(t, "wsgate_event_delivery_seconds_sum") == 1e9);
    free(t);
}

/* A labelled family: one HELP and TYPE, then one line per label value. */
/* The quantile bounds the dashboard shows are bucket upper bounds. */
static void histogram_read_gives_bucket_bounds(void **state)
{
    (void)state;
    static const double q[] = {0.5, 0.99, 1.0};
    double le[3], sum;
    uint64_t before, count;
    wsg_histogram_read(WSG_H_EVENT_SECONDS, q, le, 3, &before, &sum);
    assert_true(before <= 3); /* what bad_durations_do_not_wrap_the_sum observed */
    for (int i = 0; i < 1000; i++)
        wsg_observe(WSG_H_EVENT_SECONDS, 0.0007); /* bucket le=0.001 */
    for (int i = 0; i < 20; i++)
        wsg_observe(WSG_H_EVENT_SECONDS, 0.02); /* le=0.025 */
    wsg_observe(WSG_H_EVENT_SECONDS, 1e6);      /* past the last bound */
    wsg_histogram_read(WSG_H_EVENT_SECONDS, q, le, 3, &count, &sum);
    assert_int_equal(count, before + 1021);
    assert_true(le[0] == 0.001);
    assert_true(le[1] == 0.025);
    assert_true(isinf(le[2]));
}

/* The ring keeps the newest WSG_RECENT_N; a reader gets what is newer than
 * its last seq, at most max, oldest first. */
static void recent_ring_wraps_and_pages(void **state)
{
    (void)state;
    wsg_recent_t out[8];
    uint64_t last = 99;
    assert_int_equal(wsg_recent_since(0, out, 8, &last), 0);
    assert_int_equal(last, 0);
    for (int i = 1; i <= WSG_RECENT_N + 10; i++)
        wsg_recent_add("test", "event %d %s", i, i == 3 ? "with a long tail that is cut" : "");
    assert_int_equal(wsg_recent_since(0, out, 8, &last), 8); /* the newest 8 */
    assert_int_equal(last, WSG_RECENT_N + 10);
    assert_int_equal(out[0].seq, WSG_RECENT_N + 3);
    assert_int_equal(out[7].seq, WSG_RECENT_N + 10);
    assert_string_equal(out[7].kind, "test");
    char want[32];
    snprintf(want, sizeof want, "event %d ", WSG_RECENT_N + 10);
    assert_string_equal(out[7].text, want);
    assert_int_equal(wsg_recent_since(WSG_RECENT_N + 8, out, 8, &last), 2);
    assert_int_equal(out[0].seq, WSG_RECENT_N + 9);
    assert_int_equal(wsg_recent_since(WSG_RECENT_N + 10, out, 8, &last), 0);
    assert_int_equal(wsg_recent_since(1000000, out, 8, &last), 0); /* another run's seq */
    static wsg_recent_t all[2 * WSG_RECENT_N];
    size_t n = wsg_recent_since(0, all, 2 * WSG_RECENT_N, &last);
    assert_int_equal(n, WSG_RECENT_N); /* overwritten ones are gone */
    assert_int_equal(all[0].seq, 11);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(all[i].seq, all[i - 1].seq + 1);
}

static void labelled_counters_form_one_family(void **state)
{
    wsg_count(WSG_M_UNDURABLE_CLOSES_NOSPC, 2);
    wsg_count(WSG_M_UNDURABLE_CLOSES_BUS, 1);
    char *t;
    render_to(&t);
    assert_true(metric(t, "wsgate_undurable_closes_total{cause=\"storage_full\"}") == 2);
    assert_true(metric(t, "wsgate_undurable_closes_total{cause=\"bus_unavailable\"}") == 0);
    assert_true(metric(t, "wsgate_undurable_closes_total{cause=\"bus_error\"}") == 1);
    assert_true(metric(t, "wsgate_read_pauses_total{cause=\"bus_full\"}") == 0);
    const char *help = "# HELP wsgate_undurable_closes_total ",
               *type = "# TYPE wsgate_undurable_closes_total counter\n";
    const char *h = strstr(t, help), *ty = strstr(t, type);
    assert_non_null(h);
    assert_null(strstr(h + 1, help));
    assert_non_null(ty);
    assert_null(strstr(ty + 1, type));
    assert_true(ty < strstr(t, "wsgate_undurable_closes_total{"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counters_gauges_and_buckets),
        cmocka_unit_test(labelled_counters_form_one_family),
        cmocka_unit_test(bad_durations_do_not_wrap_the_sum),
        cmocka_unit_test(recent_ring_wraps_and_pages),
        cmocka_unit_test(histogram_read_gives_bucket_bounds), /* after bad_durations_... */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
