/* HTTP/2 (RFC 9113) on a crest connection, through nghttp2.
 *
 * nghttp2 does the framing, HPACK, flow control and the stream state machines; it never sees a
 * socket. The bytes read are fed to nghttp2_session_mem_recv and the frames it has to send are
 * pulled with nghttp2_session_mem_send into the connection's output queue (crest__conn_out), so
 * HTTP/2 shares the batching, TLS, the memory budget and the write deadline of every protocol.
 * Writing it by hand would mean HPACK, the stream states and two levels of flow control again;
 * nghttp2 is what curl, Apache httpd and nghttpx run, and Debian keeps its security fixes.
 *
 * Each stream is a crest_req_t with the writer below, so routes, middleware, answers given later
 * and streamed responses are the same code as over HTTP/1.1. The request's header fields are
 * copied as they are decoded (the views handed to the handler point into that copy), the body is
 * buffered up to max_body, and the request is dispatched once END_STREAM arrives. A response
 * body waits in its stream's queue until the peer's flow-control window takes it: nghttp2 pulls
 * it frame by frame without copying (NGHTTP2_DATA_FLAG_NO_COPY: we append the frame header and
 * lend the bytes), and what a stream still holds is what crest_res_buffered() reports, so a
 * small window becomes the same backpressure as a slow reader on HTTP/1.1.
 *
 * Defences. nghttp2 1.52 as Debian 12 ships it (1.52.0-1+deb12u3) already bounds the queue of
 * SETTINGS and PING acknowledgements (max_outbound_ack: a flood is a fatal error), the
 * CONTINUATION frames of one header block (CVE-2024-28182), the SETTINGS entries of one frame, and
 * refuses streams over our SETTINGS_MAX_CONCURRENT_STREAMS (REFUSED_STREAM before the client
 * acknowledged the setting, a connection error after). Its limit on reset streams (CVE-2023-44487)
 * allows a burst of 1000 and ends with INTERNAL_ERROR, so crest counts resets itself, and it has
 * no limit on empty DATA frames nor on the decoded size of a header block (an HPACK bomb: one
 * large field indexed once and referenced many times), which crest counts too. Every offender
 * gets a GOAWAY (ENHANCE_YOUR_CALM) and its connection ends; other connections see nothing. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

#define MAX_CONCURRENT_STREAMS 100
#define CONN_WINDOW (1 << 20) /* the connection's receive window: several uploads at once */
/* Defences (see the top of the file), counted per connection over a window of time. */
#define ABUSE_WINDOW_MS 1000
#define MAX_RESETS 100     /* streams the client resets per window */
#define MAX_EMPTY_DATA 100 /* DATA frames with no payload and no END_STREAM per window */
#define BOMB_FACTOR 4      /* a header block decoding past this many times max_header_bytes */
#define MAX_CONTINUATIONS 8
#define MAX_OUTBOUND_ACK 1000
/* Copied body bytes are gathered in chunks of about one DATA frame. */
#define CHUNK_ROOM (16 * 1024)
/* Streams kept for reuse per connection: a request costs no allocation of its stream and field
 * buffer while a client keeps this many or fewer in flight. */
#define SPARE_STREAMS 16

typedef struct h2_stream_s h2_stream_t;

/* A piece of a response body waiting for the peer's window. Copied bytes live in data[] (the last
 * chunk takes later small writes while it has room); a borrowed body is pointed to and given back
 * with release(arg). Every piece lent to the connection's output (a DATA frame's payload) holds a
 * reference, and the stream's queue one more while the chunk is in it: the bytes stay until the
 * last frame that uses them is written or dropped. */
typedef struct body_chunk_s {
    struct body_chunk_s *next;
    const char *ptr;
    size_t len;  /* bytes in the chunk */
    size_t sent; /* of them, lent to the connection's output */
    size_t room; /* bytes data[] can still take (0 when borrowed) */
    unsigned refs;
    crest_release_cb release;
    void *arg;
    char data[];
} body_chunk_t;

/* One stream. Owner: its connection's h2_t (freed when nghttp2 closes the stream or the
 * connection closes); the request, once dispatched, is the application's until its finishing
 * call. */
struct h2_stream_s {
    h2_stream_t *next, *prev; /* the connection's streams */
    struct h2_s *h;
    crest_req_t *req; /* dispatched and not finished yet */
    int32_t id;
    /* The request as it arrives: the header fields ([u32 name_len][u32 value_len][name][value]
     * each, pseudo-header fields too) and the body, both charged to the memory budget. */
    crest_buf_t fields;
    crest_buf_t body;
    size_t field_bytes; /* decoded size of every field, trailers too ("name: value\r\n") */
    size_t nfields;     /* regular fields kept */
    uint64_t content_length;
    /* The response body not yet taken by the peer's window. */
    body_chunk_t *head, *tail;
    size_t queued;           /* bytes in the queue not lent yet: crest_res_buffered() */
    size_t charged;          /* of them, charged to the memory budget */
    int reject;              /* the status answered instead of dispatching (413, 431, 503), or 0 */
    unsigned has_length : 1; /* content-length was sent */
    unsigned expect_continue : 1; /* expect: 100-continue */
    unsigned request_done : 1;    /* END_STREAM received, or the request given up */
    unsigned answered : 1;        /* a response head was submitted */
    unsigned no_body : 1;         /* that response has no body (HEAD, 204, 304) */
    unsigned body_eof : 1;        /* no more body will be queued */
    unsigned deferred : 1;        /* nghttp2 waits for nghttp2_session_resume_data */
    unsigned sized : 1;           /* the response said its length: its body comes in one piece */
    unsigned held : 1;            /* a streamed body nobody takes now: not counted as receiving */
    unsigned pull : 1;            /* its streamed body's consumer is ready: deliver what is held */
    uint64_t body_max; /* its route streams the body (crest_app_route_stream): the limit */
};

/* What the connection's timer (c->timer) is counting down. */
enum {
    TIMER_NONE,
    TIMER_PREFACE, /* the preface and the first request (header_timeout) */
    TIMER_IDLE,    /* no stream open (keepalive_timeout) */
    TIMER_RECV,    /* requests that have not fully arrived (body_timeout, min_body_rate) */
    TIMER_SEND,    /* bodies waiting for the peer's window (write_timeout) */
};

