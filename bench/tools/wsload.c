/* wsload: WebSocket load generator (echo throughput, room fan-out, idle connections).
 *
 *   wsload -m echo   [-a ADDR] -p PORT [-n CONNS] [-w WINDOW] [-s SIZE] [-d SECS] [-W WARMUP]
 *   wsload -m fanout [-a ADDR] -p PORT [-n CONNS] [-S SENDERS] [-w WINDOW] [-d SECS] [-W WARMUP]
 *          [-r ROOM]
 *   wsload -m idle   [-a ADDR] -p PORT [-n CONNS] [-b FIRST_SOURCE] [-k SOURCES] [-H HOLD_S]
 *   (-P SERVER_PID: also report the server's CPU time over the measured interval, per message)
 *
 * echo: CONNS sockets on /ws/echo, each keeping WINDOW binary messages of SIZE bytes in flight;
 *   counts echoes per second and their round-trip latency (the send time rides in the payload).
 * fanout: CONNS members of /ws/chat?room=ROOM; SENDERS of them send {"text":"<id> <seq> <ns>"}
 *   with at most WINDOW of their own messages unreturned (a closed loop: each sender also
 *   receives its own message), so the server runs at its own pace. Every member counts the
 *   chat messages it receives and the delivery latency (now minus the send time in the text).
 * idle: CONNS upgraded, silent sockets bound to source addresses 127.0.0.FIRST .. FIRST+SOURCES-1
 *   (so ephemeral ports do not run out), held until SIGTERM or HOLD_S seconds; prints
 *   `ready N` once all are open and `done open=X` at the end.
 *
 * Output: one line of key=value pairs (`msgs_per_s= p50_us= p99_us= ...`) for bench/ws.sh.
 * Non-blocking sockets and epoll; one thread; the frame codec is crest's own (src/codec/ws_frame.c,
 * compiled in), masking as a client must. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec/ws_frame.h"
#include "wsmini.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

typedef struct {
    int fd;
    int state;
    int id;
    int sender;
    uint64_t seq;
    int inflight;
    int retries;
    wm_buf_t in;  /* unparsed input */
    wm_buf_t out; /* unsent output */
    crest__ws_parser_t parser;
    wm_buf_t msg; /* message being assembled from chunks */
} conn_t;

static const char *mode = "echo", *addr = "127.0.0.1", *room = "bench";
static int port, nconns = 100, window = 1, size = 32, secs = 5, warmup = 1, nsenders = 1;
static int first_src = 1, nsrc = 1, hold = 600, server_pid;
static volatile sig_atomic_t stop_flag;
static conn_t *conns;
static int ep;
static int measuring;
static uint64_t count, *lat; /* latencies in ns, when measuring */
static size_t nlat, lat_cap;
static int open_count, failed;
static int setting_up = 1; /* connections that fail while being opened are retried */

static void on_signal(int s) {
    (void)s;
    stop_flag = 1;
}

