/* WebSocket internals for the modules that carry their own protocol over crest's WebSockets
 * (src/sio: Engine.IO's WebSocket transport). */
#ifndef CREST_WS_INTERNAL_H
#define CREST_WS_INTERNAL_H

#include "crest/ws.h"
#include "pubsub/pubsub.h"

/* Queue the frames of a published message (m->ws) on ws, borrowed, as a subscriber of its own
 * would; the caller writes them with crest__ws_push. Returns 1 when queued; 0 when not, ws being
 * over max_buffered (dropped and counted, or, under CREST_WS_SLOW_CLOSE, closed at the push);
 * -1 when ws is closing, or has just been closed by a failed write and freed: do not touch it
 * again. Socket's loop thread. */
int crest__ws_share(crest_ws_t *ws, crest__psmsg_t *m);
/* As crest_ws_send() of a text message made of the character `prefix` and then data (an
 * Engine.IO packet: its type digit and its data), without joining them first. */
int crest__ws_send_prefixed(crest_ws_t *ws, char prefix, const void *data, size_t len);
/* Write what was queued, or close the socket when crest__ws_share marked it for closing. */
void crest__ws_push(crest_ws_t *ws);

#endif
