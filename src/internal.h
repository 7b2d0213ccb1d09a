/* Declarations shared between crest's modules (crest__ prefix); never installed. */
#ifndef CREST_INTERNAL_H
#define CREST_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <uv.h>

#include "crest.h"

#define CREST__CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

/* ---- core/log.c ---- */
void crest__log(const crest_app_t *app, crest_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A log line that can repeat once per event (a failed accept, a failed handler) goes through a
 * limiter: at most one line per second per limiter, and the next line says how many were
 * suppressed, so a flood of events cannot become a flood of log lines. Owner: one thread. */
typedef struct {
    uint64_t next_ms;    /* monotonic ms before which lines are suppressed */
    uint64_t suppressed; /* lines suppressed since the last one written */
} crest__ratelimit_t;

void crest__log_limited(const crest_app_t *app, crest__ratelimit_t *rl, crest_log_level_t level,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- core/mem.c: the process-wide budget for buffered bytes ----
 * Bytes crest holds on behalf of clients (request bodies and heads waiting to be complete, output
 * the kernel has not taken, pub/sub messages on their way between threads) are counted against one
 * ceiling, app->opts.max_buffer_memory. Past it new work is refused (503, dropped messages)
 * instead of growing into the OOM killer. Any thread (atomics). */
typedef struct {
    _Atomic int64_t used;
    _Atomic int64_t peak;
    _Atomic uint64_t refused; /* charges refused for being over the budget */
    int64_t limit;
    _Atomic int trim_pending; /* a malloc_trim is scheduled */
} crest__budget_t;

/* Charge n bytes if they fit under the budget: 0, or CREST_ENOBUFS (nothing charged). */
int crest__mem_take(crest_app_t *app, size_t n);
/* Charge n bytes whether or not they fit (memory already held, such as output being moved). */
void crest__mem_charge(crest_app_t *app, size_t n);
/* Give back n bytes charged before. On `loop` (may be NULL), a fall from a high mark schedules
 * returning free memory to the operating system. */
void crest__mem_give(crest_app_t *app, crest_loop_t *loop, size_t n);
/* Nonzero while the budget is used up: new work should be refused. */
int crest__mem_over(const crest_app_t *app);

/* ---- core/wheel.c: one hashed timer wheel per loop ----
 * Connections embed a node instead of owning a uv_timer_t: arming, re-arming and disarming are
 * O(1) list operations and an idle server with no deadlines takes no wake-ups. */
#define CREST__WHEEL_TICK_MS 100
#define CREST__WHEEL_SLOTS 256

typedef struct crest__wheel_node_s crest__wheel_node_t;
typedef void (*crest__wheel_cb)(crest__wheel_node_t *node);

struct crest__wheel_node_s {
    crest__wheel_node_t *next; /* NULL when not armed */
    crest__wheel_node_t *prev;
    uint64_t due; /* in ticks */
    crest__wheel_cb cb;
};

typedef struct {
    uv_timer_t timer;
    uint64_t tick;                                 /* last tick processed */
    size_t armed;                                  /* nodes in the wheel */
    crest__wheel_node_t slots[CREST__WHEEL_SLOTS]; /* list heads (circular, sentinel) */
} crest__wheel_t;

void crest__wheel_init(crest__wheel_t *w, uv_loop_t *loop);
/* Run node->cb about `ms` from now (rounded up to a tick). Re-arming an armed node moves it. */
void crest__wheel_arm(crest__wheel_t *w, crest__wheel_node_t *node, uint64_t ms);
void crest__wheel_disarm(crest__wheel_t *w, crest__wheel_node_t *node);
void crest__wheel_close(crest__wheel_t *w);

/* ---- core/loop.c: loop threads and their inboxes ---- */
typedef struct crest__msg_s {
    struct crest__msg_s *next;
    crest_loop_cb cb;
    void *arg;
} crest__msg_t;

typedef struct crest__conn_s crest__conn_t;
typedef struct crest__router_s crest__router_t;
typedef struct crest__after_s crest__after_t;

/* Output waiting to be written: copied bytes in `bytes` and borrowed pieces, in order. A segment
 * with ext == NULL refers to bytes[off .. off+len) (offsets, because bytes may move as it grows).
 */
typedef struct {
    size_t off;
    size_t len;
    const char *ext;
    crest_release_cb release;
    void *arg;
    int shared; /* ext is part of a block many queues share (see crest__outq_share) */
} crest__seg_t;

typedef struct {
    crest_buf_t bytes;
    crest__seg_t *segs;
    size_t nsegs;
    size_t cap;
    size_t total;  /* bytes in all segments */
    size_t shared; /* of total, bytes borrowed from blocks shared by many queues (pub/sub) */
} crest__outq_t;

struct crest_loop_s {
    void *data;
    uv_loop_t uv;
    int index;
    crest_app_t *app;
    uv_thread_t thread;
    uv_async_t inbox_async;
    pthread_mutex_t inbox_lock;
    crest__msg_t *inbox_head; /* guarded by inbox_lock */
    crest__msg_t *inbox_tail;
    int inbox_closed; /* guarded by inbox_lock: posts fail once set */
    crest__wheel_t wheel;
    uv_poll_t listener; /* readable: connections wait in the listen queue */
    int listen_fd;
    int spare_fd;            /* held open so that accept's EMFILE can still drain the queue */
    uv_timer_t accept_timer; /* accepting paused (descriptors or the connection cap): retry */
    uint32_t accept_backoff; /* ms; doubles while accepts keep failing */
    int accept_paused;       /* the listener is not polled */
    uv_idle_t resume_idle;   /* runs parked connections between polls */
    crest__conn_t *parked;   /* connections with input left over from a read batch */
    crest__conn_t *parked_tail;
    size_t nparked;
    uv_prepare_t turn_prepare; /* before each poll: a new turn of the loop begins */
    uint64_t turn_ns;          /* time batches took in this turn */
    crest__ratelimit_t log_accept;
    crest__ratelimit_t log_handler;
    uv_timer_t shutdown_timer;
    crest__after_t *afters; /* pending crest_loop_after timers */
    int draining;
    int finished; /* draining done: the loop's own handles are closed */
    int stopped;
    /* HTTP state, owned by this thread. */
    char *scratch; /* read buffer shared by every connection of this loop */
    size_t scratch_size;
    crest__outq_t batch;       /* responses of the connection being processed */
    crest__conn_t *batch_conn; /* owner of `batch`, or NULL */
    void *head;                /* crest__http_head_t of the request being dispatched */
    crest_req_t *free_reqs;    /* recycled request objects */
    time_t date_sec;
    char date_line[128]; /* "\r\nServer: ...\r\nDate: ...\r\n" (starts after status line) */
    size_t date_line_len;
    size_t server_line_len; /* "\r\nServer: x" part for 1xx responses */
    /* Counters: written only by this thread, read by any (relaxed atomics). */
    _Atomic uint64_t status_counts[600];
    _Atomic uint64_t open_conns;
    _Atomic uint64_t accepted;
    _Atomic uint64_t rejected;
    _Atomic uint64_t refused_conns; /* accepts paused or failed (cap or descriptors) */
    _Atomic uint64_t write_timeouts;
};

int crest__loop_init(crest_loop_t *loop, crest_app_t *app, int index);
/* Runs on the loop's thread until the loop stops; frees what crest__loop_init made. */
void crest__loop_run(crest_loop_t *loop);
/* Free the loop's resources after its thread ended (or when it never ran). */
void crest__loop_dispose(crest_loop_t *loop);
void crest__count(_Atomic uint64_t *c, int64_t delta); /* single-writer counter update */
/* Forced stop: run every pending crest_loop_after callback now, so that what they hold (often an
 * aborted request) is released instead of leaked. */
void crest__loop_fire_timers(crest_loop_t *loop);
/* While draining, end the loop once no connection and no timer is left. */
void crest__loop_maybe_finish(crest_loop_t *loop);

/* ---- http ---- */

/* State a higher module hangs on the app (work/: the worker pool). `stop` runs once: from
 * crest_app_run() after every loop thread has ended and before their memory goes, or from
 * crest_app_free() for an app that never ran. It frees the extension. */
typedef struct crest__app_ext_s {
    void (*stop)(struct crest__app_ext_s *ext);
} crest__app_ext_t;

struct crest_app_s {
    void *data;
    crest_app_opts_t opts;
    char *host;
    char *server_name;
    crest__router_t *router;
    struct crest__mw_s *mws;
    size_t nmws;
    crest_handler_cb not_found;
    void *not_found_data;
    _Atomic int running; /* read by other threads and by crest_app_stop from any context */
    int port;
    int *listen_fds;
    int nthreads;
    crest_loop_t *loops;
    uv_loop_t control; /* the thread in crest_app_run: signals and stop requests */
    uv_async_t stop_async;
    uv_async_t done_async;     /* a loop thread ended */
    uv_thread_t signal_thread; /* sigwait()s for SIGINT and SIGTERM while running */
    _Atomic int signals_done;
    sigset_t saved_sigmask; /* the caller's mask before crest_app_listen blocked the signals */
    int sigmask_saved;
    _Atomic int stop_requested; /* stop requests not yet handled */
    _Atomic int threads_done;
    int stops_seen;
    crest__app_ext_t *work; /* the worker pool (work/work.c), or NULL */
    _Atomic int64_t conns;  /* open client connections on every loop (max_connections) */
    crest__budget_t mem;
};

typedef struct crest__mw_s {
    char *prefix;
    size_t len;
    crest_handler_cb cb;
    void *data;
} crest__mw_t;

/* http/server.c */
int crest__http_loop_start(crest_loop_t *loop);  /* on the loop's thread: listen, buffers */
void crest__http_loop_stop(crest_loop_t *loop);  /* on the loop's thread after it ran */
void crest__http_loop_drain(crest_loop_t *loop); /* start graceful shutdown on this loop */
void crest__http_loop_force(crest_loop_t *loop); /* shutdown timeout: close everything */
void crest__http_date_refresh(crest_loop_t *loop);

/* http/output.c */
void crest__outq_free(crest__outq_t *q);
int crest__outq_copy(crest__outq_t *q, const void *data, size_t len);
int crest__outq_borrow(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                       void *arg);
/* As crest__outq_borrow for bytes of a block that many queues share (a published message): they
 * are not counted per queue against the memory budget (the block is charged once, by its owner).
 */
int crest__outq_share(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                      void *arg);
#endif
