#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "Flags:\n"
    "  --host ADDR               address to listen on (default 127.0.0.1)\n"
    "  --port N                  port, 0 for any free one (default $PORT or 8080)\n"
    "  --threads N               event-loop threads (default: number of CPUs)\n"
    "  --max-request-line SIZE   longest request line (default 8k; longer -> 414)\n"
    "  --max-header-bytes SIZE   largest request head (default 16k; larger -> 431)\n"
    "  --max-headers N           most header fields (default 100, at most 128; more -> 431)\n"
    "  --max-body SIZE           largest request body (default 1m; larger -> 413)\n"
    "  --max-output SIZE         output queued for a slow client before reading pauses "
    "(default 1m)\n"
    "  --max-connections N       open connections before accepting pauses (default: the\n"
    "                            open-file limit less an eighth, raised to the hard limit)\n"
    "  --max-buffer-memory SIZE  bytes buffered for clients process-wide before requests get "
    "503\n"
    "                            (default: a quarter of the memory)\n"
    "  --write-timeout DUR       close a client that takes none of its output this long "
    "(30s)\n"
    "  --min-body-rate SIZE      bytes/s a request body must keep up once --body-timeout "
    "passes (16k)\n"
    "  --header-timeout DUR      time to receive a request head (default 10s; then 408)\n"
    "  --body-timeout DUR        time for a request body (default 30s; then 408 unless it\n"
    "                            keeps coming at --min-body-rate)\n"
    "  --keepalive-timeout DUR   idle keep-alive connection lifetime (default 5s)\n"
    "  --shutdown-timeout DUR    grace for requests in flight on SIGTERM (default 10s)\n"
    "  --workers N               CPU worker threads (default: number of CPUs)\n"
    "  --work-queue N            jobs waiting for a worker before 503 (default 1024)\n"
    "  --db URL                  database: sqlite:PATH or postgres://USER@HOST:PORT/NAME\n"
    "                            (default $DATABASE_URL or sqlite:crest.db)\n"
    "  --db-conns N              PostgreSQL connections per loop thread (default 1)\n"
    "  --db-timeout DUR          a database batch not answered by then fails: 503 (5s)\n"
    "  --db-queue N              batches waiting per loop thread (PostgreSQL) or for the\n"
    "                            SQLite writer before 503 (default 1024)\n"
    "  --redis URL               redis://HOST:PORT: chat rooms and /events span every\n"
    "                            instance on that Redis (default $REDIS_URL, or none)\n"
    "  --max-hash-rounds N       most PBKDF2 rounds /work/hash accepts (default 1000000)\n"
    "  --ws-max-message SIZE     largest WebSocket message (default 1m; larger -> close 1009)\n"
    "  --ws-max-buffered SIZE    output a WebSocket may queue before it is slow (default 1m)\n"
    "  --ws-slow-policy drop|close  what happens to a slow WebSocket's messages (default drop)\n"
    "  --ws-ping-interval DUR    ping idle WebSockets, close those that stop answering (30s)\n"
    "  --ws-deflate              accept permessage-deflate (off by default)\n"
    "  --compress                gzip text, JSON, JavaScript, SVG... answers for clients that\n"
    "                            accept it (off by default)\n"
    "  --sse-keepalive DUR       keep-alive comment on a quiet event stream (default 15s)\n"
    "  --public DIR              folder of the chat page index.html (default app/public)\n"
    "  --sse-history SIZE        events kept for Last-Event-ID replay, in bytes (default 1m;\n"
    "                            at most the last 256 events either way)\n"
    "  --chat-announce-max N     chat rooms up to N members announce each join and leave;\n"
    "                            larger ones get a member count instead (default 100)\n"
    "  --presence-interval DUR   a large room's member count is sent at most this often (1s)\n"
    "  --tls-cert FILE           serve HTTPS: the certificate chain (PEM); needs --tls-key.\n"
    "                            SIGHUP loads both files again\n"
    "  --tls-key FILE            the certificate's private key (PEM)\n"
    "  --hsts SECONDS            with TLS, send Strict-Transport-Security: max-age=SECONDS\n"
    "  --quiet                   no log lines on stderr\n"
    "  -h, --help                this text\n"
    "SIZE is bytes with an optional k or m suffix (KiB, MiB); DUR is a number with ms, s or m\n"
    "(a bare number is seconds).\n";

