/* The application: options, routes, middleware, running and stopping, loop threads.
 *
 * Build an app on one thread (routes and middleware are fixed once crest_app_run() starts), then
 * crest_app_run() starts N loop threads, each with its own event loop and its own listening
 * socket on the same port (SO_REUSEPORT), or sharing the sockets a service manager passed (see
 * crest_app_opts_t.systemd), and blocks until the app stops. */
#ifndef CREST_APP_H
#define CREST_APP_H

#include <stddef.h>
#include <stdint.h>

#include "crest/export.h"
#include "crest/http.h"

typedef struct crest_app_s crest_app_t;

typedef enum { CREST_LOG_ERROR, CREST_LOG_WARN, CREST_LOG_INFO, CREST_LOG_DEBUG } crest_log_level_t;

/* The library never prints; it hands log lines to this hook (any thread may call it, so it must
 * be thread-safe). `msg` is NUL-terminated and has no trailing newline. */
typedef void (*crest_log_cb)(void *data, crest_log_level_t level, const char *msg);

typedef struct {
    const char *host;              /* address to listen on; default "127.0.0.1" */
    int port;                      /* default 8080; 0 picks a free port (see crest_app_port) */
    int threads;                   /* loop threads; 0 (default) means the number of CPUs */
    int backlog;                   /* listen backlog; default 1024 */
    size_t max_request_line;       /* default 8 KiB; longer -> 414 */
    size_t max_header_bytes;       /* whole request head; default 16 KiB; larger -> 431 */
    size_t max_headers;            /* header fields; default 100, at most 128; more -> 431 */
    size_t max_body;               /* request body; default 1 MiB; larger -> 413 */
    size_t max_output;             /* output queued for a connection (the kernel not taking it)
                                      past which crest reads and parses no more of its requests
                                      until it drains; default 1 MiB */
    size_t max_connections;        /* open client connections, all loops together; past it
                                      accepting pauses. 0 (default): the open-file limit less
                                      an eighth of it (at least 32) for databases and files */
    size_t max_buffer_memory;      /* ceiling on bytes buffered for clients process-wide (request
                                      bodies, unsent output, messages between threads); past it
                                      requests get 503. 0 (default): a quarter of the memory */
    unsigned batch_requests;       /* requests answered per read batch of one connection before
                                      the loop serves others; default 64 */
    uint32_t batch_us;             /* time budget of one such batch; default 2000 µs */
    uint32_t header_timeout_ms;    /* from the first byte of a request to its full head; 10 s */
    uint32_t body_timeout_ms;      /* time for a request body to arrive, extended while it keeps
                                      coming at min_body_rate or faster; default 30 s */
    size_t min_body_rate;          /* bytes per second; default 16 KiB */
    uint32_t write_timeout_ms;     /* a client that takes none of our output for this long is
                                      closed (progress re-arms it); default 30 s */
    uint32_t keepalive_timeout_ms; /* an idle keep-alive connection; default 5 s */
    uint32_t shutdown_timeout_ms;  /* grace for requests in flight at shutdown; default 10 s */
    const char *server_name;       /* the Server header; default "crest" */
    crest_log_cb log;              /* default: none (silent) */
    void *log_data;
    int handle_signals; /* nonzero (default): SIGINT and SIGTERM stop the app gracefully */
    int tune_malloc;    /* nonzero (default): with glibc, fix the mmap and trim thresholds
                           (mallopt) so that memory freed after a burst goes back to the system */
    /* Nonzero (default): follow the service manager's conventions when its variables are set
     * (systemd, or any manager speaking the same protocol). With LISTEN_FDS and LISTEN_PID naming
     * this process, crest_app_listen() serves on the passed sockets (descriptors 3 and up)
     * instead of binding host and port; crest_app_port() reports the first one's port. With
     * NOTIFY_SOCKET, crest_app_run() sends READY=1 once every loop thread serves, STOPPING=1
     * when a stop begins, and WATCHDOG=1 every half WATCHDOG_USEC while every loop thread
     * answers. crest_app_listen() reads these variables and removes them from the environment,
     * so that programs the application starts do not inherit them. */
    int systemd;
    /* HTTPS: the certificate chain and its private key, PEM files (paths are copied). With both
     * set the listeners speak TLS 1.2 and 1.3 only, with forward-secret suites; ALPN picks the
     * protocol. With handle_signals, SIGHUP loads the files again: new handshakes get the new
     * pair, a pair that does not load is refused with a log line and the old one kept. */
    const char *tls_cert;
    const char *tls_key;
    uint32_t hsts_max_age; /* seconds; nonzero: Strict-Transport-Security on HTTPS answers */
    /* A request a handler took charge of (returned 0) and nobody finished for this long is
     * reported once with a warning naming its method, path and route (a forgotten answer); the
     * request stays open. Default 30000 ms; 0: never. */
    uint32_t unanswered_ms;
} crest_app_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_app_opts_default(crest_app_opts_t *opts);
/* Take the address to listen on from the environment, as hosting platforms hand it over: HOST
 * (kept as a pointer into the environment) and PORT, when set and not empty. Returns 0, or
 * CREST_EINVAL for a PORT that is not a number from 0 to 65535 (opts->port is then unchanged). */
