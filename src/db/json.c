/* Rows as JSON, shaped by the schema that documents the answer (crest/json.h): column k is the
 * table's field k, written as its type says. The same table then validates a request, documents
 * the response in OpenAPI and serialises it: written once. */
#include <stdio.h>
#include <string.h>

#include "crest.h"

static void value(crest_buf_t *out, const crest_db_query_t *q, int i, int row, int col,
                  crest_type_t type) {
    if (crest_db_is_null(q, i, row, col)) {
        crest_buf_puts(out, "null");
        return;
    }
    crest_str_t t = crest_db_text(q, i, row, col);
    switch (type) {
    case CREST_T_INT:
        crest_buf_printf(out, "%lld", (long long)crest_db_int(q, i, row, col));
        break;
    case CREST_T_BOOL:
        crest_buf_puts(out, crest_db_int(q, i, row, col) ? "true" : "false");
        break;
    case CREST_T_NUMBER:
    case CREST_T_ARRAY:
    case CREST_T_OBJECT:
    case CREST_T_ANY: /* the database's text of a number, or JSON kept as text: as it is */
        crest_buf_append(out, t.ptr, t.len);
        break;
    default:
        crest_buf_json_str(out, t.ptr, t.len);
    }
}

int crest_db_json_row(crest_buf_t *out, const crest_db_query_t *q, int i, int row,
                      const crest_schema_t *schema) {
    crest_buf_puts(out, "{");
    int col = 0;
    for (const crest_field_t *f = schema->fields; f->name != NULL; f++, col++) {
        if (col > 0)
            crest_buf_puts(out, ",");
        crest_buf_json_str(out, f->name, strlen(f->name));
        crest_buf_puts(out, ":");
        value(out, q, i, row, col, f->type);
    }
    return crest_buf_puts(out, "}");
}

int crest_db_json_rows(crest_buf_t *out, const crest_db_query_t *q, int i, int max,
                       const crest_schema_t *schema) {
    int n = crest_db_rows(q, i);
    crest_buf_puts(out, "[");
    for (int row = 0; row < n && (max < 0 || row < max); row++) {
        if (row > 0)
            crest_buf_puts(out, ",");
        crest_db_json_row(out, q, i, row, schema);
    }
    return crest_buf_puts(out, "]");
}

int crest_db_res_error(crest_req_t *req, int status, const crest_db_query_t *q) {
    if (!crest_db_retryable(status))
        return crest_res_error(req, status == CREST_ECANCELED ? 503 : 500, crest_db_error(q));
    crest_res_header(req, "Retry-After", "1");
    return crest_res_error(req, 503, crest_db_error(q));
}
