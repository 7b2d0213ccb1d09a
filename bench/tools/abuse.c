/* abuse: the attacking clients of bench/abuse.sh. Each mode misbehaves in one way, on many
 * connections, bounded in time and count.
 *
 *   abuse -m MODE -p PORT [-a ADDR] [-u PATH] [-n CONNS] [-d SECS] [-s SIZE] [-r RATE]
 *         [-R RCVBUF] [-c COUNT] [-w WINDOW] [-k INFLIGHT] [-b FIRST] [-S SOURCES] [-o REOPEN]
 *         [-q ROOM] [-P PID -L KIB]
 *
 * Modes:
 *   conns      keep CONNS connections open, each having sent one GET PATH and read its answer,
 *              for SECS; a connection the server closes is replaced (at most REOPEN a second),
 *              then all are closed at once. Past the server's open-files limit, new connections
 *              wait in the listen backlog or are closed at once.
 *   pipeline   CONNS connections write GET PATH requests back to back and never read (receive
 *              buffer RCVBUF bytes); with -r, each reads RATE bytes a second instead.
 *   slowread   CONNS connections send one GET PATH each and read RATE bytes a second.
 *   trickle    CONNS connections send POST PATH with Content-Length SIZE and then the body at an
 *              even pace, SIZE - 1 bytes by the end of SECS, so that no request completes.
 *   ws-noread  one member joins /ws/chat?room=ROOM, then CONNS members that never read after
 *              the handshake (for at most SECS); then the first publishes {"text":"aa.."}
 *              messages of SIZE bytes as fast as the server takes them, for SECS, reading what
 *              comes back (publisher_received counts its chat messages that came back).
 *   ws-join    CONNS members join /ws/chat?room=ROOM, INFLIGHT handshakes at a time, and read
 *              everything, counting the join announcements, until all have joined and the room
 *              has been quiet for a second, or SECS.
 *   ws-pub     one member of /ws/chat?room=ROOM sends COUNT messages of SIZE bytes, one after the
 *              other, reading everything, until its own COUNT messages came back (or nothing
 *              came for 2 s after the last was sent: the server may drop some), or SECS.
 *   ws-deflate CONNS connections to /ws/echo offer permessage-deflate and send text messages of
 *              SIZE bytes of 'a', compressed about 1000:1, WINDOW unanswered at a time, for SECS.
 *
 * -R RCVBUF shrinks the receive buffer of every connection (in ws-noread, of the silent members
 * only), so that little of what the server sends can wait in the client's kernel.
 * Every connection is bound to a source address 127.0.0.FIRST .. FIRST+SOURCES-1 (default 2..8),
 * so that ephemeral ports do not run out and the bystander's address stays apart. With -P and -L
 * the attack stops early once the server's RSS (PID and its descendants) passes KIB, and the
 * report says "capped":1.
 *
 * Prints one line `ABUSE {json}`: the mode's counts and the wall-clock start and end of the
 * attack (seconds, to line up with bench/tools/abuse_watch.py's samples). Non-blocking sockets,
 * epoll, one thread. The WebSocket framing is written here rather than taken from crest, so that
 * the server under test is not also the client's codec. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { ST_FREE, ST_CONNECTING, ST_HEAD, ST_IDLE, ST_OPEN, ST_CLOSED };

#define HEAD_MAX 4096
#define CAP_MAX 64
#define TICK_MS 100

typedef struct {
    int fd;
    int state;
    char head[HEAD_MAX]; /* response head (HTTP answer or WebSocket handshake) */
    size_t head_len;
    int status;
    uint64_t sent; /* bytes written (pipeline: requests; trickle: body) */
    uint64_t got;  /* bytes read */
    size_t out_off;
    int writing; /* a frame is partly written */
    /* WebSocket input: frame header being read, payload bytes left, message prefix */
    uint8_t fh[14];
    size_t fh_len;
    uint64_t left;
    int op, fin, msg_op;
    char cap[CAP_MAX];
    size_t cap_len;
    uint64_t msgs;
    int inflight;
    int silent; /* a chat member that never reads */
} conn_t;

typedef struct {
    const char *mode, *addr, *path, *room;
    int port, first, sources, rcvbuf, window, inflight_max, reopen;
    long n, count, size, rate;
    double secs;
    long pid, cap_kib;
} opts_t;

static opts_t o = {.addr = "127.0.0.1",
                   .path = "/plaintext",
                   .room = "abuse",
                   .port = 8080,
                   .first = 2,
                   .sources = 7,
                   .window = 4,
                   .inflight_max = 256,
                   .reopen = 500,
                   .n = 1,
                   .count = 100,
                   .size = 1024,
                   .rate = 0,
                   .secs = 10};

static volatile sig_atomic_t stop;
static conn_t *conns;
static int ep;
static struct sockaddr_in dst;
static int capped;
static long peak_rss_kib;
static double t_start, t_end;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err) {
    fprintf(stderr, "abuse: %s: %s\n", what, strerror(err));
    exit(1);
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n, size);
    if (p == NULL)
        die("calloc", ENOMEM);
    return p;
}

/* ---- the server's memory ---- */

/* VmRSS of pid and all its descendants, in KiB. */
static long rss_tree_kib(long pid) {
    char path[64], line[256];
    long total = 0;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            total += atol(line + 6);
    fclose(f);
    snprintf(path, sizeof path, "/proc/%ld/task", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return total;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char cpath[320];
        snprintf(cpath, sizeof cpath, "/proc/%ld/task/%s/children", pid, e->d_name);
        FILE *c = fopen(cpath, "r");
        if (c == NULL)
            continue;
        long child;
        while (fscanf(c, "%ld", &child) == 1)
            total += rss_tree_kib(child);
        fclose(c);
    }
    closedir(d);
    return total;
}

