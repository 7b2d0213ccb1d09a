/* The test client (crest/testing.h): an app called in-process, its loop run by the caller.
 *
 * Why a socket pair and not a transport in memory: a connection (core/conn.c) is a libuv TCP
 * handle whose reads, writes (try-write, then uv_write with its callback), sendfile, shutdown
 * and close all go to a descriptor. A transport in memory needs a second path through each of
 * them, on the request path of every real connection, and still would not behave as a socket
 * does when the client reads slowly (partial writes, drain callbacks, max_output, the write
 * deadline). A connected AF_UNIX pair behaves exactly as a TCP socket does for all of that, needs
 * no port, no address and no file, and stays inside the process: the server end is adopted as an
 * accepted connection (crest__conn_adopt) and crest runs unchanged, while the client end, a libuv
 * pipe on the same loop, writes the request and reads the response. The cost is two descriptors
 * for the length of a call.
 *
 * The response is taken apart here with a small HTTP/1.1 response reader: the status line, the
 * header fields, and the body framed by Content-Length, chunked encoding (crest's own decoder) or
 * the close. It trusts crest's output no more than a client would: anything malformed is
 * CREST_EIO. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"

#define DEFAULT_TIMEOUT_MS 5000
/* After the response, how long the server's end may take to close (it sees the client's close
 * at once unless it stopped reading; then its own timers close it later). */
#define CLOSE_WAIT_MS 1000
#define READ_CHUNK (64 * 1024)
#define MAX_HEAD (1024 * 1024) /* a response head larger than this is taken for garbage */

struct crest_test_s {
    crest_app_t *app;
    crest_loop_t *loop;
    uv_timer_t timer; /* the call's deadline */
    uint32_t timeout_ms;
    crest__addr_t peer;
};

enum { FRAME_NONE, FRAME_LENGTH, FRAME_CHUNKED, FRAME_CLOSE };

typedef struct {
    size_t name_off, name_len, value_off, value_len;
} field_t;

/* One call's client end. Lives on the caller's stack for the call. */
typedef struct {
    uv_pipe_t pipe;
    uv_write_t wreq;
    char *in; /* response bytes read; a chunked body is decoded in place behind the head */
    size_t len;
    size_t cap;
    int head_only;   /* a HEAD request: the response has no body whatever it says */
    size_t scanned;  /* bytes searched for the end of the head */
    size_t head_len; /* 0 until the final head has arrived */
    int status;      /* of the final head */
    field_t *fields; /* its header fields */
    size_t nfields;
    int frame;       /* FRAME_*, once the head has arrived */
    uint64_t length; /* FRAME_LENGTH */
    crest__http_chunked_t chunked;
    size_t raw_off;  /* FRAME_CHUNKED: first byte not decoded yet */
    size_t body_len; /* FRAME_CHUNKED: decoded bytes at in[head_len ..] */
    int done;        /* 1 complete, or a negative error: the call ends */
    int eof;         /* the server closed its end */
    int expired;     /* the timer fired */
    int pipe_closed; /* the pipe's close callback ran */
} call_t;

void crest_test_opts_default(crest_test_opts_t *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->timeout_ms = DEFAULT_TIMEOUT_MS;
    opts->client = "127.0.0.1";
}

/* ---- the response reader ---- */

static int ieq(const char *a, size_t alen, const char *lower) {
    return crest__str_ieq((crest_str_t){a, alen}, lower);
}

static int is_space(char ch) {
    return ch == ' ' || ch == '\t';
}

/* Does the comma-separated list v[0..n) name `token` (chunked) as its last element? */
static int last_token_is(const char *v, size_t n, const char *token) {
    while (n > 0 && (is_space(v[n - 1]) || v[n - 1] == ','))
        n--;
    size_t start = n;
    while (start > 0 && v[start - 1] != ',')
        start--;
    while (start < n && is_space(v[start]))
        start++;
    return ieq(v + start, n - start, token);
}

