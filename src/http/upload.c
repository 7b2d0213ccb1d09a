/* multipart/form-data request bodies: the codec (src/codec/multipart.c) fed the request's body,
 * parts handed to a callback, or gathered for the app with large files spilled to temporary
 * files that go with the request (unlinked by a cleanup of the request, crest__req_on_free). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec/multipart.h"
#include "http/http.h"
#include "http/web.h"

/* A temporary file of a request. Owner: the request (its arena holds this and the path); the
 * file is unlinked when the request is freed unless crest_part_move() took it (path NULL). */
struct crest__spill_s {
    struct crest__spill_s *next;
    char *path;
};

/* A request's temporary files: one list, in its arena, unlinked when the request is freed. */
typedef struct {
    crest__spill_t *head;
} spills_t;

static void spills_unlink(void *arg) {
    for (crest__spill_t *s = ((spills_t *)arg)->head; s != NULL; s = s->next)
        if (s->path != NULL)
            unlink(s->path);
}

/* The request's list; made (and its cleanup registered) with `make`. NULL: none, or no memory. */
static spills_t *spills_of(crest_req_t *req, int make) {
    spills_t *l = crest__req_cleanup_find(req, spills_unlink);
    if (l != NULL || !make)
        return l;
    l = crest_req_alloc(req, sizeof(*l));
    if (l == NULL || crest__req_on_free(req, spills_unlink, l) != 0)
        return NULL;
    l->head = NULL;
    return l;
}

void crest_multipart_opts_default(crest_multipart_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->max_parts = 64;
    o->max_header_bytes = 8192;
    o->spill_bytes = 65536;
}

/* A multipart body being parsed: the codec and the part it is in, fed piece by piece (a
 * buffered body at once, a streamed one as it arrives). */
typedef struct {
    crest__mp_t mp;
    crest_part_t part;
    crest_part_cb cb;
    void *arg;
} feed_t;

static void opts_or_default(const crest_multipart_opts_t **opts, crest_multipart_opts_t *def) {
    if (*opts == NULL) {
        crest_multipart_opts_default(def);
        *opts = def;
    }
}

/* Start on the request's body: CREST_EINVAL (why set) when it is not multipart/form-data. */
static int feed_init(crest_req_t *req, feed_t *f, const crest_multipart_opts_t *opts,
                     crest_part_cb cb, void *arg, const char **why) {
    memset(f, 0, sizeof(*f));
    f->cb = cb;
    f->arg = arg;
    char boundary[CREST__MP_BOUNDARY_MAX + 1];
    int blen =
        crest__mp_boundary(crest_req_header(req, "content-type"), boundary, sizeof(boundary));
    if (blen < 0) {
        *why = "the body is not multipart/form-data with a boundary";
        return CREST_EINVAL;
    }
    crest__mp_limits_t lim = {opts->max_parts, opts->max_header_bytes, opts->max_part_size,
                              opts->max_total};
    return crest__mp_init(&f->mp, boundary, (size_t)blen, &lim);
}

/* Parse the next piece of the body, calling back for each event: 0 when all of it was used, or
 * an error (the codec's, or what the callback returned). */
static int feed(crest_req_t *req, feed_t *f, const char *data, size_t len) {
    size_t pos = 0;
    for (;;) {
        crest__mp_event_t ev;
        size_t used;
        int rc = crest__mp_parse(&f->mp, data + pos, len - pos, &used, &ev);
        pos += used;
        if (rc == CREST__MP_NEED || rc < 0)
            return rc;
        crest_part_t *part = &f->part;
        if (rc == CREST__MP_BEGIN) {
            memset(part, 0, sizeof(*part));
            part->name = ev.name;
            part->filename = ev.filename;
            part->content_type = ev.content_type;
            rc = f->cb(req, CREST_PART_BEGIN, part, NULL, 0, f->arg);
        } else if (rc == CREST__MP_DATA) {
            part->size += ev.len;
            rc = f->cb(req, CREST_PART_DATA, part, ev.data, ev.len, f->arg);
        } else if (rc == CREST__MP_END) {
            rc = f->cb(req, CREST_PART_END, part, NULL, 0, f->arg);
        } else {
            rc = 0; /* DONE: what follows is the epilogue */
        }
        if (rc != 0)
            return rc;
    }
}

