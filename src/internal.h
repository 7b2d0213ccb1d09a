/* Declarations shared between crest's modules (crest__ prefix); never installed. */
#ifndef CREST_INTERNAL_H
#define CREST_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>
#include <time.h>

#include <uv.h>

#include "crest.h"

#define CREST__CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

typedef struct crest__rt_s crest__rt_t;
typedef struct crest__tls_ctx_s crest__tls_ctx_t;
typedef struct crest__tls_s crest__tls_t;

/* ---- core/log.c: lines to opts.log ---- */
void crest__log(const crest__rt_t *rt, crest_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A log line that can repeat once per event (a failed accept, a failed handler) goes through a
 * limiter: at most one line per second per limiter, and the next line says how many were
 * suppressed, so a flood of events cannot become a flood of log lines. Owner: one thread. */
typedef struct {
    uint64_t next_ms;    /* monotonic ms before which lines are suppressed */
    uint64_t suppressed; /* lines suppressed since the last one written */
} crest__ratelimit_t;

void crest__log_limited(const crest__rt_t *rt, crest__ratelimit_t *rl, crest_log_level_t level,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- core/mem.c: the process-wide budget for buffered bytes ----
 * Bytes crest holds on behalf of clients (request bodies and heads waiting to be complete, output
 * the kernel has not taken, pub/sub messages on their way between threads) are counted against one
 * ceiling, opts.max_buffer_memory. Past it new work is refused (503, dropped messages)
 * instead of growing into the OOM killer. Any thread (atomics). */
typedef struct {
    _Atomic int64_t used;
    _Atomic int64_t peak;
    _Atomic uint64_t refused; /* charges refused for being over the budget */
    int64_t limit;
    _Atomic int trim_pending; /* a malloc_trim is scheduled */
} crest__budget_t;

/* Charge n bytes if they fit under the budget: 0, or CREST_ENOBUFS (nothing charged). */
int crest__mem_take(crest__rt_t *rt, size_t n);
/* Charge n bytes whether or not they fit (memory already held, such as output being moved). */
void crest__mem_charge(crest__rt_t *rt, size_t n);
/* Give back n bytes charged before. On `loop` (may be NULL), a fall from a high mark schedules
 * returning free memory to the operating system. */
void crest__mem_give(crest__rt_t *rt, crest_loop_t *loop, size_t n);
/* Nonzero while the budget is used up: new work should be refused. */
int crest__mem_over(const crest__rt_t *rt);

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
    int borrowed; /* the sender's memory (crest__loop_post_msg): the inbox does not free it */
} crest__msg_t;

/* State a module keeps per loop thread (db/: the loop's database connections), made on that
 * thread when first needed and listed on the loop. `finish` runs once on the loop's thread when
 * the loop is done (its draining ended, or it stopped), before its inbox closes: it hands back
 * every request it holds, closes its handles and frees the extension. */
typedef struct crest__loop_ext_s {
    struct crest__loop_ext_s *next;
    const void *owner;
    void (*finish)(struct crest__loop_ext_s *ext, crest_loop_t *loop);
} crest__loop_ext_t;

typedef struct crest__conn_s crest__conn_t;
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
    crest__rt_t *rt;
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
    uv_prepare_t turn_prepare;      /* before each poll: a new turn of the loop begins */
    _Atomic uint64_t watchdog_seen; /* the last watchdog round this loop answered */
    uint64_t turn_ns;               /* time batches took in this turn */
    crest__ratelimit_t log_accept;
    uv_timer_t shutdown_timer;
    crest__after_t *afters;         /* pending timers (crest_loop_after, crest_loop_timer) */
    crest__after_t **timer_buckets; /* the same by id, for crest_loop_cancel (a power of two) */
    size_t timer_nbuckets;
    size_t timer_count;
    uint64_t timer_next_id;
    int draining;
    int finished; /* draining done: the loop's own handles are closed */
    int stopped;
    char *scratch; /* read buffer shared by every connection of this loop */
    size_t scratch_size;
    crest__outq_t batch;       /* output of the connection being processed */
    crest__conn_t *batch_conn; /* owner of `batch`, or NULL */
    char *tls_plain;           /* with TLS: plaintext of one read, for the protocol */
    size_t tls_plain_size;
    char *tls_stage;         /* with TLS: small pieces of output gathered into one record */
    crest__outq_t tls_spare; /* with TLS: plaintext queue buffers between two connections' use */
    void *upper;             /* the per-loop state of the layer above core (http/) */
    crest__loop_ext_t *exts; /* other modules' per-loop state */
    /* Counters: written only by this thread, read by any (relaxed atomics). */
    _Atomic uint64_t open_conns;
    _Atomic uint64_t accepted;
    _Atomic uint64_t refused_conns; /* accepts paused or failed (cap or descriptors) */
    _Atomic uint64_t write_timeouts;
};

