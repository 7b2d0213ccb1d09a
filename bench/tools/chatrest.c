/* chatrest: chat + REST users, stepped up until the server's p99 passes a limit.
 *
 *   chatrest -p PORT [-a ADDR] [-u STEPS] [-d SECS] [-W WARMUP] [-r REST_PER_S] [-c CHAT_PER_S]
 *            [-g ROOM_SIZE] [-l LIMIT_MS] [-k SOURCES] [-t CONNECT_TIMEOUT_S] [-P PID]
 *
 * A user holds a chat WebSocket, /ws/chat?room=rI&name=uJ (user J in room I = J / ROOM_SIZE,
 * default 20), and one HTTP/1.1 keep-alive connection for /api/todos (bench/peers/SHOWDOWN.md).
 * Each user, on its own schedule with a random phase, calls the REST API REST_PER_S times a
 * second (default 1; of every 10 calls 6 read one of its todos, 2 create one, 1 patches it, 1
 * reads a page of 20, as the showdown's todos.lua) and sends a chat message CHAT_PER_S times a
 * second (default 0.2) that every member of its room, itself too, receives. Open loop: a call
 * due while the user's previous one is still unanswered waits for it, and its latency counts
 * from when it was due (no coordinated omission); a chat message carries its due time, and a
 * delivery's latency is arrival minus that time.
 *
 * STEPS (default 50,100,200,500,1000,2000,5000) are cumulative user counts: for each, the users
 * missing are connected (at most 64 set up at once, from 127.0.0.1 .. 127.0.0.SOURCES, default
 * 8) while the others keep going, then WARMUP s (default 1) of load, then SECS s (default 3)
 * measured, then 1 s more in which late answers to what was due in the measured SECS still
 * count. A call or delivery due in those SECS that has not arrived by then counts as slower than
 * any limit. After each step one line:
 *
 *   step users=N secs=S rest=R rest_p50_us= rest_p99_us= rest_errors= chat_sent= chat_expected=
 *   chat_got= chat_p50_us= chat_p99_us= closed= server_cpu_s= client_cpu_s=
 *
 * (-P PID: the server's CPU time over the SECS, itself and its descendants' from /proc), and it
 * stops after the first step whose REST or chat p99 is above LIMIT_MS (default 100), that had
 * errors (a non-2xx answer, a connection closed by the server) or whose users could not connect
 * within CONNECT_TIMEOUT_S (default 60). Last line: `result users=N` (the last step under the
 * limit, 0 if none) `limit_ms= stopped=REASON`. Exits 1 only on bad arguments or when nothing
 * could be measured.
 *
 * Non-blocking sockets and epoll, one thread, one shared read buffer for the WebSockets; the frame
 * codec is crest's own (src/codec/ws_frame.c, compiled in), masked as a client must. Two sockets
 * per user: 5,000 users take 10,000 of the 20,000 open files a process may have here. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
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
#include "httpmini.h"
#include "wsmini.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_STEPS 32
#define RBUF 262144
#define NEVER UINT64_MAX /* the latency of what never arrived */

enum { ST_NONE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t retries;
    wm_buf_t out;
    wm_buf_t in; /* HTTP: the answer being read; WebSocket: the handshake, then a split message */
    crest__ws_parser_t parser;
} sock_t;

typedef struct {
    sock_t ws, http;
    uint64_t rest_due, chat_due; /* when the next call and message are due */
    uint64_t rest_sent_due;      /* the due time of the call in flight, 0: none */
    uint64_t todo_id;            /* the last todo this user created, 0: none yet */
    uint32_t calls, msgs;
} user_t;

typedef struct {
    uint64_t *v;
    size_t n, cap;
} lat_t;

static const char *addr = "127.0.0.1";
static int port, nsrc = 8, secs = 3, warmup = 1, room_size = 20, connect_timeout = 60, server_pid;
static double rest_rate = 1.0, chat_rate = 0.2, limit_ms = 100;
static int steps[MAX_STEPS], nsteps;
static user_t *users;
static int nusers; /* users started so far */
static int *room_open;
static int ep;
static uint8_t rbuf[RBUF];
static volatile sig_atomic_t stop_flag;
static int setting_up;

