/* SPDX-License-Identifier: MIT */
/*
 * cmd_secret.c — `wsgate secret`: prints a fresh webhook signing secret,
 * "whsec_" + base64 of random bytes from OpenSSL's RAND_bytes (the format
 * common/whsig.c decodes, Standard Webhooks'), for a route's
 * `webhook_secret` and the backend that checks the signatures. Nothing is
 * stored; the secret goes to stdout only.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/b64.h"

/* Standard Webhooks: a key of 24 to 64 bytes; 32 matches HMAC-SHA256's output. */
#define SECRET_MIN 24
#define SECRET_MAX 64
#define SECRET_DEFAULT 32

static void usage(FILE *f)
{
    fprintf(f,
            "usage: wsgate secret [--bytes N]\n"
            "\n"
            "Prints a new random webhook secret, whsec_<base64>, for a route's\n"
            "webhook_secret (WSGATE_ROUTES_<n>_WEBHOOK_SECRET) and for the backend that\n"
            "verifies the webhook-signature header with it.\n"
            "\n"
            "  --bytes N   random bytes in the key, %d..%d (default %d)\n"
            "  -h, --help  this help\n",
            SECRET_MIN, SECRET_MAX, SECRET_DEFAULT);
}

/* Returns the byte count, 0 after --help, or -1 on bad usage (message printed). */
static int parse_args(int argc, char **argv)
{
    long bytes = SECRET_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--bytes") == 0 && i + 1 < argc)
            v = argv[++i];
        else if (strncmp(a, "--bytes=", 8) == 0)
            v = a + 8;
        if (!v) {
            fprintf(stderr, "wsgate secret: %s '%s' (see wsgate secret --help)\n",
                    strcmp(a, "--bytes") == 0 ? "needs a value:"
                    : a[0] == '-'             ? "unknown option"
                                              : "unexpected argument",
                    a);
            return -1;
        }
        char *end = NULL;
        bytes = strtol(v, &end, 10);
        if (!*v || *end || bytes < SECRET_MIN || bytes > SECRET_MAX) {
            fprintf(stderr, "wsgate secret: --bytes '%s' is not a number from %d to %d\n", v,
                    SECRET_MIN, SECRET_MAX);
            return -1;
        }
    }
    return (int)bytes;
}

int cmd_secret(int argc, char **argv)
{
    int n = parse_args(argc, argv);
    if (n <= 0)
        return n == 0 ? 0 : 2;
    unsigned char key[SECRET_MAX];
    char text[WSG_B64_LEN(SECRET_MAX) + 1];
    if (RAND_bytes(key, n) != 1) {
        fprintf(stderr, "wsgate secret: the system's random source failed (OpenSSL RAND_bytes)\n");
        return 1;
    }
    wsg_b64_encode(key, (size_t)n, text);
    memset(key, 0, sizeof key);
    printf("whsec_%s\n", text);
    return fflush(stdout) == 0 ? 0 : 1;
}
