/* HTTP/1.1 request head parser and chunked body decoder (RFC 9112, RFC 9110).
 *
 * Hand-written rather than taken from llhttp: the parser is the core of the runtime, it must parse
 * in place without callbacks or copies, and it is stricter than llhttp's strict mode where RFC 9112
 * says a server should reject (see tests/unit/test_corpus.c for the cases where crest and llhttp
 * disagree, each with its reason).
 *
 * Choices worth knowing:
 * - Lines end with CRLF only. A bare LF is rejected with 400 like a bare CR, as llhttp does in
 *   strict mode ("Missing expected CR after header value", "Only LFs present"): accepting bare LF
 *   where a proxy in front of us does not is a classic request smuggling vector.
 * - The end of the head is found by a scan that runs before any parsing and remembers its
 *   position in *scanned, so a head arriving one byte at a time costs linear time. The scan
 *   already rejects bare CR and bare LF and enforces the 414 and 431 limits; everything else is
 *   checked once the whole head is there.
 * - A '#' in the request-target is rejected: origin-form has no fragment (RFC 9112 3.2) and user
 *   agents never send one, so a '#' is either a broken client or an attempt to make the path we
 *   route on differ from what a proxy saw. llhttp accepts it.
 * - Any token is a method (RFC 9110 9.1); unknown ones are CREST_METHOD_OTHER and the router
 *   answers them. llhttp rejects methods it does not know.
 */
#include "parser.h"
#include "codec/hex.h"

#include <limits.h>
#include <string.h>

int crest__str_ieq(crest_str_t a, const char *lower) {
    size_t n = strlen(lower);
    if (a.len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a.ptr[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + ('a' - 'A'));
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

int crest__http_method_id(const char *s, size_t len) {
    static const struct {
        const char *token;
        size_t len;
        int id;
    } methods[] = {
#define CREST_METHOD(id, token) {token, sizeof(token) - 1, CREST_METHOD_##id},
#include "crest/method.def"
#undef CREST_METHOD
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        /* Methods are case-sensitive (RFC 9110 9.1): "get" is an unknown method, not GET. */
        if (methods[i].len == len && memcmp(methods[i].token, s, len) == 0)
            return methods[i].id;
    }
    return CREST_METHOD_OTHER;
}

/* tchar from RFC 9110 5.6.2. */
static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return 1;
    default:
        return 0;
    }
}

/* field-vchar / SP / HTAB (RFC 9110 5.5); obs-text (0x80-0xFF) is allowed because real clients
 * send Latin-1 and UTF-8 in values, while NUL, CTLs and DEL never belong there. */
