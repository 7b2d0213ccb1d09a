/* libFuzzer target for the client's response parser (src/client/h1res.c): the first byte picks
 * the limits, HEAD or not, and how the rest is cut into reads; then responses are parsed one
 * after another (as on a kept-alive connection) until the input ends or one is refused. The
 * verdicts, statuses and body digests must be the same whole and cut, a header slice must lie in
 * the parser's head buffer, and the body delivered never exceeds the limit.
 *
 * make fuzz   (build-fuzz/fuzz_h1res; seeds in fuzz/h1res/corpus) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/h1res.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint64_t hash;
    uint64_t bytes;
} digest_t;

static void on_body(void *arg, const char *p, size_t n) {
    digest_t *d = arg;
    for (size_t i = 0; i < n; i++)
        d->hash = (d->hash ^ (uint8_t)p[i]) * 1099511628211ull;
    d->bytes += n;
}

static int inside(const crest__h1res_t *p, crest_str_t s) {
    return s.len == 0 || (s.ptr >= p->head && s.ptr + s.len <= p->head + p->head_len);
}

static uint64_t run(const uint8_t *data, size_t size, uint8_t mode, size_t step) {
    crest__h1res_t p;
    crest__h1res_init(&p);
    p.max_head = (mode & 1) ? 64 : 4096;
    p.max_body = (mode & 2) ? 16 : 1 << 20;
    p.no_body = (mode & 4) != 0;
    digest_t d = {1469598103934665603ull, 0};
    p.on_body = on_body;
    p.arg = &d;
    uint64_t h = 1469598103934665603ull;
    size_t at = 0;
    int rc = CREST__H1RES_MORE;
    while (at < size && rc >= 0) {
        size_t n = step && size - at > step ? step : size - at;
        char *piece = malloc(n);
        memcpy(piece, data + at, n);
        size_t off = 0;
        while (off < n) {
            size_t used = 0;
            rc = crest__h1res_feed(&p, piece + off, n - off, &used);
            if (used > n - off)
                abort();
            off += used;
            if (rc < 0)
                break;
            if (rc == CREST__H1RES_MORE)
                break;
            for (size_t i = 0; i < p.nheaders; i++)
                if (!inside(&p, p.headers[i].name) || !inside(&p, p.headers[i].value))
                    abort();
            if (d.bytes != p.body_len || d.bytes > p.max_body)
                abort();
            h = (h ^ (uint64_t)p.status) * 1099511628211ull;
            h = (h ^ d.hash ^ (uint64_t)p.keep_alive) * 1099511628211ull;
            crest__h1res_reset(&p);
            d.hash = 1469598103934665603ull;
            d.bytes = 0;
        }
        free(piece);
        at += n;
    }
    if (rc == CREST__H1RES_MORE)
        rc = crest__h1res_eof(&p);
    h = (h ^ (uint64_t)(int64_t)rc) * 1099511628211ull;
    /* A refused response may have delivered part of its body first, more or less of it
     * depending on the cuts: only a complete one's body counts. */
    if (rc >= 0)
        h = (h ^ d.hash) * 1099511628211ull;
    crest__h1res_free(&p);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    size_t step = (size_t)(mode >> 3) + 1;
    uint64_t whole = run(data + 1, size - 1, mode, 0);
    if (run(data + 1, size - 1, mode, step) != whole || run(data + 1, size - 1, mode, 1) != whole)
        abort();
    return 0;
}
