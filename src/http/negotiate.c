/* Content negotiation (RFC 9110 12.5.1 Accept, 12.5.4 Accept-Language with RFC 4647 basic
 * filtering). Each offer is scored against every element of every header line: it takes the q of
 * the most specific range that covers it (for equally specific ranges, the highest q). Offers are
 * few (an app offers two or three types), so the lists are walked once per offer instead of
 * being parsed into memory: nothing is allocated. */
#include <string.h>

#include "http/http.h"
#include "http/web.h"

static int is_ows(char c) {
    return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int ieq(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen != blen)
        return 0;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

static int is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (lower(c) >= 'a' && lower(c) <= 'z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* One element of a list: the range (type/subtype, or a language range) and its q in
 * thousandths. */
typedef struct {
    const char *range;
    size_t len;
    size_t slash; /* media ranges: the '/' at range[slash] */
    int q;
} elem_t;

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ); -1 when malformed. */
static int qvalue(const char *s, const char *end) {
    if (s == end || (*s != '0' && *s != '1'))
        return -1;
    int q = (*s++ - '0') * 1000, scale = 100;
    if (s < end && *s == '.') {
        s++;
        for (int i = 0; i < 3 && s < end && *s >= '0' && *s <= '9'; i++, s++, scale /= 10)
            q += (*s - '0') * scale;
    }
    return s == end && q <= 1000 ? q : -1;
}

/* Skip to just past the next ',' outside a quoted string (or to end). */
static const char *next_elem(const char *s, const char *end) {
    int quoted = 0;
    for (; s < end; s++) {
        if (quoted && *s == '\\' && s + 1 < end)
            s++;
        else if (*s == '"')
            quoted = !quoted;
        else if (*s == ',' && !quoted)
            return s + 1;
    }
    return end;
}

/* Parse the element at *sp: 1 and *e when well formed, 0 when it is skipped (empty or
 * malformed); *sp moves past it either way. media: a type/subtype range, else a language
 * range. */
static int elem(const char **sp, const char *end, int media, elem_t *e) {
    const char *s = *sp, *stop = next_elem(s, end);
    *sp = stop;
    if (stop > s && stop[-1] == ',')
        stop--;
    while (s < stop && is_ows(*s))
        s++;
    e->range = s;
    e->slash = 0;
    if (media) {
        while (s < stop && is_tchar((unsigned char)*s))
            s++;
        if (s == e->range || s == stop || *s != '/')
            return 0;
        e->slash = (size_t)(s - e->range);
        const char *sub = ++s;
        while (s < stop && is_tchar((unsigned char)*s))
            s++;
        if (s == sub)
            return 0;
        /* "* /html" is no range */
        if (e->slash == 1 && e->range[0] == '*' && !(s - sub == 1 && *sub == '*'))
            return 0;
    } else {
        while (s < stop && (is_tchar((unsigned char)*s)) && *s != ';')
            s++;
        if (s == e->range)
            return 0;
    }
    e->len = (size_t)(s - e->range);
    e->q = 1000;
    for (;;) {
        while (s < stop && is_ows(*s))
            s++;
        if (s == stop)
            return 1;
        if (*s++ != ';')
            return 0;
        while (s < stop && is_ows(*s))
            s++;
        const char *n = s;
        while (s < stop && is_tchar((unsigned char)*s))
            s++;
        size_t nlen = (size_t)(s - n);
        if (nlen == 0 || s == stop || *s++ != '=')
            return 0;
        const char *v = s;
        if (s < stop && *s == '"') {
            for (s++; s < stop && *s != '"'; s++)
                if (*s == '\\' && s + 1 < stop)
                    s++;
            if (s == stop)
                return 0;
            s++;
        } else {
            while (s < stop && is_tchar((unsigned char)*s))
                s++;
        }
        if (nlen == 1 && lower((unsigned char)*n) == 'q') {
            const char *ve = s;
            if ((e->q = qvalue(v, ve)) < 0)
                return 0;
        }
    }
}

/* How specifically range e covers the offer (0: not at all). */
static int media_spec(const elem_t *e, const char *offer) {
    const char *slash = strchr(offer, '/');
    if (slash == NULL)
        return 0;
    size_t tlen = (size_t)(slash - offer), slen = strcspn(slash + 1, "; \t");
    const char *r = e->range, *rs = e->range + e->slash + 1;
    size_t rslen = e->len - e->slash - 1;
    if (e->slash == 1 && r[0] == '*')
        return 1;
    if (!ieq(r, e->slash, offer, tlen))
        return 0;
    if (rslen == 1 && rs[0] == '*')
        return 2;
    return ieq(rs, rslen, slash + 1, slen) ? 3 : 0;
}

static int lang_spec(const elem_t *e, const char *tag) {
    size_t tlen = strlen(tag);
    if (e->len == 1 && e->range[0] == '*')
        return 1;
    if (e->len > tlen || !ieq(e->range, e->len, tag, e->len))
        return 0;
    return e->len == tlen || tag[e->len] == '-' ? 2 + (int)e->len : 0;
}

static int pick(const crest_str_t *lines, size_t nlines, const char *const *offers, size_t n,
                int media) {
    if (n == 0)
        return -1;
    int any = 0, best = -1, best_q = 0;
    for (size_t j = 0; j < n; j++) {
        int spec = 0, q = 0;
        for (size_t i = 0; i < nlines; i++) {
            const char *s = lines[i].ptr, *end = s + lines[i].len;
            while (s != NULL && s < end) {
                elem_t e;
                if (!elem(&s, end, media, &e))
                    continue;
                any = 1;
                int sp = media ? media_spec(&e, offers[j]) : lang_spec(&e, offers[j]);
                if (sp > spec || (sp == spec && sp > 0 && e.q > q)) {
                    spec = sp;
                    q = e.q;
                }
            }
        }
        if (spec > 0 && q > best_q) {
            best = (int)j;
            best_q = q;
        }
    }
    return any ? best : 0;
}

int crest__accept_pick(const crest_str_t *lines, size_t nlines, const char *const *types,
                       size_t n) {
    return pick(lines, nlines, types, n, 1);
}

int crest__lang_pick(const crest_str_t *lines, size_t nlines, const char *const *langs, size_t n) {
    return pick(lines, nlines, langs, n, 0);
}

/* The request's lines of header `name`: up to 16 (more is no real client). */
static size_t lines_of(const crest_req_t *req, const char *name, crest_str_t *out) {
    size_t count = 0, k = 0;
    const crest_header_t *h = crest_req_headers(req, &count);
    for (size_t i = 0; h != NULL && i < count && k < 16; i++)
        if (crest__str_ieq(h[i].name, name))
            out[k++] = h[i].value;
    return k;
}

int crest_req_accepts(const crest_req_t *req, const char *const *types, size_t n) {
    crest_str_t lines[16];
    return crest__accept_pick(lines, lines_of(req, "accept", lines), types, n);
}

int crest_req_accepts_language(const crest_req_t *req, const char *const *langs, size_t n) {
    crest_str_t lines[16];
    return crest__lang_pick(lines, lines_of(req, "accept-language", lines), langs, n);
}
