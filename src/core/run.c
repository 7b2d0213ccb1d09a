/* The runtime: listening sockets, loop threads, signals, stopping. It knows nothing of the
 * protocols spoken on the connections: the layer above starts and stops its part of each loop
 * through rt->hooks. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

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
static void machine_limits(crest__rt_t *rt) {
    crest_app_opts_t *o = rt->opts;
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
    rt->mem.limit = (int64_t)o->max_buffer_memory;
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

static void handled_signals(const crest__rt_t *rt, sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    if (rt->tls != NULL)
        sigaddset(set, SIGHUP);
    if (rt->on_usr1 != NULL)
        sigaddset(set, SIGUSR1);
}

static void block_signals(crest__rt_t *rt) {
    if (rt->opts->handle_signals) {
        /* From the moment the port is open someone may signal us; hold SIGINT and SIGTERM (and
         * SIGHUP, the reload, when there is a certificate to reload) pending until
         * crest__rt_run() has its handlers in place. */
        sigset_t set;
        handled_signals(rt, &set);
        pthread_sigmask(SIG_BLOCK, &set, &rt->saved_sigmask);
        rt->sigmask_saved = 1;
    }
}

/* Serve on the `passed` sockets of the service manager instead of binding. Each is one socket
 * whatever the thread count: SO_REUSEPORT's balancing would need one socket per loop thread, which
 * a socket unit can only give with as many ListenStream= lines as threads, tying the unit to the
 * thread count. So every loop thread polls a socket through a descriptor of its own (a dup, which
 * it closes at drain like one it bound) and they race to accept: the socket is non-blocking, the
 * losers get EAGAIN, and the cost is a wasted wake-up per connection per extra thread, small next
 * to the connection's own. With several sockets (ports 80 and 8080, say) loop i takes socket
 * i mod passed, and there are at least as many loops as sockets so that none goes unserved.
 * At a stop the manager still holds the sockets: connections waiting in their queues are not
 * reset but wait for the next instance, so a restart loses none. */
