/* The Engine.IO / Socket.IO packet codec (src/codec/eio.c). Every input sits in a heap block of
 * exactly its size, so that AddressSanitizer catches a read past it. A polling payload is whole
 * by design (one HTTP body), so instead of cuts every prefix of a payload is read too: it must
 * give a prefix of the packets, the last one possibly cut short, or an error, and never read
 * outside the block. The expected bytes of payloads and Socket.IO packets were printed by npm
 * engine.io-parser 5.2.3 (encodePayload) and socket.io-parser 4.2.7 (Encoder); base64 is checked
 * against RFC 4648's vectors and OpenSSL's EVP_EncodeBlock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "codec/eio.h"

/* A heap copy of s[0..n) in a block of exactly n bytes (one byte when n is 0, never read). */
static char *heap(const void *s, size_t n) {
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    if (n)
        memcpy(p, s, n);
    return p;
}

/* Bytes that repeat no pattern a bug could hide behind. */
static void fill(uint8_t *b, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (uint8_t)(seed >> 16);
    }
}

/* ---- base64 ---- */

static void test_b64_rfc4648(void **state) {
    (void)state;
    static const char *const vec[][2] = {{"", ""},
                                         {"f", "Zg=="},
                                         {"fo", "Zm8="},
                                         {"foo", "Zm9v"},
                                         {"foob", "Zm9vYg=="},
                                         {"fooba", "Zm9vYmE="},
                                         {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        size_t n = strlen(vec[i][0]), e = strlen(vec[i][1]);
        assert_int_equal(CREST__B64_LEN(n), e);
        char *in = heap(vec[i][0], n);
        char *out = malloc(e ? e : 1);
        assert_int_equal(crest__b64_encode(in, n, out), e);
        assert_memory_equal(out, vec[i][1], e);
        free(in);
        /* decoded into a separate block of exactly the decoded size, then in place */
        char *enc = heap(vec[i][1], e);
        uint8_t *dec = malloc(n ? n : 1);
        size_t dlen = 99;
        assert_int_equal(crest__b64_decode(enc, e, dec, &dlen), 0);
        assert_int_equal(dlen, n);
        assert_memory_equal(dec, vec[i][0], n);
        dlen = 99;
        assert_int_equal(crest__b64_decode(enc, e, (uint8_t *)enc, &dlen), 0);
        assert_int_equal(dlen, n);
        assert_memory_equal(enc, vec[i][0], n);
        free(dec);
        free(enc);
        free(out);
    }
}

/* Every length 0..64, three kinds of bytes: the encoding is OpenSSL's, and it decodes back both
 * into another block and over itself. */
static void test_b64_round_trip(void **state) {
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        for (size_t n = 0; n <= 64; n++) {
            uint8_t raw[64];
            if (kind == 0)
                fill(raw, n, (uint32_t)n + 1);
            else
                memset(raw, kind == 1 ? 0x00 : 0xff, n);
            char *in = heap(raw, n);
            size_t e = CREST__B64_LEN(n);
            char *enc = malloc(e ? e : 1);
            assert_int_equal(crest__b64_encode(in, n, enc), e);
            unsigned char ref[CREST__B64_LEN(64) + 1];
            assert_int_equal(EVP_EncodeBlock(ref, raw, (int)n), (int)e);
            assert_memory_equal(enc, ref, e);
            uint8_t *dec = malloc(n ? n : 1);
            size_t dlen = 0;
            assert_int_equal(crest__b64_decode(enc, e, dec, &dlen), 0);
            assert_int_equal(dlen, n);
            assert_memory_equal(dec, raw, n);
            assert_int_equal(crest__b64_decode(enc, e, (uint8_t *)enc, &dlen), 0);
            assert_int_equal(dlen, n);
            assert_memory_equal(enc, raw, n);
            free(dec);
            free(enc);
            free(in);
        }
    }
}

static int alphabet_value(int c) {
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *f = c ? strchr(a, c) : NULL;
    return f ? (int)(f - a) : -1;
}

