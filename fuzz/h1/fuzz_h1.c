/* libFuzzer target for HTTP/1.1 (src/http/h1.c): the input, after a first byte that picks how it
 * is cut into reads, is what a client sends on a fresh connection. It goes to crest's HTTP/1.1
 * protocol on a real crest connection (one end of a socketpair, the other read and thrown away),
 * so pipelining, requests answered later, parked input, the rx buffer, 100 Continue, chunked
 * bodies and the upgrade to HTTP/2 by its preface run as in the server. Its requests reach routes
 * that answer at once, later (a loop timer), streamed with drain callbacks, aborted half-way, from
 * a borrowed buffer, or fail; one echoes a buffered body; and routes that stream their body count
 * it (one with a small limit), pause and resume from the loop, start reading it only later,
 * answer before reading it, stop reading it, parse it as multipart into temporary files, or echo
 * it into a chunked response. The client is held back while crest does not read; once the input
 * is all sent the loop's timers run and the connection's deadlines fire (as when the client
 * stalls). Each input ends with the connection closed, every request finished, every borrowed
 * buffer given back, the memory budget back to zero and no temporary file left (checked), so
 * AddressSanitizer's leak check at exit sees what an input left behind.
 *
 * make fuzz   (build-fuzz/fuzz_h1; seeds in fuzz/h1/corpus, made by fuzz/h1/seeds.py) */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crest/web.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static crest_app_t *app;
static crest_loop_t loop;
static int borrowed_out; /* borrowed bodies not given back yet */
static int live;         /* requests that reached the chain and are not finished */
static char big[50000];
static char tmp_dir[256]; /* the multipart route's temporary files; empty after each input */
static int print;         /* FUZZ_H1_PRINT set: crest's output goes to stdout (to read a repro) */

/* ---- routes answered from the head (and a buffered body) ---- */

static int on_text(crest_req_t *req, void *data) {
    (void)data;
    crest_res_header(req, "X-Test", "1");
    return crest_res_send(req, 200, "text/plain", "hello", 5);
}

static int on_echo(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t body = crest_req_body(req);
    return crest_res_send(req, 200, NULL, body.ptr, body.len);
}

static void later_cb(crest_loop_t *l, void *arg) {
    (void)l;
    crest_res_send(arg, 200, "text/plain", "later", 5); /* only frees it when aborted */
}

static int on_later(crest_req_t *req, void *data) {
    (void)data;
    return crest_loop_after(crest_req_loop(req), 0, later_cb, req);
}

static void stream_abort(crest_req_t *req, void *arg) {
    free(arg);
    crest_res_end(req);
}

static void stream_pump(crest_req_t *req, void *arg) {
    int *left = arg;
    static const char piece[1000] = {'s'};
    while (*left > 0 && crest_res_buffered(req) < 3000) {
        if (crest_res_write(req, piece, sizeof(piece)) != 0)
            break;
        (*left)--;
    }
    if (*left > 0 && crest_res_on_drain(req, stream_pump, left) == 0)
        return;
    crest_res_end(req);
    free(left);
}

static int on_stream(crest_req_t *req, void *data) {
    (void)data;
    int *left = malloc(sizeof(*left));
    if (left == NULL)
        return CREST_ENOMEM;
    *left = 20;
    int rc = crest_res_start(req, 200, "text/plain");
    if (rc != 0) {
        free(left);
        return rc;
    }
    crest_req_on_abort(req, stream_abort, left);
    stream_pump(req, left);
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

/* ---- routes that stream their body (crest_app_route_stream) ---- */

typedef struct {
    uint64_t bytes;
    size_t pieces;
    uint64_t timer; /* a pending resume (the pausing route) */
} body_t;

static int send_count(crest_req_t *req, const body_t *b) {
    char text[32];
    int n = snprintf(text, sizeof(text), "%llu", (unsigned long long)b->bytes);
    return crest_res_send(req, 200, "text/plain", text, (size_t)n);
}

/* Counts the body; answers at its end. An error: crest answers it, or the client has gone. */
static int on_count_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    (void)data;
    body_t *b = arg;
    if (event == CREST_BODY_DATA)
        b->bytes += len;
    else if (event == CREST_BODY_END)
        return send_count(req, b);
    return 0;
}

