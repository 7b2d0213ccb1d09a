/* The chain around every response, through the test client (no process, no port): a middleware
 * that resumes later, per-request storage, routes passing on, automatic OPTIONS, the error
 * handler, head and done hooks, and a request answered twice. tests/it/test_chain.py checks the
 * same over real connections, HTTP/2 and the parser's rejections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crest.h"

static void resume(crest_loop_t *loop, void *arg) {
    (void)loop;
    crest_req_t *req = arg;
    crest_req_set(req, "who", "ada");
    assert_int_equal(crest_req_next(req), 0);
}

static int mw_wait(crest_req_t *req, void *data) {
    (void)data;
    assert_int_equal(crest_req_next(req), CREST_EINVAL); /* not waiting yet */
    return crest_loop_after(crest_req_loop(req), 1, resume, req);
}

static int on_who(crest_req_t *req, void *data) {
    (void)data;
    char body[128];
    crest_str_t h = crest_req_header(req, "X-Kept");
    int n = snprintf(body, sizeof(body), "%s %.*s %.*s", (const char *)crest_req_get(req, "who"),
                     (int)h.len, h.ptr, (int)crest_req_body(req).len, crest_req_body(req).ptr);
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

static int on_fail_later(crest_req_t *req, void *data) {
    (void)req;
    (void)data;
    return CREST_EIO; /* after a resumed middleware: the error handler answers */
}

static int on_static(crest_req_t *req, void *data) {
    (void)data;
    if (crest_req_query_param(req, "pass").ptr != NULL)
        return CREST_NEXT;
    return crest_res_send(req, 200, "text/plain", "static", 6);
}

static int on_param(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t id = crest_req_param(req, "id");
    return crest_res_send(req, 200, "text/plain", id.ptr, id.len);
}

static int second_rc;

static int on_twice(crest_req_t *req, void *data) {
    (void)data;
    crest_res_status(req, 204);
    second_rc = crest_res_status(req, 500);
    return 0;
}

static void head_hook(crest_req_t *req, int status, void *data) {
    (void)data;
    crest_res_header(req, "X-Hook", status >= 400 ? "error" : "ok");
}

static int dones;
static void done_hook(crest_req_t *req, const crest_res_info_t *info, void *data) {
    (void)req;
    (void)data;
    dones += info->status > 0;
}

static crest_test_t *t;
static crest_app_t *app;

static int setup(void **state) {
    (void)state;
    app = crest_app_new(NULL);
    assert_non_null(app);
    crest_app_on_error(app, crest_error_json, NULL);
    assert_int_equal(crest_app_on_head(app, head_hook, NULL), 0);
    assert_int_equal(crest_app_on_done(app, done_hook, NULL), 0);
    assert_int_equal(crest_app_use(app, "/wait", mw_wait, NULL), 0);
    assert_int_equal(crest_app_route(app, "POST", "/wait/who", on_who, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/wait/fail", on_fail_later, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/items/new", on_static, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/items/:id", on_param, NULL), 0);
    assert_int_equal(crest_app_route(app, "GET", "/twice", on_twice, NULL), 0);
    return crest_test_new(app, NULL, &t);
}

static int teardown(void **state) {
    (void)state;
    crest_test_free(t);
    crest_app_free(app);
    return 0;
}

static void test_resumed(void **state) {
    (void)state;
    crest_header_t h = {{"X-Kept", 6}, {"yes", 3}};
    crest_test_req_t rq = {"POST", "/wait/who", &h, 1, "body!", 5};
    crest_test_res_t res;
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "ada yes body!");
    assert_string_equal(crest_test_header(&res, "X-Hook").ptr, "ok");
    crest_test_res_free(&res);
}

/* A route that fails after the chain was resumed: the error handler answers, once. */
static void test_resumed_failure(void **state) {
    (void)state;
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/wait/fail", &res), 0);
    assert_int_equal(res.status, 500);
    assert_string_equal(res.body.ptr, "{\"status\":500,\"error\":\"Internal Server Error\"}");
    crest_test_res_free(&res);
}

static void test_pass_on(void **state) {
    (void)state;
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/items/new", &res), 0);
    assert_string_equal(res.body.ptr, "static");
    crest_test_res_free(&res);
    assert_int_equal(crest_test_get(t, "/items/new?pass", &res), 0);
    assert_string_equal(res.body.ptr, "new");
    crest_test_res_free(&res);
}

static void test_errors_and_options(void **state) {
    (void)state;
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/nowhere", &res), 0);
    assert_int_equal(res.status, 404);
    assert_string_equal(res.body.ptr, "{\"status\":404,\"error\":\"Not Found\"}");
    assert_string_equal(crest_test_header(&res, "X-Hook").ptr, "error");
    crest_test_res_free(&res);
    assert_int_equal(crest_test_post_json(t, "/items/3", "{}", &res), 0);
    assert_int_equal(res.status, 405);
    assert_string_equal(crest_test_header(&res, "Allow").ptr, "GET, HEAD");
    assert_string_equal(res.body.ptr, "{\"status\":405,\"error\":\"Method Not Allowed\"}");
    crest_test_res_free(&res);
    crest_test_req_t rq = {"OPTIONS", "/items/3", NULL, 0, NULL, 0};
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, 204);
    assert_string_equal(crest_test_header(&res, "Allow").ptr, "GET, HEAD, OPTIONS");
    crest_test_res_free(&res);
    static const char bad[] = "GET / HTTP/1.1\r\nHost: t\r\nNo colon\r\n\r\n";
    assert_int_equal(crest_test_raw(t, bad, sizeof(bad) - 1, &res), 0);
    assert_int_equal(res.status, 400);
    assert_string_equal(res.body.ptr, "{\"status\":400,\"error\":\"Bad Request\"}");
    crest_test_res_free(&res);
}

static void test_twice_and_done(void **state) {
    (void)state;
    int before = dones;
    crest_test_res_t res;
    assert_int_equal(crest_test_get(t, "/twice", &res), 0);
    assert_int_equal(res.status, 204);
    assert_int_equal(second_rc, CREST_EALREADY);
    crest_test_res_free(&res);
    assert_int_equal(dones, before + 1);
}

static int logged;
static void count_log(void *data, crest_log_level_t level, const char *msg) {
    (void)data;
    logged += level == CREST_LOG_ERROR && strstr(msg, "crest_app_route GET /dup") != NULL;
}

/* A call that built the app and failed stops crest_app_listen, unchecked as it may have been. */
static void test_setup_error(void **state) {
    (void)state;
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    o.port = 0;
    o.log = count_log;
    crest_app_t *a = crest_app_new(&o);
    assert_int_equal(crest_app_route(a, "GET", "/dup", on_static, NULL), 0);
    assert_int_equal(crest_app_route(a, "GET", "/dup", on_static, NULL), CREST_EEXIST);
    assert_int_equal(crest_app_route(a, "GET", "/ok", on_static, NULL), 0);
    assert_int_equal(crest_app_listen(a), CREST_EEXIST);
    assert_int_equal(logged, 1);
    crest_app_free(a);
}

static int on_elapsed(crest_req_t *req, void *data) {
    (void)data;
    char v[32];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)crest_req_elapsed_ns(req));
    crest_res_header(req, "X-Elapsed-Ns", v);
    return crest_res_send(req, 200, "text/plain", "", 0);
}

