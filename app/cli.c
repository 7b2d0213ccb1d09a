/* The command line of `crest demo` and the test app, as one table: each flag's name, the kind of
 * value it takes and its bounds, where it is stored in cli_opts_t, its topic and help text. The
 * table drives parsing, the environment (every flag is also CREST_<FLAG>) and --help, so the
 * three cannot drift apart; the man page (doc/crest.1.scd) is checked against --help by a test. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

typedef enum {
    K_BOOL,   /* no value on the command line; 1/0/true/false/yes/no from the environment */
    K_INT,    /* a whole number from min to max */
    K_SIZE,   /* bytes with an optional k or m suffix, at least 1 */
    K_DUR,    /* ms, s (or bare) or m, more than 0; stored in milliseconds (uint32_t) */
    K_DOUBLE, /* a positive number, fractions allowed, at most max */
    K_STRING, /* checked by `check` when set */
    K_LIST,   /* a string, repeatable (a comma-separated list in the environment) */
    K_CHOICE, /* one of the '|'-separated words of `meta`, stored as its index (int) */
} kind_t;

/* The topics of --help and of the man page, in that order. */
typedef enum {
    T_LISTEN,
    T_LIMITS,
    T_TIMEOUTS,
    T_WORKERS,
    T_DATABASE,
    T_REDIS,
    T_REALTIME,
    T_STATIC,
    T_SECURITY,
    T_OBSERVE,
    T_TLS,
    T_COUNT
} topic_t;

static const char *const topic_names[T_COUNT] = {
    "Listening",     "Limits",       "Timeouts", "Workers",       "Database", "Redis",
    "WebSocket/SSE", "Static files", "Security", "Observability", "TLS",
};

/* A string flag's check: NULL when `v` is acceptable, else what was expected. */
typedef const char *(*check_cb)(const char *v);

typedef struct {
    const char *name; /* without the leading "--" */
    kind_t kind;
    const char *meta; /* the value's placeholder in --help; K_CHOICE: the words */
    long min, max;    /* K_INT bounds; K_DOUBLE: max only */
    size_t off;       /* where the value goes in cli_opts_t */
    size_t size;      /* its size (K_INT: 4 or 8 bytes) */
    size_t count_off; /* K_LIST: the size_t count beside the array */
    check_cb check;   /* K_STRING, K_LIST: optional */
    topic_t topic;
    const char *legacy_env; /* an older variable also read (PORT, DATABASE_URL, REDIS_URL) */
    const char *help;       /* lines after the first are indented under it */
} flag_t;

#define AT(m) offsetof(cli_opts_t, m), sizeof(((cli_opts_t *)0)->m)

static const char *nonempty(const char *v) {
    return *v ? NULL : "a value";
}

static const char *db_url(const char *v) {
    return *v ? NULL : "a database URL such as sqlite:crest.db";
}

static const char *redis_url(const char *v) {
    return strncmp(v, "redis://", 8) == 0 ? NULL : "a URL such as redis://127.0.0.1:6379";
}

static const char *header_value(const char *v) {
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return "a header value without control characters";
    return *v ? NULL : "a header value such as 'public, max-age=3600'";
}

static const char *origin(const char *v) {
    /* An origin is "*" or scheme://host[:port]; a bare host or a trailing slash is the common
     * mistake, and browsers compare origins byte for byte. */
    const char *want = "an origin such as https://example.com or *";
    if (strcmp(v, "*") == 0 || strcmp(v, "null") == 0)
        return NULL;
    const char *sep = strstr(v, "://");
    if (sep == NULL || sep == v || sep[3] == '\0' || strchr(sep + 3, '/') != NULL)
        return want;
    for (const char *p = v; *p; p++)
        if (isspace((unsigned char)*p) || *p == ',')
            return want;
    return NULL;
}

static const char *addr_or_cidr(const char *v) {
    const char *want = "an address or CIDR such as 10.0.0.0/8 or ::1";
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(v) >= sizeof(buf))
        return want;
    strcpy(buf, v);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash++ = '\0';
    unsigned char bin[16];
    int v6 = strchr(buf, ':') != NULL;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, bin) != 1)
        return want;
    if (slash) {
        char *end;
        errno = 0;
        long bits = strtol(slash, &end, 10);
        if (!isdigit((unsigned char)*slash) || *end || errno || bits > (v6 ? 128 : 32))
            return want;
    }
    return NULL;
}