static int bad(const char *flag, const char *want, const char *got) {
    fprintf(stderr, "crest: %s: expected %s, got '%s'\n", flag, want, got);
    return CLI_EXIT_USAGE;
}

static int parse_u64(const char *s, uint64_t *out, const char **rest) {
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    *out = v;
    *rest = end;
    return 0;
}

static int parse_int(const char *flag, const char *s, long min, long max, long *out) {
    uint64_t v;
    const char *rest;
    if (parse_u64(s, &v, &rest) != 0 || *rest != '\0' || v < (uint64_t)min || v > (uint64_t)max) {
        char want[96];
        snprintf(want, sizeof(want), "a whole number from %ld to %ld", min, max);
        return bad(flag, want, s);
    }
    *out = (long)v;
    return 0;
}

static int parse_size(const char *flag, const char *s, size_t *out) {
    uint64_t v;
    const char *rest;
    if (parse_u64(s, &v, &rest) == 0) {
        uint64_t mul = 1;
        if (strcmp(rest, "k") == 0 || strcmp(rest, "K") == 0)
            mul = 1024;
        else if (strcmp(rest, "m") == 0 || strcmp(rest, "M") == 0)
            mul = 1024 * 1024;
        else if (*rest != '\0')
            mul = 0;
        if (mul && v > 0 && v <= ((uint64_t)1 << 40) / mul) {
            *out = (size_t)(v * mul);
            return 0;
        }
    }
    return bad(flag, "a size such as 4096, 16k or 1m (at least 1)", s);
}

static int parse_duration(const char *flag, const char *s, uint32_t *out_ms) {
    uint64_t v;
    const char *rest;
    if (parse_u64(s, &v, &rest) == 0) {
        uint64_t mul = 0;
        if (strcmp(rest, "ms") == 0)
            mul = 1;
        else if (strcmp(rest, "s") == 0 || *rest == '\0')
            mul = 1000;
        else if (strcmp(rest, "m") == 0)
            mul = 60000;
        if (mul && v > 0 && v <= UINT32_MAX / mul) {
            *out_ms = (uint32_t)(v * mul);
            return 0;
        }
    }
    return bad(flag, "a duration such as 500ms, 10s or 2m (more than 0)", s);
}

