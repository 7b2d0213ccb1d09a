/* Shared by the files of src/json: the strict parse with the scanner's verdict, the validator on
 * a cJSON tree with faults appended to a list, and the formatting of a number in a message. No
 * uv.h here: parse and validation are tested on plain memory. */
#ifndef CREST_JSON_JSONV_H
#define CREST_JSON_JSONV_H

#include <cJSON.h>

#include "codec/jsonscan.h"
#include "crest/errno.h"
#include "crest/json.h"

/* The public type is a cJSON node: these casts are the only place that knows it. */
static inline const cJSON *crest__cj(const crest_json_t *v) {
    return (const cJSON *)v;
}
static inline const crest_json_t *crest__jv(const cJSON *v) {
    return (const crest_json_t *)v;
}

/* crest_json_parse() with the scanner's state kept in *scan (its field names the top-level member
 * holding U+0000 when the result is CREST_ENOTSUP). */
int crest__json_parse(const char *text, size_t len, cJSON **out, crest__jsonscan_t *scan);

/* Append a fault at `path` (cut to fit) with a printf-style message; counts past the list. */
void crest__json_fault(crest_json_errors_t *errs, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* crest_json_validate() appending to errs (which may already hold faults). Returns 0, or
 * CREST_EINVAL for a malformed table. */
int crest__json_check(const cJSON *v, const crest_schema_t *schema, void *out,
                      crest_json_errors_t *errs);

/* One value (NULL: absent) against one field, its path `name`; its output (if valid) to slot
 * (NULL: none). Returns as crest__json_check(). */
int crest__json_check_field(const cJSON *v, const crest_field_t *f, void *slot, const char *name,
                            crest_json_errors_t *errs);

/* The number of characters (code points) of valid UTF-8. */
size_t crest__utf8_chars(const char *s, size_t len);

#endif
