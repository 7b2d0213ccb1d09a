/* Static files (crest_app_static): folders mounted at path prefixes, served to GET and HEAD
 * requests no route matched.
 *
 * Never a byte outside the root: the request path is percent-decoded once and checked by
 * crest__path_clean (cond.c: "..", dotfiles, encoded slashes, NUL, bad UTF-8), and the file is
 * opened with openat2(RESOLVE_BENEATH) relative to the root's descriptor, so the kernel itself
 * refuses a symlink or a ".." that would leave the root, without crest ever looking outside it.
 * A kernel without openat2 gets a walk of the path one component at a time with O_NOFOLLOW,
 * which refuses every symlink.
 *
 * Each loop thread keeps an open-file cache (bounded, LRU): a hot file costs no open or stat per
 * request, only a revalidation (open + fstat) at most once a second, which also notices a file
 * replaced or changed on disk. Small files are kept in memory and sent from there, borrowed by
 * the output queue. Larger ones keep their descriptor and go out with sendfile on cleartext
 * HTTP/1.1 (zero-copy); over TLS and HTTP/2 they are read in slices as the connection drains,
 * so a large file never sits whole in memory and a slow client holds at most a few slices.
 * Reads and opens are blocking calls on the loop thread, as in nginx without aio: they hit the
 * page cache for the files a server serves often. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http/cond.h"
#include "http/http.h"

#define REVALIDATE_MS 1000
#define SLICE (64 * 1024)          /* bytes read per slice when the file cannot be sent directly */
#define SLICES_QUEUED (256 * 1024) /* a connection's queue is topped up to this much */
/* Copied to learn when a full socket takes more (its write completing says so): the kernel
 * wakes a writer once a third of the send buffer is free, so a small one is enough. */
#define WAKE_SLICE (4 * 1024)

enum { V_IDENTITY, V_GZIP, V_BR, V_COUNT };
static const char *const v_suffix[V_COUNT] = {"", ".gz", ".br"};
static const char *const v_coding[V_COUNT] = {NULL, "gzip", "br"};

struct crest__static_mount_s {
    char *prefix; /* without a trailing slash: "" for "/" */
    size_t len;
    char *route; /* the prefix and a star: the template logs and metrics see */
    char *root;
    int root_fd;
    char *cache_control;
    char *index;
    int precompressed;
    size_t cache_files;
    size_t cache_file_bytes;
};

/* One representation of a file: the file itself or a precompressed sibling. */
typedef struct {
    int present;
    int fd;        /* -1 when content holds the bytes (or the variant is absent) */
    char *content; /* the whole file, when it is small */
    uint64_t size;
    uint64_t dev;
    uint64_t ino;
    int64_t mtime_ns;
    char etag[64];
    size_t etag_len;
    char last_modified[32];
} variant_t;

/* A cached path of one mount. Owner: its loop's cache while `cached`; every transfer in
 * progress holds a reference too, so an entry evicted or replaced mid-transfer stays valid
 * (its descriptor open) until the last one ends. */
typedef struct entry_s {
    struct entry_s *hnext;
    struct entry_s *lru_prev, *lru_next; /* most recently used first */
    unsigned refs;
    int cached;
    uint32_t hash;
    const crest__static_mount_t *mount;
    uint64_t checked_ms; /* when the file system was last asked */
    int is_dir;
    const char *ctype;
    variant_t v[V_COUNT];
    size_t path_len;
    char path[]; /* relative to the mount's root, NUL-terminated */
} entry_t;

/* A loop thread's open-file cache. Owner: the loop's HTTP state. */
struct crest__fcache_s {
    entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    entry_t *lru_head, *lru_tail;
    size_t fds;     /* descriptors the cached entries hold (files over cache_file_bytes) */
    size_t max_fds; /* their cap: a share of what the runtime keeps back from connections */
};

/* ---- mounts ---- */

void crest_static_opts_default(crest_static_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->cache_control = "no-cache";
    o->index = "index.html";
    o->precompressed = 1;
    o->cache_files = 1024;
    o->cache_file_bytes = 16 * 1024;
}