/* A connection's HTTP/2 state (c->proto_data). Owner: the connection; freed when it closes. */
typedef struct h2_s {
    nghttp2_session *ng;
    crest__conn_t *c;
    h2_stream_t *streams;
    h2_stream_t *spare; /* freed streams kept for the next ones (with their field buffer) */
    unsigned nspare;
    size_t receiving;            /* streams whose request has not fully arrived */
    uint64_t rx_bytes, tx_bytes; /* bytes read, body bytes lent to the output: progress */
    int timer;                   /* TIMER_* */
    uint64_t timer_start;        /* loop time when that deadline was armed */
    uint64_t timer_mark;         /* rx_bytes or tx_bytes then */
    uint64_t abuse_start;        /* loop time the current abuse window began */
    unsigned resets, empty_data; /* in that window */
    unsigned pulls;              /* streams with `pull` set */
    uint32_t goaway_code;        /* set by a defence: the connection ends with this GOAWAY */
    int busy;                    /* nesting of our entry points: the state outlives them */
    unsigned in_nghttp2 : 1;     /* inside mem_recv or mem_send: no sending from callbacks */
    unsigned had_stream : 1;
    unsigned failed : 1; /* a fatal error: the last GOAWAY is queued, nothing more is sent */
    unsigned dead : 1;   /* the connection closed while busy: freed on the way out */
} h2_t;

static crest_loop_t *h2_loop(const h2_t *h) {
    return crest__conn_loop(h->c);
}

static const crest_app_opts_t *h2_opts(const h2_t *h) {
    return h2_loop(h)->rt->opts;
}

/* ---- lifetime ----
 * Application code runs inside our entry points (handlers, drain and abort callbacks) and may
 * close the connection; its state is freed only when the outermost entry point returns. */

static void h2_enter(h2_t *h) {
    h->busy++;
}

static void h2_free(h2_t *h);

/* Leave an entry point; the state may be gone afterwards (the caller returns at once). */
static void h2_leave(h2_t *h) {
    if (--h->busy == 0 && h->dead)
        h2_free(h);
}

static int h2_stopped(const h2_t *h) {
    return h->dead || h->failed ||
           (h->c->flags & (CONN_CLOSING | CONN_LINGERING | CONN_CLOSE_AFTER_WRITE));
}

/* ---- memory ---- */

/* Grow b to hold `need` bytes, charging the growth to the memory budget (b->cap is what b holds
 * of it). CREST_ENOBUFS when the budget is used up. */
static int buf_reserve(h2_t *h, crest_buf_t *b, size_t need) {
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    crest__rt_t *rt = h2_loop(h)->rt;
    if (crest__mem_take(rt, cap - b->cap) != 0)
        return CREST_ENOBUFS;
    char *p = realloc(b->ptr, cap);
    if (p == NULL) {
        crest__mem_give(rt, NULL, cap - b->cap);
        return CREST_ENOMEM;
    }
    b->ptr = p;
    b->cap = cap;
    return 0;
}

static void buf_release(h2_t *h, crest_buf_t *b) {
    crest__mem_give(h2_loop(h)->rt, h2_loop(h), b->cap);
    free(b->ptr);
    *b = (crest_buf_t)CREST_BUF_INIT;
}

/* Keep the budget's count of the stream's queued response in step (memory already held). */
static void stream_account(h2_stream_t *s) {
    crest_loop_t *loop = h2_loop(s->h);
    if (s->queued > s->charged)
        crest__mem_charge(loop->rt, s->queued - s->charged);
    else if (s->queued < s->charged)
        crest__mem_give(loop->rt, loop, s->charged - s->queued);
    s->charged = s->queued;
}

/* ---- the response body queue ---- */

static void chunk_unref(void *arg) {
    body_chunk_t *k = arg;
    if (--k->refs > 0)
        return;
    if (k->release)
        k->release(k->arg);
    free(k);
}

/* Queue len bytes: copied (release NULL) or borrowed until release(arg), which runs in any case. */
static int queue_body(h2_stream_t *s, const void *data, size_t len, crest_release_cb release,
                      void *arg) {
    body_chunk_t *t = s->tail;
    if (release == NULL && t != NULL && t->room >= len) {
        memcpy(t->data + t->len, data, len);
        t->len += len;
        t->room -= len;
    } else {
        /* A body of known length comes whole: no room for more. A streamed one gathers small
         * writes into chunks of about a frame. */
        size_t room = release ? 0 : s->sized || len > CHUNK_ROOM ? len : CHUNK_ROOM;
        body_chunk_t *k = malloc(sizeof(*k) + room);
        if (k == NULL) {
            if (release)
                release(arg);
            return CREST_ENOMEM;
        }
        *k = (body_chunk_t){.len = len, .room = room, .refs = 1, .release = release, .arg = arg};
        if (release) {
            k->ptr = data;
        } else {
            k->ptr = k->data;
            memcpy(k->data, data, len);
            k->room -= len;
        }
        if (t)
            t->next = k;
        else
            s->head = k;
        s->tail = k;
    }
    s->queued += len;
    stream_account(s);
    return 0;
}

/* Lend the first n queued bytes to the connection's output q: each piece borrows its chunk. */
static int queue_lend(h2_stream_t *s, crest__outq_t *q, size_t n) {
    while (n > 0) {
        body_chunk_t *k = s->head;
        size_t take = k->len - k->sent < n ? k->len - k->sent : n;
        k->refs++;
        int rc = crest__outq_borrow(q, k->ptr + k->sent, take, chunk_unref, k);
        if (rc != 0)
            return rc; /* the borrow gave the reference back */
        k->sent += take;
        s->queued -= take;
        s->h->tx_bytes += take;
        n -= take;
        if (k->sent == k->len) {
            s->head = k->next;
            if (s->head == NULL)
                s->tail = NULL;
            chunk_unref(k); /* the queue's reference */
        }
    }
    stream_account(s);
    return 0;
}

static void queue_free(h2_stream_t *s) {
    while (s->head) {
        body_chunk_t *k = s->head;
        s->head = k->next;
        chunk_unref(k);
    }
    s->tail = NULL;
    s->queued = 0;
    stream_account(s);
}

/* ---- streams ---- */

static h2_stream_t *stream_of(h2_t *h, int32_t id) {
    return nghttp2_session_get_stream_user_data(h->ng, id);
}

/* The request has fully arrived (or was given up): it no longer counts as receiving. */
static void stream_request_done(h2_stream_t *s) {
    if (!s->request_done) {
        s->request_done = 1;
        if (!s->held)
            s->h->receiving--;
    }
}

/* A streamed body that nobody takes now (not subscribed yet, or paused) is not the client's
 * delay: its stream stops counting as receiving, for the body's deadline, until it is taken. */
static void stream_hold(h2_stream_t *s, int hold) {
    if (s->request_done || s->held == (unsigned)(hold != 0))
        return;
    s->held = hold != 0;
    if (hold)
        s->h->receiving--;
    else
        s->h->receiving++;
}

