/* Requests and responses.
 *
 * A crest_req_t is one HTTP request and its response. It belongs to the loop thread that read it:
 * call these functions only from that thread (a worker or another thread posts back with
 * crest_loop_post()). A handler answers at once, or later by keeping the pointer and calling one
 * of the finishing calls (crest_res_send*, crest_res_end) on the same thread. After a finishing
 * call the request is gone; do not touch it again. (A second finishing call made before the
 * handler returns, or before the loop's next turn, is refused with CREST_EALREADY and sends
 * nothing; debug builds also assert.)
 *
 * Views into the request (crest_str_t fields, headers, params, body) point into the connection's
 * read buffer and are valid only during the handler call. A handler that answers later copies what
 * it needs first (crest_req_alloc() gives memory that lives as long as the request). */
#ifndef CREST_HTTP_H
#define CREST_HTTP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "crest/export.h"

/* A byte string that is not NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} crest_str_t;

typedef struct {
    crest_str_t name;
    crest_str_t value;
} crest_header_t;

typedef enum {
    CREST_METHOD_OTHER = 0,
#define CREST_METHOD(id, token) CREST_METHOD_##id,
#include "crest/method.def"
#undef CREST_METHOD
    CREST_METHOD__COUNT
} crest_method_t;

typedef struct crest_req_s crest_req_t;
typedef struct crest_loop_s crest_loop_t;

/* What a handler or middleware returns: CREST_NEXT passes the request on, 0 means the callee has
 * taken charge of the response (answered now or will answer later), a negative CREST_E* code
 * makes crest answer 500 (503 for CREST_ENOMEM) unless a response was already started. */
#define CREST_NEXT 1

typedef int (*crest_handler_cb)(crest_req_t *req, void *data);

/* Called when the client goes away before a later answer was sent. The request stays valid
 * until the application makes its finishing call, which then frees it and sends nothing. */
typedef void (*crest_abort_cb)(crest_req_t *req, void *arg);

/* Releases a borrowed body once it has been written (or the connection died). */
typedef void (*crest_release_cb)(void *arg);

/* ---- request ---- */

/* The method as a known id (CREST_METHOD_OTHER for an extension method). */
CREST_API crest_method_t crest_req_method(const crest_req_t *req);
/* The method token as sent, e.g. "GET". */
CREST_API crest_str_t crest_req_method_str(const crest_req_t *req);
/* The request-target up to '?', as sent (not percent-decoded). */
CREST_API crest_str_t crest_req_path(const crest_req_t *req);
/* The query string after '?', without it; empty when absent. */
CREST_API crest_str_t crest_req_query(const crest_req_t *req);
/* The raw value of query parameter `name` ("a" in "?a=1&b" is "1", "b" is ""); .ptr NULL when
 * absent. Not percent-decoded. */
CREST_API crest_str_t crest_req_query_param(const crest_req_t *req, const char *name);
/* Decode a query value as browsers encode forms: %XX becomes the byte, '+' a space; a '%' not
 * followed by two hex digits stays as it is. Writes at most cap-1 bytes to out and a NUL
 * (cap must be at least 1); returns the decoded length. Any thread. */
CREST_API size_t crest_query_decode(crest_str_t value, char *out, size_t cap);
/* The first header named `name` (ASCII case-insensitive), value without surrounding spaces;
 * .ptr NULL when absent. */
CREST_API crest_str_t crest_req_header(const crest_req_t *req, const char *name);
/* All header fields in arrival order; *count receives their number. */
CREST_API const crest_header_t *crest_req_headers(const crest_req_t *req, size_t *count);
/* A route parameter: for route "/users/:id", crest_req_param(req, "id"); for a trailing "*",
 * the name "*". Percent-decoded once, as a path is: %XX becomes the byte ("%2F" a '/', "%20" a
 * space), '+' stays '+'. A value with no '%' is a view into the request (valid during the handler
 * call); a decoded one is a copy in request memory (NUL-terminated, valid until the request is
 * finished), made again by each call: keep it rather than asking in a loop. .ptr NULL when the
 * route has no such parameter, and when the value's percent-encoding is malformed ("%", "%4",
 * "%zz") or holds "%00": a handler that then answers as for an absent resource is right, and
 * crest_req_params_valid() (crest/json.h) answers 400. .ptr NULL also when memory ran out. */
CREST_API crest_str_t crest_req_param(const crest_req_t *req, const char *name);
/* The whole request body (buffered up to the app's max_body before the handler runs, chunked
 * framing removed). Empty when there is none, and for a route that streams its body
 * (crest_app_route_stream(): see crest_req_body_stream()). */
CREST_API crest_str_t crest_req_body(const crest_req_t *req);
/* HTTP minor version: 0 for HTTP/1.0, 1 for HTTP/1.1. */
CREST_API int crest_req_version(const crest_req_t *req);
/* The template of the route that matched ("/api/todos/:id"; a static-file mount's is its prefix
 * followed by "*"); NULL when no route matched (404, 405) or before routing (middleware).
 * Valid for the request's whole life. */
