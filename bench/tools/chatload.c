/* chatload: chat-room fan-out across server instances, for bench/redis.sh.
 *
 *   chatload -x crest|sio -p PORT[,PORT...] [-n MEMBERS] [-S SENDERS] [-w WINDOW] [-R RATE]
 *            [-s SIZE] [-d SECS] [-W WARMUP] [-D DRAIN] [-r ROOM] [-P PID[,PID...]] [-Q PID]
 *
 * MEMBERS members of one room, member i on PORT number i % (number of ports), so the room is split
 * evenly over the instances; members 0..SENDERS-1 also send (so senders alternate instances too).
 *   -x crest  GET /ws/chat?room=ROOM&name=mI (WebSocket); sends {"text":"..."}; counts each
 *             {"type":"message",...,"text":"..."} it receives.
 *   -x sio    Socket.IO 5 / Engine.IO 4 over WebSocket only (GET /socket.io/?EIO=4&transport=
 *             websocket): CONNECT with auth {"name":"mI"}, `join` ROOM with an ack, then
 *             `chat` {room, text}; counts each `chat` event; answers Engine.IO pings.
 * The text of a counted message is "<sender> <seq> <send time, ns>" (then SIZE-32 bytes of
 * padding when SIZE > 32); every receiver measures the delivery latency as now minus that time.
 *
 * Phases: connect (64 handshakes in flight at most, failures retried) until every member has
 * joined; sync: every sender sends a "sync <sender>" message every 200 ms until each member has
 * seen one from each sender (so every instance's Redis subscription is in place; 30 s at most);
 * WARMUP s of load, counted for exactly-once only; SECS s of load, measured; then no more sends
 * and up to DRAIN s for the last deliveries. Load: closed loop (default) with at most WINDOW
 * messages per sender that have not yet reached every member (a message missing after 2 s frees
 * its slot and counts as a stall), or open loop with -R: RATE messages/s in total, each sender on
 * its own schedule, the carried time being the scheduled one (no coordinated omission).
 *
 * Exactly once: both servers promise that messages of one sender arrive in the order sent, so
 * each member keeps, per sender, the next sequence number it expects and a 64-wide bitmap of
 * those just below it: a skipped number is lost (until it turns up late: reordered), a number
 * seen twice is a duplicate. Expected = members x messages sent; lost includes what never came.
 *
 * Output: progress on stderr, then one line `CHATLOAD {json}` on stdout: deliveries/s over the
 * measured SECS (unique deliveries to all members), latency p50/p99/p999/max (all, and split by
 * whether the receiver is on the sender's instance or another one), expected, received, lost,
 * duplicates, reordered, stalls, the servers' (-P) and Redis's (-Q) CPU time over the measured
 * interval (/proc/PID/stat), this tool's own, and the busy time of CPUs 0 and 1 (/proc/stat: what
 * else ran there). Exits 1 when the members could not all join.
 *
 * Non-blocking sockets and epoll, one thread; WebSocket frames with crest's own codec
 * (src/codec/ws_frame.c, compiled in), masked as a client must. */
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

enum {
    ST_CONNECTING,
    ST_HANDSHAKE,
    ST_EIO_OPEN,
    ST_SIO_CONNECT,
    ST_SIO_JOIN,
    ST_JOINED,
    ST_CLOSED
};
enum { PH_CONNECT, PH_SYNC, PH_WARMUP, PH_MEASURE, PH_DRAIN };
enum { MAX_PORTS = 8, STALL_NS = 2000000000 };

typedef struct {
    int fd;
    int state;
    int id;
    int inst; /* which port */
    int want_out;
    int retries;
    int synced;   /* senders whose sync message this member has seen */
    wm_buf_t in;  /* the HTTP response while the handshake is read */
    wm_buf_t out; /* unsent output */
    crest__ws_parser_t parser;
    wm_buf_t msg; /* a message being assembled from chunks */
} conn_t;

typedef struct { /* one in-flight message of a sender (closed loop) */
    uint64_t seq;
    uint64_t sent_ns;
    int count; /* members that have it */
    int open;
} slot_t;

typedef struct {
    uint64_t sent;     /* counted messages sent: seqs 0..sent-1 */
    int inflight;      /* open slots */
    uint64_t next_due; /* open loop: when the next message is due */
    slot_t *ring;
} sender_t;