static int b64_verdict(const char *s, size_t n) {
    char *p = heap(s, n);
    uint8_t out[64];
    size_t len;
    int rc = crest__b64_decode(p, n, out, &len);
    free(p);
    return rc;
}

static void test_b64_reject(void **state) {
    (void)state;
    /* every byte value in every position of a group: accepted exactly when in the alphabet */
    for (int c = 0; c < 256; c++) {
        for (int pos = 0; pos < 4; pos++) {
            char s[8] = "QUIAQUIA"; /* "QUI=" is a valid last group */
            s[pos] = (char)c;
            assert_int_equal(b64_verdict(s, 8), alphabet_value(c) >= 0 ? 0 : CREST_EINVAL);
            s[pos + 4] = (char)c; /* the last group, where '=' may pad position 2 and 3 */
            int ok = alphabet_value(c) >= 0 || (c == '=' && pos == 3);
            assert_int_equal(b64_verdict(s + 4, 4), ok ? 0 : CREST_EINVAL);
        }
    }
    /* the bits a '=' pads must be zero: "x?==" keeps 2 bits of '?', "xx?=" 4 of them */
    for (int c = 0; c < 256; c++) {
        int v = alphabet_value(c);
        if (v < 0)
            continue;
        char two[4] = {'Q', (char)c, '=', '='}, one[4] = {'Q', 'U', (char)c, '='};
        assert_int_equal(b64_verdict(two, 4), (v & 0x0f) ? CREST_EINVAL : 0);
        assert_int_equal(b64_verdict(one, 4), (v & 0x03) ? CREST_EINVAL : 0);
    }
    static const char *const bad[] = {
        "Q",        "QU",       "QUJ",      "QUJDQ",    "QUJDQU=", /* length not 4k */
        "====",     "Q===",     "QQ=Q",     "=QQQ",     "Q=QQ",    /* misplaced padding */
        "QQ==QUJD", "QUI=QUJD", "QUJD====", "QUJD=",    "QUJ D",   /* padding before the end */
        "QUJ\n",    " QUJ",     "QU-_",     "QUJDQUJ\0" /* other alphabets, whitespace, NUL */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = strlen(bad[i]);
        if (i == sizeof(bad) / sizeof(bad[0]) - 1)
            n = 8; /* the NUL counts */
        assert_int_equal(b64_verdict(bad[i], n), CREST_EINVAL);
    }
    /* the whole alphabet decodes and encodes back */
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t out[48];
    size_t len;
    assert_int_equal(crest__b64_decode(a, 64, out, &len), 0);
    assert_int_equal(len, 48);
    char back[64];
    assert_int_equal(crest__b64_encode(out, 48, back), 64);
    assert_memory_equal(back, a, 64);
}

/* ---- Engine.IO payloads ---- */

typedef struct {
    int type;
    int binary;
    const char *data;
    size_t len;
} want_t;

/* What engine.io-parser's encodePayload wrote for: message "hello", message <01 02 03 04>, ping,
 * message <> (empty binary), noop, message <1e ff> (a separator byte inside binary data). */
static const char node_payload[] = "4hello\x1e"
                                   "bAQIDBA==\x1e"
                                   "2\x1e"
                                   "b\x1e"
                                   "6\x1e"
                                   "bHv8=";
static const want_t node_packets[] = {{4, 0, "hello", 5}, {4, 1, "\x01\x02\x03\x04", 4},
                                      {2, 0, "", 0},      {4, 1, "", 0},
                                      {6, 0, "", 0},      {4, 1, "\x1e\xff", 2}};

/* Read p[0..n) in a block of exactly n bytes into got (up to max packets, data copied into
 * store). Returns the last result: 0 at a clean end or CREST_EINVAL; *count packets read. */
