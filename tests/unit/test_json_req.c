/* The request side of crest/json.h through the test client: route parameters, the query string
 * and the body validated in one handler, in any order (each keeps what it decoded with the
 * request, and none may be taken for another: the body's document once was). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "crest.h"

typedef struct {
    crest_str_t name;
    int64_t age;
} person_t;

typedef struct {
    int64_t n;
} query_t;

static const crest_field_t person_fields[] = {
    CREST_FIELD_STR(person_t, name, CREST_REQUIRED | CREST_MIN, .min = 1),
    CREST_FIELD_INT(person_t, age, 0), CREST_FIELD_END};
static const crest_schema_t person = {.name = "Person", .fields = person_fields};
static const crest_field_t query_fields[] = {
    CREST_FIELD_INT(query_t, n, CREST_MIN | CREST_MAX, .min = 1, .max = 9), CREST_FIELD_END};
static const crest_schema_t query = {.fields = query_fields};

static int on_put(crest_req_t *req, void *data) {
    (void)data;
    int64_t id;
    query_t q = {1};
    person_t p = {{NULL, 0}, -1};
    int rc = crest_req_param_int(req, "id", 1, 1000, &id);
    rc = rc ? rc : crest_req_query_valid(req, &query, &q);
    rc = rc ? rc : crest_req_valid(req, &person, &p);
    rc = rc ? rc : crest_req_valid(req, &person, &p); /* again: the same parsed body */
    if (rc != 0)
        return rc;
    char body[128];
    int n = snprintf(body, sizeof(body), "%lld %lld %.*s %lld", (long long)id, (long long)q.n,
                     (int)p.name.len, p.name.ptr, (long long)p.age);
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

static crest_app_t *app;
static crest_test_t *t;

static int setup(void **state) {
    (void)state;
    app = crest_app_new(NULL);
    assert_non_null(app);
    assert_int_equal(crest_app_route(app, "PUT", "/people/:id", on_put, NULL), 0);
    return crest_test_new(app, NULL, &t);
}

static int teardown(void **state) {
    (void)state;
    crest_test_free(t);
    crest_app_free(app);
    return 0;
}

static void call(const char *target, const char *json, int status, const char *want) {
    crest_test_req_t rq = {"PUT", target, NULL, 0, json, strlen(json)};
    crest_test_res_t res;
    assert_int_equal(crest_test_call(t, &rq, &res), 0);
    assert_int_equal(res.status, status);
    if (strstr(res.body.ptr, want) == NULL)
        fail_msg("%s: %s lacks %s", target, res.body.ptr, want);
    crest_test_res_free(&res);
}

static void test_all_three(void **state) {
    (void)state;
    call("/people/7?n=3", "{\"name\":\"ada\",\"age\":36}", 200, "7 3 ada 36");
    call("/people/7", "{\"name\":\"ada\"}", 200, "7 1 ada -1");
    call("/people/x", "{\"name\":\"ada\"}", 422, "\"field\":\"id\"");
    call("/people/7?n=10", "{\"name\":\"ada\"}", 422, "\"field\":\"n\"");
    call("/people/7", "{\"name\":\"\"}", 422, "\"field\":\"name\"");
    call("/people/7", "{\"name\":", 400, "malformed JSON");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_all_three)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
