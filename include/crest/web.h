/* The web basics: cookies, HTML form bodies (urlencoded and multipart), content negotiation.
 *
 * Like the rest of crest/http.h, these are called on the request's loop thread, during the
 * handler call (they read the request's head and body, which are views valid only then; see
 * crest_req_next() for a middleware that resumes later). Values they hand back live as long as
 * the request unless said otherwise.
 *
 * Request bodies: crest buffers the whole body, up to the app's max_body, before the handler
 * runs, and crest_req_multipart() / crest_req_parts() parse that. A route added with
 * crest_app_route_stream() gets its body as it arrives instead: crest_req_multipart_stream() /
 * crest_req_parts_stream() parse it piece by piece, so an upload larger than memory goes to a
 * callback or a temporary file while it is still arriving. */
#ifndef CREST_WEB_H
#define CREST_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "crest/export.h"
#include "crest/http.h"

/* ---- cookies (RFC 6265) ---- */

/* The value of the cookie `name` (compared case-sensitively) from the request's Cookie header
 * lines, every one of them read in order; the first match wins. A value sent in double quotes
 * comes without them. .ptr NULL when there is no such cookie. The view points into the request's
 * head: valid during the handler call (copy it with crest_req_keep() to keep it). */
CREST_API crest_str_t crest_req_cookie(const crest_req_t *req, const char *name);

typedef enum {
    CREST_SAMESITE_LAX = 0, /* the default: sent on top-level navigations from other sites */
    CREST_SAMESITE_STRICT,  /* never sent from another site */
    CREST_SAMESITE_NONE,    /* always sent (cross-site too); browsers require Secure: it is set */
    CREST_SAMESITE_OMIT,    /* no SameSite attribute (the browser's own default) */
} crest_samesite_t;

typedef struct {
    const char *path;   /* Path; default "/"; NULL: none */
    const char *domain; /* Domain; default NULL: none (host-only: the safest) */
    int64_t max_age;    /* Max-Age in seconds, and Expires for older clients; default -1: neither
                           (a session cookie); 0: delete the cookie now */
    int http_only;      /* HttpOnly: out of reach of scripts; default 1 */
    int secure;         /* Secure: 1 on, 0 off; default -1: on when the request came over TLS on
                           this server's own port. Behind a proxy that ends TLS crest sees plain
                           HTTP: set 1 there */
    crest_samesite_t same_site; /* default CREST_SAMESITE_LAX */
    int partitioned;            /* Partitioned (CHIPS); default 0; it implies Secure */
} crest_cookie_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_cookie_opts_default(crest_cookie_opts_t *opts);

/* Add a Set-Cookie header to the response (as crest_res_header(); a response may carry several):
 * name=value and the attributes of opts (NULL: the defaults). name must be a token and value
 * cookie-octets (RFC 6265 4.1.1: printable ASCII but space, '"', ',', ';' and '\'; encode other
 * bytes, say with base64url), optionally inside one pair of double quotes; path and domain
 * may not hold ';' or control characters. A name starting with "__Secure-" needs Secure and one
 * starting with "__Host-" also needs Path "/" and no Domain (the browser would drop the cookie).
 * Returns 0, CREST_EINVAL for any of these, CREST_EALREADY once the response was started,
 * CREST_ENOMEM. */
CREST_API int crest_res_cookie(crest_req_t *req, const char *name, const char *value,
                               const crest_cookie_opts_t *opts);

/* ---- application/x-www-form-urlencoded bodies ----
 * These read the request body when its Content-Type is application/x-www-form-urlencoded (with
 * any parameters); for any other body they find nothing. Names and values are decoded as the
 * WHATWG URL standard decodes forms: '+' is a space, %XX a byte (a '%' not followed by two hex
 * digits stays as it is); pairs are split at '&', a pair without '=' has an empty value. */

typedef struct {
    crest_str_t name;  /* decoded, NUL-terminated */
    crest_str_t value; /* decoded, NUL-terminated */
} crest_form_field_t;

/* The first value of field `name` (compared after decoding), decoded into request memory
 * (NUL-terminated: .ptr is a C string, though the value may hold a NUL of its own). .ptr NULL
 * when absent or out of memory. */
