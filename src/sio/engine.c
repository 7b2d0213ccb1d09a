/* Engine.IO 4, the session layer below Socket.IO: the handshake, HTTP long-polling, the
 * WebSocket transport and the upgrade from one to the other, and the server-driven heartbeat.
 *
 * Threads. A session lives on the loop thread that opened it, in that loop's table; its id names
 * the loop (its first two characters), so a request that lands on another loop thread finds the
 * owner without a shared table or a lock, and moves its connection there (crest__req_move)
 * before anything is read from the session. Every callback of a session, and of its sockets,
 * therefore runs on one thread. An HTTP/2 connection carries other streams and cannot move: its
 * request hops instead (hop_t): what it asks is carried to the session's thread in an inbox
 * message, and the answer comes back the same way to be sent on the request's own thread.
 *
 * Lifetime. A session is closed once (crest__eio_close): it leaves its loop's table, its sockets
 * leave their namespaces, a waiting GET is answered with the close packet and its WebSockets are
 * closed. Its memory goes when nothing refers to it any more: no WebSocket (transport or probe),
 * no waiting GET and no dispatch under way (maybe_free).
 *
 * Polling output is a payload being built (packets joined by 0x1e) that the next GET takes
 * whole. It is bounded by max_packets and max_buffered; a session over either is a slow
 * consumer and is closed, since Engine.IO has no way to tell a client that packets were lost. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "codec/eio.h"
#include "sio/sio.h"
#include "ws/ws.h"

enum { T_POLLING, T_WS };
enum { HB_INTERVAL, HB_PONG };

typedef struct sloop_s sloop_t;
typedef struct hop_s hop_t;

struct crest__eio_s {
    struct crest__eio_s *hnext; /* in the loop's table */
    struct crest__eio_s *dnext; /* in the loop's list of sessions to flush */
    sloop_t *lp;
    crest_ws_t *ws;    /* the WebSocket transport (after the upgrade, or from the start) */
    crest_ws_t *probe; /* a WebSocket being upgraded to */
    crest_req_t *poll; /* a GET waiting for packets */
    hop_t *rpoll;      /* or a GET of another thread's HTTP/2 connection (hop_t) */
    crest_buf_t out;   /* polling: the payload the next GET takes */
    uint32_t out_packets;
    uint32_t holds;               /* dispatches under way: the session is not freed meanwhile */
    crest__wheel_node_t hb;       /* heartbeat: the next ping, or the pong's deadline */
    crest__wheel_node_t deadline; /* connect and upgrade timeouts */
    uint64_t connect_due;         /* loop ms; 0 once a namespace was joined */
    uint64_t upgrade_due;         /* loop ms while a probe is open */
    uint8_t transport;
    uint8_t hb_state;
    uint8_t closed;
    uint8_t dirty;  /* in lp->dirty */
    uint8_t probed; /* the probe answered "3probe": "5" completes the upgrade */
    uint8_t doomed; /* closed at the next push, outside any callback (doom) */
    const char *doom_reason;
    crest__sio_sess_t upper;
    char sid[CREST__SIO_ID_LEN + 1];
};

/* One loop thread's sessions. Owner: the loop (an extension, freed by its finish). */
struct sloop_s {
    crest__loop_ext_t ext;
    crest_sio_t *io;
    crest_loop_t *loop;
    crest__eio_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
    crest__eio_t *dirty; /* polling sessions with output for their waiting GET */
    int posted;          /* flush_dirty is posted */
    int dead;            /* the loop finished while flush_dirty was posted: it frees this */
    crest__drain_node_t drain;
};

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int crest__sio_random_id(char *out, size_t len, int loop_index) {
    uint8_t rnd[32];
    if (len > sizeof(rnd) || getrandom(rnd, len, 0) != (ssize_t)len)
        return CREST_EIO;
    size_t i = 0;
    if (loop_index >= 0) { /* the loop in the first two characters */
        out[i++] = b64url[(loop_index >> 6) & 63];
        out[i++] = b64url[loop_index & 63];
    }
    for (; i < len; i++)
        out[i] = b64url[rnd[i] & 63];
    out[len] = '\0';
    return 0;
}

static int b64url_val(char ch) {
    const char *p = ch ? strchr(b64url, ch) : NULL;
    return p ? (int)(p - b64url) : -1;
}

static uint64_t now_ms(const sloop_t *lp) {
    return uv_now(&lp->loop->uv);
}

crest_loop_t *crest__eio_loop(const crest__eio_t *e) {
    return e->lp->loop;
}

const char *crest__eio_transport(const crest__eio_t *e) {
    return e->transport == T_WS ? "websocket" : "polling";
}

crest__sio_sess_t *crest__eio_upper(crest__eio_t *e) {
    return &e->upper;
}

crest_sio_t *crest__eio_server(const crest__eio_t *e) {
    return e->lp->io;
}

/* ---- the loop's table ---- */

static size_t bucket_of(const sloop_t *lp, const char *sid) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < CREST__SIO_ID_LEN; i++)
        h = (h ^ (uint8_t)sid[i]) * 1099511628211ull;
    return (size_t)h & (lp->nbuckets - 1);
}

