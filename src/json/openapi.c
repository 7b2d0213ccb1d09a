/* The OpenAPI 3.1 document of an app, written from the tables its handlers validate with
 * (crest_app_route_doc): a route documents its body, query, route parameters and answer by
 * naming the schemas it already uses, so nothing is written twice. JSON Schema 2020-12 (the
 * dialect of OpenAPI 3.1) says each rule of crest_field_t directly: type, minLength/maxLength in
 * characters as crest counts them, minimum/maximum, minItems/maxItems, enum, required,
 * additionalProperties for strict schemas, and a null type for CREST_NULLABLE. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "json/jsonv.h"

typedef struct {
    char *method; /* lower case, as an OpenAPI path item's key */
    char *pattern;
    crest_route_doc_t doc; /* its strings copied (freed with it) */
} api_route_t;

struct crest__api_s {
    api_route_t *routes;
    size_t n, cap;
};

static void api_free(void *p) {
    struct crest__api_s *api = p;
    for (size_t i = 0; i < api->n; i++) {
        api_route_t *r = &api->routes[i];
        free(r->method);
        free(r->pattern);
        free((char *)r->doc.summary);
        free((char *)r->doc.description);
        free((char *)r->doc.tags);
        free((char *)r->doc.operation_id);
    }
    free(api->routes);
    free(api);
}

static char *dup_or_null(const char *s, int *fail) {
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *fail = 1;
    return d;
}

int crest_app_route_doc(crest_app_t *app, const char *method, const char *pattern,
                        crest_handler_cb handler, void *data, const crest_route_doc_t *doc) {
    if (app->api == NULL) {
        struct crest__api_s *api = calloc(1, sizeof(*api));
        if (api == NULL || crest__app_own(app, api, api_free) != 0)
            return CREST_ENOMEM; /* crest__app_own freed it */
        app->api = api;
    }
    struct crest__api_s *api = app->api;
    if (api->n == api->cap) {
        size_t cap = api->cap ? api->cap * 2 : 8;
        api_route_t *r = realloc(api->routes, cap * sizeof(*r));
        if (r == NULL)
            return CREST_ENOMEM;
        api->routes = r;
        api->cap = cap;
    }
    int rc = crest_app_route(app, method, pattern, handler, data);
    if (rc != 0 || doc == NULL)
        return rc;
    api_route_t *r = &api->routes[api->n];
    int fail = 0;
    r->method = dup_or_null(method, &fail);
    r->pattern = dup_or_null(pattern, &fail);
    r->doc = *doc;
    r->doc.summary = dup_or_null(doc->summary, &fail);
    r->doc.description = dup_or_null(doc->description, &fail);
    r->doc.tags = dup_or_null(doc->tags, &fail);
    r->doc.operation_id = dup_or_null(doc->operation_id, &fail);
    api->n++; /* freed with the app even when a copy failed */
    for (char *m = r->method; m && *m; m++)
        if (*m >= 'A' && *m <= 'Z')
            *m = (char)(*m - 'A' + 'a');
    /* The route is in: a missing copy only loses its text in the document. */
    return fail ? CREST_ENOMEM : 0;
}

/* ---- writing ---- */

static void str(crest_buf_t *b, const char *s) {
    crest_buf_json_str(b, s, strlen(s));
}

/* Named schemas met, each written once under components/schemas. */
typedef struct {
    const crest_schema_t *list[64];
    size_t n;
} named_t;

static void collect(named_t *seen, const crest_schema_t *s);

static void collect_field(named_t *seen, const crest_field_t *f) {
    if (f->type == CREST_T_OBJECT && f->object != NULL)
        collect(seen, f->object);
    if (f->type == CREST_T_ARRAY && f->items != NULL)
        collect_field(seen, f->items);
}

static void collect(named_t *seen, const crest_schema_t *s) {
    if (s == NULL)
        return;
    if (s->name != NULL) {
        for (size_t i = 0; i < seen->n; i++)
            if (seen->list[i] == s || strcmp(seen->list[i]->name, s->name) == 0)
                return; /* met before (a recursive schema ends here too); first of a name wins */
        if (seen->n == sizeof(seen->list) / sizeof(seen->list[0]))
            return;
        seen->list[seen->n++] = s;
    }
    for (const crest_field_t *f = s->fields; f && f->name; f++)
        collect_field(seen, f);
}