int crest__loop_init(crest_loop_t *loop, crest__rt_t *rt, int index);
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
/* crest_loop_post with the message in the sender's memory (no allocation): it must stay valid
 * until m->cb runs. Fails with CREST_ECANCELED once the loop has finished. Any thread. */
int crest__loop_post_msg(crest_loop_t *loop, crest__msg_t *m);
/* List `ext` on the loop; find the one `owner` listed. The loop's thread only. */
void crest__loop_ext_add(crest_loop_t *loop, crest__loop_ext_t *ext);
crest__loop_ext_t *crest__loop_ext_find(const crest_loop_t *loop, const void *owner);

/* ---- core/run.c: the runtime (listeners, loop threads, signals, stopping) ---- */

/* State a higher module hangs on the runtime (work/: the worker pool). `stop` runs once: after
 * every loop thread has ended and before their memory goes, or when the runtime is freed without
 * having run. It frees the extension. */
typedef struct crest__rt_ext_s {
    void (*stop)(struct crest__rt_ext_s *ext);
} crest__rt_ext_t;

/* ---- core/systemd.c: socket activation and notifications, without libsystemd ---- */

/* Where READY=1, STOPPING=1 and WATCHDOG=1 go. Owner: the runtime; sent from its control
 * thread. */
/* The first descriptor of the passed sockets. */
#define CREST__SD_FDS_START 3

typedef struct {
    int fd; /* the datagram socket; valid only while addrlen is nonzero (a zeroed struct is
               "no manager") */
    struct sockaddr_un addr;
    socklen_t addrlen;
    uint64_t watchdog_ms; /* half of WATCHDOG_USEC, or 0: no watchdog asked for */
} crest__sd_t;

/* The sockets passed by the service manager (LISTEN_PID is this process): checks that each of
 * descriptors 3 .. 3+n-1 is a listening TCP socket and makes it non-blocking and close-on-exec.
 * Removes LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES from the environment in any case (not safe
 * while another thread reads the environment: call at start-up). Returns n (0 when none were
 * passed) or CREST_EINVAL, logged, for a descriptor crest cannot serve on. */
int crest__sd_listen_fds(crest__rt_t *rt);
/* Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, open the socket to notify on and remove
 * the variables from the environment (start-up only, as above). */
void crest__sd_init(crest__sd_t *sd);
/* Send one notification ("READY=1", ...) without blocking; nothing when sd has no socket. */
void crest__sd_notify(const crest__sd_t *sd, const char *msg);
void crest__sd_close(crest__sd_t *sd);

/* What the layer above core provides (http/: the app and its protocols). */
typedef struct {
    int (*loop_start)(crest_loop_t *loop); /* on the loop's thread, before it runs */
    void (*loop_stop)(crest_loop_t *loop); /* on the loop's thread after it ran */
    /* The loop begins its graceful shutdown, before each connection hears it (optional). */
    void (*loop_drain)(crest_loop_t *loop);
    /* A connection was accepted: install its protocol (crest__conn_t.proto) and its deadline. */
    void (*conn_open)(crest__conn_t *c);
    /* Its TLS handshake is done; alpn is the protocol the client and we agreed on (not
     * NUL-terminated; alpn_len 0 when none). */
    void (*conn_secure)(crest__conn_t *c, const char *alpn, size_t alpn_len);
    int alpn_h2;       /* the layer above speaks HTTP/2: offer "h2" in ALPN */
    size_t conn_extra; /* bytes of protocol state allocated behind each crest__conn_t */
    /* Written to clients shed from the listen queue when the process is out of descriptors. */
    const char *refusal;
    size_t refusal_len;
} crest__rt_hooks_t;

