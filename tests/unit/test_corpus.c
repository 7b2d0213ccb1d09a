/* Runs llhttp's request test vectors (../shared/corpus/llhttp, see its README.md) through crest's
 * parser: one cmocka test per .md file, failing cases named in the output.
 *
 * Each case is an `http` block (the raw request) and a `log` block (what llhttp reports). The
 * block is turned into bytes the way llhttp's test/md-test.ts does it: the text between the
 * fences without its last newline, backslash-newline removed, every newline made CRLF, then the
 * escapes \r \n \t \f, \xHH and \OOO (octal) replaced in that order; a code point from \x or octal
 * escapes is sent UTF-8 encoded, as Node.js does.
 *
 * The bytes are fed to a small model of a connection (head parser, then Content-Length or chunked
 * body, then the next pipelined request) whole, one byte at a time and split in two at every
 * offset; the three must agree. Then:
 * - llhttp parses it (strict mode, type "request"): crest yields the same method, target,
 *   version, header fields (llhttp keeps trailing whitespace in values, crest strips it), body,
 *   and the same "message complete" for every message whose headers llhttp completed. A pause on
 *   CONNECT/Upgrade (error 22, 23) is llhttp handing the connection over: crest must stop there
 *   too. Pause metas only interrupt llhttp's run and do not change the log; skipBody is modelled.
 * - llhttp reports an error: crest rejects, either with a negative result, or by the connection
 *   closing with bytes left after a message without keep-alive ("Data after Connection: close").
 * - "request-finish" cases: finish=0 means the input ended between messages; otherwise crest
 *   must be waiting for more bytes (the connection layer drops such a request at EOF).
 * - Lenient types describe llhttp modes crest does not offer: crest must reject them.
 * - The table `deviations` lists the cases where crest deliberately differs, with the reason. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/parser.h"

enum { REJECTS, ACCEPTS };

static const struct {
    const char *file, *name;
    int verdict;
    const char *reason;
} deviations[] = {
    {"invalid.md", "HTTP protocol and ANNOUNCE method", ACCEPTS,
     "any token is a method (RFC 9110 9.1); the router answers an unknown one"},
    {"invalid.md", "Invalid method", ACCEPTS,
     "MKCOLA is a token, so a method (RFC 9110 9.1); the router answers an unknown one"},
    {"sample.md", "No HTTP version", REJECTS, "HTTP/0.9 request lines are not supported"},
    {"uri.md", "Fragment in URI", REJECTS,
     "a '#' has no place in a request-target (RFC 9112 3.2); crest rejects it"},
    {"transfer-encoding.md", "POST with `chunked` as last transfer-encoding", REJECTS,
     "the target has a fragment ('#'), rejected as in \"Fragment in URI\""},
    {"transfer-encoding.md", "POST with `chunked` as last transfer-encoding (multiple headers)",
     REJECTS, "the target has a fragment ('#'), rejected as in \"Fragment in URI\""},
    {"method.md", "SOURCE request with ICE", REJECTS, "ICE/1.0 is not HTTP"},
    {"method.md", "OPTIONS request with RTSP", REJECTS, "RTSP/1.0 is not HTTP"},
    {"method.md", "ANNOUNCE request with RTSP", REJECTS, "RTSP/1.0 is not HTTP"},
    {"method.md", "PRI request HTTP2", REJECTS,
     "crest has no HTTP/2 prior knowledge: the \"SM\" after the PRI head is a malformed request"},
};

/* ---- growable byte strings ---- */

typedef struct {
    char *p;
    size_t len, cap;
} bytes_t;

