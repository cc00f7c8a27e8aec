/* SPDX-License-Identifier: MIT */
/*
 * fuzz_jwt.c — libFuzzer target for the pre-authentication path of a JWT
 * (common/jwt.c wsg_jwt_verify): every client handshake and control-API
 * request hands it a token from the network before anything is trusted.
 * The first input byte sets the verifier (bits 1-2: HS256, HS384, HS512 or
 * RS256 with a test public key; bit 3: issuer and audience required; bit 4:
 * context claims) and the mode (bit 0):
 *   0: the rest is the token, as a client sends it (header decoding and
 *      algorithm pinning run; the signature then fails);
 *   1: the rest is "HEADER\nCLAIMS": both are base64url-encoded and signed
 *      here with the verifier's secret, so the claim checks behind the
 *      signature (exp, nbf, iss, aud, sub, scope, channels, context) see
 *      arbitrary JSON.
 * Checks: a refusal says why, never echoes the token and leaves the claims
 * empty; accepted claims hold what the verifier promised (an unexpired exp,
 * an "alg" equal to the pinned one, a JSON object as context).
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "common/err.h"
#include "common/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000

static char secret[] = "fuzz-secret-fuzz-secret-fuzz-secret-fuzz-secret-fuzz-secret-0123";
static char rsa_pub[] = "-----BEGIN PUBLIC KEY-----\n"
                        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArW0md3awZVF4Ti4yDGMc\n"
                        "py4YZT2qTXlsNrmPurt/+yMM0NK/ypzQfJXN591y5lkeJ9U0tSJ2sMr6XXuOrOJt\n"
                        "5jlvcOIo7iZJ/w2aKGRmIdtgT0q1zUWZIIBeHa+uq3eoapytmNQSbBwxmqJbkoeE\n"
                        "xkUt8YYrDdr7ZedmhfuTcZ2BUtJcfzpRaOYbKeXcH3SERerbGPPrg2wd3rZiPOPh\n"
                        "dlN29/77AsDPxz6gkJ1KE6G/JYehrYAAKSEGLNY6w2iPj77tiOlMw9jSSHLpdwPV\n"
                        "8QBzbHEXoiUd44+S/8u1AEXfu+5ADwBGGqNgSpWVaVgNOuh8C58vuNaJpOME8JHD\n"
                        "oQIDAQAB\n"
                        "-----END PUBLIC KEY-----\n";
static char iss[] = "https://issuer.example", aud[] = "wsgate", empty[] = "";
static char *ctx_claims[] = {"tenant", "roles", "exp"};

static void conf_of(unsigned flags, wsg_jwt_conf_t *c)
{
    static const wsg_alg_t algs[] = {WSG_ALG_HS256, WSG_ALG_HS384, WSG_ALG_HS512, WSG_ALG_RS256};
    memset(c, 0, sizeof *c);
    c->enabled = true;
    c->alg = algs[(flags >> 1) & 3];
    if (c->alg == WSG_ALG_RS256) {
        c->public_key = rsa_pub;
        c->public_key_len = strlen(rsa_pub);
    } else {
        c->secret = secret;
        c->secret_len = strlen(secret);
    }
    c->issuer = flags & 8 ? iss : empty;
    c->audience = flags & 8 ? aud : empty;
    c->context_claims = flags & 16 ? ctx_claims : NULL;
    c->n_context_claims = flags & 16 ? 3 : 0;
    c->leeway_s = 5;
}

static const EVP_MD *md_of(wsg_alg_t alg)
{
    return alg == WSG_ALG_HS384 ? EVP_sha384() : alg == WSG_ALG_HS512 ? EVP_sha512() : EVP_sha256();
}

/* "HEADER\nCLAIMS" -> a token signed with the verifier's secret (an RS256
 * verifier gets an HS256 signature made with its public key: the confusion
 * attack). Returns a new string or NULL. */
static char *signed_token(const wsg_jwt_conf_t *c, const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    size_t hn = nl ? (size_t)(nl - p) : n, cn = nl ? n - hn - 1 : 0;
    char *tok = malloc(WSG_B64_LEN(hn) + WSG_B64_LEN(cn) + WSG_B64_LEN(EVP_MAX_MD_SIZE) + 3);
    if (!tok)
        return NULL;
    size_t at = wsg_b64url_encode((const unsigned char *)p, hn, tok);
    tok[at++] = '.';
    at += wsg_b64url_encode((const unsigned char *)(nl ? nl + 1 : p + n), cn, tok + at);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    const char *key = c->secret ? c->secret : c->public_key;
    size_t klen = c->secret ? c->secret_len : c->public_key_len;
    HMAC(md_of(c->alg), key, (int)klen, (const unsigned char *)tok, at, mac, &maclen);
    tok[at++] = '.';
    wsg_b64url_encode(mac, maclen, tok + at);
    return tok;
}

static void check_accepted(const wsg_jwt_conf_t *c, const wsg_claims_t *cl)
{
    if (c->alg == WSG_ALG_RS256 || cl->exp <= NOW - (int64_t)c->leeway_s)
        abort(); /* an HMAC signature passed an RSA verifier, or expired */
    if (cl->n_channels && !cl->channels)
        abort();
    for (size_t i = 0; i < cl->n_channels; i++)
        if (!cl->channels[i] || !*cl->channels[i])
            abort();
    json_t *ctx = cl->context_json ? json_loads(cl->context_json, 0, NULL) : NULL;
    if (!json_is_object(ctx) || (!c->n_context_claims && json_object_size(ctx)))
        abort();
    json_decref(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    wsg_jwt_conf_t conf;
    conf_of(data[0], &conf);
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    char *token = (data[0] & 1) ? signed_token(&conf, p, n) : strndup(p, n);
    if (!token)
        return 0;
    wsg_claims_t cl;
    char err[256] = "";
    int rc = wsg_jwt_verify(&conf, token, NOW, &cl, err, sizeof err);
    if (rc == 0) {
        check_accepted(&conf, &cl);
    } else {
        if (rc != WSG_EAUTH || !*err || cl.sub || cl.scope || cl.channels || cl.context_json)
            abort(); /* a refusal says why and keeps nothing */
        if (strlen(token) >= 16 && strstr(err, token))
            abort(); /* the reason never holds the token */
    }
    wsg_claims_clear(&cl);
    free(token);
    return 0;
}