/* One per app: it owns the listening sockets and the loop threads. */
struct crest__rt_s {
    crest_app_opts_t *opts; /* the app's options: its limits (some settled here), its log */
    const crest__rt_hooks_t *hooks;
    _Atomic int running; /* read by other threads and by crest_app_stop from any context */
    int port;
    int *listen_fds;
    int nthreads;
    crest_loop_t *loops;
    uv_loop_t control; /* the thread in crest__rt_run: signals and stop requests */
    uv_async_t stop_async;
    uv_async_t done_async;     /* a loop thread ended */
    uv_thread_t signal_thread; /* sigwait()s for SIGINT and SIGTERM while running */
    _Atomic int signals_done;
    sigset_t saved_sigmask; /* the caller's mask before crest__rt_listen blocked the signals */
    int sigmask_saved;
    _Atomic int stop_requested; /* stop requests not yet handled */
    _Atomic int threads_done;
    int stops_seen;
    crest__rt_ext_t *work; /* the worker pool (work/work.c), or NULL */
    /* The service manager (opts.systemd): activated is the number of sockets it passed. */
    int activated;
    crest__sd_t sd;
    uv_async_t ready_async;    /* a loop thread started serving */
    _Atomic int loops_serving; /* loop threads serving; READY=1 once all are */
    int ready_sent;
    uv_timer_t watchdog_timer; /* with sd.watchdog_ms: WATCHDOG=1 while every loop answers */
    uint64_t watchdog_round;
    crest__ratelimit_t log_watchdog;
    /* With handle_signals: SIGUSR1 is taken too and this runs on the signal thread (the layer
     * above reopens its access log); set before crest__rt_listen. NULL: SIGUSR1 is left alone. */
    void (*on_usr1)(crest__rt_t *rt);
    crest__tls_ctx_t *tls; /* with opts.tls_cert: the listeners speak TLS */
    _Atomic int64_t conns; /* open client connections on every loop (max_connections) */
    crest__budget_t mem;
};

/* Open the listening sockets on host (opts.port, one per loop thread with SO_REUSEPORT), or take
 * the ones the service manager passed (opts.systemd), and settle the limits that depend on the
 * machine. Idempotent. */
int crest__rt_listen(crest__rt_t *rt, const char *host);
/* Run the loop threads until stopped (crest__rt_stop, SIGINT or SIGTERM). */
int crest__rt_run(crest__rt_t *rt);
/* Ask for a stop; any thread, any context. A second request cuts the graceful drain short. */
void crest__rt_stop(crest__rt_t *rt);
/* Free what the runtime holds (after crest__rt_run returned, or when it never ran). */
void crest__rt_free(crest__rt_t *rt);

/* The runtime without listeners or threads (http/testing.c's test client): one loop, run by the
 * caller's thread in turns (uv_run), which is handed its connections (crest__conn_adopt_memory).
 * crest__rt_local_prepare is crest__rt_listen's counterpart (the limits, one loop; nothing is
 * bound): CREST_EBUSY when the runtime runs or has listeners. crest__rt_local_start then makes and
 * starts the loop (the layer's loop_start included) and marks the runtime running; a stop request
 * (crest__rt_stop) makes the loop drain. crest__rt_local_stop drains and runs the loop until it
 * finishes (the shutdown timeout forcing it), stops it and the worker pool as crest__rt_run's end
 * does, and disposes of it (its memory, with its counters, stays until crest__rt_free). All on
 * the caller's thread. */
int crest__rt_local_prepare(crest__rt_t *rt);
int crest__rt_local_start(crest__rt_t *rt);
void crest__rt_local_stop(crest__rt_t *rt);

/* ---- core/conn.c: client connections ---- */

/* Output being written by libuv: `inflight` was handed to uv_write, `pending` collects what
 * comes meanwhile. Exists only while a write is in progress. Owner: its connection. */
typedef struct {
    uv_write_t req;
    crest__outq_t inflight;
    crest__outq_t pending;
    uv_buf_t *bufs;
    size_t nbufs;
    size_t charged;   /* bytes charged to the memory budget */
    size_t last_left; /* unwritten bytes when the write deadline was armed (progress check) */
} crest__tx_t;

