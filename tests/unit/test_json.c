/* Unit tests for crest/json.h on plain memory: the strict parse, the accessors, and every rule of
 * the validation tables (types, required, nullable, bounds of numbers, of strings in characters
 * and of arrays in items, enums, nested objects and arrays, strict mode, the list of faults with
 * their paths). Each parse is also fed from a heap block of exactly the text's size, so that
 * AddressSanitizer catches a read past it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crest.h"

static int parse(const char *text, crest_json_t **doc) {
    size_t len = strlen(text);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    int rc = crest_json_parse(copy, len, doc);
    free(copy);
    return rc;
}

static void test_parse_strict(void **state) {
    (void)state;
    static const char *const good[] = {"{}", " [1, -0.5e3, true, false, null] ", "\"caf\\u00e9\"",
                                       "0", "{\"a\":{\"b\":[{}]}}\r\n"};
    static const char *const bad[] = {
        "",     " ",   "{",   "{\"a\":1,}",  "[1,]",       "01",     "1.",  "[1.e5]",  "{} x",
        "{}{}", "nul", "'a'", "[\"a\x01\"]", "[\"\xff\"]", "\x0c{}", "[-]", "{\"a\"}", "NaN"};
    crest_json_t *doc;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (parse(good[i], &doc) != 0)
            fail_msg("refused: %s", good[i]);
        crest_json_free(doc);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &doc) != CREST_EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_null(doc);
    }
    assert_int_equal(parse("{\"t\":\"a\\u0000b\"}", &doc), CREST_ENOTSUP);
    assert_null(doc);
    assert_int_equal(parse("{\"t\\u0000\":1}", &doc), CREST_ENOTSUP);
    /* malformed outranks U+0000 */
    assert_int_equal(parse("{\"t\":\"\\u0000\",}", &doc), CREST_EINVAL);
    crest_json_free(NULL);
}

