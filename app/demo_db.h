/* The demo app's database and CPU-work routes: TechEmpower /db /queries /updates /fortunes, the
 * /api/todos REST API and POST /work/hash. */
#ifndef CREST_APP_DEMO_DB_H
#define CREST_APP_DEMO_DB_H

#include "cli.h"
#include "crest.h"

typedef struct demo_db_s demo_db_t;

/* Start the worker pool, open and seed the database, add the routes. Prints a one-line error on
 * stderr and returns nonzero on failure. *out is freed with demo_db_free() after
 * crest_app_run() returned. */
int demo_db_routes(crest_app_t *app, const cli_opts_t *opts, demo_db_t **out);
/* Close the database. NULL is a no-op. */
void demo_db_free(demo_db_t *d);

#endif
