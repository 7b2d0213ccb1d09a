/* The rules of static file serving that need no file system: cleaning a request path below a
 * mount, entity tags and conditional requests (RFC 9110 13), HTTP-dates (RFC 9110 5.6.7), byte
 * ranges (RFC 9110 14), Accept-Encoding (RFC 9110 12.5.3) and media types by file extension.
 *
 * They live apart from the handler (static.c) because every one of them reads bytes an attacker
 * chooses, and a mistake in path cleaning serves files outside the root. Bytes in, result out:
 * nothing here includes uv.h, touches the file system or allocates, so each function is
 * unit-tested on plain memory (tests/unit/test_cond.c) and fuzzed (fuzz/cond).
 *
 * Header values are taken as the parser hands them over (crest_str_t, not NUL-terminated; ptr may
 * be NULL when len is 0); optional whitespace around a value is ignored. */
#ifndef CREST_HTTP_COND_H
#define CREST_HTTP_COND_H

#include <stddef.h>
#include <stdint.h>

#include "crest/http.h" /* crest_str_t */

/* Percent-decode (exactly once) and check the part of a request path below a static mount
 * (e.g. "css/site.css", "a%20b/", "" for the mount root) into out (NUL-terminated).
 * Returns the decoded length, or -1 when the path must be refused (the handler answers 404):
 * any "." or ".." segment or a segment starting with "." (dotfiles, after decoding), a
 * backslash, NUL or any byte < 0x20 or 0x7f after decoding, "%2f"/"%2F" (an encoded slash),
 * a malformed escape ("%", "%4", "%zz"), invalid UTF-8 after decoding (this covers overlong
 * encodings such as %c0%ae and %e0%80%ae), a result longer than cap-1.
 * Empty segments ("a//b") collapse to one slash; a leading "/" is dropped.
 * *dir_slash is set to 1 when the input ends with "/" (asking for a directory), else 0.
 * The output is relative and canonical: "" or segments joined by single slashes, never a slash
 * at its start or end (the trailing one is reported in *dir_slash instead), so "a/b/" gives
 * "a/b" with *dir_slash 1 and "/" gives "" with *dir_slash 1. '+' is not a space in a path. */
int crest__path_clean(const char *in, size_t len, char *out, size_t cap, int *dir_slash);

/* Strong ETag from a file's identity: "\"<hex ino>-<hex size>-<hex mtime ns>\"" with quotes,
 * into out (cap >= 64; NUL-terminated); returns its length, at most 52 (0 when cap is smaller
 * than that length + 1). */
size_t crest__etag_make(uint64_t ino, uint64_t size, int64_t mtime_ns, char *out, size_t cap);

/* If-None-Match (RFC 9110 13.1.2): 1 when `header` is "*" or lists an entity tag that matches
 * `etag` by WEAK comparison (W/ prefixes ignored on both sides), else 0. A malformed list: 0. */
int crest__etag_match_any(crest_str_t header, const char *etag, size_t etag_len);

/* HTTP-date (RFC 9110 5.6.7): parse IMF-fixdate and the two obsolete forms (RFC 850, asctime)
 * into seconds since the epoch; -1 when malformed. An RFC 850 two-digit year is 19xx from 70 up
 * and 20xx below 70 (a fixed pivot: this code reads no clock). The day name must be a real one
 * but need not agree with the date; a second of 60 is accepted. Dates before 1970 come out
 * negative (and 1969-12-31 23:59:59 as -1, read as malformed, which is harmless for a file's
 * date). Format IMF-fixdate into out (cap >= 30; NUL-terminated), returns 29 (0 when cap < 30);
 * t is clamped to 1970-01-01 .. 9999-12-31 23:59:59 (no file date comes before the epoch; the
 * format holds four-digit years). */
int64_t crest__http_date_parse(const char *s, size_t len);
size_t crest__http_date_format(int64_t t, char *out, size_t cap);

/* Range (RFC 9110 14.2) against a representation of `size` bytes:
 *  1  one satisfiable range: *first..*last (inclusive, clamped to size-1) -> 206
 *  0  ignore the header, send the whole thing (absent, unknown unit, more than one range,
 *     malformed, or size 0: an empty representation has no byte range to send)
 * -1  unsatisfiable (the only range starts at or past size, or a suffix "-0") -> 416
 * The unit is case-insensitive; numbers too large for 64 bits saturate (so "bytes=0-<huge>"
 * is the whole file, "bytes=<huge>-" is unsatisfiable); empty list elements are skipped. */
int crest__range_parse(crest_str_t header, uint64_t size, uint64_t *first, uint64_t *last);

/* If-Range (RFC 9110 13.1.5): 1 when the Range applies: the header is a STRONG entity tag equal
 * to etag (strong comparison; a weak one never matches), or an HTTP-date exactly equal to
 * mtime_sec. 0 otherwise (send the whole representation), including an empty header: call it
 * only when If-Range is present. */
int crest__if_range(crest_str_t header, const char *etag, size_t etag_len, int64_t mtime_sec);

/* Accept-Encoding (RFC 9110 12.5.3): the codings the client accepts among these, as a mask
 * (a coding with q=0 is refused; "*" covers codings not named; case-insensitive tokens, q values
 * like 0.5, 1.000, spaces anywhere the grammar allows). "x-gzip" counts as gzip. A coding named
 * twice takes its highest q. An empty or malformed header (a parameter other than q, a q out of
 * the grammar): 0, identity only. */
enum { CREST__ENC_GZIP = 1, CREST__ENC_BR = 2 };
unsigned crest__accept_encoding(crest_str_t header);

/* The media type for a file name by its extension (case-insensitive), with "; charset=utf-8"
 * for text/ types, JavaScript and JSON ("text/css; charset=utf-8"); "application/octet-stream"
 * when unknown or no extension. Static string. The extension is what follows the last '.' of
 * the last path segment (src/http/mime.def, generated by scripts/gen-mime.py). */
const char *crest__mime_type(const char *name, size_t len);
/* 1 when a response of this Content-Type is worth compressing (text/..., JSON, JavaScript, XML,
 * SVG, WebAssembly, fonts that are not already compressed: ttf/otf, ...; never images other than
 * SVG, video, audio, zip, gzip, br, woff2 ...). Parameters after ';' ignored. text/event-stream
 * is 0: an event stream is sent as it is written, never held back for a compressor. */
int crest__mime_compressible(const char *ctype, size_t len);

#endif