/* What the current step counts: calls and deliveries due within [win0, win1). */
static uint64_t win0 = NEVER, win1 = NEVER;
static lat_t rest_lat, chat_lat;
static uint64_t rest_errors, closed, chat_sent, chat_expected, ws_open, http_open, failed_setup;

static void on_signal(int s) {
    (void)s;
    stop_flag = 1;
}

static void lat_add(lat_t *l, uint64_t v) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (l->v == NULL) {
            fprintf(stderr, "chatrest: out of memory\n");
            exit(1);
        }
    }
    l->v[l->n++] = v;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of l (sorted here) in microseconds; -1 when a missing value falls there. */
static double quantile_us(lat_t *l, double q) {
    if (l->n == 0)
        return 0;
    qsort(l->v, l->n, sizeof(*l->v), cmp_u64);
    size_t i = (size_t)(q * (double)(l->n - 1) + 0.5);
    return l->v[i] == NEVER ? -1 : (double)l->v[i] / 1e3;
}

static int in_window(uint64_t due) {
    return due >= win0 && due < win1;
}

static user_t *user_of(sock_t *s, int *is_ws) {
    /* Both sockets live inside their user_t: find it from the address. */
    size_t off = (size_t)((char *)s - (char *)users);
    user_t *u = &users[off / sizeof(user_t)];
    *is_ws = s == &u->ws;
    return u;
}

static void watch(sock_t *s, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
}

static void sock_close(sock_t *s) {
    if (s->state == ST_NONE || s->state == ST_CLOSED)
        return;
    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
    close(s->fd);
    wm_free(&s->out);
    wm_free(&s->in);
}

static void sock_start(sock_t *s, long user);

/* A socket failed. While users connect, a reset handshake is tried again; after that a closed
 * WebSocket counts (and stays closed), a closed HTTP connection counts when a call was in
 * flight and is opened again for the next call. */
static void sock_fail(sock_t *s) {
    int is_ws;
    user_t *u = user_of(s, &is_ws);
    long id = (long)(u - users);
    int was_open = s->state == ST_OPEN;
    sock_close(s);
    s->state = ST_CLOSED;
    if (!was_open && setting_up && s->retries < 10 && !stop_flag) {
        s->retries++;
        sock_start(s, id);
        return;
    }
    if (!was_open) {
        if (setting_up)
            failed_setup++;
        else
            closed++; /* a new keep-alive connection refused: this user is out */
        return;
    }
    if (is_ws) {
        ws_open--;
        room_open[id / room_size]--;
        closed++;
        return;
    }
    http_open--;
    if (u->rest_sent_due) {
        if (in_window(u->rest_sent_due))
            lat_add(&rest_lat, NEVER);
        rest_errors++;
        closed++;
        u->rest_sent_due = 0;
    }
    sock_start(s, id); /* keep-alive ended by the server: a new connection */
}