static int take_passed(crest__rt_t *rt, int passed, int n) {
    if (n < passed)
        n = passed;
    int *fds = malloc((size_t)n * sizeof(int));
    if (fds == NULL)
        return CREST_ENOMEM;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        int fd = CREST__SD_FDS_START + i % passed;
        fds[i] = i < passed ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (fds[i] < 0 && rc == 0)
            rc = -errno;
    }
    if (rc != 0) {
        for (int i = 0; i < n; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        free(fds);
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(fds[0], (struct sockaddr *)&ss, &len);
    rt->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    rt->listen_fds = fds;
    rt->nthreads = n;
    rt->activated = passed;
    crest__log(rt, CREST_LOG_INFO, "socket activation: serving on %d passed socket%s (port %d)",
               passed, passed == 1 ? "" : "s", rt->port);
    block_signals(rt);
    return 0;
}

int crest__rt_listen(crest__rt_t *rt, const char *host) {
    if (rt->listen_fds)
        return 0;
    crest_app_opts_t *o = rt->opts;
    machine_limits(rt);
    if (o->port < 0 || o->port > 65535)
        return CREST_EINVAL;
    if ((o->tls_cert == NULL) != (o->tls_key == NULL)) {
        crest__log(rt, CREST_LOG_ERROR, "TLS needs both a certificate and a key");
        return CREST_EINVAL;
    }
    if (o->tls_cert != NULL && rt->tls == NULL) {
        /* Before the port opens: a certificate that does not load is an error at start. */
        int rc = crest__tls_ctx_new(rt, o->tls_cert, o->tls_key, rt->hooks->alpn_h2);
        if (rc != 0)
            return rc;
    }
    int n = o->threads > 0 ? o->threads : (int)uv_available_parallelism();
    if (o->systemd) {
        if (rt->sd.addrlen == 0) /* a second attempt after an error finds the variables gone */
            crest__sd_init(&rt->sd);
        int passed = crest__sd_listen_fds(rt);
        if (passed < 0)
            return passed;
        if (passed > 0)
            return take_passed(rt, passed, n);
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* A numeric address first: name resolution pulls in resolver code (and memory) that an
     * address such as 127.0.0.1 never needs. */
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST;
    int rc = getaddrinfo(host, "0", &hints, &ai);
    if (rc == EAI_NONAME) {
        hints.ai_flags &= ~AI_NUMERICHOST;
        rc = getaddrinfo(host, "0", &hints, &ai);
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
    rt->listen_fds = fds;
    rt->nthreads = n;
    rt->port = port;
    block_signals(rt);
    return 0;
}

static void on_loop_drain(crest_loop_t *loop, void *arg) {
    (void)arg;
    crest__conn_loop_drain(loop);
}

static void on_loop_force(crest_loop_t *loop, void *arg) {
    (void)arg;
    crest__conn_loop_force(loop);
}

static void loop_thread(void *arg) {
    crest_loop_t *loop = arg;
    crest__rt_t *rt = loop->rt;
    int rc = rt->hooks->loop_start(loop);
    if (rc == 0)
        rc = crest__conn_loop_start(loop);
    if (rc != 0) {
        crest__log(rt, CREST_LOG_ERROR, "loop %d: cannot start: %s", loop->index,
                   crest_strerror(rc));
        crest__conn_loop_drain(loop);
    } else {
        /* Serving: the listener is polled from the loop's first turn, and connections that
         * arrive before it wait in the listen queue. */
        atomic_fetch_add(&rt->loops_serving, 1);
        uv_async_send(&rt->ready_async);
    }
    crest__loop_run(loop);
    crest__conn_loop_stop(loop); /* first: requests freed from now on are not recycled */
    rt->hooks->loop_stop(loop);
    atomic_fetch_add(&rt->threads_done, 1);
    uv_async_send(&rt->done_async);
}

static void control_close(crest__rt_t *rt) {
    uv_close((uv_handle_t *)&rt->stop_async, NULL);
    uv_close((uv_handle_t *)&rt->done_async, NULL);
    uv_close((uv_handle_t *)&rt->ready_async, NULL);
    uv_close((uv_handle_t *)&rt->watchdog_timer, NULL);
}

/* Every loop thread has its listener polled: the manager may send traffic our way. */
static void on_ready_async(uv_async_t *a) {
    crest__rt_t *rt = CREST__CONTAINER_OF(a, crest__rt_t, ready_async);
    if (rt->ready_sent || rt->stops_seen || atomic_load(&rt->loops_serving) < rt->nthreads)
        return;
    rt->ready_sent = 1;
    char msg[96];
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=serving on port %d, %d loop threads", rt->port,
             rt->nthreads);
    crest__sd_notify(&rt->sd, msg);
}

static void on_watchdog_ping(crest_loop_t *loop, void *arg) {
    atomic_store(&loop->watchdog_seen, (uint64_t)(uintptr_t)arg);
}

/* The watchdog is fed only while every loop thread answers a message posted a period earlier: a
 * loop stuck in a handler (an endless loop, a blocking call) starves its connections, and the
 * manager should restart the service then, which a timer on this thread alone would never show.
 * A loop that has finished (during a stop) is not waited for. */
static void on_watchdog(uv_timer_t *t) {
    crest__rt_t *rt = CREST__CONTAINER_OF(t, crest__rt_t, watchdog_timer);
    uint64_t round = rt->watchdog_round;
    int late = -1;
    for (int i = 0; i < rt->nthreads && late < 0; i++)
        if (atomic_load(&rt->loops[i].watchdog_seen) < round)
            late = i;
    if (late < 0)
        crest__sd_notify(&rt->sd, "WATCHDOG=1");
    else
        crest__log_limited(rt, &rt->log_watchdog, CREST_LOG_WARN,
                           "loop %d has not answered for %" PRIu64 " ms: the watchdog is not fed",
                           late, rt->sd.watchdog_ms);
    rt->watchdog_round = ++round;
    for (int i = 0; i < rt->nthreads; i++)
        if (crest_loop_post(&rt->loops[i], on_watchdog_ping, (void *)(uintptr_t)round) != 0)
            atomic_store(&rt->loops[i].watchdog_seen, round);
}

static void request_stop(crest__rt_t *rt) {
    /* The first request drains gracefully; a second one (say, Ctrl-C twice) cuts it short. */
    crest_loop_cb cb = rt->stops_seen++ == 0 ? on_loop_drain : on_loop_force;
    if (rt->stops_seen == 1) {
        crest__log(rt, CREST_LOG_INFO, "stopping: finishing requests in flight");
        crest__sd_notify(&rt->sd, "STOPPING=1");
    }
    for (int i = 0; i < rt->nthreads; i++)
        crest_loop_post(&rt->loops[i], cb, NULL);
}

static void on_stop_async(uv_async_t *a) {
    crest__rt_t *rt = CREST__CONTAINER_OF(a, crest__rt_t, stop_async);
    /* uv_async_send coalesces: count the requests so that a second one still forces. */
    for (int n = atomic_exchange(&rt->stop_requested, 0); n > 0 && rt->stops_seen < 2; n--)
        request_stop(rt);
}

/* SIGINT and SIGTERM (and SIGHUP with TLS) stay blocked in every thread; this one takes them
 * with sigwait(). A synchronous wait, unlike a handler, cannot be lost or deferred by whatever
 * the signal interrupted, and it runs ordinary code (crest__rt_stop, a certificate reload). */
static void signal_thread(void *arg) {
    crest__rt_t *rt = arg;
    sigset_t set;
    handled_signals(rt, &set);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (atomic_load(&rt->signals_done))
            return;
        if (sig == SIGHUP)
            crest__tls_reload(rt);
        else if (sig == SIGUSR1)
            rt->on_usr1(rt);
        else
            crest__rt_stop(rt);
    }
}

static void on_done_async(uv_async_t *a) {
    crest__rt_t *rt = CREST__CONTAINER_OF(a, crest__rt_t, done_async);
    if (atomic_load(&rt->threads_done) == rt->nthreads)
        control_close(rt);
}

int crest__rt_run(crest__rt_t *rt) {
    if (rt->running)
        return CREST_EBUSY;
    if (rt->listen_fds == NULL)
        return CREST_EINVAL;  /* crest__rt_listen first */
    signal(SIGPIPE, SIG_IGN); /* a peer that vanished is an error code, not a process kill */
    rt->loops = calloc((size_t)rt->nthreads, sizeof(crest_loop_t));
    if (rt->loops == NULL)
        return CREST_ENOMEM;
    int rc = uv_loop_init(&rt->control);
    if (rc != 0)
        return rc;
    rt->running = 1;
    uv_async_init(&rt->control, &rt->stop_async, on_stop_async);
    uv_async_init(&rt->control, &rt->done_async, on_done_async);
    uv_async_init(&rt->control, &rt->ready_async, on_ready_async);
    uv_timer_init(&rt->control, &rt->watchdog_timer);
    atomic_store(&rt->loops_serving, 0);
    rt->ready_sent = 0;
    rt->watchdog_round = 0;
    int signals = 0;
    if (rt->opts->handle_signals && rt->sigmask_saved) {
        atomic_store(&rt->signals_done, 0);
        signals = uv_thread_create(&rt->signal_thread, signal_thread, rt) == 0;
    }
    /* Every loop is initialised before any thread starts: a loop thread reads the others'
     * counters (for /metrics), which must not be written by an init running meanwhile. */
    int inited = 0;
    for (; inited < rt->nthreads; inited++) {
        rc = crest__loop_init(&rt->loops[inited], rt, inited);
        if (rc != 0)
            break;
        rt->loops[inited].listen_fd = rt->listen_fds[inited];
        rt->listen_fds[inited] = -1; /* the loop's listener owns it now */
    }
    int started = 0;
    for (int i = 0; i < inited && rc == 0; i++) {
        rc = uv_thread_create(&rt->loops[i].thread, loop_thread, &rt->loops[i]);
        if (rc == 0)
            started++;
    }
    for (int i = started; i < inited; i++)
        crest__loop_dispose(&rt->loops[i]);
    if (rc != 0) {
        rt->nthreads = started; /* stop the ones that did start */
        rt->stops_seen = 0;
        request_stop(rt);
        if (started == 0)
            control_close(rt);
    }
    if (atomic_load(&rt->stop_requested))
        uv_async_send(&rt->stop_async);
    if (rt->sd.watchdog_ms && started > 0)
        uv_timer_start(&rt->watchdog_timer, on_watchdog, rt->sd.watchdog_ms, rt->sd.watchdog_ms);
    uv_run(&rt->control, UV_RUN_DEFAULT);
    for (int i = 0; i < started; i++)
        uv_thread_join(&rt->loops[i].thread);
    /* Worker jobs may still be running and posting to the ended loops (their inboxes are closed,
     * so the posts fail) and may hold requests of those loops: stop the extension while the
     * loops' locks and memory are still there, then dispose of the loops. */
    if (rt->work != NULL) {
        rt->work->stop(rt->work);
        rt->work = NULL;
    }
    for (int i = 0; i < started; i++)
        crest__loop_dispose(&rt->loops[i]);
    uv_loop_close(&rt->control);
    if (signals) {
        atomic_store(&rt->signals_done, 1);
        pthread_kill(rt->signal_thread, SIGTERM); /* wakes its sigwait() */
        uv_thread_join(&rt->signal_thread);
    }
    if (rt->sigmask_saved) {
        pthread_sigmask(SIG_SETMASK, &rt->saved_sigmask, NULL);
        rt->sigmask_saved = 0;
    }
    rt->running = 0;
    return rc;
}

void crest__rt_stop(crest__rt_t *rt) {
    atomic_fetch_add(&rt->stop_requested, 1);
    if (rt->running)
        uv_async_send(&rt->stop_async);
}

void crest__rt_free(crest__rt_t *rt) {
    if (rt->work != NULL) {
        rt->work->stop(rt->work);
        rt->work = NULL;
    }
    crest__tls_ctx_free(rt);
    crest__sd_close(&rt->sd);
    if (rt->listen_fds) {
        for (int i = 0; i < rt->nthreads; i++)
            if (rt->listen_fds[i] >= 0)
                close(rt->listen_fds[i]);
        free(rt->listen_fds);
        rt->listen_fds = NULL;
    }
    if (rt->sigmask_saved) {
        pthread_sigmask(SIG_SETMASK, &rt->saved_sigmask, NULL);
        rt->sigmask_saved = 0;
    }
    free(rt->loops);
    rt->loops = NULL;
}

/* ---- the local runtime: one loop on the caller's thread (the test client) ---- */

int crest__rt_local_prepare(crest__rt_t *rt) {
    if (rt->running || rt->listen_fds != NULL)
        return CREST_EBUSY;
    machine_limits(rt);
    rt->nthreads = 1;
    return 0;
}

/* crest__rt_stop: the first request drains, a second cuts the drain short (as on_stop_async). */
static void on_local_stop(uv_async_t *a) {
    crest__rt_t *rt = CREST__CONTAINER_OF(a, crest__rt_t, stop_async);
    for (int n = atomic_exchange(&rt->stop_requested, 0); n > 0 && rt->stops_seen < 2; n--) {
        if (rt->stops_seen++ == 0)
            crest__conn_loop_drain(&rt->loops[0]);
        else
            crest__conn_loop_force(&rt->loops[0]);
    }
}

int crest__rt_local_start(crest__rt_t *rt) {
    if (rt->running || rt->nthreads != 1)
        return CREST_EBUSY;
    /* As crest_app_run: a write to a socket the peer closed (the outbound client's, a
     * database's) must not kill the process with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    /* An earlier local run's loop is reused in place (crest__loop_init clears it): modules that
     * listed the loops' addresses (pub/sub) keep valid ones. */
    if (rt->loops == NULL && (rt->loops = calloc(1, sizeof(crest_loop_t))) == NULL)
        return CREST_ENOMEM;
    crest_loop_t *loop = &rt->loops[0];
    int rc = crest__loop_init(loop, rt, 0);
    if (rc != 0)
        return rc;
    /* The stop request wakes this loop, the only one; crest__rt_stop sends it while running. */
    uv_async_init(&loop->uv, &rt->stop_async, on_local_stop);
    rt->stops_seen = 0;
    atomic_store(&rt->stop_requested, 0);
    rt->running = 1;
    rc = rt->hooks->loop_start(loop);
    if (rc == 0)
        rc = crest__conn_loop_start(loop);
    if (rc != 0)
        crest__rt_local_stop(rt);
    return rc;
}

void crest__rt_local_stop(crest__rt_t *rt) {
    crest_loop_t *loop = &rt->loops[0];
    /* Closed before the loop runs out: it would keep it alive. A stop from now on only counts. */
    rt->running = 0;
    uv_close((uv_handle_t *)&rt->stop_async, NULL);
    crest__conn_loop_drain(loop);
    crest__loop_run(loop);
    crest__conn_loop_stop(loop); /* first: requests freed from now on are not recycled */
    rt->hooks->loop_stop(loop);
    /* As at crest__rt_run's end: jobs still out hold requests of the loop, whose memory must
     * still be there when the pool hands them back. */
    if (rt->work != NULL) {
        rt->work->stop(rt->work);
        rt->work = NULL;
    }
    crest__loop_dispose(loop); /* its memory stays until crest__rt_free: crest_app_stats reads it */
    atomic_store(&rt->stop_requested, 0);
    rt->stops_seen = 0;
}