/* The head in[0..head_len): status line and fields. Returns 0 or CREST_EIO. */
static int parse_head(call_t *k, size_t head_len) {
    const char *p = k->in, *end = k->in + head_len - 2; /* the last line's CRLF stays out */
    if (head_len < 16 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
        p[8] != ' ')
        return CREST_EIO;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return CREST_EIO;
        status = status * 10 + (p[i] - '0');
    }
    if (status < 100 || (p[12] != ' ' && p[12] != '\r'))
        return CREST_EIO;
    const char *line = memchr(p, '\n', head_len);
    if (line == NULL)
        return CREST_EIO;
    line++;
    k->status = status;
    k->nfields = 0;
    size_t cap = 0;
    k->frame = FRAME_CLOSE;
    int have_length = 0;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line) + 1);
        if (eol == NULL || eol == line || eol[-1] != '\r')
            return CREST_EIO;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon == NULL || colon == line)
            return CREST_EIO;
        const char *v = colon + 1, *ve = eol - 1;
        while (v < ve && is_space(*v))
            v++;
        while (ve > v && is_space(ve[-1]))
            ve--;
        if (k->nfields == cap) {
            cap = cap ? cap * 2 : 16;
            field_t *f = realloc(k->fields, cap * sizeof(*f));
            if (f == NULL)
                return CREST_ENOMEM;
            k->fields = f;
        }
        k->fields[k->nfields++] = (field_t){(size_t)(line - k->in), (size_t)(colon - line),
                                            (size_t)(v - k->in), (size_t)(ve - v)};
        size_t nlen = (size_t)(colon - line), vlen = (size_t)(ve - v);
        if (ieq(line, nlen, "transfer-encoding") && last_token_is(v, vlen, "chunked")) {
            k->frame = FRAME_CHUNKED;
        } else if (ieq(line, nlen, "content-length")) {
            uint64_t n = 0;
            if (vlen == 0 || vlen > 18)
                return CREST_EIO;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return CREST_EIO;
                n = n * 10 + (uint64_t)(v[i] - '0');
            }
            if (have_length && n != k->length)
                return CREST_EIO;
            have_length = 1;
            k->length = n;
        }
        line = eol + 1;
    }
    if (k->frame != FRAME_CHUNKED && have_length)
        k->frame = FRAME_LENGTH;
    /* RFC 9112 6.3: these have no body, whatever the head says. */
    if (k->head_only || status < 200 || status == 204 || status == 304)
        k->frame = FRAME_NONE;
    if (k->frame == FRAME_CHUNKED) {
        crest__http_chunked_init(&k->chunked, 0, 0);
        k->raw_off = head_len;
        k->body_len = 0;
    }
    k->head_len = head_len;
    return 0;
}

/* Take in what arrived: 1 when the response is complete, 0 for more, or a negative error. */
static int advance(call_t *k) {
    while (k->head_len == 0) {
        size_t from = k->scanned > 3 ? k->scanned - 3 : 0;
        const char *e = k->len > from ? memmem(k->in + from, k->len - from, "\r\n\r\n", 4) : NULL;
        if (e == NULL) {
            k->scanned = k->len;
            return k->len > MAX_HEAD ? CREST_EIO : 0;
        }
        size_t head_len = (size_t)(e - k->in) + 4;
        int rc = parse_head(k, head_len);
        if (rc != 0)
            return rc;
        if (k->status >= 100 && k->status < 200 && k->status != 101) {
            /* Interim (100 Continue): the final response follows. */
            memmove(k->in, k->in + head_len, k->len - head_len);
            k->len -= head_len;
            k->head_len = k->scanned = 0;
            k->status = 0;
            k->nfields = 0;
        }
    }
    size_t have = k->len - k->head_len;
    switch (k->frame) {
    case FRAME_NONE:
        return 1;
    case FRAME_LENGTH:
        return have >= k->length ? 1 : 0;
    case FRAME_CLOSE:
        return k->eof ? 1 : 0;
    default: {
        size_t n = k->len - k->raw_off, consumed = 0;
        int d = crest__http_chunked_decode(&k->chunked, k->in + k->raw_off, &n, &consumed);
        if (d < 0)
            return CREST_EIO;
        memmove(k->in + k->head_len + k->body_len, k->in + k->raw_off, n);
        k->body_len += n;
        k->raw_off += consumed;
        return d;
    }
    }
}

