/* Static file serving's pure rules (see cond.h): path cleaning, ETags and conditional headers,
 * HTTP-dates, byte ranges, Accept-Encoding, media types.
 *
 * Hand-written: these are a few small grammars from RFC 9110, and no Debian-packaged library
 * parses them without bringing a server of its own. Choices worth knowing:
 * - Path cleaning refuses rather than repairs. A path with "..", an encoded slash or a dotfile is
 *   never a link a site publishes, so there is nothing to resolve: refusing leaves no way for a
 *   second decoding (by the OS, a proxy or this code) to turn the result into a traversal.
 *   Decoding happens once, and every check looks at the decoded bytes.
 * - Every header parser reads only [ptr, ptr + len): the values are views into the read buffer,
 *   not C strings. Malformed input gets the answer that changes nothing: no 304, no range, no
 *   compression.
 * - Dates use integer calendar arithmetic instead of timegm()/gmtime_r(): those are glibc
 *   extensions with a locale-free but time-zone-database-touching implementation, and this file
 *   must stay free of the environment so the fuzzer and the tests see what the server sees. */
#include "http/cond.h"
#include "codec/hex.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/utf8.h"

static int is_ows(char c) {
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* tchar from RFC 9110 5.6.2. */
static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* [ptr, ptr + len) without optional whitespace on either side; *end is set past the last byte. */
static const char *trim(crest_str_t s, const char **end) {
    static const char empty[1] = "";
    if (s.len == 0) { /* ptr may be NULL, and NULL + 0 is undefined in C */
        *end = empty;
        return empty;
    }
    const char *p = s.ptr, *e = s.ptr + s.len;
    while (p < e && is_ows(*p))
        p++;
    while (e > p && is_ows(e[-1]))
        e--;
    *end = e;
    return p;
}

/* Case-insensitive: the n bytes at p equal the lower-case literal lit (n == strlen(lit)). */
static int eq_ci(const char *p, size_t n, const char *lit) {
    for (size_t i = 0; i < n; i++)
        if (lit[i] == '\0' || lower((unsigned char)p[i]) != (unsigned char)lit[i])
            return 0;
    return lit[n] == '\0';
}

/* ---- paths ---- */

int crest__path_clean(const char *in, size_t len, char *out, size_t cap, int *dir_slash) {
    *dir_slash = len > 0 && in[len - 1] == '/';
    if (cap == 0)
        return -1;
    size_t o = 0, i = 0;
    while (i < len) {
        if (in[i] == '/') { /* leading and repeated slashes: nothing to write */
            i++;
            continue;
        }
        /* One segment, up to the next literal slash (an encoded one is refused, so decoded
         * segments are exactly the literal ones). A separator goes before every segment but the
         * first; a trailing slash never writes one, since no segment follows it. */
        if (o > 0) {
            if (o + 1 >= cap)
                goto refuse;
            out[o++] = '/';
        }
        size_t seg = o;
        while (i < len && in[i] != '/') {
            unsigned char c = (unsigned char)in[i];
            if (c == '%') {
                int hi = len - i >= 3 ? crest__hex_digit((unsigned char)in[i + 1]) : -1;
                int lo = len - i >= 3 ? crest__hex_digit((unsigned char)in[i + 2]) : -1;
                if (hi < 0 || lo < 0)
                    goto refuse;
                c = (unsigned char)(hi << 4 | lo);
                if (c == '/')
                    goto refuse;
                i += 3;
            } else {
                i++;
            }
            /* "." and ".." are segments starting with a dot, so this one test covers them, every
             * dotfile (.env, .git) and their encodings (%2e). */
            if (c < 0x20 || c == 0x7f || c == '\\' || (c == '.' && o == seg))
                goto refuse;
            if (o + 1 >= cap)
                goto refuse;
            out[o++] = (char)c;
        }
    }
    /* Checked on the decoded result as a whole: an overlong "." (C0 AE, E0 80 AE) is invalid
     * UTF-8, and so is a character cut by a '/', since '/' is no continuation byte. */
    if (o > INT_MAX ||
        crest__utf8_feed(CREST__UTF8_ACCEPT, (const uint8_t *)out, o) != CREST__UTF8_ACCEPT)
        goto refuse;
    out[o] = '\0';
    return (int)o;
refuse:
    out[0] = '\0';
    return -1;
}

/* ---- entity tags ---- */

size_t crest__etag_make(uint64_t ino, uint64_t size, int64_t mtime_ns, char *out, size_t cap) {
    int n = snprintf(out, cap, "\"%llx-%llx-%llx\"", (unsigned long long)ino,
                     (unsigned long long)size, (unsigned long long)(uint64_t)mtime_ns);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

/* One entity-tag at p (RFC 9110 8.8.3): [ "W/" ] DQUOTE *etagc DQUOTE, etagc being %x21 /
 * %x23-7E / obs-text. Returns the byte after it, or NULL when malformed; *opaque and *opaque_len
 * give the quoted part with its quotes, *weak whether "W/" came first. */
static const char *parse_etag(const char *p, const char *end, const char **opaque,
                              size_t *opaque_len, int *weak) {
    *weak = 0;
    if (end - p >= 2 && p[0] == 'W' && p[1] == '/') {
        *weak = 1;
        p += 2;
    }
    if (p == end || *p != '"')
        return NULL;
    const char *q = p + 1;
    while (q < end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c < 0x21 || c == 0x7f)
            return NULL;
        q++;
    }
    if (q == end)
        return NULL;
    *opaque = p;
    *opaque_len = (size_t)(q + 1 - p);
    return q + 1;
}

int crest__etag_match_any(crest_str_t header, const char *etag, size_t etag_len) {
    const char *end, *p = trim(header, &end);
    if (end - p == 1 && *p == '*')
        return 1;
    /* The server's own tag, without W/, for a weak comparison. */
    if (etag_len >= 2 && etag[0] == 'W' && etag[1] == '/') {
        etag += 2;
        etag_len -= 2;
    }
    int match = 0, seen = 0;
    while (p < end) {
        if (*p == ',' || is_ows(*p)) { /* empty list elements are allowed (RFC 9110 5.6.1) */
            p++;
            continue;
        }
        const char *opaque;
        size_t n;
        int weak;
        p = parse_etag(p, end, &opaque, &n, &weak);
        if (p == NULL)
            return 0;
        seen = 1;
        if (n == etag_len && memcmp(opaque, etag, n) == 0)
            match = 1;
        while (p < end && is_ows(*p))
            p++;
        if (p < end && *p != ',')
            return 0;
    }
    /* The whole list is read before answering: a malformed list matches nothing, even after a
     * tag that matched. */
    return seen && match;
}

/* ---- HTTP-dates ---- */

static const char *const month_names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const day_short[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const day_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                        "Thursday", "Friday", "Saturday"};

static int is_leap(int64_t y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return days[m] + (m == 1 && is_leap(y));
}

/* Days from 0001-01-01 to y-01-01 (proleptic Gregorian, y >= 1). */
static int64_t days_to_year(int64_t y) {
    int64_t p = y - 1;
    return 365 * p + p / 4 - p / 100 + p / 400;
}

/* Days from 1970-01-01 to y-(m+1)-d, m 0..11, for years 0..9999. The year is moved 400 years
 * on (the calendar repeats every 400 years) so that year 0 needs no special case. */
static int64_t days_from_civil(int64_t y, int m, int d) {
    int64_t days = days_to_year(y + 400) - days_to_year(1970 + 400);
    for (int k = 0; k < m; k++)
        days += month_days(y, k);
    return days + d - 1;
}

/* Exactly n digits at p into *v. */
static int digits(const char *p, int n, int *v) {
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return 0;
        x = x * 10 + (p[i] - '0');
    }
    *v = x;
    return 1;
}