static void bput(bytes_t *b, const void *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void bclear(bytes_t *b) {
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static int beq(const bytes_t *a, const bytes_t *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* ---- messages, as llhttp logs them and as crest parses them ---- */

#define MAX_MSGS 8
#define MAX_FIELDS 64

typedef struct {
    bytes_t method, url, version, body;
    bytes_t name[MAX_FIELDS], value[MAX_FIELDS];
    int nfields;
    int headers_done, complete;
} msg_t;

enum { V_CLEAN, V_INCOMPLETE, V_REJECT, V_CLOSED, V_UPGRADE, V_ERROR };

typedef struct {
    msg_t msgs[MAX_MSGS];
    int n;
    int verdict;
    int finish; /* -1: no finish line */
    int overflow;
} run_t;

static void run_free(run_t *r) {
    for (int i = 0; i < r->n && i < MAX_MSGS; i++) {
        msg_t *m = &r->msgs[i];
        bclear(&m->method);
        bclear(&m->url);
        bclear(&m->version);
        bclear(&m->body);
        for (int j = 0; j < MAX_FIELDS; j++) {
            bclear(&m->name[j]);
            bclear(&m->value[j]);
        }
    }
    memset(r, 0, sizeof(*r));
}

static msg_t *new_msg(run_t *r) {
    if (r->n >= MAX_MSGS) {
        r->overflow = 1;
        return NULL;
    }
    msg_t *m = &r->msgs[r->n++];
    memset(m, 0, sizeof(*m));
    return m;
}

/* ---- turning an http block into bytes (llhttp's md-test.ts rules) ---- */

static void put_utf8(bytes_t *b, unsigned long cp) {
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    }
    bput(b, u, n);
}

/* One pass of a replacement over the whole text, as each JavaScript replace() is. */
static void replace_simple(bytes_t *t, char esc, char with) {
    bytes_t o = {0};
    for (size_t i = 0; i < t->len; i++) {
        if (t->p[i] == '\\' && i + 1 < t->len && t->p[i + 1] == esc) {
            bput(&o, &with, 1);
            i++;
        } else {
            bput(&o, t->p + i, 1);
        }
    }
    bclear(t);
    *t = o;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void replace_numeric(bytes_t *t, int octal) {
    bytes_t o = {0};
    for (size_t i = 0; i < t->len; i++) {
        size_t j = i + 1;
        unsigned long cp = 0;
        if (t->p[i] == '\\' && !octal && j < t->len && t->p[j] == 'x') {
            j++;
            while (j < t->len && hexval(t->p[j]) >= 0 && cp < 0x10000)
                cp = cp * 16 + (unsigned long)hexval(t->p[j++]);
            if (j > i + 2) {
                put_utf8(&o, cp);
                i = j - 1;
                continue;
            }
        } else if (t->p[i] == '\\' && octal) {
            while (j < t->len && j < i + 4 && t->p[j] >= '0' && t->p[j] <= '7')
                cp = cp * 8 + (unsigned long)(t->p[j++] - '0');
            if (j > i + 1) {
                put_utf8(&o, cp);
                i = j - 1;
                continue;
            }
        }
        bput(&o, t->p + i, 1);
    }
    bclear(t);
    *t = o;
}

static void block_to_bytes(const char *text, size_t len, bytes_t *out) {
    bytes_t t = {0};
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\\' && i + 1 < len && text[i + 1] == '\n') {
            i++; /* an escaped newline joins the lines */
        } else if (text[i] == '\n') {
            bput(&t, "\r\n", 2);
        } else {
            bput(&t, text + i, 1);
        }
    }
    replace_simple(&t, 'r', '\r');
    replace_simple(&t, 'n', '\n');
    replace_simple(&t, 't', '\t');
    replace_simple(&t, 'f', '\f');
    replace_numeric(&t, 0);
    replace_numeric(&t, 1);
    *out = t;
}

/* ---- reading a log block ---- */

static void unescape_log(const char *s, size_t n, bytes_t *out) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == 't' || s[i + 1] == 'f')) {
            bput(out, s[i + 1] == 't' ? "\t" : "\f", 1);
            i++;
        } else {
            bput(out, s + i, 1);
        }
    }
}

