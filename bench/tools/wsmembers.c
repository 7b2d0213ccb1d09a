/* wsmembers: many idle members of one chat room, each timing when probe messages reach it.
 *
 *   wsmembers [-a ADDR] -p PORT [-n N] [-r ROOM] [-i TAG] [-b FIRST_SOURCE] [-k SOURCES]
 *             [-f INFLIGHT] [-N PROBES] [-t CONNECT_TIMEOUT_S] [-H HOLD_S] [-o FILE] [-x]
 *             [-u PATH] [-s]
 *   wsmembers -m send [-a ADDR] -p PORT [-r ROOM] [-i TAG] [-N PROBES] [-D DELAY_MS] [-g GAP_MS]
 *             [-t CONNECT_TIMEOUT_S]
 *
 * Members (the default mode): N WebSockets on /ws/chat?room=ROOM&name=TAG-<i>, bound to the
 * source addresses 127.0.0.FIRST .. FIRST+SOURCES-1 (IP_BIND_ADDRESS_NO_PORT, so ephemeral
 * ports are picked per destination and do not run out), at most INFLIGHT (64) being set up at
 * once so that the server's listen backlog never overflows; a handshake reset during setup is
 * tried again (10 times at most). Prints `ready N connect_s=S` on stdout once all are open (and
 * exits 1 if they are not within CONNECT_TIMEOUT_S, 120), or exits at once with -x (a warm-up).
 * Then holds them, silent (a ping is answered), until SIGTERM/SIGINT or HOLD_S (600) seconds.
 * With -u PATH the WebSockets open PATH instead (e.g. /ws/echo: idle WebSockets that belong to
 * no room, for the showdown's memory per WebSocket); the rest is the same.
 * With -s each member is an idle Socket.IO client over WebSocket only (Engine.IO 4 / Socket.IO
 * 5, as socket.io-client with transports: ["websocket"]): it opens /socket.io/?EIO=4&transport=
 * websocket (or -u PATH), waits for the Engine.IO open packet ("0{...}"), connects to the main
 * namespace with auth {"name":"TAG-<i>"} ("40{...}") and counts as open once the server's
 * CONNECT ("40...") arrives; then it stays silent but for answering the server's Engine.IO
 * pings ("2") with pongs ("3"), counted as pings. A CONNECT_ERROR ("44") or an Engine.IO close
 * ("1") fails the member. For the showdown's memory per idle Socket.IO connection.
 * Every chat message {"type":"message",...,"text":"probe <k> <ns>"} is timed on arrival:
 * CLOCK_MONOTONIC now minus <ns>, the sender's CLOCK_MONOTONIC just before its send() (one
 * machine, one clock). Prints `probe K complete` once every member has probe K. At the end,
 * writes FILE (default stdout):
 *   members N open X closed_by_server C presence P other O errors E pings G first_ping_ns T0
 *   last_ping_ns T1
 *   probe K got G missing M dup D
 *   lat K <microseconds of each member that got it, space-separated>
 * `dup` counts members that got probe K more than once; `other` any other chat message (joins
 * and leaves); `pings` the server's pings (each answered), the first and last read at T0 and T1
 * (CLOCK_MONOTONIC ns, 0 without pings).
 *
 * Sender (-m send): one member of ROOM; once open it waits DELAY_MS (1500: let the server's
 * presence timer for its own join fire first), then sends PROBES (5) messages
 * {"text":"probe <k> <ns>"}, GAP_MS (2000) apart, k = 1..PROBES, and prints `sent K NS` for
 * each and `self K US` when its own copy comes back; exits GAP_MS after the last.
 *
 * Non-blocking sockets and epoll, one thread; one shared read buffer, so an idle member costs a
 * few dozen bytes here. The frame codec is crest's own (src/codec/ws_frame.c, compiled in). */
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "codec/ws_frame.h"
#include "wsmini.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_PROBES 64
#define RBUF 262144
#define HS_MAX 4096

