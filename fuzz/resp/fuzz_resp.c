/* libFuzzer target for the RESP2 reader (src/codec/resp.c): the first byte picks the bulk limit
 * and how the rest is cut into reads; every reply returned must be well formed (views inside the
 * reader's buffer, refused bulks over the limit, arrays within bounds), and reading the same
 * input whole must give the same replies as reading it cut.
 *
 * make fuzz   (build-fuzz/fuzz_resp; seeds in fuzz/resp/corpus) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A digest of every reply read from data cut every `step` bytes (0: whole). */
static uint64_t run(const uint8_t *data, size_t size, size_t max_bulk, size_t step, int *err) {
    crest__resp_t r;
    crest__resp_init(&r, max_bulk, 128);
    uint64_t h = 1469598103934665603ull;
    size_t at = 0;
    *err = 0;
    while (at < size && *err == 0) {
        size_t n = step ? (size - at < step ? size - at : step) : size - at;
        char *piece = malloc(n);
        memcpy(piece, data + at, n);
        size_t off = 0;
        while (off < n) {
            crest__resp_reply_t rep;
            size_t used = 0;
            int rc = crest__resp_read(&r, piece + off, n - off, &used, &rep);
            if (used > n - off)
                abort();
            off += used;
            if (rc < 0) {
                *err = rc;
                break;
            }
            if (rc == 0)
                break;
            if (rep.type == CREST__RESP_ARRAY && (rep.n < 0 || rep.n > CREST__RESP_MAX_ELEMS))
                abort();
            int count = rep.type == CREST__RESP_ARRAY ? rep.n : rep.n;
            h = (h ^ (uint64_t)rep.type) * 1099511628211ull;
            for (int i = 0; i < count; i++) {
                const crest__resp_val_t *v = &rep.elem[i];
                if (v->type == CREST__RESP_BULK && v->refused != (v->len > max_bulk))
                    abort();
                if (v->ptr != NULL)
                    for (size_t k = 0; k < v->len; k++) /* ASan checks the view */
                        h = (h ^ (uint8_t)v->ptr[k]) * 1099511628211ull;
                h = (h ^ (uint64_t)v->num ^ v->len) * 1099511628211ull;
            }
        }
        free(piece);
        at += n;
    }
    crest__resp_free(&r);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t max_bulk = data[0] & 0x1f;
    size_t step = (size_t)(data[0] >> 5) + 1;
    int e1, e2;
    uint64_t whole = run(data + 1, size - 1, max_bulk, 0, &e1);
    uint64_t cut = run(data + 1, size - 1, max_bulk, step, &e2);
    if (e1 != e2 || (e1 == 0 && whole != cut))
        abort();
    return 0;
}