static void parse_log(const char *text, size_t len, run_t *r) {
    memset(r, 0, sizeof(*r));
    r->finish = -1;
    r->verdict = V_CLEAN;
    msg_t *m = NULL;
    int value_done = 1;
    for (size_t i = 0; i < len;) {
        const char *line = text + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) : len - i;
        i += n + 1;
        const char *sp = memchr(line, ' ', n);
        if (!sp)
            continue;
        const char *ev = sp + 1;
        size_t evn = n - (size_t)(ev - line);
        if (evn >= 13 && memcmp(ev, "message begin", 13) == 0) {
            m = new_msg(r);
            value_done = 1;
        } else if (strncmp(ev, "finish=", 7) == 0) {
            r->finish = atoi(ev + 7);
        } else if (strncmp(ev, "error code=", 11) == 0) {
            int code = atoi(ev + 11);
            r->verdict = (code == 22 || code == 23) ? V_UPGRADE : V_ERROR;
        } else if (!m) {
            continue;
        } else if (strncmp(ev, "headers complete", 16) == 0) {
            m->headers_done = 1;
        } else if (strncmp(ev, "message complete", 16) == 0) {
            m->complete = 1;
        } else if (strncmp(ev, "header_value complete", 21) == 0) {
            value_done = 1;
        } else if (strncmp(ev, "len=", 4) == 0) {
            const char *kind = strstr(ev, "span[");
            const char *q = kind ? strstr(kind, "]=\"") : NULL;
            if (!q || line[n - 1] != '"')
                continue;
            const char *v = q + 3;
            size_t vn = (size_t)(line + n - 1 - v);
            size_t kn = (size_t)(q - kind - 5);
            kind += 5;
#define KIND(s) (kn == strlen(s) && memcmp(kind, s, kn) == 0)
            if (KIND("method")) {
                unescape_log(v, vn, &m->method);
            } else if (KIND("url")) {
                unescape_log(v, vn, &m->url);
            } else if (KIND("version")) {
                unescape_log(v, vn, &m->version);
            } else if (KIND("body")) {
                unescape_log(v, vn, &m->body);
            } else if (KIND("header_field") && !m->headers_done) {
                if (value_done) {
                    if (m->nfields == MAX_FIELDS) {
                        r->overflow = 1;
                        continue;
                    }
                    m->nfields++;
                    value_done = 0;
                }
                unescape_log(v, vn, &m->name[m->nfields - 1]);
            } else if (KIND("header_value") && !m->headers_done && m->nfields) {
                unescape_log(v, vn, &m->value[m->nfields - 1]);
            }
#undef KIND
        }
    }
    /* llhttp keeps trailing whitespace in a value; RFC 9112 5 leaves it out, as crest does. */
    for (int k = 0; k < r->n && k < MAX_MSGS; k++) {
        for (int j = 0; j < r->msgs[k].nfields; j++) {
            bytes_t *v = &r->msgs[k].value[j];
            while (v->len && (v->p[v->len - 1] == ' ' || v->p[v->len - 1] == '\t'))
                v->p[--v->len] = 0;
        }
    }
}

/* ---- crest's side: a connection model fed in pieces ---- */

enum { S_HEAD, S_LENGTH, S_CHUNKED, S_CLOSED, S_DONE };

typedef struct {
    const char *in; /* the whole input; only [0, avail) has "arrived" */
    size_t avail, pos;
    int state;
    size_t scanned;
    uint64_t left;
    crest__http_chunked_t chunked;
    int keep_alive, upgrade, skip_body;
    int status; /* the rejection status, for messages */
    run_t *out;
} conn_t;

static const crest__http_limits_t limits = {
    .max_request_line = 8192,
    .max_header_bytes = 65536,
    .max_headers = 100,
};

static void message_done(conn_t *c) {
    c->out->msgs[c->out->n - 1].complete = 1;
    if (c->upgrade) {
        c->state = S_DONE;
        c->out->verdict = V_UPGRADE;
    } else {
        c->state = c->keep_alive ? S_HEAD : S_CLOSED;
        c->scanned = 0;
    }
}

