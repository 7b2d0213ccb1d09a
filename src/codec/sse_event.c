#include <string.h>

#include "codec/sse_event.h"
#include "crest/errno.h"

static int field_ok(const char *s) {
    return strpbrk(s, "\r\n") == NULL;
}

int crest__sse_encode(crest_buf_t *b, const char *event, const char *id, const void *data,
                      size_t len) {
    if ((event && !field_ok(event)) || (id && !field_ok(id)))
        return CREST_EINVAL;
    if (event && *event) {
        crest_buf_append(b, "event: ", 7);
        crest_buf_puts(b, event);
        crest_buf_append(b, "\n", 1);
    }
    if (id) {
        crest_buf_append(b, "id: ", 4);
        crest_buf_puts(b, id);
        crest_buf_append(b, "\n", 1);
    }
    /* A bare CR, a bare LF and CRLF all end a line in the event-stream grammar: each line of the
     * payload becomes its own data field, which the browser joins again with LF. */
    const char *p = data, *end = p + len;
    do {
        const char *eol = p;
        while (eol < end && *eol != '\n' && *eol != '\r')
            eol++;
        crest_buf_append(b, "data: ", 6);
        crest_buf_append(b, p, (size_t)(eol - p));
        crest_buf_append(b, "\n", 1);
        if (eol < end && *eol == '\r' && eol + 1 < end && eol[1] == '\n')
            eol++;
        p = eol + 1;
    } while (p < end);
    crest_buf_append(b, "\n", 1);
    return b->err ? CREST_ENOMEM : 0;
}
