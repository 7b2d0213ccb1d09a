/* Server-Sent Events streams.
 *
 * Over HTTP/1.x a stream takes its connection over after writing the response head (the body is
 * delimited by the connection's end), so it shares the connection's timer-wheel node for
 * keep-alives (no timer per stream), the output queue for zero-copy pub/sub events, and the
 * server's graceful shutdown hook. Over HTTP/2 many streams share one connection (the point for
 * browsers, which open six HTTP/1.1 connections per host at most): each is an open response on
 * its request, written through the request's writer (pub/sub events lent, not copied, to its
 * DATA frames), with a wheel node of its own and a place on the loop's list of what to end at
 * shutdown. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/sse_event.h"
#include "http/http.h"
#include "pubsub/pubsub.h"

enum {
    SSE_SENT = 1 << 0, /* something went out since the last keep-alive tick */
    SSE_KILL = 1 << 1,
    SSE_ENDED = 1 << 2,
};

/* Owner: its connection (freed in the protocol's on_close), or over HTTP/2 itself (freed when
 * the stream ends or is reset). */
struct crest_sse_s {
    void *data;
    crest__conn_t *conn; /* HTTP/1.x: the connection it took over */
    crest_req_t *req;    /* HTTP/2: the open response */
    crest_loop_t *loop;
    crest__wheel_node_t timer; /* HTTP/2: the keep-alive (over HTTP/1.x the connection's) */
    crest__drain_node_t drain; /* HTTP/2: ended when the server stops */
    crest_sse_opts_t opts;
    crest__psub_t sub;
    uint32_t flags;
};

void crest_sse_opts_default(crest_sse_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->keepalive_ms = 15000;
    o->max_buffered = 1024 * 1024;
}

void **crest_sse_data(crest_sse_t *s) {
    return &s->data;
}

static int sse_closing(const crest_sse_t *s) {
    if (s->flags & SSE_ENDED)
        return 1;
    if (s->req != NULL)
        return crest__req_gone(s->req);
    return (s->conn->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_WRITE)) != 0;
}

static size_t sse_buffered(const crest_sse_t *s) {
    return s->req ? s->req->w->buffered(s->req) : crest__conn_buffered(s->conn);
}

/* Queue bytes: copied (release NULL), or lent until release(arg), which is called in every
 * case. */
static int sse_put(crest_sse_t *s, const void *data, size_t len, crest_release_cb release,
                   void *arg) {
    if (s->req)
        return s->req->w->body(s->req, data, len, release, arg);
    crest__outq_t *q = crest__conn_out(s->conn);
    if (q == NULL) {
        if (release)
            release(arg);
        return CREST_ENOMEM;
    }
    return release ? crest__outq_share(q, data, len, release, arg) : crest__outq_copy(q, data, len);
}

static void sse_flush(crest_sse_t *s) {
    if (s->req)
        s->req->w->push(s->req);
    else
        crest__conn_flush(s->conn);
}

/* HTTP/2: the stream is over (ended by us, or reset by the client); the application hears it. */
static void stream_done(crest_sse_t *s) {
    crest__ps_unsubscribe_all(&s->sub);
    crest__wheel_disarm(&s->loop->wheel, &s->timer);
    crest__http_drain_remove(s->loop, &s->drain);
    if (s->opts.on_close)
        s->opts.on_close(s);
    free(s);
}

/* HTTP/2: the client reset the stream or its connection closed. */
static void stream_aborted(crest_req_t *req, void *arg) {
    crest_sse_t *s = arg;
    s->req = NULL;
    crest_res_end(req); /* finishes the detached request */
    stream_done(s);
}

int crest_sse_send(crest_sse_t *s, const char *event, const char *id, const void *data,
                   size_t len) {
    if (sse_closing(s))
        return CREST_EPIPE;
    if (sse_buffered(s) > s->opts.max_buffered)
        return CREST_EAGAIN;
    char mem[512];
    crest_buf_t b = CREST_BUF_ON(mem);
    int rc = crest__sse_encode(&b, event, id, data, len);
    if (rc == 0 && sse_put(s, b.ptr, b.len, NULL, NULL) != 0)
        rc = CREST_ENOMEM;
    crest_buf_free(&b);
    if (rc != 0)
        return rc;
    s->flags |= SSE_SENT;
    sse_flush(s);
    return 0;
}

