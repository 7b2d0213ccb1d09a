/* Unit tests for the multipart/form-data parser (src/codec/multipart.c).
 *
 * Every body is parsed whole, one byte at a time and split in two at every offset, each piece in
 * a heap block of exactly its size (AddressSanitizer catches a read past it); each way must give
 * the same parts (name, filename, type, bytes) and the same verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/multipart.h"
#include "crest/errno.h"

/* ---- a description of what the parser reported ---- */

typedef struct {
    char out[1 << 18]; /* "[name|file|type]bytes.[...]...$" ; "!E22" at an error */
    size_t n;
} desc_t;

static void put(desc_t *d, const void *p, size_t n) {
    assert_true(d->n + n < sizeof(d->out));
    memcpy(d->out + d->n, p, n);
    d->n += n;
}

static void puts_(desc_t *d, const char *s) {
    put(d, s, strlen(s));
}

/* Feed p[0..n) (a copy in its own block); returns nonzero after an error. */
static int feed(crest__mp_t *mp, desc_t *d, const char *p, size_t n) {
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, p, n);
    size_t pos = 0;
    int err = 0;
    for (;;) {
        crest__mp_event_t ev;
        size_t used = 0;
        int rc = crest__mp_parse(mp, copy + pos, n - pos, &used, &ev);
        assert_true(used <= n - pos);
        pos += used;
        if (rc < 0) {
            char e[16];
            snprintf(e, sizeof(e), "!E%d", -rc);
            puts_(d, e);
            assert_non_null(mp->why);
            err = 1;
            break;
        }
        if (rc == CREST__MP_NEED) {
            assert_int_equal(pos, n);
            break;
        }
        switch (rc) {
        case CREST__MP_BEGIN:
            puts_(d, "[");
            put(d, ev.name.ptr, ev.name.len);
            puts_(d, "|");
            if (ev.filename.ptr != NULL)
                put(d, ev.filename.ptr, ev.filename.len);
            else
                puts_(d, "-");
            puts_(d, "|");
            assert_non_null(ev.content_type.ptr);
            put(d, ev.content_type.ptr, ev.content_type.len);
            puts_(d, "]");
            break;
        case CREST__MP_DATA:
            assert_true(ev.len > 0);
            put(d, ev.data, ev.len);
            break;
        case CREST__MP_END:
            puts_(d, ".");
            break;
        case CREST__MP_DONE:
            puts_(d, "$");
            break;
        default:
            fail_msg("unknown event %d", rc);
        }
    }
    free(copy);
    return err;
}

static void finish(crest__mp_t *mp, desc_t *d, int failed) {
    if (!failed) {
        int rc = crest__mp_finish(mp);
        if (rc != 0) {
            char e[16];
            snprintf(e, sizeof(e), "!F%d", -rc);
            puts_(d, e);
        }
    }
    crest__mp_free(mp);
}

static crest__mp_limits_t no_limits;

static void run_lim(const char *name, const char *body, size_t len, const char *want,
                    const crest__mp_limits_t *lim) {
    static desc_t whole, other;
    crest__mp_t mp;
    whole.n = 0;
    assert_int_equal(crest__mp_init(&mp, "XyZ", 3, lim), 0);
    finish(&mp, &whole, feed(&mp, &whole, body, len));
    if (whole.n != strlen(want) || memcmp(whole.out, want, whole.n) != 0)
        fail_msg("%s: whole: want '%s' got '%.*s'", name, want,
                 (int)(whole.n > 300 ? 300 : whole.n), whole.out);
    other.n = 0;
    assert_int_equal(crest__mp_init(&mp, "XyZ", 3, lim), 0);
    int failed = 0;
    for (size_t i = 0; i < len && !failed; i++)
        failed = feed(&mp, &other, body + i, 1);
    finish(&mp, &other, failed);
    if (other.n != whole.n || memcmp(other.out, whole.out, whole.n) != 0)
        fail_msg("%s: bytewise differs: '%.*s'", name, (int)(other.n > 300 ? 300 : other.n),
                 other.out);
    size_t step = len > 4096 ? len / 89 : 1;
    for (size_t k = 0; k <= len; k += step) {
        other.n = 0;
        assert_int_equal(crest__mp_init(&mp, "XyZ", 3, lim), 0);
        failed = feed(&mp, &other, body, k);
        if (!failed)
            failed = feed(&mp, &other, body + k, len - k);
        finish(&mp, &other, failed);
        if (other.n != whole.n || memcmp(other.out, whole.out, whole.n) != 0)
            fail_msg("%s: split at %zu differs: '%.*s'", name, k,
                     (int)(other.n > 300 ? 300 : other.n), other.out);
    }
}