/* crest_healthz: 200 while serving, 503 once a graceful stop began (a second app, stopped). */
static void test_healthz(void **state) {
    (void)state;
    crest_app_t *a = crest_app_new(NULL);
    crest_test_t *tc;
    assert_int_equal(crest_app_route(a, "GET", "/healthz", crest_healthz, NULL), 0);
    assert_int_equal(crest_app_route(a, "GET", "/elapsed", on_elapsed, NULL), 0);
    assert_int_equal(crest_test_new(a, NULL, &tc), 0);
    crest_test_res_t res;
    assert_int_equal(crest_test_get(tc, "/healthz", &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body.ptr, "ok\n");
    crest_test_res_free(&res);
    assert_int_equal(crest_test_get(tc, "/elapsed", &res), 0);
    assert_true(strtoull(crest_test_header(&res, "X-Elapsed-Ns").ptr, NULL, 10) > 0);
    crest_test_res_free(&res);
    crest_app_stop(a);
    assert_int_equal(crest_test_get(tc, "/healthz", &res), 0);
    assert_int_equal(res.status, 503);
    assert_string_equal(res.body.ptr, "stopping\n");
    assert_string_equal(crest_test_header(&res, "Retry-After").ptr, "1");
    crest_test_res_free(&res);
    crest_test_free(tc);
    crest_app_free(a);
}

static void test_opts_env(void **state) {
    (void)state;
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    setenv("HOST", "::1", 1);
    setenv("PORT", "9123", 1);
    assert_int_equal(crest_app_opts_env(&o), 0);
    assert_string_equal(o.host, "::1");
    assert_int_equal(o.port, 9123);
    setenv("PORT", "70000", 1);
    assert_int_equal(crest_app_opts_env(&o), CREST_EINVAL);
    assert_int_equal(o.port, 9123);
    unsetenv("HOST");
    unsetenv("PORT");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setup_error),
        cmocka_unit_test(test_opts_env),
        cmocka_unit_test(test_healthz),
        cmocka_unit_test(test_resumed),
        cmocka_unit_test(test_resumed_failure),
        cmocka_unit_test(test_pass_on),
        cmocka_unit_test(test_errors_and_options),
        cmocka_unit_test(test_twice_and_done),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
