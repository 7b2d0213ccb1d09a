/* HTTP internals shared by the files of src/http and the modules above it. */
#ifndef CREST_HTTP_HTTP_H
#define CREST_HTTP_HTTP_H

#include "http/parser.h"
#include "http/router.h"
#include "internal.h"

/* How a protocol sends the response to one of its requests: HTTP/1.1 serialises it onto the
 * connection, HTTP/2 into frames of the request's stream. response.c, the router, middleware and
 * every handler are the same for all of them. */
typedef struct {
    /* Queue the head: body_len bytes follow, a streamed body (body_len -1), or nothing the head
     * says (CREST__BODY_UNTIL_CLOSE). */
    int (*head)(crest_req_t *req, int status, const char *ctype, int64_t body_len);
    /* Queue body bytes: copied when release is NULL, else borrowed until release(arg), which the
     * writer calls in every case. A nonzero return means the connection was given up. */
    int (*body)(crest_req_t *req, const void *data, size_t len, crest_release_cb release,
                void *arg);
    /* A streamed body is complete. */
    int (*end)(crest_req_t *req);
    /* The response is complete (or given up): the request leaves its connection and is freed. */
    void (*finish)(crest_req_t *req);
    /* Output queued for the client and not taken by it yet. */
    size_t (*buffered)(const crest_req_t *req);
    /* Send what was queued (unless a read batch in progress will). */
    void (*push)(crest_req_t *req);
    /* req->drain_cb was armed: call it once buffered() is at or below req->drain_mark. */
    void (*want_drain)(crest_req_t *req);
    /* Cut the response short: the client sees it end incomplete. */
    void (*abort)(crest_req_t *req);
    /* The streamed body's consumer is ready again (it subscribed, or resumed): deliver what is
     * held, and read on, from a later turn of the loop (never inside this call). */
    void (*body_pull)(crest_req_t *req);
    /* Optional: send up to len bytes of file fd from *off straight to the client (sendfile),
     * after what is queued, advancing *off. Returns the bytes sent, 0 when it cannot now
     * (output is queued first, or the socket is full: wait for a drain), CREST_ENOTSUP when this
     * connection never can (TLS), or another negative error (the connection was given up). */
    int64_t (*sendfile)(crest_req_t *req, int fd, uint64_t *off, uint64_t len);
} crest__writer_t;

/* A request id is at most this long (crest/observe.h). */
#define CREST__RID_MAX 128

struct crest_req_s {
    void *data;
    crest__conn_t *conn; /* NULL once the client has gone */
    crest_loop_t *loop;
    const crest__writer_t *w; /* the protocol's */
    void *stream; /* the protocol's state of this request (HTTP/2: its stream), or NULL */
    crest__http_head_t *head; /* valid only during the handler call */
    crest_str_t body;
    crest__match_t *match;  /* valid only during the handler call */
    const char *route;      /* the matched route's template (the app owns it), or NULL */
    uint64_t start_ns;      /* uv_hrtime() when the request was made (durations, http/observe.c) */
    uint64_t body_sent;     /* response body bytes handed to the writer */
    crest_str_t log_method; /* with an access log, for a request answered later: copies (arena) */
    crest_str_t log_path;
    crest_str_t log_ua;
    const char *ctype;             /* a Content-Type set with crest_res_header (arena), or NULL */
    struct crest__local_s *locals; /* crest_req_set's values (arena) */
    crest_req_t *pend_next;        /* on the loop's list of requests answered later (pending) */
    crest_req_t *pend_prev;
    uint16_t mw_next;             /* the chain: the next middleware to run (app->mws index) */
    uint16_t route_skip;          /* the chain: routes that passed the request on (CREST_NEXT) */
    uint32_t route_slot;          /* the matched route's slot (crest__router_slot), 0 when none */
    uint8_t rid_len;              /* the request id (crest_req_id), 0 when none */
    char rid[CREST__RID_MAX + 1]; /* NUL-terminated (a header value) */
    crest__addr_t peer;           /* the connection's peer, kept after the client has gone */
    crest__addr_t client;         /* crest_req_client()'s answer, once asked (client_known) */
    crest_buf_t res_headers;      /* extra response header lines, "Name: value\r\n" each */
    void *arena;                  /* crest_req_alloc blocks */
    struct crest__cleanup_s *cleanups; /* crest__req_on_free's, run by crest__req_free */
    crest_abort_cb abort_cb;
    void *abort_arg;
    crest_drain_cb drain_cb; /* armed by crest_res_on_drain: runs once, then disarms */
    void *drain_arg;
    size_t drain_mark;               /* drain_cb runs once the queued output is at or below this */
    const crest_compress_opts_t *gz; /* set by crest_app_compress's middleware, or NULL */
    void *gz_state; /* compress.c's state of a body being compressed; owner: the request */
    struct crest__body_s *body_stream; /* a streamed body (crest_app_route_stream), or NULL */
    crest_req_t *next_free;
    int method;
    int status;
    unsigned version_minor : 1;
    unsigned keep_alive : 1;
    unsigned head_only : 1; /* HEAD: headers only */
    unsigned started : 1;   /* a streamed response is under way */
    unsigned chunked : 1;   /* the streamed response uses chunked framing (HTTP/1.1) */
    unsigned aborted : 1;
    unsigned client_known : 1; /* `client` is set */
    unsigned gz_accept : 1;    /* the client accepts gzip (with gz set) */
    unsigned chain : 2;        /* CREST__CHAIN_*: where the request is in the chain */
    unsigned in_head : 1;      /* the head hooks run: crest_res_header still adds headers */
    unsigned in_error : 1;     /* the error handler was called for it */
    unsigned pending : 1;      /* on the loop's pending list */
    unsigned reported : 1;     /* reported as not answered (unanswered_ms) */
    unsigned freed : 1;        /* finished and recycled: a second finishing call is refused */
};