CREST_API const char *crest_req_route(const crest_req_t *req);
/* The address of the connection's peer as text ("127.0.0.1", "::1") into buf (cap at least 46);
 * returns its length, 0 when unknown. This is the proxy's address behind a reverse proxy:
 * crest_req_client() (crest/middleware.h) honours the trusted proxies' headers. */
CREST_API size_t crest_req_peer(const crest_req_t *req, char *buf, size_t cap);
/* Nanoseconds since the request arrived (its head was read): a Server-Timing or X-Response-Time
 * header from a head hook, a deadline of the handler's own. */
CREST_API uint64_t crest_req_elapsed_ns(const crest_req_t *req);
/* The loop thread that owns the request, for crest_loop_post() from other threads. */
CREST_API crest_loop_t *crest_req_loop(const crest_req_t *req);
/* Memory that lives until the request is finished and freed with it; NULL when out of memory. */
CREST_API void *crest_req_alloc(crest_req_t *req, size_t size);
/* Copy a view into request-lifetime memory (NUL-terminated as well); .ptr NULL when out of memory.
 */
CREST_API crest_str_t crest_req_keep(crest_req_t *req, crest_str_t s);
/* Per-request storage, for values middleware hands to later middleware and handlers: set `key`
 * (a NUL-terminated name, compared as a string; the caller keeps it alive, a literal is usual)
 * to `value`, replacing an earlier value of that key. Returns 0 or CREST_ENOMEM. The value is
 * the caller's: crest frees nothing (crest_req_alloc() gives memory that goes with the request).
 */
CREST_API int crest_req_set(crest_req_t *req, const char *key, void *value);
/* The value set for `key`, or NULL. */
CREST_API void *crest_req_get(const crest_req_t *req, const char *key);
/* Go on with the chain after a middleware that returned 0 without answering (it awaited a
 * database or a downstream call): the next middleware, then the route, run now, inside this
 * call. The request's head and body stay readable until then: crest keeps a copy of them when
 * a middleware returns 0 without answering. Only on the request's loop thread, once per
 * suspension. Returns 0, CREST_EINVAL when the chain is not waiting, CREST_ECANCELED when the
 * client has gone (the request is then freed: do not touch it again). */
CREST_API int crest_req_next(crest_req_t *req);
/* Register a callback for a client that leaves before a later answer. Replaces an earlier one. */
CREST_API void crest_req_on_abort(crest_req_t *req, crest_abort_cb cb, void *arg);
/* Nonzero once the client has gone; a finishing call then only frees the request. */
CREST_API int crest_req_aborted(const crest_req_t *req);

/* ---- request bodies streamed as they arrive ----
 *
 * A route added with crest_app_route_stream() (crest/app.h) runs its chain as soon as the
 * request's head is read, before the body, which crest never buffers whole: the handler (or a
 * middleware) takes it piece by piece with crest_req_body_stream(), and an upload of gigabytes
 * holds about one read's worth of memory. The client is held back while nobody takes the body
 * (before crest_req_body_stream(), and while paused): by TCP over HTTP/1.1, by the stream's
 * flow-control window over HTTP/2. A response that ends before the whole body was read closes
 * the connection (HTTP/1.1) or resets the stream (HTTP/2), since the rest will not be read. */

/* What a body callback is told. */
enum {
    CREST_BODY_DATA = 0, /* the next `len` bytes of the body at `data` (valid during the call) */
    CREST_BODY_END = 1,  /* the whole body arrived (data NULL, len 0) */
};

/* Called with CREST_BODY_DATA for each piece in order, then once with CREST_BODY_END, or once
 * with a negative error instead of the end: CREST_E2BIG (the body outgrew the route's limit),
 * CREST_ETIMEDOUT (the client sent too slowly: the app's body_timeout_ms and min_body_rate),
 * CREST_EINVAL (malformed chunked framing), CREST_ENOBUFS (HTTP/2: no memory left to hold it) or
 * CREST_ECANCELED (the client has gone). The error call is the request's last: the callback may
 * answer it with an error of its own, and crest finishes whatever it leaves (answered 413, 408,
 * 400 or 503 through the app's error handler, a streamed response cut short, or only freed when
 * the client has gone), so the app drops every reference to it there (a job in flight included).
 * Return 0 to go on, or a negative value to stop reading: no more calls, and the app answers the
 * request (if it has not) as usual. A callback may answer or finish the request; it must not
 * touch it afterwards. On the request's loop thread. */
typedef int (*crest_body_cb)(crest_req_t *req, int event, const void *data, size_t len, void *arg);

/* Take the request's body as it arrives: cb is first called on a later turn of the loop, never
 * inside this call, and for a request without a body it is called once with CREST_BODY_END. A
 * 100 Continue the client waits for is sent now. Returns 0, CREST_EINVAL when the request's route
 * does not stream its body or a callback is already set, CREST_ECANCELED when the client has gone
 * (finish the request as usual), CREST_EALREADY when the request was finished. */
