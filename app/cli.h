/* Command-line flags shared by `crest demo` and the test app: the server's limits and timeouts. */
#ifndef CREST_APP_CLI_H
#define CREST_APP_CLI_H

#include "crest.h"

typedef struct {
    crest_app_opts_t app;
    int quiet;             /* no log lines on stderr */
    int workers;           /* CPU worker threads; 0: the number of CPUs */
    size_t work_queue;     /* jobs waiting for a worker before 503; default 1024 */
    const char *db_url;    /* "sqlite:PATH" (default sqlite:crest.db) or "postgres://..." */
    crest_db_opts_t db;    /* --db-conns, --db-timeout, --db-queue */
    const char *redis_url; /* --redis URL or $REDIS_URL: bridge chat rooms and /events; or NULL */
    long max_hash_rounds;  /* /work/hash rounds above this -> 400; default 1000000 */
    /* WebSocket routes (0: the library's default). */
    size_t ws_max_message;
    size_t ws_max_buffered;
    uint32_t ws_ping_interval_ms;
    int ws_slow_close;         /* --ws-slow-policy close (default drop) */
    int ws_deflate;            /* --ws-deflate: accept permessage-deflate */
    uint32_t sse_keepalive_ms; /* --sse-keepalive: comment on a quiet event stream (15 s) */
    const char *public_dir; /* --public DIR: the chat page and static files (default app/public) */
    size_t sse_history_bytes; /* --sse-history: bytes of events kept for Last-Event-ID (1 MiB) */
    long chat_announce_max;   /* --chat-announce-max: rooms up to this size get join/leave (100) */
    uint32_t presence_interval_ms; /* --presence-interval: presence per large room at most (1 s) */
} cli_opts_t;

enum { CLI_RUN = 0, CLI_EXIT_OK = 1, CLI_EXIT_USAGE = 2 };

/* Parse argv[first..argc) into `out` (filled with defaults and env PORT first). Prints help
 * (CLI_EXIT_OK) or a one-line error on stderr (CLI_EXIT_USAGE). */
int cli_parse(int argc, char **argv, int first, const char *command, cli_opts_t *out);
/* Listen, print the listening line, run until stopped; returns the process exit status. */
int cli_serve(crest_app_t *app, const cli_opts_t *opts);
/* The log hook: one line per message on stderr. */
void cli_log(void *data, crest_log_level_t level, const char *msg);

#endif
