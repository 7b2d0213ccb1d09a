/* An HTTP/1.1 response parser (see h1res.h), shared by the outbound client and the test client.
 *
 * Written by hand rather than taken from a library for the same reasons as the server's request
 * parser (src/http/parser.c): the framing rules decide whether a pooled connection can carry
 * the next request, and a smuggling-prone leniency here (two Content-Lengths, a Transfer-Encoding
 * that is not chunked, folded lines) would let one response swallow or invent another. So the
 * head is read whole (it is small, and bounded) and then checked strictly, while the body is
 * decoded as it comes with no copy: Content-Length and close-delimited bodies are handed on in
 * the pieces they arrived in, chunked ones through a byte-wise state machine for the chunk lines
 * and in bulk for the data. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec/h1res.h"
#include "codec/hex.h"
#include "crest/errno.h"

enum {
    ST_HEAD,             /* reading the head */
    ST_BODY,             /* Content-Length or close-delimited data */
    ST_CH_SIZE,          /* chunk size digits */
    ST_CH_SIZE_WS,       /* spaces after the digits */
    ST_CH_EXT,           /* a chunk extension, skipped up to the line's end */
    ST_CH_SIZE_LF,       /* CR seen after the size line */
    ST_CH_DATA,          /* chunk data */
    ST_CH_DATA_CR,       /* the CRLF after the data */
    ST_CH_DATA_LF,       /* CR seen after the data */
    ST_CH_TRAILER_START, /* at the start of a trailer line (or the final empty line) */
    ST_CH_TRAILER_LINE,  /* inside a trailer field, dropped */
    ST_CH_TRAILER_LF,    /* CR seen on the final empty line */
    ST_COMPLETE,
};

void crest__h1res_init(crest__h1res_t *p) {
    memset(p, 0, sizeof(*p));
    p->max_head = 64 * 1024;
    p->max_body = 8 * 1024 * 1024;
}

void crest__h1res_reset(crest__h1res_t *p) {
    p->head_done = 0;
    p->status = 0;
    p->minor = 0;
    p->keep_alive = 0;
    p->reason = (crest_str_t){NULL, 0};
    p->nheaders = 0;
    p->body_len = 0;
    p->head_len = 0;
    p->line_start = 0;
    p->framing = CREST__H1RES_NONE;
    p->state = ST_HEAD;
    p->left = 0;
    p->digits = 0;
    p->extra = 0;
    p->error = 0;
}

void crest__h1res_free(crest__h1res_t *p) {
    free(p->head);
    p->head = NULL;
    p->head_cap = 0;
    crest__h1res_reset(p);
}

static int is_tchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int span_ieq(crest_str_t s, const char *lit) {
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(s.ptr, lit, n) == 0;
}

crest_str_t crest__h1res_header(const crest__h1res_t *p, const char *name) {
    for (size_t i = 0; i < p->nheaders; i++)
        if (span_ieq(p->headers[i].name, name))
            return p->headers[i].value;
    return (crest_str_t){NULL, 0};
}

/* Call fn on each element of a comma-separated list value, trimmed; stops at a nonzero return. */
static int each_token(crest_str_t v, int (*fn)(crest_str_t tok, void *arg), void *arg) {
    size_t i = 0;
    while (i <= v.len) {
        size_t j = i;
        while (j < v.len && v.ptr[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v.ptr[a] == ' ' || v.ptr[a] == '\t'))
            a++;
        while (b > a && (v.ptr[b - 1] == ' ' || v.ptr[b - 1] == '\t'))
            b--;
        if (b > a) {
            int rc = fn((crest_str_t){v.ptr + a, b - a}, arg);
            if (rc)
                return rc;
        }
        i = j + 1;
    }
    return 0;
}

static int on_connection_token(crest_str_t tok, void *arg) {
    crest__h1res_t *p = arg;
    if (span_ieq(tok, "close"))
        p->keep_alive = 0;
    else if (span_ieq(tok, "keep-alive") && p->minor == 0)
        p->keep_alive = 1;
    return 0;
}

/* Content-Length: digits, maybe a list of equal values ("5, 5", from a proxy that merged two
 * fields); anything else is refused, since two lengths would frame two different messages. */
