/* Observability: request ids, the access log and the metrics crest keeps of itself.
 *
 * Every request ends in crest__req_free (response.c), whichever protocol carried it; that is where
 * it is observed (crest__obs_finish): its duration goes into a histogram per (route, method) and,
 * with an access log, a JSON line is formatted. The histograms are per loop thread, indexed by the
 * route's slot (given by the router when the route was added) and the method id: no string is
 * hashed or compared per request, and no lock is taken.
 *
 * The access log never blocks a loop thread on the disk: each loop formats its lines into a block
 * of its own and hands whole blocks to one writer thread (a list under a mutex held for a few
 * pointer stores). The list is bounded; when the writer is behind, a line that does not fit is
 * dropped whole and counted. A block is handed over when full, or by a short timer armed when its
 * first line is written (no wake-ups while idle). When the app stops, after every loop thread has
 * ended, the blocks left are handed over and the writer writes everything before it exits.
 *
 * /metrics: crest_app_metrics writes what http keeps (statuses, connections, durations, loop lag,
 * the access log) and then calls the sources other modules registered (crest__metrics_add). The
 * modules above http (ws, work, db, pubsub) may not be called from here (the arrows point down),
 * so they register themselves with the app when they are set up or first used; a mutex guards the
 * list, taken only by /metrics and by registration, never by a request. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"

#define LOG_BLOCK (64 * 1024)       /* a loop's block of lines */
#define LOG_QUEUE (8 * 1024 * 1024) /* bytes waiting for the writer before lines are dropped */
#define LOG_FLUSH_MS 50             /* a block with lines goes to the writer this soon at most */
#define LAG_INTERVAL_MS 100         /* the loop-lag timer */
#define LAG_WINDOW 50               /* samples of the lag maximum's window (5 s) */
#define MAX_SOURCES 16

typedef struct log_blk_s {
    struct log_blk_s *next;
    size_t len;
    size_t cap;
    char data[];
} log_blk_t;

/* The access log's file and writer thread. Owner: the app (crest__obs_t). */
typedef struct {
    char *path;
    int fd;
    int is_stdout;
    pthread_t thread;
    int thread_on;
    pthread_mutex_t lock; /* guards head, tail, queued, stop */
    pthread_cond_t cond;
    log_blk_t *head, *tail;
    size_t queued; /* bytes handed over and not written yet */
    int stop;
    _Atomic int reopen;
    _Atomic uint64_t write_errors;
} alog_t;

typedef struct crest__obs_s {
    pthread_mutex_t lock; /* guards the sources */
    struct {
        crest__metrics_cb cb;
        void *arg;
    } srcs[MAX_SOURCES];
    size_t nsrcs;
    char rid_prefix[16]; /* random per process: generated ids differ across restarts */
    size_t nslots;       /* route slots + 1 (slot 0: no route), fixed when the app runs */
    /* Every loop's duration histograms in one array, loop after loop (crest__http_loop_t.hist
     * points to its part), so that a reader sums them with one stride. */
    _Atomic uint64_t *hist;
    alog_t *log;
} crest__obs_t;

/* A loop's part. Owner: its loop thread (the app's memory: read by /metrics on any thread). */
typedef struct crest__obs_loop_s {
    crest_loop_t *loop;
    alog_t *log; /* the app's access log, or NULL: the one branch of a request without one */
    log_blk_t *blk;
    uv_timer_t flush_timer;
    uv_timer_t lag_timer;
    int timers; /* the timers are initialised */
    uint64_t lag_due;
    uint64_t lag_window_max;
    unsigned lag_samples;
    int lag_idle; /* the lag timer is stopped: no connection (crest__obs_conn_open) */
    time_t stamp_sec;
    char stamp[64]; /* "YYYY-MM-DDTHH:MM:SS" of stamp_sec */
    uint64_t rid_seq;
    _Atomic uint64_t lag_ns;     /* the last sample */
    _Atomic uint64_t lag_max_ns; /* the largest of the last window */
    _Atomic uint64_t log_lines;
    _Atomic uint64_t log_dropped;
} crest__obs_loop_t;

