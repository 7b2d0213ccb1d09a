/* Unit tests for the WebSocket frame parser and writer (src/codec/ws_frame.c).
 *
 * Every input is parsed whole, one byte at a time (each byte in its own heap block, so that
 * AddressSanitizer catches a read past it) and split in two at every offset; each way must give
 * the same frames (opcode, FIN, payload) and the same verdict. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/ws_frame.h"

/* ---- building client frames ---- */

typedef struct {
    uint8_t b[1 << 18];
    size_t n;
} wire_t;

static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Append a frame: b0 is the first header byte (FIN, RSV, opcode) as it should appear. */
static void frame_raw(wire_t *w, uint8_t b0, const void *payload, size_t len, int masked) {
    size_t h =
        crest__ws_header(w->b + w->n, b0 & 0x0F, b0 >> 7, (b0 >> 6) & 1, len, masked ? key : NULL);
    w->b[w->n] = b0;
    w->n += h;
    memcpy(w->b + w->n, payload, len);
    if (masked)
        crest__ws_mask(w->b + w->n, len, key, 0);
    w->n += len;
}

static void frame(wire_t *w, int opcode, int fin, const char *payload) {
    frame_raw(w, (uint8_t)((fin ? 0x80 : 0) | opcode), payload, strlen(payload), 1);
}

/* ---- parsing into a description ---- */

typedef struct {
    char out[1 << 19]; /* "T1:Hello|P1:|C1:lo|" ; payload bytes as is; "E1002" at an error */
    size_t n;
} desc_t;

static void put(desc_t *d, const void *p, size_t n) {
    assert_true(d->n + n < sizeof(d->out));
    memcpy(d->out + d->n, p, n);
    d->n += n;
}

static const char opch[16] = "CTB?????XPA?????";

/* Feed p[0..n) (a copy in its own block); returns nonzero after an error. */
static int feed(crest__ws_parser_t *ps, desc_t *d, const uint8_t *p, size_t n) {
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, p, n);
    size_t pos = 0;
    int err = 0;
    for (;;) {
        crest__ws_chunk_t ch;
        size_t used = 0;
        int rc = crest__ws_parse(ps, copy + pos, n - pos, &used, &ch);
        if (rc < 0) {
            char e[16];
            snprintf(e, sizeof(e), "E%d", -rc);
            put(d, e, strlen(e));
            err = 1;
            break;
        }
        assert_true(used <= n - pos);
        pos += used;
        if (rc == 0) {
            assert_int_equal(pos, n);
            break;
        }
        assert_true(ch.data >= copy && ch.data + ch.len <= copy + n);
        if (ch.first) {
            char h[4] = {opch[ch.opcode], (char)('0' + ch.fin), ':', 0};
            put(d, h, 3);
            if (ch.opcode == CREST__WS_CONT)
                assert_true(ch.msg_opcode == CREST__WS_TEXT || ch.msg_opcode == CREST__WS_BINARY);
        }
        put(d, ch.data, ch.len);
        if (ch.last)
            put(d, "|", 1);
    }
    free(copy);
    return err;
}

static void run_case(const char *name, const wire_t *w, const char *want, int allow_rsv1,
                     uint64_t max) {
    static desc_t whole, other;
    crest__ws_parser_t ps;
    whole.n = 0;
    crest__ws_parser_init(&ps, max, allow_rsv1, 1);
    feed(&ps, &whole, w->b, w->n);
    if (whole.n != strlen(want) || memcmp(whole.out, want, whole.n) != 0)
        fail_msg("%s: whole: want '%s' got '%.*s'", name, want,
                 (int)(whole.n > 200 ? 200 : whole.n), whole.out);
    /* Byte by byte. */
    other.n = 0;
    crest__ws_parser_init(&ps, max, allow_rsv1, 1);
    for (size_t i = 0; i < w->n; i++)
        if (feed(&ps, &other, w->b + i, 1))
            break;
    if (other.n != whole.n || memcmp(other.out, whole.out, whole.n) != 0)
        fail_msg("%s: bytewise differs: '%.*s'", name, (int)(other.n > 200 ? 200 : other.n),
                 other.out);
    /* Split at every offset (inputs up to a few KiB; the long ones at a sample of offsets). */
    size_t step = w->n > 4096 ? w->n / 97 : 1;
    for (size_t k = 0; k <= w->n; k += step) {
        other.n = 0;
        crest__ws_parser_init(&ps, max, allow_rsv1, 1);
        if (!feed(&ps, &other, w->b, k))
            feed(&ps, &other, w->b + k, w->n - k);
        if (other.n != whole.n || memcmp(other.out, whole.out, whole.n) != 0)
            fail_msg("%s: split at %zu differs: '%.*s'", name, k,
                     (int)(other.n > 200 ? 200 : other.n), other.out);
    }
}