static void watch(conn_t *c, int want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start_conn(conn_t *c, int i);

static void conn_fail(conn_t *c, const char *why) {
    if (c->state == ST_CLOSED)
        return;
    if (setting_up && c->state != ST_OPEN && c->retries < 10 && !stop_flag) {
        /* A full accept queue resets a few handshakes under a burst: try again. */
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->out.len = c->in.len = 0;
        c->retries++;
        start_conn(c, c->id);
        return;
    }
    if (c->state == ST_OPEN)
        open_count--;
    else if (!stop_flag)
        fprintf(stderr, "wsload: connection %d: %s\n", c->id, why);
    failed++;
    c->state = ST_CLOSED;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

static void flush_out(conn_t *c) {
    int rc = wm_flush(c->fd, &c->out);
    if (rc < 0)
        conn_fail(c, strerror(-rc));
    else
        watch(c, rc);
}

static void send_next(conn_t *c) {
    if (strcmp(mode, "echo") == 0) {
        char buf[65536];
        uint64_t t = wm_now_ns();
        memset(buf, 'e', (size_t)size);
        memcpy(buf, &t, sizeof(t));
        wm_frame(&c->out, CREST__WS_BINARY, buf, (size_t)size);
    } else {
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "{\"text\":\"%d %llu %llu\"}", c->id,
                         (unsigned long long)c->seq++, (unsigned long long)wm_now_ns());
        wm_frame(&c->out, CREST__WS_TEXT, buf, (size_t)n);
    }
    c->inflight++;
}

static void record(uint64_t sent) {
    if (!measuring)
        return;
    count++;
    uint64_t d = wm_now_ns() - sent;
    if (nlat == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 20;
        lat = realloc(lat, lat_cap * sizeof(*lat));
        if (lat == NULL)
            exit(1);
    }
    lat[nlat++] = d;
}

static void on_message(conn_t *c, const uint8_t *p, size_t n) {
    if (strcmp(mode, "echo") == 0) {
        uint64_t t;
        if (n >= sizeof(t)) {
            memcpy(&t, p, sizeof(t));
            record(t);
        }
        c->inflight--;
        if (!stop_flag)
            send_next(c);
        return;
    }
    if (strcmp(mode, "fanout") != 0)
        return;
    /* {"type":"message",...,"text":"<id> <seq> <ns>",...}: parsed by hand, since the load
     * generator must keep up with a server that delivers millions of these a second. */
    if (n < 17 || memcmp(p, "{\"type\":\"message\"", 17) != 0)
        return;
    const char *s = memmem(p, n, "\"text\":\"", 8);
    if (s == NULL)
        return;
    const char *q = s + 8, *end = (const char *)p + n;
    uint64_t v[3] = {0, 0, 0};
    for (int f = 0; f < 3; f++) {
        if (q >= end || *q < '0' || *q > '9')
            return;
        while (q < end && *q >= '0' && *q <= '9')
            v[f] = v[f] * 10 + (uint64_t)(*q++ - '0');
        if (f < 2 && (q >= end || *q++ != ' '))
            return;
    }
    int id = (int)v[0];
    record(v[2]);
    if (id == c->id && c->sender) {
        c->inflight--;
        if (!stop_flag)
            send_next(c);
    }
}

static void on_input(conn_t *c) {
    if (c->state == ST_HANDSHAKE) {
        char *end = memmem(c->in.ptr, c->in.len, "\r\n\r\n", 4);
        if (end == NULL)
            return;
        if (c->in.len < 12 || memcmp(c->in.ptr, "HTTP/1.1 101", 12) != 0) {
            conn_fail(c, "no 101");
            return;
        }
        size_t hl = (size_t)(end + 4 - c->in.ptr);
        memmove(c->in.ptr, c->in.ptr + hl, c->in.len - hl);
        c->in.len -= hl;
        c->state = ST_OPEN;
        open_count++;
    }
    size_t pos = 0;
    while (pos < c->in.len) {
        crest__ws_chunk_t ch;
        size_t used = 0;
        int rc =
            crest__ws_parse(&c->parser, (uint8_t *)c->in.ptr + pos, c->in.len - pos, &used, &ch);
        if (rc < 0) {
            conn_fail(c, "bad frame from server");
            return;
        }
        if (rc == 0)
            break;
        pos += used;
        if (ch.msg_opcode == CREST__WS_PING && ch.last) {
            wm_frame(&c->out, CREST__WS_PONG, ch.data, ch.len);
            continue;
        }
        if (ch.msg_opcode == CREST__WS_CLOSE) {
            conn_fail(c, "server closed");
            return;
        }
        if (ch.msg_opcode & 0x08)
            continue;
        if (ch.first && ch.last && ch.fin && ch.opcode != CREST__WS_CONT) {
            on_message(c, ch.data, ch.len);
            continue;
        }
        wm_reserve(&c->msg, c->msg.len + ch.len + 1);
        memcpy(c->msg.ptr + c->msg.len, ch.data, ch.len);
        c->msg.len += ch.len;
        if (ch.last && ch.fin) {
            on_message(c, (uint8_t *)c->msg.ptr, c->msg.len);
            c->msg.len = 0;
        }
    }
    /* Keep only the unparsed tail (the parser holds partial headers itself). */
    c->in.len = 0;
}

static void start_conn(conn_t *c, int i) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    c->id = i;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "wsload: socket: %s\n", strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (nsrc > 1 || first_src != 1) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        char a[32];
        snprintf(a, sizeof(a), "127.0.0.%d", first_src + i % nsrc);
        inet_pton(AF_INET, a, &src.sin_addr);
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            fprintf(stderr, "wsload: bind %s: %s\n", a, strerror(errno));
            exit(1);
        }
    }
    crest__ws_parser_init(&c->parser, UINT64_MAX, 0, 0);
    c->state = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        fprintf(stderr, "wsload: connect: %s\n", strerror(errno));
        exit(1);
    }
    char req[512];
    /* Idle sockets sit on /ws/echo: a chat member would announce itself to all the others. */
    int chat = strcmp(mode, "fanout") == 0;
    const char *path = chat ? "/ws/chat" : "/ws/echo";
    int n;
    if (!chat)
        n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n", path);
    else
        n = snprintf(req, sizeof(req), "GET %s?room=%s&name=c%d HTTP/1.1\r\n", path, room, i);
    n +=
        snprintf(req + n, sizeof(req) - (size_t)n,
                 "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 addr, port);
    wm_append(&c->out, req, (size_t)n);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;
        if (c->state == ST_CLOSED)
            continue;
        if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
            conn_fail(c, "connection error");
            continue;
        }
        if (c->state == ST_CONNECTING && (evs[i].events & EPOLLOUT))
            c->state = ST_HANDSHAKE;
        if (evs[i].events & EPOLLIN) {
            for (;;) {
                wm_reserve(&c->in, c->in.len + 65536);
                ssize_t r = recv(c->fd, c->in.ptr + c->in.len, c->in.cap - c->in.len, 0);
                if (r > 0) {
                    c->in.len += (size_t)r;
                    on_input(c);
                    if (c->state == ST_CLOSED || (size_t)r < 65536)
                        break;
                    continue;
                }
                if (r == 0 || errno != EAGAIN)
                    conn_fail(c, r == 0 ? "closed by server" : strerror(errno));
                break;
            }
        }
        if (c->state != ST_CLOSED)
            flush_out(c);
    }
}

