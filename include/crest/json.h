/* JSON in, validated: a reading API over the JSON library crest links (cJSON), declarative
 * validation of request bodies, query strings and route parameters from C tables, and the
 * OpenAPI 3.1 document of an app's routes written from those same tables.
 *
 * Reading. crest_json_parse() is strict where cJSON alone is lenient (RFC 8259: raw control
 * characters in strings, bytes that are not UTF-8, control characters between tokens, anything
 * but whitespace after the value are all malformed), and it refuses a string holding U+0000,
 * which cJSON's C strings would cut short. A crest_json_t is an opaque value (a cJSON node
 * underneath): a document's root or any value inside it, read with the accessors below and
 * valid as long as its document. Every accessor takes NULL (an absent member) and answers as for
 * a value of the wrong type, so lookups chain without checks in between. Accessors are pure:
 * any thread, on a document no thread is freeing.
 *
 * Validation. A crest_schema_t lists an object's fields (crest_field_t): the JSON type, whether
 * the member is required, may be null, bounds, allowed strings, nested objects and arrays, and
 * where the value goes in the caller's output struct (offsetof). One call checks a body against
 * it and fills the struct, or answers the request itself:
 *   400 malformed JSON (or a body that is not UTF-8),
 *   422 well-formed but not what the schema says: every fault (up to CREST_JSON_ERRORS_MAX) with
 *       the path of its field ("items[2].name"; "" for the body itself, e.g. a body that is
 *       not an object),
 * with the JSON error body crest_res_error() writes (crest/http.h), the one shape crest uses:
 *   {"status":422,"error":"must be a string","field":"title",
 *    "errors":[{"field":"title","message":"must be a string"}, ...]}
 * "error" is the first fault's message. The request's Content-Type is not checked: a body is read
 * as JSON whatever it says (curl -d sends application/x-www-form-urlencoded by default), and one
 * that is not JSON gets the 400.
 *
 * Absent optional fields leave the output untouched: set the struct's defaults before the call.
 * A null for a CREST_NULLABLE field does the same (read the member with crest_json_get() to tell
 * null from absent). Output strings are NUL-terminated and live as long as the document (for a
 * request: as long as the request).
 *
 * A schema and its fields are read-only tables, usually static const: any thread may use them at
 * once. */
#ifndef CREST_JSON_H
#define CREST_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "crest/app.h"
#include "crest/buf.h"
#include "crest/export.h"
#include "crest/http.h"

/* ---- reading ---- */

/* A JSON value (opaque; a cJSON node underneath). */
typedef struct crest_json_s crest_json_t;

typedef enum {
    CREST_JSON_NONE = 0, /* no value: a NULL pointer (an absent member) */
    CREST_JSON_NULL,
    CREST_JSON_BOOL,
    CREST_JSON_NUMBER,
    CREST_JSON_STRING,
    CREST_JSON_ARRAY,
    CREST_JSON_OBJECT
} crest_json_type_t;

/* Parse `len` bytes of JSON text (RFC 8259, strictly; any value at the top, whitespace around
 * it). On success *out is the document's root, owned by the caller: free it with
 * crest_json_free(). Returns 0; CREST_EINVAL when the text is malformed; CREST_ENOTSUP when it is
 * well-formed but a string or member name holds U+0000 (kept out rather than cut short: a
 * request answers 422 for it); CREST_ENOMEM. *out is NULL on failure. Nesting deeper than
 * cJSON's limit (1000) is malformed. Any thread. */
CREST_API int crest_json_parse(const char *text, size_t len, crest_json_t **out);
/* Free a document from crest_json_parse(). crest_json_free(NULL) does nothing. Only roots. */
CREST_API void crest_json_free(crest_json_t *doc);

/* The type of v; CREST_JSON_NONE for NULL. */
CREST_API crest_json_type_t crest_json_type(const crest_json_t *v);
/* The member `key` (compared byte for byte) of object v; NULL when v is not an object or has no
 * such member. With duplicate names the first wins. Linear in the members. */
CREST_API const crest_json_t *crest_json_get(const crest_json_t *v, const char *key);
/* A string's UTF-8 bytes (NUL-terminated too, and holding no NUL); .ptr NULL when v is not a
 * string. Valid as long as the document. */
