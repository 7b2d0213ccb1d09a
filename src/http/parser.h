/* HTTP/1.1 request parser (RFC 9112). Bytes in, result out: no libuv, no allocation, so it is
 * unit-tested and fuzzed on plain memory.
 *
 * The head is parsed in place: every string in crest__http_head_t points into the caller's
 * buffer. The caller feeds the bytes it has so far; crest__http_parse_head() answers "complete
 * after N bytes", "need more" or an HTTP status to reject with. It keeps a scan offset between
 * calls so that a head arriving one byte at a time is still scanned in linear time.
 *
 * Bodies are framed by crest__http_body_t: Content-Length is a count; chunked bodies are decoded
 * in place (the decoded bytes are moved down over the chunk framing in the same buffer). */
#ifndef CREST_HTTP_PARSER_H
#define CREST_HTTP_PARSER_H

#include <stddef.h>
#include <stdint.h>

#include "crest/http.h"

typedef struct {
    size_t max_request_line; /* bytes of method SP target SP version; longer -> 414 */
    size_t max_header_bytes; /* bytes of the whole head including the request line; more -> 431 */
    size_t max_headers;      /* header fields; more -> 431 (at most CREST__MAX_HEADERS) */
} crest__http_limits_t;

#define CREST__MAX_HEADERS 128

enum {
    CREST__BODY_NONE = 0,
    CREST__BODY_LENGTH,  /* Content-Length framed */
    CREST__BODY_CHUNKED, /* Transfer-Encoding: chunked */
};

typedef struct {
    crest_str_t method;
    int method_id;      /* CREST_METHOD_*, or CREST_METHOD_OTHER for an unknown token */
    crest_str_t target; /* the request-target as sent */
    crest_str_t path;   /* target up to '?' */
    crest_str_t query;  /* after '?', without it; empty when absent */
    int version_minor;  /* HTTP/1.x: 0 or 1 */
    size_t num_headers;
    crest_header_t headers[CREST__MAX_HEADERS];
    /* Derived from the headers. */
    int body_kind;                /* CREST__BODY_* */
    uint64_t content_length;      /* with CREST__BODY_LENGTH */
    unsigned keep_alive : 1;      /* the connection may be reused after this request */
    unsigned expect_continue : 1; /* Expect: 100-continue */
    unsigned expect_unknown : 1;  /* an Expect other than 100-continue: answer 417 */
    unsigned upgrade : 1;         /* Connection: upgrade together with an Upgrade header */
    unsigned has_host : 1;
} crest__http_head_t;

/* Parse the request head at buf[0..len). `scanned` is caller state: set it to 0 before the first
 * call for a request and pass the same variable back on every later call for that request.
 * Returns the head's length in bytes (> 0) when the head is complete and valid, 0 when more bytes
 * are needed, or the negated HTTP status to reject the request with (-400, -414, -431, -501,
 * -505). Leading empty lines before the request line are skipped (RFC 9112 2.2) and counted in the
 * returned length. */
int crest__http_parse_head(const char *buf, size_t len, const crest__http_limits_t *limits,
                           size_t *scanned, crest__http_head_t *head);

/* Chunked body decoder state. Zero it (or call crest__http_chunked_init) before a body. A limit
 * of 0 (as in a zeroed struct) selects the default: 4 KiB lines, 16 KiB of trailer fields. */
typedef struct {
    int state;
    uint64_t chunk_left; /* data bytes left in the current chunk */
    size_t line_len;     /* bytes of the current chunk-size line or trailer line so far */
    size_t trailer_len;  /* bytes of trailer section so far */
    size_t max_line;     /* longest chunk-size line (with extensions) or trailer line accepted */
    size_t max_trailer;  /* longest trailer section accepted */
} crest__http_chunked_t;

void crest__http_chunked_init(crest__http_chunked_t *c, size_t max_line, size_t max_trailer);

/* Decode chunked framing in place. Reads buf[0..*len); the decoded body bytes are written to the
 * front of buf (decoding only ever shrinks, so it is safe in place) and *len becomes their count.
 * *consumed is set to the number of input bytes used. Returns 1 when the last chunk and trailers
 * are done (bytes after *consumed belong to the next request), 0 when more input is needed (all
 * input was consumed), or -400 for malformed framing. Trailer fields are validated and dropped. */
int crest__http_chunked_decode(crest__http_chunked_t *c, char *buf, size_t *len, size_t *consumed);

/* Helpers shared with the response side and tests. */
int crest__http_method_id(const char *s, size_t len);
int crest__str_ieq(crest_str_t a, const char *lower); /* ASCII case-insensitive equality */

#endif