/* ST_SIO: upgraded, a Socket.IO member waiting for the open packet and the CONNECT */
enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_SIO, ST_OPEN, ST_CLOSED };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t retries;
    char *hs; /* the response head, while the handshake lasts */
    size_t hs_len;
    wm_buf_t out; /* unsent output (rare: the request, a pong), freed once written */
    char *msg;    /* a message arriving in pieces */
    size_t msg_len;
    crest__ws_parser_t parser;
} conn_t;

static const char *addr = "127.0.0.1", *room = "scale", *tag = "m", *outfile = NULL, *path = NULL;
static int port, nconns = 1000, first_src = 1, nsrc = 1, inflight_max = 64, nprobes = 5;
static int connect_timeout = 120, hold = 600, warmup_only, sender_mode, delay_ms = 1500,
           gap_ms = 2000, sio;
static volatile sig_atomic_t stop_flag;
static conn_t *conns;
static int ep;
static int open_count, failed, closed_by_server, setting_up = 1;
static uint64_t *arrival; /* [member * nprobes + k-1]: latency ns + 1, or 0 */
static uint64_t got[MAX_PROBES + 1], dups[MAX_PROBES + 1];
static uint64_t n_presence, n_other, n_errors, n_pings, first_ping, last_ping;
static uint8_t rbuf[RBUF];
static uint64_t sent_ns[MAX_PROBES + 1];

static void on_signal(int s) {
    (void)s;
    stop_flag = 1;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n);
    if (p == NULL) {
        fprintf(stderr, "wsmembers: out of memory\n");
        exit(1);
    }
    return p;
}

/* Set up or open: reading and writing go on. */
static int live(const conn_t *c) {
    return c->state == ST_HANDSHAKE || c->state == ST_SIO || c->state == ST_OPEN;
}

static void watch(conn_t *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start_conn(conn_t *c);

static void conn_close(conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->hs);
    wm_free(&c->out);
    free(c->msg);
    c->hs = c->msg = NULL;
    c->hs_len = c->msg_len = 0;
}

static void conn_fail(conn_t *c, const char *why) {
    if (c->state == ST_CLOSED || c->state == ST_IDLE)
        return;
    int was_open = c->state == ST_OPEN;
    conn_close(c);
    if (setting_up && !was_open && c->retries < 10 && !stop_flag) {
        /* A full accept queue resets a few handshakes under a burst: try again. */
        c->retries++;
        start_conn(c);
        return;
    }
    c->state = ST_CLOSED;
    if (was_open) {
        open_count--;
        if (!setting_up)
            closed_by_server++;
    }
    failed++;
    if (!stop_flag)
        fprintf(stderr, "wsmembers %s: member %ld: %s\n", tag, (long)(c - conns), why);
}

/* Write what is queued; keep the rest for EPOLLOUT. An idle member holds no buffer. */
static void flush_out(conn_t *c) {
    int rc = wm_flush(c->fd, &c->out);
    if (rc < 0) {
        conn_fail(c, strerror(-rc));
        return;
    }
    if (rc > 0) {
        watch(c, EPOLLIN | EPOLLOUT);
        return;
    }
    wm_free(&c->out);
    if (live(c))
        watch(c, EPOLLIN);
}

static void send_bytes(conn_t *c, const void *p, size_t n) {
    wm_append(&c->out, p, n);
    flush_out(c);
}

static void send_frame(conn_t *c, int opcode, const void *payload, size_t n) {
    wm_frame(&c->out, opcode, payload, n);
    flush_out(c);
}

static int has_prefix(const uint8_t *p, size_t n, const char *s) {
    size_t l = strlen(s);
    return n >= l && memcmp(p, s, l) == 0;
}

static void count_ping(uint64_t now);

/* A whole text message from a Socket.IO server: an Engine.IO packet (0 open, 1 close, 2 ping,
 * 4 message: a Socket.IO packet follows, 40 CONNECT, 44 CONNECT_ERROR). */
