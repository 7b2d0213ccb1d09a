/* Unit tests for the incremental UTF-8 validator (src/core/utf8.c). Each input is checked whole,
 * one byte at a time (the state carried between calls, each byte in its own heap block so that
 * AddressSanitizer catches a read past it) and split in two at every offset: the verdict must be
 * the same every way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/utf8.h"

enum { VALID, INVALID, INCOMPLETE };

typedef struct {
    const char *name;
    const char *bytes;
    size_t len; /* 0: strlen */
    int want;
} utf8_case_t;

static const utf8_case_t cases[] = {
    {"empty", "", 0, VALID},
    {"ascii", "Hello, World! 0123456789 long enough for the word path", 0, VALID},
    {"two-byte", "caf\xc3\xa9", 0, VALID},
    {"three-byte", "\xe2\x82\xac euro", 0, VALID},
    {"four-byte", "\xf0\x9f\x98\x80 smile", 0, VALID},
    {"max code point U+10FFFF", "\xf4\x8f\xbf\xbf", 0, VALID},
    {"U+FFFF (a noncharacter, still valid)", "\xef\xbf\xbf", 0, VALID},
    {"U+D7FF (below surrogates)", "\xed\x9f\xbf", 0, VALID},
    {"U+E000 (above surrogates)", "\xee\x80\x80", 0, VALID},
    {"mixed", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z0123456789abcdef", 0, VALID},
    {"nul is valid", "a\0b", 3, VALID},
    {"lone continuation", "\x80", 0, INVALID},
    {"continuation after ascii run", "abcdefghij\xbf", 0, INVALID},
    {"overlong C0", "\xc0\x80", 0, INVALID},
    {"overlong C1", "\xc1\xbf", 0, INVALID},
    {"overlong E0", "\xe0\x80\xaf", 0, INVALID},
    {"overlong F0", "\xf0\x8f\xbf\xbf", 0, INVALID},
    {"surrogate D800", "\xed\xa0\x80", 0, INVALID},
    {"surrogate DFFF", "\xed\xbf\xbf", 0, INVALID},
    {"above U+10FFFF", "\xf4\x90\x80\x80", 0, INVALID},
    {"F5 lead", "\xf5\x80\x80\x80", 0, INVALID},
    {"FF byte", "ab\xff", 0, INVALID},
    {"truncated then ascii",
     "\xe2\x82"
     "a",
     0, INVALID},
    {"Autobahn 6.3.1", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64", 0,
     INVALID},
    {"incomplete two-byte", "\xc3", 0, INCOMPLETE},
    {"incomplete four-byte", "ok\xf0\x9f\x98", 0, INCOMPLETE},
};

static int verdict(uint32_t st) {
    return st == CREST__UTF8_ACCEPT ? VALID : st == CREST__UTF8_REJECT ? INVALID : INCOMPLETE;
}

static uint32_t feed_copy(uint32_t st, const char *p, size_t n) {
    uint8_t *b = malloc(n ? n : 1);
    assert_non_null(b);
    memcpy(b, p, n);
    st = crest__utf8_feed(st, b, n);
    free(b);
    return st;
}

static void test_cases(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const utf8_case_t *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->bytes);
        /* Whole. */
        int got = verdict(feed_copy(CREST__UTF8_ACCEPT, c->bytes, len));
        if (got != c->want)
            fail_msg("%s: whole: want %d got %d", c->name, c->want, got);
        /* Byte by byte. */
        uint32_t st = CREST__UTF8_ACCEPT;
        for (size_t j = 0; j < len; j++)
            st = feed_copy(st, c->bytes + j, 1);
        if (verdict(st) != c->want)
            fail_msg("%s: bytewise: want %d got %d", c->name, c->want, verdict(st));
        /* Split at every offset. */
        for (size_t k = 0; k <= len; k++) {
            st = feed_copy(CREST__UTF8_ACCEPT, c->bytes, k);
            st = feed_copy(st, c->bytes + k, len - k);
            if (verdict(st) != c->want)
                fail_msg("%s: split at %zu: want %d got %d", c->name, k, c->want, verdict(st));
        }
    }
}

/* Every code point encoded by the book is accepted; surrogates are not. */
static void test_all_code_points(void **state) {
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t b[4];
        size_t n;
        if (cp < 0x80) {
            b[0] = (uint8_t)cp;
            n = 1;
        } else if (cp < 0x800) {
            b[0] = (uint8_t)(0xC0 | (cp >> 6));
            b[1] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (uint8_t)(0xE0 | (cp >> 12));
            b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            b[0] = (uint8_t)(0xF0 | (cp >> 18));
            b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            b[3] = (uint8_t)(0x80 | (cp & 0x3F));
            n = 4;
        }
        int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        uint32_t st = crest__utf8_feed(CREST__UTF8_ACCEPT, b, n);
        if (verdict(st) != (surrogate ? INVALID : VALID))
            fail_msg("U+%04X: verdict %d", (unsigned)cp, verdict(st));
    }
}

/* A rejected state stays rejected. */
static void test_sticky(void **state) {
    (void)state;
    uint32_t st = crest__utf8_feed(CREST__UTF8_ACCEPT, (const uint8_t *)"\xff", 1);
    assert_int_equal(st, CREST__UTF8_REJECT);
    assert_int_equal(crest__utf8_feed(st, (const uint8_t *)"abc", 3), CREST__UTF8_REJECT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_all_code_points),
        cmocka_unit_test(test_sticky),
    };
    return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
