/* libFuzzer target for Socket.IO as the server runs it (src/sio: Engine.IO sessions, polling,
 * the WebSocket transport and the upgrade to it, the heartbeat; Socket.IO namespaces, events,
 * acks, binary attachments, rooms through the pub/sub hub). The input is the client's side of a
 * session: crest's real HTTP/1.1 and WebSocket protocols on real crest connections (each one end
 * of a socketpair whose other end is the client), one loop initialised by hand whose timers the
 * driver fires itself.
 *
 * The target opens a session with a handshake GET and reads its sid from the answer. The input,
 * after a first byte that picks how each step is cut into reads, is a list of steps separated by
 * "\n~"; a step is one letter and its bytes:
 *   P body   a polling POST carrying body as it is (Engine.IO payload: packets joined by 0x1e,
 *            "b" + base64 for binary ones; Socket.IO packets, JSON, attachments, acks)
 *   G        a polling GET on the GET connection (it waits there until there is output)
 *   g        a polling GET on a connection of its own (two at once: the session is closed)
 *   W [x]    a WebSocket upgrade of the session (with bytes: a WebSocket-only session instead)
 *   f data   a masked text frame on the WebSocket; b data: a binary frame; c data: a close
 *            frame; F data: raw bytes on it (frames the input makes itself)
 *   H req    raw bytes on a fresh connection, each '@' replaced by the sid (odd requests)
 *   T [n]    time passes: n's bits 1 wait out the short deadlines, 2 fire the loop's wheel
 *            (heartbeat, connect and upgrade deadlines, connections' deadlines), 4 fire the
 *            loop's timers (ack timeouts, answers given later); no byte: all of them
 *   X n      the client drops connection n % 4 (0 GET, 1 POST, 2 WebSocket, 3 the other)
 * The app behind it: namespaces "/" and "/admin" (whose connect handler refuses without the
 * right auth), event handlers that ack, emit back (text and binary, with acks asked for and
 * timeouts), join and leave rooms, broadcast to rooms with exceptions, answer acks later from a
 * timer and disconnect the socket (also from the connect and the ack handlers).
 *
 * Each input ends with the client gone: the heartbeat's deadline closes what is left. Then the
 * session and its sockets must be gone (crest_sio_stats), every request finished, every ack
 * called back, every connection freed, every loop timer gone and the memory budget back at zero
 * (checked), so AddressSanitizer's leak check at exit sees what an input left behind.
 *
 * make fuzz   (build-fuzz/fuzz_sio; seeds in fuzz/sio/corpus, made by fuzz/sio/seeds.py)
 * FUZZ_SIO_PRINT=1 build-fuzz/fuzz_sio file: what crest sent, on stdout. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "crest/sio.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static crest_app_t *app;
static crest_pubsub_t *ps;
static crest_sio_t *io;
static crest_sio_nsp_t *nsp_root, *nsp_admin;
static crest_loop_t *loop;
static int live;       /* requests that reached the chain and are not finished */
static int socks_live; /* sockets accepted and not disconnected (the handlers' count) */
static int acks_out;   /* emits that asked for an ack and were not called back */
static int print;      /* FUZZ_SIO_PRINT set */

/* ---- the app ---- */

typedef struct {
    uint64_t timer; /* an ack answered later (crest_loop_timer), 0 when none */
    int64_t ack_id;
    crest_sio_socket_t *s;
} sdata_t;

/* Write v as JSON text (what the app sends back is what came). */
static void write_json(crest_buf_t *b, const crest_json_t *v, int depth) {
    switch (crest_json_type(v)) {
    case CREST_JSON_BOOL: {
        int t = 0;
        crest_json_bool(v, &t);
        crest_buf_puts(b, t ? "true" : "false");
        break;
    }
    case CREST_JSON_NUMBER: {
        int64_t i = 0;
        if (crest_json_int(v, &i) == 0)
            crest_buf_printf(b, "%lld", (long long)i);
        else
            crest_buf_puts(b, "0.5");
        break;
    }
    case CREST_JSON_STRING: {
        crest_str_t s = crest_json_str(v);
        crest_buf_json_str(b, s.ptr, s.len);
        break;
    }
    case CREST_JSON_ARRAY:
    case CREST_JSON_OBJECT: {
        int obj = crest_json_type(v) == CREST_JSON_OBJECT;
        crest_buf_puts(b, obj ? "{" : "[");
        if (depth < 16)
            for (const crest_json_t *it = crest_json_first(v); it; it = crest_json_next(it)) {
                if (it != crest_json_first(v))
                    crest_buf_puts(b, ",");
                if (obj) {
                    crest_str_t k = crest_json_key(it);
                    crest_buf_json_str(b, k.ptr, k.len);
                    crest_buf_puts(b, ":");
                }
                write_json(b, it, depth + 1);
            }
        crest_buf_puts(b, obj ? "}" : "]");
        break;
    }
    default:
        crest_buf_puts(b, "null");
    }
}

