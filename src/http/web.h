/* The parsing rules behind include/crest/web.h that need no request: Cookie lists, Set-Cookie
 * lines, urlencoded form pairs, Accept and Accept-Language lists. Bytes in, result out, no uv.h:
 * unit-tested on plain memory (tests/unit/test_web.c) and fuzzed (fuzz/web). Header values are
 * crest_str_t as the parser hands them over (ptr may be NULL when len is 0). */
#ifndef CREST_HTTP_WEB_H
#define CREST_HTTP_WEB_H

#include <stddef.h>
#include <stdint.h>

#include "crest/buf.h"
#include "crest/web.h"

/* ---- cookie.c ---- */

/* The value of cookie `name` (nlen bytes, case-sensitive) in one Cookie header value (RFC 6265
 * 5.4 / 4.2.1: "a=1; b=2"; pairs without '=' are skipped, spaces around names and values
 * trimmed, one pair of double quotes around a value removed). 1 and *out when found (the first
 * pair of that name), else 0. */
int crest__cookie_find(crest_str_t header, const char *name, size_t nlen, crest_str_t *out);

/* Append a Set-Cookie value (without "Set-Cookie: ") for name=value with opts to b. tls: the
 * request came over TLS (for opts->secure -1). now: the current time in seconds since the epoch
 * (for Expires). Returns 0, CREST_EINVAL as crest_res_cookie() says, CREST_ENOMEM. */
int crest__cookie_format(crest_buf_t *b, const char *name, const char *value,
                         const crest_cookie_opts_t *opts, int tls, int64_t now);

/* ---- form.c ---- */

/* The next pair of an urlencoded string: consumes it from *rest and sets *name and *value to its
 * raw (still encoded) parts, skipping empty pairs. 1 when there was one, 0 at the end. */
int crest__form_next(crest_str_t *rest, crest_str_t *name, crest_str_t *value);
/* 1 when encoded name `enc` decodes (form rules) to the nlen bytes at name. */
int crest__form_name_eq(crest_str_t enc, const char *name, size_t nlen);
/* 1 when a Content-Type value is application/x-www-form-urlencoded (any parameters). */
int crest__form_is_urlencoded(crest_str_t content_type);

/* ---- negotiate.c ---- */

/* The best of the n offered media types by the Accept header lines (crest_req_accepts()): its
 * index, 0 when there is no line (nlines 0, or only empty ones), -1 when none is acceptable. */
int crest__accept_pick(const crest_str_t *lines, size_t nlines, const char *const *types, size_t n);
/* The same for Accept-Language lines and language tags (crest_req_accepts_language()). */
int crest__lang_pick(const crest_str_t *lines, size_t nlines, const char *const *langs, size_t n);

#endif