static int find_name(const char *p, size_t n, const char *const *names, int count) {
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == n && memcmp(p, names[i], n) == 0)
            return i;
    return -1;
}

/* "HH:MM:SS" at p into seconds of the day; -1 when malformed. */
static int64_t time_of_day(const char *p) {
    int h, m, s;
    if (!digits(p, 2, &h) || p[2] != ':' || !digits(p + 3, 2, &m) || p[5] != ':' ||
        !digits(p + 6, 2, &s) || h > 23 || m > 59 || s > 60)
        return -1;
    return (int64_t)h * 3600 + m * 60 + s;
}

static int64_t make_time(int64_t year, int mon, int day, int64_t tod) {
    if (mon < 0 || day < 1 || day > month_days(year, mon) || tod < 0)
        return -1;
    return days_from_civil(year, mon, day) * 86400 + tod;
}

int64_t crest__http_date_parse(const char *s, size_t len) {
    crest_str_t v = {s, len};
    const char *end, *p = trim(v, &end);
    size_t n = (size_t)(end - p);
    int day, year;
    if (n == 29 && p[3] == ',') {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (find_name(p, 3, day_short, 7) < 0 || p[4] != ' ' || !digits(p + 5, 2, &day) ||
            p[7] != ' ' || p[11] != ' ' || !digits(p + 12, 4, &year) || p[16] != ' ' ||
            p[25] != ' ' || memcmp(p + 26, "GMT", 3) != 0)
            return -1;
        return make_time(year, find_name(p + 8, 3, month_names, 12), day, time_of_day(p + 17));
    }
    if (n == 24 && p[3] == ' ') {
        /* asctime: "Sun Nov  6 08:49:37 1994", the day as two digits or a space and a digit */
        if (find_name(p, 3, day_short, 7) < 0 || p[7] != ' ' || p[10] != ' ' || p[19] != ' ' ||
            !digits(p + 20, 4, &year))
            return -1;
        if (p[8] == ' ') {
            if (!digits(p + 9, 1, &day))
                return -1;
        } else if (!digits(p + 8, 2, &day)) {
            return -1;
        }
        return make_time(year, find_name(p + 4, 3, month_names, 12), day, time_of_day(p + 11));
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    const char *comma = memchr(p, ',', n < 10 ? n : 10);
    if (comma == NULL || find_name(p, (size_t)(comma - p), day_long, 7) < 0)
        return -1;
    const char *q = comma + 1;
    if (end - q != 23 || q[0] != ' ' || !digits(q + 1, 2, &day) || q[3] != '-' || q[7] != '-' ||
        !digits(q + 8, 2, &year) || q[10] != ' ' || q[19] != ' ' || memcmp(q + 20, "GMT", 3) != 0)
        return -1;
    year += year < 70 ? 2000 : 1900;
    return make_time(year, find_name(q + 4, 3, month_names, 12), day, time_of_day(q + 11));
}

size_t crest__http_date_format(int64_t t, char *out, size_t cap) {
    if (cap < 30) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    const int64_t max = 253402300799; /* 9999-12-31 23:59:59 */
    t = t < 0 ? 0 : t > max ? max : t;
    int64_t days = t / 86400, sec = t % 86400;
    /* The year from an estimate that is never too late (366-day years), then forward. */
    int64_t year = 1970 + days / 366;
    while (days_from_civil(year + 1, 0, 1) <= days)
        year++;
    int64_t rest = days - days_from_civil(year, 0, 1);
    int mon = 0;
    while (rest >= month_days(year, mon))
        rest -= month_days(year, mon++);
    /* 1970-01-01 was a Thursday. */
    snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", day_short[(days + 4) % 7],
             (int)rest + 1, month_names[mon], (int)year, (int)(sec / 3600), (int)(sec / 60 % 60),
             (int)(sec % 60));
    return 29;
}