/* Once a tick: is the attack over (time, signal, the server's memory past the cap)? */
static int attack_over(void) {
    if (stop || now_s() >= t_end)
        return 1;
    if (o.pid > 0) {
        long rss = rss_tree_kib(o.pid);
        if (rss > peak_rss_kib)
            peak_rss_kib = rss;
        if (o.cap_kib > 0 && rss > o.cap_kib) {
            capped = 1;
            return 1;
        }
    }
    return 0;
}

/* ---- connections ---- */

/* Starts connecting conns[i]; rcvbuf > 0 shrinks its receive buffer first. 0 or -errno. */
static int conn_open(long i, int rcvbuf) {
    conn_t *c = &conns[i];
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    int one = 1;
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000000u + (uint32_t)(o.first + i % o.sources));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        (connect(c->fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS)) {
        int err = errno;
        close(c->fd);
        c->state = ST_CLOSED;
        return -err;
    }
    c->state = ST_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        die("epoll_ctl", errno);
    return 0;
}

static void conn_watch(long i, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, conns[i].fd, &ev) != 0)
        die("epoll_ctl", errno);
}

static void conn_close(conn_t *c) {
    if (c->state == ST_FREE || c->state == ST_CLOSED)
        return;
    close(c->fd); /* also leaves the epoll set */
    c->state = ST_CLOSED;
}

/* The connect finished: 0, or the error. */
static int connect_result(conn_t *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
}

/* Writes all of buf (small requests and handshakes fit the empty send buffer). */
static int send_all(conn_t *c, const char *buf, size_t len) {
    ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL);
    return w == (ssize_t)len ? 0 : -1;
}

static size_t head_end; /* where the last complete head ended within its c->head */

/* Reads a response head into c->head. 1: complete (c->status set; bytes after the head stay in
 * c->head from head_end on), 0: more needed, -1: closed, failed or oversized. */