static void run(const char *name, const char *body, const char *want) {
    run_lim(name, body, strlen(body), want, &no_limits);
}

#define CD "Content-Disposition: form-data; "

static void test_parts(void **state) {
    (void)state;
    run("one field", "--XyZ\r\n" CD "name=\"a\"\r\n\r\nhello\r\n--XyZ--\r\n", "[a|-|]hello.$");
    run("field and file",
        "--XyZ\r\n" CD "name=\"title\"\r\n\r\nA title\r\n"
        "--XyZ\r\n" CD "name=\"up\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n"
        "line 1\r\nline 2\r\n\r\n--XyZ--",
        "[title|-|]A title.[up|a.txt|text/plain]line 1\r\nline 2\r\n.$");
    run("empty part and empty name", "--XyZ\r\n" CD "name=\"\"\r\n\r\n\r\n--XyZ--", "[|-|].$");
    run("token name, spaces, case",
        "--XyZ\r\ncontent-disposition:FORM-DATA ;  NAME = b \r\n\r\nx\r\n--XyZ--", "[b|-|]x.$");
    run("preamble and epilogue",
        "This is a preamble\r\n--XyZ\r\n" CD "name=a\r\n\r\n1\r\n--XyZ--\r\nepilogue --XyZ\r\n",
        "[a|-|]1.$");
    run("leading CRLF", "\r\n--XyZ\r\n" CD "name=a\r\n\r\n1\r\n--XyZ--", "[a|-|]1.$");
    run("padding after boundaries",
        "--XyZ \t\r\n" CD "name=a\r\n\r\n1\r\n--XyZ  \r\n" CD "name=b\r\n\r\n2\r\n--XyZ--",
        "[a|-|]1.[b|-|]2.$");
    run("boundary look-alikes in data",
        "--XyZ\r\n" CD "name=a\r\n\r\n\r\r\n\r\n-\r\n--\r\n--X\r\n--Xy--XyZ\n--XyZ\r\r\n--XyZ--",
        "[a|-|]\r\r\n\r\n-\r\n--\r\n--X\r\n--Xy--XyZ\n--XyZ\r.$");
    run("quoted escapes",
        "--XyZ\r\n" CD "name=\"a\\\"b\"; filename=\"C:\\dir\\\\f\"\r\n\r\n\r\n--XyZ--",
        "[a\"b|C:\\dir\\f|].$");
    run("filename* utf-8 preferred",
        "--XyZ\r\n" CD "name=f; filename=\"e.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt\r\n\r\n"
        "z\r\n--XyZ--",
        "[f|\xc3\xa9t\xc3\xa9.txt|]z.$");
    run("filename* other charset ignored",
        "--XyZ\r\n" CD "name=f; filename*=iso-8859-1'en'%E9.txt; filename=\"e.txt\"\r\n\r\n"
        "z\r\n--XyZ--",
        "[f|e.txt|]z.$");
    run("other headers ignored",
        "--XyZ\r\nX-Thing: 1\r\n" CD "name=a\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--XyZ--",
        "[a|-|image/png]\x89PNG.$");
    run("utf-8 in a filename",
        "--XyZ\r\n" CD "name=f; filename=\"\xc3\xa9.txt\"\r\n\r\n\r\n--XyZ--",
        "[f|\xc3\xa9.txt|].$");
}

