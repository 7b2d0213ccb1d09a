/* Unit tests for the JSON string writer (crest_buf_json_str, src/core/buf.c) and the public UTF-8
 * check (crest_utf8_feed). The writer must escape what JSON requires, pass valid UTF-8 through
 * unchanged and replace every ill-formed subpart with one U+FFFD, so that its output is valid
 * UTF-8 and valid JSON whatever the input. Each input sits in a heap block of exactly its size so
 * that AddressSanitizer catches a read past it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <cmocka.h>

#include "crest.h"

#define FFFD "\xef\xbf\xbd"

/* The writer's output for s[0..len), NUL-terminated, in a fresh heap string. */
static char *json_of(const char *s, size_t len, size_t *out_len) {
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, s, len);
    crest_buf_t b = CREST_BUF_INIT;
    assert_int_equal(crest_buf_json_str(&b, copy, len), 0);
    free(copy);
    assert_int_equal(crest_buf_append(&b, "", 1), 0);
    *out_len = b.len - 1;
    return b.ptr;
}

static void expect_json(const char *name, const char *in, size_t len, const char *want) {
    size_t n;
    char *got = json_of(in, len, &n);
    if (n != strlen(want) || memcmp(got, want, n) != 0)
        fail_msg("%s: want %s got %s", name, want, got);
    free(got);
}

typedef struct {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen */
    const char *want;
} json_case_t;

static const json_case_t cases[] = {
    {"empty", "", 0, "\"\""},
    {"ascii", "Hello, World!", 0, "\"Hello, World!\""},
    {"quote and backslash", "a\"b\\c", 0, "\"a\\\"b\\\\c\""},
    {"named controls", "\n\r\t", 0, "\"\\n\\r\\t\""},
    {"nul", "a\0b", 3, "\"a\\u0000b\""},
    {"other controls", "\x01\x1f\x08\x0c", 0, "\"\\u0001\\u001f\\u0008\\u000c\""},
    {"DEL passes", "\x7f", 0, "\"\x7f\""},
    {"slash passes", "a/b", 0, "\"a/b\""},
    {"two-byte", "caf\xc3\xa9", 0, "\"caf\xc3\xa9\""},
    {"three-byte", "\xe2\x82\xac", 0, "\"\xe2\x82\xac\""},
    {"four-byte", "\xf0\x9f\x98\x80", 0, "\"\xf0\x9f\x98\x80\""},
    {"U+10FFFF", "\xf4\x8f\xbf\xbf", 0, "\"\xf4\x8f\xbf\xbf\""},
    {"U+FFFD itself", FFFD, 0, "\"" FFFD "\""},
    {"lone continuation", "\x80", 0, "\"" FFFD "\""},
    {"continuations",
     "a\x80\xbf"
     "b",
     0, "\"a" FFFD FFFD "b\""},
    {"FF FE", "\xff\xfe", 0, "\"" FFFD FFFD "\""},
    {"overlong C0 80 (NUL)", "\xc0\x80", 0, "\"" FFFD FFFD "\""},
    {"overlong C1 BF", "\xc1\xbf", 0, "\"" FFFD FFFD "\""},
    {"overlong E0 80 AF", "\xe0\x80\xaf", 0, "\"" FFFD FFFD FFFD "\""},
    {"overlong F0 8F BF BF", "\xf0\x8f\xbf\xbf", 0, "\"" FFFD FFFD FFFD FFFD "\""},
    {"surrogate ED A0 80", "\xed\xa0\x80", 0, "\"" FFFD FFFD FFFD "\""},
    {"surrogate ED BF BF", "\xed\xbf\xbf", 0, "\"" FFFD FFFD FFFD "\""},
    {"surrogate pair as CESU-8", "\xed\xa0\xbd\xed\xb8\x80", 0,
     "\"" FFFD FFFD FFFD FFFD FFFD FFFD "\""},
    {"above U+10FFFF (F4 90)", "\xf4\x90\x80\x80", 0, "\"" FFFD FFFD FFFD FFFD "\""},
    {"F5 lead", "\xf5\x80\x80\x80", 0, "\"" FFFD FFFD FFFD FFFD "\""},
    {"F8 five-byte form", "\xf8\x88\x80\x80\x80", 0, "\"" FFFD FFFD FFFD FFFD FFFD "\""},
    {"truncated two-byte at end", "a\xc3", 0, "\"a" FFFD "\""},
    {"truncated three-byte at end", "\xe2\x82", 0, "\"" FFFD "\""},
    {"truncated four-byte at end", "\xf0\x9f\x98", 0, "\"" FFFD "\""},
    {"truncated then ascii",
     "\xe2\x82"
     "a",
     0, "\"" FFFD "a\""},
    {"truncated then quote", "\xe2\x82\"", 0, "\"" FFFD "\\\"\""},
    {"truncated then control", "\xf0\x9f\n", 0, "\"" FFFD "\\n\""},
    {"truncated then a whole character", "\xf0\x9f\x98\xf0\x9f\x98\x80", 0,
     "\"" FFFD "\xf0\x9f\x98\x80\""},
    {"lead then lead", "\xc3\xc3\xa9", 0, "\"" FFFD "\xc3\xa9\""},
    {"mixed", "caf\xc3\xa9\xff\"\x01", 0, "\"caf\xc3\xa9" FFFD "\\\"\\u0001\""},
};

