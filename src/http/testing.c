/* The test client (crest/testing.h): an app called in-process, its loop run by the caller.
 *
 * The request travels over crest's memory transport (core/conn.c, crest__conn_adopt_memory):
 * a connection like an accepted one, with the same protocol (HTTP/1.1 parser, chain, response
 * writer), timers, parking, drain and close, but no socket below it. The request's bytes are fed
 * to it and reach the parser as reads would, in pieces of the loop's read buffer and held while
 * the protocol stops reading; the response's bytes come to a sink here as the server writes them
 * (sendfile included, read from the file), its linger is the end of output and its close a
 * callback. So a call needs no descriptor, no port and no kernel buffer, and runs the same
 * whatever the process's descriptor limit. What it does not show is a slow client: a memory
 * client takes all output at once, so backpressure (max_output, drain callbacks waiting on the
 * kernel, the write deadline) is not exercised here; integration tests over TCP cover it.
 *
 * The response is taken apart by the outbound client's response parser (codec/h1res.c): the
 * status line, the header fields, and the body framed by Content-Length, chunked encoding or the
 * close. It trusts crest's output no more than a client would: anything malformed is CREST_EIO. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec/h1res.h"
#include "http/http.h"

#define DEFAULT_TIMEOUT_MS 5000
/* After the response, how long the server's end may take to close (it sees the client's close
 * at once unless it stopped reading; then its own timers close it later). */
#define CLOSE_WAIT_MS 1000
#define MAX_HEAD (1024 * 1024) /* a response head larger than this is taken for garbage */

struct crest_test_s {
    crest_app_t *app;
    crest_loop_t *loop;
    uv_timer_t timer; /* the call's deadline */
    uint32_t timeout_ms;
    crest__addr_t peer;
};

/* One call's client end. Lives on the caller's stack for the call, which lasts until the
 * connection's close callback (the sink's arg is this). */
typedef struct {
    crest__conn_t *conn; /* the server's end; NULL once closed */
    crest__h1res_t parser;
    crest_buf_t body; /* the body as the parser decodes it */
    int done;         /* 1 complete, or a negative error: the call ends */
    int expired;      /* the timer fired */
} call_t;

void crest_test_opts_default(crest_test_opts_t *opts) {
    memset(opts, 0, sizeof(*opts));
    opts->timeout_ms = DEFAULT_TIMEOUT_MS;
    opts->client = "127.0.0.1";
}

/* ---- the response ---- */

static void on_body(void *arg, const char *data, size_t len) {
    call_t *k = arg;
    crest_buf_append(&k->body, data, len); /* a failure is seen in fill_res (k->body.err) */
}

/* Move what arrived into res, complete or not: the fields, then the names and values
 * NUL-terminated, then the body, in one block. */
