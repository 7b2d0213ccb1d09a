/* The test client (crest/testing.h): an app with routes and middleware called in-process, its
 * answers checked as a client on the wire would see them. Each test builds its own app and test
 * client, so each ends with the loop closed and (under ASan) nothing leaked. No sleeps: a call
 * runs the loop until the response is complete; the timers below are the app's own. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "crest.h"

/* ---- the app under test ---- */

static int h_hello(crest_req_t *req, void *data) {
    (void)data;
    crest_res_header(req, "X-Out", "yes");
    return crest_res_send(req, 200, "text/plain", "hello", 5);
}

static void on_later(crest_loop_t *loop, void *arg) {
    (void)loop;
    crest_res_send(arg, 200, "text/plain", "later", 5);
}

static int h_later(crest_req_t *req, void *data) {
    (void)data;
    return crest_loop_after(crest_req_loop(req), 20, on_later, req);
}

typedef struct {
    long n;
    long result;
} sum_job_t;

static void sum_work(void *arg) {
    sum_job_t *j = arg;
    for (long i = 1; i <= j->n; i++)
        j->result += i;
}

static void sum_done(crest_req_t *req, int status, void *arg) {
    sum_job_t *j = arg;
    char body[32];
    int n = snprintf(body, sizeof(body), "%ld", j->result);
    free(j);
    if (status != 0)
        crest_res_status(req, 503);
    else
        crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

static int h_sum(crest_req_t *req, void *data) {
    (void)data;
    sum_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CREST_ENOMEM;
    j->n = atol(crest_req_param(req, "n").ptr); /* the digits end at the request line's space */
    int rc = crest_work_submit(req, sum_work, sum_done, j);
    if (rc != 0)
        free(j);
    return rc;
}

/* Echo the body and one request header back, with the request's content type. */
static int h_echo(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t name = crest_req_header(req, "X-Name");
    char v[64];
    snprintf(v, sizeof(v), "%.*s", (int)name.len, name.ptr ? name.ptr : "");
    crest_res_header(req, "X-Name-Seen", v);
    crest_str_t ct = crest_req_header(req, "Content-Type");
    char ctype[64];
    snprintf(ctype, sizeof(ctype), "%.*s", (int)ct.len, ct.ptr ? ct.ptr : "");
    crest_str_t body = crest_req_body(req);
    return crest_res_send(req, 200, ct.ptr ? ctype : NULL, body.ptr, body.len);
}

/* A streamed response: three pieces, chunked on the wire. */
static int h_stream(crest_req_t *req, void *data) {
    (void)data;
    int rc = crest_res_start(req, 200, "text/plain");
    for (int i = 0; rc == 0 && i < 3; i++) {
        char piece[16];
        int n = snprintf(piece, sizeof(piece), "part%d;", i);
        rc = crest_res_write(req, piece, (size_t)n);
    }
    return rc == 0 ? crest_res_end(req) : rc;
}

/* A body larger than the loop's read buffer and than 1 MiB: the memory transport hands it over
 * whole. */
#define BIG (3 * 1024 * 1024 + 7)
static int h_big(crest_req_t *req, void *data) {
    (void)data;
    char *b = malloc(BIG);
    if (b == NULL)
        return CREST_ENOMEM;
    for (size_t i = 0; i < BIG; i++)
        b[i] = (char)('a' + i % 26);
    return crest_res_send_borrowed(req, 200, "application/octet-stream", b, BIG, free, b);
}

static int h_peer(crest_req_t *req, void *data) {
    (void)data;
    char buf[64];
    size_t n = crest_req_peer(req, buf, sizeof(buf));
    return crest_res_send(req, 200, "text/plain", buf, n);
}

/* Never answers until the client leaves; the abort callback finishes the request. */
static atomic_int aborts;
static void on_abort_finish(crest_req_t *req, void *arg) {
    (void)arg;
    atomic_fetch_add(&aborts, 1);
    crest_res_status(req, 500); /* only frees it: the client has gone */
}

static int h_forgotten(crest_req_t *req, void *data) {
    (void)data;
    crest_req_on_abort(req, on_abort_finish, NULL);
    return 0;
}

static int h_stop(crest_req_t *req, void *data) {
    crest_app_stop(data);
    return crest_res_send(req, 200, "text/plain", "bye", 3);
}

/* Middleware under /admin: no X-Token, 401 at once; with one, the route runs. */
static int mw_auth(crest_req_t *req, void *data) {
    (void)data;
    if (crest_req_header(req, "X-Token").ptr == NULL)
        return crest_res_send(req, 401, "text/plain", "no token", 8);
    return CREST_NEXT;
}

static int h_admin(crest_req_t *req, void *data) {
    (void)data;
    return crest_res_send(req, 200, "text/plain", "admin", 5);
}

/* The process's open descriptors, as the handler sees them during a call. */
static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n; /* the directory's own descriptor included, every time */
}

