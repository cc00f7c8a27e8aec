/* SPDX-License-Identifier: MIT */
/*
 * fuzz_disp_actions.c — libFuzzer target for what a backend sends the
 * dispatcher (dispatcher/disp_actions.c): the body of a 2xx webhook answer
 * (disp_actions_parse) and one text frame of a backend stream, wsgate's
 * (disp_frame_parse) and ws-api-gateway's (disp_frame_parse_user). The
 * whole input goes to all three. Beyond memory safety it checks what the
 * dispatcher relies on: every action kept is complete and within the limits
 * docs/contract.md §3 gives (a close code of 1000 or 4000-4999 with a
 * reason that fits a close frame, a channel name of 1-255 bytes without
 * control characters); a frame is one known kind with what that kind
 * needs (ids, a connection or user, a token); and a refusal keeps nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dispatcher/disp_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_channel(const char *ch)
{
    size_t n = ch ? strlen(ch) : 0;
    if (n == 0 || n > 255)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)ch[i] < 0x20 || ch[i] == 0x7f)
            abort();
}

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
    case BUS_CMD_UNSUBSCRIBE:
        check_channel(a->channel);
        break;
    default:
        abort();
    }
}

/* One stream frame, parsed for a wsgate stream or (by_user) a ws-api-gateway
 * one. */
static void check_frame(const uint8_t *data, size_t size, int by_user)
{
    disp_frame_t f;
    char err[256];
    int rc = by_user ? disp_frame_parse_user((const char *)data, size, &f, err, sizeof err)
                     : disp_frame_parse((const char *)data, size, &f, err, sizeof err);
    if (rc != 0) {
        if (f.kind || f.ids || f.n_ids || f.conn_id || f.token || f.act.data || f.act.reason ||
            f.act.channel || !err[0])
            abort(); /* a refused frame keeps nothing, and says why */
        return;
    }
    switch (f.kind) {
    case DISP_FRAME_ACK:
        if (by_user || f.n_ids == 0 || f.n_ids > DISP_FRAME_MAX_ACKS)
            abort();
        for (size_t i = 0; i < f.n_ids; i++)
            if (!f.ids[i] || !f.ids[i][0])
                abort();
        break;
    case DISP_FRAME_ACTION:
        if (!f.conn_id || !f.conn_id[0])
            abort();
        check_action(&f.act);
        if (by_user && f.act.op != BUS_CMD_SEND && f.act.op != BUS_CMD_CLOSE)
            abort(); /* the seed has send and close only */
        break;
    case DISP_FRAME_PUBLISH:
        if (by_user || !f.act.data)
            abort();
        check_channel(f.act.channel);
        break;
    case DISP_FRAME_AUTH:
        if (by_user || !f.token || !f.token[0] || strlen(f.token) > DISP_FRAME_MAX_TOKEN)
            abort();
        break;
    default:
        abort();
    }
    disp_frame_clear(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_frame(data, size, 0);
    check_frame(data, size, 1);
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
