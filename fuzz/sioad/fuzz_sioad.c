/* libFuzzer target for the Socket.IO Redis adapter's messages (src/codec/sioad.c): the input is a
 * message. A message that decodes must give JSON crest reads, as many placeholders as
 * attachments, and views inside the input (AddressSanitizer checks each byte); encoding what it
 * decoded and decoding that again must give the same JSON, attachments and rooms. The encoder may
 * refuse what the decoder wrote only where the two differ by design: an object of the message's
 * own that looks like a placeholder, an ext value that becomes a one-deeper [type, placeholder],
 * a string holding U+0000.
 *
 * make fuzz   (build-fuzz/fuzz_sioad; seeds in fuzz/sioad/corpus, written by
 * node tests/it/sioad_vectors.js --corpus fuzz/sioad/corpus) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/sioad.h"
#include "crest/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(crest_str_t s, const uint8_t *data, size_t size) {
    return s.len == 0 || ((const uint8_t *)s.ptr >= data && s.len <= size &&
                          (const uint8_t *)s.ptr - data <= (ptrdiff_t)(size - s.len));
}

static uint64_t digest(const char *p, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return (h ^ n) * 1099511628211ull;
}

static uint64_t digest_msg(const crest__sioad_msg_t *m) {
    uint64_t h = digest(m->json.ptr, m->json.len, 1469598103934665603ull);
    h = digest(m->uid.ptr, m->uid.len, h);
    h = digest(m->nsp.ptr, m->nsp.len, h);
    for (uint32_t i = 0; i < m->nbins; i++)
        h = digest(m->bins[i].ptr, m->bins[i].len, h);
    for (size_t i = 0; i < m->nrooms; i++)
        h = digest(m->rooms[i].ptr, m->rooms[i].len, h);
    for (size_t i = 0; i < m->nexcept; i++)
        h = digest(m->except[i].ptr, m->except[i].len, h + 1);
    return (h ^ (uint64_t)m->type) * 1099511628211ull;
}

static size_t count(const char *p, size_t n, const char *needle) {
    size_t k = 0, l = strlen(needle);
    for (size_t i = 0; i + l <= n; i++)
        k += memcmp(p + i, needle, l) == 0;
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    crest__sioad_msg_t m;
    int rc = crest__sioad_decode(data, size, &m);
    if (rc != 0) {
        if (rc != CREST_EINVAL && rc != CREST_ENOMEM)
            abort();
        crest__sioad_msg_free(&m);
        return 0;
    }
    if (!inside(m.uid, data, size) || m.type < 0 || m.type > 6)
        abort();
    for (uint32_t i = 0; i < m.nbins; i++)
        if (!inside(m.bins[i], data, size))
            abort();
    uint64_t h = digest_msg(&m); /* reads every view */
    crest_json_t *doc = NULL;
    if (m.json.len > 0) {
        rc = crest_json_parse(m.json.ptr, m.json.len, &doc);
        if (rc != 0 && rc != CREST_ENOTSUP)
            abort();
        crest_json_free(doc);
    }
    int literal = count((const char *)data, size, "_placeholder") > 0;
    if (!literal && count(m.json.ptr, m.json.len, "{\"_placeholder\":true,\"num\":") != m.nbins)
        abort();

    crest_buf_t out = CREST_BUF_INIT;
    rc = crest__sioad_encode(&out, m.uid, m.nsp, m.type, m.json.ptr, m.json.len, m.bins, m.nbins,
                             m.rooms, m.nrooms, m.except, m.nexcept);
    if (rc == 0) {
        crest__sioad_msg_t m2;
        if (crest__sioad_decode(out.ptr, out.len, &m2) != 0)
            abort();
        if (!literal && digest_msg(&m2) != h)
            abort();
        crest__sioad_msg_free(&m2);
    } else if (rc != CREST_EINVAL && rc != CREST_ENOTSUP) {
        abort();
    }
    crest_buf_free(&out);
    crest__sioad_msg_free(&m);
    return 0;
}
