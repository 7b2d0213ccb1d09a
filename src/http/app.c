/* The app: options, routes and middleware, the dispatch of a request through them, and each
 * loop's HTTP state; running it is the runtime's job (core/run.c). */
#include <assert.h>
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
    o->unanswered_ms = 30000;
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
    crest__http_loop_t *hl = crest__http_loop(loop);
    /* Unreferenced: it never keeps a stopping loop alive; the loop's last walk closes it. */
    uv_timer_init(&loop->uv, &hl->pend_timer);
    uv_unref((uv_handle_t *)&hl->pend_timer);
    hl->pend_timer_ready = 1;
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
    for (crest_req_t *r = hl->pend_head; r != NULL; r = r->pend_next) {
        /* Its loop is done and it was never finished: a handler forgot it (it leaks). */
        const char *m = crest_method_name((crest_method_t)r->method);
        crest__log(&crest__app_of(loop)->rt, CREST_LOG_ERROR,
                   "request %s %s was never finished (no finishing call before the loop ended)",
                   m ? m : "?", r->route ? r->route : "(in middleware)");
#ifdef CREST_DEBUG
        assert(!"a request was never finished");
#endif
    }
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
    free(app->heads);
    free(app->dones);
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

int crest__app_setup_error(crest_app_t *app, int rc, const char *what, const char *a,
                           const char *b) {
    if (rc != 0 && rc != CREST_EBUSY && app->setup_err == 0) {
        app->setup_err = rc;
        snprintf(app->setup_what, sizeof(app->setup_what), "%s %s%s%s: %s", what, a ? a : "",
                 b ? " " : "", b ? b : "", crest_strerror(rc));
    }
    return rc;
}

/* crest_app_route and crest_app_route_stream (body_max > 0: the route streams its body). */
static int add_route(crest_app_t *app, const char *what, const char *method, const char *pattern,
                     crest_handler_cb handler, void *data, uint64_t body_max) {
    if (app->rt.running)
        return CREST_EBUSY;
    int rc = method == NULL
                 ? CREST_EINVAL
                 : crest__router_add(app->router, crest__http_method_id(method, strlen(method)),
                                     pattern, handler, data);
    if (rc == 0 && body_max > 0) {
        crest__router_set_body_max(app->router, (uint32_t)crest__router_routes(app->router),
                                   body_max);
        app->stream_routes++;
    }
    return crest__app_setup_error(app, rc, what, method, pattern);
}

int crest_app_route(crest_app_t *app, const char *method, const char *pattern,
                    crest_handler_cb handler, void *data) {
    return add_route(app, "crest_app_route", method, pattern, handler, data, 0);
}

int crest_app_route_stream(crest_app_t *app, const char *method, const char *pattern,
                           crest_handler_cb handler, void *data, uint64_t max_body) {
    return add_route(app, "crest_app_route_stream", method, pattern, handler, data,
                     max_body ? max_body : app->opts.max_body);
}

static int app_use(crest_app_t *app, const char *prefix, crest_handler_cb mw, void *data);

int crest_app_use(crest_app_t *app, const char *prefix, crest_handler_cb mw, void *data) {
    return crest__app_setup_error(app, app_use(app, prefix, mw, data), "crest_app_use",
                                  prefix ? prefix : "/", NULL);
}

static int app_use(crest_app_t *app, const char *prefix, crest_handler_cb mw, void *data) {
    if (app->rt.running)
        return CREST_EBUSY;
    if (mw == NULL || (prefix && prefix[0] != '/' && prefix[0] != '\0'))
        return CREST_EINVAL;
    if (app->nmws >= UINT16_MAX)
        return CREST_E2BIG; /* req->mw_next counts them in 16 bits */
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
    m[app->nmws++] = (crest__mw_t){copy, len, mw, data, 0};
    return 0;
}

int crest__app_use_every(crest_app_t *app, const char *prefix, crest_handler_cb mw, void *data) {
    int rc = crest_app_use(app, prefix, mw, data);
    if (rc == 0) {
        app->mws[app->nmws - 1].every = 1;
        app->every_end = app->nmws;
    }
    return rc;
}

