/* Server-Sent Events streams. A stream takes its connection over after writing the response head
 * (the body is delimited by the connection's end), so it shares the connection's timer-wheel node
 * for keep-alives (no timer per stream), the output queue for zero-copy pub/sub events, and the
 * server's graceful shutdown hook. */
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

/* Owner: its connection (freed in the protocol's on_close). */
struct crest_sse_s {
    void *data;
    crest__conn_t *conn;
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

static crest_loop_t *sse_loop(const crest_sse_t *s) {
    return s->conn->tcp.loop->data;
}

static int sse_closing(const crest_sse_t *s) {
    return (s->conn->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_WRITE)) || (s->flags & SSE_ENDED);
}

int crest_sse_send(crest_sse_t *s, const char *event, const char *id, const void *data,
                   size_t len) {
    if (sse_closing(s))
        return CREST_EPIPE;
    if (crest__conn_buffered(s->conn) > s->opts.max_buffered)
        return CREST_EAGAIN;
    char mem[512];
    crest_buf_t b = CREST_BUF_ON(mem);
    int rc = crest__sse_encode(&b, event, id, data, len);
    crest__outq_t *q = rc == 0 ? crest__conn_out(s->conn) : NULL;
    if (rc == 0 && (q == NULL || crest__outq_copy(q, b.ptr, b.len) != 0))
        rc = CREST_ENOMEM;
    crest_buf_free(&b);
    if (rc != 0)
        return rc;
    s->flags |= SSE_SENT;
    crest__conn_flush(s->conn);
    return 0;
}

void crest_sse_end(crest_sse_t *s) {
    if (sse_closing(s))
        return;
    s->flags |= SSE_ENDED;
    crest__ps_unsubscribe_all(&s->sub);
    s->conn->flags |= CONN_CLOSE_AFTER_WRITE;
    crest__conn_flush(s->conn);
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
    crest__wheel_arm(&sse_loop(s)->wheel, &c->timer, s->opts.keepalive_ms);
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

static int sse_deliver(crest__psub_t *sub, crest__psmsg_t *m) {
    crest_sse_t *s = CREST__CONTAINER_OF(sub, crest_sse_t, sub);
    if (m->sse_len == 0 || sse_closing(s))
        return 0; /* binary messages have no SSE form */
    if (crest__conn_buffered(s->conn) > s->opts.max_buffered) {
        /* Until its output drains, publishers skip a loop where only such streams listen. */
        crest__ps_slow(sub, 1);
        return 0;
    }
    crest__outq_t *q = crest__conn_out(s->conn);
    if (q == NULL) {
        s->flags |= SSE_KILL;
        crest__ps_mark_dirty(sub);
        return 0;
    }
    crest__psmsg_ref(m);
    if (crest__outq_share(q, m->sse, m->sse_len, crest__psmsg_unref, m) != 0)
        s->flags |= SSE_KILL;
    s->flags |= SSE_SENT;
    crest__ps_mark_dirty(sub);
    return 1;
}

static void sse_psflush(crest__psub_t *sub) {
    crest_sse_t *s = CREST__CONTAINER_OF(sub, crest_sse_t, sub);
    crest__conn_t *c = s->conn;
    if (s->flags & SSE_KILL) {
        crest__conn_close(c);
        return;
    }
    crest__conn_flush(c);
    /* Written at once: no write completes later to call on_written. */
    if (!(c->flags & CONN_CLOSING) && sub->slow && crest__conn_buffered(c) == 0)
        crest__ps_slow(sub, 0);
}

int crest_sse_subscribe(crest_sse_t *s, crest_pubsub_t *ps, const char *topic) {
    if (sse_closing(s))
        return CREST_EPIPE;
    return crest__ps_subscribe(ps, &s->sub, topic);
}

crest_sse_t *crest_sse_start(crest_req_t *req, const crest_sse_opts_t *opts) {
    crest__conn_t *c = req->conn;
    crest_loop_t *loop = req->loop;
    if (c == NULL || (c->flags & CONN_CLOSING) || req->started || req->head == NULL) {
        crest_res_status(req, 500); /* frees it (nothing is sent to a client that left) */
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
    s->conn = c;
    s->sub.deliver = sse_deliver;
    s->sub.flush = sse_psflush;
    s->sub.loop = loop;

    /* The body runs until the connection ends, so no framing: the same bytes of a published
     * event go to every stream, HTTP/1.0 and 1.1 alike. */
    req->keep_alive = 0;
    int rc = crest_res_header(req, "Cache-Control", "no-cache");
    if (rc == 0)
        rc = crest_res_header(req, "X-Accel-Buffering", "no");
    if (rc == 0)
        rc = crest__res_head(req, 200, "text/event-stream", CREST__BODY_UNTIL_CLOSE);
    if (rc == 0 && s->opts.retry_ms) {
        char line[32];
        int n = snprintf(line, sizeof(line), "retry: %u\n\n", (unsigned)s->opts.retry_ms);
        rc = req->w->body(req, line, (size_t)n, NULL, NULL);
    }
    if (rc != 0) {
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