/* The server's CPU time (user + system) in seconds, from /proc/PID/stat; 0 without -P. */
static double server_cpu(void) {
    if (server_pid <= 0)
        return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", server_pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run_until(uint64_t deadline) {
    while (!stop_flag && wm_now_ns() < deadline)
        poll_once(10);
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "m:a:p:n:w:s:d:W:S:r:b:k:H:P:")) != -1) {
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
        case 'n':
            nconns = atoi(optarg);
            break;
        case 'w':
            window = atoi(optarg);
            break;
        case 's':
            size = atoi(optarg);
            break;
        case 'd':
            secs = atoi(optarg);
            break;
        case 'W':
            warmup = atoi(optarg);
            break;
        case 'S':
            nsenders = atoi(optarg);
            break;
        case 'r':
            room = optarg;
            break;
        case 'b':
            first_src = atoi(optarg);
            break;
        case 'k':
            nsrc = atoi(optarg);
            break;
        case 'H':
            hold = atoi(optarg);
            break;
        case 'P':
            server_pid = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench/tools/wsload.c\n");
            return 2;
        }
    }
    if (port <= 0 || nconns <= 0 || size < 8 || size > 65536 || window < 1) {
        fprintf(stderr, "wsload: bad arguments\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    srand((unsigned)wm_now_ns());
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)nconns, sizeof(*conns));
    /* Open the connections in waves, so that the server's backlog never overflows. */
    uint64_t t0 = wm_now_ns(), limit = t0 + 120ull * 1000000000ull;
    for (int i = 0; i < nconns && !stop_flag; i++) {
        start_conn(&conns[i], i);
        while (i + 1 - open_count - failed >= 64 && wm_now_ns() < limit && !stop_flag)
            poll_once(10);
    }
    while (open_count + failed < nconns && wm_now_ns() < limit && !stop_flag)
        poll_once(10);
    if (failed || open_count < nconns) {
        fprintf(stderr, "wsload: only %d of %d connections opened\n", open_count, nconns);
        return 1;
    }
    double connect_s = (double)(wm_now_ns() - t0) / 1e9;
    setting_up = 0;
    if (strcmp(mode, "idle") == 0) {
        printf("ready %d connect_s=%.2f\n", open_count, connect_s);
        fflush(stdout);
        run_until(wm_now_ns() + (uint64_t)hold * 1000000000ull);
        printf("done open=%d\n", open_count);
        return 0;
    }
    if (strcmp(mode, "fanout") == 0) {
        /* Let the join announcements settle before sending. */
        run_until(wm_now_ns() + 1000000000ull);
        for (int i = 0; i < nsenders && i < nconns; i++)
            conns[i * (nconns / nsenders)].sender = 1;
    }
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (strcmp(mode, "echo") == 0 || c->sender)
            for (int k = 0; k < window; k++)
                send_next(c);
        flush_out(c);
    }
    run_until(wm_now_ns() + (uint64_t)warmup * 1000000000ull);
    measuring = 1;
    uint64_t m0 = wm_now_ns();
    double cpu0 = server_cpu();
    run_until(m0 + (uint64_t)secs * 1000000000ull);
    measuring = 0;
    double cpu = server_cpu() - cpu0;
    double el = (double)(wm_now_ns() - m0) / 1e9;
    qsort(lat, nlat, sizeof(*lat), cmp_u64);
    double p50 = nlat ? (double)lat[nlat / 2] / 1e3 : 0;
    double p99 = nlat ? (double)lat[nlat * 99 / 100] / 1e3 : 0;
    printf("mode=%s conns=%d senders=%d window=%d msgs=%llu secs=%.2f msgs_per_s=%.0f "
           "p50_us=%.0f p99_us=%.0f closed=%d server_cpu_s=%.2f server_cpu_us_per_msg=%.3f\n",
           mode, nconns, strcmp(mode, "fanout") == 0 ? nsenders : nconns, window,
           (unsigned long long)count, el, (double)count / el, p50, p99, failed, cpu,
           count ? cpu * 1e6 / (double)count : 0.0);
    return 0;
}
