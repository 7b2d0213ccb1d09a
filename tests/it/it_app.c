/* The integration-test app: the corners of the public API the demo does not reach (answers
 * given later from a timer, streaming, route parameters, middleware). Same flags as the demo. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../app/cli.h"

static long query_long(crest_req_t *req, const char *name, long def, long max) {
    crest_str_t v = crest_req_query_param(req, name);
    if (v.ptr == NULL || v.len == 0 || v.len > 9)
        return def;
    long n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return def;
        n = n * 10 + (v.ptr[i] - '0');
    }
    return n > max ? max : n;
}

typedef struct {
    crest_req_t *req;
    long ms;
} later_t;

static void on_later(crest_loop_t *loop, void *arg) {
    (void)loop;
    later_t *l = arg;
    char body[64];
    int n = snprintf(body, sizeof(body), "async %ld", l->ms);
    crest_res_send(l->req, 200, "text/plain", body, (size_t)n); /* frees only, if aborted */
    free(l);
}

static int on_async(crest_req_t *req, void *data) {
    (void)data;
    later_t *l = malloc(sizeof(*l));
    if (l == NULL)
        return CREST_ENOMEM;
    l->req = req;
    l->ms = query_long(req, "ms", 0, 60000);
    int rc = crest_loop_after(crest_req_loop(req), (uint64_t)l->ms, on_later, l);
    if (rc != 0)
        free(l);
    return rc;
}

static int on_stream(crest_req_t *req, void *data) {
    (void)data;
    long n = query_long(req, "n", 3, 100000);
    int rc = crest_res_start(req, 200, "text/plain");
    for (long i = 0; i < n && rc == 0; i++) {
        char piece[32];
        int len = snprintf(piece, sizeof(piece), "piece %ld\n", i);
        rc = crest_res_write(req, piece, (size_t)len);
    }
    if (rc != 0)
        return rc;
    return crest_res_end(req);
}

/* /flow?kb=N: N KiB streamed with backpressure, as a handler producing a large answer should:
 * write while crest_res_buffered() is under FLOW_HIGH, then go on from a drain callback. The
 * last line reports the most that was ever buffered. */
#define FLOW_HIGH (256 * 1024)
#define FLOW_PIECE (16 * 1024)

typedef struct {
    long left; /* pieces */
    long cut;  /* ?cut=K: give up (crest_res_abort) with K pieces left */
    size_t most;
    char piece[FLOW_PIECE];
} flow_t;

static void flow_abort(crest_req_t *req, void *arg) {
    free(arg);
    crest_res_end(req); /* frees the request; nothing is sent to a client that left */
}

static void flow_pump(crest_req_t *req, void *arg) {
    flow_t *f = arg;
    for (;;) {
        if (f->cut > 0 && f->left <= f->cut) {
            crest_res_abort(req);
            free(f);
            return;
        }
        while (f->left > 0 && f->left > f->cut && crest_res_buffered(req) < FLOW_HIGH) {
            if (crest_res_write(req, f->piece, sizeof(f->piece)) != 0)
                break;
            f->left--;
            if (crest_res_buffered(req) > f->most)
                f->most = crest_res_buffered(req);
        }
        if (f->left == 0) {
            char line[64];
            int n = snprintf(line, sizeof(line), "most buffered %zu\n", f->most);
            crest_res_write(req, line, (size_t)n);
            crest_res_end(req);
            free(f);
            return;
        }
        int rc = crest_res_on_drain(req, flow_pump, f);
        if (rc == 0)
            return; /* goes on when the client has read */
        if (rc != CREST_EALREADY) {
            crest_res_end(req);
            free(f);
            return;
        }
    }
}

static int on_flow(crest_req_t *req, void *data) {
    (void)data;
    flow_t *f = malloc(sizeof(*f));
    if (f == NULL)
        return CREST_ENOMEM;
    f->left = query_long(req, "kb", 64, 1024 * 1024) / (FLOW_PIECE / 1024);
    f->most = 0;
    f->cut = query_long(req, "cut", 0, 1024 * 1024) / (FLOW_PIECE / 1024);
    memset(f->piece, 'f', sizeof(f->piece));
    int rc = crest_res_start(req, 200, "application/octet-stream");
    if (rc != 0) {
        free(f);
        return rc;
    }
    crest_req_on_abort(req, flow_abort, f);
    flow_pump(req, f);
    return 0;
}

