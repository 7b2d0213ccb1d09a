/* Request bodies streamed to their handler (crest_app_route_stream).
 *
 * The protocol reads the body and takes its framing off (HTTP/1.1 in h1.c: Content-Length or
 * chunked; HTTP/2 in h2.c: DATA frames); this file is the consumer's side that both share: the
 * callback, the route's limit, the pause, and crest's answer to an error the app left
 * unanswered. Bytes wait in the protocol (h1's rx, the h2 stream's buffer) while nobody takes
 * them, and the protocol stops reading (HTTP/1.1) or holds back the stream's flow-control window
 * (HTTP/2): the client, not crest's memory, absorbs a slow consumer. */
#include <string.h>

#include "http/http.h"

uint64_t crest__app_body_streams(const crest_app_t *app, int method_id, crest_str_t path) {
    crest__match_t m;
    m.nparams = 0;
    if (crest__router_match(app->router, method_id, path.ptr, path.len, 0, &m) != 200)
        return 0;
    return m.route->body_max;
}

crest__body_t *crest__body_new(crest_req_t *req, uint64_t limit) {
    crest__body_t *b = crest_req_alloc(req, sizeof(*b));
    if (b == NULL)
        return NULL;
    memset(b, 0, sizeof(*b));
    b->limit = limit;
    req->body_stream = b;
    return b;
}

/* Call the app's callback inside a frame, which tells whether the request ended meanwhile
 * (crest__req_free marks it): after that nothing of req may be touched. Returns 1 when it ended. */
static int call(crest_req_t *req, int event, const void *data, size_t len, int *rc) {
    crest__body_t *b = req->body_stream;
    crest_loop_t *loop = req->loop;
    crest__frame_t fr;
    crest__frame_push(req, &fr);
    *rc = b->cb(req, event, data, len, b->arg);
    return crest__frame_pop(loop, &fr);
}

static int error_status(int err) {
    return err == CREST_E2BIG       ? 413
           : err == CREST_ETIMEDOUT ? 408
           : err == CREST_EINVAL    ? 400
                                    : 503; /* out of memory, or the buffer budget is used up */
}

int crest__body_data(crest_req_t *req, const void *data, size_t len) {
    crest__body_t *b = req->body_stream;
    if (len > b->limit - b->received) {
        crest__body_end(req, CREST_E2BIG);
        return 1;
    }
    b->received += len;
    int rc;
    if (call(req, CREST_BODY_DATA, data, len, &rc))
        return 1;
    if (rc < 0) {
        b->over = 1; /* the app stopped: the rest is not read */
        return 1;
    }
    return 0;
}

int crest__body_end(crest_req_t *req, int err) {
    crest__body_t *b = req->body_stream;
    if (b->over)
        return 0;
    b->over = 1;
    int rc;
    if (b->cb != NULL && call(req, err ? err : CREST_BODY_END, NULL, 0, &rc))
        return 1;
    if (err == 0)
        return 0;
    /* The request ends with its body: answered, cut short or (its client gone) only freed. */
    if (crest__req_gone(req)) {
        req->w->finish(req);
    } else if (req->started) {
        req->w->abort(req);
        req->w->finish(req);
    } else {
        crest__http_error(req, error_status(err));
    }
    return 1;
}

int crest_req_body_stream(crest_req_t *req, crest_body_cb cb, void *arg) {
    if (req->freed)
        return CREST_EALREADY;
    crest__body_t *b = req->body_stream;
    if (b == NULL || b->cb != NULL || cb == NULL)
        return CREST_EINVAL;
    if (crest__req_gone(req))
        return CREST_ECANCELED;
    b->cb = cb;
    b->arg = arg;
    req->w->body_pull(req); /* 100 Continue, then what is held, from a later turn */
    return 0;
}

int crest_req_body_pause(crest_req_t *req, int paused) {
    crest__body_t *b = req->body_stream;
    if (req->freed || b == NULL || b->over)
        return CREST_EINVAL;
    if (b->paused && !paused) {
        b->paused = 0;
        if (b->cb != NULL && !crest__req_gone(req))
            req->w->body_pull(req);
    } else {
        b->paused = paused != 0;
    }
    return 0;
}