static void write_object(crest_buf_t *b, const crest_schema_t *s);

static void write_type(crest_buf_t *b, const char *type, int nullable) {
    crest_buf_puts(b, "\"type\":");
    if (nullable) {
        crest_buf_printf(b, "[\"%s\",\"null\"]", type);
    } else {
        crest_buf_printf(b, "\"%s\"", type);
    }
}

static void write_bound(crest_buf_t *b, const char *key, double v, int integral) {
    if (integral)
        crest_buf_printf(b, ",\"%s\":%lld", key, (long long)v);
    else
        crest_buf_printf(b, ",\"%s\":%.17g", key, v);
}

static void write_bounds(crest_buf_t *b, const crest_field_t *f, const char *min, const char *max,
                         int integral) {
    if (f->flags & CREST_MIN)
        write_bound(b, min, f->min, integral);
    if (f->flags & CREST_MAX)
        write_bound(b, max, f->max, integral);
}

/* A field's JSON Schema. */
static void write_field(crest_buf_t *b, const crest_field_t *f) {
    int nul = (f->flags & CREST_NULLABLE) != 0;
    crest_buf_puts(b, "{");
    if (f->description != NULL) {
        crest_buf_puts(b, "\"description\":");
        str(b, f->description);
        crest_buf_puts(b, ",");
    }
    switch (f->type) {
    case CREST_T_STRING:
        write_type(b, "string", nul);
        write_bounds(b, f, "minLength", "maxLength", 1);
        if (f->enums != NULL) {
            crest_buf_puts(b, ",\"enum\":[");
            for (const char *const *e = f->enums; *e; e++) {
                if (e != f->enums)
                    crest_buf_puts(b, ",");
                str(b, *e);
            }
            crest_buf_puts(b, nul ? ",null]" : "]");
        }
        break;
    case CREST_T_INT:
        write_type(b, "integer", nul);
        write_bounds(b, f, "minimum", "maximum", 0);
        break;
    case CREST_T_NUMBER:
        write_type(b, "number", nul);
        write_bounds(b, f, "minimum", "maximum", 0);
        break;
    case CREST_T_BOOL:
        write_type(b, "boolean", nul);
        break;
    case CREST_T_OBJECT:
        if (f->object != NULL && f->object->name != NULL) {
            crest_buf_puts(b, nul ? "\"anyOf\":[{\"$ref\":\"#/components/schemas/"
                                  : "\"$ref\":\"#/components/schemas/");
            crest_buf_puts(b, f->object->name); /* checked by crest__api_name_ok */
            crest_buf_puts(b, nul ? "\"},{\"type\":\"null\"}]" : "\"");
        } else if (f->object != NULL) {
            crest_buf_puts(b, nul ? "\"anyOf\":[" : "\"allOf\":[");
            write_object(b, f->object);
            crest_buf_puts(b, nul ? ",{\"type\":\"null\"}]" : "]");
        } else {
            write_type(b, "object", nul);
        }
        break;
    case CREST_T_ARRAY:
        write_type(b, "array", nul);
        write_bounds(b, f, "minItems", "maxItems", 1);
        if (f->items != NULL) {
            crest_buf_puts(b, ",\"items\":");
            write_field(b, f->items);
        }
        break;
    default: /* CREST_T_ANY: any value */
        if (b->len > 0 && b->ptr[b->len - 1] == ',')
            b->len--;
        break;
    }
    crest_buf_puts(b, "}");
}