static int read_head(conn_t *c) {
    ssize_t r = recv(c->fd, c->head + c->head_len, HEAD_MAX - 1 - c->head_len, 0);
    if (r < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (r == 0)
        return -1;
    c->head_len += (size_t)r;
    c->got += (uint64_t)r;
    c->head[c->head_len] = '\0';
    char *e = strstr(c->head, "\r\n\r\n");
    if (e == NULL)
        return c->head_len == HEAD_MAX - 1 ? -1 : 0;
    head_end = (size_t)(e + 4 - c->head);
    c->status = strncmp(c->head, "HTTP/1.", 7) == 0 ? atoi(c->head + 9) : -1;
    return 1;
}

/* Reads and drops what is waiting; -1 when the server closed. */
static int drain(conn_t *c, size_t max) {
    static char scratch[65536];
    while (max > 0) {
        size_t want = max < sizeof scratch ? max : sizeof scratch;
        ssize_t r = recv(c->fd, scratch, want, MSG_DONTWAIT);
        if (r < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        if (r == 0)
            return -1;
        c->got += (uint64_t)r;
        max -= (size_t)r;
    }
    return 0;
}

/* ---- WebSocket ---- */

static const char *ws_key = "YWJ1c2UtYmVuY2gta2V5MQ==";

static int ws_handshake(conn_t *c, const char *target, const char *extensions) {
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     target, o.addr, o.port, ws_key, extensions ? "Sec-WebSocket-Extensions: " : "",
                     extensions ? extensions : "", extensions ? "\r\n" : "");
    return send_all(c, req, (size_t)n);
}

/* A masked client frame around payload: malloc'd, its length in *len. */
static uint8_t *ws_frame(int opcode, int rsv1, const uint8_t *payload, size_t plen, size_t *len) {
    uint8_t *f = malloc(plen + 14);
    if (f == NULL)
        die("malloc", ENOMEM);
    size_t h = 0;
    f[h++] = (uint8_t)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    if (plen < 126) {
        f[h++] = (uint8_t)(0x80 | plen);
    } else if (plen < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t)(plen >> 8);
        f[h++] = (uint8_t)plen;
    } else {
        f[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            f[h++] = (uint8_t)((uint64_t)plen >> (8 * i));
    }
    uint8_t mask[4];
    for (int i = 0; i < 4; i++)
        mask[i] = (uint8_t)(rand() & 0xff);
    memcpy(f + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < plen; i++)
        f[h + i] = payload[i] ^ mask[i & 3];
    *len = h + plen;
    return f;
}

typedef void (*ws_msg_cb)(conn_t *c, int op, const char *prefix, size_t prefix_len);

/* Feeds received bytes through the frame parser; calls cb for each whole message (data) or
 * control frame, with the first CAP_MAX bytes of its payload. Payloads themselves are skipped,
 * so a 1 MiB message costs no memory here. */
static void ws_feed(conn_t *c, const uint8_t *p, size_t n, ws_msg_cb cb) {
    while (n > 0) {
        if (c->left == 0 && c->fh_len < 2) {
            c->fh[c->fh_len++] = *p++;
            n--;
            if (c->fh_len < 2)
                continue;
        }
        if (c->left == 0) {
            size_t need = 2;
            uint8_t l7 = c->fh[1] & 0x7f;
            need += l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
            need += (c->fh[1] & 0x80) ? 4 : 0;
            while (c->fh_len < need && n > 0) {
                c->fh[c->fh_len++] = *p++;
                n--;
            }
            if (c->fh_len < need)
                return;
            uint64_t len = l7;
            if (l7 == 126)
                len = (uint64_t)c->fh[2] << 8 | c->fh[3];
            else if (l7 == 127)
                for (int i = 0; i < 8; i++)
                    len = len << 8 | c->fh[2 + i];
            c->op = c->fh[0] & 0x0f;
            c->fin = c->fh[0] >> 7;
            c->fh_len = 0;
            if (c->op != 0 && c->op < 8) { /* a new data message */
                c->msg_op = c->op;
                c->cap_len = 0;
            }
            if (c->op >= 8)
                c->cap_len = 0;
            c->left = len;
            if (len == 0)
                goto frame_done;
        }
        {
            size_t take = c->left < n ? (size_t)c->left : n;
            size_t room = CAP_MAX - c->cap_len;
            size_t keep = take < room ? take : room;
            memcpy(c->cap + c->cap_len, p, keep);
            c->cap_len += keep;
            p += take;
            n -= take;
            c->left -= take;
            if (c->left > 0)
                return;
        }
    frame_done:
        if (c->op >= 8)
            cb(c, c->op, c->cap, c->cap_len);
        else if (c->fin)
            cb(c, c->msg_op, c->cap, c->cap_len);
    }
}

/* Reads what is waiting on a WebSocket; -1 when the server closed the connection. */
static int ws_read(conn_t *c, ws_msg_cb cb) {
    static uint8_t buf[65536];
    for (int i = 0; i < 16; i++) {
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        if (r == 0)
            return -1;
        c->got += (uint64_t)r;
        ws_feed(c, buf, (size_t)r, cb);
    }
    return 0;
}

/* Handshake done: 1 (and the bytes after the head fed to the parser), 0 more needed, -1 failed. */
static int ws_read_handshake(conn_t *c, ws_msg_cb cb) {
    int h = read_head(c);
    if (h <= 0)
        return h;
    if (c->status != 101)
        return -1;
    if (c->head_len > head_end)
        ws_feed(c, (const uint8_t *)c->head + head_end, c->head_len - head_end, cb);
    return 1;
}

/* Writes frame (len bytes) from c->out_off on; 1 once all of it is out, 0 if the socket is full,
 * -1 if the connection failed. */
static int write_frame(conn_t *c, const uint8_t *frame, size_t len) {
    while (c->out_off < len) {
        ssize_t w = send(c->fd, frame + c->out_off, len - c->out_off, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        c->out_off += (size_t)w;
        c->sent += (uint64_t)w;
    }
    c->out_off = 0;
    return 1;
}

static int close_code(const char *cap, size_t len) {
    return len >= 2 ? ((uint8_t)cap[0] << 8 | (uint8_t)cap[1]) : 1005;
}

/* ---- output ---- */

static char json[8192];
static size_t json_len;

static void put(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void put(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(json + json_len, sizeof json - json_len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof json - json_len)
        json_len += (size_t)n;
}

static void report(void) {
    printf("ABUSE {\"mode\":\"%s\",\"t_start\":%.3f,\"t_end\":%.3f,\"capped\":%d,"
           "\"peak_rss_kib_seen\":%ld%s}\n",
           o.mode, t_start, now_s(), capped, peak_rss_kib, json);
    fflush(stdout);
}

static int wait_events(struct epoll_event *events, int max, int timeout_ms) {
    int k = epoll_wait(ep, events, max, timeout_ms);
    if (k < 0 && errno != EINTR)
        die("epoll_wait", errno);
    return k < 0 ? 0 : k;
}

static double next_tick;

/* True once per TICK_MS. */
static int tick_due(void) {
    double t = now_s();
    if (t < next_tick)
        return 0;
    next_tick = t + TICK_MS / 1000.0;
    return 1;
}

#define MAX_EVENTS 1024
static struct epoll_event events[MAX_EVENTS];

/* ---- conns: hold file descriptors ---- */

static void mode_conns(void) {
    char req[512];
    int req_len =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", o.path, o.addr, o.port);
    long established = 0, served = 0, closed = 0, failed = 0, reopened = 0, open_now = 0;
    long peak_open = 0, inflight = 0, opened = 0;
    double ramp_end = 0, last_rise = now_s(), tokens = 0;
    for (long i = 0; i < o.n; i++)
        conns[i].state = ST_FREE;
    int over = 0;
    while (!over) {
        /* Fill free slots: all at first, later at most REOPEN a second. */
        for (long i = 0; i < o.n && inflight < o.inflight_max; i++) {
            conn_t *c = &conns[i];
            if (c->state != ST_FREE && c->state != ST_CLOSED)
                continue;
            int again = c->state == ST_CLOSED;
            if (again && tokens < 1)
                continue;
            if (conn_open(i, o.rcvbuf) != 0) {
                failed++;
                continue;
            }
            inflight++;
            opened++;
            if (again) {
                tokens -= 1;
                reopened++;
            }
        }
        int k = wait_events(events, MAX_EVENTS, 20);
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            conn_t *c = &conns[i];
            if (c->state == ST_CONNECTING) {
                if (connect_result(c) != 0 || send_all(c, req, (size_t)req_len) != 0) {
                    failed++;
                    inflight--;
                    conn_close(c);
                    continue;
                }
                established++;
                open_now++;
                if (open_now > peak_open) {
                    peak_open = open_now;
                    last_rise = now_s();
                }
                c->state = ST_HEAD;
                conn_watch(i, EPOLLIN | EPOLLRDHUP);
            } else if (c->state == ST_HEAD) {
                int h = read_head(c);
                if (h == 0)
                    continue;
                inflight--;
                if (h < 0) {
                    closed++;
                    open_now--;
                    conn_close(c);
                    continue;
                }
                served++;
                c->state = ST_IDLE;
            } else if (c->state == ST_IDLE) {
                if (drain(c, HEAD_MAX) < 0) {
                    closed++;
                    open_now--;
                    conn_close(c);
                }
            }
        }
        if (tick_due()) {
            tokens += o.reopen * TICK_MS / 1000.0;
            if (tokens > o.reopen)
                tokens = o.reopen;
            /* The ramp ends when all are open or none has been added for two seconds. */
            if (ramp_end == 0 && (peak_open >= o.n || now_s() - last_rise > 2))
                ramp_end = now_s();
            over = attack_over();
        }
    }
    long waiting = 0, connecting = 0;
    for (long i = 0; i < o.n; i++) {
        waiting += conns[i].state == ST_HEAD;
        connecting += conns[i].state == ST_CONNECTING;
    }
    double release = now_s();
    for (long i = 0; i < o.n; i++)
        conn_close(&conns[i]);
    put(",\"target\":%ld,\"opened\":%ld,\"established\":%ld,\"served\":%ld,\"peak_open\":%ld,"
        "\"open_at_release\":%ld,\"unanswered_at_release\":%ld,\"connecting_at_release\":%ld,"
        "\"closed_by_server\":%ld,\"connect_failed\":%ld,\"reopened\":%ld,\"ramp_end\":%.3f,"
        "\"release\":%.3f",
        o.n, opened, established, served, peak_open, open_now, waiting, connecting, closed, failed,
        reopened, ramp_end ? ramp_end : release, release);
}

/* ---- pipeline: requests back to back, nothing read ---- */

static void mode_pipeline(void) {
    char one[512];
    int one_len =
        snprintf(one, sizeof one, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", o.path, o.addr, o.port);
    size_t per = 65536 / (size_t)one_len, buf_len = per * (size_t)one_len;
    uint8_t *buf = malloc(buf_len);
    if (buf == NULL)
        die("malloc", ENOMEM);
    for (size_t i = 0; i < per; i++)
        memcpy(buf + i * (size_t)one_len, one, (size_t)one_len);
    long closed = 0, failed = 0;
    for (long i = 0; i < o.n; i++)
        if (conn_open(i, o.rcvbuf) != 0)
            failed++;
    int over = 0;
    while (!over) {
        int k = wait_events(events, MAX_EVENTS, TICK_MS);
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            conn_t *c = &conns[i];
            if (c->state == ST_CONNECTING) {
                if (connect_result(c) != 0) {
                    failed++;
                    conn_close(c);
                    continue;
                }
                c->state = ST_OPEN;
            }
            if (c->state == ST_OPEN && write_frame(c, buf, buf_len) < 0) {
                closed++;
                conn_close(c);
            }
        }
        if (tick_due()) {
            if (o.rate > 0)
                for (long i = 0; i < o.n; i++)
                    if (conns[i].state == ST_OPEN &&
                        drain(&conns[i], (size_t)(o.rate * TICK_MS / 1000)) < 0) {
                        closed++;
                        conn_close(&conns[i]);
                    }
            over = attack_over();
        }
    }
    uint64_t sent = 0, got = 0;
    for (long i = 0; i < o.n; i++) {
        sent += conns[i].sent;
        got += conns[i].got;
        conn_close(&conns[i]);
    }
    put(",\"conns\":%ld,\"request_bytes\":%d,\"requests_sent\":%llu,\"bytes_read\":%llu,"
        "\"closed_by_server\":%ld,\"connect_failed\":%ld",
        o.n, one_len, (unsigned long long)(sent / (uint64_t)one_len), (unsigned long long)got,
        closed, failed);
    free(buf);
}

/* ---- slowread: one request each, read slowly ---- */

static void mode_slowread(void) {
    char req[512];
    int req_len =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", o.path, o.addr, o.port);
    long closed = 0, failed = 0, ok = 0, other = 0;
    double first_close = 0;
    for (long i = 0; i < o.n; i++)
        if (conn_open(i, o.rcvbuf) != 0)
            failed++;
    size_t quota = (size_t)(o.rate * TICK_MS / 1000);
    int over = 0;
    while (!over) {
        int k = wait_events(events, MAX_EVENTS, TICK_MS);
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            conn_t *c = &conns[i];
            if (c->state != ST_CONNECTING)
                continue;
            if (connect_result(c) != 0 || send_all(c, req, (size_t)req_len) != 0) {
                failed++;
                conn_close(c);
                continue;
            }
            c->state = ST_HEAD;
            struct epoll_event ev = {0};
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, &ev); /* read by the clock from now on */
        }
        if (!tick_due())
            continue;
        for (long i = 0; i < o.n; i++) {
            conn_t *c = &conns[i];
            int r = 0;
            if (c->state == ST_HEAD) {
                /* The head arrives in the first reads: take it, then the body by the quota. */
                int h = read_head(c);
                if (h > 0) {
                    c->state = ST_OPEN;
                    if (c->status == 200)
                        ok++;
                    else
                        other++;
                }
                r = h < 0 ? -1 : 0;
            } else if (c->state == ST_OPEN) {
                r = drain(c, quota);
            }
            if (r < 0) {
                closed++;
                if (first_close == 0)
                    first_close = now_s() - t_start;
                conn_close(c);
            }
        }
        over = attack_over();
    }
    uint64_t got = 0;
    long open = 0;
    for (long i = 0; i < o.n; i++) {
        got += conns[i].got;
        open += conns[i].state == ST_OPEN || conns[i].state == ST_HEAD;
        conn_close(&conns[i]);
    }
    put(",\"conns\":%ld,\"status_200\":%ld,\"status_other\":%ld,\"bytes_read\":%llu,"
        "\"open_at_end\":%ld,\"closed_by_server\":%ld,\"first_close_s\":%.2f,"
        "\"connect_failed\":%ld",
        o.n, ok, other, (unsigned long long)got, open, closed, first_close, failed);
}