static crest__eio_t *table_find(const sloop_t *lp, const char *sid, size_t len) {
    if (len != CREST__SIO_ID_LEN || lp->nbuckets == 0)
        return NULL;
    for (crest__eio_t *e = lp->buckets[bucket_of(lp, sid)]; e != NULL; e = e->hnext)
        if (memcmp(e->sid, sid, CREST__SIO_ID_LEN) == 0)
            return e;
    return NULL;
}

static int table_add(sloop_t *lp, crest__eio_t *e) {
    if (lp->count >= lp->nbuckets) {
        size_t n = lp->nbuckets ? lp->nbuckets * 2 : 64;
        crest__eio_t **b = calloc(n, sizeof(*b));
        if (b == NULL)
            return CREST_ENOMEM;
        crest__eio_t **old = lp->buckets;
        size_t oldn = lp->nbuckets;
        lp->buckets = b;
        lp->nbuckets = n;
        for (size_t i = 0; i < oldn; i++)
            for (crest__eio_t *x = old[i], *next; x != NULL; x = next) {
                next = x->hnext;
                size_t k = bucket_of(lp, x->sid);
                x->hnext = b[k];
                b[k] = x;
            }
        free(old);
    }
    size_t k = bucket_of(lp, e->sid);
    e->hnext = lp->buckets[k];
    lp->buckets[k] = e;
    lp->count++;
    return 0;
}

static void table_remove(sloop_t *lp, crest__eio_t *e) {
    for (crest__eio_t **pp = &lp->buckets[bucket_of(lp, e->sid)]; *pp != NULL; pp = &(*pp)->hnext)
        if (*pp == e) {
            *pp = e->hnext;
            lp->count--;
            return;
        }
}

/* ---- answers to requests ---- */

/* Engine.IO's error body, {"code":N,"message":"..."} (message: one of its fixed texts); returns
 * its length. */
static size_t error_body(char *body, size_t cap, int code, const char *message) {
    return (size_t)snprintf(body, cap, "{\"code\":%d,\"message\":\"%s\"}", code, message);
}

/* Engine.IO's error answer: 400 with that body. */
static int http_error(crest_req_t *req, int status, int code, const char *message) {
    char body[128];
    crest_res_json(req, status, body, error_body(body, sizeof(body), code, message));
    return 0;
}

static void hop_answer(hop_t *h, int status, const char *data, size_t len);

static int has_poll(const crest__eio_t *e) {
    return e->poll != NULL || e->rpoll != NULL;
}

/* Answer the waiting GET, here or on its own thread. */
static void answer_poll(crest__eio_t *e, const char *data, size_t len) {
    if (e->rpoll != NULL) {
        hop_t *h = e->rpoll;
        e->rpoll = NULL;
        hop_answer(h, 200, data, len);
        return;
    }
    crest_req_t *req = e->poll;
    e->poll = NULL;
    crest_req_on_abort(req, NULL, NULL);
    crest_res_send(req, 200, "text/plain; charset=UTF-8", data, len);
}

/* ---- freeing ---- */

static void dirty_remove(crest__eio_t *e) {
    if (!e->dirty)
        return;
    for (crest__eio_t **pp = &e->lp->dirty; *pp != NULL; pp = &(*pp)->dnext)
        if (*pp == e) {
            *pp = e->dnext;
            break;
        }
    e->dirty = 0;
}

static void maybe_free(crest__eio_t *e) {
    if (!e->closed || e->ws || e->probe || has_poll(e) || e->holds)
        return;
    dirty_remove(e);
    crest_buf_free(&e->out);
    free(e);
}

void crest__eio_close(crest__eio_t *e, const char *reason) {
    if (e->closed)
        return;
    e->closed = 1;
    sloop_t *lp = e->lp;
    crest_sio_t *io = lp->io;
    table_remove(lp, e);
    atomic_fetch_sub_explicit(&io->sessions, 1, memory_order_relaxed);
    crest__wheel_disarm(&lp->loop->wheel, &e->hb);
    crest__wheel_disarm(&lp->loop->wheel, &e->deadline);
    /* Held until the end: the disconnect handlers may call back into the session, and a
     * WebSocket whose write fails closes (and lets go of the session) inside crest_ws_close. */
    e->holds++;
    crest__sio_session_gone(e, &e->upper, reason);
    if (has_poll(e))
        answer_poll(e, "1", 1); /* the close packet */
    if (e->ws)
        crest_ws_close(e->ws, 1000, NULL);
    if (e->probe)
        crest_ws_close(e->probe, 1000, NULL);
    e->holds--;
    maybe_free(e);
}

static void release(crest__eio_t *e) {
    e->holds--;
    maybe_free(e);
}

/* ---- output ---- */

static void flush_dirty(crest_loop_t *loop, void *arg) {
    (void)loop;
    sloop_t *lp = arg;
    lp->posted = 0;
    if (lp->dead) {
        free(lp);
        return;
    }
    while (lp->dirty) {
        crest__eio_t *e = lp->dirty;
        lp->dirty = e->dnext;
        e->dirty = 0;
        crest__eio_push(e);
    }
}

