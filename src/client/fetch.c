/* The outbound HTTP/1.1 client (include/crest/client.h) on a loop thread.
 *
 * Per loop, one pool (a crest__loop_ext_t, so that the loop's end cancels what runs and closes
 * what idles) holds the fetches in flight, the idle keep-alive connections and the TLS contexts.
 * A fetch owns a libuv timer (its deadline, and the hop that delivers a result decided inside a
 * call, so that a callback never runs before crest_fetch or crest_fetch_cancel returns) and, while
 * it runs, one connection. A connection owns its socket, its TLS session and its key
 * ("scheme://host:port|ca_file"); between requests it sits in the pool with reading on, so that a
 * server closing it is noticed at once rather than by the next request.
 *
 * TLS is OpenSSL over memory BIOs: ciphertext read goes into one, what OpenSSL writes is taken
 * from the other and written as it is. It shares nothing with the server side (core/tls.c),
 * whose BIO writes into a connection's output queue that this client does not have.
 *
 * Lifetimes: a connection's memory goes in its close callback (libuv runs a pending connect's
 * callback, with UV_ECANCELED, before that), a fetch's when its timer is closed and its name
 * lookup, if any, has returned (f->refs). Neither close callback touches the pool, so the pool
 * can go as soon as its finish has closed everything. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "codec/h1res.h"
#include "internal.h"

#define READ_SIZE (64 * 1024)
/* How often idle connections are checked for their age. */
#define SWEEP_MS (CREST_FETCH_IDLE_MS / 4)

typedef struct pool_s pool_t;
typedef struct hconn_s hconn_t;

typedef struct ctx_s {
    struct ctx_s *next;
    char *ca_file; /* NULL: the system's store */
    SSL_CTX *ctx;
} ctx_t;

/* Owner: the loop's pool (the ext list); freed when the sweep timer has closed. */
struct pool_s {
    crest__loop_ext_t ext;
    crest_loop_t *loop;
    uv_timer_t sweep;
    hconn_t *idle; /* most recently used first */
    crest_fetch_t *active;
    ctx_t *ctxs;
    int finishing;
    char readbuf[READ_SIZE]; /* libuv reads into it; consumed before the next read */
    char plain[READ_SIZE];   /* TLS: decrypted bytes of one SSL_read */
};

/* Owner: the fetch using it (f), or the pool while idle. */
struct hconn_s {
    uv_tcp_t tcp;
    uv_connect_t connect;
    pool_t *pool;
    char *key;
    hconn_t *next; /* pool->idle */
    hconn_t *prev;
    crest_fetch_t *f;
    uint64_t idle_since;
    SSL *ssl;
    BIO *rbio;   /* network -> OpenSSL */
    BIO *wbio;   /* OpenSSL -> network */
    int secure;  /* TLS handshake done (or no TLS) */
    int idle;    /* on pool->idle */
    int used;    /* carried a response before: it came from the pool */
    int closing; /* uv_close called */
};

struct crest_fetch_s {
    void *data;
    crest_loop_t *loop;
    pool_t *pool; /* NULL when started on a loop that had ended */
    crest_fetch_cb cb;
    void *arg;
    /* The request (owned copies). */
    char *method;
    char *url;
    char *host; /* without brackets */
    char *target;
    char *key;
    char *ca_file;
    int tls;
    int port;
    int has_host;
    crest_buf_t fields; /* the caller's header fields, "Name: value\r\n" each */
    char *body;
    size_t body_len;
    uint32_t timeout_ms;
    uint32_t connect_timeout_ms;
    int redirects_left;
    unsigned redirects;
    /* The attempt. */
    uv_timer_t timer;
    uint64_t deadline;      /* uv_now() ms; UINT64_MAX: none */
    uint64_t conn_deadline; /* while connecting */
    int connecting;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai;      /* lookup result, freed with the fetch */
    struct addrinfo *ai_next; /* the next address to try */
    hconn_t *conn;
    crest__h1res_t parser;
    crest_buf_t resbody;
    uint64_t got; /* bytes received on this attempt's connection for this request */
    int retried;
    int deferred; /* the result is decided (pending_err) and comes on the timer */
    int pending_err;
    int done;            /* the callback ran or runs */
    int refs;            /* the timer handle, a name lookup in progress */
    crest_fetch_t *next; /* pool->active */
    crest_fetch_t *prev;
};