static int read_payload(const char *p, size_t n, want_t *got, char (*store)[64], int max,
                        int *count) {
    char *b = heap(p, n);
    size_t off = 0;
    int rc;
    *count = 0;
    for (;;) {
        crest__eio_packet_t pkt;
        size_t before = off;
        rc = crest__eio_next(b, n, &off, &pkt);
        if (rc <= 0) {
            assert_int_equal(off, before); /* an error or the end leaves *off where it was */
            break;
        }
        assert_true(off > before && off <= n);
        assert_true(pkt.data >= b && pkt.data + pkt.len <= b + n);
        assert_true(*count < max);
        assert_true(pkt.len <= 64);
        memcpy(store[*count], pkt.data, pkt.len);
        got[*count] = (want_t){pkt.type, pkt.binary, store[*count], pkt.len};
        ++*count;
    }
    /* the end is sticky: asking again gives the same answer */
    if (rc == 0) {
        crest__eio_packet_t pkt;
        assert_int_equal(crest__eio_next(b, n, &off, &pkt), 0);
    }
    free(b);
    return rc;
}

static void test_eio_payload(void **state) {
    (void)state;
    want_t got[8];
    char store[8][64];
    int count;
    assert_int_equal(read_payload(node_payload, sizeof(node_payload) - 1, got, store, 8, &count),
                     0);
    assert_int_equal(count, 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(got[i].type, node_packets[i].type);
        assert_int_equal(got[i].binary, node_packets[i].binary);
        assert_int_equal(got[i].len, node_packets[i].len);
        assert_memory_equal(got[i].data, node_packets[i].data, got[i].len);
    }
    /* single packets, every type, with and without data */
    for (int t = 0; t <= 6; t++) {
        char one[8] = {(char)('0' + t), 'x', 'y'};
        for (size_t n = 1; n <= 3; n++) {
            assert_int_equal(read_payload(one, n, got, store, 8, &count), 0);
            assert_int_equal(count, 1);
            assert_int_equal(got[0].type, t);
            assert_int_equal(got[0].binary, 0);
            assert_int_equal(got[0].len, n - 1);
            assert_memory_equal(got[0].data, "xy", n - 1);
        }
    }
    /* the handshake answer, data with bytes that are not text: only 0x1e separates */
    const char hs[] = "0{\"sid\":\"x\"}\x1e"
                      "1\x1e"
                      "4\x00\xff\r\n";
    assert_int_equal(read_payload(hs, sizeof(hs) - 1, got, store, 8, &count), 0);
    assert_int_equal(count, 3);
    assert_int_equal(got[0].type, CREST__EIO_OPEN);
    assert_int_equal(got[0].len, 11);
    assert_memory_equal(got[0].data, "{\"sid\":\"x\"}", 11);
    assert_int_equal(got[1].type, CREST__EIO_CLOSE);
    assert_int_equal(got[1].len, 0);
    assert_int_equal(got[2].type, CREST__EIO_MESSAGE);
    assert_int_equal(got[2].len, 4);
    assert_memory_equal(got[2].data, "\x00\xff\r\n", 4);
}

/* Every prefix of the payload: the packets read are the payload's first ones, the last possibly
 * cut short (text shorter, base64 cut at a group boundary), then the end or an error. */
static void test_eio_payload_prefixes(void **state) {
    (void)state;
    size_t n = sizeof(node_payload) - 1;
    for (size_t m = 0; m <= n; m++) {
        want_t got[8];
        char store[8][64];
        int count;
        int rc = read_payload(node_payload, m, got, store, 8, &count);
        assert_true(rc == 0 || rc == CREST_EINVAL);
        assert_true(count <= 6);
        for (int i = 0; i < count; i++) {
            const want_t *w = &node_packets[i];
            assert_int_equal(got[i].type, w->type);
            assert_int_equal(got[i].binary, w->binary);
            if (i < count - 1 || (rc == 0 && m == n))
                assert_int_equal(got[i].len, w->len);
            assert_true(got[i].len <= w->len);
            assert_memory_equal(got[i].data, w->data, got[i].len);
        }
        /* a prefix ending on a separator has a trailing separator; m == 0 is an empty payload */
        if (m == 0 || node_payload[m - 1] == CREST__EIO_SEP)
            assert_int_equal(rc, CREST_EINVAL);
    }
}

/* Read p[0..n) until the end or an error; returns that result and how many packets came first. */
static int verdict(const char *p, size_t n, int *count) {
    want_t got[8];
    char store[8][64];
    return read_payload(p, n, got, store, 8, count);
}