static void on_sio_message(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
    if (n == 0) {
        n_other++;
        return;
    }
    if (p[0] == '2') {
        count_ping(now);
        send_frame(c, CREST__WS_TEXT, "3", 1);
        return;
    }
    if (p[0] == '1') {
        conn_fail(c, "Engine.IO close");
        return;
    }
    if (c->state == ST_SIO && p[0] == '0') {
        char buf[80];
        int k = snprintf(buf, sizeof(buf), "40{\"name\":\"%s-%ld\"}", tag, (long)(c - conns));
        send_frame(c, CREST__WS_TEXT, buf, (size_t)k);
        return;
    }
    if (c->state == ST_SIO && has_prefix(p, n, "40")) {
        c->state = ST_OPEN;
        open_count++;
        return;
    }
    if (has_prefix(p, n, "44")) {
        n_errors++;
        conn_fail(c, "Socket.IO CONNECT_ERROR");
        return;
    }
    n_other++;
}

/* A whole text message from the server. */
static void on_message(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
    if (sio) {
        on_sio_message(c, p, n, now);
        return;
    }
    if (has_prefix(p, n, "{\"type\":\"presence\"")) {
        n_presence++;
        return;
    }
    if (has_prefix(p, n, "{\"type\":\"error\"")) {
        n_errors++;
        return;
    }
    if (!has_prefix(p, n, "{\"type\":\"message\"")) {
        n_other++; /* join/leave in a small room */
        return;
    }
    const uint8_t *s = memmem(p, n, "\"text\":\"probe ", 14);
    if (s == NULL) {
        n_other++;
        return;
    }
    const uint8_t *q = s + 14, *end = p + n;
    uint64_t v[2] = {0, 0};
    for (int f = 0; f < 2; f++) {
        if (q >= end || *q < '0' || *q > '9') {
            n_other++;
            return;
        }
        while (q < end && *q >= '0' && *q <= '9')
            v[f] = v[f] * 10 + (uint64_t)(*q++ - '0');
        if (f == 0 && (q >= end || *q++ != ' ')) {
            n_other++;
            return;
        }
    }
    uint64_t k = v[0];
    if (k < 1 || k > (uint64_t)nprobes) {
        n_other++;
        return;
    }
    uint64_t lat = now > v[1] ? now - v[1] : 0;
    if (sender_mode) {
        printf("self %llu %.1f\n", (unsigned long long)k, (double)lat / 1e3);
        fflush(stdout);
        return;
    }
    uint64_t *slot = &arrival[(size_t)(c - conns) * (size_t)nprobes + (k - 1)];
    if (*slot) {
        dups[k]++;
        return;
    }
    *slot = lat + 1;
    if (++got[k] == (uint64_t)nconns) {
        printf("probe %llu complete\n", (unsigned long long)k);
        fflush(stdout);
    }
}

static void count_ping(uint64_t now) {
    if (n_pings++ == 0)
        first_ping = now;
    last_ping = now;
}

static void on_frames(conn_t *c, uint8_t *data, size_t len, uint64_t now) {
    size_t pos = 0;
    while (pos < len) {
        crest__ws_chunk_t ch;
        size_t used = 0;
        int rc = crest__ws_parse(&c->parser, data + pos, len - pos, &used, &ch);
        if (rc < 0) {
            conn_fail(c, "bad frame from server");
            return;
        }
        pos += used;
        if (rc == 0)
            break;
        if (ch.msg_opcode == CREST__WS_CLOSE) {
            if (ch.last)
                conn_fail(c, "server closed the WebSocket");
            if (ch.last)
                return;
            continue;
        }
        int control = ch.msg_opcode & 0x08;
        int whole = ch.first && ch.last && (control || (ch.fin && ch.opcode != CREST__WS_CONT));
        if (whole) {
            if (ch.msg_opcode == CREST__WS_PING) {
                count_ping(now);
                send_frame(c, CREST__WS_PONG, ch.data, ch.len);
            } else if (ch.msg_opcode == CREST__WS_TEXT)
                on_message(c, ch.data, ch.len, now);
            if (!live(c))
                return;
            continue;
        }
        /* In pieces (a frame split over reads, or a fragmented message): assemble. Control
         * frames are short and cannot be fragmented, but can still be split over reads. */
        c->msg = xrealloc(c->msg, c->msg_len + ch.len + 1);
        memcpy(c->msg + c->msg_len, ch.data, ch.len);
        c->msg_len += ch.len;
        if (ch.last && (ch.fin || control)) {
            if (ch.msg_opcode == CREST__WS_PING) {
                count_ping(now);
                send_frame(c, CREST__WS_PONG, c->msg, c->msg_len);
            } else if (ch.msg_opcode == CREST__WS_TEXT)
                on_message(c, (uint8_t *)c->msg, c->msg_len, now);
            free(c->msg);
            c->msg = NULL;
            c->msg_len = 0;
            if (!live(c))
                return;
        }
    }
}