/* ---- dispatch ----
 *
 * The chain of one request: middleware in the order added, then routes in matching order (one
 * that returns CREST_NEXT passes it to the next route that matches), then the static mounts, the
 * not-found handler and the error handler. Where it stands is kept in the request (mw_next,
 * route_skip, chain), so that a middleware that awaits something can resume it later with
 * crest_req_next().
 *
 * A step may finish the request, which frees (recycles) it: after each step the chain must know
 * without touching it. A frame on the stack, listed on the loop while the chain runs, is marked
 * by crest__req_free when its request ends; for the first run the protocol's slot also tells
 * whether the connection let go of the request. */

typedef crest__frame_t frame_t;

static inline int mw_matches(const crest__mw_t *mw, crest_str_t path) {
    if (mw->len == 0)
        return 1;
    if (path.len < mw->len || memcmp(path.ptr, mw->prefix, mw->len) != 0)
        return 0;
    return path.len == mw->len || path.ptr[mw->len] == '/' || mw->prefix[mw->len - 1] == '/';
}

/* The request was finished by the last step, or its protocol gave it up. */
static int ended(const frame_t *fr, crest_req_t *const *slot) {
    return fr->finished || (slot != NULL && *slot != fr->req);
}

void crest__http_frame_end(crest_req_t *req) {
    for (frame_t *f = crest__http_loop(req->loop)->frames; f != NULL; f = f->up)
        if (f->req == req)
            f->finished = 1;
}

int crest__http_error(crest_req_t *req, int status) {
    const crest_app_t *app = crest__app_of(req->loop);
    if (app->on_error != NULL && !req->in_error) {
        req->in_error = 1;
        int rc = app->on_error(req, status, app->on_error_data);
        if (rc != CREST_NEXT)
            return rc;
    }
    return crest_res_status(req, status);
}

static int route(crest_req_t *req, const frame_t *fr, crest_req_t *const *slot) {
    const crest_app_t *app = crest__app_of(req->loop);
    const crest__http_head_t *head = req->head;
    crest__match_t *match = req->match;
    req->chain = CREST__CHAIN_ROUTE;
    int found;
    for (;;) {
        found = crest__router_match(app->router, head->method_id, head->path.ptr, head->path.len,
                                    req->route_skip, match);
        if (found != 200)
            break;
        req->route = match->route->pattern;
        req->route_slot = match->route->slot;
        if (match->route->body_max > 0 && req->body_stream == NULL && req->body.len == 0) {
            /* A route that streams its body, asked without one (GET, Content-Length: 0): its
             * protocol did not look the route up for it; crest_req_body_stream() ends at once. */
            crest__body_t *b = crest__body_new(req, match->route->body_max);
            if (b == NULL)
                return crest__http_error(req, 503);
            b->ended = 1;
        }
        int rc = match->route->cb(req, match->route->data);
        if (ended(fr, slot) || rc != CREST_NEXT)
            return rc;
        req->route = NULL; /* passed on: the next route that matches, or none */
        req->route_slot = 0;
        req->route_skip++;
    }
    if (found == 405) {
        char allow[160];
        size_t n = crest__router_allow(match->allowed, allow, sizeof(allow) - 10);
        if (req->method == CREST_METHOD_OPTIONS) {
            /* No route claims OPTIONS here: answer it from the route table (RFC 9110 9.3.7). */
            memcpy(allow + n, ", OPTIONS", 10);
            crest_res_header(req, "Allow", allow);
            return crest_res_send(req, 204, NULL, NULL, 0);
        }
        crest_res_header(req, "Allow", allow);
        return crest__http_error(req, 405);
    }
    if (app->nmounts > 0 && (req->method == CREST_METHOD_GET || req->method == CREST_METHOD_HEAD)) {
        int rc = crest__static_serve(req);
        if (rc != CREST_NEXT)
            return rc; /* a file answered (or failed) */
    }
    if (app->not_found != NULL) {
        int rc = app->not_found(req, app->not_found_data);
        if (ended(fr, slot) || rc != CREST_NEXT)
            return rc;
    }
    return crest__http_error(req, 404);
}