/* The event's arguments as an argument list: top-level binary placeholders become bytes again;
 * a placeholder deeper down, or one for an attachment that is not there, stays JSON. */
static void args_of(const crest_sio_event_t *ev, crest_sio_args_t *a) {
    crest_sio_args_init(a);
    for (const crest_json_t *it = crest_json_first(crest_sio_event_args(ev)); it;
         it = crest_json_next(it)) {
        crest_str_t bytes;
        if (crest_sio_event_bin(ev, it, &bytes) == 0) {
            crest_sio_args_bin(a, bytes.ptr, bytes.len);
        } else {
            crest_buf_t b = CREST_BUF_INIT;
            write_json(&b, it, 0);
            if (b.err)
                a->err = b.err;
            else
                crest_sio_args_json(a, b.ptr, b.len);
            crest_buf_free(&b);
        }
    }
}

/* A string argument as a C string in out (0: not a usable one). */
static int str_of(const crest_json_t *v, char *out, size_t size) {
    crest_str_t r = crest_json_str(v);
    if (r.ptr == NULL || r.len >= size || memchr(r.ptr, '\0', r.len) != NULL)
        return 0;
    memcpy(out, r.ptr, r.len);
    out[r.len] = '\0';
    return 1;
}

static int64_t int_of(const crest_json_t *v, int64_t def) {
    int64_t i;
    return crest_json_int(v, &i) == 0 ? i : def;
}

static void ack_cb(crest_sio_socket_t *s, int status, crest_sio_event_t *ev, void *arg);

/* Ask the client for an ack of event "q" (timeout_ms 0: none). */
static void ask(crest_sio_socket_t *s, uint32_t timeout_ms, const char *text) {
    crest_sio_args_t a;
    crest_sio_args_init(&a);
    crest_sio_args_str(&a, text, strlen(text));
    crest_sio_args_bin(&a, "\x00\x01\x02", 3);
    if (crest_sio_emit_ack(s, "q", &a, timeout_ms, ack_cb, NULL) == 0)
        acks_out++;
    crest_sio_args_free(&a);
}

/* The client's answer (or its timeout, or the socket left): "bye" makes the server leave,
 * "again" asks once more, anything else is sent back as "answer". */
static void ack_cb(crest_sio_socket_t *s, int status, crest_sio_event_t *ev, void *arg) {
    (void)arg;
    acks_out--;
    if (status != 0)
        return; /* s is leaving: its data is already freed */
    char word[16];
    if (str_of(crest_sio_event_arg(ev, 0), word, sizeof(word))) {
        if (strcmp(word, "bye") == 0) {
            crest_sio_disconnect(s);
            return;
        }
        if (strcmp(word, "again") == 0) {
            ask(s, 0, "again");
            return;
        }
    }
    crest_sio_args_t a;
    args_of(ev, &a);
    crest_sio_emit(s, "answer", &a);
    crest_sio_args_free(&a);
}

static const char *on_connect(crest_sio_socket_t *s, const crest_json_t *auth, void *data) {
    (void)data;
    /* A handler that makes the socket leave at once (and maybe refuses it too). */
    if (crest_json_get(auth, "kick") != NULL)
        crest_sio_disconnect(s);
    if (crest_json_get(auth, "refuse") != NULL) {
        ask(s, 10, "refused"); /* cancelled when the socket is freed */
        return "refused";
    }
    if (crest_sio_socket_nsp(s) == nsp_admin) {
        char token[16];
        if (!str_of(crest_json_get(auth, "token"), token, sizeof(token)) ||
            strcmp(token, "secret") != 0)
            return "not authorized";
    }
    sdata_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return "out of memory";
    d->s = s;
    *crest_sio_data(s) = d;
    socks_live++;
    char room[64];
    if (str_of(crest_json_get(auth, "room"), room, sizeof(room)))
        crest_sio_join(s, room);
    /* What the handler sends goes out after the CONNECT answer. */
    crest_sio_args_t a;
    crest_sio_args_init(&a);
    crest_sio_args_str(&a, crest_sio_id(s), strlen(crest_sio_id(s)));
    if (crest_json_get(auth, "bin") != NULL)
        crest_sio_args_bin(&a, "hello", 5);
    crest_sio_emit(s, "welcome", &a);
    crest_sio_args_free(&a);
    if (crest_json_get(auth, "ask") != NULL)
        ask(s, 10, "hi");
    return NULL;
}