/* ---- ranges ---- */

/* Digits at *p into a number that saturates at UINT64_MAX; at least one digit required. */
static int read_u64(const char **p, const char *end, uint64_t *v) {
    const char *q = *p;
    uint64_t x = 0;
    while (q < end && is_digit(*q)) {
        unsigned d = (unsigned)(*q - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
        q++;
    }
    if (q == *p)
        return 0;
    *p = q;
    *v = x;
    return 1;
}

int crest__range_parse(crest_str_t header, uint64_t size, uint64_t *first, uint64_t *last) {
    const char *end, *p = trim(header, &end);
    if (end - p < 6 || !eq_ci(p, 5, "bytes") || p[5] != '=' || size == 0)
        return 0;
    p += 6;
    int count = 0, suffix = 0, open = 0;
    uint64_t a = 0, b = 0;
    while (p < end) {
        if (*p == ',' || is_ows(*p)) {
            p++;
            continue;
        }
        if (++count > 1)
            return 0; /* several ranges would need multipart/byteranges: send it whole */
        if (*p == '-') {
            p++;
            suffix = 1;
            if (!read_u64(&p, end, &a))
                return 0;
        } else {
            if (!read_u64(&p, end, &a) || p == end || *p != '-')
                return 0;
            p++;
            open = !read_u64(&p, end, &b);
            if (!open && b < a)
                return 0; /* an invalid range-spec: the header is ignored (RFC 9110 14.1.1) */
        }
        while (p < end && is_ows(*p))
            p++;
        if (p < end && *p != ',')
            return 0;
    }
    if (count == 0)
        return 0;
    if (suffix) {
        if (a == 0)
            return -1;
        *first = a >= size ? 0 : size - a;
        *last = size - 1;
        return 1;
    }
    if (a >= size)
        return -1;
    *first = a;
    *last = open || b >= size ? size - 1 : b;
    return 1;
}

int crest__if_range(crest_str_t header, const char *etag, size_t etag_len, int64_t mtime_sec) {
    const char *end, *p = trim(header, &end);
    if (p == end)
        return 0;
    if (*p == '"' || (end - p >= 2 && p[0] == 'W' && p[1] == '/')) {
        const char *opaque;
        size_t n;
        int weak;
        if (parse_etag(p, end, &opaque, &n, &weak) != end || weak)
            return 0;
        /* Strong comparison: both strong and byte for byte the same; a weak tag of ours
         * ("W/...") never equals a strong one. */
        return n == etag_len && memcmp(opaque, etag, n) == 0;
    }
    int64_t t = crest__http_date_parse(p, (size_t)(end - p));
    return t != -1 && t == mtime_sec;
}

/* ---- Accept-Encoding ---- */

/* qvalue (RFC 9110 12.4.2): "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3"0" ], in thousandths; -1 when
 * malformed. */
static int read_qvalue(const char **pp, const char *end) {
    const char *p = *pp;
    if (p == end || (*p != '0' && *p != '1'))
        return -1;
    int one = *p++ == '1', q = 0, n = 0;
    if (p < end && *p == '.') {
        p++;
        while (p < end && is_digit(*p)) {
            if (++n > 3 || (one && *p != '0'))
                return -1;
            q = q * 10 + (*p++ - '0');
        }
    }
    for (; n < 3; n++)
        q *= 10;
    *pp = p;
    return one ? 1000 : q;
}

unsigned crest__accept_encoding(crest_str_t header) {
    const char *end, *p = trim(header, &end);
    int q_gzip = -1, q_br = -1, q_star = -1; /* -1: not named */
    while (p < end) {
        if (*p == ',' || is_ows(*p)) {
            p++;
            continue;
        }
        const char *tok = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        size_t tlen = (size_t)(p - tok);
        if (tlen == 0)
            return 0;
        int q = 1000;
        while (p < end && is_ows(*p))
            p++;
        if (p < end && *p == ';') { /* weight = OWS ";" OWS "q=" qvalue */
            p++;
            while (p < end && is_ows(*p))
                p++;
            if (end - p < 2 || lower((unsigned char)p[0]) != 'q' || p[1] != '=')
                return 0;
            p += 2;
            if ((q = read_qvalue(&p, end)) < 0)
                return 0;
            while (p < end && is_ows(*p))
                p++;
        }
        if (p < end && *p != ',')
            return 0;
        int *slot = eq_ci(tok, tlen, "gzip") || eq_ci(tok, tlen, "x-gzip") ? &q_gzip
                    : eq_ci(tok, tlen, "br")                               ? &q_br
                    : tlen == 1 && *tok == '*'                             ? &q_star
                                                                           : NULL;
        if (slot != NULL && q > *slot)
            *slot = q;
    }
    unsigned mask = 0;
    if (q_gzip > 0 || (q_gzip < 0 && q_star > 0))
        mask |= CREST__ENC_GZIP;
    if (q_br > 0 || (q_br < 0 && q_star > 0))
        mask |= CREST__ENC_BR;
    return mask;
}

/* ---- media types ---- */

static const struct {
    const char *ext;
    const char *type;
} mime_table[] = {
#define X(ext, type) {ext, type},
#include "http/mime.def"
#undef X
};

#define MIME_MAX_EXT 32 /* longer than any extension in the table (the longest has 25 bytes) */

const char *crest__mime_type(const char *name, size_t len) {
    const char *dflt = "application/octet-stream";
    size_t base = len, dot = len;
    while (base > 0 && name[base - 1] != '/')
        base--;
    for (size_t i = len; i > base; i--)
        if (name[i - 1] == '.') {
            dot = i - 1;
            break;
        }
    /* No dot, a trailing dot, or only a leading one (".profile" is a name, not an extension). */
    if (dot == len || dot == base || len - dot - 1 >= MIME_MAX_EXT)
        return dflt;
    char ext[MIME_MAX_EXT];
    size_t n = len - dot - 1;
    for (size_t i = 0; i < n; i++)
        ext[i] = (char)lower((unsigned char)name[dot + 1 + i]);
    ext[n] = '\0';
    size_t lo = 0, hi = sizeof(mime_table) / sizeof(mime_table[0]);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ext, mime_table[mid].ext);
        if (c == 0)
            return mime_table[mid].type;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return dflt;
}