/* ---- trickle: request bodies that never complete ---- */

static void mode_trickle(void) {
    char head[512];
    int head_len = snprintf(head, sizeof head,
                            "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
                            "application/octet-stream\r\nContent-Length: %ld\r\n\r\n",
                            o.path, o.addr, o.port, o.size);
    static char body[65536];
    memset(body, 'x', sizeof body);
    long closed = 0, failed = 0, answered = 0, statuses[6] = {0};
    double first_close = 0, last_close = 0;
    for (long i = 0; i < o.n; i++)
        if (conn_open(i, o.rcvbuf) != 0)
            failed++;
    int over = 0;
    while (!over) {
        int k = wait_events(events, MAX_EVENTS, TICK_MS);
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            conn_t *c = &conns[i];
            if (c->state == ST_CONNECTING) {
                if (connect_result(c) != 0 || send_all(c, head, (size_t)head_len) != 0) {
                    failed++;
                    conn_close(c);
                    continue;
                }
                c->state = ST_OPEN;
                conn_watch(i, EPOLLIN | EPOLLRDHUP);
            } else if (c->state == ST_OPEN || c->state == ST_IDLE) {
                /* An answer before the body is complete (nginx answers at once; a limit's 4xx),
                 * or a close. */
                int h = c->state == ST_OPEN ? read_head(c) : drain(c, HEAD_MAX);
                if (h > 0) {
                    answered++;
                    statuses[c->status >= 100 && c->status < 600 ? c->status / 100 : 0]++;
                    c->state = ST_IDLE;
                } else if (h < 0) {
                    closed++;
                    last_close = now_s() - t_start;
                    if (first_close == 0)
                        first_close = last_close;
                    conn_close(c);
                }
            }
        }
        if (!tick_due())
            continue;
        double frac = (now_s() - t_start) / o.secs;
        uint64_t want = (uint64_t)((double)(o.size - 1) * (frac > 1 ? 1 : frac));
        for (long i = 0; i < o.n; i++) {
            conn_t *c = &conns[i];
            while ((c->state == ST_OPEN || c->state == ST_IDLE) && c->sent < want) {
                size_t n = want - c->sent < sizeof body ? (size_t)(want - c->sent) : sizeof body;
                ssize_t w = send(c->fd, body, n, MSG_NOSIGNAL);
                if (w <= 0)
                    break; /* full (the server is not reading) or failed: seen by epoll */
                c->sent += (uint64_t)w;
            }
        }
        over = attack_over();
    }
    uint64_t sent = 0;
    long held = 0;
    for (long i = 0; i < o.n; i++) {
        sent += conns[i].sent;
        held += conns[i].state == ST_OPEN || conns[i].state == ST_IDLE;
        conn_close(&conns[i]);
    }
    put(",\"conns\":%ld,\"content_length\":%ld,\"body_bytes_sent\":%llu,\"held_at_end\":%ld,"
        "\"closed_by_server\":%ld,\"first_close_s\":%.2f,\"last_close_s\":%.2f,"
        "\"answered_early\":%ld,\"answers_2xx\":%ld,\"answers_4xx\":%ld,\"answers_5xx\":%ld,"
        "\"connect_failed\":%ld",
        o.n, o.size, (unsigned long long)sent, held, closed, first_close, last_close, answered,
        statuses[2], statuses[4], statuses[5], failed);
}

