/* tlsconn: TLS client connections for bench/tls.sh (OpenSSL, non-blocking sockets, epoll).
 *
 *   tlsconn -m churn [-a ADDR] [-p PORT] [-u PATH] [-c CONC] [-d SECS] [-s SOURCES]
 *                    [-t TIMEOUT_S]
 *
 * Full TLS handshakes, one per connection: CONC connections at a time, each a new TCP
 * connection, a full handshake (ALPN http/1.1), one `GET PATH HTTP/1.1` with
 * `Connection: close`, the whole response read, then the server's close awaited and the socket
 * closed; for SECS seconds (default 10), after which no connection is started and those under
 * way finish. No session is ever offered for resumption (no session cache, no SSL_set_session):
 * the tickets the server sends are received and dropped. The certificate is not checked against
 * a CA (the bench's is self-signed); the handshake signature is, as TLS requires. Prints one line
 * `TLSJSON {...}`: handshakes, requests (complete 200s), errors, resumed (must be 0),
 * duration_us (first start to last finish), client_cpu_us (this process, user + system) and
 * the version, cipher and key-exchange group negotiated. A connection failing or taking more
 * than TIMEOUT_S (default 10) is an error, counted, and the first error's reason is printed on
 * stderr; the tool exits 1 only if no handshake completed.
 *
 *   tlsconn -m idle [-a ADDR] [-p PORT] [-u PATH] [-n N] [-s SOURCES] [-k INFLIGHT]
 *                   [-t TIMEOUT_S] [-H HOLD_S]
 *
 * Like idleconn, over TLS: opens N connections (default 10000), at most INFLIGHT (default 256)
 * being set up at once, each with a full handshake and one keep-alive `GET PATH` whose whole 200
 * response is read; prints `ready N` once all N are idle, holds them until SIGTERM or SIGINT
 * (or HOLD_S seconds, default 600) and prints `done open=X closed_by_server=Y`. Exits 1 if
 * setup did not finish within TIMEOUT_S (default 60) or any connection failed.
 *
 * Both spread their connections over the source addresses 127.0.0.1 .. 127.0.0.SOURCES
 * (default 8), bound before connect so that ephemeral ports do not run out. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpmini.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum {
    ST_FREE,
    ST_CONNECTING,
    ST_HANDSHAKE,
    ST_WRITING,
    ST_READING,
    ST_DRAIN,
    ST_EOF,
    ST_IDLE,
    ST_CLOSED
};

#define RESP_MAX 4096

typedef struct {
    int fd;
    int state;
    uint32_t events; /* what epoll waits for on fd */
    SSL *ssl;
    size_t len;
    size_t sent;
    char *buf; /* only while reading the response */
    double started;
} conn_t;

static volatile sig_atomic_t stop;
static SSL_CTX *ctx;
static int ep;
static struct sockaddr_in dst;
static int sources = 8;
static long next_source;
static char req[1024];
static size_t req_len;
static int churn;
static char first_error[256];
static long errors, handshakes, requests, resumed;
static char version[32], cipher[64], group[32];

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void) {
    fprintf(stderr, "usage: tlsconn -m churn [-a ADDR] [-p PORT] [-u PATH] [-c CONC] [-d SECS] "
                    "[-s SOURCES] [-t TIMEOUT_S]\n"
                    "       tlsconn -m idle [-a ADDR] [-p PORT] [-u PATH] [-n N] [-s SOURCES] "
                    "[-k INFLIGHT] [-t TIMEOUT_S] [-H HOLD_S]\n");
    exit(2);
}

static void die(const char *what, int err) {
    fprintf(stderr, "tlsconn: %s: %s\n", what, strerror(err));
    exit(1);
}

/* A connection failed: in idle mode that ends the run; in churn mode it is counted. */
static void fail(conn_t *c, const char *why) {
    if (!churn) {
        fprintf(stderr, "tlsconn: %s\n", why);
        exit(1);
    }
    if (errors++ == 0)
        snprintf(first_error, sizeof first_error, "%s", why);
    (void)c;
}

