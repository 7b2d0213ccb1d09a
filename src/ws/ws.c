/* WebSocket connections: the upgrade handshake, then a protocol that takes the HTTP connection
 * over (crest__proto_t). Frames are parsed in place in the loop's read buffer; a message that
 * arrives whole in one read reaches on_message without a copy, only fragmented or split messages
 * are assembled in a per-socket buffer that exists while they do. Output goes through the
 * connection's queue, so WebSocket writes share the HTTP batching and backpressure.
 *
 * Inflating permessage-deflate input is the one place where a few bytes from a client cost the
 * loop a lot of work (deflate reaches 1000:1), so it is metered twice. Each loop thread inflates
 * at most INFLATE_SLICE bytes before it serves its other clients again; and each socket may
 * produce at most opts->inflate_rate inflated bytes per second. A socket that runs out of either
 * stops being read: the unparsed rest of its input is copied out of the loop's read buffer (which
 * the next read reuses), and the socket waits in its loop's run queue (next turn) or wait list
 * (tokens back) until it may go on. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "codec/ws_frame.h"
#include "http/http.h"
#include "pubsub/pubsub.h"
#include "ws/ws.h"

enum {
    WS_IN_OPEN = 1 << 0,       /* inside on_open: the handler's batch writes later */
    WS_IN_DATA = 1 << 1,       /* inside on_data: written at its end */
    WS_CLOSE_SENT = 1 << 2,    /* our close frame is queued */
    WS_CLOSE_RCVD = 1 << 3,    /* the peer's close frame arrived: no more input */
    WS_NOTIFIED = 1 << 4,      /* on_close ran */
    WS_PING_OUT = 1 << 5,      /* a ping is unanswered (nothing read since it went out) */
    WS_DEFLATE = 1 << 6,       /* permessage-deflate negotiated */
    WS_CLIENT_NO_CTX = 1 << 7, /* the client resets its compressor after every message */
    WS_KILL = 1 << 8,          /* slow consumer under the close policy: close at the flush */
    WS_PAUSED = 1 << 9,        /* we stopped reading: output over max_buffered */
};

/* Inflated bytes a loop thread produces before it lets its other clients in: about a quarter of
 * a millisecond of zlib on highly compressible input. */
#define INFLATE_SLICE (256 * 1024)
/* How often sockets waiting for inflate tokens are looked at. */
#define INFLATE_WAIT_MS 20

/* The inflater of a socket with permessage-deflate, made at its first compressed message, and
 * the piece of compressed input being inflated. Owner: its socket. */
typedef struct {
    z_stream z;
    int64_t tokens; /* inflated bytes the socket may produce now (token bucket) */
    uint64_t stamp; /* uv_now of the last refill */
    size_t left;    /* compressed bytes of the piece not inflated yet: first in the held input */
    uint8_t active; /* a compressed piece is being inflated */
    uint8_t last;   /* it ends its message */
    uint8_t text;
    uint8_t tail;  /* bytes of the 00 00 FF FF trailer still to feed (RFC 7692 section 7.2.2) */
    uint8_t more;  /* the last inflate filled its output: zlib may hold more */
    uint8_t ended; /* the client sent a final block: the rest of the message is ignored */
} ws_zin_t;

/* Input that waits for its turn: copied out of the loop's read buffer while reading is paused.
 * Owner: its socket; listed in its loop's run queue or wait list. */
typedef struct ws_held_s {
    crest_ws_t *ws;
    struct ws_held_s *next;
    struct ws_held_s *prev;
    int where; /* HELD_* */
    uint8_t *data;
    size_t len;
    size_t pos;
} ws_held_t;

enum { HELD_NOWHERE, HELD_RUN, HELD_WAIT };
enum { RUN_DONE = 0, RUN_BUSY = 1, RUN_RATE = 2 }; /* input stopped for the loop's or its budget */

/* One WebSocket. Owner: its connection (freed in the protocol's on_close). Kept small: an idle
 * socket is this struct and the connection, nothing else. */
struct crest_ws_s {
    void *data;
    crest__conn_t *conn;
    const crest_ws_opts_t *opts;
    crest__psub_t sub;
    crest__ws_parser_t parser;
    uint32_t utf8;  /* validator state of the text message being received */
    uint32_t flags; /* WS_* */
    uint8_t *msg;   /* message being assembled, or NULL */
    size_t msg_len;
    size_t msg_cap;
    uint8_t *ctrl; /* control frame payload split across reads, or NULL (125 bytes) */
    size_t ctrl_len;
    ws_zin_t *zin;   /* with permessage-deflate, made at the first compressed message */
    ws_held_t *held; /* input waiting for its turn, or NULL */
    uint64_t dropped;
};

static const crest__proto_t ws_proto;

void crest_ws_opts_default(crest_ws_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->max_message = 1024 * 1024;
    o->max_buffered = 1024 * 1024;
    o->slow_policy = CREST_WS_SLOW_DROP;
    o->ping_interval_ms = 30000;
    o->close_timeout_ms = 5000;
    o->inflate_rate = CREST_WS_INFLATE_RATE;
}

void **crest_ws_data(crest_ws_t *ws) {
    return &ws->data;
}

const crest_ws_opts_t *crest_ws_opts(const crest_ws_t *ws) {
    return ws->opts;
}

crest_loop_t *crest_ws_loop(const crest_ws_t *ws) {
    return ws->conn->tcp.loop->data;
}

size_t crest_ws_buffered(const crest_ws_t *ws) {
    return crest__conn_buffered(ws->conn);
}

uint64_t crest_ws_dropped(const crest_ws_t *ws) {
    return ws->dropped;
}

static crest_loop_t *ws_loop(const crest_ws_t *ws) {
    return ws->conn->tcp.loop->data;
}

static int ws_closing(const crest_ws_t *ws) {
    return (ws->conn->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_WRITE)) != 0;
}

/* ---- output ---- */

static void ws_flush(crest_ws_t *ws) {
    if (!(ws->flags & (WS_IN_OPEN | WS_IN_DATA)))
        crest__conn_flush(ws->conn);
}

