/* SPDX-License-Identifier: MIT */
/* log.c — one formatted line per call, one write(2) per line. See log.h. */
#include "common/log.h"
#include "common/clock.h"
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int wsg_log_threshold = WSG_LOG_INFO;
static int log_json = 1;
static int log_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int wsg_log_setup(const char *level, const char *format)
{
    int lv = -1;
    if (level) {
        for (int i = 0; i < 4; i++)
            if (strcasecmp(level, level_names[i]) == 0)
                lv = i;
        if (lv < 0 && strcasecmp(level, "warning") == 0)
            lv = WSG_LOG_WARN;
        if (lv < 0)
            return WSG_EINVAL;
    }
    if (format && strcmp(format, "json") != 0 && strcmp(format, "text") != 0)
        return WSG_EINVAL;
    if (lv >= 0)
        wsg_log_threshold = lv;
    if (format)
        log_json = strcmp(format, "json") == 0;
    return 0;
}

int wsg_log_setup_env(void)
{
    const char *lv = getenv("LOG_LEVEL"), *fmt = getenv("LOG_FORMAT");
    return wsg_log_setup(lv && *lv ? lv : NULL, fmt && *fmt ? fmt : NULL);
}

void wsg_log_set_fd(int fd)
{
    log_fd = fd;
}

/* A line being built. Content stops at cap, a little short of the buffer, so
 * that a cut line can still be closed ('"', a "truncated" mark, '}', '\n'):
 * a line cut at 4 KiB stays one valid JSON object. Pieces are appended whole
 * or not at all, so a cut never splits an escape or a UTF-8 sequence. */
typedef struct {
    char *p;
    size_t len, cap, size;
    int full; /* a piece did not fit: nothing more is appended but closers */
} line_t;

enum { LINE_RESERVE = 32 };

static void put(line_t *l, const char *s, size_t n)
{
    if (l->full || n > l->cap - l->len) {
        l->full = 1;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

/* Appends a closer even past cap (into the reserve). */
static void put_close(line_t *l, const char *s, size_t n)
{
    if (l->len + n <= l->size) {
        memcpy(l->p + l->len, s, n);
        l->len += n;
    }
}

static void puts_(line_t *l, const char *s)
{
    put(l, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629), 0 if ill-formed. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
    if (n && (s[1] < lo || s[1] > hi))
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* Text format: control characters as \xNN, so that a value (a client's
 * user id, a request path) can never start a forged line of its own. */
static void put_text(line_t *l, const char *s)
{
    for (; *s && !l->full; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            put(l, esc, 4);
        } else {
            put(l, s, 1);
        }
    }
}

/* Appends s, escaped for a JSON string when json is set; in JSON, bytes that
 * are not UTF-8 become U+FFFD so that the line stays valid JSON. */
static void put_str(line_t *l, const char *s, int json)
{
    if (!json) {
        put_text(l, s);
        return;
    }
    while (*s && !l->full) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        size_t n = utf8_seq((const unsigned char *)s);
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            put(l, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(l, esc, 6);
        } else if (n == 0) {
            put(l, "\xef\xbf\xbd", 3); /* U+FFFD */
            n = 1;
        } else {
            put(l, s, n);
        }
        s += n;
    }
}

static void put_fmt(line_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_fmt(line_t *l, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Formats one value of conversion conv (the text after '%') taken from ap.
 * Returns 0 when what was appended is a whole value (a string may have been
 * cut, but it is closed), -1 when the line filled up before that. */
static int put_value(line_t *l, const char *conv, size_t clen, va_list *ap, int json)
{
    if (clen == 1 && conv[0] == 's') {
        const char *s = va_arg(*ap, const char *);
        if (!s) {
            puts_(l, json ? "null" : "-");
            return l->full ? -1 : 0;
        }
        if (json)
            put(l, "\"", 1);
        if (l->full)
            return -1;
        put_str(l, s, json);
        if (json)
            put_close(l, "\"", 1);
        return 0;
    } else if (clen == 1 && conv[0] == 'j') {
        const char *s = va_arg(*ap, const char *);
        puts_(l, s ? s : "null");
    } else if (clen == 1 && conv[0] == 'd') {
        put_fmt(l, "%d", va_arg(*ap, int));
    } else if (clen == 1 && conv[0] == 'u') {
        put_fmt(l, "%u", va_arg(*ap, unsigned));
    } else if (clen == 2 && conv[0] == 'l' && conv[1] == 'd') {
        put_fmt(l, "%ld", va_arg(*ap, long));
    } else if (clen == 2 && conv[0] == 'l' && conv[1] == 'u') {
        put_fmt(l, "%lu", va_arg(*ap, unsigned long));
    } else if (clen == 3 && conv[2] == 'd') {
        put_fmt(l, "%lld", va_arg(*ap, long long));
    } else if (clen == 3 && conv[2] == 'u') {
        put_fmt(l, "%llu", va_arg(*ap, unsigned long long));
    } else if (clen == 2 && conv[0] == 'z') {
        put_fmt(l, "%zu", va_arg(*ap, size_t));
    } else if (clen == 1 && conv[0] == 'f') {
        put_fmt(l, "%.3f", va_arg(*ap, double));
    } else {
        puts_(l, json ? "\"?\"" : "?"); /* programming error in a field spec */
    }
    return l->full ? -1 : 0;
}

static void put_time(line_t *l)
{
    struct tm tm;
    char buf[40];
    int64_t ms = wsg_wall_ms();
    time_t secs = (time_t)(ms / 1000);
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
    puts_(l, buf);
}

void wsg_log_emit(int level, const char *msg, const char *fields, ...)
{
    char buf[4096];
    line_t l = {buf, 0, sizeof buf - LINE_RESERVE, sizeof buf, 0};
    int json = log_json;
    const char *lvl = level_names[level < 0 ? 0 : level > 3 ? 3 : level];

    if (json) {
        puts_(&l, "{\"ts\":\"");
        put_time(&l);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, lvl);
        puts_(&l, "\",\"msg\":\"");
        put_str(&l, msg, 1);
        put_close(&l, "\"", 1);
    } else {
        put_time(&l);
        put(&l, " ", 1);
        puts_(&l, lvl);
        put(&l, " ", 1);
        put_str(&l, msg, 0);
    }

    va_list ap;
    va_start(ap, fields);
    for (const char *p = fields; p && *p && !l.full;) {
        size_t mark = l.len;
        while (*p == ' ')
            p++;
        const char *eq = strchr(p, '=');
        if (!*p || !eq || eq[1] != '%')
            break;
        const char *conv = eq + 2, *end = conv;
        while (*end && *end != ' ')
            end++;
        if (json) {
            puts_(&l, ",\"");
            put(&l, p, (size_t)(eq - p));
            puts_(&l, "\":");
        } else {
            put(&l, " ", 1);
            put(&l, p, (size_t)(eq - p) + 1);
        }
        if (put_value(&l, conv, (size_t)(end - conv), &ap, json) != 0)
            l.len = mark; /* the field did not fit: leave it out whole */
        p = end;
    }
    va_end(ap);

    if (l.full)
        put_close(&l, json ? ",\"truncated\":true" : " truncated=true", json ? 17 : 15);
    if (json)
        put_close(&l, "}", 1);
    put_close(&l, "\n", 1);
    ssize_t w = write(log_fd, buf, l.len);
    (void)w;
}
