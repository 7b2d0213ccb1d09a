/* Unit tests for the rules behind include/crest/web.h that need no request (src/http/web.h):
 * Cookie lists, Set-Cookie lines, urlencoded pairs, Accept and Accept-Language. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crest/errno.h"
#include "http/web.h"

static crest_str_t S(const char *s) {
    return (crest_str_t){s, strlen(s)};
}

/* The cookie `name` in header h, as a C string in a static buffer; "(none)" when absent. */
static const char *cookie(const char *h, const char *name) {
    static char out[256];
    crest_str_t v;
    /* In a block of exactly its size, so that a read past it is caught. */
    size_t n = strlen(h);
    char *copy = malloc(n ? n : 1);
    memcpy(copy, h, n);
    if (!crest__cookie_find((crest_str_t){copy, n}, name, strlen(name), &v)) {
        free(copy);
        return "(none)";
    }
    assert_true(v.ptr >= copy && v.ptr + v.len <= copy + n);
    snprintf(out, sizeof(out), "%.*s", (int)v.len, v.ptr);
    free(copy);
    return out;
}

static void test_cookie_find(void **state) {
    (void)state;
    assert_string_equal(cookie("a=1; b=2", "a"), "1");
    assert_string_equal(cookie("a=1; b=2", "b"), "2");
    assert_string_equal(cookie("a=1;b=2;c=3", "c"), "3");
    assert_string_equal(cookie("a=1; a=2", "a"), "1");
    assert_string_equal(cookie("A=1; a=2", "a"), "2"); /* names are case-sensitive */
    assert_string_equal(cookie("  sid = abc  ;x=y", "sid"), "abc");
    assert_string_equal(cookie("q=\"quoted value\"; r=\"", "q"), "quoted value");
    assert_string_equal(cookie("q=\"quoted value\"; r=\"", "r"), "\"");
    assert_string_equal(cookie("e=; f=1", "e"), "");
    assert_string_equal(cookie("junk; g=1", "g"), "1"); /* a pair without '=' is skipped */
    assert_string_equal(cookie("junk; g=1", "junk"), "(none)");
    assert_string_equal(cookie("t=a=b=c", "t"), "a=b=c");
    assert_string_equal(cookie("", "a"), "(none)");
    assert_string_equal(cookie(";;;", "a"), "(none)");
    assert_string_equal(cookie("ab=1", "a"), "(none)");
    assert_string_equal(cookie("a", "a"), "(none)");
    crest_str_t v;
    assert_int_equal(crest__cookie_find((crest_str_t){NULL, 0}, "a", 1, &v), 0);
}

/* Set-Cookie for name=value with opts; the line, or "E<err>". */
static const char *setc(const char *name, const char *value, const crest_cookie_opts_t *o,
                        int tls) {
    static char out[2048];
    crest_buf_t b = CREST_BUF_INIT;
    int rc = crest__cookie_format(&b, name, value, o, tls, 1000000000);
    if (rc != 0)
        snprintf(out, sizeof(out), "E%d", -rc);
    else
        snprintf(out, sizeof(out), "%s", b.ptr);
    if (rc == 0)
        assert_int_equal(strlen(b.ptr), b.len);
    crest_buf_free(&b);
    return out;
}