static int is_value_char(unsigned char c) {
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(unsigned char c) {
    return c == ' ' || c == '\t';
}

/* ---- finding the end of the head ----
 *
 * *scanned packs the scan position (low half of the bits) with what the scan has to remember
 * across calls (high half): whether it is still in the empty lines before the request line, in
 * the request line (and where that started, for the 414 limit), or in the header lines. Keeping
 * the request line's start avoids rescanning leading empty lines on every call, which would make
 * a trickle of CRLFs quadratic. Head lengths are clamped so both halves fit (2^32 bytes on 64-bit
 * platforms, 64 KiB on 32-bit ones). */
#define SCAN_BITS (sizeof(size_t) * CHAR_BIT / 2)
#define SCAN_MASK (((size_t)1 << SCAN_BITS) - 1)
enum {
    SCAN_LEADING = 0, /* only CRLF pairs so far */
    SCAN_HEADERS = 1, /* past the request line */
    SCAN_FIRST = 2,   /* in the request line, which starts at aux - SCAN_FIRST */
};

/* Returns the head length when the terminating empty line was found, 0 when more bytes are
 * needed, or a negated status. Every decision depends only on the byte at a position and those
 * before it, never on how much was available, so feeding the head in pieces gives the same
 * verdict as feeding it whole. */
static int scan_head(const char *buf, size_t len, size_t max_line, size_t max_head,
                     size_t *scanned) {
    size_t i = *scanned & SCAN_MASK;
    size_t aux = *scanned >> SCAN_BITS;

    while (i < len) {
        unsigned char c = (unsigned char)buf[i];
        if (i >= max_head)
            return -431;
        /* Every LF we accept is consumed together with the CR before it. */
        if (c == '\n')
            return -400;
        if (c != '\r') {
            if (aux == SCAN_LEADING)
                aux = SCAN_FIRST + i;
            if (aux >= SCAN_FIRST && i - (aux - SCAN_FIRST) >= max_line)
                return -414;
            i++;
            continue;
        }
        if (i + 1 >= max_head)
            return -431;
        if (i + 1 == len)
            break; /* come back to this CR when its LF may be there */
        if (buf[i + 1] != '\n')
            return -400;
        /* A CRLF at the start of a header line is the empty line that ends the head. */
        if (aux == SCAN_HEADERS && buf[i - 1] == '\n')
            return (int)(i + 2);
        if (aux >= SCAN_FIRST)
            aux = SCAN_HEADERS;
        i += 2;
    }
    *scanned = i | (aux << SCAN_BITS);
    return 0;
}

/* ---- parsing the complete head ---- */

/* Walks a comma-separated list (RFC 9110 5.6.1), calling back with each element without its
 * surrounding whitespace. Empty elements are skipped, as the RFC asks recipients to do. Returns
 * the first nonzero callback result. */
typedef int (*element_cb)(crest_str_t element, void *arg);

static int each_element(crest_str_t v, element_cb cb, void *arg) {
    size_t i = 0;
    while (i <= v.len) {
        size_t start = i;
        while (i < v.len && v.ptr[i] != ',')
            i++;
        size_t end = i;
        while (start < end && is_ows((unsigned char)v.ptr[start]))
            start++;
        while (end > start && is_ows((unsigned char)v.ptr[end - 1]))
            end--;
        if (end > start) {
            int r = cb((crest_str_t){v.ptr + start, end - start}, arg);
            if (r)
                return r;
        }
        i++; /* past the comma, or past the end */
    }
    return 0;
}

typedef struct {
    int have_cl;
    uint64_t cl;
    int te_fields;    /* Transfer-Encoding fields seen */
    int te_codings;   /* transfer codings seen across all of them */
    int te_chunked;   /* chunked seen */
    int last_chunked; /* the last coding seen is chunked */
    int conn_close, conn_keep_alive, conn_upgrade;
    int has_upgrade;
    int hosts;
    int expect_continue, expect_unknown;
} derived_t;

/* Content-Length = 1*DIGIT. A list of identical values ("5, 5") comes from proxies that merged
 * duplicate fields and is accepted (RFC 9110 8.6); anything else is ambiguous framing. */
static int parse_content_length(crest_str_t v, derived_t *d) {
    size_t i = 0;
    for (;;) {
        while (i < v.len && is_ows((unsigned char)v.ptr[i]))
            i++;
        size_t start = i;
        uint64_t n = 0;
        while (i < v.len && v.ptr[i] >= '0' && v.ptr[i] <= '9') {
            unsigned digit = (unsigned)(v.ptr[i] - '0');
            /* Stay within int64_t so the connection layer can use signed offsets. */
            if (n > ((uint64_t)INT64_MAX - digit) / 10)
                return -400;
            n = n * 10 + digit;
            i++;
        }
        if (i == start)
            return -400; /* empty value or element, or a non-digit */
        if (d->have_cl && d->cl != n)
            return -400;
        d->have_cl = 1;
        d->cl = n;
        while (i < v.len && is_ows((unsigned char)v.ptr[i]))
            i++;
        if (i == v.len)
            return 0;
        if (v.ptr[i] != ',')
            return -400;
        i++;
    }
}

static int on_te_coding(crest_str_t e, void *arg) {
    derived_t *d = arg;
    size_t n = 0;
    while (n < e.len && is_tchar((unsigned char)e.ptr[n]))
        n++;
    if (n == 0)
        return -400;
    int params = 0;
    if (n < e.len) {
        /* transfer-coding = token *( OWS ";" OWS transfer-parameter ); the parameters of codings
         * we never decode are not looked at beyond this. */
        size_t j = n;
        while (j < e.len && is_ows((unsigned char)e.ptr[j]))
            j++;
        if (j == e.len || e.ptr[j] != ';')
            return -400;
        params = 1;
    }
    d->te_codings++;
    if (crest__str_ieq((crest_str_t){e.ptr, n}, "chunked")) {
        /* chunked takes no parameters, and chunked twice is a smuggling attempt (RFC 9112 6.1). */
        if (params || d->te_chunked)
            return -400;
        d->te_chunked = 1;
        d->last_chunked = 1;
    } else {
        d->last_chunked = 0;
    }
    return 0;
}

static int on_connection_option(crest_str_t e, void *arg) {
    derived_t *d = arg;
    if (crest__str_ieq(e, "close"))
        d->conn_close = 1;
    else if (crest__str_ieq(e, "keep-alive"))
        d->conn_keep_alive = 1;
    else if (crest__str_ieq(e, "upgrade"))
        d->conn_upgrade = 1;
    return 0;
}

static int on_expectation(crest_str_t e, void *arg) {
    derived_t *d = arg;
    if (crest__str_ieq(e, "100-continue"))
        d->expect_continue = 1;
    else
        d->expect_unknown = 1;
    return 0;
}

static int apply_field(crest_str_t name, crest_str_t value, derived_t *d) {
    /* Dispatch on length first: most fields are none of these and cost one switch. */
    switch (name.len) {
    case 4:
        if (crest__str_ieq(name, "host")) {
            /* Two Host fields make the target authority ambiguous (RFC 9112 3.2). */
            if (++d->hosts > 1)
                return -400;
        }
        return 0;
    case 6:
        if (crest__str_ieq(name, "expect"))
            return each_element(value, on_expectation, d);
        return 0;
    case 7:
        if (crest__str_ieq(name, "upgrade"))
            d->has_upgrade = 1;
        return 0;
    case 10:
        if (crest__str_ieq(name, "connection"))
            return each_element(value, on_connection_option, d);
        return 0;
    case 14:
        if (crest__str_ieq(name, "content-length"))
            return parse_content_length(value, d);
        return 0;
    case 17:
        if (crest__str_ieq(name, "transfer-encoding")) {
            d->te_fields++;
            return each_element(value, on_te_coding, d);
        }
        return 0;
    default:
        return 0;
    }
}

/* Parses the request line at [s, le), where le points at its CR. */
/* The absolute form "http://authority/path?query" (RFC 9112 3.2.2), which a server must accept
 * (proxies send it, and HTTP/2 gateways rebuild it): *path is set to where the path begins, the
 * authority is skipped (routing is by path; the Host field stays required in HTTP/1.1 and is
 * what crest_req_header reports). Any other target not starting with '/' (the asterisk form,
 * the authority form of CONNECT, a scheme we do not serve) is left as it is: *path = t. Returns
 * -1 for an http(s) URI without an authority. */
static int absolute_form(const char *t, const char *end, const char **path) {
    static const char *const schemes[] = {"http://", "https://"};
    *path = t;
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(schemes[i]);
        if ((size_t)(end - t) < n || !crest__str_ieq((crest_str_t){t, n}, schemes[i]))
            continue;
        const char *a = t + n, *e = a;
        while (e < end && *e != '/' && *e != '?')
            e++;
        if (e == a)
            return -1;
        *path = e;
        return 0;
    }
    return 0;
}