CREST_API crest_str_t crest_req_form(crest_req_t *req, const char *name);

/* Every value of field `name`, in body order: up to cap of them into out (decoded into request
 * memory as above). Returns how many the body has (more than cap when out was too small), or
 * CREST_ENOMEM. */
CREST_API int crest_req_form_all(crest_req_t *req, const char *name, crest_str_t *out, size_t cap);

/* Every field of the body in order: *fields receives an array of *count fields in request memory
 * (empty for another kind of body). Returns 0 or CREST_ENOMEM. */
CREST_API int crest_req_form_fields(crest_req_t *req, const crest_form_field_t **fields,
                                    size_t *count);

/* ---- multipart/form-data bodies (RFC 7578) ---- */

typedef struct {
    uint32_t max_parts;        /* more parts: 413; default 64 */
    uint32_t max_header_bytes; /* one part's header block: 413; default 8192 */
    uint64_t max_part_size;    /* bytes of one part: 413; default 0: no limit of its own (the
                                  app's max_body bounds every body) */
    uint64_t max_total;        /* bytes of the whole body: 413; default 0: max_body only */
    /* crest_req_parts(): a file part (one with a filename) larger than this is written to a
     * temporary file instead of memory; default 65536. Fields without a filename always stay in
     * memory (max_part_size bounds them). */
    size_t spill_bytes;
    /* crest_req_parts(): the folder of the temporary files; default NULL: $TMPDIR, else /tmp. */
    const char *tmp_dir;
} crest_multipart_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_multipart_opts_default(crest_multipart_opts_t *opts);

/* One part. name, filename and content_type are as sent, unquoted (filename* decoded when it is
 * UTF-8): never use a filename as a path, it is whatever the client says. */
typedef struct {
    crest_str_t name;
    crest_str_t filename;     /* .ptr NULL for a part that is not a file */
    crest_str_t content_type; /* empty when the part names none (RFC 7578: text/plain) */
    crest_str_t data;         /* crest_req_parts(): the bytes in memory; empty when spilled */
    const char *path;         /* crest_req_parts(): the temporary file holding them, or NULL */
    uint64_t size;            /* the part's bytes (for the callback: so far) */
} crest_part_t;

typedef enum {
    CREST_PART_BEGIN, /* a part starts: name, filename, content_type are set */
    CREST_PART_DATA,  /* the next `len` bytes of its body at `data` (valid during the call) */
    CREST_PART_END,   /* the part is complete; size is its length */
} crest_part_event_t;

/* Called for each event of each part in body order; part's views are valid until the next
 * BEGIN. Return 0 to go on, or a negative CREST_E* code to stop: crest_req_multipart() returns
 * it. */
typedef int (*crest_part_cb)(crest_req_t *req, crest_part_event_t ev, const crest_part_t *part,
                             const void *data, size_t len, void *arg);

/* Parse the request's multipart/form-data body, calling cb as parts are read (inside this call;
 * it never runs after it returns). opts NULL: the defaults (spill_bytes and tmp_dir unused).
 * Answers nothing: returns 0 once the closing boundary was read, CREST_EINVAL when the body is
 * not multipart/form-data or is malformed (answer 400), CREST_E2BIG over a limit of opts (413),
 * CREST_ENOMEM, or what cb returned. *why, unless NULL, receives a short static sentence saying
 * what was wrong ("a part without Content-Disposition"), or NULL. */
CREST_API int crest_req_multipart(crest_req_t *req, const crest_multipart_opts_t *opts,
                                  crest_part_cb cb, void *arg, const char **why);

/* Parse the request's multipart/form-data body into *parts, an array of *count parts in request
 * memory: fields in memory (data), and file parts over opts->spill_bytes in temporary files
 * (path, size) made with mkstemp in opts->tmp_dir (mode 0600), written at once with blocking
 * writes on the loop thread (the page cache takes them; a huge upload on a slow disk stalls the
 * loop: keep max_body sensible). The files are unlinked when the request is freed unless the app
 * moved one away with crest_part_move(). Returns 0; on an error it answers the request itself
 * and returns the error: 400 (crest_res_error) for a body that is not multipart or malformed
 * (CREST_EINVAL), 413 over a limit (CREST_E2BIG), 500 when a temporary file cannot be written,
 * 503 out of memory; the request is then finished and the handler returns 0. */