static void test_cookie_format(void **state) {
    (void)state;
    crest_cookie_opts_t o;
    assert_string_equal(setc("sid", "abc", NULL, 0), "sid=abc; Path=/; HttpOnly; SameSite=Lax");
    assert_string_equal(setc("sid", "abc", NULL, 1),
                        "sid=abc; Path=/; Secure; HttpOnly; SameSite=Lax");
    crest_cookie_opts_default(&o);
    o.max_age = 3600;
    o.domain = "example.com";
    o.path = "/app";
    o.same_site = CREST_SAMESITE_STRICT;
    o.http_only = 0;
    o.secure = 1;
    assert_string_equal(setc("a", "\"q\"", &o, 0),
                        "a=\"q\"; Path=/app; Domain=example.com; Max-Age=3600; "
                        "Expires=Sun, 09 Sep 2001 02:46:40 GMT; Secure; SameSite=Strict");
    crest_cookie_opts_default(&o);
    o.max_age = 0;
    o.path = NULL;
    o.same_site = CREST_SAMESITE_OMIT;
    assert_string_equal(setc("gone", "", &o, 0),
                        "gone=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly");
    crest_cookie_opts_default(&o);
    o.same_site = CREST_SAMESITE_NONE;
    o.secure = 0; /* None forces Secure */
    assert_string_equal(setc("x", "1", &o, 0), "x=1; Path=/; Secure; HttpOnly; SameSite=None");
    crest_cookie_opts_default(&o);
    o.partitioned = 1;
    assert_string_equal(setc("x", "1", &o, 0),
                        "x=1; Path=/; Secure; HttpOnly; SameSite=Lax; Partitioned");
    /* Refused: names, values, attributes, prefixes. */
    assert_string_equal(setc("", "1", NULL, 0), "E22");
    assert_string_equal(setc("a b", "1", NULL, 0), "E22");
    assert_string_equal(setc("a=b", "1", NULL, 0), "E22");
    assert_string_equal(setc("a;", "1", NULL, 0), "E22");
    assert_string_equal(setc("a", "x y", NULL, 0), "E22");
    assert_string_equal(setc("a", "x;y", NULL, 0), "E22");
    assert_string_equal(setc("a", "x,y", NULL, 0), "E22");
    assert_string_equal(setc("a", "x\\y", NULL, 0), "E22");
    assert_string_equal(setc("a", "\"x", NULL, 0), "E22");
    assert_string_equal(setc("a", "\xc3\xa9", NULL, 0), "E22");
    assert_string_equal(setc("a", "x\r\nSet-Cookie: b=1", NULL, 0), "E22");
    crest_cookie_opts_default(&o);
    o.path = "/a;Domain=evil";
    assert_string_equal(setc("a", "1", &o, 0), "E22");
    o.path = "/";
    o.domain = "a\nb";
    assert_string_equal(setc("a", "1", &o, 0), "E22");
    assert_string_equal(setc("__Secure-a", "1", NULL, 0), "E22");
    assert_string_equal(setc("__Secure-a", "1", NULL, 1),
                        "__Secure-a=1; Path=/; Secure; HttpOnly; SameSite=Lax");
    assert_string_equal(setc("__Host-a", "1", NULL, 1),
                        "__Host-a=1; Path=/; Secure; HttpOnly; SameSite=Lax");
    crest_cookie_opts_default(&o);
    o.domain = "example.com";
    assert_string_equal(setc("__Host-a", "1", &o, 1), "E22");
    crest_cookie_opts_default(&o);
    o.path = "/x";
    assert_string_equal(setc("__Host-a", "1", &o, 1), "E22");
    /* A value long enough to leave the stack buffer the caller uses. */
    char big[1200];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(strlen(setc("big", big, NULL, 0)),
                     4 + 1199 + strlen("; Path=/; HttpOnly; SameSite=Lax"));
}

static void test_form(void **state) {
    (void)state;
    crest_str_t rest = S("a=1&&b=x+y%21&c&=v&d=%zz&"), n, v;
    const char *want[][2] = {{"a", "1"}, {"b", "x+y%21"}, {"c", ""}, {"", "v"}, {"d", "%zz"}};
    size_t i = 0;
    while (crest__form_next(&rest, &n, &v)) {
        assert_true(i < 5);
        assert_int_equal(n.len, strlen(want[i][0]));
        assert_memory_equal(n.ptr, want[i][0], n.len);
        assert_int_equal(v.len, strlen(want[i][1]));
        assert_memory_equal(v.ptr, want[i][1], v.len);
        i++;
    }
    assert_int_equal(i, 5);
    rest = (crest_str_t){NULL, 0};
    assert_int_equal(crest__form_next(&rest, &n, &v), 0);
    assert_true(crest__form_name_eq(S("first+name"), "first name", 10));
    assert_true(crest__form_name_eq(S("a%5B%5d"), "a[]", 3));
    assert_true(crest__form_name_eq(S("%"), "%", 1));
    assert_false(crest__form_name_eq(S("ab"), "a", 1));
    assert_false(crest__form_name_eq(S("a"), "ab", 2));
    assert_true(crest__form_name_eq(S(""), "", 0));
    assert_true(crest__form_is_urlencoded(S("application/x-www-form-urlencoded")));
    assert_true(crest__form_is_urlencoded(S(" Application/X-WWW-Form-Urlencoded;charset=UTF-8")));
    assert_false(crest__form_is_urlencoded(S("multipart/form-data; boundary=x")));
    assert_false(crest__form_is_urlencoded((crest_str_t){NULL, 0}));
}