/* Move what arrived into res, complete or not. */
static int fill_res(call_t *k, crest_test_res_t *res) {
    memset(res, 0, sizeof(*res));
    if (k->head_len == 0)
        return 0;
    size_t body_len = 0;
    if (k->frame == FRAME_CHUNKED)
        body_len = k->body_len;
    else if (k->frame != FRAME_NONE)
        body_len = k->len - k->head_len;
    if (k->frame == FRAME_LENGTH && body_len > k->length)
        body_len = (size_t)k->length;
    /* One block: the fields, the head (names and values NUL-terminated in place), the body. */
    size_t fields = k->nfields * sizeof(crest_header_t);
    char *mem = malloc(fields + k->head_len + body_len + 1);
    if (mem == NULL)
        return CREST_ENOMEM;
    crest_header_t *h = (crest_header_t *)(void *)mem;
    char *head = mem + fields, *body = head + k->head_len;
    memcpy(head, k->in, k->head_len);
    memcpy(body, k->in + k->head_len, body_len);
    body[body_len] = '\0';
    for (size_t i = 0; i < k->nfields; i++) {
        const field_t *f = &k->fields[i];
        /* Each name is followed by its ':' and each value by spaces or the CR: room for a NUL. */
        head[f->name_off + f->name_len] = '\0';
        head[f->value_off + f->value_len] = '\0';
        h[i].name = (crest_str_t){head + f->name_off, f->name_len};
        h[i].value = (crest_str_t){head + f->value_off, f->value_len};
    }
    res->status = k->status;
    res->headers = h;
    res->nheaders = k->nfields;
    res->body = (crest_str_t){body, body_len};
    res->chunked = k->frame == FRAME_CHUNKED;
    res->internal_ = mem;
    return 0;
}

crest_str_t crest_test_header(const crest_test_res_t *res, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i < res->nheaders; i++) {
        crest_str_t h = res->headers[i].name;
        if (h.len == n && strncasecmp(h.ptr, name, n) == 0)
            return res->headers[i].value;
    }
    return (crest_str_t){NULL, 0};
}

void crest_test_res_free(crest_test_res_t *res) {
    if (res == NULL)
        return;
    free(res->internal_);
    memset(res, 0, sizeof(*res));
}

/* ---- the client end ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    call_t *k = h->data;
    buf->base = NULL;
    buf->len = 0;
    if (k->cap - k->len < READ_CHUNK) {
        size_t cap = k->cap ? k->cap * 2 : READ_CHUNK * 2;
        while (cap - k->len < READ_CHUNK)
            cap *= 2;
        char *p = realloc(k->in, cap);
        if (p == NULL)
            return; /* libuv reports UV_ENOBUFS to on_read */
        k->in = p;
        k->cap = cap;
    }
    buf->base = k->in + k->len;
    buf->len = k->cap - k->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    call_t *k = s->data;
    if (k->done)
        return;
    if (nread == UV_ENOBUFS) {
        k->done = CREST_ENOMEM;
        return;
    }
    if (nread < 0) {
        k->eof = 1; /* EOF, or a reset: the server is gone either way */
    } else {
        k->len += (size_t)nread;
    }
    int rc = advance(k);
    if (rc == 0 && k->eof)
        rc = CREST_ECONNRESET; /* the server closed before the response was whole */
    if (rc != 0)
        k->done = rc;
}

static void on_written(uv_write_t *w, int status) {
    /* A server that answered before reading the whole request (413) may close first: the
     * response decides, not the write. */
    (void)w;
    (void)status;
}

static void on_pipe_close(uv_handle_t *h) {
    call_t *k = h->data;
    k->pipe_closed = 1;
}

static void on_timer(uv_timer_t *timer) {
    *(int *)timer->data = 1; /* the call's `expired` */
}