enum {
    CREST__PROTO_WRITE_DEADLINE = 1 << 0,     /* cut off a client that takes no output */
    CREST__PROTO_OUTPUT_PAUSES_READ = 1 << 1, /* stop reading while output is over max_output */
};

/* A protocol drives a connection: HTTP/1.1 from the first byte; after an upgrade WebSocket or
 * an event stream. It gets the bytes read and writes with crest__conn_out + crest__conn_flush,
 * so every protocol shares the batching, borrowed (zero-copy) segments and backpressure. */
typedef struct {
    void (*on_data)(crest__conn_t *c, char *data, size_t len); /* data is valid during the call */
    void (*on_resume)(crest__conn_t *c);   /* optional: parked (crest__conn_park), go on */
    void (*on_written)(crest__conn_t *c);  /* optional: a write completed; c->tx is NULL once
                                            * all is out (not after CONN_CLOSE_AFTER_WRITE) */
    void (*on_timer)(crest__conn_t *c);    /* c->timer fired (the protocol arms it) */
    void (*on_shutdown)(crest__conn_t *c); /* the server is stopping: finish, say goodbye, close */
    void (*on_close)(crest__conn_t *c);    /* the connection is closing: free what it holds */
    uint32_t flags;                        /* CREST__PROTO_* */
} crest__proto_t;

enum {
    CONN_CLOSING = 1 << 0,           /* uv_close called */
    CONN_LINGERING = 1 << 1,         /* write side shut down, draining input until EOF */
    CONN_READ_PAUSED = 1 << 2,       /* reading stopped (backpressure, or input held) */
    CONN_PARKED = 1 << 3,            /* on the loop's list of connections to go on with */
    CONN_NOTIFY_WRITTEN = 1 << 4,    /* the protocol waits for on_written: no synchronous write */
    CONN_CLOSE_AFTER_WRITE = 1 << 5, /* the output queued is the last: linger once it is out */
    CONN_MEMORY = 1 << 6,            /* the memory transport (crest__conn_adopt_memory) */
};

/* An IP address in 17 bytes: kept per connection (from accept, no getpeername per request) for
 * rate limits and logs. IPv4 is stored as an IPv4-mapped IPv6 address, so one comparison fits
 * both families. */
typedef struct {
    uint8_t family; /* 0 (unknown: not an IP socket), 4 or 6 */
    uint8_t ip[16];
} crest__addr_t;

/* Fill a from a socket address (AF_INET or AF_INET6; family 0 for any other). */
void crest__addr_from_sockaddr(crest__addr_t *a, const void *sockaddr);
/* Write a as text ("127.0.0.1", "::1"); returns the length, 0 for an unknown address. cap must be
 * at least 46 (INET6_ADDRSTRLEN). */
size_t crest__addr_format(const crest__addr_t *a, char *buf, size_t cap);

/* One client connection; lives on one loop thread. About 350 bytes when idle, with the
 * protocol state behind it (rt->hooks->conn_extra bytes, see crest__conn_extra). */
struct crest__conn_s {
    uv_tcp_t tcp; /* the socket; a memory connection's is never opened, and its data field holds
                     the memory transport's state (unused by sockets) */
    crest__wheel_node_t timer; /* the protocol's deadlines, the write deadline, the linger */
    crest__tx_t *tx;
    const crest__proto_t *proto;
    void *proto_data;           /* owner: the protocol */
    crest__tls_t *tls;          /* the TLS transport, or NULL for plain TCP */
    crest__conn_t *parked_next; /* in loop->parked */
    uint32_t flags;             /* CONN_* */
    uint32_t pflags;            /* the protocol's own flags */
    crest__addr_t peer;         /* the client's address, from accept */
};

static inline void *crest__conn_extra(crest__conn_t *c) {
    return c + 1;
}

static inline crest_loop_t *crest__conn_loop(const crest__conn_t *c) {
    return c->tcp.loop->data;
}

/* A TCP handle on a loop that is not a client connection (the outbound client's, client/) has
 * the address of this in its data field: the walks over a loop's connections leave it alone. */
extern const char crest__foreign_tcp;

void crest__conn_close(crest__conn_t *c);
/* Shut the write side down and read until the client closes (or a linger time passes): closing
 * at once with unread bytes in the socket makes the kernel send a reset that can destroy the
 * last output before the client reads it. */
