/* Requests' accessors and the responses. A response goes out through its request's writer
 * (req->w), which its protocol installed: HTTP/1.1 serialises it onto the connection. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec/hex.h"
#include "http/cond.h"
#include "http/http.h"

/* ---- requests ---- */

typedef struct arena_blk_s {
    struct arena_blk_s *next;
    max_align_t data[];
} arena_blk_t;

/* A crest__req_on_free registration, in request memory. */
struct crest__cleanup_s {
    struct crest__cleanup_s *next;
    void (*fn)(void *);
    void *arg;
};

crest_req_t *crest__req_new(crest_loop_t *loop, crest__conn_t *c, const crest__writer_t *w) {
    crest__http_loop_t *hl = crest__http_loop(loop);
    crest_req_t *req = hl->free_reqs;
    if (req != NULL) {
        hl->free_reqs = req->next_free;
        crest_buf_t keep = req->res_headers;
        memset(req, 0, sizeof(*req));
        keep.len = 0;
        keep.err = 0;
        req->res_headers = keep; /* reuse its memory */
    } else if ((req = calloc(1, sizeof(*req))) == NULL) {
        return NULL;
    }
    req->loop = loop;
    req->conn = c;
    req->w = w;
    req->start_ns = uv_hrtime(); /* a vDSO clock read: the request's duration (observe.c) */
    if (c != NULL)
        req->peer = c->peer;
    return req;
}

/* Every request ends here, whichever protocol carried it and however it ended (answered at once
 * or later, rejected by the parser, upgraded, its client gone): the one place it is observed. */
void crest__req_free(crest_req_t *req) {
    crest_loop_t *loop = req->loop;
    crest__http_loop_t *hl = crest__http_loop(loop);
    if (hl->frames != NULL) {
        if (hl->frames->req == req && hl->frames->up == NULL)
            hl->frames->finished = 1; /* the usual case: answered by its own handler */
        else
            crest__http_frame_end(req); /* every frame of it: they may nest (body.c) */
    }
    if (req->pending)
        crest__http_unpend(req);
    if (crest__app_of(loop)->ndones > 0)
        crest__http_done_work(req);
    crest__obs_finish(req);
    while (req->cleanups != NULL) { /* NULL unless a module asked (no cost otherwise) */
        struct crest__cleanup_s *c = req->cleanups;
        req->cleanups = c->next;
        c->fn(c->arg); /* c itself is request memory, freed below */
    }
    if (req->gz_state != NULL)
        crest__compress_free(req); /* a compressed body cut short */
    arena_blk_t *b = req->arena;
    while (b != NULL) {
        arena_blk_t *next = b->next;
        free(b);
        b = next;
    }
    req->arena = NULL;
    req->freed = 1;
    if (loop->stopped || req->res_headers.cap > 4096) {
        crest_buf_free(&req->res_headers);
    }
    if (loop->stopped) {
        free(req);
        return;
    }
    req->next_free = hl->free_reqs;
    hl->free_reqs = req;
}

uint64_t crest_req_elapsed_ns(const crest_req_t *req) {
    return uv_hrtime() - req->start_ns;
}

crest_method_t crest_req_method(const crest_req_t *req) {
    return (crest_method_t)req->method;
}

crest_str_t crest_req_method_str(const crest_req_t *req) {
    return req->head ? req->head->method : (crest_str_t){NULL, 0};
}

crest_str_t crest_req_path(const crest_req_t *req) {
    return req->head ? req->head->path : (crest_str_t){NULL, 0};
}

crest_str_t crest_req_query(const crest_req_t *req) {
    return req->head ? req->head->query : (crest_str_t){NULL, 0};
}

crest_str_t crest_req_query_param(const crest_req_t *req, const char *name) {
    crest_str_t q = crest_req_query(req);
    size_t nlen = strlen(name);
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0)
            return eq ? (crest_str_t){eq + 1, (size_t)(stop - eq - 1)} : (crest_str_t){stop, 0};
        p = amp ? amp + 1 : NULL;
    }
    return (crest_str_t){NULL, 0};
}