int crest__mime_compressible(const char *ctype, size_t len) {
    /* Types that are text in disguise or uncompressed binaries; everything else (images, audio,
     * video, archives, woff/woff2) is compressed already and would only cost CPU. */
    static const char *const yes[] = {
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/json",
        "application/xml",
        "application/wasm",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/sql",
        "application/graphql",
        "application/x-sh",
        "application/x-tar",
        "application/postscript",
        "application/rtf",
        "application/vnd.ms-fontobject",
        "application/x-font-ttf",
        "application/x-font-otf",
        "font/ttf",
        "font/otf",
        "font/collection",
        "image/bmp",
        "image/x-icon",
        "image/vnd.microsoft.icon",
    };
    crest_str_t v = {ctype, len};
    const char *semi = len ? memchr(ctype, ';', len) : NULL;
    if (semi != NULL)
        v.len = (size_t)(semi - ctype);
    const char *end, *p = trim(v, &end);
    size_t n = (size_t)(end - p);
    if (n > 5 && eq_ci(p, 5, "text/"))
        return !eq_ci(p, n, "text/event-stream");
    /* Structured-syntax suffixes (RFC 6838 4.2.8): image/svg+xml, application/ld+json, ... */
    if ((n > 5 && eq_ci(end - 5, 5, "+json")) || (n > 4 && eq_ci(end - 4, 4, "+xml")))
        return 1;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (eq_ci(p, n, yes[i]))
            return 1;
    return 0;
}