CREST_API crest_str_t crest_json_str(const crest_json_t *v);
/* A number: 0 and *out set, CREST_EINVAL when v is not a number. */
CREST_API int crest_json_num(const crest_json_t *v, double *out);
/* An integer: 0 and *out set; CREST_EINVAL when v is not a number or has a fraction ("1.0" is
 * the integer 1); CREST_E2BIG when its magnitude is 2^53 or more, where a double (what cJSON keeps)
 * no longer tells neighbouring integers apart. */
CREST_API int crest_json_int(const crest_json_t *v, int64_t *out);
/* true or false: 0 and *out set to 1 or 0, CREST_EINVAL when v is not a boolean. */
CREST_API int crest_json_bool(const crest_json_t *v, int *out);
/* The items of an array or the members of an object; 0 for any other value. Linear. */
CREST_API size_t crest_json_len(const crest_json_t *v);
/* Iteration over an array's items or an object's members, in document order:
 *   for (const crest_json_t *it = crest_json_first(v); it; it = crest_json_next(it)) ...
 * crest_json_first: NULL when v is empty or neither. crest_json_next: NULL after the last. */
CREST_API const crest_json_t *crest_json_first(const crest_json_t *v);
CREST_API const crest_json_t *crest_json_next(const crest_json_t *it);
/* The member name of an object's member (from crest_json_first/next over an object); .ptr NULL
 * for an array item or a root. NUL-terminated too. */
CREST_API crest_str_t crest_json_key(const crest_json_t *it);

/* ---- validation tables ---- */

typedef enum {
    CREST_T_STRING = 1, /* -> crest_str_t */
    CREST_T_INT,        /* an integer (see crest_json_int) -> int64_t */
    CREST_T_NUMBER,     /* -> double */
    CREST_T_BOOL,       /* true or false -> int (1 or 0) */
    CREST_T_OBJECT, /* with .object: the nested struct at offset; without: const crest_json_t* */
    CREST_T_ARRAY,  /* every item checked against .items -> const crest_json_t * */
    CREST_T_ANY     /* any value -> const crest_json_t * */
} crest_type_t;

/* Field flags. The bounds .min and .max apply only with their flag: to a number's value, a
 * string's length in characters (Unicode code points), an array's item count. */
#define CREST_REQUIRED 0x1u /* absent -> 422 "is required" */
#define CREST_NULLABLE 0x2u /* null is accepted (and leaves the output untouched) */
#define CREST_MIN 0x4u      /* value, length or count >= .min */
#define CREST_MAX 0x8u      /* value, length or count <= .max */

/* Written where a field has no place in the output struct: checked, not stored. */
#define CREST_NO_OUTPUT SIZE_MAX

typedef struct crest_schema_s crest_schema_t;
typedef struct crest_field_s crest_field_t;

/* One member of an object. Tables end with an entry whose name is NULL (CREST_FIELD_END). */
struct crest_field_s {
    const char *name; /* the member name (and query or route parameter name) */
    crest_type_t type;
    unsigned flags;               /* CREST_REQUIRED | CREST_NULLABLE | CREST_MIN | CREST_MAX */
    double min, max;              /* bounds, with CREST_MIN / CREST_MAX */
    const char *const *enums;     /* STRING: the allowed values, NULL-terminated list; NULL: any */
    const crest_schema_t *object; /* OBJECT: the nested object's schema (NULL: any object) */
    const crest_field_t *items;   /* ARRAY: the one field every item must match (its name and
                                     offset are unused); NULL: any items */
    size_t offset;           /* where the value goes in the output struct, or CREST_NO_OUTPUT */
    const char *description; /* for OpenAPI; may be NULL */
};

/* An object's fields. */
struct crest_schema_s {
    const char *name;            /* OpenAPI component name (components/schemas/<name>); a nested
                                    schema without a name is written inline */
    const crest_field_t *fields; /* ends with an entry whose name is NULL */
    int strict;                  /* nonzero: a member the table does not list -> 422 */
    const char *description;     /* for OpenAPI; may be NULL */
};

/* Table entries, short: the member's JSON name is the struct member's name, its output goes to
 * that member. Further designated initializers may follow the flags:
 *   static const crest_field_t todo_fields[] = {
 *       CREST_FIELD_STR(todo_t, title, CREST_REQUIRED | CREST_MAX, .max = 200),
 *       CREST_FIELD_BOOL(todo_t, done, 0),
 *       CREST_FIELD_END};
 * CREST_FIELD(name, type, flags, ...) is the general form, with no output unless .offset is
 * given. */
