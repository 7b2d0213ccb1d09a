/* The RESP2 reader and command writer (src/codec/resp.c): every input whole, one byte at a time
 * and split at every offset, each piece in a heap block of exactly its size (AddressSanitizer
 * sees an overread), with the same replies every way; bulks over the limit skipped, not held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/resp.h"

/* Replies read from `in` cut into pieces at `cuts` (offsets, ascending, ncuts of them), written
 * to out as text, one reply a line: "S:text" "E:text" "I:num" "B:text" "R:len" (refused bulk)
 * "N" (nil), an array as "A[...;...]". Returns 0, or the reader's error. */
static int read_all(const char *in, size_t len, const size_t *cuts, int ncuts, size_t max_bulk,
                    char *out, size_t cap) {
    crest__resp_t r;
    crest__resp_init(&r, max_bulk, 64);
    size_t at = 0, o = 0;
    out[0] = '\0';
    int rc = 0;
    for (int k = 0; k <= ncuts && rc >= 0; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t n = end - at;
        char *piece = malloc(n ? n : 1);
        memcpy(piece, in + at, n);
        size_t off = 0;
        while (off < n || (n == 0 && off == 0)) {
            crest__resp_reply_t rep;
            size_t used = 0;
            rc = crest__resp_read(&r, piece + off, n - off, &used, &rep);
            if (rc < 0)
                break;
            off += used;
            if (rc == 0)
                break;
            int count = rep.type == CREST__RESP_ARRAY               ? rep.n
                        : rep.type == CREST__RESP_NIL && rep.n == 0 ? 0
                                                                    : 1;
            if (rep.type == CREST__RESP_ARRAY)
                o += (size_t)snprintf(out + o, cap - o, "A[");
            if (rep.type == CREST__RESP_NIL && rep.n == 0)
                o += (size_t)snprintf(out + o, cap - o, "N");
            for (int i = 0; i < count; i++) {
                const crest__resp_val_t *v = &rep.elem[i];
                if (i > 0)
                    o += (size_t)snprintf(out + o, cap - o, ";");
                switch (v->type) {
                case CREST__RESP_SIMPLE:
                    o += (size_t)snprintf(out + o, cap - o, "S:%.*s", (int)v->len, v->ptr);
                    break;
                case CREST__RESP_ERROR:
                    o += (size_t)snprintf(out + o, cap - o, "E:%.*s", (int)v->len, v->ptr);
                    break;
                case CREST__RESP_INT:
                    o += (size_t)snprintf(out + o, cap - o, "I:%lld", (long long)v->num);
                    break;
                case CREST__RESP_NIL:
                    o += (size_t)snprintf(out + o, cap - o, "N");
                    break;
                default:
                    if (v->refused)
                        o += (size_t)snprintf(out + o, cap - o, "R:%zu", v->len);
                    else
                        o += (size_t)snprintf(out + o, cap - o, "B:%.*s", (int)v->len, v->ptr);
                }
            }
            if (rep.type == CREST__RESP_ARRAY)
                o += (size_t)snprintf(out + o, cap - o, "]");
            o += (size_t)snprintf(out + o, cap - o, "\n");
            if (n == 0)
                break;
        }
        free(piece);
        at = end;
    }
    crest__resp_free(&r);
    return rc < 0 ? rc : 0;
}

/* `in` gives `want` whole, byte by byte, and split in two at every offset. */
static void expect(const char *in, size_t max_bulk, const char *want) {
    size_t len = strlen(in);
    char got[2048];
    assert_int_equal(read_all(in, len, NULL, 0, max_bulk, got, sizeof(got)), 0);
    assert_string_equal(got, want);
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    assert_int_equal(
        read_all(in, len, cuts, len > 0 ? (int)len - 1 : 0, max_bulk, got, sizeof(got)), 0);
    assert_string_equal(got, want);
    for (size_t k = 0; k <= len; k++) {
        cuts[0] = k;
        assert_int_equal(read_all(in, len, cuts, 1, max_bulk, got, sizeof(got)), 0);
        assert_string_equal(got, want);
    }
    free(cuts);
}

static void expect_error(const char *in) {
    char got[512];
    size_t len = strlen(in);
    assert_int_equal(read_all(in, len, NULL, 0, 16, got, sizeof(got)), CREST_EINVAL);
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    assert_int_equal(read_all(in, len, cuts, len > 0 ? (int)len - 1 : 0, 16, got, sizeof(got)),
                     CREST_EINVAL);
    free(cuts);
}