CREST_API int crest_app_opts_env(crest_app_opts_t *opts);
/* A log hook for opts.log that writes "LEVEL: message" lines to standard error (one write each,
 * so that the lines of several threads never mix). The library itself never prints: an app that
 * wants these lines sets this hook. */
CREST_API void crest_log_stderr(void *data, crest_log_level_t level, const char *msg);

/* A new app with a copy of `opts` (NULL for the defaults; strings are copied). NULL only when
 * memory ran out. Free it with crest_app_free() after crest_app_run() returns. */
CREST_API crest_app_t *crest_app_new(const crest_app_opts_t *opts);
/* Free an app that is not running. crest_app_free(NULL) does nothing. */
CREST_API void crest_app_free(crest_app_t *app);

/* The first field of crest_app_t is free for the user: crest_app_data(app) returns its address. */
CREST_API void **crest_app_data(crest_app_t *app);

/* Add a route. `method` is a method token ("GET", "POST", ...; a route for GET also answers
 * HEAD without a body). `pattern` is a path of segments: a literal ("users"), a parameter
 * (":id", one whole segment) or, as the last segment, "*" (the rest of the path, maybe empty).
 * The same path with other methods shares the node; a path with no handler for the request's
 * method gets 405 with Allow. Returns 0, CREST_EEXIST for a duplicate method and pattern,
 * CREST_EINVAL for a malformed pattern (or conflicting parameter names at one position),
 * CREST_EBUSY once running, CREST_ENOMEM. `data` is passed to the handler. */
CREST_API int crest_app_route(crest_app_t *app, const char *method, const char *pattern,
                              crest_handler_cb handler, void *data);

/* Add a route (as crest_app_route()) that streams its request body: its chain (middleware, then
 * the handler) runs as soon as the head is read, and the body comes through
 * crest_req_body_stream() (crest/http.h), up to max_body bytes (0: the app's max_body), however
 * large the app's own limit is: a Content-Length above it gets 413 before the handler runs, a
 * chunked body that outgrows it ends with CREST_E2BIG. Which route streams is decided by the
 * first route that matches the request's method and path. Same returns as crest_app_route(). */
CREST_API int crest_app_route_stream(crest_app_t *app, const char *method, const char *pattern,
                                     crest_handler_cb handler, void *data, uint64_t max_body);

/* Add middleware for every request whose path is `prefix` or lies below it ("/api" matches
 * "/api" and "/api/x", not "/apix"; "/" or NULL matches all). Middleware runs in the order added,
 * before routing; it returns CREST_NEXT to pass on, or 0 when it has taken the request: it has
 * answered (short-circuit), will answer later, or will resume the chain later with
 * crest_req_next() (an auth check that awaits a database). Values for later middleware and the
 * handler go through crest_req_set(). Same errors as crest_app_route(), and CREST_E2BIG past
 * 65535 middleware. */
CREST_API int crest_app_use(crest_app_t *app, const char *prefix, crest_handler_cb mw, void *data);

/* A liveness route's handler: 200 "ok", and 503 "stopping" (with Retry-After) once a graceful
 * stop began on this loop thread, so that a load balancer polling it takes the instance out of
 * rotation before it is gone. crest_app_route(app, "GET", "/healthz", crest_healthz, NULL). */
CREST_API int crest_healthz(crest_req_t *req, void *data);

