/* Socket.IO test app (tests/it/test_sio.py, driven by npm socket.io-client through
 * tests/it/sio_client.js). tests/it/sio_ref.js is the same app on Node.js socket.io 4: every case
 * passes against both. Same flags as the demo, plus --fast-ping (ping every 300 ms, 200 ms to
 * answer). Socket.IO at /socket.io/ with max_payload 100000.
 *
 * Namespace "/": handshake auth {name}. Events:
 *   echo (args...)      -> ack with the same arguments (byte strings among them stay bytes)
 *   bin (bytes)         -> the same as echo
 *   join (room)         -> join, ack {room, ok: true}
 *   leave (room)        -> leave (ack {room, ok} when the client asks for one)
 *   say {room, text}    -> "chat" {room, name, text} to every member of room, sender included
 *   say-others          -> the same without the sender
 *   ask (x)             -> "question" (x) asking the client for an ack; its answer comes back
 *                          to the client as "answer" (the ack's arguments)
 *   bye                 -> the server disconnects the socket
 *   count               -> ack with the sockets of "/" connected minus disconnected
 * Namespace "/admin": auth {token: "secret"} or "not authorized"; whoami -> ack "/admin".
 * GET /sio-stats: crest_sio_stats() as JSON. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../app/cli.h"
#include "crest/sio.h"

static crest_sio_nsp_t *root_nsp;
static _Atomic int64_t connected; /* sockets of "/" (any loop thread) */

/* Write v as JSON text: the app's echo sends back what came, and crest hands it over parsed. */
static void write_json(crest_buf_t *b, const crest_json_t *v) {
    switch (crest_json_type(v)) {
    case CREST_JSON_BOOL: {
        int t = 0;
        crest_json_bool(v, &t);
        crest_buf_puts(b, t ? "true" : "false");
        break;
    }
    case CREST_JSON_NUMBER: {
        double d = 0;
        crest_json_num(v, &d);
        crest_buf_printf(b, "%.17g", d);
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
        for (const crest_json_t *it = crest_json_first(v); it; it = crest_json_next(it)) {
            if (it != crest_json_first(v))
                crest_buf_puts(b, ",");
            if (obj) {
                crest_str_t k = crest_json_key(it);
                crest_buf_json_str(b, k.ptr, k.len);
                crest_buf_puts(b, ":");
            }
            write_json(b, it);
        }
        crest_buf_puts(b, obj ? "}" : "]");
        break;
    }
    default:
        crest_buf_puts(b, "null");
    }
}

/* The event's arguments as an argument list: top-level binary placeholders become bytes again. */
static void args_of(const crest_sio_event_t *ev, crest_sio_args_t *a) {
    crest_sio_args_init(a);
    for (const crest_json_t *it = crest_json_first(crest_sio_event_args(ev)); it;
         it = crest_json_next(it)) {
        crest_str_t bytes;
        if (crest_sio_event_bin(ev, it, &bytes) == 0) {
            crest_sio_args_bin(a, bytes.ptr, bytes.len);
        } else {
            crest_buf_t b = CREST_BUF_INIT;
            write_json(&b, it);
            if (b.err)
                a->err = b.err;
            else
                crest_sio_args_json(a, b.ptr, b.len);
            crest_buf_free(&b);
        }
    }
}

static void ack_json(crest_sio_socket_t *s, int64_t id, const char *json, size_t len) {
    crest_sio_args_t a;
    crest_sio_args_init(&a);
    crest_sio_args_json(&a, json, len);
    crest_sio_ack(s, id, &a);
    crest_sio_args_free(&a);
}

static const char *on_connect(crest_sio_socket_t *s, const crest_json_t *auth, void *data) {
    (void)data;
    crest_str_t name = crest_json_str(crest_json_get(auth, "name"));
    char *copy = malloc(name.len + 1);
    if (copy == NULL)
        return "out of memory";
    if (name.len > 0)
        memcpy(copy, name.ptr, name.len);
    copy[name.len] = '\0';
    *crest_sio_data(s) = copy;
    connected++;
    return NULL;
}

