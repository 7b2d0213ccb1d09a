/* The demo app (CONTRACT.md), written only against the public header. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "demo.h"
#include "demo_db.h"
#include "demo_rt.h"
#include "demo_sio.h"

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

/* What the library measures (crest_app_metrics): statuses, connections, durations by route,
 * loop lag, WebSocket messages, the worker pool, the database, pub/sub and the Redis bridge. */
static int on_metrics(crest_req_t *req, void *data) {
    crest_app_t *app = data;
    crest_buf_t b = CREST_BUF_INIT;
    crest_app_metrics(app, &b);
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
    struct stat st;
    if (opts->public_dir == NULL && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        return 0; /* the default folder is optional (the demo run from elsewhere) */
    int rc = crest_app_static(app, "/", dir, &so); /* a failure would stop crest_app_listen */
    if (rc == 0)
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

/* Security headers, CORS, rate limits and trusted proxies from the flags. Returns 0, or the exit
 * status after printing why. */
static int demo_middleware(crest_app_t *app, const cli_opts_t *opts) {
    for (size_t i = 0; i < opts->ntrusted_proxies; i++) {
        int rc = crest_app_trust_proxy(app, opts->trusted_proxies[i]);
        if (rc == CREST_EINVAL) {
            fprintf(stderr,
                    "crest: --trusted-proxy: expected an address or a CIDR block such as "
                    "10.0.0.0/8 or ::1, got '%s'\n",
                    opts->trusted_proxies[i]);
            return 2;
        }
        if (rc != 0) {
            fprintf(stderr, "crest: --trusted-proxy: %s\n", crest_strerror(rc));
            return 1;
        }
    }
    int rc = 0;
    /* In this order: every answer carries the security headers, and a 429 carries CORS headers
     * so that a page can read it; preflights are answered before the limit counts them. */
    if (!opts->no_security_headers) {
        crest_security_opts_t s;
        crest_security_opts_default(&s);
        s.hsts_max_age = opts->app.hsts_max_age; /* HSTS only with --hsts (a demo on localhost) */
        rc = crest_app_security(app, "/", &s);
    }
    if (rc == 0 && opts->ncors_origins > 0) {
        crest_cors_opts_t c;
        crest_cors_opts_default(&c);
        c.origins = opts->cors_origins;
        c.norigins = opts->ncors_origins;
        c.credentials = opts->cors_credentials;
        c.expose_headers = "RateLimit, RateLimit-Policy, Retry-After";
        rc = crest_app_cors(app, "/", &c);
    }
    if (rc == 0 && opts->rate_limit > 0) {
        crest_ratelimit_opts_t r;
        crest_ratelimit_opts_default(&r);
        r.rate = opts->rate_limit;
        r.burst = opts->rate_burst;
        rc = crest_app_ratelimit(app, "/", &r);
    }
    if (rc != 0) {
        fprintf(stderr, "crest: middleware: %s\n", crest_strerror(rc));
        return 1;
    }
    return 0;
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
    /* First, so that every answer carries its id. */
    rc = crest_app_request_id(app);
    if (rc == 0 && opts.access_log != NULL && (rc = crest_app_access_log(app, opts.access_log)))
        fprintf(stderr, "crest: --access-log %s: %s\n", opts.access_log, crest_strerror(rc));
    if (rc != 0) {
        crest_app_free(app);
        return 1;
    }
    if (opts.compress && (rc = crest_app_compress(app, "/", NULL)) != 0) {
        fprintf(stderr, "crest: --compress: %s\n", crest_strerror(rc));
        crest_app_free(app);
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
    demo_sio_t *sio = NULL;
    rc = demo_sio_routes(app, demo_rt_pubsub(rt), &sio);
    if (rc != 0)
        fprintf(stderr, "crest: Socket.IO: %s\n", crest_strerror(rc));
    else if ((rc = crest_app_route(app, "GET", "/metrics", on_metrics, app)) != 0)
        fprintf(stderr, "crest: route GET /metrics: %s\n", crest_strerror(rc));
    if (rc != 0) {
        demo_sio_free(sio);
        demo_rt_free(rt);
        crest_app_free(app);
        demo_db_free(db);
        return 1;
    }
    rc = demo_middleware(app, &opts);
    if (rc != 0) {
        demo_sio_free(sio);
        demo_rt_free(rt);
        crest_app_free(app);
        demo_db_free(db);
        return rc;
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
    /* The hub's messages are charged to the app's budget: it goes first, after the Socket.IO
     * server whose rooms it carries. */
    demo_sio_free(sio);
    demo_rt_free(rt);
    crest_app_free(app);
    demo_db_free(db);
    return rc;
}