enum {
    CREST__CHAIN_MW = 0,    /* in the middleware (or not dispatched: a rejection) */
    CREST__CHAIN_WAIT = 1,  /* a middleware took it (returned 0): crest_req_next resumes */
    CREST__CHAIN_ROUTE = 2, /* routed: the handlers run, or ran */
};

/* Something of a loop that must be ended when the server stops, while its connection stays (an
 * event stream over HTTP/2): cb runs once when the loop begins to drain. */
typedef struct crest__drain_node_s {
    struct crest__drain_node_s *next, *prev;
    void (*cb)(struct crest__drain_node_s *node);
} crest__drain_node_t;

/* Duration histograms: the OpenTelemetry http.server.request.duration bounds (seconds), then
 * +Inf, then the sum (ns). Counts are per bucket, made cumulative when read. */
#define CREST__HIST_BOUNDS 14
#define CREST__HIST_SLOTS (CREST__HIST_BOUNDS + 2)
extern const uint64_t crest__hist_bounds_ns[CREST__HIST_BOUNDS];
/* Add one observation of `ns` to the histogram at h (CREST__HIST_SLOTS counters). Single writer. */
void crest__hist_add(_Atomic uint64_t *h, uint64_t ns);
/* Append the lines of the histogram at mod[idx] summed over the loops: name_bucket{labels,le=..},
 * name_sum, name_count. labels: `a="b"` or "". Any thread. */
void crest__mod_hist_write(const crest_app_t *app, crest_buf_t *out, const char *name,
                           const char *labels, int idx);
/* The counter mod[idx] summed over the loops. Any thread. */
uint64_t crest__mod_sum(const crest_app_t *app, int idx);

/* The per-loop counters of the modules above http (see crest__http_loop_t.mod). */
enum {
    CREST__MOD_WS_IN,  /* WebSocket messages received */
    CREST__MOD_WS_OUT, /* WebSocket messages queued to send */
    CREST__MOD_WORK_JOBS,
    CREST__MOD_WORK_HIST, /* job time, submit to done: a histogram */
    CREST__MOD_DB_HIST = CREST__MOD_WORK_HIST + CREST__HIST_SLOTS, /* query time */
    CREST__MOD_DB_LISTED = CREST__MOD_DB_HIST + CREST__HIST_SLOTS, /* db's source is listed */
    CREST__MOD_DB_BUSY,  /* batches run and not finished yet: a gauge */
    CREST__MOD_DB_CONNS, /* PostgreSQL connections of the loop threads: a gauge */
    CREST__MOD_DB_READY, /* of those, connected and ready for batches: a gauge */
    CREST__MOD_COUNT
};