int crest_req_multipart(crest_req_t *req, const crest_multipart_opts_t *opts, crest_part_cb cb,
                        void *arg, const char **why) {
    crest_multipart_opts_t def;
    opts_or_default(&opts, &def);
    const char *w = NULL;
    feed_t f;
    int rc = feed_init(req, &f, opts, cb, arg, &w);
    if (rc == 0) {
        crest_str_t body = crest_req_body(req);
        rc = feed(req, &f, body.ptr, body.len);
        if (rc == 0)
            rc = crest__mp_finish(&f.mp);
        if (rc != 0)
            w = f.mp.why;
        crest__mp_free(&f.mp);
    }
    if (why != NULL)
        *why = rc != 0 ? w : NULL;
    return rc;
}

/* The answer to a multipart body that failed. */
static int fail_status(int rc) {
    return rc == CREST_EINVAL                          ? 400
           : rc == CREST_E2BIG                         ? 413
           : rc == CREST_ETIMEDOUT                     ? 408
           : rc == CREST_ENOMEM || rc == CREST_ENOBUFS ? 503
                                                       : 500;
}

/* ---- a streamed multipart body (crest_req_multipart_stream) ---- */

typedef struct {
    feed_t f;
    crest_multipart_done_cb done;
    void *arg;
    const char *bad; /* why the body cannot be parsed at all (not multipart), or NULL */
    int over;        /* done was called */
} mstream_t;

static void mstream_free(void *arg) {
    mstream_t *m = arg;
    if (!m->over)
        crest__mp_free(&m->f.mp); /* the request ended before its body did */
}

/* The body was read, or failed: done, then crest's error answer when done left none. */
static void mstream_end(crest_req_t *req, mstream_t *m, int rc) {
    m->over = 1;
    const char *why = NULL;
    if (rc != 0)
        why = m->bad ? m->bad : m->f.mp.why;
    crest__mp_free(&m->f.mp);
    crest_loop_t *loop = req->loop;
    crest__frame_t fr;
    crest__frame_push(req, &fr);
    m->done(req, rc, why, m->arg);
    if (crest__frame_pop(loop, &fr))
        return;
    if (rc != 0 && rc != CREST_ECANCELED && !req->started && !crest__req_gone(req))
        crest_res_error(req, fail_status(rc), fail_status(rc) >= 500 ? NULL : why);
}

static int on_stream_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    mstream_t *m = arg;
    int rc = event;
    if (m->bad != NULL && event >= 0) {
        rc = CREST_EINVAL; /* the first call says it: the body is not read any further */
    } else if (event == CREST_BODY_DATA) {
        rc = feed(req, &m->f, data, len);
        if (rc == 0)
            return 0;
    } else if (event == CREST_BODY_END) {
        rc = crest__mp_finish(&m->f.mp);
    }
    mstream_end(req, m, rc);
    return rc < 0 ? rc : CREST_ECANCELED; /* no more calls either way */
}

int crest_req_multipart_stream(crest_req_t *req, const crest_multipart_opts_t *opts,
                               crest_part_cb cb, crest_multipart_done_cb done, void *arg) {
    crest_multipart_opts_t def;
    opts_or_default(&opts, &def);
    if (req->freed)
        return CREST_EALREADY;
    if (req->body_stream == NULL || req->body_stream->cb != NULL || cb == NULL || done == NULL)
        return CREST_EINVAL;
    mstream_t *m = crest_req_alloc(req, sizeof(*m));
    if (m == NULL)
        return CREST_ENOMEM;
    memset(m, 0, sizeof(*m));
    m->over = 1; /* until the parser is set up: nothing for mstream_free to free */
    if (crest__req_on_free(req, mstream_free, m) != 0)
        return CREST_ENOMEM;
    const char *bad = NULL;
    int rc = feed_init(req, &m->f, opts, cb, arg, &bad);
    if (rc == CREST_ENOMEM)
        return rc;
    m->done = done;
    m->arg = arg;
    m->bad = rc != 0 ? (bad ? bad : "the body is not multipart/form-data") : NULL;
    m->over = 0;
    rc = crest_req_body_stream(req, on_stream_body, m);
    if (rc != 0) {
        m->over = 1;
        crest__mp_free(&m->f.mp);
    }
    return rc;
}

