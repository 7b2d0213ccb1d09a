/* Requests' accessors and the response writer. Responses are serialised straight into the
 * connection's output queue (crest__conn_out): the whole head in one reserved run of bytes, a
 * copied body right behind it, so a batch of pipelined answers becomes one contiguous buffer and
 * one write. */
#include <stdlib.h>
#include <string.h>

#include "http/conn.h"

/* ---- output queue ---- */

void crest__outq_free(crest__outq_t *q) {
    for (size_t i = 0; i < q->nsegs; i++)
        if (q->segs[i].release)
            q->segs[i].release(q->segs[i].arg);
    crest_buf_free(&q->bytes);
    free(q->segs);
    memset(q, 0, sizeof(*q));
}

static crest__seg_t *outq_seg(crest__outq_t *q) {
    if (q->nsegs == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 8;
        crest__seg_t *s = realloc(q->segs, cap * sizeof(*s));
        if (s == NULL)
            return NULL;
        q->segs = s;
        q->cap = cap;
    }
    crest__seg_t *s = &q->segs[q->nsegs++];
    memset(s, 0, sizeof(*s));
    return s;
}

/* Count `len` bytes just appended to q->bytes: extend the last segment when it ends there. */
static int outq_commit(crest__outq_t *q, size_t len) {
    size_t off = q->bytes.len - len;
    q->total += len;
    if (q->nsegs > 0) {
        crest__seg_t *last = &q->segs[q->nsegs - 1];
        if (last->ext == NULL && last->off + last->len == off) {
            last->len += len;
            return 0;
        }
    }
    crest__seg_t *s = outq_seg(q);
    if (s == NULL)
        return CREST_ENOMEM;
    s->off = off;
    s->len = len;
    return 0;
}

int crest__outq_copy(crest__outq_t *q, const void *data, size_t len) {
    if (len == 0)
        return 0;
    if (crest_buf_append(&q->bytes, data, len) != 0)
        return CREST_ENOMEM;
    return outq_commit(q, len);
}

static int outq_ext(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                    void *arg, int shared) {
    crest__seg_t *s = outq_seg(q);
    if (s == NULL) {
        if (release)
            release(arg);
        return CREST_ENOMEM;
    }
    s->ext = data;
    s->len = len;
    s->release = release;
    s->arg = arg;
    s->shared = shared;
    q->total += len;
    if (shared)
        q->shared += len;
    return 0;
}

int crest__outq_borrow(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                       void *arg) {
    return outq_ext(q, data, len, release, arg, 0);
}

int crest__outq_share(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                      void *arg) {
    return outq_ext(q, data, len, release, arg, 1);
}

/* ---- requests ---- */

typedef struct arena_blk_s {
    struct arena_blk_s *next;
    max_align_t data[];
} arena_blk_t;