static void test_cases(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const json_case_t *c = &cases[i];
        expect_json(c->name, c->in, c->len ? c->len : strlen(c->in), c->want);
    }
}

static size_t encode(uint32_t cp, char *b) {
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (char)(0xF0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Every code point from U+0080 up, encoded by the book, passes unchanged; a surrogate encoded the
 * same way (which UTF-8 forbids) becomes three U+FFFD. */
static void test_all_code_points(void **state) {
    (void)state;
    crest_buf_t b = CREST_BUF_INIT;
    for (uint32_t cp = 0x80; cp <= 0x10FFFF; cp++) {
        char in[4];
        size_t n = encode(cp, in);
        b.len = 0;
        assert_int_equal(crest_buf_json_str(&b, in, n), 0);
        int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (surrogate) {
            if (b.len != 11 || memcmp(b.ptr, "\"" FFFD FFFD FFFD "\"", 11) != 0)
                fail_msg("surrogate U+%04X not replaced", (unsigned)cp);
        } else if (b.len != n + 2 || memcmp(b.ptr + 1, in, n) != 0) {
            fail_msg("U+%04X changed", (unsigned)cp);
        }
    }
    crest_buf_free(&b);
}

/* Strings longer than the writer's 4 KiB block: a character across the block boundary is kept
 * whole, one cut short there is replaced once, and a string of control characters grows 6x. */
static void test_block_boundaries(void **state) {
    (void)state;
    for (size_t at = 4090; at <= 4100; at++) {
        char *in = malloc(at + 8);
        assert_non_null(in);
        memset(in, 'a', at);
        memcpy(in + at, "\xf0\x9f\x98\x80z", 5);
        size_t n;
        char *out = json_of(in, at + 5, &n);
        assert_int_equal(n, at + 7);
        assert_memory_equal(out + 1 + at, "\xf0\x9f\x98\x80z\"", 6);
        free(out);
        /* The same character without its last byte, then an ASCII byte. */
        memcpy(in + at, "\xf0\x9f\x98z", 4);
        out = json_of(in, at + 4, &n);
        assert_int_equal(n, at + 6);
        assert_memory_equal(out + 1 + at, FFFD "z\"", 5);
        free(out);
        free(in);
    }
    size_t big = 3 * 4096 + 17;
    char *ctl = malloc(big);
    assert_non_null(ctl);
    memset(ctl, 0x01, big);
    size_t n;
    char *out = json_of(ctl, big, &n);
    assert_int_equal(n, 6 * big + 2);
    for (size_t i = 0; i < big; i++)
        assert_memory_equal(out + 1 + 6 * i, "\\u0001", 6);
    free(out);
    free(ctl);
}

/* A buffer that starts on the stack moves to the heap when the string outgrows it, keeping what
 * came before. */
static void test_stack_buffer(void **state) {
    (void)state;
    char mem[16];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "{\"k\":");
    const char *s = "\xff long enough to spill over";
    assert_int_equal(crest_buf_json_str(&b, s, strlen(s)), 0);
    crest_buf_puts(&b, "}");
    assert_int_equal(b.fixed_mem, 0);
    assert_int_equal(b.len, strlen("{\"k\":\"" FFFD " long enough to spill over\"}"));
    assert_memory_equal(b.ptr, "{\"k\":\"" FFFD " long enough to spill over\"}", b.len);
    crest_buf_free(&b);
}

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* Random bytes (biased towards UTF-8 lead and continuation bytes): the output is always valid
 * UTF-8 and a JSON string cJSON accepts; when the input was valid UTF-8 without NUL, cJSON reads
 * back exactly the input. */
static void test_random(void **state) {
    (void)state;
    static const uint8_t pick[] = {0x00, 0x01, 0x1f, 0x20, '"',  '\\', 'a',  0x7f,
                                   0x80, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed, 0xef,
                                   0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90};
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = next_rand() % (iter % 100 == 0 ? 9000 : 24);
        char *in = malloc(len ? len : 1);
        assert_non_null(in);
        for (size_t i = 0; i < len; i++) {
            uint32_t r = next_rand();
            in[i] = (char)((r & 1) ? pick[(r >> 1) % sizeof(pick)] : (uint8_t)(r >> 8));
        }
        size_t n;
        char *out = json_of(in, len, &n);
        if (crest_utf8_feed(CREST_UTF8_ACCEPT, out, n) != CREST_UTF8_ACCEPT)
            fail_msg("iteration %d: output is not UTF-8", iter);
        cJSON *v = cJSON_ParseWithLength(out, n);
        if (!cJSON_IsString(v))
            fail_msg("iteration %d: cJSON rejects %s", iter, out);
        if (crest_utf8_feed(CREST_UTF8_ACCEPT, in, len) == CREST_UTF8_ACCEPT &&
            memchr(in, 0, len) == NULL) {
            assert_int_equal(strlen(v->valuestring), len);
            assert_memory_equal(v->valuestring, in, len);
        }
        cJSON_Delete(v);
        free(out);
        free(in);
    }
}

