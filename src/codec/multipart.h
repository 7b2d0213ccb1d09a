/* multipart/form-data (RFC 7578 over RFC 2046 5.1) parser: bytes in, parts out; no uv.h.
 *
 * Incremental: the body may arrive in any split (one byte at a time included) and gives the same
 * parts and verdict; a part's bytes come out as DATA chunks as soon as they cannot be the start
 * of a boundary, so the parser never holds a part's data (only its header block, at most
 * max_header_bytes, and nothing else). Unit-tested on plain memory (tests/unit/test_multipart.c)
 * and fuzzed (fuzz/multipart). */
#ifndef CREST_CODEC_MULTIPART_H
#define CREST_CODEC_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "crest/http.h" /* crest_str_t */

/* The longest boundary RFC 2046 allows. */
#define CREST__MP_BOUNDARY_MAX 70

typedef struct {
    uint32_t max_parts;        /* more parts: CREST_E2BIG; 0: no limit */
    uint32_t max_header_bytes; /* one part's header block, its blank line included */
    uint64_t max_part_size;    /* bytes of one part's body; 0: no limit */
    uint64_t max_total;        /* bytes of the whole body; 0: no limit */
} crest__mp_limits_t;

/* What crest__mp_parse() found. */
enum {
    CREST__MP_NEED = 0, /* every byte given was used: give more (or crest__mp_finish) */
    CREST__MP_BEGIN,    /* a part starts: ev->name, filename, content_type */
    CREST__MP_DATA,     /* ev->data, ev->len: the next bytes of the current part's body */
    CREST__MP_END,      /* the current part is complete */
    CREST__MP_DONE,     /* the closing boundary: no more parts (what follows is ignored) */
};

typedef struct {
    /* BEGIN, and valid until the next BEGIN: views into the parser's header block, decoded
     * (quoted-strings unquoted; filename* percent-decoded when its charset is UTF-8, and then
     * preferred to filename). filename.ptr is NULL when the part is not a file; content_type is
     * empty when the part names none (RFC 7578 4.4: text/plain). */
    crest_str_t name;
    crest_str_t filename;
    crest_str_t content_type;
    /* DATA: valid until the next call; it points into the input or into the parser (bytes of a
     * boundary's start held back from an earlier call that turned out to be data). */
    const char *data;
    size_t len;
} crest__mp_event_t;

typedef struct {
    crest__mp_limits_t lim;
    char delim[4 + CREST__MP_BOUNDARY_MAX]; /* "\r\n--" boundary */
    uint32_t dlen;
    uint32_t match; /* bytes of delim matched so far (held back, not yet reported) */
    int state;
    int err;             /* once failed, every call returns this */
    const char *why;     /* what was wrong, for an error body (static text) */
    char *hbuf;          /* the header block of the part being read (malloc'd) */
    uint32_t hlen, hcap; /* bytes in it, its size */
    uint32_t parts;      /* parts begun */
    uint64_t part_size;  /* body bytes of the current part */
    uint64_t total;      /* bytes consumed */
} crest__mp_t;

/* The boundary parameter of a Content-Type value ("multipart/form-data; boundary=x", quoted or
 * not) into out (cap at least CREST__MP_BOUNDARY_MAX + 1; NUL-terminated). Returns its length,
 * or CREST_EINVAL when the type is not multipart/form-data or the boundary is missing, empty,
 * longer than 70 bytes or holds a byte RFC 2046 does not allow in one. */
int crest__mp_boundary(crest_str_t content_type, char *out, size_t cap);

/* Start parsing a body with this boundary (1..70 bytes, as crest__mp_boundary gives). lim is
 * copied; a max_header_bytes of 0 takes 8192. Returns 0 or CREST_EINVAL. */
int crest__mp_init(crest__mp_t *p, const char *boundary, size_t len, const crest__mp_limits_t *lim);
/* Free what the parser holds. */
void crest__mp_free(crest__mp_t *p);

/* Parse from in[0..len): returns the next event (> 0) after using *used bytes; CREST__MP_NEED
 * with *used == len; or a negative error: CREST_EINVAL for a malformed body, CREST_E2BIG over a
 * limit, CREST_ENOMEM; p->why says which. Call again with the rest of the input after an event. */
int crest__mp_parse(crest__mp_t *p, const char *in, size_t len, size_t *used,
                    crest__mp_event_t *ev);
/* The body has ended: 0 when the closing boundary was seen, else CREST_EINVAL (p->why). */
int crest__mp_finish(crest__mp_t *p);

#endif
