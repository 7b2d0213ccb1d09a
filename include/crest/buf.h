/* A growable byte buffer and a small JSON writer on top of it, for building response bodies, and
 * the UTF-8 check the writer relies on. */
#ifndef CREST_BUF_H
#define CREST_BUF_H

#include <stddef.h>
#include <stdint.h>

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
/* Append `s` (`len` bytes, NULs included) as a JSON string literal with quotes. '"' and '\\' are
 * escaped, and so are the control characters U+0000..U+001F (as \n, \r, \t or \u00XX). Valid
 * UTF-8 passes through unchanged; bytes that are not (a stray continuation byte, an overlong form,
 * a surrogate, a code point above U+10FFFF, a sequence cut short by another byte or by the end)
 * are replaced with U+FFFD, one per maximal ill-formed subpart (the Unicode Standard's
 * recommended practice, section 3.9, as WHATWG's decoder does). The output is therefore always
 * valid UTF-8 and valid JSON, whatever `s` holds: a client that checks text (a browser's
 * WebSocket, a strict JSON parser) never sees bytes it must reject. Returns 0 or CREST_ENOMEM
 * (also latched in b->err). Any thread, on a buffer that thread owns. */
CREST_API int crest_buf_json_str(crest_buf_t *b, const char *s, size_t len);
/* Free the memory and reset to empty. */
CREST_API void crest_buf_free(crest_buf_t *b);

/* ---- UTF-8 ----
 * An incremental check of UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing above U+10FFFF. The state is CREST_UTF8_ACCEPT at the start and
 * between characters, CREST_UTF8_REJECT after an invalid byte (it stays so), anything else inside
 * a character. Feed consecutive pieces of one text with the state the previous call returned; the
 * text is valid when the last call returns CREST_UTF8_ACCEPT. Pure: any thread, no allocation,
 * never reads outside s[0..n). */
#define CREST_UTF8_ACCEPT 0u
#define CREST_UTF8_REJECT 1u
CREST_API uint32_t crest_utf8_feed(uint32_t state, const void *s, size_t n);

/* Send the buffer as the response body: crest takes heap memory and frees it after writing
 * (caller storage from CREST_BUF_ON is copied); `b` is reset to empty. If b->err is set, a 503 is
 * sent instead. Finishing call. */
CREST_API int crest_res_send_buf(crest_req_t *req, int status, const char *content_type,
                                 crest_buf_t *b);

#endif