static body_t *body_state(crest_req_t *req) {
    body_t *b = crest_req_alloc(req, sizeof(*b));
    if (b != NULL)
        memset(b, 0, sizeof(*b));
    return b;
}

static int on_count(crest_req_t *req, void *data) {
    (void)data;
    body_t *b = body_state(req);
    return b ? crest_req_body_stream(req, on_count_body, b) : CREST_ENOMEM;
}

/* Reads the body only from a later turn: the client is held back until then. */
static void defer_cb(crest_loop_t *l, void *arg) {
    (void)l;
    crest_req_t *req = arg;
    body_t *b = body_state(req);
    if (b == NULL || crest_req_body_stream(req, on_count_body, b) != 0)
        crest_res_status(req, 503); /* or only frees it: the client has gone */
}

static int on_defer(crest_req_t *req, void *data) {
    (void)data;
    return crest_loop_after(crest_req_loop(req), 0, defer_cb, req);
}

/* Pauses after every other piece and resumes from the loop. */
static void pause_resume(crest_loop_t *l, void *arg) {
    (void)l;
    crest_req_t *req = arg;
    body_t *b = crest_req_get(req, "body");
    b->timer = 0;
    crest_req_body_pause(req, 0);
}

static int on_pause_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    (void)data;
    body_t *b = arg;
    if (event == CREST_BODY_DATA) {
        b->bytes += len;
        if (b->pieces++ % 2 == 1 && crest_req_body_pause(req, 1) == 0) {
            b->timer = crest_loop_timer(crest_req_loop(req), 0, pause_resume, req);
            if (b->timer == 0)
                crest_req_body_pause(req, 0);
        }
        return 0;
    }
    if (event == CREST_BODY_END)
        return send_count(req, b);
    /* The error call is the request's last: nothing may refer to it afterwards. */
    if (b->timer != 0)
        crest_loop_cancel(crest_req_loop(req), b->timer);
    return 0;
}

static int on_pause(crest_req_t *req, void *data) {
    (void)data;
    body_t *b = body_state(req);
    if (b == NULL || crest_req_set(req, "body", b) != 0)
        return CREST_ENOMEM;
    return crest_req_body_stream(req, on_pause_body, b);
}

/* Answers before reading anything of the body: the connection closes after the answer. */
static int on_early(crest_req_t *req, void *data) {
    (void)data;
    return crest_res_send(req, 403, "text/plain", "no", 2);
}

/* Stops reading after some bytes, and answers from a later turn. */
static int on_stop_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    (void)data;
    body_t *b = arg;
    if (event == CREST_BODY_DATA) {
        b->bytes += len;
        if (b->bytes < 100)
            return 0;
        if (crest_loop_after(crest_req_loop(req), 0, later_cb, req) != 0)
            crest_res_status(req, 503);
        return -1;
    }
    if (event == CREST_BODY_END)
        return send_count(req, b);
    return 0;
}

static int on_stop(crest_req_t *req, void *data) {
    (void)data;
    body_t *b = body_state(req);
    return b ? crest_req_body_stream(req, on_stop_body, b) : CREST_ENOMEM;
}

/* A multipart body parsed as it comes, file parts over 16 bytes into temporary files. */
static void parts_done(crest_req_t *req, int rc, crest_part_t *parts, size_t count, void *arg) {
    (void)arg;
    if (rc != 0)
        return; /* crest answers the error, or the client has gone */
    uint64_t files = 0;
    for (size_t i = 0; i < count; i++)
        files += parts[i].path != NULL;
    char text[48];
    int n = snprintf(text, sizeof(text), "%zu parts, %llu files", count, (unsigned long long)files);
    crest_res_send(req, 200, "text/plain", text, (size_t)n);
}

static int on_parts(crest_req_t *req, void *data) {
    (void)data;
    crest_multipart_opts_t o;
    crest_multipart_opts_default(&o);
    o.max_parts = 8;
    o.spill_bytes = 16;
    o.tmp_dir = tmp_dir;
    return crest_req_parts_stream(req, &o, parts_done, NULL);
}

/* Echoes the body into a chunked response, pausing it while the output waits for the client. */
static void echo_drained(crest_req_t *req, void *arg) {
    (void)arg;
    crest_req_body_pause(req, 0);
}

