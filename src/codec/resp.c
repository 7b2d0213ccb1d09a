/* See resp.h. A byte-at-a-time state machine over the input (lines are short; bulk bytes are
 * copied or skipped in runs), so a reply may arrive cut anywhere: every state survives the end of
 * a read. */
#include <string.h>

#include "codec/resp.h"

enum { ST_TYPE, ST_LINE, ST_LINE_LF, ST_BULK, ST_BULK_CR, ST_BULK_LF };

void crest__resp_init(crest__resp_t *r, size_t max_bulk, size_t max_line) {
    memset(r, 0, sizeof(*r));
    r->max_bulk = max_bulk;
    r->max_line = max_line;
    r->in_array = -1;
    r->buf = (crest_buf_t)CREST_BUF_INIT;
}

void crest__resp_free(crest__resp_t *r) {
    crest_buf_free(&r->buf);
}

/* A decimal integer, optionally negative, with no other bytes; 0 or CREST_EINVAL. */
static int parse_int(const char *p, size_t n, int64_t *out) {
    int neg = n > 0 && p[0] == '-';
    size_t i = (size_t)neg;
    if (i == n)
        return CREST_EINVAL;
    uint64_t v = 0;
    for (; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return CREST_EINVAL;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10 || v * 10 + d > (uint64_t)INT64_MAX + (uint64_t)neg)
            return CREST_EINVAL;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

/* A value is complete: into the array being read, or as the whole reply. Returns 1 when the reply
 * is complete. */
static int value_done(crest__resp_t *r, const crest__resp_val_t *v, size_t off) {
    if (r->in_array < 0) {
        r->cur.type = v->type;
        r->cur.n = 1;
        r->cur.elem[0] = *v;
        r->offs[0] = off;
        return 1;
    }
    int i = r->cur.n++;
    r->cur.elem[i] = *v;
    r->offs[i] = off;
    return --r->in_array == 0;
}

/* The header line of type `t` (in buf from line_start) is complete. Returns 1 when the reply is
 * complete, 0 to go on, or CREST_EINVAL. */
static int line_done(
    crest__resp_t *r) { /* An empty first line never grew the buffer: its pointer is still NULL. */
    const char *p = r->buf.ptr ? r->buf.ptr + r->line_start : "";
    size_t n = r->buf.len - r->line_start;
    crest__resp_val_t v = {0};
    int64_t num;
    switch (r->line_type) {
    case '+':
    case '-':
        v.type = r->line_type == '+' ? CREST__RESP_SIMPLE : CREST__RESP_ERROR;
        v.len = n;
        r->state = ST_TYPE;
        return value_done(r, &v, r->line_start);
    case ':':
        if (parse_int(p, n, &num) != 0)
            return CREST_EINVAL;
        r->buf.len = r->line_start;
        v.type = CREST__RESP_INT;
        v.num = num;
        r->state = ST_TYPE;
        return value_done(r, &v, 0);
    case '$':
        if (parse_int(p, n, &num) != 0 || num < -1)
            return CREST_EINVAL;
        r->buf.len = r->line_start;
        if (num == -1) {
            v.type = CREST__RESP_NIL;
            r->state = ST_TYPE;
            return value_done(r, &v, 0);
        }
        r->need = r->bulk_len = (size_t)num;
        r->skipping = (uint64_t)num > r->max_bulk;
        r->line_start = r->buf.len; /* where the bulk's bytes go */
        r->state = r->need ? ST_BULK : ST_BULK_CR;
        return 0;
    default: /* '*' */
        if (parse_int(p, n, &num) != 0 || num < -1 || num > CREST__RESP_MAX_ELEMS)
            return CREST_EINVAL;
        r->buf.len = r->line_start;
        r->state = ST_TYPE;
        if (num <= 0) {
            r->cur.type = num < 0 ? CREST__RESP_NIL : CREST__RESP_ARRAY;
            r->cur.n = 0;
            return 1;
        }
        r->cur.type = CREST__RESP_ARRAY;
        r->cur.n = 0;
        r->in_array = (int)num;
        return 0;
    }
}

static int bulk_done(crest__resp_t *r) {
    crest__resp_val_t v = {0};
    v.type = CREST__RESP_BULK;
    v.refused = r->skipping;
    v.len = r->skipping ? r->bulk_len : r->buf.len - r->line_start;
    r->state = ST_TYPE;
    return value_done(r, &v, r->line_start);
}

static void emit(crest__resp_t *r, crest__resp_reply_t *out) {
    *out = r->cur;
    int n = out->type == CREST__RESP_ARRAY ? out->n : out->n > 0 ? 1 : 0;
    for (int i = 0; i < n; i++) {
        crest__resp_val_t *v = &out->elem[i];
        int text = v->type == CREST__RESP_SIMPLE || v->type == CREST__RESP_ERROR ||
                   (v->type == CREST__RESP_BULK && !v->refused);
        if (text) /* an empty reply may not have grown the buffer */
            v->ptr = r->buf.ptr ? r->buf.ptr + r->offs[i] : "";
        else
            v->ptr = NULL;
    }
    r->in_array = -1;
    memset(&r->cur, 0, sizeof(r->cur));
}

int crest__resp_read(crest__resp_t *r, const char *data, size_t len, size_t *used,
                     crest__resp_reply_t *out) {
    size_t i = 0;
    /* The views of the reply returned last are over: start the buffer again. */
    if (r->state == ST_TYPE && r->in_array < 0)
        r->buf.len = 0;
    while (i < len) {
        char c = data[i];
        int rc = 0;
        switch (r->state) {
        case ST_TYPE:
            if (c != '+' && c != '-' && c != ':' && c != '$' && c != '*')
                return CREST_EINVAL;
            if (c == '*' && r->in_array >= 0)
                return CREST_EINVAL; /* nested arrays: not what the bridge meets */
            r->line_type = c;
            r->line_start = r->buf.len;
            r->state = ST_LINE;
            i++;
            break;
        case ST_LINE: {
            /* Copy up to the CR in one run. */
            const char *cr = memchr(data + i, '\r', len - i);
            size_t run = cr ? (size_t)(cr - (data + i)) : len - i;
            if (memchr(data + i, '\n', run) != NULL ||
                r->buf.len - r->line_start + run > r->max_line)
                return CREST_EINVAL;
            if (crest_buf_append(&r->buf, data + i, run) != 0)
                return CREST_ENOMEM;
            i += run;
            if (cr != NULL) {
                r->state = ST_LINE_LF;
                i++;
            }
            break;
        }
        case ST_LINE_LF:
            if (c != '\n')
                return CREST_EINVAL;
            i++;
            rc = line_done(r);
            break;
        case ST_BULK: {
            size_t run = len - i < r->need ? len - i : r->need;
            if (!r->skipping && crest_buf_append(&r->buf, data + i, run) != 0)
                return CREST_ENOMEM;
            i += run;
            r->need -= run;
            if (r->need == 0)
                r->state = ST_BULK_CR;
            break;
        }
        case ST_BULK_CR:
            if (c != '\r')
                return CREST_EINVAL;
            i++;
            r->state = ST_BULK_LF;
            break;
        default: /* ST_BULK_LF */
            if (c != '\n')
                return CREST_EINVAL;
            i++;
            rc = bulk_done(r);
            break;
        }
        if (rc < 0)
            return rc;
        if (rc == 1) {
            *used = i;
            emit(r, out);
            return 1;
        }
    }
    *used = i;
    return 0;
}

int crest__resp_command(crest_buf_t *b, int n, const char *const *argv, const size_t *lens) {
    crest_buf_printf(b, "*%d\r\n", n);
    for (int i = 0; i < n; i++) {
        crest_buf_printf(b, "$%zu\r\n", lens[i]);
        crest_buf_append(b, argv[i], lens[i]);
        crest_buf_append(b, "\r\n", 2);
    }
    return b->err;
}
