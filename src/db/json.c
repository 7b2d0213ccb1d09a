/* Rows as JSON, shaped by the schema that documents the answer (crest/json.h): column k is the
 * table's field k, written as its type says. The same table then validates a request, documents
 * the response in OpenAPI and serialises it: written once. */
#include <stdio.h>
#include <string.h>

#include "crest.h"
#include "db/db.h"

/* One column as the field's type says. A cell is an integer (SQLite's integers) or text
 * (SQLite's text and reals, everything PostgreSQL answers): an integer is written as a number, or
 * as a string for a STRING field; a boolean is true for a nonzero integer or PostgreSQL's "t". */
static void value(crest_buf_t *out, const crest_db_query_t *q, int i, int row, int col,
                  crest_type_t type) {
    int kind = crest__db_cell_kind(q, i, row, col);
    if (kind == CELL_NULL) {
        crest_buf_puts(out, "null");
        return;
    }
    crest_str_t t = kind == CELL_TEXT ? crest_db_text(q, i, row, col) : (crest_str_t){NULL, 0};
    if (type == CREST_T_BOOL) {
        int yes = kind == CELL_INT ? crest_db_int(q, i, row, col) != 0
                                   : (t.len > 0 && (t.ptr[0] == 't' || t.ptr[0] == 'T')) ||
                                         crest_db_int(q, i, row, col) != 0;
        crest_buf_puts(out, yes ? "true" : "false");
    } else if (kind == CELL_INT) {
        crest_buf_printf(out, type == CREST_T_STRING ? "\"%lld\"" : "%lld",
                         (long long)crest_db_int(q, i, row, col));
    } else if (type == CREST_T_INT) {
        crest_buf_printf(out, "%lld", (long long)crest_db_int(q, i, row, col));
    } else if (type == CREST_T_STRING || t.len == 0) {
        crest_buf_json_str(out, t.ptr, t.len); /* an empty text is no number: a string */
    } else {
        crest_buf_append(out, t.ptr, t.len); /* a number's text, or JSON kept as text */
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
