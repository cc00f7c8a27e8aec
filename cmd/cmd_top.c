/* SPDX-License-Identifier: MIT */
/*
 * cmd_top.c — `wsgate top`: the operator dashboard's numbers in a terminal
 * (docs/dashboard.md). Polls the control API's GET /v1/stats (admin token)
 * once a second and redraws with plain ANSI escapes: connections per route
 * and edge, channels, message and webhook rates (from the difference of two
 * snapshots), webhook status counts and latency, and the newest events.
 * q or Ctrl-C quits; --once prints one snapshot (two polls a second apart,
 * for the rates) without escapes and exits, for scripts.
 *
 * Exit status: 0, 1 when the API cannot be reached or refuses (its problem
 * detail on stderr), 2 for bad usage. One thread.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cmd/cmd.h"

#define TOP_EVENTS 12 /* recent events shown */
#define TOP_ROWS 10   /* route/edge groups and channels shown */
#define TOP_BODY_MAX (4 << 20)

static volatile sig_atomic_t top_stop;

static void on_signal(int sig)
{
    (void)sig;
    top_stop = 1;
}

typedef struct {
    char *data;
    size_t len;
} top_buf_t;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    top_buf_t *b = ud;
    size_t k = sz * n;
    if (b->len + k > TOP_BODY_MAX)
        return 0; /* not a stats answer: refuse it */
    char *d = realloc(b->data, b->len + k + 1);
    if (!d)
        abort();
    memcpy(d + b->len, p, k);
    b->data = d;
    b->len += k;
    d[b->len] = 0;
    return k;
}

/* GET base/v1/stats?events_after=after; the parsed answer, or NULL with a
 * message on stderr. */
static json_t *fetch_stats(const char *base, const char *token, long long after)
{
    char url[2048], auth[8192];
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    snprintf(url, sizeof url, "%.*s/v1/stats?events_after=%lld", (int)bl, base, after);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, auth);
    top_buf_t b = {0};
    long status = 0;
    if (!c || !h)
        abort();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    json_t *j = rc == CURLE_OK && b.data ? json_loads(b.data, 0, NULL) : NULL;
    free(b.data);
    if (rc != CURLE_OK) {
        fprintf(stderr, "wsgate top: %s: %s\n", url, curl_easy_strerror(rc));
    } else if (status != 200 || !json_is_object(j)) {
        const char *detail = json_string_value(json_object_get(j, "detail"));
        fprintf(stderr, "wsgate top: %s answered %ld: %s\n", url, status,
                detail ? detail : "not a stats document");
        json_decref(j);
        j = NULL;
    }
    return j;
}

