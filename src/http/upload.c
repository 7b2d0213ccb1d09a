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

int crest_req_multipart(crest_req_t *req, const crest_multipart_opts_t *opts, crest_part_cb cb,
                        void *arg, const char **why) {
    crest_multipart_opts_t def;
    if (opts == NULL) {
        crest_multipart_opts_default(&def);
        opts = &def;
    }
    if (why != NULL)
        *why = NULL;
    char boundary[CREST__MP_BOUNDARY_MAX + 1];
    int blen =
        crest__mp_boundary(crest_req_header(req, "content-type"), boundary, sizeof(boundary));
    if (blen < 0) {
        if (why != NULL)
            *why = "the body is not multipart/form-data with a boundary";
        return CREST_EINVAL;
    }
    crest__mp_limits_t lim = {opts->max_parts, opts->max_header_bytes, opts->max_part_size,
                              opts->max_total};
    crest__mp_t mp;
    int rc = crest__mp_init(&mp, boundary, (size_t)blen, &lim);
    if (rc != 0)
        return rc;
    crest_str_t body = crest_req_body(req);
    crest_part_t part;
    memset(&part, 0, sizeof(part));
    size_t pos = 0;
    for (;;) {
        crest__mp_event_t ev;
        size_t used;
        rc = crest__mp_parse(&mp, body.ptr + pos, body.len - pos, &used, &ev);
        pos += used;
        if (rc == CREST__MP_NEED) {
            rc = crest__mp_finish(&mp);
            break;
        }
        if (rc < 0)
            break;
        if (rc == CREST__MP_BEGIN) {
            memset(&part, 0, sizeof(part));
            part.name = ev.name;
            part.filename = ev.filename;
            part.content_type = ev.content_type;
            rc = cb(req, CREST_PART_BEGIN, &part, NULL, 0, arg);
        } else if (rc == CREST__MP_DATA) {
            part.size += ev.len;
            rc = cb(req, CREST_PART_DATA, &part, ev.data, ev.len, arg);
        } else if (rc == CREST__MP_END) {
            rc = cb(req, CREST_PART_END, &part, NULL, 0, arg);
        } else {
            rc = 0; /* DONE: what follows is the epilogue */
        }
        if (rc != 0)
            break;
    }
    if (rc != 0 && why != NULL)
        *why = mp.why;
    crest__mp_free(&mp);
    return rc;
}

/* ---- crest_req_parts ---- */

typedef struct {
    const crest_multipart_opts_t *opts;
    crest_buf_t parts; /* crest_part_t, copied into request memory at the end */
    crest_buf_t data;  /* the current part's bytes while in memory */
    int fd;            /* the current part's temporary file, or -1 */
    char *path;
    const char *why;
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
        g->why = "a temporary file could not be made";
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
        if (g->fd >= 0) {
            int rc = write_all(g->fd, data, len);
            if (rc != 0)
                g->why = "a temporary file could not be written";
            return rc;
        }
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
        if (rc != 0) {
            g->why = "a temporary file could not be written";
            return CREST_EIO;
        }
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
    gather_t g = {opts, CREST_BUF_INIT, CREST_BUF_INIT, -1, NULL, NULL};
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
    if (g.why != NULL)
        why = g.why;
    int status = rc == CREST_EINVAL   ? 400
                 : rc == CREST_E2BIG  ? 413
                 : rc == CREST_ENOMEM ? 503
                                      : 500;
    crest_res_error(req, status, status == 503 ? NULL : why);
    return rc;
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