void crest__conn_linger(crest__conn_t *c);
/* Stop or restart reading from the connection (backpressure). */
void crest__conn_reading(crest__conn_t *c, int on);
/* Go on with held input after the loop has polled the others: proto->on_resume, in turn. */
void crest__conn_park(crest__conn_t *c);
/* The turns of this loop iteration (since it last polled) ran longer than two batches' time:
 * input should wait for the next round. */
int crest__loop_busy(const crest_loop_t *loop);
/* Output of c's read batch goes to the loop's batch queue (flushing another connection's). */
void crest__conn_batch_begin(crest__conn_t *c);
/* Append to the output of the connection (the loop's batch, or the pending write; with TLS the
 * plaintext queue the flush encrypts). */
crest__outq_t *crest__conn_out(crest__conn_t *c);
/* Write what was appended with crest__conn_out. */
void crest__conn_flush(crest__conn_t *c);
/* The same below TLS: the bytes that go on the wire as they are (TLS records). */
crest__outq_t *crest__conn_raw_out(crest__conn_t *c);
void crest__conn_raw_flush(crest__conn_t *c);
/* Send up to len bytes of file fd from *off to the client with sendfile(2) (a memory connection:
 * pread into its sink), advancing *off; only with nothing queued (crest__conn_buffered 0) and no
 * TLS. Returns the bytes sent, 0 when the socket takes none now, CREST_EIO when the file ended
 * early, or another negative error (the connection is closed then). */
int64_t crest__conn_sendfile(crest__conn_t *c, int fd, uint64_t *off, uint64_t len);
/* Bytes queued on the connection and not yet taken by the kernel. */
size_t crest__conn_buffered(const crest__conn_t *c);
/* (Re)arm the write deadline of c's write in progress (c->tx). */
void crest__conn_write_deadline(crest__conn_t *c);
/* The memory transport: a connection with no socket below it, whose client is code on the
 * loop's thread (the test client, http/testing.c). Where a socket's client would read, the sink
 * is called; all three callbacks run on the loop's thread, never from inside the adopt, feed or
 * feed_end calls, and may not call back into the connection (crest__conn_feed and the like)
 * during the call. A memory client takes all output at once: no backpressure, no write deadline
 * ever reached. No TLS. */
typedef struct {
    /* Output: bufs[0..n) in order, valid during the call only (copy what is kept). */
    void (*on_output)(void *arg, const uv_buf_t *bufs, size_t n);
    /* The server shut its write side (a linger: a close-delimited body ends here): no output
     * follows. NULL: not wanted. */
    void (*on_end)(void *arg);
    /* The connection is closed and its memory freed: the last callback. Required. */
    void (*on_close)(void *arg);
    void *arg;
} crest__memsink_t;

/* A memory connection on `loop` from the client at `peer`, as an accepted one (counted in
 * open_conns and max_connections; the layer above installs its protocol, its header deadline
 * runs from now) and reading. The sink is copied; its arg must stay valid until on_close. On
 * the loop's thread. Returns 0 and sets *out (valid until sink.on_close runs), or CREST_ENOMEM
 * (no callback will run). */
int crest__conn_adopt_memory(crest_loop_t *loop, const crest__addr_t *peer,
                             const crest__memsink_t *sink, crest__conn_t **out);
/* The client sends len bytes (copied). They reach the protocol as reads would (through
 * proto->on_data, in pieces of at most the loop's scratch buffer, held while reading is paused)
 * from the loop, after this returns. Returns 0, CREST_ENOMEM, CREST_ECANCELED when the connection
 * is closing, CREST_EINVAL after crest__conn_feed_end. On the loop's thread. */
int crest__conn_feed(crest__conn_t *c, const void *data, size_t len);
/* The client ends its input (closes): after what was fed, the connection sees the EOF a
 * socket's read would, and closes, once reading is on. Nothing when it is closing already. */
void crest__conn_feed_end(crest__conn_t *c);
/* Move c to loop `to` (another thread): the socket and its TLS session leave this loop, and on
 * `to` they become a new connection whose protocol the layer above installs (conn_open) and
 * which is handed `replay` (len plaintext bytes, malloc'd) as if it had just read them. Only with
 * no output left to write. On c's loop thread. Returns 0: c is closed (its protocol's on_close
 * ran) and replay taken; the client sees no change. Otherwise nothing changed and replay is still
 * the caller's: CREST_EBUSY (output is being written: try again once it is out), CREST_ENOTSUP (a
 * memory connection), CREST_ECANCELED (c is closing, or `to` has stopped), CREST_EMFILE,
 * CREST_ENOMEM. */