/* Handler for requests no route (and no static mount) matches; it may return CREST_NEXT to
 * leave them to the error handler's 404. NULL (the default): the error handler's 404. */
CREST_API void crest_app_not_found(crest_app_t *app, crest_handler_cb handler, void *data);

/* ---- the chain around every response ----
 *
 * A request goes through: the middleware (crest_app_use, in the order added; a middleware may
 * answer later and resume the chain with crest_req_next()), then the route (a route returning
 * CREST_NEXT falls through to the next route whose pattern matches, then to the static mounts
 * and the not-found handler). Errors crest answers itself (404, 405 with Allow, a handler's
 * failure, and the requests the protocol rejects: 400, 408, 413, 414, 431, 501, 505) go to the
 * error handler. Every response, whoever made it, passes the head hooks just before its head is
 * sent, and the done hooks once it is finished. An OPTIONS request to a path that has routes but
 * no OPTIONS route is answered 204 with Allow. */

/* The error handler: answer `req` with `status` (crest_res_error() or any finishing call) and
 * return 0, or return CREST_NEXT for crest's plain-text answer. For 405 the Allow header is
 * already set. A request the protocol rejected may have no path or headers (crest_req_path()
 * empty): the head was not read. Runs on the request's loop thread. */
typedef int (*crest_error_cb)(crest_req_t *req, int status, void *data);
/* Set the app's error handler (NULL: plain text, the default). Before crest_app_run(). */
CREST_API void crest_app_on_error(crest_app_t *app, crest_error_cb cb, void *data);
/* An error handler that answers every error with crest_res_error()'s JSON body. */
CREST_API int crest_error_json(crest_req_t *req, int status, void *data);

/* A head hook: called just before a response's head goes out (crest_res_send and friends,
 * crest_res_start, errors and rejections alike), with the status about to be sent; it may add
 * headers with crest_res_header() and must not finish the request. Runs in the order added. */
typedef void (*crest_head_cb)(crest_req_t *req, int status, void *data);
/* Add a head hook. Before crest_app_run(); CREST_EBUSY once running, CREST_ENOMEM. */
CREST_API int crest_app_on_head(crest_app_t *app, crest_head_cb cb, void *data);

typedef struct {
    int status;           /* the status sent; 0 when the client left before an answer */
    uint64_t body_bytes;  /* response body bytes handed to the connection */
    uint64_t duration_ns; /* from the request's arrival to its finishing call */
} crest_res_info_t;
/* A done hook: called once the response is finished (sent, or given up because the client
 * left), before the request is freed. The request's head (path, headers) is no longer there;
 * crest_req_route(), crest_req_id(), crest_req_get() and crest_req_client() still answer. It
 * must not answer. Runs in the order added, on the request's loop thread. */
typedef void (*crest_done_cb)(crest_req_t *req, const crest_res_info_t *info, void *data);
/* Add a done hook. Before crest_app_run(); CREST_EBUSY once running, CREST_ENOMEM. */
CREST_API int crest_app_on_done(crest_app_t *app, crest_done_cb cb, void *data);

/* Bind the listening sockets now (crest_app_run() does it if not done), so that errors such as
 * CREST_EADDRINUSE come back before threads start and crest_app_port() knows the port. A call
 * that built the app and failed (a route, middleware or static mount that could not be added,
 * whose return value the code may not have checked) is returned here instead, and logged with
 * what it was: an app never runs without a part of it. With
 * handle_signals, SIGINT and SIGTERM are blocked in the calling thread from here (and so in every
 * thread crest starts) until crest_app_run() returns, and a thread of crest's takes them with
 * sigwait(): a signal that arrives at any moment stops the app gracefully instead of killing the
 * process. Threads the application started earlier keep their own masks: block the two signals
 * there too. Returns 0 or a negative error. */
CREST_API int crest_app_listen(crest_app_t *app);
/* The bound port (useful with port 0); 0 before crest_app_listen(). */
CREST_API int crest_app_port(const crest_app_t *app);
/* The number of loop threads; 0 before crest_app_listen(). */
CREST_API int crest_app_threads(const crest_app_t *app);

/* crest_app_listen(), a log line saying where ("listening on http://127.0.0.1:8080 (2 loop
 * threads)", at CREST_LOG_INFO), then crest_app_run(); an error is logged too. Returns as
 * crest_app_run(). For a main() that needs nothing between the three. */
