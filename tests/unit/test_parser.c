/* Unit tests for the request head parser and the chunked decoder (src/http/parser.c).
 *
 * Every case is fed whole, one byte at a time (a growing prefix with the same `scanned`
 * variable, each prefix in a heap block of exactly its size so AddressSanitizer catches a read
 * past the end) and split in two at every offset, and must give the same verdict and the same
 * parse each way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/parser.h"

/* Small limits so the limit cases stay short. */
static const crest__http_limits_t small_limits = {
    .max_request_line = 64,
    .max_header_bytes = 256,
    .max_headers = 8,
};
static const crest__http_limits_t tiny_headers = {
    .max_request_line = 64,
    .max_header_bytes = 256,
    .max_headers = 2,
};

#define A10 "aaaaaaaaaa"
#define A50 A10 A10 A10 A10 A10
#define A200 A50 A50 A50 A50

#define OK 200         /* complete and valid: the head ends at the first empty line */
#define NEED_MORE 1000 /* incomplete: every way of feeding it answers 0 */

typedef struct {
    const char *name;
    const char *raw;
    size_t len; /* 0: strlen(raw) */
    int status; /* OK, NEED_MORE or the HTTP status it is rejected with */
    const crest__http_limits_t *limits;
    /* Checked for OK cases. */
    int method_id;
    const char *method, *path, *query;
    const char *flags; /* space-separated: v10 ka cont unk up host */
    int body_kind;
    uint64_t content_length;
    int num_headers; /* -1: not checked */
} head_case_t;

/* A valid case: name, input, limits (NULL: small_limits), then what the parse must give. */
#define GOOD(n_, raw_, lim_, id_, method_, path_, query_, flags_, body_, cl_, nh_)                 \
    {                                                                                              \
        .name = n_, .raw = raw_, .status = OK, .limits = lim_, .method_id = id_,                   \
        .method = method_, .path = path_, .query = query_, .flags = flags_, .body_kind = body_,    \
        .content_length = cl_, .num_headers = nh_                                                  \
    }