typedef struct {
    int seen;
    uint64_t value;
} length_t;

static int on_length_token(crest_str_t tok, void *arg) {
    length_t *l = arg;
    uint64_t v = 0;
    for (size_t i = 0; i < tok.len; i++) {
        unsigned char c = (unsigned char)tok.ptr[i];
        if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10)
            return CREST_EPROTO;
        v = v * 10 + (uint64_t)(c - '0');
    }
    if (l->seen && l->value != v)
        return CREST_EPROTO;
    l->seen = 1;
    l->value = v;
    return 0;
}

static int on_te_token(crest_str_t tok, void *arg) {
    *(int *)arg = span_ieq(tok, "chunked"); /* only the last coding counts */
    return 0;
}

/* The status line: HTTP/1.x SP 3DIGIT [SP reason]. */
static int parse_status_line(crest__h1res_t *p, const char *s, size_t n) {
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ')
        return CREST_EPROTO;
    for (int i = 9; i < 12; i++)
        if (s[i] < '0' || s[i] > '9')
            return CREST_EPROTO;
    p->minor = s[7] - '0';
    p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (p->status < 100)
        return CREST_EPROTO;
    if (n > 12 && s[12] != ' ')
        return CREST_EPROTO;
    for (size_t i = 12; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return CREST_EPROTO;
    }
    p->reason = n > 13 ? (crest_str_t){s + 13, n - 13} : (crest_str_t){s + n, 0};
    return 0;
}

static int parse_field(crest__h1res_t *p, const char *s, size_t n) {
    size_t colon = 0;
    while (colon < n && is_tchar((unsigned char)s[colon]))
        colon++;
    /* No name, a space before the colon, or a folded line (it starts with a space): refused. */
    if (colon == 0 || colon == n || s[colon] != ':')
        return CREST_EPROTO;
    size_t a = colon + 1, b = n;
    while (a < b && (s[a] == ' ' || s[a] == '\t'))
        a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
        b--;
    for (size_t i = a; i < b; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return CREST_EPROTO;
    }
    if (p->nheaders == CREST__H1RES_MAX_HEADERS)
        return CREST_E2BIG;
    p->headers[p->nheaders].name = (crest_str_t){s, colon};
    p->headers[p->nheaders].value = (crest_str_t){s + a, b - a};
    p->nheaders++;
    return 0;
}

/* The whole head is in p->head, its last line the empty one. */
static int parse_head(crest__h1res_t *p) {
    p->nheaders = 0;
    size_t i = 0, end = p->line_start; /* the empty line starts at line_start */
    int first = 1;
    while (i < end) {
        const char *nl = memchr(p->head + i, '\n', end - i);
        size_t stop = (size_t)(nl - p->head); /* a line always ends with LF before `end` */
        size_t n = stop - i;
        if (n > 0 && p->head[i + n - 1] == '\r')
            n--;
        if (memchr(p->head + i, '\r', n) != NULL || memchr(p->head + i, '\0', n) != NULL)
            return CREST_EPROTO; /* a bare CR or a NUL inside a line */
        int rc = first ? parse_status_line(p, p->head + i, n) : parse_field(p, p->head + i, n);
        if (rc)
            return rc;
        first = 0;
        i = stop + 1;
    }
    if (first)
        return CREST_EPROTO;
    p->keep_alive = p->minor >= 1;
    for (size_t h = 0; h < p->nheaders; h++)
        if (span_ieq(p->headers[h].name, "connection"))
            each_token(p->headers[h].value, on_connection_token, p);
    return 0;
}