static void list_dirty(crest__eio_t *e) {
    sloop_t *lp = e->lp;
    e->dirty = 1;
    e->dnext = lp->dirty;
    lp->dirty = e;
    if (!lp->posted && crest_loop_post(lp->loop, flush_dirty, lp) == 0)
        lp->posted = 1;
}

/* A polling session has output: its waiting GET is answered after the current callback (so
 * that packets sent together go out in one answer). */
static void mark_dirty(crest__eio_t *e) {
    if (!e->dirty && has_poll(e))
        list_dirty(e);
}

/* Polling output over a limit: the session is a slow consumer. */
static int over_limits(const crest__eio_t *e, size_t more, uint32_t packets) {
    const crest_sio_opts_t *o = &e->lp->io->opts;
    return e->out_packets + packets > o->max_packets || e->out.len + more > o->max_buffered;
}

/* Close the session later, from the loop: the caller may be a handler of one of its sockets, or
 * a delivery to one, which must not see it freed under it. Nothing is sent to it meanwhile. */
static void doom(crest__eio_t *e, const char *reason) {
    if (e->doomed || e->closed)
        return;
    e->doomed = 1;
    e->doom_reason = reason;
    if (!e->dirty)
        list_dirty(e);
}

static void slow_close(crest__eio_t *e) {
    if (!e->doomed)
        atomic_fetch_add_explicit(&e->lp->io->slow_closed, 1, memory_order_relaxed);
    doom(e, "transport error");
}

/* Send one Engine.IO packet of `type` (binary: a MESSAGE with raw bytes). */
static int send_packet(crest__eio_t *e, int type, const void *data, size_t len, int binary) {
    if (e->closed || e->doomed)
        return CREST_EPIPE;
    if (e->transport == T_WS) {
        if (binary)
            return crest_ws_send(e->ws, data, len, 1) == CREST_ENOMEM ? CREST_ENOMEM : 0;
        int rc = crest__ws_send_prefixed(e->ws, (char)('0' + type), data, len);
        /* Dropped or closing: the WebSocket's own slow policy (close) tells the session. */
        return rc == CREST_ENOMEM ? rc : 0;
    }
    if (over_limits(e, len + 1, 1)) {
        slow_close(e);
        return CREST_EPIPE;
    }
    if (crest__eio_append(&e->out, type, data, len, binary) != 0)
        return CREST_ENOMEM;
    e->out_packets++;
    mark_dirty(e);
    return 0;
}

int crest__eio_send(crest__eio_t *e, const void *data, size_t len, int binary) {
    return send_packet(e, CREST__EIO_MESSAGE, data, len, binary);
}

int crest__eio_share(crest__eio_t *e, crest__psmsg_t *m, const char *payload, size_t plen,
                     uint32_t packets) {
    if (e->closed || e->doomed)
        return 0;
    if (e->transport == T_WS)
        return crest__ws_share(e->ws, m) > 0;
    if (over_limits(e, plen + 1, packets)) {
        slow_close(e);
        return 0;
    }
    if (e->out.len > 0)
        crest_buf_append(&e->out, "\x1e", 1);
    crest_buf_append(&e->out, payload, plen);
    e->out_packets += packets;
    return 1;
}

void crest__eio_push(crest__eio_t *e) {
    if (e->closed)
        return;
    if (e->doomed) {
        crest__eio_close(e, e->doom_reason);
        return;
    }
    if (e->transport == T_WS) {
        crest__ws_push(e->ws);
        return;
    }
    if (has_poll(e) && e->out.len > 0) {
        answer_poll(e, e->out.ptr, e->out.len);
        crest_buf_free(&e->out); /* an idle session keeps no buffer */
        e->out_packets = 0;
    }
}

/* ---- heartbeat and deadlines ---- */

static void on_hb(crest__wheel_node_t *node) {
    crest__eio_t *e = CREST__CONTAINER_OF(node, crest__eio_t, hb);
    crest_sio_t *io = e->lp->io;
    if (e->hb_state == HB_PONG) {
        atomic_fetch_add_explicit(&io->ping_timeouts, 1, memory_order_relaxed);
        crest__eio_close(e, "ping timeout");
        return;
    }
    e->hb_state = HB_PONG;
    crest__wheel_arm(&e->lp->loop->wheel, &e->hb, io->opts.ping_timeout_ms);
    send_packet(e, CREST__EIO_PING, NULL, 0, 0); /* outside a callback: written now */
}

static void arm_deadline(crest__eio_t *e) {
    uint64_t due = 0;
    if (e->connect_due)
        due = e->connect_due;
    if (e->upgrade_due && (due == 0 || e->upgrade_due < due))
        due = e->upgrade_due;
    if (due == 0) {
        crest__wheel_disarm(&e->lp->loop->wheel, &e->deadline);
        return;
    }
    uint64_t now = now_ms(e->lp);
    crest__wheel_arm(&e->lp->loop->wheel, &e->deadline, due > now ? due - now : 0);
}

