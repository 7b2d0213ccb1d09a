/* An outbound HTTP/1.1 client on the loop: call other services from a handler without blocking
 * and without a thread, over http:// or https://.
 *
 * A fetch belongs to the loop thread that started it and its callback runs there, exactly once,
 * never before crest_fetch() returns: with the response, or with an error (a timeout, a refused
 * connection, a response too large or malformed, a cancellation). Connections are kept per loop
 * and per (scheme, host, port, CA file) and reused: an idle connection waits at most
 * CREST_FETCH_IDLE_MS for its next request, and at most CREST_FETCH_IDLE_PER_HOST of them wait per
 * host. A pooled connection the server closed meanwhile is noticed; a request that finds it
 * closed before any byte of the answer came is sent again, once, on a new connection, when its
 * method is idempotent (GET, HEAD, PUT, DELETE, OPTIONS). When the loop ends, fetches still
 * running complete with CREST_ECANCELED and every connection is closed.
 *
 * Calling two services in parallel with a 200 ms budget:
 *
 *     crest_fetch_opts_t o = crest_fetch_opts_default();
 *     o.url = "http://10.0.0.5:8080/price?id=7";
 *     o.timeout_ms = 200;
 *     crest_fetch(crest_req_loop(req), &o, on_price, state);
 *     o.url = "http://10.0.0.6:8080/stock?id=7";
 *     crest_fetch(crest_req_loop(req), &o, on_stock, state);
 *     return 0; // each callback records its result; the second one answers the request */
#ifndef CREST_CLIENT_H
#define CREST_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "crest/export.h"
#include "crest/http.h"

/* Idle keep-alive connections: how long one waits for its next request, and how many wait per
 * (scheme, host, port) on each loop thread; more are closed as they come back. */
#define CREST_FETCH_IDLE_MS 10000
#define CREST_FETCH_IDLE_PER_HOST 16

typedef struct {
    const char *method; /* default "GET" */
    /* "http://host[:port][/path][?query]" or "https://...": host is a name (resolved with
     * getaddrinfo, every address tried in turn), an IPv4 address or a bracketed IPv6 one. The
     * path and query are sent as written (percent-encode them yourself). Required. */
    const char *url;
    /* Request header fields, sent as given after Host (unless one is given here). Content-Length,
     * Transfer-Encoding and Connection are crest's to write and refused (CREST_EINVAL), as is a
     * name or value with CR, LF or NUL. */
    const crest_header_t *headers;
    size_t nheaders;
    /* The request body, sent with Content-Length (also "0" for POST, PUT and PATCH without one).
     * Copied: the caller's memory may go once crest_fetch() returns. */
    const void *body;
    size_t body_len;
    /* Limits: 0 in timeout_ms or connect_timeout_ms means none, 0 in max_response or max_head
     * the default. */
    uint32_t timeout_ms;         /* the whole exchange, redirects included; default 30000 */
    uint32_t connect_timeout_ms; /* name lookup, TCP connect and TLS handshake of one
                                    connection (within timeout_ms); default 10000 */
    size_t max_response; /* body bytes of a response (decoded); more -> CREST_E2BIG; 8 MiB */
    size_t max_head;     /* status line and header fields of a response (trailers apart); more
                            -> CREST_E2BIG; default 64 KiB */
    /* Redirects (301, 302, 303, 307, 308 with a Location) followed, at most this many; default 0:
     * the redirect is the response. A 303, and a 301 or 302 answering a POST, is followed with
     * a GET without body, as browsers do; the others repeat the method and body. Only absolute
     * URLs (http:, https:) and absolute paths ("/x") in Location are followed; another form ends
     * the chain with that response. */
    int max_redirects;
    /* HTTPS: the PEM file of the certificate authorities to trust; NULL (default): the system's
     * store. The server's certificate must chain to one of them and name the URL's host (a DNS
     * name or an IP address in subjectAltName); there is no switch to turn that off. */
    const char *ca_file;
} crest_fetch_opts_t;

/* The defaults above (url NULL: set it). Any thread. */
CREST_API crest_fetch_opts_t crest_fetch_opts_default(void);

/* What the callback gets; everything in it (headers, body) is valid only during the callback:
 * copy what you keep. */
typedef struct {
    /* 0: a response came (any status, 4xx and 5xx too). Otherwise no response:
     * CREST_ETIMEDOUT (timeout_ms or connect_timeout_ms passed), CREST_ECONNREFUSED,
     * CREST_ECONNRESET (the connection ended before a complete response), CREST_EPROTO (a
     * malformed response, or a TLS handshake that failed, the certificate check included),
     * CREST_E2BIG (max_response or max_head passed), CREST_ECANCELED (crest_fetch_cancel, or
     * the loop ended), CREST_EINVAL (a malformed URL or header, an unreadable ca_file), a name
     * resolution error (libuv's UV_EAI_*, named by crest_strerror), CREST_ENOMEM. */
    int error;
    int status; /* the final response's status; 0 with an error */
    const crest_header_t *headers;
    size_t nheaders;
    crest_str_t body;   /* the whole body, decoded from its framing (not its compression) */
    const char *url;    /* the URL that answered (the last one, after redirects) */
    unsigned redirects; /* redirects followed */
} crest_fetch_res_t;

typedef struct crest_fetch_s crest_fetch_t;

/* The result of one fetch, on the loop thread that started it, exactly once. */
typedef void (*crest_fetch_cb)(const crest_fetch_res_t *res, void *arg);

/* Start a request on `loop` (the calling thread must be that loop's thread: call it from a
 * handler, a timer or a posted callback). `opts` and everything it points to are copied. Returns
 * the fetch, for crest_fetch_cancel(), valid until its callback returns; NULL only when memory
 * ran out (then cb never runs). Every other failure, a malformed URL included, comes to cb, which
 * never runs before this returns. */
CREST_API crest_fetch_t *crest_fetch(crest_loop_t *loop, const crest_fetch_opts_t *opts,
                                     crest_fetch_cb cb, void *arg);

/* Give up on a fetch: its connection is closed now and its callback runs soon (on a later turn
 * of the loop, not inside this call) with CREST_ECANCELED. Returns 0, or CREST_EALREADY when the
 * fetch is already completing (its callback is running or due, with whatever result it has).
 * Only on the fetch's loop thread, and only until its callback has returned. */
CREST_API int crest_fetch_cancel(crest_fetch_t *f);

/* The results of crest_fetch_all(), res[i] for opts[i]; valid only during the callback. */
typedef void (*crest_fetch_all_cb)(const crest_fetch_res_t *res, size_t n, void *arg);

/* Start the n fetches of opts[0 .. n) at once (as crest_fetch() each) and call cb once, on this
 * loop thread, when the last has completed, with every result in the order of the options: the
 * way to call several services in parallel, each with its own timeout_ms. cb never runs before
 * this returns. Returns 0, or CREST_ENOMEM when no fetch could start (cb never runs; n must be at
 * least 1); a fetch that could not start has CREST_ENOMEM as its result. */
CREST_API int crest_fetch_all(crest_loop_t *loop, const crest_fetch_opts_t *opts, size_t n,
                              crest_fetch_all_cb cb, void *arg);

#endif
