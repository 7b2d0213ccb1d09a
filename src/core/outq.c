/* Output queues: bytes copied into one growing buffer and borrowed pieces, in order (see
 * crest__outq_t in internal.h). A connection's responses, frames and events are appended here and
 * handed to the kernel as one writev. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void crest__outq_free(crest__outq_t *q) {
    for (size_t i = 0; i < q->nsegs; i++)
        if (q->segs[i].release)
            q->segs[i].release(q->segs[i].arg);
    crest_buf_free(&q->bytes);
    free(q->segs);
    memset(q, 0, sizeof(*q));
}

static crest__seg_t *outq_seg(crest__outq_t *q) {
    if (q->nsegs == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 8;
        crest__seg_t *s = realloc(q->segs, cap * sizeof(*s));
        if (s == NULL)
            return NULL;
        q->segs = s;
        q->cap = cap;
    }
    crest__seg_t *s = &q->segs[q->nsegs++];
    memset(s, 0, sizeof(*s));
    return s;
}

/* Count `len` bytes just appended to q->bytes: extend the last segment when it ends there. */
int crest__outq_commit(crest__outq_t *q, size_t len) {
    size_t off = q->bytes.len - len;
    q->total += len;
    if (q->nsegs > 0) {
        crest__seg_t *last = &q->segs[q->nsegs - 1];
        if (last->ext == NULL && last->off + last->len == off) {
            last->len += len;
            return 0;
        }
    }
    crest__seg_t *s = outq_seg(q);
    if (s == NULL)
        return CREST_ENOMEM;
    s->off = off;
    s->len = len;
    return 0;
}

int crest__outq_copy(crest__outq_t *q, const void *data, size_t len) {
    if (len == 0)
        return 0;
    if (crest_buf_append(&q->bytes, data, len) != 0)
        return CREST_ENOMEM;
    return crest__outq_commit(q, len);
}

static int outq_ext(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                    void *arg, int shared) {
    crest__seg_t *s = outq_seg(q);
    if (s == NULL) {
        if (release)
            release(arg);
        return CREST_ENOMEM;
    }
    s->ext = data;
    s->len = len;
    s->release = release;
    s->arg = arg;
    s->shared = shared;
    q->total += len;
    if (shared)
        q->shared += len;
    return 0;
}

int crest__outq_borrow(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                       void *arg) {
    return outq_ext(q, data, len, release, arg, 0);
}

int crest__outq_share(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                      void *arg) {
    return outq_ext(q, data, len, release, arg, 1);
}

/* Release the first `done` bytes of q's segments (they were written). */
void crest__outq_consume(crest__outq_t *q, size_t done, size_t *first_seg, size_t *first_off) {
    size_t i = 0;
    while (i < q->nsegs && done >= q->segs[i].len) {
        done -= q->segs[i].len;
        if (q->segs[i].release) {
            q->segs[i].release(q->segs[i].arg);
            q->segs[i].release = NULL;
        }
        i++;
    }
    *first_seg = i;
    *first_off = done;
}

size_t crest__outq_bufs(crest__outq_t *q, size_t from, size_t off, uv_buf_t *bufs) {
    size_t n = 0;
    for (size_t i = from; i < q->nsegs; i++, off = 0) {
        crest__seg_t *s = &q->segs[i];
        const char *base = s->ext ? s->ext : q->bytes.ptr + s->off;
        bufs[n++] = uv_buf_init((char *)base + off, (unsigned)(s->len - off));
    }
    return n;
}

/* Hand q's unwritten part (from segment `from`, byte `off`) to dst, which must be empty: the
 * buffers change owner instead of being copied. q is left empty. */
void crest__outq_take(crest__outq_t *dst, crest__outq_t *q, size_t from, size_t off) {
    *dst = *q;
    memset(q, 0, sizeof(*q));
    dst->nsegs -= from;
    memmove(dst->segs, dst->segs + from, dst->nsegs * sizeof(*dst->segs));
    crest__seg_t *first = &dst->segs[0];
    if (first->ext)
        first->ext += off;
    else
        first->off += off;
    first->len -= off;
    dst->total = dst->shared = 0;
    for (size_t i = 0; i < dst->nsegs; i++) {
        dst->total += dst->segs[i].len;
        if (dst->segs[i].shared)
            dst->shared += dst->segs[i].len;
    }
}

/* Empty q and keep its memory for the next output. */
void crest__outq_reset(crest__outq_t *q) {
    q->nsegs = 0;
    q->total = 0;
    q->shared = 0;
    q->bytes.len = 0;
}
