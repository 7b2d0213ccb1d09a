/* libFuzzer target for HTTP/2 (src/http/h2.c over nghttp2): the input, after a first byte that
 * picks how it is cut into reads, is what a client sends after the connection preface. It goes to
 * crest's HTTP/2 protocol on a real crest connection (one end of a socketpair, the other read and
 * thrown away), so nghttp2 runs with crest's exact callbacks, and its requests reach routes that
 * answer at once, later (a loop timer), streamed with drain callbacks, aborted half-way, from a
 * borrowed buffer, or fail, and a route that streams its request body with a pausing consumer: the
 * writer, the streams' and the connection's lifetimes and the defences run as in the server. Each
 * input ends with the connection closed, every request finished and every borrowed buffer given
 * back (checked), so AddressSanitizer's leak check at exit sees what an input left behind.
 *
 * make fuzz   (build-fuzz/fuzz_h2; seeds in fuzz/h2/corpus, made by fuzz/h2/seeds.py) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static crest_app_t *app;
static crest_loop_t loop;
static int borrowed_out; /* borrowed bodies not given back yet */
static char big[50000];

/* ---- routes ---- */

static int on_text(crest_req_t *req, void *data) {
    (void)data;
    crest_res_header(req, "X-Test", "1");
    crest_res_header(req, "Connection", "close"); /* must not reach the HTTP/2 client */
    return crest_res_send(req, 200, "text/plain", "hello", 5);
}

static int on_echo(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t body = crest_req_body(req);
    crest_str_t ct = crest_req_header(req, "content-type");
    return crest_res_send(req, ct.len ? 200 : 201, NULL, body.ptr, body.len);
}

static void later_cb(crest_loop_t *l, void *arg) {
    (void)l;
    crest_res_send(arg, 200, "text/plain", "later", 5); /* only frees it when aborted */
}

static int on_later(crest_req_t *req, void *data) {
    (void)data;
    return crest_loop_after(crest_req_loop(req), 0, later_cb, req);
}

typedef struct {
    int left;
} stream_t;

static void stream_abort(crest_req_t *req, void *arg) {
    free(arg);
    crest_res_end(req);
}

static void stream_pump(crest_req_t *req, void *arg) {
    stream_t *s = arg;
    static const char piece[1000] = {'s'};
    while (s->left > 0 && crest_res_buffered(req) < 3000) {
        if (crest_res_write(req, piece, sizeof(piece)) != 0)
            break;
        s->left--;
    }
    if (s->left > 0 && crest_res_on_drain(req, stream_pump, s) == 0)
        return;
    crest_res_end(req);
    free(s);
}

static int on_stream(crest_req_t *req, void *data) {
    (void)data;
    stream_t *s = malloc(sizeof(*s));
    if (s == NULL)
        return CREST_ENOMEM;
    s->left = 20;
    int rc = crest_res_start(req, 200, "text/plain");
    if (rc != 0) {
        free(s);
        return rc;
    }
    crest_req_on_abort(req, stream_abort, s);
    stream_pump(req, s);
    return 0;
}

static int on_abort(crest_req_t *req, void *data) {
    (void)data;
    int rc = crest_res_start(req, 200, NULL);
    if (rc == 0)
        crest_res_write(req, "partial", 7);
    return crest_res_abort(req);
}

static void give_back(void *arg) {
    (void)arg;
    borrowed_out--;
}

static int on_big(crest_req_t *req, void *data) {
    (void)data;
    borrowed_out++;
    return crest_res_send_borrowed(req, 200, "application/octet-stream", big, sizeof(big),
                                   give_back, NULL);
}

static int on_fail(crest_req_t *req, void *data) {
    (void)req, (void)data;
    return CREST_EINVAL; /* crest answers 500 */
}

/* POST /upload streams its body (crest_app_route_stream): counted as it comes, the consumer
 * pausing after every other piece and resuming from the loop, answered at its end. */
typedef struct {
    crest_req_t *req;
    size_t pieces;
    uint64_t resume; /* the pending resume timer, or 0 */
} upload_t;

static void upload_resume(crest_loop_t *l, void *arg) {
    (void)l;
    upload_t *u = arg;
    u->resume = 0;
    crest_req_body_pause(u->req, 0);
}

static int on_upload_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    (void)data;
    upload_t *u = arg;
    if (event == CREST_BODY_DATA) {
        if (len > 0 && u->pieces++ % 2 == 1 && crest_req_body_pause(req, 1) == 0)
            u->resume = crest_loop_timer(crest_req_loop(req), 0, upload_resume, u);
        return 0;
    }
    if (u->resume != 0) /* the error call is the request's last: nothing may touch it later */
        crest_loop_cancel(crest_req_loop(req), u->resume);
    if (event == CREST_BODY_END)
        return crest_res_send(req, 200, "text/plain", "done", 4);
    return 0; /* an error: crest answers it, or the client has gone */
}

