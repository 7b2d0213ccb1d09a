/* The client's response parser (src/client/h1res.c): every case is fed whole, one byte at a time
 * and split in two at every offset, each piece in a heap block of exactly its size so that
 * AddressSanitizer catches a read past it; the verdict, status, headers, body and whether the
 * connection can be reused must not depend on the split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec/h1res.h"
#include "crest/errno.h"

typedef struct {
    const char *name;
    const char *in;
    int eof;     /* the connection ends after the input */
    int no_body; /* the request was HEAD */
    size_t max_body;
    int rc; /* CREST__H1RES_DONE or an error */
    int status;
    const char *body;
    int keep_alive;
    size_t rest; /* bytes left over after the response (pipelined garbage) */
} case_t;

#define OK200 "HTTP/1.1 200 OK\r\n"

static const case_t cases[] = {
    {"content-length", OK200 "Content-Length: 5\r\nX-A: b\r\n\r\nhello", 0, 0, 0, CREST__H1RES_DONE,
     200, "hello", 1, 0},
    {"content-length zero", "HTTP/1.1 204 No Content\r\n\r\n", 0, 0, 0, CREST__H1RES_DONE, 204, "",
     1, 0},
    {"length 0", OK200 "Content-Length: 0\r\n\r\n", 0, 0, 0, CREST__H1RES_DONE, 200, "", 1, 0},
    {"bare LF lines", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 0, 0, 0, CREST__H1RES_DONE, 200,
     "ok", 1, 0},
    {"leftover bytes", OK200 "Content-Length: 2\r\n\r\nokHTTP/1.1", 0, 0, 0, CREST__H1RES_DONE, 200,
     "ok", 1, 8},
    {"no reason", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", 0, 0, 0, CREST__H1RES_DONE, 200,
     "x", 1, 0},
    {"chunked",
     OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n", 0, 0,
     0, CREST__H1RES_DONE, 200, "hello, world", 1, 0},
    {"chunked trailers",
     OK200 "Transfer-Encoding: gzip, chunked\r\n\r\nA \r\n0123456789\r\n"
           "0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n",
     0, 0, 0, CREST__H1RES_DONE, 200, "0123456789", 1, 0},
    {"chunked upper hex",
     OK200 "Transfer-Encoding: chunked\r\n\r\n1F\r\n0123456789abcdef0123456789"
           "abcde\r\n0\r\n\r\n",
     0, 0, 0, CREST__H1RES_DONE, 200, "0123456789abcdef0123456789abcde", 1, 0},
    {"close delimited", OK200 "\r\nuntil the end", 1, 0, 0, CREST__H1RES_DONE, 200, "until the end",
     0, 0},
    {"http/1.0 close", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 0, 0, 0, CREST__H1RES_DONE,
     200, "x", 0, 0},
    {"http/1.0 keep-alive",
     "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", 0, 0, 0,
     CREST__H1RES_DONE, 200, "x", 1, 0},
    {"connection close", OK200 "Connection: foo, close\r\nContent-Length: 1\r\n\r\nx", 0, 0, 0,
     CREST__H1RES_DONE, 200, "x", 0, 0},
    {"interim skipped",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
     "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
     0, 0, 0, CREST__H1RES_DONE, 201, "ok", 1, 0},
    {"head response", OK200 "Content-Length: 100\r\n\r\n", 0, 1, 0, CREST__H1RES_DONE, 200, "", 1,
     0},
    {"304 no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", 0, 0, 0,
     CREST__H1RES_DONE, 304, "", 1, 0},
    {"equal lengths", OK200 "Content-Length: 2, 2\r\n\r\nab", 0, 0, 0, CREST__H1RES_DONE, 200, "ab",
     1, 0},
    {"te and length",
     OK200 "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n", 0, 0, 0,
     CREST__H1RES_DONE, 200, "a", 0, 0},
    {"empty line first", "\r\n" OK200 "Content-Length: 1\r\n\r\nz", 0, 0, 0, CREST__H1RES_DONE, 200,
     "z", 1, 0},
    {"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", 0, 0, 0,
     CREST__H1RES_DONE, 101, "", 0, 0},
    /* Refused. */
    {"not http", "HTTP/2.0 200 OK\r\n\r\n", 0, 0, 0, CREST_EPROTO, 0, NULL, 0, 0},
    {"garbage", "hello\r\n\r\n", 0, 0, 0, CREST_EPROTO, 0, NULL, 0, 0},
    {"short status", "HTTP/1.1 20 OK\r\n\r\n", 0, 0, 0, CREST_EPROTO, 0, NULL, 0, 0},
    {"status 099", "HTTP/1.1 099 OK\r\n\r\n", 0, 0, 0, CREST_EPROTO, 0, NULL, 0, 0},
    {"two lengths", OK200 "Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc", 0, 0, 0,
     CREST_EPROTO, 0, NULL, 0, 0},
    {"length list", OK200 "Content-Length: 2, 3\r\n\r\nabc", 0, 0, 0, CREST_EPROTO, 0, NULL, 0, 0},
    {"signed length", OK200 "Content-Length: +2\r\n\r\nab", 0, 0, 0, CREST_EPROTO, 0, NULL, 0, 0},
    {"huge length", OK200 "Content-Length: 99999999999999999999999\r\n\r\n", 0, 0, 0, CREST_EPROTO,
     0, NULL, 0, 0},
    {"space before colon", OK200 "Content-Length : 2\r\n\r\nab", 0, 0, 0, CREST_EPROTO, 0, NULL, 0,
     0},
    {"folded", OK200 "X-A: b\r\n c\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, CREST_EPROTO, 0, NULL, 0,
     0},
    {"bare cr", OK200 "X-A: b\rc\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, CREST_EPROTO, 0, NULL, 0,
     0},
    {"nul in value", OK200 "X-A: b\0c\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, CREST_EPROTO, 0, NULL,
     0, 0},
    {"bad chunk size", OK200 "Transfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 0, 0, CREST_EPROTO, 0,
     NULL, 0, 0},
    {"chunk without crlf", OK200 "Transfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n", 0, 0, 0,
     CREST_EPROTO, 0, NULL, 0, 0},
    {"chunk size overflow", OK200 "Transfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", 0, 0,
     0, CREST_EPROTO, 0, NULL, 0, 0},
    {"truncated length", OK200 "Content-Length: 10\r\n\r\nabc", 1, 0, 0, CREST_EPROTO, 0, NULL, 0,
     0},
    {"truncated chunked", OK200 "Transfer-Encoding: chunked\r\n\r\n5\r\nab", 1, 0, 0, CREST_EPROTO,
     0, NULL, 0, 0},
    {"truncated head", "HTTP/1.1 200 OK\r\nContent-", 1, 0, 0, CREST_EPROTO, 0, NULL, 0, 0},
    /* Limits. */
    {"length over limit", OK200 "Content-Length: 11\r\n\r\n", 0, 0, 10, CREST_E2BIG, 0, NULL, 0, 0},
    {"chunk over limit", OK200 "Transfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n",
     0, 0, 10, CREST_E2BIG, 0, NULL, 0, 0},
    {"close over limit", OK200 "\r\n0123456789A", 0, 0, 10, CREST_E2BIG, 0, NULL, 0, 0},
    {"at the limit", OK200 "Content-Length: 10\r\n\r\n0123456789", 0, 0, 10, CREST__H1RES_DONE, 200,
     "0123456789", 1, 0},
};

