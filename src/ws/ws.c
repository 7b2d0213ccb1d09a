/* WebSocket connections: the upgrade handshake, then a protocol that takes the HTTP connection
 * over (crest__proto_t). Frames are parsed in place in the loop's read buffer; a message that
 * arrives whole in one read reaches on_message without a copy, only fragmented or split messages
 * are assembled in a per-socket buffer that exists while they do. Output goes through the
 * connection's queue, so WebSocket writes share the HTTP batching and backpressure. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "http/conn.h"
#include "pubsub/pubsub.h"
#include "ws/frame.h"

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
    z_stream *inflater; /* with permessage-deflate, made at the first compressed message */
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
static int queue_frame(crest_ws_t *ws, int opcode, int rsv1, const void *data, size_t len) {
    crest__outq_t *q = crest__conn_out(ws->conn);
    uint8_t hdr[CREST__WS_MAX_HEADER];
    size_t hlen = crest__ws_header(hdr, opcode, 1, rsv1, len, NULL);
    if (q == NULL || crest__outq_copy(q, hdr, hlen) != 0 || crest__outq_copy(q, data, len) != 0)
        return CREST_ENOMEM;
    return 0;
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

static int send_data(crest_ws_t *ws, int opcode, const void *data, size_t len) {
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
        size_t zlen;
        uint8_t *z = compress_msg(data, len, &zlen);
        if (z != NULL) {
            rc = queue_frame(ws, opcode, 1, z, zlen);
            free(z);
        } else {
            rc = queue_frame(ws, opcode, 0, data, len);
        }
    } else {
        rc = queue_frame(ws, opcode, 0, data, len);
    }
    if (rc != 0)
        return rc;
    ws_flush(ws);
    return 0;
}

int crest_ws_send(crest_ws_t *ws, const void *data, size_t len, int binary) {
    return send_data(ws, binary ? CREST__WS_BINARY : CREST__WS_TEXT, data, len);
}