static uint64_t load(const _Atomic uint64_t *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- histograms ---- */

const uint64_t crest__hist_bounds_ns[CREST__HIST_BOUNDS] = {
    5000000,   10000000,  25000000,   50000000,   75000000,   100000000,  250000000,
    500000000, 750000000, 1000000000, 2500000000, 5000000000, 7500000000, 10000000000,
};

void crest__hist_add(_Atomic uint64_t *h, uint64_t ns) {
    size_t i = 0;
    while (i < CREST__HIST_BOUNDS && ns > crest__hist_bounds_ns[i])
        i++;
    crest__count(&h[i], 1);
    crest__count(&h[CREST__HIST_SLOTS - 1], (int64_t)ns);
}

static int hist_sum(uint64_t *b, const _Atomic uint64_t *h, size_t n, size_t stride) {
    memset(b, 0, CREST__HIST_SLOTS * sizeof(*b));
    uint64_t count = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t j = 0; j < CREST__HIST_SLOTS; j++)
            b[j] += load(&h[k * stride + j]);
    for (size_t j = 0; j <= CREST__HIST_BOUNDS; j++)
        count += b[j];
    return count != 0;
}

static void hist_lines(crest_buf_t *out, const char *name, const char *labels, const uint64_t *b) {
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (size_t j = 0; j < CREST__HIST_BOUNDS; j++) {
        cum += b[j];
        crest_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                         (double)crest__hist_bounds_ns[j] / 1e9, (unsigned long long)cum);
    }
    /* The count is the sum of the buckets read once: +Inf always equals _count in one scrape. */
    cum += b[CREST__HIST_BOUNDS];
    crest_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                     (unsigned long long)cum);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    crest_buf_printf(out, "%s_sum%s%s%s %.9f\n%s_count%s%s%s %llu\n", name, open, labels, close,
                     (double)b[CREST__HIST_SLOTS - 1] / 1e9, name, open, labels, close,
                     (unsigned long long)cum);
}

void crest__mod_hist_write(const crest_app_t *app, crest_buf_t *out, const char *name,
                           const char *labels, int idx) {
    uint64_t b[CREST__HIST_SLOTS] = {0};
    for (int i = 0; app->hloops && i < app->rt.nthreads; i++)
        for (size_t j = 0; j < CREST__HIST_SLOTS; j++)
            b[j] += load(&app->hloops[i].mod[idx + (int)j]);
    hist_lines(out, name, labels, b);
}

uint64_t crest__mod_sum(const crest_app_t *app, int idx) {
    uint64_t n = 0;
    for (int i = 0; app->hloops && i < app->rt.nthreads; i++)
        n += load(&app->hloops[i].mod[idx]);
    return n;
}

/* ---- the app's and the loops' state ---- */

static crest__obs_t *obs_get(crest_app_t *app) {
    if (app->obs == NULL) {
        crest__obs_t *o = calloc(1, sizeof(*o));
        if (o == NULL)
            return NULL;
        pthread_mutex_init(&o->lock, NULL);
        app->obs = o;
    }
    return app->obs;
}

int crest__metrics_add(crest_app_t *app, crest__metrics_cb cb, void *arg) {
    crest__obs_t *o = app->obs; /* made with the app (crest__obs_new) */
    if (o == NULL)
        return CREST_ENOMEM;
    int rc = 0;
    pthread_mutex_lock(&o->lock);
    size_t i = 0;
    while (i < o->nsrcs && !(o->srcs[i].cb == cb && o->srcs[i].arg == arg))
        i++;
    if (i == o->nsrcs) {
        if (o->nsrcs < MAX_SOURCES) {
            o->srcs[o->nsrcs].cb = cb;
            o->srcs[o->nsrcs++].arg = arg;
        } else {
            rc = CREST_ENOMEM;
        }
    }
    pthread_mutex_unlock(&o->lock);
    return rc;
}

void crest__metrics_remove(crest_app_t *app, crest__metrics_cb cb, void *arg) {
    crest__obs_t *o = app->obs;
    if (o == NULL)
        return;
    pthread_mutex_lock(&o->lock);
    for (size_t i = 0; i < o->nsrcs; i++) {
        if (o->srcs[i].cb == cb && o->srcs[i].arg == arg) {
            memmove(&o->srcs[i], &o->srcs[i + 1], (o->nsrcs - i - 1) * sizeof(o->srcs[0]));
            o->nsrcs--;
            break;
        }
    }
    pthread_mutex_unlock(&o->lock);
}

int crest__obs_new(crest_app_t *app) {
    return obs_get(app) ? 0 : CREST_ENOMEM;
}

/* ---- the access log's writer ---- */

static void write_all(alog_t *l, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(l->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            atomic_fetch_add_explicit(&l->write_errors, 1, memory_order_relaxed);
            return; /* a full disk: these lines are lost, the next block tries again */
        }
        p += w;
        n -= (size_t)w;
    }
}