static void test_scalars(void **state) {
    (void)state;
    expect("+OK\r\n", 16, "S:OK\n");
    expect("-ERR wrong type\r\n", 16, "E:ERR wrong type\n");
    expect(":42\r\n:-7\r\n:0\r\n", 16, "I:42\nI:-7\nI:0\n");
    expect(":9223372036854775807\r\n:-9223372036854775808\r\n", 16,
           "I:9223372036854775807\nI:-9223372036854775808\n");
    expect("$5\r\nhello\r\n$0\r\n\r\n$-1\r\n", 16, "B:hello\nB:\nN\n");
    expect("$4\r\na\r\nb\r\n", 16, "B:a\r\nb\n"); /* a bulk holds any bytes */
    expect("+\r\n", 16, "S:\n");
}

static void test_arrays(void **state) {
    (void)state;
    expect("*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\nhello\r\n", 16,
           "A[B:message;B:room;B:hello]\n");
    expect("*3\r\n$9\r\nsubscribe\r\n$4\r\nroom\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$4\r\n"
           "room\r\n:0\r\n",
           16, "A[B:subscribe;B:room;I:1]\nA[B:unsubscribe;B:room;I:0]\n");
    expect("*0\r\n*-1\r\n", 16, "A[]\nN\n");
    expect("*2\r\n$-1\r\n+x\r\n", 16, "A[N;S:x]\n");
}

static void test_refused(void **state) {
    (void)state;
    /* A payload over the limit is skipped as it streams past; the reply still comes, marked, and
     * the next one is read as usual. */
    expect("*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$20\r\n01234567890123456789\r\n:5\r\n", 8,
           "A[B:message;B:room;R:20]\nI:5\n");
    expect("$9\r\n123456789\r\n$8\r\n12345678\r\n", 8, "R:9\nB:12345678\n");
}

static void test_held_bytes(void **state) {
    (void)state;
    /* A refused bulk of 1 MiB arriving in 1 KiB pieces never grows the buffer. */
    size_t big = 1 << 20;
    char head[32];
    int h = snprintf(head, sizeof(head), "$%zu\r\n", big);
    crest__resp_t r;
    crest__resp_init(&r, 1024, 64);
    crest__resp_reply_t rep;
    size_t used;
    assert_int_equal(crest__resp_read(&r, head, (size_t)h, &used, &rep), 0);
    char chunk[1024];
    memset(chunk, 'x', sizeof(chunk));
    for (size_t sent = 0; sent < big; sent += sizeof(chunk)) {
        assert_int_equal(crest__resp_read(&r, chunk, sizeof(chunk), &used, &rep), 0);
        assert_true(r.buf.cap <= 64);
    }
    assert_int_equal(crest__resp_read(&r, "\r\n", 2, &used, &rep), 1);
    assert_int_equal(rep.elem[0].refused, 1);
    assert_int_equal(rep.elem[0].len, big);
    crest__resp_free(&r);
}

static void test_errors(void **state) {
    (void)state;
    expect_error("x");
    expect_error("$-2\r\n");
    expect_error(":1a\r\n");
    expect_error(":\r\n");
    expect_error(":-\r\n");
    expect_error(":99999999999999999999\r\n");
    expect_error(":9223372036854775808\r\n");
    expect_error("*9\r\n");
    expect_error("*1\r\n*1\r\n:1\r\n");
    expect_error("+a\nb\r\n");
    expect_error("+ab\rc\r\n");
    expect_error("$3\r\nabcX\r\n");
    expect_error("$3\r\nabc\rX");
    expect_error("+0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
}

static void test_command(void **state) {
    (void)state;
    crest_buf_t b = CREST_BUF_INIT;
    const char *argv[] = {"PUBLISH", "room", "a\r\nb"};
    size_t lens[] = {7, 4, 4};
    assert_int_equal(crest__resp_command(&b, 3, argv, lens), 0);
    crest_buf_append(&b, "", 1);
    assert_string_equal(b.ptr, "*3\r\n$7\r\nPUBLISH\r\n$4\r\nroom\r\n$4\r\na\r\nb\r\n");
    crest_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars), cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_refused), cmocka_unit_test(test_held_bytes),
        cmocka_unit_test(test_errors),  cmocka_unit_test(test_command),
    };
    return cmocka_run_group_tests_name("resp", tests, NULL, NULL);
}
