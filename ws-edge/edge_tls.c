/* SPDX-License-Identifier: MIT */
/*
 * edge_tls.c — wss:// on the edge: OpenSSL under lws, at the socket calls.
 *
 * Why not lws's own TLS: the edge reads each request itself before lws sees
 * the socket (edge_accept.c), holds handshakes for the authorizer, checks
 * client frame masks at recv() (edge_rxcheck.c) and fans frames out with
 * send(2) from a helper thread (edge_fanout.c). All of that works on
 * plaintext bytes of a file descriptor, and lws 4.1 can neither adopt a
 * socket whose TLS session someone else began nor hand out the plaintext it
 * decrypts. So the TLS session of a client socket is made here when it is
 * accepted (edge_tls_adopt) and lives beside the fd: the process's recv()
 * (edge_rxcheck.c) reads such an fd with SSL_read, send() below writes it
 * with SSL_write, shutdown() sends close_notify first and close() frees the
 * session. Everything above — edge_accept.c, lws, the mask check — sees the
 * same plaintext it sees on ws://. OpenSSL itself uses read()/write() on the
 * fd, which are not redefined.
 *
 * Plaintext that OpenSSL has already taken off the socket but nobody has
 * read yet makes no readiness event: whoever reads an fd with such data left
 * feeds the loop a read event for it (edge_tls_kick), as does the edge when
 * it lets a paused connection read again. When it hands a socket to lws,
 * what OpenSSL holds goes with the request (edge_handshake.c build_resume).
 *
 * The fan-out helper thread never writes a TLS socket (edge_fanout.c hands
 * it plain sockets only): a record half taken by the kernel must be finished
 * with the same bytes, which only lws's own retry guarantees.
 *
 * Certificates: one SSL_CTX for the process, replaced by edge_tls_reload
 * (SIGHUP); sessions made before keep the context they were made with, so
 * established connections are not touched.
 *
 * Threads: edge_tls_init/edge_tls_free on the owner before/after the loops
 * run; edge_tls_reload from any thread; edge_tls_adopt, the socket calls and
 * edge_tls_kick on the thread that owns the fd (a loop's service thread).
 * The fd table is read with atomic loads: a close() on another thread of an
 * fd that is not a client socket finds nothing and is a plain close.
 */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "ws-edge/edge_int.h"

/* TLS 1.2 suites with forward secrecy and AEAD only (Mozilla "intermediate");
 * TLS 1.3 keeps OpenSSL's defaults, which are all of that kind. */
#define EDGE_TLS12_CIPHERS                                                                         \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static _Atomic(SSL *) *tls_fds; /* indexed by fd; NULL: plain (or no TLS at all) */
static size_t tls_cap;
static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *tls_ctx;
static char *cert_path, *key_path;

static SSL *tls_of(int fd)
{
    if (!tls_fds || fd < 0 || (size_t)fd >= tls_cap)
        return NULL;
    return atomic_load_explicit(&tls_fds[fd], memory_order_acquire);
}

int edge_tls_is(int fd)
{
    return tls_of(fd) != NULL;
}

static int ssl_fail(char *err, size_t errlen, const char *what, const char *path)
{
    char why[256];
    unsigned long e = ERR_peek_last_error();
    ERR_error_string_n(e, why, sizeof why);
    ERR_clear_error();
    return wsg_errf(err, errlen, WSG_ECONFIG, "edge.tls: %s '%s': %s", what, path,
                    e ? why : "unknown error");
}

