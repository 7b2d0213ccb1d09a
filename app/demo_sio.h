/* The demo's Socket.IO chat at /socket.io/ (CONTRACT.md "Socket.IO"). */
#ifndef CREST_APP_DEMO_SIO_H
#define CREST_APP_DEMO_SIO_H

#include "crest.h"

typedef struct demo_sio_s demo_sio_t;

/* Add the Socket.IO routes to `app`, its rooms on the hub `ps`; *out receives the state to free
 * with demo_sio_free() after the app has stopped and before the hub and the app are freed.
 * Returns 0 or CREST_ENOMEM. */
int demo_sio_routes(crest_app_t *app, crest_pubsub_t *ps, demo_sio_t **out);
void demo_sio_free(demo_sio_t *d);

#endif
