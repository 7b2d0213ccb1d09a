/* Server-Sent Events encoder (bytes in, bytes out; no uv.h), below src/sse and src/pubsub. */
#ifndef CREST_CODEC_SSE_EVENT_H
#define CREST_CODEC_SSE_EVENT_H

#include <stddef.h>

#include "crest/buf.h"

/* Append one event to b: "event: E\n" (when event is non-NULL and non-empty), "id: I\n" (when id
 * is non-NULL), one "data: " line per line of data (lines end at "\r\n", "\r" or "\n"), then the
 * empty line that dispatches it. Returns 0, CREST_EINVAL when event or id holds CR or LF (or id a
 * NUL, which browsers ignore), CREST_ENOMEM (also latched in b->err). */
int crest__sse_encode(crest_buf_t *b, const char *event, const char *id, const void *data,
                      size_t len);

#endif