static void on_disconnect(crest_sio_socket_t *s, const char *reason, void *data) {
    (void)reason, (void)data;
    sdata_t *d = *crest_sio_data(s);
    if (d->timer)
        crest_loop_cancel(crest_sio_loop(s), d->timer);
    free(d);
    *crest_sio_data(s) = NULL;
    socks_live--;
    /* Gone already: these are refused, and must not reach the client. */
    if (crest_sio_emit(s, "late", NULL) != CREST_EPIPE ||
        crest_sio_join(s, "late") != CREST_EPIPE || crest_sio_disconnect(s) != CREST_EALREADY)
        abort();
}

static void on_echo(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    crest_sio_args_t a;
    args_of(ev, &a);
    if (crest_sio_event_ack_id(ev) >= 0)
        crest_sio_ack(s, crest_sio_event_ack_id(ev), &a);
    else
        crest_sio_emit(s, "echo", &a);
    crest_sio_args_free(&a);
}

/* emit (n, bytes?): n events back (a slow consumer past the limits), each with a byte string. */
static void on_emit(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    int64_t n = int_of(crest_sio_event_arg(ev, 0), 1);
    static char blob[1500];
    for (int64_t i = 0; i < n && i < 64; i++) {
        crest_sio_args_t a;
        crest_sio_args_init(&a);
        crest_sio_args_json(&a, "{\"i\":1}", 7);
        crest_sio_args_bin(&a, blob, (size_t)(i * 97) % sizeof(blob));
        int rc = crest_sio_emit(s, "ev", &a);
        crest_sio_args_free(&a);
        if (rc != 0)
            break;
    }
}

/* ask (ms): an emit asking for an ack, ms 0: no timeout. */
static void on_ask(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    int64_t ms = int_of(crest_sio_event_arg(ev, 0), 0);
    ask(s, ms > 0 ? 10 : 0, "question");
}

static void on_join(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    char room[64];
    for (size_t i = 0; i < 4; i++)
        if (str_of(crest_sio_event_arg(ev, i), room, sizeof(room)))
            crest_sio_join(s, room);
    if (crest_sio_event_ack_id(ev) >= 0)
        crest_sio_ack(s, crest_sio_event_ack_id(ev), NULL);
}

static void on_leave(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    char room[64];
    for (size_t i = 0; i < 4; i++)
        if (str_of(crest_sio_event_arg(ev, i), room, sizeof(room)))
            crest_sio_leave(s, room);
}

/* The names in a string or an array of strings ("self": the socket's id), in names[]. */
static size_t names_of(crest_sio_socket_t *s, const crest_json_t *v, char (*buf)[64],
                       const char **names, size_t cap) {
    size_t n = 0;
    const crest_json_t *it = crest_json_type(v) == CREST_JSON_STRING ? v : crest_json_first(v);
    for (; it != NULL && n < cap; it = it == v ? NULL : crest_json_next(it)) {
        if (!str_of(it, buf[n], 64) || buf[n][0] == '\0')
            continue;
        names[n] = strcmp(buf[n], "self") == 0 ? crest_sio_id(s) : buf[n];
        n++;
    }
    return n;
}

/* to (rooms, except, value, bytes?): a broadcast "msg" in the socket's namespace. */
static void on_to(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    char rbuf[4][64], xbuf[4][64];
    const char *rooms[4], *except[4];
    crest_sio_to_t to = {rooms, 0, except, 0};
    to.nrooms = names_of(s, crest_sio_event_arg(ev, 0), rbuf, rooms, 4);
    to.nexcept = names_of(s, crest_sio_event_arg(ev, 1), xbuf, except, 4);
    crest_sio_args_t a;
    args_of(ev, &a);
    crest_sio_broadcast(crest_sio_socket_nsp(s), &to, "msg", &a);
    crest_sio_args_free(&a);
}

