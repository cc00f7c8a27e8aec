/* SPDX-License-Identifier: MIT */
/* err.c — tables behind err.h, generated from WSG_ERRNO_MAP. */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const err_msgs[] = {
#define WSG_ERR_MSG(name, msg) msg,
    WSG_ERRNO_MAP(WSG_ERR_MSG)
#undef WSG_ERR_MSG
};

static const char *const err_names[] = {
#define WSG_ERR_NAME(name, msg) #name,
    WSG_ERRNO_MAP(WSG_ERR_NAME)
#undef WSG_ERR_NAME
};

static int err_index(int err)
{
    if (err <= WSG__ERR_BASE || err >= WSG__ERR_END)
        return -1;
    return err - WSG__ERR_BASE - 1;
}

const char *wsg_strerror(int err)
{
    if (err == 0)
        return "success";
    int i = err_index(err);
    return i < 0 ? "unknown error" : err_msgs[i];
}

const char *wsg_err_name(int err)
{
    if (err == 0)
        return "OK";
    int i = err_index(err);
    return i < 0 ? "UNKNOWN" : err_names[i];
}

int wsg_errf(char *buf, size_t len, int err, const char *fmt, ...)
{
    if (buf && len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return err;
}
