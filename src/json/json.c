/* The JSON reading API: a thin layer over cJSON (picked by bench/json_pick.sh for its speed),
 * made strict by the scanner of src/codec/jsonscan.c. The public type is opaque so that an
 * application's build needs no cJSON headers; underneath it is a cJSON node, cast, with nothing
 * added: an accessor costs what the cJSON call does (bench/json_api.sh measures it). */
#include <math.h>
#include <string.h>

#include "json/jsonv.h"

int crest__json_parse(const char *text, size_t len, cJSON **out, crest__jsonscan_t *scan) {
    *out = NULL;
    /* What cJSON would let through (jsonscan.h) first: a malformed text is 400 whatever else. */
    int verdict = crest__jsonscan(scan, text, len);
    if (verdict > CREST__JSONSCAN_NUL || len == 0)
        return CREST_EINVAL;
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    /* cJSON returns NULL for a malformed text and for memory that ran out alike, and says which
     * only through a global; a malloc failure here is reported as malformed (400). */
    if (v == NULL)
        return CREST_EINVAL;
    /* cJSON stops after the first value: anything after it but whitespace is malformed. */
    const char *stop = text + len;
    while (end < stop && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != stop) {
        cJSON_Delete(v);
        return CREST_EINVAL;
    }
    if (verdict == CREST__JSONSCAN_NUL) {
        cJSON_Delete(v);
        return CREST_ENOTSUP;
    }
    *out = v;
    return 0;
}

int crest_json_parse(const char *text, size_t len, crest_json_t **out) {
    crest__jsonscan_t scan;
    cJSON *v;
    int rc = crest__json_parse(text, len, &v, &scan);
    *out = (crest_json_t *)v;
    return rc;
}

void crest_json_free(crest_json_t *doc) {
    cJSON_Delete((cJSON *)doc);
}

crest_json_type_t crest_json_type(const crest_json_t *v) {
    const cJSON *j = crest__cj(v);
    if (j == NULL)
        return CREST_JSON_NONE;
    switch (j->type & 0xff) {
    case cJSON_NULL:
        return CREST_JSON_NULL;
    case cJSON_False:
    case cJSON_True:
        return CREST_JSON_BOOL;
    case cJSON_Number:
        return CREST_JSON_NUMBER;
    case cJSON_String:
        return CREST_JSON_STRING;
    case cJSON_Array:
        return CREST_JSON_ARRAY;
    case cJSON_Object:
        return CREST_JSON_OBJECT;
    default:
        return CREST_JSON_NONE; /* cJSON_Raw and cJSON_Invalid: never made by a parse */
    }
}

const crest_json_t *crest_json_get(const crest_json_t *v, const char *key) {
    const cJSON *j = crest__cj(v);
    if (!cJSON_IsObject(j))
        return NULL;
    return crest__jv(cJSON_GetObjectItemCaseSensitive(j, key));
}

crest_str_t crest_json_str(const crest_json_t *v) {
    const cJSON *j = crest__cj(v);
    if (!cJSON_IsString(j) || j->valuestring == NULL)
        return (crest_str_t){NULL, 0};
    return (crest_str_t){j->valuestring, strlen(j->valuestring)};
}

int crest_json_num(const crest_json_t *v, double *out) {
    const cJSON *j = crest__cj(v);
    if (!cJSON_IsNumber(j))
        return CREST_EINVAL;
    *out = j->valuedouble;
    return 0;
}

int crest_json_int(const crest_json_t *v, int64_t *out) {
    const cJSON *j = crest__cj(v);
    if (!cJSON_IsNumber(j))
        return CREST_EINVAL;
    double d = j->valuedouble;
    /* cJSON keeps numbers as doubles only: from 2^53 on a text such as 9007199254740993 has
     * already become its neighbour 2^53, so no such value can be taken for the integer sent. */
    if (!(fabs(d) < 9007199254740992.0))
        return isnan(d) ? CREST_EINVAL : CREST_E2BIG;
    if (d != floor(d))
        return CREST_EINVAL;
    *out = (int64_t)d;
    return 0;
}

int crest_json_bool(const crest_json_t *v, int *out) {
    const cJSON *j = crest__cj(v);
    if (!cJSON_IsBool(j))
        return CREST_EINVAL;
    *out = cJSON_IsTrue(j);
    return 0;
}

size_t crest_json_len(const crest_json_t *v) {
    const cJSON *j = crest__cj(v);
    if (!cJSON_IsArray(j) && !cJSON_IsObject(j))
        return 0;
    size_t n = 0;
    for (const cJSON *c = j->child; c != NULL; c = c->next)
        n++;
    return n;
}

const crest_json_t *crest_json_first(const crest_json_t *v) {
    const cJSON *j = crest__cj(v);
    if (!cJSON_IsArray(j) && !cJSON_IsObject(j))
        return NULL;
    return crest__jv(j->child);
}

const crest_json_t *crest_json_next(const crest_json_t *it) {
    const cJSON *j = crest__cj(it);
    return j ? crest__jv(j->next) : NULL;
}

crest_str_t crest_json_key(const crest_json_t *it) {
    const cJSON *j = crest__cj(it);
    if (j == NULL || j->string == NULL)
        return (crest_str_t){NULL, 0};
    return (crest_str_t){j->string, strlen(j->string)};
}