static void mount_free(crest__static_mount_t *m) {
    if (m->root_fd >= 0)
        close(m->root_fd);
    free(m->prefix);
    free(m->route);
    free(m->root);
    free(m->cache_control);
    free(m->index);
}

void crest__static_free(crest_app_t *app) {
    for (size_t i = 0; i < app->nmounts; i++)
        mount_free(&app->mounts[i]);
    free(app->mounts);
    app->mounts = NULL;
    app->nmounts = 0;
}

static int valid_value(const char *s) {
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return 0;
    return 1;
}

static int app_static(crest_app_t *app, const char *prefix, const char *root,
                      const crest_static_opts_t *opts);

int crest_app_static(crest_app_t *app, const char *prefix, const char *root,
                     const crest_static_opts_t *opts) {
    return crest__app_setup_error(app, app_static(app, prefix, root, opts), "crest_app_static",
                                  prefix, root);
}

static int app_static(crest_app_t *app, const char *prefix, const char *root,
                      const crest_static_opts_t *opts) {
    if (app->rt.running)
        return CREST_EBUSY;
    crest_static_opts_t defaults;
    if (opts == NULL) {
        crest_static_opts_default(&defaults);
        opts = &defaults;
    }
    if (prefix == NULL || prefix[0] != '/' || root == NULL || strstr(prefix, "//") ||
        strchr(prefix, '*') || strchr(prefix, ':') ||
        (opts->cache_control && !valid_value(opts->cache_control)) ||
        (opts->index && (!opts->index[0] || strchr(opts->index, '/'))))
        return CREST_EINVAL;
    char *real = realpath(root, NULL);
    if (real == NULL)
        return errno == ENOMEM ? CREST_ENOMEM : errno == ENOTDIR ? CREST_ENOTDIR : CREST_ENOENT;
    int fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        free(real);
        return err == ENOTDIR ? CREST_ENOTDIR : err == EACCES ? CREST_EACCES : CREST_ENOENT;
    }
    crest__static_mount_t *ms = realloc(app->mounts, (app->nmounts + 1) * sizeof(*ms));
    if (ms == NULL) {
        close(fd);
        free(real);
        return CREST_ENOMEM;
    }
    app->mounts = ms;
    crest__static_mount_t *m = &ms[app->nmounts];
    memset(m, 0, sizeof(*m));
    m->root = real;
    m->root_fd = fd;
    size_t len = strlen(prefix);
    while (len > 0 && prefix[len - 1] == '/')
        len--;
    m->prefix = strndup(prefix, len);
    m->len = len;
    m->route = malloc(len + 3);
    if (m->route)
        memcpy(m->route, prefix, len), memcpy(m->route + len, "/*", 3);
    m->cache_control = opts->cache_control ? strdup(opts->cache_control) : NULL;
    m->index = opts->index ? strdup(opts->index) : NULL;
    m->precompressed = opts->precompressed;
    m->cache_files = opts->cache_files ? opts->cache_files : 1024;
    m->cache_file_bytes = opts->cache_file_bytes;
    if (m->prefix == NULL || m->route == NULL || (opts->cache_control && !m->cache_control) ||
        (opts->index && !m->index)) {
        mount_free(m);
        return CREST_ENOMEM;
    }
    app->nmounts++;
    return 0;
}

/* ---- opening beneath the root ---- */

static _Atomic int openat2_missing; /* any loop thread may learn it first */