static int parse_request_line(const char *s, const char *le, crest__http_head_t *head) {
    const char *q = s;
    while (q < le && is_tchar((unsigned char)*q))
        q++;
    if (q == s || q == le || *q != ' ')
        return -400;
    head->method = (crest_str_t){s, (size_t)(q - s)};
    head->method_id = crest__http_method_id(s, (size_t)(q - s));

    const char *t = ++q;
    const char *qmark = NULL;
    for (; q < le && *q != ' '; q++) {
        unsigned char c = (unsigned char)*q;
        if (c < 0x21 || c > 0x7e || c == '#')
            return -400;
        if (c == '?' && !qmark)
            qmark = q;
    }
    if (q == t || q == le)
        return -400;
    head->target = (crest_str_t){t, (size_t)(q - t)};
    const char *p = t;
    if (*t != '/' && absolute_form(t, q, &p) != 0)
        return -400;
    if (qmark) {
        head->path = (crest_str_t){p, (size_t)(qmark - p)};
        head->query = (crest_str_t){qmark + 1, (size_t)(q - qmark - 1)};
    } else {
        head->path = (crest_str_t){p, (size_t)(q - p)};
        head->query = (crest_str_t){q, 0};
    }
    if (head->path.len == 0)
        head->path = (crest_str_t){"/", 1}; /* "http://a" and "http://a?x" name the root */

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT: a well-formed version we do not speak is 505,
     * anything else (ICE/1.0, RTSP/1.0, HTTP/1.1 with trailing bytes) is not HTTP/1.x at all. */
    q++;
    if (le - q != 8 || memcmp(q, "HTTP/", 5) != 0 || q[5] < '0' || q[5] > '9' || q[6] != '.' ||
        q[7] < '0' || q[7] > '9')
        return -400;
    if (q[5] != '1' || (q[7] != '0' && q[7] != '1'))
        return -505;
    head->version_minor = q[7] - '0';
    return 0;
}