CREST_API int crest_req_body_stream(crest_req_t *req, crest_body_cb cb, void *arg);
/* Stop (paused 1) or resume (0) the body callbacks, so that a slow consumer (a disk, a worker
 * job) sets the pace: the client is held back meanwhile and the body's deadline does not run.
 * Calls resume on a later turn of the loop. Returns 0 or CREST_EINVAL (the body is not
 * streamed, or has ended). */
CREST_API int crest_req_body_pause(crest_req_t *req, int paused);

/* ---- response ----
 * Server, Date and Content-Length (or Transfer-Encoding: chunked) are added by crest. */

/* Add a response header (copied). Call before the response is sent or started. The framing
 * headers are crest's own: Content-Length, Transfer-Encoding and Date are refused (CREST_EINVAL);
 * Connection: close is honoured (the connection closes after this response) instead of being
 * sent as a header; a Content-Type set here is sent when the finishing call
 * names none (NULL) and replaced by the one it names otherwise, so there is never a second. Returns
 * 0, CREST_EINVAL for a name or value with characters not allowed in a field, CREST_EALREADY when
 * the response was already started, CREST_ENOMEM. */
CREST_API int crest_res_header(crest_req_t *req, const char *name, const char *value);

/* Send a complete response; the body is copied. content_type may be NULL for none. Finishing
 * call. Returns 0, or CREST_ECANCELED when the client had gone (the request is freed either way).
 */
CREST_API int crest_res_send(crest_req_t *req, int status, const char *content_type,
                             const void *body, size_t len);

/* As crest_res_send() but the body is borrowed: crest writes it without copying and calls
 * release(arg) once it is no longer needed (also when the client has gone). release may be NULL
 * for static memory. Finishing call. */
CREST_API int crest_res_send_borrowed(crest_req_t *req, int status, const char *content_type,
                                      const void *body, size_t len, crest_release_cb release,
                                      void *arg);

/* Send a status with a short text/plain body naming it ("Not Found\n"). Finishing call. */
CREST_API int crest_res_status(crest_req_t *req, int status);

/* Send `json` (already serialised) as application/json. Finishing call. */
CREST_API int crest_res_json(crest_req_t *req, int status, const char *json, size_t len);

/* Answer an error with crest's JSON error body, the one shape every error crest writes in JSON
 * has: {"status":422,"error":"<message>"} (message NULL: the status's reason phrase), and for
 * validation failures "field" (the first field at fault) and "errors" ([{"field","message"}],
 * every one) after them. Finishing call; returns as crest_res_send(). */
CREST_API int crest_res_error(crest_req_t *req, int status, const char *message);

/* Start a streamed response with Transfer-Encoding: chunked (HTTP/1.1) or close-delimited
 * (HTTP/1.0). Then crest_res_write() any number of times and crest_res_end() to finish. */
CREST_API int crest_res_start(crest_req_t *req, int status, const char *content_type);
/* Write one piece of a started response (copied; an empty piece is ignored). Returns 0,
 * CREST_ECANCELED when the client has gone, CREST_EINVAL when not started, CREST_ENOBUFS when the
 * process is over its buffer budget (max_buffer_memory) and this connection has a backlog. */
CREST_API int crest_res_write(crest_req_t *req, const void *data, size_t len);
/* Bytes written on this request's connection and not yet taken by the kernel, including what
 * this read batch has queued and not written yet. A streaming handler should stop writing when
 * this passes its own threshold (the app's max_output is a good one) and go on from a drain
 * callback. 0 once the client has gone. */
CREST_API size_t crest_res_buffered(const crest_req_t *req);

typedef void (*crest_drain_cb)(crest_req_t *req, void *arg);
/* Call cb(req, arg) once, on the request's loop thread, when the output queued on the connection
 * now has been written down to half of it (or to half the app's max_output, if that is less). cb
 * never runs before this returns; it does not run when the client goes away first (the abort
 * callback does) or the request is finished. Registering again replaces the pending callback.
 * Returns 0, CREST_EALREADY when nothing is queued (nothing registered: write on), CREST_EINVAL
 * when the response was not started or is finished, CREST_ECANCELED when the client has gone. */
CREST_API int crest_res_on_drain(crest_req_t *req, crest_drain_cb cb, void *arg);
/* Finish a started response. Finishing call. */
CREST_API int crest_res_end(crest_req_t *req);
/* Give up on a response (say, a database error half-way through a streamed body): the connection
 * is closed without ending the body, so the client sees an answer cut short (an incomplete
 * chunked body) instead of taking it for a whole one. The abort callback is not called.
 * Finishing call; returns 0. */
CREST_API int crest_res_abort(crest_req_t *req);

/* ---- helpers ---- */

/* The reason phrase of a status ("Not Found"); "Unknown" for codes crest does not list. */
CREST_API const char *crest_status_reason(int status);
/* The token of a method id ("GET"); NULL for CREST_METHOD_OTHER or out of range. */
CREST_API const char *crest_method_name(crest_method_t method);

#endif
