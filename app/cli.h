/* Command-line flags shared by `crest demo` and the test app: the server's limits and timeouts. */
#ifndef CREST_APP_CLI_H
#define CREST_APP_CLI_H

#include "crest.h"

/* Most values a repeatable flag takes. */
#define CLI_MAX_LIST 16

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
    /* Production serving (the features of include/crest/static.h, middleware.h, observe.h). */
    const char *static_cache_control; /* --static-cache-control: Cache-Control of public files */
    int compress;                     /* --compress: gzip compressible responses */
    const char *cors_origins[CLI_MAX_LIST]; /* --cors-origin ORIGIN, repeatable ("*" allowed) */
    size_t ncors_origins;
    int cors_credentials; /* --cors-credentials: allow credentials for the listed origins */
    double rate_limit;    /* --rate-limit N: requests/s per client address; 0: no limit */
    uint32_t rate_burst;  /* --rate-burst N: requests at once (default: the rate) */
    const char *trusted_proxies[CLI_MAX_LIST]; /* --trusted-proxy ADDR|CIDR, repeatable */
    size_t ntrusted_proxies;
    const char *access_log;  /* --access-log PATH|-: JSON lines; NULL: none */
    int no_security_headers; /* --no-security-headers: the demo sends none */
} cli_opts_t;

enum { CLI_RUN = 0, CLI_EXIT_OK = 1, CLI_EXIT_USAGE = 2 };

/* Parse argv[first..argc) into `out` (filled with defaults and env PORT first). Prints help
 * (CLI_EXIT_OK) or a one-line error on stderr (CLI_EXIT_USAGE). */
int cli_parse(int argc, char **argv, int first, const char *command, cli_opts_t *out);
/* Listen, print the listening line, run until stopped; returns the process exit status. */
int cli_serve(crest_app_t *app, const cli_opts_t *opts);
/* cli_serve in its three steps, for an app that announces itself later than it listens. Listen
 * (the service manager's sockets when it passed some): 0, or 1 after a one-line error. */
int cli_listen(crest_app_t *app, const cli_opts_t *opts);
/* Print the listening line ("crest listening on http://HOST:PORT (N threads)"). Any thread. */
void cli_announce(crest_app_t *app, const cli_opts_t *opts);
/* Run until stopped: 0, or 1 after a one-line error. */
int cli_run(crest_app_t *app);
/* The log hook: one line per message on stderr. */
void cli_log(void *data, crest_log_level_t level, const char *msg);

#endif