static int on_echos_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    (void)arg;
    if (event == CREST_BODY_DATA) {
        if (crest_res_write(req, data, len) != 0) {
            crest_res_abort(req);
            return -1;
        }
        if (crest_res_buffered(req) > 2000 && crest_req_body_pause(req, 1) == 0 &&
            crest_res_on_drain(req, echo_drained, NULL) != 0)
            crest_req_body_pause(req, 0);
        return 0;
    }
    if (event == CREST_BODY_END)
        crest_res_end(req);
    return 0; /* an error: crest cuts the response short */
}

static int on_echos(crest_req_t *req, void *data) {
    (void)data;
    int rc = crest_res_start(req, 200, "application/octet-stream");
    return rc != 0 ? rc : crest_req_body_stream(req, on_echos_body, NULL);
}

/* ---- counting the requests ---- */

static int count_mw(crest_req_t *req, void *data) {
    (void)data;
    if (crest_req_set(req, "live", &live) != 0)
        return CREST_ENOMEM;
    live++;
    return CREST_NEXT;
}

static void count_done(crest_req_t *req, const crest_res_info_t *info, void *data) {
    (void)info, (void)data;
    if (crest_req_get(req, "live") == &live)
        live--;
}

/* ---- the loop and the connection ---- */

static void remove_tmp_dir(void) {
    rmdir(tmp_dir);
}

static void setup(void) {
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    o.max_header_bytes = 2048;
    o.max_headers = 20;
    o.max_body = 20000;
    o.max_output = 64 * 1024;
    o.batch_requests = 8;
    /* Short deadlines, and a rate no stalled client meets: the driver fires them itself. */
    o.header_timeout_ms = 50;
    o.body_timeout_ms = 50;
    o.keepalive_timeout_ms = 50;
    o.min_body_rate = 1 << 30;
    app = crest_app_new(&o);
    if (app == NULL)
        abort();
    struct {
        const char *method, *path;
        crest_handler_cb cb;
        uint64_t stream; /* 0: buffered body; else crest_app_route_stream's max_body (1: app's) */
    } routes[] = {
        {"GET", "/", on_text, 0},        {"POST", "/echo", on_echo, 0},
        {"GET", "/later", on_later, 0},  {"GET", "/stream", on_stream, 0},
        {"GET", "/abort", on_abort, 0},  {"GET", "/big", on_big, 0},
        {"GET", "/fail", on_fail, 0},    {"POST", "/later", on_later, 0},
        {"POST", "/count", on_count, 1}, {"POST", "/small", on_count, 3000},
        {"PUT", "/defer", on_defer, 1},  {"POST", "/pause", on_pause, 1},
        {"POST", "/early", on_early, 1}, {"POST", "/stop", on_stop, 1},
        {"POST", "/parts", on_parts, 1}, {"POST", "/echos", on_echos, 1},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        int rc = routes[i].stream == 0
                     ? crest_app_route(app, routes[i].method, routes[i].path, routes[i].cb, NULL)
                     : crest_app_route_stream(app, routes[i].method, routes[i].path, routes[i].cb,
                                              NULL, routes[i].stream == 1 ? 0 : routes[i].stream);
        if (rc != 0)
            abort();
    }
    if (crest_app_use(app, "/", count_mw, NULL) != 0 ||
        crest_app_on_done(app, count_done, NULL) != 0)
        abort();
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/crest-fuzz-h1.XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(tmp_dir) == NULL)
        abort();
    atexit(remove_tmp_dir);
    print = getenv("FUZZ_H1_PRINT") != NULL;
    app->hloops = calloc(1, sizeof(*app->hloops));
    if (app->hloops == NULL || crest__loop_init(&loop, &app->rt, 0) != 0)
        abort();
    loop.upper = &app->hloops[0];
    if (crest__conn_loop_start(&loop) != 0) /* no listener: listen_fd is -1 */
        abort();
    app->rt.mem.limit = 4 * 1024 * 1024;
    crest__http_date_refresh(&loop);
}