/* A module's metrics (ws/, work/, db/, pubsub/): write appends its lines to out, from any thread.
 * Registered on the app so that crest_app_metrics() reaches modules http must not call. */
typedef void (*crest__metrics_cb)(const crest_app_t *app, void *arg, crest_buf_t *out);
/* Register (once per cb and arg; again is a no-op) or remove. Any thread. 0 or CREST_ENOMEM. */
int crest__metrics_add(crest_app_t *app, crest__metrics_cb cb, void *arg);
void crest__metrics_remove(crest_app_t *app, crest__metrics_cb cb, void *arg);

/* Each loop's HTTP state (loop->upper). Owner: its loop thread; the counters are written by it
 * only and read by any (relaxed atomics), so they exist before any loop thread starts. */
typedef struct {
    crest__http_head_t head; /* the request being parsed and dispatched */
    crest_req_t *free_reqs;  /* recycled request objects */
    time_t date_sec;
    char date_line[128]; /* "Server: ...\r\nDate: ...\r\n" */
    size_t date_line_len;
    crest__drain_node_t *to_drain;  /* ended when the loop drains */
    struct crest__fcache_s *fcache; /* open files of static mounts (static.c), or NULL */
    _Atomic uint64_t status_counts[600];
    _Atomic uint64_t rejected;
    struct crest__obs_loop_s *obs; /* observation: the access log's block, the lag timer */
    crest_req_t *dispatching;      /* the request whose handlers run now (its head is valid) */
    struct crest__frame_s *frames; /* chains running now, innermost first (app.c) */
    crest_req_t *pend_head;        /* requests answered later, oldest first (unanswered_ms) */
    crest_req_t *pend_tail;
    uv_timer_t pend_timer; /* checks the pending list while it is not empty */
    int pend_timer_on;
    int pend_timer_ready; /* set up by the loop's start (a fuzz driver's loop has none) */
    /* Request durations (http/observe.c): per (route slot, method), CREST__HIST_SLOTS counters
     * each (the buckets, then the sum in ns), made before the loop starts. */
    _Atomic uint64_t *hist;
    /* Counters of the modules above http (ws/, work/, db/), stored here because this state lives
     * as long as the app and exists per loop before any loop starts; http keeps them and knows
     * nothing of their meaning: each module writes its own metrics (crest__metrics_src_t). */
    _Atomic uint64_t mod[CREST__MOD_COUNT];
} crest__http_loop_t;

static inline crest__http_loop_t *crest__http_loop(const crest_loop_t *loop) {
    return loop->upper;
}

/* A trusted proxy (crest_app_trust_proxy): an address block, IPv4 as IPv4-mapped IPv6. */
typedef struct {
    uint8_t ip[16]; /* host bits cleared */
    uint8_t bits;   /* prefix length over the 16 bytes (an IPv4 /8 is 104) */
} crest__cidr_t;

/* Memory the app frees with itself (the state of middleware crest ships). */
typedef struct crest__owned_s {
    struct crest__owned_s *next;
    void *ptr;
    void (*free)(void *ptr);
} crest__owned_t;

/* The app: options, routes and middleware over the runtime that runs them. */
typedef struct crest__mw_s {
    char *prefix;
    size_t len;
    crest_handler_cb cb;
    void *data;
    /* Middleware of crest's that only adds headers (CORS, request ids, security headers): for a
     * response made before the chain reached it (a rejection, an earlier middleware's answer) it
     * runs from the head hooks, with req->in_head set; it must not answer then. */
    int every;
} crest__mw_t;

typedef struct {
    crest_head_cb head; /* one of the two */
    crest_done_cb done;
    void *data;
} crest__hook_t;

