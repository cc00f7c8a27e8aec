/* SPDX-License-Identifier: MIT */
/*
 * test_sdk_token.c — tokens minted by libwsgate are accepted by the
 * gateway's own verifier (common/jwt.c linked from wsg_common, the code the
 * edge and the control API run), with their scopes, channel globs, sub,
 * issuer, audience and context claims; HS256, RS256 and ES256; bad keys
 * and parameters are refused with a status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/jwt.h"
#include "wsgate/wsgate.h"

#define SECRET "sdk-test-secret-of-at-least-32-bytes!!"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    assert_true(n > 0);
    fclose(f);
    return buf;
}

static void verify_ok(wsg_alg_t alg, const char *key, const char *token, wsg_claims_t *cl)
{
    char *ctx_claims[] = {"tenant"};
    wsg_jwt_conf_t conf = {.enabled = true,
                           .alg = alg,
                           .issuer = "",
                           .audience = "",
                           .context_claims = ctx_claims,
                           .n_context_claims = 1,
                           .leeway_s = 5};
    if (alg <= WSG_ALG_HS512) {
        conf.secret = (char *)key;
        conf.secret_len = strlen(key);
    } else {
        conf.public_key = (char *)key;
        conf.public_key_len = strlen(key);
    }
    char err[256] = "";
    int rc = wsg_jwt_verify(&conf, token, (int64_t)time(NULL), cl, err, sizeof err);
    if (rc != 0)
        fail_msg("gateway refused the SDK's token: %s", err);
}

static void test_control_api_token_hs256(void **state)
{
    const char *chans[] = {"room.*", "lobby"};
    wsgate_token_params p = {.alg = WSGATE_HS256,
                             .key = SECRET,
                             .ttl_s = 600,
                             .sub = "backend",
                             .scope = "send publish",
                             .channels = chans,
                             .n_channels = 2};
    char *tok = NULL;
    assert_int_equal(wsgate_token_mint(&p, &tok), WSGATE_OK);
    wsg_claims_t cl;
    verify_ok(WSG_ALG_HS256, SECRET, tok, &cl);
    assert_string_equal(cl.sub, "backend");
    assert_true(wsg_scope_has(cl.scope, "publish"));
    assert_false(wsg_scope_has(cl.scope, "disconnect"));
    assert_int_equal(cl.n_channels, 2);
    assert_string_equal(cl.channels[0], "room.*");
    int64_t now = (int64_t)time(NULL);
    assert_true(cl.exp >= now + 598 && cl.exp <= now + 601);
    wsg_claims_clear(&cl);
    /* the wrong secret is refused by the gateway: the test can fail */
    wsg_jwt_conf_t bad = {.alg = WSG_ALG_HS256, .secret = "another-secret-of-32-bytes-or-more!!"};
    char err[128];
    assert_int_not_equal(wsg_jwt_verify(&bad, tok, now, &cl, err, sizeof err), 0);
    wsgate_free(tok);
}

static void test_client_token_rs_es(void **state)
{
    static const struct {
        wsgate_alg alg;
        wsg_alg_t galg;
        const char *priv, *pub;
    } k[] = {
        {WSGATE_RS256, WSG_ALG_RS256, "rsa_private.pem", "rsa_public.pem"},
        {WSGATE_ES256, WSG_ALG_ES256, "ec256_private.pem", "ec256_public.pem"},
    };
    for (size_t i = 0; i < 2; i++) {
        char path[512];
        snprintf(path, sizeof path, WSGATE_TEST_DATA "/keys/%s", k[i].priv);
        char *priv = slurp(path);
        snprintf(path, sizeof path, WSGATE_TEST_DATA "/keys/%s", k[i].pub);
        char *pub = slurp(path);
        const char *chans[] = {"room.42"};
        wsgate_token_params p = {.alg = k[i].alg,
                                 .key = priv,
                                 .ttl_s = 60,
                                 .sub = "alice",
                                 .channels = chans,
                                 .n_channels = 1,
                                 .extra_json = "{\"tenant\":\"acme\"}"};
        char *tok = NULL;
        assert_int_equal(wsgate_token_mint(&p, &tok), WSGATE_OK);
        wsg_claims_t cl;
        verify_ok(k[i].galg, pub, tok, &cl);
        assert_string_equal(cl.sub, "alice");
        assert_string_equal(cl.context_json, "{\"tenant\":\"acme\"}");
        assert_string_equal(cl.channels[0], "room.42");
        wsg_claims_clear(&cl);
        /* the public key cannot sign */
        p.key = pub;
        char *none = NULL;
        assert_int_equal(wsgate_token_mint(&p, &none), WSGATE_EKEY);
        assert_null(none);
        wsgate_free(tok);
        free(priv);
        free(pub);
    }
}

