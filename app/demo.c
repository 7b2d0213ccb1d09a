/* The demo app (CONTRACT.md), written only against the public header. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "demo.h"
#include "demo_db.h"
#include "demo_rt.h"

static int on_plaintext(crest_req_t *req, void *data) {
    (void)data;
    static const char body[] = "Hello, World!";
    return crest_res_send(req, 200, "text/plain", body, sizeof(body) - 1);
}

static int on_json(crest_req_t *req, void *data) {
    (void)data;
    /* Serialised per request, as the TechEmpower rules ask; the buffer lives on the stack. */
    static const char msg[] = "Hello, World!";
    char mem[64];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "{\"message\":");
    crest_buf_json_str(&b, msg, sizeof(msg) - 1);
    crest_buf_puts(&b, "}");
    return crest_res_send_buf(req, 200, "application/json", &b);
}

static int on_echo(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t body = crest_req_body(req);
    crest_str_t ct = crest_req_header(req, "Content-Type");
    /* The header value is a view into the request; the response wants a C string. */
    char ctype[256];
    const char *type = "application/octet-stream";
    if (ct.ptr != NULL && ct.len < sizeof(ctype)) {
        memcpy(ctype, ct.ptr, ct.len);
        ctype[ct.len] = '\0';
        type = ctype;
    } else if (ct.ptr != NULL) {
        type = crest_req_keep(req, ct).ptr;
        if (type == NULL)
            return CREST_ENOMEM;
    }
    return crest_res_send(req, 200, type, body.ptr, body.len);
}

static int on_healthz(crest_req_t *req, void *data) {
    (void)data;
    return crest_res_send(req, 200, "text/plain", "ok\n", 3);
}

typedef struct {
    crest_app_t *app;
    crest_pubsub_t *ps; /* the chat rooms' and /events' hub */
} metrics_ctx_t;

