/* SPDX-License-Identifier: MIT */
/* b64.c — base64 on OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock. See b64.h. */
#include "common/b64.h"
#include "common/err.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

size_t wsg_b64_encode(const unsigned char *in, size_t n, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

size_t wsg_b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t len = wsg_b64_encode(in, n, out);
    while (len > 0 && out[len - 1] == '=')
        out[--len] = '\0';
    for (size_t i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return len;
}

/* EVP_DecodeBlock skips whitespace around the text and takes '=' anywhere as
 * zero bits ("Zg==Zm8=" decodes); base64 here is strict: only the alphabet,
 * and at most two '=' at the very end. */
static int b64_strict(const char *in, size_t n)
{
    if (n % 4 != 0)
        return 0;
    size_t pad = (n >= 1 && in[n - 1] == '=') + (n >= 2 && in[n - 2] == '=');
    for (size_t i = 0; i < n - pad; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    return 1;
}

int wsg_b64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen)
{
    if (!b64_strict(in, n) || n > 0x7fffffff)
        return WSG_EINVAL;
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0)
        return WSG_EINVAL;
    /* EVP_DecodeBlock counts padding as zero bytes; take them off. */
    for (size_t i = n; i > 0 && in[i - 1] == '='; i--)
        len--;
    *outlen = (size_t)len;
    return 0;
}

/* The 6-bit value of a base64url character, -1 for any other. */
static int url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

int wsg_b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen)
{
    if (n % 4 == 1 || n > 0x7ffffff0)
        return WSG_EINVAL;
    /* 2 or 3 characters at the end carry 4 or 2 bits that must be zero */
    int last = n ? url_value(in[n - 1]) : 0;
    if (last < 0 || (n % 4 == 2 && (last & 0x0f)) || (n % 4 == 3 && (last & 0x03)))
        return WSG_EINVAL;
    size_t padded = (n + 3) / 4 * 4;
    char *std = malloc(padded + 1);
    if (!std)
        return WSG_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (url_value(in[i]) < 0)
            rc = WSG_EINVAL;
        std[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    }
    memset(std + n, '=', padded - n);
    if (rc == 0)
        rc = wsg_b64_decode(std, padded, out, outlen);
    free(std);
    return rc;
}
