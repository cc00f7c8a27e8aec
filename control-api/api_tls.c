/* SPDX-License-Identifier: MIT */
/*
 * api_tls.c — https:// on the control API (api.tls): libmicrohttpd's TLS is
 * GnuTLS, so the certificate, key and client CAs are GnuTLS objects here.
 *
 * The server certificate is handed to GnuTLS per handshake by a callback
 * (MHD_OPTION_HTTPS_CERT_CALLBACK) instead of being loaded into the daemon
 * once, so SIGHUP (api_tls_reload) can replace it: handshakes after the
 * reload get the new pair, open connections are not touched. A pair that
 * was handed out may still be in use by a handshake in flight, so replaced
 * pairs are kept until api_tls_stop (a few KiB per reload).
 *
 * Mutual TLS (client_ca_file): the same callback makes a client certificate
 * required (GNUTLS_CERT_REQUIRE) and has GnuTLS verify it during the
 * handshake against the CAs libmicrohttpd loaded (MHD_OPTION_HTTPS_MEM_TRUST):
 * a client without one, or with one no CA signed, fails the handshake and
 * never reaches a handler. The CA list is read at start only.
 *
 * TLS 1.2+ with AEAD ciphers and ECDHE only (API_TLS_PRIORITIES).
 *
 * Threads: api_tls_start/api_tls_stop on the API's owner; the callback on
 * libmicrohttpd's threads; api_tls_reload from any thread.
 */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "control-api/api_int.h"

#define API_TLS_PRIORITIES                                                                         \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"            \
    "+CHACHA20-POLY1305:-KX-ALL:+ECDHE-RSA:+ECDHE-ECDSA"
#define API_TLS_MAX_CHAIN 16

typedef struct tls_pair {
    struct tls_pair *older; /* replaced pairs, kept for handshakes still using them */
    gnutls_pcert_st certs[API_TLS_MAX_CHAIN];
    unsigned n_certs;
    gnutls_privkey_t key;
} tls_pair_t;

static pthread_mutex_t pair_mu = PTHREAD_MUTEX_INITIALIZER;
static tls_pair_t *pair; /* the current one; NULL: no TLS */
static char *cert_path, *key_path;
static int mutual;
static char *trust_pem;

static void pair_free(tls_pair_t *p)
{
    for (unsigned i = 0; i < p->n_certs; i++)
        gnutls_pcert_deinit(&p->certs[i]);
    if (p->key)
        gnutls_privkey_deinit(p->key);
    free(p);
}

static tls_pair_t *pair_load(const char *cert, const char *key, char *err, size_t errlen)
{
    tls_pair_t *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    p->n_certs = API_TLS_MAX_CHAIN;
    gnutls_datum_t kd = {0};
    int rc = gnutls_pcert_list_import_x509_file(p->certs, &p->n_certs, cert, GNUTLS_X509_FMT_PEM,
                                                NULL, NULL, 0);
    const char *what = "cannot use certificate", *file = cert;
    if (rc < 0)
        p->n_certs = 0;
    if (rc >= 0) {
        what = "cannot use private key";
        file = key;
        rc = gnutls_load_file(key, &kd);
    }
    if (rc >= 0 && (rc = gnutls_privkey_init(&p->key)) >= 0)
        rc = gnutls_privkey_import_x509_raw(p->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0);
    gnutls_free(kd.data);
    if (rc >= 0) {
        what = "key does not match the certificate";
        gnutls_pubkey_t pub = p->certs[0].pubkey;
        static const unsigned char probe[] = "wsgate api.tls key check";
        gnutls_datum_t d = {(unsigned char *)probe, sizeof probe}, sig = {0};
        int algo = gnutls_pubkey_get_pk_algorithm(pub, NULL);
        gnutls_sign_algorithm_t sa = gnutls_pk_to_sign(algo, GNUTLS_DIG_SHA256);
        rc = gnutls_privkey_sign_data2(p->key, sa, 0, &d, &sig);
        if (rc >= 0)
            rc = gnutls_pubkey_verify_data2(pub, sa, 0, &d, &sig);
        gnutls_free(sig.data);
    }
    if (rc < 0) {
        pair_free(p);
        wsg_errf(err, errlen, WSG_ECONFIG, "api.tls: %s '%s': %s", what, file, gnutls_strerror(rc));
        return NULL;
    }
    return p;
}