typedef struct {
    char body[256];
    size_t len;
} sink_t;

static void on_body(void *arg, const char *data, size_t len) {
    sink_t *s = arg;
    assert_true(s->len + len <= sizeof(s->body));
    memcpy(s->body + s->len, data, len);
    s->len += len;
}

/* Feed c->in cut at the offsets in cuts[0..ncuts) (ascending); check the result. */
static void run_split(const case_t *c, size_t len, const size_t *cuts, size_t ncuts) {
    crest__h1res_t p;
    crest__h1res_init(&p);
    sink_t sink = {{0}, 0};
    p.on_body = on_body;
    p.arg = &sink;
    p.no_body = c->no_body;
    if (c->max_body)
        p.max_body = c->max_body;
    int rc = CREST__H1RES_MORE;
    size_t start = 0, rest = 0;
    for (size_t k = 0; k <= ncuts && rc == CREST__H1RES_MORE; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t n = end - start;
        char *piece = malloc(n ? n : 1);
        assert_non_null(piece);
        memcpy(piece, c->in + start, n);
        size_t used = 0;
        rc = crest__h1res_feed(&p, piece, n, &used);
        assert_true(used <= n);
        if (rc == CREST__H1RES_DONE)
            rest = (len - start) - used;
        free(piece);
        start = end;
    }
    if (rc == CREST__H1RES_MORE && c->eof)
        rc = crest__h1res_eof(&p);
    if (rc != c->rc)
        fail_msg("%s: expected %d, got %d (cuts %zu, first %zu)", c->name, c->rc, rc, ncuts,
                 ncuts ? cuts[0] : 0);
    if (rc == CREST__H1RES_DONE) {
        assert_int_equal(p.status, c->status);
        assert_int_equal(sink.len, strlen(c->body));
        assert_memory_equal(sink.body, c->body, sink.len);
        assert_int_equal(p.keep_alive, c->keep_alive);
        assert_int_equal(rest, c->rest);
        assert_int_equal(p.body_len, sink.len);
    }
    crest__h1res_free(&p);
}

