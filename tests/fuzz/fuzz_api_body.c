/* SPDX-License-Identifier: MIT */
/*
 * fuzz_api_body.c — libFuzzer target for the control API's request parsing:
 * the message-body parser (by media type), path and query decoding, and
 * channel-name validation. The first input byte picks what is fed the rest.
 * Built with clang -fsanitize=fuzzer when -DWSGATE_FUZZ=ON; replay_main.c
 * runs the committed corpus through the same function in ordinary ctest.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control-api/api_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *ctypes[] = {"application/json", "text/plain", "application/octet-stream",
                                   "application/json; charset=utf-8", NULL};
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 8;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    char err[256];
    if (mode < 5) {
        api_msg_t m;
        int st = api_parse_message(ctypes[mode], body, n, &m, err, sizeof err);
        if (st == 0 && !m.binary && mode == 1 && !wsg_utf8_valid((const char *)m.data, m.len))
            abort(); /* a text frame must be UTF-8 */
        if (st != 0 && (m.data || m.owned))
            abort(); /* failures own nothing */
        free(m.owned);
        return 0;
    }
    char *s = malloc(n + 1);
    if (!s)
        return 0;
    memcpy(s, body, n);
    s[n] = 0;
    api_req_t r = {0};
    if (mode == 5)
        api_split_path(s, r.segs, &r.nsegs);
    else if (mode == 6)
        api_parse_query(s, &r);
    else if (wsg_channel_valid(s, err, sizeof err) == 0 && strlen(s) > WSG_CHANNEL_MAX)
        abort();
    api_req_clear(&r);
    free(s);
    return 0;
}