static void finish(crest_fetch_t *f, int err);
static void start_attempt(crest_fetch_t *f, int fresh);
static void send_request(crest_fetch_t *f);

/* ---- helpers ---- */

static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_token(const char *s, size_t n) {
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int host_is_ip(const char *host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Split an absolute http(s) URL into f's scheme, host, port, target and pool key. */
static int parse_url(crest_fetch_t *f) {
    const char *u = f->url;
    size_t skip;
    if (strncasecmp(u, "http://", 7) == 0) {
        f->tls = 0;
        skip = 7;
    } else if (strncasecmp(u, "https://", 8) == 0) {
        f->tls = 1;
        skip = 8;
    } else {
        return CREST_EINVAL;
    }
    const char *a = u + skip;
    size_t alen = strcspn(a, "/?#");
    const char *h = a, *port = NULL;
    size_t hlen;
    if (alen > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (close == NULL)
            return CREST_EINVAL;
        h = a + 1;
        hlen = (size_t)(close - h);
        if (close + 1 < a + alen) {
            if (close[1] != ':')
                return CREST_EINVAL;
            port = close + 2;
        }
        for (size_t i = 0; i < hlen; i++)
            if (!strchr("0123456789abcdefABCDEF:.", h[i]))
                return CREST_EINVAL;
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = colon ? (size_t)(colon - a) : alen;
        port = colon ? colon + 1 : NULL;
        for (size_t i = 0; i < hlen; i++) {
            unsigned char c = (unsigned char)h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_'))
                return CREST_EINVAL; /* userinfo ("user@") included: refused */
        }
    }
    if (hlen == 0)
        return CREST_EINVAL;
    f->port = f->tls ? 443 : 80;
    if (port != NULL) {
        long p = 0;
        const char *end = a + alen;
        if (port == end || end - port > 5)
            return CREST_EINVAL;
        for (const char *c = port; c < end; c++) {
            if (*c < '0' || *c > '9')
                return CREST_EINVAL;
            p = p * 10 + (*c - '0');
        }
        if (p < 1 || p > 65535)
            return CREST_EINVAL;
        f->port = (int)p;
    }
    const char *path = a + alen;
    size_t plen = strcspn(path, "#");
    for (size_t i = 0; i < plen; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c <= 0x20 || c == 0x7f)
            return CREST_EINVAL; /* would break the request line */
    }
    free(f->host);
    free(f->target);
    free(f->key);
    f->host = dup_n(h, hlen);
    f->target = malloc(plen + 2);
    if (f->target != NULL) {
        int slash = plen == 0 || path[0] != '/';
        f->target[0] = '/';
        memcpy(f->target + slash, path, plen);
        f->target[plen + slash] = '\0';
    }
    size_t klen = hlen + strlen(f->ca_file ? f->ca_file : "") + 32;
    f->key = malloc(klen);
    if (f->host == NULL || f->target == NULL || f->key == NULL)
        return CREST_ENOMEM;
    snprintf(f->key, klen, "%s://%s:%d|%s", f->tls ? "https" : "http", f->host, f->port,
             f->ca_file ? f->ca_file : "");
    return 0;
}

static int idempotent(const char *m) {
    static const char *const safe[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (strcmp(m, safe[i]) == 0)
            return 1;
    return 0;
}

/* ---- the pool ---- */

static const char pool_owner = 0; /* its address names the pool among the loop's extensions */

static void on_sweep_close(uv_handle_t *h) {
    free(CREST__CONTAINER_OF(h, pool_t, sweep));
}

static void conn_close(hconn_t *c);

static void idle_remove(hconn_t *c) {
    if (!c->idle)
        return;
    pool_t *p = c->pool;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->idle = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    c->idle = 0;
}

static void pool_finish(crest__loop_ext_t *ext, crest_loop_t *loop) {
    (void)loop;
    pool_t *p = CREST__CONTAINER_OF(ext, pool_t, ext);
    p->finishing = 1;
    /* A callback may start fetches: they find the pool finishing and end as cancelled too. */
    while (p->active != NULL)
        finish(p->active, CREST_ECANCELED);
    while (p->idle != NULL)
        conn_close(p->idle);
    for (ctx_t *c = p->ctxs, *next; c != NULL; c = next) {
        next = c->next;
        SSL_CTX_free(c->ctx);
        free(c->ca_file);
        free(c);
    }
    p->ctxs = NULL;
    uv_close((uv_handle_t *)&p->sweep, on_sweep_close);
}

static void on_sweep(uv_timer_t *t) {
    pool_t *p = CREST__CONTAINER_OF(t, pool_t, sweep);
    uint64_t now = uv_now(t->loop);
    for (hconn_t *c = p->idle, *next; c != NULL; c = next) {
        next = c->next;
        if (now - c->idle_since >= CREST_FETCH_IDLE_MS)
            conn_close(c);
    }
    if (p->idle == NULL)
        uv_timer_stop(t);
}

static pool_t *pool_get(crest_loop_t *loop) {
    crest__loop_ext_t *e = crest__loop_ext_find(loop, &pool_owner);
    if (e != NULL)
        return CREST__CONTAINER_OF(e, pool_t, ext);
    pool_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->ext.owner = &pool_owner;
    p->ext.finish = pool_finish;
    p->loop = loop;
    uv_timer_init(&loop->uv, &p->sweep);
    uv_unref((uv_handle_t *)&p->sweep); /* idle connections alone do not keep a loop going */
    crest__loop_ext_add(loop, &p->ext);
    return p;
}

/* An idle connection for `key`, not older than the idle time, or NULL. */
static hconn_t *pool_take(pool_t *p, const char *key) {
    uint64_t now = uv_now(&p->loop->uv);
    for (hconn_t *c = p->idle; c != NULL; c = c->next) {
        if (strcmp(c->key, key) == 0 && now - c->idle_since < CREST_FETCH_IDLE_MS) {
            idle_remove(c);
            return c;
        }
    }
    return NULL;
}

static void pool_put(hconn_t *c) {
    pool_t *p = c->pool;
    size_t same = 0;
    for (hconn_t *o = p->idle; o != NULL; o = o->next)
        same += strcmp(o->key, c->key) == 0;
    if (p->finishing || same >= CREST_FETCH_IDLE_PER_HOST) {
        conn_close(c);
        return;
    }
    c->f = NULL;
    c->used = 1;
    c->idle = 1;
    c->idle_since = uv_now(&p->loop->uv);
    c->prev = NULL;
    c->next = p->idle;
    if (c->next)
        c->next->prev = c;
    p->idle = c;
    if (!uv_is_active((uv_handle_t *)&p->sweep))
        uv_timer_start(&p->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
}

/* The TLS context for `ca_file` (NULL: the system's store), made at first use. */
static SSL_CTX *pool_ctx(pool_t *p, const char *ca_file) {
    for (ctx_t *c = p->ctxs; c != NULL; c = c->next)
        if ((c->ca_file == NULL) == (ca_file == NULL) &&
            (ca_file == NULL || strcmp(c->ca_file, ca_file) == 0))
            return c->ctx;
    ctx_t *c = calloc(1, sizeof(*c));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (c == NULL || ctx == NULL || (ca_file && (c->ca_file = strdup(ca_file)) == NULL))
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1)
        goto fail;
    c->ctx = ctx;
    c->next = p->ctxs;
    p->ctxs = c;
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    if (c != NULL)
        free(c->ca_file);
    free(c);
    return NULL;
}

/* ---- connections ---- */

static void on_conn_close(uv_handle_t *h) {
    hconn_t *c = CREST__CONTAINER_OF(h, hconn_t, tcp);
    SSL_free(c->ssl); /* frees both BIOs */
    free(c->key);
    free(c);
}

static void conn_close(hconn_t *c) {
    if (c->closing)
        return;
    idle_remove(c);
    c->closing = 1;
    c->f = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void attempt_ended(crest_fetch_t *f, int err);

typedef struct {
    uv_write_t req;
    uv_buf_t buf;
} wreq_t;

static void on_written(uv_write_t *req, int status) {
    wreq_t *w = CREST__CONTAINER_OF(req, wreq_t, req);
    hconn_t *c = CREST__CONTAINER_OF(req->handle, hconn_t, tcp);
    free(w);
    if (status < 0 && !c->closing) {
        if (c->f != NULL)
            attempt_ended(c->f, status); /* a pooled connection found closed: maybe retried */
        else
            conn_close(c);
    }
}

/* Write bytes as they are (a copy; requests are small next to the answers they bring). */
static int send_raw(hconn_t *c, const void *data, size_t len) {
    wreq_t *w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return CREST_ENOMEM;
    memcpy(w + 1, data, len);
    w->buf = uv_buf_init((char *)(w + 1), (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written);
    if (rc != 0)
        free(w);
    return rc;
}

/* Send what OpenSSL wrote into the memory BIO. */
static int tls_flush(hconn_t *c) {
    char *data;
    long n = BIO_get_mem_data(c->wbio, &data);
    if (n <= 0)
        return 0;
    int rc = send_raw(c, data, (size_t)n);
    (void)BIO_reset(c->wbio);
    return rc;
}

static int conn_send(hconn_t *c, const void *data, size_t len) {
    if (c->ssl == NULL)
        return send_raw(c, data, len);
    if (len > 0 && SSL_write(c->ssl, data, (int)len) <= 0) {
        ERR_clear_error();
        return CREST_EPROTO;
    }
    return tls_flush(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    hconn_t *c = CREST__CONTAINER_OF(h, hconn_t, tcp);
    buf->base = c->pool->readbuf;
    buf->len = READ_SIZE;
}

/* ---- one fetch's progress ---- */

static void arm(crest_fetch_t *f);

static void on_body(void *arg, const char *data, size_t len) {
    crest_fetch_t *f = arg;
    crest_buf_append(&f->resbody, data, len); /* ENOMEM is latched and checked after feeding */
}

/* A redirect to follow: the absolute URL of `loc` from f->url, or NULL (not followable). */
static char *redirect_url(const crest_fetch_t *f, crest_str_t loc) {
    if (loc.ptr == NULL || loc.len == 0)
        return NULL;
    if ((loc.len > 7 && strncasecmp(loc.ptr, "http://", 7) == 0) ||
        (loc.len > 8 && strncasecmp(loc.ptr, "https://", 8) == 0))
        return dup_n(loc.ptr, loc.len);
    const char *scheme = f->tls ? "https:" : "http:";
    if (loc.len > 2 && loc.ptr[0] == '/' && loc.ptr[1] == '/') { /* scheme-relative */
        char *u = malloc(strlen(scheme) + loc.len + 1);
        if (u != NULL)
            sprintf(u, "%s%.*s", scheme, (int)loc.len, loc.ptr);
        return u;
    }
    if (loc.ptr[0] != '/')
        return NULL;
    /* An absolute path: the same origin. */
    size_t origin = strlen(scheme) + 2 + strcspn(f->url + strlen(scheme) + 2, "/?#");
    char *u = malloc(origin + loc.len + 1);
    if (u != NULL) {
        memcpy(u, f->url, origin);
        memcpy(u + origin, loc.ptr, loc.len);
        u[origin + loc.len] = '\0';
    }
    return u;
}

/* A complete response arrived; `clean` when nothing followed it on the connection. */
static void response_done(crest_fetch_t *f, int clean) {
    hconn_t *c = f->conn;
    int reusable = clean && f->parser.keep_alive;
    int st = f->parser.status;
    if (f->redirects_left > 0 && (st == 301 || st == 302 || st == 303 || st == 307 || st == 308)) {
        char *next = redirect_url(f, crest__h1res_header(&f->parser, "location"));
        if (next != NULL) {
            c->f = NULL;
            f->conn = NULL;
            if (reusable)
                pool_put(c);
            else
                conn_close(c);
            free(f->url);
            f->url = next;
            f->redirects_left--;
            f->redirects++;
            if (st == 303 || ((st == 301 || st == 302) && strcmp(f->method, "POST") == 0)) {
                if (strcmp(f->method, "HEAD") != 0) {
                    free(f->method);
                    f->method = strdup("GET");
                }
                free(f->body);
                f->body = NULL;
                f->body_len = 0;
            }
            int rc = f->method == NULL ? CREST_ENOMEM : parse_url(f);
            if (rc != 0) {
                finish(f, rc);
                return;
            }
            f->retried = 0;
            start_attempt(f, 0);
            return;
        }
    }
    if (reusable) { /* back to the pool before the callback, which may ask for it again */
        c->f = NULL;
        f->conn = NULL;
        pool_put(c);
    }
    finish(f, 0);
}

/* The connection ended (EOF or an error) during the attempt. */
static void attempt_ended(crest_fetch_t *f, int err) {
    hconn_t *c = f->conn;
    if (err == UV_EOF && crest__h1res_eof(&f->parser) == CREST__H1RES_DONE) {
        response_done(f, 0);
        return;
    }
    /* A pooled connection the server closed just as it was taken (its close crossed our
     * request): nothing was answered, so sending again on a new connection is safe for a
     * request that may be repeated. */
    if (f->got == 0 && c->used && !f->retried && idempotent(f->method)) {
        f->retried = 1;
        f->conn = NULL;
        conn_close(c);
        start_attempt(f, 1);
        return;
    }
    finish(f, err == UV_EOF ? CREST_ECONNRESET : err);
}

static void feed(crest_fetch_t *f, const char *data, size_t len) {
    size_t used;
    f->got += len;
    int rc = crest__h1res_feed(&f->parser, data, len, &used);
    if (rc >= 0 && f->resbody.err)
        rc = CREST_ENOMEM;
    if (rc < 0)
        finish(f, rc);
    else if (rc == CREST__H1RES_DONE)
        response_done(f, used == len);
}

static void tls_secure(crest_fetch_t *f) {
    f->conn->secure = 1;
    send_request(f);
}

/* Ciphertext arrived on c: the handshake goes on, or application data is decrypted and fed. */
static void tls_read(hconn_t *c, const char *data, size_t len) {
    crest_fetch_t *f = c->f;
    if (BIO_write(c->rbio, data, (int)len) != (int)len) {
        finish(f, CREST_ENOMEM);
        return;
    }
    if (!c->secure) {
        int rc = SSL_do_handshake(c->ssl);
        int e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
        ERR_clear_error();
        if (tls_flush(c) != 0 || (rc != 1 && e != SSL_ERROR_WANT_READ)) {
            finish(f, CREST_EPROTO); /* the certificate check fails here too */
            return;
        }
        if (rc != 1)
            return;
        tls_secure(f);
        if (c->f != f || c->closing)
            return;
    }
    pool_t *p = c->pool;
    while (c->f == f && !c->closing) {
        int n = SSL_read(c->ssl, p->plain, READ_SIZE);
        if (n > 0) {
            feed(f, p->plain, (size_t)n);
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ)
            break;
        attempt_ended(f, e == SSL_ERROR_ZERO_RETURN ? UV_EOF : CREST_EPROTO);
        return;
    }
    if (!c->closing && tls_flush(c) != 0 && c->f != NULL)
        finish(c->f, CREST_EPROTO);
}

/* Bytes on an idle connection: a close (EOF), or something a server should not send now. A TLS
 * record may be a late session ticket, which is no reason to close. */
static void idle_read(hconn_t *c, ssize_t nread, const uv_buf_t *buf) {
    if (nread > 0 && c->ssl != NULL && BIO_write(c->rbio, buf->base, (int)nread) == (int)nread) {
        int n = SSL_read(c->ssl, c->pool->plain, READ_SIZE);
        int e = n > 0 ? SSL_ERROR_SSL : SSL_get_error(c->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ)
            return;
    }
    conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    hconn_t *c = CREST__CONTAINER_OF(s, hconn_t, tcp);
    if (nread == 0 || c->closing)
        return;
    crest_fetch_t *f = c->f;
    if (f == NULL) {
        idle_read(c, nread, buf);
        return;
    }
    if (nread < 0)
        attempt_ended(f, (int)nread);
    else if (c->ssl != NULL)
        tls_read(c, buf->base, (size_t)nread);
    else
        feed(f, buf->base, (size_t)nread);
}

static int tls_start(crest_fetch_t *f, hconn_t *c) {
    SSL_CTX *ctx = pool_ctx(f->pool, f->ca_file);
    if (ctx == NULL)
        return CREST_EINVAL; /* an unreadable CA file (or no memory) */
    c->ssl = SSL_new(ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
        BIO_free(c->rbio);
        BIO_free(c->wbio);
        ERR_clear_error();
        return CREST_ENOMEM;
    }
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    int ok;
    if (host_is_ip(f->host)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), f->host);
    } else {
        /* SNI, and the name the certificate must carry (no partial wildcards such as w*.x). */
        ok = SSL_set_tlsext_host_name(c->ssl, f->host) == 1 && SSL_set1_host(c->ssl, f->host) == 1;
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    if (!ok) {
        ERR_clear_error();
        return CREST_EINVAL;
    }
    int rc = SSL_do_handshake(c->ssl);
    int e = SSL_get_error(c->ssl, rc);
    ERR_clear_error();
    if (e != SSL_ERROR_WANT_READ)
        return CREST_EPROTO;
    return tls_flush(c);
}

static void try_next_addr(crest_fetch_t *f, int last_err);

static void on_connect(uv_connect_t *req, int status) {
    hconn_t *c = CREST__CONTAINER_OF(req, hconn_t, connect);
    if (c->closing)
        return; /* the fetch ended meanwhile */
    crest_fetch_t *f = c->f;
    if (status < 0) {
        f->conn = NULL;
        conn_close(c);
        try_next_addr(f, status);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0 && f->tls)
        rc = tls_start(f, c);
    if (rc != 0)
        finish(f, rc);
    else if (!f->tls)
        send_request(f);
}

static int connect_addr(crest_fetch_t *f, const struct sockaddr *addr) {
    hconn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CREST_ENOMEM;
    c->key = strdup(f->key);
    if (c->key == NULL) {
        free(c);
        return CREST_ENOMEM;
    }
    c->pool = f->pool;
    int rc = uv_tcp_init(&f->loop->uv, &c->tcp);
    if (rc != 0) {
        free(c->key);
        free(c);
        return rc;
    }
    c->tcp.data = (void *)&crest__foreign_tcp; /* not one of the server's connections */
    c->f = f;
    f->conn = c;
    c->secure = !f->tls;
    uv_tcp_nodelay(&c->tcp, 1);
    rc = uv_tcp_connect(&c->connect, &c->tcp, addr, on_connect);
    if (rc != 0) {
        f->conn = NULL;
        conn_close(c);
    }
    return rc;
}

/* Connect to the next address of the lookup; out of addresses, the fetch fails with the last
 * error. */
static void try_next_addr(crest_fetch_t *f, int last_err) {
    while (f->ai_next != NULL) {
        struct addrinfo *ai = f->ai_next;
        f->ai_next = ai->ai_next;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        last_err = connect_addr(f, ai->ai_addr);
        if (last_err == 0)
            return;
    }
    finish(f, last_err ? last_err : CREST_ECONNREFUSED);
}

static void unref(crest_fetch_t *f) {
    if (--f->refs > 0)
        return;
    uv_freeaddrinfo(f->ai);
    crest__h1res_free(&f->parser);
    crest_buf_free(&f->resbody);
    crest_buf_free(&f->fields);
    free(f->method);
    free(f->url);
    free(f->host);
    free(f->target);
    free(f->key);
    free(f->ca_file);
    free(f->body);
    free(f);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    crest_fetch_t *f = CREST__CONTAINER_OF(req, crest_fetch_t, gai);
    if (f->done || f->deferred || status < 0) {
        uv_freeaddrinfo(res);
        if (!f->done && !f->deferred)
            finish(f, status);
    } else {
        uv_freeaddrinfo(f->ai); /* a redirect's earlier lookup */
        f->ai = f->ai_next = res;
        try_next_addr(f, 0);
    }
    unref(f);
}

/* Start (or start again, after a redirect or for the retry) the exchange: a pooled connection
 * unless `fresh`, else a new one. */
static void start_attempt(crest_fetch_t *f, int fresh) {
    crest__h1res_reset(&f->parser);
    f->parser.no_body = strcmp(f->method, "HEAD") == 0;
    f->resbody.len = 0;
    f->got = 0;
    hconn_t *c = fresh ? NULL : pool_take(f->pool, f->key);
    if (c != NULL) {
        c->f = f;
        f->conn = c;
        send_request(f);
        return;
    }
    f->connecting = 1;
    f->conn_deadline =
        f->connect_timeout_ms ? uv_now(&f->loop->uv) + f->connect_timeout_ms : UINT64_MAX;
    arm(f);
    union {
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } sa;
    int rc;
    if (uv_ip4_addr(f->host, f->port, &sa.v4) == 0 || uv_ip6_addr(f->host, f->port, &sa.v6) == 0) {
        rc = connect_addr(f, (const struct sockaddr *)&sa);
    } else {
        char port[8];
        snprintf(port, sizeof(port), "%d", f->port);
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        rc = uv_getaddrinfo(&f->loop->uv, &f->gai, on_resolved, f->host, port, &hints);
        if (rc == 0)
            f->refs++;
    }
    if (rc != 0)
        finish(f, rc);
}

static void send_request(crest_fetch_t *f) {
    f->connecting = 0;
    arm(f);
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_printf(&b, "%s %s HTTP/1.1\r\n", f->method, f->target);
    if (!f->has_host) {
        int v6 = strchr(f->host, ':') != NULL;
        crest_buf_printf(&b, "Host: %s%s%s", v6 ? "[" : "", f->host, v6 ? "]" : "");
        if (f->port != (f->tls ? 443 : 80))
            crest_buf_printf(&b, ":%d", f->port);
        crest_buf_puts(&b, "\r\n");
    }
    crest_buf_append(&b, f->fields.ptr, f->fields.len);
    if (f->body_len > 0 || strcmp(f->method, "POST") == 0 || strcmp(f->method, "PUT") == 0 ||
        strcmp(f->method, "PATCH") == 0)
        crest_buf_printf(&b, "Content-Length: %zu\r\n", f->body_len);
    crest_buf_puts(&b, "\r\n");
    crest_buf_append(&b, f->body, f->body_len);
    int rc = b.err ? b.err : conn_send(f->conn, b.ptr, b.len);
    crest_buf_free(&b);
    if (rc != 0)
        attempt_ended(f, rc);
}

/* ---- deadlines, completion ---- */

static void on_timer(uv_timer_t *t) {
    crest_fetch_t *f = CREST__CONTAINER_OF(t, crest_fetch_t, timer);
    finish(f, f->deferred ? f->pending_err : CREST_ETIMEDOUT);
}

static void arm(crest_fetch_t *f) {
    if (f->deferred || f->done)
        return;
    uint64_t due = f->deadline;
    if (f->connecting && f->conn_deadline < due)
        due = f->conn_deadline;
    if (due == UINT64_MAX) {
        uv_timer_stop(&f->timer);
        return;
    }
    uint64_t now = uv_now(&f->loop->uv);
    uv_timer_start(&f->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_start(uv_timer_t *t) {
    start_attempt(CREST__CONTAINER_OF(t, crest_fetch_t, timer), 0);
}

static void on_timer_close(uv_handle_t *h) {
    unref(CREST__CONTAINER_OF(h, crest_fetch_t, timer));
}

/* Decide the result now and deliver it on the timer (from inside crest_fetch or
 * crest_fetch_cancel, where the callback must not run yet). */
static void complete_later(crest_fetch_t *f, int err) {
    f->deferred = 1;
    f->pending_err = err;
    if (f->conn != NULL) {
        conn_close(f->conn);
        f->conn = NULL;
    }
    uv_timer_start(&f->timer, on_timer, 0, 0);
}

static void finish(crest_fetch_t *f, int err) {
    if (f->done)
        return;
    f->done = 1;
    if (f->pool != NULL) {
        if (f->prev)
            f->prev->next = f->next;
        else
            f->pool->active = f->next;
        if (f->next)
            f->next->prev = f->prev;
    }
    if (f->conn != NULL) {
        conn_close(f->conn); /* a reusable one went back to the pool before */
        f->conn = NULL;
    }
    uv_timer_stop(&f->timer);
    crest_fetch_res_t res;
    memset(&res, 0, sizeof(res));
    res.error = err;
    res.url = f->url;
    res.redirects = f->redirects;
    if (err == 0) {
        res.status = f->parser.status;
        res.headers = f->parser.headers;
        res.nheaders = f->parser.nheaders;
        res.body.ptr = f->resbody.ptr ? f->resbody.ptr : "";
        res.body.len = f->resbody.len;
    }
    f->cb(&res, f->arg);
    uv_close((uv_handle_t *)&f->timer, on_timer_close);
}

/* ---- public ---- */

crest_fetch_opts_t crest_fetch_opts_default(void) {
    crest_fetch_opts_t o;
    memset(&o, 0, sizeof(o));
    o.method = "GET";
    o.timeout_ms = 30000;
    o.connect_timeout_ms = 10000;
    o.max_response = 8 * 1024 * 1024;
    o.max_head = 64 * 1024;
    return o;
}

/* Copy the caller's header fields into f->fields, checking them. */
static int copy_fields(crest_fetch_t *f, const crest_header_t *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        crest_str_t name = h[i].name, value = h[i].value;
        if (!is_token(name.ptr, name.len) || (value.len && value.ptr == NULL))
            return CREST_EINVAL;
        for (size_t k = 0; k < value.len; k++)
            if (value.ptr[k] == '\r' || value.ptr[k] == '\n' || value.ptr[k] == '\0')
                return CREST_EINVAL;
        static const char *const ours[] = {"content-length", "transfer-encoding", "connection"};
        for (size_t k = 0; k < 3; k++)
            if (name.len == strlen(ours[k]) && strncasecmp(name.ptr, ours[k], name.len) == 0)
                return CREST_EINVAL;
        if (name.len == 4 && strncasecmp(name.ptr, "host", 4) == 0)
            f->has_host = 1;
        crest_buf_append(&f->fields, name.ptr, name.len);
        crest_buf_append(&f->fields, ": ", 2);
        crest_buf_append(&f->fields, value.ptr, value.len);
        crest_buf_append(&f->fields, "\r\n", 2);
    }
    return f->fields.err;
}

/* Check and copy the options into f: 0, CREST_EINVAL or CREST_ENOMEM. */
static int prepare(crest_fetch_t *f, const crest_fetch_opts_t *o) {
    if (o->url == NULL || (o->body_len > 0 && o->body == NULL))
        return CREST_EINVAL;
    const char *m = o->method ? o->method : "GET";
    if (!is_token(m, strlen(m)))
        return CREST_EINVAL;
    f->method = strdup(m);
    f->url = strdup(o->url);
    if (f->method == NULL || f->url == NULL)
        return CREST_ENOMEM;
    if (o->ca_file != NULL && (f->ca_file = strdup(o->ca_file)) == NULL)
        return CREST_ENOMEM;
    if (o->body_len > 0) {
        f->body = malloc(o->body_len);
        if (f->body == NULL)
            return CREST_ENOMEM;
        memcpy(f->body, o->body, o->body_len);
        f->body_len = o->body_len;
    }
    int rc = copy_fields(f, o->headers, o->nheaders);
    return rc ? rc : parse_url(f);
}

crest_fetch_t *crest_fetch(crest_loop_t *loop, const crest_fetch_opts_t *opts, crest_fetch_cb cb,
                           void *arg) {
    crest_fetch_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    pool_t *pool = NULL;
    if (!loop->finished) {
        pool = pool_get(loop);
        if (pool == NULL) {
            free(f);
            return NULL;
        }
    }
    f->loop = loop;
    f->pool = pool;
    f->cb = cb;
    f->arg = arg;
    f->refs = 1;
    crest__h1res_init(&f->parser);
    if (opts->max_response)
        f->parser.max_body = opts->max_response;
    if (opts->max_head)
        f->parser.max_head = opts->max_head;
    f->parser.on_body = on_body;
    f->parser.arg = f;
    f->timeout_ms = opts->timeout_ms;
    f->connect_timeout_ms = opts->connect_timeout_ms;
    f->redirects_left = opts->max_redirects > 0 ? opts->max_redirects : 0;
    uv_timer_init(&loop->uv, &f->timer);
    if (pool != NULL) {
        f->next = pool->active;
        if (f->next)
            f->next->prev = f;
        pool->active = f;
    }
    int rc = pool == NULL || pool->finishing ? CREST_ECANCELED : prepare(f, opts);
    if (rc == CREST_ENOMEM) {
        f->done = 1; /* no callback: the caller hears of it from the NULL */
        if (pool != NULL) {
            if (f->prev)
                f->prev->next = f->next;
            else
                pool->active = f->next;
            if (f->next)
                f->next->prev = f->prev;
        }
        uv_close((uv_handle_t *)&f->timer, on_timer_close);
        return NULL;
    }
    if (rc != 0) {
        complete_later(f, rc);
        return f;
    }
    f->deadline = f->timeout_ms ? uv_now(&loop->uv) + f->timeout_ms : UINT64_MAX;
    /* The first attempt starts on the timer's first turn, not here: every failure, even one
     * known at once (a refused connect, a pooled connection found broken), then reaches the
     * callback the same way, after this returns. */
    uv_timer_start(&f->timer, on_start, 0, 0);
    return f;
}

int crest_fetch_cancel(crest_fetch_t *f) {
    if (f->done || f->deferred)
        return CREST_EALREADY;
    complete_later(f, CREST_ECANCELED);
    return 0;
}