/* Parses the head at [s, end); the scan guarantees that every CR in it is followed by LF, that
 * there is no other LF, and that it ends with an empty line. */
static int parse_head(const char *s, const char *end, size_t max_headers,
                      crest__http_head_t *head) {
    const char *le = memchr(s, '\r', (size_t)(end - s));
    int r = parse_request_line(s, le, head);
    if (r)
        return r;

    derived_t d;
    memset(&d, 0, sizeof(d));
    head->num_headers = 0;
    const char *last = end - 2; /* the CR of the empty line */
    for (const char *line = le + 2; line < last;) {
        const char *eol = memchr(line, '\r', (size_t)(last - line));
        /* A line starting with whitespace is obs-fold, or whitespace before the first field
         * (RFC 9112 2.2, 5.2); both are rejected rather than unfolded. */
        const char *q = line;
        while (q < eol && is_tchar((unsigned char)*q))
            q++;
        if (q == line || q == eol || *q != ':')
            return -400;
        crest_str_t name = {line, (size_t)(q - line)};
        for (const char *v = q + 1; v < eol; v++) {
            if (!is_value_char((unsigned char)*v))
                return -400;
        }
        const char *vs = q + 1, *ve = eol;
        while (vs < ve && is_ows((unsigned char)*vs))
            vs++;
        while (ve > vs && is_ows((unsigned char)ve[-1]))
            ve--;
        crest_str_t value = {vs, (size_t)(ve - vs)};

        if (head->num_headers >= max_headers)
            return -431;
        head->headers[head->num_headers].name = name;
        head->headers[head->num_headers].value = value;
        head->num_headers++;
        r = apply_field(name, value, &d);
        if (r)
            return r;
        line = eol + 2;
    }

    head->body_kind = CREST__BODY_NONE;
    head->content_length = 0;
    if (d.te_fields) {
        /* Both framings at once is the textbook smuggling request (RFC 9112 6.1); HTTP/1.0 has
         * no chunked coding, so a 1.0 request with one is not one we can frame safely. */
        if (d.have_cl || head->version_minor == 0 || d.te_codings == 0)
            return -400;
        /* Only chunked is decoded: a body that is also gzip'ed (or anything else) would reach
         * the app still encoded, so it is refused as a coding we do not implement. */
        if (!d.last_chunked || d.te_codings > 1)
            return -501;
        head->body_kind = CREST__BODY_CHUNKED;
    } else if (d.have_cl) {
        /* Content-Length: 0 stays CREST__BODY_LENGTH: the request said so explicitly. */
        head->body_kind = CREST__BODY_LENGTH;
        head->content_length = d.cl;
    }

    if (head->version_minor == 1)
        head->keep_alive = !d.conn_close;
    else
        head->keep_alive = d.conn_keep_alive && !d.conn_close;
    head->expect_continue = d.expect_continue;
    head->expect_unknown = d.expect_unknown;
    head->upgrade = d.conn_upgrade && d.has_upgrade;
    head->has_host = d.hosts == 1;
    return 0;
}

