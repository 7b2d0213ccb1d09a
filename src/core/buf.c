#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
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

/* The output is reserved block by block: each input byte becomes at most 6 bytes (\u00XX), and a
 * character whose lead byte lies in the block yields at most 4 (itself, or a 3-byte U+FFFD) even
 * when it ends past the block. Reserving 6x the whole string up front would make a megabyte title
 * cost six. */
#define JSON_BLOCK 4096

int crest_buf_json_str(crest_buf_t *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    int rc = crest_buf_append(b, "\"", 1);
    while (rc == 0 && p < end) {
        size_t blk = (size_t)(end - p) < JSON_BLOCK ? (size_t)(end - p) : JSON_BLOCK;
        if ((rc = buf_reserve(b, 6 * blk)) != 0)
            break;
        char *o = b->ptr + b->len;
        const unsigned char *stop = p + blk;
        while (p < stop) {
            unsigned char c = *p;
            if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
                *o++ = (char)c;
                p++;
            } else if (c == '"' || c == '\\') {
                *o++ = '\\';
                *o++ = (char)c;
                p++;
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
                p++;
            } else {
                /* A lead byte: take the longest prefix the validator accepts. A whole character
                 * is copied; otherwise those bytes (at least the lead) are one ill-formed subpart
                 * and become one U+FFFD, and the byte that broke the sequence starts afresh. */
                const unsigned char *q = p;
                uint32_t st = CREST__UTF8_ACCEPT;
                do {
                    uint32_t next = crest__utf8_feed(st, q, 1);
                    if (next == CREST__UTF8_REJECT)
                        break;
                    st = next;
                    q++;
                } while (st != CREST__UTF8_ACCEPT && q < end);
                if (q > p && st == CREST__UTF8_ACCEPT) {
                    memcpy(o, p, (size_t)(q - p));
                    o += q - p;
                } else {
                    memcpy(o, "\xef\xbf\xbd", 3);
                    o += 3;
                }
                p = q > p ? q : p + 1;
            }
        }
        b->len = (size_t)(o - b->ptr);
    }
    if (rc == 0)
        rc = crest_buf_append(b, "\"", 1);
    return rc;
}

void crest_buf_free(crest_buf_t *b) {
    if (!b->fixed_mem)
        free(b->ptr);
    b->fixed_mem = 0;
    b->ptr = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}