/* clang-format off */
static const flag_t flags[] = {
    {"host", K_STRING, "ADDR", 0, 0, AT(app.host), 0, nonempty, T_LISTEN, NULL,
     "address to listen on (default 127.0.0.1)"},
    {"port", K_INT, "N", 0, 65535, AT(app.port), 0, NULL, T_LISTEN, "PORT",
     "port, 0 for any free one (default $PORT or 8080)"},
    {"threads", K_INT, "N", 1, 256, AT(app.threads), 0, NULL, T_LISTEN, NULL,
     "event-loop threads (default: number of CPUs)"},
    {"max-request-line", K_SIZE, "SIZE", 0, 0, AT(app.max_request_line), 0, NULL, T_LIMITS, NULL,
     "longest request line (default 8k; longer -> 414)"},
    {"max-header-bytes", K_SIZE, "SIZE", 0, 0, AT(app.max_header_bytes), 0, NULL, T_LIMITS, NULL,
     "largest request head (default 16k; larger -> 431)"},
    {"max-headers", K_INT, "N", 1, 128, AT(app.max_headers), 0, NULL, T_LIMITS, NULL,
     "most header fields (default 100, at most 128; more -> 431)"},
    {"max-body", K_SIZE, "SIZE", 0, 0, AT(app.max_body), 0, NULL, T_LIMITS, NULL,
     "largest request body (default 1m; larger -> 413)"},
    {"max-output", K_SIZE, "SIZE", 0, 0, AT(app.max_output), 0, NULL, T_LIMITS, NULL,
     "output queued for a slow client before reading pauses (default 1m)"},
    {"max-connections", K_INT, "N", 1, 10000000, AT(app.max_connections), 0, NULL, T_LIMITS, NULL,
     "open connections before accepting pauses (default: the open-file\n"
     "limit less an eighth, raised to the hard limit)"},
    {"max-buffer-memory", K_SIZE, "SIZE", 0, 0, AT(app.max_buffer_memory), 0, NULL, T_LIMITS, NULL,
     "bytes buffered for clients process-wide before requests get 503\n"
     "(default: a quarter of the memory)"},
    {"min-body-rate", K_SIZE, "SIZE", 0, 0, AT(app.min_body_rate), 0, NULL, T_LIMITS, NULL,
     "bytes/s a request body must keep up once --body-timeout passes (16k)"},
    {"header-timeout", K_DUR, "DUR", 0, 0, AT(app.header_timeout_ms), 0, NULL, T_TIMEOUTS, NULL,
     "time to receive a request head (default 10s; then 408)"},
    {"body-timeout", K_DUR, "DUR", 0, 0, AT(app.body_timeout_ms), 0, NULL, T_TIMEOUTS, NULL,
     "time for a request body (default 30s; then 408 unless it\n"
     "keeps coming at --min-body-rate)"},
    {"keepalive-timeout", K_DUR, "DUR", 0, 0, AT(app.keepalive_timeout_ms), 0, NULL, T_TIMEOUTS,
     NULL, "idle keep-alive connection lifetime (default 5s)"},
    {"write-timeout", K_DUR, "DUR", 0, 0, AT(app.write_timeout_ms), 0, NULL, T_TIMEOUTS, NULL,
     "close a client that takes none of its output this long (30s)"},
    {"shutdown-timeout", K_DUR, "DUR", 0, 0, AT(app.shutdown_timeout_ms), 0, NULL, T_TIMEOUTS,
     NULL, "grace for requests in flight on SIGTERM (default 10s)"},
    {"unanswered-warn", K_DUR, "DUR", 0, 0, AT(app.unanswered_ms), 0, NULL, T_TIMEOUTS, NULL,
     "warn once about a request nobody answered for this long (default 30s; 0: never)"},
    {"workers", K_INT, "N", 1, 1024, AT(workers), 0, NULL, T_WORKERS, NULL,
     "CPU worker threads (default: number of CPUs)"},
    {"work-queue", K_INT, "N", 1, 1 << 24, AT(work_queue), 0, NULL, T_WORKERS, NULL,
     "jobs waiting for a worker before 503 (default 1024)"},
    {"max-hash-rounds", K_INT, "N", 1, 100000000, AT(max_hash_rounds), 0, NULL, T_WORKERS, NULL,
     "most PBKDF2 rounds /work/hash accepts (default 1000000)"},
    {"db", K_STRING, "URL", 0, 0, AT(db_url), 0, db_url, T_DATABASE, "DATABASE_URL",
     "database: sqlite:PATH or postgres://USER@HOST:PORT/NAME\n"
     "(default $DATABASE_URL or sqlite:crest.db)"},
    {"db-conns", K_INT, "N", 1, 64, AT(db.conns_per_loop), 0, NULL, T_DATABASE, NULL,
     "PostgreSQL connections per loop thread (default 1)"},
    {"db-timeout", K_DUR, "DUR", 0, 0, AT(db.timeout_ms), 0, NULL, T_DATABASE, NULL,
     "a database batch not answered by then fails: 503 (5s)"},
    {"db-queue", K_INT, "N", 1, 1 << 24, AT(db.max_queue), 0, NULL, T_DATABASE, NULL,
     "batches waiting per loop thread (PostgreSQL) or for the\n"
     "SQLite writer before 503 (default 1024)"},
    {"redis", K_STRING, "URL", 0, 0, AT(redis_url), 0, redis_url, T_REDIS, "REDIS_URL",
     "redis://HOST:PORT: chat rooms and /events span every\n"
     "instance on that Redis (default $REDIS_URL, or none)"},
    {"ws-max-message", K_SIZE, "SIZE", 0, 0, AT(ws_max_message), 0, NULL, T_REALTIME, NULL,
     "largest WebSocket message (default 1m; larger -> close 1009)"},
    {"ws-max-buffered", K_SIZE, "SIZE", 0, 0, AT(ws_max_buffered), 0, NULL, T_REALTIME, NULL,
     "output a WebSocket may queue before it is slow (default 1m)"},
    {"ws-slow-policy", K_CHOICE, "drop|close", 0, 0, AT(ws_slow_close), 0, NULL, T_REALTIME, NULL,
     "what happens to a slow WebSocket's messages (default drop)"},
    {"ws-ping-interval", K_DUR, "DUR", 0, 0, AT(ws_ping_interval_ms), 0, NULL, T_REALTIME, NULL,
     "ping idle WebSockets, close those that stop answering (30s)"},
    {"ws-deflate", K_BOOL, NULL, 0, 0, AT(ws_deflate), 0, NULL, T_REALTIME, NULL,
     "accept permessage-deflate (off by default)"},
    {"sse-keepalive", K_DUR, "DUR", 0, 0, AT(sse_keepalive_ms), 0, NULL, T_REALTIME, NULL,
     "keep-alive comment on a quiet event stream (default 15s)"},
    {"sse-history", K_SIZE, "SIZE", 0, 0, AT(sse_history_bytes), 0, NULL, T_REALTIME, NULL,
     "events kept for Last-Event-ID replay, in bytes (default 1m;\n"
     "at most the last 256 events either way)"},
    {"chat-announce-max", K_INT, "N", 0, 1000000000, AT(chat_announce_max), 0, NULL, T_REALTIME,
     NULL, "chat rooms up to N members announce each join and leave;\n"
     "larger ones get a member count instead (default 100)"},
    {"presence-interval", K_DUR, "DUR", 0, 0, AT(presence_interval_ms), 0, NULL, T_REALTIME, NULL,
     "a large room's member count is sent at most this often (1s)"},
    {"public", K_STRING, "DIR", 0, 0, AT(public_dir), 0, nonempty, T_STATIC, NULL,
     "folder of the chat page and static files (default app/public)"},
    {"static-cache-control", K_STRING, "STR", 0, 0, AT(static_cache_control), 0, header_value,
     T_STATIC, NULL, "Cache-Control of the public files (default: revalidate by ETag)"},
    {"compress", K_BOOL, NULL, 0, 0, AT(compress), 0, NULL, T_STATIC, NULL,
     "gzip compressible responses for clients that accept it"},
    {"cors-origin", K_LIST, "ORIGIN", 0, 0, AT(cors_origins), offsetof(cli_opts_t, ncors_origins),
     origin, T_SECURITY, NULL, "allow cross-origin requests from ORIGIN (repeatable; * for any)"},
    {"cors-credentials", K_BOOL, NULL, 0, 0, AT(cors_credentials), 0, NULL, T_SECURITY, NULL,
     "allow credentials (cookies) from the --cors-origin origins"},
    {"rate-limit", K_DOUBLE, "N", 0, 1000000000, AT(rate_limit), 0, NULL, T_SECURITY, NULL,
     "requests/s per client address (fractions allowed); more -> 429"},
    {"rate-burst", K_INT, "N", 1, 1000000000, AT(rate_burst), 0, NULL, T_SECURITY, NULL,
     "requests a client may make at once (default: the rate)"},
    {"trusted-proxy", K_LIST, "ADDR|CIDR", 0, 0, AT(trusted_proxies),
     offsetof(cli_opts_t, ntrusted_proxies), addr_or_cidr, T_SECURITY, NULL,
     "a proxy whose X-Forwarded-For names the client (repeatable)"},
    {"no-security-headers", K_BOOL, NULL, 0, 0, AT(no_security_headers), 0, NULL, T_SECURITY,
     NULL, "send none of the default security headers"},
    {"access-log", K_STRING, "PATH|-", 0, 0, AT(access_log), 0, nonempty, T_OBSERVE, NULL,
     "one JSON line per request to PATH, or - for stdout"},
    {"quiet", K_BOOL, NULL, 0, 0, AT(quiet), 0, NULL, T_OBSERVE, NULL,
     "no log lines on stderr"},
    {"tls-cert", K_STRING, "FILE", 0, 0, AT(app.tls_cert), 0, nonempty, T_TLS, NULL,
     "serve HTTPS: the certificate chain (PEM); needs --tls-key.\n"
     "SIGHUP loads both files again"},
    {"tls-key", K_STRING, "FILE", 0, 0, AT(app.tls_key), 0, nonempty, T_TLS, NULL,
     "the certificate's private key (PEM)"},
    {"hsts", K_INT, "SECONDS", 1, 1000000000, AT(app.hsts_max_age), 0, NULL, T_TLS, NULL,
     "with TLS, send Strict-Transport-Security: max-age=SECONDS"},
};
/* clang-format on */