/* Queue one frame (header and payload copied); the caller flushes. */
/* Queue one frame whose payload is `prefix` (when nonzero) then data; the caller flushes. */
static int queue_frame_prefixed(crest_ws_t *ws, int opcode, int rsv1, char prefix, const void *data,
                                size_t len) {
    crest__outq_t *q = crest__conn_out(ws->conn);
    uint8_t hdr[CREST__WS_MAX_HEADER + 1];
    size_t hlen = crest__ws_header(hdr, opcode, 1, rsv1, len + (prefix != 0), NULL);
    if (prefix != 0)
        hdr[hlen++] = (uint8_t)prefix;
    if (q == NULL || crest__outq_copy(q, hdr, hlen) != 0 || crest__outq_copy(q, data, len) != 0)
        return CREST_ENOMEM;
    return 0;
}

static int queue_frame(crest_ws_t *ws, int opcode, int rsv1, const void *data, size_t len) {
    return queue_frame_prefixed(ws, opcode, rsv1, 0, data, len);
}

/* The per-thread compressor. The server always negotiates server_no_context_takeover, so every
 * message is compressed from a fresh state and one deflate stream serves all sockets of a loop
 * thread (instead of ~256 KiB of zlib state per socket). Freed when the thread exits. */
static pthread_key_t deflate_key;
static pthread_once_t deflate_once = PTHREAD_ONCE_INIT;

static void deflater_free(void *p) {
    deflateEnd(p);
    free(p);
}

static void deflate_key_init(void) {
    pthread_key_create(&deflate_key, deflater_free);
}

static z_stream *thread_deflater(void) {
    pthread_once(&deflate_once, deflate_key_init);
    z_stream *z = pthread_getspecific(deflate_key);
    if (z != NULL)
        return z;
    z = calloc(1, sizeof(*z));
    if (z == NULL)
        return NULL;
    if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    pthread_setspecific(deflate_key, z);
    return z;
}

/* Compress data into a malloc'd block per RFC 7692 (the final 00 00 FF FF removed). Returns the
 * block or NULL (then the message goes out uncompressed, which the extension allows). */
static uint8_t *compress_msg(const void *data, size_t len, size_t *out_len) {
    z_stream *z = thread_deflater();
    if (z == NULL || deflateReset(z) != Z_OK)
        return NULL;
    size_t cap = deflateBound(z, (uLong)len) + 16;
    uint8_t *out = malloc(cap);
    if (out == NULL)
        return NULL;
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    z->next_out = out;
    z->avail_out = (uInt)cap;
    int rc = deflate(z, Z_SYNC_FLUSH);
    size_t n = cap - z->avail_out;
    if (rc != Z_OK || z->avail_in != 0 || n < 4) {
        free(out);
        return NULL;
    }
    *out_len = n - 4;
    return out;
}

static int send_data(crest_ws_t *ws, int opcode, char prefix, const void *data, size_t len) {
    crest__conn_t *c = ws->conn;
    if (ws_closing(ws) || (ws->flags & (WS_CLOSE_SENT | WS_CLOSE_RCVD | WS_KILL)))
        return CREST_EPIPE;
    if (crest__conn_buffered(c) > ws->opts->max_buffered) {
        if (ws->opts->slow_policy == CREST_WS_SLOW_CLOSE) {
            ws->flags |= WS_KILL;
            if (!(ws->flags & (WS_IN_OPEN | WS_IN_DATA)))
                crest__conn_close(c);
            return CREST_EPIPE;
        }
        ws->dropped++;
        return CREST_EAGAIN;
    }
    int rc;
    if ((ws->flags & WS_DEFLATE) && len >= 64) {
        /* Compressed whole: a prefix is joined to the data first (a copy crest__ws_send_prefixed
         * saves only when nothing is compressed). */
        uint8_t *joined = NULL;
        if (prefix != 0) {
            if ((joined = malloc(len + 1)) == NULL)
                return CREST_ENOMEM;
            joined[0] = (uint8_t)prefix;
            memcpy(joined + 1, data, len);
            data = joined;
            len++;
        }
        size_t zlen;
        uint8_t *z = compress_msg(data, len, &zlen);
        if (z != NULL) {
            rc = queue_frame(ws, opcode, 1, z, zlen);
            free(z);
        } else {
            rc = queue_frame(ws, opcode, 0, data, len);
        }
        free(joined);
    } else {
        rc = queue_frame_prefixed(ws, opcode, 0, prefix, data, len);
    }
    if (rc != 0)
        return rc;
    crest__count(&crest__http_loop(ws_loop(ws))->mod[CREST__MOD_WS_OUT], 1);
    ws_flush(ws);
    return 0;
}

int crest_ws_send(crest_ws_t *ws, const void *data, size_t len, int binary) {
    return send_data(ws, binary ? CREST__WS_BINARY : CREST__WS_TEXT, 0, data, len);
}

int crest__ws_send_prefixed(crest_ws_t *ws, char prefix, const void *data, size_t len) {
    return send_data(ws, CREST__WS_TEXT, prefix, data, len);
}

int crest_ws_send_text(crest_ws_t *ws, const char *text) {
    return send_data(ws, CREST__WS_TEXT, 0, text, strlen(text));
}

static void notify_close(crest_ws_t *ws, int code, const char *reason, size_t reason_len) {
    if (ws->flags & WS_NOTIFIED)
        return;
    ws->flags |= WS_NOTIFIED;
    crest__ps_unsubscribe_all(&ws->sub);
    if (ws->opts->on_close)
        ws->opts->on_close(ws, code, reason, reason_len);
}

/* Queue a close frame. */
static int queue_close(crest_ws_t *ws, int code, const char *reason, size_t reason_len) {
    uint8_t payload[125];
    size_t n = 0;
    if (code != CREST__WS_NO_STATUS) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        memcpy(payload + 2, reason, reason_len);
        n = 2 + reason_len;
    }
    ws->flags |= WS_CLOSE_SENT;
    return queue_frame(ws, CREST__WS_CLOSE, 0, payload, n);
}

/* Fail the connection (RFC 6455 section 7.1.7): send a close frame with `code`, tell the app,
 * then close after the frame is written, discarding whatever else the client sends. */
