/* libFuzzer target for the request parser: parses the input as a stream of pipelined requests,
 * each head whole and again split in two at an offset taken from the data (the verdicts must
 * agree), then frames its body by Content-Length or the chunked decoder (whole, and again in two
 * pieces, which must decode the same bytes).
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *     -o /tmp/fuzz_parser fuzz/parser/fuzz_parser.c src/http/parser.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const crest__http_limits_t limits = {
    .max_request_line = 1024,
    .max_header_bytes = 4096,
    .max_headers = 32,
};

static crest__http_head_t head, head2;

/* Decodes a chunked body at in[0..n) in place, whole and in two pieces; returns the decoder's
 * verdict and sets *used to the input consumed. */
static int chunked(const char *in, size_t n, size_t split, size_t *used) {
    char *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);
    if (!a || !b)
        abort();
    memcpy(a, in, n);
    crest__http_chunked_t c;
    crest__http_chunked_init(&c, 64, 256);
    size_t len = n, consumed = 0;
    int r = crest__http_chunked_decode(&c, a, &len, &consumed);
    if (consumed > n || len > consumed)
        abort();

    /* The same again in two separate blocks: same verdict, same bytes out, same consumed. */
    crest__http_chunked_t c2;
    crest__http_chunked_init(&c2, 64, 256);
    if (split > n)
        split = n;
    size_t out = 0, total = 0, len1 = split, used1 = 0;
    char *p1 = malloc(split ? split : 1);
    if (!p1)
        abort();
    memcpy(p1, in, split);
    int r2 = crest__http_chunked_decode(&c2, p1, &len1, &used1);
    memcpy(b, p1, r2 >= 0 ? len1 : 0);
    free(p1);
    out = r2 >= 0 ? len1 : 0;
    total = used1;
    if (r2 == 0) {
        if (used1 != split)
            abort();
        size_t rest = n - split, len2 = rest, used2 = 0;
        char *p2 = malloc(rest ? rest : 1);
        if (!p2)
            abort();
        memcpy(p2, in + split, rest);
        r2 = crest__http_chunked_decode(&c2, p2, &len2, &used2);
        if (r2 >= 0) {
            memcpy(b + out, p2, len2);
            out += len2;
        }
        total += used2;
        free(p2);
    }
    if (r != r2)
        abort();
    if (r >= 0 && (total != consumed || out != len || memcmp(a, b, len) != 0))
        abort();
    free(a);
    free(b);
    *used = consumed;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    /* The first byte picks the split points so the fuzzer can steer them. */
    unsigned seed = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1, pos = 0;

    while (pos < n) {
        size_t len = n - pos;
        char *whole = malloc(len);
        if (!whole)
            abort();
        memcpy(whole, in + pos, len);
        size_t scanned = 0;
        int r = crest__http_parse_head(whole, len, &limits, &scanned, &head);

        size_t split = len ? (seed * 131u + pos) % (len + 1) : 0;
        char *part = malloc(split ? split : 1);
        if (!part)
            abort();
        memcpy(part, in + pos, split);
        size_t scanned2 = 0;
        int r2 = crest__http_parse_head(part, split, &limits, &scanned2, &head2);
        free(part);
        if (r2 == 0)
            r2 = crest__http_parse_head(whole, len, &limits, &scanned2, &head2);
        if (r != r2)
            abort();
        if (r > 0) {
            if ((size_t)r > len || head.num_headers > limits.max_headers ||
                head.num_headers != head2.num_headers || head.body_kind != head2.body_kind ||
                head.content_length != head2.content_length)
                abort();
            /* Every view points inside the head. */
            for (size_t i = 0; i < head.num_headers; i++) {
                const crest_str_t *v = &head.headers[i].value;
                if (v->ptr < whole || v->ptr + v->len > whole + r)
                    abort();
            }
            if (head.target.ptr < whole || head.target.ptr + head.target.len > whole + r)
                abort();
        }
        free(whole);
        if (r <= 0)
            return 0;
        pos += (size_t)r;

        if (head.body_kind == CREST__BODY_LENGTH) {
            if (head.content_length > n - pos)
                return 0;
            pos += (size_t)head.content_length;
        } else if (head.body_kind == CREST__BODY_CHUNKED) {
            size_t used = 0;
            if (chunked(in + pos, n - pos, (seed * 7u + pos) % (n - pos + 1), &used) != 1)
                return 0;
            pos += used;
        }
        if (!head.keep_alive || head.upgrade)
            return 0;
    }
    return 0;
}