static void on_disconnect(crest_sio_socket_t *s, const char *reason, void *data) {
    (void)reason, (void)data;
    free(*crest_sio_data(s));
    connected--;
}

static void on_echo(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    crest_sio_args_t a;
    args_of(ev, &a);
    crest_sio_ack(s, crest_sio_event_ack_id(ev), &a);
    crest_sio_args_free(&a);
}

/* The room argument as a C string in `out`, or 0 when it is not a usable name. */
static int room_arg(const crest_json_t *v, char *out, size_t size) {
    crest_str_t r = crest_json_str(v);
    if (r.len == 0 || r.len >= size || memchr(r.ptr, '\0', r.len) != NULL)
        return 0;
    memcpy(out, r.ptr, r.len);
    out[r.len] = '\0';
    return 1;
}

static void ack_room(crest_sio_socket_t *s, crest_sio_event_t *ev, const char *room, int ok) {
    if (crest_sio_event_ack_id(ev) < 0)
        return;
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_puts(&b, "{\"room\":");
    crest_buf_json_str(&b, room, strlen(room));
    crest_buf_puts(&b, ok ? ",\"ok\":true}" : ",\"ok\":false}");
    if (!b.err)
        ack_json(s, crest_sio_event_ack_id(ev), b.ptr, b.len);
    crest_buf_free(&b);
}

static void on_join(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    char room[256];
    if (room_arg(crest_sio_event_arg(ev, 0), room, sizeof(room)))
        ack_room(s, ev, room, crest_sio_join(s, room) == 0);
}

static void on_leave(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    char room[256];
    if (room_arg(crest_sio_event_arg(ev, 0), room, sizeof(room)))
        ack_room(s, ev, room, crest_sio_leave(s, room) == 0);
}

/* say and say-others: data is non-NULL for the latter (leave the sender out). */
static void on_say(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    const crest_json_t *msg = crest_sio_event_arg(ev, 0);
    char room[256];
    if (!room_arg(crest_json_get(msg, "room"), room, sizeof(room)))
        return;
    crest_str_t text = crest_json_str(crest_json_get(msg, "text"));
    const char *name = *crest_sio_data(s);
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_puts(&b, "{\"room\":");
    crest_buf_json_str(&b, room, strlen(room));
    crest_buf_puts(&b, ",\"name\":");
    crest_buf_json_str(&b, name, strlen(name));
    crest_buf_puts(&b, ",\"text\":");
    crest_buf_json_str(&b, text.ptr ? text.ptr : "", text.len);
    crest_buf_puts(&b, "}");
    crest_sio_args_t a;
    crest_sio_args_init(&a);
    if (!b.err)
        crest_sio_args_json(&a, b.ptr, b.len);
    const char *rooms[] = {room};
    const char *except[] = {crest_sio_id(s)};
    crest_sio_to_t to = {rooms, 1, except, data != NULL ? 1 : 0};
    crest_sio_broadcast(crest_sio_socket_nsp(s), &to, "chat", &a);
    crest_sio_args_free(&a);
    crest_buf_free(&b);
}

static void on_answer(crest_sio_socket_t *s, int status, crest_sio_event_t *ev, void *arg) {
    (void)arg;
    if (status != 0)
        return;
    crest_sio_args_t a;
    args_of(ev, &a);
    crest_sio_emit(s, "answer", &a);
    crest_sio_args_free(&a);
}

static void on_ask(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    crest_sio_args_t a;
    args_of(ev, &a);
    crest_sio_emit_ack(s, "question", &a, 5000, on_answer, NULL);
    crest_sio_args_free(&a);
}

static void on_bye(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)ev, (void)data;
    crest_sio_disconnect(s);
}

static void on_count(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    char n[32];
    int len = snprintf(n, sizeof(n), "%" PRId64, (int64_t)connected);
    ack_json(s, crest_sio_event_ack_id(ev), n, (size_t)len);
}