/* /drip?n=N&ms=M: N lines of text streamed one every M ms (a timer between writes), so that a
 * client sees whether each write reaches it at once (compressed too: --compress). */
typedef struct {
    crest_req_t *req;
    long left;
    long ms;
    long i;
    int gone;
} drip_t;

static void drip_abort(crest_req_t *req, void *arg) {
    (void)req;
    drip_t *d = arg;
    d->gone = 1; /* the timer pending ends the request */
}

static void drip_next(crest_loop_t *loop, void *arg) {
    drip_t *d = arg;
    crest_req_t *req = d->req;
    if (!d->gone && d->left > 0) {
        char line[64];
        int n = snprintf(line, sizeof(line), "line %ld of the drip\n", d->i++);
        d->left--;
        if (crest_res_write(req, line, (size_t)n) == 0 && d->left > 0 &&
            crest_loop_after(loop, (uint64_t)d->ms, drip_next, d) == 0)
            return;
    }
    crest_req_on_abort(req, NULL, NULL);
    crest_res_end(req); /* only frees it when the client left */
    free(d);
}

static int on_drip(crest_req_t *req, void *data) {
    (void)data;
    drip_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return CREST_ENOMEM;
    d->req = req;
    d->left = query_long(req, "n", 3, 1000);
    d->ms = query_long(req, "ms", 10, 10000);
    int rc = crest_res_start(req, 200, "text/plain; charset=utf-8");
    if (rc != 0) {
        free(d);
        return rc;
    }
    crest_req_on_abort(req, drip_abort, d);
    drip_next(crest_req_loop(req), d);
    return 0;
}