static double num(const json_t *o, const char *path)
{
    char key[128];
    snprintf(key, sizeof key, "%s", path);
    const json_t *v = o;
    for (char *save = NULL, *k = strtok_r(key, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    return json_is_number(v) ? json_number_value(v) : 0;
}

/* Per second between snapshots a and b, of the process counter name. */
static double rate(const json_t *a, const json_t *b, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "process.counters.%s", name);
    double dt = (num(b, "at_ms") - num(a, "at_ms")) / 1000.0;
    return a && dt > 0 ? (num(b, path) - num(a, path)) / dt : 0;
}

static void fmt_ms(char *out, size_t n, const json_t *v)
{
    if (json_is_number(v))
        snprintf(out, n, "<=%g ms", json_number_value(v) * 1000);
    else
        snprintf(out, n, "-");
}

static void print_tables(const json_t *s)
{
    const json_t *g = json_object_get(json_object_get(s, "connections"), "by_route_edge"), *x;
    size_t i;
    printf("\n%-28s %-28s %12s\n", "ROUTE", "EDGE", "CONNECTIONS");
    json_array_foreach(g, i, x) if (i < TOP_ROWS)
        printf("%-28s %-28s %12lld\n", json_string_value(json_object_get(x, "route")),
               json_string_value(json_object_get(x, "edge")),
               (long long)json_integer_value(json_object_get(x, "connections")));
    const json_t *ch = json_object_get(json_object_get(s, "channels"), "items");
    printf("\n%-57s %12s\n", "CHANNEL", "MEMBERS");
    json_array_foreach(ch, i, x) if (i < TOP_ROWS)
        printf("%-57s %12lld\n", json_string_value(json_object_get(x, "channel")),
               (long long)json_integer_value(json_object_get(x, "members")));
}

/* Keeps the newest TOP_EVENTS event lines of s in ring (owned strings). */
static void keep_events(const json_t *s, char **ring, size_t *n)
{
    const json_t *x;
    size_t i;
    json_array_foreach(json_object_get(s, "events"), i, x)
    {
        time_t t = (time_t)(json_integer_value(json_object_get(x, "at_ms")) / 1000);
        struct tm tm;
        char ts[16], *line = NULL;
        strftime(ts, sizeof ts, "%H:%M:%S", localtime_r(&t, &tm));
        if (asprintf(&line, "%s %-12s %s", ts, json_string_value(json_object_get(x, "kind")),
                     json_string_value(json_object_get(x, "text"))) < 0)
            abort();
        if (*n == TOP_EVENTS) {
            free(ring[0]);
            memmove(ring, ring + 1, (TOP_EVENTS - 1) * sizeof *ring);
            (*n)--;
        }
        ring[(*n)++] = line;
    }
}

static void print_snapshot(const char *api, const json_t *a, const json_t *b, char **ev, size_t nev)
{
    char p50[32], p99[32];
    const json_t *lat = json_object_get(json_object_get(b, "process"), "webhook_latency");
    fmt_ms(p50, sizeof p50, json_object_get(lat, "p50_le_s"));
    fmt_ms(p99, sizeof p99, json_object_get(lat, "p99_le_s"));
    printf("wsgate top  %s  (%s)\n", api, json_string_value(json_object_get(b, "mode")));
    printf("connections   %.0f total (all edges), %.0f on this process\n",
           num(b, "connections.total"), num(b, "process.gauges.connections"));
    printf("rates /s      in %.1f  out %.1f  publishes %.1f  webhooks %.1f\n",
           rate(a, b, "frames_in_total"), rate(a, b, "frames_out_total"),
           rate(a, b, "publishes_total"), rate(a, b, "webhook_requests_total"));
    printf("webhooks      2xx %.0f  4xx %.0f  5xx %.0f  errors %.0f  retries %.0f  dead letters "
           "%.0f  p50 %s  p99 %s\n",
           num(b, "process.counters.webhook_responses_2xx_total"),
           num(b, "process.counters.webhook_responses_4xx_total"),
           num(b, "process.counters.webhook_responses_5xx_total"),
           num(b, "process.counters.webhook_errors_total"),
           num(b, "process.counters.webhook_retries_total"),
           num(b, "process.counters.dead_letters_total"), p50, p99);
    printf("events        %.0f pending\n", num(b, "process.gauges.events_pending"));
    print_tables(b);
    printf("\nRECENT EVENTS (this process)\n");
    for (size_t i = nev; i-- > 0;)
        printf("%s\n", ev[i]);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: wsgate top [--api URL] [--token TOKEN] [--once]\n"
               "\n"
               "Live numbers of a running gateway from its control API's GET /v1/stats.\n"
               "\n"
               "  --api URL      the control API (default http://127.0.0.1:8081)\n"
               "  --token T      a token with the admin scope (default: $WSGATE_TOKEN)\n"
               "  --once         print one snapshot (rates over one second) and exit\n"
               "  -h, --help     this help\n"
               "Keys: q quits (so does Ctrl-C).\n");
}

/* Waits up to ms for a key or a signal; 1 when it is time to quit. */
static int wait_key(int tty, int ms)
{
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    if (poll(&p, tty ? 1 : 0, ms) > 0) {
        char ch = 0;
        if (read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q' || ch == 3))
            return 1;
    }
    return top_stop;
}

static int run(const char *api, const char *token, int once)
{
    int tty = !once && isatty(STDIN_FILENO), rc = 0;
    struct termios saved, raw;
    if (tty && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    } else {
        tty = 0;
    }
    char *ev[TOP_EVENTS];
    size_t nev = 0;
    json_t *prev = NULL;
    while (!top_stop) {
        json_t *s = fetch_stats(api, token, prev ? (long long)num(prev, "events_last") : 0);
        if (!s) {
            rc = 1;
            break;
        }
        keep_events(s, ev, &nev);
        if (!once || prev) {
            if (!once)
                printf("\033[H\033[2J");
            print_snapshot(api, prev, s, ev, nev);
            fflush(stdout);
        }
        int done = once && prev;
        json_decref(prev);
        prev = s;
        if (done || wait_key(tty, 1000))
            break;
    }
    json_decref(prev);
    while (nev)
        free(ev[--nev]);
    if (tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    return rc;
}

int cmd_top(int argc, char **argv)
{
    static const struct option opts[] = {{"api", required_argument, NULL, 'a'},
                                         {"token", required_argument, NULL, 't'},
                                         {"once", no_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *api = "http://127.0.0.1:8081", *token = getenv("WSGATE_TOKEN");
    int once = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'a')
            api = optarg;
        else if (c == 't')
            token = optarg;
        else if (c == 'o')
            once = 1;
        else {
            usage(c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "wsgate top: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!token || !*token) {
        fprintf(stderr, "wsgate top: a token with the admin scope is needed: --token T or "
                        "$WSGATE_TOKEN (wsgate token --config FILE --api --scope admin)\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run(api, token, once);
    curl_global_cleanup();
    return rc;
}
