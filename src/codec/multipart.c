/* multipart/form-data parser (RFC 7578, RFC 2046 5.1).
 *
 * Written by hand: no Debian-packaged C library parses multipart incrementally without owning the
 * I/O as well, and the job is small. The body is scanned for the delimiter "\r\n--boundary".
 * The body is taken to start with a virtual "\r\n" so that a boundary on its first line needs no
 * special case. Bytes that may be the start of a delimiter at the end of one input are held back
 * and not copied: they can only be the delimiter's own first bytes, so when the next input shows
 * they were data they are reported from p->delim. A boundary holds no CR (RFC 2046's bchars), so
 * after a mismatch no suffix of the bytes held back can start another delimiter: the scan goes on
 * from the byte that failed, never backs up.
 *
 * A part's header block is the only thing kept (up to max_header_bytes); it is decoded in place
 * (unquoting and percent-decoding only shrink), and the views of a BEGIN event point into it. */
#include <stdlib.h>
#include <string.h>

#include "codec/hex.h"
#include "codec/multipart.h"
#include "crest/errno.h"

enum {
    S_PREAMBLE, /* before the first delimiter: ignored */
    S_AFTER,    /* right after a delimiter: "--" closes, else padding and CRLF */
    S_PAD,      /* transport padding (spaces, tabs) before the CRLF */
    S_DASH2,    /* one '-' after a delimiter */
    S_LF,       /* the CR after a delimiter; the LF must follow */
    S_HEADERS,  /* a part's header block */
    S_BODY,     /* a part's body */
    S_EPILOGUE, /* after the closing delimiter: ignored */
    S_FAIL,
};

static int fail(crest__mp_t *p, int err, const char *why) {
    p->state = S_FAIL;
    p->err = err;
    p->why = why;
    return err;
}

