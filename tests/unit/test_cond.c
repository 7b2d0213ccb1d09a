/* Unit tests for static file serving's pure rules (src/http/cond.c): path cleaning against every
 * traversal spelling, ETags and If-None-Match, HTTP-dates (checked against the C library's
 * calendar), Range, If-Range, Accept-Encoding and the media type table.
 *
 * None of these parsers is incremental (a header arrives whole), so "split at every offset" means:
 * every input is also given cut at every offset, its prefix and its suffix each in a heap block of
 * exactly that size, so that AddressSanitizer catches a read past the value, and whatever the
 * cut pieces give must still keep the function's promises (a clean path, a range within the
 * representation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/utf8.h"
#include "http/cond.h"

/* A copy of s[0..n) in a heap block of exactly n bytes (one byte when n is 0, never read). */
static char *dup_exact(const char *s, size_t n) {
    char *b = malloc(n ? n : 1);
    assert_non_null(b);
    if (n)
        memcpy(b, s, n);
    return b;
}

/* ---- paths ---- */

typedef struct {
    const char *in;
    size_t len;      /* 0: strlen(in) */
    const char *out; /* NULL: refused */
    int dir;
} path_case_t;

static const path_case_t paths[] = {
    /* traversal and hidden names, every spelling */
    {"..", 0, NULL, 0},
    {"../etc/passwd", 0, NULL, 0},
    {"a/../../etc/passwd", 0, NULL, 0},
    {"a/..", 0, NULL, 0},
    {"a/../", 0, NULL, 1},
    {"/..", 0, NULL, 0},
    {"%2e%2e", 0, NULL, 0},
    {"%2E%2e/x", 0, NULL, 0},
    {"%2e%2E/%2e%2e/etc/passwd", 0, NULL, 0},
    {".%2e", 0, NULL, 0},
    {"%2e.", 0, NULL, 0},
    {"..%2f", 0, NULL, 0},
    {"..%2fetc", 0, NULL, 0},
    {"%2f", 0, NULL, 0},
    {"%2F", 0, NULL, 0},
    {"a%2fb", 0, NULL, 0},
    {"a%2Fb", 0, NULL, 0},
    {"%2fetc%2fpasswd", 0, NULL, 0},
    {"%5c", 0, NULL, 0},
    {"%5C..%5C", 0, NULL, 0},
    {"a\\b", 0, NULL, 0},
    {"..\\windows", 0, NULL, 0},
    {"%00", 0, NULL, 0},
    {"a%00.html", 0, NULL, 0},
    {"a\0b", 3, NULL, 0},
    {"%c0%ae%c0%ae", 0, NULL, 0},
    {"%c0%ae%c0%ae/etc", 0, NULL, 0},
    {"%c0%ae", 0, NULL, 0},
    {"%e0%80%ae", 0, NULL, 0},
    {"%e0%80%ae%e0%80%ae/x", 0, NULL, 0},
    {"%c0%af", 0, NULL, 0},
    {"..%c0%af", 0, NULL, 0},
    {"%c1%9c", 0, NULL, 0},
    {"%f0%80%80%ae", 0, NULL, 0},
    {"/./", 0, NULL, 1},
    {".", 0, NULL, 0},
    {"./a", 0, NULL, 0},
    {"a/./b", 0, NULL, 0},
    {"a/.", 0, NULL, 0},
    {"%2e", 0, NULL, 0},
    {"a/%2e/b", 0, NULL, 0},
    {".env", 0, NULL, 0},
    {".git/config", 0, NULL, 0},
    {"a/.hidden", 0, NULL, 0},
    {"a/%2ehidden", 0, NULL, 0},
    {"...", 0, NULL, 0},
    {".well-known/x", 0, NULL, 0},
    /* bytes that are never in a file name we serve */
    {"a%0ab", 0, NULL, 0},
    {"a%0d%0aSet-Cookie:x", 0, NULL, 0},
    {"a\tb", 0, NULL, 0},
    {"a\x01", 0, NULL, 0},
    {"%1f", 0, NULL, 0},
    {"%7f", 0, NULL, 0},
    {"a\x7f", 0, NULL, 0},
    /* malformed escapes */
    {"%", 0, NULL, 0},
    {"a%", 0, NULL, 0},
    {"%4", 0, NULL, 0},
    {"a%4/", 0, NULL, 1},
    {"%zz", 0, NULL, 0},
    {"%g0", 0, NULL, 0},
    {"%0g", 0, NULL, 0},
    {"%%41", 0, NULL, 0},
    {"% 41", 0, NULL, 0},
    /* invalid UTF-8 after decoding */
    {"%ff", 0, NULL, 0},
    {"%80", 0, NULL, 0},
    {"\xff", 0, NULL, 0},
    {"%e2%82", 0, NULL, 0},
    {"%e2%82/%ac", 0, NULL, 0},
    {"%ed%a0%80", 0, NULL, 0},
    {"%f4%90%80%80", 0, NULL, 0},
    {"caf\xc3", 0, NULL, 0},
    /* good paths */
    {"", 0, "", 0},
    {"/", 0, "", 1},
    {"//", 0, "", 1},
    {"index.html", 0, "index.html", 0},
    {"/index.html", 0, "index.html", 0},
    {"css/site.css", 0, "css/site.css", 0},
    {"a/b/", 0, "a/b", 1},
    {"a//b", 0, "a/b", 0},
    {"//a///b//", 0, "a/b", 1},
    {"a%20b/", 0, "a b", 1},
    {"a b", 0, "a b", 0},
    {"a+b", 0, "a+b", 0},
    {"a%2bb", 0, "a+b", 0},
    {"%41%42c", 0, "ABc", 0},
    {"a%3fb", 0, "a?b", 0},
    {"a%25b", 0, "a%b", 0},
    {"%252e%252e", 0, "%2e%2e", 0}, /* decoded once: a file literally named "%2e%2e" */
    {"%252f", 0, "%2f", 0},
    {"caf%C3%A9.txt", 0, "caf\xc3\xa9.txt", 0},
    {"caf\xc3\xa9.txt", 0, "caf\xc3\xa9.txt", 0},
    {"%e6%97%a5%e6%9c%ac/%e8%aa%9e.txt", 0, "\xe6\x97\xa5\xe6\x9c\xac/\xe8\xaa\x9e.txt", 0},
    {"%F0%9F%98%80.png", 0, "\xf0\x9f\x98\x80.png", 0},
    {"a.", 0, "a.", 0},
    {"a..", 0, "a..", 0},
    {"a..b", 0, "a..b", 0},
    {"a./b.", 0, "a./b.", 0},
    {"x.tar.gz", 0, "x.tar.gz", 0},
    {"~user/", 0, "~user", 1},
    {"a-b_c~d!$&'()*,;=:@", 0, "a-b_c~d!$&'()*,;=:@", 0},
};

