/* The app: options, routes and middleware, listening sockets, loop threads, stopping. */
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/conn.h"

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
}

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
    app->router = crest__router_new();
    app->not_found = not_found_default;
    if (app->host == NULL || app->server_name == NULL || app->router == NULL) {
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
    if (app->work != NULL)
        app->work->stop(app->work);
    for (size_t i = 0; i < app->nmws; i++)
        free(app->mws[i].prefix);
    free(app->mws);
    crest__router_free(app->router);
    if (app->listen_fds) {
        for (int i = 0; i < app->nthreads; i++)
            if (app->listen_fds[i] >= 0)
                close(app->listen_fds[i]);
        free(app->listen_fds);
    }
    free(app->loops);
    free(app->host);
    free(app->server_name);
    free(app);
}

void **crest_app_data(crest_app_t *app) {
    return &app->data;
}

int crest_app_route(crest_app_t *app, const char *method, const char *pattern,
                    crest_handler_cb handler, void *data) {
    if (app->running)
        return CREST_EBUSY;
    if (method == NULL)
        return CREST_EINVAL;
    int id = crest__http_method_id(method, strlen(method));
    return crest__router_add(app->router, id, pattern, handler, data);
}

int crest_app_use(crest_app_t *app, const char *prefix, crest_handler_cb mw, void *data) {
    if (app->running)
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

void crest_app_not_found(crest_app_t *app, crest_handler_cb handler, void *data) {
    app->not_found = handler ? handler : not_found_default;
    app->not_found_data = data;
}

static int open_listener(const struct addrinfo *ai, int reuseport) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static void set_port(struct sockaddr *sa, int port) {
    if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
}

/* Raise the soft open-file limit to the hard one (Debian's soft default of 1024 is far below
 * what a server needs; the hard limit is the administrator's word) and derive the limits that
 * depend on the machine: the connection cap leaves an eighth of the descriptors (at least 32)
 * for database files, sockets to PostgreSQL or Redis and static files, so that reaching the cap
 * never starves them; the buffer budget defaults to a quarter of the memory (of the cgroup when
 * constrained). */
static void machine_limits(crest_app_t *app) {
    crest_app_opts_t *o = &app->opts;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rlim_t want = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
            struct rlimit nl = {want, rl.rlim_max};
            if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
                rl.rlim_cur = want;
        }
        if (o->max_connections == 0) {
            size_t n = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (size_t)rl.rlim_cur;
            size_t reserve = n / 8 > 32 ? n / 8 : 32;
            o->max_connections = n > reserve + 16 ? n - reserve : 16;
        }
    }
    if (o->max_connections == 0)
        o->max_connections = 1024;
    if (o->max_buffer_memory == 0) {
        uint64_t mem = uv_get_constrained_memory();
        uint64_t total = uv_get_total_memory();
        if (mem == 0 || (total != 0 && mem > total))
            mem = total;
        o->max_buffer_memory = mem ? (size_t)(mem / 4) : (size_t)1 << 30;
        if (o->max_buffer_memory < (size_t)64 << 20)
            o->max_buffer_memory = (size_t)64 << 20;
    }
    app->mem.limit = (int64_t)o->max_buffer_memory;
#ifdef __GLIBC__
    if (o->tune_malloc) {
        /* glibc raises its mmap threshold to the size of every large block freed (up to 32 MiB),
         * after which request bodies and output queues come from the heap, where freed memory
         * stays resident: measured, an attack's 80 MB stayed after it ended, even past
         * malloc_trim, which cannot shrink a thread arena's top. A fixed threshold keeps large
         * buffers in mmap, given back on free, and a fixed trim threshold returns heap tops. */
        mallopt(M_MMAP_THRESHOLD, 256 * 1024);
        mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
    }
#endif
}