static void test_malformed(void **state) {
    (void)state;
    run("no closing boundary", "--XyZ\r\n" CD "name=a\r\n\r\nhello", "[a|-|]hello!F22");
    run("nothing", "", "!F22");
    run("no boundary at all", "just text\r\n", "!F22");
    run("junk after a boundary", "--XyZ\r\n" CD "name=a\r\n\r\nx\r\n--XyZx\r\n", "[a|-|]x.!E22");
    run("a single dash", "--XyZ\r\n" CD "name=a\r\n\r\nx\r\n--XyZ-\r\n", "[a|-|]x.!E22");
    run("CR without LF", "--XyZ\rx", "!E22");
    run("no disposition", "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", "!E22");
    run("no headers", "--XyZ\r\n\r\nx\r\n--XyZ--", "!E22");
    run("not form-data", "--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\n\r\n--XyZ--",
        "!E22");
    run("no name", "--XyZ\r\n" CD "filename=\"a\"\r\n\r\n\r\n--XyZ--", "!E22");
    run("unterminated quote", "--XyZ\r\n" CD "name=\"a\r\n\r\n\r\n--XyZ--", "!E22");
    run("bare LF in headers", "--XyZ\r\n" CD "name=a\nX: y\r\n\r\n\r\n--XyZ--", "!E22");
    run("folded header", "--XyZ\r\n" CD "name=a\r\n b\r\n\r\n\r\n--XyZ--", "!E22");
    run("no colon", "--XyZ\r\nnonsense\r\n" CD "name=a\r\n\r\n\r\n--XyZ--", "!E22");
    run("two dispositions", "--XyZ\r\n" CD "name=a\r\n" CD "name=b\r\n\r\n\r\n--XyZ--", "!E22");
    run("bad filename*", "--XyZ\r\n" CD "name=a; filename*=UTF-8''%zz\r\n\r\n\r\n--XyZ--", "!E22");
    run("control character", "--XyZ\r\n" CD "name=\"a\x01\"\r\n\r\n\r\n--XyZ--", "!E22");
}

static void test_limits(void **state) {
    (void)state;
    const char *two =
        "--XyZ\r\n" CD "name=a\r\n\r\n12345\r\n--XyZ\r\n" CD "name=b\r\n\r\n6\r\n--XyZ--\r\n";
    crest__mp_limits_t lim = {0};
    lim.max_parts = 2;
    run_lim("two parts of 2", two, strlen(two), "[a|-|]12345.[b|-|]6.$", &lim);
    lim.max_parts = 1;
    run_lim("two parts of 1", two, strlen(two), "[a|-|]12345.!E7", &lim);
    lim = (crest__mp_limits_t){0};
    lim.max_part_size = 5;
    run_lim("part of 5", two, strlen(two), "[a|-|]12345.[b|-|]6.$", &lim);
    lim.max_part_size = 0;
    lim.max_total = strlen(two);
    run_lim("total exact", two, strlen(two), "[a|-|]12345.[b|-|]6.$", &lim);
    lim.max_total = strlen(two) - 1;
    run_lim("total one over", two, strlen(two), "[a|-|]12345.[b|-|]6.$!E7", &lim);
    lim = (crest__mp_limits_t){0};
    lim.max_header_bytes = (uint32_t)strlen(CD "name=a\r\n\r\n");
    run_lim("headers exact", two, strlen(two), "[a|-|]12345.[b|-|]6.$", &lim);
    lim.max_header_bytes--;
    run_lim("headers one over", two, strlen(two), "!E7", &lim);

    /* Over max_part_size: an error whatever the split (how much of the part came out before it
     * depends on the split, so only the verdict is compared). */
    lim = (crest__mp_limits_t){0};
    lim.max_part_size = 4;
    for (size_t k = 0; k <= strlen(two); k++) {
        crest__mp_t mp;
        desc_t *d = calloc(1, sizeof(*d));
        assert_int_equal(crest__mp_init(&mp, "XyZ", 3, &lim), 0);
        int failed = feed(&mp, d, two, k);
        if (!failed)
            failed = feed(&mp, d, two + k, strlen(two) - k);
        crest__mp_free(&mp);
        assert_true(failed);
        assert_true(d->n >= 3 && memcmp(d->out + d->n - 3, "!E7", 3) == 0);
        free(d);
    }
}