static int on_metrics(crest_req_t *req, void *data) {
    const metrics_ctx_t *ctx = data;
    crest_app_t *app = ctx->app;
    crest_buf_t b = CREST_BUF_INIT;
    int codes[128];
    uint64_t counts[128];
    size_t n = crest_app_status_counts(app, codes, counts, 128);
    crest_stats_t s;
    crest_app_stats(app, &s);
    crest_buf_puts(&b, "# HELP crest_requests_total Responses sent, by status code.\n"
                       "# TYPE crest_requests_total counter\n");
    for (size_t i = 0; i < n && i < 128; i++)
        crest_buf_printf(&b, "crest_requests_total{status=\"%d\"} %llu\n", codes[i],
                         (unsigned long long)counts[i]);
    crest_buf_printf(&b,
                     "# HELP crest_open_connections Client connections open now.\n"
                     "# TYPE crest_open_connections gauge\n"
                     "crest_open_connections %llu\n"
                     "# HELP crest_connections_accepted_total Client connections accepted.\n"
                     "# TYPE crest_connections_accepted_total counter\n"
                     "crest_connections_accepted_total %llu\n"
                     "# HELP crest_rejected_requests_total Requests rejected as malformed or "
                     "over a limit.\n"
                     "# TYPE crest_rejected_requests_total counter\n"
                     "crest_rejected_requests_total %llu\n",
                     (unsigned long long)s.open_connections,
                     (unsigned long long)s.accepted_connections,
                     (unsigned long long)s.rejected_requests);
    crest_buf_printf(&b,
                     "# HELP crest_accept_pauses_total Times accepting paused: the connection cap "
                     "or no file descriptors left.\n"
                     "# TYPE crest_accept_pauses_total counter\n"
                     "crest_accept_pauses_total %llu\n"
                     "# HELP crest_write_timeouts_total Connections closed for taking none of "
                     "their output within the write timeout.\n"
                     "# TYPE crest_write_timeouts_total counter\n"
                     "crest_write_timeouts_total %llu\n"
                     "# HELP crest_buffered_bytes Bytes held for clients now: request bodies, "
                     "unsent output, messages between threads.\n"
                     "# TYPE crest_buffered_bytes gauge\n"
                     "crest_buffered_bytes %llu\n"
                     "# HELP crest_buffered_peak_bytes The most held since memory was last "
                     "returned to the system.\n"
                     "# TYPE crest_buffered_peak_bytes gauge\n"
                     "crest_buffered_peak_bytes %llu\n"
                     "# HELP crest_buffer_limit_bytes The budget (--max-buffer-memory).\n"
                     "# TYPE crest_buffer_limit_bytes gauge\n"
                     "crest_buffer_limit_bytes %llu\n"
                     "# HELP crest_buffer_refusals_total Work refused for the budget.\n"
                     "# TYPE crest_buffer_refusals_total counter\n"
                     "crest_buffer_refusals_total %llu\n",
                     (unsigned long long)s.refused_connections,
                     (unsigned long long)s.write_timeouts, (unsigned long long)s.buffered_bytes,
                     (unsigned long long)s.buffered_peak, (unsigned long long)s.buffer_limit,
                     (unsigned long long)s.buffer_refusals);
    crest_buf_printf(&b,
                     "# HELP crest_pubsub_published_total Messages published to chat rooms and "
                     "event streams.\n"
                     "# TYPE crest_pubsub_published_total counter\n"
                     "crest_pubsub_published_total %llu\n"
                     "# HELP crest_pubsub_delivered_total Published messages queued to a WebSocket "
                     "or an event stream.\n"
                     "# TYPE crest_pubsub_delivered_total counter\n"
                     "crest_pubsub_delivered_total %llu\n"
                     "# HELP crest_pubsub_dropped_total Deliveries dropped for slow consumers.\n"
                     "# TYPE crest_pubsub_dropped_total counter\n"
                     "crest_pubsub_dropped_total %llu\n",
                     (unsigned long long)crest_pubsub_published(ctx->ps),
                     (unsigned long long)crest_pubsub_delivered(ctx->ps),
                     (unsigned long long)crest_pubsub_dropped(ctx->ps));
    crest_pubsub_stats_t ps;
    crest_pubsub_stats(ctx->ps, &ps);
    crest_buf_printf(&b,
                     "# HELP crest_pubsub_queue_dropped_total Messages dropped for a loop thread "
                     "whose pub/sub queue was full.\n"
                     "# TYPE crest_pubsub_queue_dropped_total counter\n"
                     "crest_pubsub_queue_dropped_total %llu\n"
                     "# HELP crest_pubsub_slow_skipped_total Messages not sent to a loop thread "
                     "whose subscribers of the topic were all slow consumers.\n"
                     "# TYPE crest_pubsub_slow_skipped_total counter\n"
                     "crest_pubsub_slow_skipped_total %llu\n"
                     "# HELP crest_pubsub_queued_messages Messages waiting for loop threads.\n"
                     "# TYPE crest_pubsub_queued_messages gauge\n"
                     "crest_pubsub_queued_messages %llu\n"
                     "# HELP crest_pubsub_queued_bytes Bytes of the messages waiting for loop "
                     "threads.\n"
                     "# TYPE crest_pubsub_queued_bytes gauge\n"
                     "crest_pubsub_queued_bytes %llu\n",
                     (unsigned long long)ps.queue_dropped, (unsigned long long)ps.slow_skipped,
                     (unsigned long long)ps.queued_messages, (unsigned long long)ps.queued_bytes);
    crest_buf_printf(&b,
                     "# HELP crest_redis_up 1 while the Redis bridge is connected, 0 while it is "
                     "down (or not configured).\n"
                     "# TYPE crest_redis_up gauge\n"
                     "crest_redis_up %llu\n"
                     "# HELP crest_redis_sent_total Messages published to Redis.\n"
                     "# TYPE crest_redis_sent_total counter\n"
                     "crest_redis_sent_total %llu\n"
                     "# HELP crest_redis_received_total Messages from other instances delivered "
                     "here.\n"
                     "# TYPE crest_redis_received_total counter\n"
                     "crest_redis_received_total %llu\n"
                     "# HELP crest_redis_dropped_total Messages not carried to other instances: "
                     "Redis down, or the queue to it full.\n"
                     "# TYPE crest_redis_dropped_total counter\n"
                     "crest_redis_dropped_total %llu\n"
                     "# HELP crest_redis_refused_total Messages from Redis over the size limit.\n"
                     "# TYPE crest_redis_refused_total counter\n"
                     "crest_redis_refused_total %llu\n"
                     "# HELP crest_redis_reconnects_total Connections to Redis made again.\n"
                     "# TYPE crest_redis_reconnects_total counter\n"
                     "crest_redis_reconnects_total %llu\n"
                     "# HELP crest_redis_queued_bytes Bytes waiting to be written to Redis.\n"
                     "# TYPE crest_redis_queued_bytes gauge\n"
                     "crest_redis_queued_bytes %llu\n",
                     (unsigned long long)ps.redis_up, (unsigned long long)ps.redis_sent,
                     (unsigned long long)ps.redis_received, (unsigned long long)ps.redis_dropped,
                     (unsigned long long)ps.redis_refused, (unsigned long long)ps.redis_reconnects,
                     (unsigned long long)ps.redis_queued_bytes);
    return crest_res_send_buf(req, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
}

/* The chat page and any other file of the public folder, at "/" below the routes. The default
 * folder (app/public, for `make run` from the repository) may be missing: then there is no page;
 * a folder named with --public must exist. */
static int demo_static(crest_app_t *app, const cli_opts_t *opts) {
    crest_static_opts_t so;
    crest_static_opts_default(&so);
    if (opts->static_cache_control)
        so.cache_control = opts->static_cache_control;
    const char *dir = opts->public_dir ? opts->public_dir : "app/public";
    int rc = crest_app_static(app, "/", dir, &so);
    if (rc == 0 || (opts->public_dir == NULL && (rc == CREST_ENOENT || rc == CREST_ENOTDIR)))
        return 0;
    fprintf(stderr, "crest: --public %s: %s\n", dir, crest_strerror(rc));
    return 1;
}

typedef struct {
    crest_app_t *app;
    const cli_opts_t *opts;
} announce_t;

static void on_db_ready(void *arg) {
    const announce_t *an = arg;
    cli_announce(an->app, an->opts);
}

int demo_main(int argc, char **argv, int first) {
    cli_opts_t opts;
    int rc = cli_parse(argc, argv, first, "demo", &opts);
    if (rc != CLI_RUN)
        return rc == CLI_EXIT_OK ? 0 : 2;
    crest_app_t *app = crest_app_new(&opts.app);
    if (app == NULL) {
        fprintf(stderr, "crest: out of memory\n");
        return 1;
    }
    struct {
        const char *method, *path;
        crest_handler_cb cb;
    } routes[] = {
        {"GET", "/plaintext", on_plaintext},
        {"GET", "/json", on_json},
        {"POST", "/echo", on_echo},
        {"GET", "/healthz", on_healthz},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        rc = crest_app_route(app, routes[i].method, routes[i].path, routes[i].cb, app);
        if (rc != 0) {
            fprintf(stderr, "crest: route %s %s: %s\n", routes[i].method, routes[i].path,
                    crest_strerror(rc));
            crest_app_free(app);
            return 1;
        }
    }
    if (demo_static(app, &opts) != 0) {
        crest_app_free(app);
        return 1;
    }
    demo_db_t *db;
    if (demo_db_routes(app, &opts, &db) != 0) {
        crest_app_free(app);
        return 1;
    }
    demo_rt_t *rt;
    if (demo_rt_routes(app, &opts, &rt) != 0) {
        crest_app_free(app);
        demo_db_free(db);
        return 1;
    }
    metrics_ctx_t metrics = {app, demo_rt_pubsub(rt)}; /* lives until cli_serve returns */
    rc = crest_app_route(app, "GET", "/metrics", on_metrics, &metrics);
    if (rc != 0) {
        fprintf(stderr, "crest: route GET /metrics: %s\n", crest_strerror(rc));
        demo_rt_free(rt);
        crest_app_free(app);
        demo_db_free(db);
        return 1;
    }
    /* Listen first and open the database meanwhile (app/demo_db.c says why); the listening line
     * comes once the database is open too. */
    rc = cli_listen(app, &opts);
    if (rc == 0) {
        announce_t an = {app, &opts};
        rc = demo_db_open_start(db, on_db_ready, &an);
        if (rc == 0) {
            rc = cli_run(app);
            if (demo_db_open_wait(db) != 0)
                rc = 1;
        }
    }
    /* The hub's messages are charged to the app's budget: it goes first. */
    demo_rt_free(rt);
    crest_app_free(app);
    demo_db_free(db);
    return rc;
}