int cli_parse(int argc, char **argv, int first, const char *command, cli_opts_t *out) {
    memset(out, 0, sizeof(*out));
    crest_app_opts_t *o = &out->app;
    crest_app_opts_default(o);
    o->log = cli_log;
    o->log_data = out;
    out->work_queue = 1024;
    out->db_url = "sqlite:crest.db";
    crest_db_opts_default(&out->db);
    out->max_hash_rounds = 1000000;
    out->sse_history_bytes = 1024 * 1024;
    out->chat_announce_max = 100;
    out->presence_interval_ms = 1000;
    long v;
    const char *env = getenv("PORT");
    if (env && *env) {
        if (parse_int("PORT", env, 0, 65535, &v) != 0)
            return CLI_EXIT_USAGE;
        o->port = (int)v;
    }
    env = getenv("DATABASE_URL");
    if (env && *env)
        out->db_url = env;
    env = getenv("REDIS_URL");
    if (env && *env)
        out->redis_url = env;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf("Usage: crest %s [flags]\n%s", command, usage_text);
            return CLI_EXIT_OK;
        }
        if (strcmp(a, "--quiet") == 0) {
            out->quiet = 1;
            continue;
        }
        if (strcmp(a, "--ws-deflate") == 0) {
            out->ws_deflate = 1;
            continue;
        }
        if (strcmp(a, "--compress") == 0) {
            out->compress = 1;
            continue;
        }
        /* Every other flag takes a value: "--flag value" or "--flag=value". */
        char name[64];
        const char *val = NULL;
        const char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) == 0 && eq && (size_t)(eq - a) < sizeof(name)) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", a);
        }
        static const char *const known[] = {"--host",
                                            "--port",
                                            "--threads",
                                            "--max-request-line",
                                            "--max-header-bytes",
                                            "--max-headers",
                                            "--max-body",
                                            "--max-output",
                                            "--header-timeout",
                                            "--body-timeout",
                                            "--keepalive-timeout",
                                            "--shutdown-timeout",
                                            "--workers",
                                            "--work-queue",
                                            "--db",
                                            "--max-hash-rounds",
                                            "--ws-max-message",
                                            "--ws-max-buffered",
                                            "--ws-slow-policy",
                                            "--ws-ping-interval",
                                            "--public",
                                            "--sse-keepalive",
                                            "--max-connections",
                                            "--max-buffer-memory",
                                            "--write-timeout",
                                            "--min-body-rate",
                                            "--sse-history",
                                            "--chat-announce-max",
                                            "--presence-interval",
                                            "--tls-cert",
                                            "--tls-key",
                                            "--hsts",
                                            "--db-conns",
                                            "--db-timeout",
                                            "--db-queue",
                                            "--redis"};
        int k = -1;
        for (size_t j = 0; j < sizeof(known) / sizeof(known[0]); j++)
            if (strcmp(name, known[j]) == 0)
                k = (int)j;
        if (k < 0) {
            fprintf(stderr, "crest: unknown flag '%s' (see 'crest %s --help')\n", a, command);
            return CLI_EXIT_USAGE;
        }
        if (val == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "crest: %s needs a value (see 'crest %s --help')\n", name, command);
                return CLI_EXIT_USAGE;
            }
            val = argv[++i];
        }
        int rc = 0;
        switch (k) {
        case 0:
            if (*val == '\0')
                rc = bad(name, "an address", val);
            o->host = val;
            break;
        case 1:
            rc = parse_int(name, val, 0, 65535, &v);
            o->port = (int)v;
            break;
        case 2:
            rc = parse_int(name, val, 1, 256, &v);
            o->threads = (int)v;
            break;
        case 3:
            rc = parse_size(name, val, &o->max_request_line);
            break;
        case 4:
            rc = parse_size(name, val, &o->max_header_bytes);
            break;
        case 5:
            rc = parse_int(name, val, 1, 128, &v);
            o->max_headers = (size_t)v;
            break;
        case 6:
            rc = parse_size(name, val, &o->max_body);
            break;
        case 7:
            rc = parse_size(name, val, &o->max_output);
            break;
        case 8:
            rc = parse_duration(name, val, &o->header_timeout_ms);
            break;
        case 9:
            rc = parse_duration(name, val, &o->body_timeout_ms);
            break;
        case 10:
            rc = parse_duration(name, val, &o->keepalive_timeout_ms);
            break;
        case 11:
            rc = parse_duration(name, val, &o->shutdown_timeout_ms);
            break;
        case 12:
            rc = parse_int(name, val, 1, 1024, &v);
            out->workers = (int)v;
            break;
        case 13:
            rc = parse_int(name, val, 1, 1 << 24, &v);
            out->work_queue = (size_t)v;
            break;
        case 14:
            if (*val == '\0')
                rc = bad(name, "a database URL such as sqlite:crest.db", val);
            out->db_url = val;
            break;
        case 15:
            rc = parse_int(name, val, 1, 100000000, &v);
            out->max_hash_rounds = v;
            break;
        case 16:
            rc = parse_size(name, val, &out->ws_max_message);
            break;
        case 17:
            rc = parse_size(name, val, &out->ws_max_buffered);
            break;
        case 18:
            if (strcmp(val, "drop") != 0 && strcmp(val, "close") != 0)
                rc = bad(name, "drop or close", val);
            out->ws_slow_close = strcmp(val, "close") == 0;
            break;
        case 19:
            rc = parse_duration(name, val, &out->ws_ping_interval_ms);
            break;
        case 20:
            if (*val == '\0')
                rc = bad(name, "a folder", val);
            out->public_dir = val;
            break;
        case 21:
            rc = parse_duration(name, val, &out->sse_keepalive_ms);
            break;
        case 22:
            rc = parse_int(name, val, 1, 10000000, &v);
            o->max_connections = (size_t)v;
            break;
        case 23:
            rc = parse_size(name, val, &o->max_buffer_memory);
            break;
        case 24:
            rc = parse_duration(name, val, &o->write_timeout_ms);
            break;
        case 25:
            rc = parse_size(name, val, &o->min_body_rate);
            break;
        case 26:
            rc = parse_size(name, val, &out->sse_history_bytes);
            break;
        case 27:
            rc = parse_int(name, val, 0, 1000000000, &out->chat_announce_max);
            break;
        case 28:
            rc = parse_duration(name, val, &out->presence_interval_ms);
            break;
        case 29:
            if (*val == '\0')
                rc = bad(name, "a file", val);
            o->tls_cert = val;
            break;
        case 30:
            if (*val == '\0')
                rc = bad(name, "a file", val);
            o->tls_key = val;
            break;
        case 31:
            rc = parse_int(name, val, 1, 1000000000, &v);
            o->hsts_max_age = (uint32_t)v;
            break;
        case 32:
            rc = parse_int(name, val, 1, 64, &v);
            out->db.conns_per_loop = (int)v;
            break;
        case 33:
            rc = parse_duration(name, val, &out->db.timeout_ms);
            break;
        case 34:
            rc = parse_int(name, val, 1, 1 << 24, &v);
            out->db.max_queue = (size_t)v;
            break;
        case 35:
            if (strncmp(val, "redis://", 8) != 0)
                rc = bad(name, "a URL such as redis://127.0.0.1:6379", val);
            out->redis_url = val;
            break;
        }
        if (rc != 0)
            return CLI_EXIT_USAGE;
    }
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        fprintf(stderr, "crest: %s needs %s too (see 'crest %s --help')\n",
                o->tls_cert ? "--tls-cert" : "--tls-key", o->tls_cert ? "--tls-key" : "--tls-cert",
                command);
        return CLI_EXIT_USAGE;
    }
    return CLI_RUN;
}