static void on_head(conn_t *c, const char *base, const crest__http_head_t *h) {
    msg_t *m = new_msg(c->out);
    if (!m)
        return;
    (void)base;
    bput(&m->method, h->method.ptr, h->method.len);
    bput(&m->url, h->target.ptr, h->target.len);
    bput(&m->version, h->version_minor ? "1.1" : "1.0", 3);
    for (size_t i = 0; i < h->num_headers && i < MAX_FIELDS; i++) {
        bput(&m->name[i], h->headers[i].name.ptr, h->headers[i].name.len);
        bput(&m->value[i], h->headers[i].value.ptr, h->headers[i].value.len);
    }
    m->nfields = (int)h->num_headers;
    m->headers_done = 1;
}

/* Processes whatever has arrived; stops when it needs more or reached a verdict. */
static void conn_step(conn_t *c) {
    for (;;) {
        switch (c->state) {
        case S_HEAD: {
            if (c->pos == c->avail)
                return;
            size_t n = c->avail - c->pos;
            char *b = malloc(n); /* exactly the bytes there, so ASan sees any read past them */
            assert_non_null(b);
            memcpy(b, c->in + c->pos, n);
            static crest__http_head_t h;
            int r = crest__http_parse_head(b, n, &limits, &c->scanned, &h);
            if (r > 0)
                on_head(c, b, &h);
            free(b);
            if (r == 0)
                return;
            if (r < 0 || c->out->overflow) {
                c->status = -r;
                c->state = S_DONE;
                c->out->verdict = V_REJECT;
                return;
            }
            c->pos += (size_t)r;
            c->keep_alive = h.keep_alive;
            c->upgrade = h.upgrade;
            crest__http_chunked_init(&c->chunked, 4096, 16384);
            if (h.method_id == CREST_METHOD_CONNECT) {
                /* Whatever follows CONNECT is the tunnel, not a body. */
                c->upgrade = 1;
                message_done(c);
            } else if (c->skip_body || h.body_kind == CREST__BODY_NONE) {
                message_done(c);
            } else if (h.body_kind == CREST__BODY_LENGTH) {
                c->left = h.content_length;
                c->state = S_LENGTH;
                if (c->left == 0)
                    message_done(c);
            } else {
                c->state = S_CHUNKED;
            }
            break;
        }
        case S_LENGTH: {
            size_t n = c->avail - c->pos;
            if (n > c->left)
                n = (size_t)c->left;
            if (n == 0)
                return;
            bput(&c->out->msgs[c->out->n - 1].body, c->in + c->pos, n);
            c->pos += n;
            c->left -= n;
            if (c->left == 0)
                message_done(c);
            break;
        }
        case S_CHUNKED: {
            size_t n = c->avail - c->pos, consumed = 0;
            if (n == 0)
                return;
            char *b = malloc(n);
            assert_non_null(b);
            memcpy(b, c->in + c->pos, n);
            size_t len = n;
            int r = crest__http_chunked_decode(&c->chunked, b, &len, &consumed);
            /* Bytes decoded before an error count too, so every way of feeding agrees. */
            bput(&c->out->msgs[c->out->n - 1].body, b, len);
            free(b);
            if (r < 0) {
                c->status = -r;
                c->state = S_DONE;
                c->out->verdict = V_REJECT;
                return;
            }
            c->pos += consumed;
            if (r == 1)
                message_done(c);
            else
                return;
            break;
        }
        case S_CLOSED:
            /* After a message without keep-alive the connection closes: stray CRLFs are
             * harmless, anything else is a request we will never answer. */
            for (; c->pos < c->avail; c->pos++) {
                if (c->in[c->pos] != '\r' && c->in[c->pos] != '\n') {
                    c->state = S_DONE;
                    c->out->verdict = V_CLOSED;
                    return;
                }
            }
            return;
        default:
            return;
        }
    }
}