struct crest_app_s {
    void *data;
    crest_app_opts_t opts;
    char *host;
    char *server_name;
    crest__router_t *router;
    crest__mw_t *mws;
    size_t nmws;
    crest_handler_cb not_found; /* NULL: the error handler's 404 */
    void *not_found_data;
    crest_error_cb on_error; /* NULL: plain text */
    void *on_error_data;
    crest__hook_t *heads; /* crest_app_on_head */
    size_t nheads;
    crest__hook_t *dones; /* crest_app_on_done */
    size_t ndones;
    /* crest__res_head calls crest__http_head_work for a request whose chain stopped before
     * mws[every_end - 1] (the last `every` middleware), or for every request with head hooks. */
    size_t every_end;
    crest__http_loop_t *hloops; /* one per loop thread, made before they start */
    char *tls_cert;             /* copies of the option strings */
    char *tls_key;
    struct crest__static_mount_s *mounts; /* crest_app_static folders */
    size_t nmounts;
    struct crest__obs_s *obs; /* request ids, the access log, metrics sources (http/observe.c) */
    /* "Strict-Transport-Security: max-age=N[; includeSubDomains]\r\n", or empty: from
     * opts.hsts_max_age, or crest_app_security() */
    char hsts[96];
    size_t hsts_len;
    crest__cidr_t *proxies; /* trusted proxies (crest_app_trust_proxy) */
    size_t nproxies;
    crest__owned_t *owned;    /* freed with the app */
    int setup_err;            /* the first route or middleware that could not be added */
    char setup_what[192];     /* ... named, for crest_app_listen's log line */
    struct crest__api_s *api; /* crest_app_route_doc's table (src/json/openapi.c), or NULL */
    size_t stream_routes;     /* routes that stream their body: HTTP/1.1 and 2 look them up */
    crest__rt_t rt;
};

static inline crest_app_t *crest__app_of(const crest_loop_t *loop) {
    return CREST__CONTAINER_OF(loop->rt, crest_app_t, rt);
}

/* app.c */
/* Run a parsed request (req->head, req->body) through the middleware and the router. *slot is
 * where its protocol keeps the request while it is open: the chain stops once a step answered
 * (then *slot no longer points to req). */
void crest__http_dispatch(crest_req_t *req, crest_req_t *const *slot);
/* Answer req with an error status through the app's error handler (plain text without one, or
 * when it passes). Returns as a finishing call. */
int crest__http_error(crest_req_t *req, int status);
/* crest_app_use for middleware that only adds headers and must reach every response (see
 * crest__mw_t.every). */
int crest__app_use_every(crest_app_t *app, const char *prefix, crest_handler_cb mw, void *data);
/* Just before req's head goes out: the `every` middleware the chain did not reach, then the head
 * hooks (crest__res_head calls it when there is something to do: see every_end). */
void crest__http_head_work(crest_req_t *req, int status);
/* req is finished: the done hooks (crest__req_free calls it when app->ndones). */
void crest__http_done_work(crest_req_t *req);
/* List req as answered later / take it off once its head went out or it ended. */
void crest__http_pend(crest_req_t *req);
void crest__http_unpend(crest_req_t *req);
/* req ends: a chain running it (on this loop's stack) stops touching it. */
void crest__http_frame_end(crest_req_t *req);
/* The innermost chain's frame (app.c); its layout is app.c's but for these two first fields. */
typedef struct crest__frame_s {
    crest_req_t *req;
    int finished;
    struct crest__frame_s *up;
} crest__frame_t;
/* Run app code that may finish req inside a frame: crest__frame_pop says whether it did (then req
 * must not be touched). */
static inline void crest__frame_push(crest_req_t *req, crest__frame_t *fr) {
    crest__http_loop_t *hl = crest__http_loop(req->loop);
    fr->req = req;
    fr->finished = 0;
    fr->up = hl->frames;
    hl->frames = fr;
}
static inline int crest__frame_pop(crest_loop_t *loop, crest__frame_t *fr) {
    crest__http_loop(loop)->frames = fr->up;
    return fr->finished;
}
/* Keep the first failure of a call that builds the app (rc nonzero, not CREST_EBUSY), named by
 * `what a b`: crest_app_listen refuses to start with it. Returns rc. */
int crest__app_setup_error(crest_app_t *app, int rc, const char *what, const char *a,
                           const char *b);
/* The app frees ptr with free_fn(ptr) when it is freed; on failure (CREST_ENOMEM) it frees it at
 * once. */
int crest__app_own(crest_app_t *app, void *ptr, void (*free_fn)(void *));
/* Refresh the loop's Date line (once a second at most). */
void crest__http_date_refresh(crest_loop_t *loop);
/* Add n to / take it off the loop's list of things to end at shutdown. */
void crest__http_drain_add(crest_loop_t *loop, crest__drain_node_t *n);
void crest__http_drain_remove(crest_loop_t *loop, crest__drain_node_t *n);