static void log_reopen(alog_t *l) {
    if (l->is_stdout)
        return;
    int fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        atomic_fetch_add_explicit(&l->write_errors, 1, memory_order_relaxed);
        return; /* the old file goes on receiving lines */
    }
    close(l->fd);
    l->fd = fd;
}

static void *writer_main(void *arg) {
    alog_t *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (l->head == NULL && !l->stop && !atomic_load(&l->reopen))
            pthread_cond_wait(&l->cond, &l->lock);
        log_blk_t *b = l->head;
        l->head = l->tail = NULL;
        int stop = l->stop;
        pthread_mutex_unlock(&l->lock);
        /* Lines handed over before the reopen may land in the new file: logrotate copes, and
         * none is lost. */
        if (atomic_exchange(&l->reopen, 0))
            log_reopen(l);
        size_t done = 0;
        while (b != NULL) {
            log_blk_t *next = b->next;
            write_all(l, b->data, b->len);
            done += b->len;
            free(b);
            b = next;
        }
        pthread_mutex_lock(&l->lock);
        l->queued -= done;
        if (stop && l->head == NULL)
            break;
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* Hand a block to the writer: 0, or CREST_EAGAIN when the writer is that far behind (unless
 * `force`: at shutdown everything is written). Any thread. */
static int log_handoff(alog_t *l, log_blk_t *b, int force) {
    pthread_mutex_lock(&l->lock);
    if (!force && l->queued + b->len > LOG_QUEUE) {
        pthread_mutex_unlock(&l->lock);
        return CREST_EAGAIN;
    }
    b->next = NULL;
    if (l->tail)
        l->tail->next = b;
    else
        l->head = b;
    l->tail = b;
    l->queued += b->len;
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
    return 0;
}

static void log_free(alog_t *l) {
    if (l == NULL)
        return;
    if (l->fd >= 0 && !l->is_stdout)
        close(l->fd);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
    free(l->path);
    free(l);
}

/* The signal thread took SIGUSR1 (core/run.c). */
static void on_usr1(crest__rt_t *rt) {
    crest_app_t *app = CREST__CONTAINER_OF(rt, crest_app_t, rt);
    alog_t *l = app->obs ? app->obs->log : NULL;
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->lock);
    atomic_store(&l->reopen, 1);
    pthread_cond_signal(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

int crest_app_access_log(crest_app_t *app, const char *path) {
    if (app->rt.running)
        return CREST_EBUSY;
    crest__obs_t *o = obs_get(app);
    if (o == NULL || path == NULL)
        return o ? CREST_EINVAL : CREST_ENOMEM;
    if (o->log != NULL)
        return CREST_EEXIST;
    alog_t *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->path = strdup(path)) == NULL) {
        free(l);
        return CREST_ENOMEM;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    if (strcmp(path, "-") == 0) {
        l->is_stdout = 1;
        l->fd = STDOUT_FILENO;
    } else if ((l->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0) {
        int err = -errno;
        l->fd = -1;
        log_free(l);
        return err;
    }
    o->log = l;
    app->rt.on_usr1 = on_usr1;
    if (app->rt.sigmask_saved) {
        /* Listening already blocked the other signals in this thread; SIGUSR1 joins them before
         * any thread of ours starts, or its default action would end the process. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }
    return 0;
}

/* ---- running ---- */

int crest__obs_run_start(crest_app_t *app) {
    crest__obs_t *o = obs_get(app);
    if (o == NULL)
        return CREST_ENOMEM;
    o->nslots = crest__router_routes(app->router) + 1;
    size_t per_loop = o->nslots * CREST_METHOD__COUNT * CREST__HIST_SLOTS;
    free(o->hist);
    o->hist = calloc(per_loop * (size_t)app->rt.nthreads, sizeof(*o->hist));
    if (o->hist == NULL)
        return CREST_ENOMEM;
    for (int i = 0; i < app->rt.nthreads; i++) {
        crest__http_loop_t *hl = &app->hloops[i];
        hl->hist = o->hist + per_loop * (size_t)i;
        hl->obs = calloc(1, sizeof(*hl->obs));
        if (hl->obs == NULL)
            return CREST_ENOMEM; /* crest__obs_free frees what was made */
        hl->obs->log = o->log;
    }
    alog_t *l = o->log;
    if (l != NULL && !l->thread_on) {
        /* Started after crest_app_listen blocked the signals: it inherits the mask. */
        l->stop = 0;
        if (pthread_create(&l->thread, NULL, writer_main, l) != 0)
            return CREST_ENOMEM;
        l->thread_on = 1;
    }
    return 0;
}

void crest__obs_run_end(crest_app_t *app) {
    crest__obs_t *o = app->obs;
    alog_t *l = o ? o->log : NULL;
    /* Every loop thread has ended (and worker jobs holding requests have been stopped): their
     * blocks are ours to hand over. */
    for (int i = 0; app->hloops && i < app->rt.nthreads; i++) {
        crest__obs_loop_t *ol = app->hloops[i].obs;
        if (ol == NULL || ol->blk == NULL)
            continue;
        if (l != NULL && ol->blk->len > 0)
            log_handoff(l, ol->blk, 1);
        else
            free(ol->blk);
        ol->blk = NULL;
    }
    if (l != NULL && l->thread_on) {
        pthread_mutex_lock(&l->lock);
        l->stop = 1;
        pthread_cond_signal(&l->cond);
        pthread_mutex_unlock(&l->lock);
        pthread_join(l->thread, NULL);
        l->thread_on = 0;
    }
}

void crest__obs_free(crest_app_t *app) {
    crest__obs_t *o = app->obs;
    for (int i = 0; app->hloops && i < app->rt.nthreads; i++) {
        crest__http_loop_t *hl = &app->hloops[i];
        if (hl->obs)
            free(hl->obs->blk);
        free(hl->obs);
        hl->obs = NULL;
        hl->hist = NULL;
    }
    if (o == NULL)
        return;
    log_free(o->log);
    free(o->hist);
    pthread_mutex_destroy(&o->lock);
    free(o);
    app->obs = NULL;
}

static void on_lag_timer(uv_timer_t *t) {
    crest__obs_loop_t *ol = CREST__CONTAINER_OF(t, crest__obs_loop_t, lag_timer);
    uint64_t now = uv_hrtime();
    uint64_t lag = now > ol->lag_due ? now - ol->lag_due : 0;
    ol->lag_due = now + (uint64_t)LAG_INTERVAL_MS * 1000000;
    atomic_store_explicit(&ol->lag_ns, lag, memory_order_relaxed);
    if (lag > ol->lag_window_max)
        ol->lag_window_max = lag;
    if (lag > load(&ol->lag_max_ns))
        atomic_store_explicit(&ol->lag_max_ns, lag, memory_order_relaxed);
    if (++ol->lag_samples >= LAG_WINDOW) {
        /* A new window: the maximum shown is that of the last one, so a stall is seen for a
         * while after it ended and then forgotten. */
        atomic_store_explicit(&ol->lag_max_ns, ol->lag_window_max, memory_order_relaxed);
        ol->lag_window_max = 0;
        ol->lag_samples = 0;
    }
    if (atomic_load_explicit(&ol->loop->open_conns, memory_order_relaxed) == 0) {
        /* Nothing to serve: an idle server takes no wake-ups. The window's maximum stays as it
         * was (the last stall seen while serving); crest__obs_conn_open starts the timer again
         * with the next connection. */
        uv_timer_stop(t);
        ol->lag_idle = 1;
        atomic_store_explicit(&ol->lag_ns, 0, memory_order_relaxed);
    }
}

void crest__obs_conn_open(crest_loop_t *loop) {
    crest__obs_loop_t *ol = crest__http_loop(loop)->obs;
    if (ol == NULL || !ol->lag_idle || loop->draining)
        return;
    ol->lag_idle = 0;
    ol->lag_due = uv_hrtime() + (uint64_t)LAG_INTERVAL_MS * 1000000;
    uv_timer_start(&ol->lag_timer, on_lag_timer, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
}

static void on_flush_timer(uv_timer_t *t) {
    crest__obs_loop_t *ol = CREST__CONTAINER_OF(t, crest__obs_loop_t, flush_timer);
    if (ol->blk == NULL || ol->blk->len == 0)
        return;
    if (log_handoff(ol->log, ol->blk, 0) == 0)
        ol->blk = NULL;
    else
        uv_timer_start(&ol->flush_timer, on_flush_timer, LOG_FLUSH_MS, 0); /* writer behind */
}

void crest__obs_loop_start(crest_loop_t *loop) {
    crest__obs_loop_t *ol = crest__http_loop(loop)->obs;
    ol->loop = loop;
    /* Unreferenced: they never keep a stopping loop alive; the loop's last walk closes them. */
    uv_timer_init(&loop->uv, &ol->lag_timer);
    uv_timer_init(&loop->uv, &ol->flush_timer);
    uv_unref((uv_handle_t *)&ol->lag_timer);
    uv_unref((uv_handle_t *)&ol->flush_timer);
    ol->timers = 1;
    ol->lag_due = uv_hrtime() + (uint64_t)LAG_INTERVAL_MS * 1000000;
    uv_timer_start(&ol->lag_timer, on_lag_timer, LAG_INTERVAL_MS, LAG_INTERVAL_MS);
}

/* ---- the access log's lines ---- */

static char *put(char *o, const char *s, size_t n) {
    memcpy(o, s, n);
    return o + n;
}

/* Bytes a JSON string cannot hold as they are: 1 for the ASCII ones to escape, 2 for bytes
 * above 0x7F (kept when the text is valid UTF-8). */
static const unsigned char json_class[256] = {
    [0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x7f] = 1, [0x80 ... 0xff] = 2,
};

/* s as a JSON string with its quotes. Bytes are kept as sent: valid UTF-8 passes through, and in
 * text that is not UTF-8 each byte above 0x7F becomes \u00XX (so the line is valid JSON and the
 * bytes can be told). Runs of plain bytes (nearly all of a path or a user agent) go in one copy.
 * At most 6 * n + 2 bytes. */
static char *put_json(char *o, crest_str_t s) {
    static const char hex[] = "0123456789abcdef";
    int utf8 = -1; /* not looked at yet */
    *o++ = '"';
    size_t i = 0, j = 0;
    while (j < s.len) {
        unsigned char c = (unsigned char)s.ptr[j];
        unsigned k = json_class[c];
        if (k == 0) {
            j++;
            continue;
        }
        if (k == 2) {
            if (utf8 < 0)
                utf8 = crest_utf8_feed(CREST_UTF8_ACCEPT, s.ptr, s.len) == CREST_UTF8_ACCEPT;
            if (utf8) {
                j++;
                continue;
            }
        }
        o = put(o, s.ptr + i, j - i);
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else {
            o = put(o, "\\u00", 4);
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
        i = ++j;
    }
    o = put(o, s.ptr + i, j - i);
    *o++ = '"';
    return o;
}

/* A string known to need no escape (a method token, a request id), with its quotes. */
static char *put_plain(char *o, crest_str_t s) {
    *o++ = '"';
    o = put(o, s.ptr, s.len);
    *o++ = '"';
    return o;
}

static char *put_json_or_null(char *o, crest_str_t s) {
    return s.ptr ? put_json(o, s) : put(o, "null", 4);
}

static char *put_u64(char *o, uint64_t v) {
    char num[24];
    char *d = crest__fmt_u64(num + sizeof(num), v);
    return put(o, d, (size_t)(num + sizeof(num) - d));
}

static void log_line(crest_req_t *req, crest__obs_loop_t *ol, uint64_t ns) {
    crest_str_t method = req->log_method, path = req->log_path, ua = req->log_ua;
    const crest__addr_t *remote = req->client_known ? &req->client : &req->peer;
    /* The head is read only while the request's handlers run: a request whose connection closed
     * under its handler lives on detached with a head that no longer holds (its copies were not
     * made; the line has nulls). */
    if (req->head != NULL && crest__http_loop(req->loop)->dispatching == req) {
        method = req->head->method;
        path = req->head->path;
        ua = crest_req_header(req, "User-Agent");
        remote = crest__req_client_addr(req);
    }
    size_t need = 256 + 46 + 6 * (method.len + path.len + ua.len) + req->rid_len +
                  (req->route ? 6 * strlen(req->route) : 0);
    log_blk_t *b = ol->blk;
    if (b != NULL && b->cap - b->len < need) {
        if (log_handoff(ol->log, b, 0) != 0) {
            crest__count(&ol->log_dropped, 1); /* the writer is behind: the line goes, whole */
            return;
        }
        b = ol->blk = NULL;
    }
    if (b == NULL) {
        size_t cap = need > LOG_BLOCK ? need : LOG_BLOCK;
        if ((b = malloc(sizeof(*b) + cap)) == NULL) {
            crest__count(&ol->log_dropped, 1);
            return;
        }
        b->next = NULL;
        b->len = 0;
        b->cap = cap;
        ol->blk = b;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != ol->stamp_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(ol->stamp, sizeof(ol->stamp), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        ol->stamp_sec = ts.tv_sec;
    }
    char *start = b->data + b->len, *o = start;
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000);
    o = put(o, "{\"time\":\"", 9);
    o = put(o, ol->stamp, 19);
    *o++ = '.';
    *o++ = (char)('0' + ms / 100);
    *o++ = (char)('0' + ms / 10 % 10);
    *o++ = (char)('0' + ms % 10);
    o = put(o, "Z\",\"remote\":", 12);
    char addr[64];
    size_t alen = crest__addr_format(remote, addr, sizeof(addr));
    o = alen ? put_plain(o, (crest_str_t){addr, alen}) : put(o, "null", 4);
    o = put(o, ",\"method\":", 10);
    o = method.ptr ? put_plain(o, method) : put(o, "null", 4); /* a token: nothing to escape */
    o = put(o, ",\"path\":", 8);
    o = put_json_or_null(o, path);
    o = put(o, ",\"route\":", 9);
    o = put_json_or_null(o, req->route ? (crest_str_t){req->route, strlen(req->route)}
                                       : (crest_str_t){NULL, 0});
    o = put(o, ",\"status\":", 10);
    o = put_u64(o, (uint64_t)req->status);
    o = put(o, ",\"bytes\":", 9);
    o = put_u64(o, req->body_sent);
    o = put(o, ",\"duration_ms\":", 15);
    uint64_t us = ns / 1000;
    o = put_u64(o, us / 1000);
    *o++ = '.';
    *o++ = (char)('0' + us % 1000 / 100);
    *o++ = (char)('0' + us % 100 / 10);
    *o++ = (char)('0' + us % 10);
    o = put(o, ",\"request_id\":", 14);
    /* The id's characters need no escape (rid_char, or ours). */
    o = req->rid_len ? put_plain(o, (crest_str_t){req->rid, req->rid_len}) : put(o, "null", 4);
    o = put(o, ",\"user_agent\":", 14);
    o = put_json_or_null(o, ua);
    o = put(o, "}\n", 2);
    int first = b->len == 0;
    b->len += (size_t)(o - start);
    crest__count(&ol->log_lines, 1);
    if (first && ol->timers && !ol->loop->finished)
        uv_timer_start(&ol->flush_timer, on_flush_timer, LOG_FLUSH_MS, 0);
}

void crest__obs_keep(crest_req_t *req) {
    crest__obs_loop_t *ol = crest__http_loop(req->loop)->obs;
    if (ol == NULL || ol->log == NULL || req->head == NULL)
        return;
    crest__req_client_addr(req); /* kept with the request: the headers end here */
    crest_str_t m = req->head->method, p = req->head->path;
    crest_str_t ua = crest_req_header(req, "User-Agent");
    char *mem = crest_req_alloc(req, m.len + p.len + ua.len + 1);
    if (mem == NULL)
        return; /* the line has nulls for them */
    memcpy(mem, m.ptr, m.len);
    req->log_method = (crest_str_t){mem, m.len};
    memcpy(mem + m.len, p.ptr, p.len);
    req->log_path = (crest_str_t){mem + m.len, p.len};
    if (ua.ptr != NULL) {
        memcpy(mem + m.len + p.len, ua.ptr, ua.len);
        req->log_ua = (crest_str_t){mem + m.len + p.len, ua.len};
    }
}

void crest__obs_finish(crest_req_t *req) {
    crest__http_loop_t *hl = crest__http_loop(req->loop);
    crest__obs_loop_t *ol = hl->obs;
    if (ol == NULL)
        return; /* the app never ran (a request made by a unit test, say) */
    uint64_t ns = uv_hrtime() - req->start_ns;
    unsigned m = (unsigned)req->method < CREST_METHOD__COUNT ? (unsigned)req->method : 0;
    size_t series = (size_t)req->route_slot * CREST_METHOD__COUNT + m;
    crest__hist_add(hl->hist + series * CREST__HIST_SLOTS, ns);
    if (ol->log != NULL)
        log_line(req, ol, ns);
}

/* ---- request ids ---- */

static int rid_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("-_.:+/=", c) != NULL);
}

static int on_request_id(crest_req_t *req, void *data) {
    const crest__obs_t *o = data;
    crest_str_t v = crest_req_header(req, "X-Request-Id");
    int ok = v.ptr != NULL && v.len > 0 && v.len <= CREST__RID_MAX;
    for (size_t i = 0; ok && i < v.len; i++)
        ok = rid_char((unsigned char)v.ptr[i]);
    if (ok) {
        memcpy(req->rid, v.ptr, v.len);
        req->rid_len = (uint8_t)v.len;
    } else {
        /* The process's random prefix, the loop and a counter of the loop: unique without a
         * system call or a shared counter per request. */
        crest__obs_loop_t *ol = crest__http_loop(req->loop)->obs;
        static const char hex[] = "0123456789abcdef";
        size_t n = strlen(o->rid_prefix);
        memcpy(req->rid, o->rid_prefix, n);
        char num[24];
        char *d = crest__fmt_u64(num + sizeof(num), (uint64_t)req->loop->index);
        memcpy(req->rid + n, d, (size_t)(num + sizeof(num) - d));
        n += (size_t)(num + sizeof(num) - d);
        req->rid[n++] = '-';
        uint64_t seq = ++ol->rid_seq;
        char *e = num + sizeof(num);
        do {
            *--e = hex[seq & 15];
            seq >>= 4;
        } while (seq);
        memcpy(req->rid + n, e, (size_t)(num + sizeof(num) - e));
        n += (size_t)(num + sizeof(num) - e);
        req->rid_len = (uint8_t)n;
    }
    req->rid[req->rid_len] = '\0';
    /* One copy of a line whose characters are valid by construction (rid_char or ours). */
    char line[sizeof("X-Request-Id: \r\n") + CREST__RID_MAX];
    memcpy(line, "X-Request-Id: ", 14);
    memcpy(line + 14, req->rid, req->rid_len);
    memcpy(line + 14 + req->rid_len, "\r\n", 2);
    int rc = crest__res_header_block(req, line, 16 + (size_t)req->rid_len);
    return rc == 0 ? CREST_NEXT : rc;
}

int crest_app_request_id(crest_app_t *app) {
    if (app->rt.running)
        return CREST_EBUSY;
    crest__obs_t *o = obs_get(app);
    if (o == NULL)
        return CREST_ENOMEM;
    if (o->rid_prefix[0] == '\0') {
        static const char alphabet[] = "0123456789abcdefghijklmnopqrstuv";
        uint8_t rnd[10];
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            uint64_t t = uv_hrtime() ^ ((uint64_t)getpid() << 32);
            memcpy(rnd, &t, sizeof(t));
            memcpy(rnd + 8, &t, 2);
        }
        for (size_t i = 0; i < sizeof(rnd); i++)
            o->rid_prefix[i] = alphabet[rnd[i] & 31];
        o->rid_prefix[sizeof(rnd)] = '-';
        o->rid_prefix[sizeof(rnd) + 1] = '\0';
    }
    return crest__app_use_every(app, NULL, on_request_id, o);
}

crest_str_t crest_req_id(const crest_req_t *req) {
    return (crest_str_t){req->rid_len ? req->rid : "", req->rid_len};
}

/* ---- metrics ---- */

/* A label value with Prometheus' escapes (backslash, quote, newline). */
static void label_value(crest_buf_t *out, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            crest_buf_append(out, "\\", 1);
        if (*s == '\n')
            crest_buf_append(out, "\\n", 2);
        else
            crest_buf_append(out, s, 1);
    }
}

static void write_core(const crest_app_t *app, crest_buf_t *b) {
    int codes[128];
    uint64_t counts[128];
    size_t n = crest_app_status_counts(app, codes, counts, 128);
    crest_stats_t s;
    crest_app_stats(app, &s);
    crest_buf_puts(b, "# HELP crest_requests_total Responses sent, by status code.\n"
                      "# TYPE crest_requests_total counter\n");
    for (size_t i = 0; i < n && i < 128; i++)
        crest_buf_printf(b, "crest_requests_total{status=\"%d\"} %llu\n", codes[i],
                         (unsigned long long)counts[i]);
    struct {
        const char *name, *type, *help;
        uint64_t v;
    } g[] = {
        {"crest_open_connections", "gauge", "Client connections open now.", s.open_connections},
        {"crest_connections_accepted_total", "counter", "Client connections accepted.",
         s.accepted_connections},
        {"crest_rejected_requests_total", "counter",
         "Requests rejected as malformed or over a limit.", s.rejected_requests},
        {"crest_accept_pauses_total", "counter",
         "Times accepting paused: the connection cap or no file descriptors left.",
         s.refused_connections},
        {"crest_write_timeouts_total", "counter",
         "Connections closed for taking none of their output within the write timeout.",
         s.write_timeouts},
        {"crest_buffered_bytes", "gauge",
         "Bytes held for clients now: request bodies, unsent output, messages between threads.",
         s.buffered_bytes},
        {"crest_buffered_peak_bytes", "gauge",
         "The most held since memory was last returned to the system.", s.buffered_peak},
        {"crest_buffer_limit_bytes", "gauge", "The budget (max_buffer_memory).", s.buffer_limit},
        {"crest_buffer_refusals_total", "counter", "Work refused for the budget.",
         s.buffer_refusals},
    };
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
        crest_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", g[i].name, g[i].help,
                         g[i].name, g[i].type, g[i].name, (unsigned long long)g[i].v);
}

static void write_durations(const crest_app_t *app, crest_buf_t *b) {
    const crest__obs_t *o = app->obs;
    crest_buf_puts(b, "# HELP crest_http_server_request_duration_seconds Time from a request's "
                      "arrival to the end of its response, by method and route template "
                      "(route=\"\" when no route matched).\n"
                      "# TYPE crest_http_server_request_duration_seconds histogram\n");
    if (o == NULL || app->hloops == NULL || app->hloops[0].hist == NULL)
        return;
    size_t stride = o->nslots * CREST_METHOD__COUNT * CREST__HIST_SLOTS;
    for (size_t slot = 0; slot < o->nslots; slot++) {
        const char *route = slot ? crest__router_slot(app->router, (uint32_t)slot) : "";
        for (int m = 0; m < CREST_METHOD__COUNT; m++) {
            size_t off = (slot * CREST_METHOD__COUNT + (size_t)m) * CREST__HIST_SLOTS;
            uint64_t sums[CREST__HIST_SLOTS];
            if (!hist_sum(sums, app->hloops[0].hist + off, (size_t)app->rt.nthreads, stride))
                continue; /* series only for what was seen */
            const char *name = crest_method_name((crest_method_t)m);
            char lab[512];
            crest_buf_t l = CREST_BUF_ON(lab);
            crest_buf_printf(&l, "method=\"%s\",route=\"", name ? name : "_OTHER");
            label_value(&l, route ? route : "");
            crest_buf_append(&l, "\"", 2); /* with its NUL */
            hist_lines(b, "crest_http_server_request_duration_seconds", l.ptr, sums);
            crest_buf_free(&l);
        }
    }
}

static void write_loops(const crest_app_t *app, crest_buf_t *b) {
    crest_buf_puts(b, "# HELP crest_event_loop_lag_seconds How late the loop thread's periodic "
                      "timer last ran: time the loop was busy and could not serve.\n"
                      "# TYPE crest_event_loop_lag_seconds gauge\n");
    for (int i = 0; app->hloops && i < app->rt.nthreads; i++)
        if (app->hloops[i].obs)
            crest_buf_printf(b, "crest_event_loop_lag_seconds{loop=\"%d\"} %.6f\n", i,
                             (double)load(&app->hloops[i].obs->lag_ns) / 1e9);
    crest_buf_puts(b, "# HELP crest_event_loop_lag_max_seconds The largest lag of the last "
                      "5 seconds or so.\n"
                      "# TYPE crest_event_loop_lag_max_seconds gauge\n");
    for (int i = 0; app->hloops && i < app->rt.nthreads; i++)
        if (app->hloops[i].obs)
            crest_buf_printf(b, "crest_event_loop_lag_max_seconds{loop=\"%d\"} %.6f\n", i,
                             (double)load(&app->hloops[i].obs->lag_max_ns) / 1e9);
    if (app->obs == NULL || app->obs->log == NULL)
        return;
    uint64_t lines = 0, dropped = 0;
    for (int i = 0; app->hloops && i < app->rt.nthreads; i++) {
        if (app->hloops[i].obs) {
            lines += load(&app->hloops[i].obs->log_lines);
            dropped += load(&app->hloops[i].obs->log_dropped);
        }
    }
    crest_buf_printf(b,
                     "# HELP crest_access_log_lines_total Access log lines formatted.\n"
                     "# TYPE crest_access_log_lines_total counter\n"
                     "crest_access_log_lines_total %llu\n"
                     "# HELP crest_access_log_dropped_total Access log lines dropped: the writer "
                     "was behind.\n"
                     "# TYPE crest_access_log_dropped_total counter\n"
                     "crest_access_log_dropped_total %llu\n"
                     "# HELP crest_access_log_write_errors_total Failed writes or reopens of the "
                     "access log.\n"
                     "# TYPE crest_access_log_write_errors_total counter\n"
                     "crest_access_log_write_errors_total %llu\n",
                     (unsigned long long)lines, (unsigned long long)dropped,
                     (unsigned long long)atomic_load(&app->obs->log->write_errors));
}

int crest_app_metrics(const crest_app_t *app, crest_buf_t *out) {
    write_core(app, out);
    write_durations(app, out);
    write_loops(app, out);
    crest__obs_t *o = app->obs;
    if (o != NULL) {
        pthread_mutex_lock(&o->lock);
        for (size_t i = 0; i < o->nsrcs; i++)
            o->srcs[i].cb(app, o->srcs[i].arg, out);
        pthread_mutex_unlock(&o->lock);
    }
    return out->err ? CREST_ENOMEM : 0;
}
