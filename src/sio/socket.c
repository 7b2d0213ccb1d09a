/* Socket.IO 5 over the Engine.IO sessions of engine.c: namespaces, sockets, events and acks,
 * binary attachments, rooms and broadcasts, and the public API of crest/sio.h.
 *
 * Rooms are pub/sub topics of the server's hub. Every socket is subscribed to its namespace's
 * topic, to the topic of its own id (so that a socket can be reached by id from any thread) and
 * to the topic of each room it joins. A broadcast to exactly one room, with no exceptions, goes to
 * that room's topic; any other goes to the namespace's topic with the rooms and exceptions
 * attached, and each socket checks them against its own rooms, so that a socket in several of
 * the rooms gets the message once. Either way the message is encoded once, as the WebSocket
 * frames and as the polling payload, in one block that every recipient on every thread shares.
 *
 * Topic names say how long the namespace is ("sio:<len>:<nsp><room>"), so no room or namespace
 * name can make two of them collide. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/eio.h"
#include "codec/ws_frame.h"
#include "sio/sio.h"
#include "json/jsonv.h"

/* A server -> client emit waiting for the client's ack. Owner: its socket. */
typedef struct ack_s {
    struct ack_s *next;
    int64_t id;
    crest_sio_ack_cb cb;
    void *arg;
    uint64_t timer; /* crest_loop_timer id, 0 when none */
    crest_sio_socket_t *s;
} ack_t;

struct crest_sio_socket_s {
    void *data;
    crest__psub_t sub;
    crest__eio_t *e;
    crest_sio_nsp_t *nsp;
    struct crest_sio_socket_s *next; /* in its session's list */
    char **rooms;
    uint32_t nrooms;
    uint32_t cap_rooms;
    ack_t *acks;
    int64_t next_ack;
    uint8_t leaving; /* disconnect asked (crest_sio_disconnect): on_disconnect is posted */
    /* Inside the connect handler, what it sends waits here (a polling payload on the stack of
     * on_connect_packet), to follow the connect answer; NULL otherwise. */
    crest_buf_t *early;
    char id[CREST__SIO_ID_LEN + 1];
};

/* A BINARY_EVENT or BINARY_ACK waiting for its attachments. Owner: its session. */
typedef struct crest__sio_part_s {
    int type;
    int64_t id;
    char *nsp;
    size_t nsp_len;
    char *json;
    size_t json_len;
    uint32_t want;
    uint32_t have;
    crest_str_t *bins; /* each its own malloc'd copy */
} part_t;

struct crest_sio_event_s {
    const char *name;
    const cJSON *args;
    const crest_str_t *bins;
    uint32_t nbins;
    int64_t ack_id;
};

/* ---- options, server, namespaces ---- */

void crest_sio_opts_default(crest_sio_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->path = "/socket.io/";
    o->ping_interval_ms = 25000;
    o->ping_timeout_ms = 20000;
    o->upgrade_timeout_ms = 10000;
    o->connect_timeout_ms = 45000;
    o->max_payload = 1000000;
    o->max_buffered = 1024 * 1024;
    o->max_packets = 1024;
    o->max_attachments = 10;
    o->polling = 1;
    o->websocket = 1;
    o->cluster_key = "socket.io";
}

static void nsp_free(crest_sio_nsp_t *n) {
    for (size_t i = 0; i < n->nhandlers; i++)
        free(n->handlers[i].name);
    free(n->handlers);
    free(n->name);
    free(n->topic);
    free(n);
}

static void write_metrics(const crest_app_t *app, void *arg, crest_buf_t *b);

crest_sio_t *crest_sio_new(crest_app_t *app, crest_pubsub_t *ps, const crest_sio_opts_t *opts) {
    crest_sio_opts_t o;
    if (opts)
        o = *opts;
    else
        crest_sio_opts_default(&o);
    if (app == NULL || ps == NULL || o.path == NULL || o.path[0] != '/' ||
        o.ping_interval_ms == 0 || o.ping_timeout_ms == 0 || o.upgrade_timeout_ms == 0 ||
        o.connect_timeout_ms == 0 || o.max_payload == 0 || o.max_buffered == 0 ||
        o.max_packets == 0 || (!o.polling && !o.websocket))
        return NULL;
    crest_sio_t *io = calloc(1, sizeof(*io));
    if (io == NULL)
        return NULL;
    io->app = app;
    io->rt = &app->rt;
    io->ps = ps;
    io->opts = o;
    io->path = strdup(o.path);
    io->opts.path = io->path;
    io->key = strdup(o.cluster_key ? o.cluster_key : "socket.io");
    io->opts.cluster_key = io->key;
    /* With a Redis bridge on the hub, this server joins the cluster: a uid of its own, as the
     * adapter's (six URL-safe characters). */
    io->bridge = crest__ps_bridge(ps);
    io->uid_len = 6;
    if (crest__sio_random_id(io->uid, io->uid_len, -1) != 0)
        memset(io->uid, 'x', io->uid_len); /* still ours alone in practice: no randomness now */
    crest_ws_opts_default(&io->ws_opts);
    io->ws_opts.on_open = crest__eio_ws_open;
    io->ws_opts.on_message = crest__eio_ws_message;
    io->ws_opts.on_close = crest__eio_ws_close;
    io->ws_opts.data = io;
    io->ws_opts.max_message = o.max_payload;
    io->ws_opts.max_buffered = o.max_buffered;
    io->ws_opts.slow_policy = CREST_WS_SLOW_CLOSE;
    io->ws_opts.ping_interval_ms = 0; /* Engine.IO's heartbeat does it */
    /* POST bodies stream, with no limit of the route's own: the handler refuses one over
     * max_payload as it arrives and closes its session too (crest__eio_http). */
    if (io->path == NULL || io->key == NULL || crest_sio_of(io, "/") == NULL ||
        crest_app_route(app, "GET", io->path, crest__eio_http, io) != 0 ||
        crest_app_route_stream(app, "POST", io->path, crest__eio_http, io, UINT64_MAX) != 0 ||
        crest__metrics_add(app, write_metrics, io) != 0) {
        crest_sio_free(io);
        return NULL;
    }
    return io;
}