size_t crest_query_decode(crest_str_t v, char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; v.ptr && i < v.len && n + 1 < cap; i++) {
        char c = v.ptr[i];
        int hi, lo;
        if (c == '%' && i + 2 < v.len &&
            (hi = crest__hex_digit((unsigned char)v.ptr[i + 1])) >= 0 &&
            (lo = crest__hex_digit((unsigned char)v.ptr[i + 2])) >= 0) {
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return n;
}

crest_str_t crest_req_header(const crest_req_t *req, const char *name) {
    if (req->head == NULL)
        return (crest_str_t){NULL, 0};
    size_t nlen = strlen(name);
    for (size_t i = 0; i < req->head->num_headers; i++) {
        const crest_header_t *h = &req->head->headers[i];
        if (h->name.len == nlen && strncasecmp(h->name.ptr, name, nlen) == 0)
            return h->value;
    }
    return (crest_str_t){NULL, 0};
}

unsigned crest__req_accept_encoding(const crest_req_t *req) {
    size_t count, n = 0;
    const crest_header_t *h = crest_req_headers(req, &count);
    const crest_header_t *first = NULL;
    char joined[1024];
    size_t len = 0;
    for (size_t i = 0; i < count; i++) {
        if (h[i].name.len != 15 || strncasecmp(h[i].name.ptr, "accept-encoding", 15) != 0)
            continue;
        if (n++ == 0) {
            first = &h[i]; /* the usual case, parsed where it is */
            continue;
        }
        /* Several lines are one comma-separated list (RFC 9110 5.3); too long to join is taken
         * as malformed (identity only). */
        if (n == 2) {
            if (first->value.len > sizeof(joined))
                return 0;
            memcpy(joined, first->value.ptr, first->value.len);
            len = first->value.len;
        }
        if (len + 2 + h[i].value.len > sizeof(joined))
            return 0;
        memcpy(joined + len, ", ", 2);
        memcpy(joined + len + 2, h[i].value.ptr, h[i].value.len);
        len += 2 + h[i].value.len;
    }
    if (n <= 1)
        return first ? crest__accept_encoding(first->value) : 0;
    return crest__accept_encoding((crest_str_t){joined, len});
}

const crest_header_t *crest_req_headers(const crest_req_t *req, size_t *count) {
    if (req->head == NULL) {
        *count = 0;
        return NULL;
    }
    *count = req->head->num_headers;
    return req->head->headers;
}

int crest__path_decode(crest_str_t in, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.ptr[i];
        if (c == '%') {
            int hi = i + 2 < in.len ? crest__hex_digit((unsigned char)in.ptr[i + 1]) : -1;
            int lo = i + 2 < in.len ? crest__hex_digit((unsigned char)in.ptr[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return -1; /* "%", "%4", "%zz", and "%00", which C strings would cut short */
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return (int)n;
}

crest_str_t crest__req_param_raw(const crest_req_t *req, const char *name) {
    if (req->match == NULL)
        return (crest_str_t){NULL, 0};
    size_t nlen = strlen(name);
    for (size_t i = 0; i < req->match->nparams; i++)
        if (req->match->names[i].len == nlen && memcmp(req->match->names[i].ptr, name, nlen) == 0)
            return req->match->values[i];
    return (crest_str_t){NULL, 0};
}

crest_str_t crest_req_param(const crest_req_t *req, const char *name) {
    crest_str_t v = crest__req_param_raw(req, name);
    /* Most values hold no escape and are returned where they are, at no cost. The decoded copy
     * goes to request memory: the read buffer is left as it was, so that crest_req_path() and a
     * second call see the text as sent, and a value is never decoded twice ("%2525" is "%25"). */
    if (v.ptr == NULL || memchr(v.ptr, '%', v.len) == NULL)
        return v;
    /* The request is not const: handlers hold it mutable; the accessor is const for its callers
     * only, and request memory is what crest_req_keep() hands out too. */
    char *out = crest_req_alloc((crest_req_t *)req, v.len + 1);
    int n = out ? crest__path_decode(v, out) : -1;
    if (n < 0)
        return (crest_str_t){NULL, 0};
    return (crest_str_t){out, (size_t)n};
}

crest_str_t crest_req_body(const crest_req_t *req) {
    return req->body;
}

int crest_req_version(const crest_req_t *req) {
    return req->version_minor;
}

const char *crest_req_route(const crest_req_t *req) {
    return req->route;
}

size_t crest_req_peer(const crest_req_t *req, char *buf, size_t cap) {
    return crest__addr_format(&req->peer, buf, cap);
}

crest_loop_t *crest_req_loop(const crest_req_t *req) {
    return req->loop;
}

void *crest_req_alloc(crest_req_t *req, size_t size) {
    if (size > SIZE_MAX - sizeof(arena_blk_t))
        return NULL;
    arena_blk_t *b = malloc(sizeof(*b) + size);
    if (b == NULL)
        return NULL;
    b->next = req->arena;
    req->arena = b;
    return b->data;
}

/* crest_req_set's values: a short list in the request's arena (a request carries a few). */
typedef struct crest__local_s {
    struct crest__local_s *next;
    const char *key;
    void *value;
} local_t;

int crest_req_set(crest_req_t *req, const char *key, void *value) {
    for (local_t *l = req->locals; l != NULL; l = l->next)
        if (strcmp(l->key, key) == 0) {
            l->value = value;
            return 0;
        }
    local_t *l = crest_req_alloc(req, sizeof(*l));
    if (l == NULL)
        return CREST_ENOMEM;
    *l = (local_t){req->locals, key, value};
    req->locals = l;
    return 0;
}

void *crest_req_get(const crest_req_t *req, const char *key) {
    for (const local_t *l = req->locals; l != NULL; l = l->next)
        if (strcmp(l->key, key) == 0)
            return l->value;
    return NULL;
}

int crest__req_on_free(crest_req_t *req, void (*fn)(void *), void *arg) {
    struct crest__cleanup_s *c = crest_req_alloc(req, sizeof(*c));
    if (c == NULL)
        return CREST_ENOMEM;
    c->fn = fn;
    c->arg = arg;
    c->next = req->cleanups;
    req->cleanups = c;
    return 0;
}

void *crest__req_cleanup_find(const crest_req_t *req, void (*fn)(void *)) {
    for (const struct crest__cleanup_s *c = req->cleanups; c != NULL; c = c->next)
        if (c->fn == fn)
            return c->arg;
    return NULL;
}

crest_str_t crest_req_keep(crest_req_t *req, crest_str_t s) {
    char *p = crest_req_alloc(req, s.len + 1);
    if (p == NULL)
        return (crest_str_t){NULL, 0};
    if (s.len)
        memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    return (crest_str_t){p, s.len};
}

void crest_req_on_abort(crest_req_t *req, crest_abort_cb cb, void *arg) {
    req->abort_cb = cb;
    req->abort_arg = arg;
}

int crest_req_aborted(const crest_req_t *req) {
    return req->aborted;
}

/* ---- statuses and methods ---- */

const char *crest_status_reason(int status) {
    switch (status) {
#define X(code, reason)                                                                            \
    case code:                                                                                     \
        return reason;
#include "http/status.def"
#undef X
    default:
        return "Unknown";
    }
}

const char *crest__status_line(int status, size_t *len) {
    switch (status) {
#define X(code, reason)                                                                            \
    case code:                                                                                     \
        *len = sizeof("HTTP/1.1 " #code " " reason "\r\n") - 1;                                    \
        return "HTTP/1.1 " #code " " reason "\r\n";
#include "http/status.def"
#undef X
    default:
        return NULL;
    }
}

const char *crest_method_name(crest_method_t method) {
    static const char *const names[] = {
        NULL,
#define CREST_METHOD(id, token) token,
#include "crest/method.def"
#undef CREST_METHOD
    };
    if ((int)method <= 0 || method >= CREST_METHOD__COUNT)
        return NULL;
    return names[method];
}

/* ---- responses ---- */

static int valid_field(const char *s, int is_name) {
    if (*s == '\0' && is_name)
        return 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (is_name ? (c <= 0x20 || c >= 0x7f || c == ':') : (c < 0x20 && c != '\t') || c == 0x7f)
            return 0;
    }
    return 1;
}

/* A second finishing call (or any call) on a request already finished: refused, and in a debug
 * build a failed assertion, because the next request on the loop may reuse the object. */
static int refuse_freed(void) {
#ifdef CREST_DEBUG
    assert(!"a finishing call on a request already finished");
#endif
    return CREST_EALREADY;
}

/* ASCII case-insensitive equality of a NUL-terminated name with a lowercase literal. */
static int name_is(const char *name, const char *lower) {
    for (; *name && *lower; name++, lower++)
        if ((*name | 0x20) != *lower) /* '-' and digits are unchanged by the 0x20 bit */
            return 0;
    return *name == '\0' && *lower == '\0';
}

/* Connection's value names the "close" option (a comma-separated list of tokens). */
static int names_close(const char *v) {
    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        const char *t = v;
        while (*v && *v != ',' && *v != ' ' && *v != '\t')
            v++;
        if (v - t == 5 && strncasecmp(t, "close", 5) == 0)
            return 1;
    }
    return 0;
}

int crest_res_header(crest_req_t *req, const char *name, const char *value) {
    if (req->freed)
        return refuse_freed();
    if (req->started && !req->in_head)
        return CREST_EALREADY;
    if (!valid_field(name, 1) || !valid_field(value, 0))
        return CREST_EINVAL;
    switch (name[0] | 0x20) { /* the framing is crest's: these are refused or taken over */
    case 'c':
        if (name_is(name, "content-length"))
            return CREST_EINVAL;
        if (name_is(name, "content-type")) {
            crest_str_t kept = crest_req_keep(req, (crest_str_t){value, strlen(value)});
            if (kept.ptr == NULL)
                return CREST_ENOMEM;
            req->ctype = kept.ptr; /* sent when the finishing call names none */
            return 0;
        }
        if (name_is(name, "connection") && names_close(value)) {
            req->keep_alive = 0; /* the protocol says it (HTTP/1.1) or ends the connection */
            return 0;
        }
        break;
    case 't':
        if (name_is(name, "transfer-encoding"))
            return CREST_EINVAL;
        break;
    case 'd':
        if (name_is(name, "date"))
            return CREST_EINVAL;
        break;
    }
    crest_buf_t *b = &req->res_headers;
    crest_buf_puts(b, name);
    crest_buf_append(b, ": ", 2);
    crest_buf_puts(b, value);
    return crest_buf_append(b, "\r\n", 2);
}

int crest__res_header_block(crest_req_t *req, const char *text, size_t len) {
    if (req->started)
        return CREST_EALREADY;
    return crest_buf_append(&req->res_headers, text, len);
}

void crest__res_reject(crest_req_t *req, int status) {
    crest__count(&crest__http_loop(req->loop)->rejected, 1);
    if (status == 503)
        crest_res_header(req, "Retry-After", "1");
    crest__http_error(req, status);
}

void crest__http_count(crest_loop_t *loop, int status) {
    crest__count(&crest__http_loop(loop)->status_counts[status], 1);
}

/* Inlined into this file's answers (the request path); crest__res_head is the same for the
 * other files. The hooks and the pending list are the rare cases, kept out of line. */
static inline int res_head(crest_req_t *req, int status, const char *ctype, int64_t body_len) {
    const crest_app_t *app = crest__app_of(req->loop);
    if (__builtin_expect(req->mw_next < app->every_end || app->nheads > 0, 0))
        crest__http_head_work(req, status);
    if (__builtin_expect(req->pending, 0))
        crest__http_unpend(req);
    if (ctype == NULL)
        ctype = req->ctype;
    int rc = req->w->head(req, status, ctype, body_len);
    if (rc == 0) {
        req->status = status;
        crest__http_count(req->loop, status);
    }
    return rc;
}

int crest__res_head(crest_req_t *req, int status, const char *ctype, int64_t body_len) {
    return res_head(req, status, ctype, body_len);
}

/* The common path of every complete response. */
static int send_full(crest_req_t *req, int status, const char *ctype, const void *body, size_t len,
                     int borrowed, crest_release_cb release, void *arg) {
    if (req->freed) {
        if (borrowed && release)
            release(arg);
        return refuse_freed();
    }
    if (req->started) { /* a streamed response cannot be replaced: cut it off */
        if (borrowed && release)
            release(arg);
        if (!crest__req_gone(req))
            req->w->abort(req);
        req->w->finish(req);
        return CREST_EINVAL;
    }
    int ret = 0;
    if (status < 100 || status > 599) {
        if (borrowed && release)
            release(arg);
        ret = CREST_EINVAL; /* the client still gets an answer */
        status = 500, ctype = "text/plain", body = "Internal Server Error\n", len = 22;
        borrowed = 1, release = NULL;
    }
    if (crest__req_gone(req)) {
        if (borrowed && release)
            release(arg);
        req->w->finish(req);
        return CREST_ECANCELED;
    }
    if (req->gz != NULL) {
        int zrc = crest__compress_full(req, status, ctype, body, len, borrowed, release, arg);
        if (zrc != CREST_NEXT)
            return zrc; /* sent compressed (or failed trying) */
    }
    int no_body = req->head_only || status == 204 || status == 304 || status < 200;
    int rc = res_head(req, status, ctype, (int64_t)len);
    if (rc == 0 && !no_body && len > 0) {
        /* Small bodies are copied behind the head (one contiguous write); large borrowed ones
         * go out from where they are. */
        int lend = borrowed && len >= 1024;
        rc = req->w->body(req, body, len, lend ? release : NULL, arg);
        req->body_sent += len;
        if (lend)
            borrowed = 0; /* the writer owns the release now */
    }
    if (borrowed && release)
        release(arg);
    if (rc != 0) {
        if (!crest__req_gone(req))
            req->w->abort(req);
        req->w->finish(req);
        return rc;
    }
    req->w->finish(req);
    return ret;
}

int crest_res_send(crest_req_t *req, int status, const char *content_type, const void *body,
                   size_t len) {
    return send_full(req, status, content_type, body, len, 0, NULL, NULL);
}

int crest_res_send_borrowed(crest_req_t *req, int status, const char *content_type,
                            const void *body, size_t len, crest_release_cb release, void *arg) {
    return send_full(req, status, content_type, body, len, 1, release, arg);
}

int crest_res_status(crest_req_t *req, int status) {
    const char *reason = crest_status_reason(status);
    char body[64];
    int n = snprintf(body, sizeof(body), "%s\n", reason);
    return send_full(req, status, "text/plain; charset=utf-8", body, (size_t)n, 0, NULL, NULL);
}

int crest_res_json(crest_req_t *req, int status, const char *json, size_t len) {
    return send_full(req, status, "application/json", json, len, 0, NULL, NULL);
}

static void free_cb(void *p) {
    free(p);
}

int crest_res_send_buf(crest_req_t *req, int status, const char *content_type, crest_buf_t *b) {
    if (req->freed) {
        crest_buf_free(b);
        return refuse_freed();
    }
    if (b->err) {
        crest_buf_free(b);
        return crest_res_status(req, 503);
    }
    if (b->fixed_mem) {
        int rc = send_full(req, status, content_type, b->ptr, b->len, 0, NULL, NULL);
        crest_buf_free(b);
        return rc;
    }
    char *p = b->ptr;
    size_t len = b->len;
    b->ptr = NULL;
    b->len = b->cap = 0;
    return send_full(req, status, content_type, p, len, 1, free_cb, p);
}

int crest_res_start(crest_req_t *req, int status, const char *content_type) {
    if (req->freed)
        return refuse_freed();
    if (req->started || status < 200 || status > 599)
        return CREST_EINVAL;
    if (crest__req_gone(req))
        return CREST_ECANCELED;
    if (req->gz != NULL)
        crest__compress_start(req, status, content_type);
    req->started = 1;
    if (res_head(req, status, content_type, -1) != 0) {
        req->w->abort(req);
        return CREST_ENOMEM;
    }
    req->w->push(req);
    return 0;
}

int crest_res_write(crest_req_t *req, const void *data, size_t len) {
    if (req->freed)
        return refuse_freed();
    if (!req->started)
        return CREST_EINVAL;
    if (crest__req_gone(req))
        return CREST_ECANCELED;
    if (len == 0 || req->head_only)
        return 0;
    /* While the process is over its buffer budget a request that already has a backlog takes
     * no more: the handler hears it instead of memory growing. */
    const crest__rt_t *rt = req->loop->rt;
    if (crest__mem_over(rt) && req->w->buffered(req) > rt->opts->max_output / 2)
        return CREST_ENOBUFS;
    int rc = req->gz_state != NULL ? crest__compress_write(req, data, len)
                                   : req->w->body(req, data, len, NULL, NULL);
    if (rc != 0) {
        req->w->abort(req);
        return rc;
    }
    req->body_sent += len;
    req->w->push(req);
    return 0;
}

size_t crest_res_buffered(const crest_req_t *req) {
    return crest__req_gone(req) ? 0 : req->w->buffered(req);
}

int crest_res_on_drain(crest_req_t *req, crest_drain_cb cb, void *arg) {
    if (crest__req_gone(req))
        return CREST_ECANCELED;
    if (!req->started || cb == NULL)
        return CREST_EINVAL;
    size_t queued = req->w->buffered(req);
    if (queued == 0) {
        req->drain_cb = NULL;
        return CREST_EALREADY;
    }
    size_t cap = req->loop->rt->opts->max_output / 2;
    req->drain_cb = cb;
    req->drain_arg = arg;
    req->drain_mark = queued / 2 < cap ? queued / 2 : cap;
    req->w->want_drain(req);
    return 0;
}

int crest_res_end(crest_req_t *req) {
    if (req->freed)
        return refuse_freed();
    if (!req->started) {
        req->w->finish(req);
        return CREST_EINVAL;
    }
    if (crest__req_gone(req)) {
        req->w->finish(req);
        return CREST_ECANCELED;
    }
    int rc = req->gz_state != NULL ? crest__compress_end(req) : 0;
    if (rc == 0)
        rc = req->w->end(req);
    if (rc != 0)
        req->w->abort(req);
    req->w->finish(req);
    return rc;
}

int crest_res_abort(crest_req_t *req) {
    if (req->freed)
        return refuse_freed();
    req->abort_cb = NULL; /* the application is the one giving up */
    if (!crest__req_gone(req))
        req->w->abort(req); /* detaches req from its connection */
    req->w->finish(req);
    return 0;
}