/* h1.c: HTTP/1.1, the protocol every connection starts with */
extern const crest__proto_t crest__h1_proto;
extern const crest__writer_t crest__h1_writer;
/* A connection's HTTP/1.1 state, behind its crest__conn_t (crest__conn_extra). */
typedef struct {
    struct crest__h1_rx_s *rx; /* a request that has not fully arrived */
    crest_req_t *req;          /* the request being answered later, if any */
    uint32_t requests;         /* served on this connection */
} crest__h1_t;
void crest__h1_open(crest__conn_t *c);
/* Hand req's connection over to `proto` after the handler queued its 101 response with
 * crest__conn_out. The request is finished (freed); bytes the client sent after it reach
 * proto->on_data at once. Only during the handler call of req. Returns 0, CREST_EINVAL when the
 * request is not its connection's current one or a response was started, CREST_ECANCELED when
 * the client is gone. */
int crest__conn_takeover(crest_req_t *req, const crest__proto_t *proto, void *proto_data);
/* Move req's connection to loop `to` (another thread) and serve req there as if it had arrived
 * there: the request is finished here (freed, not answered) and made again on `to` from its head
 * and body, followed by what the client pipelined after it; the client sees nothing. For a
 * module whose state lives on one thread (src/sio's sessions). Only during the handler call of
 * req; return 0 from the handler afterwards. Returns 0, CREST_ENOTSUP (HTTP/2, whose connection
 * carries other streams; the test client's memory connections; a streamed body of which some
 * was taken already), CREST_EINVAL
 * (not during the handler, or a response was started), CREST_ECANCELED, CREST_ENOMEM. The move
 * itself may still fail later (the socket is closed then, as a lost connection). */
int crest__req_move(crest_req_t *req, crest_loop_t *to);
/* Answer a request the protocol rejected (status 400, 408, 413, ...); the connection closes
 * afterwards. */
void crest__send_error(crest__conn_t *c, int status, int version_minor);

/* h2.c: HTTP/2 (nghttp2) */
/* Switch connection c to HTTP/2: its protocol becomes HTTP/2 and its state (c->proto_data) a new
 * session, freed when the connection closes. The client connection preface and what follows it
 * arrive through c->proto->on_data. Called by HTTP/1.1 when a cleartext connection starts with
 * the preface (prior knowledge) and after a TLS handshake that agreed on "h2" by ALPN. Closes c
 * when memory runs out. On c's loop thread. */
void crest__h2_open(crest__conn_t *c);

/* At shutdown an idle connection is kept this long before it closes, so that a request the client
 * sent just before (it could not know) is still answered, with its end announced. */
#define CREST__DRAIN_GRACE_MS 250

/* The client is gone (its connection or stream closed): nothing more can reach it. */
static inline int crest__req_gone(const crest_req_t *req) {
    return req->conn == NULL || (req->conn->flags & CONN_CLOSING);
}

/* Write v in decimal so that it ends at `end`; returns where it begins. */
static inline char *crest__fmt_u64(char *end, uint64_t v) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

/* static.c */
typedef struct crest__static_mount_s crest__static_mount_t;
/* Serve a GET or HEAD no route matched from the mount that covers its path: 0 when answered,
 * CREST_NEXT when no mount covers it or there is no such file (the not-found handler answers),
 * or a negative error. During the handler call only. */
int crest__static_serve(crest_req_t *req);
/* Nonzero when a static mount has a file at path (it answers GET and HEAD there). On the
 * loop's thread. */
int crest__static_covers(crest_loop_t *loop, crest_str_t path);
void crest__static_free(crest_app_t *app);
void crest__static_cache_free(struct crest__fcache_s *fc);

/* observe.c */
/* With the app: the list of metrics sources. 0 or CREST_ENOMEM. */
int crest__obs_new(crest_app_t *app);
/* The app starts running (after crest_app_listen, before the loop threads): the histograms and
 * the access log's writer thread. 0 or CREST_ENOMEM. */
