/* The test client: call an app in-process, without a listening port or a network, as a client
 * would, and look at the response; for unit tests of an app's routes and middleware (with cmocka
 * or any other framework).
 *
 * A test client runs the app on one loop, driven by the calling thread during each call: the
 * request goes in as HTTP/1.1 bytes over a connection whose transport is memory (no socket, no
 * descriptor, no port: a call works whatever the process's open-file limit), through crest's
 * real parser, middleware, router, handler and response writer, and the client side collects
 * the bytes the server writes and parses them. What a test sees is what a client on the wire
 * would get: the status line, Server, Date, Content-Length or Transfer-Encoding, the limits
 * (413, 431, ...), keep-alive and Connection: close. A handler that answers later
 * (crest_loop_after, crest_work_submit, a database query) is waited for: the loop runs until the
 * response is complete or the call's timeout passes.
 *
 * Example (cmocka):
 *
 *     static int hello(crest_req_t *req, void *data) {
 *         return crest_res_send(req, 200, "text/plain", "hi", 2);
 *     }
 *
 *     static void test_hello(void **state) {
 *         crest_app_t *app = crest_app_new(NULL);
 *         crest_app_route(app, "GET", "/hello", hello, NULL);
 *         crest_test_t *t;
 *         assert_int_equal(crest_test_new(app, NULL, &t), 0);
 *         crest_test_res_t res;
 *         assert_int_equal(crest_test_get(t, "/hello", &res), 0);
 *         assert_int_equal(res.status, 200);
 *         assert_string_equal(res.body.ptr, "hi");
 *         assert_int_equal(crest_test_header(&res, "Content-Length").len, 1);
 *         crest_test_res_free(&res);
 *         crest_test_free(t);
 *         crest_app_free(app);
 *     }
 *
 * Threads: every crest_test_* function runs on the calling thread, which is the app's loop
 * thread for as long as a call lasts (handlers, crest_loop_after callbacks and worker
 * completions run inside crest_test_call). Between calls the loop does not run: a timer that
 * falls due then fires during the next call or at crest_test_free. Use one test client from one
 * thread at a time.
 *
 * Not covered: a slow client (the client takes every byte of output at once, so an app's
 * backpressure, crest_res_on_drain waiting on a full socket and the write deadline are not
 * exercised; drain callbacks still run, a turn of the loop later); HTTP/2 and TLS (the client
 * speaks HTTP/1.1 in cleartext whatever the app's TLS options); an upgrade (WebSocket) completes
 * with the 101 head and no body, after which the connection is closed; an event stream (SSE) or any
 * body that does not end completes only with the timeout: the call then returns CREST_ETIMEDOUT
 * with the head and the events that arrived. */
#ifndef CREST_TESTING_H
#define CREST_TESTING_H

#include <stddef.h>
#include <stdint.h>

#include "crest/app.h"
#include "crest/export.h"
#include "crest/http.h"

typedef struct crest_test_s crest_test_t;

typedef struct {
    uint32_t timeout_ms; /* longest wait for a response, per call; default 5000 */
    const char *client;  /* the client's address as the app sees it (crest_req_peer, rate
                            limits, trusted proxies): an IPv4 or IPv6 address; default
                            "127.0.0.1" */
} crest_test_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_test_opts_default(crest_test_opts_t *opts);

/* A test client for `app`, built with its routes and middleware and not running (never given to
 * crest_app_listen or crest_app_run). From here until crest_test_free the app counts as running:
 * crest_app_route, crest_app_use and the like return CREST_EBUSY, crest_app_run returns
 * CREST_EBUSY, and crest_app_stop makes the app drain as it would when running (the calls after
 * that return CREST_ECANCELED). The app keeps one loop whatever opts.threads says; its worker pool
 * (crest_app_workers) and databases work as when running. opts may be NULL for the defaults;
 * SIGPIPE is ignored from here on, as crest_app_run does. Returns 0 and sets *out, CREST_EBUSY
 * when the app runs, listens or has a test client already, CREST_EINVAL for an opts.client that
 * is not an address, CREST_ENOMEM. */
CREST_API int crest_test_new(crest_app_t *app, const crest_test_opts_t *opts, crest_test_t **out);

