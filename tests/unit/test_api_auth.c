/* SPDX-License-Identifier: MIT */
/*
 * test_api_auth.c — the control API's token cache (control-api/api_auth.c)
 * is per API and keyed by token and key: two APIs in one process with
 * different api.auth.jwt secrets each accept only their own tokens, however
 * the requests interleave (before, a process-wide cache keyed by the token
 * text let API B accept a token A had verified), and a cached token is still
 * refused by an API whose key changed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/jwt.h"
#include "control-api/api_int.h"

static const char secret_a[] = "secret-of-api-a-0123456789abcdefgh";
static const char secret_b[] = "secret-of-api-b-0123456789abcdefgh";

static void conf(wsg_config_t *cfg, const char *secret)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->api.jwt.enabled = true;
    cfg->api.jwt.alg = WSG_ALG_HS256;
    cfg->api.jwt.secret = (char *)secret;
    cfg->api.jwt.secret_len = strlen(secret);
    cfg->api.jwt.issuer = "";
    cfg->api.jwt.audience = "";
}

static char *mint(const char *secret)
{
    wsg_mint_t m = {.alg = WSG_ALG_HS256,
                    .key = secret,
                    .key_len = strlen(secret),
                    .scope = "admin",
                    .exp = wsg_wall_ms() / 1000 + 600};
    char *tok = NULL, err[128];
    assert_int_equal(wsg_jwt_mint(&m, &tok, err, sizeof err), 0);
    return tok;
}

/* 200-like (0) or the problem's status. */
static int auth(api_t *a, const char *tok)
{
    api_req_t r;
    memset(&r, 0, sizeof r);
    r.a = a;
    char hdr[2048];
    snprintf(hdr, sizeof hdr, "Bearer %s", tok);
    int rc = api_authenticate(&r, hdr);
    int st = rc == 0 ? 0 : r.status;
    if (rc == 0)
        assert_non_null(r.claims);
    api_auth_release(r.auth_ref);
    json_decref(r.resp);
    return st;
}

static void two_apis_two_keys(void **state)
{
    (void)state;
    wsg_config_t ca, cb;
    conf(&ca, secret_a);
    conf(&cb, secret_b);
    api_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    a->cfg = &ca;
    b->cfg = &cb;
    api_auth_init(a);
    api_auth_init(b);
    char *ta = mint(secret_a), *tb = mint(secret_b);
    for (int round = 0; round < 3; round++) { /* cached after the first */
        assert_int_equal(auth(a, ta), 0);
        assert_int_equal(auth(b, ta), 401);
        assert_int_equal(auth(b, tb), 0);
        assert_int_equal(auth(a, tb), 401);
    }
    api_auth_free(a);
    api_auth_free(b);
    free(a);
    free(b);
    free(ta);
    free(tb);
}

/* The key an API verifies with changes while a token is cached. */
static void key_change(void **state)
{
    (void)state;
    wsg_config_t c;
    conf(&c, secret_a);
    api_t *a = calloc(1, sizeof *a);
    assert_non_null(a);
    a->cfg = &c;
    api_auth_init(a);
    char *ta = mint(secret_a);
    assert_int_equal(auth(a, ta), 0);
    conf(&c, secret_b); /* rotated; ta's entry is still in its slot */
    api_auth_rekey(a);
    assert_int_equal(auth(a, ta), 401);
    char *tb = mint(secret_b);
    assert_int_equal(auth(a, tb), 0);
    free(tb);
    api_auth_free(a);
    free(a);
    free(ta);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_apis_two_keys),
        cmocka_unit_test(key_change),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
