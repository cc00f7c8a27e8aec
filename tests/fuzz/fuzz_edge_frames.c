/* SPDX-License-Identifier: MIT */
/*
 * fuzz_edge_frames.c — libFuzzer target for the WebSocket handling the edge
 * does itself (ws-edge/edge_conn.c, edge_rxcheck.c); lws parses frames,
 * unmasks them and hands over payload pieces. The first input byte picks
 * what the rest is:
 *   0x80-0xbf: a client's close-frame payload, judged by edge_close_check()
 *     and, when accepted, kept by edge_on_peer_close() (code, reason cut to
 *     123 bytes);
 *   0xc0-0xff: bytes a client sends after the handshake, walked by
 *     edge_rxcheck_scan() in reads of (first byte & 0x3f) + 1 bytes: it must
 *     stop exactly where the first unmasked frame starts (a model walks the
 *     same bytes at once) and let everything through otherwise;
 *   below 0x80: pieces of messages as lws hands them over, each
 *     [flags][n][n bytes] (flags bit 0: first piece of a message, bit 1:
 *     last, bits 2-7: bytes lws still holds of the frame), fed to
 *     edge_rx_take() under max_message_bytes = 64 * first byte + 1: a whole
 *     message is exactly the pieces since its first, "too big" comes
 *     exactly when the message (with what lws still holds) passes the limit.
 * Whatever the first byte, the rest is also given to the one UTF-8
 * validator (common/text.c: wsg_utf8_valid, which the edge uses for text
 * messages and close reasons, and wsg_utf8_valid_nonul): both must agree
 * with model_utf8() below, written the other way round (decode each code
 * point, then judge its value), and a close reason is accepted exactly when
 * the model accepts it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"
#include "ws-edge/edge_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* RFC 3629 by decoding: the shortest form, no surrogates, <= U+10FFFF. */
static int model_utf8(const uint8_t *p, size_t n, int nul_ok)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i], min;
        size_t more;
        if (c < 0x80) {
            if (c == 0 && !nul_ok)
                return 0;
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0)
            more = 1, min = 0x80, c &= 0x1f;
        else if ((c & 0xf0) == 0xe0)
            more = 2, min = 0x800, c &= 0x0f;
        else if ((c & 0xf8) == 0xf0)
            more = 3, min = 0x10000, c &= 0x07;
        else
            return 0;
        if (n - i - 1 < more)
            return 0;
        for (size_t j = 1; j <= more; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
            c = c << 6 | (p[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        i += more + 1;
    }
    return 1;
}

static void utf8_agrees(const uint8_t *p, size_t n)
{
    if (wsg_utf8_valid((const char *)p, n) != model_utf8(p, n, 1) ||
        wsg_utf8_valid_nonul((const char *)p, n) != model_utf8(p, n, 0))
        abort();
}

static void close_payload(const uint8_t *p, size_t n)
{
    int code = -1;
    const char *why = "unset";
    int refuse = edge_close_check(p, n, &code, &why);
    int want = n == 1                         ? 1002
               : n == 0                       ? 0
               : !code_ok(p[0] << 8 | p[1])   ? 1002
               : !model_utf8(p + 2, n - 2, 1) ? 1007
                                              : 0;
    if (refuse != want || (refuse && !why) || (!refuse && why))
        abort();
    if (refuse)
        return;
    if (code != (n ? p[0] << 8 | p[1] : 1005))
        abort();
    edge_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    for (int round = 0; round < 2; round++) { /* a second close frame replaces the first */
        if (edge_on_peer_close(NULL, c, p, n) != 0 || c->peer_code != code)
            abort();
        size_t keep = n < 2 ? 0 : strnlen((const char *)p + 2, n - 2);
        if (keep > EDGE_REASON_MAX)
            keep = EDGE_REASON_MAX;
        if (n >= 2 && (!c->peer_reason || strlen(c->peer_reason) != keep ||
                       memcmp(c->peer_reason, p + 2, keep) != 0))
            abort();
    }
    edge_conn_free(c);
}

/* Where the first unmasked frame of p[0..n) starts (n: none, or its
 * header is cut off before its second byte), walking the frames at once. */
static size_t model_unmasked_at(const uint8_t *p, size_t n)
{
    size_t at = 0;
    while (n - at >= 2) {
        if (!(p[at + 1] & 0x80))
            return at;
        unsigned len7 = p[at + 1] & 0x7f;
        size_t hl = len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
        if (n - at < hl)
            return n;
        uint64_t len = len7;
        if (hl > 2) {
            len = 0;
            for (size_t k = 2; k < hl; k++)
                len = len << 8 | p[at + k];
        }
        if (len >= n || n - at - hl < 4 + len)
            return n; /* the rest is this frame's key and payload */
        at += hl + 4 + (size_t)len;
    }
    return n;
}

static void scan(size_t piece, const uint8_t *p, size_t n)
{
    edge_rxcheck_t s;
    memset(&s, 0, sizeof s);
    size_t passed = 0, stop = model_unmasked_at(p, n), at = 0;
    while (at < n && !s.unmasked) {
        size_t k = n - at < piece ? n - at : piece;
        /* s.pmd is 0: the scan writes nothing, so the input stays as given */
        size_t ok = edge_rxcheck_scan(&s, (uint8_t *)p + at, k);
        if (ok > k || (!s.unmasked && ok != k))
            abort();
        passed += ok;
        at += k;
    }
    /* a header cut across reads: its first byte went to lws with the read before */
    size_t want = stop == n ? n : stop + (stop % piece == piece - 1);
    if (s.unmasked != (stop < n) || passed != want)
        abort();
    if (s.unmasked && edge_rxcheck_scan(&s, (uint8_t *)p, n) != 0)
        abort(); /* nothing passes after an unmasked frame */
}

static void pieces(size_t max, const uint8_t *p, size_t n)
{
    edge_conn_t *c = calloc(1, sizeof *c);
    unsigned char *model = malloc(n + 1); /* the message so far, as the model sees it */
    size_t mlen = 0;
    if (!c || !model)
        abort();
    while (n >= 2 && (size_t)p[1] <= n - 2) {
        int first = p[0] & 1, final = (p[0] >> 1) & 1;
        size_t remaining = p[0] >> 2, len = p[1];
        /* lws hands over the piece in its own buffer: exactly len bytes */
        unsigned char *in = malloc(len ? len : 1);
        if (!in)
            abort();
        memcpy(in, p + 2, len);
        p += 2 + len;
        n -= 2 + len;
        if (first)
            mlen = 0;
        int too_big = mlen + len > max || remaining > max - mlen - len;
        memcpy(model + mlen, in, len);
        mlen += len;
        const unsigned char *msg = NULL;
        size_t msg_len = 0;
        int st = edge_rx_take(c, in, len, first, final, remaining, max, &msg, &msg_len);
        if (st != (too_big ? EDGE_RX_TOO_BIG : final ? EDGE_RX_WHOLE : EDGE_RX_PART))
            abort();
        if (st == EDGE_RX_WHOLE &&
            (msg_len != mlen || (msg_len && memcmp(msg, model, msg_len) != 0)))
            abort(); /* the message is not the pieces since its first */
        free(in);
        if (st == EDGE_RX_TOO_BIG) {
            if (c->rx || c->rx_len)
                abort(); /* kept what was dropped */
            break;       /* closed with 1009: nothing more is read */
        }
        if (st == EDGE_RX_WHOLE) {
            edge_rx_reset(c);
            mlen = 0;
        }
    }
    edge_conn_free(c);
    free(model);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    utf8_agrees(data + 1, size - 1);
    if ((data[0] & 0xc0) == 0x80)
        close_payload(data + 1, size - 1);
    else if (data[0] & 0x80)
        scan((data[0] & 0x3f) + 1, data + 1, size - 1);
    else
        pieces(64 * (size_t)data[0] + 1, data + 1, size - 1);
    return 0;
}
