/* Just enough HTTP/1.1 response parsing for the bench tools: is a buffered response complete,
 * and what is its status. Handles Content-Length and chunked bodies; a response with neither
 * is taken as bodiless (the bench endpoints always send one of the two). */
#ifndef BENCH_HTTPMINI_H
#define BENCH_HTTPMINI_H

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The value of header `name` (case-insensitive) within head[0..head_len), or NULL. */
static inline const char *hm_header(const char *head, size_t head_len, const char *name,
                                    size_t *value_len) {
    size_t nlen = strlen(name);
    const char *line = memchr(head, '\n', head_len); /* skip the status line */
    const char *end = head + head_len;
    while (line != NULL && line + 1 < end) {
        line++;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 &&
            line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *value_len = (size_t)(ve - v);
            return v;
        }
        line = eol < end ? eol : NULL;
    }
    return NULL;
}

/* Returns the full length of the response at buf[0..len) once it is complete, 0 while more is
 * needed, -1 when it is malformed. `status` gets the status code. */
static inline long hm_response_complete(const char *buf, size_t len, int *status) {
    const char *hend = NULL;
    for (size_t i = 3; i < len; i++) {
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') {
            hend = buf + i + 1;
            break;
        }
    }
    if (hend == NULL)
        return 0;
    size_t head_len = (size_t)(hend - buf);
    if (head_len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)buf[9]))
        return -1;
    *status = atoi(buf + 9);
    size_t vlen = 0;
    const char *v = hm_header(buf, head_len, "content-length", &vlen);
    if (v != NULL) {
        size_t body = (size_t)strtoul(v, NULL, 10);
        return len >= head_len + body ? (long)(head_len + body) : 0;
    }
    v = hm_header(buf, head_len, "transfer-encoding", &vlen);
    if (v != NULL && vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0) {
        /* Walk the chunks: size line, data, CRLF; the last chunk has size 0 (no trailers). */
        size_t pos = head_len;
        for (;;) {
            const char *nl = memchr(buf + pos, '\n', len - pos);
            if (nl == NULL)
                return 0;
            size_t n = (size_t)strtoul(buf + pos, NULL, 16);
            pos = (size_t)(nl - buf) + 1;
            if (n == 0)
                return len >= pos + 2 ? (long)(pos + 2) : 0;
            if (len < pos + n + 2)
                return 0;
            pos += n + 2;
        }
    }
    return (long)head_len;
}

#endif