static void ws_fail(crest_ws_t *ws, int code, const char *reason) {
    crest__conn_t *c = ws->conn;
    if (!(ws->flags & WS_CLOSE_SENT))
        queue_close(ws, code, reason, strlen(reason));
    ws->flags |= WS_CLOSE_RCVD; /* stop reading frames */
    notify_close(ws, code, reason, strlen(reason));
    c->flags |= CONN_CLOSE_AFTER_WRITE;
    ws_flush(ws);
}

int crest_ws_close(crest_ws_t *ws, int code, const char *reason) {
    size_t rlen = reason ? strlen(reason) : 0;
    if (!crest__ws_close_code_valid(code) || rlen > 123 ||
        crest__utf8_feed(CREST__UTF8_ACCEPT, (const uint8_t *)reason, rlen) != CREST__UTF8_ACCEPT)
        return CREST_EINVAL;
    if ((ws->flags & (WS_CLOSE_SENT | WS_CLOSE_RCVD)) || ws_closing(ws))
        return CREST_EALREADY;
    if (queue_close(ws, code, reason ? reason : "", rlen) != 0) {
        crest__conn_close(ws->conn);
        return CREST_ENOMEM;
    }
    /* Wait for the peer's close frame, but not forever. Inside on_open the connection is not
     * ours yet (the takeover disarms the timer); the upgrade arms it afterwards. */
    if (!(ws->flags & WS_IN_OPEN))
        crest__wheel_arm(&ws_loop(ws)->wheel, &ws->conn->timer, ws->opts->close_timeout_ms);
    ws_flush(ws);
    return 0;
}

/* ---- input ---- */

static int msg_append(crest_ws_t *ws, const uint8_t *p, size_t n) {
    if (n == 0)
        return 0;
    if (ws->msg_len + n > ws->opts->max_message)
        return -CREST__WS_TOO_BIG;
    if (ws->msg_len + n > ws->msg_cap) {
        size_t cap = ws->msg_cap ? ws->msg_cap * 2 : 1024;
        while (cap < ws->msg_len + n)
            cap *= 2;
        if (cap > ws->opts->max_message)
            cap = ws->opts->max_message;
        uint8_t *m = realloc(ws->msg, cap);
        if (m == NULL)
            return -CREST__WS_INTERNAL;
        ws->msg = m;
        ws->msg_cap = cap;
    }
    memcpy(ws->msg + ws->msg_len, p, n);
    ws->msg_len += n;
    return 0;
}

static void msg_reset(crest_ws_t *ws) {
    free(ws->msg);
    ws->msg = NULL;
    ws->msg_len = ws->msg_cap = 0;
}

static void deliver(crest_ws_t *ws, const uint8_t *p, size_t n, int binary) {
    crest__count(&crest__http_loop(ws_loop(ws))->mod[CREST__MOD_WS_IN], 1);
    if (ws->opts->on_message && !(ws->flags & (WS_CLOSE_RCVD | WS_KILL)))
        ws->opts->on_message(ws, p, n, binary);
}

/* ---- inflating, metered ---- */

/* Each loop thread's scheduler of held input. Thread-local: a loop thread is the only one that
 * touches its sockets, and nothing here needs freeing (the posted callbacks find it again on
 * their own thread). */
static _Thread_local struct {
    ws_held_t *run_head; /* sockets whose input waits for the loop's next turn, in order */
    ws_held_t *run_tail;
    ws_held_t *wait; /* sockets waiting for inflate tokens */
    size_t spent;    /* inflated bytes since the last turn */
    uint8_t posted;  /* a turn is posted to the inbox */
    uint8_t ticking; /* a crest_loop_after for the wait list is pending */
} sched;

static void on_turn(crest_loop_t *loop, void *arg);
static void on_wait_tick(crest_loop_t *loop, void *arg);

static void held_unlink(ws_held_t *h) {
    if (h->where == HELD_RUN) {
        if (h->prev)
            h->prev->next = h->next;
        else
            sched.run_head = h->next;
        if (h->next)
            h->next->prev = h->prev;
        else
            sched.run_tail = h->prev;
    } else if (h->where == HELD_WAIT) {
        if (h->prev)
            h->prev->next = h->next;
        else
            sched.wait = h->next;
        if (h->next)
            h->next->prev = h->prev;
    }
    h->where = HELD_NOWHERE;
    h->next = h->prev = NULL;
}

/* Queue h for the loop's next turn (RUN_BUSY) or for its tokens (RUN_RATE). If the post fails
 * the loop is stopping and closes the socket, which frees h. */
static void held_schedule(ws_held_t *h, int why) {
    crest_loop_t *loop = ws_loop(h->ws);
    held_unlink(h);
    if (why == RUN_RATE) {
        h->where = HELD_WAIT;
        h->next = sched.wait;
        if (sched.wait)
            sched.wait->prev = h;
        sched.wait = h;
        if (!sched.ticking && crest_loop_after(loop, INFLATE_WAIT_MS, on_wait_tick, NULL) == 0)
            sched.ticking = 1;
        return;
    }
    h->where = HELD_RUN;
    h->prev = sched.run_tail;
    if (sched.run_tail)
        sched.run_tail->next = h;
    else
        sched.run_head = h;
    sched.run_tail = h;
    if (!sched.posted && crest_loop_post(loop, on_turn, NULL) == 0)
        sched.posted = 1;
}

static int64_t inflate_rate(const crest_ws_t *ws) {
    size_t r = ws->opts->inflate_rate ? ws->opts->inflate_rate : CREST_WS_INFLATE_RATE;
    return r > INT64_MAX / 1000 ? INT64_MAX / 1000 : (int64_t)r;
}

/* Refill the socket's token bucket: rate per second, up to a quarter second's worth (at least
 * 16 KiB) saved up. */
static void tokens_refill(crest_ws_t *ws) {
    ws_zin_t *zi = ws->zin;
    uint64_t now = uv_now(ws->conn->tcp.loop);
    int64_t rate = inflate_rate(ws);
    int64_t cap = rate / 4 > 16384 ? rate / 4 : 16384;
    int64_t add = (int64_t)(now - zi->stamp) * rate / 1000;
    if (add > 0) {
        zi->stamp = now;
        zi->tokens = zi->tokens + add > cap ? cap : zi->tokens + add;
    }
}

