/* TLS, a transport between the socket and the connection's protocol (OpenSSL 3).
 *
 * OpenSSL never touches the socket: a BIO of ours hands it the ciphertext just read (it lies in
 * the loop's scratch buffer) and takes the ciphertext it produces straight into the connection's
 * output queue, so the bytes go out with the same batching, write path and backpressure as
 * cleartext. The protocol above reads and writes plaintext: what it queues waits in tls->plain
 * until the flush encrypts it. No buffer is kept between records: with SSL_MODE_RELEASE_BUFFERS
 * OpenSSL frees its record buffers once empty, and ours live only during a read or a flush, so an
 * idle TLS connection holds no read or write buffer. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "internal.h"

/* Records are cut at this size when plaintext is encrypted: the largest a record holds. */
#define RECORD_MAX (16 * 1024)
/* Session tickets are sealed with a key that changes this often; the one before still opens
 * them (and the client gets a fresh ticket), so a ticket lives two periods at most and a key
 * that leaks exposes only the sessions of its own two periods. */
#define TICKET_KEY_SECONDS (12 * 3600)

typedef struct {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    time_t made;
} ticket_key_t;

struct crest__tls_ctx_s {
    pthread_mutex_t lock; /* guards ctx (a reload swaps it while loops accept) and the keys */
    SSL_CTX *ctx;
    ticket_key_t keys[2];  /* [0] seals new tickets, [1] is the one before */
    const char *cert_file; /* the app's copies */
    const char *key_file;
    int h2; /* ALPN may select "h2" */
};

struct crest__tls_s {
    SSL *ssl;
    const char *in; /* ciphertext being fed to OpenSSL (in the loop's scratch) */
    size_t in_len;
    crest__outq_t plain; /* plaintext queued by the protocol, encrypted at the flush */
    int ready;           /* handshake done */
    int notified;        /* close_notify sent: nothing may follow it */
};