/* all: a broadcast to the namespace but the sender. */
static void on_all(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data, (void)ev;
    const char *self = crest_sio_id(s);
    crest_sio_to_t to = {NULL, 0, &self, 1};
    crest_sio_args_t a;
    crest_sio_args_init(&a);
    crest_sio_args_bin(&a, "all", 3);
    crest_sio_broadcast(crest_sio_socket_nsp(s), &to, "all", &a);
    crest_sio_broadcast(crest_sio_socket_nsp(s), NULL, "everyone", NULL);
    crest_sio_args_free(&a);
}

/* bye: the server makes the socket leave; what follows is refused. */
static void on_bye(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    crest_sio_disconnect(s);
    if (crest_sio_disconnect(s) != CREST_EALREADY)
        abort();
    crest_sio_emit(s, "after", NULL);
    crest_sio_ack(s, crest_sio_event_ack_id(ev), NULL);
}

static void later_cb(crest_loop_t *l, void *arg) {
    (void)l;
    sdata_t *d = arg;
    d->timer = 0;
    crest_sio_ack(d->s, d->ack_id, NULL);
}

/* later: the ack is answered from a loop timer (cancelled when the socket leaves first). */
static void on_later(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    sdata_t *d = *crest_sio_data(s);
    if (d->timer != 0 || crest_sio_event_ack_id(ev) < 0)
        return;
    d->ack_id = crest_sio_event_ack_id(ev);
    d->timer = crest_loop_timer(crest_sio_loop(s), 5, later_cb, d);
}

/* ---- counting the requests ---- */

static int count_mw(crest_req_t *req, void *data) {
    (void)data;
    if (crest_req_set(req, "live", &live) != 0)
        return CREST_ENOMEM;
    live++;
    return CREST_NEXT;
}

static void count_done(crest_req_t *req, const crest_res_info_t *info, void *data) {
    (void)info, (void)data;
    if (crest_req_get(req, "live") == &live)
        live--;
}

/* ---- the loop ---- */

static void setup(void) {
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    o.max_header_bytes = 4096;
    o.max_output = 64 * 1024;
    /* Long enough that the clock of a slow run does not fire them: the driver does. */
    o.header_timeout_ms = 1000;
    o.body_timeout_ms = 1000;
    o.keepalive_timeout_ms = 1000;
    app = crest_app_new(&o);
    if (app == NULL || (ps = crest_pubsub_new(app)) == NULL)
        abort();
    crest_sio_opts_t so;
    crest_sio_opts_default(&so);
    /* Small limits, reached by small inputs; deadlines the driver fires itself (the short ones
     * pass in a few milliseconds of waiting). */
    so.max_payload = 4000;
    so.max_buffered = 8192;
    so.max_packets = 24;
    so.max_attachments = 4;
    so.connect_timeout_ms = 2;
    so.upgrade_timeout_ms = 2;
    io = crest_sio_new(app, ps, &so);
    if (io == NULL || (nsp_root = crest_sio_of(io, "/")) == NULL ||
        (nsp_admin = crest_sio_of(io, "/admin")) == NULL)
        abort();
    static const struct {
        const char *name;
        crest_sio_event_cb cb;
    } events[] = {{"echo", on_echo}, {"emit", on_emit},   {"ask", on_ask},
                  {"join", on_join}, {"leave", on_leave}, {"to", on_to},
                  {"all", on_all},   {"bye", on_bye},     {"later", on_later}};
    crest_sio_nsp_t *nsps[] = {nsp_root, nsp_admin};
    for (size_t k = 0; k < 2; k++) {
        crest_sio_on_connect(nsps[k], on_connect, NULL);
        crest_sio_on_disconnect(nsps[k], on_disconnect, NULL);
        for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++)
            if (crest_sio_on(nsps[k], events[i].name, events[i].cb, NULL) != 0)
                abort();
    }
    if (crest_app_use(app, "/", count_mw, NULL) != 0 ||
        crest_app_on_done(app, count_done, NULL) != 0)
        abort();
    print = getenv("FUZZ_SIO_PRINT") != NULL;
    signal(SIGPIPE, SIG_IGN); /* the client closes its end while crest writes (crest_app_run's) */
    /* One loop thread, listed in the runtime as crest_app_run's would be (pub/sub finds its
     * loops there, Engine.IO ids name their loop's index). */
    app->rt.nthreads = 1;
    app->rt.loops = calloc(1, sizeof(crest_loop_t));
    app->hloops = calloc(1, sizeof(*app->hloops));
    if (app->rt.loops == NULL || app->hloops == NULL)
        abort();
    loop = &app->rt.loops[0];
    if (crest__loop_init(loop, &app->rt, 0) != 0)
        abort();
    loop->upper = &app->hloops[0];
    if (crest__conn_loop_start(loop) != 0) /* no listener: listen_fd is -1 */
        abort();
    app->rt.mem.limit = 4 * 1024 * 1024;
    crest__http_date_refresh(loop);
}