void crest_sio_free(crest_sio_t *io) {
    if (io == NULL)
        return;
    while (io->nsps) {
        crest_sio_nsp_t *n = io->nsps;
        io->nsps = n->next;
        if (io->bridge != NULL) /* no message from Redis may reach a namespace that is gone */
            io->bridge->punsubscribe(io->bridge, n);
        nsp_free(n);
    }
    free(io->path);
    free(io->key);
    free(io);
}

static crest_sio_nsp_t *nsp_find(const crest_sio_t *io, const char *name, size_t len) {
    for (crest_sio_nsp_t *n = io->nsps; n != NULL; n = n->next)
        if (n->len == len && memcmp(n->name, name, len) == 0)
            return n;
    return NULL;
}

/* "sio:<len>:<nsp><room>" (room may be empty: the namespace's own topic). */
static char *topic_of(const crest_sio_nsp_t *n, const char *room, size_t room_len) {
    size_t cap = 32 + n->len + room_len;
    char *t = malloc(cap);
    if (t)
        snprintf(t, cap, "sio:%zu:%s%.*s", n->len, n->name, (int)room_len, room);
    return t;
}

crest_sio_nsp_t *crest_sio_of(crest_sio_t *io, const char *name) {
    if (name == NULL || name[0] != '/')
        return NULL;
    crest_sio_nsp_t *n = nsp_find(io, name, strlen(name));
    if (n != NULL)
        return n;
    n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->io = io;
    n->name = strdup(name);
    n->len = strlen(name);
    n->topic = n->name ? topic_of(n, "", 0) : NULL;
    if (n->topic == NULL || crest__sio_cluster_join(n) != 0) {
        nsp_free(n);
        return NULL;
    }
    n->next = io->nsps;
    io->nsps = n;
    return n;
}

int crest_sio_on_connect(crest_sio_nsp_t *nsp, crest_sio_connect_cb cb, void *data) {
    nsp->on_connect = cb;
    nsp->connect_data = data;
    return 0;
}

int crest_sio_on_disconnect(crest_sio_nsp_t *nsp, crest_sio_disconnect_cb cb, void *data) {
    nsp->on_disconnect = cb;
    nsp->disconnect_data = data;
    return 0;
}

int crest_sio_on(crest_sio_nsp_t *nsp, const char *name, crest_sio_event_cb cb, void *data) {
    if (name == NULL || name[0] == '\0')
        return CREST_EINVAL;
    for (size_t i = 0; i < nsp->nhandlers; i++)
        if (strcmp(nsp->handlers[i].name, name) == 0) {
            nsp->handlers[i].cb = cb;
            nsp->handlers[i].data = data;
            return 0;
        }
    crest__sio_handler_t *h = realloc(nsp->handlers, (nsp->nhandlers + 1) * sizeof(*h));
    if (h == NULL)
        return CREST_ENOMEM;
    nsp->handlers = h;
    char *copy = strdup(name);
    if (copy == NULL)
        return CREST_ENOMEM;
    h[nsp->nhandlers++] = (crest__sio_handler_t){copy, cb, data};
    return 0;
}

/* ---- argument lists ---- */

void crest_sio_args_init(crest_sio_args_t *a) {
    memset(a, 0, sizeof(*a));
}

static int args_sep(crest_sio_args_t *a) {
    if (a->json.len > 0)
        crest_buf_append(&a->json, ",", 1);
    return a->json.err;
}

static int args_done(crest_sio_args_t *a) {
    if (a->json.err || a->bins.err)
        a->err = CREST_ENOMEM;
    return a->err;
}

int crest_sio_args_json(crest_sio_args_t *a, const char *json, size_t len) {
    args_sep(a);
    crest_buf_append(&a->json, json, len);
    return args_done(a);
}

int crest_sio_args_str(crest_sio_args_t *a, const char *s, size_t len) {
    args_sep(a);
    crest_buf_json_str(&a->json, s, len);
    return args_done(a);
}

int crest_sio_args_bin(crest_sio_args_t *a, const void *data, size_t len) {
    args_sep(a);
    crest_buf_printf(&a->json, "{\"_placeholder\":true,\"num\":%u}", a->nbins);
    crest_buf_append(&a->bins, &len, sizeof(len));
    crest_buf_append(&a->bins, data, len);
    a->nbins++;
    return args_done(a);
}

void crest_sio_args_free(crest_sio_args_t *a) {
    crest_buf_free(&a->json);
    crest_buf_free(&a->bins);
    crest_sio_args_init(a);
}

/* The i-th byte string of a list (walking the length-prefixed records). */
static crest_str_t args_bin(const crest_sio_args_t *a, uint32_t i) {
    size_t off = 0, len = 0;
    for (uint32_t k = 0;; k++) {
        memcpy(&len, a->bins.ptr + off, sizeof(len));
        off += sizeof(len);
        if (k == i)
            return (crest_str_t){a->bins.ptr + off, len};
        off += len;
    }
}

/* ---- encoding ---- */

