/* gzip compression of responses (crest_app_compress).
 *
 * The middleware only decides per request whether the client accepts gzip and which options
 * apply (req->gz, req->gz_accept): the headers are valid only then. The work happens when the
 * response goes out, in response.c's calls into this file, above the protocol's writer, so that
 * HTTP/1.1 and HTTP/2 share it:
 *
 * - A complete body up to SMALL_MAX is compressed at once on the loop thread with the loop's own
 *   z_stream, reset between bodies (deflateInit allocates ~270 KiB and builds tables: too dear
 *   per request), and goes out with its Content-Length.
 * - A larger complete body would hold the loop for milliseconds (a 1 MiB page is ~10 ms at level
 *   5): it goes out streamed instead, SLICE bytes of input per step (~0.6 ms). The next step is
 *   due once the previous slice's output was taken (the drain callback), so a slow client holds
 *   back the compression (backpressure) instead of the output piling up; and it runs at the
 *   loop's next turn (a uv_idle), so each body in progress gets one slice per turn and the loop
 *   polls the other connections between. It has a z_stream of its own for the time.
 * - A streamed response (crest_res_start) gets a z_stream of its own, made small (windowBits
 *   STREAM_WBITS, memLevel STREAM_MEMLEVEL: ~30 KiB instead of ~270 KiB) because such streams can
 *   be many and long-lived, and each write is followed by Z_SYNC_FLUSH so that what the
 *   application wrote reaches the client now rather than when deflate's block fills.
 *
 * zlib's memory for per-request streams and the copy of a sliced body are charged to the app's
 * buffer budget; when the budget is used up, responses go out uncompressed instead. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "http/cond.h"
#include "http/http.h"

#define SMALL_MAX (64 * 1024) /* complete bodies compressed at once, in one turn */
#define SLICE (64 * 1024)     /* input compressed per step of a larger one (~1 ms at level 5) */
/* A 4 KiB window and small hash: JSON lists and HTML compress within ~1% of the full 32 KiB
 * window (measured on the demo's /api/todos page and chat page), at ~30 KiB per stream. */
#define STREAM_WBITS 12
#define STREAM_MEMLEVEL 4
#define GZIP_WRAPPER 16 /* added to windowBits: a gzip header and trailer instead of zlib's */

/* ---- deciding ---- */

static int is_ows(char c) {
    return c == ' ' || c == '\t';
}