static void on_deadline(crest__wheel_node_t *node) {
    crest__eio_t *e = CREST__CONTAINER_OF(node, crest__eio_t, deadline);
    uint64_t now = now_ms(e->lp);
    if (e->connect_due && now >= e->connect_due && !e->upper.joined) {
        crest__eio_close(e, "transport close");
        return;
    }
    if (e->upgrade_due && now >= e->upgrade_due && e->probe) {
        e->upgrade_due = 0;
        crest_ws_close(e->probe, 1000, NULL); /* the client goes on polling */
    }
    arm_deadline(e);
}

/* ---- sessions ---- */

static void on_drain(crest__drain_node_t *node);

static void sloop_finish(crest__loop_ext_t *ext, crest_loop_t *loop) {
    (void)loop;
    sloop_t *lp = (sloop_t *)ext;
    /* The loop is done: whatever is left (polling sessions without a waiting GET) goes now. */
    for (size_t i = 0; i < lp->nbuckets; i++)
        while (lp->buckets[i] != NULL)
            crest__eio_close(lp->buckets[i], "server shutting down");
    if (lp->drain.cb != NULL)
        crest__http_drain_remove(lp->loop, &lp->drain);
    free(lp->buckets);
    lp->buckets = NULL;
    lp->nbuckets = 0;
    /* The inbox still delivers what was posted to it before it closes: a flush posted to this
     * loop frees it then. */
    if (lp->posted)
        lp->dead = 1;
    else
        free(lp);
}

static void on_drain(crest__drain_node_t *node) {
    sloop_t *lp = CREST__CONTAINER_OF(node, sloop_t, drain);
    lp->drain.cb = NULL; /* ran: no longer listed */
    for (size_t i = 0; i < lp->nbuckets; i++)
        while (lp->buckets[i] != NULL)
            crest__eio_close(lp->buckets[i], "server shutting down");
}

static sloop_t *sloop_get(crest_sio_t *io, crest_loop_t *loop) {
    sloop_t *lp = (sloop_t *)crest__loop_ext_find(loop, io);
    if (lp != NULL || loop->finished)
        return lp;
    lp = calloc(1, sizeof(*lp));
    if (lp == NULL)
        return NULL;
    lp->ext.owner = io;
    lp->ext.finish = sloop_finish;
    lp->io = io;
    lp->loop = loop;
    lp->drain.cb = on_drain;
    crest__http_drain_add(loop, &lp->drain);
    crest__loop_ext_add(loop, &lp->ext);
    return lp;
}

/* A new session on this loop: its id names the loop in its first two characters. */
static crest__eio_t *session_new(sloop_t *lp, int transport) {
    crest__eio_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    if (crest__sio_random_id(e->sid, CREST__SIO_ID_LEN, crest_loop_index(lp->loop)) != 0) {
        free(e);
        return NULL;
    }
    e->lp = lp;
    e->transport = (uint8_t)transport;
    e->hb.cb = on_hb;
    e->deadline.cb = on_deadline;
    if (table_add(lp, e) != 0) {
        free(e);
        return NULL;
    }
    crest_sio_t *io = lp->io;
    atomic_fetch_add_explicit(&io->sessions, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&io->opened, 1, memory_order_relaxed);
    crest__wheel_arm(&lp->loop->wheel, &e->hb, io->opts.ping_interval_ms);
    e->connect_due = now_ms(lp) + io->opts.connect_timeout_ms;
    arm_deadline(e);
    return e;
}

/* The open packet's data. */
static int open_json(const crest__eio_t *e, char *buf, size_t cap) {
    const crest_sio_opts_t *o = &e->lp->io->opts;
    return snprintf(buf, cap,
                    "{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%u,\"pingTimeout\":%u,"
                    "\"maxPayload\":%zu}",
                    e->sid, e->transport == T_POLLING && o->websocket ? "\"websocket\"" : "",
                    o->ping_interval_ms, o->ping_timeout_ms, o->max_payload);
}

/* ---- input ---- */

/* One Engine.IO packet from the client over the session's transport. */
static void on_packet(crest__eio_t *e, int type, const char *data, size_t len, int binary) {
    crest_sio_t *io = e->lp->io;
    switch (type) {
    case CREST__EIO_PONG:
        if (e->hb_state == HB_PONG) {
            e->hb_state = HB_INTERVAL;
            crest__wheel_arm(&e->lp->loop->wheel, &e->hb, io->opts.ping_interval_ms);
        }
        return;
    case CREST__EIO_MESSAGE:
        crest__sio_message(e, &e->upper, data, len, binary);
        if (e->upper.joined && e->connect_due) {
            e->connect_due = 0;
            arm_deadline(e);
        }
        return;
    case CREST__EIO_CLOSE:
        crest__eio_close(e, "transport close");
        return;
    case CREST__EIO_NOOP:
    case CREST__EIO_PING: /* an Engine.IO 3 client's; version 4 has the server ping */
        return;
    default: /* open, or upgrade outside an upgrade */
        atomic_fetch_add_explicit(&io->bad_packets, 1, memory_order_relaxed);
        crest__eio_close(e, "transport error");
    }
}

/* A POST's body being gathered (the route streams it, so that one over max_payload is refused
 * as it arrives, as Engine.IO does, not once a larger app limit is reached). Owner: the body
 * callback, which frees it at the body's last call. */