/* core's timer dispatch, its write deadline simplified (as fuzz_h1's). */
static void on_conn_timer(crest__wheel_node_t *node) {
    crest__conn_t *c = CREST__CONTAINER_OF(node, crest__conn_t, timer);
    if (c->flags & (CONN_LINGERING | CONN_CLOSING) ||
        (c->tx != NULL && (c->proto->flags & CREST__PROTO_WRITE_DEADLINE)))
        crest__conn_close(c);
    else
        c->proto->on_timer(c);
}

static int armed(crest__wheel_node_t *n) {
    crest__wheel_t *w = &loop->wheel;
    for (size_t i = 0; i < CREST__WHEEL_SLOTS; i++)
        for (crest__wheel_node_t *x = w->slots[i].next; x != &w->slots[i]; x = x->next)
            if (x == n)
                return 1;
    return 0;
}

/* Every deadline on the wheel comes now (those armed at this moment, once each): a callback may
 * disarm others or free what holds them, so each is looked up again before it fires. */
static void fire_wheel(void) {
    crest__wheel_t *w = &loop->wheel;
    crest__wheel_node_t *due[64];
    size_t n = 0;
    for (size_t i = 0; i < CREST__WHEEL_SLOTS; i++)
        for (crest__wheel_node_t *x = w->slots[i].next; x != &w->slots[i] && n < 64; x = x->next)
            due[n++] = x;
    for (size_t i = 0; i < n; i++)
        if (armed(due[i])) {
            crest__wheel_disarm(w, due[i]);
            due[i]->cb(due[i]);
        }
}

/* Let the loop's clock pass the short deadlines (connect, upgrade: 2 ms). */
static void wait_ms(uint64_t ms) {
    uint64_t t = uv_now(&loop->uv);
    for (int i = 0; i < 1000000 && uv_now(&loop->uv) < t + ms; i++)
        uv_update_time(&loop->uv);
}

/* ---- the client's connections ---- */

enum { C_GET, C_POST, C_WS, C_OTHER, NCONN };

/* A connection as the client sees it. c is only touched while its socket has not been seen
 * closed: crest closes the socket when it closes the connection and frees the connection in a
 * later loop turn, so a client end that read no EOF yet has a live connection behind it. */
typedef struct {
    crest__conn_t *c;
    int peer;
    crest_buf_t got; /* what crest sent (kept on the handshake's connection until the sid) */
    int keep;
} client_t;

static client_t cl[NCONN];
static size_t piece; /* bytes per read, 0: each step at once */

static void client_drop(client_t *k) {
    if (k->c == NULL)
        return;
    close(k->peer);
    k->c = NULL;
    crest_buf_free(&k->got);
}

static void drain_one(client_t *k) {
    if (k->c == NULL)
        return;
    char buf[65536];
    ssize_t n;
    while ((n = read(k->peer, buf, sizeof(buf))) > 0) {
        if (print)
            fwrite(buf, 1, (size_t)n, stdout);
        if (k->keep)
            crest_buf_append(&k->got, buf, (size_t)n);
    }
    if (n == 0)
        client_drop(k); /* crest closed it (or shut its side and lingers): the client closes */
}

/* Run the loop: writes complete, posted work and zero-delay timers run, the client reads. */
static void turn(void) {
    for (int i = 0; i < 4; i++) {
        uv_run(&loop->uv, UV_RUN_NOWAIT);
        for (int k = 0; k < NCONN; k++)
            drain_one(&cl[k]);
    }
}

static int stopped(const crest__conn_t *c) {
    return (c->flags & (CONN_CLOSING | CONN_LINGERING | CONN_CLOSE_AFTER_WRITE)) != 0;
}