int crest_ws_send_text(crest_ws_t *ws, const char *text) {
    return send_data(ws, CREST__WS_TEXT, text, strlen(text));
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

/* Inflate a compressed piece into the message buffer. `tail` adds the 00 00 FF FF the sender
 * removed from the end of the message. */
static int inflate_piece(crest_ws_t *ws, const uint8_t *p, size_t n, int tail) {
    static const uint8_t trailer[4] = {0x00, 0x00, 0xFF, 0xFF};
    if (ws->inflater == NULL) {
        ws->inflater = calloc(1, sizeof(z_stream));
        if (ws->inflater == NULL)
            return -CREST__WS_INTERNAL;
        if (inflateInit2(ws->inflater, -15) != Z_OK) {
            free(ws->inflater);
            ws->inflater = NULL;
            return -CREST__WS_INTERNAL;
        }
    }
    z_stream *z = ws->inflater;
    for (int part = 0; part < 2; part++) {
        z->next_in = (Bytef *)(part ? trailer : p);
        z->avail_in = (uInt)(part ? (tail ? 4 : 0) : n);
        while (z->avail_in > 0) {
            uint8_t out[16384];
            z->next_out = out;
            z->avail_out = sizeof(out);
            int rc = inflate(z, Z_SYNC_FLUSH);
            if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
                return -CREST__WS_INVALID_DATA;
            int ar = msg_append(ws, out, sizeof(out) - z->avail_out);
            if (ar < 0)
                return ar;
            if (rc == Z_STREAM_END || (rc == Z_BUF_ERROR && z->avail_out != 0))
                break;
        }
    }
    return 0;
}

static void deliver(crest_ws_t *ws, const uint8_t *p, size_t n, int binary) {
    if (ws->opts->on_message && !(ws->flags & (WS_CLOSE_RCVD | WS_KILL)))
        ws->opts->on_message(ws, p, n, binary);
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
        int rc = inflate_piece(ws, ch->data, ch->len, msg_last);
        if (rc < 0)
            return rc;
        if (!msg_last)
            return 0;
        if (ws->flags & WS_CLIENT_NO_CTX)
            inflateReset(ws->inflater);
        if (text &&
            crest__utf8_feed(CREST__UTF8_ACCEPT, ws->msg, ws->msg_len) != CREST__UTF8_ACCEPT)
            return -CREST__WS_INVALID_DATA;
        deliver(ws, ws->msg, ws->msg_len, !text);
        msg_reset(ws);
        return 0;
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

static void ws_on_data(crest__conn_t *c, char *data, size_t len) {
    crest_ws_t *ws = c->proto_data;
    ws->flags &= ~(uint32_t)WS_PING_OUT;
    ws->flags |= WS_IN_DATA;
    size_t pos = 0;
    while (pos < len && !(ws->flags & WS_CLOSE_RCVD) && !(c->flags & CONN_CLOSING)) {
        crest__ws_chunk_t ch;
        size_t used = 0;
        int rc = crest__ws_parse(&ws->parser, (uint8_t *)data + pos, len - pos, &used, &ch);
        if (rc == 0)
            break;
        if (rc > 0) {
            pos += used;
            rc = on_chunk(ws, &ch);
        }
        if (rc < 0)
            ws_fail(ws, -rc, code_reason(-rc));
    }
    ws->flags &= ~(uint32_t)WS_IN_DATA;
    if (c->flags & CONN_CLOSING)
        return;
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

static void ws_on_drain(crest__conn_t *c) {
    crest_ws_t *ws = c->proto_data;
    crest__ps_slow(&ws->sub, 0);
    if (ws->flags & WS_PAUSED) {
        ws->flags &= ~(uint32_t)WS_PAUSED;
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
    if (ws->inflater) {
        inflateEnd(ws->inflater);
        free(ws->inflater);
    }
    free(ws);
    c->proto_data = NULL;
}

static const crest__proto_t ws_proto = {
    .on_data = ws_on_data,
    .on_drain = ws_on_drain,
    .on_timer = ws_on_timer,
    .on_shutdown = ws_on_shutdown,
    .on_close = ws_on_close,
};

/* ---- pub/sub subscriber ---- */

static int ws_deliver(crest__psub_t *s, crest__psmsg_t *m) {
    crest_ws_t *ws = CREST__CONTAINER_OF(s, crest_ws_t, sub);
    crest__conn_t *c = ws->conn;
    if (ws_closing(ws) || (ws->flags & (WS_CLOSE_SENT | WS_CLOSE_RCVD | WS_KILL)))
        return 0;
    if (crest__conn_buffered(c) > ws->opts->max_buffered && s->dirty) {
        /* A burst within one slice: hand what this slice queued to the kernel before judging
         * the reader, or a fast reader would look slow. */
        crest__conn_flush(c); /* it stays on the dirty list; flushing twice is harmless */
        if (c->flags & CONN_CLOSING)
            return 0; /* a write error closed it, and ws is gone: only c lives on */
    }
    if (crest__conn_buffered(c) > ws->opts->max_buffered) {
        if (ws->opts->slow_policy == CREST_WS_SLOW_CLOSE) {
            ws->flags |= WS_KILL;
        } else {
            ws->dropped++;
            /* Until its output drains, publishers skip a loop where only such sockets listen. */
            crest__ps_slow(s, 1);
        }
        crest__ps_mark_dirty(s);
        return 0;
    }
    crest__outq_t *q = crest__conn_out(c);
    if (q == NULL) {
        ws->flags |= WS_KILL;
        crest__ps_mark_dirty(s);
        return 0;
    }
    crest__psmsg_ref(m);
    if (crest__outq_borrow(q, m->ws, m->ws_len, crest__psmsg_unref, m) != 0)
        ws->flags |= WS_KILL; /* the borrow released the reference */
    crest__ps_mark_dirty(s);
    return 1;
}

static void ws_psflush(crest__psub_t *s) {
    crest_ws_t *ws = CREST__CONTAINER_OF(s, crest_ws_t, sub);
    crest__conn_t *c = ws->conn;
    if (ws->flags & WS_KILL) {
        crest__conn_close(c);
        return;
    }
    crest__conn_flush(c);
    /* Written at once: no write completes later to call on_drain. */
    if (!(c->flags & CONN_CLOSING) && s->slow && crest__conn_buffered(c) == 0)
        crest__ps_slow(s, 0);
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

int crest_ws_upgrade(crest_req_t *req, const crest_ws_opts_t *opts) {
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
    crest__http_date_refresh(loop);
    crest__outq_t *q = crest__conn_out(c);
    crest_buf_t head = CREST_BUF_INIT;
    crest_buf_printf(&head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                     (const char *)accept);
    if (deflate)
        crest_buf_printf(&head, "Sec-WebSocket-Extensions: %s\r\n", ext);
    crest_buf_append(&head, loop->date_line, loop->date_line_len);
    crest_buf_append(&head, req->res_headers.ptr ? req->res_headers.ptr : "", req->res_headers.len);
    crest_buf_append(&head, "\r\n", 2);
    if (q == NULL || head.err || crest__outq_copy(q, head.ptr, head.len) != 0) {
        crest_buf_free(&head);
        free(ws);
        crest__conn_close(c);
        crest_res_status(req, 503);
        return CREST_ENOMEM;
    }
    crest_buf_free(&head);
    crest__count(&loop->status_counts[101], 1);

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
    int rc = crest__conn_takeover(req, &ws_proto, ws);
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
    return crest_app_route(app, "GET", pattern, on_upgrade, (void *)opts);
}