typedef struct {
    crest__eio_t *e; /* held (holds) until then */
    crest_buf_t body;
} post_t;

/* A POST over max_payload: 413, and the session closes, as Engine.IO's does. */
static void too_large(crest__eio_t *e, crest_req_t *req) {
    crest_res_error(req, 413, "payload too large");
    crest__eio_close(e, "transport error");
}

/* The whole body: its packets, in order. */
static void run_packets(crest__eio_t *e, char *p, size_t n) {
    size_t off = 0;
    crest__eio_packet_t pkt;
    int r = 0;
    while (!e->closed && (r = crest__eio_next(p, n, &off, &pkt)) == 1)
        on_packet(e, pkt.type, pkt.data, pkt.len, pkt.binary);
    if (!e->closed && (r < 0 || n == 0)) {
        atomic_fetch_add_explicit(&e->lp->io->bad_packets, 1, memory_order_relaxed);
        crest__eio_close(e, "transport error");
    }
}

static void post_packets(crest__eio_t *e, crest_req_t *req, char *p, size_t n) {
    /* Answered first: the packets' handlers may close the session, and the client's next
     * request must not wait for them. */
    crest_res_send(req, 200, "text/html", "ok", 2);
    run_packets(e, p, n);
}

static int on_post_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    post_t *pb = arg;
    crest__eio_t *e = pb->e;
    if (event == CREST_BODY_DATA) {
        if (pb->body.len + len > e->lp->io->opts.max_payload) {
            too_large(e, req);
        } else {
            /* Decoded in place later, so it is copied anyway. */
            if (crest_buf_append(&pb->body, data, len) == 0)
                return 0;
            crest_res_error(req, 503, "out of memory");
        }
    } else if (event == CREST_BODY_END) {
        if (!e->closed)
            post_packets(e, req, pb->body.ptr, pb->body.len);
        else
            crest_res_error(req, 400, "session closed");
    }
    crest_buf_free(&pb->body);
    free(pb);
    release(e);
    return event == CREST_BODY_DATA ? -1 : 0;
}

static void on_post(crest__eio_t *e, crest_req_t *req) {
    crest_str_t cl = crest_req_header(req, "Content-Length");
    if (cl.ptr != NULL && strtoull(cl.ptr, NULL, 10) > e->lp->io->opts.max_payload) {
        too_large(e, req); /* before the body: the connection closes after the answer */
        return;
    }
    post_t *pb = calloc(1, sizeof(*pb));
    if (pb == NULL) {
        crest_res_error(req, 503, "out of memory");
        return;
    }
    pb->e = e;
    e->holds++;
    if (crest_req_body_stream(req, on_post_body, pb) != 0) {
        free(pb);
        release(e);
        crest_res_error(req, 503, "out of memory");
    }
}

static void on_poll_abort(crest_req_t *req, void *arg) {
    crest__eio_t *e = arg;
    e->poll = NULL;             /* the packets wait for the next GET */
    crest_res_status(req, 200); /* the finishing call of a client that has gone: it frees req */
    maybe_free(e);
}

/* A GET was parked (here or from another thread): answer it at once if there is something. */
static void poll_parked(crest__eio_t *e) {
    if (e->out.len > 0)
        crest__eio_push(e);
    else if (e->probe != NULL)
        answer_poll(e, "6", 1); /* upgrading: let the client pause its polling */
}

static void on_get(crest__eio_t *e, crest_req_t *req) {
    if (has_poll(e)) {
        /* Two GETs at once: the client is broken (or two clients share an id). */
        http_error(req, 400, 3, "Bad request");
        atomic_fetch_add_explicit(&e->lp->io->bad_packets, 1, memory_order_relaxed);
        crest__eio_close(e, "transport error");
        return;
    }
    e->poll = req;
    crest_req_on_abort(req, on_poll_abort, e);
    poll_parked(e);
}

static int on_websocket(crest_sio_t *io, sloop_t *lp, crest__eio_t *e, crest_req_t *req) {
    if (!io->opts.websocket)
        return http_error(req, 400, 0, "Transport unknown");
    if (e != NULL && (e->transport != T_POLLING || e->probe != NULL))
        return http_error(req, 400, 3, "Bad request");
    if (e == NULL && (e = session_new(lp, T_WS)) == NULL) {
        crest_res_error(req, 503, "out of memory");
        return 0;
    }
    crest_req_set(req, "crest.sio", e);
    e->holds++;
    crest_ws_upgrade(req, &io->ws_opts); /* answers the request either way */
    if (e->transport == T_WS && e->ws == NULL)
        crest__eio_close(e, "transport error"); /* a fresh session whose upgrade failed */
    release(e);
    return 0;
}

/* ---- requests that hop (HTTP/2) ---- */

enum { HOP_GET, HOP_POST, HOP_REQUEUE, HOP_TOOBIG, HOP_CANCEL };

/* A request of an HTTP/2 connection for a session of another loop thread: the connection
 * carries other streams and cannot move, so the request's content goes to the session's thread
 * (L) in an inbox message and the answer comes back to the request's thread (R), where it is
 * sent. Owner: the thread whose inbox delivered it last; `req` is R's alone (NULL once the
 * client has gone: a GET's packets then go back to the session, as if never taken). */