static void run_crest(const bytes_t *in, const size_t *cuts, size_t ncuts, int skip_body,
                      run_t *out) {
    memset(out, 0, sizeof(*out));
    out->verdict = V_CLEAN;
    conn_t c = {.in = in->p, .out = out, .skip_body = skip_body};
    for (size_t i = 0; i < ncuts && c.state != S_DONE; i++) {
        c.avail = cuts[i];
        conn_step(&c);
    }
    if (c.state == S_DONE)
        return;
    if (c.state == S_LENGTH || c.state == S_CHUNKED) {
        out->verdict = V_INCOMPLETE;
    } else if (c.state == S_HEAD) {
        for (size_t i = c.pos; i < in->len; i++) {
            if (in->p[i] != '\r' && in->p[i] != '\n') {
                out->verdict = V_INCOMPLETE;
                break;
            }
        }
    }
}

static int msg_equal(const msg_t *a, const msg_t *b) {
    if (!beq(&a->method, &b->method) || !beq(&a->url, &b->url) || !beq(&a->version, &b->version) ||
        !beq(&a->body, &b->body) || a->nfields != b->nfields || a->complete != b->complete ||
        a->headers_done != b->headers_done)
        return 0;
    for (int i = 0; i < a->nfields; i++) {
        if (!beq(&a->name[i], &b->name[i]) || !beq(&a->value[i], &b->value[i]))
            return 0;
    }
    return 1;
}

static int runs_equal(const run_t *a, const run_t *b) {
    if (a->verdict != b->verdict || a->n != b->n)
        return 0;
    for (int i = 0; i < a->n; i++) {
        if (!msg_equal(&a->msgs[i], &b->msgs[i]))
            return 0;
    }
    return 1;
}

static const char *verdict_name(int v) {
    static const char *names[] = {"clean end",        "incomplete", "rejected",
                                  "data after close", "upgrade",    "error"};
    return names[v];
}

static int is_rejection(int v) {
    return v == V_REJECT || v == V_CLOSED;
}

/* Whether crest rejects the input. crest checks a head only once its empty line is there, while
 * llhttp stops at the first bad byte, so several error cases end before the head does. When crest
 * is still waiting for bytes at the end of the input, the client is made to finish with an empty
 * line, after which crest must reject. */
static int rejects(const bytes_t *in, const run_t *whole, int skip_body) {
    if (whole->verdict != V_INCOMPLETE)
        return is_rejection(whole->verdict);
    bytes_t more = {0};
    bput(&more, in->p, in->len);
    bput(&more, "\r\n\r\n", 4);
    static run_t r;
    run_crest(&more, &more.len, 1, skip_body, &r);
    int v = is_rejection(r.verdict);
    run_free(&r);
    bclear(&more);
    return v;
}

/* ---- one case ---- */

typedef struct {
    const char *file;
    char name[256];
    char meta[256];
    const char *http, *log;
    size_t http_len, log_len;
    int line;
} md_case_t;

static int meta_type(const md_case_t *k, char *type, size_t n) {
    const char *t = strstr(k->meta, "\"type\"");
    if (!t)
        return 0;
    t = strchr(t + 6, '"');
    if (!t)
        return 0;
    const char *e = strchr(t + 1, '"');
    if (!e || (size_t)(e - t - 1) >= n)
        return 0;
    memcpy(type, t + 1, (size_t)(e - t - 1));
    type[e - t - 1] = 0;
    return 1;
}

