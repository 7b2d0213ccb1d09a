/* libFuzzer target for the multipart/form-data parser (src/codec/multipart.c): the input, after a
 * first byte that picks the limits and the split point, is a body with the boundary "XyZ". It is
 * parsed whole, in two pieces and (when short) a byte at a time, each piece in a heap block of
 * its own size; the parts, their bytes and the verdict must agree, and every DATA chunk must lie
 * inside the input given or the parser's own delimiter.
 *
 * make fuzz && build-fuzz/fuzz_multipart fuzz/multipart/corpus */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint8_t *out;
    size_t n, cap;
} trace_t;

static void put(trace_t *t, const void *p, size_t n) {
    if (t->n + n > t->cap) {
        t->cap = (t->n + n) * 2 + 64;
        t->out = realloc(t->out, t->cap);
        if (t->out == NULL)
            abort();
    }
    memcpy(t->out + t->n, p, n);
    t->n += n;
}

/* Feed in[0..n) in its own block; nonzero once failed. */
static int feed(crest__mp_t *p, trace_t *t, const uint8_t *in, size_t n) {
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        abort();
    memcpy(buf, in, n);
    size_t pos = 0;
    int rc;
    for (;;) {
        crest__mp_event_t ev;
        size_t used;
        rc = crest__mp_parse(p, (const char *)buf + pos, n - pos, &used, &ev);
        if (used > n - pos)
            abort();
        pos += used;
        if (rc <= 0)
            break;
        /* Bytes, not chunk boundaries, are compared: a DATA event adds its bytes only, so splits
         * that chunk a part differently give the same trace. */
        uint8_t tag = (uint8_t)rc;
        if (rc != CREST__MP_DATA)
            put(t, &tag, 1);
        if (rc == CREST__MP_BEGIN) {
            put(t, ev.name.ptr, ev.name.len);
            put(t, "|", 1);
            if (ev.filename.ptr)
                put(t, ev.filename.ptr, ev.filename.len);
            put(t, "|", 1);
            put(t, ev.content_type.ptr, ev.content_type.len);
        } else if (rc == CREST__MP_DATA) {
            const char *d = ev.data;
            int in_input = d >= (const char *)buf && d + ev.len <= (const char *)buf + n;
            int in_delim = d >= p->delim && d + ev.len <= p->delim + p->dlen;
            if (ev.len == 0 || (!in_input && !in_delim))
                abort();
            put(t, d, ev.len);
        }
    }
    if (rc == CREST__MP_NEED && pos != n)
        abort();
    free(buf);
    if (rc < 0) {
        uint8_t e[2] = {'!', (uint8_t)-rc};
        put(t, e, 2);
        return 1;
    }
    return 0;
}

static void end(crest__mp_t *p, trace_t *t, int failed) {
    if (!failed) {
        uint8_t e[2] = {'F', (uint8_t)-crest__mp_finish(p)};
        put(t, e, 2);
    }
    crest__mp_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint8_t cfg = data[0];
    data++;
    size--;
    crest__mp_limits_t lim = {0};
    if (cfg & 1)
        lim.max_parts = 2;
    if (cfg & 2)
        lim.max_header_bytes = 64;
    /* No max_part_size: the chunk that crosses it is refused, not reported, and where chunks
     * end depends on the split. The other limits are met at the same byte whatever the split. */
    if (cfg & 4)
        lim.max_total = size / 2;
    size_t split = size ? (size_t)(cfg >> 3) * size / 31 : 0;
    if (split > size)
        split = size;
    trace_t a = {0}, b = {0}, c = {0};
    crest__mp_t p;
    if (crest__mp_init(&p, "XyZ", 3, &lim) != 0)
        abort();
    end(&p, &a, feed(&p, &a, data, size));
    crest__mp_init(&p, "XyZ", 3, &lim);
    int failed = feed(&p, &b, data, split);
    if (!failed)
        failed = feed(&p, &b, data + split, size - split);
    end(&p, &b, failed);
    if (a.n != b.n || memcmp(a.out, b.out, a.n) != 0)
        abort();
    if (size <= 512) {
        crest__mp_init(&p, "XyZ", 3, &lim);
        failed = 0;
        for (size_t i = 0; i < size && !failed; i++)
            failed = feed(&p, &c, data + i, 1);
        end(&p, &c, failed);
        if (a.n != c.n || memcmp(a.out, c.out, a.n) != 0)
            abort();
    }
    free(a.out);
    free(b.out);
    free(c.out);
    return 0;
}