#define CREST_FIELD(name_, type_, flags_, ...)                                                     \
    { .name = (name_), .type = (type_), .flags = (flags_), .offset = CREST_NO_OUTPUT, __VA_ARGS__ }
#define CREST__FIELD_AT(st, m, type_, flags_, ...)                                                 \
    { .name = #m, .type = (type_), .flags = (flags_), .offset = offsetof(st, m), __VA_ARGS__ }
#define CREST_FIELD_STR(st, m, flags_, ...)                                                        \
    CREST__FIELD_AT(st, m, CREST_T_STRING, flags_, __VA_ARGS__)
#define CREST_FIELD_INT(st, m, flags_, ...) CREST__FIELD_AT(st, m, CREST_T_INT, flags_, __VA_ARGS__)
#define CREST_FIELD_NUM(st, m, flags_, ...)                                                        \
    CREST__FIELD_AT(st, m, CREST_T_NUMBER, flags_, __VA_ARGS__)
#define CREST_FIELD_BOOL(st, m, flags_, ...)                                                       \
    CREST__FIELD_AT(st, m, CREST_T_BOOL, flags_, __VA_ARGS__)
#define CREST_FIELD_ANY(st, m, flags_, ...) CREST__FIELD_AT(st, m, CREST_T_ANY, flags_, __VA_ARGS__)
/* A nested object with `schema` (a const crest_schema_t *; NULL: any object). */
#define CREST_FIELD_OBJ(st, m, flags_, schema, ...)                                                \
    CREST__FIELD_AT(st, m, CREST_T_OBJECT, flags_, .object = (schema), __VA_ARGS__)
/* An array whose items all match `item` (a const crest_field_t *; NULL: any items). */
#define CREST_FIELD_ARR(st, m, flags_, item, ...)                                                  \
    CREST__FIELD_AT(st, m, CREST_T_ARRAY, flags_, .items = (item), __VA_ARGS__)
#define CREST_FIELD_END                                                                            \
    { .name = NULL }

/* Faults found by a validation, for crest_json_validate() on plain memory. */
#define CREST_JSON_ERRORS_MAX 16
typedef struct {
    char field[128];  /* the path: "title", "items[2].name", "" for the value itself; a longer
                         path is cut at a character boundary and ends with "..." */
    char message[96]; /* "must be a string", "must be at most 200 characters", ... */
} crest_json_error_t;
typedef struct {
    size_t count; /* faults found; only the first CREST_JSON_ERRORS_MAX are listed */
    crest_json_error_t list[CREST_JSON_ERRORS_MAX];
} crest_json_errors_t;

/* Check value v (usually a document's root) against `schema` and fill the output struct `out`
 * (NULL: check only) as the table says. Returns 0 when valid; CREST_EINVAL when not, with every
 * fault in *errs (errs may be NULL); CREST_EINVAL and errs->count 0 for a malformed table (an
 * unknown type). `out` may be partly written when invalid. Strings in out point into the
 * document. Pure: any thread. */
CREST_API int crest_json_validate(const crest_json_t *v, const crest_schema_t *schema, void *out,
                                  crest_json_errors_t *errs);

/* ---- requests ----
 * These run in a handler, on the request's loop thread. Those that answer return CREST_EINVAL
 * once they have: the handler returns that code, and crest, seeing the request answered, sends
 * nothing more. CREST_ENOMEM comes back unanswered (return it: crest answers 503). */

/* The request body parsed as JSON, once per request: the document lives as long as the request
 * (freed with it) and later calls return the same root. Returns 0 with *root set; or answers 400
 * (malformed, not UTF-8) or 422 (a string holding U+0000, naming the top-level member that holds
 * it) and returns CREST_EINVAL; CREST_ENOMEM. An empty body is malformed. */
CREST_API int crest_req_json(crest_req_t *req, const crest_json_t **root);
/* Parse the body (crest_req_json) and validate it against `schema` into `out`. The body must be
 * a JSON object. Returns 0 when valid; otherwise answers 400 or 422 (see the preamble) and
 * returns CREST_EINVAL; CREST_ENOMEM. */
CREST_API int crest_req_valid(crest_req_t *req, const crest_schema_t *schema, void *out);
/* Validate the query string with the same tables. Values are text, taken as: STRING the value
 * form-decoded ('+' is a space) and UTF-8; INT a decimal integer ("-12"); NUMBER a decimal
 * number ("1.5e3"); BOOL true/false/1/0; ARRAY of one of those the key repeated ("?tag=a&tag=b",
 * in order; output a crest_json_t array, request-lifetime); "?flag" alone is the empty string.
 * OBJECT and ANY fields are a fault of the table: CREST_EINVAL, unanswered (a 500). Members the
 * table does not list are ignored unless schema->strict. Returns 0 when valid; else answers 422
 * and returns CREST_EINVAL; CREST_ENOMEM. */
CREST_API int crest_req_query_valid(crest_req_t *req, const crest_schema_t *schema, void *out);
/* The same for route parameters (crest_req_param: path-decoded). A parameter whose
 * percent-encoding is malformed gets 400. */
CREST_API int crest_req_params_valid(crest_req_t *req, const crest_schema_t *schema, void *out);

/* Single query parameters, typed. Absent: *out = def and 0. Present: parsed as for
 * crest_req_query_valid (the first one when the key repeats, as crest_req_query_param); out of
 * [min, max] or not of the type: answers 422 naming it and returns CREST_EINVAL. */
CREST_API int crest_req_query_int(crest_req_t *req, const char *name, int64_t def, int64_t min,
                                  int64_t max, int64_t *out);
CREST_API int crest_req_query_bool(crest_req_t *req, const char *name, int def, int *out);
/* The value form-decoded into request memory (NUL-terminated; the first when the key repeats);
 * .ptr NULL when absent. Returns 0 or CREST_ENOMEM. No check of UTF-8. */
CREST_API int crest_req_query_str(crest_req_t *req, const char *name, crest_str_t *out);
/* Every value of a repeated key, form-decoded into request memory, in order: fills out[0 ..
 * max) and sets *count to the number there are (which may exceed max). 0 or CREST_ENOMEM. */
CREST_API int crest_req_query_all(crest_req_t *req, const char *name, crest_str_t *out, size_t max,
                                  size_t *count);
/* A route parameter as an integer in [min, max]: 0 and *out; else (absent, not an integer, out
 * of range, malformed escape) answers 422 naming it and returns CREST_EINVAL. */
CREST_API int crest_req_param_int(crest_req_t *req, const char *name, int64_t min, int64_t max,
                                  int64_t *out);

/* ---- OpenAPI ---- */

/* What a route documents. Every member may be zero. Schemas are borrowed: they must outlive the
 * app (static tables). */
typedef struct {
    const char *summary;
    const char *description;
    const char *tags;               /* comma-separated tag names ("todos,admin"), or NULL */
    const crest_schema_t *body;     /* the request body (application/json) */
    const crest_schema_t *query;    /* query parameters */
    const crest_schema_t *params;   /* route parameters (a route parameter the schema does
                                       not list is documented as a string) */
    const crest_schema_t *response; /* the success answer's body (application/json) */
    int status;                     /* the success status; 0: 200 */
    const char *operation_id;       /* NULL: derived from the method and the pattern */
} crest_route_doc_t;

/* Add a route (as crest_app_route()) and keep a copy of `doc` (its strings are copied; schemas
 * borrowed) for the app's OpenAPI document. The handler validates with the same schemas, so
 * nothing is written twice. Same returns as crest_app_route(). Before crest_app_run(). */
CREST_API int crest_app_route_doc(crest_app_t *app, const char *method, const char *pattern,
                                  crest_handler_cb handler, void *data,
                                  const crest_route_doc_t *doc);

typedef struct {
    const char *title;       /* default "crest app" */
    const char *version;     /* of the API; default "0.1.0" */
    const char *description; /* may be NULL */
} crest_openapi_info_t;

/* Append the OpenAPI 3.1 document (JSON) of every route added with crest_app_route_doc() to
 * `out`: paths in {param} form, operations with their parameters, request bodies and answers
 * (400 and 422 with the error schema where a schema validates), and components/schemas with
 * every named schema met. Returns 0 or CREST_ENOMEM. Any thread, once the routes are fixed. */
CREST_API int crest_app_openapi(const crest_app_t *app, const crest_openapi_info_t *info,
                                crest_buf_t *out);
/* Add a GET route at `path` serving that document as application/json (built when first asked,
 * once, whichever loop thread asks; `info` is copied). Same returns as crest_app_route(). */
CREST_API int crest_app_serve_openapi(crest_app_t *app, const char *path,
                                      const crest_openapi_info_t *info);

#endif
