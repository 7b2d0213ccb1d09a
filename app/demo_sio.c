/* The demo's Socket.IO chat (CONTRACT.md "Socket.IO"), written only against the public header:
 * the same rooms as a Node.js socket.io server would serve them, for unchanged socket.io-client
 * front ends. Rooms are Socket.IO rooms (pub/sub topics of the demo's hub underneath), so a
 * message is encoded once however many members, threads or transports it reaches. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo_sio.h"

#define MAX_FIELD 64 /* longest room or name, in bytes, as the WebSocket chat */

struct demo_sio_s {
    crest_sio_t *io;
};

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A room argument: a non-empty string of at most MAX_FIELD bytes, or NULL. */
static const char *room_arg(const crest_json_t *v) {
    crest_str_t s = crest_json_str(v);
    return s.ptr && s.len > 0 && s.len <= MAX_FIELD ? s.ptr : NULL;
}

static const char *on_connect(crest_sio_socket_t *s, const crest_json_t *auth, void *data) {
    (void)data;
    crest_str_t name = crest_json_str(crest_json_get(auth, "name"));
    if (name.ptr == NULL || name.len == 0)
        name = (crest_str_t){"anonymous", 9};
    if (name.len > MAX_FIELD)
        return "name too long";
    char *copy = malloc(name.len + 1);
    if (copy == NULL)
        return "out of memory";
    memcpy(copy, name.ptr, name.len + 1);
    *crest_sio_data(s) = copy;
    return NULL;
}

static void on_disconnect(crest_sio_socket_t *s, const char *reason, void *data) {
    (void)reason;
    (void)data;
    free(*crest_sio_data(s));
}

static void on_join(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    const char *room = room_arg(crest_sio_event_arg(ev, 0));
    if (room == NULL || crest_sio_join(s, room) != 0)
        return;
    crest_sio_args_t a;
    crest_sio_args_init(&a);
    char mem[160];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "{\"room\":");
    crest_buf_json_str(&b, room, strlen(room));
    crest_buf_puts(&b, ",\"ok\":true}");
    if (!b.err)
        crest_sio_args_json(&a, b.ptr, b.len);
    crest_sio_ack(s, crest_sio_event_ack_id(ev), &a);
    crest_buf_free(&b);
    crest_sio_args_free(&a);
}

static void on_leave(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    const char *room = room_arg(crest_sio_event_arg(ev, 0));
    if (room != NULL)
        crest_sio_leave(s, room);
}

static void on_chat(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    const crest_json_t *m = crest_sio_event_arg(ev, 0);
    const char *room = room_arg(crest_json_get(m, "room"));
    crest_str_t text = crest_json_str(crest_json_get(m, "text"));
    if (room == NULL || text.ptr == NULL || !crest_sio_in(s, room))
        return; /* members only */
    const char *name = *crest_sio_data(s);
    char mem[512]; /* a chat line fits: no allocation per message */
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "{\"room\":");
    crest_buf_json_str(&b, room, strlen(room));
    crest_buf_puts(&b, ",\"name\":");
    crest_buf_json_str(&b, name, strlen(name));
    crest_buf_puts(&b, ",\"text\":");
    crest_buf_json_str(&b, text.ptr, text.len);
    crest_buf_printf(&b, ",\"ts\":%llu}", (unsigned long long)now_ms());
    crest_sio_args_t a;
    crest_sio_args_init(&a);
    if (!b.err)
        crest_sio_args_json(&a, b.ptr, b.len);
    crest_sio_to_t to = {&room, 1, NULL, 0};
    crest_sio_broadcast(crest_sio_socket_nsp(s), &to, "chat", &a);
    crest_sio_args_free(&a);
    crest_buf_free(&b);
}

static void on_blob(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data) {
    (void)data;
    const char *room = room_arg(crest_sio_event_arg(ev, 0));
    crest_str_t bytes;
    if (room == NULL || crest_sio_event_bin(ev, crest_sio_event_arg(ev, 1), &bytes) != 0 ||
        !crest_sio_in(s, room))
        return;
    const char *name = *crest_sio_data(s);
    crest_sio_args_t a;
    crest_sio_args_init(&a);
    crest_sio_args_str(&a, name, strlen(name));
    crest_sio_args_bin(&a, bytes.ptr, bytes.len);
    crest_sio_to_t to = {&room, 1, NULL, 0};
    crest_sio_broadcast(crest_sio_socket_nsp(s), &to, "blob", &a);
    crest_sio_args_free(&a);
}

int demo_sio_routes(crest_app_t *app, crest_pubsub_t *ps, demo_sio_t **out) {
    demo_sio_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return CREST_ENOMEM;
    crest_sio_opts_t o;
    crest_sio_opts_default(&o);
    d->io = crest_sio_new(app, ps, &o);
    crest_sio_nsp_t *n = d->io ? crest_sio_of(d->io, "/") : NULL;
    if (n == NULL || crest_sio_on_connect(n, on_connect, d) != 0 ||
        crest_sio_on_disconnect(n, on_disconnect, d) != 0 ||
        crest_sio_on(n, "join", on_join, d) != 0 || crest_sio_on(n, "leave", on_leave, d) != 0 ||
        crest_sio_on(n, "chat", on_chat, d) != 0 || crest_sio_on(n, "blob", on_blob, d) != 0) {
        demo_sio_free(d);
        return CREST_ENOMEM;
    }
    *out = d;
    return 0;
}

void demo_sio_free(demo_sio_t *d) {
    if (d == NULL)
        return;
    crest_sio_free(d->io);
    free(d);
}
