/* Middleware crest ships: security headers, CORS, rate limits, and the client's address behind
 * trusted proxies.
 *
 * Each crest_app_* call here adds middleware (see crest_app_use(): it runs in the order added,
 * for requests at or below `prefix`, NULL or "/" for all), before crest_app_run(), from the
 * thread that builds the app. Options structs are copied, strings in them too. */
#ifndef CREST_MIDDLEWARE_H
#define CREST_MIDDLEWARE_H

#include <stddef.h>
#include <stdint.h>

#include "crest/app.h"
#include "crest/export.h"
#include "crest/http.h"

/* ---- client address ---- */

/* Trust `proxy` (an address, "10.0.0.1", or a CIDR block, "10.0.0.0/8", "::1/128") to say who
 * its client is: for a request whose peer is trusted, the client is the right-most address in
 * Forwarded (for=) or else X-Forwarded-For that is not itself trusted. Without any trusted proxy
 * those headers are ignored. Returns 0, CREST_EINVAL for a malformed address, CREST_EBUSY once
 * running, CREST_ENOMEM. */
CREST_API int crest_app_trust_proxy(crest_app_t *app, const char *proxy);

/* The client's address as text into buf (cap at least 46): the peer's (crest_req_peer()), or the
 * one a trusted proxy names (above). The headers are read during the handler call (middleware
 * included); the answer is kept with the request, so a call after the handler returned (an access
 * log at the end) gives the same one if a call was made during it, else the peer's. Returns its
 * length, 0 when unknown. */
CREST_API size_t crest_req_client(const crest_req_t *req, char *buf, size_t cap);

/* ---- security headers ---- */

typedef struct {
    const char *content_security_policy; /* default "frame-ancestors 'self'"; NULL: none */
    const char *frame_options;           /* X-Frame-Options; default "SAMEORIGIN"; NULL: none */
    const char *referrer_policy;         /* default "strict-origin-when-cross-origin" */
    const char *opener_policy;           /* Cross-Origin-Opener-Policy; default "same-origin" */
    int nosniff;                         /* X-Content-Type-Options: nosniff; default 1 */
    uint32_t hsts_max_age;               /* Strict-Transport-Security, over TLS only; default
                                            15552000 (180 days); 0: none from here (the app's
                                            opts.hsts_max_age still applies). Nonzero replaces
                                            that option: HSTS is one policy for the whole host,
                                            so it goes on every HTTPS answer, whatever `prefix` */
    int hsts_subdomains;                 /* "; includeSubDomains"; default 0 */
} crest_security_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_security_opts_default(crest_security_opts_t *opts);

/* Add the headers above to every response under `prefix`. Returns as crest_app_use(). */
CREST_API int crest_app_security(crest_app_t *app, const char *prefix,
                                 const crest_security_opts_t *opts);

/* ---- CORS ---- */

typedef struct {
    const char *const *origins; /* allowed origins ("https://app.example"); "*" allows any */
    size_t norigins;
    int credentials; /* Access-Control-Allow-Credentials: true, for listed origins only (never
                        with "*"); default 0 */
    const char *allow_headers;  /* preflight: request headers allowed; default: those the
                                   preflight asks for (Access-Control-Request-Headers) */
    const char *expose_headers; /* Access-Control-Expose-Headers; default none */
    uint32_t max_age;           /* Access-Control-Max-Age of a preflight; default 600 s */
} crest_cors_opts_t;

/* Fill `opts` with the defaults above (no origin: nothing allowed). */
CREST_API void crest_cors_opts_default(crest_cors_opts_t *opts);

/* Answer CORS under `prefix`: a request whose Origin is allowed gets Access-Control-Allow-Origin
 * (and Vary: Origin); a preflight (OPTIONS with Access-Control-Request-Method) is answered 204
 * with the methods the route really has. A request from an origin not allowed gets no CORS
 * header at all (the browser then refuses it). Returns as crest_app_use(). */
CREST_API int crest_app_cors(crest_app_t *app, const char *prefix, const crest_cors_opts_t *opts);

/* ---- rate limits ---- */

typedef struct {
    double rate;        /* requests per second per client address (crest_req_client()) */
    uint32_t burst;     /* requests a client may make at once; default 0: rate, at least 1 */
    size_t max_clients; /* addresses tracked at once (memory stays bounded under a flood of
                           distinct addresses); default 65536 */
} crest_ratelimit_opts_t;

/* Fill `opts` with the defaults above (rate 0: set it). */
CREST_API void crest_ratelimit_opts_default(crest_ratelimit_opts_t *opts);

/* Limit requests under `prefix` per client address with a token bucket shared by every loop
 * thread of this process (a limit per instance): over it, 429 with Retry-After and the
 * RateLimit-Policy / RateLimit headers of the IETF draft; answers within it carry RateLimit too.
 * Returns as crest_app_use(), and CREST_EINVAL for a rate that is not positive. */
CREST_API int crest_app_ratelimit(crest_app_t *app, const char *prefix,
                                  const crest_ratelimit_opts_t *opts);

#endif