static void test_accessors(void **state) {
    (void)state;
    crest_json_t *doc;
    assert_int_equal(parse("{\"s\":\"h\\u00e9\",\"i\":42,\"f\":1.5,\"b\":true,\"n\":null,"
                           "\"a\":[1,2,3],\"o\":{\"x\":1},\"big\":9007199254740993,"
                           "\"neg\":-9007199254740991,\"one\":1.0,\"s\":\"dup\"}",
                           &doc),
                     0);
    assert_int_equal(crest_json_type(doc), CREST_JSON_OBJECT);
    assert_int_equal(crest_json_type(NULL), CREST_JSON_NONE);
    crest_str_t s = crest_json_str(crest_json_get(doc, "s"));
    assert_int_equal(s.len, 3); /* the first of duplicate names */
    assert_memory_equal(s.ptr, "h\xc3\xa9", 3);
    assert_null(crest_json_str(crest_json_get(doc, "i")).ptr);
    assert_null(crest_json_get(doc, "missing"));
    assert_null(crest_json_get(crest_json_get(doc, "a"), "x"));
    int64_t i;
    double d;
    int b;
    assert_int_equal(crest_json_int(crest_json_get(doc, "i"), &i), 0);
    assert_int_equal(i, 42);
    assert_int_equal(crest_json_int(crest_json_get(doc, "f"), &i), CREST_EINVAL);
    assert_int_equal(crest_json_int(crest_json_get(doc, "big"), &i), CREST_E2BIG);
    assert_int_equal(crest_json_int(crest_json_get(doc, "neg"), &i), 0);
    assert_true(i == -9007199254740991LL);
    assert_int_equal(crest_json_int(crest_json_get(doc, "one"), &i), 0);
    assert_int_equal(crest_json_int(crest_json_get(doc, "s"), &i), CREST_EINVAL);
    assert_int_equal(crest_json_num(crest_json_get(doc, "f"), &d), 0);
    assert_true(d == 1.5);
    assert_int_equal(crest_json_num(NULL, &d), CREST_EINVAL);
    assert_int_equal(crest_json_bool(crest_json_get(doc, "b"), &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(crest_json_bool(crest_json_get(doc, "n"), &b), CREST_EINVAL);
    assert_int_equal(crest_json_type(crest_json_get(doc, "n")), CREST_JSON_NULL);
    const crest_json_t *a = crest_json_get(doc, "a");
    assert_int_equal(crest_json_len(a), 3);
    assert_int_equal(crest_json_len(crest_json_get(doc, "i")), 0);
    int64_t sum = 0;
    for (const crest_json_t *it = crest_json_first(a); it; it = crest_json_next(it)) {
        assert_null(crest_json_key(it).ptr);
        assert_int_equal(crest_json_int(it, &i), 0);
        sum += i;
    }
    assert_int_equal(sum, 6);
    size_t members = 0;
    const crest_json_t *first = crest_json_first(doc);
    assert_string_equal(crest_json_key(first).ptr, "s");
    for (const crest_json_t *it = first; it; it = crest_json_next(it))
        members++;
    assert_int_equal(members, crest_json_len(doc));
    assert_int_equal(members, 11);
    assert_null(crest_json_first(crest_json_get(doc, "i")));
    crest_json_free(doc);
}

/* ---- validation ---- */

typedef struct {
    int64_t qty;
    crest_str_t sku;
} line_t;

typedef struct {
    crest_str_t street;
    crest_str_t city;
} addr_t;

typedef struct {
    crest_str_t title;
    int64_t count;
    double price;
    int done;
    crest_str_t color;
    addr_t addr;
    const crest_json_t *tags;
    const crest_json_t *lines;
    const crest_json_t *extra;
    crest_str_t note;
} order_t;

static const crest_field_t line_fields[] = {
    CREST_FIELD_INT(line_t, qty, CREST_REQUIRED | CREST_MIN, .min = 1),
    CREST_FIELD_STR(line_t, sku, CREST_REQUIRED | CREST_MIN | CREST_MAX, .min = 2, .max = 4),
    CREST_FIELD_END};
static const crest_schema_t line_schema = {.name = "Line", .fields = line_fields, .strict = 1};
static const crest_field_t line_item = {.type = CREST_T_OBJECT, .object = &line_schema};
static const crest_field_t tag_item = {.type = CREST_T_STRING, .flags = CREST_MAX, .max = 3};
static const crest_field_t addr_fields[] = {CREST_FIELD_STR(addr_t, street, 0),
                                            CREST_FIELD_STR(addr_t, city, CREST_REQUIRED),
                                            CREST_FIELD_END};
static const crest_schema_t addr_schema = {.name = "Addr", .fields = addr_fields};
static const char *const colors[] = {"red", "green", NULL};
static const crest_field_t order_fields[] = {
    CREST_FIELD_STR(order_t, title, CREST_REQUIRED | CREST_MIN | CREST_MAX, .min = 1, .max = 5),
    CREST_FIELD_INT(order_t, count, CREST_MIN | CREST_MAX, .min = -2, .max = 10),
    CREST_FIELD_NUM(order_t, price, CREST_MIN, .min = 0.5),
    CREST_FIELD_BOOL(order_t, done, 0),
    CREST_FIELD_STR(order_t, color, CREST_NULLABLE, .enums = colors),
    CREST_FIELD_OBJ(order_t, addr, 0, &addr_schema),
    CREST_FIELD_ARR(order_t, tags, CREST_MAX, &tag_item, .max = 2),
    CREST_FIELD_ARR(order_t, lines, 0, &line_item),
    CREST_FIELD_ANY(order_t, extra, 0),
    CREST_FIELD("checked", CREST_T_INT, 0),
    CREST_FIELD_END};
static const crest_schema_t order_schema = {.name = "Order", .fields = order_fields};

static order_t defaults(void) {
    order_t o;
    memset(&o, 0, sizeof(o));
    o.count = 7;
    o.done = -1;
    o.note = (crest_str_t){"kept", 4};
    return o;
}

/* Validate `text`; want_paths lists the expected faults' fields, "|"-separated ("" none). */
static crest_json_errors_t run(const char *text, order_t *o, const char *want) {
    crest_json_t *doc;
    if (parse(text, &doc) != 0)
        fail_msg("does not parse: %s", text);
    crest_json_errors_t errs;
    int rc = crest_json_validate(doc, &order_schema, o, &errs);
    char got[512] = "";
    size_t n = 0;
    for (size_t i = 0; i < errs.count && i < CREST_JSON_ERRORS_MAX; i++)
        n += (size_t)snprintf(got + n, sizeof(got) - n, "%s%s", i ? "|" : "", errs.list[i].field);
    if (strcmp(got, want) != 0)
        fail_msg("%s: want faults [%s], got [%s] (%s)", text, want, got,
                 errs.count ? errs.list[0].message : "");
    assert_int_equal(rc, *want ? CREST_EINVAL : 0);
    /* strings in *o point into the document: copy what the caller checks before freeing */
    static char keep[4][64];
    crest_str_t *strs[] = {&o->title, &o->color, &o->addr.city, &o->addr.street};
    for (size_t i = 0; i < 4; i++)
        if (strs[i]->ptr != NULL && strs[i]->ptr != o->note.ptr) {
            snprintf(keep[i], sizeof(keep[i]), "%s", strs[i]->ptr);
            strs[i]->ptr = keep[i];
        }
    o->tags = o->lines = o->extra = NULL;
    crest_json_free(doc);
    return errs;
}

static void test_valid_ok(void **state) {
    (void)state;
    order_t o = defaults();
    run("{\"title\":\"h\xc3\xa9llo\",\"count\":-2,\"price\":0.5,\"done\":false,\"color\":\"red\","
        "\"addr\":{\"city\":\"Oslo\"},\"tags\":[\"a\",\"bcd\"],\"lines\":[{\"qty\":1,\"sku\":"
        "\"ab\"}],\"extra\":[null],\"unknown\":1}",
        &o, "");
    assert_string_equal(o.title.ptr, "h\xc3\xa9llo"); /* 5 characters, 6 bytes */
    assert_int_equal(o.title.len, 6);
    assert_int_equal(o.count, -2);
    assert_true(o.price == 0.5);
    assert_int_equal(o.done, 0);
    assert_string_equal(o.color.ptr, "red");
    assert_string_equal(o.addr.city.ptr, "Oslo");
    assert_null(o.addr.street.ptr); /* absent: untouched */
    assert_string_equal(o.note.ptr, "kept");

    o = defaults();
    run("{\"title\":\"a\",\"color\":null}", &o, "");
    assert_int_equal(o.count, 7); /* absent optional fields keep the defaults */
    assert_int_equal(o.done, -1);
    assert_null(o.color.ptr); /* null for a nullable field: untouched */
}

static void test_valid_faults(void **state) {
    (void)state;
    order_t o = defaults();
    run("{}", &o, "title");
    crest_json_errors_t e = run("{\"title\":5}", &o, "title");
    assert_string_equal(e.list[0].message, "must be a string");
    e = run("{\"title\":null}", &o, "title");
    assert_string_equal(e.list[0].message, "must be a string, not null");
    e = run("{\"title\":\"\"}", &o, "title");
    assert_string_equal(e.list[0].message, "must be at least 1 character");
    e = run("{\"title\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", &o, "title");
    assert_string_equal(e.list[0].message, "must be at most 5 characters");
    e = run("{\"title\":\"a\",\"count\":11}", &o, "count");
    assert_string_equal(e.list[0].message, "must be at most 10");
    e = run("{\"title\":\"a\",\"count\":-3}", &o, "count");
    assert_string_equal(e.list[0].message, "must be at least -2");
    e = run("{\"title\":\"a\",\"count\":1.5}", &o, "count");
    assert_string_equal(e.list[0].message, "must be an integer");
    run("{\"title\":\"a\",\"count\":\"1\"}", &o, "count");
    run("{\"title\":\"a\",\"count\":1e300}", &o, "count");
    e = run("{\"title\":\"a\",\"price\":0.25}", &o, "price");
    assert_string_equal(e.list[0].message, "must be at least 0.5");
    run("{\"title\":\"a\",\"done\":1}", &o, "done");
    e = run("{\"title\":\"a\",\"color\":\"blue\"}", &o, "color");
    assert_string_equal(e.list[0].message, "must be one of: red, green");
    run("{\"title\":\"a\",\"addr\":[]}", &o, "addr");
    run("{\"title\":\"a\",\"addr\":{}}", &o, "addr.city");
    run("{\"title\":\"a\",\"addr\":{\"city\":1,\"street\":2}}", &o, "addr.street|addr.city");
    e = run("{\"title\":\"a\",\"tags\":[\"a\",\"b\",\"c\"]}", &o, "tags");
    assert_string_equal(e.list[0].message, "must be at most 2 items");
    run("{\"title\":\"a\",\"tags\":[\"abcd\",1]}", &o, "tags[0]|tags[1]");
    run("{\"title\":\"a\",\"tags\":{}}", &o, "tags");
    run("{\"title\":\"a\",\"lines\":[{\"qty\":1,\"sku\":\"ab\"},{\"qty\":0,\"sku\":\"a\",\"x\":1},"
        "5]}",
        &o, "lines[1].qty|lines[1].sku|lines[1].x|lines[2]");
    /* every fault listed, in table order */
    e = run("{\"title\":1,\"count\":\"x\",\"price\":\"y\",\"done\":null,\"color\":2}", &o,
            "title|count|price|done|color");
    assert_int_equal(e.count, 5);
}

static void test_valid_root_and_limits(void **state) {
    (void)state;
    crest_json_t *doc;
    crest_json_errors_t errs;
    order_t o = defaults();
    assert_int_equal(parse("[1]", &doc), 0);
    assert_int_equal(crest_json_validate(doc, &order_schema, &o, &errs), CREST_EINVAL);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.list[0].field, "");
    assert_string_equal(errs.list[0].message, "must be an object");
    crest_json_free(doc);
    /* a hundred bad items: counted, the first CREST_JSON_ERRORS_MAX listed */
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof(text), "{\"title\":\"a\",\"lines\":[");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s1", i ? "," : "");
    snprintf(text + n, sizeof(text) - n, "]}");
    assert_int_equal(parse(text, &doc), 0);
    assert_int_equal(crest_json_validate(doc, &order_schema, NULL, &errs), CREST_EINVAL);
    assert_int_equal(errs.count, 100);
    assert_string_equal(errs.list[15].field, "lines[15]");
    crest_json_free(doc);
    /* a long member name is cut at a character boundary */
    static const crest_field_t none[] = {CREST_FIELD_END};
    static const crest_schema_t strict = {.fields = none, .strict = 1};
    n = (size_t)snprintf(text, sizeof(text), "{\"");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "\xc3\xa9");
    snprintf(text + n, sizeof(text) - n, "\":1}");
    assert_int_equal(parse(text, &doc), 0);
    assert_int_equal(crest_json_validate(doc, &strict, NULL, &errs), CREST_EINVAL);
    size_t flen = strlen(errs.list[0].field);
    assert_true(flen < sizeof(errs.list[0].field));
    assert_string_equal(errs.list[0].field + flen - 3, "...");
    assert_int_equal(crest_utf8_feed(CREST_UTF8_ACCEPT, errs.list[0].field, flen),
                     CREST_UTF8_ACCEPT);
    crest_json_free(doc);
    /* a malformed table: an unknown type */
    static const crest_field_t bad_fields[] = {{.name = "x", .type = (crest_type_t)99}, {0}};
    static const crest_schema_t bad = {.fields = bad_fields};
    assert_int_equal(parse("{\"x\":1}", &doc), 0);
    assert_int_equal(crest_json_validate(doc, &bad, NULL, &errs), CREST_EINVAL);
    assert_int_equal(errs.count, 0);
    crest_json_free(doc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_strict),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_valid_ok),
        cmocka_unit_test(test_valid_faults),
        cmocka_unit_test(test_valid_root_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