/* ---- WebSocket chat modes ---- */

static long ws_joins, ws_chat_msgs, ws_closes;
static int ws_last_close = -1;
static double ws_last_msg;

static void on_ws_msg(conn_t *c, int op, const char *p, size_t len) {
    if (op == 8) {
        ws_last_close = close_code(p, len);
        return;
    }
    if (op != 1 && op != 2)
        return;
    c->msgs++;
    ws_last_msg = now_s();
    if (memmem(p, len, "\"type\":\"join\"", 13) != NULL)
        ws_joins++;
    else if (memmem(p, len, "\"type\":\"message\"", 16) != NULL)
        ws_chat_msgs++;
    if (c->inflight > 0)
        c->inflight--;
}

static char chat_target[256];

/* One event of chat member i on its way in: the connect finished (send the handshake), or the
 * handshake answer came. 1 once it has joined (a silent member is then watched only for the
 * server closing it), -1 if it failed (closed), 0 otherwise. */
static int ws_join_step(long i, int silent) {
    conn_t *c = &conns[i];
    if (c->state == ST_CONNECTING) {
        char target[320];
        snprintf(target, sizeof target, "%s&name=m%ld", chat_target, i);
        if (connect_result(c) != 0 || ws_handshake(c, target, NULL) != 0) {
            conn_close(c);
            return -1;
        }
        c->state = ST_HEAD;
        conn_watch(i, EPOLLIN | EPOLLRDHUP);
        return 0;
    }
    int h = ws_read_handshake(c, on_ws_msg);
    if (h < 0) {
        conn_close(c);
        return -1;
    }
    if (h > 0) {
        c->state = ST_OPEN;
        c->silent = silent;
        conn_watch(i, silent ? EPOLLRDHUP : EPOLLIN | EPOLLRDHUP);
    }
    return h;
}