int crest_app_listen(crest_app_t *app) {
    if (app->listen_fds)
        return 0;
    crest_app_opts_t *o = &app->opts;
    machine_limits(app);
    if (o->port < 0 || o->port > 65535)
        return CREST_EINVAL;
    int n = o->threads > 0 ? o->threads : (int)uv_available_parallelism();
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* A numeric address first: name resolution pulls in resolver code (and memory) that an
     * address such as 127.0.0.1 never needs. */
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST;
    int rc = getaddrinfo(app->host, "0", &hints, &ai);
    if (rc == EAI_NONAME) {
        hints.ai_flags &= ~AI_NUMERICHOST;
        rc = getaddrinfo(app->host, "0", &hints, &ai);
    }
    if (rc != 0 || ai == NULL)
        return CREST_EADDRNOTAVAIL;
    int *fds = malloc((size_t)n * sizeof(int));
    if (fds == NULL) {
        freeaddrinfo(ai);
        return CREST_ENOMEM;
    }
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    int port = o->port;
    rc = 0;
    if (port != 0) {
        /* SO_REUSEPORT would let us join another process's listener on the same port without
         * an error; a plain bind first tells us that the port is really free. */
        set_port(ai->ai_addr, port);
        int probe = open_listener(ai, 0);
        if (probe < 0)
            rc = probe;
        else
            close(probe);
    }
    for (int i = 0; i < n && rc == 0; i++) {
        set_port(ai->ai_addr, port);
        int fd = open_listener(ai, 1);
        if (fd < 0) {
            rc = fd;
            break;
        }
        fds[i] = fd;
        if (port == 0) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof(ss);
            getsockname(fd, (struct sockaddr *)&ss, &len);
            port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
        }
        if (listen(fd, o->backlog) != 0)
            rc = -errno;
    }
    freeaddrinfo(ai);
    if (rc != 0) {
        for (int i = 0; i < n; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        free(fds);
        return rc;
    }
    app->listen_fds = fds;
    app->nthreads = n;
    app->port = port;
    if (o->handle_signals) {
        /* From the moment the port is open someone may signal us; hold SIGINT and SIGTERM
         * pending until crest_app_run() has its handlers in place. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, &app->saved_sigmask);
        app->sigmask_saved = 1;
    }
    return 0;
}

int crest_app_port(const crest_app_t *app) {
    return app->port;
}

int crest_app_threads(const crest_app_t *app) {
    return app->listen_fds || app->loops ? app->nthreads : 0;
}

/* ---- running ---- */

static void on_loop_drain(crest_loop_t *loop, void *arg) {
    (void)arg;
    crest__http_loop_drain(loop);
}

static void on_loop_force(crest_loop_t *loop, void *arg) {
    (void)arg;
    crest__http_loop_force(loop);
}

static void loop_thread(void *arg) {
    crest_loop_t *loop = arg;
    int rc = crest__http_loop_start(loop);
    if (rc != 0) {
        crest__log(loop->app, CREST_LOG_ERROR, "loop %d: cannot start: %s", loop->index,
                   crest_strerror(rc));
        crest__http_loop_drain(loop);
    }
    crest__loop_run(loop);
    crest__http_loop_stop(loop);
    atomic_fetch_add(&loop->app->threads_done, 1);
    uv_async_send(&loop->app->done_async);
}

static void control_close(crest_app_t *app) {
    uv_close((uv_handle_t *)&app->stop_async, NULL);
    uv_close((uv_handle_t *)&app->done_async, NULL);
}

static void request_stop(crest_app_t *app) {
    /* The first request drains gracefully; a second one (say, Ctrl-C twice) cuts it short. */
    crest_loop_cb cb = app->stops_seen++ == 0 ? on_loop_drain : on_loop_force;
    if (app->stops_seen == 1)
        crest__log(app, CREST_LOG_INFO, "stopping: finishing requests in flight");
    for (int i = 0; i < app->nthreads; i++)
        crest_loop_post(&app->loops[i], cb, NULL);
}

static void on_stop_async(uv_async_t *a) {
    crest_app_t *app = CREST__CONTAINER_OF(a, crest_app_t, stop_async);
    /* uv_async_send coalesces: count the requests so that a second one still forces. */
    for (int n = atomic_exchange(&app->stop_requested, 0); n > 0 && app->stops_seen < 2; n--)
        request_stop(app);
}

/* SIGINT and SIGTERM stay blocked in every thread; this one takes them with sigwait(). A
 * synchronous wait, unlike a handler, cannot be lost or deferred by whatever the signal
 * interrupted, and it runs ordinary code (crest_app_stop). */
static void signal_thread(void *arg) {
    crest_app_t *app = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (atomic_load(&app->signals_done))
            return;
        crest_app_stop(app);
    }
}

static void on_done_async(uv_async_t *a) {
    crest_app_t *app = CREST__CONTAINER_OF(a, crest_app_t, done_async);
    if (atomic_load(&app->threads_done) == app->nthreads)
        control_close(app);
}

int crest_app_run(crest_app_t *app) {
    if (app->running)
        return CREST_EBUSY;
    int rc = crest_app_listen(app);
    if (rc != 0)
        return rc;
    app->running = 1;
    signal(SIGPIPE, SIG_IGN); /* a peer that vanished is an error code, not a process kill */
    app->loops = calloc((size_t)app->nthreads, sizeof(crest_loop_t));
    if (app->loops == NULL)
        return CREST_ENOMEM;
    rc = uv_loop_init(&app->control);
    if (rc != 0)
        return rc;
    uv_async_init(&app->control, &app->stop_async, on_stop_async);
    uv_async_init(&app->control, &app->done_async, on_done_async);
    int signals = 0;
    if (app->opts.handle_signals && app->sigmask_saved) {
        atomic_store(&app->signals_done, 0);
        signals = uv_thread_create(&app->signal_thread, signal_thread, app) == 0;
    }
    /* Every loop is initialised before any thread starts: a loop thread reads the others'
     * counters (for /metrics), which must not be written by an init running meanwhile. */
    int inited = 0;
    for (; inited < app->nthreads; inited++) {
        rc = crest__loop_init(&app->loops[inited], app, inited);
        if (rc != 0)
            break;
        app->loops[inited].listen_fd = app->listen_fds[inited];
        app->listen_fds[inited] = -1; /* the loop's listener owns it now */
    }
    int started = 0;
    for (int i = 0; i < inited && rc == 0; i++) {
        rc = uv_thread_create(&app->loops[i].thread, loop_thread, &app->loops[i]);
        if (rc == 0)
            started++;
    }
    for (int i = started; i < inited; i++)
        crest__loop_dispose(&app->loops[i]);
    if (rc != 0) {
        app->nthreads = started; /* stop the ones that did start */
        app->stops_seen = 0;
        request_stop(app);
        if (started == 0)
            control_close(app);
    }
    if (atomic_load(&app->stop_requested))
        uv_async_send(&app->stop_async);
    uv_run(&app->control, UV_RUN_DEFAULT);
    for (int i = 0; i < started; i++)
        uv_thread_join(&app->loops[i].thread);
    /* Worker jobs may still be running and posting to the ended loops (their inboxes are closed,
     * so the posts fail) and may hold requests of those loops: stop the extension while the
     * loops' locks and memory are still there, then dispose of the loops. */
    if (app->work != NULL) {
        app->work->stop(app->work);
        app->work = NULL;
    }
    for (int i = 0; i < started; i++)
        crest__loop_dispose(&app->loops[i]);
    uv_loop_close(&app->control);
    if (signals) {
        atomic_store(&app->signals_done, 1);
        pthread_kill(app->signal_thread, SIGTERM); /* wakes its sigwait() */
        uv_thread_join(&app->signal_thread);
    }
    if (app->sigmask_saved) {
        pthread_sigmask(SIG_SETMASK, &app->saved_sigmask, NULL);
        app->sigmask_saved = 0;
    }
    app->running = 0;
    return rc;
}

void crest_app_stop(crest_app_t *app) {
    atomic_fetch_add(&app->stop_requested, 1);
    if (app->running)
        uv_async_send(&app->stop_async);
}

/* ---- statistics ---- */

static uint64_t load(const _Atomic uint64_t *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}

uint64_t crest_app_status_count(const crest_app_t *app, int status) {
    if (status < 0 || status >= 600 || app->loops == NULL)
        return 0;
    uint64_t n = 0;
    for (int i = 0; i < app->nthreads; i++)
        n += load(&app->loops[i].status_counts[status]);
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
    if (app->loops == NULL)
        return;
    for (int i = 0; i < app->nthreads; i++) {
        const crest_loop_t *l = &app->loops[i];
        for (int s = 100; s < 600; s++) {
            uint64_t n = load(&l->status_counts[s]);
            out->requests += n;
            out->by_status[s / 100] += n;
        }
        out->open_connections += load(&l->open_conns);
        out->accepted_connections += load(&l->accepted);
        out->rejected_requests += load(&l->rejected);
        out->refused_connections += load(&l->refused_conns);
        out->write_timeouts += load(&l->write_timeouts);
    }
    int64_t used = atomic_load_explicit(&app->mem.used, memory_order_relaxed);
    out->buffered_bytes = used > 0 ? (uint64_t)used : 0;
    out->buffered_peak = (uint64_t)atomic_load_explicit(&app->mem.peak, memory_order_relaxed);
    out->buffer_limit = (uint64_t)app->mem.limit;
    out->buffer_refusals = atomic_load_explicit(&app->mem.refused, memory_order_relaxed);
}