/* How the body of a parsed head ends (RFC 9112 section 6.3). */
static int set_framing(crest__h1res_t *p) {
    length_t len = {0, 0};
    int has_te = 0, chunked = 0;
    for (size_t h = 0; h < p->nheaders; h++) {
        crest_str_t name = p->headers[h].name;
        if (span_ieq(name, "content-length")) {
            if (p->headers[h].value.len == 0)
                return CREST_EPROTO;
            int rc = each_token(p->headers[h].value, on_length_token, &len);
            if (rc)
                return rc;
        } else if (span_ieq(name, "transfer-encoding")) {
            has_te = 1;
            each_token(p->headers[h].value, on_te_token, &chunked);
        }
    }
    if (p->status == 101)
        p->keep_alive = 0; /* the connection now speaks something else */
    if (p->no_body || p->status < 200 || p->status == 204 || p->status == 304) {
        p->framing = CREST__H1RES_NONE;
        return 0;
    }
    if (has_te) {
        /* Transfer-Encoding wins over Content-Length, but a message with both may be an
         * attempt at smuggling: the connection is not reused after it. */
        if (len.seen)
            p->keep_alive = 0;
        if (chunked) {
            p->framing = CREST__H1RES_CHUNKED;
            p->state = ST_CH_SIZE;
            p->left = 0;
            p->digits = 0;
        } else {
            p->framing = CREST__H1RES_CLOSE;
            p->keep_alive = 0;
            p->state = ST_BODY;
        }
        return 0;
    }
    if (len.seen) {
        if (len.value > p->max_body)
            return CREST_E2BIG;
        p->framing = len.value ? CREST__H1RES_LENGTH : CREST__H1RES_NONE;
        p->left = len.value;
        p->state = ST_BODY;
        return 0;
    }
    p->framing = CREST__H1RES_CLOSE;
    p->keep_alive = 0;
    p->state = ST_BODY;
    return 0;
}

static int deliver(crest__h1res_t *p, const char *data, size_t n) {
    if (n > p->max_body - p->body_len)
        return CREST_E2BIG;
    p->body_len += n;
    if (n && p->on_body)
        p->on_body(p->arg, data, n);
    return 0;
}

/* Take head bytes up to the end of the head. Returns 0 (all taken or head complete: see
 * head_done / state) or an error; *i advances. */
static int feed_head(crest__h1res_t *p, const char *data, size_t len, size_t *i) {
    while (*i < len) {
        const char *nl = memchr(data + *i, '\n', len - *i);
        size_t n = nl ? (size_t)(nl - (data + *i)) + 1 : len - *i;
        if (n > p->max_head - p->head_len)
            return CREST_E2BIG;
        if (p->head_len + n > p->head_cap) {
            size_t cap = p->head_cap ? p->head_cap : 1024;
            while (cap < p->head_len + n)
                cap *= 2;
            if (cap > p->max_head)
                cap = p->max_head;
            char *h = realloc(p->head, cap);
            if (h == NULL)
                return CREST_ENOMEM;
            p->head = h;
            p->head_cap = cap;
        }
        memcpy(p->head + p->head_len, data + *i, n);
        p->head_len += n;
        *i += n;
        if (nl == NULL)
            return 0;
        size_t line = p->head_len - p->line_start;
        int empty = line == 1 || (line == 2 && p->head[p->line_start] == '\r');
        if (!empty) {
            p->line_start = p->head_len;
            continue;
        }
        if (p->line_start == 0) { /* an empty line before the status line is ignored */
            p->head_len = 0;
            continue;
        }
        int rc = parse_head(p);
        if (rc == 0 && p->status >= 100 && p->status < 200 && p->status != 101) {
            /* An interim response (100 Continue, 103 Early Hints): the final one follows. */
            p->head_len = p->line_start = 0;
            p->nheaders = 0;
            continue;
        }
        rc = rc ? rc : set_framing(p);
        if (rc)
            return rc;
        p->head_done = 1;
        if (p->framing == CREST__H1RES_NONE)
            p->state = ST_COMPLETE;
        return 0;
    }
    return 0;
}