static void on_handshake(conn_t *c, uint8_t *data, size_t len, uint64_t now) {
    if (c->hs_len + len > HS_MAX) {
        conn_fail(c, "response head too large");
        return;
    }
    c->hs = xrealloc(c->hs, c->hs_len + len);
    memcpy(c->hs + c->hs_len, data, len);
    c->hs_len += len;
    char *end = memmem(c->hs, c->hs_len, "\r\n\r\n", 4);
    if (end == NULL)
        return;
    if (c->hs_len < 12 || memcmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        char line[80];
        size_t l = strcspn(c->hs, "\r\n");
        snprintf(line, sizeof(line), "no 101: %.*s", (int)(l < 60 ? l : 60), c->hs);
        conn_fail(c, line);
        return;
    }
    size_t head = (size_t)(end + 4 - c->hs), rest = c->hs_len - head;
    if (sio) {
        c->state = ST_SIO; /* open once the Socket.IO CONNECT is answered */
    } else {
        c->state = ST_OPEN;
        open_count++;
    }
    if (rest > 0) {
        /* Frames right behind the head (a large room's count for the newcomer): parse them
         * from the shared buffer, since the head buffer goes now. */
        memcpy(rbuf, c->hs + head, rest);
    }
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
    if (rest > 0)
        on_frames(c, rbuf, rest, now);
}

static void start_conn(conn_t *c) {
    long i = (long)(c - conns);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "wsmembers %s: socket: %s\n", tag, strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000000u + (uint32_t)(first_src + i % nsrc));
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
        fprintf(stderr, "wsmembers %s: bind 127.0.0.%ld: %s\n", tag, first_src + i % nsrc,
                strerror(errno));
        exit(1);
    }
    crest__ws_parser_init(&c->parser, 1 << 20, 0, 0);
    c->state = ST_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        fprintf(stderr, "wsmembers %s: connect: %s\n", tag, strerror(errno));
        exit(1);
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_connected(conn_t *c) {
    int err = 0;
    socklen_t elen = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) {
        conn_fail(c, strerror(err));
        return;
    }
    char req[768], target[256];
    if (path != NULL)
        snprintf(target, sizeof(target), "%s", path);
    else if (sio)
        snprintf(target, sizeof(target), "/socket.io/?EIO=4&transport=websocket");
    else
        snprintf(target, sizeof(target), "/ws/chat?room=%s&name=%s-%ld", room, tag,
                 (long)(c - conns));
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     target, addr, port);
    c->state = ST_HANDSHAKE;
    send_bytes(c, req, (size_t)n);
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[1024];
    int n = epoll_wait(ep, evs, 1024, timeout_ms);
    for (int i = 0; i < n; i++) {
        conn_t *c = &conns[evs[i].data.u32];
        uint32_t e = evs[i].events;
        if (c->state == ST_CLOSED || c->state == ST_IDLE)
            continue;
        if (c->state == ST_CONNECTING) {
            if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                on_connected(c);
            continue;
        }
        if (e & EPOLLIN) {
            for (int reads = 0; reads < 16; reads++) {
                ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
                if (r > 0) {
                    uint64_t now = wm_now_ns(); /* arrival: when the bytes are read */
                    if (c->state == ST_HANDSHAKE)
                        on_handshake(c, rbuf, (size_t)r, now);
                    else
                        on_frames(c, rbuf, (size_t)r, now);
                    if (!live(c))
                        break;
                    if ((size_t)r < sizeof(rbuf))
                        break;
                    continue;
                }
                if (r < 0 && errno == EINTR)
                    continue;
                if (r == 0 || errno != EAGAIN)
                    conn_fail(c, r == 0 ? "closed by server" : strerror(errno));
                break;
            }
        } else if (e & (EPOLLERR | EPOLLHUP)) {
            conn_fail(c, "connection error");
            continue;
        }
        if ((e & EPOLLOUT) && c->out.len > 0 && live(c))
            flush_out(c);
    }
}