static void test_eio_malformed(void **state) {
    (void)state;
    static const struct {
        const char *in;
        int before; /* packets returned before the error */
    } bad[] = {
        {"", 0},
        {"\x1e", 0},
        {"\x1e"
         "4a",
         0},
        {"4a\x1e", 1},
        {"4a\x1e\x1e"
         "4b",
         1},
        {"4a\x1e"
         "2\x1e\x1e",
         2},
        {"7", 0},
        {"9x", 0},
        {"/", 0},
        {":", 0},
        {"x", 0},
        {"B", 0},
        {"4a\x1e"
         "7",
         1},
        {"bAQ", 0},
        {"bAQID=", 0},
        {"bA===", 0},
        {"b====", 0},
        {"bAQ=A", 0},
        {"bAQ==AQID", 0},
        {"bAQ!D", 0},
        {"bAR==", 0},
        {"bAQJ=", 0},
        {"b-_8=", 0},
        {"b AQI", 0},
        {"bAQID ", 0},
        {"4a\x1e"
         "bAQ\x1e"
         "4b",
         1},
        {"4a\x1e"
         "bAR==",
         1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int count;
        int rc = verdict(bad[i].in, strlen(bad[i].in), &count);
        if (rc != CREST_EINVAL)
            print_error("accepted: %zu\n", i);
        assert_int_equal(rc, CREST_EINVAL);
        assert_int_equal(count, bad[i].before);
    }
    /* an offset past the end is the caller's mistake, refused rather than read */
    char *b = heap("4a", 2);
    size_t off = 3;
    crest__eio_packet_t pkt;
    assert_int_equal(crest__eio_next(b, 2, &off, &pkt), CREST_EINVAL);
    free(b);
}

/* ---- building payloads ---- */

static void test_eio_append(void **state) {
    (void)state;
    crest_buf_t b = CREST_BUF_INIT;
    assert_int_equal(crest__eio_append(&b, CREST__EIO_MESSAGE, "hello", 5, 0), 0);
    /* a binary packet is a MESSAGE whatever type says */
    assert_int_equal(crest__eio_append(&b, CREST__EIO_PING, "\x01\x02\x03\x04", 4, 1), 0);
    assert_int_equal(crest__eio_append(&b, CREST__EIO_PING, NULL, 0, 0), 0);
    assert_int_equal(crest__eio_append(&b, CREST__EIO_MESSAGE, NULL, 0, 1), 0);
    assert_int_equal(crest__eio_append(&b, CREST__EIO_NOOP, NULL, 0, 0), 0);
    assert_int_equal(crest__eio_append(&b, CREST__EIO_MESSAGE, "\x1e\xff", 2, 1), 0);
    assert_int_equal(b.len, sizeof(node_payload) - 1);
    assert_memory_equal(b.ptr, node_payload, b.len);
    crest_buf_free(&b);

    char mem[8];
    crest_buf_t s = CREST_BUF_ON(mem);
    assert_int_equal(crest__eio_append(&s, CREST__EIO_OPEN, "{\"sid\":\"x\"}", 11, 0), 0);
    assert_int_equal(crest__eio_append(&s, CREST__EIO_CLOSE, NULL, 0, 0), 0);
    assert_int_equal(s.len, 14);
    assert_memory_equal(s.ptr,
                        "0{\"sid\":\"x\"}\x1e"
                        "1",
                        14);
    crest_buf_free(&s);

    /* a one-byte buffer is not empty: the separator still comes first */
    crest_buf_t one = CREST_BUF_INIT;
    assert_int_equal(crest__eio_append(&one, CREST__EIO_PING, NULL, 0, 0), 0);
    assert_int_equal(crest__eio_append(&one, CREST__EIO_PONG, NULL, 0, 0), 0);
    assert_int_equal(one.len, 3);
    assert_memory_equal(one.ptr,
                        "2\x1e"
                        "3",
                        3);
    crest_buf_free(&one);

    /* a latched error is returned and nothing more is written */
    crest_buf_t e = CREST_BUF_INIT;
    e.err = CREST_ENOMEM;
    assert_int_equal(crest__eio_append(&e, CREST__EIO_MESSAGE, "x", 1, 0), CREST_ENOMEM);
    assert_int_equal(crest__eio_append(&e, CREST__EIO_MESSAGE, "x", 1, 1), CREST_ENOMEM);
    assert_int_equal(e.len, 0);
}

/* Binary packets of every size across the encoder's 768-byte blocks: the base64 is OpenSSL's and
 * the payload reads back to the same bytes. */
static void test_eio_append_large(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 767, 768, 769, 1535, 1536, 1537, 5000};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        uint8_t *raw = malloc(n);
        fill(raw, n, (uint32_t)n);
        crest_buf_t b = CREST_BUF_INIT;
        assert_int_equal(crest__eio_append(&b, CREST__EIO_MESSAGE, "t", 1, 0), 0);
        assert_int_equal(crest__eio_append(&b, CREST__EIO_MESSAGE, raw, n, 1), 0);
        size_t e = CREST__B64_LEN(n);
        assert_int_equal(b.len, 2 + 2 + e);
        unsigned char *ref = malloc(e + 1);
        EVP_EncodeBlock(ref, raw, (int)n);
        assert_memory_equal(b.ptr,
                            "4t\x1e"
                            "b",
                            4);
        assert_memory_equal(b.ptr + 4, ref, e);
        char *p = heap(b.ptr, b.len);
        size_t off = 0;
        crest__eio_packet_t pkt;
        assert_int_equal(crest__eio_next(p, b.len, &off, &pkt), 1);
        assert_int_equal(crest__eio_next(p, b.len, &off, &pkt), 1);
        assert_int_equal(pkt.binary, 1);
        assert_int_equal(pkt.type, CREST__EIO_MESSAGE);
        assert_int_equal(pkt.len, n);
        assert_memory_equal(pkt.data, raw, n);
        assert_int_equal(crest__eio_next(p, b.len, &off, &pkt), 0);
        free(p);
        free(ref);
        free(raw);
        crest_buf_free(&b);
    }
}

