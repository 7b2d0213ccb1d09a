/* application/x-www-form-urlencoded request bodies (the WHATWG URL standard's
 * application/x-www-form-urlencoded parser: split at '&', then at the first '=', '+' is a space,
 * then percent-decoding). Nothing is cached: each call walks the body again, which is cheap next
 * to reading it and spares every request a field. */
#include <string.h>

#include "codec/hex.h"
#include "http/http.h"
#include "http/web.h"

int crest__form_next(crest_str_t *rest, crest_str_t *name, crest_str_t *value) {
    while (rest->len > 0) {
        const char *s = rest->ptr, *amp = memchr(s, '&', rest->len);
        size_t n = amp ? (size_t)(amp - s) : rest->len;
        rest->ptr += amp ? n + 1 : n;
        rest->len -= amp ? n + 1 : n;
        if (n == 0)
            continue;
        const char *eq = memchr(s, '=', n);
        *name = (crest_str_t){s, eq ? (size_t)(eq - s) : n};
        *value = eq ? (crest_str_t){eq + 1, n - (size_t)(eq - s) - 1} : (crest_str_t){s + n, 0};
        return 1;
    }
    return 0;
}

int crest__form_name_eq(crest_str_t enc, const char *name, size_t nlen) {
    size_t j = 0;
    for (size_t i = 0; i < enc.len; i++, j++) {
        char c = enc.ptr[i];
        int hi, lo;
        if (c == '%' && i + 2 < enc.len &&
            (hi = crest__hex_digit((unsigned char)enc.ptr[i + 1])) >= 0 &&
            (lo = crest__hex_digit((unsigned char)enc.ptr[i + 2])) >= 0) {
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (j >= nlen || name[j] != c)
            return 0;
    }
    return j == nlen;
}

int crest__form_is_urlencoded(crest_str_t ct) {
    const char *s = ct.ptr, *end = ct.ptr + ct.len;
    if (s == NULL)
        return 0;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    const char *t = s;
    while (s < end && *s != ';' && *s != ' ' && *s != '\t')
        s++;
    return crest__str_ieq((crest_str_t){t, (size_t)(s - t)}, "application/x-www-form-urlencoded");
}

/* The body, when it is a form; else an empty string. */
static crest_str_t form_body(const crest_req_t *req) {
    if (!crest__form_is_urlencoded(crest_req_header(req, "content-type")))
        return (crest_str_t){NULL, 0};
    return crest_req_body(req);
}

/* Decode into request memory (NUL-terminated); .ptr NULL when out of memory. */
static crest_str_t decode(crest_req_t *req, crest_str_t v) {
    char *out = crest_req_alloc(req, v.len + 1);
    if (out == NULL)
        return (crest_str_t){NULL, 0};
    return (crest_str_t){out, crest_query_decode(v, out, v.len + 1)};
}

crest_str_t crest_req_form(crest_req_t *req, const char *name) {
    crest_str_t rest = form_body(req), n, v;
    size_t nlen = strlen(name);
    while (crest__form_next(&rest, &n, &v))
        if (crest__form_name_eq(n, name, nlen))
            return decode(req, v);
    return (crest_str_t){NULL, 0};
}

int crest_req_form_all(crest_req_t *req, const char *name, crest_str_t *out, size_t cap) {
    crest_str_t rest = form_body(req), n, v;
    size_t nlen = strlen(name), count = 0;
    while (crest__form_next(&rest, &n, &v)) {
        if (!crest__form_name_eq(n, name, nlen))
            continue;
        if (count < cap && (out[count] = decode(req, v)).ptr == NULL)
            return CREST_ENOMEM;
        if (count < INT32_MAX)
            count++;
    }
    return (int)count;
}

int crest_req_form_fields(crest_req_t *req, const crest_form_field_t **fields, size_t *count) {
    crest_str_t body = form_body(req), rest = body, n, v;
    size_t pairs = 0;
    while (crest__form_next(&rest, &n, &v))
        pairs++;
    *fields = NULL;
    *count = 0;
    if (pairs == 0)
        return 0;
    /* One block: the array, then every name and value decoded (never longer than encoded) with
     * its NUL; the body's length bounds the text and pairs bounds the NULs. */
    size_t text = body.len + 2 * pairs;
    if (pairs > (SIZE_MAX - text) / sizeof(crest_form_field_t))
        return CREST_ENOMEM;
    crest_form_field_t *f = crest_req_alloc(req, pairs * sizeof(*f) + text);
    if (f == NULL)
        return CREST_ENOMEM;
    char *w = (char *)(f + pairs);
    rest = body;
    for (size_t i = 0; crest__form_next(&rest, &n, &v); i++) {
        f[i].name = (crest_str_t){w, crest_query_decode(n, w, n.len + 1)};
        w += f[i].name.len + 1;
        f[i].value = (crest_str_t){w, crest_query_decode(v, w, v.len + 1)};
        w += f[i].value.len + 1;
    }
    *fields = f;
    *count = pairs;
    return 0;
}