static void stream_free(h2_stream_t *s) {
    h2_t *h = s->h;
    stream_request_done(s);
    if (s->pull)
        h->pulls--;
    if (s->body.len > 0 && s->body_max > 0) /* a streamed body held back, never taken */
        nghttp2_session_consume_connection(h->ng, s->body.len);
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    buf_release(h, &s->body);
    queue_free(s);
    if (h->nspare < SPARE_STREAMS && s->fields.cap <= 2048) {
        s->next = h->spare;
        h->spare = s;
        h->nspare++;
        return;
    }
    buf_release(h, &s->fields);
    free(s);
}

/* Keep at most `keep` spare streams. */
static void spare_trim(h2_t *h, unsigned keep) {
    while (h->nspare > keep) {
        h2_stream_t *s = h->spare;
        h->spare = s->next;
        h->nspare--;
        buf_release(h, &s->fields);
        free(s);
    }
}

/* A stream for a new request: a spare one (its field buffer kept, charged already) or a new. */
static h2_stream_t *stream_new(h2_t *h) {
    h2_stream_t *s = h->spare;
    if (s == NULL)
        return calloc(1, sizeof(h2_stream_t));
    h->spare = s->next;
    h->nspare--;
    crest_buf_t fields = s->fields;
    memset(s, 0, sizeof(*s));
    fields.len = 0;
    fields.err = 0;
    s->fields = fields;
    return s;
}

/* The client is gone from this stream (reset, or the connection closed): the request lives on,
 * detached, until the application's finishing call, as over a closed HTTP/1.1 connection. */
static void stream_detach(h2_stream_t *s) {
    crest_req_t *req = s->req;
    if (req == NULL)
        return;
    s->req = NULL;
    req->conn = NULL;
    req->stream = NULL;
    req->aborted = 1;
    /* The client left before the body's last call (maybe whole but held by a pause). */
    if (crest__body_owed(req) && crest__body_end(req, CREST_ECANCELED))
        return; /* the app finished req in its body callback */
    if (req->abort_cb)
        req->abort_cb(req, req->abort_arg);
}

/* Let nghttp2 pull the stream's body again (it deferred it when the queue ran dry). */
static void stream_resume(h2_stream_t *s) {
    if (s->deferred) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->h->ng, s->id);
    }
}

/* ---- sending ---- */

/* The connection ends now with a GOAWAY carrying `code`: after a fatal error nghttp2's session
 * can no longer be used, so the frame is written by hand, and every request detaches. */
static void h2_fail(h2_t *h, uint32_t code) {
    crest__conn_t *c = h->c;
    if (h->failed || (c->flags & CONN_CLOSING))
        return;
    h->failed = 1;
    uint32_t last = (uint32_t)nghttp2_session_get_last_proc_stream_id(h->ng) & 0x7fffffffu;
    uint8_t f[17] = {0, 0, 8, NGHTTP2_GOAWAY, 0, 0, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        f[9 + i] = (uint8_t)(last >> (24 - 8 * i));
        f[13 + i] = (uint8_t)(code >> (24 - 8 * i));
    }
    for (h2_stream_t *s = h->streams; s != NULL; s = s->next)
        stream_detach(s);
    crest__outq_t *q = crest__conn_out(c);
    if (q == NULL || crest__outq_copy(q, f, sizeof(f)) != 0) {
        crest__conn_close(c);
        return;
    }
    c->flags |= CONN_CLOSE_AFTER_WRITE;
    crest__conn_flush(c); /* lingers once it is out */
}

static uint32_t error_code_of(int lib_error) {
    switch (lib_error) {
    case NGHTTP2_ERR_FLOODED:
    case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
    case NGHTTP2_ERR_TOO_MANY_SETTINGS:
        return NGHTTP2_ENHANCE_YOUR_CALM;
    case NGHTTP2_ERR_HEADER_COMP:
        return NGHTTP2_COMPRESSION_ERROR;
    case NGHTTP2_ERR_NOMEM:
    case NGHTTP2_ERR_CALLBACK_FAILURE:
        return NGHTTP2_INTERNAL_ERROR;
    default:
        return NGHTTP2_PROTOCOL_ERROR;
    }
}

/* Pull nghttp2's frames into the connection's output while it holds at most max_output (the rest
 * waits inside nghttp2: control frames in its queue, bodies in the streams). Returns the bytes
 * queued, or -1 when the connection failed. */
static ssize_t h2_pump(h2_t *h) {
    crest__conn_t *c = h->c;
    size_t max = h2_opts(h)->max_output;
    ssize_t total = 0;
    h->in_nghttp2 = 1;
    while (crest__conn_buffered(c) <= max) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(h->ng, &p);
        if (n < 0) {
            h->in_nghttp2 = 0;
            h2_fail(h, error_code_of((int)n));
            return -1;
        }
        if (n == 0)
            break;
        crest__outq_t *q = crest__conn_out(c);
        if (q == NULL || crest__outq_copy(q, p, (size_t)n) != 0) {
            h->in_nghttp2 = 0;
            crest__conn_close(c);
            return -1;
        }
        total += n;
    }
    h->in_nghttp2 = 0;
    return total;
}

/* Pull and write until nghttp2 has nothing more or the kernel stops taking it (then a write is
 * in flight and its completion comes back here through on_written). Nonzero when stopped. */
static int h2_send(h2_t *h) {
    crest__conn_t *c = h->c;
    for (;;) {
        if (h2_stopped(h))
            return 1;
        ssize_t n = h2_pump(h);
        if (n < 0)
            return 1;
        crest__conn_flush(c);
        if (c->flags & CONN_CLOSING)
            return 1;
        if (n == 0 || c->tx != NULL)
            return 0;
    }
}

/* Run the drain callbacks whose mark was reached. A callback may write, finish its request or
 * answer others, which changes the list: the scan starts over after each one. */
static void h2_run_drains(h2_t *h) {
    for (;;) {
        if (h2_stopped(h))
            return;
        h2_stream_t *s = h->streams;
        while (s != NULL && !(s->req && s->req->drain_cb && s->queued <= s->req->drain_mark))
            s = s->next;
        if (s == NULL)
            return;
        crest_req_t *req = s->req;
        crest_drain_cb cb = req->drain_cb;
        req->drain_cb = NULL;
        cb(req, req->drain_arg);
    }
}

