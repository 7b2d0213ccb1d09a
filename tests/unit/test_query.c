/* crest_query_decode: %XX, '+', malformed escapes, truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crest.h"

static void expect(const char *in, size_t cap, const char *want) {
    char out[64];
    assert_true(cap <= sizeof(out));
    memset(out, 'Z', sizeof(out));
    size_t n = crest_query_decode((crest_str_t){in, strlen(in)}, out, cap);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n + 1); /* the NUL too */
}

static void test_decodes(void **state) {
    (void)state;
    expect("", 64, "");
    expect("plain", 64, "plain");
    expect("a+b", 64, "a b");
    expect("caf%C3%A9", 64, "caf\xc3\xa9");
    expect("%2b%2B%41", 64, "++A");
    expect("100%", 64, "100%");     /* '%' at the end stays */
    expect("%4", 64, "%4");         /* one digit only */
    expect("%zz%4g", 64, "%zz%4g"); /* not hex */
    expect("%%41", 64, "%A");       /* the first '%' has no digits after it */
}

static void test_truncates(void **state) {
    (void)state;
    expect("abcdef", 4, "abc");
    expect("%41%42%43", 3, "AB");
    expect("abc", 1, "");
}

static void test_null_value(void **state) {
    (void)state;
    char out[4] = "xyz";
    assert_int_equal(crest_query_decode((crest_str_t){NULL, 0}, out, sizeof(out)), 0);
    assert_int_equal(out[0], '\0');
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes),
        cmocka_unit_test(test_truncates),
        cmocka_unit_test(test_null_value),
    };
    return cmocka_run_group_tests_name("query", tests, NULL, NULL);
}
