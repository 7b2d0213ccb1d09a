/* RESP2, the Redis protocol, in both directions (bytes in, result out; no uv.h), below the Redis
 * bridge (src/redis). Written here rather than taken from hiredis because the bridge must refuse
 * a message bigger than its limit without buffering it: hiredis's reader holds a whole bulk
 * string before it returns anything, so a peer (or a publisher on another instance) could make
 * crest hold any amount. This reader skips such a bulk as it streams past and says so.
 *
 * Only what the bridge meets is accepted: a simple string, an error, an integer, a bulk string
 * (or null), or one flat array of at most CREST__RESP_MAX_ELEMS of those (pub/sub messages and
 * subscription replies are arrays of three). Anything else is a protocol error. */
#ifndef CREST_CODEC_RESP_H
#define CREST_CODEC_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "crest/buf.h"
#include "crest/errno.h"

#define CREST__RESP_MAX_ELEMS 8

enum {
    CREST__RESP_SIMPLE,
    CREST__RESP_ERROR,
    CREST__RESP_INT,
    CREST__RESP_BULK,
    CREST__RESP_NIL,
    CREST__RESP_ARRAY
};

/* One value. Text (simple, error, bulk) is `len` bytes at `ptr`, valid until the next call to
 * crest__resp_read; a bulk longer than the reader's max_bulk has refused set, its declared
 * length in len and ptr NULL (its bytes were skipped). */
typedef struct {
    int type;
    int refused;
    int64_t num; /* CREST__RESP_INT */
    const char *ptr;
    size_t len;
} crest__resp_val_t;

/* A complete reply: a value, or an array (type CREST__RESP_ARRAY) of n values in elem. */
typedef struct {
    int type;
    int n;
    crest__resp_val_t elem[CREST__RESP_MAX_ELEMS];
} crest__resp_reply_t;

/* Reader state. Owner: one connection. Set max_bulk and max_line before the first read; the
 * rest starts zeroed (crest__resp_init). It holds at most the kept bytes of one reply: bulks up to
 * max_bulk each and lines up to max_line. */
typedef struct {
    size_t max_bulk;
    size_t max_line;
    /* private */
    crest_buf_t buf; /* the current reply's kept text */
    int state;
    int in_array;    /* elements left in the array being read (-1: at top level) */
    size_t need;     /* bytes of the bulk still to read or skip */
    size_t bulk_len; /* the declared length of the bulk being read */
    int skipping;
    int line_type; /* the type byte of the line being read */
    size_t line_start;
    crest__resp_reply_t cur;
    size_t offs[CREST__RESP_MAX_ELEMS]; /* text offsets into buf while the reply grows */
} crest__resp_t;

void crest__resp_init(crest__resp_t *r, size_t max_bulk, size_t max_line);
void crest__resp_free(crest__resp_t *r);

/* Read from data[0..len): returns 1 when a reply is complete (in *out; *used bytes were taken;
 * call again with the rest), 0 when all of data was taken and the reply is not complete yet, or
 * CREST_EINVAL on a protocol error (the connection should be closed), CREST_ENOMEM. */
int crest__resp_read(crest__resp_t *r, const char *data, size_t len, size_t *used,
                     crest__resp_reply_t *out);

/* Append a command: an array of n bulk strings (argv[i], lens[i] bytes). Returns 0 or
 * CREST_ENOMEM (also latched in b->err). */
int crest__resp_command(crest_buf_t *b, int n, const char *const *argv, const size_t *lens);

#endif