/* A server context from the two files; NULL with err set. */
static SSL_CTX *ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        abort(); /* out of memory */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* partial writes: lws keeps and retries what was not taken, like send();
     * released buffers: an idle connection holds no 34 KiB of record space */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* no server-side session cache: it would hold a session per client
     * (kilobytes each) for resumption; TLS 1.3 tickets resume statelessly */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    int rc = 0;
    if (SSL_CTX_set_cipher_list(ctx, EDGE_TLS12_CIPHERS) != 1)
        rc = ssl_fail(err, errlen, "cipher list", EDGE_TLS12_CIPHERS);
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        rc = ssl_fail(err, errlen, "cannot use certificate", cert);
    else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        rc = ssl_fail(err, errlen, "cannot use private key", key);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        rc = ssl_fail(err, errlen, "key does not match the certificate", key);
    if (rc != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int edge_tls_init(const wsg_config_t *cfg, char *err, size_t errlen)
{
    const wsg_tls_conf_t *t = &cfg->edge.tls;
    if (!t->cert_file || !*t->cert_file)
        return 0;
    SSL_CTX *ctx = ctx_new(t->cert_file, t->key_file, err, errlen);
    if (!ctx)
        return WSG_ECONFIG;
    struct rlimit rl;
    size_t cap = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                     ? (size_t)rl.rlim_cur
                     : 1u << 20;
    /* calloc: untouched pages of the table cost no memory */
    _Atomic(SSL *) *tab = calloc(cap, sizeof *tab);
    cert_path = strdup(t->cert_file);
    key_path = strdup(t->key_file);
    if (!tab || !cert_path || !key_path)
        abort();
    pthread_mutex_lock(&ctx_mu);
    tls_ctx = ctx;
    pthread_mutex_unlock(&ctx_mu);
    tls_cap = cap;
    tls_fds = tab;
    return 0;
}

int edge_tls_reload(void)
{
    char err[512];
    if (!cert_path)
        return 0;
    SSL_CTX *ctx = ctx_new(cert_path, key_path, err, sizeof err);
    if (!ctx) {
        WSG_LOG(WSG_LOG_ERROR, "edge: certificates not reloaded, the old ones stay", "error=%s",
                err);
        return WSG_ECONFIG;
    }
    pthread_mutex_lock(&ctx_mu);
    SSL_CTX *old = tls_ctx;
    tls_ctx = ctx;
    pthread_mutex_unlock(&ctx_mu);
    SSL_CTX_free(old); /* sessions made with it hold their own reference */
    WSG_LOG(WSG_LOG_INFO, "edge: certificates reloaded", "cert_file=%s", cert_path);
    return 0;
}

void edge_tls_free(void)
{
    /* sockets still open (none once the loops are gone) keep their session */
    pthread_mutex_lock(&ctx_mu);
    SSL_CTX_free(tls_ctx);
    tls_ctx = NULL;
    pthread_mutex_unlock(&ctx_mu);
    free(cert_path);
    free(key_path);
    cert_path = key_path = NULL;
}

int edge_tls_enabled(void)
{
    return tls_fds != NULL;
}

int edge_tls_adopt(int fd)
{
    if (fd < 0 || (size_t)fd >= tls_cap)
        return WSG_EFULL;
    pthread_mutex_lock(&ctx_mu);
    SSL *ssl = tls_ctx ? SSL_new(tls_ctx) : NULL;
    pthread_mutex_unlock(&ctx_mu);
    if (!ssl)
        return WSG_ENOMEM;
    SSL_set_fd(ssl, fd);
    SSL_set_accept_state(ssl); /* the handshake runs inside the first reads */
    atomic_store_explicit(&tls_fds[fd], ssl, memory_order_release);
    return 0;
}

/* errno for an OpenSSL failure of r; 0 means end of stream. SSL_get_error()
 * reads the thread's OpenSSL error queue, so every SSL_read/SSL_write starts
 * with it empty: an entry left there by other OpenSSL work on this thread
 * (a client token's check, say) turned a plain "want read" in the middle of
 * a record into a failure, and the connection was dropped (1006; wss://
 * under load, about 1 run in 6 of test_edge_tls's big frame). */
static ssize_t ssl_result(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r), saved = errno;
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN: /* close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        return 0;
    case SSL_ERROR_SYSCALL:
        errno = saved ? saved : ECONNRESET;
        break;
    default: /* a failed handshake, a bad record: the connection is over */
        errno = EPROTO;
        break;
    }
    ERR_clear_error();
    return -1;
}

ssize_t edge_tls_read(int fd, void *buf, size_t len, int flags)
{
    SSL *ssl = tls_of(fd);
    if (!ssl)
        return recvfrom(fd, buf, len, flags, NULL, NULL);
    if (!len)
        return 0;
    int n = len > INT32_MAX ? INT32_MAX : (int)len;
    ERR_clear_error(); /* see ssl_result */
    int r = (flags & MSG_PEEK) ? SSL_peek(ssl, buf, n) : SSL_read(ssl, buf, n);
    return r > 0 ? r : ssl_result(ssl, r);
}

size_t edge_tls_held(int fd)
{
    SSL *ssl = tls_of(fd);
    int n = ssl ? SSL_pending(ssl) : 0;
    return n > 0 ? (size_t)n : 0;
}

/* Whether OpenSSL holds bytes of fd, decrypted or not (the kick's test). */
static int edge_tls_pending(int fd)
{
    SSL *ssl = tls_of(fd);
    return ssl && SSL_has_pending(ssl);
}

void edge_tls_kick(edge_loop_t *e, int fd)
{
    if (e && e->loop && edge_tls_pending(fd))
        ev_feed_fd_event(e->loop, fd, EV_READ);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    SSL *ssl = tls_of(fd);
    if (!ssl)
        return sendto(fd, buf, len, flags, NULL, 0);
    if (!len)
        return 0;
    ERR_clear_error(); /* see ssl_result */
    int r = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    return r > 0 ? r : ssl_result(ssl, r);
}

int shutdown(int fd, int how)
{
    SSL *ssl = tls_of(fd);
    if (ssl && (how == SHUT_WR || how == SHUT_RDWR) && SSL_is_init_finished(ssl)) {
        SSL_shutdown(ssl); /* close_notify, best effort: the socket is non-blocking */
        ERR_clear_error();
    }
    return (int)syscall(SYS_shutdown, fd, how);
}

int close(int fd)
{
    if (tls_fds && fd >= 0 && (size_t)fd < tls_cap) {
        SSL *ssl = atomic_exchange_explicit(&tls_fds[fd], NULL, memory_order_acq_rel);
        if (ssl)
            SSL_free(ssl); /* before the fd number can be given out again */
    }
    return (int)syscall(SYS_close, fd);
}