static void flush_out(sock_t *s) {
    int rc = wm_flush(s->fd, &s->out);
    if (rc < 0) {
        sock_fail(s);
        return;
    }
    watch(s, rc > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static void sock_start(sock_t *s, long user) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        fprintf(stderr, "chatrest: socket: %s\n", strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(user % nsrc));
    if (bind(s->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
        fprintf(stderr, "chatrest: bind: %s\n", strerror(errno));
        exit(1);
    }
    s->state = ST_CONNECTING;
    if (connect(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        fprintf(stderr, "chatrest: connect: %s\n", strerror(errno));
        exit(1);
    }
    int is_ws;
    user_t *u = user_of(s, &is_ws);
    if (is_ws) {
        char req[512];
        int n = snprintf(req, sizeof(req),
                         "GET /ws/chat?room=r%ld&name=u%ld HTTP/1.1\r\nHost: %s:%d\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n",
                         user / room_size, user, addr, port);
        wm_append(&s->out, req, (size_t)n);
        crest__ws_parser_init(&s->parser, 1 << 20, 0, 0);
    }
    (void)u;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

/* ---------------------------------------------------------------- REST ------------------ */

static void rest_send(user_t *u, uint64_t due) {
    sock_t *s = &u->http;
    char req[512], body[96];
    int k = (int)(u->calls++ % 10), n;
    const char *json_hdr = "Content-Type: application/json\r\n";
    if (u->todo_id == 0 || k == 1 || k == 2) {
        int b = snprintf(body, sizeof(body), "{\"title\":\"todo %u\",\"done\":false}", u->calls);
        n = snprintf(req, sizeof(req),
                     "POST /api/todos HTTP/1.1\r\nHost: %s:%d\r\n%s"
                     "Content-Length: %d\r\n\r\n%s",
                     addr, port, json_hdr, b, body);
    } else if (k == 3) {
        n = snprintf(req, sizeof(req),
                     "PATCH /api/todos/%llu HTTP/1.1\r\nHost: %s:%d\r\n%s"
                     "Content-Length: 13\r\n\r\n{\"done\":true}",
                     (unsigned long long)u->todo_id, addr, port, json_hdr);
    } else if (k == 4) {
        n = snprintf(req, sizeof(req),
                     "GET /api/todos?limit=20&after=%llu HTTP/1.1\r\n"
                     "Host: %s:%d\r\n\r\n",
                     (unsigned long long)(u->todo_id - 1), addr, port);
    } else {
        n = snprintf(req, sizeof(req), "GET /api/todos/%llu HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                     (unsigned long long)u->todo_id, addr, port);
    }
    u->rest_sent_due = due;
    wm_append(&s->out, req, (size_t)n);
    flush_out(s);
}

/* Sends the user's call if one is due and none is in flight. */
static void rest_maybe(user_t *u, uint64_t now) {
    if (u->http.state != ST_OPEN || u->rest_sent_due || now < u->rest_due)
        return;
    uint64_t due = u->rest_due;
    u->rest_due += (uint64_t)(1e9 / rest_rate);
    rest_send(u, due);
}

static void on_http_input(user_t *u, uint64_t now) {
    sock_t *s = &u->http;
    int status = 0;
    long full = hm_response_complete(s->in.ptr, s->in.len, &status);
    if (full == 0)
        return;
    if (full < 0 || u->rest_sent_due == 0) {
        rest_errors++;
        sock_fail(s);
        return;
    }
    if (status == 201) {
        const char *id = memmem(s->in.ptr, (size_t)full, "\"id\":", 5);
        if (id != NULL)
            u->todo_id = strtoull(id + 5, NULL, 10);
    }
    if (status < 200 || status > 299) {
        rest_errors++;
        if (in_window(u->rest_sent_due))
            lat_add(&rest_lat, NEVER);
    } else if (in_window(u->rest_sent_due)) {
        lat_add(&rest_lat, now - u->rest_sent_due);
    }
    u->rest_sent_due = 0;
    memmove(s->in.ptr, s->in.ptr + full, s->in.len - (size_t)full);
    s->in.len -= (size_t)full;
    rest_maybe(u, now);
}

/* ---------------------------------------------------------------- chat ------------------ */

static void chat_maybe(user_t *u, uint64_t now) {
    if (u->ws.state != ST_OPEN || now < u->chat_due)
        return;
    uint64_t due = u->chat_due;
    u->chat_due += (uint64_t)(1e9 / chat_rate);
    char text[96];
    int n = snprintf(text, sizeof(text), "{\"text\":\"c %u %llu\"}", u->msgs++,
                     (unsigned long long)due);
    if (in_window(due)) {
        chat_sent++;
        chat_expected += (uint64_t)room_open[(u - users) / room_size];
    }
    wm_frame(&u->ws.out, CREST__WS_TEXT, text, (size_t)n);
    flush_out(&u->ws);
}

static void on_chat(const uint8_t *p, size_t n, uint64_t now) {
    static const char tag[] = "\"text\":\"c ";
    if (n < 18 || memcmp(p, "{\"type\":\"message\"", 17) != 0)
        return; /* join, leave, presence: not counted */
    const uint8_t *t = memmem(p, n, tag, sizeof(tag) - 1);
    if (t == NULL)
        return;
    const uint8_t *q = t + sizeof(tag) - 1, *end = p + n;
    while (q < end && *q != ' ')
        q++;
    uint64_t due = 0;
    for (q++; q < end && *q >= '0' && *q <= '9'; q++)
        due = due * 10 + (uint64_t)(*q - '0');
    if (in_window(due))
        lat_add(&chat_lat, now > due ? now - due : 0);
}

static void on_ws_frames(sock_t *s, uint8_t *data, size_t len, uint64_t now) {
    size_t pos = 0;
    while (pos < len && s->state == ST_OPEN) {
        crest__ws_chunk_t ch;
        size_t used = 0;
        int rc = crest__ws_parse(&s->parser, data + pos, len - pos, &used, &ch);
        if (rc < 0) {
            sock_fail(s);
            return;
        }
        pos += used;
        if (rc == 0)
            break;
        int control = ch.msg_opcode & 0x08;
        const uint8_t *msg = ch.data;
        size_t mlen = ch.len;
        if (!(ch.first && ch.last && (control || (ch.fin && ch.opcode != CREST__WS_CONT)))) {
            wm_append(&s->in, ch.data, ch.len); /* in pieces: assemble */
            if (!(ch.last && (ch.fin || control)))
                continue;
            msg = (const uint8_t *)s->in.ptr;
            mlen = s->in.len;
        }
        if (ch.msg_opcode == CREST__WS_CLOSE) {
            sock_fail(s);
            return;
        }
        if (ch.msg_opcode == CREST__WS_PING) {
            wm_frame(&s->out, CREST__WS_PONG, msg, mlen);
            flush_out(s);
        } else if (ch.msg_opcode == CREST__WS_TEXT) {
            on_chat(msg, mlen, now);
        }
        s->in.len = 0;
    }
}

static void on_ws_handshake(sock_t *s, uint64_t now) {
    char *end = memmem(s->in.ptr, s->in.len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (s->in.len > 8192)
            sock_fail(s);
        return;
    }
    if (s->in.len < 12 || memcmp(s->in.ptr, "HTTP/1.1 101", 12) != 0) {
        sock_fail(s);
        return;
    }
    int is_ws;
    user_t *u = user_of(s, &is_ws);
    s->state = ST_OPEN;
    ws_open++;
    room_open[(u - users) / room_size]++;
    size_t head = (size_t)(end + 4 - s->in.ptr), rest = s->in.len - head;
    memcpy(rbuf, s->in.ptr + head, rest);
    wm_free(&s->in);
    if (rest > 0)
        on_ws_frames(s, rbuf, rest, now);
}

/* ---------------------------------------------------------------- the loop -------------- */

static void on_event(sock_t *s, uint32_t e) {
    int is_ws;
    user_t *u = user_of(s, &is_ws);
    if (s->state == ST_CONNECTING) {
        int err = 0;
        socklen_t elen = sizeof(err);
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        if (err != 0 || (e & (EPOLLERR | EPOLLHUP))) {
            sock_fail(s);
            return;
        }
        if (is_ws) {
            s->state = ST_HANDSHAKE;
        } else {
            s->state = ST_OPEN;
            http_open++;
            s->retries = 0;
        }
        flush_out(s);
        if (!is_ws)
            rest_maybe(u, wm_now_ns());
        return;
    }
    if (e & EPOLLIN) {
        for (int reads = 0; reads < 16 && (s->state == ST_OPEN || s->state == ST_HANDSHAKE);
             reads++) {
            uint8_t *dst = rbuf;
            size_t cap = sizeof(rbuf);
            if (!is_ws || s->state == ST_HANDSHAKE) {
                wm_reserve(&s->in, s->in.len + 4096);
                dst = (uint8_t *)s->in.ptr + s->in.len;
                cap = s->in.cap - s->in.len;
            }
            ssize_t r = recv(s->fd, dst, cap, 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                if (r == 0 || errno != EAGAIN)
                    sock_fail(s);
                break;
            }
            uint64_t now = wm_now_ns();
            if (dst != rbuf) {
                s->in.len += (size_t)r;
                if (is_ws)
                    on_ws_handshake(s, now);
                else
                    on_http_input(u, now);
            } else {
                on_ws_frames(s, rbuf, (size_t)r, now);
            }
            if ((size_t)r < cap)
                break;
        }
    } else if (e & (EPOLLERR | EPOLLHUP)) {
        sock_fail(s);
        return;
    }
    if ((e & EPOLLOUT) && s->out.len > 0 && (s->state == ST_OPEN || s->state == ST_HANDSHAKE))
        flush_out(s);
}

static void run_until(uint64_t end) {
    struct epoll_event evs[1024];
    static uint64_t last_scan;
    while (!stop_flag) {
        uint64_t now = wm_now_ns();
        if (now >= end)
            break;
        int n = epoll_wait(ep, evs, 1024, 1);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        now = wm_now_ns();
        if (now - last_scan < 1000000)
            continue; /* the schedules are looked at once a millisecond */
        last_scan = now;
        for (int i = 0; i < nusers; i++) {
            rest_maybe(&users[i], now);
            chat_maybe(&users[i], now);
        }
    }
}

/* CPU time (user + system, seconds) of pid and its descendants (a forked worker, a pool). */
static double tree_cpu(int pid) {
    char path[320], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    double total = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/children", pid, de->d_name);
        FILE *c = fopen(path, "r");
        int child;
        while (c != NULL && fscanf(c, "%d", &child) == 1)
            total += tree_cpu(child);
        if (c != NULL)
            fclose(c);
    }
    if (d != NULL)
        closedir(d);
    return total;
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t rand64(void) {
    return (uint64_t)rand() << 31 | (uint64_t)rand();
}

/* Connects users nusers..target-1 while the others keep their schedules. */
static int add_users(int target) {
    uint64_t t0 = wm_now_ns(), limit = t0 + (uint64_t)connect_timeout * 1000000000ull;
    uint64_t p_rest = (uint64_t)(1e9 / rest_rate), p_chat = (uint64_t)(1e9 / chat_rate);
    setting_up = 1;
    failed_setup = 0;
    int first = nusers;
    while (nusers < target || (int)(ws_open + http_open) < 2 * target) {
        if (stop_flag || wm_now_ns() >= limit || failed_setup > 0)
            break;
        int pending = 2 * nusers - (int)(ws_open + http_open);
        while (nusers < target && pending < 64) {
            user_t *u = &users[nusers];
            uint64_t now = wm_now_ns();
            u->rest_due = now + rand64() % p_rest; /* a random phase */
            u->chat_due = now + rand64() % p_chat;
            sock_start(&u->ws, nusers);
            sock_start(&u->http, nusers);
            nusers++;
            pending += 2;
        }
        run_until(wm_now_ns() + 2000000);
    }
    setting_up = 0;
    if ((int)(ws_open + http_open) < 2 * target) {
        fprintf(stderr,
                "chatrest: only %llu WebSockets and %llu HTTP connections of %d users open "
                "(users %d..%d: %llu failed)\n",
                (unsigned long long)ws_open, (unsigned long long)http_open, target, first,
                target - 1, (unsigned long long)failed_setup);
        return -1;
    }
    return 0;
}

static int parse_steps(const char *s) {
    nsteps = 0;
    while (*s && nsteps < MAX_STEPS) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 100000 || (nsteps && v <= steps[nsteps - 1]))
            return -1;
        steps[nsteps++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return -1;
    }
    return nsteps ? 0 : -1;
}

int main(int argc, char **argv) {
    const char *step_list = "50,100,200,500,1000,2000,5000";
    int opt;
    while ((opt = getopt(argc, argv, "a:p:u:d:W:r:c:g:l:k:t:P:")) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'u':
            step_list = optarg;
            break;
        case 'd':
            secs = atoi(optarg);
            break;
        case 'W':
            warmup = atoi(optarg);
            break;
        case 'r':
            rest_rate = atof(optarg);
            break;
        case 'c':
            chat_rate = atof(optarg);
            break;
        case 'g':
            room_size = atoi(optarg);
            break;
        case 'l':
            limit_ms = atof(optarg);
            break;
        case 'k':
            nsrc = atoi(optarg);
            break;
        case 't':
            connect_timeout = atoi(optarg);
            break;
        case 'P':
            server_pid = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench/tools/chatrest.c\n");
            return 2;
        }
    }
    if (optind != argc || port <= 0 || port > 65535 || parse_steps(step_list) != 0 || secs < 1 ||
        warmup < 0 || !(rest_rate > 0) || !(chat_rate > 0) || room_size < 1 || !(limit_ms > 0) ||
        nsrc < 1 || nsrc > 254 || connect_timeout < 1) {
        fprintf(stderr, "chatrest: bad arguments\n");
        return 2;
    }
    int max_users = steps[nsteps - 1];
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)max_users * 2 + 16 > rl.rlim_cur) {
        fprintf(stderr, "chatrest: %d users need more than the %llu open files allowed\n",
                max_users, (unsigned long long)rl.rlim_cur);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)wm_now_ns());
    ep = epoll_create1(EPOLL_CLOEXEC);
    users = calloc((size_t)max_users, sizeof(*users));
    room_open = calloc((size_t)(max_users / room_size + 1), sizeof(*room_open));
    if (ep < 0 || users == NULL || room_open == NULL) {
        fprintf(stderr, "chatrest: setup failed\n");
        return 1;
    }
    int passed = 0, measured = 0;
    const char *stopped = "steps";
    for (int si = 0; si < nsteps && !stop_flag; si++) {
        if (add_users(steps[si]) != 0) {
            stopped = "connect";
            break;
        }
        run_until(wm_now_ns() + (uint64_t)warmup * 1000000000ull);
        rest_lat.n = chat_lat.n = 0;
        rest_errors = closed = chat_sent = chat_expected = 0;
        win0 = wm_now_ns();
        win1 = win0 + (uint64_t)secs * 1000000000ull;
        double s0 = server_pid ? tree_cpu(server_pid) : 0, c0 = self_cpu();
        run_until(win1);
        double s1 = server_pid ? tree_cpu(server_pid) : 0, c1 = self_cpu();
        run_until(win1 + 1000000000ull); /* late answers to what was due in the window */
        /* Calls still unanswered, deliveries that never came: slower than any limit. */
        for (int i = 0; i < nusers; i++)
            if (users[i].rest_sent_due && in_window(users[i].rest_sent_due))
                lat_add(&rest_lat, NEVER);
        uint64_t calls = rest_lat.n, got = chat_lat.n;
        for (uint64_t i = got; i < chat_expected; i++)
            lat_add(&chat_lat, NEVER);
        win0 = win1 = NEVER;
        double r50 = quantile_us(&rest_lat, 0.5), r99 = quantile_us(&rest_lat, 0.99);
        double c50 = quantile_us(&chat_lat, 0.5), c99 = quantile_us(&chat_lat, 0.99);
        printf("step users=%d secs=%d rest=%llu rest_p50_us=%.0f rest_p99_us=%.0f rest_errors=%llu "
               "chat_sent=%llu chat_expected=%llu chat_got=%llu chat_p50_us=%.0f chat_p99_us=%.0f "
               "closed=%llu server_cpu_s=%.2f client_cpu_s=%.2f\n",
               steps[si], secs, (unsigned long long)calls, r50, r99,
               (unsigned long long)rest_errors, (unsigned long long)chat_sent,
               (unsigned long long)chat_expected, (unsigned long long)got, c50, c99,
               (unsigned long long)closed, s1 - s0, c1 - c0);
        fflush(stdout);
        measured++;
        double lim_us = limit_ms * 1000;
        if (rest_errors || closed) {
            stopped = "errors";
            break;
        }
        if (r99 < 0 || r99 > lim_us || c99 < 0 || c99 > lim_us || calls == 0) {
            stopped = "limit";
            break;
        }
        passed = steps[si];
    }
    printf("result users=%d limit_ms=%g stopped=%s\n", passed, limit_ms, stopped);
    fflush(stdout);
    for (int i = 0; i < nusers; i++) {
        sock_close(&users[i].ws);
        sock_close(&users[i].http);
    }
    return measured || strcmp(stopped, "connect") == 0 ? 0 : 1;
}