void cli_log(void *data, crest_log_level_t level, const char *msg) {
    const cli_opts_t *o = data;
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (o->quiet && level != CREST_LOG_ERROR)
        return;
    if (level == CREST_LOG_DEBUG)
        return;
    fprintf(stderr, "crest: %s: %s\n", names[level], msg);
}

int cli_serve(crest_app_t *app, const cli_opts_t *opts) {
    const crest_app_opts_t *o = &opts->app;
    int rc = crest_app_listen(app);
    int v6 = strchr(o->host, ':') != NULL;
    if (rc != 0 && o->tls_cert != NULL && rc == CREST_EINVAL) {
        /* The library logged which file and why. */
        fprintf(stderr, "crest: cannot serve HTTPS with --tls-cert %s --tls-key %s\n", o->tls_cert,
                o->tls_key);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "crest: cannot listen on %s%s%s:%d: %s\n", v6 ? "[" : "", o->host,
                v6 ? "]" : "", o->port, crest_strerror(rc));
        return 1;
    }
    printf("crest listening on %s://%s%s%s:%d (%d threads)\n", o->tls_cert ? "https" : "http",
           v6 ? "[" : "", o->host, v6 ? "]" : "", crest_app_port(app), crest_app_threads(app));
    fflush(stdout);
    rc = crest_app_run(app);
    if (rc != 0) {
        fprintf(stderr, "crest: %s\n", crest_strerror(rc));
        return 1;
    }
    return 0;
}