static unsigned char lower(unsigned char c) {
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int ieq(const char *p, size_t n, const char *lit) {
    size_t m = strlen(lit);
    if (n != m)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

static int is_tchar(unsigned char c) {
    if (c >= '0' && c <= '9')
        return 1;
    c = lower(c);
    if (c >= 'a' && c <= 'z')
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ows(char c) {
    return c == ' ' || c == '\t';
}

/* RFC 2046's bchars: DIGIT / ALPHA / "'()+_,-./:=?" and space (not last). */
static int is_bchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (lower(c) >= 'a' && lower(c) <= 'z'))
        return 1;
    return c != 0 && strchr("'()+_,-./:=? ", c) != NULL;
}

/* ---- the boundary ---- */

int crest__mp_boundary(crest_str_t ct, char *out, size_t cap) {
    if (ct.ptr == NULL) /* no Content-Type (and no pointer arithmetic on NULL) */
        return CREST_EINVAL;
    const char *s = ct.ptr, *end = ct.ptr + ct.len;
    while (s < end && is_ows(*s))
        s++;
    const char *t = s;
    while (s < end && *s != ';' && !is_ows(*s))
        s++;
    if (!ieq(t, (size_t)(s - t), "multipart/form-data"))
        return CREST_EINVAL;
    while (s < end) {
        while (s < end && (is_ows(*s) || *s == ';'))
            s++;
        const char *n = s;
        while (s < end && is_tchar((unsigned char)*s))
            s++;
        size_t nlen = (size_t)(s - n);
        if (s == end || *s != '=')
            return CREST_EINVAL;
        s++;
        size_t len = 0;
        int is_boundary = ieq(n, nlen, "boundary");
        if (s < end && *s == '"') {
            for (s++; s < end && *s != '"'; s++) {
                if (*s == '\\' && s + 1 < end)
                    s++;
                if (is_boundary) {
                    if (len + 1 >= cap || len >= CREST__MP_BOUNDARY_MAX)
                        return CREST_EINVAL;
                    out[len++] = *s;
                }
            }
            if (s == end)
                return CREST_EINVAL;
            s++;
        } else {
            for (; s < end && is_tchar((unsigned char)*s); s++) {
                if (is_boundary) {
                    if (len + 1 >= cap || len >= CREST__MP_BOUNDARY_MAX)
                        return CREST_EINVAL;
                    out[len++] = *s;
                }
            }
        }
        if (!is_boundary)
            continue;
        if (len == 0 || out[len - 1] == ' ')
            return CREST_EINVAL;
        for (size_t i = 0; i < len; i++)
            if (!is_bchar((unsigned char)out[i]))
                return CREST_EINVAL;
        out[len] = '\0';
        return (int)len;
    }
    return CREST_EINVAL;
}

/* ---- life ---- */

int crest__mp_init(crest__mp_t *p, const char *boundary, size_t len,
                   const crest__mp_limits_t *lim) {
    memset(p, 0, sizeof(*p));
    if (len == 0 || len > CREST__MP_BOUNDARY_MAX)
        return CREST_EINVAL;
    for (size_t i = 0; i < len; i++)
        if (!is_bchar((unsigned char)boundary[i]))
            return CREST_EINVAL;
    if (lim != NULL)
        p->lim = *lim;
    if (p->lim.max_header_bytes == 0)
        p->lim.max_header_bytes = 8192;
    memcpy(p->delim, "\r\n--", 4);
    memcpy(p->delim + 4, boundary, len);
    p->dlen = (uint32_t)(4 + len);
    p->match = 2; /* the virtual CRLF before the body */
    p->state = S_PREAMBLE;
    return 0;
}

void crest__mp_free(crest__mp_t *p) {
    free(p->hbuf);
    p->hbuf = NULL;
    p->hcap = 0;
}

int crest__mp_finish(crest__mp_t *p) {
    if (p->state == S_FAIL)
        return p->err;
    if (p->state == S_EPILOGUE)
        return 0;
    return fail(p, CREST_EINVAL, "the body ends before the closing boundary");
}

/* ---- a part's header block ---- */

/* A quoted-string or token at s (after "param="), decoded in place: its view in *out. The
 * backslash escapes only '"' and '\': browsers send a Windows path's backslashes as they are,
 * curl escapes the two. Returns the position after it, or NULL when malformed. */
static char *param_value(char *s, char *end, crest_str_t *out) {
    if (s < end && *s == '"') {
        char *w = ++s, *start = s;
        for (; s < end && *s != '"'; s++) {
            if (*s == '\\' && s + 1 < end && (s[1] == '"' || s[1] == '\\'))
                s++;
            *w++ = *s;
        }
        if (s == end)
            return NULL;
        *out = (crest_str_t){start, (size_t)(w - start)};
        return s + 1;
    }
    char *start = s;
    while (s < end && *s != ';' && !is_ows(*s))
        s++;
    *out = (crest_str_t){start, (size_t)(s - start)};
    return s;
}

/* filename* (RFC 8187 ext-value: charset'language'pct-encoded), decoded in place when the
 * charset is UTF-8 (browsers send nothing else). 1 when decoded, 0 for another charset, -1 when
 * malformed. */
static int ext_value(crest_str_t v, crest_str_t *out) {
    char *s = (char *)v.ptr, *end = s + v.len;
    char *q = memchr(s, '\'', v.len);
    if (q == NULL)
        return -1;
    int utf8 = ieq(s, (size_t)(q - s), "utf-8");
    char *q2 = memchr(q + 1, '\'', (size_t)(end - q - 1));
    if (q2 == NULL)
        return -1;
    char *w = q2 + 1, *start = w;
    for (s = q2 + 1; s < end; s++) {
        if (*s == '%') {
            if (end - s < 3 || crest__hex_digit((unsigned char)s[1]) < 0 ||
                crest__hex_digit((unsigned char)s[2]) < 0)
                return -1;
            *w++ = (char)(crest__hex_digit((unsigned char)s[1]) * 16 +
                          crest__hex_digit((unsigned char)s[2]));
            s += 2;
        } else {
            *w++ = *s;
        }
    }
    if (!utf8)
        return 0;
    *out = (crest_str_t){start, (size_t)(w - start)};
    return 1;
}

/* Content-Disposition: form-data; name="x"; filename="y" (RFC 7578 4.2). */
static int disposition(crest__mp_t *p, char *s, char *end, crest__mp_event_t *ev) {
    char *t = s;
    while (s < end && *s != ';' && !is_ows(*s))
        s++;
    if (!ieq(t, (size_t)(s - t), "form-data"))
        return fail(p, CREST_EINVAL, "a part's Content-Disposition is not form-data");
    int have_name = 0, have_file = 0, have_ext = 0;
    while (s < end) {
        while (s < end && is_ows(*s))
            s++;
        if (s == end)
            break;
        if (*s != ';')
            return fail(p, CREST_EINVAL, "malformed Content-Disposition");
        s++;
        while (s < end && is_ows(*s))
            s++;
        if (s == end)
            break; /* a trailing ';' */
        char *n = s;
        while (s < end && is_tchar((unsigned char)*s))
            s++;
        size_t nlen = (size_t)(s - n);
        while (s < end && is_ows(*s))
            s++;
        if (nlen == 0 || s == end || *s != '=')
            return fail(p, CREST_EINVAL, "malformed Content-Disposition");
        s++;
        while (s < end && is_ows(*s))
            s++;
        crest_str_t v;
        if ((s = param_value(s, end, &v)) == NULL)
            return fail(p, CREST_EINVAL, "unterminated quoted string in Content-Disposition");
        if (ieq(n, nlen, "name") && !have_name) {
            ev->name = v;
            have_name = 1;
        } else if (ieq(n, nlen, "filename") && !have_file) {
            if (!have_ext)
                ev->filename = v;
            have_file = 1;
        } else if (ieq(n, nlen, "filename*") && !have_ext) {
            crest_str_t d;
            int rc = ext_value(v, &d);
            if (rc < 0)
                return fail(p, CREST_EINVAL, "malformed filename* in Content-Disposition");
            if (rc > 0) {
                ev->filename = d;
                have_ext = 1;
                have_file = 1;
            }
        }
    }
    if (!have_name)
        return fail(p, CREST_EINVAL, "a part's Content-Disposition has no name");
    return 0;
}

/* The whole header block is in hbuf (it ends with an empty line). */
static int headers(crest__mp_t *p, crest__mp_event_t *ev) {
    char *s = p->hbuf, *end = p->hbuf + p->hlen;
    int have_cd = 0, have_ct = 0;
    ev->name = ev->filename = ev->content_type = (crest_str_t){NULL, 0};
    for (;;) {
        char *eol = s;
        while (eol < end && *eol != '\r' && *eol != '\n')
            eol++;
        /* The block ends with CRLF CRLF, so every line has its CRLF; a bare CR or LF is not. */
        if (eol + 1 >= end || eol[0] != '\r' || eol[1] != '\n')
            return fail(p, CREST_EINVAL, "a bare CR or LF in a part's headers");
        if (eol == s)
            break; /* the empty line */
        if (is_ows(*s))
            return fail(p, CREST_EINVAL, "a folded line in a part's headers");
        char *colon = s;
        while (colon < eol && is_tchar((unsigned char)*colon))
            colon++;
        if (colon == s || colon == eol || *colon != ':')
            return fail(p, CREST_EINVAL, "a malformed line in a part's headers");
        char *v = colon + 1, *vend = eol;
        while (v < vend && is_ows(*v))
            v++;
        while (vend > v && is_ows(vend[-1]))
            vend--;
        for (char *c = v; c < vend; c++)
            if ((unsigned char)*c < 0x20 ? *c != '\t' : *c == 0x7f)
                return fail(p, CREST_EINVAL, "a control character in a part's headers");
        size_t nlen = (size_t)(colon - s);
        if (ieq(s, nlen, "content-disposition")) {
            if (have_cd++)
                return fail(p, CREST_EINVAL, "a part with two Content-Disposition fields");
            int rc = disposition(p, v, vend, ev);
            if (rc != 0)
                return rc;
        } else if (ieq(s, nlen, "content-type")) {
            if (have_ct++)
                return fail(p, CREST_EINVAL, "a part with two Content-Type fields");
            ev->content_type = (crest_str_t){v, (size_t)(vend - v)};
        }
        s = eol + 2;
    }
    if (!have_cd)
        return fail(p, CREST_EINVAL, "a part without Content-Disposition");
    if (ev->content_type.ptr == NULL)
        ev->content_type = (crest_str_t){p->hbuf, 0};
    return 0;
}

/* ---- the scanner ---- */

static int parse(crest__mp_t *p, const char *in, size_t len, size_t *used, crest__mp_event_t *ev) {
    size_t i = 0;
    int rc = CREST__MP_NEED;
    while (i < len && rc == CREST__MP_NEED) {
        switch (p->state) {
        case S_PREAMBLE:
            while (i < len) {
                if (in[i] == p->delim[p->match]) {
                    i++;
                    if (++p->match == p->dlen) {
                        p->match = 0;
                        p->state = S_AFTER;
                        break;
                    }
                } else if (p->match > 0) {
                    p->match = 0; /* look at this byte again: it may be a CR */
                } else {
                    const char *cr = memchr(in + i, '\r', len - i);
                    i = cr ? (size_t)(cr - in) : len;
                }
            }
            break;
        case S_AFTER:
        case S_PAD:
            if (in[i] == '-' && p->state == S_AFTER) {
                p->state = S_DASH2;
            } else if (is_ows(in[i])) {
                p->state = S_PAD;
            } else if (in[i] == '\r') {
                p->state = S_LF;
            } else {
                return fail(p, CREST_EINVAL, "a boundary followed by something else than CRLF");
            }
            i++;
            break;
        case S_DASH2:
            if (in[i++] != '-')
                return fail(p, CREST_EINVAL, "a boundary followed by something else than CRLF");
            p->state = S_EPILOGUE;
            rc = CREST__MP_DONE;
            break;
        case S_LF:
            if (in[i++] != '\n')
                return fail(p, CREST_EINVAL, "a boundary followed by something else than CRLF");
            if (p->lim.max_parts && p->parts >= p->lim.max_parts)
                return fail(p, CREST_E2BIG, "more parts than max_parts");
            p->parts++;
            p->hlen = 0;
            p->state = S_HEADERS;
            break;
        case S_HEADERS: {
            if (p->hbuf == NULL) {
                /* Grown up to the limit as needed: most header blocks are under 200 bytes. */
                p->hcap = p->lim.max_header_bytes < 512 ? p->lim.max_header_bytes : 512;
                if ((p->hbuf = malloc(p->hcap)) == NULL)
                    return fail(p, CREST_ENOMEM, "out of memory");
            }
            const char *nl = memchr(in + i, '\n', len - i);
            size_t n = nl ? (size_t)(nl - in) + 1 - i : len - i;
            if (n > p->lim.max_header_bytes - p->hlen)
                return fail(p, CREST_E2BIG, "a part's headers over max_header_bytes");
            if (p->hlen + n > p->hcap) {
                uint32_t cap = p->hcap * 2 > p->hlen + n ? p->hcap * 2 : (uint32_t)(p->hlen + n);
                if (cap > p->lim.max_header_bytes)
                    cap = p->lim.max_header_bytes;
                char *b = realloc(p->hbuf, cap);
                if (b == NULL)
                    return fail(p, CREST_ENOMEM, "out of memory");
                p->hbuf = b;
                p->hcap = cap;
            }
            memcpy(p->hbuf + p->hlen, in + i, n);
            p->hlen += (uint32_t)n;
            i += n;
            if (nl == NULL)
                break;
            const char *h = p->hbuf;
            if ((p->hlen == 2 && h[0] == '\r') ||
                (p->hlen >= 4 && memcmp(h + p->hlen - 4, "\r\n\r\n", 4) == 0)) {
                int err = headers(p, ev);
                if (err != 0)
                    return err;
                p->state = S_BODY;
                p->match = 0;
                p->part_size = 0;
                rc = CREST__MP_BEGIN;
            }
            break;
        }
        case S_BODY: {
            if (p->match > 0) {
                /* Bytes held back from the last input: go on matching. */
                while (i < len && p->match < p->dlen && in[i] == p->delim[p->match]) {
                    i++;
                    p->match++;
                }
                if (p->match == p->dlen) {
                    p->match = 0;
                    p->state = S_AFTER;
                    rc = CREST__MP_END;
                } else if (i < len) {
                    /* They were data after all; the byte that failed is looked at again. */
                    ev->data = p->delim;
                    ev->len = p->match;
                    p->match = 0;
                    rc = CREST__MP_DATA;
                }
                break;
            }
            size_t start = i, k = 0;
            const char *cr;
            while ((cr = memchr(in + i, '\r', len - i)) != NULL) {
                i = (size_t)(cr - in);
                for (k = 1; k < p->dlen && i + k < len && in[i + k] == p->delim[k]; k++)
                    ;
                if (k == p->dlen || i + k == len)
                    break; /* a delimiter, or maybe one: the input ends within it */
                i++;
            }
            if (cr == NULL)
                i = len;
            if (i > start) {
                ev->data = in + start;
                ev->len = i - start;
                rc = CREST__MP_DATA;
            } else if (k == p->dlen) {
                i += k;
                p->state = S_AFTER;
                rc = CREST__MP_END;
            } else {
                i += k; /* held back: they are delim[0..k) */
                p->match = (uint32_t)k;
            }
            break;
        }
        case S_EPILOGUE:
            i = len;
            break;
        default:
            return p->err;
        }
    }
    if (rc == CREST__MP_DATA) {
        p->part_size += ev->len;
        if (p->lim.max_part_size && p->part_size > p->lim.max_part_size)
            return fail(p, CREST_E2BIG, "a part over max_part_size");
    }
    *used = i;
    return rc;
}

int crest__mp_parse(crest__mp_t *p, const char *in, size_t len, size_t *used,
                    crest__mp_event_t *ev) {
    *used = 0;
    if (p->state == S_FAIL)
        return p->err;
    /* The total is checked on what is consumed, before it is: an input that would pass it is
     * parsed up to the limit only, and fails once that much has been used. */
    size_t n = len;
    if (p->lim.max_total) {
        uint64_t room = p->lim.max_total - p->total;
        if (n > room)
            n = (size_t)room;
    }
    int rc = parse(p, in, n, used, ev);
    if (rc < 0)
        return rc;
    p->total += *used;
    if (rc == CREST__MP_NEED && n < len)
        return fail(p, CREST_E2BIG, "the body over max_total");
    return rc;
}