static int fds_in_handler;
static int h_fds(crest_req_t *req, void *data) {
    (void)data;
    fds_in_handler = count_fds();
    return crest_res_send(req, 200, "text/plain", "fds", 3);
}

static atomic_int counted;
static int h_count(crest_req_t *req, void *data) {
    (void)data;
    atomic_fetch_add(&counted, 1);
    return crest_res_send(req, 200, "text/plain", "n", 1);
}

/* A response streamed in pieces, each written once the one before drained: the protocol waits
 * for its write callbacks (on_written). */
#define PUMP_PIECE (48 * 1024)
#define PUMP_PIECES 40
typedef struct {
    int sent;
    char piece[PUMP_PIECE];
} pump_t;

static void pump(crest_req_t *req, void *arg) {
    pump_t *p = arg;
    for (;;) {
        if (p->sent == PUMP_PIECES) {
            free(p);
            crest_res_end(req);
            return;
        }
        memset(p->piece, 'A' + p->sent % 26, sizeof(p->piece));
        if (crest_res_write(req, p->piece, sizeof(p->piece)) != 0) {
            free(p);
            return;
        }
        p->sent++;
        int rc = crest_res_on_drain(req, pump, p);
        if (rc == 0)
            return; /* back in the drain callback */
        if (rc != CREST_EALREADY) {
            free(p);
            return;
        }
    }
}

static int h_pump(crest_req_t *req, void *data) {
    (void)data;
    pump_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CREST_ENOMEM;
    int rc = crest_res_start(req, 200, "application/octet-stream");
    if (rc != 0) {
        free(p);
        return rc;
    }
    pump(req, p);
    return 0;
}

/* POST /upload streams its body (crest_app_route_stream): its size and a checksum, as counted
 * piece by piece. */
typedef struct {
    size_t bytes, pieces;
    uint32_t sum;
} upload_t;

static int on_upload_piece(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    upload_t *u = arg;
    if (event == CREST_BODY_DATA) {
        for (size_t i = 0; i < len; i++)
            u->sum = u->sum * 31 + ((const unsigned char *)data)[i];
        u->bytes += len;
        u->pieces++;
        return 0;
    }
    if (event != CREST_BODY_END)
        return 0;
    char out[96];
    int n = snprintf(out, sizeof(out), "%zu %zu %u", u->bytes, u->pieces, (unsigned)u->sum);
    return crest_res_send(req, 200, "text/plain", out, (size_t)n);
}

static int h_upload(crest_req_t *req, void *data) {
    (void)data;
    upload_t *u = crest_req_alloc(req, sizeof(*u));
    if (u == NULL)
        return CREST_ENOMEM;
    memset(u, 0, sizeof(*u));
    return crest_req_body_stream(req, on_upload_piece, u);
}

