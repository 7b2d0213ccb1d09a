/* Connection and request internals shared by the files of src/http. */
#ifndef CREST_HTTP_CONN_H
#define CREST_HTTP_CONN_H

#include "http/parser.h"
#include "http/router.h"
#include "internal.h"

/* The bytes of a request that has not fully arrived (it exists only then: an idle connection
 * has none). The request always starts at buf[0]. Owner: its connection. */
typedef struct {
    char *buf;
    size_t len;
    size_t cap;
    size_t scanned;  /* head scan state for crest__http_parse_head */
    size_t head_len; /* 0 until the head is complete */
    size_t body_len; /* decoded body bytes at buf[head_len ..] */
    size_t raw_off;  /* chunked: first byte not decoded yet */
    crest__http_chunked_t chunked;
    uint64_t body_start; /* loop time (ms) when the body began to arrive */
    unsigned continue_sent : 1;
    unsigned header_timer : 1; /* the header deadline is armed for this request */
} crest__rx_t;

/* Output being written by libuv: `inflight` was handed to uv_write, `pending` collects what
 * comes meanwhile. Exists only while a write is in progress. Owner: its connection. */
typedef struct {
    uv_write_t req;
    crest__outq_t inflight;
    crest__outq_t pending;
    uv_buf_t *bufs;
    size_t nbufs;
    size_t charged;   /* bytes charged to the memory budget */
    size_t last_left; /* unwritten bytes when the write deadline was armed (progress check) */
} crest__tx_t;

enum {
    CONN_CLOSE_AFTER_WRITE = 1 << 0, /* the last response said Connection: close */
    CONN_CLOSING = 1 << 1,           /* uv_close called */
    CONN_LINGERING = 1 << 2,         /* write side shut down, draining input until EOF */
    CONN_IN_DISPATCH = 1 << 3,       /* inside the read batch: flush at its end */
    CONN_READ_PAUSED = 1 << 4,
    CONN_SHUTDOWN = 1 << 5,      /* uv_shutdown requested */
    CONN_INPUT_PENDING = 1 << 6, /* rx holds bytes not parsed yet (a batch stopped before them) */
    CONN_PARKED = 1 << 7,        /* on the loop's list of connections to go on with */
};

/* A protocol that takes a connection over after an HTTP/1.1 upgrade (WebSocket). HTTP parsing
 * stops; the protocol gets the bytes read and writes with crest__conn_out + crest__conn_flush, so
 * it shares the batching, borrowed (zero-copy) segments and backpressure of HTTP responses. */
typedef struct {
    void (*on_data)(crest__conn_t *c, char *data, size_t len); /* data is valid during the call */
    void (*on_drain)(crest__conn_t *c);    /* optional: everything queued has been written */
    void (*on_timer)(crest__conn_t *c);    /* c->timer fired (the protocol arms it) */
    void (*on_shutdown)(crest__conn_t *c); /* the server is stopping: say goodbye, then close */
    void (*on_close)(crest__conn_t *c);    /* the connection is closing: free proto_data */
} crest__proto_t;

/* One client connection; lives on one loop thread. About 350 bytes when idle. */
struct crest__conn_s {
    uv_tcp_t tcp;
    crest__wheel_node_t timer; /* header, body, keep-alive or linger deadline */
    crest__rx_t *rx;
    crest__tx_t *tx;
    crest_req_t *req;            /* the request being answered later, if any */
    const crest__proto_t *proto; /* set once upgraded */
    void *proto_data;            /* owner: the protocol (freed in on_close) */
    crest__conn_t *parked_next;  /* in loop->parked */
    uint32_t flags;
    uint32_t requests; /* served on this connection */
};

struct crest_req_s {
    void *data;
    crest__conn_t *conn; /* NULL once the client has gone */
    crest_loop_t *loop;
    crest__http_head_t *head; /* valid only during the handler call */
    crest_str_t body;
    crest__match_t *match;   /* valid only during the handler call */
    crest_buf_t res_headers; /* extra response header lines, "Name: value\r\n" each */
    void *arena;             /* crest_req_alloc blocks */
    crest_abort_cb abort_cb;
    void *abort_arg;
    crest_drain_cb drain_cb; /* armed by crest_res_on_drain: runs once, then disarms */
    void *drain_arg;
    size_t drain_mark; /* drain_cb runs once the queued output is at or below this */
    crest_req_t *next_free;
    int method;
    int status;
    unsigned version_minor : 1;
    unsigned keep_alive : 1;
    unsigned head_only : 1; /* HEAD: headers only */
    unsigned started : 1;   /* a streamed response is under way */
    unsigned chunked : 1;   /* the streamed response uses chunked framing */
    unsigned aborted : 1;
};

/* server.c */
void crest__conn_close(crest__conn_t *c);
/* A request answered later just finished: flush and continue with buffered input. */
void crest__conn_request_done(crest__conn_t *c);
/* Append to the output of the connection (the loop's batch, or the pending write). */
crest__outq_t *crest__conn_out(crest__conn_t *c);
/* Write what was appended with crest__conn_out (unless a read batch will do it at its end). */
void crest__conn_flush(crest__conn_t *c);
/* Bytes queued on the connection and not yet taken by the kernel. */
size_t crest__conn_buffered(const crest__conn_t *c);
/* Stop or restart reading from the connection (backpressure for protocols). */
void crest__conn_reading(crest__conn_t *c, int on);
/* Hand req's connection over to `proto` after the handler queued its 101 response with
 * crest__conn_out. The request is finished (freed); bytes the client sent after it reach
 * proto->on_data at once. Only during the handler call of req. Returns 0, CREST_EINVAL when the
 * request is not its connection's current one or a response was started, CREST_ECANCELED when
 * the client is gone. */
int crest__conn_takeover(crest_req_t *req, const crest__proto_t *proto, void *proto_data);

/* response.c */
crest_req_t *crest__req_new(crest_loop_t *loop, crest__conn_t *c);
void crest__req_free(crest_req_t *req);
/* Send an error answer for a rejected request; the connection closes afterwards. */
void crest__send_error(crest__conn_t *c, int status, int version_minor);
const char *crest__status_line(int status, size_t *len);

#endif
