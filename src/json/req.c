/* JSON, query strings and route parameters of a request, checked against the tables of
 * crest/json.h, with crest's 400/422 answers. The parsed body is kept with the request (one parse
 * however many calls) through crest__req_on_free: a request that never asks costs nothing. Query
 * and route values are text: each is turned into the JSON value its field's type asks for
 * ("12" an integer, "true" a boolean) or left a string when it is not one, and then checked by
 * the same code as a body's member, so the messages and the shape of the answer are the same. */
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "json/jsonv.h"

/* ---- the body ---- */

static void doc_free(void *p) {
    cJSON_Delete(p);
}

/* Answer 422 with every fault listed. Returns CREST_EINVAL (the code for the handler). */
static int answer_faults(crest_req_t *req, const crest_json_errors_t *errs) {
    const char *fields[CREST_JSON_ERRORS_MAX], *messages[CREST_JSON_ERRORS_MAX];
    size_t n = errs->count < CREST_JSON_ERRORS_MAX ? errs->count : CREST_JSON_ERRORS_MAX;
    for (size_t i = 0; i < n; i++) {
        fields[i] = errs->list[i].field;
        messages[i] = errs->list[i].message;
    }
    crest__res_error_list(req, 422, n ? messages[0] : NULL, fields, messages, n);
    return CREST_EINVAL;
}

static int answer_one(crest_req_t *req, int status, const char *field, const char *message) {
    crest__res_error_list(req, status, message, &field, &message, field ? 1 : 0);
    return CREST_EINVAL;
}

int crest_req_json(crest_req_t *req, const crest_json_t **root) {
    cJSON *doc = crest__req_cleanup_find(req, doc_free);
    if (doc != NULL) {
        *root = crest__jv(doc);
        return 0;
    }
    *root = NULL;
    crest_str_t body = crest_req_body(req);
    crest__jsonscan_t scan;
    int rc = crest__json_parse(body.ptr ? body.ptr : "", body.len, &doc, &scan);
    if (rc == CREST_EINVAL) {
        const char *why = "malformed JSON";
        if (scan.verdict == CREST__JSONSCAN_BAD_UTF8)
            why = "malformed JSON: the body is not valid UTF-8";
        else if (scan.verdict == CREST__JSONSCAN_CONTROL)
            why = "malformed JSON: control characters must be escaped in strings and only "
                  "space, tab, CR and LF may separate tokens";
        else if (body.len == 0)
            why = "malformed JSON: the body is empty";
        return answer_one(req, 400, NULL, why);
    }
    if (rc == CREST_ENOTSUP)
        return answer_one(req, 422, scan.field, "must not contain U+0000");
    if (rc != 0)
        return rc;
    if (crest__req_on_free(req, doc_free, doc) != 0) {
        cJSON_Delete(doc);
        return CREST_ENOMEM;
    }
    *root = crest__jv(doc);
    return 0;
}

int crest_req_valid(crest_req_t *req, const crest_schema_t *schema, void *out) {
    const crest_json_t *root;
    int rc = crest_req_json(req, &root);
    if (rc != 0)
        return rc;
    crest_json_errors_t errs;
    errs.count = 0;
    if (crest__json_check(crest__cj(root), schema, out, &errs) != 0)
        return CREST_EINVAL; /* a malformed table: unanswered, a 500 */
    return errs.count ? answer_faults(req, &errs) : 0;
}

/* ---- text values ---- */

/* A JSON value for text `s` (NUL-terminated, len bytes) as a field of type t wants it, or a
 * string holding the text when it is not one (the check then says what it must be). */