static wire_t w;

static void test_simple(void **state) {
    (void)state;
    w.n = 0;
    frame(&w, CREST__WS_TEXT, 1, "Hello");
    run_case("text", &w, "T1:Hello|", 0, 1 << 20);
    w.n = 0;
    frame(&w, CREST__WS_BINARY, 1, "");
    run_case("empty binary", &w, "B1:|", 0, 1 << 20);
    w.n = 0;
    frame(&w, CREST__WS_TEXT, 1, "a");
    frame(&w, CREST__WS_PING, 1, "ping");
    frame(&w, CREST__WS_BINARY, 1, "b");
    frame(&w, CREST__WS_PONG, 1, "");
    frame(&w, CREST__WS_CLOSE, 1, "\x03\xe8");
    run_case("several frames", &w, "T1:a|P1:ping|B1:b|A1:|X1:\x03\xe8|", 0, 1 << 20);
}

static void test_fragmented(void **state) {
    (void)state;
    w.n = 0;
    frame(&w, CREST__WS_TEXT, 0, "Hel");
    frame(&w, CREST__WS_PING, 1, "p");
    frame(&w, CREST__WS_CONT, 0, "");
    frame(&w, CREST__WS_PONG, 1, "q");
    frame(&w, CREST__WS_CONT, 1, "lo");
    frame(&w, CREST__WS_BINARY, 1, "x");
    run_case("fragments with control frames between", &w, "T0:Hel|P1:p|C0:|A1:q|C1:lo|B1:x|", 0,
             1 << 20);
}

static void test_lengths(void **state) {
    (void)state;
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 100000};
    static char payload[100001], want[100100];
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = lens[i];
        for (size_t j = 0; j < n; j++)
            payload[j] = (char)('a' + j % 26);
        w.n = 0;
        frame_raw(&w, 0x82, payload, n, 1);
        memcpy(want, "B1:", 3);
        memcpy(want + 3, payload, n);
        memcpy(want + 3 + n, "|", 2);
        char name[32];
        snprintf(name, sizeof(name), "length %zu", n);
        run_case(name, &w, want, 0, 1 << 20);
    }
}

