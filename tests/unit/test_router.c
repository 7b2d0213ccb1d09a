/* Router: static, :param and * routes, priorities, backtracking, 404/405, HEAD falling back to
 * GET, malformed patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "crest.h"
#include "http/router.h"

/* Handlers are told apart by their data pointer; they are never called here. */
static int h(crest_req_t *req, void *data) {
    (void)req;
    (void)data;
    return 0;
}

static const char *const tags[] = {"root",  "users",  "user",      "user_new", "user_posts",
                                   "files", "file_x", "post_user", "api_v",    "deep"};

static crest__router_t *build(void) {
    crest__router_t *r = crest__router_new();
    assert_non_null(r);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/", h, (void *)tags[0]), 0);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/users", h, (void *)tags[1]), 0);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/users/:id", h, (void *)tags[2]), 0);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/users/new", h, (void *)tags[3]), 0);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/users/:id/posts", h, (void *)tags[4]),
                     0);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/files/*", h, (void *)tags[5]), 0);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/files/x", h, (void *)tags[6]), 0);
    assert_int_equal(crest__router_add(r, CREST_METHOD_POST, "/users/:id", h, (void *)tags[7]), 0);
    assert_int_equal(
        crest__router_add(r, CREST_METHOD_GET, "/api/v1/:a/:b/c/*", h, (void *)tags[8]), 0);
    assert_int_equal(crest__router_add(r, CREST_METHOD_DELETE, "/a/b/c/d/e", h, (void *)tags[9]),
                     0);
    return r;
}

static void expect(const crest__router_t *r, int method, const char *path, int status,
                   const char *tag, const char *p1, const char *v1) {
    crest__match_t m;
    int got = crest__router_match(r, method, path, strlen(path), 0, &m);
    if (got != status)
        fail_msg("%s: status %d, want %d", path, got, status);
    if (status != 200)
        return;
    assert_string_equal(m.route->data, tag);
    if (p1 == NULL) {
        assert_int_equal(m.nparams, 0);
        return;
    }
    int seen = 0;
    for (size_t i = 0; i < m.nparams; i++) {
        if (m.names[i].len == strlen(p1) && memcmp(m.names[i].ptr, p1, m.names[i].len) == 0) {
            if (m.values[i].len != strlen(v1) || memcmp(m.values[i].ptr, v1, m.values[i].len))
                fail_msg("%s: param %s = '%.*s', want '%s'", path, p1, (int)m.values[i].len,
                         m.values[i].ptr, v1);
            seen = 1;
        }
    }
    if (!seen)
        fail_msg("%s: no param %s", path, p1);
}

static void test_static_and_params(void **state) {
    (void)state;
    crest__router_t *r = build();
    expect(r, CREST_METHOD_GET, "/", 200, "root", NULL, NULL);
    expect(r, CREST_METHOD_GET, "/users", 200, "users", NULL, NULL);
    expect(r, CREST_METHOD_GET, "/users/new", 200, "user_new", NULL, NULL);
    expect(r, CREST_METHOD_GET, "/users/42", 200, "user", "id", "42");
    /* "newbie" shares the static prefix "new" and must backtrack to the parameter. */
    expect(r, CREST_METHOD_GET, "/users/newbie", 200, "user", "id", "newbie");
    expect(r, CREST_METHOD_GET, "/users/7/posts", 200, "user_posts", "id", "7");
    expect(r, CREST_METHOD_GET, "/users/", 404, NULL, NULL, NULL); /* empty segment */
    expect(r, CREST_METHOD_GET, "/users/7/", 404, NULL, NULL, NULL);
    expect(r, CREST_METHOD_GET, "/user", 404, NULL, NULL, NULL);
    expect(r, CREST_METHOD_GET, "/usersx", 404, NULL, NULL, NULL);
    expect(r, CREST_METHOD_GET, "/api/v1/p/q/c/rest/of/it", 200, "api_v", "b", "q");
    expect(r, CREST_METHOD_GET, "/api/v1/p/q/c/rest/of/it", 200, "api_v", "*", "rest/of/it");
    expect(r, CREST_METHOD_GET, "/api/v1/p/q/d/rest", 404, NULL, NULL, NULL);
    crest__router_free(r);
}

static void test_wildcard(void **state) {
    (void)state;
    crest__router_t *r = build();
    expect(r, CREST_METHOD_GET, "/files/", 200, "files", "*", "");
    expect(r, CREST_METHOD_GET, "/files/a/b.txt", 200, "files", "*", "a/b.txt");
    expect(r, CREST_METHOD_GET, "/files/x", 200, "file_x", NULL, NULL); /* static wins */
    expect(r, CREST_METHOD_GET, "/files/xy", 200, "files", "*", "xy");
    expect(r, CREST_METHOD_GET, "/files", 404, NULL, NULL, NULL);
    crest__router_free(r);
}

static void test_methods(void **state) {
    (void)state;
    crest__router_t *r = build();
    expect(r, CREST_METHOD_POST, "/users/9", 200, "post_user", "id", "9");
    expect(r, CREST_METHOD_HEAD, "/users/9", 200, "user", "id", "9"); /* HEAD -> GET */
    crest__match_t m;
    assert_int_equal(crest__router_match(r, CREST_METHOD_PUT, "/users/9", 8, 0, &m), 405);
    char allow[64];
    crest__router_allow(m.allowed, allow, sizeof(allow));
    assert_string_equal(allow, "GET, HEAD, POST");
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/a/b/c/d/e", 10, 0, &m), 405);
    crest__router_allow(m.allowed, allow, sizeof(allow));
    assert_string_equal(allow, "DELETE");
    assert_int_equal(crest__router_match(r, CREST_METHOD_OTHER, "/users", 6, 0, &m), 405);
    crest__router_free(r);
}