static int zin_make(crest_ws_t *ws) {
    if (ws->zin != NULL)
        return 0;
    ws_zin_t *zi = calloc(1, sizeof(*zi));
    if (zi == NULL)
        return -CREST__WS_INTERNAL;
    if (inflateInit2(&zi->z, -15) != Z_OK) {
        free(zi);
        return -CREST__WS_INTERNAL;
    }
    zi->stamp = uv_now(ws->conn->tcp.loop);
    int64_t rate = inflate_rate(ws);
    zi->tokens = rate / 4 > 16384 ? rate / 4 : 16384;
    ws->zin = zi;
    return 0;
}

/* The compressed message is whole: check it and hand it to the app. */
static int zmsg_done(crest_ws_t *ws) {
    ws_zin_t *zi = ws->zin;
    if ((ws->flags & WS_CLIENT_NO_CTX) || zi->ended)
        inflateReset(&zi->z);
    zi->ended = 0;
    if (zi->text &&
        crest__utf8_feed(CREST__UTF8_ACCEPT, ws->msg, ws->msg_len) != CREST__UTF8_ACCEPT)
        return -CREST__WS_INVALID_DATA;
    deliver(ws, ws->msg ? ws->msg : (const uint8_t *)"", ws->msg_len, !zi->text);
    msg_reset(ws);
    return 0;
}

/* Inflate the active piece, whose zi->left remaining compressed bytes start at p, into the
 * message buffer (then the trailer the sender removed, after the message's last piece). Returns
 * RUN_DONE when the piece is done (its message delivered when it was the last), RUN_BUSY or
 * RUN_RATE when a budget ran out first (zi->left says what is still to inflate), or a negative
 * close code. */
static int piece_run(crest_ws_t *ws, uint8_t *p) {
    static const uint8_t trailer[4] = {0x00, 0x00, 0xFF, 0xFF};
    ws_zin_t *zi = ws->zin;
    z_stream *z = &zi->z;
    int in_trailer = 0;
    z->next_in = p;
    z->avail_in = (uInt)zi->left;
    tokens_refill(ws);
    for (;;) {
        if (z->avail_in == 0 && !zi->more) {
            if (!in_trailer)
                zi->left = 0;
            if (zi->tail == 0)
                break;
            in_trailer = 1;
            z->next_in = (Bytef *)trailer + (4 - zi->tail);
            z->avail_in = zi->tail;
        }
        if (zi->ended) { /* a final block came: zlib takes nothing more of this message */
            zi->left = 0;
            zi->tail = 0;
            zi->more = 0;
            break;
        }
        size_t avail = sched.spent < INFLATE_SLICE ? INFLATE_SLICE - sched.spent : 0;
        if (zi->tokens <= 0 || avail == 0) {
            if (!in_trailer)
                zi->left = z->avail_in;
            return zi->tokens <= 0 ? RUN_RATE : RUN_BUSY;
        }
        if ((int64_t)avail > zi->tokens)
            avail = (size_t)zi->tokens;
        uint8_t out[16384];
        size_t cap = avail < sizeof(out) ? avail : sizeof(out);
        uInt in_before = z->avail_in;
        z->next_out = out;
        z->avail_out = (uInt)cap;
        int rc = inflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
            return -CREST__WS_INVALID_DATA;
        size_t n = cap - z->avail_out;
        if (in_trailer)
            zi->tail = (uint8_t)z->avail_in;
        sched.spent += n;
        zi->tokens -= (int64_t)n;
        int ar = msg_append(ws, out, n);
        if (ar < 0)
            return ar;
        /* A full output buffer may leave output inside zlib, even with no input left. */
        zi->more = z->avail_out == 0;
        if (rc == Z_STREAM_END)
            zi->ended = 1;
        else if (n == 0 && z->avail_in == in_before && !zi->more && z->avail_in > 0)
            return -CREST__WS_INVALID_DATA; /* no progress on input: never loop on it */
    }
    zi->active = 0;
    return zi->last ? zmsg_done(ws) : 0;
}

/* A control frame's whole payload. */
static int on_control(crest_ws_t *ws, int opcode, const uint8_t *p, size_t n) {
    if (opcode == CREST__WS_PING) {
        if (!(ws->flags & WS_CLOSE_SENT) && queue_frame(ws, CREST__WS_PONG, 0, p, n) != 0)
            return -CREST__WS_INTERNAL;
        return 0;
    }
    if (opcode == CREST__WS_PONG)
        return 0; /* any input already counts as an answer to our ping */
    int code;
    const char *reason;
    size_t rlen;
    int rc = crest__ws_close_payload(p, n, &code, &reason, &rlen);
    if (rc < 0)
        return rc;
    /* Echo the code (section 5.5.1), then close once it is written. */
    ws->flags |= WS_CLOSE_RCVD;
    if (!(ws->flags & WS_CLOSE_SENT))
        queue_close(ws, code, "", 0);
    notify_close(ws, code, reason, rlen);
    ws->conn->flags |= CONN_CLOSE_AFTER_WRITE;
    return 0;
}