static void test_bad_params(void **state)
{
    char *tok = NULL;
    wsgate_token_params p = {.alg = WSGATE_HS256, .key = SECRET, .ttl_s = 60};
    assert_int_equal(wsgate_token_mint(NULL, &tok), WSGATE_EINVAL);
    p.ttl_s = 0;
    assert_int_equal(wsgate_token_mint(&p, &tok), WSGATE_EINVAL);
    p.ttl_s = 60;
    p.alg = (wsgate_alg)0;
    assert_int_equal(wsgate_token_mint(&p, &tok), WSGATE_EINVAL);
    p.alg = WSGATE_HS256;
    p.extra_json = "[1]";
    assert_int_equal(wsgate_token_mint(&p, &tok), WSGATE_EINVAL);
    p.extra_json = NULL;
    p.key = "";
    assert_int_equal(wsgate_token_mint(&p, &tok), WSGATE_EKEY);
    p.key = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
    p.alg = WSGATE_RS256;
    assert_int_equal(wsgate_token_mint(&p, &tok), WSGATE_EKEY);
    assert_null(tok);
    /* the key never reaches the problem */
    assert_null(strstr(wsgate_last_problem()->detail, "not a key"));
}

static void test_options_signing_key(void **state)
{
    wsgate_options *o = NULL;
    assert_int_equal(wsgate_options_new(&o), WSGATE_OK);
    assert_int_equal(wsgate_options_set_signing_key(o, WSGATE_RS256, "nope", 0, "read"),
                     WSGATE_EKEY);
    assert_int_equal(wsgate_options_set_signing_key(o, WSGATE_HS256, SECRET, 0, "read"), WSGATE_OK);
    assert_int_equal(wsgate_options_set_url(o, "ftp://x"), WSGATE_EINVAL);
    wsgate_client *c = NULL;
    assert_int_equal(wsgate_client_new(&c, o), WSGATE_EINVAL); /* no url */
    assert_int_equal(wsgate_options_set_url(o, "http://127.0.0.1:1/"), WSGATE_OK);
    assert_int_equal(wsgate_client_new(&c, o), WSGATE_OK);
    wsgate_options_free(o); /* copied: the client keeps working */
    assert_int_equal(wsgate_options_set_retries(NULL, 1), WSGATE_EINVAL);
    /* nothing listens on port 1: a transport error, not a crash */
    wsgate_status st = wsgate_send_text(c, "abc", "hi");
    assert_true(st == WSGATE_ETRANSPORT || st == WSGATE_ETIMEOUT);
    assert_int_equal(wsgate_send_text(c, "", "hi"), WSGATE_EINVAL);
    assert_int_equal(wsgate_send(c, "abc", WSGATE_TEXT, "\xff", 1), WSGATE_EINVAL);
    assert_int_equal(wsgate_disconnect(c, "abc", 1001, NULL), WSGATE_EINVAL);
    wsgate_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_api_token_hs256),
        cmocka_unit_test(test_client_token_rs_es),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_options_signing_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