/* ---- crest_req_parts ---- */

typedef struct {
    const crest_multipart_opts_t *opts;
    crest_buf_t parts; /* crest_part_t, copied into request memory at the end */
    crest_buf_t data;  /* the current part's bytes while in memory */
    int fd;            /* the current part's temporary file, or -1 */
    char *path;
} gather_t;

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return CREST_EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The current part outgrew spill_bytes: a temporary file takes what was gathered and the rest. */
static int spill(crest_req_t *req, gather_t *g) {
    const char *dir = g->opts->tmp_dir;
    if (dir == NULL || *dir == '\0')
        dir = getenv("TMPDIR");
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    size_t len = strlen(dir) + sizeof("/crest-upload-XXXXXX");
    spills_t *l = spills_of(req, 1);
    crest__spill_t *s = l ? crest_req_alloc(req, sizeof(*s) + len) : NULL;
    if (s == NULL)
        return CREST_ENOMEM;
    s->path = (char *)(s + 1);
    snprintf(s->path, len, "%s/crest-upload-XXXXXX", dir);
    int fd = mkostemp(s->path, O_CLOEXEC);
    if (fd < 0) {
        return CREST_EIO;
    }
    /* On the list at once: whatever fails later, the file goes with the request. */
    s->next = l->head;
    l->head = s;
    g->fd = fd;
    g->path = s->path;
    int rc = write_all(fd, g->data.ptr, g->data.len);
    g->data.len = 0;
    return rc;
}

static int on_gather(crest_req_t *req, crest_part_event_t ev, const crest_part_t *part,
                     const void *data, size_t len, void *arg) {
    gather_t *g = arg;
    if (ev == CREST_PART_BEGIN) {
        g->data.len = 0;
        return 0;
    }
    if (ev == CREST_PART_DATA) {
        if (g->fd < 0 && part->filename.ptr != NULL && part->size > g->opts->spill_bytes) {
            int rc = spill(req, g);
            if (rc != 0)
                return rc;
        }
        if (g->fd >= 0)
            return write_all(g->fd, data, len);
        return crest_buf_append(&g->data, data, len);
    }
    crest_part_t p = *part;
    p.name = crest_req_keep(req, part->name);
    p.content_type = crest_req_keep(req, part->content_type);
    if (part->filename.ptr != NULL)
        p.filename = crest_req_keep(req, part->filename);
    if (g->fd >= 0) {
        int rc = close(g->fd);
        g->fd = -1;
        if (rc != 0)
            return CREST_EIO;
        p.path = g->path;
        p.data = (crest_str_t){"", 0};
    } else {
        p.data = crest_req_keep(req, (crest_str_t){g->data.ptr, g->data.len});
    }
    if (p.name.ptr == NULL || p.content_type.ptr == NULL || p.data.ptr == NULL ||
        (part->filename.ptr != NULL && p.filename.ptr == NULL))
        return CREST_ENOMEM;
    return crest_buf_append(&g->parts, &p, sizeof(p));
}