static int on_chunk(crest_ws_t *ws, const crest__ws_chunk_t *ch) {
    if (ch->msg_opcode & 0x08) {
        if (ch->first && ch->last)
            return on_control(ws, ch->msg_opcode, ch->data, ch->len);
        /* Split across reads: gather (at most 125 bytes). */
        if (ch->first) {
            ws->ctrl_len = 0;
            if (ws->ctrl == NULL && (ws->ctrl = malloc(125)) == NULL)
                return -CREST__WS_INTERNAL;
        }
        memcpy(ws->ctrl + ws->ctrl_len, ch->data, ch->len);
        ws->ctrl_len += ch->len;
        if (!ch->last)
            return 0;
        int rc = on_control(ws, ch->msg_opcode, ws->ctrl, ws->ctrl_len);
        free(ws->ctrl);
        ws->ctrl = NULL;
        return rc;
    }
    int text = ch->msg_opcode == CREST__WS_TEXT;
    int msg_first = ch->first && ch->opcode != CREST__WS_CONT;
    int msg_last = ch->last && ch->fin;
    if (msg_first) {
        ws->utf8 = CREST__UTF8_ACCEPT;
        ws->msg_len = 0;
    }
    if (ch->rsv1) {
        if (!(ws->flags & WS_DEFLATE))
            return -CREST__WS_PROTOCOL_ERROR;
        int rc = zin_make(ws);
        if (rc < 0)
            return rc;
        ws_zin_t *zi = ws->zin;
        zi->active = 1;
        zi->left = ch->len;
        zi->last = (uint8_t)msg_last;
        zi->text = (uint8_t)text;
        zi->tail = msg_last ? 4 : 0;
        zi->more = 0;
        return piece_run(ws, ch->data); /* RUN_BUSY, RUN_RATE: zi->left bytes end the chunk */
    }
    if (text) {
        /* Checked as it arrives, so that invalid text fails fast, even mid-message. */
        ws->utf8 = crest__utf8_feed(ws->utf8, ch->data, ch->len);
        if (ws->utf8 == CREST__UTF8_REJECT || (msg_last && ws->utf8 != CREST__UTF8_ACCEPT))
            return -CREST__WS_INVALID_DATA;
    }
    if (msg_first && msg_last) {
        deliver(ws, ch->data, ch->len, !text); /* whole in one read: no copy */
        return 0;
    }
    int rc = msg_append(ws, ch->data, ch->len);
    if (rc < 0)
        return rc;
    if (msg_last) {
        deliver(ws, ws->msg ? ws->msg : (const uint8_t *)"", ws->msg_len, !text);
        msg_reset(ws);
    }
    return 0;
}

static const char *code_reason(int code) {
    switch (code) {
    case CREST__WS_PROTOCOL_ERROR:
        return "protocol error";
    case CREST__WS_INVALID_DATA:
        return "invalid UTF-8";
    case CREST__WS_TOO_BIG:
        return "message too big";
    default:
        return "internal error";
    }
}

/* Parse and handle data[0..len). Returns RUN_DONE with *used == len (or less when the socket
 * stopped taking input: a close frame, a failure), or RUN_BUSY / RUN_RATE when inflating had to
 * stop, *used being what was taken. Sends made meanwhile wait for input_done. */
static int ws_input(crest_ws_t *ws, uint8_t *data, size_t len, size_t *used) {
    crest__conn_t *c = ws->conn;
    size_t pos = 0;
    ws->flags |= WS_IN_DATA;
    if (ws->zin && ws->zin->active) { /* a piece cut short: its rest comes first */
        size_t left = ws->zin->left;
        int rc = piece_run(ws, data);
        if (rc == RUN_BUSY || rc == RUN_RATE) {
            *used = left - ws->zin->left;
            return rc;
        }
        pos = left;
        if (rc < 0)
            ws_fail(ws, -rc, code_reason(-rc));
    }
    while (pos < len && !(c->flags & CONN_CLOSING) && !(ws->flags & WS_CLOSE_RCVD)) {
        crest__ws_chunk_t ch;
        size_t n = 0;
        int rc = crest__ws_parse(&ws->parser, data + pos, len - pos, &n, &ch);
        if (rc == 0)
            break;
        if (rc > 0) {
            pos += n;
            rc = on_chunk(ws, &ch);
            if (rc == RUN_BUSY || rc == RUN_RATE) {
                *used = pos - ws->zin->left; /* the chunk's uninflated rest ends at pos */
                return rc;
            }
        }
        if (rc < 0)
            ws_fail(ws, -rc, code_reason(-rc));
    }
    *used = len;
    return RUN_DONE;
}

/* After a run of input: write what it sent, close a killed socket, and stop reading from a peer
 * that does not read its answers. */
static void input_done(crest_ws_t *ws) {
    crest__conn_t *c = ws->conn;
    ws->flags &= ~(uint32_t)WS_IN_DATA;
    if (ws->flags & WS_KILL) {
        crest__conn_close(c);
        return;
    }
    crest__conn_flush(c);
    /* An echo-like peer that does not read its answers stops being read too. */
    if (!(c->flags & CONN_CLOSING) && crest__conn_buffered(c) > ws->opts->max_buffered) {
        ws->flags |= WS_PAUSED;
        crest__conn_reading(c, 0);
    }
}

/* Keep data[0..len) for later (it lies in the loop's read buffer) and stop reading meanwhile. */
static int hold(crest_ws_t *ws, const uint8_t *data, size_t len, int why) {
    ws_held_t *h = ws->held;
    if (h == NULL) {
        h = calloc(1, sizeof(*h));
        if (h == NULL)
            return CREST_ENOMEM;
        h->ws = ws;
        ws->held = h;
    }
    if (h->pos > 0) { /* what was taken already goes */
        memmove(h->data, h->data + h->pos, h->len - h->pos);
        h->len -= h->pos;
        h->pos = 0;
    }
    uint8_t *d = realloc(h->data, h->len + len + 1);
    if (d == NULL)
        return CREST_ENOMEM;
    h->data = d;
    memcpy(h->data + h->len, data, len);
    h->len += len;
    crest__conn_reading(ws->conn, 0);
    if (why != RUN_DONE)
        held_schedule(h, why);
    return 0;
}

static void held_free(crest_ws_t *ws) {
    ws_held_t *h = ws->held;
    if (h == NULL)
        return;
    held_unlink(h);
    free(h->data);
    free(h);
    ws->held = NULL;
}

static void ws_on_data(crest__conn_t *c, char *data, size_t len) {
    crest_ws_t *ws = c->proto_data;
    ws->flags &= ~(uint32_t)WS_PING_OUT;
    if (ws->held) {
        /* Reading was stopped, but bytes came (a read already under way): they wait behind. */
        if (hold(ws, (const uint8_t *)data, len, RUN_DONE) != 0)
            crest__conn_close(c);
        return;
    }
    size_t used;
    int rc = ws_input(ws, (uint8_t *)data, len, &used);
    if (c->flags & CONN_CLOSING)
        return;
    if (rc != RUN_DONE && hold(ws, (const uint8_t *)data + used, len - used, rc) != 0) {
        crest__conn_close(c);
        return;
    }
    input_done(ws);
}