/* ---- Socket.IO ---- */

typedef struct {
    const char *in;
    uint32_t max;
    int type;
    uint32_t attachments;
    const char *nsp;
    int64_t id;
    const char *json;
} sio_case_t;

static void check_sio(const sio_case_t *c) {
    size_t n = strlen(c->in);
    char *p = heap(c->in, n);
    crest__sio_packet_t out;
    assert_int_equal(crest__sio_parse(p, n, c->max, &out), 0);
    assert_int_equal(out.type, c->type);
    assert_int_equal(out.attachments, c->attachments);
    assert_int_equal(out.nsp_len, strlen(c->nsp));
    assert_memory_equal(out.nsp, c->nsp, out.nsp_len);
    assert_true(out.id == c->id);
    size_t jl = strlen(c->json);
    assert_int_equal(out.json_len, jl);
    assert_ptr_equal(out.json, p + n - jl); /* the JSON is the packet's tail, not a copy */
    assert_memory_equal(out.json, c->json, jl);
    assert_true((out.nsp >= p && out.nsp + out.nsp_len <= p + n) ||
                (out.nsp_len == 1 && out.nsp[0] == '/')); /* a view, or the default "/" */
    free(p);
}

static void test_sio_parse(void **state) {
    (void)state;
    static const sio_case_t ok[] = {
        /* what socket.io-parser's Encoder wrote */
        {"0", 10, 0, 0, "/", -1, ""},
        {"0/admin,{\"token\":\"x\"}", 10, 0, 0, "/admin", -1, "{\"token\":\"x\"}"},
        {"1/admin,", 10, 1, 0, "/admin", -1, ""},
        {"2[\"chat\",\"hi\"]", 10, 2, 0, "/", -1, "[\"chat\",\"hi\"]"},
        {"2/admin,12[\"a\",1]", 10, 2, 0, "/admin", 12, "[\"a\",1]"},
        {"30[]", 10, 3, 0, "/", 0, "[]"},
        {"4{\"message\":\"no\"}", 10, 4, 0, "/", -1, "{\"message\":\"no\"}"},
        {"52-9007199254740991[\"blob\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,"
         "\"num\":1}]",
         10, 5, 2, "/", 9007199254740991,
         "[\"blob\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]"},
        {"61-/chat,5[{\"_placeholder\":true,\"num\":0}]", 10, 6, 1, "/chat", 5,
         "[{\"_placeholder\":true,\"num\":0}]"},
        /* a namespace running to the end, or "/" spelt out */
        {"0/admin", 10, 0, 0, "/admin", -1, ""},
        {"2/,[\"a\"]", 10, 2, 0, "/", -1, "[\"a\"]"},
        {"3/a,0[]", 10, 3, 0, "/a", 0, "[]"},
        {"2/a/b,7", 10, 2, 0, "/a/b", 7, ""},
        /* the first ',' ends the namespace, even one inside what follows */
        {"2/x,[\"a,b\"]", 10, 2, 0, "/x", -1, "[\"a,b\"]"},
        /* attachments only for the binary types: "1-" is an id and the JSON's start */
        {"21-[\"x\"]", 10, 2, 0, "/", 1, "-[\"x\"]"},
        /* ids: 0, large, 16 digits, 2^53 - 1, leading zeros, at the end */
        {"29007199254740991", 10, 2, 0, "/", 9007199254740991, ""},
        {"21234567890123456[\"a\"]", 10, 2, 0, "/", 1234567890123456, "[\"a\"]"},
        {"20000000000000007[]", 10, 2, 0, "/", 7, "[]"},
        {"2123456789[]", 10, 2, 0, "/", 123456789, "[]"},
        {"20", 10, 2, 0, "/", 0, ""},
        /* only digits make an id (socket.io-parser would read " " as id 0) */
        {"2 [\"a\"]", 10, 2, 0, "/", -1, " [\"a\"]"},
        /* attachments: 1, the maximum, leading zeros, the largest count there is */
        {"51-[]", 1, 5, 1, "/", -1, "[]"},
        {"510-[]", 10, 5, 10, "/", -1, "[]"},
        {"60001-/n,3[]", 10, 6, 1, "/n", 3, "[]"},
        {"54294967295-[]", UINT32_MAX, 5, UINT32_MAX, "/", -1, "[]"},
        {"51-", 10, 5, 1, "/", -1, ""},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        check_sio(&ok[i]);
}

static void test_sio_reject(void **state) {
    (void)state;
    static const struct {
        const char *in;
        uint32_t max;
    } bad[] = {
        {"", 10},
        {"7", 10},
        {"9[]", 10},
        {"/", 10},
        {":", 10},
        {"a", 10},
        {" 2[]", 10},
        /* attachments: zero, none, missing '-', not digits, over the maximum */
        {"50-[\"a\"]", 10},
        {"60-[]", 10},
        {"5-[]", 10},
        {"5", 10},
        {"51", 10},
        {"51[\"a\"]", 10},
        {"5a-[]", 10},
        {"5+1-[]", 10},
        {"6/x,1-[]", 10},
        {"511-[]", 10},
        {"51-[]", 0},
        {"54294967296-[]", UINT32_MAX},
        {"599999999999999999999999-[]", UINT32_MAX},
        /* ids: 17 digits, over 2^53 - 1 */
        {"212345678901234567[\"a\"]", 10},
        {"200000000000000001[]", 10},
        {"29007199254740992", 10},
        {"2/a,9999999999999999[]", 10},
        {"299999999999999999999999999[]", 10},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t n = strlen(bad[i].in);
        char *p = heap(bad[i].in, n);
        crest__sio_packet_t out;
        assert_int_equal(crest__sio_parse(p, n, bad[i].max, &out), CREST_EINVAL);
        free(p);
    }
}

/* Every prefix of every packet, in a block of its size: parsed or refused, views inside. */
static void test_sio_prefixes(void **state) {
    (void)state;
    static const char *const in[] = {
        "61-/chat,5[{\"_placeholder\":true,\"num\":0}]",
        "2/admin,9007199254740991[\"a\",1]",
        "0/admin,{\"token\":\"x\"}",
        "510-/x,",
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        size_t n = strlen(in[i]);
        for (size_t m = 0; m <= n; m++) {
            char *p = heap(in[i], m);
            crest__sio_packet_t out;
            int rc = crest__sio_parse(p, m, 10, &out);
            assert_true(rc == 0 || rc == CREST_EINVAL);
            if (rc == 0) {
                assert_true(out.json >= p && out.json + out.json_len == p + m);
                assert_true(out.nsp_len >= 1);
                assert_int_equal(out.nsp[0], '/');
                assert_true(out.id >= -1 && out.id <= CREST__SIO_ID_MAX);
            }
            free(p);
        }
    }
}

static void test_sio_head(void **state) {
    (void)state;
    static const struct {
        int type;
        uint32_t attachments;
        const char *nsp;
        int64_t id;
        const char *want;
    } cases[] = {
        {0, 0, "/", -1, "0"},
        {0, 0, "/admin", -1, "0/admin,"},
        {1, 0, "/admin", -1, "1/admin,"},
        {2, 0, "/admin", 12, "2/admin,12"},
        {3, 0, "/", 0, "30"},
        {1, 0, "", -1, "1"},
        {5, 2, "/", 9007199254740991, "52-9007199254740991"},
        {6, 1, "/chat", 5, "61-/chat,5"},
        {5, UINT32_MAX, "/", -1, "54294967295-"},
        {5, 10, "/x", 1234567890, "510-/x,1234567890"},
        {4, 0, "/", -1, "4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        crest_buf_t b = CREST_BUF_INIT;
        size_t nl = strlen(cases[i].nsp);
        assert_int_equal(
            crest__sio_head(&b, cases[i].type, cases[i].attachments, cases[i].nsp, nl, cases[i].id),
            0);
        assert_int_equal(b.len, strlen(cases[i].want));
        assert_memory_equal(b.ptr, cases[i].want, b.len);
        /* with JSON after it, the head parses back to what was written */
        crest_buf_append(&b, "[1]", 3);
        char *p = heap(b.ptr, b.len);
        crest__sio_packet_t out;
        assert_int_equal(crest__sio_parse(p, b.len, UINT32_MAX, &out), 0);
        assert_int_equal(out.type, cases[i].type);
        assert_int_equal(out.attachments, cases[i].attachments);
        assert_true(out.id == cases[i].id);
        const char *want_nsp = nl ? cases[i].nsp : "/";
        assert_int_equal(out.nsp_len, strlen(want_nsp));
        assert_memory_equal(out.nsp, want_nsp, out.nsp_len);
        assert_int_equal(out.json_len, 3);
        assert_memory_equal(out.json, "[1]", 3);
        free(p);
        crest_buf_free(&b);
    }
    /* appended after what is there, no separator; a latched error is returned */
    char mem[4];
    crest_buf_t s = CREST_BUF_ON(mem);
    crest_buf_append(&s, "4", 1);
    assert_int_equal(crest__sio_head(&s, 2, 0, "/room", 5, 3), 0);
    assert_int_equal(s.len, 9);
    assert_memory_equal(s.ptr, "42/room,3", 9);
    crest_buf_free(&s);
    crest_buf_t e = CREST_BUF_INIT;
    e.err = CREST_ENOMEM;
    assert_int_equal(crest__sio_head(&e, 2, 1, "/x", 2, 1), CREST_ENOMEM);
    assert_int_equal(e.len, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_rfc4648),
        cmocka_unit_test(test_b64_round_trip),
        cmocka_unit_test(test_b64_reject),
        cmocka_unit_test(test_eio_payload),
        cmocka_unit_test(test_eio_payload_prefixes),
        cmocka_unit_test(test_eio_malformed),
        cmocka_unit_test(test_eio_append),
        cmocka_unit_test(test_eio_append_large),
        cmocka_unit_test(test_sio_parse),
        cmocka_unit_test(test_sio_reject),
        cmocka_unit_test(test_sio_prefixes),
        cmocka_unit_test(test_sio_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