/* The client's connection k, opened when it has none or the one it has takes no more. */
static client_t *client_get(int k) {
    client_t *x = &cl[k];
    if (x->c != NULL && stopped(x->c))
        client_drop(x);
    if (x->c != NULL)
        return x;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    int sndbuf = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    crest__conn_t *c = calloc(1, sizeof(*c) + app->rt.hooks->conn_extra);
    if (c == NULL)
        abort();
    uv_tcp_init(&loop->uv, &c->tcp);
    if (uv_tcp_open(&c->tcp, sv[0]) != 0)
        abort();
    crest__count(&loop->open_conns, 1);
    atomic_fetch_add(&app->rt.conns, 1);
    c->timer.cb = on_conn_timer;
    crest__h1_open(c);
    /* The input is handed to the protocol directly (in reads of `piece` bytes), but crest reads
     * the socket too, as it does a client's: it sees the client close its end. */
    c->flags |= CONN_READ_PAUSED;
    crest__conn_reading(c, 1);
    x->c = c;
    x->peer = sv[1];
    return x;
}

/* Send bytes on the client's connection, in reads of `piece` bytes, while crest reads; what it
 * will not take (it stopped reading and the loop did not change that) is dropped. */
static void send_on(client_t *k, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t off = 0; off < n;) {
        for (int i = 0; i < 3 && k->c != NULL && !stopped(k->c) && (k->c->flags & CONN_READ_PAUSED);
             i++) {
            if (i > 0)
                crest__loop_fire_timers(loop);
            turn();
        }
        if (k->c == NULL || stopped(k->c) || (k->c->flags & CONN_READ_PAUSED))
            return;
        size_t len = piece == 0 || piece > n - off ? n - off : piece;
        char *copy = malloc(len ? len : 1); /* exactly the read: ASan sees an overread */
        if (copy == NULL)
            abort();
        memcpy(copy, b + off, len);
        k->c->proto->on_data(k->c, copy, len);
        free(copy);
        off += len;
        turn();
    }
}

/* ---- the steps ---- */

static char sid[32];

static void request(int k, const char *method, const char *transport, int with_sid,
                    const char *extra, const void *body, size_t body_len, int has_body) {
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_printf(&b, "%s /socket.io/?EIO=4&transport=%s%s%s HTTP/1.1\r\nHost: fuzz\r\n%s",
                     method, transport, with_sid ? "&sid=" : "", with_sid ? sid : "", extra);
    if (has_body)
        crest_buf_printf(&b, "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: %zu\r\n",
                         body_len);
    crest_buf_puts(&b, "\r\n");
    crest_buf_append(&b, body, body_len);
    if (b.err)
        abort();
    send_on(client_get(k), b.ptr, b.len);
    crest_buf_free(&b);
}

static const char ws_headers[] = "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 "Sec-WebSocket-Version: 13\r\n";

/* A masked client frame (FIN set) of opcode op; the mask key is zero: the payload reads as is. */
static void frame(int op, const uint8_t *p, size_t n) {
    client_t *k = &cl[C_WS];
    if (k->c == NULL)
        return;
    crest_buf_t b = CREST_BUF_INIT;
    uint8_t h[14] = {(uint8_t)(0x80 | op)};
    size_t hl;
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
        hl = 2;
    } else if (n < 65536) {
        h[1] = 0x80 | 126, h[2] = (uint8_t)(n >> 8), h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    memset(h + hl, 0, 4);
    crest_buf_append(&b, h, hl + 4);
    crest_buf_append(&b, p, n);
    if (b.err)
        abort();
    send_on(k, b.ptr, b.len);
    crest_buf_free(&b);
}

static void time_passes(int what) {
    if (what & 1)
        wait_ms(3);
    if (what & 2)
        fire_wheel();
    turn();
    if (what & 4)
        crest__loop_fire_timers(loop);
    turn();
}

