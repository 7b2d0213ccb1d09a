/* Declarative validation (crest_json_validate): a walk of a cJSON tree beside a table of fields.
 * Every fault is recorded, not only the first, so a client fixes a form in one round; the list is
 * bounded (CREST_JSON_ERRORS_MAX) and so is the path of each (a fixed buffer), so a hostile body
 * with a million bad items costs a walk, never memory. Recursion follows the document's nesting,
 * which the parse bounds (cJSON's limit of 1000). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json/jsonv.h"

size_t crest__utf8_chars(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80; /* every byte but a continuation byte */
    return n;
}

/* Cut `s` to at most max bytes without splitting a UTF-8 sequence; returns the length kept. */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--;
    return max;
}

void crest__json_fault(crest_json_errors_t *errs, const char *path, const char *fmt, ...) {
    if (errs->count++ >= CREST_JSON_ERRORS_MAX)
        return;
    crest_json_error_t *e = &errs->list[errs->count - 1];
    size_t len = strlen(path);
    if (len < sizeof(e->field)) {
        memcpy(e->field, path, len + 1);
    } else {
        size_t keep = utf8_cut(path, len, sizeof(e->field) - 4);
        memcpy(e->field, path, keep);
        memcpy(e->field + keep, "...", 4);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

/* The walk's state: the path of the value being checked, built in place. */
typedef struct {
    crest_json_errors_t *errs;
    char path[256];
    size_t len;
    int bad_table;
} walk_t;

/* Append ".name" (or "name" at the top) or "[i]"; returns the length to restore. A path that no
 * longer fits keeps what it has: the fault's field is cut anyway. */
static size_t push_name(walk_t *w, const char *name) {
    size_t old = w->len, n = strlen(name);
    size_t dot = old > 0;
    if (old + dot + n < sizeof(w->path)) {
        if (dot)
            w->path[w->len++] = '.';
        memcpy(w->path + w->len, name, n);
        w->len += n;
        w->path[w->len] = '\0';
    }
    return old;
}

static size_t push_index(walk_t *w, size_t i) {
    size_t old = w->len;
    int n = snprintf(w->path + w->len, sizeof(w->path) - w->len, "[%zu]", i);
    if (n > 0 && (size_t)n < sizeof(w->path) - w->len)
        w->len += (size_t)n;
    else
        w->path[w->len] = '\0';
    return old;
}

static void pop(walk_t *w, size_t old) {
    w->len = old;
    w->path[old] = '\0';
}

/* A bound as people write it: 200, not 2e+02 or 200.00000000000000. */
static const char *bound(char *buf, size_t cap, double v) {
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, cap, "%lld", (long long)v);
    else
        snprintf(buf, cap, "%g", v);
    return buf;
}

static const char *type_noun(crest_type_t t) {
    switch (t) {
    case CREST_T_STRING:
        return "a string";
    case CREST_T_INT:
        return "an integer";
    case CREST_T_NUMBER:
        return "a number";
    case CREST_T_BOOL:
        return "a boolean";
    case CREST_T_OBJECT:
        return "an object";
    case CREST_T_ARRAY:
        return "an array";
    default:
        return "a value";
    }
}

/* Check a value's size (a number, a length, a count) against the field's bounds. `unit` is
 * singular (" character"), or "" for a number's value. */
static int check_bounds(walk_t *w, const crest_field_t *f, double v, const char *unit) {
    char b[32];
    if ((f->flags & CREST_MIN) && !(v >= f->min)) {
        crest__json_fault(w->errs, w->path, "must be at least %s%s%s", bound(b, sizeof(b), f->min),
                          unit, *unit && f->min != 1 ? "s" : "");
        return 0;
    }
    if ((f->flags & CREST_MAX) && !(v <= f->max)) {
        crest__json_fault(w->errs, w->path, "must be at most %s%s%s", bound(b, sizeof(b), f->max),
                          unit, *unit && f->max != 1 ? "s" : "");
        return 0;
    }
    return 1;
}

static void check_object(walk_t *w, const crest_schema_t *s, const cJSON *obj, char *out);

static int check_enum(walk_t *w, const crest_field_t *f, const char *str) {
    if (f->enums == NULL)
        return 1;
    for (const char *const *e = f->enums; *e != NULL; e++)
        if (strcmp(*e, str) == 0)
            return 1;
    char list[80];
    size_t n = 0;
    list[0] = '\0';
    for (const char *const *e = f->enums; *e != NULL && n < sizeof(list); e++) {
        int k = snprintf(list + n, sizeof(list) - n, "%s%s", e == f->enums ? "" : ", ", *e);
        n += k > 0 ? (size_t)k : 0;
    }
    crest__json_fault(w->errs, w->path, "must be one of: %s", list);
    return 0;
}

/* One value against one field. `slot` is where its output goes, or NULL. */
static void check_value(walk_t *w, const crest_field_t *f, const cJSON *v, char *slot) {
    if (v == NULL) {
        if (f->flags & CREST_REQUIRED)
            crest__json_fault(w->errs, w->path, "is required");
        return;
    }
    if (cJSON_IsNull(v) && f->type != CREST_T_ANY) {
        if (!(f->flags & CREST_NULLABLE))
            crest__json_fault(w->errs, w->path, "must be %s, not null", type_noun(f->type));
        return;
    }
    switch (f->type) {
    case CREST_T_STRING: {
        if (!cJSON_IsString(v)) {
            crest__json_fault(w->errs, w->path, "must be a string");
            return;
        }
        size_t len = strlen(v->valuestring);
        if (!check_bounds(w, f, (double)crest__utf8_chars(v->valuestring, len), " character") ||
            !check_enum(w, f, v->valuestring))
            return;
        if (slot)
            memcpy(slot, &(crest_str_t){v->valuestring, len}, sizeof(crest_str_t));
        return;
    }
    case CREST_T_INT: {
        int64_t i = 0;
        int rc = crest_json_int(crest__jv(v), &i);
        if (rc == CREST_E2BIG) {
            crest__json_fault(w->errs, w->path, "must be an integer of magnitude below 2^53");
            return;
        }
        if (rc != 0) {
            crest__json_fault(w->errs, w->path, "must be an integer");
            return;
        }
        if (!check_bounds(w, f, (double)i, ""))
            return;
        if (slot)
            memcpy(slot, &i, sizeof(i));
        return;
    }
    case CREST_T_NUMBER: {
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
            crest__json_fault(w->errs, w->path,
                              cJSON_IsNumber(v) ? "is out of range" : "must be a number");
            return;
        }
        if (!check_bounds(w, f, v->valuedouble, ""))
            return;
        if (slot)
            memcpy(slot, &v->valuedouble, sizeof(double));
        return;
    }
    case CREST_T_BOOL: {
        if (!cJSON_IsBool(v)) {
            crest__json_fault(w->errs, w->path, "must be a boolean");
            return;
        }
        int b = cJSON_IsTrue(v);
        if (slot)
            memcpy(slot, &b, sizeof(b));
        return;
    }
    case CREST_T_OBJECT:
        if (!cJSON_IsObject(v)) {
            crest__json_fault(w->errs, w->path, "must be an object");
            return;
        }
        if (f->object != NULL) {
            check_object(w, f->object, v, slot); /* the nested struct is at slot */
            return;
        }
        break;
    case CREST_T_ARRAY: {
        if (!cJSON_IsArray(v)) {
            crest__json_fault(w->errs, w->path, "must be an array");
            return;
        }
        size_t n = 0;
        for (const cJSON *it = v->child; it != NULL; it = it->next) {
            if (f->items != NULL) {
                size_t old = push_index(w, n);
                check_value(w, f->items, it, NULL);
                pop(w, old);
            }
            n++;
        }
        check_bounds(w, f, (double)n, " item");
        break;
    }
    case CREST_T_ANY:
        break;
    default:
        w->bad_table = 1;
        return;
    }
    if (slot) {
        const crest_json_t *p = crest__jv(v);
        memcpy(slot, &p, sizeof(p));
    }
}