/* Joins conns [from, to) to the room, INFLIGHT handshakes at a time, until all have joined or
 * failed, or the deadline; members that joined before keep reading (or, silent, are closed when
 * the server closes them). Returns how many joined; those still on their way are left as they
 * are. */
static long ws_join_all(long from, long to, int silent, double deadline, long *failed) {
    long joined = 0, next = from, inflight = 0;
    while (joined + *failed < to - from && now_s() < deadline && !stop) {
        while (next < to && inflight < o.inflight_max) {
            if (conn_open(next, silent ? o.rcvbuf : 0) != 0)
                (*failed)++;
            else
                inflight++;
            next++;
        }
        int k = wait_events(events, MAX_EVENTS, TICK_MS);
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            conn_t *c = &conns[i];
            if (c->state == ST_CONNECTING || c->state == ST_HEAD) {
                int r = ws_join_step(i, silent);
                if (r != 0)
                    inflight--;
                if (r > 0)
                    joined++;
                else if (r < 0)
                    (*failed)++;
            } else if (c->state == ST_OPEN && (c->silent || ws_read(c, on_ws_msg) < 0)) {
                ws_closes++;
                conn_close(c);
            }
        }
        if (tick_due() && attack_over())
            break;
    }
    return joined;
}

static uint8_t *chat_frame(size_t size, size_t *len) {
    /* {"text":"aaa..."} of `size` bytes in all */
    size_t n = size < 12 ? 12 : size;
    char *msg = malloc(n);
    if (msg == NULL)
        die("malloc", ENOMEM);
    memcpy(msg, "{\"text\":\"", 9);
    memset(msg + 9, 'a', n - 11);
    memcpy(msg + n - 2, "\"}", 2);
    uint8_t *f = ws_frame(1, 0, (const uint8_t *)msg, n, len);
    free(msg);
    return f;
}

static void mode_ws_noread(void) {
    /* The publisher first (slot n): it must not wait behind the members' handshakes. */
    long pub = o.n, pub_failed = 0, failed = 0;
    ws_join_all(pub, pub + 1, 0, now_s() + o.secs, &pub_failed);
    conn_t *p = &conns[pub];
    double t0 = now_s();
    long joined = ws_join_all(0, o.n, 1, t0 + o.secs, &failed);
    double join_s = now_s() - t0;
    size_t flen;
    uint8_t *frame = chat_frame((size_t)o.size, &flen);
    if (p->state == ST_OPEN)
        conn_watch(pub, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    long published = 0, late = 0;
    double t_pub = now_s(), pub_end = t_pub + o.secs;
    int over = 0;
    while (!over && p->state == ST_OPEN) {
        int k = wait_events(events, MAX_EVENTS, TICK_MS);
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            conn_t *c = &conns[i];
            if (c->state == ST_CONNECTING || c->state == ST_HEAD) {
                /* Members still joining when the join phase ran out: silent ones too. */
                int r = ws_join_step(i, 1);
                late += r > 0;
                failed += r < 0;
                continue;
            }
            if (c->state != ST_OPEN)
                continue;
            if (c->silent) { /* woken only when the server closed it */
                ws_closes++;
                conn_close(c);
                continue;
            }
            if ((events[e].events & EPOLLIN) && ws_read(c, on_ws_msg) < 0) {
                conn_close(c);
                break;
            }
            if (events[e].events & EPOLLOUT) {
                int w;
                while ((w = write_frame(c, frame, flen)) == 1)
                    published++;
                if (w < 0)
                    conn_close(c);
            }
        }
        if (tick_due())
            over = attack_over() || now_s() >= pub_end;
    }
    put(",\"members\":%ld,\"joined\":%ld,\"joined_late\":%ld,\"join_failed\":%ld,"
        "\"join_s\":%.2f,\"message_bytes\":%ld,\"published\":%ld,\"publish_s\":%.2f,"
        "\"publisher_joined\":%d,\"publisher_ok\":%d,\"publisher_received\":%llu,"
        "\"members_closed_by_server\":%ld,\"last_close_code\":%d",
        o.n, joined, late, failed, join_s, o.size, published, now_s() - t_pub, pub_failed == 0,
        p->state == ST_OPEN, (unsigned long long)ws_chat_msgs, ws_closes, ws_last_close);
    for (long i = 0; i <= o.n; i++)
        conn_close(&conns[i]);
    free(frame);
}