static const head_case_t head_cases[] = {
    /* ---- valid ---- */
    GOOD("simple get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", NULL, CREST_METHOD_GET, "GET", "/", "",
         "ka host", CREST__BODY_NONE, 0, 1),
    GOOD("no headers", "GET /x HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_GET, "GET", "/x", "", "ka",
         CREST__BODY_NONE, 0, 0),
    GOOD("query split", "GET /a/b?x=1&y=2 HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_GET, "GET", "/a/b",
         "x=1&y=2", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("second question mark stays in query", "GET /a?b?c HTTP/1.1\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/a", "b?c", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("empty query", "GET /a? HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_GET, "GET", "/a", "", "ka",
         CREST__BODY_NONE, 0, 0),
    GOOD("asterisk form", "OPTIONS * HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_OPTIONS, "OPTIONS", "*",
         "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("authority form", "CONNECT a.example:443 HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_CONNECT,
         "CONNECT", "a.example:443", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("absolute form", "GET http://a/b?c HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_GET, "GET", "/b",
         "c", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("absolute form, https and any case", "GET HTTPS://a.example:8443/x/y HTTP/1.1\r\n\r\n",
         NULL, CREST_METHOD_GET, "GET", "/x/y", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("absolute form without a path", "GET http://a?q HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_GET,
         "GET", "/", "q", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("another scheme stays as sent", "GET ftp://a/b HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_GET,
         "GET", "ftp://a/b", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("delete", "DELETE / HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_DELETE, "DELETE", "/", "", "ka",
         CREST__BODY_NONE, 0, 0),
    GOOD("head", "HEAD / HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_HEAD, "HEAD", "/", "", "ka",
         CREST__BODY_NONE, 0, 0),
    GOOD("patch", "PATCH / HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_PATCH, "PATCH", "/", "", "ka",
         CREST__BODY_NONE, 0, 0),
    GOOD("trace", "TRACE / HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_TRACE, "TRACE", "/", "", "ka",
         CREST__BODY_NONE, 0, 0),
    GOOD("extension method", "PURGE /x HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_OTHER, "PURGE", "/x",
         "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("extension method with tchars", "M-SEARCH * HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_OTHER,
         "M-SEARCH", "*", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("methods are case-sensitive", "get / HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_OTHER, "get",
         "/", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("prefix of a known method", "GE / HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_OTHER, "GE", "/",
         "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("http/1.0 closes by default", "GET / HTTP/1.0\r\n\r\n", NULL, CREST_METHOD_GET, "GET", "/",
         "", "v10", CREST__BODY_NONE, 0, 0),
    GOOD("http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/", "", "v10 ka", CREST__BODY_NONE, 0, 1),
    GOOD("http/1.0 keep-alive and close", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
         NULL, CREST_METHOD_GET, "GET", "/", "", "v10", CREST__BODY_NONE, 0, 1),
    GOOD("http/1.1 close", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", NULL, CREST_METHOD_GET,
         "GET", "/", "", "", CREST__BODY_NONE, 0, 1),
    GOOD("http/1.1 close in a list", "GET / HTTP/1.1\r\nConnection: foo,  CLOSE \t\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/", "", "", CREST__BODY_NONE, 0, 1),
    GOOD("http/1.1 close in a second field",
         "GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/", "", "", CREST__BODY_NONE, 0, 2),
    GOOD("closed is not close", "GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/", "", "ka", CREST__BODY_NONE, 0, 1),
    GOOD("expect 100-continue",
         "PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", NULL,
         CREST_METHOD_PUT, "PUT", "/", "", "ka cont", CREST__BODY_LENGTH, 3, 2),
    GOOD("unknown expectation", "PUT / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", NULL, CREST_METHOD_PUT,
         "PUT", "/", "", "ka unk", CREST__BODY_NONE, 0, 1),
    GOOD("upgrade",
         "GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/ws", "", "ka up", CREST__BODY_NONE, 0, 2),
    GOOD("upgrade field without connection option", "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
         NULL, CREST_METHOD_GET, "GET", "/", "", "ka", CREST__BODY_NONE, 0, 1),
    GOOD("connection upgrade without upgrade field",
         "GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n", NULL, CREST_METHOD_GET, "GET", "/", "",
         "ka", CREST__BODY_NONE, 0, 1),
    GOOD("content-length", "POST / HTTP/1.1\r\ncontent-LENGTH: 0012\r\n\r\nhello world!", NULL,
         CREST_METHOD_POST, "POST", "/", "", "ka", CREST__BODY_LENGTH, 12, 1),
    GOOD("content-length zero", "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NULL,
         CREST_METHOD_POST, "POST", "/", "", "ka", CREST__BODY_LENGTH, 0, 1),
    GOOD("identical content-length fields",
         "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", NULL,
         CREST_METHOD_POST, "POST", "/", "", "ka", CREST__BODY_LENGTH, 5, 2),
    GOOD("identical content-length list", "POST / HTTP/1.1\r\nContent-Length: 5 , 5\r\n\r\n", NULL,
         CREST_METHOD_POST, "POST", "/", "", "ka", CREST__BODY_LENGTH, 5, 1),
    GOOD("largest content-length", "POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n",
         NULL, CREST_METHOD_POST, "POST", "/", "", "ka", CREST__BODY_LENGTH, 9223372036854775807u,
         1),
    GOOD("chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", NULL,
         CREST_METHOD_POST, "POST", "/", "", "ka", CREST__BODY_CHUNKED, 0, 1),
    GOOD("chunked any case", "POST / HTTP/1.1\r\ntransfer-encoding: ChUnKeD\r\n\r\n", NULL,
         CREST_METHOD_POST, "POST", "/", "", "ka", CREST__BODY_CHUNKED, 0, 1),
    GOOD("empty list elements", "POST / HTTP/1.1\r\nTransfer-Encoding: , ,,chunked ,\r\n\r\n", NULL,
         CREST_METHOD_POST, "POST", "/", "", "ka", CREST__BODY_CHUNKED, 0, 1),
    GOOD("leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_GET, "GET",
         "/", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("pipelined second request", "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/a", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("pipelined incomplete second request", "GET /a HTTP/1.1\r\n\r\nGET /b HT", NULL,
         CREST_METHOD_GET, "GET", "/a", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("ows stripped and inner space kept",
         "GET / HTTP/1.1\r\nX: \t a  b \t\r\nY:\r\nZ:z\r\n\r\n", NULL, CREST_METHOD_GET, "GET", "/",
         "", "ka", CREST__BODY_NONE, 0, 3),
    GOOD("obs-text in value", "GET / HTTP/1.1\r\nX: D\xc3\xbcsseldorf \xff\x80\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/", "", "ka", CREST__BODY_NONE, 0, 1),
    GOOD("visible ascii target", "GET /a\"|{}`^\\~!$&'()*+,;=:@[]% HTTP/1.1\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/a\"|{}`^\\~!$&'()*+,;=:@[]%", "", "ka", CREST__BODY_NONE, 0, 0),
    GOOD("header names with tchars", "GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09Az: v\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/", "", "ka", CREST__BODY_NONE, 0, 1),
    GOOD("max headers exactly", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &tiny_headers,
         CREST_METHOD_GET, "GET", "/", "", "ka", CREST__BODY_NONE, 0, 2),
    /* 64 bytes of request line: the limit itself is allowed. */
    GOOD("request line at the limit", "GET /" A50 " HTTP/1.1\r\n\r\n", NULL, CREST_METHOD_GET,
         "GET", "/" A50, "", "ka", CREST__BODY_NONE, 0, 0),
    /* 256 bytes of head. */
    GOOD("head at the limit", "GET / HTTP/1.1\r\nX: " A200 A10 A10 A10 "aaa\r\n\r\n", NULL,
         CREST_METHOD_GET, "GET", "/", "", "ka", CREST__BODY_NONE, 0, 1),
    /* ---- incomplete ---- */
    {.name = "empty input", .raw = "", .len = 0, .status = NEED_MORE},
    {.name = "only empty lines", .raw = "\r\n\r\n\r\n", .len = 0, .status = NEED_MORE},
    {.name = "half a crlf", .raw = "\r", .len = 0, .status = NEED_MORE},
    {.name = "request line only", .raw = "GET / HTTP/1.1\r\n", .len = 0, .status = NEED_MORE},
    {.name = "headers without the empty line",
     .raw = "GET / HTTP/1.1\r\nHost: a\r\n",
     .status = NEED_MORE},
    {.name = "last cr without lf", .raw = "GET / HTTP/1.1\r\nHost: a\r\n\r", .status = NEED_MORE},
    /* Garbage that is not complete yet is only checked for limits and line endings. */
    {.name = "garbage without line end", .raw = "\x01\x02 nonsense", .len = 0, .status = NEED_MORE},

    /* ---- 400 ---- */
    {.name = "empty method", .raw = " / HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "bad method char", .raw = "G@T / HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "method with a slash", .raw = "GET/ / HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "two spaces after method", .raw = "GET  / HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "two spaces after target", .raw = "GET /  HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "tab as separator", .raw = "GET\t/ HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "missing target", .raw = "GET HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "missing version (http/0.9)", .raw = "GET /\r\n\r\n", .len = 0, .status = 400},
    {.name = "only a method", .raw = "GET\r\n\r\n", .len = 0, .status = 400},
    {.name = "trailing space after version", .raw = "GET / HTTP/1.1 \r\n\r\n", .status = 400},
    {.name = "control char in target", .raw = "GET /a\x01 HTTP/1.1\r\n\r\n", .status = 400},
    {.name = "tab in target", .raw = "GET /a\tb HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "del in target", .raw = "GET /a\x7f HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "utf-8 in target", .raw = "GET /\xce\xb4 HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "fragment in target", .raw = "GET /a?b#c HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "lowercase protocol", .raw = "GET / http/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "other protocol", .raw = "GET / RTSP/1.0\r\n\r\n", .len = 0, .status = 400},
    {.name = "two-digit version", .raw = "GET / HTTP/11.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "version without minor", .raw = "GET / HTTP/1\r\n\r\n", .len = 0, .status = 400},
    {.name = "version with letters", .raw = "GET / HTTP/1.x\r\n\r\n", .len = 0, .status = 400},
    {.name = "bare cr in request line", .raw = "GET / HT\rTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "bare cr after version", .raw = "GET / HTTP/1.1\rHost: a\r\n\r\n", .status = 400},
    {.name = "bare cr in value", .raw = "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", .status = 400},
    {.name = "bare cr ends the head", .raw = "GET / HTTP/1.1\r\nX: a\r\n\rZ", .status = 400},
    {.name = "bare lf after request line", .raw = "GET / HTTP/1.1\nHost: a\r\n\r\n", .status = 400},
    {.name = "bare lf between headers",
     .raw = "GET / HTTP/1.1\r\nA: 1\nB: 2\r\n\r\n",
     .status = 400},
    {.name = "bare lf empty line", .raw = "GET / HTTP/1.1\r\nA: 1\r\n\n", .len = 0, .status = 400},
    {.name = "only lfs", .raw = "GET / HTTP/1.1\n\n", .len = 0, .status = 400},
    {.name = "lf before request line", .raw = "\nGET / HTTP/1.1\r\n\r\n", .len = 0, .status = 400},
    {.name = "space before colon", .raw = "GET / HTTP/1.1\r\nHost : a\r\n\r\n", .status = 400},
    {.name = "tab before colon", .raw = "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", .status = 400},
    {.name = "empty name", .raw = "GET / HTTP/1.1\r\n: a\r\n\r\n", .len = 0, .status = 400},
    {.name = "no colon", .raw = "GET / HTTP/1.1\r\nHost\r\n\r\n", .len = 0, .status = 400},
    {.name = "bad name char", .raw = "GET / HTTP/1.1\r\nFo@: a\r\n\r\n", .len = 0, .status = 400},
    {.name = "utf-8 in name", .raw = "GET / HTTP/1.1\r\nF\xc3\xbc: a\r\n\r\n", .status = 400},
    {.name = "obs-fold", .raw = "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", .len = 0, .status = 400},
    {.name = "obs-fold with tab", .raw = "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", .status = 400},
    {.name = "whitespace before first field",
     .raw = "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
     .status = 400},
    {.name = "nul in value", .raw = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", .len = 26, .status = 400},
    {.name = "control char in value", .raw = "GET / HTTP/1.1\r\nX: a\x0c b\r\n\r\n", .status = 400},
    {.name = "del in value", .raw = "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", .len = 0, .status = 400},
    {.name = "content-length not a number",
     .raw = "POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
     .status = 400},
    {.name = "content-length empty",
     .raw = "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
     .status = 400},
    {.name = "content-length with a sign",
     .raw = "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
     .status = 400},
    {.name = "content-length with a space",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 4 2\r\n\r\n",
     .status = 400},
    {.name = "content-length hex",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
     .status = 400},
    {.name = "content-length overflow",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n",
     .status = 400},
    {.name = "content-length huge",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 1000000000000000000000\r\n\r\n",
     .status = 400},
    {.name = "content-length differing fields",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
     .status = 400},
    {.name = "content-length differing list",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
     .status = 400},
    {.name = "content-length empty element",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 5,,5\r\n\r\n",
     .status = 400},
    {.name = "content-length trailing comma",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n",
     .status = 400},
    {.name = "transfer-encoding and content-length",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
     .status = 400},
    {.name = "content-length and transfer-encoding",
     .raw = "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 400},
    {.name = "transfer-encoding in http/1.0",
     .raw = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 400},
    {.name = "chunked twice in a list",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
     .status = 400},
    {.name = "chunked twice over fields",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 400},
    {.name = "chunked with a parameter",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked;a=b\r\n\r\n",
     .status = 400},
    {.name = "empty transfer-encoding",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
     .status = 400},
    {.name = "transfer coding not a token",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: g\"z, chunked\r\n\r\n",
     .status = 400},
    {.name = "two host fields",
     .raw = "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
     .status = 400},

    /* ---- 414 ---- */
    {.name = "request line over the limit", .raw = "GET /" A50 "a HTTP/1.1\r\n\r\n", .status = 414},
    {.name = "request line over the limit, incomplete", .raw = "GET /" A50 A10 A10, .status = 414},
    {.name = "request line over the limit after empty lines",
     .raw = "\r\n\r\nGET /" A50 "a HTTP/1.1\r\n\r\n",
     .status = 414},

    /* ---- 431 ---- */
    {.name = "too many headers",
     .raw = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
     .status = 431,
     .limits = &tiny_headers},
    {.name = "head over the limit",
     .raw = "GET / HTTP/1.1\r\nX: " A200 A10 A10 A10 "aaaa\r\n\r\n",
     .status = 431},
    {.name = "head over the limit, incomplete",
     .raw = "GET / HTTP/1.1\r\nX: " A200 A50,
     .status = 431},
    {.name = "endless empty lines",
     .raw = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r"
            "\n\r\n"
            "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r"
            "\n\r\n"
            "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r"
            "\n\r\n"
            "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r"
            "\n\r\n"
            "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r"
            "\n\r\n"
            "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r"
            "\n\r\n",
     .status = 431},

    /* ---- 501 ---- */
    {.name = "unknown transfer coding",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: pigeons\r\n\r\n",
     .status = 501},
    {.name = "gzip only",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
     .status = 501},
    {.name = "chunked before gzip",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
     .status = 501},
    {.name = "chunked then gzip over fields",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
     .status = 501},
    {.name = "gzip then chunked: the body would reach the app still gzip'ed",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     .status = 501},
    {.name = "gzip then chunked over two fields",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
     .status = 501},
    {.name = "chunkedchunked",
     .raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunkedchunked\r\n\r\n",
     .status = 501},

    /* ---- 505 ---- */
    {.name = "http/2.0", .raw = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", .len = 0, .status = 505},
    {.name = "http/1.2", .raw = "GET / HTTP/1.2\r\n\r\n", .len = 0, .status = 505},
    {.name = "http/0.9", .raw = "GET / HTTP/0.9\r\n\r\n", .len = 0, .status = 505},
    {.name = "http/5.6", .raw = "GET / HTTP/5.6\r\n\r\n", .len = 0, .status = 505},
};

static size_t case_len(const char *raw, size_t len) {
    return len ? len : strlen(raw);
}

/* Where a complete head ends: after the first empty line following the request line. */
static int expected_head_len(const char *raw, size_t len) {
    size_t i = 0;
    while (i + 1 < len && raw[i] == '\r' && raw[i + 1] == '\n')
        i += 2;
    for (; i + 3 < len; i++) {
        if (memcmp(raw + i, "\r\n\r\n", 4) == 0)
            return (int)(i + 4);
    }
    return -1;
}

static int want_result(const head_case_t *tc, size_t len) {
    if (tc->status == OK)
        return expected_head_len(tc->raw, len);
    if (tc->status == NEED_MORE)
        return 0;
    return -tc->status;
}

static int has_flag(const char *flags, const char *flag) {
    size_t n = strlen(flag);
    for (const char *p = flags; p && *p;) {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && memcmp(p, flag, n) == 0)
            return 1;
        p = e;
    }
    return 0;
}

static void assert_str(crest_str_t s, const char *want) {
    char got[256];
    size_t n = s.len < sizeof(got) - 1 ? s.len : sizeof(got) - 1;
    memcpy(got, s.ptr, n);
    got[n] = 0;
    assert_string_equal(got, want);
}

/* The same parse from two copies of the input: equal offsets, lengths and flags. */
static void assert_str_same(crest_str_t a, const char *ba, crest_str_t b, const char *bb) {
    assert_int_equal(a.len, b.len);
    if (a.len && a.ptr != b.ptr) /* the same pointer: a static "/" (absolute form, no path) */
        assert_int_equal(a.ptr - ba, b.ptr - bb);
}

static void assert_head_same(const crest__http_head_t *a, const char *ba,
                             const crest__http_head_t *b, const char *bb) {
    assert_str_same(a->method, ba, b->method, bb);
    assert_str_same(a->target, ba, b->target, bb);
    assert_str_same(a->path, ba, b->path, bb);
    assert_str_same(a->query, ba, b->query, bb);
    assert_int_equal(a->method_id, b->method_id);
    assert_int_equal(a->version_minor, b->version_minor);
    assert_int_equal(a->num_headers, b->num_headers);
    for (size_t i = 0; i < a->num_headers; i++) {
        assert_str_same(a->headers[i].name, ba, b->headers[i].name, bb);
        assert_str_same(a->headers[i].value, ba, b->headers[i].value, bb);
    }
    assert_int_equal(a->body_kind, b->body_kind);
    assert_int_equal(a->content_length, b->content_length);
    assert_int_equal(a->keep_alive, b->keep_alive);
    assert_int_equal(a->expect_continue, b->expect_continue);
    assert_int_equal(a->expect_unknown, b->expect_unknown);
    assert_int_equal(a->upgrade, b->upgrade);
    assert_int_equal(a->has_host, b->has_host);
}

/* Parses raw[0..len) fed as the given prefix lengths (the last one is len), each prefix copied
 * into a block of exactly its size. Returns the first nonzero result, or 0. *owner receives the
 * block the head points into (free it). */
static int feed_prefixes(const char *raw, const size_t *cuts, size_t ncuts,
                         const crest__http_limits_t *lim, crest__http_head_t *head, char **owner) {
    size_t scanned = 0;
    *owner = NULL;
    for (size_t i = 0; i < ncuts; i++) {
        char *b = malloc(cuts[i] ? cuts[i] : 1);
        assert_non_null(b);
        memcpy(b, raw, cuts[i]);
        int r = crest__http_parse_head(b, cuts[i], lim, &scanned, head);
        if (r != 0) {
            *owner = b;
            return r;
        }
        free(b);
    }
    return 0;
}

static void run_head_case(const head_case_t *tc) {
    const crest__http_limits_t *lim = tc->limits ? tc->limits : &small_limits;
    size_t len = case_len(tc->raw, tc->len);
    int want = want_result(tc, len);
    static crest__http_head_t whole, part;
    char *wb, *pb;

    int r = feed_prefixes(tc->raw, &len, 1, lim, &whole, &wb);
    assert_int_equal(r, want);

    if (tc->status == OK) {
        assert_str(whole.method, tc->method);
        assert_int_equal(whole.method_id, tc->method_id);
        assert_str(whole.path, tc->path);
        assert_str(whole.query, tc->query);
        assert_int_equal(whole.version_minor, has_flag(tc->flags, "v10") ? 0 : 1);
        assert_int_equal(whole.keep_alive, has_flag(tc->flags, "ka"));
        assert_int_equal(whole.expect_continue, has_flag(tc->flags, "cont"));
        assert_int_equal(whole.expect_unknown, has_flag(tc->flags, "unk"));
        assert_int_equal(whole.upgrade, has_flag(tc->flags, "up"));
        assert_int_equal(whole.has_host, has_flag(tc->flags, "host"));
        assert_int_equal(whole.body_kind, tc->body_kind);
        assert_int_equal(whole.content_length, tc->content_length);
        if (tc->num_headers >= 0)
            assert_int_equal(whole.num_headers, (size_t)tc->num_headers);
        /* The path lies within the target (after the scheme and authority of the absolute
         * form), or is the static "/" of an absolute form without one. */
        int inside = whole.path.ptr >= whole.target.ptr &&
                     whole.path.ptr + whole.path.len <= whole.target.ptr + whole.target.len;
        assert_true(inside || (whole.path.len == 1 && whole.path.ptr[0] == '/'));
    }

    /* One byte at a time. */
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i <= len; i++)
        cuts[i] = i;
    r = feed_prefixes(tc->raw, cuts, len + 1, lim, &part, &pb);
    assert_int_equal(r, want);
    if (want > 0)
        assert_head_same(&whole, wb, &part, pb);
    free(pb);

    /* Split in two at every offset. */
    for (size_t k = 0; k <= len; k++) {
        size_t two[2] = {k, len};
        r = feed_prefixes(tc->raw, two, 2, lim, &part, &pb);
        assert_int_equal(r, want);
        if (want > 0)
            assert_head_same(&whole, wb, &part, pb);
        free(pb);
    }
    free(cuts);
    free(wb);
}

static void test_head_case(void **state) {
    run_head_case(*state);
}

/* The stored header fields, in order, with their values stripped of OWS. */
static void test_head_fields(void **state) {
    (void)state;
    const char raw[] = "\r\nPOST /p?q HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\n"
                       "X-Pad: \t padded value \t\r\nContent-Length: 4\r\n\r\nbody";
    crest__http_head_t head;
    size_t scanned = 0;
    int r = crest__http_parse_head(raw, sizeof(raw) - 1, &small_limits, &scanned, &head);
    assert_int_equal(r, (int)(sizeof(raw) - 1 - 4));
    assert_str(head.target, "/p?q");
    assert_int_equal(head.num_headers, 4);
    assert_str(head.headers[0].name, "Host");
    assert_str(head.headers[0].value, "example.com");
    assert_str(head.headers[1].name, "X-Empty");
    assert_str(head.headers[1].value, "");
    assert_str(head.headers[2].name, "X-Pad");
    assert_str(head.headers[2].value, "padded value");
    assert_str(head.headers[3].name, "Content-Length");
    assert_str(head.headers[3].value, "4");
    assert_true(head.has_host);
    assert_int_equal(head.body_kind, CREST__BODY_LENGTH);
    assert_int_equal(head.content_length, 4);
}

/* max_headers is capped by CREST__MAX_HEADERS whatever the limits say. */
static void test_head_max_headers_cap(void **state) {
    (void)state;
    static char raw[CREST__MAX_HEADERS * 8 + 64];
    crest__http_limits_t lim = {8192, sizeof(raw), 100000};
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\n");
        for (int i = 0; i < CREST__MAX_HEADERS + extra; i++)
            n += (size_t)snprintf(raw + n, sizeof(raw) - n, "H%d: v\r\n", i);
        n += (size_t)snprintf(raw + n, sizeof(raw) - n, "\r\n");
        crest__http_head_t head;
        size_t scanned = 0;
        int r = crest__http_parse_head(raw, n, &lim, &scanned, &head);
        assert_int_equal(r, extra ? -431 : (int)n);
    }
}

static void test_method_id(void **state) {
    (void)state;
#define CREST_METHOD(id, token)                                                                    \
    assert_int_equal(crest__http_method_id(token, sizeof(token) - 1), CREST_METHOD_##id);
#include "crest/method.def"
#undef CREST_METHOD
    assert_int_equal(crest__http_method_id("GETS", 4), CREST_METHOD_OTHER);
    assert_int_equal(crest__http_method_id("", 0), CREST_METHOD_OTHER);
    assert_int_equal(crest__http_method_id("post", 4), CREST_METHOD_OTHER);
}

static void test_str_ieq(void **state) {
    (void)state;
    assert_true(crest__str_ieq((crest_str_t){"Content-LENGTH", 14}, "content-length"));
    assert_true(crest__str_ieq((crest_str_t){"", 0}, ""));
    assert_false(crest__str_ieq((crest_str_t){"close", 4}, "close"));
    assert_false(crest__str_ieq((crest_str_t){"closed", 6}, "close"));
    /* Only ASCII letters fold: '@' is not '`' and 0xC0 is not 0xE0. */
    assert_false(crest__str_ieq((crest_str_t){"@", 1}, "`"));
    assert_false(crest__str_ieq((crest_str_t){"\xc0", 1}, "\xe0"));
}

/* ---- chunked ---- */

#define CH_OK 1
#define CH_MORE 0
#define CH_BAD (-400)

typedef struct {
    const char *name;
    const char *raw;
    int want;           /* CH_OK, CH_MORE or CH_BAD */
    const char *body;   /* decoded body for CH_OK and CH_MORE */
    size_t rest;        /* bytes after the end that belong to the next request (CH_OK) */
    size_t max_line;    /* 0: default */
    size_t max_trailer; /* 0: default */
} chunked_case_t;

static const chunked_case_t chunked_cases[] = {
    {.name = "one chunk", .raw = "5\r\nhello\r\n0\r\n\r\n", .want = CH_OK, .body = "hello"},
    {.name = "two chunks",
     .raw = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
     .want = CH_OK,
     .body = "hello world"},
    {.name = "empty body", .raw = "0\r\n\r\n", .want = CH_OK, .body = ""},
    {.name = "hex sizes",
     .raw = "a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n",
     .want = CH_OK,
     .body = "0123456789abcdefghij"},
    {.name = "leading zeros",
     .raw = "0005\r\nhello\r\n000\r\n\r\n",
     .want = CH_OK,
     .body = "hello"},
    {.name = "crlf inside data",
     .raw = "4\r\n\r\n\r\n\r\n0\r\n\r\n",
     .want = CH_OK,
     .body = "\r\n\r\n"},
    {.name = "next request follows",
     .raw = "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
     .want = CH_OK,
     .body = "x",
     .rest = 18},
    {.name = "extensions",
     .raw = "5;a;b=c;dd=ee\r\nhello\r\n0;last\r\n\r\n",
     .want = CH_OK,
     .body = "hello"},
    {.name = "extensions with bws",
     .raw = "5 ;a = b ; c\t;d\r\nhello\r\n0\r\n\r\n",
     .want = CH_OK,
     .body = "hello"},
    {.name = "quoted extension",
     .raw = "5;a=\"I \\\"love\\\"; \\\\ext\\\\\";b=\"\"\r\nhello\r\n0\r\n\r\n",
     .want = CH_OK,
     .body = "hello"},
    {.name = "quoted extension then bws",
     .raw = "5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n",
     .want = CH_OK,
     .body = "hello"},
    {.name = "trailers",
     .raw = "5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n",
     .want = CH_OK,
     .body = "hello"},
    {.name = "trailer with empty value", .raw = "0\r\nX:\r\n\r\n", .want = CH_OK, .body = ""},
    {.name = "largest chunk size header",
     .raw = "4000000000000000\r\nab",
     .want = CH_MORE,
     .body = "ab"},
    {.name = "incomplete size", .raw = "5", .want = CH_MORE, .body = ""},
    {.name = "incomplete data", .raw = "5\r\nhel", .want = CH_MORE, .body = "hel"},
    {.name = "incomplete after data", .raw = "5\r\nhello\r", .want = CH_MORE, .body = "hello"},
    {.name = "missing last chunk", .raw = "3\r\nfoo\r\n", .want = CH_MORE, .body = "foo"},
    {.name = "missing final crlf", .raw = "0\r\n", .want = CH_MORE, .body = ""},
    {.name = "incomplete trailer", .raw = "0\r\nVary: *\r\n", .want = CH_MORE, .body = ""},
    {.name = "no size", .raw = "\r\nhello\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "bad hex", .raw = "g\r\nhello\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "sign", .raw = "+5\r\nhello\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "0x prefix", .raw = "0x5\r\nhello\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "overflow", .raw = "4000000000000001\r\n", .want = CH_BAD},
    {.name = "overflow long", .raw = "ffffffffffffffffff\r\n", .want = CH_BAD},
    {.name = "space after size", .raw = "a \r\n0123456789\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "garbage after size", .raw = "2 erfrferferf\r\naa\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "empty extension name", .raw = "2;\r\naa\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "extension name then space", .raw = "2;a \r\naa\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "extension value then space", .raw = "2;a=b \r\naa\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "empty extension value", .raw = "2;a=\r\naa\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "bad extension char", .raw = "2;a@b\r\naa\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "unbalanced quote",
     .raw = "5;a=\"abc\";b=\"def; ghi\r\nhello\r\n0\r\n\r\n",
     .want = CH_BAD},
    {.name = "control char in quoted value",
     .raw = "5;a=\"a\x01\"\r\nhello\r\n0\r\n\r\n",
     .want = CH_BAD},
    {.name = "bytes after quoted value", .raw = "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "bare cr after size", .raw = "5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "bare lf after size", .raw = "5\nhello\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "data not followed by crlf", .raw = "5\r\nABCDE0\r\n\r\n", .want = CH_BAD},
    {.name = "data followed by lf", .raw = "5\r\nhello\n0\r\n\r\n", .want = CH_BAD},
    {.name = "data followed by cr cr", .raw = "5\r\nhello\r\r0\r\n\r\n", .want = CH_BAD},
    {.name = "data too long", .raw = "3\r\nhello\r\n0\r\n\r\n", .want = CH_BAD},
    {.name = "trailer obs-fold", .raw = "0\r\nA: b\r\n c\r\n\r\n", .want = CH_BAD},
    {.name = "trailer without colon", .raw = "0\r\nA\r\n\r\n", .want = CH_BAD},
    {.name = "trailer empty name", .raw = "0\r\n: b\r\n\r\n", .want = CH_BAD},
    {.name = "trailer space before colon", .raw = "0\r\nA : b\r\n\r\n", .want = CH_BAD},
    {.name = "trailer control char", .raw = "0\r\nA: b\x01\r\n\r\n", .want = CH_BAD},
    {.name = "trailer bare lf", .raw = "0\r\nA: b\n\r\n", .want = CH_BAD},
    {.name = "final bare lf", .raw = "0\r\n\n", .want = CH_BAD},
    {.name = "final cr then garbage", .raw = "0\r\n\rx", .want = CH_BAD},
    /* Line limits: the size line counts extensions, not the CRLF. */
    {.name = "size line at the limit",
     .raw = "5;aaaaaaaaaa\r\nhello\r\n0\r\n\r\n",
     .want = CH_OK,
     .body = "hello",
     .rest = 0,
     .max_line = 12},
    {.name = "size line over the limit",
     .raw = "5;aaaaaaaaaaa\r\nhello\r\n0\r\n\r\n",
     .want = CH_BAD,
     .body = NULL,
     .rest = 0,
     .max_line = 12},
    {.name = "long zero padding",
     .raw = "00000000000005\r\nhello\r\n0\r\n\r\n",
     .want = CH_BAD,
     .body = NULL,
     .rest = 0,
     .max_line = 12},
    {.name = "trailer line over the limit",
     .raw = "0\r\nX: aaaaaaaaaa\r\n\r\n",
     .want = CH_BAD,
     .body = NULL,
     .rest = 0,
     .max_line = 12},
    {.name = "trailer line at the limit",
     .raw = "0\r\nX: aaaaaaaaa\r\n\r\n",
     .want = CH_OK,
     .body = "",
     .rest = 0,
     .max_line = 12},
    /* The trailer budget counts field lines with their CRLF, not the final empty line. */
    {.name = "trailer section at the limit",
     .raw = "0\r\nA: 1\r\nB: 2\r\n\r\n",
     .want = CH_OK,
     .body = "",
     .rest = 0,
     .max_line = 0,
     .max_trailer = 12},
    {.name = "trailer section over the limit",
     .raw = "0\r\nA: 1\r\nB: 23\r\n\r\n",
     .want = CH_BAD,
     .body = NULL,
     .rest = 0,
     .max_line = 0,
     .max_trailer = 12},
};

/* Decodes raw fed in pieces ending at the given cuts (the last one is len), each piece in a
 * block of exactly its size. Returns the final result; the decoded bytes are appended to out,
 * *used is the input consumed in total. */
static int decode_pieces(const chunked_case_t *tc, const size_t *cuts, size_t ncuts, char *out,
                         size_t *out_len, size_t *used) {
    crest__http_chunked_t c;
    crest__http_chunked_init(&c, tc->max_line, tc->max_trailer);
    size_t prev = 0;
    *out_len = 0;
    *used = 0;
    for (size_t i = 0; i < ncuts; i++) {
        size_t n = cuts[i] - prev;
        char *b = malloc(n ? n : 1);
        assert_non_null(b);
        memcpy(b, tc->raw + prev, n);
        size_t len = n, consumed = 0;
        int r = crest__http_chunked_decode(&c, b, &len, &consumed);
        assert_true(consumed <= n);
        assert_true(len <= consumed);
        if (r >= 0) {
            memcpy(out + *out_len, b, len);
            *out_len += len;
        }
        free(b);
        *used += consumed;
        if (r != 0)
            return r;
        assert_int_equal(consumed, n); /* "need more" means every byte was used */
        prev = cuts[i];
    }
    return 0;
}

static void check_chunked_result(const chunked_case_t *tc, size_t len, int r, const char *out,
                                 size_t out_len, size_t used) {
    assert_int_equal(r, tc->want);
    if (tc->want == CH_BAD)
        return;
    assert_int_equal(out_len, strlen(tc->body));
    assert_memory_equal(out, tc->body, out_len);
    assert_int_equal(used, len - tc->rest);
}

static void test_chunked_case(void **state) {
    {
        const chunked_case_t *tc = *state;
        size_t len = strlen(tc->raw), out_len, used;
        char *out = malloc(len + 1);
        size_t *cuts = malloc((len + 1) * sizeof(*cuts));
        assert_non_null(out);
        assert_non_null(cuts);
        int r = decode_pieces(tc, &len, 1, out, &out_len, &used);
        check_chunked_result(tc, len, r, out, out_len, used);

        for (size_t k = 0; k < len; k++)
            cuts[k] = k + 1;
        r = decode_pieces(tc, cuts, len, out, &out_len, &used);
        check_chunked_result(tc, len, r, out, out_len, used);

        for (size_t k = 0; k <= len; k++) {
            size_t two[2] = {k, len};
            r = decode_pieces(tc, two, 2, out, &out_len, &used);
            check_chunked_result(tc, len, r, out, out_len, used);
        }
        free(cuts);
        free(out);
    }
}

/* A zeroed decoder works, with the default limits, and decodes in place. */
static void test_chunked_zeroed_in_place(void **state) {
    (void)state;
    char buf[] = "3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT";
    crest__http_chunked_t c;
    memset(&c, 0, sizeof(c));
    size_t len = sizeof(buf) - 1, consumed = 0;
    assert_int_equal(crest__http_chunked_decode(&c, buf, &len, &consumed), 1);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "abcde", 5);
    assert_int_equal(consumed, sizeof(buf) - 1 - 4);
    assert_memory_equal(buf + consumed, "NEXT", 4);
    /* Once done it stays done and consumes nothing more. */
    len = 4;
    assert_int_equal(crest__http_chunked_decode(&c, buf + consumed, &len, &consumed), 1);
    assert_int_equal(len, 0);
    assert_int_equal(consumed, 0);
}

/* The default line limit is 4 KiB. */
static void test_chunked_default_line_limit(void **state) {
    (void)state;
    static char buf[8192];
    for (size_t n = 4096; n <= 4097; n++) {
        memset(buf, '0', n);
        memcpy(buf + n, "\r\n\r\n", 4);
        crest__http_chunked_t c;
        memset(&c, 0, sizeof(c));
        size_t len = n + 4, consumed;
        assert_int_equal(crest__http_chunked_decode(&c, buf, &len, &consumed),
                         n == 4096 ? 1 : -400);
    }
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* One cmocka test per table row, so a failure names its case. */
int main(void) {
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_head_fields),
        cmocka_unit_test(test_head_max_headers_cap),
        cmocka_unit_test(test_method_id),
        cmocka_unit_test(test_str_ieq),
        cmocka_unit_test(test_chunked_zeroed_in_place),
        cmocka_unit_test(test_chunked_default_line_limit),
    };
    static char names[COUNT(head_cases) + COUNT(chunked_cases)][128];
    size_t n = 0, total = COUNT(fixed) + COUNT(head_cases) + COUNT(chunked_cases);
    struct CMUnitTest *tests = calloc(total, sizeof(*tests));
    if (!tests)
        return 1;
    for (size_t i = 0; i < COUNT(head_cases); i++, n++) {
        snprintf(names[n], sizeof(names[n]), "head: %s", head_cases[i].name);
        tests[n] =
            (struct CMUnitTest){names[n], test_head_case, NULL, NULL, (void *)&head_cases[i]};
    }
    for (size_t i = 0; i < COUNT(chunked_cases); i++, n++) {
        snprintf(names[n], sizeof(names[n]), "chunked: %s", chunked_cases[i].name);
        tests[n] =
            (struct CMUnitTest){names[n], test_chunked_case, NULL, NULL, (void *)&chunked_cases[i]};
    }
    for (size_t i = 0; i < COUNT(fixed); i++)
        tests[n++] = fixed[i];
    int failed = _cmocka_run_group_tests("parser", tests, n, NULL, NULL);
    free(tests);
    return failed;
}