static void ssl_fail(conn_t *c, const char *where, int ssl_err) {
    char why[256];
    unsigned long e = ERR_get_error();
    if (e != 0)
        snprintf(why, sizeof why, "%s: %s", where, ERR_reason_error_string(e));
    else if (ssl_err == SSL_ERROR_SYSCALL)
        snprintf(why, sizeof why, "%s: %s", where, errno ? strerror(errno) : "connection closed");
    else
        snprintf(why, sizeof why, "%s: SSL error %d", where, ssl_err);
    ERR_clear_error();
    fail(c, why);
}

static void set_events(conn_t *c, long idx, uint32_t events) {
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)idx};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        die("epoll_ctl", errno);
    c->events = events;
}

static void release(conn_t *c) {
    if (c->ssl != NULL)
        SSL_free(c->ssl);
    c->ssl = NULL;
    free(c->buf);
    c->buf = NULL;
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
}

static void start(conn_t *c, long idx) {
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket", errno);
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(next_source++ % sources));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
        die("bind", errno);
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS)
        die("connect", errno);
    c->state = ST_CONNECTING;
    c->started = now_s();
    c->events = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)idx};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl", errno);
}

/* Wait for what OpenSSL wants, or fail. Returns 1 when waiting, 0 after a failure. */
static int want(conn_t *c, long idx, int r, const char *where) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        set_events(c, idx, EPOLLIN);
        return 1;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        set_events(c, idx, EPOLLOUT);
        return 1;
    }
    ssl_fail(c, where, e);
    return 0;
}

/* Move connection idx on as far as it goes. Returns 1 when it is finished (churn: done or
 * failed; the slot is free again), 0 while it waits. */