int crest_req_parts(crest_req_t *req, const crest_multipart_opts_t *opts, crest_part_t **parts,
                    size_t *count) {
    crest_multipart_opts_t def;
    if (opts == NULL) {
        crest_multipart_opts_default(&def);
        opts = &def;
    }
    *parts = NULL;
    *count = 0;
    gather_t g = {opts, CREST_BUF_INIT, CREST_BUF_INIT, -1, NULL};
    const char *why = NULL;
    int rc = crest_req_multipart(req, opts, on_gather, &g, &why);
    if (g.fd >= 0)
        close(g.fd); /* unlinked with the request */
    if (rc == 0 && g.parts.len > 0) {
        crest_part_t *arr = crest_req_alloc(req, g.parts.len);
        if (arr == NULL) {
            rc = CREST_ENOMEM;
        } else {
            memcpy(arr, g.parts.ptr, g.parts.len);
            *parts = arr;
            *count = g.parts.len / sizeof(crest_part_t);
        }
    }
    crest_buf_free(&g.parts);
    crest_buf_free(&g.data);
    if (rc == 0)
        return 0;
    int status = fail_status(rc);
    crest_res_error(req, status, status >= 500 ? NULL : why);
    return rc;
}

/* ---- crest_req_parts_stream ---- */

typedef struct {
    gather_t g;
    crest_multipart_opts_t opts;
    crest_parts_done_cb done;
    void *arg;
} pstream_t;

static void pstream_free(void *arg) {
    pstream_t *p = arg;
    if (p->g.fd >= 0)
        close(p->g.fd); /* the request ended half-way through a file (unlinked with it) */
    crest_buf_free(&p->g.parts);
    crest_buf_free(&p->g.data);
}

static void on_parts_done(crest_req_t *req, int rc, const char *why, void *arg) {
    (void)why; /* answered by mstream_end when the app does not */
    pstream_t *p = CREST__CONTAINER_OF((gather_t *)arg, pstream_t, g);
    if (p->g.fd >= 0) {
        close(p->g.fd);
        p->g.fd = -1;
    }
    crest_part_t *parts = NULL;
    size_t count = 0;
    if (rc == 0 && p->g.parts.len > 0) {
        parts = crest_req_alloc(req, p->g.parts.len);
        if (parts == NULL) {
            rc = CREST_ENOMEM;
        } else {
            memcpy(parts, p->g.parts.ptr, p->g.parts.len);
            count = p->g.parts.len / sizeof(crest_part_t);
        }
    }
    crest_buf_free(&p->g.parts);
    crest_buf_free(&p->g.data);
    p->done(req, rc, parts, count, p->arg);
}

int crest_req_parts_stream(crest_req_t *req, const crest_multipart_opts_t *opts,
                           crest_parts_done_cb done, void *arg) {
    crest_multipart_opts_t def;
    opts_or_default(&opts, &def);
    if (req->freed)
        return CREST_EALREADY;
    if (done == NULL)
        return CREST_EINVAL;
    pstream_t *p = crest_req_alloc(req, sizeof(*p));
    if (p == NULL || crest__req_on_free(req, pstream_free, p) != 0)
        return CREST_ENOMEM;
    p->opts = *opts;
    if (opts->tmp_dir != NULL) { /* opts need not outlive the call: its folder's name is kept */
        p->opts.tmp_dir =
            crest_req_keep(req, (crest_str_t){opts->tmp_dir, strlen(opts->tmp_dir)}).ptr;
        if (p->opts.tmp_dir == NULL)
            return CREST_ENOMEM;
    }
    p->g = (gather_t){&p->opts, CREST_BUF_INIT, CREST_BUF_INIT, -1, NULL};
    p->done = done;
    p->arg = arg;
    return crest_req_multipart_stream(req, &p->opts, on_gather, on_parts_done, &p->g);
}

int crest_part_move(crest_req_t *req, crest_part_t *part, const char *dest) {
    if (part->path == NULL)
        return CREST_EINVAL;
    spills_t *l = spills_of(req, 0);
    for (crest__spill_t *s = l ? l->head : NULL; s != NULL; s = s->next) {
        if (s->path != part->path)
            continue;
        if (rename(s->path, dest) != 0)
            return -errno;
        s->path = NULL;
        part->path = NULL;
        return 0;
    }
    return CREST_EINVAL;
}