crest_req_t *crest__req_new(crest_loop_t *loop, crest__conn_t *c) {
    crest_req_t *req = loop->free_reqs;
    if (req != NULL) {
        loop->free_reqs = req->next_free;
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
    return req;
}

void crest__req_free(crest_req_t *req) {
    arena_blk_t *b = req->arena;
    while (b != NULL) {
        arena_blk_t *next = b->next;
        free(b);
        b = next;
    }
    req->arena = NULL;
    crest_loop_t *loop = req->loop;
    if (loop->stopped || req->res_headers.cap > 4096) {
        crest_buf_free(&req->res_headers);
    }
    if (loop->stopped) {
        free(req);
        return;
    }
    req->next_free = loop->free_reqs;
    loop->free_reqs = req;
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

static int hex_digit(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t crest_query_decode(crest_str_t v, char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; v.ptr && i < v.len && n + 1 < cap; i++) {
        char c = v.ptr[i];
        int hi, lo;
        if (c == '%' && i + 2 < v.len && (hi = hex_digit(v.ptr[i + 1])) >= 0 &&
            (lo = hex_digit(v.ptr[i + 2])) >= 0) {
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

const crest_header_t *crest_req_headers(const crest_req_t *req, size_t *count) {
    if (req->head == NULL) {
        *count = 0;
        return NULL;
    }
    *count = req->head->num_headers;
    return req->head->headers;
}

crest_str_t crest_req_param(const crest_req_t *req, const char *name) {
    if (req->match == NULL)
        return (crest_str_t){NULL, 0};
    size_t nlen = strlen(name);
    for (size_t i = 0; i < req->match->nparams; i++)
        if (req->match->names[i].len == nlen && memcmp(req->match->names[i].ptr, name, nlen) == 0)
            return req->match->values[i];
    return (crest_str_t){NULL, 0};
}

crest_str_t crest_req_body(const crest_req_t *req) {
    return req->body;
}

int crest_req_version(const crest_req_t *req) {
    return req->version_minor;
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

int crest_res_header(crest_req_t *req, const char *name, const char *value) {
    if (req->started)
        return CREST_EALREADY;
    if (!valid_field(name, 1) || !valid_field(value, 0))
        return CREST_EINVAL;
    crest_buf_t *b = &req->res_headers;
    crest_buf_puts(b, name);
    crest_buf_append(b, ": ", 2);
    crest_buf_puts(b, value);
    return crest_buf_append(b, "\r\n", 2);
}

static char *fmt_u64(char *end, uint64_t v) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* Finish: the request leaves its connection and is recycled; the connection goes on. */
static void req_finish(crest_req_t *req) {
    crest__conn_t *c = req->conn;
    if (c != NULL && !req->keep_alive)
        c->flags |= CONN_CLOSE_AFTER_WRITE;
    crest__req_free(req);
    if (c != NULL && c->req == req) /* compares the pointer only: req is recycled */
        crest__conn_request_done(c);
}

/* Serialise the head. body_len < 0 means a streamed body (chunked or close-delimited). */
static int write_head(crest_req_t *req, crest__outq_t *q, int status, const char *ctype,
                      int64_t body_len) {
    crest_loop_t *loop = req->loop;
    if (loop->draining)
        req->keep_alive = 0; /* shutting down: this is the connection's last response */
    size_t ctype_len = ctype ? strlen(ctype) : 0;
    size_t need = 64 + loop->date_line_len + ctype_len + 64 + req->res_headers.len + 64;
    if (q->bytes.cap - q->bytes.len < need) { /* grow once for the whole head */
        size_t cap =
            q->bytes.cap * 2 > q->bytes.len + need ? q->bytes.cap * 2 : q->bytes.len + need;
        char *p = realloc(q->bytes.ptr, cap);
        if (p == NULL)
            return CREST_ENOMEM;
        q->bytes.ptr = p;
        q->bytes.cap = cap;
    }
    char *start = q->bytes.ptr + q->bytes.len, *o = start;
    size_t n;
    const char *line = crest__status_line(status, &n);
    if (line) {
        memcpy(o, line, n);
        o += n;
    } else {
        o += sprintf(o, "HTTP/1.1 %d Unknown\r\n", status);
    }
    memcpy(o, loop->date_line, loop->date_line_len);
    o += loop->date_line_len;
    if (ctype) {
        memcpy(o, "Content-Type: ", 14);
        o += 14;
        memcpy(o, ctype, ctype_len);
        o += ctype_len;
        *o++ = '\r';
        *o++ = '\n';
    }
    if (body_len >= 0) {
        if (status != 204 && status != 304) {
            memcpy(o, "Content-Length: ", 16);
            o += 16;
            char num[24];
            char *d = fmt_u64(num + sizeof(num), (uint64_t)body_len);
            memcpy(o, d, (size_t)(num + sizeof(num) - d));
            o += num + sizeof(num) - d;
            *o++ = '\r';
            *o++ = '\n';
        }
    } else if (req->chunked) {
        memcpy(o, "Transfer-Encoding: chunked\r\n", 28);
        o += 28;
    }
    memcpy(o, req->res_headers.ptr ? req->res_headers.ptr : "", req->res_headers.len);
    o += req->res_headers.len;
    if (!req->keep_alive) {
        memcpy(o, "Connection: close\r\n", 19);
        o += 19;
    } else if (req->version_minor == 0) {
        memcpy(o, "Connection: keep-alive\r\n", 24);
        o += 24;
    }
    *o++ = '\r';
    *o++ = '\n';
    q->bytes.len += (size_t)(o - start);
    if (outq_commit(q, (size_t)(o - start)) != 0)
        return CREST_ENOMEM;
    crest__count(&loop->status_counts[status], 1);
    return 0;
}

/* The common path of every complete response. */
static int send_full(crest_req_t *req, int status, const char *ctype, const void *body, size_t len,
                     int borrowed, crest_release_cb release, void *arg) {
    if (req->started) { /* a streamed response cannot be replaced: cut the connection */
        if (borrowed && release)
            release(arg);
        if (req->conn)
            crest__conn_close(req->conn);
        req_finish(req);
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
    if (req->conn == NULL || req->conn->flags & CONN_CLOSING) {
        if (borrowed && release)
            release(arg);
        req_finish(req);
        return CREST_ECANCELED;
    }
    crest__conn_t *c = req->conn;
    crest__outq_t *q = crest__conn_out(c);
    int no_body = req->head_only || status == 204 || status == 304 || status < 200;
    int rc = 0;
    if (q == NULL || write_head(req, q, status, ctype, (int64_t)len) != 0) {
        rc = CREST_ENOMEM;
    } else if (!no_body && len > 0) {
        if (borrowed && len >= 1024) {
            rc = crest__outq_borrow(q, body, len, release, arg);
            borrowed = 0; /* the queue owns the release now */
        } else {
            rc = crest__outq_copy(q, body, len);
        }
    }
    if (borrowed && release)
        release(arg);
    if (rc != 0) {
        crest__conn_close(c);
        req_finish(req);
        return rc;
    }
    req_finish(req);
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
    if (req->started || status < 200 || status > 599)
        return CREST_EINVAL;
    if (req->conn == NULL || req->conn->flags & CONN_CLOSING)
        return CREST_ECANCELED;
    req->started = 1;
    if (req->version_minor == 0)
        req->keep_alive = 0; /* HTTP/1.0 has no chunked framing: the body ends at close */
    else
        req->chunked = 1;
    crest__conn_t *c = req->conn;
    crest__outq_t *q = crest__conn_out(c);
    if (q == NULL || write_head(req, q, status, content_type, -1) != 0) {
        crest__conn_close(c);
        return CREST_ENOMEM;
    }
    if (!(c->flags & CONN_IN_DISPATCH))
        crest__conn_flush(c);
    return 0;
}

int crest_res_write(crest_req_t *req, const void *data, size_t len) {
    if (!req->started)
        return CREST_EINVAL;
    if (req->conn == NULL || req->conn->flags & CONN_CLOSING)
        return CREST_ECANCELED;
    if (len == 0 || req->head_only)
        return 0;
    crest__conn_t *c = req->conn;
    /* While the process is over its buffer budget a connection that already has a backlog takes
     * no more: the handler hears it instead of memory growing. */
    if (crest__mem_over(req->loop->app) &&
        crest__conn_buffered(c) > req->loop->app->opts.max_output / 2)
        return CREST_ENOBUFS;
    crest__outq_t *q = crest__conn_out(c);
    int rc = q ? 0 : CREST_ENOMEM;
    if (rc == 0 && req->chunked) {
        char line[24];
        int n = snprintf(line, sizeof(line), "%zx\r\n", len);
        rc = crest__outq_copy(q, line, (size_t)n);
    }
    if (rc == 0)
        rc = crest__outq_copy(q, data, len);
    if (rc == 0 && req->chunked)
        rc = crest__outq_copy(q, "\r\n", 2);
    if (rc != 0) {
        crest__conn_close(c);
        return rc;
    }
    if (!(c->flags & CONN_IN_DISPATCH))
        crest__conn_flush(c);
    return 0;
}

size_t crest_res_buffered(const crest_req_t *req) {
    crest__conn_t *c = req->conn;
    if (c == NULL || (c->flags & CONN_CLOSING))
        return 0;
    return crest__conn_buffered(c);
}

int crest_res_on_drain(crest_req_t *req, crest_drain_cb cb, void *arg) {
    crest__conn_t *c = req->conn;
    if (c == NULL || (c->flags & CONN_CLOSING))
        return CREST_ECANCELED;
    if (!req->started || c->req != req || cb == NULL)
        return CREST_EINVAL;
    size_t queued = crest__conn_buffered(c);
    if (queued == 0) {
        req->drain_cb = NULL;
        return CREST_EALREADY;
    }
    size_t cap = req->loop->app->opts.max_output / 2;
    req->drain_cb = cb;
    req->drain_arg = arg;
    req->drain_mark = queued / 2 < cap ? queued / 2 : cap;
    /* Outside a read batch the output is already in a write whose completion checks the mark;
     * inside one, the batch's flush sees the callback and writes asynchronously. */
    if (!(c->flags & CONN_IN_DISPATCH))
        crest__conn_flush(c);
    return 0;
}

int crest_res_end(crest_req_t *req) {
    if (!req->started) {
        req_finish(req);
        return CREST_EINVAL;
    }
    crest__conn_t *c = req->conn;
    if (c == NULL || c->flags & CONN_CLOSING) {
        req_finish(req);
        return CREST_ECANCELED;
    }
    if (req->chunked && !req->head_only) {
        crest__outq_t *q = crest__conn_out(c);
        if (q == NULL || crest__outq_copy(q, "0\r\n\r\n", 5) != 0) {
            crest__conn_close(c);
            req_finish(req);
            return CREST_ENOMEM;
        }
    }
    req_finish(req);
    return 0;
}

int crest_res_abort(crest_req_t *req) {
    crest__conn_t *c = req->conn;
    req->abort_cb = NULL; /* the application is the one giving up */
    if (c != NULL && !(c->flags & CONN_CLOSING))
        crest__conn_close(c); /* detaches req from c */
    req_finish(req);
    return 0;
}

void crest__send_error(crest__conn_t *c, int status, int version_minor) {
    crest_loop_t *loop = c->tcp.loop->data;
    crest_req_t *req = crest__req_new(loop, c);
    if (req == NULL) {
        crest__conn_close(c);
        return;
    }
    req->version_minor = (unsigned)version_minor & 1;
    req->keep_alive = 0;
    c->req = req;
    crest__count(&loop->rejected, 1);
    if (status == 503) /* a limit of ours, not the client's fault: it may try again */
        crest_res_header(req, "Retry-After", "1");
    crest_res_status(req, status);
}