/* Arm c->timer for what the connection waits on (unless that deadline already runs). */
static void h2_arm_timer(h2_t *h) {
    crest__conn_t *c = h->c;
    crest_loop_t *loop = h2_loop(h);
    const crest_app_opts_t *o = h2_opts(h);
    if (c->tx != NULL)
        return; /* the write deadline runs (core's) and on_written comes back here */
    int want = TIMER_NONE;
    if (h->streams == NULL) {
        want = h->had_stream ? TIMER_IDLE : TIMER_PREFACE;
        spare_trim(h, 1); /* an idle connection keeps one, for a client asking one at a time */
    } else if (h->receiving > 0) {
        want = TIMER_RECV;
    } else {
        for (h2_stream_t *s = h->streams; s != NULL && want == TIMER_NONE; s = s->next)
            if (s->queued > 0)
                want = TIMER_SEND; /* a body waits for the peer's window */
    }
    if (want == h->timer && (c->timer.next != NULL || want == TIMER_NONE))
        return;
    h->timer = want;
    h->timer_start = uv_now(&loop->uv);
    h->timer_mark = want == TIMER_SEND ? h->tx_bytes : h->rx_bytes;
    uint64_t ms = 0;
    switch (want) {
    case TIMER_PREFACE:
        ms = o->header_timeout_ms;
        break;
    case TIMER_IDLE:
        ms = loop->draining ? CREST__DRAIN_GRACE_MS : o->keepalive_timeout_ms;
        break;
    case TIMER_RECV:
        ms = o->body_timeout_ms;
        break;
    case TIMER_SEND:
        ms = o->write_timeout_ms;
        break;
    }
    if (ms > 0)
        crest__wheel_arm(&loop->wheel, &c->timer, ms);
    else
        crest__wheel_disarm(&loop->wheel, &c->timer);
}

/* After output: close a session that is done, keep reading while the output is under max_output
 * (HTTP/2 must keep reading to see WINDOW_UPDATE, so input stops only for the kernel's backlog),
 * and arm the deadline. */
static void h2_settle(h2_t *h) {
    crest__conn_t *c = h->c;
    if (h2_stopped(h))
        return;
    if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) {
        /* Both sides said GOAWAY (or we did, and no stream is left): close once it is out. */
        c->flags |= CONN_CLOSE_AFTER_WRITE;
        crest__conn_flush(c);
        return;
    }
    crest__conn_reading(c, crest__conn_buffered(c) <= h2_opts(h)->max_output);
    h2_arm_timer(h);
}

/* Send what nghttp2 has, then (run_drains) call the drain callbacks that are due, and settle. */
static void h2_output(h2_t *h, int run_drains) {
    if (h2_send(h) != 0)
        return;
    if (run_drains) {
        h2_run_drains(h);
        if (h2_send(h) != 0)
            return;
    }
    h2_settle(h);
}

/* A writer call outside our own entry points (an answer given later): send now. Inside them
 * (a handler during mem_recv, a callback of nghttp2's) the entry point sends on its way out. */
static void h2_push(h2_t *h) {
    if (h->in_nghttp2 || h2_stopped(h))
        return;
    h2_enter(h);
    h2_output(h, 0);
    h2_leave(h);
}

/* ---- the response writer ---- */

static int is_connection_field(const char *name, size_t len) {
    static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return 1;
    return 0;
}

/* Add the "Name: value\r\n" lines of text[0..len) to nva (room for max), leaving out the fields
 * that are connection-specific in HTTP/1.1 and forbidden in HTTP/2 (RFC 9113 8.2.2). nghttp2
 * copies each name in lower case, as HTTP/2 requires. Returns the count added. */
static size_t lines_to_nv(const char *text, size_t len, nghttp2_nv *nva, size_t max) {
    size_t n = 0;
    if (len == 0)
        return 0; /* text may be NULL */
    const char *p = text, *end = text + len;
    while (p < end && n < max) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *stop = eol ? eol : end;
        const char *colon = memchr(p, ':', (size_t)(stop - p));
        if (colon != NULL && colon > p) {
            const char *v = colon + 1, *vend = stop;
            while (v < vend && (*v == ' ' || *v == '\t'))
                v++;
            while (vend > v && (vend[-1] == '\r' || vend[-1] == ' ' || vend[-1] == '\t'))
                vend--;
            if (!is_connection_field(p, (size_t)(colon - p)))
                nva[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, (size_t)(colon - p),
                                        (size_t)(vend - v), NGHTTP2_NV_FLAG_NONE};
        }
        p = eol ? eol + 1 : end;
    }
    return n;
}

static size_t count_lines(const char *text, size_t len) {
    size_t n = 0;
    for (const char *p = text; p && (p = memchr(p, '\n', len - (size_t)(p - text))) != NULL; p++)
        n++;
    return n;
}