#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

/* `who` is the flag ("--max-body") or the variable ("CREST_MAX_BODY") the value came from. */
static int bad(const char *who, const char *want, const char *got) {
    fprintf(stderr, "crest: %s: expected %s, got '%s'\n", who, want, got);
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

static int parse_int(const char *who, const char *s, long min, long max, long *out) {
    uint64_t v;
    const char *rest;
    if (parse_u64(s, &v, &rest) != 0 || *rest != '\0' || v < (uint64_t)min || v > (uint64_t)max) {
        char want[96];
        snprintf(want, sizeof(want), "a whole number from %ld to %ld", min, max);
        return bad(who, want, s);
    }
    *out = (long)v;
    return 0;
}

static int parse_size(const char *who, const char *s, size_t *out) {
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
    return bad(who, "a size such as 4096, 16k or 1m (at least 1)", s);
}

static int parse_duration(const char *who, const char *s, uint32_t *out_ms) {
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
    return bad(who, "a duration such as 500ms, 10s or 2m (more than 0)", s);
}

static int parse_double(const char *who, const char *s, double max, double *out) {
    char *end;
    errno = 0;
    double v = (*s >= '0' && *s <= '9') || *s == '.' ? strtod(s, &end) : NAN;
    if (isnan(v) || errno != 0 || *end != '\0' || !(v > 0) || v > max) {
        char want[96];
        snprintf(want, sizeof(want), "a number more than 0 and at most %.0f, such as 2.5", max);
        return bad(who, want, s);
    }
    *out = v;
    return 0;
}

/* 1/0, true/false, yes/no, on/off in any case; -1 for anything else. */
static int parse_bool(const char *s) {
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no",
                                                                                "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

static void put_int(cli_opts_t *out, const flag_t *f, long v) {
    char *p = (char *)out + f->off;
    if (f->size == sizeof(int32_t)) {
        int32_t x = (int32_t)v; /* the bounds keep v in range; uint32_t fields take it too */
        memcpy(p, &x, sizeof(x));
    } else {
        int64_t x = v;
        assert(f->size == sizeof(x));
        memcpy(p, &x, sizeof(x));
    }
}

/* Store one value of flag `f` taken from `who` (the flag as written, or the variable). A list
 * value from the environment may hold several items separated by commas or spaces. Returns 0 or
 * CLI_EXIT_USAGE after printing the error. */
/* Append one value of a repeatable flag: checked, and at most CLI_MAX_LIST of them. */
static int list_add(cli_opts_t *out, const flag_t *f, const char *who, const char *val) {
    const char **items = (const char **)((char *)out + f->off);
    size_t *n = (size_t *)((char *)out + f->count_off);
    const char *want;
    if (f->check && (want = f->check(val)) != NULL)
        return bad(who, want, val);
    if (*n >= CLI_MAX_LIST) {
        char buf[64];
        snprintf(buf, sizeof(buf), "at most %d values", CLI_MAX_LIST);
        return bad(who, buf, val);
    }
    items[(*n)++] = val;
    return 0;
}

static int set_value(cli_opts_t *out, const flag_t *f, const char *who, const char *val,
                     int from_env) {
    char *p = (char *)out + f->off;
    const char *want;
    long v = 0; /* parse_int sets it on success; -O1 cannot see that */
    switch (f->kind) {
    case K_BOOL: {
        int b = parse_bool(val);
        if (b < 0)
            return bad(who, "1, 0, true, false, yes or no", val);
        *(int *)p = b;
        return 0;
    }
    case K_INT:
        if (parse_int(who, val, f->min, f->max, &v) != 0)
            return CLI_EXIT_USAGE;
        put_int(out, f, v);
        return 0;
    case K_SIZE:
        assert(f->size == sizeof(size_t));
        return parse_size(who, val, (size_t *)p) ? CLI_EXIT_USAGE : 0;
    case K_DUR:
        assert(f->size == sizeof(uint32_t));
        return parse_duration(who, val, (uint32_t *)p) ? CLI_EXIT_USAGE : 0;
    case K_DOUBLE:
        return parse_double(who, val, (double)f->max, (double *)p) ? CLI_EXIT_USAGE : 0;
    case K_STRING:
        if (f->check && (want = f->check(val)) != NULL)
            return bad(who, want, val);
        *(const char **)p = val;
        return 0;
    case K_CHOICE: {
        size_t len = strlen(val);
        int index = 0;
        for (const char *w = f->meta; *w; index++) {
            size_t wl = strcspn(w, "|");
            if (wl == len && strncmp(w, val, len) == 0) {
                *(int *)p = index;
                return 0;
            }
            w += wl + (w[wl] == '|');
        }
        char buf[64];
        snprintf(buf, sizeof(buf), "one of %s", f->meta);
        return bad(who, buf, val);
    }
    case K_LIST: {
        if (!from_env)
            return list_add(out, f, who, val);
        /* The environment's string is split in a copy that lives as long as the process, as the
         * environment does (held by a static so that leak checkers see it reachable). */
        static char *env_copies[NFLAGS];
        char *copy = strdup(val);
        if (copy == NULL)
            return bad(who, "a shorter value (out of memory)", val);
        free(env_copies[f - flags]);
        env_copies[f - flags] = copy;
        for (char *save = NULL, *item = strtok_r(copy, ", \t", &save); item;
             item = strtok_r(NULL, ", \t", &save))
            if (list_add(out, f, who, item) != 0)
                return CLI_EXIT_USAGE;
        return 0;
    }
    }
    return 0;
}

/* "max-body" -> "CREST_MAX_BODY". */
static void env_name(const flag_t *f, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "CREST_%s", f->name);
    for (size_t i = 6; i < n && i < cap; i++)
        buf[i] = buf[i] == '-' ? '_' : (char)toupper((unsigned char)buf[i]);
}

static void usage(const char *command) {
    printf("Usage: crest %s [flags]\n", command);
    for (int t = 0; t < T_COUNT; t++) {
        printf("\n%s:\n", topic_names[t]);
        for (size_t i = 0; i < NFLAGS; i++) {
            const flag_t *f = &flags[i];
            if (f->topic != (topic_t)t)
                continue;
            char left[64];
            snprintf(left, sizeof(left), "--%s%s%s", f->name, f->meta ? " " : "",
                     f->meta ? f->meta : "");
            /* Long names get their help on the next line instead of a ragged column. */
            if (strlen(left) > 24)
                printf("  %s\n%28s", left, "");
            else
                printf("  %-26s", left);
            for (const char *h = f->help; *h;) {
                size_t len = strcspn(h, "\n");
                printf("%.*s\n", (int)len, h);
                h += len;
                if (*h == '\n' && *++h)
                    printf("%28s", "");
            }
        }
    }
    printf("\nOther:\n"
           "  -h, --help                this text\n"
           "\n"
           "SIZE is bytes with an optional k or m suffix (KiB, MiB); DUR is a number with ms, s "
           "or m\n"
           "(a bare number is seconds). Every flag can also be set in the environment as\n"
           "CREST_<FLAG> (--max-body 2m: CREST_MAX_BODY=2m; a flag without a value takes 1 or 0;\n"
           "a repeatable one, a comma-separated list); a flag on the command line wins.\n"
           "See crest(1).\n");
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
    unsigned char from_flags[NFLAGS] = {0};
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(command);
            return CLI_EXIT_OK;
        }
        /* "--flag value" or "--flag=value"; a bool takes no value but accepts "=1" etc. */
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
        const flag_t *f = NULL;
        for (size_t j = 0; j < NFLAGS && strncmp(name, "--", 2) == 0; j++)
            if (strcmp(name + 2, flags[j].name) == 0)
                f = &flags[j];
        if (f == NULL) {
            fprintf(stderr, "crest: unknown flag '%s' (see 'crest %s --help')\n", a, command);
            return CLI_EXIT_USAGE;
        }
        if (f->kind == K_BOOL && val == NULL) {
            val = "1";
        } else if (val == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "crest: %s needs a value (see 'crest %s --help')\n", name, command);
                return CLI_EXIT_USAGE;
            }
            val = argv[++i];
        }
        from_flags[f - flags] = 1;
        if (set_value(out, f, name, val, 0) != 0)
            return CLI_EXIT_USAGE;
    }
    /* The environment fills what the command line left unset: CREST_<FLAG>, then the older
     * names that platforms set (PORT on Heroku-like hosts, DATABASE_URL, REDIS_URL). */
    for (size_t i = 0; i < NFLAGS; i++) {
        const flag_t *f = &flags[i];
        if (from_flags[i])
            continue;
        char var[64];
        env_name(f, var, sizeof(var));
        const char *env = getenv(var);
        if ((env == NULL || *env == '\0') && f->legacy_env != NULL) {
            snprintf(var, sizeof(var), "%s", f->legacy_env);
            env = getenv(var);
        }
        if (env != NULL && *env != '\0' && set_value(out, f, var, env, 1) != 0)
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

/* Listening on the service manager's sockets: the listening line names no address of ours. */
static int activated;

int cli_listen(crest_app_t *app, const cli_opts_t *opts) {
    const crest_app_opts_t *o = &opts->app;
    /* crest_app_listen() takes the service manager's sockets (and removes the variables). */
    const char *lpid = getenv("LISTEN_PID");
    activated = o->systemd && getenv("LISTEN_FDS") != NULL && lpid != NULL &&
                strtol(lpid, NULL, 10) == (long)getpid();
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
    return 0;
}

void cli_announce(crest_app_t *app, const cli_opts_t *opts) {
    const crest_app_opts_t *o = &opts->app;
    int v6 = strchr(o->host, ':') != NULL;
    if (activated)
        printf("crest listening on the sockets passed by the service manager, %s port %d (%d "
               "threads)\n",
               o->tls_cert ? "https" : "http", crest_app_port(app), crest_app_threads(app));
    else
        printf("crest listening on %s://%s%s%s:%d (%d threads)\n", o->tls_cert ? "https" : "http",
               v6 ? "[" : "", o->host, v6 ? "]" : "", crest_app_port(app), crest_app_threads(app));
    fflush(stdout);
}

int cli_run(crest_app_t *app) {
    int rc = crest_app_run(app);
    if (rc != 0) {
        fprintf(stderr, "crest: %s\n", crest_strerror(rc));
        return 1;
    }
    return 0;
}

int cli_serve(crest_app_t *app, const cli_opts_t *opts) {
    int rc = cli_listen(app, opts);
    if (rc != 0)
        return rc;
    cli_announce(app, opts);
    return cli_run(app);
}