/* The public check is the core validator: a few verdicts, and the state carried across pieces. */
static void test_utf8_feed(void **state) {
    (void)state;
    assert_int_equal(crest_utf8_feed(CREST_UTF8_ACCEPT, "caf\xc3\xa9", 5), CREST_UTF8_ACCEPT);
    assert_int_equal(crest_utf8_feed(CREST_UTF8_ACCEPT, "\xc0\x80", 2), CREST_UTF8_REJECT);
    assert_int_equal(crest_utf8_feed(CREST_UTF8_ACCEPT, "\xed\xa0\x80", 3), CREST_UTF8_REJECT);
    assert_int_equal(crest_utf8_feed(CREST_UTF8_ACCEPT, "\xf4\x90\x80\x80", 4), CREST_UTF8_REJECT);
    uint32_t st = crest_utf8_feed(CREST_UTF8_ACCEPT, "\xe2\x82", 2);
    assert_true(st != CREST_UTF8_ACCEPT && st != CREST_UTF8_REJECT);
    assert_int_equal(crest_utf8_feed(st, "\xac", 1), CREST_UTF8_ACCEPT);
    assert_int_equal(crest_utf8_feed(CREST_UTF8_REJECT, "a", 1), CREST_UTF8_REJECT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_all_code_points),
        cmocka_unit_test(test_block_boundaries),
        cmocka_unit_test(test_stack_buffer),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_utf8_feed),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