/* End the test client as a stopping app ends: requests still open are given shutdown_timeout_ms
 * to finish (a handler's pending crest_loop_after timers run early past it), the loop's
 * databases are closed and the worker pool is stopped (an app has one pool for its life, as it
 * has one crest_app_run). The app can then be freed. crest_test_free(NULL) does nothing. */
CREST_API void crest_test_free(crest_test_t *t);

/* A request. Headers are sent as given, in order, after a Host header (unless the request has
 * one); a Content-Length is added for a body (body_len > 0, or a non-NULL body) unless the request
 * has Content-Length or Transfer-Encoding (then body is sent as it is: chunked framing is the
 * caller's). */
typedef struct {
    const char *method;            /* "GET" when NULL */
    const char *target;            /* path and query, "/users/7?full=1"; "/" when NULL */
    const crest_header_t *headers; /* nheaders fields; names and values without CR or LF */
    size_t nheaders;
    const void *body;
    size_t body_len;
} crest_test_req_t;

/* A response. Everything in it belongs to it until crest_test_res_free. */
typedef struct {
    int status;              /* 0 when no response head arrived */
    crest_header_t *headers; /* the header fields in the order received */
    size_t nheaders;
    crest_str_t body; /* the body, chunked framing removed; body.ptr[body.len] is '\0' */
    int chunked;      /* the body came with Transfer-Encoding: chunked */
    void *internal_;  /* crest's memory, freed by crest_test_res_free */
} crest_test_res_t;

/* Send `rq` to the app on a new connection and run the app's loop on this thread until the
 * response is complete (including answers made later by timers, worker jobs or database
 * queries), then close the client's side (the app reads the client leave, after any bytes it
 * had not read yet) and return once the app's side has closed, so nothing of this connection
 * runs after the call (a side that stopped reading is closed after a second, as its own timeout
 * would close it later). Interim 1xx
 * responses (100 Continue) are skipped; a 101 completes with its head. Returns 0 with *res filled,
 * or, with *res holding whatever arrived (free it in every case):
 * - CREST_ETIMEDOUT: timeout_ms passed first (an endless event stream; a forgotten answer);
 * - CREST_ECONNRESET: the app closed the connection before the response was complete (a
 *   streamed response it aborted);
 * - CREST_EIO: the response bytes were not valid HTTP/1.1;
 * - CREST_ECANCELED: the app is stopping (crest_app_stop was called); nothing was sent;
 * - CREST_EINVAL: a method, target or header that cannot be sent (empty, or with CR or LF);
 * - CREST_ENOMEM.
 * Handlers and callbacks run inside this call, on this thread; none runs after it returns. */
CREST_API int crest_test_call(crest_test_t *t, const crest_test_req_t *rq, crest_test_res_t *res);

/* Send `len` bytes exactly as given (a malformed request, a pipeline of several) on a new
 * connection and read one response, as crest_test_call (bytes that begin with "HEAD " expect a
 * response without a body). Same returns. */
CREST_API int crest_test_raw(crest_test_t *t, const void *bytes, size_t len, crest_test_res_t *res);

/* crest_test_call for a GET of `target`, no headers. */
CREST_API int crest_test_get(crest_test_t *t, const char *target, crest_test_res_t *res);
/* crest_test_call for a POST of `len` bytes of `body` with Content-Type `content_type` (none when
 * NULL). */
CREST_API int crest_test_post(crest_test_t *t, const char *target, const char *content_type,
                              const void *body, size_t len, crest_test_res_t *res);
/* crest_test_post of the NUL-terminated `json` as application/json. */
CREST_API int crest_test_post_json(crest_test_t *t, const char *target, const char *json,
                                   crest_test_res_t *res);

/* The first header of res named `name` (ASCII case-insensitive), its value without surrounding
 * spaces and NUL-terminated (ptr[len] is '\0'); .ptr NULL when absent. Valid until
 * crest_test_res_free. */
CREST_API crest_str_t crest_test_header(const crest_test_res_t *res, const char *name);

/* Free what res holds and zero it; again, or on a zeroed res, does nothing. */
CREST_API void crest_test_res_free(crest_test_res_t *res);

#endif
