/* crest_strerror: 0 is success, crest's own codes get their messages, libuv's codes get libuv's,
 * anything else one static "unknown error" (nothing allocated, nothing NULL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "crest/errno.h"

static void test_zero_is_success(void **state) {
    (void)state;
    assert_string_equal(crest_strerror(0), "success");
}

static void test_own_codes(void **state) {
    (void)state;
#define CHECK_CODE(name, msg) assert_string_equal(crest_strerror(CREST_##name), msg);
    CREST_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
    /* The codes are libuv's: an error from libuv reads the same through crest. */
    assert_int_equal(CREST_ENOMEM, UV_ENOMEM);
    assert_int_equal(CREST_ECONNRESET, UV_ECONNRESET);
}

static void test_libuv_and_unknown(void **state) {
    (void)state;
    assert_string_equal(crest_strerror(UV_EOF), uv_strerror(UV_EOF));
    assert_string_equal(crest_strerror(UV_EPROTO), uv_strerror(UV_EPROTO));
    /* A code libuv does not know: a static string (uv_strerror would malloc one per call, which
     * AddressSanitizer reports as leaked after the loop below). */
    assert_string_equal(crest_strerror(-123456), "unknown error");
    assert_string_equal(crest_strerror(7), "unknown error");
    for (int e = -5000; e <= 5; e++) {
        const char *s = crest_strerror(e);
        assert_non_null(s);
        assert_true(s[0] != '\0');
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_is_success),
        cmocka_unit_test(test_own_codes),
        cmocka_unit_test(test_libuv_and_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