struct hop_s {
    crest__msg_t msg;
    crest_sio_t *io;
    crest_loop_t *from; /* R */
    crest_loop_t *to;   /* L */
    crest_req_t *req;
    uint64_t seq; /* a GET's name in a cancel */
    int kind;
    int status;
    const char *ctype;
    crest_buf_t data; /* the POST's body; back: the answer's */
    char sid[CREST__SIO_ID_LEN + 1];
};

static void hop_free(hop_t *h) {
    crest_buf_free(&h->data);
    free(h);
}

static void on_hop(crest_loop_t *loop, void *arg);
static void on_hop_back(crest_loop_t *loop, void *arg);

/* Hand h to `to`'s thread; when that loop has stopped, h is freed (and its request, still
 * waiting on this thread, answered 503). */
static void hop_post(hop_t *h, crest_loop_t *to, crest_loop_cb cb) {
    h->msg.cb = cb;
    h->msg.arg = h;
    h->msg.borrowed = 1;
    if (crest__loop_post_msg(to, &h->msg) == 0)
        return;
    if (to == h->to && h->req != NULL) {
        crest_req_on_abort(h->req, NULL, NULL);
        crest_res_error(h->req, 503, "stopping");
    }
    hop_free(h);
}

/* L: the answer goes back to R. */
static void hop_answer(hop_t *h, int status, const char *data, size_t len) {
    h->status = status;
    h->ctype = status == 200 ? "text/plain; charset=UTF-8" : "application/json";
    h->data.len = 0;
    crest_buf_append(&h->data, data, len);
    hop_post(h, h->from, on_hop_back);
}

static void hop_error(hop_t *h, int code, const char *message) {
    char body[128];
    hop_answer(h, 400, body, error_body(body, sizeof(body), code, message));
}

/* L: a payload a GET took and whose client had gone goes back in front of what waits. */
static void requeue(crest__eio_t *e, const crest_buf_t *payload) {
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_append(&b, payload->ptr, payload->len);
    if (e->out.len > 0) {
        crest_buf_append(&b, "\x1e", 1);
        crest_buf_append(&b, e->out.ptr, e->out.len);
    }
    if (b.err) {
        crest_buf_free(&b);
        return;
    }
    for (size_t i = 0; i < payload->len; i++)
        e->out_packets += payload->ptr[i] == CREST__EIO_SEP;
    e->out_packets++;
    crest_buf_free(&e->out);
    e->out = b;
    mark_dirty(e);
}

static void on_hop(crest_loop_t *loop, void *arg) {
    hop_t *h = arg;
    sloop_t *lp = sloop_get(h->io, loop);
    crest__eio_t *e = lp ? table_find(lp, h->sid, CREST__SIO_ID_LEN) : NULL;
    if (h->kind == HOP_CANCEL || h->kind == HOP_REQUEUE || h->kind == HOP_TOOBIG) {
        if (e != NULL && h->kind == HOP_CANCEL && e->rpoll != NULL && e->rpoll->seq == h->seq) {
            hop_free(e->rpoll); /* R has dropped it: the client left */
            e->rpoll = NULL;
            maybe_free(e);
        } else if (e != NULL && h->kind == HOP_REQUEUE && e->transport == T_POLLING) {
            requeue(e, &h->data);
        } else if (e != NULL && h->kind == HOP_TOOBIG) {
            crest__eio_close(e, "transport error");
        }
        hop_free(h);
        return;
    }
    if (e == NULL) {
        hop_error(h, 1, "Session ID unknown");
        return;
    }
    if (e->transport != T_POLLING) {
        hop_error(h, 3, "Bad request");
        return;
    }
    if (h->kind == HOP_GET) {
        if (has_poll(e)) {
            hop_error(h, 3, "Bad request");
            atomic_fetch_add_explicit(&e->lp->io->bad_packets, 1, memory_order_relaxed);
            crest__eio_close(e, "transport error");
            return;
        }
        e->rpoll = h;
        poll_parked(e);
        return;
    }
    /* A POST: answered first, as on_post does; its body stays here. */
    crest_buf_t body = h->data;
    memset(&h->data, 0, sizeof(h->data));
    hop_answer(h, 200, "ok", 2);
    e->holds++;
    run_packets(e, body.ptr, body.len);
    release(e);
    crest_buf_free(&body);
}

/* R: the client left a GET that is parked on L: L drops it (or, if it is on its way back
 * already, on_hop_back finds req NULL and returns its packets). */
static void on_hop_abort(crest_req_t *req, void *arg) {
    hop_t *h = arg;
    h->req = NULL;
    crest_res_status(req, 200); /* the finishing call of a client that has gone: it frees req */
    hop_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return; /* the payload is taken at the next packet; the session's next GET finds the
                   old one parked and the session closes: the client opens a new one */
    c->io = h->io;
    c->to = h->to;
    c->seq = h->seq;
    c->kind = HOP_CANCEL;
    memcpy(c->sid, h->sid, sizeof(c->sid));
    hop_post(c, c->to, on_hop);
}