/* Go on with a socket's held input: its turn came, or its tokens are back. */
static void held_resume(ws_held_t *h) {
    crest_ws_t *ws = h->ws;
    crest__conn_t *c = ws->conn;
    ws->flags &= ~(uint32_t)WS_PING_OUT; /* it is busy with what it sent: that is an answer */
    size_t used;
    int rc = ws_input(ws, h->data + h->pos, h->len - h->pos, &used);
    if (c->flags & CONN_CLOSING)
        return;
    h->pos += used;
    if (rc == RUN_DONE) {
        held_free(ws);
        if (!(ws->flags & WS_PAUSED))
            crest__conn_reading(c, 1);
    } else {
        held_schedule(h, rc);
    }
    input_done(ws);
}

static void on_turn(crest_loop_t *loop, void *arg) {
    (void)loop, (void)arg;
    sched.posted = 0;
    sched.spent = 0;
    /* Each socket gets its turn in order until the slice is spent; the rest wait behind the
     * loop's other work. A socket still busy goes back to the end of the queue. */
    while (sched.run_head != NULL && sched.spent < INFLATE_SLICE) {
        ws_held_t *h = sched.run_head;
        held_unlink(h);
        held_resume(h);
    }
    if (sched.run_head != NULL && !sched.posted && crest_loop_post(loop, on_turn, NULL) == 0)
        sched.posted = 1;
}

static void on_wait_tick(crest_loop_t *loop, void *arg) {
    (void)arg;
    sched.ticking = 0;
    ws_held_t *h = sched.wait;
    while (h != NULL) {
        ws_held_t *next = h->next;
        tokens_refill(h->ws);
        if (h->ws->zin->tokens > 0)
            held_schedule(h, RUN_BUSY);
        h = next;
    }
    if (sched.wait != NULL && crest_loop_after(loop, INFLATE_WAIT_MS, on_wait_tick, NULL) == 0)
        sched.ticking = 1;
}

static void ws_on_written(crest__conn_t *c) {
    if (c->tx != NULL)
        return; /* more to write */
    crest_ws_t *ws = c->proto_data;
    crest__ps_slow(&ws->sub, 0);
    if (ws->flags & WS_PAUSED) {
        ws->flags &= ~(uint32_t)WS_PAUSED;
        if (ws->held == NULL)
            crest__conn_reading(c, 1);
    }
    if (ws->opts->on_drain && !(ws->flags & (WS_CLOSE_SENT | WS_CLOSE_RCVD)))
        ws->opts->on_drain(ws);
}

static void ws_on_timer(crest__conn_t *c) {
    crest_ws_t *ws = c->proto_data;
    crest_loop_t *loop = ws_loop(ws);
    if (ws->flags & (WS_CLOSE_SENT | WS_CLOSE_RCVD) || ws->opts->ping_interval_ms == 0) {
        crest__conn_close(c); /* the peer never answered our close */
        return;
    }
    if (ws->flags & WS_PING_OUT) {
        crest__conn_close(c); /* nothing read for a whole ping interval after our ping */
        return;
    }
    ws->flags |= WS_PING_OUT;
    if (queue_frame(ws, CREST__WS_PING, 0, "", 0) != 0) {
        crest__conn_close(c);
        return;
    }
    crest__conn_flush(c);
    if (!(c->flags & CONN_CLOSING))
        crest__wheel_arm(&loop->wheel, &c->timer, ws->opts->ping_interval_ms);
}

static void ws_on_shutdown(crest__conn_t *c) {
    crest_ws_t *ws = c->proto_data;
    /* A socket whose output is stuck would hold the close frame (and the shutdown) for the whole
     * close timeout: cut it at once. */
    if (crest__conn_buffered(c) > 0) {
        notify_close(ws, CREST__WS_GOING_AWAY, "server shutting down", 20);
        crest__conn_close(c);
        return;
    }
    /* Going away: 1001. A client that does not answer within a second (it may not be reading
     * at all) is not worth holding the whole shutdown for. */
    int rc = crest_ws_close(ws, CREST__WS_GOING_AWAY, "server shutting down");
    if (rc == 0 && !(c->flags & CONN_CLOSING) && ws->opts->close_timeout_ms > 1000)
        crest__wheel_arm(&ws_loop(ws)->wheel, &c->timer, 1000);
    else if (rc == CREST_EALREADY && !(c->flags & CONN_CLOSE_AFTER_WRITE) &&
             (ws->flags & WS_CLOSE_RCVD))
        crest__conn_close(c);
}

static void ws_on_close(crest__conn_t *c) {
    crest_ws_t *ws = c->proto_data;
    notify_close(ws, CREST__WS_ABNORMAL, "", 0);
    crest__ps_unsubscribe_all(&ws->sub);
    free(ws->msg);
    free(ws->ctrl);
    held_free(ws);
    if (ws->zin) {
        inflateEnd(&ws->zin->z);
        free(ws->zin);
    }
    free(ws);
    c->proto_data = NULL;
}

static const crest__proto_t ws_proto = {
    .on_data = ws_on_data,
    .on_written = ws_on_written,
    .on_timer = ws_on_timer,
    .on_shutdown = ws_on_shutdown,
    .on_close = ws_on_close,
};

/* ---- pub/sub subscriber ---- */

int crest__ws_share(crest_ws_t *ws, crest__psmsg_t *m) {
    crest__conn_t *c = ws->conn;
    if (ws_closing(ws) || (ws->flags & (WS_CLOSE_SENT | WS_CLOSE_RCVD | WS_KILL)))
        return -1;
    if (crest__conn_buffered(c) > ws->opts->max_buffered && ws->sub.dirty) {
        /* A burst within one slice: hand what this slice queued to the kernel before judging
         * the reader, or a fast reader would look slow. */
        crest__conn_flush(c); /* it stays on the dirty list; flushing twice is harmless */
        if (c->flags & CONN_CLOSING)
            return -1; /* a write error closed it, and ws is gone: only c lives on */
    }
    if (crest__conn_buffered(c) > ws->opts->max_buffered) {
        if (ws->opts->slow_policy == CREST_WS_SLOW_CLOSE) {
            ws->flags |= WS_KILL;
        } else {
            ws->dropped++;
            /* Until its output drains, publishers skip a loop where only such sockets listen. */
            crest__ps_slow(&ws->sub, 1);
        }
        return 0;
    }
    crest__outq_t *q = crest__conn_out(c);
    if (q == NULL) {
        ws->flags |= WS_KILL;
        return 0;
    }
    crest__psmsg_ref(m);
    if (crest__outq_share(q, m->ws, m->ws_len, crest__psmsg_unref, m) != 0)
        ws->flags |= WS_KILL; /* the borrow released the reference */
    else
        crest__count(&crest__http_loop(ws_loop(ws))->mod[CREST__MOD_WS_OUT], 1);
    return 1;
}