/* Open `path` (relative, cleaned) below dirfd without leaving it. */
static int open_beneath(int dirfd, const char *path, int flags) {
    if (!openat2_missing) {
        struct open_how how = {
            .flags = (uint64_t)(flags | O_CLOEXEC),
            .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        int fd = (int)syscall(SYS_openat2, dirfd, path[0] ? path : ".", &how, sizeof(how));
        if (fd >= 0 || errno != ENOSYS)
            return fd;
        openat2_missing = 1; /* an older kernel (or a seccomp filter): walk instead */
    }
    int cur = dup(dirfd);
    const char *p = path;
    while (cur >= 0 && *p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        char name[NAME_MAX + 1];
        if (n == 0 || n > NAME_MAX) {
            close(cur);
            errno = ENOENT;
            return -1;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        int next =
            openat(cur, name, (slash ? O_PATH | O_DIRECTORY : flags) | O_NOFOLLOW | O_CLOEXEC);
        close(cur);
        cur = next;
        p = slash ? slash + 1 : p + n;
    }
    return cur;
}

/* ---- the cache ---- */

static uint64_t now_ms(const crest_loop_t *loop) {
    return uv_now((uv_loop_t *)&loop->uv);
}

static uint32_t hash_path(const crest__static_mount_t *m, const char *p, size_t len) {
    uint32_t h = 2166136261u ^ (uint32_t)(uintptr_t)m; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static void variant_clear(variant_t *v) {
    if (v->fd >= 0)
        close(v->fd);
    free(v->content);
    memset(v, 0, sizeof(*v));
    v->fd = -1;
}

static void entry_unref(entry_t *e) {
    if (--e->refs > 0)
        return;
    for (int i = 0; i < V_COUNT; i++)
        variant_clear(&e->v[i]);
    free(e);
}

static void release_entry(void *arg) {
    entry_unref(arg);
}

static void lru_unlink(struct crest__fcache_s *fc, entry_t *e) {
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        fc->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        fc->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_front(struct crest__fcache_s *fc, entry_t *e) {
    e->lru_next = fc->lru_head;
    if (fc->lru_head)
        fc->lru_head->lru_prev = e;
    fc->lru_head = e;
    if (fc->lru_tail == NULL)
        fc->lru_tail = e;
}

static size_t entry_fds(const entry_t *e) {
    size_t n = 0;
    for (int i = 0; i < V_COUNT; i++)
        n += e->v[i].fd >= 0;
    return n;
}

/* Take e out of the cache; transfers still using it keep it alive. */
static void cache_drop(struct crest__fcache_s *fc, entry_t *e) {
    fc->fds -= entry_fds(e);
    entry_t **pp = &fc->buckets[e->hash & (fc->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(fc, e);
    fc->count--;
    e->cached = 0;
    entry_unref(e);
}

void crest__static_cache_free(struct crest__fcache_s *fc) {
    if (fc == NULL)
        return;
    while (fc->lru_head)
        cache_drop(fc, fc->lru_head);
    free(fc->buckets);
    free(fc);
}

/* Fill v from the file at path + suffix; absent (present 0) when there is no regular file. */
static int variant_load(variant_t *v, const crest__static_mount_t *m, const char *path,
                        size_t path_len, int which, int *is_dir) {
    char name[PATH_MAX];
    size_t slen = strlen(v_suffix[which]);
    memset(v, 0, sizeof(*v));
    v->fd = -1;
    if (path_len + slen >= sizeof(name))
        return 0;
    memcpy(name, path, path_len);
    memcpy(name + path_len, v_suffix[which], slen + 1);
    /* O_NONBLOCK: a FIFO planted in the folder must not hang the loop (it is refused below). */
    int fd = open_beneath(m->root_fd, name, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOMEM ? CREST_ENOMEM : 0;
    struct stat st;
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || (is_dir && S_ISDIR(st.st_mode)))) {
        close(fd);
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        *is_dir = 1;
        return 0;
    }
    v->present = 1;
    v->size = (uint64_t)st.st_size;
    v->dev = (uint64_t)st.st_dev;
    v->ino = (uint64_t)st.st_ino;
    v->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    v->etag_len = crest__etag_make(v->ino, v->size, v->mtime_ns, v->etag, sizeof(v->etag));
    crest__http_date_format(st.st_mtim.tv_sec, v->last_modified, sizeof(v->last_modified));
    if (v->size <= m->cache_file_bytes) {
        v->content = malloc(v->size ? v->size : 1);
        size_t got = 0;
        while (v->content && got < v->size) {
            ssize_t n = pread(fd, v->content + got, v->size - got, (off_t)got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        close(fd);
        if (v->content == NULL)
            return CREST_ENOMEM;
        if (got < v->size) { /* shrank while read: absent until the next look */
            free(v->content);
            memset(v, 0, sizeof(*v));
            v->fd = -1;
        }
        return 0;
    }
    v->fd = fd;
    return 0;
}

/* Has the file behind v changed (or appeared, or gone) since it was loaded? */
static int variant_stale(const variant_t *v, const crest__static_mount_t *m, const char *path,
                         size_t path_len, int which) {
    char name[PATH_MAX];
    size_t slen = strlen(v_suffix[which]);
    if (path_len + slen >= sizeof(name))
        return 0;
    memcpy(name, path, path_len);
    memcpy(name + path_len, v_suffix[which], slen + 1);
    int fd = open_beneath(m->root_fd, name, O_PATH);
    if (fd < 0)
        return v->present;
    struct stat st;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    if (!ok)
        return v->present;
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return !v->present || v->ino != (uint64_t)st.st_ino || v->dev != (uint64_t)st.st_dev ||
           v->size != (uint64_t)st.st_size || v->mtime_ns != mtime;
}

static entry_t *entry_load(const crest__static_mount_t *m, const char *path, size_t len,
                           uint32_t hash, int *err) {
    entry_t *e = calloc(1, sizeof(*e) + len + 1);
    if (e == NULL) {
        *err = CREST_ENOMEM;
        return NULL;
    }
    e->refs = 1;
    e->hash = hash;
    e->mount = m;
    memcpy(e->path, path, len);
    e->path_len = len;
    for (int i = 0; i < V_COUNT; i++)
        e->v[i].fd = -1;
    *err = variant_load(&e->v[V_IDENTITY], m, path, len, V_IDENTITY, &e->is_dir);
    if (*err == 0 && e->v[V_IDENTITY].present && m->precompressed)
        for (int i = V_GZIP; i < V_COUNT && *err == 0; i++)
            *err = variant_load(&e->v[i], m, path, len, i, NULL);
    if (*err != 0 || (!e->v[V_IDENTITY].present && !e->is_dir)) {
        entry_unref(e);
        return NULL;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    e->ctype = crest__mime_type(base, strlen(base));
    return e;
}

static int cache_grow(struct crest__fcache_s *fc) {
    size_t n = fc->nbuckets ? fc->nbuckets * 2 : 64;
    entry_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return CREST_ENOMEM;
    for (size_t i = 0; i < fc->nbuckets; i++) {
        entry_t *e = fc->buckets[i];
        while (e) {
            entry_t *next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(fc->buckets);
    fc->buckets = b;
    fc->nbuckets = n;
    return 0;
}

/* The entry for path, from the cache (revalidated when due) or loaded now. NULL: no such file
 * (*err 0) or out of memory. The caller gets no reference of its own: it takes one for a
 * transfer that outlives this turn. */
static entry_t *cache_get(crest_loop_t *loop, const crest__static_mount_t *m, const char *path,
                          size_t len, int *err) {
    crest__http_loop_t *hl = crest__http_loop(loop);
    *err = 0;
    if (hl->fcache == NULL) {
        if ((hl->fcache = calloc(1, sizeof(*hl->fcache))) == NULL) {
            *err = CREST_ENOMEM;
            return NULL;
        }
        /* The runtime keeps an eighth of the open-file limit back from connections (for
         * databases and files, core/run.c); the loops' open files take at most half of it, so
         * that a folder of many large files cannot starve accept() of descriptors. */
        struct rlimit rl;
        rlim_t limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
        if (limit == RLIM_INFINITY || limit > 1u << 20)
            limit = 1u << 20;
        size_t share = (size_t)limit / 8 / 2 / (size_t)loop->rt->nthreads;
        hl->fcache->max_fds = share > 4 ? share : 4;
    }
    struct crest__fcache_s *fc = hl->fcache;
    if (fc->nbuckets == 0 && cache_grow(fc) != 0) {
        *err = CREST_ENOMEM;
        return NULL;
    }
    uint32_t h = hash_path(m, path, len);
    entry_t *e = fc->buckets[h & (fc->nbuckets - 1)];
    while (e && !(e->hash == h && e->mount == m && e->path_len == len &&
                  memcmp(e->path, path, len) == 0))
        e = e->hnext;
    uint64_t now = now_ms(loop);
    if (e != NULL) {
        if (now - e->checked_ms < REVALIDATE_MS) {
            lru_unlink(fc, e);
            lru_front(fc, e);
            return e;
        }
        int stale = 0;
        for (int i = 0; i < V_COUNT && !stale; i++)
            if (i == V_IDENTITY || m->precompressed)
                stale = variant_stale(&e->v[i], m, path, len, i);
        if (!stale && !e->is_dir) {
            e->checked_ms = now;
            lru_unlink(fc, e);
            lru_front(fc, e);
            return e;
        }
        cache_drop(fc, e);
    }
    e = entry_load(m, path, len, h, err);
    if (e == NULL)
        return NULL;
    e->checked_ms = now;
    if (fc->count >= m->cache_files && fc->lru_tail)
        cache_drop(fc, fc->lru_tail);
    if (fc->count + 1 > fc->nbuckets && cache_grow(fc) != 0) {
        entry_unref(e);
        *err = CREST_ENOMEM;
        return NULL;
    }
    e->cached = 1;
    e->hnext = fc->buckets[h & (fc->nbuckets - 1)];
    fc->buckets[h & (fc->nbuckets - 1)] = e;
    lru_front(fc, e);
    fc->count++;
    fc->fds += entry_fds(e);
    while (fc->fds > fc->max_fds && fc->lru_tail != e)
        cache_drop(fc, fc->lru_tail); /* a transfer still sending one keeps its descriptor */
    return e;
}

/* ---- answering ---- */

/* A large file on its way out. Lives in the request's memory; holds a reference to its entry. */
typedef struct {
    entry_t *e;
    int fd;
    uint64_t off;
    uint64_t left;
    int copying; /* the protocol cannot send the file directly: slices are read and queued */
} xfer_t;

static void xfer_end(crest_req_t *req, xfer_t *x, int ok) {
    entry_t *e = x->e;
    x->e = NULL;
    if (ok)
        crest_res_end(req);
    else
        crest_res_abort(req);
    if (e)
        entry_unref(e);
}

static void on_xfer_abort(crest_req_t *req, void *arg) {
    xfer_end(req, arg, 0);
}

static void free_slice(void *p) {
    free(p);
}

/* Read the next slice of at most `max` bytes and queue it (borrowed: the queue frees it once
 * written). */
static int queue_slice(crest_req_t *req, xfer_t *x, size_t max) {
    size_t want = x->left < max ? (size_t)x->left : max;
    char *buf = malloc(want);
    if (buf == NULL)
        return CREST_ENOMEM;
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(x->fd, buf + got, want - got, (off_t)(x->off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf); /* the file shrank under us: the promised length cannot be kept */
            return CREST_EIO;
        }
        got += (size_t)n;
    }
    x->off += got;
    x->left -= got;
    return req->w->body(req, buf, got, free_slice, buf);
}

/* Send as much as the connection takes now; come back from its drain callback for the rest. */
static void xfer_pump(crest_req_t *req, void *arg) {
    xfer_t *x = arg;
    if (crest__req_gone(req)) {
        xfer_end(req, x, 0);
        return;
    }
    for (;;) {
        if (x->left == 0) {
            xfer_end(req, x, 1);
            return;
        }
        if (!x->copying && req->w->sendfile != NULL) {
            int64_t n = req->w->sendfile(req, x->fd, &x->off, x->left);
            if (n > 0) {
                x->left -= (uint64_t)n;
                continue;
            }
            if (n == CREST_ENOTSUP) {
                x->copying = 1;
                continue;
            }
            if (n < 0) {
                xfer_end(req, x, 0);
                return;
            }
            /* Output is queued before the file, or the socket is full: wait for it to drain.
             * A full socket with nothing queued gives no drain to wait for, so one slice is
             * read and queued (WAKE_SLICE): its write completing says the socket takes more. */
            int rc = crest_res_on_drain(req, xfer_pump, x);
            if (rc == CREST_EALREADY) {
                if (queue_slice(req, x, WAKE_SLICE) != 0) {
                    xfer_end(req, x, 0);
                    return;
                }
                rc = crest_res_on_drain(req, xfer_pump, x);
                req->w->push(req);
            }
            if (rc != 0 && rc != CREST_EALREADY)
                xfer_end(req, x, 0);
            return;
        }
        while (x->left > 0 && req->w->buffered(req) < SLICES_QUEUED) {
            if (queue_slice(req, x, SLICE) != 0) {
                xfer_end(req, x, 0);
                return;
            }
        }
        req->w->push(req);
        if (crest__req_gone(req)) {
            xfer_end(req, x, 0);
            return;
        }
        if (x->left == 0)
            continue;
        int rc = crest_res_on_drain(req, xfer_pump, x);
        if (rc == CREST_EALREADY)
            continue;
        if (rc != 0)
            xfer_end(req, x, 0);
        return;
    }
}

/* Append "Name: value\r\n" for our own, already valid values. */
static void put_header(crest_req_t *req, const char *name, const char *value, size_t vlen) {
    crest_buf_t *b = &req->res_headers;
    crest_buf_puts(b, name);
    crest_buf_append(b, ": ", 2);
    crest_buf_append(b, value, vlen);
    crest_buf_append(b, "\r\n", 2);
}

static int redirect_dir(crest_req_t *req) {
    crest_str_t path = crest_req_path(req), query = crest_req_query(req);
    crest_buf_t *b = &req->res_headers;
    crest_buf_puts(b, "Location: ");
    crest_buf_append(b, path.ptr, path.len);
    crest_buf_append(b, "/", 1);
    if (query.len) {
        crest_buf_append(b, "?", 1);
        crest_buf_append(b, query.ptr, query.len);
    }
    crest_buf_append(b, "\r\n", 2);
    return crest_res_send(req, 301, "text/plain; charset=utf-8", "Moved Permanently\n", 18);
}

static const crest__static_mount_t *mount_for(const crest_app_t *app, crest_str_t path) {
    const crest__static_mount_t *best = NULL;
    for (size_t i = 0; i < app->nmounts; i++) {
        const crest__static_mount_t *m = &app->mounts[i];
        if (path.len >= m->len && memcmp(path.ptr, m->prefix, m->len) == 0 &&
            (path.len == m->len || path.ptr[m->len] == '/') && (best == NULL || m->len > best->len))
            best = m;
    }
    return best;
}

/* The mount and cache entry for a request path: NULL with *err 0 when there is none (no mount
 * covers it, the path is refused, no such file), or with *err set when memory ran out. */
static entry_t *lookup(crest_loop_t *loop, crest_str_t path, const crest__static_mount_t **mp,
                       int *dir_slash, int *err) {
    const crest__static_mount_t *m = mount_for(crest__app_of(loop), path);
    *err = 0;
    *dir_slash = 0;
    if (m == NULL)
        return NULL;
    *mp = m;
    char clean[PATH_MAX];
    int n =
        crest__path_clean(path.ptr + m->len, path.len - m->len, clean, sizeof(clean), dir_slash);
    if (n < 0)
        return NULL; /* refused: the same 404 as a missing file, nothing looked up */
    size_t len = (size_t)n;
    if (*dir_slash || len == 0) {
        if (m->index == NULL)
            return NULL;
        size_t ilen = strlen(m->index);
        if (len + 1 + ilen >= sizeof(clean))
            return NULL;
        if (len > 0)
            clean[len++] = '/';
        memcpy(clean + len, m->index, ilen + 1);
        len += ilen;
    }
    return cache_get(loop, m, clean, len, err);
}

int crest__static_covers(crest_loop_t *loop, crest_str_t path) {
    const crest__static_mount_t *m;
    int dir_slash, err;
    entry_t *e = lookup(loop, path, &m, &dir_slash, &err);
    return e != NULL && !e->is_dir;
}

int crest__static_serve(crest_req_t *req) {
    crest_loop_t *loop = req->loop;
    crest_str_t path = crest_req_path(req);
    const crest__static_mount_t *m = NULL;
    int dir_slash, err;
    entry_t *e = lookup(loop, path, &m, &dir_slash, &err);
    if (e == NULL)
        return err ? err : CREST_NEXT;
    if (e->is_dir) {
        if (m->index && !dir_slash && path.len > 0)
            return redirect_dir(req);
        return CREST_NEXT;
    }
    req->route = m->route;

    /* Which representation: a precompressed sibling for a client that takes it, unless it asks
     * for a range (ranges are served from the file itself). */
    int any_sibling = e->v[V_GZIP].present || e->v[V_BR].present;
    crest_str_t range = crest_req_header(req, "Range");
    int which = V_IDENTITY;
    if (any_sibling && range.ptr == NULL) {
        unsigned accept = crest__req_accept_encoding(req);
        if ((accept & CREST__ENC_BR) && e->v[V_BR].present)
            which = V_BR;
        else if ((accept & CREST__ENC_GZIP) && e->v[V_GZIP].present)
            which = V_GZIP;
    }
    const variant_t *v = &e->v[which];
    put_header(req, "ETag", v->etag, v->etag_len);
    put_header(req, "Last-Modified", v->last_modified, strlen(v->last_modified));
    if (m->cache_control)
        put_header(req, "Cache-Control", m->cache_control, strlen(m->cache_control));
    if (any_sibling)
        put_header(req, "Vary", "Accept-Encoding", 15);
    if (which == V_IDENTITY)
        put_header(req, "Accept-Ranges", "bytes", 5);
    else
        put_header(req, "Content-Encoding", v_coding[which], strlen(v_coding[which]));

    /* Conditional requests (RFC 9110 13.2.2): If-None-Match wins over If-Modified-Since. */
    crest_str_t inm = crest_req_header(req, "If-None-Match");
    if (inm.ptr != NULL) {
        if (crest__etag_match_any(inm, v->etag, v->etag_len))
            return crest_res_send(req, 304, NULL, NULL, 0);
    } else {
        crest_str_t ims = crest_req_header(req, "If-Modified-Since");
        int64_t since = ims.ptr ? crest__http_date_parse(ims.ptr, ims.len) : -1;
        if (since >= 0 && v->mtime_ns / 1000000000 <= since)
            return crest_res_send(req, 304, NULL, NULL, 0);
    }

    int status = 200;
    uint64_t first = 0, last = v->size ? v->size - 1 : 0, count = v->size;
    if (range.ptr != NULL) {
        crest_str_t if_range = crest_req_header(req, "If-Range");
        int r = if_range.ptr == NULL ||
                        crest__if_range(if_range, v->etag, v->etag_len, v->mtime_ns / 1000000000)
                    ? crest__range_parse(range, v->size, &first, &last)
                    : 0;
        char cr[80];
        if (r < 0) {
            int crlen = snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)v->size);
            put_header(req, "Content-Range", cr, (size_t)crlen);
            return crest_res_send(req, 416, "text/plain; charset=utf-8", "Range Not Satisfiable\n",
                                  22);
        }
        if (r > 0) {
            status = 206;
            count = last - first + 1;
            int crlen = snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first,
                                 (unsigned long long)last, (unsigned long long)v->size);
            put_header(req, "Content-Range", cr, (size_t)crlen);
        } else {
            first = 0;
        }
    }
    if (req->res_headers.err)
        return CREST_ENOMEM;

    if (v->content != NULL) {
        e->refs++;
        return crest_res_send_borrowed(req, status, e->ctype, v->content + first, (size_t)count,
                                       release_entry, e);
    }
    if (crest__req_gone(req))
        return crest_res_send(req, status, e->ctype, NULL, 0); /* only frees it */
    /* A head with the length, then the body from the file as the connection takes it. */
    req->started = 1;
    if (crest__res_head(req, status, e->ctype, (int64_t)count) != 0) {
        req->w->abort(req);
        req->w->finish(req);
        return 0;
    }
    if (req->head_only || count == 0) {
        crest_res_end(req);
        return 0;
    }
    xfer_t *x = crest_req_alloc(req, sizeof(*x));
    if (x == NULL) {
        crest_res_abort(req);
        return 0;
    }
    e->refs++;
    *x = (xfer_t){.e = e, .fd = v->fd, .off = first, .left = count};
    crest_req_on_abort(req, on_xfer_abort, x);
    xfer_pump(req, x);
    return 0;
}