/* The value of the response header `name` the handler added, or .ptr NULL. */
static crest_str_t res_header(const crest_req_t *req, const char *name) {
    size_t nlen = strlen(name);
    const char *p = req->res_headers.ptr, *end = p + req->res_headers.len;
    while (p != NULL && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *stop = eol ? eol : end;
        if ((size_t)(stop - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            while (v < stop && is_ows(*v))
                v++;
            const char *vend = stop;
            while (vend > v && (vend[-1] == '\r' || is_ows(vend[-1])))
                vend--;
            return (crest_str_t){v, (size_t)(vend - v)};
        }
        p = eol ? eol + 1 : end;
    }
    return (crest_str_t){NULL, 0};
}

static int contains_icase(crest_str_t s, const char *lower) {
    size_t n = strlen(lower);
    for (size_t i = 0; s.ptr && i + n <= s.len; i++)
        if (strncasecmp(s.ptr + i, lower, n) == 0)
            return 1;
    return 0;
}

/* The answer's representation depends on Accept-Encoding: say so (once) to caches, whether or not
 * this client gets it compressed. */
static void add_vary(crest_req_t *req) {
    crest_str_t v = res_header(req, "Vary");
    if (v.ptr != NULL && (contains_icase(v, "accept-encoding") || contains_icase(v, "*")))
        return;
    crest_res_header(req, "Vary", "Accept-Encoding");
}

/* The gzip'd answer is another representation, whose bytes differ from those a strong ETag
 * names: make it weak ("W/" in front), as a weak comparison (If-None-Match) still matches it. */
static void weaken_etag(crest_req_t *req) {
    crest_str_t v = res_header(req, "ETag");
    if (v.ptr == NULL || (v.len >= 2 && v.ptr[0] == 'W' && v.ptr[1] == '/'))
        return;
    crest_buf_t *b = &req->res_headers;
    size_t at = (size_t)(v.ptr - b->ptr);
    if (crest_buf_append(b, "W/", 2) != 0)
        return;
    memmove(b->ptr + at + 2, b->ptr + at, b->len - 2 - at);
    memcpy(b->ptr + at, "W/", 2);
}

/* The headers of a gzip'd answer. Returns 0 or CREST_ENOMEM. */
static int mark_gzip(crest_req_t *req) {
    weaken_etag(req);
    return crest_res_header(req, "Content-Encoding", "gzip");
}

/* Whether this answer may be compressed, its type aside. */
static int eligible(const crest_req_t *req, int status) {
    if (!req->gz_accept || status < 200 || status == 204 || status == 206 || status == 304)
        return 0;
    if (req->loop->finished) /* the loop's state is gone (a forced stop): send it as it is */
        return 0;
    /* The handler encoded it itself (a precompressed file), or it is a part of a whole. */
    return res_header(req, "Content-Encoding").ptr == NULL &&
           res_header(req, "Content-Range").ptr == NULL;
}

/* ---- the loop's z_stream ---- */

typedef struct gz_req_s gz_req_t;

typedef struct {
    crest__loop_ext_t ext;
    z_stream z;
    int level;
    unsigned char *out; /* room for a SMALL_MAX body compressed in one call */
    size_t out_cap;
    /* Sliced bodies whose next slice is due: each gets one per turn of the loop, from `idle`
     * (active only while the list is not empty), which runs once before each poll. */
    uv_idle_t idle;
    gz_req_t *ready;
    gz_req_t *doing; /* the list being stepped by on_idle */
} gz_loop_t;

static const char loop_owner; /* the extension's key */

static void on_idle_closed(uv_handle_t *h) {
    free(h->data);
}

static void loop_finish(crest__loop_ext_t *ext, crest_loop_t *loop) {
    (void)loop;
    gz_loop_t *gl = (gz_loop_t *)ext;
    /* No sliced body is left: each held a connection, and the loop ends after the last. */
    deflateEnd(&gl->z);
    free(gl->out);
    uv_close((uv_handle_t *)&gl->idle, on_idle_closed); /* frees gl */
}

static void on_idle(uv_idle_t *idle);

/* The loop's compression state, made at first use (at `level`); NULL when memory ran out. Its
 * z_stream is kept reset between uses; its buffer also serves the requests' own streams. */
static gz_loop_t *loop_state(crest_loop_t *loop, int level) {
    gz_loop_t *gl = (gz_loop_t *)crest__loop_ext_find(loop, &loop_owner);
    if (gl != NULL)
        return gl;
    if ((gl = calloc(1, sizeof(*gl))) == NULL)
        return NULL;
    if (deflateInit2(&gl->z, level, Z_DEFLATED, 15 + GZIP_WRAPPER, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(gl);
        return NULL;
    }
    gl->level = level;
    gl->out_cap = deflateBound(&gl->z, SMALL_MAX);
    if ((gl->out = malloc(gl->out_cap)) == NULL) {
        deflateEnd(&gl->z);
        free(gl);
        return NULL;
    }
    uv_idle_init(&loop->uv, &gl->idle);
    gl->idle.data = gl;
    gl->ext.owner = &loop_owner;
    gl->ext.finish = loop_finish;
    crest__loop_ext_add(loop, &gl->ext);
    return gl;
}

/* Compress body (at most SMALL_MAX bytes) into gl->out with the loop's stream; returns the
 * length, 0 on failure. */
static size_t compress_small(gz_loop_t *gl, int level, const void *body, size_t len) {
    if (gl->level != level) {
        /* The stream is fresh (reset after each use), so the level changes without a flush. */
        gl->z.next_out = gl->out;
        gl->z.avail_out = (uInt)gl->out_cap;
        if (deflateParams(&gl->z, level, Z_DEFAULT_STRATEGY) != Z_OK) {
            deflateReset(&gl->z);
            return 0;
        }
        gl->level = level;
    }
    gl->z.next_in = (Bytef *)body;
    gl->z.avail_in = (uInt)len;
    gl->z.next_out = gl->out;
    gl->z.avail_out = (uInt)gl->out_cap;
    /* out_cap is deflateBound of SMALL_MAX: one call always finishes. */
    int zr = deflate(&gl->z, Z_FINISH);
    size_t n = gl->out_cap - gl->z.avail_out;
    /* deflateReset keeps the allocations; it clears the hash table (64 KiB), far cheaper than
     * deflateInit2's allocations and table setup per body. */
    deflateReset(&gl->z);
    return zr == Z_STREAM_END ? n : 0;
}

/* ---- a request's own z_stream ---- */

struct gz_req_s {
    z_stream z;
    crest_loop_t *loop;
    crest_req_t *req;
    size_t charged; /* bytes charged to the budget: zlib's allocations, this struct, the input */
    /* A complete body sent in slices: its bytes and their owner. */
    const unsigned char *in;
    size_t in_len;
    size_t in_off;
    crest_release_cb release;
    void *arg;
    gz_req_t *next; /* in the loop's ready (or doing) list, when pprev is not NULL */
    gz_req_t **pprev;
};

static void ready_unlink(gz_req_t *g) {
    if (g->pprev == NULL)
        return;
    *g->pprev = g->next;
    if (g->next)
        g->next->pprev = g->pprev;
    g->next = NULL;
    g->pprev = NULL;
}

static void ready_push(gz_loop_t *gl, gz_req_t *g) {
    g->next = gl->ready;
    if (g->next)
        g->next->pprev = &g->next;
    gl->ready = g;
    g->pprev = &gl->ready;
    if (!uv_is_active((uv_handle_t *)&gl->idle))
        uv_idle_start(&gl->idle, on_idle);
}

/* zlib's allocations, counted so that the budget is charged what it really took. */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
    gz_req_t *g = opaque;
    size_t n = (size_t)items * size;
    void *p = malloc(n);
    if (p != NULL)
        g->charged += n;
    return p;
}

static void z_free(voidpf opaque, voidpf p) {
    (void)opaque;
    free(p);
}

static gz_req_t *req_state_new(crest_req_t *req, int level, int wbits, int memlevel) {
    const crest__rt_t *rt = req->loop->rt;
    if (crest__mem_over(rt))
        return NULL; /* no memory to spare: the answer goes out as it is */
    gz_req_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->loop = req->loop;
    g->req = req;
    g->z.zalloc = z_alloc;
    g->z.zfree = z_free;
    g->z.opaque = g;
    if (deflateInit2(&g->z, level, Z_DEFLATED, wbits + GZIP_WRAPPER, memlevel,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        free(g);
        return NULL;
    }
    g->charged += sizeof(*g);
    crest__mem_charge(req->loop->rt, g->charged);
    req->gz_state = g;
    return g;
}

void crest__compress_free(crest_req_t *req) {
    gz_req_t *g = req->gz_state;
    if (g == NULL)
        return;
    req->gz_state = NULL;
    ready_unlink(g);
    deflateEnd(&g->z);
    if (g->release)
        g->release(g->arg);
    crest__mem_give(g->loop->rt, g->loop, g->charged);
    free(g);
}

/* Run deflate over what g->z holds with `flush` and queue all it makes on the response, in
 * pieces of the loop's buffer. Returns 0, CREST_ENOMEM, or the writer's error. */
static int deflate_out(crest_req_t *req, gz_req_t *g, gz_loop_t *gl, int flush, size_t *made) {
    for (;;) {
        g->z.next_out = gl->out;
        g->z.avail_out = (uInt)gl->out_cap;
        int zr = deflate(&g->z, flush);
        if (zr == Z_STREAM_ERROR)
            return CREST_ENOMEM;
        size_t n = gl->out_cap - g->z.avail_out;
        if (n > 0) {
            *made += n;
            int rc = req->w->body(req, gl->out, n, NULL, NULL);
            if (rc != 0)
                return rc;
        }
        /* A call that left room in the buffer has said all it can for this flush. */
        if (g->z.avail_out != 0 || zr == Z_STREAM_END)
            return 0;
    }
}

/* ---- a large complete body, in slices ---- */

static void slice_step(crest_req_t *req, gz_req_t *g);

/* The client left: the drain callback will not come, the request ends here (unlisted from the
 * ready list with its state). */
static void slice_abort(crest_req_t *req, void *arg) {
    (void)arg;
    req->w->finish(req); /* frees the request, and its state with it (crest__req_free) */
}

/* The previous slice's output was taken (half of it, or it is all out): the next slice is due at
 * the loop's next turn. Not at once: libuv runs write completions (where this is called from)
 * up to eight rounds after each poll, so going on from here would compress up to nine slices per
 * poll, and a small request waiting on the same loop would wait for all of them. */
static void slice_drained(crest_req_t *req, void *arg) {
    gz_req_t *g = arg;
    gz_loop_t *gl = (gz_loop_t *)crest__loop_ext_find(req->loop, &loop_owner);
    ready_push(gl, g); /* gl exists: it was made for the first slice */
}

static void on_idle(uv_idle_t *idle) {
    gz_loop_t *gl = idle->data;
    /* Step the ones due now; those a step makes due again wait for the next turn. A step may end
     * other requests (an HTTP/2 connection failing), which unlists them from `doing`. */
    gl->doing = gl->ready;
    if (gl->doing)
        gl->doing->pprev = &gl->doing;
    gl->ready = NULL;
    while (gl->doing != NULL) {
        gz_req_t *g = gl->doing;
        ready_unlink(g);
        slice_step(g->req, g);
    }
    if (gl->ready == NULL)
        uv_idle_stop(&gl->idle);
}

/* Compress one slice of the body and queue its output; then wait for it to be taken. */
static void slice_step(crest_req_t *req, gz_req_t *g) {
    gz_loop_t *gl = loop_state(req->loop, req->gz->level);
    int rc = gl != NULL ? 0 : CREST_ENOMEM;
    if (rc == 0) {
        size_t left = g->in_len - g->in_off;
        size_t take = left < SLICE ? left : SLICE;
        int last = take == left;
        size_t made = 0;
        g->z.next_in = (Bytef *)(g->in + g->in_off);
        g->z.avail_in = (uInt)take;
        rc = deflate_out(req, g, gl, last ? Z_FINISH : Z_NO_FLUSH, &made);
        g->in_off += take - g->z.avail_in;
        /* A slice that made no output (highly repetitive input) is flushed, so that there is
         * output to wait for. */
        if (rc == 0 && !last && made == 0)
            rc = deflate_out(req, g, gl, Z_SYNC_FLUSH, &made);
        if (rc == 0 && last) {
            crest_req_on_abort(req, NULL, NULL);
            rc = req->w->end(req);
            if (rc == 0) {
                req->w->finish(req);
                return;
            }
        }
    }
    if (rc == 0) {
        rc = crest_res_on_drain(req, slice_drained, g);
        if (rc == 0)
            return; /* goes on once the client has taken half of it */
        if (rc == CREST_EALREADY) {
            ready_push(gl, g); /* all written already: the next slice at the next turn */
            return;
        }
    }
    crest_req_on_abort(req, NULL, NULL);
    if (!crest__req_gone(req))
        req->w->abort(req);
    req->w->finish(req);
}

static void free_cb(void *p) {
    free(p);
}

/* Send a body over SMALL_MAX compressed in slices; the head says nothing of its length. */
static int send_sliced(crest_req_t *req, int status, const char *ctype, const void *body,
                       size_t len, int borrowed, crest_release_cb release, void *arg) {
    const crest_compress_opts_t *o = req->gz;
    if (req->head_only) {
        /* The head a GET gets (gzip, streamed), without doing the compression. */
        mark_gzip(req);
        int rc = crest__res_head(req, status, ctype, -1);
        if (borrowed && release)
            release(arg);
        if (rc == 0)
            rc = req->w->end(req);
        if (rc != 0 && !crest__req_gone(req))
            req->w->abort(req);
        req->w->finish(req);
        return rc;
    }
    /* The loop's buffer takes each slice's output: made now, or the body goes out plain. */
    gz_req_t *g = loop_state(req->loop, o->level) ? req_state_new(req, o->level, 15, 8) : NULL;
    if (g == NULL)
        return CREST_NEXT;
    if (!borrowed) {
        /* The caller's memory is valid only during its call: keep a copy. */
        void *copy = malloc(len);
        if (copy == NULL) {
            crest__compress_free(req);
            return CREST_NEXT;
        }
        memcpy(copy, body, len);
        g->charged += len;
        crest__mem_charge(req->loop->rt, len);
        body = copy;
        release = free_cb;
        arg = copy;
    }
    g->in = body;
    g->in_len = len;
    g->release = release; /* from here on the state releases the body */
    g->arg = arg;
    int rc = mark_gzip(req);
    if (rc == 0)
        rc = crest__res_head(req, status, ctype, -1);
    if (rc != 0) {
        if (!crest__req_gone(req))
            req->w->abort(req);
        req->w->finish(req);
        return rc;
    }
    req->started = 1; /* for crest_res_on_drain; the application has made its finishing call */
    crest_req_on_abort(req, slice_abort, g);
    slice_step(req, g);
    return 0;
}

/* ---- response.c's calls ---- */

int crest__compress_full(crest_req_t *req, int status, const char *ctype, const void *body,
                         size_t len, int borrowed, crest_release_cb release, void *arg) {
    const crest_compress_opts_t *o = req->gz;
    if (ctype == NULL || !crest__mime_compressible(ctype, strlen(ctype)))
        return CREST_NEXT;
    add_vary(req);
    if (len < o->min_size || len == 0 || !eligible(req, status))
        return CREST_NEXT;
    if (len > SMALL_MAX)
        return send_sliced(req, status, ctype, body, len, borrowed, release, arg);
    gz_loop_t *gl = loop_state(req->loop, o->level);
    size_t n = gl != NULL ? compress_small(gl, o->level, body, len) : 0;
    if (n == 0 || mark_gzip(req) != 0)
        return CREST_NEXT;
    if (borrowed && release)
        release(arg); /* the compressed copy is what goes out */
    /* HEAD: the same head, with the compressed length, and no body. */
    int rc = crest__res_head(req, status, ctype, (int64_t)n);
    if (rc == 0 && !req->head_only)
        rc = req->w->body(req, gl->out, n, NULL, NULL);
    if (rc != 0 && !crest__req_gone(req))
        req->w->abort(req);
    req->w->finish(req);
    return rc;
}

void crest__compress_start(crest_req_t *req, int status, const char *ctype) {
    if (ctype == NULL || !crest__mime_compressible(ctype, strlen(ctype)))
        return;
    add_vary(req);
    if (!eligible(req, status))
        return;
    /* The loop's buffer takes each write's output: made now, or the stream goes out plain. */
    if (!req->head_only &&
        (loop_state(req->loop, req->gz->level) == NULL ||
         req_state_new(req, req->gz->level, STREAM_WBITS, STREAM_MEMLEVEL) == NULL))
        return;
    if (mark_gzip(req) != 0)
        crest__compress_free(req); /* out of memory: plain then */
}

int crest__compress_write(crest_req_t *req, const void *data, size_t len) {
    gz_req_t *g = req->gz_state;
    gz_loop_t *gl = loop_state(req->loop, req->gz->level);
    if (gl == NULL)
        return CREST_ENOMEM;
    const unsigned char *p = data;
    int rc = 0;
    while (rc == 0 && len > 0) { /* avail_in is 32 bits wide */
        size_t take = len < (1u << 30) ? len : (1u << 30);
        size_t made = 0;
        g->z.next_in = (Bytef *)p;
        g->z.avail_in = (uInt)take;
        rc = deflate_out(req, g, gl, take == len ? Z_SYNC_FLUSH : Z_NO_FLUSH, &made);
        p += take;
        len -= take;
    }
    return rc;
}

int crest__compress_end(crest_req_t *req) {
    gz_req_t *g = req->gz_state;
    gz_loop_t *gl = loop_state(req->loop, req->gz->level);
    if (gl == NULL)
        return CREST_ENOMEM;
    size_t made = 0;
    g->z.next_in = NULL;
    g->z.avail_in = 0;
    int rc = deflate_out(req, g, gl, Z_FINISH, &made);
    crest__compress_free(req);
    return rc;
}

/* ---- the middleware ---- */

static int compress_mw(crest_req_t *req, void *data) {
    req->gz = data;
    req->gz_accept = (crest__req_accept_encoding(req) & CREST__ENC_GZIP) != 0;
    return CREST_NEXT;
}

void crest_compress_opts_default(crest_compress_opts_t *opts) {
    opts->level = 5;
    opts->min_size = 1024;
}

int crest_app_compress(crest_app_t *app, const char *prefix, const crest_compress_opts_t *opts) {
    crest_compress_opts_t *o = malloc(sizeof(*o));
    if (o == NULL)
        return CREST_ENOMEM;
    if (opts != NULL)
        *o = *opts;
    else
        crest_compress_opts_default(o);
    if (o->level < 1 || o->level > 9) {
        free(o);
        return CREST_EINVAL;
    }
    int rc = crest__app_own(app, o, free);
    return rc != 0 ? rc : crest_app_use(app, prefix, compress_mw, o);
}
