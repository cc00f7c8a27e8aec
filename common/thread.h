/* SPDX-License-Identifier: MIT */
/*
 * thread.h — names the calling thread so `top -H`, `ps -L` and perf show
 * which of wsgate's threads is busy (edge, authorizer, bq-writer, ...).
 * Linux keeps 15 characters; longer names are cut, not refused.
 * Header-only; call once at the top of a thread's main function.
 */
#ifndef WSG_THREAD_H
#define WSG_THREAD_H

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

__attribute__((format(printf, 1, 2))) static inline void wsg_thread_name(const char *fmt, ...)
{
    char name[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    pthread_setname_np(pthread_self(), name);
}

#endif