/* A path's first matching node that lacks the method does not hide a later one that has it;
 * the 405's Allow is every matching route's methods. */
static void test_method_aware(void **state) {
    (void)state;
    crest__router_t *r = build();
    /* GET /users/new is static, POST /users/:id a parameter: POST /users/new is the latter's. */
    expect(r, CREST_METHOD_POST, "/users/new", 200, "post_user", "id", "new");
    assert_int_equal(crest__router_add(r, CREST_METHOD_PUT, "/files/*", h, (void *)"put_files"), 0);
    expect(r, CREST_METHOD_PUT, "/files/x", 200, "put_files", "*", "x");
    crest__match_t m;
    assert_int_equal(crest__router_match(r, CREST_METHOD_PATCH, "/files/x", 8, 0, &m), 405);
    char allow[64];
    crest__router_allow(m.allowed, allow, sizeof(allow));
    assert_string_equal(allow, "GET, HEAD, PUT");
    crest__router_free(r);
}

/* skip: the routes that passed a request on (CREST_NEXT) are skipped, in matching order. */
static void test_skip(void **state) {
    (void)state;
    crest__router_t *r = build();
    crest__match_t m;
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/users/new", 10, 0, &m), 200);
    assert_string_equal(m.route->data, "user_new");
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/users/new", 10, 1, &m), 200);
    assert_string_equal(m.route->data, "user");
    assert_int_equal(m.nparams, 1);
    assert_int_equal(m.values[0].len, 3);
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/users/new", 10, 2, &m), 404);
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/files/x", 8, 1, &m), 200);
    assert_string_equal(m.route->data, "files");
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/files/x", 8, 2, &m), 404);
    /* a parameter taken in a branch that failed is not left behind */
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/users/7/posts", 14, 1, &m), 404);
    assert_int_equal(m.nparams, 0);
    crest__router_free(r);
}

static void test_bad_patterns(void **state) {
    (void)state;
    crest__router_t *r = build();
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/users", h, NULL), CREST_EEXIST);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "users", h, NULL), CREST_EINVAL);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/a/*/b", h, NULL), CREST_EINVAL);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/a/*x", h, NULL), CREST_EINVAL);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/a/:", h, NULL), CREST_EINVAL);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/a/:x:y", h, NULL), CREST_EINVAL);
    /* another name at a position that already has a parameter */
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/users/:uid/x", h, NULL),
                     CREST_EINVAL);
    assert_int_equal(crest__router_add(r, CREST_METHOD_OTHER, "/z", h, NULL), CREST_EINVAL);
    assert_int_equal(crest__router_add(r, CREST_METHOD_GET, "/z", NULL, NULL), CREST_EINVAL);
    /* the tree is unchanged by the failures */
    expect(r, CREST_METHOD_GET, "/users/42", 200, "user", "id", "42");
    crest__router_free(r);
}

static void test_many_routes(void **state) {
    (void)state;
    crest__router_t *r = crest__router_new();
    char path[64];
    static int ids[500];
    for (int i = 0; i < 500; i++) {
        ids[i] = i;
        snprintf(path, sizeof(path), "/r%d/item%d", i % 37, i);
        assert_int_equal(crest__router_add(r, CREST_METHOD_GET, path, h, &ids[i]), 0);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(path, sizeof(path), "/r%d/item%d", i % 37, i);
        crest__match_t m;
        assert_int_equal(crest__router_match(r, CREST_METHOD_GET, path, strlen(path), 0, &m), 200);
        assert_ptr_equal(m.route->data, &ids[i]);
    }
    crest__router_free(r);
}

/* Each route has a slot (1, 2, ... in the order added) that survives the splits of later routes,
 * and a match hands it back: per-route metrics index by it instead of hashing the template. */
static void test_slots(void **state) {
    (void)state;
    crest__router_t *r = build();
    size_t n = crest__router_routes(r);
    assert_int_equal(n, 10);
    assert_null(crest__router_slot(r, 0));
    assert_null(crest__router_slot(r, (uint32_t)n + 1));
    assert_string_equal(crest__router_slot(r, 1), "/");
    assert_string_equal(crest__router_slot(r, 3), "/users/:id");
    assert_string_equal(crest__router_slot(r, 8), "/users/:id");
    crest__match_t m;
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/users/7", 8, 0, &m), 200);
    assert_int_equal(m.route->slot, 3);
    assert_int_equal(crest__router_match(r, CREST_METHOD_POST, "/users/7", 8, 0, &m), 200);
    assert_int_equal(m.route->slot, 8);
    assert_int_equal(crest__router_match(r, CREST_METHOD_GET, "/users/new", 10, 0, &m), 200);
    assert_int_equal(m.route->slot, 4);
    crest__router_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_and_params), cmocka_unit_test(test_wildcard),
        cmocka_unit_test(test_methods),           cmocka_unit_test(test_bad_patterns),
        cmocka_unit_test(test_method_aware),      cmocka_unit_test(test_skip),
        cmocka_unit_test(test_many_routes),       cmocka_unit_test(test_slots),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