CREST_API int crest_app_serve(crest_app_t *app);

/* Start the loop threads and block until the app stops (a signal, or crest_app_stop()), in-flight
 * requests finish or shutdown_timeout passes, and every thread has exited. Returns 0 or a
 * negative error from start-up. Call once per app. */
CREST_API int crest_app_run(crest_app_t *app);

/* Ask a running app to stop gracefully: stop accepting, let requests in flight finish (at most
 * shutdown_timeout_ms), close idle connections. Any thread; also safe from a signal handler. */
CREST_API void crest_app_stop(crest_app_t *app);

/* ---- loop threads ---- */

typedef void (*crest_loop_cb)(crest_loop_t *loop, void *arg);

/* Run cb(loop, arg) on `loop`'s thread soon. Any thread. Returns 0, CREST_ENOMEM, or
 * CREST_ECANCELED when the loop has already stopped (cb will not run). cb never runs before this
 * returns. */
CREST_API int crest_loop_post(crest_loop_t *loop, crest_loop_cb cb, void *arg);
/* Run cb(loop, arg) on `loop`'s thread after `ms` milliseconds (a libuv timer of its own, so the
 * delay is precise; connections' timeouts use the loop's timer wheel instead). Only from `loop`'s
 * own thread; cb never runs before this returns. When a stop outlasts the shutdown timeout, pending
 * callbacks run at once (early), so that they can release what they hold; requests they answer
 * are aborted by then. Returns 0 or CREST_ENOMEM. */
CREST_API int crest_loop_after(crest_loop_t *loop, uint64_t ms, crest_loop_cb cb, void *arg);
/* A cancellable timer: cb(loop, arg) once, on `loop`'s thread, after `ms` milliseconds. Returns
 * its id (never 0) for crest_loop_cancel(), or 0 when memory ran out. Only from `loop`'s own
 * thread; cb never runs before this returns. As with crest_loop_after(), a stop that outlasts the
 * shutdown timeout runs pending callbacks early. */
CREST_API uint64_t crest_loop_timer(crest_loop_t *loop, uint64_t ms, crest_loop_cb cb, void *arg);
/* Cancel a timer: returns 0 when it was pending (cb will not run), CREST_ENOENT when it already
 * ran, was cancelled, or the id is not one of this loop's. Only from `loop`'s thread; safe
 * from inside any callback, that timer's own included. */
CREST_API int crest_loop_cancel(crest_loop_t *loop, uint64_t id);
/* The loop's index, 0 .. threads-1. */
CREST_API int crest_loop_index(const crest_loop_t *loop);

/* ---- statistics (for /metrics) ---- */

typedef struct {
    uint64_t requests;             /* responses sent */
    uint64_t by_status[6];         /* responses by class: [1] 1xx .. [5] 5xx */
    uint64_t open_connections;     /* now */
    uint64_t accepted_connections; /* since start */
    uint64_t rejected_requests;    /* malformed or over a limit (4xx/5xx from the parser) */
    uint64_t refused_connections;  /* times accepting paused: connection cap or no descriptors */
    uint64_t write_timeouts;       /* connections closed for taking none of their output */
    uint64_t buffered_bytes;       /* bytes held for clients now (max_buffer_memory counts them) */
    uint64_t buffered_peak;        /* the most held since the last return of memory to the OS */
    uint64_t buffer_limit;         /* max_buffer_memory in force */
    uint64_t buffer_refusals;      /* work refused for the budget (503s, dropped messages) */
} crest_stats_t;

/* Responses counted by exact status code: crest_app_status_count(app, 404). Any thread. */
CREST_API uint64_t crest_app_status_count(const crest_app_t *app, int status);
/* Every status code with a nonzero count, in ascending order: fills codes/counts up to `max`
 * and returns how many there were. Any thread. */
CREST_API size_t crest_app_status_counts(const crest_app_t *app, int *codes, uint64_t *counts,
                                         size_t max);
/* Sum the per-thread counters. Any thread; the figures are a moment's snapshot. */
CREST_API void crest_app_stats(const crest_app_t *app, crest_stats_t *out);

/* The library's version, "MAJOR.MINOR.PATCH". */
CREST_API const char *crest_version(void);

#endif