/* Run the chain from where the request stands. */
static int run(crest_req_t *req, const frame_t *fr, crest_req_t *const *slot) {
    const crest_app_t *app = crest__app_of(req->loop);
    crest_str_t path = req->head->path;
    req->chain = CREST__CHAIN_MW;
    for (size_t i = req->mw_next, n = app->nmws; i < n; i++) {
        const crest__mw_t *mw = &app->mws[i];
        if (!mw_matches(mw, path))
            continue;
        req->mw_next = (uint16_t)(i + 1); /* where crest_req_next and the head hooks go on */
        int rc = mw->cb(req, mw->data);
        if (ended(fr, slot) || rc != CREST_NEXT) {
            if (rc == 0 && !ended(fr, slot) && req->chain == CREST__CHAIN_MW)
                req->chain = CREST__CHAIN_WAIT; /* taken: answered or resumed later */
            return rc;
        }
    }
    req->mw_next = (uint16_t)app->nmws;
    return route(req, fr, slot);
}

/* The request outlives its handler call: keep what is still needed of its head. */
static void keep_head(crest_req_t *req);

/* After the chain returned with the request still open: it is answered later. */
static void after_chain(crest_req_t *req, int rc, const frame_t *fr, crest_req_t *const *slot) {
    crest_app_t *app = crest__app_of(req->loop);
    if (rc < 0 && !req->started) {
        crest__log(&app->rt, CREST_LOG_ERROR, "handler failed: %s", crest_strerror(rc));
        crest__http_error(req, rc == CREST_ENOMEM ? 503 : 500);
        if (ended(fr, slot))
            return;
    } else if (rc < 0) {
        crest__log(&app->rt, CREST_LOG_ERROR, "handler failed: %s", crest_strerror(rc));
        req->w->abort(req);
        req->w->finish(req);
        return;
    }
    /* Still open: answered later. The views into the read buffer end here. */
    crest__obs_keep(req);
    req->match = NULL;
    if (req->chain == CREST__CHAIN_WAIT || req->body_stream != NULL) {
        /* crest_req_next() routes it later, or its body's callbacks read the head. */
        keep_head(req);
        if (ended(fr, slot))
            return; /* no memory to keep it: answered 503 (and freed) instead */
    } else {
        req->head = NULL;
        req->body = (crest_str_t){NULL, 0};
    }
    if (!req->started && !req->pending && app->opts.unanswered_ms > 0 &&
        crest__http_loop(req->loop)->pend_timer_ready)
        crest__http_pend(req);
}

void crest__http_dispatch(crest_req_t *req, crest_req_t *const *slot) {
    crest_loop_t *loop = req->loop;
    crest__http_loop_t *hl = crest__http_loop(loop);
    crest__match_t match;
    match.nparams = 0;
    req->match = &match;
    hl->dispatching = req; /* its head is valid until the handlers return (observe.c) */
    frame_t fr = {req, 0, hl->frames};
    hl->frames = &fr;
    int rc = run(req, &fr, slot);
    /* Still in the frame: an error answer or a failed copy in after_chain frees the request. */
    if (!ended(&fr, slot)) /* else answered, or the connection closed (req lives on detached) */
        after_chain(req, rc, &fr, slot);
    hl->frames = fr.up;
    hl->dispatching = NULL;
}

int crest_req_next(crest_req_t *req) {
    if (req->freed || req->chain != CREST__CHAIN_WAIT)
        return CREST_EINVAL;
    if (crest__req_gone(req)) {
        req->w->finish(req);
        return CREST_ECANCELED;
    }
    crest__http_loop_t *hl = crest__http_loop(req->loop);
    crest__match_t match;
    match.nparams = 0;
    req->match = &match;
    req->chain = CREST__CHAIN_MW;
    crest_req_t *outer = hl->dispatching;
    hl->dispatching = req;
    frame_t fr = {req, 0, hl->frames};
    hl->frames = &fr;
    int rc = run(req, &fr, NULL);
    if (!ended(&fr, NULL))
        after_chain(req, rc, &fr, NULL); /* in the frame, as in crest__http_dispatch */
    hl->frames = fr.up;
    hl->dispatching = outer;
    return 0;
}

/* A request a middleware took and will resume: its head and body are copied into its arena (a
 * cost paid only by this path), so that routing and the handlers read them later as usual. */