static double elapsed_s(uint64_t t0) {
    return (double)(wm_now_ns() - t0) / 1e9;
}

static int open_all(void) {
    uint64_t t0 = wm_now_ns(), limit = t0 + (uint64_t)connect_timeout * 1000000000ull;
    uint64_t next_report = t0 + 5000000000ull;
    int started = 0;
    while (open_count + failed < nconns) {
        if (stop_flag || wm_now_ns() >= limit)
            break;
        while (started < nconns && started - open_count - failed < inflight_max)
            start_conn(&conns[started++]);
        poll_once(10);
        if (wm_now_ns() >= next_report) {
            fprintf(stderr, "wsmembers %s: %d of %d open after %.0f s\n", tag, open_count, nconns,
                    elapsed_s(t0));
            next_report += 5000000000ull;
        }
    }
    if (open_count < nconns) {
        fprintf(stderr, "wsmembers %s: only %d of %d members opened in %.1f s (%d failed)\n", tag,
                open_count, nconns, elapsed_s(t0), failed);
        return -1;
    }
    setting_up = 0;
    printf("ready %d connect_s=%.2f\n", open_count, elapsed_s(t0));
    fflush(stdout);
    return 0;
}

static void run_for(uint64_t ns) {
    uint64_t end = wm_now_ns() + ns;
    while (!stop_flag && wm_now_ns() < end && open_count > 0)
        poll_once(10);
}

static int write_results(void) {
    FILE *f = outfile ? fopen(outfile, "w") : stdout;
    if (f == NULL) {
        fprintf(stderr, "wsmembers %s: %s: %s\n", tag, outfile, strerror(errno));
        return 1;
    }
    fprintf(f,
            "members %d open %d closed_by_server %d presence %llu other %llu errors %llu "
            "pings %llu first_ping_ns %llu last_ping_ns %llu\n",
            nconns, open_count, closed_by_server, (unsigned long long)n_presence,
            (unsigned long long)n_other, (unsigned long long)n_errors, (unsigned long long)n_pings,
            (unsigned long long)first_ping, (unsigned long long)last_ping);
    for (int k = 1; k <= nprobes; k++)
        fprintf(f, "probe %d got %llu missing %llu dup %llu\n", k, (unsigned long long)got[k],
                (unsigned long long)((uint64_t)nconns - got[k]), (unsigned long long)dups[k]);
    for (int k = 1; k <= nprobes; k++) {
        fprintf(f, "lat %d", k);
        for (int i = 0; i < nconns; i++) {
            uint64_t v = arrival[(size_t)i * (size_t)nprobes + (size_t)(k - 1)];
            if (v)
                fprintf(f, " %.1f", (double)(v - 1) / 1e3);
        }
        fputc('\n', f);
    }
    int bad = ferror(f);
    if (f != stdout)
        bad |= fclose(f) != 0;
    else
        fflush(f);
    return bad ? 1 : 0;
}