typedef struct { /* 1 us buckets below 100 ms, 1 ms buckets from there to 100 s */
    uint64_t fine[100000], coarse[100000], n, max_ns;
} hist_t;

static const char *proto = "crest", *room = "bench";
static int ports[MAX_PORTS], nports;
static int nmembers = 1000, nsenders = 10, window = 8, size = 0, secs = 10, warmup = 2, drain = 5;
static double rate;
static char server_pids[256];
static int redis_pid;
static int sio;
static volatile sig_atomic_t stop_flag;
static conn_t *conns;
static sender_t *senders;
static uint32_t *next_seq; /* [member * nsenders + sender] */
static uint64_t *seen_bits;
static int ep, phase = PH_CONNECT, joined, failed, setting_up = 1;
static uint64_t received, lost_gaps, duplicates, reordered, stale, stalls, measured;
static hist_t h_all, h_local, h_remote;
static uint64_t recv_by_inst[MAX_PORTS];

static void on_signal(int s) {
    (void)s;
    stop_flag = 1;
}

static void *xalloc(size_t n) {
    void *p = calloc(1, n);
    if (p == NULL) {
        fprintf(stderr, "chatload: out of memory\n");
        exit(1);
    }
    return p;
}

static void watch(conn_t *c, int want_out) {
    if (c->want_out == want_out)
        return;
    c->want_out = want_out;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start_conn(conn_t *c);

static void conn_fail(conn_t *c, const char *why) {
    if (c->state == ST_CLOSED)
        return;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (setting_up && c->state != ST_JOINED && c->retries < 10 && !stop_flag) {
        /* A full accept queue resets a few handshakes under a burst: try again. */
        c->out.len = c->in.len = c->msg.len = 0;
        c->retries++;
        start_conn(c);
        return;
    }
    if (c->state == ST_JOINED)
        joined--;
    if (!stop_flag)
        fprintf(stderr, "chatload: member %d (port %d): %s\n", c->id, ports[c->inst], why);
    failed++;
    c->state = ST_CLOSED;
}

static void flush_out(conn_t *c) {
    int rc = wm_flush(c->fd, &c->out);
    if (rc < 0)
        conn_fail(c, strerror(-rc));
    else
        watch(c, rc);
}

static void send_text(conn_t *c, const char *text, size_t n) {
    wm_frame(&c->out, CREST__WS_TEXT, text, n);
}

/* A chat message with this text, in the peer's protocol. */
static void send_chat(conn_t *c, const char *text) {
    char buf[70000];
    int n;
    if (sio)
        n = snprintf(buf, sizeof(buf), "42[\"chat\",{\"room\":\"%s\",\"text\":\"%s\"}]", room,
                     text);
    else
        n = snprintf(buf, sizeof(buf), "{\"text\":\"%s\"}", text);
    send_text(c, buf, (size_t)n);
}

static void send_counted(int s, uint64_t t) {
    sender_t *sd = &senders[s];
    char text[66000];
    int n = snprintf(text, sizeof(text), "%d %llu %llu", s, (unsigned long long)sd->sent,
                     (unsigned long long)t);
    if (size > n + 1) {
        text[n++] = ' ';
        while (n < size && n < (int)sizeof(text) - 1)
            text[n++] = 'x';
        text[n] = '\0';
    }
    if (rate <= 0) {
        slot_t *sl = &sd->ring[sd->sent % (uint64_t)window];
        sl->seq = sd->sent;
        sl->sent_ns = t;
        sl->count = 0;
        sl->open = 1;
        sd->inflight++;
    }
    sd->sent++;
    send_chat(&conns[s], text);
}

static void hist_add(hist_t *h, uint64_t ns) {
    uint64_t us = ns / 1000;
    if (us < 100000)
        h->fine[us]++;
    else if (us / 1000 < 100000)
        h->coarse[us / 1000]++;
    else
        h->coarse[99999]++;
    h->n++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

static double hist_pct(const hist_t *h, double p) { /* in ms */
    if (h->n == 0)
        return -1;
    uint64_t want = (uint64_t)((double)h->n * p), seen = 0;
    if (want >= h->n)
        want = h->n - 1;
    for (int i = 0; i < 100000; i++) {
        seen += h->fine[i];
        if (seen > want)
            return (double)i / 1000.0 + 0.0005;
    }
    for (int i = 0; i < 100000; i++) {
        seen += h->coarse[i];
        if (seen > want)
            return (double)i + 0.5;
    }
    return (double)h->max_ns / 1e6;
}

/* Closed loop: this sender's message seq reached one more member. */
static void slot_reached(int s, uint64_t seq) {
    sender_t *sd = &senders[s];
    slot_t *sl = &sd->ring[seq % (uint64_t)window];
    if (!sl->open || sl->seq != seq)
        return;
    if (++sl->count >= nmembers) {
        sl->open = 0;
        sd->inflight--;
    }
}

static void on_counted(conn_t *c, int s, uint64_t seq, uint64_t t) {
    if (s < 0 || s >= nsenders)
        return;
    size_t k = (size_t)c->id * (size_t)nsenders + (size_t)s;
    uint64_t next = next_seq[k], bits = seen_bits[k];
    int fresh = 1;
    if (seq == next) {
        next_seq[k] = (uint32_t)(next + 1);
        seen_bits[k] = (bits << 1) | 1;
    } else if (seq > next) {
        uint64_t gap = seq - next;
        lost_gaps += gap;
        seen_bits[k] = gap + 1 >= 64 ? 1 : (bits << (gap + 1)) | 1;
        next_seq[k] = (uint32_t)(seq + 1);
    } else {
        uint64_t d = next - 1 - seq;
        if (d >= 64) {
            stale++;
            fresh = 0;
        } else if (bits & (1ull << d)) {
            duplicates++;
            fresh = 0;
        } else {
            seen_bits[k] = bits | (1ull << d);
            reordered++;
            lost_gaps--;
        }
    }
    if (!fresh)
        return;
    received++;
    recv_by_inst[c->inst]++;
    if (rate <= 0)
        slot_reached(s, seq);
    if (phase == PH_MEASURE) {
        uint64_t now = wm_now_ns(), d = now > t ? now - t : 0;
        measured++;
        hist_add(&h_all, d);
        hist_add(conns[s].inst == c->inst ? &h_local : &h_remote, d);
    }
}

/* The text of a chat message: "<sender> <seq> <ns>[ pad]" or "sync <sender>". */
static void on_chat_text(conn_t *c, const char *q, const char *end) {
    if (end - q > 5 && memcmp(q, "sync ", 5) == 0) {
        int s = atoi(q + 5);
        if (phase == PH_SYNC && s >= 0 && s < nsenders) {
            size_t k = (size_t)c->id * (size_t)nsenders + (size_t)s;
            if (!(seen_bits[k] & 1)) { /* bit 0 marks "sync seen" until the load starts */
                seen_bits[k] |= 1;
                c->synced++;
            }
        }
        return;
    }
    uint64_t v[3] = {0, 0, 0};
    for (int f = 0; f < 3; f++) {
        if (q >= end || *q < '0' || *q > '9')
            return;
        while (q < end && *q >= '0' && *q <= '9')
            v[f] = v[f] * 10 + (uint64_t)(*q++ - '0');
        if (f < 2 && (q >= end || *q++ != ' '))
            return;
    }
    if (phase < PH_WARMUP)
        return;
    on_counted(c, (int)v[0], v[1], v[2]);
}

static void on_message(conn_t *c, const uint8_t *p, size_t n) {
    const char *s = (const char *)p, *end = s + n;
    if (!sio) {
        /* {"type":"message","room":R,"name":N,"text":"...","ts":T}; joins and leaves ignored */
        if (n < 17 || memcmp(s, "{\"type\":\"message\"", 17) != 0)
            return;
        const char *t = memmem(s, n, "\"text\":\"", 8);
        if (t != NULL)
            on_chat_text(c, t + 8, end);
        return;
    }
    /* Engine.IO packets: 0 open, 1 close, 2 ping, 4 message (Socket.IO packet follows) */
    if (n == 0)
        return;
    if (s[0] == '2') {
        send_text(c, "3", 1);
        return;
    }
    if (s[0] == '1') {
        conn_fail(c, "Engine.IO close");
        return;
    }
    if (c->state == ST_EIO_OPEN && s[0] == '0') {
        char buf[64];
        int k = snprintf(buf, sizeof(buf), "40{\"name\":\"m%d\"}", c->id);
        send_text(c, buf, (size_t)k);
        c->state = ST_SIO_CONNECT;
        return;
    }
    if (s[0] != '4' || n < 2)
        return;
    if (n > 10 && memcmp(s, "42[\"chat\",", 10) == 0) {
        const char *t = memmem(s, n, "\"text\":\"", 8);
        if (t != NULL)
            on_chat_text(c, t + 8, end);
        return;
    }
    if (c->state == ST_SIO_CONNECT && s[1] == '0') {
        char buf[256];
        int k = snprintf(buf, sizeof(buf), "420[\"join\",\"%s\"]", room);
        send_text(c, buf, (size_t)k);
        c->state = ST_SIO_JOIN;
        return;
    }
    if (c->state == ST_SIO_CONNECT && s[1] == '4') {
        conn_fail(c, "Socket.IO connect error");
        return;
    }
    if (c->state == ST_SIO_JOIN && n > 3 && memcmp(s, "430", 3) == 0) {
        if (memmem(s, n, "\"ok\":true", 9) == NULL) {
            conn_fail(c, "join not acknowledged ok");
            return;
        }
        c->state = ST_JOINED;
        joined++;
    }
}

static void feed_frames(conn_t *c, uint8_t *data, size_t len) {
    size_t pos = 0;
    while (pos < len && c->state != ST_CLOSED) {
        crest__ws_chunk_t ch;
        size_t used = 0;
        int rc = crest__ws_parse(&c->parser, data + pos, len - pos, &used, &ch);
        if (rc < 0) {
            conn_fail(c, "bad frame from server");
            return;
        }
        if (rc == 0)
            break;
        pos += used;
        if (ch.msg_opcode == CREST__WS_PING) {
            if (ch.first && ch.last)
                wm_frame(&c->out, CREST__WS_PONG, ch.data, ch.len);
            continue;
        }
        if (ch.msg_opcode == CREST__WS_CLOSE) {
            conn_fail(c, "server closed the WebSocket");
            return;
        }
        if (ch.msg_opcode & 0x08)
            continue;
        if (ch.first && ch.last && ch.fin && ch.opcode != CREST__WS_CONT && c->msg.len == 0) {
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
}

static void on_input(conn_t *c, uint8_t *data, size_t len) {
    if (c->state != ST_HANDSHAKE) {
        feed_frames(c, data, len);
        return;
    }
    wm_reserve(&c->in, c->in.len + len);
    memcpy(c->in.ptr + c->in.len, data, len);
    c->in.len += len;
    char *end = memmem(c->in.ptr, c->in.len, "\r\n\r\n", 4);
    if (end == NULL)
        return;
    if (c->in.len < 12 || memcmp(c->in.ptr, "HTTP/1.1 101", 12) != 0) {
        conn_fail(c, "no 101 Switching Protocols");
        return;
    }
    size_t hl = (size_t)(end + 4 - c->in.ptr), rest = c->in.len - hl;
    c->in.len = 0;
    if (sio) {
        c->state = ST_EIO_OPEN;
    } else {
        c->state = ST_JOINED; /* a /ws/chat member is in the room once upgraded */
        joined++;
    }
    if (rest > 0)
        feed_frames(c, (uint8_t *)c->in.ptr + hl, rest);
}

static void start_conn(conn_t *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ports[c->inst])};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "chatload: socket: %s\n", strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    crest__ws_parser_init(&c->parser, UINT64_MAX, 0, 0);
    c->state = ST_CONNECTING;
    c->want_out = 1;
    c->synced = 0;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        fprintf(stderr, "chatload: connect: %s\n", strerror(errno));
        exit(1);
    }
    char req[512];
    int n;
    if (sio)
        n = snprintf(req, sizeof(req), "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n");
    else
        n = snprintf(req, sizeof(req), "GET /ws/chat?room=%s&name=m%d HTTP/1.1\r\n", room, c->id);
    n +=
        snprintf(req + n, sizeof(req) - (size_t)n,
                 "Host: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 ports[c->inst]);
    wm_append(&c->out, req, (size_t)n);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static uint8_t rbuf[1 << 18];

static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) {
        conn_t *c = evs[i].data.ptr;
        if (c->state == ST_CLOSED)
            continue;
        if ((evs[i].events & (EPOLLERR | EPOLLHUP)) && !(evs[i].events & EPOLLIN)) {
            conn_fail(c, "connection error");
            continue;
        }
        if (c->state == ST_CONNECTING && (evs[i].events & EPOLLOUT))
            c->state = ST_HANDSHAKE;
        if (evs[i].events & EPOLLIN) {
            for (;;) {
                ssize_t r = recv(c->fd, rbuf, sizeof(rbuf), 0);
                if (r > 0) {
                    on_input(c, rbuf, (size_t)r);
                    if (c->state == ST_CLOSED || (size_t)r < sizeof(rbuf))
                        break;
                    continue;
                }
                if (r == 0 || errno != EAGAIN)
                    conn_fail(c, r == 0 ? "closed by the server" : strerror(errno));
                break;
            }
        }
        if (c->state != ST_CLOSED && (c->out.len > 0 || c->want_out))
            flush_out(c);
    }
}

/* Sends what is due: closed loop, a free slot; open loop, the schedule. */
static void pump(void) {
    if (phase != PH_WARMUP && phase != PH_MEASURE)
        return;
    uint64_t now = wm_now_ns();
    for (int s = 0; s < nsenders; s++) {
        sender_t *sd = &senders[s];
        conn_t *c = &conns[s];
        if (c->state != ST_JOINED)
            continue;
        int any = 0;
        if (rate > 0) {
            double per = (double)nsenders / rate * 1e9;
            while (sd->next_due <= now) {
                send_counted(s, sd->next_due);
                sd->next_due += (uint64_t)per;
                any = 1;
            }
        } else {
            /* A slot whose message has not reached everyone within 2 s is freed (a stall). */
            for (int k = 0; k < window; k++) {
                slot_t *sl = &sd->ring[k];
                if (sl->open && now - sl->sent_ns > STALL_NS) {
                    sl->open = 0;
                    sd->inflight--;
                    stalls++;
                }
            }
            while (sd->inflight < window) {
                send_counted(s, now);
                any = 1;
            }
        }
        if (any)
            flush_out(c);
    }
}

static void run_until(uint64_t deadline) {
    while (!stop_flag && wm_now_ns() < deadline) {
        poll_once(rate > 0 ? 1 : 5);
        pump();
    }
}

/* utime+stime in seconds of the PIDs in a comma-separated list (their threads included). */
static double cpu_of(const char *list) {
    double total = 0;
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", list);
    for (char *tok = strtok(copy, ","); tok != NULL; tok = strtok(NULL, ",")) {
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", atoi(tok));
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        if (p != NULL &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            total += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    return total;
}

/* Busy time in seconds of CPU n (all but idle and iowait), from /proc/stat. */
static double core_busy(int n) {
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return 0;
    char line[512], want[16];
    int wl = snprintf(want, sizeof(want), "cpu%d ", n);
    double busy = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long long v[8] = {0};
        if (strncmp(line, want, (size_t)wl) != 0)
            continue;
        if (sscanf(line + wl, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8)
            busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
        break;
    }
    fclose(f);
    return busy;
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int all_synced(void) {
    for (int i = 0; i < nmembers; i++)
        if (conns[i].state == ST_JOINED && conns[i].synced < nsenders)
            return 0;
    return 1;
}

static uint64_t expected_total(void) {
    uint64_t sent = 0;
    for (int s = 0; s < nsenders; s++)
        sent += senders[s].sent;
    return sent * (uint64_t)nmembers;
}

static void print_hist(const char *name, const hist_t *h) {
    printf(",\"%s\":{\"n\":%llu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f}",
           name, (unsigned long long)h->n, hist_pct(h, 0.5), hist_pct(h, 0.99), hist_pct(h, 0.999),
           (double)h->max_ns / 1e6);
}

int main(int argc, char **argv) {
    int opt;
    char portlist[256] = "";
    while ((opt = getopt(argc, argv, "x:p:n:S:w:R:s:d:W:D:r:P:Q:")) != -1) {
        switch (opt) {
        case 'x':
            proto = optarg;
            break;
        case 'p':
            snprintf(portlist, sizeof(portlist), "%s", optarg);
            break;
        case 'n':
            nmembers = atoi(optarg);
            break;
        case 'S':
            nsenders = atoi(optarg);
            break;
        case 'w':
            window = atoi(optarg);
            break;
        case 'R':
            rate = atof(optarg);
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
        case 'D':
            drain = atoi(optarg);
            break;
        case 'r':
            room = optarg;
            break;
        case 'P':
            snprintf(server_pids, sizeof(server_pids), "%s", optarg);
            break;
        case 'Q':
            redis_pid = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench/tools/chatload.c\n");
            return 2;
        }
    }
    for (char *tok = strtok(portlist, ","); tok != NULL && nports < MAX_PORTS;
         tok = strtok(NULL, ","))
        ports[nports++] = atoi(tok);
    sio = strcmp(proto, "sio") == 0;
    if ((!sio && strcmp(proto, "crest") != 0) || nports == 0 || nmembers < 1 || nsenders < 1 ||
        nsenders > nmembers || window < 1 || size < 0 || size > 65000 || secs < 1 || warmup < 0 ||
        drain < 0 || strlen(room) > 200) {
        fprintf(stderr,
                "chatload: bad arguments (see the comment at the top of bench/tools/chatload.c)\n");
        return 2;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)wm_now_ns());
    ep = epoll_create1(EPOLL_CLOEXEC);
    conns = xalloc((size_t)nmembers * sizeof(*conns));
    senders = xalloc((size_t)nsenders * sizeof(*senders));
    for (int s = 0; s < nsenders; s++)
        senders[s].ring = xalloc((size_t)window * sizeof(slot_t));
    next_seq = xalloc((size_t)nmembers * (size_t)nsenders * sizeof(*next_seq));
    seen_bits = xalloc((size_t)nmembers * (size_t)nsenders * sizeof(*seen_bits));

    /* Connect and join, 64 handshakes in flight at most. */
    uint64_t t0 = wm_now_ns(), limit = t0 + 120ull * 1000000000ull;
    for (int i = 0; i < nmembers && !stop_flag; i++) {
        conns[i].id = i;
        conns[i].inst = i % nports;
        start_conn(&conns[i]);
        while (i + 1 - joined - failed >= 64 && wm_now_ns() < limit && !stop_flag)
            poll_once(10);
    }
    while (joined + failed < nmembers && wm_now_ns() < limit && !stop_flag)
        poll_once(10);
    double join_s = (double)(wm_now_ns() - t0) / 1e9;
    if (joined < nmembers) {
        fprintf(stderr, "chatload: only %d of %d members joined\n", joined, nmembers);
        printf("CHATLOAD {\"error\":\"only %d of %d members joined\"}\n", joined, nmembers);
        return 1;
    }
    setting_up = 0;
    fprintf(stderr, "chatload: %d members joined in %.2f s\n", joined, join_s);

    /* Sync: every member sees a message from every sender (30 s at most). */
    phase = PH_SYNC;
    uint64_t ts = wm_now_ns(), sync_limit = ts + 30ull * 1000000000ull, next_sync = 0;
    while (!stop_flag && !all_synced() && wm_now_ns() < sync_limit) {
        if (wm_now_ns() >= next_sync) {
            for (int s = 0; s < nsenders; s++) {
                char text[32];
                snprintf(text, sizeof(text), "sync %d", s);
                send_chat(&conns[s], text);
                flush_out(&conns[s]);
            }
            next_sync = wm_now_ns() + 200000000ull;
        }
        poll_once(5);
    }
    int synced_ok = all_synced();
    double sync_s = (double)(wm_now_ns() - ts) / 1e9;
    int unsynced = 0;
    for (int i = 0; i < nmembers; i++)
        unsynced += conns[i].synced < nsenders;
    fprintf(stderr, "chatload: sync %s in %.2f s (%d members missing a sender)\n",
            synced_ok ? "done" : "NOT done", sync_s, unsynced);
    /* Late sync messages still in flight are told apart by their text; let them land. */
    run_until(wm_now_ns() + 300000000ull);
    memset(seen_bits, 0, (size_t)nmembers * (size_t)nsenders * sizeof(*seen_bits));

    /* Load: warm-up, then the measured interval. */
    uint64_t w0 = wm_now_ns();
    for (int s = 0; s < nsenders; s++) /* open loop: the senders' schedules spread evenly */
        senders[s].next_due = w0 + (uint64_t)(rate > 0 ? (double)s / rate * 1e9 : 0);
    phase = PH_WARMUP;
    pump();
    run_until(w0 + (uint64_t)warmup * 1000000000ull);
    phase = PH_MEASURE;
    uint64_t m0 = wm_now_ns();
    double cpu0 = cpu_of(server_pids), r0 = 0, self0 = self_cpu();
    double busy0 = core_busy(0), busy1 = core_busy(1);
    char rp[32];
    snprintf(rp, sizeof(rp), "%d", redis_pid);
    if (redis_pid > 0)
        r0 = cpu_of(rp);
    uint64_t sent0 = expected_total() / (uint64_t)nmembers;
    run_until(m0 + (uint64_t)secs * 1000000000ull);
    uint64_t m1 = wm_now_ns();
    double cpu = cpu_of(server_pids) - cpu0, selfc = self_cpu() - self0;
    busy0 = core_busy(0) - busy0;
    busy1 = core_busy(1) - busy1;
    double rcpu = redis_pid > 0 ? cpu_of(rp) - r0 : 0;
    uint64_t sent_measured = expected_total() / (uint64_t)nmembers - sent0;
    phase = PH_DRAIN;

    /* Drain: no more sends; wait for the last deliveries (DRAIN s at most). */
    uint64_t d0 = wm_now_ns(), dl = d0 + (uint64_t)drain * 1000000000ull;
    uint64_t want = expected_total();
    while (!stop_flag && wm_now_ns() < dl && received < want)
        poll_once(5);
    double drain_s = (double)(wm_now_ns() - d0) / 1e9;

    uint64_t lost_tail = 0;
    for (int i = 0; i < nmembers; i++)
        for (int s = 0; s < nsenders; s++) {
            uint64_t nx = next_seq[(size_t)i * (size_t)nsenders + (size_t)s];
            if (nx < senders[s].sent)
                lost_tail += senders[s].sent - nx;
        }
    double el = (double)(m1 - m0) / 1e9;
    int still_open = 0;
    for (int i = 0; i < nmembers; i++)
        still_open += conns[i].state == ST_JOINED;
    printf("CHATLOAD {\"proto\":\"%s\",\"members\":%d,\"instances\":%d,\"senders\":%d,"
           "\"window\":%d,\"rate\":%.0f,\"size\":%d,\"join_s\":%.2f,\"sync\":%s,\"sync_s\":%.2f,"
           "\"unsynced_members\":%d,\"seconds\":%.3f,\"sent_measured\":%llu,"
           "\"msgs_per_s\":%.1f,\"deliveries\":%llu,\"deliveries_per_s\":%.0f",
           proto, nmembers, nports, nsenders, window, rate, size, join_s,
           synced_ok ? "true" : "false", sync_s, unsynced, el, (unsigned long long)sent_measured,
           (double)sent_measured / el, (unsigned long long)measured, (double)measured / el);
    print_hist("latency", &h_all);
    print_hist("latency_same_instance", &h_local);
    print_hist("latency_other_instance", &h_remote);
    printf(",\"received_by_instance\":[");
    for (int i = 0; i < nports; i++)
        printf("%s%llu", i ? "," : "", (unsigned long long)recv_by_inst[i]);
    printf("],\"sent\":%llu,\"expected\":%llu,\"received\":%llu,\"lost\":%llu,"
           "\"duplicates\":%llu,\"reordered\":%llu,\"stale\":%llu,\"stalls\":%llu,"
           "\"drain_s\":%.2f,\"closed\":%d,\"open_at_end\":%d,"
           "\"server_cpu_s\":%.2f,\"server_cpu_us_per_delivery\":%.4f,\"server_core_pct\":%.1f,"
           "\"redis_cpu_s\":%.2f,\"redis_cpu_us_per_msg\":%.2f,\"client_core_pct\":%.1f,"
           "\"cpu0_busy_pct\":%.1f,\"cpu1_busy_pct\":%.1f}\n",
           (unsigned long long)(expected_total() / (uint64_t)nmembers),
           (unsigned long long)expected_total(), (unsigned long long)received,
           (unsigned long long)(lost_gaps + lost_tail), (unsigned long long)duplicates,
           (unsigned long long)reordered, (unsigned long long)stale, (unsigned long long)stalls,
           drain_s, failed, still_open, cpu, measured ? cpu * 1e6 / (double)measured : 0.0,
           cpu / el * 100, rcpu, sent_measured ? rcpu * 1e6 / (double)sent_measured : 0.0,
           selfc / el * 100, busy0 / el * 100, busy1 / el * 100);
    return 0;
}