static int ws_deliver(crest__psub_t *s, crest__psmsg_t *m) {
    int rc = crest__ws_share(CREST__CONTAINER_OF(s, crest_ws_t, sub), m);
    if (rc < 0)
        return 0; /* closing, maybe gone: not touched again */
    crest__ps_mark_dirty(s);
    return rc;
}

void crest__ws_push(crest_ws_t *ws) {
    crest__conn_t *c = ws->conn;
    if (ws->flags & WS_KILL) {
        crest__conn_close(c);
        return;
    }
    crest__conn_flush(c);
    /* Written at once: no write completes later to call on_written. */
    if (!(c->flags & CONN_CLOSING) && ws->sub.slow && crest__conn_buffered(c) == 0)
        crest__ps_slow(&ws->sub, 0);
}

static void ws_psflush(crest__psub_t *s) {
    crest__ws_push(CREST__CONTAINER_OF(s, crest_ws_t, sub));
}

int crest_ws_subscribe(crest_ws_t *ws, crest_pubsub_t *ps, const char *topic) {
    if (ws_closing(ws) || (ws->flags & WS_NOTIFIED))
        return CREST_EPIPE;
    return crest__ps_subscribe(ps, &ws->sub, topic);
}

int crest_ws_unsubscribe(crest_ws_t *ws, crest_pubsub_t *ps, const char *topic) {
    return crest__ps_unsubscribe(ps, &ws->sub, topic);
}

/* ---- handshake ---- */

/* Nonzero when the comma-separated header value holds `token` (ASCII case-insensitive). */
static int has_token(crest_str_t v, const char *token) {
    size_t tl = strlen(token);
    const char *p = v.ptr, *end = v.ptr ? v.ptr + v.len : NULL;
    while (p && p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && strncasecmp(s, token, tl) == 0)
            return 1;
    }
    return 0;
}