/* ---- our BIO ---- */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_read(BIO *b, char *out, int len) {
    crest__tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (t->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
    memcpy(out, t->in, n);
    t->in += n;
    t->in_len -= n;
    return (int)n;
}

static int bio_write(BIO *b, const char *in, int len) {
    crest__conn_t *c = BIO_get_app_data(b);
    BIO_clear_retry_flags(b);
    crest__outq_t *q = crest__conn_raw_out(c);
    if (q == NULL || crest__outq_copy(q, in, (size_t)len) != 0)
        return -1;
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_make(void) {
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "crest");
    if (bio_method == NULL)
        return;
    BIO_meth_set_write(bio_method, bio_write);
    BIO_meth_set_read(bio_method, bio_read);
    BIO_meth_set_ctrl(bio_method, bio_ctrl);
    BIO_meth_set_create(bio_method, bio_create);
}

/* ---- the context: certificate, key, settings ---- */

static void log_ssl_error(const crest__rt_t *rt, const char *what, const char *file) {
    unsigned long e = ERR_get_error();
    char reason[256];
    ERR_error_string_n(e, reason, sizeof(reason));
    crest__log(rt, CREST_LOG_ERROR, "TLS: %s %s: %s", what, file, e ? reason : "failed");
    ERR_clear_error();
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    const crest__tls_ctx_t *tc = arg;
    /* The server's preference: h2 when it is spoken here, else HTTP/1.1. */
    static const unsigned char h2[] = "\x02h2", h1[] = "\x08http/1.1";
    const unsigned char *prefs[2] = {tc->h2 ? h2 : NULL, h1};
    for (int p = 0; p < 2; p++) {
        if (prefs[p] == NULL)
            continue;
        for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
            if (in[i] == prefs[p][0] && i + 1u + in[i] <= inlen &&
                memcmp(in + i + 1, prefs[p] + 1, in[i]) == 0) {
                *out = in + i + 1;
                *outlen = in[i];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_NOACK; /* no protocol in common: go on without ALPN (HTTP/1.1) */
}

static int ticket_key_new(ticket_key_t *k) {
    k->made = time(NULL);
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
           RAND_bytes(k->hmac, sizeof(k->hmac)) == 1;
}

/* OpenSSL asks for a key to seal a new ticket (enc 1) or the key named in a ticket (enc 0):
 * 1 is a key, 2 a key that is about to go (issue a new ticket), 0 none (a full handshake). */
static int on_ticket_key(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc) {
    crest__tls_ctx_t *tc = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    ticket_key_t k;
    int which = -1;
    pthread_mutex_lock(&tc->lock);
    if (enc) {
        if (time(NULL) - tc->keys[0].made >= TICKET_KEY_SECONDS) {
            ticket_key_t fresh;
            if (ticket_key_new(&fresh)) {
                tc->keys[1] = tc->keys[0];
                tc->keys[0] = fresh;
            }
        }
        which = 0;
    } else {
        for (int i = 0; i < 2 && which < 0; i++)
            if (memcmp(name, tc->keys[i].name, sizeof(tc->keys[i].name)) == 0)
                which = i;
    }
    if (which >= 0)
        k = tc->keys[which];
    pthread_mutex_unlock(&tc->lock);
    if (which < 0)
        return 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    int ok;
    if (enc) {
        memcpy(name, k.name, sizeof(k.name));
        ok = RAND_bytes(iv, 16) == 1 &&
             EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1;
    } else {
        ok = EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    if (!ok || EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    return enc || which == 0 ? 1 : 2;
}

static SSL_CTX *ctx_make(const crest__rt_t *rt, crest__tls_ctx_t *tc) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        log_ssl_error(rt, "cannot create a context for", tc->cert_file);
        return NULL;
    }
    /* TLS 1.2 and 1.3 only; in 1.2 only forward-secret AEAD suites, the server's order first
     * (1.3's suites are all of that kind). No renegotiation: a client could make us redo the
     * expensive half of a handshake at will. */
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Sessions resume from tickets, without server-side state, sealed with keys of ours that
     * rotate (on_ticket_key) and outlive reloads, so a SIGHUP does not cost every client a full
     * handshake. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_app_data(ctx, tc);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, tc);
    if (SSL_CTX_use_certificate_chain_file(ctx, tc->cert_file) != 1) {
        log_ssl_error(rt, "cannot load the certificate", tc->cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tc->key_file, SSL_FILETYPE_PEM) != 1) {
        log_ssl_error(rt, "cannot load the key", tc->key_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_error(rt, "the key does not match the certificate", tc->cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int crest__tls_ctx_new(crest__rt_t *rt, const char *cert_file, const char *key_file, int h2) {
    pthread_once(&bio_once, bio_method_make);
    if (bio_method == NULL)
        return CREST_ENOMEM;
    crest__tls_ctx_t *tc = calloc(1, sizeof(*tc));
    if (tc == NULL)
        return CREST_ENOMEM;
    tc->cert_file = cert_file;
    tc->key_file = key_file;
    tc->h2 = h2;
    if (!ticket_key_new(&tc->keys[0])) {
        free(tc);
        return CREST_ENOMEM;
    }
    tc->keys[1] = tc->keys[0];
    tc->ctx = ctx_make(rt, tc);
    if (tc->ctx == NULL) {
        OPENSSL_cleanse(tc->keys, sizeof(tc->keys));
        free(tc);
        return CREST_EINVAL;
    }
    pthread_mutex_init(&tc->lock, NULL);
    rt->tls = tc;
    return 0;
}

void crest__tls_reload(crest__rt_t *rt) {
    crest__tls_ctx_t *tc = rt->tls;
    if (tc == NULL)
        return; /* SIGHUP is taken only with TLS (see run.c): nothing else reloads */
    SSL_CTX *fresh = ctx_make(rt, tc);
    if (fresh == NULL) {
        crest__log(rt, CREST_LOG_ERROR, "SIGHUP: keeping the certificate in use");
        return;
    }
    pthread_mutex_lock(&tc->lock);
    SSL_CTX *old = tc->ctx;
    tc->ctx = fresh;
    pthread_mutex_unlock(&tc->lock);
    SSL_CTX_free(old); /* connections made with it hold their own reference */
    crest__log(rt, CREST_LOG_INFO, "SIGHUP: certificate %s reloaded", tc->cert_file);
}

void crest__tls_ctx_free(crest__rt_t *rt) {
    crest__tls_ctx_t *tc = rt->tls;
    if (tc == NULL)
        return;
    SSL_CTX_free(tc->ctx);
    pthread_mutex_destroy(&tc->lock);
    OPENSSL_cleanse(tc->keys, sizeof(tc->keys));
    free(tc);
    rt->tls = NULL;
}

/* ---- a connection ---- */

int crest__tls_accept(crest__conn_t *c) {
    crest__tls_ctx_t *tc = crest__conn_loop(c)->rt->tls;
    crest__tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return CREST_ENOMEM;
    pthread_mutex_lock(&tc->lock);
    t->ssl = SSL_new(tc->ctx);
    pthread_mutex_unlock(&tc->lock);
    BIO *bio = t->ssl ? BIO_new(bio_method) : NULL;
    if (bio == NULL) {
        SSL_free(t->ssl);
        free(t);
        return CREST_ENOMEM;
    }
    BIO_set_data(bio, t);
    BIO_set_app_data(bio, c);
    SSL_set_bio(t->ssl, bio, bio); /* one BIO both ways; the SSL owns it */
    SSL_set_accept_state(t->ssl);
    c->tls = t;
    return 0;
}

void crest__tls_free(crest__conn_t *c) {
    crest__tls_t *t = c->tls;
    if (t == NULL)
        return;
    crest__outq_free(&t->plain);
    SSL_free(t->ssl);
    free(t);
    c->tls = NULL;
}

void crest__tls_discard(crest__tls_t *t) {
    if (t == NULL)
        return;
    crest__outq_free(&t->plain);
    SSL_free(t->ssl);
    free(t);
}

void crest__tls_attach(crest__conn_t *c, crest__tls_t *t) {
    BIO_set_app_data(SSL_get_rbio(t->ssl), c); /* the BIO writes into its connection's queue */
    c->tls = t;
}

crest__outq_t *crest__tls_plain(crest__conn_t *c) {
    crest__outq_t *q = &c->tls->plain;
    crest__outq_t *spare = &crest__conn_loop(c)->tls_spare;
    if (q->segs == NULL && q->bytes.ptr == NULL && spare->segs != NULL) {
        *q = *spare; /* the loop's buffers: no allocation per response */
        memset(spare, 0, sizeof(*spare));
    }
    return q;
}

/* The plaintext queue is written (or dropped): release its pieces and hand its buffers back to
 * the loop, so that an idle connection keeps none and the next response allocates none. */
static void plain_done(crest__conn_t *c) {
    crest__outq_t *q = &c->tls->plain;
    crest__outq_t *spare = &crest__conn_loop(c)->tls_spare;
    size_t seg, off;
    crest__outq_consume(q, q->total, &seg, &off);
    crest__outq_reset(q);
    if (spare->segs == NULL && spare->bytes.ptr == NULL && q->bytes.cap <= RECORD_MAX) {
        *spare = *q;
        memset(q, 0, sizeof(*q));
    } else {
        crest__outq_free(q);
    }
}

size_t crest__tls_pending(const crest__conn_t *c) {
    return c->tls->plain.total;
}

/* The connection is beyond saving (a failed handshake, a bad record): send the alert OpenSSL
 * queued, if any, and close. */
static void tls_fail(crest__conn_t *c) {
    ERR_clear_error();
    crest__conn_raw_flush(c);
    crest__conn_close(c);
}

void crest__tls_on_read(crest__conn_t *c, const char *data, size_t len) {
    crest__tls_t *t = c->tls;
    crest_loop_t *loop = crest__conn_loop(c);
    t->in = data;
    t->in_len = len;
    if (!t->ready) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int err = SSL_get_error(t->ssl, r);
            if (err != SSL_ERROR_WANT_READ) {
                tls_fail(c);
                return;
            }
            crest__conn_raw_flush(c); /* our flight of the handshake */
            return;
        }
        t->ready = 1;
        const unsigned char *alpn = NULL;
        unsigned int alpn_len = 0;
        SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
        crest__conn_raw_flush(c);
        if (c->flags & CONN_CLOSING)
            return;
        loop->rt->hooks->conn_secure(c, (const char *)alpn, alpn_len);
        if (c->flags & CONN_CLOSING)
            return;
    }
    /* Decrypt everything that arrived, several records per call of the protocol: nothing is
     * left inside OpenSSL once this returns but a partial record, whose rest comes with the next
     * read (so a protocol that pauses reading never strands decrypted bytes). */
    char *plain = loop->tls_plain;
    size_t cap = loop->tls_plain_size, have = 0;
    for (;;) {
        int n = have < cap ? SSL_read(t->ssl, plain + have, (int)(cap - have)) : 0;
        int err = n > 0 ? SSL_ERROR_NONE : have < cap ? SSL_get_error(t->ssl, n) : SSL_ERROR_NONE;
        if (n > 0)
            have += (size_t)n;
        if (have > 0 && (n <= 0 || have == cap)) {
            c->proto->on_data(c, plain, have);
            have = 0;
            if (c->flags & (CONN_CLOSING | CONN_LINGERING | CONN_CLOSE_AFTER_WRITE))
                return;
            continue;
        }
        if (n > 0)
            continue;
        if (err == SSL_ERROR_WANT_READ)
            break;
        if (err == SSL_ERROR_ZERO_RETURN) {
            /* close_notify: the client is done; ours answers it, as TLS 1.2 requires. */
            if (crest__tls_close_notify(c))
                crest__conn_raw_flush(c);
            crest__conn_close(c);
            return;
        }
        tls_fail(c);
        return;
    }
    /* Reading may have produced output of its own (a key update, session tickets). */
    crest__conn_raw_flush(c);
}

int crest__tls_close_notify(crest__conn_t *c) {
    crest__tls_t *t = c->tls;
    if (!t->ready || t->notified)
        return 0;
    t->notified = 1;
    /* The alert goes into the raw output through our BIO; the client's own close_notify is not
     * waited for here (a linger reads until the client closes). */
    if (SSL_shutdown(t->ssl) < 0) {
        ERR_clear_error();
        return 0;
    }
    return 1;
}

int crest__tls_encrypt(crest__conn_t *c) {
    crest__tls_t *t = c->tls;
    crest__outq_t *q = &t->plain;
    if (q->total > 0 && t->notified)
        plain_done(c); /* too late: the session has ended */
    if (q->total == 0 || !t->ready)
        return 0;
    crest_loop_t *loop = crest__conn_loop(c);
    /* Small pieces are gathered into whole records; a large one goes in as it is. */
    char *stage = loop->tls_stage;
    size_t staged = 0;
    for (size_t i = 0; i < q->nsegs; i++) {
        const crest__seg_t *s = &q->segs[i];
        const char *p = s->ext ? s->ext : q->bytes.ptr + s->off;
        size_t left = s->len;
        while (left > 0) {
            if (staged == 0 && left >= RECORD_MAX) {
                size_t n = left - left % RECORD_MAX;
                if (SSL_write(t->ssl, p, (int)n) <= 0)
                    return CREST_ENOMEM;
                p += n;
                left -= n;
                continue;
            }
            size_t n = RECORD_MAX - staged < left ? RECORD_MAX - staged : left;
            memcpy(stage + staged, p, n);
            staged += n;
            p += n;
            left -= n;
            if (staged == RECORD_MAX) {
                if (SSL_write(t->ssl, stage, (int)staged) <= 0)
                    return CREST_ENOMEM;
                staged = 0;
            }
        }
    }
    if (staged > 0 && SSL_write(t->ssl, stage, (int)staged) <= 0)
        return CREST_ENOMEM;
    plain_done(c);
    return 0;
}