static int cert_cb(gnutls_session_t s, const gnutls_datum_t *req_ca_dn, int n_req,
                   const gnutls_pk_algorithm_t *pk, int n_pk, gnutls_pcert_st **certs,
                   unsigned int *n_certs, gnutls_privkey_t *key)
{
    (void)req_ca_dn;
    (void)n_req;
    (void)pk;
    (void)n_pk;
    if (mutual) { /* refused in the handshake, not by a handler */
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(s, NULL, 0);
    }
    pthread_mutex_lock(&pair_mu);
    tls_pair_t *p = pair;
    pthread_mutex_unlock(&pair_mu);
    if (!p)
        return -1;
    *certs = p->certs;
    *n_certs = p->n_certs;
    *key = p->key;
    return 0;
}

static int read_text(const char *path, char **out, char *err, size_t errlen)
{
    gnutls_datum_t d = {0};
    int rc = gnutls_load_file(path, &d);
    if (rc < 0)
        return wsg_errf(err, errlen, WSG_ECONFIG, "api.tls: cannot read client_ca_file '%s': %s",
                        path, gnutls_strerror(rc));
    *out = malloc(d.size + 1);
    if (!*out)
        abort();
    memcpy(*out, d.data, d.size);
    (*out)[d.size] = '\0';
    gnutls_free(d.data);
    return 0;
}

int api_tls_start(const wsg_tls_conf_t *t, unsigned *flags, struct MHD_OptionItem *o, char *err,
                  size_t errlen)
{
    *flags = 0;
    o[0] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    if (!t->cert_file || !*t->cert_file)
        return 0;
    if (!MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK))
        return wsg_errf(err, errlen, WSG_ECONFIG,
                        "api.tls: this libmicrohttpd has no TLS (built without GnuTLS)");
    tls_pair_t *p = pair_load(t->cert_file, t->key_file, err, errlen);
    if (!p)
        return WSG_ECONFIG;
    mutual = t->client_ca_file && *t->client_ca_file;
    if (mutual && read_text(t->client_ca_file, &trust_pem, err, errlen) != 0) {
        pair_free(p);
        return WSG_ECONFIG;
    }
    cert_path = strdup(t->cert_file);
    key_path = strdup(t->key_file);
    if (!cert_path || !key_path)
        abort();
    pthread_mutex_lock(&pair_mu);
    pair = p;
    pthread_mutex_unlock(&pair_mu);
    *flags = MHD_USE_TLS;
    size_t i = 0;
    o[i++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)cert_cb};
    o[i++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, API_TLS_PRIORITIES};
    if (mutual)
        o[i++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, trust_pem};
    o[i] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return 0;
}

int api_tls_reload(void)
{
    char err[512];
    pthread_mutex_lock(&pair_mu);
    char *cert = cert_path ? strdup(cert_path) : NULL, *key = key_path ? strdup(key_path) : NULL;
    pthread_mutex_unlock(&pair_mu);
    int rc = 0;
    if (cert && key) {
        tls_pair_t *p = pair_load(cert, key, err, sizeof err);
        if (!p) {
            WSG_LOG(WSG_LOG_ERROR, "api: certificates not reloaded, the old ones stay", "error=%s",
                    err);
            rc = WSG_ECONFIG;
        } else {
            pthread_mutex_lock(&pair_mu);
            p->older = pair;
            pair = p;
            pthread_mutex_unlock(&pair_mu);
            WSG_LOG(WSG_LOG_INFO, "api: certificates reloaded", "cert_file=%s", cert);
        }
    }
    free(cert);
    free(key);
    return rc;
}

void api_tls_stop(void)
{
    pthread_mutex_lock(&pair_mu);
    tls_pair_t *p = pair;
    pair = NULL;
    free(cert_path);
    free(key_path);
    cert_path = key_path = NULL;
    pthread_mutex_unlock(&pair_mu);
    while (p) {
        tls_pair_t *older = p->older;
        pair_free(p);
        p = older;
    }
    free(trust_pem);
    trust_pem = NULL;
    mutual = 0;
}