/* The Socket.IO packet (its text part) of an event or an ack: [name, args...] or [args...]. */
/* The packet's data, [name, args...] or [args...]. */
static void encode_data(crest_buf_t *b, const char *name, const crest_sio_args_t *a) {
    crest_buf_append(b, "[", 1);
    if (name)
        crest_buf_json_str(b, name, strlen(name));
    if (a && a->json.len > 0) {
        if (name)
            crest_buf_append(b, ",", 1);
        crest_buf_append(b, a->json.ptr, a->json.len);
    }
    crest_buf_append(b, "]", 1);
}

static int encode(crest_buf_t *b, int type, const crest_sio_nsp_t *n, int64_t id, const char *name,
                  const crest_sio_args_t *a) {
    uint32_t nbins = a ? a->nbins : 0;
    if (nbins > 0)
        type = type == CREST__SIO_ACK ? CREST__SIO_BINARY_ACK : CREST__SIO_BINARY_EVENT;
    crest__sio_head(b, type, nbins, n->name, n->len, id);
    encode_data(b, name, a);
    return b->err;
}

static int socket_gone(const crest_sio_socket_t *s) {
    return s->e == NULL || s->leaving;
}

/* Send one packet and its attachments to the socket's session. */
/* One Engine.IO MESSAGE to the socket's session, or, while the connect handler runs, to the
 * packets that follow the CONNECT answer. */
static int send_message(crest_sio_socket_t *s, const void *data, size_t len, int binary) {
    if (s->early != NULL)
        return crest__eio_append(s->early, CREST__EIO_MESSAGE, data, len, binary);
    return crest__eio_send(s->e, data, len, binary);
}

static int send_to(crest_sio_socket_t *s, int type, int64_t id, const char *name,
                   const crest_sio_args_t *a) {
    if (socket_gone(s))
        return CREST_EPIPE;
    if (a && a->err)
        return CREST_EINVAL;
    char mem[512];
    crest_buf_t b = CREST_BUF_ON(mem);
    int rc = encode(&b, type, s->nsp, id, name, a);
    if (rc == 0)
        rc = send_message(s, b.ptr, b.len, 0);
    for (uint32_t i = 0; rc == 0 && a && i < a->nbins; i++) {
        crest_str_t bin = args_bin(a, i);
        rc = send_message(s, bin.ptr, bin.len, 1);
    }
    crest_buf_free(&b);
    if (rc == 0)
        atomic_fetch_add_explicit(&s->nsp->io->packets_out, 1, memory_order_relaxed);
    return rc;
}

int crest_sio_emit(crest_sio_socket_t *s, const char *name, const crest_sio_args_t *args) {
    if (name == NULL || name[0] == '\0')
        return CREST_EINVAL;
    return send_to(s, CREST__SIO_EVENT, -1, name, args);
}

static void ack_unlink(crest_sio_socket_t *s, ack_t *k) {
    for (ack_t **pp = &s->acks; *pp != NULL; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            return;
        }
}

static void on_ack_timeout(crest_loop_t *loop, void *arg) {
    (void)loop;
    ack_t *k = arg;
    crest_sio_socket_t *s = k->s;
    ack_unlink(s, k);
    k->cb(s, CREST_ETIMEDOUT, NULL, k->arg);
    free(k);
}

int crest_sio_emit_ack(crest_sio_socket_t *s, const char *name, const crest_sio_args_t *args,
                       uint32_t timeout_ms, crest_sio_ack_cb cb, void *arg) {
    if (name == NULL || name[0] == '\0' || cb == NULL)
        return CREST_EINVAL;
    if (socket_gone(s))
        return CREST_EPIPE;
    ack_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return CREST_ENOMEM;
    k->id = s->next_ack++;
    k->cb = cb;
    k->arg = arg;
    k->s = s;
    int rc = send_to(s, CREST__SIO_EVENT, k->id, name, args);
    if (rc == 0 && timeout_ms > 0 &&
        (k->timer = crest_loop_timer(crest__eio_loop(s->e), timeout_ms, on_ack_timeout, k)) == 0)
        rc = CREST_ENOMEM;
    if (rc != 0) {
        free(k);
        return rc;
    }
    k->next = s->acks;
    s->acks = k;
    return 0;
}

int crest_sio_ack(crest_sio_socket_t *s, int64_t id, const crest_sio_args_t *args) {
    if (id < 0)
        return CREST_EINVAL;
    return send_to(s, CREST__SIO_ACK, id, NULL, args);
}

/* ---- broadcasts ---- */

/* What a broadcast carries besides its WebSocket frames (psmsg->extra): the polling payload's
 * length and packet count (4 bytes each, so that no recipient counts them), the payload, then
 * whether a filter follows (1 byte) and, if so, the rooms and the exceptions, each a count
 * (2 bytes) of names (2-byte length, bytes). */
static void put16(crest_buf_t *b, size_t v) {
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    crest_buf_append(b, x, 2);
}

static void put_names(crest_buf_t *b, const crest_str_t *names, size_t n) {
    put16(b, n);
    for (size_t i = 0; i < n; i++) {
        put16(b, names[i].len);
        crest_buf_append(b, names[i].ptr, names[i].len);
    }
}

/* Append one WebSocket frame (header and payload) to b; prefix is the Engine.IO type digit, or 0
 * for a binary attachment. */
static void put_frame(crest_buf_t *b, char prefix, const void *data, size_t len) {
    uint8_t hdr[CREST__WS_MAX_HEADER];
    size_t n = prefix ? len + 1 : len;
    size_t hlen = crest__ws_header(hdr, prefix ? CREST__WS_TEXT : CREST__WS_BINARY, 1, 0, n, NULL);
    crest_buf_append(b, hdr, hlen);
    if (prefix)
        crest_buf_append(b, &prefix, 1);
    crest_buf_append(b, data, len);
}

/* Who a broadcast goes to, as lengths and bytes (the public names, or a cluster message's). */
typedef struct {
    const crest_str_t *rooms;
    size_t nrooms;
    const crest_str_t *except;
    size_t nexcept;
} target_t;