static void on_hop_back(crest_loop_t *loop, void *arg) {
    (void)loop;
    hop_t *h = arg;
    if (h->req != NULL) {
        crest_req_on_abort(h->req, NULL, NULL);
        if (h->kind == HOP_POST && h->status == 200)
            crest_res_send(h->req, 200, "text/html", h->data.ptr, h->data.len);
        else
            crest_res_send(h->req, h->status, h->ctype, h->data.ptr, h->data.len);
        hop_free(h);
        return;
    }
    /* The client has gone: packets it never got wait for the session's next GET. */
    int payload = h->kind == HOP_GET && h->status == 200 &&
                  !(h->data.len == 1 && (h->data.ptr[0] == '6' || h->data.ptr[0] == '1'));
    if (payload) {
        h->kind = HOP_REQUEUE;
        hop_post(h, h->to, on_hop);
    } else {
        hop_free(h);
    }
}

/* R: a POST's body, gathered here, then carried. */
static int on_hop_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    hop_t *h = arg;
    if (event == CREST_BODY_DATA) {
        if (h->data.len + len <= h->io->opts.max_payload &&
            crest_buf_append(&h->data, data, len) == 0)
            return 0;
        if (h->data.len + len > h->io->opts.max_payload) {
            crest_res_error(req, 413, "payload too large");
            h->kind = HOP_TOOBIG; /* the session closes, as Engine.IO's does */
            h->req = NULL;
            hop_post(h, h->to, on_hop);
        } else {
            crest_res_error(req, 503, "out of memory");
            hop_free(h);
        }
        return -1;
    }
    if (event == CREST_BODY_END) {
        crest_req_on_abort(req, on_hop_abort, h);
        hop_post(h, h->to, on_hop);
    } else {
        hop_free(h); /* crest answers the error, or the client has gone */
    }
    return 0;
}

static int hop_start(crest_sio_t *io, crest_req_t *req, crest_loop_t *to, crest_str_t sid,
                     int method) {
    if (method != CREST_METHOD_GET && method != CREST_METHOD_POST)
        return http_error(req, 400, 3, "Bad request");
    hop_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        crest_res_error(req, 503, "out of memory");
        return 0;
    }
    h->io = io;
    h->from = crest_req_loop(req);
    h->to = to;
    h->req = req;
    h->seq = atomic_fetch_add_explicit(&io->hop_seq, 1, memory_order_relaxed) + 1;
    memcpy(h->sid, sid.ptr, CREST__SIO_ID_LEN);
    atomic_fetch_add_explicit(&io->hopped, 1, memory_order_relaxed);
    if (method == CREST_METHOD_GET) {
        h->kind = HOP_GET;
        crest_req_on_abort(req, on_hop_abort, h);
        hop_post(h, to, on_hop);
        return 0;
    }
    h->kind = HOP_POST;
    crest_str_t cl = crest_req_header(req, "Content-Length");
    if (cl.ptr != NULL && strtoull(cl.ptr, NULL, 10) > io->opts.max_payload) {
        crest_res_error(req, 413, "payload too large");
        h->kind = HOP_TOOBIG;
        h->req = NULL;
        hop_post(h, to, on_hop);
        return 0;
    }
    if (crest_req_body_stream(req, on_hop_body, h) != 0) {
        hop_free(h);
        crest_res_error(req, 503, "out of memory");
    }
    return 0;
}

int crest__eio_http(crest_req_t *req, void *data) {
    crest_sio_t *io = data;
    crest_str_t v = crest_req_query_param(req, "EIO");
    if (v.len != 1 || v.ptr[0] != '4')
        return http_error(req, 400, 5, "Unsupported protocol version");
    crest_str_t t = crest_req_query_param(req, "transport");
    int ws = t.len == 9 && memcmp(t.ptr, "websocket", 9) == 0;
    int polling = t.len == 7 && memcmp(t.ptr, "polling", 7) == 0;
    if (!(ws || (polling && io->opts.polling)))
        return http_error(req, 400, 0, "Transport unknown");
    crest_loop_t *loop = crest_req_loop(req);
    crest_str_t sid = crest_req_query_param(req, "sid");
    if (sid.ptr != NULL) {
        int hi = sid.len == CREST__SIO_ID_LEN ? b64url_val(sid.ptr[0]) : -1;
        int lo = hi >= 0 ? b64url_val(sid.ptr[1]) : -1;
        int idx = hi * 64 + lo;
        if (lo < 0 || idx >= io->rt->nthreads)
            return http_error(req, 400, 1, "Session ID unknown");
        if (idx != crest_loop_index(loop)) {
            /* The session lives on another loop thread: serve this request there, on its
             * connection moved there, or by hopping when the connection cannot move. */
            crest_loop_t *to = &io->rt->loops[idx];
            int rc = crest__req_move(req, to);
            if (rc == 0) {
                atomic_fetch_add_explicit(&io->moved, 1, memory_order_relaxed);
                return 0;
            }
            if (rc == CREST_ENOTSUP && !ws)
                return hop_start(io, req, to, sid, crest_req_method(req));
            return http_error(req, 400, rc == CREST_ENOTSUP ? 3 : 1,
                              rc == CREST_ENOTSUP ? "Bad request" : "Session ID unknown");
        }
    }
    sloop_t *lp = sloop_get(io, loop);
    if (lp == NULL) {
        crest_res_error(req, 503, "out of memory");
        return 0;
    }
    crest__eio_t *e = sid.ptr ? table_find(lp, sid.ptr, sid.len) : NULL;
    if (sid.ptr != NULL && e == NULL)
        return http_error(req, 400, 1, "Session ID unknown");
    int method = crest_req_method(req);
    if (ws)
        return method == CREST_METHOD_GET ? on_websocket(io, lp, e, req)
                                          : http_error(req, 400, 2, "Bad handshake method");
    if (e == NULL) {
        if (method != CREST_METHOD_GET)
            return http_error(req, 400, 2, "Bad handshake method");
        if ((e = session_new(lp, T_POLLING)) == NULL) {
            crest_res_error(req, 503, "out of memory");
            return 0;
        }
        char open[256];
        open[0] = '0';
        int n = open_json(e, open + 1, sizeof(open) - 1);
        crest_res_send(req, 200, "text/plain; charset=UTF-8", open, (size_t)n + 1);
        return 0;
    }
    if (e->transport != T_POLLING)
        return http_error(req, 400, 3, "Bad request");
    if (method == CREST_METHOD_GET)
        on_get(e, req);
    else if (method == CREST_METHOD_POST)
        on_post(e, req);
    else
        http_error(req, 400, 3, "Bad request");
    return 0;
}

