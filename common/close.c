/* SPDX-License-Identifier: MIT */
/*
 * close.c — which close codes and reasons are accepted from outside
 * (close.h). Pure functions, any thread.
 */
#include "common/close.h"
#include "common/err.h"
#include "common/text.h"

bool wsg_close_peer_code_ok(int code)
{
    return (code >= WSG_CLOSE_NORMAL && code <= WSG_CLOSE_UNSUPPORTED) ||
           (code >= WSG_CLOSE_INVALID_DATA && code <= WSG_CLOSE_BAD_GATEWAY) ||
           (code >= 3000 && code <= WSG_CLOSE_APP_MAX);
}

int wsg_close_app_check(long long code, const char *reason, size_t len, char *err, size_t errlen)
{
    if (code != WSG_CLOSE_NORMAL && (code < WSG_CLOSE_APP_MIN || code > WSG_CLOSE_APP_MAX))
        return wsg_errf(err, errlen, WSG_EINVAL, "code must be 1000 or 4000-4999");
    if (reason && (len > WSG_CLOSE_REASON_MAX || !wsg_utf8_valid_nonul(reason, len)))
        return wsg_errf(err, errlen, WSG_EINVAL,
                        "reason must be UTF-8 of at most %d bytes, without NUL",
                        WSG_CLOSE_REASON_MAX);
    return 0;
}