int crest__obs_run_start(crest_app_t *app);
/* Every loop thread has ended: what is queued for the access log is written, its writer ends. */
void crest__obs_run_end(crest_app_t *app);
void crest__obs_free(crest_app_t *app);
/* On the loop's thread, before it runs: the lag timer. */
void crest__obs_loop_start(crest_loop_t *loop);
/* A connection was accepted: the loop-lag timer runs again if it had stopped for idleness. */
void crest__obs_conn_open(crest_loop_t *loop);
/* A request is about to be answered later: keep what the access log needs of its head. */
void crest__obs_keep(crest_req_t *req);
/* A request ends (crest__req_free): its duration, and its access log line. */
void crest__obs_finish(crest_req_t *req);
/* client.c */
/* Parse an IP address as it appears in a header: "192.0.2.1", "2001:db8::1", either with a port
 * ("192.0.2.1:80", "[2001:db8::1]:80") or IPv6 in brackets. An IPv4-mapped IPv6 address counts
 * as IPv4. Returns 0 or CREST_EINVAL. No libuv: unit-tested on plain memory. */
int crest__addr_parse(const char *s, size_t len, crest__addr_t *out);
/* Nonzero when a lies in one of the n blocks. */
int crest__cidr_match(const crest__cidr_t *blocks, size_t n, const crest__addr_t *a);
/* The client behind the trusted proxies, from the peer's address and the request's headers
 * (Forwarded for=, else X-Forwarded-For): the right-most address that is not trusted. */
void crest__client_pick(const crest__cidr_t *blocks, size_t n, const crest__addr_t *peer,
                        const crest_header_t *headers, size_t nheaders, crest__addr_t *out);
/* crest_req_client() as an address, kept with the request once found. */
const crest__addr_t *crest__req_client_addr(crest_req_t *req);

/* response.c */
/* The codings (CREST__ENC_* of cond.h) the request's Accept-Encoding lines accept together: for
 * compression and static files' precompressed siblings alike. During the handler call. */
unsigned crest__req_accept_encoding(const crest_req_t *req);
/* Append ready-made header lines ("Name: value\r\n" each, checked by the caller once) to the
 * response: one copy, no per-byte validation. Returns as crest_res_header(). */
int crest__res_header_block(crest_req_t *req, const char *text, size_t len);
crest_req_t *crest__req_new(crest_loop_t *loop, crest__conn_t *c, const crest__writer_t *w);
void crest__req_free(crest_req_t *req);
/* Run fn(arg) when req is freed (before its request memory goes), last registered first: for
 * what a module keeps per request only when asked (src/json/: the parsed body). 0 or
 * CREST_ENOMEM (fn not registered). The arg registered with fn, or NULL: find it again. */
int crest__req_on_free(crest_req_t *req, void (*fn)(void *), void *arg);
void *crest__req_cleanup_find(const crest_req_t *req, void (*fn)(void *));
/* error.c: crest_res_error() with the list of faults of a validation: "field" (the first's),
 * then "errors":[{"field","message"}] for the n given. Finishing call. */
int crest__res_error_list(crest_req_t *req, int status, const char *message,
                          const char *const *fields, const char *const *messages, size_t n);
/* Percent-decode a path segment (a route parameter) into out (at least in.len + 1 bytes;
 * NUL-terminated): %XX is the byte, '+' stays '+', %2F is '/'. Returns the length, or -1 for a
 * malformed escape ("%", "%4", "%zz") or %00. Pure. */
int crest__path_decode(crest_str_t in, char *out);
/* A route parameter as sent (crest_req_param() decodes it). */
crest_str_t crest__req_param_raw(const crest_req_t *req, const char *name);
/* Answer a request its protocol rejected (400, 408, 413, 431, 503...) before any handler ran:
 * counted as rejected, 503 with Retry-After (a limit of ours; the client may try again). */
void crest__res_reject(crest_req_t *req, int status);
const char *crest__status_line(int status, size_t *len);
/* A final status went out: count it for the statistics. */
void crest__http_count(crest_loop_t *loop, int status);
/* Queue req's response head (status, content type, the headers added with crest_res_header) and
 * count it, for a protocol about to take the connection over: body_len is
 * CREST__BODY_UNTIL_CLOSE for a 101 or a body that runs until the connection closes. */
