/* libFuzzer target for crest/json.h on plain memory: crest_json_parse, then validation of the
 * document against a fixed schema with every kind of field (nested objects, arrays of objects,
 * bounds, enums, strict mode):
 * - the parse and the validation never crash, read outside the text or leak;
 * - a parsed document walks completely with the accessors, and every string is UTF-8 with no NUL;
 * - validation is deterministic (twice, the same faults) and lists at most CREST_JSON_ERRORS_MAX
 *   faults, each path and message NUL-terminated UTF-8 within its array;
 * - a valid document's output strings are the document's own.
 *
 * make build-fuzz/fuzz_json, then build-fuzz/fuzz_json fuzz/json/corpus */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    crest_str_t name;
    int64_t n;
} sub_t;

typedef struct {
    crest_str_t s;
    int64_t i;
    double d;
    int b;
    sub_t sub;
    const crest_json_t *list;
    const crest_json_t *any;
} out_t;

static const char *const kinds[] = {"a", "b", "\xc3\xa9", NULL};
static const crest_field_t sub_fields[] = {
    CREST_FIELD_STR(sub_t, name, CREST_REQUIRED | CREST_MAX, .max = 3, .enums = kinds),
    CREST_FIELD_INT(sub_t, n, CREST_MIN | CREST_MAX, .min = -5, .max = 5), CREST_FIELD_END};
static const crest_schema_t sub_schema = {.name = "Sub", .fields = sub_fields, .strict = 1};
static const crest_field_t sub_item = {.type = CREST_T_OBJECT, .object = &sub_schema};
static const crest_field_t fields[] = {
    CREST_FIELD_STR(out_t, s, CREST_MIN | CREST_MAX | CREST_NULLABLE, .min = 1, .max = 8),
    CREST_FIELD_INT(out_t, i, CREST_REQUIRED),
    CREST_FIELD_NUM(out_t, d, CREST_MIN, .min = 0),
    CREST_FIELD_BOOL(out_t, b, 0),
    CREST_FIELD_OBJ(out_t, sub, 0, &sub_schema),
    CREST_FIELD_ARR(out_t, list, CREST_MAX, &sub_item, .max = 4),
    CREST_FIELD_ANY(out_t, any, 0),
    CREST_FIELD_END};
static const crest_schema_t schema = {.name = "Top", .fields = fields};

static void walk(const crest_json_t *v, int depth) {
    if (depth > 2000)
        abort();
    crest_str_t k = crest_json_key(v);
    if (k.ptr != NULL && (memchr(k.ptr, 0, k.len) != NULL ||
                          crest_utf8_feed(CREST_UTF8_ACCEPT, k.ptr, k.len) != CREST_UTF8_ACCEPT))
        abort();
    crest_str_t s = crest_json_str(v);
    if (s.ptr != NULL && crest_utf8_feed(CREST_UTF8_ACCEPT, s.ptr, s.len) != CREST_UTF8_ACCEPT)
        abort();
    size_t n = 0;
    for (const crest_json_t *it = crest_json_first(v); it; it = crest_json_next(it), n++)
        walk(it, depth + 1);
    if (n != crest_json_len(v))
        abort();
}

static void check_errs(const crest_json_errors_t *e) {
    for (size_t i = 0; i < e->count && i < CREST_JSON_ERRORS_MAX; i++) {
        const crest_json_error_t *x = &e->list[i];
        if (memchr(x->field, 0, sizeof(x->field)) == NULL ||
            memchr(x->message, 0, sizeof(x->message)) == NULL)
            abort();
        if (crest_utf8_feed(CREST_UTF8_ACCEPT, x->field, strlen(x->field)) != CREST_UTF8_ACCEPT)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1); /* exactly the text: an overread is caught */
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    crest_json_t *doc = NULL;
    int rc = crest_json_parse(text, size, &doc);
    if ((rc == 0) != (doc != NULL))
        abort();
    if (rc == 0) {
        walk(doc, 0);
        out_t a, b;
        memset(&a, 0, sizeof(a));
        memset(&b, 0, sizeof(b));
        crest_json_errors_t ea, eb;
        int va = crest_json_validate(doc, &schema, &a, &ea);
        int vb = crest_json_validate(doc, &schema, &b, &eb);
        if (va != vb || ea.count != eb.count || (va == 0) != (ea.count == 0))
            abort();
        size_t n = ea.count < CREST_JSON_ERRORS_MAX ? ea.count : CREST_JSON_ERRORS_MAX;
        for (size_t i = 0; i < n; i++) /* the bytes after each NUL are not written */
            if (strcmp(ea.list[i].field, eb.list[i].field) != 0 ||
                strcmp(ea.list[i].message, eb.list[i].message) != 0)
                abort();
        check_errs(&ea);
        if (va == 0 && a.s.ptr != NULL && a.s.ptr != crest_json_str(crest_json_get(doc, "s")).ptr)
            abort();
        crest_json_free(doc);
    }
    free(text);
    return 0;
}