static void write_object(crest_buf_t *b, const crest_schema_t *s) {
    crest_buf_puts(b, "{\"type\":\"object\"");
    if (s->description != NULL) {
        crest_buf_puts(b, ",\"description\":");
        str(b, s->description);
    }
    crest_buf_puts(b, ",\"properties\":{");
    size_t nreq = 0;
    for (const crest_field_t *f = s->fields; f && f->name; f++) {
        if (f != s->fields)
            crest_buf_puts(b, ",");
        str(b, f->name);
        crest_buf_puts(b, ":");
        write_field(b, f);
        nreq += (f->flags & CREST_REQUIRED) != 0;
    }
    crest_buf_puts(b, "}");
    if (nreq > 0) {
        crest_buf_puts(b, ",\"required\":[");
        size_t k = 0;
        for (const crest_field_t *f = s->fields; f && f->name; f++) {
            if (!(f->flags & CREST_REQUIRED))
                continue;
            if (k++)
                crest_buf_puts(b, ",");
            str(b, f->name);
        }
        crest_buf_puts(b, "]");
    }
    if (s->strict)
        crest_buf_puts(b, ",\"additionalProperties\":false");
    crest_buf_puts(b, "}");
}

/* A schema where a body or an answer names it: a $ref when it has a name. */
static void write_ref(crest_buf_t *b, const crest_schema_t *s) {
    if (s->name != NULL) {
        crest_buf_puts(b, "{\"$ref\":\"#/components/schemas/");
        crest_buf_puts(b, s->name);
        crest_buf_puts(b, "\"}");
    } else {
        write_object(b, s);
    }
}

/* A component name must match ^[a-zA-Z0-9._-]+$ (OpenAPI 3.1, 4.8.7.1): then it needs no
 * escaping in a JSON string or a JSON pointer either. */
static int name_ok(const char *s) {
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static const crest_field_t *find(const crest_schema_t *s, const char *name, size_t len) {
    for (const crest_field_t *f = s ? s->fields : NULL; f && f->name; f++)
        if (strlen(f->name) == len && memcmp(f->name, name, len) == 0)
            return f;
    return NULL;
}

/* Each path segment of the pattern: ":id" -> "{id}", "*" -> "{wildcard}". With `params`, writes
 * the parameter objects instead. Returns the number of route parameters. */
static size_t write_path(crest_buf_t *b, const char *pattern, const crest_schema_t *ps, int params,
                         size_t k) {
    size_t n = 0;
    const char *p = pattern;
    while (*p) {
        const char *seg = p + (*p == '/');
        const char *end = strchr(seg, '/');
        if (end == NULL)
            end = seg + strlen(seg);
        int is_param = *seg == ':', is_rest = end - seg == 1 && *seg == '*';
        const char *name = is_param ? seg + 1 : is_rest ? "*" : seg;
        size_t len = is_param ? (size_t)(end - seg - 1) : (size_t)(end - seg);
        if (!params) {
            if (*p == '/')
                crest_buf_puts(b, "/");
            if (is_param) {
                crest_buf_printf(b, "{%.*s}", (int)len, name);
            } else if (is_rest) {
                crest_buf_puts(b, "{wildcard}");
            } else {
                crest_buf_append(b, seg, (size_t)(end - seg));
            }
        } else if (is_param || is_rest) {
            crest_buf_puts(b, k + n ? ",{\"name\":" : "{\"name\":");
            if (is_rest)
                str(b, "wildcard");
            else
                crest_buf_json_str(b, name, len);
            crest_buf_puts(b, ",\"in\":\"path\",\"required\":true,\"schema\":");
            const crest_field_t *f = find(ps, name, len);
            if (f != NULL)
                write_field(b, f);
            else
                crest_buf_puts(b, "{\"type\":\"string\"}");
            crest_buf_puts(b, "}");
        }
        n += is_param || is_rest;
        p = end;
    }
    return n;
}

static void write_operation(crest_buf_t *b, const api_route_t *r) {
    const crest_route_doc_t *d = &r->doc;
    crest_buf_puts(b, "{\"operationId\":");
    if (d->operation_id != NULL) {
        str(b, d->operation_id);
    } else {
        /* get_api_todos_id: unique, since method and pattern are */
        crest_buf_puts(b, "\"");
        crest_buf_puts(b, r->method);
        for (const char *p = r->pattern; *p; p++) {
            char c = *p;
            int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
            if (keep)
                crest_buf_append(b, &c, 1);
            else if (c == '/' && p[1] != '\0')
                crest_buf_puts(b, "_");
            else if (c == '*')
                crest_buf_puts(b, "wildcard");
        }
        crest_buf_puts(b, "\"");
    }
    if (d->summary != NULL) {
        crest_buf_puts(b, ",\"summary\":");
        str(b, d->summary);
    }
    if (d->description != NULL) {
        crest_buf_puts(b, ",\"description\":");
        str(b, d->description);
    }
    if (d->tags != NULL && *d->tags) {
        crest_buf_puts(b, ",\"tags\":[");
        const char *p = d->tags;
        for (int first = 1;; first = 0) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            if (!first)
                crest_buf_puts(b, ",");
            crest_buf_json_str(b, p, len);
            if (comma == NULL)
                break;
            p = comma + 1;
        }
        crest_buf_puts(b, "]");
    }
    crest_buf_puts(b, ",\"parameters\":[");
    size_t k = write_path(b, r->pattern, d->params, 1, 0);
    for (const crest_field_t *f = d->query ? d->query->fields : NULL; f && f->name; f++) {
        crest_buf_puts(b, k++ ? ",{\"name\":" : "{\"name\":");
        str(b, f->name);
        crest_buf_printf(b, ",\"in\":\"query\",\"required\":%s",
                         f->flags & CREST_REQUIRED ? "true" : "false");
        if (f->description != NULL) {
            crest_buf_puts(b, ",\"description\":");
            str(b, f->description);
        }
        crest_buf_puts(b, ",\"schema\":");
        write_field(b, f);
        crest_buf_puts(b, "}");
    }
    crest_buf_puts(b, "]");
    if (d->body != NULL) {
        crest_buf_puts(b, ",\"requestBody\":{\"required\":true,\"content\":{\"application/json\":"
                          "{\"schema\":");
        write_ref(b, d->body);
        crest_buf_puts(b, "}}}");
    }
    int status = d->status ? d->status : 200;
    crest_buf_printf(b, ",\"responses\":{\"%d\":{\"description\":", status);
    str(b, crest_status_reason(status));
    if (d->response != NULL && status != 204) {
        crest_buf_puts(b, ",\"content\":{\"application/json\":{\"schema\":");
        write_ref(b, d->response);
        crest_buf_puts(b, "}}");
    }
    crest_buf_puts(b, "}");
    static const char err[] = ",\"content\":{\"application/json\":{\"schema\":"
                              "{\"$ref\":\"#/components/schemas/CrestError\"}}}}";
    if (d->body != NULL || d->params != NULL)
        crest_buf_printf(b, ",\"400\":{\"description\":\"%s\"%s",
                         d->body ? "Malformed JSON" : "Malformed percent-encoding", err);
    if (d->body != NULL || d->query != NULL || d->params != NULL)
        crest_buf_printf(b, ",\"422\":{\"description\":\"Validation failed\"%s", err);
    crest_buf_puts(b, "}}");
}