/* Whether a room could be a socket's id (the room holding that socket alone). A socket is not
 * subscribed to a topic of its own id: that topic and its node would cost about 150 bytes per
 * connection, a tenth of a Socket.IO connection's memory, for what most apps use only to leave
 * the sender out (an exception, checked at delivery). A broadcast to such a room goes through
 * the namespace's topic instead, each socket checking the room against its id and its rooms:
 * a walk over the namespace's sockets, paid by messages to one socket by id. */
static int id_shaped(crest_str_t room) {
    if (room.len != CREST__SIO_ID_LEN)
        return 0;
    for (size_t i = 0; i < room.len; i++) {
        char c = room.ptr[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Deliver an EVENT to the sockets of this instance that `to` names: the packet's data is `data`
 * (a JSON array with placeholders) and its attachments `bins`. Any thread. */
static int broadcast_local(crest_sio_nsp_t *nsp, const target_t *to, const char *data,
                           size_t data_len, const crest_str_t *bins, uint32_t nbins) {
    char tmem[512], wmem[1024], pmem[1024], xmem[1024];
    crest_buf_t text = CREST_BUF_ON(tmem), frames = CREST_BUF_ON(wmem);
    crest_buf_t payload = CREST_BUF_ON(pmem), extra = CREST_BUF_ON(xmem);
    crest__sio_head(&text, nbins ? CREST__SIO_BINARY_EVENT : CREST__SIO_EVENT, nbins, nsp->name,
                    nsp->len, -1);
    crest_buf_append(&text, data, data_len);
    put_frame(&frames, '4', text.ptr, text.len);
    crest__eio_append(&payload, CREST__EIO_MESSAGE, text.ptr, text.len, 0);
    for (uint32_t i = 0; i < nbins; i++) {
        put_frame(&frames, 0, bins[i].ptr, bins[i].len);
        crest__eio_append(&payload, CREST__EIO_MESSAGE, bins[i].ptr, bins[i].len, 1);
    }
    uint32_t head[2] = {(uint32_t)payload.len, 1 + nbins}; /* its bytes, its packets */
    crest_buf_append(&extra, head, sizeof(head));
    crest_buf_append(&extra, payload.ptr, payload.len);
    int rc = CREST_ENOMEM;
    if (!text.err && !frames.err && !payload.err && !extra.err) {
        char *topic;
        if (to->nrooms == 1 && to->nexcept == 0 && !id_shaped(to->rooms[0])) {
            topic = topic_of(nsp, to->rooms[0].ptr, to->rooms[0].len);
            crest_buf_append(&extra, "\0", 1);
        } else {
            topic = strdup(nsp->topic);
            crest_buf_append(&extra, "\1", 1);
            put_names(&extra, to->rooms, to->nrooms);
            put_names(&extra, to->except, to->nexcept);
        }
        if (topic != NULL && !extra.err)
            rc = crest__ps_publish_raw(nsp->io->ps, topic, frames.ptr, frames.len, extra.ptr,
                                       extra.len);
        free(topic);
    }
    crest_buf_free(&payload);
    crest_buf_free(&text);
    crest_buf_free(&frames);
    crest_buf_free(&extra);
    return rc;
}

/* The names as lengths and bytes, in `mem` (n entries) or the heap; NULL when one is empty or
 * over 64 KiB (a filter's field), or memory ran out. */
static crest_str_t *names_of(const char *const *names, size_t n, crest_str_t *mem, size_t cap) {
    if (n > 0xffff)
        return NULL;
    crest_str_t *v = n <= cap ? mem : malloc(n * sizeof(*v));
    for (size_t i = 0; v && i < n; i++) {
        size_t len = names[i] ? strlen(names[i]) : 0;
        if (len == 0 || len > 0xffff) {
            if (v != mem)
                free(v);
            return NULL;
        }
        v[i] = (crest_str_t){names[i], len};
    }
    return v;
}

int crest_sio_broadcast(crest_sio_nsp_t *nsp, const crest_sio_to_t *to, const char *name,
                        const crest_sio_args_t *args) {
    if (nsp == NULL || name == NULL || name[0] == '\0' || (args && args->err))
        return CREST_EINVAL;
    crest_str_t rmem[8], xmem[8];
    target_t t = {rmem, to ? to->nrooms : 0, xmem, to ? to->nexcept : 0};
    if ((t.nrooms && (t.rooms = names_of(to->rooms, t.nrooms, rmem, 8)) == NULL) ||
        (t.nexcept && (t.except = names_of(to->except, t.nexcept, xmem, 8)) == NULL)) {
        if (t.rooms != rmem && t.rooms != NULL)
            free((void *)t.rooms);
        return CREST_EINVAL;
    }
    uint32_t nbins = args ? args->nbins : 0;
    crest_str_t bmem[8];
    crest_str_t *bins = nbins <= 8 ? bmem : malloc(nbins * sizeof(*bins));
    char dmem[512];
    crest_buf_t data = CREST_BUF_ON(dmem);
    encode_data(&data, name, args);
    int rc = CREST_ENOMEM;
    if (bins != NULL && !data.err) {
        for (uint32_t i = 0; i < nbins; i++)
            bins[i] = args_bin(args, i);
        /* Other instances first, as the hub does: they may have members when this one has
         * none. */
        crest__sio_cluster_publish(nsp, t.rooms, t.nrooms, t.except, t.nexcept, data.ptr, data.len,
                                   bins, nbins);
        rc = broadcast_local(nsp, &t, data.ptr, data.len, bins, nbins);
    }
    crest_buf_free(&data);
    if (bins != bmem)
        free(bins);
    if (t.rooms != rmem)
        free((void *)t.rooms);
    if (t.except != xmem)
        free((void *)t.except);
    return rc;
}

int crest__sio_broadcast_local(crest_sio_nsp_t *nsp, const crest_str_t *rooms, size_t nrooms,
                               const crest_str_t *except, size_t nexcept, const char *data,
                               size_t data_len, const crest_str_t *bins, uint32_t nbins) {
    if (nrooms > 0xffff || nexcept > 0xffff)
        return CREST_EINVAL;
    for (size_t i = 0; i < nrooms; i++)
        if (rooms[i].len == 0 || rooms[i].len > 0xffff)
            return CREST_EINVAL;
    for (size_t i = 0; i < nexcept; i++)
        if (except[i].len > 0xffff)
            return CREST_EINVAL;
    target_t t = {rooms, nrooms, except, nexcept};
    return broadcast_local(nsp, &t, data, data_len, bins, nbins);
}

/* ---- rooms ---- */

static int in_room(const crest_sio_socket_t *s, const char *room, size_t len) {
    if (len == CREST__SIO_ID_LEN && memcmp(room, s->id, len) == 0)
        return 1;
    for (uint32_t i = 0; i < s->nrooms; i++)
        if (strlen(s->rooms[i]) == len && memcmp(s->rooms[i], room, len) == 0)
            return 1;
    return 0;
}

int crest_sio_in(const crest_sio_socket_t *s, const char *room) {
    return room != NULL && in_room(s, room, strlen(room));
}

static int subscribe(crest_sio_socket_t *s, const char *room, size_t len) {
    char *topic = topic_of(s->nsp, room, len);
    if (topic == NULL)
        return CREST_ENOMEM;
    int rc = crest__ps_subscribe(s->nsp->io->ps, &s->sub, topic);
    free(topic);
    return rc;
}

int crest_sio_join(crest_sio_socket_t *s, const char *room) {
    if (room == NULL || room[0] == '\0' || strlen(room) > 0xffff)
        return CREST_EINVAL;
    if (socket_gone(s))
        return CREST_EPIPE;
    if (crest_sio_in(s, room))
        return 0;
    if (s->nrooms == s->cap_rooms) {
        uint32_t cap = s->cap_rooms ? s->cap_rooms * 2 : 4;
        char **r = realloc(s->rooms, cap * sizeof(*r));
        if (r == NULL)
            return CREST_ENOMEM;
        s->rooms = r;
        s->cap_rooms = cap;
    }
    char *copy = strdup(room);
    if (copy == NULL)
        return CREST_ENOMEM;
    int rc = subscribe(s, room, strlen(room));
    if (rc != 0) {
        free(copy);
        return rc;
    }
    s->rooms[s->nrooms++] = copy;
    return 0;
}

int crest_sio_leave(crest_sio_socket_t *s, const char *room) {
    if (room == NULL || room[0] == '\0')
        return CREST_EINVAL;
    for (uint32_t i = 0; i < s->nrooms; i++)
        if (strcmp(s->rooms[i], room) == 0) {
            char *topic = topic_of(s->nsp, room, strlen(room));
            if (topic != NULL)
                crest__ps_unsubscribe(s->nsp->io->ps, &s->sub, topic);
            free(topic);
            free(s->rooms[i]);
            s->rooms[i] = s->rooms[--s->nrooms];
            return 0;
        }
    return CREST_ENOENT;
}

static uint16_t get16(const uint8_t *p) {
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Whether the filter at p (a count of names, then the names) names a room s is in; *end is set
 * past the names. */
static int any_room(const crest_sio_socket_t *s, const uint8_t *p, const uint8_t **end) {
    uint16_t n = get16(p);
    p += 2;
    int hit = 0;
    for (uint16_t i = 0; i < n; i++) {
        uint16_t len = get16(p);
        if (!hit && in_room(s, (const char *)p + 2, len))
            hit = 1;
        p += 2 + len;
    }
    *end = p;
    return hit;
}

static int sock_deliver(crest__psub_t *sub, crest__psmsg_t *m) {
    crest_sio_socket_t *s = CREST__CONTAINER_OF(sub, crest_sio_socket_t, sub);
    uint32_t head[2]; /* the payload's bytes and packets */
    if (socket_gone(s) || m->extra_len < sizeof(head) + 1)
        return 0;
    memcpy(head, m->extra, sizeof(head));
    const char *payload = (const char *)m->extra + sizeof(head);
    const uint8_t *f = m->extra + sizeof(head) + head[0];
    if (*f++) {
        const uint8_t *next;
        uint16_t nrooms = get16(f);
        int hit = any_room(s, f, &next);
        if ((nrooms > 0 && !hit) || any_room(s, next, &next))
            return 0; /* not in any of the rooms, or in an exception: not for this socket */
    }
    int rc = crest__eio_share(s->e, m, payload, head[0], head[1]);
    crest__ps_mark_dirty(sub);
    return rc;
}

static void sock_flush(crest__psub_t *sub) {
    crest_sio_socket_t *s = CREST__CONTAINER_OF(sub, crest_sio_socket_t, sub);
    if (s->e != NULL)
        crest__eio_push(s->e);
}

/* ---- sockets ---- */

void **crest_sio_data(crest_sio_socket_t *s) {
    return &s->data;
}

const char *crest_sio_id(const crest_sio_socket_t *s) {
    return s->id;
}

crest_sio_nsp_t *crest_sio_socket_nsp(const crest_sio_socket_t *s) {
    return s->nsp;
}

crest_loop_t *crest_sio_loop(const crest_sio_socket_t *s) {
    return s->sub.loop;
}

const char *crest_sio_transport(const crest_sio_socket_t *s) {
    return s->e ? crest__eio_transport(s->e) : "polling";
}

static void sock_unlink(crest__sio_sess_t *ss, crest_sio_socket_t *s) {
    for (crest_sio_socket_t **pp = &ss->socks; *pp != NULL; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

/* The socket leaves: its handler hears why, its acks are cancelled, its memory goes. */
static void sock_free(crest_sio_socket_t *s, const char *reason, int notify) {
    crest_sio_nsp_t *n = s->nsp;
    s->leaving = 1; /* the handler's emits, joins and disconnect are refused: it has left */
    crest__ps_unsubscribe_all(&s->sub);
    if (notify) {
        atomic_fetch_sub_explicit(&n->sockets, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&n->io->sockets, 1, memory_order_relaxed);
        if (n->on_disconnect)
            n->on_disconnect(s, reason, n->disconnect_data);
    }
    while (s->acks) {
        ack_t *k = s->acks;
        s->acks = k->next;
        if (k->timer)
            crest_loop_cancel(s->sub.loop, k->timer);
        k->cb(s, CREST_ECANCELED, NULL, k->arg);
        free(k);
    }
    for (uint32_t i = 0; i < s->nrooms; i++)
        free(s->rooms[i]);
    free(s->rooms);
    free(s);
}

static crest_sio_socket_t *sock_find(crest__sio_sess_t *ss, const char *nsp, size_t len) {
    for (crest_sio_socket_t *s = ss->socks; s != NULL; s = s->next)
        if (s->nsp->len == len && memcmp(s->nsp->name, nsp, len) == 0)
            return s;
    return NULL;
}

/* A socket that crest_sio_disconnect() made leave (its session may have closed meanwhile and
 * taken it off its list). */
static void on_leave(crest_loop_t *loop, void *arg) {
    (void)loop;
    crest_sio_socket_t *s = arg;
    if (s->e != NULL)
        sock_unlink(crest__eio_upper(s->e), s);
    sock_free(s, "server namespace disconnect", 1);
}

int crest_sio_disconnect(crest_sio_socket_t *s) {
    if (socket_gone(s))
        return CREST_EALREADY;
    char mem[64];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest__sio_head(&b, CREST__SIO_DISCONNECT, 0, s->nsp->name, s->nsp->len, -1);
    if (!b.err)
        send_message(s, b.ptr, b.len, 0); /* from the connect handler: after the CONNECT */
    crest_buf_free(&b);
    s->leaving = 1;
    crest__ps_unsubscribe_all(&s->sub);
    if (s->early != NULL)
        return 0; /* on_connect_packet frees it (refused) or makes it leave (accepted) */
    /* The handler runs later, not inside the caller's call. */
    if (crest_loop_post(s->sub.loop, on_leave, s) != 0)
        on_leave(s->sub.loop, s);
    return 0;
}

/* ---- input ---- */

/* Strict JSON (crest/json.h's reading), as a cJSON tree. */
static int parse(const char *text, size_t len, cJSON **out) {
    crest_json_t *doc = NULL;
    int rc = crest_json_parse(text, len, &doc);
    *out = (cJSON *)doc;
    return rc;
}

static void bad_packet(crest__eio_t *e) {
    atomic_fetch_add_explicit(&crest__eio_server(e)->bad_packets, 1, memory_order_relaxed);
    crest__eio_close(e, "transport error");
}

/* Socket.IO's answer to a CONNECT it refuses. */
static void connect_error(crest__eio_t *e, const char *nsp, size_t nsp_len, const char *msg) {
    char mem[256];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest__sio_head(&b, CREST__SIO_CONNECT_ERROR, 0, nsp, nsp_len, -1);
    crest_buf_puts(&b, "{\"message\":");
    crest_buf_json_str(&b, msg, strlen(msg));
    crest_buf_puts(&b, "}");
    if (!b.err)
        crest__eio_send(e, b.ptr, b.len, 0);
    crest_buf_free(&b);
}

static void on_connect_packet(crest__eio_t *e, crest__sio_sess_t *ss,
                              const crest__sio_packet_t *p) {
    crest_sio_t *io = crest__eio_server(e);
    crest_sio_nsp_t *n = nsp_find(io, p->nsp, p->nsp_len);
    if (n == NULL) {
        connect_error(e, p->nsp, p->nsp_len, "Invalid namespace");
        return;
    }
    if (sock_find(ss, p->nsp, p->nsp_len) != NULL)
        return; /* connected already: socket.io ignores it too */
    cJSON *auth = NULL;
    if (p->json_len > 0) {
        if (parse(p->json, p->json_len, &auth) != 0 || !cJSON_IsObject(auth)) {
            cJSON_Delete(auth);
            bad_packet(e);
            return;
        }
    }
    crest_sio_socket_t *s = calloc(1, sizeof(*s));
    if (s == NULL || crest__sio_random_id(s->id, CREST__SIO_ID_LEN, -1) != 0) {
        free(s);
        cJSON_Delete(auth);
        connect_error(e, p->nsp, p->nsp_len, "out of memory");
        return;
    }
    s->e = e;
    s->nsp = n;
    s->sub.deliver = sock_deliver;
    s->sub.flush = sock_flush;
    s->sub.loop = crest__eio_loop(e);
    s->next_ack = 0;
    char emem[256];
    crest_buf_t early = CREST_BUF_ON(emem);
    s->early = &early;
    const char *refusal = n->on_connect ? n->on_connect(s, crest__jv(auth), n->connect_data) : NULL;
    s->early = NULL;
    cJSON_Delete(auth);
    /* Its own room is no topic of its own (crest__sio_broadcast_local says why): the namespace's
     * is all it needs besides the rooms it joins. */
    if (refusal == NULL && !s->leaving && crest__ps_subscribe(io->ps, &s->sub, n->topic) != 0)
        refusal = "out of memory";
    if (refusal != NULL) {
        connect_error(e, p->nsp, p->nsp_len, refusal);
        crest_buf_free(&early);
        sock_free(s, NULL, 0);
        return;
    }
    s->next = ss->socks;
    ss->socks = s;
    ss->joined = 1;
    atomic_fetch_add_explicit(&n->sockets, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&io->sockets, 1, memory_order_relaxed);
    char mem[128];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest__sio_head(&b, CREST__SIO_CONNECT, 0, n->name, n->len, -1);
    crest_buf_printf(&b, "{\"sid\":\"%s\"}", s->id);
    if (!b.err)
        crest__eio_send(e, b.ptr, b.len, 0);
    crest_buf_free(&b);
    /* Then what the handler sent, in order. */
    size_t off = 0;
    crest__eio_packet_t pkt;
    while (crest__eio_next(early.ptr, early.len, &off, &pkt) == 1)
        crest__eio_send(e, pkt.data, pkt.len, pkt.binary);
    crest_buf_free(&early);
    /* The handler called crest_sio_disconnect(): the socket leaves now that it was let in. */
    if (s->leaving && crest_loop_post(s->sub.loop, on_leave, s) != 0)
        on_leave(s->sub.loop, s);
}

/* An EVENT or ACK (maybe binary, its attachments gathered) for the socket of its namespace. */
static void dispatch(crest__eio_t *e, crest__sio_sess_t *ss, int type, int64_t id, const char *nsp,
                     size_t nsp_len, const char *json, size_t json_len, const crest_str_t *bins,
                     uint32_t nbins) {
    crest_sio_socket_t *s = sock_find(ss, nsp, nsp_len);
    if (s == NULL || s->leaving)
        return; /* not connected to it (maybe left just now): dropped, as socket.io does */
    cJSON *args = NULL;
    if (parse(json, json_len, &args) != 0 || !cJSON_IsArray(args)) {
        cJSON_Delete(args);
        bad_packet(e);
        return;
    }
    crest_sio_event_t ev = {NULL, args, bins, nbins, -1};
    if (type == CREST__SIO_EVENT || type == CREST__SIO_BINARY_EVENT) {
        cJSON *first = cJSON_DetachItemFromArray(args, 0);
        if (!cJSON_IsString(first)) {
            cJSON_Delete(first);
            cJSON_Delete(args);
            bad_packet(e);
            return;
        }
        ev.name = first->valuestring;
        ev.ack_id = id;
        for (size_t i = 0; i < s->nsp->nhandlers; i++)
            if (strcmp(s->nsp->handlers[i].name, ev.name) == 0) {
                s->nsp->handlers[i].cb(s, &ev, s->nsp->handlers[i].data);
                break;
            }
        cJSON_Delete(first);
    } else {
        for (ack_t *k = s->acks; k != NULL; k = k->next)
            if (k->id == id) {
                ack_unlink(s, k);
                if (k->timer)
                    crest_loop_cancel(s->sub.loop, k->timer);
                k->cb(s, 0, &ev, k->arg);
                free(k);
                break;
            }
    }
    cJSON_Delete(args);
}

static void part_free(part_t *pt) {
    if (pt == NULL)
        return;
    for (uint32_t i = 0; i < pt->have; i++)
        free((void *)pt->bins[i].ptr);
    free(pt->bins);
    free(pt->nsp);
    free(pt->json);
    free(pt);
}

static part_t *part_new(const crest__sio_packet_t *p) {
    part_t *pt = calloc(1, sizeof(*pt));
    if (pt == NULL)
        return NULL;
    pt->type = p->type == CREST__SIO_BINARY_EVENT ? CREST__SIO_EVENT : CREST__SIO_ACK;
    pt->id = p->id;
    pt->want = p->attachments;
    pt->nsp = malloc(p->nsp_len + 1);
    pt->json = malloc(p->json_len + 1);
    pt->bins = calloc(p->attachments, sizeof(*pt->bins));
    if (pt->nsp == NULL || pt->json == NULL || pt->bins == NULL) {
        part_free(pt);
        return NULL;
    }
    memcpy(pt->nsp, p->nsp, p->nsp_len);
    pt->nsp_len = p->nsp_len;
    memcpy(pt->json, p->json, p->json_len);
    pt->json_len = p->json_len;
    return pt;
}

void crest__sio_message(crest__eio_t *e, crest__sio_sess_t *ss, const char *data, size_t len,
                        int binary) {
    crest_sio_t *io = crest__eio_server(e);
    if (binary) {
        part_t *pt = ss->part;
        if (pt == NULL) {
            bad_packet(e); /* an attachment nobody announced */
            return;
        }
        char *copy = malloc(len ? len : 1);
        if (copy == NULL) {
            crest__eio_close(e, "transport error");
            return;
        }
        memcpy(copy, data, len);
        pt->bins[pt->have++] = (crest_str_t){copy, len};
        if (pt->have == pt->want) {
            ss->part = NULL;
            dispatch(e, ss, pt->type, pt->id, pt->nsp, pt->nsp_len, pt->json, pt->json_len,
                     pt->bins, pt->have);
            part_free(pt);
        }
        return;
    }
    atomic_fetch_add_explicit(&io->packets_in, 1, memory_order_relaxed);
    crest__sio_packet_t p;
    if (ss->part != NULL || crest__sio_parse(data, len, io->opts.max_attachments, &p) != 0) {
        bad_packet(e); /* a text packet while attachments are due, or a malformed one */
        return;
    }
    switch (p.type) {
    case CREST__SIO_CONNECT:
        on_connect_packet(e, ss, &p);
        return;
    case CREST__SIO_DISCONNECT: {
        crest_sio_socket_t *s = sock_find(ss, p.nsp, p.nsp_len);
        if (s != NULL && !s->leaving) {
            sock_unlink(ss, s);
            sock_free(s, "client namespace disconnect", 1);
        }
        return;
    }
    case CREST__SIO_EVENT:
    case CREST__SIO_ACK:
        if (p.type == CREST__SIO_ACK && p.id < 0) {
            bad_packet(e);
            return;
        }
        dispatch(e, ss, p.type, p.id, p.nsp, p.nsp_len, p.json, p.json_len, NULL, 0);
        return;
    case CREST__SIO_BINARY_EVENT:
    case CREST__SIO_BINARY_ACK:
        if (p.attachments == 0) {
            dispatch(e, ss, p.type == CREST__SIO_BINARY_EVENT ? CREST__SIO_EVENT : CREST__SIO_ACK,
                     p.id, p.nsp, p.nsp_len, p.json, p.json_len, NULL, 0);
            return;
        }
        if ((ss->part = part_new(&p)) == NULL)
            crest__eio_close(e, "transport error");
        return;
    default: /* CONNECT_ERROR comes from servers only */
        bad_packet(e);
    }
}

void crest__sio_session_gone(crest__eio_t *e, crest__sio_sess_t *ss, const char *reason) {
    (void)e;
    part_free(ss->part);
    ss->part = NULL;
    while (ss->socks) {
        crest_sio_socket_t *s = ss->socks;
        ss->socks = s->next;
        s->e = NULL;
        if (!s->leaving)
            sock_free(s, reason, 1);
        /* else its posted on_leave frees it */
    }
}

/* ---- an arriving event ---- */

const char *crest_sio_event_name(const crest_sio_event_t *ev) {
    return ev->name;
}

const crest_json_t *crest_sio_event_args(const crest_sio_event_t *ev) {
    return crest__jv(ev->args);
}

const crest_json_t *crest_sio_event_arg(const crest_sio_event_t *ev, size_t i) {
    return i > INT32_MAX ? NULL : crest__jv(cJSON_GetArrayItem(ev->args, (int)i));
}

int crest_sio_event_bin(const crest_sio_event_t *ev, const crest_json_t *v, crest_str_t *out) {
    const cJSON *o = crest__cj(v);
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(o, "_placeholder");
    const cJSON *num = cJSON_GetObjectItemCaseSensitive(o, "num");
    if (!cJSON_IsTrue(ph) || !cJSON_IsNumber(num) || num->valuedouble < 0 ||
        num->valuedouble >= ev->nbins || num->valuedouble != (double)(uint32_t)num->valuedouble)
        return CREST_EINVAL;
    *out = ev->bins[(uint32_t)num->valuedouble];
    return 0;
}

int64_t crest_sio_event_ack_id(const crest_sio_event_t *ev) {
    return ev->ack_id;
}

/* ---- counters ---- */

void crest_sio_stats(const crest_sio_t *io, crest_sio_stats_t *out) {
    crest_sio_t *w = (crest_sio_t *)io;
    out->sessions = atomic_load_explicit(&w->sessions, memory_order_relaxed);
    out->sockets = atomic_load_explicit(&w->sockets, memory_order_relaxed);
    out->opened = atomic_load_explicit(&w->opened, memory_order_relaxed);
    out->moved = atomic_load_explicit(&w->moved, memory_order_relaxed);
    out->hopped = atomic_load_explicit(&w->hopped, memory_order_relaxed);
    out->ping_timeouts = atomic_load_explicit(&w->ping_timeouts, memory_order_relaxed);
    out->slow_closed = atomic_load_explicit(&w->slow_closed, memory_order_relaxed);
    out->packets_in = atomic_load_explicit(&w->packets_in, memory_order_relaxed);
    out->packets_out = atomic_load_explicit(&w->packets_out, memory_order_relaxed);
    out->bad_packets = atomic_load_explicit(&w->bad_packets, memory_order_relaxed);
}

static void write_metrics(const crest_app_t *app, void *arg, crest_buf_t *b) {
    (void)app;
    crest_sio_stats_t st;
    crest_sio_stats(arg, &st);
    crest_buf_printf(
        b,
        "# HELP crest_sio_sessions Engine.IO sessions open.\n"
        "# TYPE crest_sio_sessions gauge\n"
        "crest_sio_sessions %llu\n"
        "# HELP crest_sio_sockets Socket.IO namespace memberships.\n"
        "# TYPE crest_sio_sockets gauge\n"
        "crest_sio_sockets %llu\n"
        "# HELP crest_sio_ping_timeouts_total Sessions closed for a missed pong.\n"
        "# TYPE crest_sio_ping_timeouts_total counter\n"
        "crest_sio_ping_timeouts_total %llu\n"
        "# HELP crest_sio_slow_closed_total Sessions closed as slow consumers.\n"
        "# TYPE crest_sio_slow_closed_total counter\n"
        "crest_sio_slow_closed_total %llu\n"
        "# HELP crest_sio_moved_total Requests whose connection moved to their "
        "session's loop thread.\n"
        "# TYPE crest_sio_moved_total counter\n"
        "crest_sio_moved_total %llu\n"
        "# HELP crest_sio_hopped_total HTTP/2 requests carried to their session's loop "
        "thread and back.\n"
        "# TYPE crest_sio_hopped_total counter\n"
        "crest_sio_hopped_total %llu\n",
        (unsigned long long)st.sessions, (unsigned long long)st.sockets,
        (unsigned long long)st.ping_timeouts, (unsigned long long)st.slow_closed,
        (unsigned long long)st.moved, (unsigned long long)st.hopped);
}