static const crest_field_t *find_field(const crest_schema_t *s, const char *name) {
    for (const crest_field_t *f = s->fields; f != NULL && f->name != NULL; f++)
        if (strcmp(f->name, name) == 0)
            return f;
    return NULL;
}

static void check_object(walk_t *w, const crest_schema_t *s, const cJSON *obj, char *out) {
    if (!cJSON_IsObject(obj)) {
        crest__json_fault(w->errs, w->path, "must be an object");
        return;
    }
    for (const crest_field_t *f = s->fields; f != NULL && f->name != NULL; f++) {
        size_t old = push_name(w, f->name);
        char *slot = out != NULL && f->offset != CREST_NO_OUTPUT ? out + f->offset : NULL;
        check_value(w, f, cJSON_GetObjectItemCaseSensitive(obj, f->name), slot);
        pop(w, old);
    }
    if (!s->strict)
        return;
    for (const cJSON *m = obj->child; m != NULL; m = m->next) {
        if (find_field(s, m->string) != NULL)
            continue;
        size_t old = push_name(w, m->string);
        crest__json_fault(w->errs, w->path, "is not allowed");
        pop(w, old);
    }
}

int crest__json_check_field(const cJSON *v, const crest_field_t *f, void *slot, const char *name,
                            crest_json_errors_t *errs) {
    walk_t w = {.errs = errs};
    w.path[0] = '\0';
    push_name(&w, name);
    check_value(&w, f, v, slot);
    return w.bad_table ? CREST_EINVAL : 0;
}

int crest__json_check(const cJSON *v, const crest_schema_t *schema, void *out,
                      crest_json_errors_t *errs) {
    walk_t w = {.errs = errs};
    w.path[0] = '\0';
    check_object(&w, schema, v, out);
    return w.bad_table ? CREST_EINVAL : 0;
}

int crest_json_validate(const crest_json_t *v, const crest_schema_t *schema, void *out,
                        crest_json_errors_t *errs) {
    crest_json_errors_t local;
    if (errs == NULL)
        errs = &local;
    errs->count = 0;
    int rc = crest__json_check(crest__cj(v), schema, out, errs);
    return rc != 0 || errs->count > 0 ? CREST_EINVAL : 0;
}
