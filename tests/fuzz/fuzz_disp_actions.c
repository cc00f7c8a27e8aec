/* SPDX-License-Identifier: MIT */
/*
 * fuzz_disp_actions.c — libFuzzer target for a backend's webhook answer:
 * disp_actions_parse() (dispatcher/disp_actions.c) reads the body of every
 * 2xx response into edge commands. The whole input is the body. Beyond
 * memory safety it checks what dispatch.c relies on: every action it keeps
 * is complete and within the limits docs/contract.md §3 gives (a close code of 1000
 * or 4000-4999 with a reason that fits a close frame, a channel name of
 * 1-255 bytes without control characters), and a refusal keeps nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dispatcher/disp_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_action(const disp_action_t *a)
{
    switch (a->op) {
    case BUS_CMD_SEND:
        if (!a->data || (a->binary != 0 && a->binary != 1) || a->reason || a->channel)
            abort();
        break;
    case BUS_CMD_CLOSE:
        if (!a->reason || strlen(a->reason) > 123 ||
            (a->code != 1000 && (a->code < 4000 || a->code > 4999)))
            abort();
        break;
    case BUS_CMD_SUBSCRIBE:
    case BUS_CMD_UNSUBSCRIBE: {
        size_t n = a->channel ? strlen(a->channel) : 0;
        if (n == 0 || n > 255)
            abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)a->channel[i] < 0x20 || a->channel[i] == 0x7f)
                abort();
        break;
    }
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    disp_action_t *acts = NULL;
    size_t n = 99, skipped = 99;
    char err[256];
    int rc = disp_actions_parse((const char *)data, size, &acts, &n, &skipped, err, sizeof err);
    if (rc != 0) {
        if (acts || n || skipped > size)
            abort(); /* a refused answer applies nothing */
        return 0;
    }
    if (n + skipped > size || (n && !acts))
        abort(); /* at most one action per array entry */
    for (size_t i = 0; i < n; i++)
        check_action(&acts[i]);
    disp_actions_free(acts, n);
    return 0;
}