static int step(conn_t *c, long idx) {
    for (;;) {
        switch (c->state) {
        case ST_CONNECTING: {
            int err = 0;
            socklen_t elen = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
            if (err != 0) {
                char why[128];
                snprintf(why, sizeof why, "connect: %s", strerror(err));
                fail(c, why);
                return 1;
            }
            c->ssl = SSL_new(ctx);
            if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
                die("SSL_new", ENOMEM);
            SSL_set_connect_state(c->ssl);
            c->state = ST_HANDSHAKE;
            break;
        }
        case ST_HANDSHAKE: {
            ERR_clear_error();
            int r = SSL_do_handshake(c->ssl);
            if (r != 1)
                return want(c, idx, r, "handshake") ? 0 : 1;
            handshakes++;
            if (SSL_session_reused(c->ssl))
                resumed++;
            if (version[0] == '\0') {
                snprintf(version, sizeof version, "%s", SSL_get_version(c->ssl));
                snprintf(cipher, sizeof cipher, "%s", SSL_get_cipher_name(c->ssl));
                int nid = SSL_get_negotiated_group(c->ssl);
                const char *g = nid > 0 ? SSL_group_to_name(c->ssl, nid) : NULL;
                snprintf(group, sizeof group, "%s", g != NULL ? g : "?");
            }
            c->state = ST_WRITING;
            break;
        }
        case ST_WRITING: {
            ERR_clear_error();
            int r = SSL_write(c->ssl, req + c->sent, (int)(req_len - c->sent));
            if (r <= 0)
                return want(c, idx, r, "write") ? 0 : 1;
            c->sent += (size_t)r;
            if (c->sent < req_len)
                break;
            c->buf = malloc(RESP_MAX);
            if (c->buf == NULL)
                die("malloc", ENOMEM);
            c->state = ST_READING;
            break;
        }
        case ST_READING: {
            ERR_clear_error();
            int r = SSL_read(c->ssl, c->buf + c->len, (int)(RESP_MAX - 1 - c->len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_ZERO_RETURN ||
                    (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
                    fail(c, "server closed a connection before responding");
                    return 1;
                }
                return want(c, idx, r, "read") ? 0 : 1;
            }
            c->len += (size_t)r;
            int status = 0;
            long full = hm_response_complete(c->buf, c->len, &status);
            if (full < 0 || (full == 0 && c->len == RESP_MAX - 1)) {
                fail(c, "malformed or oversized response");
                return 1;
            }
            if (full == 0)
                break;
            if (status != 200 || (size_t)full != c->len) {
                char why[64];
                snprintf(why, sizeof why, "unexpected response (status %d)", status);
                fail(c, why);
                return 1;
            }
            requests++;
            free(c->buf);
            c->buf = NULL;
            if (churn) {
                c->state = ST_DRAIN;
            } else {
                /* From now on only a close by the server (or a late ticket) wakes us. */
                c->state = ST_IDLE;
                set_events(c, idx, EPOLLIN | EPOLLRDHUP);
                return 1;
            }
            break;
        }
        case ST_DRAIN: { /* churn: the server closes (Connection: close); wait for it */
            char tmp[512];
            ERR_clear_error();
            int r = SSL_read(c->ssl, tmp, sizeof tmp);
            if (r > 0)
                break; /* nothing more is expected; ignore it */
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return want(c, idx, r, "read") ? 0 : 1;
            /* close_notify or EOF; either way the response was whole. Wait for the TCP FIN so
             * that the server, which closed first, keeps the TIME_WAIT. */
            ERR_clear_error();
            c->state = ST_EOF;
            set_events(c, idx, EPOLLIN | EPOLLRDHUP);
            break;
        }
        case ST_EOF: {
            char tmp[512];
            ssize_t r = recv(c->fd, tmp, sizeof tmp, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
            if (r > 0)
                break;
            return 1; /* EOF or reset: done */
        }
        default:
            return 1;
        }
    }
}

/* An idle connection is readable: a late ticket (stays open) or the server closing it. */
static int idle_event(conn_t *c) {
    char tmp[512];
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(c->ssl, tmp, sizeof tmp);
        if (r > 0)
            continue;
        int e = SSL_get_error(c->ssl, r);
        return !(e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
    }
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1", *path = "/plaintext", *mode = NULL;
    int port = 8080, conc = 32, inflight_max = 256;
    long n = 10000, timeout_s = -1, hold_s = 600;
    double secs = 10;
    int opt;
    while ((opt = getopt(argc, argv, "m:a:p:u:c:d:n:s:k:t:H:h")) != -1) {
        switch (opt) {
        case 'm':
            mode = optarg;
            break;
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'u':
            path = optarg;
            break;
        case 'c':
            conc = atoi(optarg);
            break;
        case 'd':
            secs = atof(optarg);
            break;
        case 'n':
            n = atol(optarg);
            break;
        case 's':
            sources = atoi(optarg);
            break;
        case 'k':
            inflight_max = atoi(optarg);
            break;
        case 't':
            timeout_s = atol(optarg);
            break;
        case 'H':
            hold_s = atol(optarg);
            break;
        default:
            usage();
        }
    }
    if (mode == NULL || (strcmp(mode, "churn") != 0 && strcmp(mode, "idle") != 0))
        usage();
    churn = strcmp(mode, "churn") == 0;
    if (timeout_s < 0)
        timeout_s = churn ? 10 : 60;
    if (optind != argc || port <= 0 || port > 65535 || n <= 0 || sources < 1 || sources > 254 ||
        inflight_max < 1 || conc < 1 || secs <= 0 || timeout_s <= 0 || hold_s <= 0)
        usage();

    dst = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1) {
        fprintf(stderr, "tlsconn: bad address %s\n", addr);
        return 2;
    }
    long slots = churn ? conc : n;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)slots + 16 > rl.rlim_cur) {
        fprintf(stderr, "tlsconn: %ld connections need more than the %llu open files allowed\n",
                slots, (unsigned long long)rl.rlim_cur);
        return 1;
    }

    int w = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", path, addr, port,
                     churn ? "Connection: close\r\n" : "");
    if (w <= 0 || (size_t)w >= sizeof req)
        usage();
    req_len = (size_t)w;

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        die("SSL_CTX_new", ENOMEM);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!churn)
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* 10,000 idle clients: keep ours small */
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    conn_t *conns = calloc((size_t)slots, sizeof *conns);
    long *finished = calloc((size_t)slots, sizeof *finished);
    struct epoll_event *events = calloc(1024, sizeof *events);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || events == NULL || finished == NULL)
        die("calloc", ENOMEM);
    if (ep < 0)
        die("epoll_create1", errno);
    for (long i = 0; i < slots; i++)
        conns[i].fd = -1;

    if (churn) {
        double t0 = now_s(), end = t0 + secs, last = t0, next_check = t0 + 0.1;
        long active = 0;
        for (long i = 0; i < slots; i++, active++)
            start(&conns[i], i);
        while (active > 0) {
            int k = epoll_wait(ep, events, 1024, 100);
            if (k < 0 && errno != EINTR)
                die("epoll_wait", errno);
            long nf = 0;
            for (int i = 0; i < k; i++) {
                long idx = (long)events[i].data.u64;
                conn_t *c = &conns[idx];
                if (c->state == ST_FREE)
                    continue; /* finished earlier in this batch */
                if (step(c, idx)) {
                    release(c);
                    c->state = ST_FREE;
                    finished[nf++] = idx;
                }
            }
            double t = now_s();
            if (t >= next_check) { /* connections that take too long are errors */
                next_check = t + 0.1;
                for (long i = 0; i < slots; i++) {
                    conn_t *c = &conns[i];
                    if (c->state != ST_FREE && t - c->started > (double)timeout_s) {
                        fail(c, "a connection took longer than the timeout");
                        release(c);
                        c->state = ST_FREE;
                        finished[nf++] = i;
                    }
                }
            }
            if (nf > 0)
                last = t;
            /* Slots are reused only after the batch, so that no stale event meets a new fd. */
            for (long i = 0; i < nf; i++) {
                if (t < end && !stop)
                    start(&conns[finished[i]], finished[i]);
                else
                    active--;
            }
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double cpu_us = (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
                        (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
        if (errors > 0)
            fprintf(stderr, "tlsconn: %ld errors; the first: %s\n", errors, first_error);
        printf("TLSJSON {\"handshakes\":%ld,\"requests\":%ld,\"errors\":%ld,\"resumed\":%ld,"
               "\"duration_us\":%.0f,\"client_cpu_us\":%.0f,\"concurrency\":%d,"
               "\"version\":\"%s\",\"cipher\":\"%s\",\"group\":\"%s\"}\n",
               handshakes, requests, errors, resumed, (last - t0) * 1e6, cpu_us, conc, version,
               cipher, group);
        return handshakes > 0 ? 0 : 1;
    }

    long started = 0, inflight = 0, idle = 0;
    double deadline = now_s() + (double)timeout_s;
    while (idle < n) {
        if (stop) {
            fprintf(stderr, "tlsconn: stopped during setup\n");
            return 1;
        }
        if (now_s() > deadline) {
            fprintf(stderr, "tlsconn: only %ld of %ld connections ready after %ld s\n", idle, n,
                    timeout_s);
            return 1;
        }
        while (inflight < inflight_max && started < n) {
            start(&conns[started], started);
            started++;
            inflight++;
        }
        int k = epoll_wait(ep, events, 1024, 100);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait", errno);
        }
        for (int i = 0; i < k; i++) {
            long idx = (long)events[i].data.u64;
            conn_t *c = &conns[idx];
            if (c->state == ST_IDLE) {
                /* A server closing a connection while setup goes on: counted below. */
                if (idle_event(c)) {
                    release(c);
                    c->state = ST_CLOSED;
                }
            } else if (c->state != ST_CLOSED && step(c, idx)) {
                inflight--;
                idle++;
            }
        }
    }
    printf("ready %ld\n", n);
    fflush(stdout);

    long closed = 0;
    for (long i = 0; i < n; i++)
        closed += conns[i].state == ST_CLOSED;
    double hold_end = now_s() + (double)hold_s;
    while (!stop && now_s() < hold_end) {
        int k = epoll_wait(ep, events, 1024, 200);
        if (k < 0 && errno != EINTR)
            die("epoll_wait", errno);
        for (int i = 0; i < k; i++) {
            conn_t *c = &conns[events[i].data.u64];
            if (c->state == ST_IDLE && idle_event(c)) {
                release(c);
                c->state = ST_CLOSED;
                closed++;
            }
        }
    }
    printf("done open=%ld closed_by_server=%ld\n", n - closed, closed);
    fflush(stdout);
    return 0;
}