/* Send req[0..len) on a new connection and read one response into res. */
static int exchange(crest_test_t *t, const char *req, size_t len, int head_only,
                    crest_test_res_t *res) {
    memset(res, 0, sizeof(*res));
    crest_loop_t *loop = t->loop;
    if (loop->draining)
        return CREST_ECANCELED;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return errno == ENOMEM || errno == ENOBUFS ? CREST_ENOMEM : CREST_EMFILE;
    call_t k;
    memset(&k, 0, sizeof(k));
    k.head_only = head_only;
    int rc = uv_pipe_init(&loop->uv, &k.pipe, 0);
    if (rc == 0) {
        k.pipe.data = &k;
        rc = uv_pipe_open(&k.pipe, sv[1]);
        if (rc != 0) {
            close(sv[1]);
            uv_close((uv_handle_t *)&k.pipe, on_pipe_close);
        }
    } else {
        close(sv[1]);
        k.pipe_closed = 1;
    }
    uint64_t conns_before = atomic_load_explicit(&loop->open_conns, memory_order_relaxed);
    if (rc == 0) {
        rc = crest__conn_adopt(loop, sv[0], &t->peer);
        if (rc != 0)
            uv_close((uv_handle_t *)&k.pipe, on_pipe_close);
    } else {
        close(sv[0]);
    }
    if (rc == 0) {
        uv_buf_t b = uv_buf_init((char *)req, (unsigned)len);
        rc = uv_write(&k.wreq, (uv_stream_t *)&k.pipe, &b, 1, on_written);
        if (rc == 0)
            rc = uv_read_start((uv_stream_t *)&k.pipe, on_alloc, on_read);
        if (rc != 0)
            uv_close((uv_handle_t *)&k.pipe, on_pipe_close);
    }
    if (rc == 0) {
        t->timer.data = &k.expired;
        uv_timer_start(&t->timer, on_timer, t->timeout_ms, 0);
        while (!k.done && !k.expired)
            uv_run(&loop->uv, UV_RUN_ONCE);
        rc = k.done == 1 ? 0 : k.done != 0 ? k.done : CREST_ETIMEDOUT;
        uv_close((uv_handle_t *)&k.pipe, on_pipe_close);
    }
    /* The client has left: the server's end reads the close (a request still open hears its
     * abort callback), and the call waits for that so that nothing of this request runs after
     * the call returns; at most CLOSE_WAIT_MS, for a server end that stopped reading. */
    k.expired = 0;
    uv_timer_start(&t->timer, on_timer, CLOSE_WAIT_MS, 0);
    while (!k.pipe_closed ||
           (!k.expired &&
            atomic_load_explicit(&loop->open_conns, memory_order_relaxed) > conns_before))
        uv_run(&loop->uv, UV_RUN_ONCE);
    uv_timer_stop(&t->timer);
    int frc = fill_res(&k, res);
    free(k.in);
    free(k.fields);
    return rc != 0 ? rc : frc;
}

/* ---- requests ---- */

static int has_crlf(const char *s, size_t n) {
    return memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL;
}

int crest_test_call(crest_test_t *t, const crest_test_req_t *rq, crest_test_res_t *res) {
    memset(res, 0, sizeof(*res));
    const char *method = rq->method ? rq->method : "GET";
    const char *target = rq->target ? rq->target : "/";
    size_t mlen = strlen(method), tlen = strlen(target);
    if (mlen == 0 || tlen == 0 || has_crlf(method, mlen) || has_crlf(target, tlen) ||
        memchr(method, ' ', mlen) || memchr(target, ' ', tlen))
        return CREST_EINVAL;
    int host = 0, framed = 0;
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_append(&b, method, mlen);
    crest_buf_append(&b, " ", 1);
    crest_buf_append(&b, target, tlen);
    crest_buf_append(&b, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < rq->nheaders; i++) {
        crest_str_t n = rq->headers[i].name, v = rq->headers[i].value;
        if (n.len == 0 || has_crlf(n.ptr, n.len) || (v.len && has_crlf(v.ptr, v.len))) {
            crest_buf_free(&b);
            return CREST_EINVAL;
        }
        host |= crest__str_ieq(n, "host");
        framed |= crest__str_ieq(n, "content-length") || crest__str_ieq(n, "transfer-encoding");
    }
    if (!host)
        crest_buf_puts(&b, "Host: test\r\n");
    for (size_t i = 0; i < rq->nheaders; i++) {
        crest_buf_append(&b, rq->headers[i].name.ptr, rq->headers[i].name.len);
        crest_buf_append(&b, ": ", 2);
        crest_buf_append(&b, rq->headers[i].value.ptr, rq->headers[i].value.len);
        crest_buf_append(&b, "\r\n", 2);
    }
    if ((rq->body != NULL || rq->body_len > 0) && !framed)
        crest_buf_printf(&b, "Content-Length: %zu\r\n", rq->body_len);
    crest_buf_append(&b, "\r\n", 2);
    if (rq->body_len > 0)
        crest_buf_append(&b, rq->body, rq->body_len);
    int rc = b.err;
    if (rc == 0)
        rc = exchange(t, b.ptr, b.len, strcmp(method, "HEAD") == 0, res);
    crest_buf_free(&b);
    return rc;
}

