#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int buf_reserve(crest_buf_t *b, size_t extra) {
    if (b->err)
        return b->err;
    if (extra <= b->cap - b->len)
        return 0;
    size_t need = b->len + extra;
    if (need < b->len) /* overflow */
        return b->err = CREST_ENOMEM;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap * 2 > cap ? cap * 2 : need;
    char *p = b->fixed_mem ? malloc(cap) : realloc(b->ptr, cap);
    if (p == NULL)
        return b->err = CREST_ENOMEM;
    if (b->fixed_mem && b->len)
        memcpy(p, b->ptr, b->len);
    b->fixed_mem = 0;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int crest_buf_append(crest_buf_t *b, const void *data, size_t len) {
    if (len == 0)
        return b->err;
    int rc = buf_reserve(b, len);
    if (rc)
        return rc;
    memcpy(b->ptr + b->len, data, len);
    b->len += len;
    return 0;
}

int crest_buf_puts(crest_buf_t *b, const char *s) {
    return crest_buf_append(b, s, strlen(s));
}

int crest_buf_printf(crest_buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return CREST_EINVAL;
    int rc = buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int crest_buf_json_str(crest_buf_t *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    if (len > (SIZE_MAX - 2) / 6)
        return b->err = CREST_ENOMEM;
    int rc = buf_reserve(b, len * 6 + 2);
    if (rc)
        return rc;
    char *o = b->ptr + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            *o++ = '\\';
            switch (c) {
            case '\n':
                *o++ = 'n';
                break;
            case '\r':
                *o++ = 'r';
                break;
            case '\t':
                *o++ = 't';
                break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            }
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->ptr);
    return 0;
}

void crest_buf_free(crest_buf_t *b) {
    if (!b->fixed_mem)
        free(b->ptr);
    b->fixed_mem = 0;
    b->ptr = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}
