/* Serving: static files from a folder, and compression of responses.
 *
 * Both are set up on the app before crest_app_run(), from the thread that builds it. */
#ifndef CREST_STATIC_H
#define CREST_STATIC_H

#include <stddef.h>
#include <stdint.h>

#include "crest/app.h"
#include "crest/export.h"

/* ---- static files ---- */

typedef struct {
    /* Cache-Control of every file answer; default "no-cache" (the browser revalidates, which the
     * ETag makes a 304 without a body). NULL: no Cache-Control. */
    const char *cache_control;
    /* The file served for a directory ("/docs/" -> "/docs/index.html"); default "index.html".
     * NULL: a directory is 404. A directory asked without its trailing slash is redirected
     * (301) to it, so that relative links in the page resolve. */
    const char *index;
    /* Nonzero (default): "FILE.br" and "FILE.gz" next to FILE are sent instead of it to a client
     * that accepts that encoding (Content-Encoding, Vary: Accept-Encoding). */
    int precompressed;
    /* Open files kept per loop thread (revalidated at most once a second each); default 1024.
     * The descriptors they hold (files over cache_file_bytes) take at most half of the eighth of
     * the open-file limit crest keeps back from connections, shared by the loop threads. */
    size_t cache_files;
    /* Files up to this size are kept in memory by that cache and sent without a read; larger
     * ones go out with sendfile (cleartext HTTP/1.1) or are read in slices; default 16 KiB. */
    size_t cache_file_bytes;
} crest_static_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_static_opts_default(crest_static_opts_t *opts);

/* Serve the files below folder `root` at path `prefix` ("/" or "/static"): GET and HEAD of
 * "/static/a/b.css" send root/a/b.css. Routes win: a mount answers only requests no route matched
 * (before the not-found handler), so a mount at "/" serves whatever the app's routes do not.
 * Answers: 200, 206 (one byte range), 304 (If-None-Match, If-Modified-Since), 416, 404 for
 * anything missing, outside root (any encoding of "..", a symlink that leaves it, NUL) or whose
 * name starts with a dot. `root` is resolved now (realpath); `opts` may be NULL for the
 * defaults; strings are copied. Returns 0, CREST_ENOENT / CREST_ENOTDIR for a root that is not a
 * folder, CREST_EINVAL for a malformed prefix, CREST_EBUSY once running, CREST_ENOMEM. */
CREST_API int crest_app_static(crest_app_t *app, const char *prefix, const char *root,
                               const crest_static_opts_t *opts);

/* ---- compression ---- */

typedef struct {
    int level;       /* zlib level 1-9; default 5 */
    size_t min_size; /* smaller bodies are sent as they are; default 1024 */
} crest_compress_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_compress_opts_default(crest_compress_opts_t *opts);

/* Compress responses under `prefix` (NULL or "/" for all) with gzip for clients that accept it:
 * bodies of a compressible type (text/..., JSON, JavaScript, XML, SVG, ...) of at least min_size,
 * complete or streamed; never a range, a 204/304, a body that already has a Content-Encoding, or
 * an event stream. Adds Vary: Accept-Encoding to every answer of a compressible type. A large
 * body is compressed in slices between which the loop serves others. Middleware: it applies to
 * requests from the point in the chain where it is added. Returns as crest_app_use(). */
CREST_API int crest_app_compress(crest_app_t *app, const char *prefix,
                                 const crest_compress_opts_t *opts);

#endif
