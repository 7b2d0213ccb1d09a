/* The demo app's database and CPU-work routes: TechEmpower /db /queries /updates /fortunes, the
 * /api/todos REST API and POST /work/hash. */
#ifndef CREST_APP_DEMO_DB_H
#define CREST_APP_DEMO_DB_H

#include "cli.h"
#include "crest.h"

typedef struct demo_db_s demo_db_t;

/* Start the worker pool and add the routes; the database routes answer 503 until
 * demo_db_open_start() has opened the database. Prints a one-line error on stderr and returns
 * nonzero on failure. *out (which keeps `opts`) is freed with demo_db_free() after
 * crest_app_run() returned. */
int demo_db_routes(crest_app_t *app, const cli_opts_t *opts, demo_db_t **out);
/* Open, declare and seed the database on a thread of its own, then let the routes use it and call
 * on_ready(arg) on that thread. On failure it prints a one-line error and stops the app
 * (crest_app_stop). Call after crest_app_listen(). Returns nonzero if the thread cannot start. */
int demo_db_open_start(demo_db_t *d, void (*on_ready)(void *arg), void *arg);
/* Wait for the opening thread; nonzero when the database could not be opened. */
int demo_db_open_wait(demo_db_t *d);
/* Close the database (waiting for the opening thread first). NULL is a no-op. */
void demo_db_free(demo_db_t *d);

#endif