static void mode_ws_join(void) {
    long failed = 0, next = 0, inflight = 0, joined = 0;
    double all_joined = 0;
    int over = 0;
    while (!over) {
        while (next < o.n && inflight < o.inflight_max) {
            if (conn_open(next, o.rcvbuf) != 0)
                failed++;
            else
                inflight++;
            next++;
        }
        int k = wait_events(events, MAX_EVENTS, 20);
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            conn_t *c = &conns[i];
            if (c->state == ST_CONNECTING || c->state == ST_HEAD) {
                int r = ws_join_step(i, 0);
                if (r == 0)
                    continue;
                inflight--;
                if (r < 0)
                    failed++;
                else
                    joined++;
                if (joined + failed == o.n)
                    all_joined = now_s();
            } else if (c->state == ST_OPEN && ws_read(c, on_ws_msg) < 0) {
                ws_closes++;
                conn_close(c);
            }
        }
        if (tick_due()) {
            over = attack_over();
            if (all_joined > 0 &&
                now_s() - (ws_last_msg > all_joined ? ws_last_msg : all_joined) > 1)
                over = 1;
        }
    }
    /* Joining one at a time, every member hears its own join and every later one, n(n+1)/2 in
     * all; members whose handshakes overlap may also hear joins announced before their own. */
    put(",\"members\":%ld,\"joined\":%ld,\"join_failed\":%ld,\"all_joined_s\":%.2f,"
        "\"announcements\":%ld,\"one_at_a_time\":%lld,\"last_announcement_s\":%.2f,"
        "\"closed_by_server\":%ld",
        o.n, joined, failed, all_joined ? all_joined - t_start : -1.0, ws_joins,
        (long long)joined * (joined + 1) / 2, ws_last_msg ? ws_last_msg - t_start : -1.0,
        ws_closes);
    for (long i = 0; i < o.n; i++)
        conn_close(&conns[i]);
}