static int run_sender(void) {
    conn_t *c = &conns[0];
    uint64_t deadline = wm_now_ns() + (uint64_t)connect_timeout * 1000000000ull;
    start_conn(c);
    while (c->state != ST_OPEN && c->state != ST_CLOSED && !stop_flag && wm_now_ns() < deadline)
        poll_once(10);
    if (c->state != ST_OPEN) {
        fprintf(stderr, "wsmembers send: could not join the room\n");
        return 1;
    }
    setting_up = 0;
    printf("joined\n");
    fflush(stdout);
    run_for((uint64_t)delay_ms * 1000000ull);
    for (int k = 1; k <= nprobes && !stop_flag && c->state == ST_OPEN; k++) {
        char text[96];
        int n = snprintf(text, sizeof(text), "{\"text\":\"probe %d %llu\"}", k,
                         (unsigned long long)(sent_ns[k] = wm_now_ns()));
        send_frame(c, CREST__WS_TEXT, text, (size_t)n);
        printf("sent %d %llu\n", k, (unsigned long long)sent_ns[k]);
        fflush(stdout);
        run_for((uint64_t)gap_ms * 1000000ull);
    }
    return c->state == ST_OPEN ? 0 : 1;
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "m:a:p:n:r:i:b:k:f:N:t:H:o:xD:g:u:s")) != -1) {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "send") != 0 && strcmp(optarg, "members") != 0) {
                fprintf(stderr, "wsmembers: -m members|send\n");
                return 2;
            }
            sender_mode = strcmp(optarg, "send") == 0;
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
        case 'r':
            room = optarg;
            break;
        case 'i':
            tag = optarg;
            break;
        case 'b':
            first_src = atoi(optarg);
            break;
        case 'k':
            nsrc = atoi(optarg);
            break;
        case 'f':
            inflight_max = atoi(optarg);
            break;
        case 'N':
            nprobes = atoi(optarg);
            break;
        case 't':
            connect_timeout = atoi(optarg);
            break;
        case 'H':
            hold = atoi(optarg);
            break;
        case 'o':
            outfile = optarg;
            break;
        case 'x':
            warmup_only = 1;
            break;
        case 'D':
            delay_ms = atoi(optarg);
            break;
        case 'g':
            gap_ms = atoi(optarg);
            break;
        case 'u':
            path = optarg;
            break;
        case 's':
            sio = 1;
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench/tools/wsmembers.c\n");
            return 2;
        }
    }
    if (sender_mode)
        nconns = 1;
    if (optind != argc || port <= 0 || port > 65535 || nconns <= 0 || first_src < 1 || nsrc < 1 ||
        first_src + nsrc - 1 > 254 || inflight_max < 1 || nprobes < 1 || nprobes > MAX_PROBES ||
        connect_timeout < 1 || hold < 1 || delay_ms < 0 || gap_ms < 0 || strlen(room) > 64 ||
        strlen(tag) > 32 || (sio && sender_mode) ||
        (path != NULL && (path[0] != '/' || strlen(path) > 200))) {
        fprintf(stderr, "wsmembers: bad arguments\n");
        return 2;
    }
    /* N sockets and a few: raise the soft limit to the hard one and check it suffices. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)nconns + 16 > rl.rlim_cur) {
        fprintf(stderr, "wsmembers: %d members need more than the %llu open files allowed\n",
                nconns, (unsigned long long)rl.rlim_cur);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)wm_now_ns());
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)nconns, sizeof(*conns));
    arrival = calloc((size_t)nconns * (size_t)nprobes, sizeof(*arrival));
    if (ep < 0 || conns == NULL || arrival == NULL) {
        fprintf(stderr, "wsmembers: setup failed\n");
        return 1;
    }
    if (sender_mode)
        return run_sender();
    if (open_all() != 0)
        return 1;
    if (warmup_only)
        return 0;
    run_for((uint64_t)hold * 1000000000ull);
    int rc = write_results();
    fprintf(stderr, "wsmembers %s: done, %d open, %d closed by the server\n", tag, open_count,
            closed_by_server);
    return rc;
}