static void step(const uint8_t *p, size_t n) {
    if (n == 0)
        return;
    uint8_t op = p[0];
    p++, n--;
    switch (op) {
    case 'P':
        request(C_POST, "POST", "polling", 1, "", p, n, 1);
        break;
    case 'G':
        request(C_GET, "GET", "polling", 1, "", NULL, 0, 0);
        break;
    case 'g':
        client_drop(&cl[C_OTHER]);
        request(C_OTHER, "GET", "polling", 1, "", NULL, 0, 0);
        break;
    case 'W':
        client_drop(&cl[C_WS]);
        request(C_WS, "GET", "websocket", n == 0, ws_headers, NULL, 0, 0);
        break;
    case 'f':
    case 'b':
    case 'c':
        frame(op == 'f' ? 1 : op == 'b' ? 2 : 8, p, n);
        break;
    case 'F':
        if (cl[C_WS].c != NULL)
            send_on(&cl[C_WS], p, n);
        break;
    case 'H': {
        crest_buf_t b = CREST_BUF_INIT;
        for (size_t i = 0; i < n; i++)
            if (p[i] == '@')
                crest_buf_puts(&b, sid);
            else
                crest_buf_append(&b, p + i, 1);
        if (b.err)
            abort();
        client_drop(&cl[C_OTHER]);
        send_on(client_get(C_OTHER), b.ptr, b.len);
        crest_buf_free(&b);
        break;
    }
    case 'T':
        time_passes(n > 0 ? p[0] : 7);
        break;
    case 'X':
        client_drop(&cl[n > 0 ? p[0] % NCONN : 0]);
        turn();
        break;
    default:
        break;
    }
}

/* The handshake: a GET without a sid (sent whole); its answer is the open packet
 * "0{"sid":"...",...}". Without one (the loop's clock fired a deadline of a slow run) the steps
 * go on with an unknown sid. */
static void handshake(void) {
    client_t *k = client_get(C_GET);
    k->keep = 1;
    size_t was = piece;
    piece = 0;
    request(C_GET, "GET", "polling", 0, "", NULL, 0, 0);
    piece = was;
    turn();
    memcpy(sid, "unknown", 8);
    const char *at = k->got.ptr ? memmem(k->got.ptr, k->got.len, "\"sid\":\"", 7) : NULL;
    if (at != NULL && k->got.ptr + k->got.len - at >= 7 + 20) {
        memcpy(sid, at + 7, 20);
        sid[20] = '\0';
    }
    k->keep = 0;
    crest_buf_free(&k->got);
}

/* A connection still open once the client has gone and every deadline came (it waits for a
 * request body nobody reads: its deadline is met while the clock stands still): closed, as
 * fuzz_h1 closes its connection at the end. */
static void close_conn(uv_handle_t *h, void *arg) {
    (void)arg;
    if (h->type == UV_TCP && !uv_is_closing(h))
        crest__conn_close(CREST__CONTAINER_OF((uv_tcp_t *)h, crest__conn_t, tcp));
}

static int settled(void) {
    crest_sio_stats_t st;
    crest_sio_stats(io, &st);
    return st.sessions == 0 && st.sockets == 0 && atomic_load(&app->rt.conns) == 0 &&
           loop->afters == NULL && acks_out == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (app == NULL)
        setup();
    if (size < 1)
        return 0;
    piece = (size_t)data[0] * 3;
    data++, size--;
    handshake();
    static const char sep[] = "\n~";
    while (size > 0) {
        const uint8_t *end = memmem(data, size, sep, 2);
        size_t n = end ? (size_t)(end - data) : size;
        step(data, n);
        n += end ? 2 : 0;
        data += n, size -= n;
    }
    /* The client goes away: its connections close, crest sees them end; what is left of the
     * session goes at its heartbeat's deadline (a ping, then no pong). */
    for (int k = 0; k < NCONN; k++)
        client_drop(&cl[k]);
    turn();
    for (int i = 0; i < 16 && !settled(); i++) {
        fire_wheel();
        turn();
        crest__loop_fire_timers(loop);
        turn();
    }
    if (atomic_load(&app->rt.conns) != 0) {
        uv_walk(&loop->uv, close_conn, NULL);
        turn();
    }
    /* A session or socket not closed, an ack never called back, a request not finished, a
     * connection not freed, a timer left or bytes still charged to the memory budget: something
     * of this input's outlived it. */
    crest_pubsub_stats_t pst;
    crest_pubsub_stats(ps, &pst);
    if (!settled() || live != 0 || socks_live != 0 || atomic_load(&app->rt.mem.used) != 0 ||
        pst.queued_messages != 0) {
        crest_sio_stats_t st;
        crest_sio_stats(io, &st);
        fprintf(stderr,
                "left behind: sessions %llu sockets %llu conns %lld timers %d acks %d "
                "requests %d handler sockets %d budget %lld queued %llu\n",
                (unsigned long long)st.sessions, (unsigned long long)st.sockets,
                (long long)atomic_load(&app->rt.conns), loop->afters != NULL, acks_out, live,
                socks_live, (long long)atomic_load(&app->rt.mem.used),
                (unsigned long long)pst.queued_messages);
        abort();
    }
    return 0;
}