void crest_sse_end(crest_sse_t *s) {
    if (sse_closing(s))
        return;
    s->flags |= SSE_ENDED;
    crest__ps_unsubscribe_all(&s->sub);
    if (s->req != NULL) {
        crest_req_t *req = s->req;
        s->req = NULL;
        crest_req_on_abort(req, NULL, NULL);
        crest_res_end(req);
        stream_done(s);
        return;
    }
    s->conn->flags |= CONN_CLOSE_AFTER_WRITE;
    crest__conn_flush(s->conn);
}

/* HTTP/2: a quiet stream gets a comment now and then (proxies and browsers keep it open). */
static void stream_keepalive(crest__wheel_node_t *node) {
    crest_sse_t *s = CREST__CONTAINER_OF(node, crest_sse_t, timer);
    if (!(s->flags & SSE_SENT)) {
        if (sse_put(s, ": keep-alive\n\n", 14, NULL, NULL) != 0) {
            crest_sse_end(s);
            return;
        }
        sse_flush(s);
    }
    s->flags &= ~(uint32_t)SSE_SENT;
    crest__wheel_arm(&s->loop->wheel, &s->timer, s->opts.keepalive_ms);
}

static void stream_drain(crest__drain_node_t *node) {
    crest_sse_end(CREST__CONTAINER_OF(node, crest_sse_t, drain));
}

static void sse_on_data(crest__conn_t *c, char *data, size_t len) {
    (void)c, (void)data, (void)len; /* a client has nothing to say on an event stream */
}

static void sse_on_timer(crest__conn_t *c) {
    crest_sse_t *s = c->proto_data;
    if (!(s->flags & SSE_SENT)) {
        crest__outq_t *q = crest__conn_out(c);
        if (q == NULL || crest__outq_copy(q, ": keep-alive\n\n", 14) != 0) {
            crest__conn_close(c);
            return;
        }
        crest__conn_flush(c);
        if (c->flags & CONN_CLOSING)
            return;
    }
    s->flags &= ~(uint32_t)SSE_SENT;
    crest__wheel_arm(&s->loop->wheel, &c->timer, s->opts.keepalive_ms);
}

static void sse_on_written(crest__conn_t *c) {
    if (c->tx != NULL)
        return; /* more to write */
    crest_sse_t *s = c->proto_data;
    crest__ps_slow(&s->sub, 0);
}

static void sse_on_shutdown(crest__conn_t *c) {
    crest_sse_end(c->proto_data);
}

static void sse_on_close(crest__conn_t *c) {
    crest_sse_t *s = c->proto_data;
    crest__ps_unsubscribe_all(&s->sub);
    if (s->opts.on_close)
        s->opts.on_close(s);
    free(s);
    c->proto_data = NULL;
}

static const crest__proto_t sse_proto = {
    .on_data = sse_on_data,
    .on_written = sse_on_written,
    .on_timer = sse_on_timer,
    .on_shutdown = sse_on_shutdown,
    .on_close = sse_on_close,
};

/* HTTP/2: the stream's window took its backlog. */
static void stream_drained(crest_req_t *req, void *arg) {
    (void)req;
    crest_sse_t *s = arg;
    crest__ps_slow(&s->sub, 0);
}

static int sse_deliver(crest__psub_t *sub, crest__psmsg_t *m) {
    crest_sse_t *s = CREST__CONTAINER_OF(sub, crest_sse_t, sub);
    if (m->sse_len == 0 || sse_closing(s))
        return 0; /* binary messages have no SSE form */
    if (sse_buffered(s) > s->opts.max_buffered) {
        /* Until its output drains, publishers skip a loop where only such streams listen. */
        crest__ps_slow(sub, 1);
        if (s->req != NULL && crest_res_on_drain(s->req, stream_drained, s) != 0)
            crest__ps_slow(sub, 0);
        return 0;
    }
    crest__psmsg_ref(m);
    if (sse_put(s, m->sse, m->sse_len, crest__psmsg_unref, m) != 0)
        s->flags |= SSE_KILL;
    s->flags |= SSE_SENT;
    crest__ps_mark_dirty(sub);
    return 1;
}

static void sse_psflush(crest__psub_t *sub) {
    crest_sse_t *s = CREST__CONTAINER_OF(sub, crest_sse_t, sub);
    if (s->flags & SSE_KILL) {
        if (s->req != NULL) {
            crest_req_t *req = s->req;
            s->req = NULL;
            crest_res_abort(req); /* resets the stream */
            stream_done(s);
        } else {
            crest__conn_close(s->conn);
        }
        return;
    }
    sse_flush(s);
    /* Written at once: no write completes later to call on_written. */
    if (!sse_closing(s) && sub->slow && sse_buffered(s) == 0)
        crest__ps_slow(sub, 0);
}