/* One byte of a chunked body's framing (everything but the data). */
static int chunk_byte(crest__h1res_t *p, unsigned char c) {
    switch (p->state) {
    case ST_CH_SIZE: {
        int v = crest__hex_digit((unsigned char)c);
        if (v >= 0) {
            if (p->digits == 16)
                return CREST_EPROTO;
            p->left = (p->left << 4) | (uint64_t)v;
            p->digits++;
            return 0;
        }
        if (p->digits == 0)
            return CREST_EPROTO;
        if (c == ' ' || c == '\t')
            p->state = ST_CH_SIZE_WS;
        else if (c == ';')
            p->state = ST_CH_EXT;
        else if (c == '\r')
            p->state = ST_CH_SIZE_LF;
        else if (c == '\n')
            goto size_done;
        else
            return CREST_EPROTO;
        return 0;
    }
    case ST_CH_SIZE_WS:
        if (c == ';')
            p->state = ST_CH_EXT;
        else if (c == '\r')
            p->state = ST_CH_SIZE_LF;
        else if (c == '\n')
            goto size_done;
        else if (c != ' ' && c != '\t')
            return CREST_EPROTO;
        return 0;
    case ST_CH_EXT:
        if (++p->extra > p->max_head)
            return CREST_E2BIG;
        if (c == '\n')
            goto size_done;
        if (c == 0)
            return CREST_EPROTO;
        return 0;
    case ST_CH_SIZE_LF:
        if (c != '\n')
            return CREST_EPROTO;
        goto size_done;
    case ST_CH_DATA_CR:
        if (c == '\r')
            p->state = ST_CH_DATA_LF;
        else if (c == '\n')
            p->state = ST_CH_SIZE;
        else
            return CREST_EPROTO;
        return 0;
    case ST_CH_DATA_LF:
        if (c != '\n')
            return CREST_EPROTO;
        p->state = ST_CH_SIZE;
        return 0;
    case ST_CH_TRAILER_START:
        if (c == '\r')
            p->state = ST_CH_TRAILER_LF;
        else if (c == '\n')
            p->state = ST_COMPLETE;
        else if (++p->extra > p->max_head)
            return CREST_E2BIG;
        else
            p->state = ST_CH_TRAILER_LINE;
        return 0;
    case ST_CH_TRAILER_LINE:
        if (++p->extra > p->max_head)
            return CREST_E2BIG;
        if (c == '\n')
            p->state = ST_CH_TRAILER_START;
        else if (c == 0)
            return CREST_EPROTO;
        return 0;
    case ST_CH_TRAILER_LF:
        if (c != '\n')
            return CREST_EPROTO;
        p->state = ST_COMPLETE;
        return 0;
    default:
        return CREST_EPROTO;
    }
size_done:
    p->digits = 0;
    if (p->left == 0) {
        p->state = ST_CH_TRAILER_START;
        return 0;
    }
    /* Refused at the size line, before any of a chunk too large arrives. */
    if (p->left > p->max_body - p->body_len)
        return CREST_E2BIG;
    p->state = ST_CH_DATA;
    return 0;
}

int crest__h1res_feed(crest__h1res_t *p, const char *data, size_t len, size_t *used) {
    size_t i = 0;
    int rc = p->error;
    while (rc == 0 && i < len && p->state != ST_COMPLETE) {
        if (p->state == ST_HEAD) {
            rc = feed_head(p, data, len, &i);
        } else if (p->state == ST_BODY) {
            size_t n = len - i;
            if (p->framing == CREST__H1RES_LENGTH && n > p->left)
                n = (size_t)p->left;
            rc = deliver(p, data + i, n);
            i += n;
            if (rc == 0 && p->framing == CREST__H1RES_LENGTH && (p->left -= n) == 0)
                p->state = ST_COMPLETE;
        } else if (p->state == ST_CH_DATA) {
            size_t n = len - i;
            if (n > p->left)
                n = (size_t)p->left;
            rc = deliver(p, data + i, n);
            i += n;
            if (rc == 0 && (p->left -= n) == 0)
                p->state = ST_CH_DATA_CR;
        } else {
            rc = chunk_byte(p, (unsigned char)data[i++]);
        }
    }
    *used = i;
    if (rc) {
        p->error = rc;
        return rc;
    }
    return p->state == ST_COMPLETE ? CREST__H1RES_DONE : CREST__H1RES_MORE;
}

int crest__h1res_eof(crest__h1res_t *p) {
    if (p->error)
        return p->error;
    if (p->state == ST_BODY && p->framing == CREST__H1RES_CLOSE)
        p->state = ST_COMPLETE;
    if (p->state == ST_COMPLETE)
        return CREST__H1RES_DONE;
    p->error = CREST_EPROTO;
    return CREST_EPROTO;
}