static int accept1(const char *h, const char *const *types, size_t n) {
    crest_str_t line = S(h);
    return crest__accept_pick(&line, 1, types, n);
}

static void test_accept(void **state) {
    (void)state;
    const char *jh[] = {"application/json", "text/html"};
    assert_int_equal(crest__accept_pick(NULL, 0, jh, 2), 0);
    assert_int_equal(accept1("", jh, 2), 0);
    assert_int_equal(accept1("text/html", jh, 2), 1);
    assert_int_equal(accept1("application/json", jh, 2), 0);
    assert_int_equal(accept1("*/*", jh, 2), 0);
    assert_int_equal(accept1("text/*", jh, 2), 1);
    assert_int_equal(accept1("TEXT/HTML", jh, 2), 1);
    assert_int_equal(accept1("image/png", jh, 2), -1);
    assert_int_equal(accept1("text/html;q=0.5, application/json;q=0.9", jh, 2), 0);
    assert_int_equal(accept1("text/html;q=0.9, application/json;q=0.5", jh, 2), 1);
    assert_int_equal(accept1("text/html, application/json", jh, 2), 0); /* tie: first offer */
    /* A browser's navigation. */
    assert_int_equal(accept1("text/html,application/xhtml+xml,application/xml;q=0.9,"
                             "image/avif,image/webp,*/*;q=0.8",
                             jh, 2),
                     1);
    /* Specificity: text/html with q=0 beats the text range. */
    assert_int_equal(accept1("text/*, text/html;q=0", jh, 2), -1);
    assert_int_equal(accept1("*/*;q=0.1, application/json;q=0", jh, 2), 1);
    assert_int_equal(accept1("application/json;q=0", jh, 2), -1);
    assert_int_equal(accept1("*/*;q=0", jh, 2), -1);
    assert_int_equal(accept1("text/html;level=1;q=0.7, application/*;q=0.3", jh, 2), 1);
    assert_int_equal(accept1("text/html;foo=\"a,b;q=1\";q=0.2, application/json;q=0.3", jh, 2), 0);
    assert_int_equal(accept1("text/html ; q=1.000 , application/json;q=0.999", jh, 2), 1);
    /* Malformed elements are skipped; a list of only malformed ones is no list. */
    assert_int_equal(accept1("text/html;q=2, application/json", jh, 2), 0);
    assert_int_equal(accept1("*/html, application/json;q=0.5", jh, 2), 0);
    assert_int_equal(accept1("garbage", jh, 2), 0);
    assert_int_equal(accept1("text/html;q=abc", jh, 2), 0);
    assert_int_equal(accept1("text/html;q=0.0001", jh, 2), 0);
    assert_int_equal(accept1(",,, text/html ,", jh, 2), 1);
    assert_int_equal(accept1("text/html", jh, 0), -1);
    /* Several lines are one list. */
    crest_str_t lines[2] = {S("application/json;q=0.1"), S("text/html;q=0.2")};
    assert_int_equal(crest__accept_pick(lines, 2, jh, 2), 1);
    /* Offers with parameters compare on type/subtype. */
    const char *p[] = {"text/plain; charset=utf-8", "application/json"};
    assert_int_equal(accept1("text/plain", p, 2), 0);
}

static int lang1(const char *h, const char *const *langs, size_t n) {
    crest_str_t line = S(h);
    return crest__lang_pick(&line, 1, langs, n);
}

static void test_language(void **state) {
    (void)state;
    const char *l[] = {"en", "fr-CA", "de"};
    assert_int_equal(crest__lang_pick(NULL, 0, l, 3), 0);
    assert_int_equal(lang1("fr-CA, fr;q=0.9, en;q=0.8", l, 3), 1);
    assert_int_equal(lang1("fr", l, 3), 1); /* "fr" covers "fr-CA" */
    assert_int_equal(lang1("fr-FR", l, 3), -1);
    assert_int_equal(lang1("de;q=0.5, en-US, en;q=0.4", l, 3), 2);
    assert_int_equal(lang1("*", l, 3), 0);
    assert_int_equal(lang1("*;q=0.1, de", l, 3), 2);
    assert_int_equal(lang1("EN", l, 3), 0);
    assert_int_equal(lang1("e", l, 3), -1);
    assert_int_equal(lang1("*, en;q=0", l, 3), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_find), cmocka_unit_test(test_cookie_format),
        cmocka_unit_test(test_form),        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_language),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