#define CREST__BODY_UNTIL_CLOSE (-2)
int crest__res_head(crest_req_t *req, int status, const char *ctype, int64_t body_len);

/* body.c: a request body streamed to its handler (crest_app_route_stream). The protocol reads and
 * unframes the body and calls these; body.c keeps the consumer's side (its callback, the route's
 * limit, the pause, the answers to errors). Lives in the request's arena. */
typedef struct crest__body_s {
    crest_body_cb cb; /* NULL until crest_req_body_stream */
    void *arg;
    uint64_t limit;      /* the route's max_body */
    uint64_t received;   /* body bytes delivered */
    uint64_t rate_mark;  /* `received` when the current deadline period began (min_body_rate) */
    uint64_t rate_start; /* loop time (ms) it began */
    /* HTTP/1.1's framing of the body (HTTP/2 frames it itself) */
    uint64_t remaining; /* Content-Length: bytes still to come */
    crest__http_chunked_t chunked;
    uint8_t framing;     /* CREST__BODY_LENGTH or CREST__BODY_CHUNKED */
    unsigned paused : 1; /* crest_req_body_pause */
    unsigned ended : 1;  /* the protocol has read the whole body */
    unsigned over : 1;   /* the end or an error was delivered, or the app stopped: no more calls */
    unsigned continued : 1; /* HTTP/1.1: 100 Continue was sent */
} crest__body_t;
/* The app's first route for this method and path streams its body: its limit, else 0. */
uint64_t crest__app_body_streams(const crest_app_t *app, int method_id, crest_str_t path);
/* Give req a streamed body with this limit (in its arena). NULL when out of memory. */
crest__body_t *crest__body_new(crest_req_t *req, uint64_t limit);
/* The consumer takes data now: subscribed, not paused, not over. */
static inline int crest__body_wants(const crest_req_t *req) {
    const crest__body_t *b = req->body_stream;
    return b != NULL && b->cb != NULL && !b->paused && !b->over;
}
/* The body is still being read from the client: not all arrived and nobody gave up on it. */
static inline int crest__body_open(const crest_req_t *req) {
    const crest__body_t *b = req->body_stream;
    return b != NULL && !b->ended && !b->over;
}
/* The callback still waits for its last call (the end or an error), delivered or not. */
static inline int crest__body_owed(const crest_req_t *req) {
    const crest__body_t *b = req->body_stream;
    return b != NULL && b->cb != NULL && !b->over;
}
/* Deliver the next decoded bytes (only while crest__body_wants). Returns 0 to go on; nonzero when
 * no more is wanted: the app stopped, the route's limit was passed (handled: the error was
 * delivered and answered), or the request ended meanwhile: the protocol then checks its own
 * slot before it touches req again. */
int crest__body_data(crest_req_t *req, const void *data, size_t len);
/* The body is complete (err 0; only once all data was delivered) or failed (a negative error):
 * the callback's last call, then for an error crest's answer when the request is still
 * unanswered. Returns 1 when req ended meanwhile (do not touch it), else 0. */
int crest__body_end(crest_req_t *req, int err);
/* Restart the measure of min_body_rate (the deadline was re-armed at `now`). */
static inline void crest__body_rate_mark(crest__body_t *b, uint64_t now) {
    b->rate_mark = b->received;
    b->rate_start = now;
}

/* upload.c: multipart bodies (crest_req_parts) */
typedef struct crest__spill_s crest__spill_t;

/* compress.c: gzip of responses whose request went through crest_app_compress (req->gz) */
/* A complete response: CREST_NEXT when it goes out as it is (the calls may have added Vary),
 * else it was sent compressed (release called, request finished) with this result. */
int crest__compress_full(crest_req_t *req, int status, const char *ctype, const void *body,
                         size_t len, int borrowed, crest_release_cb release, void *arg);
/* A streamed response is starting: sets req->gz_state (and the headers) when it is compressed. */
void crest__compress_start(crest_req_t *req, int status, const char *ctype);
/* With req->gz_state: queue a piece compressed and flushed, and the end of the stream. */
int crest__compress_write(crest_req_t *req, const void *data, size_t len);
int crest__compress_end(crest_req_t *req);
/* Free req->gz_state, if any (crest__req_free does). */
void crest__compress_free(crest_req_t *req);

#endif