/* What every accepted output must be, whatever the input: relative, canonical, no segment that
 * starts with a dot (so no "." or ".." segment; "a..b" is a name like any other). */
static void check_clean(const char *out, int n) {
    assert_true(n >= 0);
    assert_int_equal(strlen(out), (size_t)n);
    assert_null(strstr(out, "/."));
    assert_null(strstr(out, "//"));
    assert_null(strchr(out, '\\'));
    if (n > 0) {
        assert_true(out[0] != '/' && out[0] != '.');
        assert_true(out[n - 1] != '/');
    }
    for (int i = 0; i < n; i++)
        assert_true((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
    assert_int_equal(crest__utf8_feed(CREST__UTF8_ACCEPT, (const uint8_t *)out, (size_t)n),
                     CREST__UTF8_ACCEPT);
}

/* path_clean of s[0..n), input and output each in a heap block of exactly their size. */
static int clean_exact(const char *s, size_t n, size_t cap, char *copy_out, int *dir) {
    char *in = dup_exact(s, n);
    char *out = malloc(cap ? cap : 1);
    *dir = -1;
    int r = crest__path_clean(in, n, out, cap, dir);
    assert_true(*dir == 0 || *dir == 1);
    if (r >= 0) {
        check_clean(out, r);
        if (copy_out)
            memcpy(copy_out, out, (size_t)r + 1);
    }
    free(out);
    free(in);
    return r;
}

static void test_path_table(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const path_case_t *c = &paths[i];
        size_t len = c->len ? c->len : strlen(c->in);
        char got[256];
        int dir;
        print_message("path %zu: \"%.*s\"\n", i, (int)len, c->in);
        int r = clean_exact(c->in, len, sizeof(got), got, &dir);
        assert_int_equal(dir, c->dir);
        if (c->out == NULL) {
            assert_int_equal(r, -1);
        } else {
            assert_int_equal(r, (int)strlen(c->out));
            assert_string_equal(got, c->out);
            /* The exact room is enough; one byte less is refused, never truncated. */
            assert_int_equal(clean_exact(c->in, len, (size_t)r + 1, NULL, &dir), r);
            assert_int_equal(clean_exact(c->in, len, (size_t)r, NULL, &dir), -1);
            /* A clean path without '%' cleans to itself. */
            if (strchr(got, '%') == NULL) {
                char again[256];
                assert_int_equal(clean_exact(got, (size_t)r, sizeof(again), again, &dir), r);
                assert_string_equal(again, got);
            }
        }
        /* Cut at every offset: each prefix and suffix alone must still clean safely (or be
         * refused); check_clean runs on whatever comes out. */
        for (size_t k = 0; k <= len; k++) {
            clean_exact(c->in, k, sizeof(got), NULL, &dir);
            clean_exact(c->in + k, len - k, sizeof(got), NULL, &dir);
        }
    }
}

static void test_path_edges(void **state) {
    (void)state;
    int dir = 7;
    char out[8];
    assert_int_equal(crest__path_clean("a", 1, out, 0, &dir), -1);
    assert_int_equal(dir, 0);
    assert_int_equal(crest__path_clean(NULL, 0, out, sizeof(out), &dir), 0);
    assert_string_equal(out, "");
    /* A refusal leaves an empty string, not a half-written path. */
    assert_int_equal(crest__path_clean("abc/..", 6, out, sizeof(out), &dir), -1);
    assert_string_equal(out, "");
    /* Room for "abcdefg" (7 + NUL) but not for one more byte. */
    assert_int_equal(crest__path_clean("abcdefg", 7, out, sizeof(out), &dir), 7);
    assert_int_equal(crest__path_clean("abc/efgh", 8, out, sizeof(out), &dir), -1);
    assert_int_equal(crest__path_clean("abc/efg/", 8, out, sizeof(out), &dir), 7);
    assert_int_equal(dir, 1);
    /* Every byte value as a one-byte segment, literal and escaped. */
    for (int b = 0; b < 256; b++) {
        char lit[1] = {(char)b}, esc[4];
        snprintf(esc, sizeof(esc), "%%%02x", b);
        int ok = b >= 0x20 && b < 0x7f && b != '\\' && b != '.';
        if (b == '/') {
            assert_int_equal(crest__path_clean(lit, 1, out, sizeof(out), &dir), 0);
            assert_int_equal(crest__path_clean(esc, 3, out, sizeof(out), &dir), -1);
            continue;
        }
        int r = crest__path_clean(lit, 1, out, sizeof(out), &dir);
        assert_int_equal(r, ok && b != '%' ? 1 : -1); /* a lone '%' is a malformed escape */
        r = crest__path_clean(esc, 3, out, sizeof(out), &dir);
        assert_int_equal(r, ok ? 1 : -1);
        if (ok)
            assert_int_equal((unsigned char)out[0], b);
    }
}

/* ---- entity tags ---- */

static void test_etag_make(void **state) {
    (void)state;
    char out[64];
    assert_int_equal(crest__etag_make(1, 2, 3, out, sizeof(out)), 7);
    assert_string_equal(out, "\"1-2-3\"");
    assert_int_equal(crest__etag_make(0xabcdef, 1000, 1700000000123456789ll, out, sizeof(out)),
                     strlen("\"abcdef-3e8-17979cfe3d85cd15\""));
    assert_string_equal(out, "\"abcdef-3e8-17979cfe3d85cd15\"");
    size_t n = crest__etag_make(UINT64_MAX, UINT64_MAX, -1, out, sizeof(out));
    assert_int_equal(n, 52);
    assert_string_equal(out, "\"ffffffffffffffff-ffffffffffffffff-ffffffffffffffff\"");
    assert_int_equal(crest__etag_make(UINT64_MAX, UINT64_MAX, -1, out, 52), 0);
    assert_string_equal(out, "");
    assert_int_equal(crest__etag_make(UINT64_MAX, UINT64_MAX, -1, out, 53), 52);
    /* The tag is a valid strong entity-tag: it matches itself both ways. */
    crest_str_t h = {out, n};
    assert_int_equal(crest__etag_match_any(h, out, n), 1);
    assert_int_equal(crest__if_range(h, out, n, 0), 1);
}

static int match_exact(const char *h, const char *etag) {
    size_t n = strlen(h);
    char *b = dup_exact(h, n);
    int r = crest__etag_match_any((crest_str_t){b, n}, etag, strlen(etag));
    free(b);
    for (size_t k = 0; k <= n; k++) { /* cut anywhere: no overread, a verdict of 0 or 1 */
        char *p = dup_exact(h, k), *s = dup_exact(h + k, n - k);
        int a = crest__etag_match_any((crest_str_t){p, k}, etag, strlen(etag));
        int z = crest__etag_match_any((crest_str_t){s, n - k}, etag, strlen(etag));
        assert_true((a == 0 || a == 1) && (z == 0 || z == 1));
        free(p);
        free(s);
    }
    return r;
}

static void test_if_none_match(void **state) {
    (void)state;
    const char *e = "\"1-2-3\"", *w = "W/\"1-2-3\"";
    assert_int_equal(match_exact("*", e), 1);
    assert_int_equal(match_exact(" * ", e), 1);
    assert_int_equal(match_exact("\"1-2-3\"", e), 1);
    assert_int_equal(match_exact("W/\"1-2-3\"", e), 1); /* weak comparison */
    assert_int_equal(match_exact("\"1-2-3\"", w), 1);
    assert_int_equal(match_exact("W/\"1-2-3\"", w), 1);
    assert_int_equal(match_exact("\"x\", \"1-2-3\"", e), 1);
    assert_int_equal(match_exact("\"x\",W/\"1-2-3\" , \"y\"", e), 1);
    assert_int_equal(match_exact(" , ,\"1-2-3\",, ", e), 1);
    assert_int_equal(match_exact("\t\"1-2-3\"\t", e), 1);
    assert_int_equal(match_exact("\"x\", \"y\"", e), 0);
    assert_int_equal(match_exact("\"1-2-4\"", e), 0);
    assert_int_equal(match_exact("\"1-2-3", e), 0);
    assert_int_equal(match_exact("1-2-3", e), 0);
    assert_int_equal(match_exact("w/\"1-2-3\"", e), 0); /* "W/" is case-sensitive */
    assert_int_equal(match_exact("W/ \"1-2-3\"", e), 0);
    assert_int_equal(match_exact("\"\"", e), 0);
    assert_int_equal(match_exact("\"\"", "\"\""), 1);
    assert_int_equal(match_exact("", e), 0);
    assert_int_equal(match_exact(",", e), 0);
    /* malformed lists match nothing, even after a match */
    assert_int_equal(match_exact("\"1-2-3\" \"x\"", e), 0);
    assert_int_equal(match_exact("\"1-2-3\", x", e), 0);
    assert_int_equal(match_exact("\"1-2-3\"x", e), 0);
    assert_int_equal(match_exact("*, \"1-2-3\"", e), 0);
    assert_int_equal(match_exact("\"1-2-3\", *", e), 0);
    assert_int_equal(match_exact("\"a b\", \"1-2-3\"", e), 0);
    assert_int_equal(match_exact("\"a\x01\", \"1-2-3\"", e), 0);
    assert_int_equal(match_exact("\"\x80\xff\"", "\"\x80\xff\""), 1); /* obs-text */
    assert_int_equal(crest__etag_match_any((crest_str_t){NULL, 0}, e, strlen(e)), 0);
}

/* ---- HTTP-dates ---- */

static int64_t date_exact(const char *s) {
    size_t n = strlen(s);
    char *b = dup_exact(s, n);
    int64_t t = crest__http_date_parse(b, n);
    free(b);
    for (size_t k = 0; k < n; k++) { /* a cut date is never the same date */
        char *p = dup_exact(s, k), *q = dup_exact(s + k + 1, n - k - 1);
        int64_t a = crest__http_date_parse(p, k), z = crest__http_date_parse(q, n - k - 1);
        if (t != -1 && k > 0 && k < n - 1 && s[k - 1] != ' ' && s[k + 1] != ' ')
            assert_true(a != t && z != t);
        free(p);
        free(q);
    }
    return t;
}

static void test_date_parse(void **state) {
    (void)state;
    /* RFC 9110's example in its three forms */
    assert_int_equal(date_exact("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    assert_int_equal(date_exact("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    assert_int_equal(date_exact("Sun Nov  6 08:49:37 1994"), 784111777);
    assert_int_equal(date_exact("Sun Nov 06 08:49:37 1994"), 784111777);
    assert_int_equal(date_exact("  Sun, 06 Nov 1994 08:49:37 GMT\t"), 784111777);
    assert_int_equal(date_exact("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(date_exact("Tue, 29 Feb 2000 12:00:00 GMT"), 951825600);
    assert_int_equal(date_exact("Fri, 31 Dec 9999 23:59:59 GMT"), 253402300799);
    assert_int_equal(date_exact("Sat, 01 Jan 2000 00:00:60 GMT"), 946684860);
    assert_int_equal(date_exact("Mon, 01 Jan 1900 00:00:00 GMT"), -2208988800);
    assert_int_equal(date_exact("Wednesday, 09-Nov-69 08:49:37 GMT"), 3151212577); /* 2069 */
    assert_int_equal(date_exact("Thursday, 01-Jan-70 00:00:00 GMT"), 0);
    /* the day name is checked for form, not against the date */
    assert_int_equal(date_exact("Mon, 06 Nov 1994 08:49:37 GMT"), 784111777);
    const char *bad[] = {
        "",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Thu, 29 Feb 2001 08:49:37 GMT",
        "Thu, 29 Feb 1900 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTX",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT ",
        "Sun, 06 Nov 1994 08:49:37  GMT",
        "Sun, +6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:3a GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, 07 Nov",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Funday, 06-Nov-94 08:49:37 GMT",
        "Sunday,06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  x 08:49:37 1994",
        "Sun Nov 6  08:49:37 1994",
        "Sun Nov  6 08:49:37 1994 GMT",
        "784111777",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        print_message("bad date %zu: %s\n", i, bad[i]);
        assert_int_equal(date_exact(bad[i]), -1);
    }
    /* an embedded NUL is a byte like any other, not an end */
    assert_int_equal(crest__http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT\0", 30), -1);
}

/* The format and the parse against the C library's calendar (gmtime_r, strftime, timegm), over
 * dates from 1970 to 9999 picked by a stride that visits every day of the week, month and leap
 * rule. */
static void test_date_format(void **state) {
    (void)state;
    char out[30], want[64];
    assert_int_equal(crest__http_date_format(784111777, out, sizeof(out)), 29);
    assert_string_equal(out, "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(crest__http_date_format(0, out, sizeof(out)), 29);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_int_equal(crest__http_date_format(-5, out, sizeof(out)), 29);
    assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_int_equal(crest__http_date_format(INT64_MAX, out, sizeof(out)), 29);
    assert_string_equal(out, "Fri, 31 Dec 9999 23:59:59 GMT");
    assert_int_equal(crest__http_date_format(0, out, 29), 0);
    assert_string_equal(out, "");
    const int64_t max = 253402300799;
    for (int64_t t = 0; t <= max; t += 7777777 + (t & 0xffff)) {
        for (int64_t d = -1; d <= 1; d++) {
            int64_t u = t + d < 0 ? 0 : t + d;
            time_t tt = (time_t)u;
            struct tm tm;
            assert_non_null(gmtime_r(&tt, &tm));
            strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
            char *o = malloc(30);
            assert_int_equal(crest__http_date_format(u, o, 30), 29);
            assert_string_equal(o, want);
            assert_int_equal(crest__http_date_parse(o, 29), u);
            free(o);
        }
    }
    /* The obsolete forms against timegm for every RFC 850 year and some asctime ones. */
    for (int yy = 0; yy < 100; yy++) {
        struct tm tm = {.tm_year = (yy < 70 ? 100 : 0) + yy,
                        .tm_mon = yy % 12,
                        .tm_mday = 1 + yy % 28,
                        .tm_hour = yy % 24,
                        .tm_min = yy % 60,
                        .tm_sec = (yy * 7) % 60};
        time_t tt = timegm(&tm);
        strftime(want, sizeof(want), "%A, %d-%b-%y %H:%M:%S GMT", &tm);
        assert_int_equal(crest__http_date_parse(want, strlen(want)), (int64_t)tt);
        strftime(want, sizeof(want), "%a %b %e %H:%M:%S %Y", &tm);
        assert_int_equal(crest__http_date_parse(want, strlen(want)), (int64_t)tt);
    }
}

/* ---- Range ---- */

typedef struct {
    const char *h;
    uint64_t size;
    int want;
    uint64_t first, last;
} range_case_t;

static const range_case_t ranges[] = {
    {"bytes=0-0", 10, 1, 0, 0},
    {"bytes=0-9", 10, 1, 0, 9},
    {"bytes=2-5", 10, 1, 2, 5},
    {"bytes=-5", 10, 1, 5, 9},
    {"bytes=-10", 10, 1, 0, 9},
    {"bytes=-20", 10, 1, 0, 9},
    {"bytes=5-", 10, 1, 5, 9},
    {"bytes=9-", 10, 1, 9, 9},
    {"bytes=0-", 10, 1, 0, 9},
    {"bytes=0-9999", 10, 1, 0, 9},
    {"bytes=9-9", 10, 1, 9, 9},
    {"bytes=10-", 10, -1, 0, 0},
    {"bytes=10-20", 10, -1, 0, 0},
    {"bytes=9999-", 10, -1, 0, 0},
    {"bytes=-0", 10, -1, 0, 0},
    {"bytes=-000", 10, -1, 0, 0},
    {"bytes=1-2,3-4", 10, 0, 0, 0},
    {"bytes=0-0,-1", 10, 0, 0, 0},
    {"bytes=20-30,1-2", 10, 0, 0, 0},
    {"items=0-1", 10, 0, 0, 0},
    {"bytesx=0-1", 10, 0, 0, 0},
    {"BYTES=1-2", 10, 1, 1, 2},
    {"Bytes=1-2", 10, 1, 1, 2},
    {" bytes=1-2 ", 10, 1, 1, 2},
    {"bytes= 1-2", 10, 1, 1, 2},
    {"bytes=1-2 ,", 10, 1, 1, 2},
    {"bytes=, ,1-2,,", 10, 1, 1, 2},
    {"bytes =1-2", 10, 0, 0, 0},
    {"bytes= =1-2", 10, 0, 0, 0},
    {"bytes=1 -2", 10, 0, 0, 0},
    {"bytes=1- 2", 10, 0, 0, 0},
    {"bytes=- 2", 10, 0, 0, 0},
    {"bytes=2-1", 10, 0, 0, 0},
    {"bytes=", 10, 0, 0, 0},
    {"bytes", 10, 0, 0, 0},
    {"bytes=,", 10, 0, 0, 0},
    {"bytes=-", 10, 0, 0, 0},
    {"bytes=--1", 10, 0, 0, 0},
    {"bytes=a-b", 10, 0, 0, 0},
    {"bytes=1-2-3", 10, 0, 0, 0},
    {"bytes=+1-2", 10, 0, 0, 0},
    {"bytes=0x1-2", 10, 0, 0, 0},
    {"bytes=1-2;x", 10, 0, 0, 0},
    {"", 10, 0, 0, 0},
    {"bytes=99999999999999999999999-", 10, -1, 0, 0},
    {"bytes=18446744073709551615-", 10, -1, 0, 0},
    {"bytes=0-99999999999999999999999", 10, 1, 0, 9},
    {"bytes=-99999999999999999999999", 10, 1, 0, 9},
    {"bytes=18446744073709551614-18446744073709551615", UINT64_MAX, 1, UINT64_MAX - 1,
     UINT64_MAX - 1},
    {"bytes=-1", UINT64_MAX, 1, UINT64_MAX - 1, UINT64_MAX - 1},
    {"bytes=0-", 1, 1, 0, 0},
    {"bytes=-1", 1, 1, 0, 0},
    {"bytes=1-", 1, -1, 0, 0},
    /* an empty representation has no range to send: the whole (empty) body, 200 */
    {"bytes=0-", 0, 0, 0, 0},
    {"bytes=-5", 0, 0, 0, 0},
    {"bytes=0-0", 0, 0, 0, 0},
};

static int range_exact(const char *h, size_t n, uint64_t size, uint64_t *first, uint64_t *last) {
    char *b = dup_exact(h, n);
    *first = *last = 12345;
    int r = crest__range_parse((crest_str_t){b, n}, size, first, last);
    free(b);
    assert_true(r >= -1 && r <= 1);
    if (r == 1)
        assert_true(*first <= *last && *last < size);
    return r;
}

static void test_range(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
        const range_case_t *c = &ranges[i];
        size_t n = strlen(c->h);
        uint64_t f, l;
        print_message("range %zu: %s (size %llu)\n", i, c->h, (unsigned long long)c->size);
        assert_int_equal(range_exact(c->h, n, c->size, &f, &l), c->want);
        if (c->want == 1) {
            assert_true(f == c->first);
            assert_true(l == c->last);
        }
        for (size_t k = 0; k <= n; k++) { /* the checks in range_exact on every cut */
            range_exact(c->h, k, c->size, &f, &l);
            range_exact(c->h + k, n - k, c->size, &f, &l);
        }
    }
    uint64_t f, l;
    assert_int_equal(crest__range_parse((crest_str_t){NULL, 0}, 10, &f, &l), 0);
}

/* ---- If-Range ---- */

static int if_range_exact(const char *h, const char *etag, int64_t mtime) {
    size_t n = strlen(h);
    char *b = dup_exact(h, n);
    int r = crest__if_range((crest_str_t){b, n}, etag, strlen(etag), mtime);
    free(b);
    for (size_t k = 0; k < n; k++) {
        char *p = dup_exact(h, k);
        int a = crest__if_range((crest_str_t){p, k}, etag, strlen(etag), mtime);
        assert_true(a == 0 || a == 1);
        free(p);
    }
    return r;
}

static void test_if_range(void **state) {
    (void)state;
    const char *e = "\"1-2-3\"";
    int64_t m = 784111777;
    assert_int_equal(if_range_exact("\"1-2-3\"", e, m), 1);
    assert_int_equal(if_range_exact(" \"1-2-3\" ", e, m), 1);
    assert_int_equal(if_range_exact("W/\"1-2-3\"", e, m), 0);
    assert_int_equal(if_range_exact("\"1-2-3\"", "W/\"1-2-3\"", m), 0);
    assert_int_equal(if_range_exact("W/\"1-2-3\"", "W/\"1-2-3\"", m), 0);
    assert_int_equal(if_range_exact("\"1-2-4\"", e, m), 0);
    assert_int_equal(if_range_exact("\"1-2-3\", \"x\"", e, m), 0);
    assert_int_equal(if_range_exact("\"1-2-3", e, m), 0);
    assert_int_equal(if_range_exact("*", e, m), 0);
    assert_int_equal(if_range_exact("Sun, 06 Nov 1994 08:49:37 GMT", e, m), 1);
    assert_int_equal(if_range_exact("Sunday, 06-Nov-94 08:49:37 GMT", e, m), 1);
    assert_int_equal(if_range_exact("Sun Nov  6 08:49:37 1994", e, m), 1);
    assert_int_equal(if_range_exact("Sun, 06 Nov 1994 08:49:38 GMT", e, m), 0);
    assert_int_equal(if_range_exact("Sun, 06 Nov 1994 08:49:36 GMT", e, m), 0);
    assert_int_equal(if_range_exact("garbage", e, -1), 0); /* -1 is the parser's "malformed" */
    assert_int_equal(if_range_exact("", e, m), 0);
    assert_int_equal(crest__if_range((crest_str_t){NULL, 0}, e, strlen(e), m), 0);
}

/* ---- Accept-Encoding ---- */

static unsigned ae_exact(const char *h) {
    size_t n = strlen(h);
    char *b = dup_exact(h, n);
    unsigned r = crest__accept_encoding((crest_str_t){b, n});
    free(b);
    for (size_t k = 0; k <= n; k++) {
        char *p = dup_exact(h, k), *s = dup_exact(h + k, n - k);
        assert_true(crest__accept_encoding((crest_str_t){p, k}) <= 3);
        assert_true(crest__accept_encoding((crest_str_t){s, n - k}) <= 3);
        free(p);
        free(s);
    }
    return r;
}

static void test_accept_encoding(void **state) {
    (void)state;
    const unsigned G = CREST__ENC_GZIP, B = CREST__ENC_BR;
    assert_int_equal(ae_exact("gzip"), G);
    assert_int_equal(ae_exact("br"), B);
    assert_int_equal(ae_exact("gzip, deflate, br"), G | B);
    assert_int_equal(ae_exact("gzip, deflate, br, zstd"), G | B);
    assert_int_equal(ae_exact("GZip,BR"), G | B);
    assert_int_equal(ae_exact("x-gzip"), G);
    assert_int_equal(ae_exact("deflate"), 0);
    assert_int_equal(ae_exact("identity"), 0);
    assert_int_equal(ae_exact(""), 0);
    assert_int_equal(ae_exact("   "), 0);
    assert_int_equal(ae_exact("*"), G | B);
    assert_int_equal(ae_exact("*;q=0"), 0);
    assert_int_equal(ae_exact("*, gzip;q=0"), B);
    assert_int_equal(ae_exact("br;q=0, *"), G);
    assert_int_equal(ae_exact("gzip;q=0"), 0);
    assert_int_equal(ae_exact("gzip;q=0."), 0);
    assert_int_equal(ae_exact("gzip;q=0.000"), 0);
    assert_int_equal(ae_exact("gzip;q=0.001"), G);
    assert_int_equal(ae_exact("gzip;q=0.5"), G);
    assert_int_equal(ae_exact("gzip;q=1"), G);
    assert_int_equal(ae_exact("gzip;q=1."), G);
    assert_int_equal(ae_exact("gzip;q=1.000"), G);
    assert_int_equal(ae_exact("gzip ; q=0.5 , br;Q=1.000"), G | B);
    assert_int_equal(ae_exact("gzip\t;\tq=0.8\t,\tbr"), G | B);
    assert_int_equal(ae_exact(" ,gzip,, br ,"), G | B);
    assert_int_equal(ae_exact("gzip, gzip;q=0"), G); /* named twice: the higher q */
    assert_int_equal(ae_exact("br;q=0.2, gzip;q=0.9, *;q=0"), G | B);
    /* malformed: identity only */
    assert_int_equal(ae_exact("gzip;q=1.001"), 0);
    assert_int_equal(ae_exact("gzip;q=0.0001"), 0);
    assert_int_equal(ae_exact("gzip;q=2"), 0);
    assert_int_equal(ae_exact("gzip;q=-1"), 0);
    assert_int_equal(ae_exact("gzip;q=.5"), 0);
    assert_int_equal(ae_exact("gzip;q="), 0);
    assert_int_equal(ae_exact("gzip;q"), 0);
    assert_int_equal(ae_exact("gzip;"), 0);
    assert_int_equal(ae_exact("gzip;q =1"), 0);
    assert_int_equal(ae_exact("gzip;level=1"), 0);
    assert_int_equal(ae_exact("gzip;q=0.5;q=1"), 0);
    assert_int_equal(ae_exact("gzip br"), 0);
    assert_int_equal(ae_exact("gzip, (br)"), 0);
    assert_int_equal(ae_exact("gzip, b\x80r"), 0);
    assert_int_equal(crest__accept_encoding((crest_str_t){NULL, 0}), 0);
}

/* ---- media types ---- */

static const struct {
    const char *ext, *type;
} table[] = {
#define X(ext, type) {ext, type},
#include "http/mime.def"
#undef X
};

static const char *mime_exact(const char *name) {
    size_t n = strlen(name);
    char *b = dup_exact(name, n);
    const char *t = crest__mime_type(b, n);
    free(b);
    for (size_t k = 0; k <= n; k++) {
        char *p = dup_exact(name, k);
        assert_non_null(strchr(crest__mime_type(p, k), '/'));
        free(p);
    }
    return t;
}

static void test_mime_type(void **state) {
    (void)state;
    static const char *const want[][2] = {
        {"index.html", "text/html; charset=utf-8"},
        {"a.htm", "text/html; charset=utf-8"},
        {"a/b/SITE.CSS", "text/css; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"mod.mjs", "text/javascript; charset=utf-8"},
        {"data.json", "application/json; charset=utf-8"},
        {"app.js.map", "application/json; charset=utf-8"},
        {"site.webmanifest", "application/manifest+json; charset=utf-8"},
        {"logo.svg", "image/svg+xml"},
        {"m.wasm", "application/wasm"},
        {"f.woff2", "font/woff2"},
        {"f.woff", "font/woff"},
        {"f.ttf", "font/ttf"},
        {"f.otf", "font/otf"},
        {"a.png", "image/png"},
        {"a.jpg", "image/jpeg"},
        {"a.JPEG", "image/jpeg"},
        {"a.gif", "image/gif"},
        {"a.webp", "image/webp"},
        {"a.avif", "image/avif"},
        {"favicon.ico", "image/vnd.microsoft.icon"},
        {"robots.txt", "text/plain; charset=utf-8"},
        {"README.md", "text/markdown; charset=utf-8"},
        {"t.csv", "text/csv; charset=utf-8"},
        {"feed.xml", "application/xml"},
        {"doc.pdf", "application/pdf"},
        {"v.mp4", "video/mp4"},
        {"v.webm", "video/webm"},
        {"s.mp3", "audio/mpeg"},
        {"a.zip", "application/zip"},
        {"x.tar.gz", "application/gzip"},
        {"Makefile", "application/octet-stream"},
        {"", "application/octet-stream"},
        {"a.", "application/octet-stream"},
        {".profile", "application/octet-stream"},
        {"dir/.html", "application/octet-stream"},
        {"dir.d/file", "application/octet-stream"},
        {"dir.html/", "application/octet-stream"},
        {"x.unknownextension", "application/octet-stream"},
        {"x.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "application/octet-stream"},
        {"x.h\xc3\xa9", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        print_message("mime %zu: %s\n", i, want[i][0]);
        assert_string_equal(mime_exact(want[i][0]), want[i][1]);
    }
    /* The table is sorted for the binary search, lower-case, and every entry is found. */
    size_t n = sizeof(table) / sizeof(table[0]);
    assert_true(n > 100);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(strcmp(table[i - 1].ext, table[i].ext) < 0);
        char name[64];
        snprintf(name, sizeof(name), "f.%s", table[i].ext);
        for (char *c = name; *c; c++)
            assert_false(*c >= 'A' && *c <= 'Z');
        assert_string_equal(crest__mime_type(name, strlen(name)), table[i].type);
        /* text/ types carry the charset */
        if (strncmp(table[i].type, "text/", 5) == 0)
            assert_non_null(strstr(table[i].type, "; charset=utf-8"));
    }
}

static int compressible_exact(const char *t) {
    size_t n = strlen(t);
    char *b = dup_exact(t, n);
    int r = crest__mime_compressible(b, n);
    free(b);
    for (size_t k = 0; k <= n; k++) {
        char *p = dup_exact(t, k);
        int a = crest__mime_compressible(p, k);
        assert_true(a == 0 || a == 1);
        free(p);
    }
    return r;
}

static void test_mime_compressible(void **state) {
    (void)state;
    const char *yes[] = {"text/html",
                         "text/css; charset=utf-8",
                         "TEXT/PLAIN",
                         " text/plain ; charset=utf-8",
                         "text/javascript; charset=utf-8",
                         "application/json",
                         "application/json; charset=utf-8",
                         "application/javascript",
                         "application/xml",
                         "application/atom+xml",
                         "image/svg+xml",
                         "IMAGE/SVG+XML",
                         "application/ld+json; charset=utf-8",
                         "application/manifest+json",
                         "application/wasm",
                         "font/ttf",
                         "font/otf",
                         "image/vnd.microsoft.icon",
                         "application/vnd.ms-fontobject"};
    const char *no[] = {"image/png",
                        "image/jpeg",
                        "image/webp",
                        "image/avif",
                        "image/gif",
                        "video/mp4",
                        "video/webm",
                        "audio/mpeg",
                        "application/zip",
                        "application/gzip",
                        "application/x-brotli",
                        "font/woff2",
                        "font/woff",
                        "application/octet-stream",
                        "application/pdf",
                        "text/event-stream",
                        "text/event-stream; charset=utf-8",
                        "",
                        "text/",
                        "text",
                        "+xml",
                        "+json",
                        ";text/html",
                        "application/json2",
                        "application/jsonx"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        print_message("compressible: %s\n", yes[i]);
        assert_int_equal(compressible_exact(yes[i]), 1);
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        print_message("not compressible: %s\n", no[i]);
        assert_int_equal(compressible_exact(no[i]), 0);
    }
    /* The two functions agree on the web's usual files. */
    const char *files_yes[] = {"a.html", "a.css", "a.js",  "a.mjs", "a.json", "a.svg",
                               "a.wasm", "a.txt", "a.xml", "a.map", "a.ttf",  "a.ico"};
    const char *files_no[] = {"a.png", "a.jpg",  "a.webp", "a.avif", "a.woff2", "a.woff",
                              "a.mp4", "a.webm", "a.mp3",  "a.zip",  "a.gz",    "a.bin"};
    for (size_t i = 0; i < sizeof(files_yes) / sizeof(files_yes[0]); i++) {
        const char *t = crest__mime_type(files_yes[i], strlen(files_yes[i]));
        assert_int_equal(crest__mime_compressible(t, strlen(t)), 1);
    }
    for (size_t i = 0; i < sizeof(files_no) / sizeof(files_no[0]); i++) {
        const char *t = crest__mime_type(files_no[i], strlen(files_no[i]));
        assert_int_equal(crest__mime_compressible(t, strlen(t)), 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_table),
        cmocka_unit_test(test_path_edges),
        cmocka_unit_test(test_etag_make),
        cmocka_unit_test(test_if_none_match),
        cmocka_unit_test(test_date_parse),
        cmocka_unit_test(test_date_format),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_if_range),
        cmocka_unit_test(test_accept_encoding),
        cmocka_unit_test(test_mime_type),
        cmocka_unit_test(test_mime_compressible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
