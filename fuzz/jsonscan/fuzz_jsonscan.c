/* libFuzzer target for the JSON pre-check (src/codec/jsonscan.c) together with
 * cJSON and crest_buf_json_str:
 * - the verdict and the field named are the same for the text whole, byte by byte, and split in
 *   two at an offset taken from the data;
 * - the UTF-8 verdict agrees with crest_utf8_feed over the whole text;
 * - a text the scanner passes (OK or NUL) and cJSON parses has only UTF-8 strings and names;
 * - every such string, written back with crest_buf_json_str, scans OK and parses back to itself:
 *   the writer never produces what the checker refuses.
 *
 * make build-fuzz/fuzz_jsonscan (the Makefile's fuzz rule compiles the library in with it), then
 * build-fuzz/fuzz_jsonscan fuzz/jsonscan/corpus */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/jsonscan.h"
#include "crest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const crest__jsonscan_t *a, int va, const crest__jsonscan_t *b, int vb) {
    if (va != vb)
        abort();
    if (va == CREST__JSONSCAN_NUL && strcmp(a->field, b->field) != 0)
        abort();
}

static void check_string(const char *str) {
    size_t n = strlen(str);
    if (crest_utf8_feed(CREST_UTF8_ACCEPT, str, n) != CREST_UTF8_ACCEPT)
        abort();
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_json_str(&b, str, n);
    if (b.err)
        abort();
    crest__jsonscan_t s;
    if (crest__jsonscan(&s, b.ptr, b.len) != CREST__JSONSCAN_OK)
        abort();
    cJSON *back = cJSON_ParseWithLength(b.ptr, b.len);
    if (!cJSON_IsString(back) || strcmp(back->valuestring, str) != 0)
        abort();
    cJSON_Delete(back);
    crest_buf_free(&b);
}

static void walk(const cJSON *v) {
    for (; v != NULL; v = v->next) {
        if (v->string != NULL)
            check_string(v->string);
        if (cJSON_IsString(v))
            check_string(v->valuestring);
        walk(v->child);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t split = size ? data[0] % (size + 1) : 0;
    crest__jsonscan_t whole, bytes, two;
    int vw = crest__jsonscan(&whole, data, size);

    crest__jsonscan_init(&bytes);
    for (size_t i = 0; i < size; i++) {
        uint8_t *one = malloc(1);
        if (one == NULL)
            abort();
        one[0] = data[i];
        crest__jsonscan_feed(&bytes, one, 1);
        free(one);
    }
    same(&whole, vw, &bytes, crest__jsonscan_end(&bytes));

    crest__jsonscan_init(&two);
    crest__jsonscan_feed(&two, data, split);
    crest__jsonscan_feed(&two, data + split, size - split);
    same(&whole, vw, &two, crest__jsonscan_end(&two));

    int utf8_ok = crest_utf8_feed(CREST_UTF8_ACCEPT, data, size) == CREST_UTF8_ACCEPT;
    if ((vw == CREST__JSONSCAN_BAD_UTF8) == utf8_ok)
        abort();

    if (vw == CREST__JSONSCAN_OK || vw == CREST__JSONSCAN_NUL) {
        cJSON *v = cJSON_ParseWithLength((const char *)data, size);
        walk(v);
        cJSON_Delete(v);
    }
    return 0;
}