static ssize_t on_body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user) {
    (void)ng, (void)id, (void)buf, (void)user;
    h2_stream_t *s = src->ptr;
    if (s->queued == 0) {
        if (!s->body_eof) {
            s->deferred = 1; /* stream_resume brings it back when more is queued */
            return NGHTTP2_ERR_DEFERRED;
        }
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t n = s->queued < length ? s->queued : length;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY; /* on_send_data appends the frame */
    if (n == s->queued && s->body_eof)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_send_data(nghttp2_session *ng, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *src, void *user) {
    (void)ng;
    h2_t *h = user;
    /* No padding: crest sets no select_padding_callback, so a DATA frame is its 9-byte header
     * and the payload. */
    (void)frame;
    crest__outq_t *q = crest__conn_out(h->c);
    if (q == NULL || crest__outq_copy(q, framehd, 9) != 0 || queue_lend(src->ptr, q, length) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static int w_head(crest_req_t *req, int status, const char *ctype, int64_t body_len) {
    h2_stream_t *s = req->stream;
    h2_t *h = s->h;
    crest_loop_t *loop = req->loop;
    crest__http_loop_t *hl = crest__http_loop(loop);
    const crest_app_t *app = crest__app_of(loop);
    if (s->answered || h->failed)
        return CREST_EINVAL;
    if (!h->in_nghttp2)
        crest__http_date_refresh(loop); /* on_data refreshed it when it began */
    size_t hsts_len = h->c->tls ? app->hsts_len : 0;
    size_t max = 3 + count_lines(req->res_headers.ptr, req->res_headers.len) + 2 + 1;
    nghttp2_nv stack_nva[32];
    nghttp2_nv *nva = max <= 32 ? stack_nva : malloc(max * sizeof(*nva));
    if (nva == NULL)
        return CREST_ENOMEM;
    char code[3] = {(char)('0' + status / 100), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10)}; /* 100..599: response.c checked */
    char length[24];
    size_t n = 0;
    nva[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    if (ctype != NULL)
        nva[n++] = (nghttp2_nv){(uint8_t *)"content-type", (uint8_t *)ctype, 12, strlen(ctype),
                                NGHTTP2_NV_FLAG_NONE};
    int bodiless = req->head_only || status == 204 || status == 304 || status < 200;
    if (body_len >= 0 && status != 204 && status != 304 && status >= 200) {
        char *d = crest__fmt_u64(length + sizeof(length), (uint64_t)body_len);
        nva[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)d, 14,
                                (size_t)(length + sizeof(length) - d), NGHTTP2_NV_FLAG_NONE};
    }
    /* A complete response with nothing after its head ends the stream with the HEADERS frame. A
     * streamed one always gets a body (perhaps one empty DATA frame): its stream must stay open
     * until the application finishes it, or the request would look aborted. */
    int ends_with_head = body_len >= 0 && (bodiless || body_len == 0);
    n += lines_to_nv(req->res_headers.ptr, req->res_headers.len, nva + n, max - n);
    n += lines_to_nv(hl->date_line, hl->date_line_len, nva + n, max - n); /* server, date */
    n += lines_to_nv(app->hsts, hsts_len, nva + n, max - n);
    nghttp2_data_provider body = {.source.ptr = s, .read_callback = on_body_read};
    int rv = nghttp2_submit_response(h->ng, s->id, nva, n, ends_with_head ? NULL : &body);
    if (nva != stack_nva)
        free(nva);
    if (rv != 0)
        return rv == NGHTTP2_ERR_NOMEM ? CREST_ENOMEM : CREST_EINVAL;
    s->answered = 1;
    s->no_body = (unsigned)bodiless;
    s->sized = body_len >= 0;
    return 0;
}

static int w_body(crest_req_t *req, const void *data, size_t len, crest_release_cb release,
                  void *arg) {
    h2_stream_t *s = req->stream;
    if (s->no_body || s->body_eof || len == 0) {
        if (release)
            release(arg);
        return 0;
    }
    int rc = queue_body(s, data, len, release, arg);
    if (rc == 0)
        stream_resume(s);
    return rc;
}

static int w_end(crest_req_t *req) {
    h2_stream_t *s = req->stream;
    s->body_eof = 1;
    stream_resume(s);
    return 0;
}

/* The request leaves its stream and is recycled; a body still queued goes on being sent. */
static void w_finish(crest_req_t *req) {
    h2_stream_t *s = req->conn != NULL ? req->stream : NULL;
    crest__req_free(req);
    if (s == NULL)
        return; /* the client had gone */
    h2_t *h = s->h;
    s->req = NULL;
    s->body_eof = 1;
    if (!s->answered) /* finished without an answer: the client must not wait for one */
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    stream_resume(s);
    h2_push(h);
}

static size_t w_buffered(const crest_req_t *req) {
    const h2_stream_t *s = req->stream;
    return s->queued;
}

static void w_push(crest_req_t *req) {
    h2_stream_t *s = req->stream;
    h2_push(s->h);
}

static void w_want_drain(crest_req_t *req) {
    h2_stream_t *s = req->stream;
    /* The callback must not run before crest_res_on_drain returns: the check runs in the next
     * round of parked connections (or on the next read or write completion, if sooner). */
    crest__conn_park(s->h->c);
    h2_push(s->h);
}

/* Only this stream is cut off (RST_STREAM); the connection and its other streams go on. */
static void w_abort(crest_req_t *req) {
    h2_stream_t *s = req->stream;
    h2_t *h = s->h;
    nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    stream_detach(s);
    h2_push(h);
}

/* The interim 100 the client waits for before it sends the body (expect: 100-continue). */
static void submit_continue(h2_stream_t *s) {
    nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
    nghttp2_submit_headers(s->h->ng, NGHTTP2_FLAG_NONE, s->id, NULL, &nv, 1, NULL);
}

/* A streamed body's consumer is ready: the 100 Continue the client waits for, then what the
 * stream holds, delivered from h2_on_event (a later turn). */
static void w_body_pull(crest_req_t *req) {
    h2_stream_t *s = req->stream;
    h2_t *h = s->h;
    crest__body_t *b = req->body_stream;
    if (s->expect_continue && !b->continued && !b->ended && !s->answered) {
        b->continued = 1;
        submit_continue(s);
    }
    if (!s->pull) {
        s->pull = 1;
        h->pulls++;
    }
    crest__conn_park(h->c);
    h2_push(h);
}

/* No sendfile: a file's bytes travel in DATA frames of the stream's queue (read in slices). */
static const crest__writer_t h2_writer = {
    w_head, w_body, w_end, w_finish, w_buffered, w_push, w_want_drain, w_abort, w_body_pull, NULL,
};

/* ---- receiving requests ---- */

/* Answer the stream with `status` instead of dispatching its request (it is not complete, or
 * broke a limit): the rest of its body is dropped, and once the answer is out the client is told
 * to stop sending (RST_STREAM NO_ERROR, see on_frame_send). */
static void build_head(h2_stream_t *s, crest_req_t *req, crest__http_head_t *head);

/* head_read: the stream's header block is complete and valid (a 413 for its body): the error
 * handler and the head hooks see its method, path and headers, as with HTTP/1.1. */
static void stream_reject(h2_stream_t *s, int status, int head_read) {
    h2_t *h = s->h;
    crest_loop_t *loop = h2_loop(h);
    if (s->answered || s->req != NULL)
        return;
    s->reject = status;
    buf_release(h, &s->body);
    crest_buf_t fields = s->fields; /* released after the answer: the head points into it */
    s->fields = (crest_buf_t)CREST_BUF_INIT;
    crest_req_t *req = crest__req_new(loop, h->c, &h2_writer);
    if (req == NULL) {
        buf_release(h, &fields);
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    req->stream = s;
    req->version_minor = 1;
    req->keep_alive = 1;
    s->req = req;
    if (head_read) {
        crest__http_head_t *head = &crest__http_loop(loop)->head;
        s->fields = fields;
        build_head(s, req, head);
        s->fields = (crest_buf_t)CREST_BUF_INIT;
        req->head = head;
        req->method = head->method_id;
        req->head_only = head->method_id == CREST_METHOD_HEAD;
    }
    crest__res_reject(req, status); /* req is finished (freed) by it */
    buf_release(h, &fields);
}

static int str_is(const uint8_t *s, size_t len, const char *lower) {
    return strlen(lower) == len && memcmp(s, lower, len) == 0;
}

/* The stream's next kept field at *off ([u32 name_len][u32 value_len][name][value]), *off moved
 * past it; 0 at the end. */
static int next_field(const h2_stream_t *s, size_t *off, crest_str_t *name, crest_str_t *value) {
    if (*off + 8 > s->fields.len)
        return 0;
    uint32_t nl, vl;
    memcpy(&nl, s->fields.ptr + *off, 4);
    memcpy(&vl, s->fields.ptr + *off + 4, 4);
    *name = (crest_str_t){s->fields.ptr + *off + 8, nl};
    *value = (crest_str_t){name->ptr + nl, vl};
    *off += 8 + nl + vl;
    return 1;
}

/* Fill head (the loop's, valid during the handler call) from the stream's fields. */
static void build_head(h2_stream_t *s, crest_req_t *req, crest__http_head_t *head) {
    crest_str_t authority = {NULL, 0};
    size_t n = 0, cookies = 0, cookie_len = 0;
    head->method = head->target = head->path = head->query = (crest_str_t){"", 0};
    head->has_host = 0;
    crest_str_t name, value;
    for (size_t off = 0; next_field(s, &off, &name, &value);) {
        if (name.len > 0 && name.ptr[0] == ':') {
            if (crest__str_ieq(name, ":method"))
                head->method = value;
            else if (crest__str_ieq(name, ":path"))
                head->target = value;
            else if (crest__str_ieq(name, ":authority"))
                authority = value;
            continue;
        }
        if (n == CREST__MAX_HEADERS)
            continue;
        if (crest__str_ieq(name, "host"))
            head->has_host = 1;
        if (crest__str_ieq(name, "cookie")) {
            cookies++;
            cookie_len += value.len + 2;
        }
        head->headers[n++] = (crest_header_t){name, value};
    }
    if (!head->has_host && authority.ptr != NULL && n < CREST__MAX_HEADERS) {
        head->headers[n++] = (crest_header_t){{"host", 4}, authority};
        head->has_host = 1;
    }
    head->num_headers = n;
    if (cookies > 1) {
        /* HTTP/2 may split the cookie field into crumbs (RFC 9113 8.2.3); the application sees
         * them joined with "; ", as HTTP/1.1 carries them. */
        char *joined = crest_req_alloc(req, cookie_len);
        size_t len = 0, keep = n;
        for (size_t i = 0; joined != NULL && i < n; i++) {
            if (!crest__str_ieq(head->headers[i].name, "cookie"))
                continue;
            if (len > 0) {
                memcpy(joined + len, "; ", 2);
                len += 2;
            }
            memcpy(joined + len, head->headers[i].value.ptr, head->headers[i].value.len);
            len += head->headers[i].value.len;
            if (keep == n)
                keep = i;
            else
                head->headers[i].name.len = 0; /* marked for removal below */
        }
        if (joined != NULL) {
            head->headers[keep].value = (crest_str_t){joined, len};
            size_t w = 0;
            for (size_t i = 0; i < n; i++)
                if (head->headers[i].name.len > 0)
                    head->headers[w++] = head->headers[i];
            head->num_headers = w;
        }
    }
    head->method_id = crest__http_method_id(head->method.ptr, head->method.len);
    const char *q = memchr(head->target.ptr, '?', head->target.len);
    head->path =
        (crest_str_t){head->target.ptr, q ? (size_t)(q - head->target.ptr) : head->target.len};
    head->query = q ? (crest_str_t){q + 1, head->target.len - head->path.len - 1}
                    : (crest_str_t){head->target.ptr + head->target.len, 0};
    head->version_minor = 1;
    head->keep_alive = 1;
    head->expect_continue = head->expect_unknown = head->upgrade = 0;
    head->body_kind = s->body.len > 0 || s->has_length ? CREST__BODY_LENGTH : CREST__BODY_NONE;
    head->content_length = s->body.len;
}

/* The request is complete: run it through the middleware and the router. */
static void stream_dispatch(h2_stream_t *s) {
    h2_t *h = s->h;
    crest_loop_t *loop = h2_loop(h);
    if (s->reject || s->answered || s->req != NULL)
        return;
    if (h->c->tx != NULL && crest__mem_over(loop->rt)) {
        /* As HTTP/1.1: past the buffer budget, a connection with unsent output gets no work. */
        stream_reject(s, 503, 0);
        return;
    }
    crest_req_t *req = crest__req_new(loop, h->c, &h2_writer);
    if (req == NULL) {
        stream_reject(s, 503, 0);
        return;
    }
    crest__http_head_t *head = &crest__http_loop(loop)->head;
    req->stream = s;
    s->req = req;
    build_head(s, req, head);
    req->head = head;
    req->body = (crest_str_t){s->body.ptr, s->body.len};
    req->method = head->method_id;
    req->version_minor = 1;
    req->keep_alive = 1;
    req->head_only = head->method_id == CREST_METHOD_HEAD;
    if (s->body_max > 0) {
        /* Its route streams the body: the chain runs now, and DATA goes to the app as it comes
         * (stream_body_data), each frame's window given back once the app has taken it. */
        crest__body_t *b = crest__body_new(req, s->body_max);
        if (b == NULL) {
            crest__res_reject(req, 503);
            buf_release(h, &s->fields);
            return;
        }
        crest__http_dispatch(req, &s->req);
        buf_release(h, &s->fields);
        if (s->req == req)
            stream_hold(s, !crest__body_wants(req));
        return;
    }
    crest__http_dispatch(req, &s->req);
    /* The views into the fields and the body ended with the handler call. */
    buf_release(h, &s->fields);
    buf_release(h, &s->body);
}

/* Deliver what the stream holds of its streamed body, then its end once all arrived, while the
 * consumer takes them; the held bytes' window goes back to the client once delivered. Inside our
 * entry points (in_nghttp2 set): the app's callbacks cannot make the stream go away. */
static void stream_body_flush(h2_stream_t *s) {
    h2_t *h = s->h;
    crest_req_t *req = s->req;
    if (req == NULL || !crest__body_wants(req))
        return;
    if (s->body.len > 0) {
        crest_buf_t held = s->body;
        s->body = (crest_buf_t)CREST_BUF_INIT;
        nghttp2_session_consume(h->ng, s->id, held.len);
        crest__body_data(req, held.ptr, held.len);
        buf_release(h, &held);
        if (s->req != req)
            return;
    }
    if (req->body_stream->ended && crest__body_wants(req) && crest__body_end(req, 0))
        return;
    if (s->req == req)
        stream_hold(s, !crest__body_wants(req));
}

/* DATA of a streamed body: to the app at once when it takes it and nothing is held before, else
 * held (at most the stream's window: the client cannot send more until it is given back). */
static void stream_body_data(h2_stream_t *s, const uint8_t *data, size_t len) {
    h2_t *h = s->h;
    crest_req_t *req = s->req;
    if (!crest__body_open(req)) {
        nghttp2_session_consume(h->ng, s->id, len); /* dropped: nobody will read it */
        return;
    }
    if (s->body.len == 0 && crest__body_wants(req)) {
        nghttp2_session_consume(h->ng, s->id, len);
        crest__body_data(req, data, len);
        if (s->req == req)
            stream_hold(s, !crest__body_wants(req));
        return;
    }
    if (buf_reserve(h, &s->body, s->body.len + len) != 0) {
        nghttp2_session_consume(h->ng, s->id, len);
        crest__body_end(req, CREST_ENOBUFS);
        return;
    }
    memcpy(s->body.ptr + s->body.len, data, len);
    s->body.len += len;
    stream_hold(s, !crest__body_wants(req));
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    h2_t *h = user;
    if (h->dead || frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    h2_stream_t *s = stream_new(h);
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    s->h = h;
    s->id = frame->hd.stream_id;
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->receiving++;
    h->had_stream = 1;
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
}

/* Keep one decoded field: copied, since nghttp2's buffers do not outlive the callback. The size
 * of the whole block is bounded here: past max_header_bytes (or max_headers fields) the request
 * gets 431, and a block decoding to several times that (an HPACK bomb: a few bytes on the wire
 * per large field) ends the connection. */
static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
    (void)ng, (void)flags;
    h2_t *h = user;
    const crest_app_opts_t *o = h2_opts(h);
    h2_stream_t *s = stream_of(h, frame->hd.stream_id);
    if (h->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (s == NULL)
        return 0;
    s->field_bytes += namelen + valuelen + 4;
    if (s->field_bytes > BOMB_FACTOR * o->max_header_bytes) {
        h->goaway_code = NGHTTP2_ENHANCE_YOUR_CALM;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST || s->reject)
        return 0; /* trailer fields are dropped, as HTTP/1.1 drops them */
    int regular = namelen == 0 || name[0] != ':';
    if (s->field_bytes > o->max_header_bytes || (regular && s->nfields >= o->max_headers)) {
        s->reject = 431; /* answered when the block ends (on_frame_recv) */
        buf_release(h, &s->fields);
        return 0;
    }
    if (str_is(name, namelen, "content-length")) {
        /* nghttp2 checked it is a number and will check the body against it. */
        s->has_length = 1;
        s->content_length = strtoull((const char *)value, NULL, 10);
    } else if (str_is(name, namelen, "expect") && valuelen == 12 &&
               strncasecmp((const char *)value, "100-continue", 12) == 0) {
        s->expect_continue = 1;
    }
    uint32_t nl = (uint32_t)namelen, vl = (uint32_t)valuelen;
    if (buf_reserve(h, &s->fields, s->fields.len + 8 + namelen + valuelen) != 0) {
        s->reject = 503;
        buf_release(h, &s->fields);
        return 0;
    }
    char *p = s->fields.ptr + s->fields.len;
    memcpy(p, &nl, 4);
    memcpy(p + 4, &vl, 4);
    memcpy(p + 8, name, namelen);
    memcpy(p + 8 + namelen, value, valuelen);
    s->fields.len += 8 + namelen + valuelen;
    s->nfields += (size_t)regular;
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user) {
    (void)ng, (void)flags;
    h2_t *h = user;
    if (h->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    h2_stream_t *s = stream_of(h, id);
    if (s != NULL && s->req != NULL && s->req->body_stream != NULL) {
        stream_body_data(s, data, len);
        return 0;
    }
    /* A buffered body's window goes back at once (flow control is ours: see h2_session_new). */
    nghttp2_session_consume(ng, id, len);
    if (s == NULL || s->reject || s->answered || s->req != NULL)
        return 0; /* dropped: the request was answered already */
    if (s->body.len + len > h2_opts(h)->max_body) {
        stream_reject(s, 413, 1);
        return 0;
    }
    if (buf_reserve(h, &s->body, s->body.len + len) != 0) {
        stream_reject(s, 503, 0);
        return 0;
    }
    memcpy(s->body.ptr + s->body.len, data, len);
    s->body.len += len;
    return 0;
}

/* The route the stream's request goes to streams its body: its limit, else 0. Read from the
 * fields before the head is built (only :method and :path matter). */
static uint64_t stream_body_max(h2_t *h, h2_stream_t *s) {
    const crest_app_t *app = crest__app_of(h2_loop(h));
    if (app->stream_routes == 0)
        return 0;
    crest_str_t method = {NULL, 0}, path = {NULL, 0};
    crest_str_t name, value;
    for (size_t off = 0; next_field(s, &off, &name, &value);) {
        if (crest__str_ieq(name, ":method"))
            method = value;
        else if (crest__str_ieq(name, ":path"))
            path = value;
    }
    if (method.ptr == NULL || path.ptr == NULL)
        return 0;
    const char *q = memchr(path.ptr, '?', path.len);
    if (q != NULL)
        path.len = (size_t)(q - path.ptr);
    return crest__app_body_streams(app, crest__http_method_id(method.ptr, method.len), path);
}

/* The header block of a request is complete. */
static void on_request_headers(h2_t *h, h2_stream_t *s, int end_stream) {
    const crest_app_opts_t *o = h2_opts(h);
    if (s->reject) {
        stream_reject(s, s->reject, 0);
        return;
    }
    /* Only a request with a body looks its route up here (a bodiless one reaches a streaming
     * route through the chain, its body ended). */
    s->body_max = end_stream ? 0 : stream_body_max(h, s);
    if (s->body_max > 0) {
        if (s->has_length && s->content_length > s->body_max)
            stream_reject(s, 413, 1);
        else
            stream_dispatch(s); /* at once: the body follows */
        return;
    }
    if (s->has_length && s->content_length > o->max_body) {
        stream_reject(s, 413, 1); /* before the client sends it, as HTTP/1.1 does */
        return;
    }
    if (s->has_length && s->content_length > 0 && !end_stream &&
        buf_reserve(h, &s->body, (size_t)s->content_length) != 0) {
        stream_reject(s, 503, 0); /* the whole body is reserved now rather than refused half-way */
        return;
    }
    if (end_stream)
        return; /* dispatched by the caller */
    if (s->expect_continue) {
        submit_continue(s);
    }
}

/* Count an abusive frame in the current window: nonzero when the connection must end. */
static int abuse_count(h2_t *h, unsigned *counter, unsigned max) {
    uint64_t now = uv_now(&h2_loop(h)->uv);
    if (now - h->abuse_start >= ABUSE_WINDOW_MS) {
        h->abuse_start = now;
        h->resets = h->empty_data = 0;
    }
    if (++*counter <= max)
        return 0;
    h->goaway_code = NGHTTP2_ENHANCE_YOUR_CALM;
    return 1;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    (void)ng;
    h2_t *h = user;
    if (h->dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    h2_stream_t *s = frame->hd.stream_id ? stream_of(h, frame->hd.stream_id) : NULL;
    int end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (s != NULL && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
            on_request_headers(h, s, end_stream);
        break;
    case NGHTTP2_DATA:
        /* Each costs a frame's work and moves nothing (CVE-2019-9518). */
        if (frame->hd.length <= frame->data.padlen && !end_stream &&
            abuse_count(h, &h->empty_data, MAX_EMPTY_DATA))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
    case NGHTTP2_RST_STREAM:
        /* Rapid reset (CVE-2023-44487): streams opened and cancelled at once cost the work of
         * their requests and never count against the concurrent-stream limit. */
        if (abuse_count(h, &h->resets, MAX_RESETS))
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        return 0;
    default:
        return 0;
    }
    if (s != NULL && end_stream &&
        (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
        stream_request_done(s);
        if (s->req != NULL && s->req->body_stream != NULL) {
            s->req->body_stream->ended = 1;
            stream_body_flush(s);
            return 0;
        }
        if (s->reject && !s->answered)
            stream_reject(s, s->reject, 0);
        else
            stream_dispatch(s);
    }
    return 0;
}

/* A response ended before its request did (413, 431, an early answer): RFC 9113 8.1 lets the
 * server ask the client to stop sending with RST_STREAM NO_ERROR. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user) {
    h2_t *h = user;
    if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    h2_stream_t *s = stream_of(h, frame->hd.stream_id);
    if (s != NULL && !s->request_done) {
        stream_request_done(s);
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user) {
    (void)ng, (void)error_code;
    h2_t *h = user;
    h2_stream_t *s = stream_of(h, id);
    if (s == NULL || h->dead)
        return 0;
    nghttp2_session_set_stream_user_data(h->ng, id, NULL);
    stream_detach(s); /* reset before its answer was finished */
    stream_free(s);
    return 0;
}

/* ---- the protocol ---- */

static void h2_on_data(crest__conn_t *c, char *data, size_t len) {
    h2_t *h = c->proto_data;
    crest_loop_t *loop = crest__conn_loop(c);
    uint64_t start = uv_hrtime();
    if (h2_stopped(h))
        return;
    h2_enter(h);
    crest__http_date_refresh(loop);
    crest__conn_batch_begin(c);
    h->rx_bytes += len;
    h->in_nghttp2 = 1;
    ssize_t rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)data, len);
    h->in_nghttp2 = 0;
    if (!h->dead) {
        if (rv < 0)
            h2_fail(h, h->goaway_code ? h->goaway_code : error_code_of((int)rv));
        else
            h2_output(h, 1); /* one flush for everything this read produced */
    }
    loop->turn_ns += uv_hrtime() - start;
    h2_leave(h);
}

/* A write completed, or the loop came back to a parked connection: send more, run drains. */
static void h2_on_event(crest__conn_t *c) {
    h2_t *h = c->proto_data;
    if (h2_stopped(h))
        return;
    h2_enter(h);
    if (h->pulls > 0) {
        h->in_nghttp2 = 1; /* sent below, once: the app's callbacks queue only */
        for (h2_stream_t *s = h->streams; s != NULL && !h->dead; s = s->next) {
            if (!s->pull)
                continue;
            s->pull = 0;
            h->pulls--;
            stream_body_flush(s);
        }
        h->in_nghttp2 = 0;
    }
    if (!h->dead)
        h2_output(h, 1);
    h2_leave(h);
}

static void h2_on_timer(crest__conn_t *c) {
    h2_t *h = c->proto_data;
    crest_loop_t *loop = crest__conn_loop(c);
    const crest_app_opts_t *o = h2_opts(h);
    uint64_t elapsed = uv_now(&loop->uv) - h->timer_start;
    int timer = h->timer;
    h->timer = TIMER_NONE;
    if (h2_stopped(h))
        return;
    h2_enter(h);
    if (timer == TIMER_RECV && (h->rx_bytes - h->timer_mark) * 1000 >= elapsed * o->min_body_rate) {
        h2_arm_timer(h); /* requests keep coming at min_body_rate: another period */
    } else if (timer == TIMER_SEND && h->tx_bytes > h->timer_mark) {
        h2_arm_timer(h); /* the peer's window moved */
    } else if (timer == TIMER_SEND) {
        crest__count(&loop->write_timeouts, 1);
        crest__conn_close(c); /* a reader that opens no window: its bodies are dropped */
    } else if (timer != TIMER_NONE) {
        /* Idle (or requests that do not arrive): say goodbye and close once it is out. */
        nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
        h2_output(h, 0);
    }
    h2_leave(h);
}

static void h2_on_shutdown(crest__conn_t *c) {
    h2_t *h = c->proto_data;
    if (h2_stopped(h))
        return;
    h2_enter(h);
    /* Streams up to the last one processed are finished; later ones the client may retry. */
    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    h2_output(h, 0);
    h2_leave(h);
}

static void h2_free(h2_t *h) {
    while (h->streams)
        stream_free(h->streams);
    spare_trim(h, 0);
    nghttp2_session_del(h->ng);
    free(h);
}

static void h2_on_close(crest__conn_t *c) {
    h2_t *h = c->proto_data;
    /* Requests outlive their connection until the application finishes them. An abort callback
     * may answer another request of this connection: nothing is sent (it is closing). */
    for (h2_stream_t *s = h->streams; s != NULL; s = s->next)
        stream_detach(s);
    h->dead = 1;
    if (h->busy == 0)
        h2_free(h); /* else the outermost entry point frees it */
}

static const crest__proto_t h2_proto = {
    .on_data = h2_on_data,
    .on_resume = h2_on_event,
    .on_written = h2_on_event,
    .on_timer = h2_on_timer,
    .on_shutdown = h2_on_shutdown,
    .on_close = h2_on_close,
    /* Not CREST__PROTO_OUTPUT_PAUSES_READ: reading stops in h2_settle, which knows when. */
    .flags = CREST__PROTO_WRITE_DEADLINE,
};

static int h2_session_new(h2_t *h) {
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return CREST_ENOMEM;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return CREST_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_send_data_callback(cb, on_send_data);
    /* Closed streams are forgotten at once (no priority tree to keep them for). */
    nghttp2_option_set_no_closed_streams(opt, 1);
    /* Flow control is ours: a buffered body's window goes back as it arrives, a streamed body's
     * once the app has taken it, so a slow consumer holds back its own client only. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, MAX_OUTBOUND_ACK);
    nghttp2_option_set_max_continuations(opt, MAX_CONTINUATIONS);
    int rv = nghttp2_session_server_new2(&h->ng, cb, h, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rv != 0)
        return CREST_ENOMEM;
    const crest_app_opts_t *o = h2_opts(h);
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)o->max_header_bytes},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    rv = nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, settings,
                                 sizeof(settings) / sizeof(settings[0]));
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    return rv == 0 ? 0 : CREST_ENOMEM;
}

void crest__h2_open(crest__conn_t *c) {
    h2_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        crest__conn_close(c);
        return;
    }
    h->c = c;
    if (h2_session_new(h) != 0) {
        nghttp2_session_del(h->ng);
        free(h);
        crest__conn_close(c);
        return;
    }
    c->proto = &h2_proto;
    c->proto_data = h;
    c->flags &= ~(uint32_t)CONN_NOTIFY_WRITTEN;
    /* The preface and the first request must come within the header timeout. */
    h2_arm_timer(h);
}