static int fill_res(call_t *k, crest_test_res_t *res) {
    const crest__h1res_t *p = &k->parser;
    memset(res, 0, sizeof(*res));
    if (!p->head_done)
        return 0;
    if (k->body.err)
        return CREST_ENOMEM;
    size_t fields = p->nheaders * sizeof(crest_header_t), text = k->body.len + 1;
    for (size_t i = 0; i < p->nheaders; i++)
        text += p->headers[i].name.len + p->headers[i].value.len + 2;
    char *mem = malloc(fields + text);
    if (mem == NULL)
        return CREST_ENOMEM;
    crest_header_t *h = (crest_header_t *)(void *)mem;
    char *o = mem + fields;
    for (size_t i = 0; i < p->nheaders; i++) {
        crest_str_t n = p->headers[i].name, v = p->headers[i].value;
        h[i].name = (crest_str_t){memcpy(o, n.ptr, n.len), n.len};
        o[n.len] = '\0';
        o += n.len + 1;
        h[i].value = (crest_str_t){v.len ? memcpy(o, v.ptr, v.len) : o, v.len};
        o[v.len] = '\0';
        o += v.len + 1;
    }
    if (k->body.len > 0)
        memcpy(o, k->body.ptr, k->body.len);
    o[k->body.len] = '\0';
    res->status = p->status;
    res->headers = h;
    res->nheaders = p->nheaders;
    res->body = (crest_str_t){o, k->body.len};
    res->chunked = p->framing == CREST__H1RES_CHUNKED;
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

/* The parser's verdict as the call's: 1 complete, CREST_EIO malformed or over a limit. */
static int verdict(int rc) {
    return rc == CREST__H1RES_DONE ? 1 : rc == CREST_ENOMEM ? CREST_ENOMEM : CREST_EIO;
}

/* The server wrote: parse it as it comes (the parser keeps what it needs of a partial head). */
static void on_output(void *arg, const uv_buf_t *bufs, size_t n) {
    call_t *k = arg;
    for (size_t i = 0; i < n && !k->done; i++) {
        size_t used;
        int rc = crest__h1res_feed(&k->parser, bufs[i].base, bufs[i].len, &used);
        if (rc != CREST__H1RES_MORE)
            k->done = verdict(rc);
    }
}

/* The server's end of output (its linger, or its close): a body delimited by the close ends
 * here; anything else still incomplete was cut short, a reset rather than malformed. */
static void on_end(void *arg) {
    call_t *k = arg;
    if (k->done)
        return;
    k->done = crest__h1res_eof(&k->parser) == CREST__H1RES_DONE ? 1 : CREST_ECONNRESET;
}

static void on_conn_close(void *arg) {
    call_t *k = arg;
    on_end(k);
    k->conn = NULL;
}

static void on_timer(uv_timer_t *timer) {
    *(int *)timer->data = 1; /* the call's `expired` */
}

static int answered(const call_t *k) {
    return k->done != 0;
}

static int closed(const call_t *k) {
    return k->conn == NULL;
}

/* Run the loop until done(k) or ms have passed; returns done(k). */
static int run_until(crest_test_t *t, call_t *k, uint64_t ms, int (*done)(const call_t *)) {
    k->expired = 0;
    t->timer.data = &k->expired;
    uv_timer_start(&t->timer, on_timer, ms, 0);
    while (!done(k) && !k->expired)
        uv_run(&t->loop->uv, UV_RUN_ONCE);
    uv_timer_stop(&t->timer);
    return done(k);
}

/* Send req[0..len) on a new connection and read one response into res. */
static int exchange(crest_test_t *t, const char *req, size_t len, int head_only,
                    crest_test_res_t *res) {
    memset(res, 0, sizeof(*res));
    crest_loop_t *loop = t->loop;
    if (loop->draining)
        return CREST_ECANCELED;
    call_t k;
    memset(&k, 0, sizeof(k));
    crest__h1res_init(&k.parser);
    k.parser.no_body = head_only;
    k.parser.max_head = MAX_HEAD;
    k.parser.max_body = UINT64_MAX; /* a test may ask for a large body */
    k.parser.on_body = on_body;
    k.parser.arg = &k;
    k.body = (crest_buf_t)CREST_BUF_INIT;
    /* The loop has not run since the last call: its clock would start the connection's header
     * deadline in the past. */
    uv_update_time(&loop->uv);
    crest__memsink_t sink = {on_output, on_end, on_conn_close, &k};
    int rc = crest__conn_adopt_memory(loop, &t->peer, &sink, &k.conn);
    if (rc == 0) {
        /* Connected, then the request: the loop turns once in between, as for a client on the
         * wire, so a stop asked for before the call (crest_app_stop) reaches this connection
         * first and the request is answered as a draining server answers (503, close). */
        uv_run(&loop->uv, UV_RUN_NOWAIT);
        rc = k.conn != NULL ? crest__conn_feed(k.conn, req, len) : CREST_ECONNRESET;
        if (rc == 0) {
            run_until(t, &k, t->timeout_ms, answered);
            rc = k.done == 1 ? 0 : k.done != 0 ? k.done : CREST_ETIMEDOUT;
        }
        /* The client leaves: the server's end reads the EOF (a request still open hears its
         * abort callback) and closes, and the call waits for that so that nothing of this
         * connection runs after the call returns. A server end that stopped reading does not
         * see the EOF; after CLOSE_WAIT_MS it is closed here, as its own timers would later. */
        if (k.conn != NULL) {
            crest__conn_feed_end(k.conn);
            if (!run_until(t, &k, CLOSE_WAIT_MS, closed)) {
                crest__conn_close(k.conn);
                while (k.conn != NULL) /* the close callback comes in the loop's next turn */
                    uv_run(&loop->uv, UV_RUN_ONCE);
            }
        }
    }
    int frc = fill_res(&k, res);
    crest__h1res_free(&k.parser);
    crest_buf_free(&k.body);
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
