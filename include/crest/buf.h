/* A growable byte buffer and a small JSON writer on top of it, for building response bodies. */
#ifndef CREST_BUF_H
#define CREST_BUF_H

#include <stddef.h>

#include "crest/export.h"
#include "crest/http.h"

/* Owner: whoever declared it. `err` latches the first failure so that a chain of appends can be
 * checked once at the end. */
typedef struct {
    char *ptr;
    size_t len;
    size_t cap;
    int err;       /* 0 or CREST_ENOMEM */
    int fixed_mem; /* ptr is the caller's storage (CREST_BUF_ON): never realloc'd or freed */
} crest_buf_t;

#define CREST_BUF_INIT                                                                             \
    { 0, 0, 0, 0, 0 }
/* A buffer that starts in the caller's array (on the stack, say) and moves to the heap only if
 * it outgrows it: `char mem[256]; crest_buf_t b = CREST_BUF_ON(mem);` */
#define CREST_BUF_ON(array)                                                                        \
    { (array), 0, sizeof(array), 0, 1 }

/* Append bytes / a C string / formatted text. Return 0 or CREST_ENOMEM (also latched in err). */
CREST_API int crest_buf_append(crest_buf_t *b, const void *data, size_t len);
CREST_API int crest_buf_puts(crest_buf_t *b, const char *s);
CREST_API int crest_buf_printf(crest_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append `s` as a JSON string literal with quotes, escaping '"', '\\' and control characters.
 * Bytes >= 0x80 pass through (the caller provides UTF-8). */
CREST_API int crest_buf_json_str(crest_buf_t *b, const char *s, size_t len);
/* Free the memory and reset to empty. */
CREST_API void crest_buf_free(crest_buf_t *b);

/* Send the buffer as the response body: crest takes heap memory and frees it after writing
 * (caller storage from CREST_BUF_ON is copied); `b` is reset to empty. If b->err is set, a 503 is
 * sent instead. Finishing call. */
CREST_API int crest_res_send_buf(crest_req_t *req, int status, const char *content_type,
                                 crest_buf_t *b);

#endif