int crest_app_openapi(const crest_app_t *app, const crest_openapi_info_t *info, crest_buf_t *out) {
    const struct crest__api_s *api = app->api;
    size_t n = api ? api->n : 0;
    crest_buf_puts(out, "{\"openapi\":\"3.1.0\",\"info\":{\"title\":");
    str(out, info && info->title ? info->title : "crest app");
    crest_buf_puts(out, ",\"version\":");
    str(out, info && info->version ? info->version : "0.1.0");
    if (info && info->description) {
        crest_buf_puts(out, ",\"description\":");
        str(out, info->description);
    }
    crest_buf_puts(out, "},\"paths\":{");
    named_t seen = {.n = 0};
    size_t npaths = 0;
    for (size_t i = 0; i < n; i++) {
        const api_route_t *r = &api->routes[i];
        collect(&seen, r->doc.body);
        collect(&seen, r->doc.response);
        collect(&seen, r->doc.query);
        collect(&seen, r->doc.params);
        size_t j = 0;
        while (j < i && strcmp(api->routes[j].pattern, r->pattern) != 0)
            j++;
        if (j < i)
            continue; /* written with the first route of its pattern */
        crest_buf_puts(out, npaths++ ? "," : "");
        crest_buf_puts(out, "\"");
        crest_buf_t path = CREST_BUF_INIT;
        write_path(&path, r->pattern, NULL, 0, 0);
        if (path.ptr != NULL) {
            /* the pattern as a JSON string, without its quotes */
            crest_buf_t q = CREST_BUF_INIT;
            crest_buf_json_str(&q, path.ptr, path.len);
            if (q.len >= 2)
                crest_buf_append(out, q.ptr + 1, q.len - 2);
            out->err |= q.err;
            crest_buf_free(&q);
        }
        out->err |= path.err;
        crest_buf_free(&path);
        crest_buf_puts(out, "\":{");
        size_t nops = 0;
        for (size_t k = i; k < n; k++) {
            const api_route_t *o = &api->routes[k];
            if (strcmp(o->pattern, r->pattern) != 0)
                continue;
            static const char *const ok[] = {"get",     "put",  "post",  "delete",
                                             "options", "head", "patch", "trace"};
            int known = 0;
            for (size_t m = 0; m < sizeof(ok) / sizeof(ok[0]); m++)
                known |= strcmp(o->method, ok[m]) == 0;
            if (!known)
                continue; /* OpenAPI names only these */
            crest_buf_puts(out, nops++ ? ",\"" : "\"");
            crest_buf_puts(out, o->method);
            crest_buf_puts(out, "\":");
            write_operation(out, o);
        }
        crest_buf_puts(out, "}");
    }
    crest_buf_puts(out, "},\"components\":{\"schemas\":{");
    for (size_t i = 0; i < seen.n; i++) {
        if (!name_ok(seen.list[i]->name))
            continue;
        str(out, seen.list[i]->name);
        crest_buf_puts(out, ":");
        write_object(out, seen.list[i]);
        crest_buf_puts(out, ",");
    }
    crest_buf_puts(out,
                   "\"CrestError\":{\"type\":\"object\",\"description\":\"crest's error body\","
                   "\"properties\":{\"status\":{\"type\":\"integer\"},"
                   "\"error\":{\"type\":\"string\"},\"field\":{\"type\":\"string\"},"
                   "\"errors\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
                   "\"properties\":{\"field\":{\"type\":\"string\"},"
                   "\"message\":{\"type\":\"string\"}},\"required\":[\"field\",\"message\"]}}},"
                   "\"required\":[\"status\",\"error\"]}}}}");
    return out->err;
}