CREST_API int crest_req_parts(crest_req_t *req, const crest_multipart_opts_t *opts,
                              crest_part_t **parts, size_t *count);

/* Called once when a streamed multipart body is over: rc 0 after the closing boundary, or its
 * failure: as crest_req_multipart()'s (CREST_EINVAL malformed or not multipart/form-data,
 * CREST_E2BIG over a limit of opts or the route's max_body, CREST_ENOMEM, what the part callback
 * returned), CREST_ETIMEDOUT (the client sent too slowly), CREST_ECANCELED (the client has
 * gone). why as crest_req_multipart()'s. Answer the request here (or later); on a failure a
 * request this leaves unanswered gets crest's JSON error (400, 413, 408, 500, 503). */
typedef void (*crest_multipart_done_cb)(crest_req_t *req, int rc, const char *why, void *arg);

/* For a route that streams its body (crest_app_route_stream()): parse the multipart body as it
 * arrives, calling cb as crest_req_multipart() does (a part's DATA comes as the client sends
 * it), then done. Both get arg; neither is called inside this call. opts NULL: the defaults
 * (copied: it need not outlive the call). Returns 0, CREST_EINVAL when the route does not stream
 * its body or it is already being read, CREST_ECANCELED (the client has gone), CREST_EALREADY,
 * CREST_ENOMEM; a body that is not multipart/form-data is reported to done. */
CREST_API int crest_req_multipart_stream(crest_req_t *req, const crest_multipart_opts_t *opts,
                                         crest_part_cb cb, crest_multipart_done_cb done, void *arg);

/* Called once when crest_req_parts_stream()'s body is over: rc as crest_multipart_done_cb's,
 * and with rc 0 the parts as crest_req_parts() gives them (request memory; spilled files go with
 * the request unless moved with crest_part_move()). */
typedef void (*crest_parts_done_cb)(crest_req_t *req, int rc, crest_part_t *parts, size_t count,
                                    void *arg);

/* crest_req_parts() for a route that streams its body: file parts over opts->spill_bytes are
 * written to their temporary file as they arrive (blocking writes on the loop thread, as there),
 * so memory holds at most spill_bytes of a part whatever the upload's size. done is called once,
 * never inside this call; on a failure a request it leaves unanswered gets crest's JSON error.
 * Returns as crest_req_multipart_stream(). */
CREST_API int crest_req_parts_stream(crest_req_t *req, const crest_multipart_opts_t *opts,
                                     crest_parts_done_cb done, void *arg);

/* Move a spilled part's file (part->path, from crest_req_parts()) to `dest` with rename(2) (same
 * file system) so that it is kept; part->path becomes NULL. Returns 0, CREST_EINVAL when the part
 * has no file, or rename's error (then the file stays where it was, removed with the request). */
CREST_API int crest_part_move(crest_req_t *req, crest_part_t *part, const char *dest);

/* ---- content negotiation (RFC 9110 12.5) ---- */

/* Which of the n media types the server offers ("application/json", "text/html"; compared
 * case-insensitively, parameters of an offer ignored) suits the request's Accept header lines
 * best: each offer takes the q-value of the most specific range that covers it (type/subtype,
 * then type/ *, then * / *; a range's parameters other than q are ignored); q=0 refuses it; the
 * highest q wins and ties go to the earlier offer. No Accept header, or only empty ones: 0. A
 * malformed element of the list is skipped. Returns -1 when no offer is acceptable (the app may
 * answer 406) or n is 0. */
CREST_API int crest_req_accepts(const crest_req_t *req, const char *const *types, size_t n);

/* The same for Accept-Language (RFC 4647 basic filtering: a range "en" covers "en-GB"; "*"
 * anything): the index of the best of the n language tags offered ("en", "fr-CA"), 0 without
 * the header, -1 when none is acceptable. */
CREST_API int crest_req_accepts_language(const crest_req_t *req, const char *const *langs,
                                         size_t n);

#endif