static int tmp_dir_empty(void) {
    DIR *d = opendir(tmp_dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n == 0;
}

/* core's timer dispatch, its write deadline simplified: output still waiting when it fires
 * closes the connection (the client here always reads, so that is rare). */
static void on_conn_timer(crest__wheel_node_t *node) {
    crest__conn_t *c = CREST__CONTAINER_OF(node, crest__conn_t, timer);
    if (c->flags & (CONN_LINGERING | CONN_CLOSING) ||
        (c->tx != NULL && (c->proto->flags & CREST__PROTO_WRITE_DEADLINE)))
        crest__conn_close(c);
    else
        c->proto->on_timer(c);
}

static void drain(int fd) {
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        if (print)
            fwrite(buf, 1, (size_t)n, stdout);
}

/* Run the loop: writes complete, parked connections go on, zero-delay timers fire. */
static void turn(int peer) {
    for (int i = 0; i < 4; i++) {
        uv_run(&loop.uv, UV_RUN_NOWAIT);
        drain(peer);
    }
}

/* The connection was freed (its close callback ran): c must not be touched. */
static int gone(void) {
    return atomic_load(&app->rt.conns) == 0;
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

/* crest stopped reading: let it go on as the loop would (its timers, then its writes and parked
 * connections). Returns 0 when it still does not read: the client stays held back. */
static int unblock(crest__conn_t *c, int peer) {
    for (int i = 0; i < 3 && !gone() && !stopped(c) && (c->flags & CONN_READ_PAUSED); i++) {
        if (i > 0)
            crest__loop_fire_timers(&loop);
        turn(peer);
    }
    return !gone() && !stopped(c) && !(c->flags & CONN_READ_PAUSED);
}

/* A request (or part of one) waits for its body: let the clock move on (a millisecond at most)
 * so that its deadline finds the client too slow for min_body_rate instead of just started. */
static void wait_a_tick(crest__conn_t *c) {
    const crest__h1_t *h = c->proto == &crest__h1_proto ? crest__conn_extra(c) : NULL;
    if (h == NULL || (h->rx == NULL && h->req == NULL))
        return;
    uint64_t t = uv_now(&loop.uv);
    for (int i = 0; i < 100000 && uv_now(&loop.uv) == t; i++)
        uv_update_time(&loop.uv);
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
    /* A small send buffer: large answers wait for the client, as over a network. */
    int sndbuf = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    crest__conn_t *c = calloc(1, sizeof(*c) + app->rt.hooks->conn_extra);
    if (c == NULL)
        abort();
    uv_tcp_init(&loop.uv, &c->tcp);
    if (uv_tcp_open(&c->tcp, sv[0]) != 0)
        abort();
    crest__count(&loop.open_conns, 1);
    atomic_fetch_add(&app->rt.conns, 1);
    c->timer.cb = on_conn_timer;
    crest__h1_open(c);
    for (size_t off = 0; off < size && unblock(c, sv[1]);) {
        size_t n = piece == 0 || piece > size - off ? size - off : piece;
        feed(c, data + off, n);
        off += n;
        turn(sv[1]);
    }
    /* The client sends no more and reads everything: what waits on the loop runs, the output
     * goes out, then the connection's deadline (header, body, keep-alive, linger) fires, again
     * after each turn while it is re-armed. */
    for (int i = 0; i < 32 && !gone() && !(c->flags & CONN_CLOSING); i++) {
        crest__loop_fire_timers(&loop);
        turn(sv[1]);
        if (gone() || (c->flags & CONN_CLOSING))
            break;
        if (c->tx != NULL)
            continue; /* still being written: that holds the deadline back */
        if (c->timer.next == NULL)
            break;
        crest__wheel_disarm(&loop.wheel, &c->timer);
        wait_a_tick(c);
        c->timer.cb(&c->timer);
    }
    if (!gone() && !(c->flags & CONN_CLOSING))
        crest__conn_close(c);
    crest__loop_fire_timers(&loop); /* answers given later: their requests were detached */
    turn(sv[1]);
    close(sv[1]);
    /* A request not finished, a borrowed body not given back, the connection not freed, bytes
     * still charged to the memory budget or a temporary file left: something of this input's
     * outlived it. */
    if (live != 0 || borrowed_out != 0 || !gone() || atomic_load(&app->rt.mem.used) ||
        loop.afters != NULL || !tmp_dir_empty())
        abort();
    return 0;
}