/* A valid key is 16 bytes in base64: 22 characters of the alphabet and "==" (section 4.2.1). */
static int key_valid(crest_str_t k) {
    if (k.ptr == NULL || k.len != 24 || k.ptr[22] != '=' || k.ptr[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++) {
        char ch = k.ptr[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/'))
            return 0;
    }
    /* The last character before the padding carries 2 bits; the other 4 must be zero. */
    return strchr("AQgw", k.ptr[21]) != NULL;
}

/* Parse a Sec-WebSocket-Extensions value and pick the first permessage-deflate offer we can take.
 * Returns 1 and fills resp with our answer's parameters; 0 when there is none. */
static int deflate_negotiate(crest_str_t v, char *resp, size_t cap, int *client_no_ctx) {
    const char *p = v.ptr, *end = v.ptr ? v.ptr + v.len : NULL;
    while (p && p < end) {
        /* One offer: up to the next ',' */
        const char *oe = memchr(p, ',', (size_t)(end - p));
        if (oe == NULL)
            oe = end;
        int ok = 1, first = 1, cnc = 0, smwb = 15, seen = 0;
        const char *q = p;
        while (q < oe && ok) {
            const char *pe = memchr(q, ';', (size_t)(oe - q));
            if (pe == NULL)
                pe = oe;
            const char *s = q, *e = pe;
            while (s < e && (*s == ' ' || *s == '\t'))
                s++;
            while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            const char *eq = memchr(s, '=', (size_t)(e - s));
            size_t nl = (size_t)((eq ? eq : e) - s);
            while (nl > 0 && (s[nl - 1] == ' '))
                nl--;
            const char *val = eq ? eq + 1 : NULL;
            while (val && val < e && (*val == ' ' || *val == '"'))
                val++;
            size_t vl = val ? (size_t)(e - val) : 0;
            while (vl > 0 && val[vl - 1] == '"')
                vl--;
#define IS(name) (nl == sizeof(name) - 1 && strncasecmp(s, name, nl) == 0)
            int bit = 0;
            if (first) {
                ok = IS("permessage-deflate") && !eq;
                first = 0;
            } else if (IS("server_no_context_takeover") && !eq) {
                bit = 1;
            } else if (IS("client_no_context_takeover") && !eq) {
                bit = 2;
                cnc = 1;
            } else if (IS("server_max_window_bits") && vl >= 1 && vl <= 2) {
                bit = 4;
                smwb = atoi(val);
                if (smwb < 9 || smwb > 15 || (vl == 2 && val[0] == '0'))
                    ok = 0; /* 8 cannot be honoured with zlib's raw deflate */
            } else if (IS("client_max_window_bits")) {
                bit = 8;
                if (eq && (vl < 1 || vl > 2 || atoi(val) < 8 || atoi(val) > 15))
                    ok = 0;
            } else {
                ok = 0;
            }
#undef IS
            if (seen & bit)
                ok = 0; /* a parameter twice makes the offer invalid */
            seen |= bit;
            q = pe < oe ? pe + 1 : oe;
        }
        if (ok && !first) {
            /* Our compressor always starts fresh; smaller windows than 15 are not needed by us
             * (we only ever reference the current message), so a lower limit is acknowledged. */
            int n = snprintf(resp, cap, "permessage-deflate; server_no_context_takeover%s",
                             cnc ? "; client_no_context_takeover" : "");
            if (smwb < 15 && n > 0 && (size_t)n < cap)
                snprintf(resp + n, cap - (size_t)n, "; server_max_window_bits=%d", smwb);
            *client_no_ctx = cnc;
            return 1;
        }
        p = oe < end ? oe + 1 : end;
    }
    return 0;
}

static int reject(crest_req_t *req, int status) {
    crest_res_header(req, "Sec-WebSocket-Version", "13");
    if (status == 426)
        crest_res_header(req, "Upgrade", "websocket");
    crest_res_status(req, status);
    return CREST_EINVAL;
}

/* The WebSocket lines of crest_app_metrics (counted per loop in crest__http_loop_t.mod). */
static void write_metrics(const crest_app_t *app, void *arg, crest_buf_t *b) {
    (void)arg;
    crest_buf_printf(b,
                     "# HELP crest_ws_messages_received_total WebSocket messages received.\n"
                     "# TYPE crest_ws_messages_received_total counter\n"
                     "crest_ws_messages_received_total %llu\n"
                     "# HELP crest_ws_messages_sent_total WebSocket messages queued to send "
                     "(published ones included).\n"
                     "# TYPE crest_ws_messages_sent_total counter\n"
                     "crest_ws_messages_sent_total %llu\n",
                     (unsigned long long)crest__mod_sum(app, CREST__MOD_WS_IN),
                     (unsigned long long)crest__mod_sum(app, CREST__MOD_WS_OUT));
}

int crest_ws_upgrade(crest_req_t *req, const crest_ws_opts_t *opts) {
    /* Listed once per app (a second add is a no-op): an app that upgrades from its own handler,
     * without crest_ws_route, is counted too. Not per message: once per upgrade, off the
     * request path. */
    crest__metrics_add(crest__app_of(req->loop), write_metrics, NULL);
    crest__conn_t *c = req->conn;
    if (c == NULL) {
        crest_res_status(req, 503); /* only frees it: the client is gone */
        return CREST_ECANCELED;
    }
    crest_loop_t *loop = req->loop;
    if (loop->draining) {
        crest_res_status(req, 503);
        return CREST_EINVAL;
    }
    if (req->method != CREST_METHOD_GET || req->version_minor != 1 ||
        !has_token(crest_req_header(req, "Upgrade"), "websocket") ||
        !has_token(crest_req_header(req, "Connection"), "upgrade"))
        return reject(req, 426);
    crest_str_t ver = crest_req_header(req, "Sec-WebSocket-Version");
    if (ver.len != 2 || memcmp(ver.ptr, "13", 2) != 0)
        return reject(req, 426);
    crest_str_t key = crest_req_header(req, "Sec-WebSocket-Key");
    if (!key_valid(key))
        return reject(req, 400);

    /* Sec-WebSocket-Accept: base64(SHA-1(key + GUID)) (section 4.2.2). */
    char kbuf[24 + 36];
    memcpy(kbuf, key.ptr, 24);
    memcpy(kbuf + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)kbuf, sizeof(kbuf), digest);
    unsigned char accept[32];
    EVP_EncodeBlock(accept, digest, SHA_DIGEST_LENGTH);

    char ext[160];
    int client_no_ctx = 0;
    int deflate =
        opts->deflate && deflate_negotiate(crest_req_header(req, "Sec-WebSocket-Extensions"), ext,
                                           sizeof(ext), &client_no_ctx);

    crest_ws_t *ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        crest_res_status(req, 503);
        return CREST_ENOMEM;
    }
    int rc = crest_res_header(req, "Upgrade", "websocket");
    if (rc == 0)
        rc = crest_res_header(req, "Connection", "Upgrade");
    if (rc == 0)
        rc = crest_res_header(req, "Sec-WebSocket-Accept", (const char *)accept);
    if (rc == 0 && deflate)
        rc = crest_res_header(req, "Sec-WebSocket-Extensions", ext);
    if (rc == 0)
        rc = crest__res_head(req, 101, NULL, CREST__BODY_UNTIL_CLOSE);
    if (rc != 0) {
        free(ws);
        crest__conn_close(c);
        crest_res_status(req, 503);
        return CREST_ENOMEM;
    }

    ws->conn = c;
    ws->opts = opts;
    ws->sub.deliver = ws_deliver;
    ws->sub.flush = ws_psflush;
    ws->sub.loop = loop;
    if (deflate)
        ws->flags |= WS_DEFLATE | (client_no_ctx ? WS_CLIENT_NO_CTX : 0);
    crest__ws_parser_init(&ws->parser, opts->max_message, deflate, 1);
    /* The connection is not taken over yet, but output already goes behind the 101. */
    c->proto_data = ws;
    ws->flags |= WS_IN_OPEN;
    if (opts->on_open)
        opts->on_open(ws, req);
    ws->flags &= ~(uint32_t)WS_IN_OPEN;
    rc = crest__conn_takeover(req, &ws_proto, ws);
    if (rc != 0) {
        c->proto_data = NULL;
        notify_close(ws, CREST__WS_ABNORMAL, "", 0);
        free(ws);
        crest_res_status(req, 500);
        return rc;
    }
    if (ws->flags & WS_KILL) {
        crest__conn_close(c);
        return 0;
    }
    uint32_t ms = ws->flags & WS_CLOSE_SENT ? opts->close_timeout_ms : opts->ping_interval_ms;
    if (ms && !(ws->flags & WS_CLOSE_SENT)) {
        /* The first ping comes up to a quarter of the interval early, differently for each
         * socket (its address, hashed): sockets that connected together (a page reload of a whole
         * audience, a reconnect after a restart) would otherwise be pinged together forever, a
         * wave of pings and pongs every interval. Later pings keep the interval. */
        uint32_t spread = ms / 4;
        if (spread > 0)
            ms -= (uint32_t)(((uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull) >> 40) % spread;
    }
    if (ms)
        crest__wheel_arm(&loop->wheel, &c->timer, ms);
    return 0;
}

static int on_upgrade(crest_req_t *req, void *data) {
    int rc = crest_ws_upgrade(req, data);
    return rc == CREST_ENOMEM || rc == 0 || rc == CREST_EINVAL || rc == CREST_ECANCELED ? 0 : rc;
}

int crest_ws_route(crest_app_t *app, const char *pattern, const crest_ws_opts_t *opts) {
    if (opts == NULL)
        return CREST_EINVAL;
    int rc = crest__metrics_add(app, write_metrics, NULL);
    return rc ? rc : crest_app_route(app, "GET", pattern, on_upgrade, (void *)opts);
}
