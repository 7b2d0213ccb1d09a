/* Unit tests for the JSON pre-check (src/codec/jsonscan.c, a pure codec of the library). Each input
 * is scanned whole, one byte at a time (each byte in its own heap block so that AddressSanitizer
 * catches a read past it) and split in two at every offset: the verdict and the field named must be
 * the same every way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/jsonscan.h"

typedef struct {
    const char *name;
    const char *text;
    size_t len; /* 0: strlen */
    int want;
    const char *field; /* for CREST__JSONSCAN_NUL */
} scan_case_t;

#define LONG_KEY "k123456789k123456789k123456789k123456789k123456789k123456789k123456789"

static const scan_case_t cases[] = {
    /* Accepted: what cJSON then parses, or rejects by grammar. */
    {"todo", "{\"title\":\"a\",\"done\":false}", 0, CREST__JSONSCAN_OK, NULL},
    {"escapes", "{\"title\":\"caf\\u00e9 \\\"x\\\" \\\\ \\n\",\"done\":true}", 0,
     CREST__JSONSCAN_OK, NULL},
    {"escaped backslash then u0000 text", "{\"title\":\"\\\\u0000\"}", 0, CREST__JSONSCAN_OK, NULL},
    {"escaped control is fine", "{\"title\":\"\\u0001\\u001f\\t\"}", 0, CREST__JSONSCAN_OK, NULL},
    {"surrogate pair escape", "{\"t\":\"\\ud83d\\ude00\"}", 0, CREST__JSONSCAN_OK, NULL},
    {"upper-case hex", "{\"t\":\"\\u00E9\\u00e9\"}", 0, CREST__JSONSCAN_OK, NULL},
    {"u0100 is not NUL", "{\"t\":\"\\u0100\\u1000\\u0010\"}", 0, CREST__JSONSCAN_OK, NULL},
    {"UTF-8 text", "{\"t\":\"\xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9\"}", 0, CREST__JSONSCAN_OK,
     NULL},
    {"JSON whitespace", " \t\r\n{ \"a\" :\n1 }\r\n", 0, CREST__JSONSCAN_OK, NULL},
    {"DEL is not a control character for JSON", "{\"t\":\"\x7f\"}", 0, CREST__JSONSCAN_OK, NULL},
    {"bad escape left to cJSON", "{\"t\":\"\\U0000\\x\"}", 0, CREST__JSONSCAN_OK, NULL},
    {"short hex escape left to cJSON", "{\"t\":\"\\u000\"}", 0, CREST__JSONSCAN_OK, NULL},
    {"empty", "", 0, CREST__JSONSCAN_OK, NULL},
    {"UTF-8 outside strings left to cJSON", "{\xc3\xa9:1}", 0, CREST__JSONSCAN_OK, NULL},
    /* U+0000 in a string: 422 naming the top-level member. */
    {"title with u0000", "{\"title\":\"abc\\u0000def\",\"done\":false}", 0, CREST__JSONSCAN_NUL,
     "title"},
    {"title only u0000", "{\"title\":\"\\u0000\"}", 0, CREST__JSONSCAN_NUL, "title"},
    {"after a bad escape", "{\"done\":true,\"title\":\"\\U0000\\u0000\"}", 0, CREST__JSONSCAN_NUL,
     "title"},
    {"other member", "{\"title\":\"x\",\"done\":false,\"extra\":\"\\u0000\"}", 0,
     CREST__JSONSCAN_NUL, "extra"},
    {"nested value", "{\"a\":{\"b\":\"x\"},\"c\":[1,\"\\u0000\"]}", 0, CREST__JSONSCAN_NUL, "c"},
    {"nested member name", "{\"a\":[{\"ti\\u0000tle\":1}]}", 0, CREST__JSONSCAN_NUL, "a"},
    {"in the member name", "{\"ti\\u0000tle\":\"x\"}", 0, CREST__JSONSCAN_NUL, "ti\\u0000tle"},
    {"name with an escaped quote", "{\"a\\\"b\":\"\\u0000\"}", 0, CREST__JSONSCAN_NUL, "a\\\"b"},
    {"long name is cut", "{\"" LONG_KEY "\":\"\\u0000\"}", 0, CREST__JSONSCAN_NUL,
     "k123456789k123456789k123456789k123456789k123456789k123456789k123"},
    {"not an object", "[\"\\u0000\"]", 0, CREST__JSONSCAN_NUL, ""},
    {"a bare string", "\"\\u0000\"", 0, CREST__JSONSCAN_NUL, ""},
    {"first NUL names the field", "{\"a\":\"\\u0000\",\"b\":\"\\u0000\"}", 0, CREST__JSONSCAN_NUL,
     "a"},
    /* Raw control characters: 400. */
    {"raw 0x01 in a string",
     "{\"title\":\"a\x01"
     "b\"}",
     0, CREST__JSONSCAN_CONTROL, NULL},
    {"raw LF in a string", "{\"title\":\"a\nb\"}", 0, CREST__JSONSCAN_CONTROL, NULL},
    {"raw tab in a string", "{\"title\":\"a\tb\"}", 0, CREST__JSONSCAN_CONTROL, NULL},
    {"raw NUL in a string", "{\"title\":\"a\0b\"}", 15, CREST__JSONSCAN_CONTROL, NULL},
    {"raw control after a backslash", "{\"title\":\"\\\x01\"}", 0, CREST__JSONSCAN_CONTROL, NULL},
    {"raw control in a name", "{\"ti\x1ftle\":\"x\"}", 0, CREST__JSONSCAN_CONTROL, NULL},
    {"control outside strings", "{\x01\"title\":\"a\"}", 0, CREST__JSONSCAN_CONTROL, NULL},
    {"form feed is not JSON whitespace", "\x0c{}", 0, CREST__JSONSCAN_CONTROL, NULL},
    {"NUL after the value", "{}\0", 3, CREST__JSONSCAN_CONTROL, NULL},
    /* Not UTF-8: 400. */
    {"FF in a string", "{\"title\":\"\xff\"}", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    {"overlong NUL", "{\"title\":\"a\xc0\x80z\"}", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    {"overlong slash", "{\"t\":\"\xe0\x80\xaf\"}", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    {"surrogate", "{\"t\":\"\xed\xa0\x80\"}", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    {"above U+10FFFF", "{\"t\":\"\xf4\x90\x80\x80\"}", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    {"truncated before the quote", "{\"t\":\"\xe2\x82\"}", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    {"truncated at the end", "{\"t\":\"a\"}\xc3", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    {"in a name", "{\"\xfe\":1}", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    {"outside strings", "{}\x80", 0, CREST__JSONSCAN_BAD_UTF8, NULL},
    /* Numbers outside RFC 8259's grammar that cJSON's strtod would take: 400. */
    {"numbers in the grammar", "[0,-0,1,-12,0.5,-0.25e-3,1E5,1e+2,10.01E-0]", 0, CREST__JSONSCAN_OK,
     NULL},
    {"number then letters left to cJSON", "[1true]", 0, CREST__JSONSCAN_OK, NULL},
    {"leading zero", "{\"a\":01}", 0, CREST__JSONSCAN_NUMBER, NULL},
    {"negative leading zero", "[-01]", 0, CREST__JSONSCAN_NUMBER, NULL},
    {"point without digits", "[1.]", 0, CREST__JSONSCAN_NUMBER, NULL},
    {"point then exponent", "[1.e5]", 0, CREST__JSONSCAN_NUMBER, NULL},
    {"exponent without digits", "[1e]", 0, CREST__JSONSCAN_NUMBER, NULL},
    {"bare minus at the end", "-", 0, CREST__JSONSCAN_NUMBER, NULL},
    {"point at the end", "1.", 0, CREST__JSONSCAN_NUMBER, NULL},
    {"two signs", "[1e+-2]", 0, CREST__JSONSCAN_NUMBER, NULL},
    {"digits in strings are text", "{\"01\":\"1.\"}", 0, CREST__JSONSCAN_OK, NULL},
    /* Which verdict wins. */
    {"400 beats an earlier NUL", "{\"title\":\"\\u0000\",\"x\":\"\xff\"}", 0,
     CREST__JSONSCAN_BAD_UTF8, NULL},
    {"400 beats a later NUL", "{\"a\":\"\x01\",\"b\":\"\\u0000\"}", 0, CREST__JSONSCAN_CONTROL,
     NULL},
    {"not UTF-8 outranks a control character", "{\"a\":\"\xff\x01\"}", 0, CREST__JSONSCAN_BAD_UTF8,
     NULL},
    {"not UTF-8 outranks an earlier control character", "{\"a\":\"\x01\xff\"}", 0,
     CREST__JSONSCAN_BAD_UTF8, NULL},
};

static void check(const scan_case_t *c, const char *how, const crest__jsonscan_t *s, int verdict) {
    if (verdict != c->want)
        fail_msg("%s: %s: want verdict %d, got %d", c->name, how, c->want, verdict);
    if (c->want == CREST__JSONSCAN_NUL && strcmp(s->field, c->field) != 0)
        fail_msg("%s: %s: want field '%s', got '%s'", c->name, how, c->field, s->field);
}

static void feed_copy(crest__jsonscan_t *s, const char *p, size_t n) {
    char *b = malloc(n ? n : 1);
    assert_non_null(b);
    memcpy(b, p, n);
    crest__jsonscan_feed(s, b, n);
    free(b);
}

static void test_cases(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const scan_case_t *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->text);
        crest__jsonscan_t s;
        crest__jsonscan_init(&s);
        feed_copy(&s, c->text, len);
        check(c, "whole", &s, crest__jsonscan_end(&s));
        crest__jsonscan_init(&s);
        for (size_t j = 0; j < len; j++)
            feed_copy(&s, c->text + j, 1);
        check(c, "byte by byte", &s, crest__jsonscan_end(&s));
        for (size_t k = 0; k <= len; k++) {
            crest__jsonscan_init(&s);
            feed_copy(&s, c->text, k);
            feed_copy(&s, c->text + k, len - k);
            char how[32];
            snprintf(how, sizeof(how), "split at %zu", k);
            check(c, how, &s, crest__jsonscan_end(&s));
        }
    }
}

/* The one-call form agrees, and a long string body is scanned in one sweep. */
static void test_whole_call(void **state) {
    (void)state;
    crest__jsonscan_t s;
    assert_int_equal(crest__jsonscan(&s, "{\"title\":\"\\u0000\"}", 18), CREST__JSONSCAN_NUL);
    assert_string_equal(s.field, "title");
    size_t n = 1 << 20;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, 'x', n);
    memcpy(big, "{\"title\":\"", 10);
    memcpy(big + n - 15, "\",\"done\":true}", 15);
    assert_int_equal(crest__jsonscan(&s, big, n - 1), CREST__JSONSCAN_OK);
    big[n / 2] = '\x1f';
    assert_int_equal(crest__jsonscan(&s, big, n - 1), CREST__JSONSCAN_CONTROL);
    free(big);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_whole_call),
    };
    return cmocka_run_group_tests_name("jsonscan", tests, NULL, NULL);
}