/* A large file part whose data has many CRs and near-boundaries, at sampled splits. */
static void test_large(void **state) {
    (void)state;
    size_t n = 200000;
    char *body = malloc(n + 200), *want = malloc(n + 200);
    assert_non_null(body);
    assert_non_null(want);
    size_t len = 0;
    len += (size_t)sprintf(body, "--XyZ\r\n" CD "name=f; filename=\"big.bin\"\r\n\r\n");
    size_t data_at = len;
    for (size_t i = 0; i < n; i++)
        body[len++] = (char)"\r\n--XyAbc\x00\xff"[(i * 7 + i / 13) % 11];
    memcpy(want, "[f|big.bin|]", 12);
    memcpy(want + 12, body + data_at, n);
    len += (size_t)sprintf(body + len, "\r\n--XyZ--\r\n");
    memcpy(want + 12 + n, ".$", 3);
    /* want holds NULs: compare through run_lim's memcmp with an explicit length. */
    static desc_t d;
    crest__mp_t mp;
    d.n = 0;
    assert_int_equal(crest__mp_init(&mp, "XyZ", 3, NULL), 0);
    finish(&mp, &d, feed(&mp, &d, body, len));
    assert_int_equal(d.n, 12 + n + 2);
    assert_memory_equal(d.out, want, d.n);
    for (size_t k = 0; k <= len; k += 997) {
        d.n = 0;
        assert_int_equal(crest__mp_init(&mp, "XyZ", 3, NULL), 0);
        for (size_t pos = 0; pos < len;) {
            size_t piece = pos + k + 1 < len ? k + 1 : len - pos;
            assert_false(feed(&mp, &d, body + pos, piece));
            pos += piece;
        }
        finish(&mp, &d, 0);
        assert_int_equal(d.n, 12 + n + 2);
        assert_memory_equal(d.out, want, d.n);
    }
    free(body);
    free(want);
}

static int boundary(const char *ct, char *out) {
    return crest__mp_boundary((crest_str_t){ct, strlen(ct)}, out, CREST__MP_BOUNDARY_MAX + 1);
}

static void test_boundary(void **state) {
    (void)state;
    char b[CREST__MP_BOUNDARY_MAX + 1];
    /* No Content-Type at all (a NULL view): refused, with no arithmetic on the NULL pointer. */
    assert_int_equal(crest__mp_boundary((crest_str_t){NULL, 0}, b, sizeof(b)), CREST_EINVAL);
    assert_int_equal(boundary("multipart/form-data; boundary=abc", b), 3);
    assert_string_equal(b, "abc");
    assert_int_equal(boundary("Multipart/Form-Data;charset=utf-8;BOUNDARY=\"a b:c\"", b), 5);
    assert_string_equal(b, "a b:c");
    assert_int_equal(boundary("  multipart/form-data ; boundary=----WebKitFormBoundary7MA4YWxk", b),
                     (int)strlen("----WebKitFormBoundary7MA4YWxk"));
    assert_string_equal(b, "----WebKitFormBoundary7MA4YWxk");
    assert_int_equal(boundary("multipart/form-data; boundary=------------------------"
                              "4f1c0e2a9b7d3e5f",
                              b),
                     40);
    assert_int_equal(boundary("multipart/mixed; boundary=abc", b), CREST_EINVAL);
    assert_int_equal(boundary("text/plain", b), CREST_EINVAL);
    assert_int_equal(boundary("multipart/form-data", b), CREST_EINVAL);
    assert_int_equal(boundary("multipart/form-data; boundary=", b), CREST_EINVAL);
    assert_int_equal(boundary("multipart/form-data; boundary=\"\"", b), CREST_EINVAL);
    assert_int_equal(boundary("multipart/form-data; boundary=\"ab \"", b), CREST_EINVAL);
    assert_int_equal(boundary("multipart/form-data; boundary=\"a\"b\"", b), 1);
    assert_int_equal(boundary("multipart/form-data; boundary=\"a\rb\"", b), CREST_EINVAL);
    assert_int_equal(boundary("multipart/form-data; boundary=\"abc", b), CREST_EINVAL);
    char seventy[128] = "multipart/form-data; boundary=";
    memset(seventy + strlen(seventy), 'x', 70);
    assert_int_equal(boundary(seventy, b), 70);
    strcat(seventy, "x");
    assert_int_equal(boundary(seventy, b), CREST_EINVAL);
    crest__mp_t mp;
    assert_int_equal(crest__mp_init(&mp, "", 0, NULL), CREST_EINVAL);
    assert_int_equal(crest__mp_init(&mp, "a\rb", 3, NULL), CREST_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parts),    cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_limits),   cmocka_unit_test(test_large),
        cmocka_unit_test(test_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