static crest_app_t *make_app(size_t max_body) {
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    o.handle_signals = 0;
    o.systemd = 0;
    if (max_body)
        o.max_body = max_body;
    crest_app_t *app = crest_app_new(&o);
    assert_non_null(app);
    assert_int_equal(crest_app_route(app, "GET", "/hello", h_hello, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/later", h_later, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/sum/:n", h_sum, NULL), 0);
    assert_int_equal(crest_app_route(app, "POST", "/echo", h_echo, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/stream", h_stream, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/big", h_big, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/peer", h_peer, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/forgotten", h_forgotten, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/stop", h_stop, app), 0);
    assert_int_equal(crest_app_route(app, "GET", "/admin/panel", h_admin, NULL), 0);
    assert_int_equal(crest_app_use(app, "/admin", mw_auth, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/fds", h_fds, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/count", h_count, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/pump", h_pump, NULL), 0);
    assert_int_equal(crest_app_route_stream(app, "POST", "/upload", h_upload, NULL, 64 << 20), 0);
    return app;
}

static void assert_str(crest_str_t s, const char *want) {
    assert_non_null(s.ptr);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

/* ---- tests ---- */

static void test_sync_answer_as_on_the_wire(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/hello", &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "hello");
    assert_int_equal(res.chunked, 0);
    assert_str(crest_test_header(&res, "content-length"), "5");
    assert_str(crest_test_header(&res, "Content-Type"), "text/plain");
    assert_str(crest_test_header(&res, "Server"), "crest");
    assert_non_null(crest_test_header(&res, "Date").ptr);
    assert_str(crest_test_header(&res, "X-Out"), "yes");
    assert_null(crest_test_header(&res, "Connection").ptr); /* keep-alive is HTTP/1.1's default */
    assert_null(crest_test_header(&res, "X-Nothing").ptr);
    /* Values are NUL-terminated for the tests' convenience. */
    assert_string_equal(crest_test_header(&res, "X-Out").ptr, "yes");
    crest_test_res_free(&res);
    crest_test_res_free(&res); /* again: nothing */
    /* Counted as a served response, as on a running app. */
    assert_int_equal(crest_app_status_count(app, 200), 1);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_not_found_and_method_not_allowed(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/nowhere", &res), 0);
    assert_int_equal(res.status, 404);
    crest_test_res_free(&res);
    crest_test_req_t rq = {.method = "DELETE", .target = "/hello"};
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, 405);
    assert_non_null(crest_test_header(&res, "Allow").ptr);
    assert_non_null(strstr(crest_test_header(&res, "Allow").ptr, "GET"));
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_answer_later_by_timer(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    for (int i = 0; i < 2; i++) { /* a second call on the same client */
        assert_int_equal(crest_test_get(t, "/later", &res), 0);
        assert_int_equal(res.status, 200);
        assert_string_equal(res.body.ptr, "later");
        crest_test_res_free(&res);
    }
    crest_test_free(t);
    crest_app_free(app);
}

static void test_worker_pool_job(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_work_opts_t wo;
    crest_work_opts_default(&wo);
    wo.workers = 2;
    assert_int_equal(crest_app_workers(app, &wo), 0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/sum/1000", &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "500500");
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_middleware_short_circuit(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/admin/panel", &res), 0);
    assert_int_equal(res.status, 401);
    assert_string_equal(res.body.ptr, "no token");
    crest_test_res_free(&res);
    crest_header_t h[] = {{{"X-Token", 7}, {"s3cret", 6}}};
    crest_test_req_t rq = {.target = "/admin/panel", .headers = h, .nheaders = 1};
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "admin");
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_post_body_and_headers_echo(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_post_json(t, "/echo", "{\"a\":[1,2]}", &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "{\"a\":[1,2]}");
    assert_str(crest_test_header(&res, "Content-Type"), "application/json");
    assert_str(crest_test_header(&res, "X-Name-Seen"), "");
    crest_test_res_free(&res);
    /* Binary bytes (a NUL inside) and a request header in. */
    static const char bin[] = {'a', '\0', 'b', '\n', 'c'};
    crest_header_t h[] = {{{"X-Name", 6}, {"  Ada  ", 7}}};
    crest_test_req_t rq = {.method = "POST",
                           .target = "/echo",
                           .headers = h,
                           .nheaders = 1,
                           .body = bin,
                           .body_len = sizeof(bin)};
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body.len, sizeof(bin));
    assert_memory_equal(res.body.ptr, bin, sizeof(bin));
    assert_str(crest_test_header(&res, "X-Name-Seen"), "Ada");
    crest_test_res_free(&res);
    /* A chunked request body, framed by the caller. */
    crest_header_t te[] = {{{"Transfer-Encoding", 17}, {"chunked", 7}}};
    static const char chunked[] = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    crest_test_req_t rq2 = {.method = "POST",
                            .target = "/echo",
                            .headers = te,
                            .nheaders = 1,
                            .body = chunked,
                            .body_len = sizeof(chunked) - 1};
    assert_int_equal(crest_test_call(t, &rq2, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "abcde");
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_streamed_response_is_dechunked(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/stream", &res), 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.chunked, 1);
    assert_str(crest_test_header(&res, "Transfer-Encoding"), "chunked");
    assert_null(crest_test_header(&res, "Content-Length").ptr);
    assert_string_equal(res.body.ptr, "part0;part1;part2;");
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_head_has_no_body(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    crest_test_req_t rq = {.method = "HEAD", .target = "/hello"};
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, 200);
    assert_str(crest_test_header(&res, "Content-Length"), "5");
    assert_int_equal(res.body.len, 0);
    assert_string_equal(res.body.ptr, "");
    crest_test_res_free(&res);
    /* The same through crest_test_raw. */
    static const char head[] = "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(crest_test_raw(t, head, sizeof(head) - 1, &res), 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body.len, 0);
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_large_body_arrives_whole(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/big", &res), 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body.len, BIG);
    for (size_t i = 0; i < BIG; i += 4099)
        assert_int_equal(res.body.ptr[i], 'a' + (int)(i % 26));
    assert_int_equal(res.body.ptr[BIG - 1], 'a' + (BIG - 1) % 26);
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_rejections_from_the_parser(void **state) {
    (void)state;
    crest_app_t *app = make_app(16);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    static const char bad[] = "GET /hello HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n";
    assert_int_equal(crest_test_raw(t, bad, sizeof(bad) - 1, &res), 0);
    assert_int_equal(res.status, 400);
    assert_str(crest_test_header(&res, "Connection"), "close");
    crest_test_res_free(&res);
    assert_int_equal(crest_test_post(t, "/echo", "text/plain", "0123456789abcdefXYZ", 19, &res), 0);
    assert_int_equal(res.status, 413);
    crest_test_res_free(&res);
    /* HTTP/1.1 without Host: the client adds one unless given, so only raw bytes can omit it. */
    static const char nohost[] = "GET /hello HTTP/1.1\r\n\r\n";
    assert_int_equal(crest_test_raw(t, nohost, sizeof(nohost) - 1, &res), 0);
    assert_int_equal(res.status, 400);
    crest_test_res_free(&res);
    /* What the client refuses to send. */
    crest_test_req_t rq = {.target = "/a b"};
    assert_int_equal(crest_test_call(t, &rq, &res), CREST_EINVAL);
    crest_header_t h[] = {{{"X-Evil", 6}, {"a\r\nInjected: 1", 14}}};
    crest_test_req_t rq2 = {.target = "/hello", .headers = h, .nheaders = 1};
    assert_int_equal(crest_test_call(t, &rq2, &res), CREST_EINVAL);
    assert_int_equal(res.status, 0);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_client_address(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_opts_t o;
    crest_test_opts_default(&o);
    o.client = "nonsense";
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, &o, &t), CREST_EINVAL);
    assert_null(t);
    o.client = "2001:db8::7";
    assert_int_equal(crest_test_new(app, &o, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/peer", &res), 0);
    assert_string_equal(res.body.ptr, "2001:db8::7");
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_test_free(NULL);
    crest_app_free(app);
}

static void test_timeout_aborts_the_request(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_opts_t o;
    crest_test_opts_default(&o);
    o.timeout_ms = 50;
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, &o, &t), 0);
    atomic_store(&aborts, 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/forgotten", &res), CREST_ETIMEDOUT);
    assert_int_equal(res.status, 0);
    /* The client left before the call returned: the app heard it within the call. */
    assert_int_equal(atomic_load(&aborts), 1);
    crest_test_res_free(&res);
    /* An answer after the timeout's worth of a stream: the head and what came. */
    assert_int_equal(crest_test_get(t, "/hello", &res), 0);
    assert_int_equal(res.status, 200);
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_app_is_busy_while_tested(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t, *t2;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    assert_int_equal(crest_test_new(app, NULL, &t2), CREST_EBUSY);
    assert_int_equal(crest_app_route(app, "GET", "/new", h_hello, NULL), CREST_EBUSY);
    assert_int_equal(crest_app_run(app), CREST_EBUSY);
    crest_test_free(t);
    crest_app_free(app);
}

static void test_clients_one_after_another(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    for (int i = 0; i < 3; i++) {
        crest_test_t *t;
        assert_int_equal(crest_test_new(app, NULL, &t), 0);
        crest_test_res_t res;
        assert_int_equal(crest_test_get(t, "/later", &res), 0);
        assert_int_equal(res.status, 200);
        crest_test_res_free(&res);
        crest_test_free(t);
    }
    crest_stats_t st;
    crest_app_stats(app, &st); /* the last client's loop, read after its end */
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.open_connections, 0);
    crest_app_free(app);
}

static void test_app_stop_drains(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/stop", &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "bye");
    crest_test_res_free(&res);
    assert_int_equal(crest_test_get(t, "/hello", &res), CREST_ECANCELED);
    assert_int_equal(res.status, 0);
    crest_test_free(t);
    crest_app_free(app);
}

/* ---- a database query (SQLite, a file in a fresh folder) ---- */

typedef struct {
    crest_db_t *db;
    crest_db_sql_t *get;
} db_ctx_t;

static void on_rows(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    (void)arg;
    if (status != 0 || crest_db_rows(q, 0) != 1) {
        crest_res_status(req, 500);
        return;
    }
    crest_str_t name = crest_db_text(q, 0, 0, 0);
    crest_res_send(req, 200, "text/plain", name.ptr, name.len);
}

static int h_user(crest_req_t *req, void *data) {
    db_ctx_t *d = data;
    crest_db_query_t *q = crest_db_query(d->db, 0);
    if (q == NULL)
        return CREST_ENOMEM;
    crest_db_add(q, d->get);
    crest_db_arg_int(q, atoi(crest_req_param(req, "id").ptr));
    return crest_db_run(q, req, on_rows, NULL);
}

static void test_sqlite_query(void **state) {
    (void)state;
    char dir[] = "/tmp/crest-testclient-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char url[128], path[96];
    snprintf(path, sizeof(path), "%s/t.db", dir);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    db_ctx_t d;
    assert_int_equal(crest_db_open(url, NULL, &d.db), 0);
    crest_db_sql_t *create, *insert;
    assert_int_equal(
        crest_db_statement(d.db, "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT)", &create), 0);
    assert_int_equal(crest_db_statement(d.db, "INSERT INTO u VALUES (?, ?)", &insert), 0);
    assert_int_equal(crest_db_statement(d.db, "SELECT name FROM u WHERE id = ?", &d.get), 0);
    crest_db_query_t *q = crest_db_query(d.db, CREST_DB_WRITE);
    crest_db_add(q, create);
    crest_db_add(q, insert);
    crest_db_arg_int(q, 7);
    crest_db_arg_text(q, "grace", 5);
    assert_int_equal(crest_db_run_sync(q), 0);
    crest_db_query_free(q);

    crest_app_t *app = make_app(0);
    assert_int_equal(crest_app_route(app, "GET", "/users/:id", h_user, &d), 0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/users/7", &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "grace");
    crest_test_res_free(&res);
    assert_int_equal(crest_test_get(t, "/users/8", &res), 0);
    assert_int_equal(res.status, 500);
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
    crest_db_close(d.db);
    char f[128];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(f, sizeof(f), "%s%s", path, suffixes[i]);
        unlink(f);
    }
    assert_int_equal(rmdir(dir), 0);
}

/* ---- streams and upgrades: what the header says of them ---- */

static atomic_int stream_closes;
static void on_sse_close(crest_sse_t *sse) {
    (void)sse;
    atomic_fetch_add(&stream_closes, 1);
}

/* One event; the stream ends when data is non-NULL, else stays open. */
static int h_events(crest_req_t *req, void *data) {
    crest_sse_opts_t o;
    crest_sse_opts_default(&o);
    o.on_close = on_sse_close;
    crest_sse_t *sse = crest_sse_start(req, &o);
    if (sse == NULL)
        return 0;
    crest_sse_send(sse, NULL, NULL, "hi", 2);
    if (data != NULL)
        crest_sse_end(sse);
    return 0;
}

static void on_ws_close(crest_ws_t *ws, int code, const char *reason, size_t len) {
    (void)ws;
    (void)reason;
    (void)len;
    assert_int_equal(code, 1006); /* the client left without a close frame */
    atomic_fetch_add(&stream_closes, 1);
}

static void test_event_stream_and_websocket(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    static int end = 1;
    assert_int_equal(crest_app_route(app, "GET", "/events", h_events, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/events-end", h_events, &end), 0);
    static crest_ws_opts_t wo;
    crest_ws_opts_default(&wo);
    wo.on_close = on_ws_close;
    assert_int_equal(crest_ws_route(app, "/ws", &wo), 0);
    crest_test_opts_t o;
    crest_test_opts_default(&o);
    o.timeout_ms = 100;
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, &o, &t), 0);
    atomic_store(&stream_closes, 0);
    crest_test_res_t res;
    /* A stream that stays open: the timeout, with the head and the event that came. */
    assert_int_equal(crest_test_get(t, "/events", &res), CREST_ETIMEDOUT);
    assert_int_equal(res.status, 200);
    assert_str(crest_test_header(&res, "Content-Type"), "text/event-stream");
    assert_non_null(strstr(res.body.ptr, "data: hi\n\n"));
    assert_int_equal(atomic_load(&stream_closes), 1);
    crest_test_res_free(&res);
    /* A stream that ends: its body runs until the close. */
    assert_int_equal(crest_test_get(t, "/events-end", &res), 0);
    assert_int_equal(res.status, 200);
    assert_non_null(strstr(res.body.ptr, "data: hi\n\n"));
    assert_int_equal(atomic_load(&stream_closes), 2);
    crest_test_res_free(&res);
    /* A WebSocket upgrade: the 101 head, then the client leaves. */
    crest_header_t h[] = {{{"Connection", 10}, {"Upgrade", 7}},
                          {{"Upgrade", 7}, {"websocket", 9}},
                          {{"Sec-WebSocket-Version", 21}, {"13", 2}},
                          {{"Sec-WebSocket-Key", 17}, {"dGhlIHNhbXBsZSBub25jZQ==", 24}}};
    crest_test_req_t rq = {.target = "/ws", .headers = h, .nheaders = 4};
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, 101);
    assert_str(crest_test_header(&res, "Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(res.body.len, 0);
    assert_int_equal(atomic_load(&stream_closes), 3);
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

/* ---- the example of doc/testing.md, as written there ---- */

static int get_user(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t id = crest_req_param(req, "id");
    if (id.len == 1 && id.ptr[0] == '7')
        return crest_res_json(req, 200, "{\"name\":\"grace\"}", 16);
    return crest_res_status(req, 404);
}

static void test_get_user(void **state) {
    (void)state;
    crest_app_t *app = crest_app_new(NULL);
    crest_app_route(app, "GET", "/users/:id", get_user, NULL);

    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);

    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/users/7", &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(crest_test_header(&res, "Content-Type").ptr, "application/json");
    assert_string_equal(res.body.ptr, "{\"name\":\"grace\"}");
    crest_test_res_free(&res);

    assert_int_equal(crest_test_post_json(t, "/users/7", "{\"name\":\"ada\"}", &res), 0);
    assert_int_equal(res.status, 405); /* no POST route: Allow says GET */
    crest_test_res_free(&res);

    crest_test_free(t);
    crest_app_free(app);
}

/* ---- the memory transport ---- */

/* A call opens no descriptor: the handler, in the middle of it, sees as many as before (a
 * socket pair would be two more), and none is left after. */
static void test_no_descriptor_per_call(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/hello", &res), 0); /* anything made once, made now */
    crest_test_res_free(&res);
    int before = count_fds();
    assert_true(before > 0);
    fds_in_handler = -1;
    assert_int_equal(crest_test_get(t, "/fds", &res), 0);
    assert_int_equal(res.status, 200);
    crest_test_res_free(&res);
    assert_int_equal(fds_in_handler, before);
    assert_int_equal(count_fds(), before);
    crest_test_free(t);
    crest_app_free(app);
}

/* A request body larger than the loop's read buffer (3 MiB, max_body raised) reaches the handler
 * whole: it is fed in pieces of the read buffer, as reads would bring it. */
static void test_large_request_body_arrives_whole(void **state) {
    (void)state;
    const size_t n = 3 * 1024 * 1024 + 11;
    crest_app_t *app = make_app(4 * 1024 * 1024);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    char *body = malloc(n);
    assert_non_null(body);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('0' + i % 10);
    crest_test_res_t res;
    assert_int_equal(crest_test_post(t, "/echo", "application/octet-stream", body, n, &res), 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body.len, n);
    assert_memory_equal(res.body.ptr, body, n);
    crest_test_res_free(&res);
    free(body);
    crest_test_free(t);
    crest_app_free(app);
}

/* A route that streams its body gets a body far over the app's max_body piece by piece. */
static void test_streamed_request_body(void **state) {
    (void)state;
    const size_t n = 5 * 1024 * 1024 + 3;
    crest_app_t *app = make_app(0); /* max_body: the default 1 MiB */
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    char *body = malloc(n);
    assert_non_null(body);
    uint32_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        body[i] = (char)(i * 7 % 251);
        sum = sum * 31 + (unsigned char)body[i];
    }
    crest_test_res_t res;
    assert_int_equal(crest_test_post(t, "/upload", NULL, body, n, &res), 0);
    assert_int_equal(res.status, 200);
    size_t bytes = 0, pieces = 0;
    unsigned got = 0;
    assert_int_equal(sscanf(res.body.ptr, "%zu %zu %u", &bytes, &pieces, &got), 3);
    assert_int_equal(bytes, n);
    assert_int_equal(got, sum);
    assert_true(pieces > 1);
    crest_test_res_free(&res);
    /* The same body to a buffered route is over max_body. */
    assert_int_equal(crest_test_post(t, "/echo", NULL, body, n, &res), 0);
    assert_int_equal(res.status, 413);
    crest_test_res_free(&res);
    free(body);
    crest_test_free(t);
    crest_app_free(app);
}

/* A response written piece by piece from drain callbacks (the protocol waits for its writes'
 * completions) arrives whole and in order. */
static void test_streamed_with_drain_callbacks(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/pump", &res), 0);
    assert_int_equal(res.status, 200);
    assert_true(res.chunked);
    assert_int_equal(res.body.len, (size_t)PUMP_PIECE * PUMP_PIECES);
    for (size_t i = 0; i < PUMP_PIECES; i++) {
        assert_int_equal(res.body.ptr[i * PUMP_PIECE], 'A' + (int)(i % 26));
        assert_int_equal(res.body.ptr[(i + 1) * PUMP_PIECE - 1], 'A' + (int)(i % 26));
    }
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

/* Two requests back to back, the first answered later (a loop timer): the first response comes
 * back. */
static void test_pipelined_behind_a_later_answer(void **state) {
    (void)state;
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    static const char two[] = "GET /later HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    crest_test_res_t res;
    assert_int_equal(crest_test_raw(t, two, sizeof(two) - 1, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "later");
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
}

/* A pipeline longer than the read buffer behind a request answered later: HTTP stops reading
 * (more than max_header_bytes wait), the rest of the input is held, and it is delivered once
 * reading goes on; the client's close comes after it, so every request is served before the
 * connection closes, within the call. */
static void test_input_held_while_reading_is_paused(void **state) {
    (void)state;
    enum { N = 3000 };
    static const char one[] = "GET /count HTTP/1.1\r\nHost: t\r\n\r\n";
    static const char first[] = "GET /later HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t len = sizeof(first) - 1 + N * (sizeof(one) - 1);
    assert_true(len > 64 * 1024);
    char *bytes = malloc(len), *o = bytes;
    assert_non_null(bytes);
    memcpy(o, first, sizeof(first) - 1);
    o += sizeof(first) - 1;
    for (int i = 0; i < N; i++, o += sizeof(one) - 1)
        memcpy(o, one, sizeof(one) - 1);
    crest_app_t *app = make_app(0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    atomic_store(&counted, 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_raw(t, bytes, len, &res), 0);
    assert_string_equal(res.body.ptr, "later");
    crest_test_res_free(&res);
    assert_int_equal(atomic_load(&counted), N);
    free(bytes);
    crest_test_free(t);
    crest_app_free(app);
}

/* A static file above the cache's size goes out with sendfile on a socket; here it is read into
 * the client whole, and a range from its middle too. */
static void test_static_file_through_sendfile(void **state) {
    (void)state;
    char dir[] = "/tmp/crest-tc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/big.bin", dir);
    const size_t n = 1536 * 1024 + 5;
    char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7 + i / 251);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
    crest_app_t *app = make_app(0);
    assert_int_equal(crest_app_static(app, "/files", dir, NULL), 0);
    crest_test_t *t;
    assert_int_equal(crest_test_new(app, NULL, &t), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/files/big.bin", &res), 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body.len, n);
    assert_memory_equal(res.body.ptr, data, n);
    crest_test_res_free(&res);
    crest_header_t range = {{"Range", 5}, {"bytes=700000-700099", 19}};
    crest_test_req_t rq = {.target = "/files/big.bin", .headers = &range, .nheaders = 1};
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, 206);
    assert_int_equal(res.body.len, 100);
    assert_memory_equal(res.body.ptr, data + 700000, 100);
    crest_test_res_free(&res);
    crest_test_free(t);
    crest_app_free(app);
    unlink(path);
    rmdir(dir);
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_answer_as_on_the_wire),
        cmocka_unit_test(test_not_found_and_method_not_allowed),
        cmocka_unit_test(test_answer_later_by_timer),
        cmocka_unit_test(test_worker_pool_job),
        cmocka_unit_test(test_middleware_short_circuit),
        cmocka_unit_test(test_post_body_and_headers_echo),
        cmocka_unit_test(test_streamed_response_is_dechunked),
        cmocka_unit_test(test_head_has_no_body),
        cmocka_unit_test(test_large_body_arrives_whole),
        cmocka_unit_test(test_rejections_from_the_parser),
        cmocka_unit_test(test_client_address),
        cmocka_unit_test(test_timeout_aborts_the_request),
        cmocka_unit_test(test_app_is_busy_while_tested),
        cmocka_unit_test(test_clients_one_after_another),
        cmocka_unit_test(test_app_stop_drains),
        cmocka_unit_test(test_sqlite_query),
        cmocka_unit_test(test_event_stream_and_websocket),
        cmocka_unit_test(test_get_user),
        cmocka_unit_test(test_no_descriptor_per_call),
        cmocka_unit_test(test_large_request_body_arrives_whole),
        cmocka_unit_test(test_streamed_with_drain_callbacks),
        cmocka_unit_test(test_pipelined_behind_a_later_answer),
        cmocka_unit_test(test_input_held_while_reading_is_paused),
        cmocka_unit_test(test_static_file_through_sendfile),
        cmocka_unit_test(test_streamed_request_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
