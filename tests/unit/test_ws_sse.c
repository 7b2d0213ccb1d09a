/* Unit tests for the Server-Sent Events encoder (src/codec/sse_event.c): field lines, data split at
 * every kind of line end, and refused field values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec/sse_event.h"
#include "crest/errno.h"

static void expect(const char *event, const char *id, const char *data, size_t len,
                   const char *want) {
    crest_buf_t b = CREST_BUF_INIT;
    assert_int_equal(crest__sse_encode(&b, event, id, data, len), 0);
    if (b.len != strlen(want) || memcmp(b.ptr, want, b.len) != 0)
        fail_msg("want '%s' got '%.*s'", want, (int)b.len, b.ptr);
    crest_buf_free(&b);
}

static void test_fields(void **state) {
    (void)state;
    expect("message", "7", "{\"a\":1}", 7, "event: message\nid: 7\ndata: {\"a\":1}\n\n");
    expect(NULL, NULL, "x", 1, "data: x\n\n");
    expect("", NULL, "x", 1, "data: x\n\n");
    expect(NULL, "", "x", 1, "id: \ndata: x\n\n");
    expect(NULL, NULL, "", 0, "data: \n\n");
}

static void test_line_ends(void **state) {
    (void)state;
    expect(NULL, NULL, "a\nb", 3, "data: a\ndata: b\n\n");
    expect(NULL, NULL, "a\r\nb", 4, "data: a\ndata: b\n\n");
    expect(NULL, NULL, "a\rb", 3, "data: a\ndata: b\n\n");
    expect(NULL, NULL, "a\n\nb", 4, "data: a\ndata: \ndata: b\n\n");
    expect(NULL, NULL, "a\r\r\nb", 5, "data: a\ndata: \ndata: b\n\n");
    expect(NULL, NULL, "a\n", 2, "data: a\n\n");
}

static void test_refused(void **state) {
    (void)state;
    crest_buf_t b = CREST_BUF_INIT;
    assert_int_equal(crest__sse_encode(&b, "a\nb", NULL, "x", 1), CREST_EINVAL);
    assert_int_equal(crest__sse_encode(&b, NULL, "1\r", "x", 1), CREST_EINVAL);
    assert_int_equal(b.len, 0);
    crest_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests_name("sse_encode", tests, NULL, NULL);
}