static const char *on_admin_connect(crest_sio_socket_t *s, const crest_json_t *auth, void *data) {
    (void)s, (void)data;
    crest_str_t t = crest_json_str(crest_json_get(auth, "token"));
    return t.len == 6 && memcmp(t.ptr, "secret", 6) == 0 ? NULL : "not authorized";
}

static void on_whoami(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    ack_json(s, crest_sio_event_ack_id(ev), "\"/admin\"", 8);
}

static int on_stats(crest_req_t *req, void *data) {
    crest_sio_stats_t st;
    crest_sio_stats(data, &st);
    char body[512];
    int n = snprintf(body, sizeof(body),
                     "{\"sessions\":%" PRIu64 ",\"sockets\":%" PRIu64 ",\"opened\":%" PRIu64
                     ",\"moved\":%" PRIu64 ",\"hopped\":%" PRIu64 ",\"ping_timeouts\":%" PRIu64
                     ",\"bad_packets\":%" PRIu64 "}",
                     st.sessions, st.sockets, st.opened, st.moved, st.hopped, st.ping_timeouts,
                     st.bad_packets);
    return crest_res_json(req, 200, body, (size_t)n);
}

int main(int argc, char **argv) {
    int fast = 0, n = 0;
    for (int i = 0; i < argc; i++) /* --fast-ping is this app's own flag: take it out */
        if (strcmp(argv[i], "--fast-ping") == 0)
            fast = 1;
        else
            argv[n++] = argv[i];
    cli_opts_t opts;
    int rc = cli_parse(n, argv, 1, "sio_app", &opts);
    if (rc != CLI_RUN)
        return rc == CLI_EXIT_OK ? 0 : 2;
    crest_app_t *app = crest_app_new(&opts.app);
    crest_pubsub_t *ps = app ? crest_pubsub_new(app) : NULL;
    crest_sio_opts_t so;
    crest_sio_opts_default(&so);
    so.path = "/socket.io/";
    so.max_payload = 100000;
    if (fast) {
        so.ping_interval_ms = 300;
        so.ping_timeout_ms = 200;
    }
    crest_sio_t *io = ps ? crest_sio_new(app, ps, &so) : NULL;
    root_nsp = io ? crest_sio_of(io, "/") : NULL;
    crest_sio_nsp_t *admin = io ? crest_sio_of(io, "/admin") : NULL;
    rc = root_nsp && admin ? 0 : CREST_ENOMEM;
    rc = rc ? rc : crest_sio_on_connect(root_nsp, on_connect, NULL);
    rc = rc ? rc : crest_sio_on_disconnect(root_nsp, on_disconnect, NULL);
    rc = rc ? rc : crest_sio_on(root_nsp, "echo", on_echo, NULL);
    rc = rc ? rc : crest_sio_on(root_nsp, "bin", on_echo, NULL);
    rc = rc ? rc : crest_sio_on(root_nsp, "join", on_join, NULL);
    rc = rc ? rc : crest_sio_on(root_nsp, "leave", on_leave, NULL);
    rc = rc ? rc : crest_sio_on(root_nsp, "say", on_say, NULL);
    rc = rc ? rc : crest_sio_on(root_nsp, "say-others", on_say, "others");
    rc = rc ? rc : crest_sio_on(root_nsp, "ask", on_ask, NULL);
    rc = rc ? rc : crest_sio_on(root_nsp, "bye", on_bye, NULL);
    rc = rc ? rc : crest_sio_on(root_nsp, "count", on_count, NULL);
    rc = rc ? rc : crest_sio_on_connect(admin, on_admin_connect, NULL);
    rc = rc ? rc : crest_sio_on(admin, "whoami", on_whoami, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/sio-stats", on_stats, io);
    if (rc != 0) {
        fprintf(stderr, "sio_app: %s\n", crest_strerror(rc));
        return 1;
    }
    rc = cli_serve(app, &opts);
    crest_sio_free(io);
    crest_pubsub_free(ps);
    crest_app_free(app);
    return rc;
}
