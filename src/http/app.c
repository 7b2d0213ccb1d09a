/* The app: options, routes and middleware, the dispatch of a request through them, and each
 * loop's HTTP state; running it is the runtime's job (core/run.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http.h"

void crest_app_opts_default(crest_app_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->port = 8080;
    o->threads = 0;
    o->backlog = 1024;
    o->max_request_line = 8 * 1024;
    o->max_header_bytes = 16 * 1024;
    o->max_headers = 100;
    o->max_body = 1024 * 1024;
    o->max_output = 1024 * 1024;
    o->batch_requests = 64;
    o->batch_us = 2000;
    o->header_timeout_ms = 10000;
    o->body_timeout_ms = 30000;
    o->min_body_rate = 16 * 1024;
    o->write_timeout_ms = 30000;
    o->tune_malloc = 1;
    o->keepalive_timeout_ms = 5000;
    o->shutdown_timeout_ms = 10000;
    o->server_name = "crest";
    o->handle_signals = 1;
    o->systemd = 1;
}

/* ---- each loop's HTTP state ---- */

void crest__http_date_refresh(crest_loop_t *loop) {
    crest__http_loop_t *hl = crest__http_loop(loop);
    /* time() is a vDSO call; the formatted line changes once a second. */
    time_t now = time(NULL);
    if (now == hl->date_sec && hl->date_line_len)
        return;
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(hl->date_line, sizeof(hl->date_line),
                     "Server: %s\r\nDate: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     crest__app_of(loop)->server_name, days[tm.tm_wday], tm.tm_mday,
                     months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    hl->date_line_len = n > 0 && (size_t)n < sizeof(hl->date_line) ? (size_t)n : 0;
    hl->date_sec = now;
}

static int http_loop_start(crest_loop_t *loop) {
    loop->upper = &crest__app_of(loop)->hloops[loop->index];
    crest__http_date_refresh(loop);
    crest__obs_loop_start(loop);
    return 0;
}

static void http_loop_stop(crest_loop_t *loop) {
    crest__http_loop_t *hl = crest__http_loop(loop);
    while (hl->free_reqs) {
        crest_req_t *r = hl->free_reqs;
        hl->free_reqs = r->next_free;
        crest_buf_free(&r->res_headers);
        free(r);
    }
    crest__static_cache_free(hl->fcache);
    hl->fcache = NULL;
}

void crest__http_drain_add(crest_loop_t *loop, crest__drain_node_t *n) {
    crest__http_loop_t *hl = crest__http_loop(loop);
    n->prev = NULL;
    n->next = hl->to_drain;
    if (n->next)
        n->next->prev = n;
    hl->to_drain = n;
}

void crest__http_drain_remove(crest_loop_t *loop, crest__drain_node_t *n) {
    crest__http_loop_t *hl = crest__http_loop(loop);
    if (n->prev)
        n->prev->next = n->next;
    else if (hl->to_drain == n)
        hl->to_drain = n->next;
    if (n->next)
        n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

static void http_loop_drain(crest_loop_t *loop) {
    crest__http_loop_t *hl = crest__http_loop(loop);
    /* Each callback takes its node off the list (and may take others). */
    while (hl->to_drain != NULL) {
        crest__drain_node_t *n = hl->to_drain;
        crest__http_drain_remove(loop, n);
        n->cb(n);
    }
}

static void http_conn_open(crest__conn_t *c) {
    crest__h1_open(c);
    crest__obs_conn_open(crest__conn_loop(c));
}

static void http_conn_secure(crest__conn_t *c, const char *alpn, size_t alpn_len) {
    /* The handshake agreed on HTTP/2; otherwise HTTP/1.1 (installed at the accept) goes on. */
    if (alpn_len == 2 && memcmp(alpn, "h2", 2) == 0)
        crest__h2_open(c);
}

static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                              "Retry-After: 1\r\nConnection: close\r\n\r\n";

static const crest__rt_hooks_t http_hooks = {
    .loop_start = http_loop_start,
    .loop_stop = http_loop_stop,
    .loop_drain = http_loop_drain,
    .conn_open = http_conn_open,
    .conn_secure = http_conn_secure,
    .alpn_h2 = 1,
    .conn_extra = sizeof(crest__h1_t),
    .refusal = refusal,
    .refusal_len = sizeof(refusal) - 1,
};

static int not_found_default(crest_req_t *req, void *data) {
    (void)data;
    return crest_res_status(req, 404);
}

crest_app_t *crest_app_new(const crest_app_opts_t *opts) {
    crest_app_t *app = calloc(1, sizeof(*app));
    if (app == NULL)
        return NULL;
    if (opts)
        app->opts = *opts;
    else
        crest_app_opts_default(&app->opts);
    app->rt.opts = &app->opts;
    app->rt.hooks = &http_hooks;
    crest_app_opts_t *o = &app->opts;
    if (o->max_headers > CREST__MAX_HEADERS)
        o->max_headers = CREST__MAX_HEADERS;
    if (o->backlog <= 0)
        o->backlog = 1024;
    if (o->batch_requests == 0)
        o->batch_requests = 64;
    if (o->batch_us == 0)
        o->batch_us = 2000;
    if (o->min_body_rate == 0)
        o->min_body_rate = 16 * 1024;
    if (o->write_timeout_ms == 0)
        o->write_timeout_ms = 30000;
    app->host = strdup(o->host ? o->host : "127.0.0.1");
    app->server_name = strdup(o->server_name ? o->server_name : "crest");
    int copies_failed = (o->tls_cert != NULL && (app->tls_cert = strdup(o->tls_cert)) == NULL) ||
                        (o->tls_key != NULL && (app->tls_key = strdup(o->tls_key)) == NULL);
    o->tls_cert = app->tls_cert;
    o->tls_key = app->tls_key;
    if (o->hsts_max_age) {
        int n = snprintf(app->hsts, sizeof(app->hsts), "Strict-Transport-Security: max-age=%u\r\n",
                         (unsigned)o->hsts_max_age);
        app->hsts_len = n > 0 && (size_t)n < sizeof(app->hsts) ? (size_t)n : 0;
    }
    app->router = crest__router_new();
    app->not_found = not_found_default;
    if (app->host == NULL || app->server_name == NULL || app->router == NULL || copies_failed ||
        crest__obs_new(app) != 0) {
        crest_app_free(app);
        return NULL;
    }
    o->host = app->host;
    o->server_name = app->server_name;
    return app;
}

void crest_app_free(crest_app_t *app) {
    if (app == NULL)
        return;
    crest__rt_free(&app->rt);
    crest__obs_free(app);
    while (app->owned != NULL) {
        crest__owned_t *o = app->owned;
        app->owned = o->next;
        o->free(o->ptr);
        free(o);
    }
    free(app->proxies);
    free(app->hloops);
    crest__static_free(app);
    for (size_t i = 0; i < app->nmws; i++)
        free(app->mws[i].prefix);
    free(app->mws);
    crest__router_free(app->router);
    free(app->host);
    free(app->tls_cert);
    free(app->tls_key);
    free(app->server_name);
    free(app);
}

int crest__app_own(crest_app_t *app, void *ptr, void (*free_fn)(void *)) {
    crest__owned_t *o = malloc(sizeof(*o));
    if (o == NULL) {
        free_fn(ptr);
        return CREST_ENOMEM;
    }
    *o = (crest__owned_t){app->owned, ptr, free_fn};
    app->owned = o;
    return 0;
}

void **crest_app_data(crest_app_t *app) {
    return &app->data;
}

int crest_app_route(crest_app_t *app, const char *method, const char *pattern,
                    crest_handler_cb handler, void *data) {
    if (app->rt.running)
        return CREST_EBUSY;
    if (method == NULL)
        return CREST_EINVAL;
    int id = crest__http_method_id(method, strlen(method));
    return crest__router_add(app->router, id, pattern, handler, data);
}

int crest_app_use(crest_app_t *app, const char *prefix, crest_handler_cb mw, void *data) {
    if (app->rt.running)
        return CREST_EBUSY;
    if (mw == NULL || (prefix && prefix[0] != '/' && prefix[0] != '\0'))
        return CREST_EINVAL;
    if (prefix == NULL || strcmp(prefix, "/") == 0)
        prefix = "";
    crest__mw_t *m = realloc(app->mws, (app->nmws + 1) * sizeof(*m));
    if (m == NULL)
        return CREST_ENOMEM;
    app->mws = m;
    char *copy = strdup(prefix);
    if (copy == NULL)
        return CREST_ENOMEM;
    size_t len = strlen(copy);
    if (len > 1 && copy[len - 1] == '/')
        copy[--len] = '\0'; /* "/api/" and "/api" mean the same subtree */
    m[app->nmws++] = (crest__mw_t){copy, len, mw, data};
    return 0;
}

/* ---- dispatch ---- */

static int mw_matches(const crest__mw_t *mw, crest_str_t path) {
    if (mw->len == 0)
        return 1;
    if (path.len < mw->len || memcmp(path.ptr, mw->prefix, mw->len) != 0)
        return 0;
    return path.len == mw->len || path.ptr[mw->len] == '/' || mw->prefix[mw->len - 1] == '/';
}

void crest__http_dispatch(crest_req_t *req, crest_req_t *const *slot) {
    crest_loop_t *loop = req->loop;
    crest_app_t *app = crest__app_of(loop);
    const crest__http_head_t *head = req->head;
    crest__match_t match;
    match.nparams = 0;
    req->match = &match;
    crest__http_loop_t *hl = crest__http_loop(loop);
    hl->dispatching = req; /* its head is valid until the handlers return (observe.c) */
    int rc = CREST_NEXT;
    for (size_t i = 0; i < app->nmws && rc == CREST_NEXT && *slot == req; i++)
        if (mw_matches(&app->mws[i], head->path))
            rc = app->mws[i].cb(req, app->mws[i].data);
    if (rc == CREST_NEXT && *slot == req) {
        int found = crest__router_match(app->router, head->method_id, head->path.ptr,
                                        head->path.len, &match);
        if (found == 200) {
            req->route = match.route->pattern;
            req->route_slot = match.route->slot;
            rc = match.route->cb(req, match.route->data);
        }
        if (rc == CREST_NEXT && *slot == req) {
            if (found == 405) {
                char allow[128];
                crest__router_allow(match.allowed, allow, sizeof(allow));
                crest_res_header(req, "Allow", allow);
                rc = crest_res_status(req, 405);
            } else if (found == 404 && app->nmounts > 0 &&
                       (req->method == CREST_METHOD_GET || req->method == CREST_METHOD_HEAD) &&
                       (rc = crest__static_serve(req)) != CREST_NEXT) {
                /* a file answered (or failed: below) */
            } else if (app->not_found) {
                rc = app->not_found(req, app->not_found_data);
            }
            if (rc == CREST_NEXT && *slot == req)
                rc = crest_res_status(req, 404);
        }
    }
    hl->dispatching = NULL;
    if (*slot != req)
        return; /* answered, or the connection closed (req then lives on detached) */
    /* Still open: answered later. The views into the read buffer end here. */
    crest__obs_keep(req);
    req->head = NULL;
    req->match = NULL;
    req->body = (crest_str_t){NULL, 0};
    if (rc < 0) {
        crest__log(&app->rt, CREST_LOG_ERROR, "handler failed: %s", crest_strerror(rc));
        if (req->started)
            req->w->abort(req);
        else
            crest_res_status(req, rc == CREST_ENOMEM ? 503 : 500);
    }
}

void crest_app_not_found(crest_app_t *app, crest_handler_cb handler, void *data) {
    app->not_found = handler ? handler : not_found_default;
    app->not_found_data = data;
}

int crest_app_listen(crest_app_t *app) {
    return crest__rt_listen(&app->rt, app->host);
}

int crest_app_port(const crest_app_t *app) {
    return app->rt.port;
}

int crest_app_threads(const crest_app_t *app) {
    return app->rt.listen_fds || app->rt.loops ? app->rt.nthreads : 0;
}

/* ---- running ---- */

int crest_app_run(crest_app_t *app) {
    if (app->rt.running)
        return CREST_EBUSY;
    int rc = crest_app_listen(app);
    if (rc != 0)
        return rc;
    /* Made before any loop thread starts: a loop thread reads the others' counters (/metrics).
     * A second run starts from zero, as the loops do. */
    free(app->hloops);
    app->hloops = calloc((size_t)app->rt.nthreads, sizeof(*app->hloops));
    if (app->hloops == NULL)
        return CREST_ENOMEM;
    rc = crest__obs_run_start(app);
    if (rc != 0)
        return rc;
    rc = crest__rt_run(&app->rt);
    crest__obs_run_end(app);
    return rc;
}

void crest_app_stop(crest_app_t *app) {
    crest__rt_stop(&app->rt);
}

/* ---- statistics ---- */

static uint64_t load(const _Atomic uint64_t *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}

uint64_t crest_app_status_count(const crest_app_t *app, int status) {
    if (status < 0 || status >= 600 || app->hloops == NULL)
        return 0;
    uint64_t n = 0;
    for (int i = 0; i < app->rt.nthreads; i++)
        n += load(&app->hloops[i].status_counts[status]);
    return n;
}

size_t crest_app_status_counts(const crest_app_t *app, int *codes, uint64_t *counts, size_t max) {
    size_t found = 0;
    for (int s = 100; s < 600; s++) {
        uint64_t n = crest_app_status_count(app, s);
        if (n == 0)
            continue;
        if (found < max) {
            codes[found] = s;
            counts[found] = n;
        }
        found++;
    }
    return found;
}

void crest_app_stats(const crest_app_t *app, crest_stats_t *out) {
    memset(out, 0, sizeof(*out));
    if (app->rt.loops == NULL || app->hloops == NULL)
        return;
    for (int i = 0; i < app->rt.nthreads; i++) {
        const crest_loop_t *l = &app->rt.loops[i];
        const crest__http_loop_t *hl = &app->hloops[i];
        for (int s = 100; s < 600; s++) {
            uint64_t n = load(&hl->status_counts[s]);
            out->requests += n;
            out->by_status[s / 100] += n;
        }
        out->open_connections += load(&l->open_conns);
        out->accepted_connections += load(&l->accepted);
        out->rejected_requests += load(&hl->rejected);
        out->refused_connections += load(&l->refused_conns);
        out->write_timeouts += load(&l->write_timeouts);
    }
    int64_t used = atomic_load_explicit(&app->rt.mem.used, memory_order_relaxed);
    out->buffered_bytes = used > 0 ? (uint64_t)used : 0;
    out->buffered_peak = (uint64_t)atomic_load_explicit(&app->rt.mem.peak, memory_order_relaxed);
    out->buffer_limit = (uint64_t)app->rt.mem.limit;
    out->buffer_refusals = atomic_load_explicit(&app->rt.mem.refused, memory_order_relaxed);
}