/* ---- serving ---- */

typedef struct {
    crest_app_t *app;
    char *title, *version, *description;
    pthread_mutex_t lock;
    _Atomic(char *) doc; /* built once, on the first request, then only read */
    size_t len;
} served_t;

static void served_free(void *p) {
    served_t *s = p;
    free(s->title);
    free(s->version);
    free(s->description);
    free(atomic_load(&s->doc));
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int on_openapi(crest_req_t *req, void *data) {
    served_t *s = data;
    char *doc = atomic_load_explicit(&s->doc, memory_order_acquire);
    if (doc == NULL) {
        /* Loop threads may ask at once: one builds, the others wait for it (once per app). */
        pthread_mutex_lock(&s->lock);
        if ((doc = atomic_load_explicit(&s->doc, memory_order_relaxed)) == NULL) {
            crest_openapi_info_t info = {s->title, s->version, s->description};
            crest_buf_t b = CREST_BUF_INIT;
            if (crest_app_openapi(s->app, &info, &b) == 0) {
                s->len = b.len;
                doc = b.ptr;
                atomic_store_explicit(&s->doc, doc, memory_order_release);
            } else {
                crest_buf_free(&b);
            }
        }
        pthread_mutex_unlock(&s->lock);
        if (doc == NULL)
            return CREST_ENOMEM;
    }
    return crest_res_send_borrowed(req, 200, "application/json", doc, s->len, NULL, NULL);
}

int crest_app_serve_openapi(crest_app_t *app, const char *path, const crest_openapi_info_t *info) {
    served_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CREST_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    s->app = app;
    int fail = 0;
    s->title = dup_or_null(info ? info->title : NULL, &fail);
    s->version = dup_or_null(info ? info->version : NULL, &fail);
    s->description = dup_or_null(info ? info->description : NULL, &fail);
    if (crest__app_own(app, s, served_free) != 0)
        return CREST_ENOMEM;
    if (fail)
        return CREST_ENOMEM;
    return crest_app_route(app, "GET", path, on_openapi, s);
}
