/* idleconn: open N used, idle keep-alive connections to a server and hold them.
 *
 *   idleconn [-a ADDR] [-p PORT] [-u PATH] [-n N] [-s SOURCES] [-k INFLIGHT] [-t TIMEOUT_S]
 *            [-H HOLD_S]
 *
 * Spreads the connections over the source addresses 127.0.0.1 .. 127.0.0.SOURCES (default 8;
 * bound before connect, so ephemeral ports do not run out), sends one
 * `GET PATH HTTP/1.1` with Host on each and reads the whole response, so every connection is a
 * used keep-alive connection. At most INFLIGHT (default 256) connections are being set up at
 * once, so the server's listen backlog does not overflow. Non-blocking sockets and epoll.
 *
 * Prints `ready N` on stdout once all N have their response, then holds them until SIGTERM or
 * SIGINT (or HOLD_S seconds, default 600), and prints `done open=X closed_by_server=Y`: how
 * many the server closed while they were held. Exits 1 if the connections could not be set
 * up within TIMEOUT_S seconds (default 60) or any of them failed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

enum { ST_CONNECTING, ST_READING, ST_IDLE, ST_CLOSED };

#define RESP_MAX 2048

typedef struct {
    int fd;
    int state;
    size_t len;
    char *buf; /* only while reading the response */
} conn_t;

static volatile sig_atomic_t stop;

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
    fprintf(stderr, "usage: idleconn [-a ADDR] [-p PORT] [-u PATH] [-n N] [-s SOURCES] "
                    "[-k INFLIGHT] [-t TIMEOUT_S] [-H HOLD_S]\n");
    exit(2);
}

static void die(const char *what, int err) {
    fprintf(stderr, "idleconn: %s: %s\n", what, strerror(err));
    exit(1);
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1", *path = "/plaintext";
    int port = 8080, sources = 8, inflight_max = 256;
    long n = 10000, timeout_s = 60, hold_s = 600;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:u:n:s:k:t:H:h")) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'u':
            path = optarg;
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
    if (optind != argc || port <= 0 || port > 65535 || n <= 0 || sources < 1 || sources > 254 ||
        inflight_max < 1 || timeout_s <= 0 || hold_s <= 0)
        usage();

    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &dst.sin_addr) != 1) {
        fprintf(stderr, "idleconn: bad address %s\n", addr);
        return 2;
    }

    /* N sockets plus a few: raise the soft limit to the hard one and check it suffices. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)n + 16 > rl.rlim_cur) {
        fprintf(stderr, "idleconn: %ld connections need more than the %llu open files allowed\n", n,
                (unsigned long long)rl.rlim_cur);
        return 1;
    }

    char req[1024];
    int req_len =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, addr, port);
    if (req_len <= 0 || (size_t)req_len >= sizeof req)
        usage();

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    conn_t *conns = calloc((size_t)n, sizeof *conns);
    struct epoll_event *events = calloc(1024, sizeof *events);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || events == NULL)
        die("calloc", ENOMEM);
    if (ep < 0)
        die("epoll_create1", errno);

    long started = 0, inflight = 0, idle = 0;
    double deadline = now_s() + (double)timeout_s;
    while (idle < n) {
        if (stop) {
            fprintf(stderr, "idleconn: stopped during setup\n");
            return 1;
        }
        if (now_s() > deadline) {
            fprintf(stderr, "idleconn: only %ld of %ld connections ready after %ld s\n", idle, n,
                    timeout_s);
            return 1;
        }
        while (inflight < inflight_max && started < n) {
            conn_t *c = &conns[started];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (c->fd < 0)
                die("socket", errno);
            int one = 1;
            setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            struct sockaddr_in src = {.sin_family = AF_INET};
            src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(started % sources));
            if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0)
                die("bind", errno);
            if (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS)
                die("connect", errno);
            c->state = ST_CONNECTING;
            struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)started};
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
                die("epoll_ctl", errno);
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
            conn_t *c = &conns[events[i].data.u64];
            if (c->state == ST_CONNECTING) {
                int err = 0;
                socklen_t elen = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
                if (err != 0)
                    die("connect", err);
                if (write(c->fd, req, (size_t)req_len) != req_len)
                    die("write", errno);
                c->buf = malloc(RESP_MAX);
                if (c->buf == NULL)
                    die("malloc", ENOMEM);
                c->state = ST_READING;
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = events[i].data.u64};
                if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
                    die("epoll_ctl", errno);
            } else if (c->state == ST_READING) {
                ssize_t r = read(c->fd, c->buf + c->len, RESP_MAX - 1 - c->len);
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                if (r < 0)
                    die("read", errno);
                if (r == 0) {
                    fprintf(stderr, "idleconn: server closed a connection before responding\n");
                    return 1;
                }
                c->len += (size_t)r;
                int status = 0;
                long full = hm_response_complete(c->buf, c->len, &status);
                if (full < 0 || (full == 0 && c->len == RESP_MAX - 1)) {
                    fprintf(stderr, "idleconn: malformed or oversized response\n");
                    return 1;
                }
                if (full == 0)
                    continue;
                if (status != 200 || (size_t)full != c->len) {
                    fprintf(stderr, "idleconn: unexpected response (status %d)\n", status);
                    return 1;
                }
                free(c->buf);
                c->buf = NULL;
                c->state = ST_IDLE;
                /* From now on only a close by the server wakes us. */
                struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP,
                                         .data.u64 = events[i].data.u64};
                if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
                    die("epoll_ctl", errno);
                inflight--;
                idle++;
            } else {
                /* A server closing a connection while setup goes on: count it below. */
                c->state = ST_CLOSED;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
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
            if (c->state == ST_IDLE) {
                c->state = ST_CLOSED;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                closed++;
            }
        }
    }
    printf("done open=%ld closed_by_server=%ld\n", n - closed, closed);
    fflush(stdout);
    for (long i = 0; i < n; i++)
        if (conns[i].state != ST_CLOSED)
            close(conns[i].fd);
    return 0;
}