/* Returns NULL when the case passes, else why it failed (in a static buffer). */
static const char *run_case(const md_case_t *k) {
    static char why[512];
    char type[64];
    if (!meta_type(k, type, sizeof(type)))
        return "no type in the meta line";

    bytes_t in = {0};
    block_to_bytes(k->http, k->http_len, &in);
    if (!in.p)
        bput(&in, "", 0);
    int skip_body = strstr(k->meta, "\"skipBody\": true") != NULL;

    static run_t whole, part, want;
    run_crest(&in, &in.len, 1, skip_body, &whole);
    const char *fail = NULL;

    /* The same result one byte at a time and split at every offset. */
    size_t *cuts = malloc((in.len + 1) * sizeof(*cuts));
    assert_non_null(cuts);
    for (size_t i = 0; i <= in.len; i++)
        cuts[i] = i;
    run_crest(&in, in.len ? cuts + 1 : cuts, in.len ? in.len : 1, skip_body, &part);
    if (!runs_equal(&whole, &part))
        fail = "fed one byte at a time it gives another result";
    run_free(&part);
    for (size_t s = 0; !fail && s <= in.len; s++) {
        size_t two[2] = {s, in.len};
        run_crest(&in, two, 2, skip_body, &part);
        if (!runs_equal(&whole, &part)) {
            snprintf(why, sizeof(why), "split at %zu it gives another result", s);
            fail = why;
        }
        run_free(&part);
    }
    free(cuts);
    int rejected = rejects(&in, &whole, skip_body);
    bclear(&in);
    if (fail) {
        run_free(&whole);
        return fail;
    }

    for (size_t i = 0; i < sizeof(deviations) / sizeof(deviations[0]); i++) {
        if (strcmp(deviations[i].file, k->file) == 0 && strcmp(deviations[i].name, k->name) == 0) {
            run_free(&whole);
            print_message("# %s: \"%s\": crest differs from llhttp: %s\n", k->file, k->name,
                          deviations[i].reason);
            if (rejected != (deviations[i].verdict == REJECTS))
                return deviations[i].verdict == REJECTS ? "listed as rejected but accepted"
                                                        : "listed as accepted but rejected";
            return NULL;
        }
    }

    if (strncmp(type, "request-lenient", 15) == 0) {
        run_free(&whole);
        print_message("# %s: \"%s\": llhttp mode %s is not offered; crest rejects it\n", k->file,
                      k->name, type);
        return rejected ? NULL : "lenient case accepted";
    }
    if (strcmp(type, "request") != 0 && strcmp(type, "request-finish") != 0) {
        run_free(&whole);
        snprintf(why, sizeof(why), "unknown type %s", type);
        return why;
    }

    parse_log(k->log, k->log_len, &want);
    if (want.overflow) {
        fail = "log too large for the test";
    } else if (want.verdict == V_ERROR) {
        if (!rejected) {
            snprintf(why, sizeof(why), "llhttp rejects it, crest: %s", verdict_name(whole.verdict));
            fail = why;
        }
        /* The messages llhttp finished before the error must be crest's too. */
        for (int i = 0; !fail && i < want.n && want.msgs[i].complete; i++) {
            if (i >= whole.n || !msg_equal(&want.msgs[i], &whole.msgs[i]))
                fail = "a message before the error differs";
        }
    } else {
        int v = want.verdict;
        if (v == V_CLEAN && want.n && !want.msgs[want.n - 1].complete)
            v = V_INCOMPLETE;
        if (want.finish > 0)
            v = V_INCOMPLETE;
        if (whole.verdict != v) {
            snprintf(why, sizeof(why), "llhttp: %s, crest: %s", verdict_name(v),
                     verdict_name(whole.verdict));
            fail = why;
        }
        int n = 0;
        while (n < want.n && want.msgs[n].headers_done)
            n++;
        if (!fail && n != whole.n) {
            snprintf(why, sizeof(why), "llhttp parsed %d heads, crest %d", n, whole.n);
            fail = why;
        }
        for (int i = 0; !fail && i < n; i++) {
            if (!msg_equal(&want.msgs[i], &whole.msgs[i])) {
                snprintf(why, sizeof(why), "message %d differs", i + 1);
                fail = why;
            }
        }
    }
    run_free(&want);
    run_free(&whole);
    return fail;
}

/* ---- reading a file ---- */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    bytes_t b = {0};
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        bput(&b, tmp, n);
    fclose(f);
    if (!b.p)
        bput(&b, "", 0);
    *len = b.len;
    return b.p;
}

static const char *corpus_dir(void) {
    const char *d = getenv("CREST_LLHTTP_CORPUS");
    return d && *d ? d : "../shared/corpus/llhttp";
}