static void keep_head(crest_req_t *req) {
    const crest__http_head_t *h = req->head;
    if (h == NULL)
        return;
    size_t bytes = h->method.len + h->target.len + h->path.len + h->query.len + req->body.len + 5;
    for (size_t i = 0; i < h->num_headers; i++)
        bytes += h->headers[i].name.len + h->headers[i].value.len + 2;
    crest__http_head_t *copy = crest_req_alloc(req, sizeof(*copy));
    char *text = crest_req_alloc(req, bytes);
    if (copy == NULL || text == NULL) {
        /* Without memory the request cannot be resumed: it is answered now instead. */
        req->chain = CREST__CHAIN_ROUTE;
        req->head = NULL;
        req->body = (crest_str_t){NULL, 0};
        crest_res_status(req, 503);
        return;
    }
    *copy = *h;
#define KEEP(dst, src)                                                                             \
    do {                                                                                           \
        if ((src).len > 0)                                                                         \
            memcpy(text, (src).ptr, (src).len);                                                    \
        (dst) = (crest_str_t){text, (src).len};                                                    \
        text += (src).len;                                                                         \
        *text++ = '\0';                                                                            \
    } while (0)
    KEEP(copy->method, h->method);
    KEEP(copy->target, h->target);
    KEEP(copy->path, h->path);
    KEEP(copy->query, h->query);
    for (size_t i = 0; i < h->num_headers; i++) {
        KEEP(copy->headers[i].name, h->headers[i].name);
        KEEP(copy->headers[i].value, h->headers[i].value);
    }
    KEEP(req->body, req->body);
#undef KEEP
    req->head = copy;
}

/* ---- the hooks around every response ---- */

void crest_app_on_error(crest_app_t *app, crest_error_cb cb, void *data) {
    app->on_error = cb;
    app->on_error_data = data;
}

int crest_error_json(crest_req_t *req, int status, void *data) {
    (void)data;
    return crest_res_error(req, status, NULL);
}

static int add_hook(crest_app_t *app, crest__hook_t **list, size_t *n, crest__hook_t hook) {
    if (app->rt.running)
        return CREST_EBUSY;
    crest__hook_t *l = realloc(*list, (*n + 1) * sizeof(*l));
    if (l == NULL)
        return CREST_ENOMEM;
    l[(*n)++] = hook;
    *list = l;
    return 0;
}

int crest_app_on_head(crest_app_t *app, crest_head_cb cb, void *data) {
    if (cb == NULL)
        return CREST_EINVAL;
    return add_hook(app, &app->heads, &app->nheads, (crest__hook_t){cb, NULL, data});
}

int crest_app_on_done(crest_app_t *app, crest_done_cb cb, void *data) {
    if (cb == NULL)
        return CREST_EINVAL;
    return add_hook(app, &app->dones, &app->ndones, (crest__hook_t){NULL, cb, data});
}

void crest__http_head_work(crest_req_t *req, int status) {
    const crest_app_t *app = crest__app_of(req->loop);
    req->in_head = 1;
    /* crest's header middleware the chain did not reach (a rejection has no path: only the
     * middleware for every path applies then). */
    for (size_t i = req->mw_next; i < app->nmws; i++) {
        const crest__mw_t *mw = &app->mws[i];
        if (mw->every && (req->head ? mw_matches(mw, req->head->path) : mw->len == 0))
            mw->cb(req, mw->data);
    }
    for (size_t i = 0; i < app->nheads; i++)
        app->heads[i].head(req, status, app->heads[i].data);
    req->in_head = 0;
}

void crest__http_done_work(crest_req_t *req) {
    const crest_app_t *app = crest__app_of(req->loop);
    crest_res_info_t info = {req->status, req->body_sent, uv_hrtime() - req->start_ns};
    for (size_t i = 0; i < app->ndones; i++)
        app->dones[i].done(req, &info, app->dones[i].data);
}

/* ---- requests nobody answered ----
 * A request answered later is listed (oldest first) until its head goes out or it ends; a timer
 * that runs only while the list is not empty reports the ones older than unanswered_ms once. */