int crest__http_parse_head(const char *buf, size_t len, const crest__http_limits_t *limits,
                           size_t *scanned, crest__http_head_t *head) {
    size_t max_head = limits->max_header_bytes;
    if (max_head > SCAN_MASK - SCAN_FIRST)
        max_head = SCAN_MASK - SCAN_FIRST;
    if (max_head > INT_MAX)
        max_head = INT_MAX;
    size_t max_headers = limits->max_headers;
    if (max_headers > CREST__MAX_HEADERS)
        max_headers = CREST__MAX_HEADERS;

    int n = scan_head(buf, len, limits->max_request_line, max_head, scanned);
    if (n <= 0)
        return n;

    /* Leading empty lines are CRLF pairs only; the scan has checked that. */
    size_t start = 0;
    while (buf[start] == '\r')
        start += 2;
    int r = parse_head(buf + start, buf + n, max_headers, head);
    return r ? r : n;
}

/* ---- chunked bodies ---- */

enum {
    CH_SIZE_START = 0, /* zeroed state: expecting the first hex digit of a chunk-size */
    CH_SIZE,
    CH_BWS_SEMI,       /* whitespace that must be followed by ';' */
    CH_EXT_NAME_START, /* after ';' */
    CH_EXT_NAME,
    CH_EXT_NAME_BWS, /* whitespace after a name: '=' or ';' follows */
    CH_EXT_VALUE_START,
    CH_EXT_TOKEN,
    CH_EXT_QUOTED,
    CH_EXT_QUOTED_PAIR,
    CH_EXT_QUOTED_END,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_START,
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_DONE,
};

#define CHUNKED_DEFAULT_LINE 4096
#define CHUNKED_DEFAULT_TRAILER 16384
/* A chunk larger than this is not a real chunk; the limit also keeps the size from wrapping. */
#define CHUNK_SIZE_MAX ((uint64_t)1 << 62)

void crest__http_chunked_init(crest__http_chunked_t *c, size_t max_line, size_t max_trailer) {
    memset(c, 0, sizeof(*c));
    c->max_line = max_line;
    c->max_trailer = max_trailer;
}

