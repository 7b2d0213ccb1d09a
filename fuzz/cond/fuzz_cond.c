/* libFuzzer target for static file serving's pure rules (src/http/cond.c): one input goes to every
 * function, as a path, a header value, a date and a file name, and every answer must keep its
 * promise: a cleaned path is relative, canonical, valid UTF-8, free of control bytes, backslashes
 * and segments starting with a dot, and cleans to itself; a range lies inside the representation;
 * a date that parses formats back to itself; verdicts are 0 or 1 and the encoding mask has only
 * the two bits.
 *
 * make fuzz   (build-fuzz/fuzz_cond; seeds in fuzz/cond/corpus) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "http/cond.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_path(const char *in, size_t len) {
    char out[512];
    int dir = -1;
    int n = crest__path_clean(in, len, out, sizeof(out), &dir);
    if (dir != 0 && dir != 1)
        abort();
    if (n < 0)
        return;
    if ((size_t)n != strlen(out) || (size_t)n >= sizeof(out))
        abort();
    if (n > 0 && (out[0] == '/' || out[0] == '.' || out[n - 1] == '/'))
        abort();
    if (strstr(out, "/.") || strstr(out, "//") || strchr(out, '\\'))
        abort();
    for (int i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            abort();
    if (crest__utf8_feed(CREST__UTF8_ACCEPT, (const uint8_t *)out, (size_t)n) != CREST__UTF8_ACCEPT)
        abort();
    /* Cleaning is a fixed point for names without '%' (a '%' in the output came from "%25" and
     * would be decoded again: the function decodes exactly once, by design). */
    if (memchr(out, '%', (size_t)n) == NULL) {
        char again[512];
        int d2;
        if (crest__path_clean(out, (size_t)n, again, sizeof(again), &d2) != n ||
            memcmp(again, out, (size_t)n) != 0 || d2 != 0)
            abort();
    }
    /* Exactly enough room works; one byte less is refused, never truncated. */
    char *tight = malloc((size_t)n + 1);
    if (crest__path_clean(in, len, tight, (size_t)n + 1, &dir) != n ||
        memcmp(tight, out, (size_t)n + 1) != 0)
        abort();
    if (crest__path_clean(in, len, tight, (size_t)n, &dir) != -1)
        abort();
    free(tight);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *s = (const char *)data; /* libFuzzer's block is exactly `size` bytes */
    crest_str_t h = {s, size};

    check_path(s, size);

    /* Ranges against a few representation sizes, one picked by the input. */
    uint64_t sizes[4] = {0, 1, size ? data[0] : 10, size >= 8 ? 0 : UINT64_MAX};
    if (size >= 8)
        memcpy(&sizes[3], data + size - 8, 8);
    for (int i = 0; i < 4; i++) {
        uint64_t first = 0, last = 0;
        int r = crest__range_parse(h, sizes[i], &first, &last);
        if (r < -1 || r > 1 || (r == 1 && (first > last || last >= sizes[i])))
            abort();
    }

    /* Entity tags: ours, made from the input, matches itself; the input as a list gives 0 or 1. */
    uint64_t ino = 0, len = size;
    int64_t mt = 0;
    memcpy(&ino, data, size < 8 ? size : 8);
    if (size >= 16)
        memcpy(&mt, data + 8, 8);
    char etag[64];
    size_t en = crest__etag_make(ino, len, mt, etag, sizeof(etag));
    if (en == 0 || en > 52 || crest__etag_match_any((crest_str_t){etag, en}, etag, en) != 1 ||
        crest__if_range((crest_str_t){etag, en}, etag, en, 0) != 1)
        abort();
    int m = crest__etag_match_any(h, etag, en);
    if (m != 0 && m != 1)
        abort();
    int64_t t = crest__http_date_parse(s, size);
    int ir = crest__if_range(h, etag, en, mt);
    if (ir != 0 && ir != 1)
        abort();
    if (t != -1 && crest__if_range(h, "\"x\"", 3, t) != 1)
        abort(); /* a date that parses applies to a file of exactly that date */

    /* Dates: whatever parses (within the format's years) formats back to the same instant. */
    if (t != -1 && t >= 0 && t <= 253402300799) {
        char out[30];
        if (crest__http_date_format(t, out, sizeof(out)) != 29 ||
            crest__http_date_parse(out, 29) != t)
            abort();
    }
    char out[30];
    if (crest__http_date_format(mt, out, sizeof(out)) != 29 || strlen(out) != 29 ||
        crest__http_date_parse(out, 29) < 0)
        abort();

    if (crest__accept_encoding(h) > 3)
        abort();

    const char *type = crest__mime_type(s, size);
    if (type == NULL || strchr(type, '/') == NULL)
        abort();
    int c = crest__mime_compressible(s, size);
    int c2 = crest__mime_compressible(type, strlen(type));
    if ((c != 0 && c != 1) || (c2 != 0 && c2 != 1))
        abort();
    return 0;
}