static void mode_ws_pub(void) {
    long failed = 0;
    ws_join_all(0, 1, 0, now_s() + 5, &failed);
    conn_t *c = &conns[0];
    size_t flen;
    uint8_t *frame = chat_frame((size_t)o.size, &flen);
    long sent = 0;
    if (c->state == ST_OPEN)
        conn_watch(0, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    int over = 0;
    while (!over && c->state == ST_OPEN) {
        int k = wait_events(events, MAX_EVENTS, TICK_MS);
        for (int e = 0; e < k && c->state == ST_OPEN; e++) {
            if ((events[e].events & EPOLLIN) && ws_read(c, on_ws_msg) < 0) {
                conn_close(c);
                break;
            }
            if ((events[e].events & EPOLLOUT) && sent < o.count) {
                int w = write_frame(c, frame, flen);
                if (w < 0)
                    conn_close(c);
                else if (w == 1 && ++sent == o.count)
                    conn_watch(0, EPOLLIN | EPOLLRDHUP);
            }
        }
        if (tick_due())
            over = attack_over() ||
                   (sent == o.count && (ws_chat_msgs >= o.count || now_s() - ws_last_msg > 2));
    }
    put(",\"count\":%ld,\"message_bytes\":%ld,\"sent\":%ld,\"received\":%ld,\"elapsed_s\":%.2f,"
        "\"open_at_end\":%d,\"close_code\":%d",
        o.count, o.size, sent, ws_chat_msgs, now_s() - t_start, c->state == ST_OPEN, ws_last_close);
    conn_close(c);
    free(frame);
}

/* ---- ws-deflate: compression bombs ---- */

/* SIZE bytes of 'a', deflated as one permessage-deflate message (RFC 7692: raw deflate, sync
 * flush, the final 00 00 ff ff dropped). Independent of earlier messages, so it can be sent again
 * and again whatever context the server keeps. */
static uint8_t *bomb_frame(size_t size, size_t *len, size_t *zlen) {
    uint8_t *plain = malloc(size), *z = malloc(size / 100 + 1024);
    if (plain == NULL || z == NULL)
        die("malloc", ENOMEM);
    memset(plain, 'a', size);
    z_stream zs = {0};
    if (deflateInit2(&zs, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflateInit2", EINVAL);
    zs.next_in = plain;
    zs.avail_in = (uInt)size;
    zs.next_out = z;
    zs.avail_out = (uInt)(size / 100 + 1024);
    if (deflate(&zs, Z_SYNC_FLUSH) != Z_OK || zs.avail_in != 0)
        die("deflate", EINVAL);
    size_t n = zs.total_out;
    deflateEnd(&zs);
    if (n >= 4 && memcmp(z + n - 4, "\x00\x00\xff\xff", 4) == 0)
        n -= 4;
    *zlen = n;
    uint8_t *f = ws_frame(1, 1, z, n, len);
    free(plain);
    free(z);
    return f;
}

static void mode_ws_deflate(void) {
    size_t flen, zlen;
    uint8_t *frame = bomb_frame((size_t)o.size, &flen, &zlen);
    const char *offer = "permessage-deflate; client_no_context_takeover";
    long failed = 0, negotiated = 0, sent = 0, echoed = 0;
    for (long i = 0; i < o.n; i++)
        if (conn_open(i, o.rcvbuf) != 0)
            failed++;
    int over = 0;
    while (!over) {
        int k = wait_events(events, MAX_EVENTS, TICK_MS);
        for (int e = 0; e < k; e++) {
            long i = (long)events[e].data.u64;
            conn_t *c = &conns[i];
            if (c->state == ST_CONNECTING) {
                if (connect_result(c) != 0 || ws_handshake(c, o.path, offer) != 0) {
                    failed++;
                    conn_close(c);
                    continue;
                }
                c->state = ST_HEAD;
                conn_watch(i, EPOLLIN | EPOLLRDHUP);
                continue;
            }
            if (c->state == ST_HEAD) {
                int h = ws_read_handshake(c, on_ws_msg);
                if (h < 0) {
                    failed++;
                    conn_close(c);
                }
                if (h <= 0)
                    continue;
                c->head[head_end] = '\0';
                negotiated += strcasestr(c->head, "permessage-deflate") != NULL;
                c->state = ST_OPEN;
                conn_watch(i, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
                continue;
            }
            if (c->state != ST_OPEN)
                continue;
            uint64_t before = c->msgs;
            if ((events[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) &&
                ws_read(c, on_ws_msg) < 0) {
                ws_closes++;
                conn_close(c);
                continue;
            }
            echoed += (long)(c->msgs - before);
            /* Keep WINDOW messages in flight; a message half written is finished first. */
            while (c->out_off > 0 || c->inflight < o.window) {
                int w = write_frame(c, frame, flen);
                if (w < 0) {
                    ws_closes++;
                    conn_close(c);
                    break;
                }
                if (w == 0)
                    break;
                c->inflight++;
                sent++;
            }
            if (c->state == ST_OPEN)
                conn_watch(i,
                           c->out_off > 0 ? EPOLLIN | EPOLLOUT | EPOLLRDHUP : EPOLLIN | EPOLLRDHUP);
        }
        if (tick_due())
            over = attack_over();
        /* A connection waiting only for echoes must get its writes going again. */
        for (long i = 0; i < o.n; i++)
            if (conns[i].state == ST_OPEN && conns[i].out_off == 0 && conns[i].inflight < o.window)
                conn_watch(i, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    }
    long open = 0;
    for (long i = 0; i < o.n; i++) {
        open += conns[i].state == ST_OPEN;
        conn_close(&conns[i]);
    }
    put(",\"conns\":%ld,\"negotiated\":%ld,\"message_bytes\":%ld,\"compressed_bytes\":%zu,"
        "\"sent\":%ld,\"echoed\":%ld,\"inflated_mib\":%.1f,\"open_at_end\":%ld,"
        "\"closed_by_server\":%ld,\"last_close_code\":%d,\"connect_failed\":%ld",
        o.n, negotiated, o.size, zlen, sent, echoed, (double)sent * (double)o.size / 1048576.0,
        open, ws_closes, ws_last_close, failed);
    free(frame);
}

/* ---- main ---- */

static void usage(void) {
    fprintf(stderr, "usage: abuse -m conns|pipeline|slowread|trickle|ws-noread|ws-join|ws-pub|"
                    "ws-deflate -p PORT [-a ADDR] [-u PATH] [-n CONNS] [-d SECS] [-s SIZE] "
                    "[-r RATE] [-R RCVBUF] [-c COUNT] [-w WINDOW] [-k INFLIGHT] [-b FIRST] "
                    "[-S SOURCES] [-o REOPEN] [-q ROOM] [-P PID -L KIB]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "m:a:p:u:n:d:s:r:R:c:w:k:b:S:o:q:P:L:h")) != -1) {
        switch (opt) {
        case 'm':
            o.mode = optarg;
            break;
        case 'a':
            o.addr = optarg;
            break;
        case 'p':
            o.port = atoi(optarg);
            break;
        case 'u':
            o.path = optarg;
            break;
        case 'n':
            o.n = atol(optarg);
            break;
        case 'd':
            o.secs = atof(optarg);
            break;
        case 's':
            o.size = atol(optarg);
            break;
        case 'r':
            o.rate = atol(optarg);
            break;
        case 'R':
            o.rcvbuf = atoi(optarg);
            break;
        case 'c':
            o.count = atol(optarg);
            break;
        case 'w':
            o.window = atoi(optarg);
            break;
        case 'k':
            o.inflight_max = atoi(optarg);
            break;
        case 'b':
            o.first = atoi(optarg);
            break;
        case 'S':
            o.sources = atoi(optarg);
            break;
        case 'o':
            o.reopen = atoi(optarg);
            break;
        case 'q':
            o.room = optarg;
            break;
        case 'P':
            o.pid = atol(optarg);
            break;
        case 'L':
            o.cap_kib = atol(optarg);
            break;
        default:
            usage();
        }
    }
    if (o.mode == NULL || optind != argc || o.port <= 0 || o.port > 65535 || o.n < 1 ||
        o.secs <= 0 || o.size < 1 || o.first < 1 || o.sources < 1 || o.first + o.sources > 255 ||
        o.window < 1 || o.inflight_max < 1)
        usage();
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, o.addr, &dst.sin_addr) != 1)
        usage();

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)o.n + 32 > rl.rlim_cur) {
        fprintf(stderr, "abuse: %ld connections need more than the %llu open files allowed\n", o.n,
                (unsigned long long)rl.rlim_cur);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    snprintf(chat_target, sizeof chat_target, "/ws/chat?room=%s", o.room);

    conns = xcalloc((size_t)o.n + 1, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1", errno);
    t_start = now_s();
    t_end = t_start + o.secs;
    if (strcmp(o.mode, "conns") == 0)
        mode_conns();
    else if (strcmp(o.mode, "pipeline") == 0)
        mode_pipeline();
    else if (strcmp(o.mode, "slowread") == 0)
        mode_slowread();
    else if (strcmp(o.mode, "trickle") == 0)
        mode_trickle();
    else if (strcmp(o.mode, "ws-noread") == 0) {
        t_end = t_start + 2 * o.secs; /* joining, then SECS of publishing */
        mode_ws_noread();
    } else if (strcmp(o.mode, "ws-join") == 0)
        mode_ws_join();
    else if (strcmp(o.mode, "ws-pub") == 0)
        mode_ws_pub();
    else if (strcmp(o.mode, "ws-deflate") == 0)
        mode_ws_deflate();
    else
        usage();
    report();
    return 0;
}