int crest_sse_subscribe(crest_sse_t *s, crest_pubsub_t *ps, const char *topic) {
    if (sse_closing(s))
        return CREST_EPIPE;
    return crest__ps_subscribe(ps, &s->sub, topic);
}

/* The head of an event stream: 200, its type, and what keeps caches and proxies from holding
 * events back. */
static int sse_head_only(crest_req_t *req, int64_t body_len) {
    int rc = crest_res_header(req, "Cache-Control", "no-cache");
    if (rc == 0)
        rc = crest_res_header(req, "X-Accel-Buffering", "no");
    if (rc == 0)
        rc = crest__res_head(req, 200, "text/event-stream", body_len);
    return rc;
}

/* The response head and the first field (retry), over HTTP/1.x and HTTP/2 alike. */
static int sse_head(const crest_sse_t *s, crest_req_t *req, int64_t body_len) {
    int rc = sse_head_only(req, body_len);
    if (rc == 0 && s->opts.retry_ms) {
        char line[32];
        int n = snprintf(line, sizeof(line), "retry: %u\n\n", (unsigned)s->opts.retry_ms);
        rc = req->w->body(req, line, (size_t)n, NULL, NULL);
    }
    return rc;
}

/* HTTP/2 (or any protocol whose connection is not the stream's): an open response. */
static crest_sse_t *stream_start(crest_sse_t *s, crest_req_t *req) {
    if (sse_head(s, req, -1) != 0) {
        free(s);
        crest_res_status(req, 503); /* or a reset, once a head went out */
        return NULL;
    }
    req->started = 1;
    req->w->push(req);
    s->req = req;
    crest_req_on_abort(req, stream_aborted, s);
    s->timer.cb = stream_keepalive;
    crest__wheel_arm(&s->loop->wheel, &s->timer, s->opts.keepalive_ms);
    s->drain.cb = stream_drain;
    crest__http_drain_add(s->loop, &s->drain);
    return s;
}

crest_sse_t *crest_sse_start(crest_req_t *req, const crest_sse_opts_t *opts) {
    crest__conn_t *c = req->conn;
    crest_loop_t *loop = req->loop;
    if (crest__req_gone(req) || req->started || req->head == NULL) {
        crest_res_status(req, 500); /* frees it (nothing is sent to a client that left) */
        return NULL;
    }
    if (req->head_only) {
        /* HEAD: the head a GET gets, framed as a streamed response (chunked over HTTP/1.1, a
         * body HEAD leaves out) rather than one running until the connection closes, and nothing
         * after it. The request finishes now and its connection goes on to the next: no stream,
         * no keep-alive comments, no events, nothing taken over. */
        if (sse_head_only(req, -1) != 0) {
            crest_res_status(req, 503);
            return NULL;
        }
        req->started = 1;
        crest_res_end(req);
        return NULL;
    }
    crest_sse_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        crest_res_status(req, 503);
        return NULL;
    }
    if (opts)
        s->opts = *opts;
    else
        crest_sse_opts_default(&s->opts);
    if (s->opts.keepalive_ms == 0)
        s->opts.keepalive_ms = 15000;
    if (s->opts.max_buffered == 0)
        s->opts.max_buffered = 1024 * 1024;
    s->data = s->opts.data;
    s->loop = loop;
    s->sub.deliver = sse_deliver;
    s->sub.flush = sse_psflush;
    s->sub.loop = loop;
    if (req->w != &crest__h1_writer)
        return stream_start(s, req);
    s->conn = c;

    /* The body runs until the connection ends, so no framing: the same bytes of a published
     * event go to every stream, HTTP/1.0 and 1.1 alike. */
    req->keep_alive = 0;
    if (sse_head(s, req, CREST__BODY_UNTIL_CLOSE) != 0) {
        free(s);
        crest__conn_close(c);
        crest_res_status(req, 503);
        return NULL;
    }
    if (crest__conn_takeover(req, &sse_proto, s) != 0) {
        free(s);
        crest__conn_close(c);
        crest_res_status(req, 500);
        return NULL;
    }
    /* Reading goes on only to notice the client leaving (EOF). */
    crest__wheel_arm(&loop->wheel, &c->timer, s->opts.keepalive_ms);
    return s;
}