/* ---- the WebSocket transport ---- */

void crest__eio_ws_open(crest_ws_t *ws, crest_req_t *req) {
    crest__eio_t *e = crest_req_get(req, "crest.sio");
    *crest_ws_data(ws) = e;
    if (e->transport == T_WS) {
        /* A WebSocket-only client: the session starts here. */
        e->ws = ws;
        char open[256];
        open[0] = '0';
        int n = open_json(e, open + 1, sizeof(open) - 1);
        crest_ws_send(ws, open, (size_t)n + 1, 0);
        return;
    }
    e->probe = ws;
    e->probed = 0;
    e->upgrade_due = now_ms(e->lp) + e->lp->io->opts.upgrade_timeout_ms;
    arm_deadline(e);
}

/* The upgrade is complete: the WebSocket becomes the transport, and what waited for a GET goes
 * out on it, packet by packet. */
static void upgrade_done(crest__eio_t *e) {
    e->ws = e->probe;
    e->probe = NULL;
    e->transport = T_WS;
    e->upgrade_due = 0;
    arm_deadline(e);
    if (has_poll(e))
        answer_poll(e, "6", 1);
    dirty_remove(e);
    size_t off = 0;
    crest__eio_packet_t pkt;
    while (!e->closed && e->ws && crest__eio_next(e->out.ptr, e->out.len, &off, &pkt) == 1)
        send_packet(e, pkt.type, pkt.data, pkt.len, pkt.binary);
    crest_buf_free(&e->out);
    e->out_packets = 0;
}

void crest__eio_ws_message(crest_ws_t *ws, const void *data, size_t len, int binary) {
    crest__eio_t *e = *crest_ws_data(ws);
    if (e == NULL || e->closed)
        return;
    const char *p = data;
    if (ws == e->probe) {
        if (!binary && len == 6 && memcmp(p, "2probe", 6) == 0) {
            crest_ws_send(ws, "3probe", 6, 0);
            e->probed = 1;
            if (has_poll(e))
                answer_poll(e, "6", 1); /* release the waiting GET: the client pauses polling */
        } else if (!binary && len == 1 && p[0] == '5' && e->probed) {
            upgrade_done(e);
        } else {
            crest_ws_close(ws, 1002, NULL); /* anything else on a probe: the upgrade fails */
        }
        return;
    }
    if (ws != e->ws)
        return;
    e->holds++;
    if (binary)
        on_packet(e, CREST__EIO_MESSAGE, p, len, 1);
    else if (len == 0 || p[0] < '0' || p[0] > '6') {
        atomic_fetch_add_explicit(&e->lp->io->bad_packets, 1, memory_order_relaxed);
        crest__eio_close(e, "transport error");
    } else
        on_packet(e, p[0] - '0', p + 1, len - 1, 0);
    release(e);
}

void crest__eio_ws_close(crest_ws_t *ws, int code, const char *reason, size_t reason_len) {
    (void)code;
    (void)reason;
    (void)reason_len;
    crest__eio_t *e = *crest_ws_data(ws);
    if (e == NULL)
        return;
    e->holds++; /* closing the session below must not free it under us */
    if (ws == e->probe) {
        e->probe = NULL;
        e->upgrade_due = 0;
        if (!e->closed)
            arm_deadline(e);
    } else if (ws == e->ws) {
        /* Later: a write error met while a broadcast is delivered to this socket closes it, and
         * the delivery goes on with the session's sockets. */
        e->ws = NULL;
        doom(e, "transport close");
    }
    release(e);
}