int crest_test_raw(crest_test_t *t, const void *bytes, size_t len, crest_test_res_t *res) {
    memset(res, 0, sizeof(*res));
    if (len == 0)
        return CREST_EINVAL;
    return exchange(t, bytes, len, len >= 5 && memcmp(bytes, "HEAD ", 5) == 0, res);
}

int crest_test_get(crest_test_t *t, const char *target, crest_test_res_t *res) {
    crest_test_req_t rq = {.method = "GET", .target = target};
    return crest_test_call(t, &rq, res);
}

int crest_test_post(crest_test_t *t, const char *target, const char *content_type, const void *body,
                    size_t len, crest_test_res_t *res) {
    crest_header_t h = {{"Content-Type", 12},
                        {content_type, content_type ? strlen(content_type) : 0}};
    crest_test_req_t rq = {.method = "POST",
                           .target = target,
                           .headers = content_type ? &h : NULL,
                           .nheaders = content_type ? 1 : 0,
                           .body = body ? body : "",
                           .body_len = len};
    return crest_test_call(t, &rq, res);
}

int crest_test_post_json(crest_test_t *t, const char *target, const char *json,
                         crest_test_res_t *res) {
    return crest_test_post(t, target, "application/json", json, json ? strlen(json) : 0, res);
}

/* ---- the client ---- */

int crest_test_new(crest_app_t *app, const crest_test_opts_t *opts, crest_test_t **out) {
    *out = NULL;
    crest_test_opts_t o;
    if (opts == NULL) {
        crest_test_opts_default(&o);
        opts = &o;
    }
    crest__addr_t peer;
    const char *client = opts->client ? opts->client : "127.0.0.1";
    if (crest__addr_parse(client, strlen(client), &peer) != 0)
        return CREST_EINVAL;
    crest__rt_t *rt = &app->rt;
    int rc = crest__rt_local_prepare(rt);
    if (rc != 0)
        return rc;
    crest_test_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return CREST_ENOMEM;
    t->app = app;
    t->peer = peer;
    t->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    /* As crest_app_run: each loop's HTTP state and the histograms exist before the loop starts.
     * An earlier test client's are replaced (its access-log blocks were handed over at its end). */
    if (app->hloops != NULL)
        free(app->hloops[0].obs);
    free(app->hloops);
    app->hloops = calloc(1, sizeof(*app->hloops));
    if (app->hloops == NULL) {
        free(t);
        return CREST_ENOMEM;
    }
    rc = crest__obs_run_start(app);
    if (rc == 0)
        rc = crest__rt_local_start(rt);
    if (rc != 0) {
        crest__obs_run_end(app);
        free(t);
        return rc;
    }
    t->loop = &rt->loops[0];
    uv_timer_init(&t->loop->uv, &t->timer);
    *out = t;
    return 0;
}

void crest_test_free(crest_test_t *t) {
    if (t == NULL)
        return;
    uv_close((uv_handle_t *)&t->timer, NULL); /* closed while the loop runs out below */
    crest__rt_local_stop(&t->app->rt);
    crest__obs_run_end(t->app);
    free(t);
}