static cJSON *coerce(const char *s, size_t len, crest_type_t t) {
    if (t == CREST_T_BOOL) {
        if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
            return cJSON_CreateTrue();
        if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
            return cJSON_CreateFalse();
    } else if ((t == CREST_T_INT || t == CREST_T_NUMBER) && len > 0 && len < 64) {
        /* Decimal only, as JSON writes numbers: strtod would take " 1", "0x1f", "inf", "nan". */
        int ok = (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'));
        for (size_t i = 0; ok && i < len; i++)
            ok =
                (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
                (t == CREST_T_NUMBER && (s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == '+'));
        char *end;
        double d = ok ? strtod(s, &end) : 0;
        if (ok && end == s + len)
            return cJSON_CreateNumber(d);
    }
    return cJSON_CreateString(s);
}

static cJSON *keeper(crest_req_t *req);

/* Check the text values vals[0..n) of field f (decoded, NUL-terminated) into out. A value whose
 * output points into it (a string, an array) joins *keep, made on first use, whose life is the
 * request's; a number or boolean is copied out and its node freed at once, so typed route and
 * query parameters allocate nothing that outlives the call. */
static int check_texts(crest_req_t *req, const crest_field_t *f, const char **vals, size_t *lens,
                       size_t n, cJSON **keep, void *out, crest_json_errors_t *errs) {
    void *slot = out != NULL && f->offset != CREST_NO_OUTPUT ? (char *)out + f->offset : NULL;
    if (f->type == CREST_T_OBJECT || f->type == CREST_T_ANY ||
        (f->type == CREST_T_ARRAY && f->items != NULL &&
         (f->items->type == CREST_T_OBJECT || f->items->type == CREST_T_ARRAY ||
          f->items->type == CREST_T_ANY)))
        return CREST_EINVAL; /* no text stands for these */
    for (size_t i = 0; i < n; i++) {
        if (memchr(vals[i], '\0', lens[i]) != NULL) {
            crest__json_fault(errs, f->name, "must not contain U+0000");
            return 0;
        }
        if (crest_utf8_feed(CREST_UTF8_ACCEPT, vals[i], lens[i]) != CREST_UTF8_ACCEPT) {
            crest__json_fault(errs, f->name, "must be UTF-8 text");
            return 0;
        }
    }
    cJSON *v = NULL;
    if (f->type == CREST_T_ARRAY) {
        if (n > 0 && (v = cJSON_CreateArray()) == NULL)
            return CREST_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            cJSON *item = coerce(vals[i], lens[i], f->items ? f->items->type : CREST_T_STRING);
            if (item == NULL || !cJSON_AddItemToArray(v, item)) {
                cJSON_Delete(item);
                cJSON_Delete(v);
                return CREST_ENOMEM;
            }
        }
    } else if (n > 0 && (v = coerce(vals[0], lens[0], f->type)) == NULL) {
        return CREST_ENOMEM;
    }
    if (v != NULL &&
        (f->type == CREST_T_INT || f->type == CREST_T_NUMBER || f->type == CREST_T_BOOL)) {
        int rc = crest__json_check_field(v, f, slot, f->name, errs);
        cJSON_Delete(v);
        return rc;
    }
    if (v != NULL &&
        ((*keep == NULL && (*keep = keeper(req)) == NULL) || !cJSON_AddItemToArray(*keep, v))) {
        cJSON_Delete(v);
        return CREST_ENOMEM;
    }
    return crest__json_check_field(v, f, slot, f->name, errs);
}

/* A list that lives as long as the request, holding the values made from text. */
/* Not doc_free itself: crest_req_json finds the body's document by its cleanup function, and a
 * keeper registered with the same one would be taken for it. */
static void keeper_free(void *p) {
    doc_free(p);
}

static cJSON *keeper(crest_req_t *req) {
    cJSON *keep = cJSON_CreateArray();
    if (keep != NULL && crest__req_on_free(req, keeper_free, keep) != 0) {
        cJSON_Delete(keep);
        keep = NULL;
    }
    return keep;
}

/* The pairs of a query string, one at a time. */
typedef struct {
    const char *p, *end;
    crest_str_t key, val;
} qiter_t;

static int qnext(qiter_t *it) {
    while (it->p != NULL && it->p < it->end) {
        const char *amp = memchr(it->p, '&', (size_t)(it->end - it->p));
        const char *stop = amp ? amp : it->end;
        const char *eq = memchr(it->p, '=', (size_t)(stop - it->p));
        const char *kend = eq ? eq : stop;
        it->key = (crest_str_t){it->p, (size_t)(kend - it->p)};
        it->val = eq ? (crest_str_t){eq + 1, (size_t)(stop - eq - 1)} : (crest_str_t){stop, 0};
        it->p = amp ? amp + 1 : it->end;
        if (it->key.len > 0 || it->val.len > 0)
            return 1; /* "a&&b": the empty pair between is nothing */
    }
    return 0;
}

/* The key of a pair, form-decoded, equals name. */
static int key_is(crest_str_t key, const char *name) {
    char mem[128];
    if (key.len >= sizeof(mem))
        return 0; /* no field's name is that long */
    size_t n = crest_query_decode(key, mem, sizeof(mem));
    return n == strlen(name) && memcmp(mem, name, n) == 0;
}

static int field_of(const crest_schema_t *s, crest_str_t key) {
    for (const crest_field_t *f = s->fields; f->name != NULL; f++)
        if (key_is(key, f->name))
            return 1;
    return 0;
}

/* Repeated keys beyond this many are not looked at (a query string is at most a request line). */
#define MAX_REPEAT 64

/* crest_req_query_all's values as the texts and lengths check_texts takes (max <= MAX_REPEAT). */
static int query_values(crest_req_t *req, const char *name, const char **vals, size_t *lens,
                        size_t max, size_t *count) {
    crest_str_t v[MAX_REPEAT];
    int rc = crest_req_query_all(req, name, v, max, count);
    for (size_t i = 0; rc == 0 && i < max && i < *count; i++) {
        vals[i] = v[i].ptr;
        lens[i] = v[i].len;
    }
    return rc;
}

int crest_req_query_valid(crest_req_t *req, const crest_schema_t *schema, void *out) {
    cJSON *keep = NULL;
    crest_json_errors_t errs;
    errs.count = 0;
    for (const crest_field_t *f = schema->fields; f->name != NULL; f++) {
        const char *vals[MAX_REPEAT];
        size_t lens[MAX_REPEAT], n;
        int rc = query_values(req, f->name, vals, lens, MAX_REPEAT, &n);
        if (rc == 0)
            rc =
                check_texts(req, f, vals, lens, n < MAX_REPEAT ? n : MAX_REPEAT, &keep, out, &errs);
        if (rc != 0)
            return rc;
    }
    if (schema->strict) {
        crest_str_t q = crest_req_query(req);
        qiter_t it = {q.ptr, q.ptr + q.len, {0}, {0}};
        while (qnext(&it)) {
            if (field_of(schema, it.key))
                continue;
            char name[128];
            crest_query_decode(it.key, name, sizeof(name));
            crest__json_fault(&errs, name, "is not allowed");
        }
    }
    return errs.count ? answer_faults(req, &errs) : 0;
}

int crest_req_params_valid(crest_req_t *req, const crest_schema_t *schema, void *out) {
    cJSON *keep = NULL;
    crest_json_errors_t errs;
    errs.count = 0;
    for (const crest_field_t *f = schema->fields; f->name != NULL; f++) {
        crest_str_t v = crest_req_param(req, f->name);
        if (v.ptr == NULL && crest__req_param_raw(req, f->name).ptr != NULL)
            return answer_one(req, 400, f->name, "malformed percent-encoding in the path");
        /* A view into the read buffer is not NUL-terminated: a copy for the text check. */
        const char *val = v.ptr ? crest_req_keep(req, v).ptr : NULL;
        if (v.ptr != NULL && val == NULL)
            return CREST_ENOMEM;
        int rc = check_texts(req, f, &val, &v.len, v.ptr ? 1 : 0, &keep, out, &errs);
        if (rc != 0)
            return rc;
    }
    return errs.count ? answer_faults(req, &errs) : 0;
}

/* ---- single values ---- */

static int query_one(crest_req_t *req, const crest_field_t *f, void *slot) {
    const char *val;
    size_t len, n;
    int rc = query_values(req, f->name, &val, &len, 1, &n);
    if (rc != 0 || n == 0)
        return rc;
    cJSON *keep = NULL;
    crest_json_errors_t errs;
    errs.count = 0;
    crest_field_t g = *f;
    g.offset = 0;
    if ((rc = check_texts(req, &g, &val, &len, 1, &keep, slot, &errs)) != 0)
        return rc;
    return errs.count ? answer_faults(req, &errs) : 0;
}

int crest_req_query_int(crest_req_t *req, const char *name, int64_t def, int64_t min, int64_t max,
                        int64_t *out) {
    crest_field_t f = {.name = name,
                       .type = CREST_T_INT,
                       .flags = CREST_MIN | CREST_MAX,
                       .min = (double)min,
                       .max = (double)max};
    *out = def;
    return query_one(req, &f, out);
}

int crest_req_query_bool(crest_req_t *req, const char *name, int def, int *out) {
    crest_field_t f = {.name = name, .type = CREST_T_BOOL};
    *out = def;
    return query_one(req, &f, out);
}

int crest_req_query_str(crest_req_t *req, const char *name, crest_str_t *out) {
    const char *val;
    size_t len, n;
    *out = (crest_str_t){NULL, 0};
    int rc = query_values(req, name, &val, &len, 1, &n);
    if (rc == 0 && n > 0)
        *out = (crest_str_t){val, len};
    return rc;
}

int crest_req_query_all(crest_req_t *req, const char *name, crest_str_t *out, size_t max,
                        size_t *count) {
    *count = 0;
    crest_str_t q = crest_req_query(req);
    qiter_t it = {q.ptr, q.ptr + q.len, {0}, {0}};
    size_t n = 0;
    while (qnext(&it)) {
        if (!key_is(it.key, name))
            continue;
        if (n < max) {
            char *d = crest_req_alloc(req, it.val.len + 1);
            if (d == NULL)
                return CREST_ENOMEM;
            out[n] = (crest_str_t){d, crest_query_decode(it.val, d, it.val.len + 1)};
        }
        n++;
    }
    *count = n;
    return 0;
}

int crest_req_param_int(crest_req_t *req, const char *name, int64_t min, int64_t max,
                        int64_t *out) {
    const crest_field_t fields[] = {{.name = name,
                                     .type = CREST_T_INT,
                                     .flags = CREST_REQUIRED | CREST_MIN | CREST_MAX,
                                     .min = (double)min,
                                     .max = (double)max,
                                     .offset = 0},
                                    {.name = NULL}};
    const crest_schema_t s = {.fields = fields};
    return crest_req_params_valid(req, &s, out);
}