static void test_errors(void **state) {
    (void)state;
    struct {
        const char *name;
        uint8_t b0;
        const char *payload;
        int masked;
        const char *want;
    } cases[] = {
        {"unmasked", 0x81, "hi", 0, "E1002"},      {"RSV2", 0xA1, "hi", 1, "E1002"},
        {"RSV3", 0x91, "hi", 1, "E1002"},          {"RSV1 without deflate", 0xC1, "hi", 1, "E1002"},
        {"opcode 3", 0x83, "", 1, "E1002"},        {"opcode 7", 0x87, "", 1, "E1002"},
        {"opcode 0xB", 0x8B, "", 1, "E1002"},      {"opcode 0xF", 0x8F, "", 1, "E1002"},
        {"fragmented ping", 0x09, "", 1, "E1002"}, {"continuation first", 0x80, "x", 1, "E1002"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        w.n = 0;
        frame_raw(&w, cases[i].b0, cases[i].payload, strlen(cases[i].payload), cases[i].masked);
        run_case(cases[i].name, &w, cases[i].want, 0, 1 << 20);
    }
    static char big[126];
    memset(big, 'p', sizeof(big));
    w.n = 0;
    frame_raw(&w, 0x89, big, 126, 1);
    run_case("ping of 126 bytes", &w, "E1002", 0, 1 << 20);
    w.n = 0;
    frame(&w, CREST__WS_TEXT, 0, "a");
    frame(&w, CREST__WS_TEXT, 1, "b");
    run_case("new message inside a fragmented one", &w, "T0:a|E1002", 0, 1 << 20);
    w.n = 0;
    frame(&w, CREST__WS_TEXT, 0, "a");
    frame_raw(&w, 0xC0, "b", 1, 1);
    run_case("RSV1 on a continuation", &w, "T0:a|E1002", 1, 1 << 20);
    w.n = 0;
    frame_raw(&w, 0xC1, "zz", 2, 1);
    run_case("RSV1 with deflate", &w, "T1:zz|", 1, 1 << 20);
    w.n = 0;
    frame_raw(&w, 0x81, big, 126, 1);
    run_case("frame over the limit", &w, "E1009", 0, 100);
    /* A 64-bit length with the top bit set. */
    static const uint8_t huge[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    w.n = sizeof(huge);
    memcpy(w.b, huge, sizeof(huge));
    run_case("64-bit length with the top bit", &w, "E1002", 0, UINT64_MAX);
}

static void test_writer(void **state) {
    (void)state;
    uint8_t h[CREST__WS_MAX_HEADER];
    assert_int_equal(crest__ws_header(h, CREST__WS_TEXT, 1, 0, 5, NULL), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 5);
    assert_int_equal(crest__ws_header(h, CREST__WS_BINARY, 0, 1, 126, NULL), 4);
    assert_int_equal(h[0], 0x42);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2], 0);
    assert_int_equal(h[3], 126);
    assert_int_equal(crest__ws_header(h, CREST__WS_BINARY, 1, 0, 65536, NULL), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7], 1);
    assert_int_equal(crest__ws_header(h, CREST__WS_PING, 1, 0, 0, key), 6);
    assert_int_equal(h[1], 0x80);
    assert_memory_equal(h + 2, key, 4);
    /* Server frames parse on the client side (no mask expected). */
    static const size_t lens[] = {0, 125, 126, 65535, 65536};
    static uint8_t buf[70000];
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        size_t n = crest__ws_header(buf, CREST__WS_BINARY, 1, 0, lens[i], NULL);
        memset(buf + n, 'z', lens[i]);
        crest__ws_parser_t ps;
        crest__ws_parser_init(&ps, UINT64_MAX, 0, 0);
        crest__ws_chunk_t ch;
        size_t used;
        assert_int_equal(crest__ws_parse(&ps, buf, n + lens[i], &used, &ch), 1);
        assert_int_equal(used, n + lens[i]);
        assert_int_equal(ch.len, lens[i]);
        assert_true(ch.first && ch.last && ch.fin);
    }
}

static void test_mask(void **state) {
    (void)state;
    uint8_t a[100], b[100];
    for (int i = 0; i < 100; i++)
        a[i] = b[i] = (uint8_t)(i * 7);
    for (uint64_t off = 0; off < 8; off++) {
        memcpy(b, a, sizeof(a));
        crest__ws_mask(b + 3, 90, key, off);
        for (int i = 0; i < 90; i++)
            assert_int_equal(b[3 + i], a[3 + i] ^ key[(off + (uint64_t)i) & 3]);
    }
}

static void test_close_payload(void **state) {
    (void)state;
    int code;
    const char *reason;
    size_t rl;
    assert_int_equal(crest__ws_close_payload((const uint8_t *)"", 0, &code, &reason, &rl), 0);
    assert_int_equal(code, 1005);
    assert_int_equal(crest__ws_close_payload((const uint8_t *)"\x03", 1, &code, &reason, &rl),
                     -1002);
    static const int good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999};
    static const int bad[] = {0, 999, 1004, 1005, 1006, 1015, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint8_t p[4] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i], 'o', 'k'};
        assert_int_equal(crest__ws_close_payload(p, 4, &code, &reason, &rl), 0);
        assert_int_equal(code, good[i]);
        assert_int_equal(rl, 2);
        assert_memory_equal(reason, "ok", 2);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t p[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        if (crest__ws_close_payload(p, 2, &code, &reason, &rl) != -1002)
            fail_msg("close code %d accepted", bad[i]);
    }
    assert_int_equal(
        crest__ws_close_payload((const uint8_t *)"\x03\xe8\xff", 3, &code, &reason, &rl), -1007);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),        cmocka_unit_test(test_fragmented),
        cmocka_unit_test(test_lengths),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_writer),        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_close_payload),
    };
    return cmocka_run_group_tests_name("ws_frame", tests, NULL, NULL);
}
