/* libFuzzer target for the header rules of include/crest/web.h (src/http/web.h): the input is
 * read as a Cookie header, an Accept and an Accept-Language list, an urlencoded body and a
 * Content-Type with a boundary. Nothing may read outside it (it sits in a block of its own
 * size), a found cookie lies inside it, an answer index is in range, and the pairs of the form
 * cover the input without overlap.
 *
 * make fuzz && build-fuzz/fuzz_web fuzz/web/corpus */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/multipart.h"
#include "http/web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        abort();
    memcpy(buf, data, size);
    crest_str_t in = {buf, size}, v;
    static const char *const names[] = {"a", "sid", "", "b c"};
    for (size_t i = 0; i < 4; i++)
        if (crest__cookie_find(in, names[i], strlen(names[i]), &v) &&
            (v.ptr < buf || v.ptr + v.len > buf + size))
            abort();
    static const char *const types[] = {"application/json", "text/html", "text/plain; q=1", "x"};
    int k = crest__accept_pick(&in, 1, types, 4);
    if (k < -1 || k >= 4)
        abort();
    static const char *const langs[] = {"en", "fr-CA", "*", ""};
    k = crest__lang_pick(&in, 1, langs, 4);
    if (k < -1 || k >= 4)
        abort();
    crest_str_t rest = in, n;
    const char *at = buf;
    while (crest__form_next(&rest, &n, &v)) {
        if (n.ptr < at || v.ptr + v.len > buf + size || (v.len && v.ptr < n.ptr + n.len))
            abort();
        at = v.ptr + v.len;
        crest__form_name_eq(n, "a b", 3);
    }
    char b[CREST__MP_BOUNDARY_MAX + 1];
    int blen = crest__mp_boundary(in, b, sizeof(b));
    if (blen > CREST__MP_BOUNDARY_MAX || (blen >= 0 && (size_t)blen != strlen(b)))
        abort();
    crest_buf_t out = CREST_BUF_INIT;
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    crest_cookie_opts_t o;
    crest_cookie_opts_default(&o);
    if (crest__cookie_format(&out, "n", s, &o, 0, 0) == 0 && memchr(out.ptr, '\n', out.len))
        abort(); /* a value that got through may never split the header */
    crest_buf_free(&out);
    free(s);
    free(buf);
    return 0;
}