int crest__conn_move(crest__conn_t *c, crest_loop_t *to, char *replay, size_t len);
/* A loop's connections: accepting (with a listen_fd; none for a loop that is handed its
 * connections) and buffers, on the loop's thread. */
int crest__conn_loop_start(crest_loop_t *loop);
void crest__conn_loop_stop(crest_loop_t *loop);
/* Stop accepting; each connection finishes (proto->on_shutdown) within shutdown_timeout. */
void crest__conn_loop_drain(crest_loop_t *loop);
/* The shutdown timeout: close every connection now. */
void crest__conn_loop_force(crest_loop_t *loop);

/* ---- core/tls.c: the TLS transport ---- */
/* Load the certificate chain and key (PEM) for the runtime's listeners; errors are logged.
 * Returns 0, CREST_EINVAL (a file that cannot be used), CREST_ENOMEM. */
int crest__tls_ctx_new(crest__rt_t *rt, const char *cert_file, const char *key_file, int h2);
/* Load the files again (SIGHUP): new handshakes get the new pair, connections keep theirs; a
 * pair that does not load is refused with a log line and the old one kept. Any thread. */
void crest__tls_reload(crest__rt_t *rt);
void crest__tls_ctx_free(crest__rt_t *rt);
/* A connection accepted on a TLS listener: its session (c->tls). */
int crest__tls_accept(crest__conn_t *c);
void crest__tls_free(crest__conn_t *c);
/* Free a session that belongs to no connection (one whose move failed). NULL does nothing. */
void crest__tls_discard(crest__tls_t *t);
/* Give c the session t of a connection that moved from another loop (crest__conn_move). */
void crest__tls_attach(crest__conn_t *c, crest__tls_t *t);
/* Ciphertext read: handshake, or decrypt and hand the plaintext to c->proto->on_data. */
void crest__tls_on_read(crest__conn_t *c, const char *data, size_t len);
/* The protocol's plaintext queue, and the bytes in it not encrypted yet. */
crest__outq_t *crest__tls_plain(crest__conn_t *c);
size_t crest__tls_pending(const crest__conn_t *c);
/* Encrypt the plaintext queue into the connection's raw output: 0 or CREST_ENOMEM. */
int crest__tls_encrypt(crest__conn_t *c);
/* Queue close_notify in the raw output, once and only after the handshake: 1 when queued now.
 * Plaintext queued afterwards is dropped. */
int crest__tls_close_notify(crest__conn_t *c);

/* ---- core/outq.c: output queues ---- */
void crest__outq_free(crest__outq_t *q);
/* Empty q and keep its memory for the next output. */
void crest__outq_reset(crest__outq_t *q);
int crest__outq_copy(crest__outq_t *q, const void *data, size_t len);
/* Count `len` bytes just appended to q->bytes by hand (a response head written in place). */
int crest__outq_commit(crest__outq_t *q, size_t len);
int crest__outq_borrow(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                       void *arg);
/* As crest__outq_borrow for bytes of a block that many queues share (a published message): they
 * are not counted per queue against the memory budget (the block is charged once, by its owner).
 */
int crest__outq_share(crest__outq_t *q, const void *data, size_t len, crest_release_cb release,
                      void *arg);
/* Release the first `done` bytes of q's segments (they were written): *first_seg and *first_off
 * say where the unwritten part begins. */
void crest__outq_consume(crest__outq_t *q, size_t done, size_t *first_seg, size_t *first_off);
/* Fill bufs (q->nsegs of them at most) with q's bytes from segment `from`, byte `off`. */
size_t crest__outq_bufs(crest__outq_t *q, size_t from, size_t off, uv_buf_t *bufs);
/* Hand q's unwritten part (from segment `from`, byte `off`) to dst, which must be empty: the
 * buffers change owner instead of being copied. q is left empty. */
void crest__outq_take(crest__outq_t *dst, crest__outq_t *q, size_t from, size_t off);
#endif