static int on_upload(crest_req_t *req, void *data) {
    (void)data;
    upload_t *u = crest_req_alloc(req, sizeof(*u));
    if (u == NULL)
        return CREST_ENOMEM;
    *u = (upload_t){req, 0, 0};
    return crest_req_body_stream(req, on_upload_body, u);
}

/* ---- the loop and the connection ---- */

static void setup(void) {
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    o.max_header_bytes = 2048;
    o.max_headers = 20;
    o.max_body = 20000;
    o.max_output = 64 * 1024;
    app = crest_app_new(&o);
    if (app == NULL)
        abort();
    struct {
        const char *method, *path;
        crest_handler_cb cb;
    } routes[] = {
        {"GET", "/", on_text},         {"POST", "/echo", on_echo},  {"GET", "/later", on_later},
        {"GET", "/stream", on_stream}, {"GET", "/abort", on_abort}, {"GET", "/big", on_big},
        {"GET", "/fail", on_fail},     {"PUT", "/echo", on_echo},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (crest_app_route(app, routes[i].method, routes[i].path, routes[i].cb, NULL) != 0)
            abort();
    if (crest_app_route_stream(app, "POST", "/upload", on_upload, NULL, 30000) != 0)
        abort();
    app->hloops = calloc(1, sizeof(*app->hloops));
    if (app->hloops == NULL || crest__loop_init(&loop, &app->rt, 0) != 0)
        abort();
    loop.upper = &app->hloops[0];
    /* What crest__conn_loop_start sets up, without a listener. */
    uv_idle_init(&loop.uv, &loop.resume_idle);
    loop.scratch_size = 64 * 1024;
    loop.scratch = malloc(loop.scratch_size);
    app->rt.mem.limit = 4 * 1024 * 1024;
    crest__http_date_refresh(&loop);
}

/* core's timer dispatch without its write deadline: the protocol's deadlines still run. */
static void on_conn_timer(crest__wheel_node_t *node) {
    crest__conn_t *c = CREST__CONTAINER_OF(node, crest__conn_t, timer);
    if (c->flags & (CONN_LINGERING | CONN_CLOSING))
        crest__conn_close(c);
    else
        c->proto->on_timer(c);
}

static void drain(int fd) {
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

static void turn(int peer) {
    for (int i = 0; i < 4; i++)
        uv_run(&loop.uv, UV_RUN_NOWAIT);
    drain(peer);
}

static int stopped(const crest__conn_t *c) {
    return (c->flags & (CONN_CLOSING | CONN_LINGERING | CONN_CLOSE_AFTER_WRITE)) != 0;
}

static void feed(crest__conn_t *c, const uint8_t *p, size_t n) {
    char *copy = malloc(n ? n : 1); /* exactly the read: AddressSanitizer sees an overread */
    if (copy == NULL)
        abort();
    memcpy(copy, p, n);
    c->proto->on_data(c, copy, n);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (app == NULL)
        setup();
    if (size < 1)
        return 0;
    /* The first byte: the size of each read (0: the whole input at once). */
    size_t piece = (size_t)data[0] * 7;
    data++, size--;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    crest__conn_t *c = calloc(1, sizeof(*c) + app->rt.hooks->conn_extra);
    if (c == NULL)
        abort();
    uv_tcp_init(&loop.uv, &c->tcp);
    if (uv_tcp_open(&c->tcp, sv[0]) != 0)
        abort();
    crest__count(&loop.open_conns, 1);
    atomic_fetch_add(&app->rt.conns, 1);
    c->timer.cb = on_conn_timer;
    crest__h2_open(c);
    feed(c, (const uint8_t *)preface, sizeof(preface) - 1);
    for (size_t off = 0; off < size && !stopped(c);) {
        size_t n = piece == 0 || piece > size - off ? size - off : piece;
        feed(c, data + off, n);
        off += n;
        turn(sv[1]);
    }
    turn(sv[1]);
    if (!(c->flags & CONN_CLOSING))
        crest__conn_close(c);
    crest__loop_fire_timers(&loop); /* answers given later: their requests were detached */
    turn(sv[1]);
    close(sv[1]);
    /* A borrowed body not given back, the connection not freed, or bytes still charged to the
     * memory budget: something of this input's outlived it. */
    if (borrowed_out != 0 || atomic_load(&app->rt.conns) != 0 || atomic_load(&app->rt.mem.used))
        abort();
    return 0;
}