/* /stats: the counters a test needs, one "name value" per line. */
static int on_stats(crest_req_t *req, void *data) {
    crest_stats_t st;
    crest_app_stats(data, &st);
    char body[256];
    int n =
        snprintf(body, sizeof(body), "open_connections %llu\nwrite_timeouts %llu\n",
                 (unsigned long long)st.open_connections, (unsigned long long)st.write_timeouts);
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

static int reply_with_param(crest_req_t *req, const char *prefix, const char *param) {
    crest_str_t v = crest_req_param(req, param);
    char body[512];
    int n = snprintf(body, sizeof(body), "%s %.*s", prefix, (int)v.len, v.ptr ? v.ptr : "");
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

static int on_user(crest_req_t *req, void *data) {
    (void)data;
    return reply_with_param(req, "user", "id");
}

static int on_user_post(crest_req_t *req, void *data) {
    (void)data;
    return reply_with_param(req, "updated", "id");
}

static int on_files(crest_req_t *req, void *data) {
    (void)data;
    return reply_with_param(req, "file", "*");
}

static int on_private(crest_req_t *req, void *data) {
    (void)data;
    return crest_res_send(req, 200, "text/plain", "secret data", 11);
}

static char big[1024 * 1024];

static int on_big(crest_req_t *req, void *data) {
    (void)data;
    long kb = query_long(req, "kb", 1, 1024);
    if (big[0] != 'x') /* filled on first use, so that an idle it_app stays small */
        memset(big, 'x', sizeof(big));
    return crest_res_send_borrowed(req, 200, "application/octet-stream", big, (size_t)kb * 1024,
                                   NULL, NULL);
}

/* /text?kb=N: N KiB of varied lines of text (text/plain), borrowed from static memory;
 * &part=1: as a 206 with its Content-Range; &enc=1: with a Content-Encoding of the handler's;
 * &etag=1: with a strong ETag. */
static char text[1024 * 1024];
static size_t text_len;

static int on_text(crest_req_t *req, void *data) {
    (void)data;
    if (text_len == 0) { /* made on first use, so that an idle it_app stays small */
        for (long i = 0; text_len + 80 < sizeof(text); i++)
            text_len += (size_t)snprintf(text + text_len, sizeof(text) - text_len,
                                         "line %ld: the quick brown fox jumps %ld times\n", i,
                                         i * 7919 % 1000);
    }
    size_t len = (size_t)query_long(req, "kb", 4, 1024) * 1024;
    if (len > text_len)
        len = text_len;
    int status = 200;
    if (query_long(req, "part", 0, 1)) {
        char range[64];
        snprintf(range, sizeof(range), "bytes 0-%zu/%zu", len - 1, text_len);
        crest_res_header(req, "Content-Range", range);
        status = 206;
    }
    if (query_long(req, "enc", 0, 1))
        crest_res_header(req, "Content-Encoding", "x-mine");
    if (query_long(req, "etag", 0, 1))
        crest_res_header(req, "ETag", "\"text-v1\"");
    return crest_res_send_borrowed(req, status, "text/plain", text, len, NULL, NULL);
}

static int mw_tag(crest_req_t *req, void *data) {
    (void)data;
    int rc = crest_res_header(req, "X-Mw", "1");
    return rc ? rc : CREST_NEXT;
}

static int mw_auth(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t tok = crest_req_header(req, "X-Token");
    if (tok.len == 6 && memcmp(tok.ptr, "secret", 6) == 0)
        return CREST_NEXT;
    return crest_res_send(req, 401, "text/plain", "unauthorized", 12);
}

/* ---- the database API's failure paths (only with an explicit --db) ----
 * GET /db/calc?d=N answers 42 / N from the database: 42 for d=1, and an error for d=0 (division
 * by zero on PostgreSQL). Requests pipelined on one connection reach the database in one turn,
 * so a failing one shares its Sync with good ones. */
static crest_db_sql_t *sql_calc;

static void on_calc_done(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    (void)arg;
    if (status != 0) {
        char msg[160];
        int n = snprintf(msg, sizeof(msg), "%s", crest_strerror(status));
        crest_res_send(req, crest_db_retryable(status) ? 503 : 500, "text/plain", msg, (size_t)n);
        return;
    }
    crest_str_t v = crest_db_text(q, 0, 0, 0);
    crest_res_send(req, 200, "text/plain", v.ptr, v.len);
}

static int on_calc(crest_req_t *req, void *data) {
    crest_str_t d = crest_req_query_param(req, "d");
    crest_db_query_t *q = crest_db_query(data, 0);
    if (q == NULL)
        return CREST_ENOMEM;
    crest_db_add(q, sql_calc);
    crest_db_arg_int(q, d.len == 1 && d.ptr[0] == '0' ? 0 : 1);
    return crest_db_run(q, req, on_calc_done, NULL);
}

int main(int argc, char **argv) {
    cli_opts_t opts;
    int rc = cli_parse(argc, argv, 1, "it_app", &opts);
    if (rc != CLI_RUN)
        return rc == CLI_EXIT_OK ? 0 : 2;
    crest_app_t *app = crest_app_new(&opts.app);
    if (app == NULL)
        return 1;
    rc = crest_app_use(app, "/", mw_tag, NULL);
    if (rc == 0 && opts.compress)
        rc = crest_app_compress(app, "/", NULL);
    rc = rc ? rc : crest_app_use(app, "/private", mw_auth, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/async", on_async, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/stream", on_stream, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/users/:id", on_user, NULL);
    rc = rc ? rc : crest_app_route(app, "POST", "/users/:id", on_user_post, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/files/*", on_files, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/private/data", on_private, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/big", on_big, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/flow", on_flow, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/drip", on_drip, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/text", on_text, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/stats", on_stats, app);
    crest_db_t *db = NULL;
    int with_db = 0;
    for (int i = 1; i < argc; i++)
        with_db |= strncmp(argv[i], "--db", 4) == 0;
    if (rc == 0 && with_db) {
        rc = crest_db_open(opts.db_url, &opts.db, &db);
        rc = rc ? rc : crest_db_statement(db, "SELECT 42 / ?", &sql_calc);
        rc = rc ? rc : crest_app_route(app, "GET", "/db/calc", on_calc, db);
    }
    if (rc != 0) {
        fprintf(stderr, "it_app: %s\n", crest_strerror(rc));
        return 1;
    }
    rc = cli_serve(app, &opts);
    crest_app_free(app);
    crest_db_close(db);
    return rc;
}
