/* SPDX-License-Identifier: MIT */
/*
 * log.h — structured logging: JSON lines (default) or text for terminals.
 *
 *   WSG_LOG(WSG_LOG_INFO, "client connected", "conn=%s route=%s user=%s", id, path, user);
 *
 * The field spec is a space-separated list of key=%conv with conv one of
 * s (string, NULL prints null), d u ld lu lld llu zu (integers), f (double),
 * j (raw JSON text inserted as-is). The level is checked before any argument
 * is formatted; each line is built in one buffer and written with a single
 * write(2), so lines from different threads never interleave.
 *
 * Secrets never go through here; callers pass redacted values.
 * Thread-safety: wsg_log_setup(), wsg_log_setup_env() and wsg_log_set_fd()
 * at start-up before threads exist (they write plain globals the other
 * threads read without a lock); wsg_log_emit() / WSG_LOG from any thread.
 */
#ifndef WSG_LOG_H
#define WSG_LOG_H

typedef enum {
    WSG_LOG_ERROR = 0,
    WSG_LOG_WARN = 1,
    WSG_LOG_INFO = 2,
    WSG_LOG_DEBUG = 3,
} wsg_log_level_t;

extern int wsg_log_threshold;

/* Sets level ("error"|"warn"|"info"|"debug") and format ("json"|"text");
 * NULL keeps the current value. Returns 0 or WSG_EINVAL for an unknown name. */
int wsg_log_setup(const char *level, const char *format);

/* Sets the level and format from the LOG_LEVEL and LOG_FORMAT environment
 * variables when present. Returns 0 or WSG_EINVAL. */
int wsg_log_setup_env(void);

/* Redirects output to fd (default 2). */
void wsg_log_set_fd(int fd);

void wsg_log_emit(int level, const char *msg, const char *fields, ...);

#define wsg_log_on(level) ((int)(level) <= wsg_log_threshold)
#define WSG_LOG(level, msg, ...)                                                                   \
    do {                                                                                           \
        if (wsg_log_on(level))                                                                     \
            wsg_log_emit((level), (msg), __VA_ARGS__);                                             \
    } while (0)

#endif
