/* An HTTP/1.1 response parser (the outbound client, the test client): bytes in, a status, headers
 * and body bytes out. A pure codec (no uv.h, no allocation but its head buffer), so it is
 * unit-tested and fuzzed on plain memory.
 *
 * Feed the bytes read from the connection in any pieces. The head (status line and fields) is
 * copied into the parser's own buffer, up to max_head bytes, and parsed once complete: header
 * slices point into that buffer and stay valid until crest__h1res_reset or crest__h1res_free.
 * Body bytes go to a callback as they are decoded, whatever the framing: Content-Length,
 * chunked (extensions skipped, trailers read and dropped) or, without either, up to the end of
 * the connection. Interim (1xx) responses other than 101 are skipped. A response to HEAD, and
 * 204 and 304 responses, have no body whatever their headers say. */
#ifndef CREST_CODEC_H1RES_H
#define CREST_CODEC_H1RES_H

#include <stddef.h>
#include <stdint.h>

#include "crest/http.h"

#define CREST__H1RES_MAX_HEADERS 100

/* What crest__h1res_feed returns besides errors. */
enum {
    CREST__H1RES_MORE = 0, /* all bytes taken, the response is not complete yet */
    CREST__H1RES_DONE = 1, /* the response is complete; *used says how many bytes it took */
};

/* How a response's body is framed (crest__h1res_t.framing, once the head is parsed). */
enum {
    CREST__H1RES_NONE,    /* no body (HEAD, 1xx, 204, 304, or a length of 0) */
    CREST__H1RES_LENGTH,  /* Content-Length */
    CREST__H1RES_CHUNKED, /* Transfer-Encoding: chunked */
    CREST__H1RES_CLOSE,   /* up to the end of the connection */
};

typedef void (*crest__h1res_body_cb)(void *arg, const char *data, size_t len);

typedef struct {
    /* Settings, before the first byte (crest__h1res_init fills defaults). */
    size_t max_head;   /* status line + fields (and, separately, the trailers); default 64 KiB */
    uint64_t max_body; /* decoded body bytes; default 8 MiB */
    int no_body;       /* the request was HEAD: the response has no body */
    crest__h1res_body_cb on_body;
    void *arg;

    /* Results: valid once the head is parsed (head_done). */
    int head_done;
    int status;
    int minor;      /* HTTP/1.<minor> */
    int keep_alive; /* the connection may carry another request after this response */
    crest_str_t reason;
    crest_header_t headers[CREST__H1RES_MAX_HEADERS];
    size_t nheaders;
    uint64_t body_len; /* body bytes delivered so far */

    /* State. */
    char *head; /* owner: the parser (malloc'd, grows up to max_head) */
    size_t head_len;
    size_t head_cap;
    size_t line_start; /* offset in head of the line being read */
    int framing;       /* how the body ends: CREST__H1RES_NONE ... */
    int state;         /* where the body decoder is */
    uint64_t left;     /* bytes left of the body or of the current chunk */
    size_t digits;     /* hex digits of the chunk size read */
    size_t extra;      /* bytes of chunk extensions and trailers, against max_head */
    int error;         /* latched: a parser that failed stays failed */
} crest__h1res_t;

/* Defaults into `p` (memset + limits). */
void crest__h1res_init(crest__h1res_t *p);
/* Feed `len` bytes. Returns CREST__H1RES_MORE, CREST__H1RES_DONE (with *used the bytes taken: any
 * after them are not part of this response), CREST_EPROTO for a malformed response, CREST_E2BIG
 * for a head, trailer or body over its limit, CREST_ENOMEM. *used is always set. */
int crest__h1res_feed(crest__h1res_t *p, const char *data, size_t len, size_t *used);
/* The connection ended (EOF): CREST__H1RES_DONE when that completes the response (a body that
 * runs to the end of the connection), CREST_EPROTO when it cuts the response short. */
int crest__h1res_eof(crest__h1res_t *p);
/* The first header `name` (ASCII case-insensitive); .ptr NULL when absent. After head_done. */
crest_str_t crest__h1res_header(const crest__h1res_t *p, const char *name);
/* Ready for the next response on the same connection; settings and the head buffer are kept. */
void crest__h1res_reset(crest__h1res_t *p);
void crest__h1res_free(crest__h1res_t *p);

#endif