int crest__http_chunked_decode(crest__http_chunked_t *c, char *buf, size_t *len, size_t *consumed) {
    /* A zeroed decoder has no limits set; it gets the defaults rather than accepting nothing. */
    size_t max_line = c->max_line ? c->max_line : CHUNKED_DEFAULT_LINE;
    size_t max_trailer = c->max_trailer ? c->max_trailer : CHUNKED_DEFAULT_TRAILER;
    size_t in = *len, r = 0, w = 0;
    int ret = 0;

    while (r < in && c->state != CH_DONE) {
        if (c->state == CH_DATA) {
            /* Decoding only shrinks, so moving data down over the framing is safe in place. */
            size_t n = in - r;
            if (n > c->chunk_left)
                n = (size_t)c->chunk_left;
            if (w != r)
                memmove(buf + w, buf + r, n);
            w += n;
            r += n;
            c->chunk_left -= n;
            if (c->chunk_left == 0)
                c->state = CH_DATA_CR;
            continue;
        }

        unsigned char ch = (unsigned char)buf[r++];
        int st = c->state;
        if (st <= CH_EXT_QUOTED_END && ch != '\r' && ++c->line_len > max_line)
            goto bad;
        /* The trailer budget covers field lines with their CRLF, not the final empty line. */
        if (st >= CH_TRAILER_START && st <= CH_TRAILER_LF &&
            !(st == CH_TRAILER_START && ch == '\r')) {
            if (++c->trailer_len > max_trailer)
                goto bad;
            if (st != CH_TRAILER_LF && ch != '\r' && ++c->line_len > max_line)
                goto bad;
        }

        switch (st) {
        case CH_SIZE_START:
        case CH_SIZE: {
            int h = crest__hex_digit((unsigned char)ch);
            if (h >= 0) {
                if (c->chunk_left > (CHUNK_SIZE_MAX - (uint64_t)h) / 16)
                    goto bad;
                c->chunk_left = c->chunk_left * 16 + (uint64_t)h;
                c->state = CH_SIZE;
            } else if (st == CH_SIZE_START) {
                goto bad;
            } else if (ch == ';') {
                c->state = CH_EXT_NAME_START;
            } else if (is_ows(ch)) {
                c->state = CH_BWS_SEMI;
            } else if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else {
                goto bad;
            }
            break;
        }
        /* chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) */
        case CH_BWS_SEMI:
            if (ch == ';')
                c->state = CH_EXT_NAME_START;
            else if (!is_ows(ch))
                goto bad;
            break;
        case CH_EXT_NAME_START:
            if (is_tchar(ch))
                c->state = CH_EXT_NAME;
            else if (!is_ows(ch))
                goto bad;
            break;
        case CH_EXT_NAME:
            if (ch == '=')
                c->state = CH_EXT_VALUE_START;
            else if (ch == ';')
                c->state = CH_EXT_NAME_START;
            else if (is_ows(ch))
                c->state = CH_EXT_NAME_BWS;
            else if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (!is_tchar(ch))
                goto bad;
            break;
        case CH_EXT_NAME_BWS:
            if (ch == '=')
                c->state = CH_EXT_VALUE_START;
            else if (ch == ';')
                c->state = CH_EXT_NAME_START;
            else if (!is_ows(ch))
                goto bad;
            break;
        case CH_EXT_VALUE_START:
            if (ch == '"')
                c->state = CH_EXT_QUOTED;
            else if (is_tchar(ch))
                c->state = CH_EXT_TOKEN;
            else if (!is_ows(ch))
                goto bad;
            break;
        case CH_EXT_TOKEN:
            if (ch == ';')
                c->state = CH_EXT_NAME_START;
            else if (is_ows(ch))
                c->state = CH_BWS_SEMI;
            else if (ch == '\r')
                c->state = CH_SIZE_LF;
            else if (!is_tchar(ch))
                goto bad;
            break;
        case CH_EXT_QUOTED:
            /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
            if (ch == '"')
                c->state = CH_EXT_QUOTED_END;
            else if (ch == '\\')
                c->state = CH_EXT_QUOTED_PAIR;
            else if (!is_value_char(ch))
                goto bad;
            break;
        case CH_EXT_QUOTED_PAIR:
            if (!is_value_char(ch))
                goto bad;
            c->state = CH_EXT_QUOTED;
            break;
        case CH_EXT_QUOTED_END:
            if (ch == ';')
                c->state = CH_EXT_NAME_START;
            else if (is_ows(ch))
                c->state = CH_BWS_SEMI;
            else if (ch == '\r')
                c->state = CH_SIZE_LF;
            else
                goto bad;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                goto bad;
            c->line_len = 0;
            if (c->chunk_left == 0) {
                c->trailer_len = 0;
                c->state = CH_TRAILER_START;
            } else {
                c->state = CH_DATA;
            }
            break;
        case CH_DATA_CR:
            if (ch != '\r')
                goto bad;
            c->state = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_SIZE_START;
            break;
        /* Trailer fields are checked like header fields and then dropped: nothing downstream
         * asks for them, and merging them into the head would let a body smuggle headers. */
        case CH_TRAILER_START:
            if (ch == '\r') {
                c->state = CH_END_LF;
            } else if (is_tchar(ch)) {
                c->state = CH_TRAILER_NAME;
            } else {
                goto bad; /* obs-fold, an empty name, or garbage */
            }
            break;
        case CH_TRAILER_NAME:
            if (ch == ':')
                c->state = CH_TRAILER_VALUE;
            else if (!is_tchar(ch))
                goto bad;
            break;
        case CH_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CH_TRAILER_LF;
            else if (!is_value_char(ch))
                goto bad;
            break;
        case CH_TRAILER_LF:
            if (ch != '\n')
                goto bad;
            c->line_len = 0;
            c->state = CH_TRAILER_START;
            break;
        case CH_END_LF:
            if (ch != '\n')
                goto bad;
            c->state = CH_DONE;
            break;
        default:
            goto bad;
        }
    }
    if (c->state == CH_DONE)
        ret = 1;
    *len = w;
    *consumed = r;
    return ret;
bad:
    *len = w;
    *consumed = r;
    return -400;
}
