/* The demo's real-time routes: /ws/echo, /ws/chat, /events (SSE) and the chat page at /. */
#ifndef CREST_APP_DEMO_RT_H
#define CREST_APP_DEMO_RT_H

#include "cli.h"
#include "crest.h"

typedef struct demo_rt_s demo_rt_t;

/* Add the routes to `app`; *out receives the state to free with demo_rt_free() after the app has
 * stopped and before crest_app_free(). Prints a one-line error and returns nonzero on failure. */
int demo_rt_routes(crest_app_t *app, const cli_opts_t *opts, demo_rt_t **out);
void demo_rt_free(demo_rt_t *rt);
/* The hub of the chat rooms and /events, for /metrics. */
crest_pubsub_t *demo_rt_pubsub(const demo_rt_t *rt);

#endif