static size_t case_len(const case_t *c) {
    /* One case holds a NUL on purpose; every case ends at the last \n or body byte, so the
     * length is that of the literal as written: found by the name. */
    if (strcmp(c->name, "nul in value") == 0)
        return sizeof(OK200 "X-A: b\0c\r\nContent-Length: 0\r\n\r\n") - 1;
    return strlen(c->in);
}

static void test_whole_bytewise_split(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const case_t *c = &cases[i];
        size_t len = case_len(c);
        run_split(c, len, NULL, 0);
        size_t *cuts = malloc((len + 1) * sizeof(*cuts));
        assert_non_null(cuts);
        for (size_t k = 1; k < len; k++)
            cuts[k - 1] = k;
        run_split(c, len, cuts, len ? len - 1 : 0); /* byte by byte */
        for (size_t k = 0; k <= len; k++) {
            size_t cut = k;
            run_split(c, len, &cut, 1);
        }
        free(cuts);
    }
}

static void test_headers_and_reset(void **state) {
    (void)state;
    crest__h1res_t p;
    crest__h1res_init(&p);
    const char *two = OK200 "Content-Type: text/plain\r\nX-Empty:\r\nContent-Length: 1\r\n\r\nA"
                            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    size_t used;
    assert_int_equal(crest__h1res_feed(&p, two, strlen(two), &used), CREST__H1RES_DONE);
    assert_int_equal(p.nheaders, 3);
    crest_str_t ct = crest__h1res_header(&p, "content-TYPE");
    assert_int_equal(ct.len, 10);
    assert_memory_equal(ct.ptr, "text/plain", 10);
    crest_str_t empty = crest__h1res_header(&p, "x-empty");
    assert_non_null(empty.ptr);
    assert_int_equal(empty.len, 0);
    assert_null(crest__h1res_header(&p, "x-none").ptr);
    assert_int_equal(p.reason.len, 2);
    crest__h1res_reset(&p);
    size_t used2;
    assert_int_equal(crest__h1res_feed(&p, two + used, strlen(two) - used, &used2),
                     CREST__H1RES_DONE);
    assert_int_equal(used + used2, strlen(two));
    assert_int_equal(p.status, 404);
    assert_int_equal(p.reason.len, 9);
    crest__h1res_free(&p);
}

static void test_head_limits(void **state) {
    (void)state;
    crest__h1res_t p;
    crest__h1res_init(&p);
    p.max_head = 64;
    char big[200];
    memset(big, 'a', sizeof(big));
    memcpy(big, OK200 "X: ", 20);
    size_t used;
    assert_int_equal(crest__h1res_feed(&p, big, sizeof(big), &used), CREST_E2BIG);
    /* A failed parser stays failed. */
    assert_int_equal(crest__h1res_feed(&p, "\r\n\r\n", 4, &used), CREST_E2BIG);
    crest__h1res_free(&p);

    /* More fields than the table holds. */
    crest__h1res_init(&p);
    char many[4096];
    size_t n = (size_t)snprintf(many, sizeof(many), OK200);
    for (int i = 0; i <= CREST__H1RES_MAX_HEADERS; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X%d: v\r\n", i);
    n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
    assert_int_equal(crest__h1res_feed(&p, many, n, &used), CREST_E2BIG);
    crest__h1res_free(&p);

    /* Trailers count against max_head too. */
    crest__h1res_init(&p);
    p.max_head = 80;
    const char *t = OK200 "Transfer-Encoding: chunked\r\n\r\n0\r\n";
    assert_int_equal(crest__h1res_feed(&p, t, strlen(t), &used), CREST__H1RES_MORE);
    int rc = CREST__H1RES_MORE;
    for (int i = 0; i < 100 && rc == CREST__H1RES_MORE; i++)
        rc = crest__h1res_feed(&p, "X-T: 1\r\n", 8, &used);
    assert_int_equal(rc, CREST_E2BIG);
    crest__h1res_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_bytewise_split),
        cmocka_unit_test(test_headers_and_reset),
        cmocka_unit_test(test_head_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