/* Finds a fenced block starting at a line "```<tag>"; returns its content without the newline
 * before the closing fence, and the offset after it. */
static int find_block(const char *s, size_t len, size_t from, const char *tag, size_t *start,
                      size_t *blen, size_t *after) {
    size_t tl = strlen(tag);
    for (size_t i = from; i < len;) {
        const char *nl = memchr(s + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - s) : len;
        if (end - i == 3 + tl && memcmp(s + i, "```", 3) == 0 && memcmp(s + i + 3, tag, tl) == 0) {
            size_t b = end + 1, j = b;
            while (j < len) {
                const char *nl2 = memchr(s + j, '\n', len - j);
                size_t e2 = nl2 ? (size_t)(nl2 - s) : len;
                if (e2 - j == 3 && memcmp(s + j, "```", 3) == 0) {
                    *start = b;
                    *blen = j > b ? j - 1 - b : 0;
                    *after = e2;
                    return 1;
                }
                j = e2 + 1;
            }
            return 0;
        }
        i = end + 1;
    }
    return 0;
}

static void test_corpus_file(void **state) {
    const char *file = *state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", corpus_dir(), file);
    size_t len = 0;
    char *text = read_all(path, &len);
    assert_non_null(text);

    int cases = 0, failed = 0;
    md_case_t k;
    memset(&k, 0, sizeof(k));
    k.file = file;
    for (size_t i = 0; i < len;) {
        const char *line = text + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) : len - i;
        if (n && line[0] == '#') {
            size_t h = 0;
            while (h < n && (line[h] == '#' || line[h] == ' '))
                h++;
            snprintf(k.name, sizeof(k.name), "%.*s", (int)(n - h), line + h);
        } else if (n > 10 && memcmp(line, "<!-- meta=", 10) == 0) {
            snprintf(k.meta, sizeof(k.meta), "%.*s", (int)n, line);
        } else if (n == 7 && memcmp(line, "```http", 7) == 0) {
            size_t hs, hl, ha, ls, ll, la;
            assert_true(find_block(text, len, i, "http", &hs, &hl, &ha));
            assert_true(find_block(text, len, ha + 1, "log", &ls, &ll, &la));
            k.http = text + hs;
            k.http_len = hl;
            k.log = text + ls;
            k.log_len = ll;
            cases++;
            const char *why = run_case(&k);
            if (why) {
                failed++;
                print_message("# FAIL %s: \"%s\": %s\n", file, k.name, why);
            }
            k.meta[0] = 0;
            i = la + 1;
            continue;
        }
        i += n + 1;
    }
    free(text);
    print_message("# %s: %d cases, %d failed\n", file, cases, failed);
    assert_true(cases > 0);
    assert_int_equal(failed, 0);
}

static void test_corpus_skipped(void **state) {
    (void)state;
    print_message("# llhttp corpus not found at %s: corpus skipped\n", corpus_dir());
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(void) {
    static char *files[64];
    size_t nfiles = 0;
    DIR *d = opendir(corpus_dir());
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) && nfiles < 64) {
            size_t n = strlen(e->d_name);
            if (n > 3 && strcmp(e->d_name + n - 3, ".md") == 0 &&
                strcmp(e->d_name, "README.md") != 0)
                files[nfiles++] = strdup(e->d_name);
        }
        closedir(d);
    }
    if (nfiles == 0) {
        const struct CMUnitTest skipped[] = {cmocka_unit_test(test_corpus_skipped)};
        return cmocka_run_group_tests(skipped, NULL, NULL);
    }
    qsort(files, nfiles, sizeof(files[0]), by_name);
    struct CMUnitTest *tests = calloc(nfiles, sizeof(*tests));
    if (!tests)
        return 1;
    for (size_t i = 0; i < nfiles; i++)
        tests[i] = (struct CMUnitTest){files[i], test_corpus_file, NULL, NULL, files[i]};
    int failed = _cmocka_run_group_tests("llhttp corpus", tests, nfiles, NULL, NULL);
    free(tests);
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    return failed;
}