static void on_pend_timer(uv_timer_t *t) {
    crest_loop_t *loop = t->data;
    crest__http_loop_t *hl = crest__http_loop(loop);
    crest_app_t *app = crest__app_of(loop);
    uint64_t now = uv_hrtime(), limit = (uint64_t)app->opts.unanswered_ms * 1000000;
    int waiting = 0;
    for (crest_req_t *r = hl->pend_head; r != NULL; r = r->pend_next) {
        if (r->reported)
            continue; /* reported once; it stays listed for the check at the loop's end */
        if (now - r->start_ns < limit) {
            waiting = 1; /* the rest are younger */
            break;
        }
        r->reported = 1;
        const char *m = crest_method_name((crest_method_t)r->method);
        crest__log(&app->rt, CREST_LOG_WARN,
                   "request %s %s not answered after %u ms (a handler took it and no finishing "
                   "call came)",
                   m ? m : "?", r->route ? r->route : "(in middleware)",
                   (unsigned)app->opts.unanswered_ms);
    }
    if (!waiting) {
        uv_timer_stop(t);
        hl->pend_timer_on = 0;
    }
}

void crest__http_pend(crest_req_t *req) {
    crest__http_loop_t *hl = crest__http_loop(req->loop);
    req->pending = 1;
    req->pend_next = NULL;
    req->pend_prev = hl->pend_tail;
    if (hl->pend_tail)
        hl->pend_tail->pend_next = req;
    else
        hl->pend_head = req;
    hl->pend_tail = req;
    if (!hl->pend_timer_on && !req->loop->stopped) {
        uint32_t ms = crest__app_of(req->loop)->opts.unanswered_ms;
        uint64_t every = ms / 4 < 1000 ? ms / 4 + 1 : 1000;
        hl->pend_timer.data = req->loop;
        uv_timer_start(&hl->pend_timer, on_pend_timer, every, every);
        hl->pend_timer_on = 1;
    }
}

void crest__http_unpend(crest_req_t *req) {
    crest__http_loop_t *hl = crest__http_loop(req->loop);
    if (req->pend_prev)
        req->pend_prev->pend_next = req->pend_next;
    else
        hl->pend_head = req->pend_next;
    if (req->pend_next)
        req->pend_next->pend_prev = req->pend_prev;
    else
        hl->pend_tail = req->pend_prev;
    req->pend_next = req->pend_prev = NULL;
    req->pending = 0;
}

int crest_healthz(crest_req_t *req, void *data) {
    (void)data;
    if (req->loop->draining) {
        /* A load balancer that polls this takes the instance out before it is gone. */
        crest_res_header(req, "Retry-After", "1");
        return crest_res_send(req, 503, "text/plain", "stopping\n", 9);
    }
    return crest_res_send(req, 200, "text/plain", "ok\n", 3);
}

void crest_app_not_found(crest_app_t *app, crest_handler_cb handler, void *data) {
    app->not_found = handler;
    app->not_found_data = data;
}

int crest_app_listen(crest_app_t *app) {
    if (app->setup_err != 0) {
        /* A route or middleware that could not be added: the app is not what its code says. */
        crest__log(&app->rt, CREST_LOG_ERROR, "%s", app->setup_what);
        return app->setup_err;
    }
    return crest__rt_listen(&app->rt, app->host);
}

int crest_app_serve(crest_app_t *app) {
    int rc = crest_app_listen(app);
    if (rc == 0) {
        int v6 = strchr(app->host, ':') != NULL;
        crest__log(&app->rt, CREST_LOG_INFO, "listening on http%s://%s%s%s:%d (%d loop threads)",
                   app->rt.tls ? "s" : "", v6 ? "[" : "", app->host, v6 ? "]" : "", app->rt.port,
                   app->rt.nthreads);
        rc = crest_app_run(app);
    }
    if (rc != 0)
        crest__log(&app->rt, CREST_LOG_ERROR, "stopped: %s", crest_strerror(rc));
    return rc;
}

int crest_app_opts_env(crest_app_opts_t *o) {
    const char *host = getenv("HOST"), *port = getenv("PORT");
    if (host != NULL && *host != '\0')
        o->host = host;
    if (port == NULL || *port == '\0')
        return 0;
    char *end;
    long n = strtol(port, &end, 10);
    if (*end != '\0' || n < 0 || n > 65535)
        return CREST_EINVAL;
    o->port = (int)n;
    return 0;
}

void crest_log_stderr(void *data, crest_log_level_t level, const char *msg) {
    (void)data;
    static const char *const names[] = {"error", "warning", "info", "debug"};
    /* One write per line, so that lines of several threads never mix. */
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s: %s\n", names[level & 3], msg);
    if (n > (int)sizeof(line) - 1) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    fwrite(line, 1, (size_t)n, stderr);
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
