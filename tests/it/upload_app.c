/* Streamed request bodies' test app (tests/it/test_upload.py): routes added with
 * crest_app_route_stream() that count, pause on, stop, and parse (multipart) bodies as they
 * arrive, next to the app's own small max_body. Same flags as the demo. */
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "../../app/cli.h"

/* CRC-32 (zlib's, which crest links): the test computes the same over what it sent. */
static uint64_t crc(uint64_t h, const void *p, size_t n) {
    return crc32((uLong)h, p, (uInt)n);
}
#define CRC_INIT 0

/* What the body callbacks saw, per loop thread: the test asks /stats after a client left. */
static _Atomic uint64_t cancelled, timed_out, too_big;

typedef struct {
    uint64_t bytes, sum, pieces;
    int pause_ms;  /* pause this long after each piece (a slow consumer) */
    uint64_t stop; /* stop (return an error) once this many bytes came; 0: never */
    crest_req_t *req;
    uint64_t resume; /* the pending resume timer, or 0 */
} count_t;

static int answer_count(crest_req_t *req, const count_t *k) {
    char body[160];
    int n = snprintf(body, sizeof(body),
                     "{\"bytes\":%" PRIu64 ",\"sum\":\"%08" PRIx64 "\",\"pieces\":%" PRIu64 "}",
                     k->bytes, k->sum, k->pieces);
    return crest_res_json(req, 200, body, (size_t)n);
}

static void on_unpause(crest_loop_t *loop, void *arg) {
    (void)loop;
    count_t *k = arg;
    k->resume = 0;
    crest_req_body_pause(k->req, 0);
}

static int on_count_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    count_t *k = arg;
    if (event == CREST_BODY_DATA) {
        k->bytes += len;
        k->sum = crc(k->sum, data, len);
        k->pieces++;
        if (k->stop > 0 && k->bytes >= k->stop) {
            crest_res_error(req, 422, "enough");
            return CREST_ECANCELED;
        }
        if (k->pause_ms > 0) {
            crest_req_body_pause(req, 1);
            k->resume = crest_loop_timer(crest_req_loop(req), (uint64_t)k->pause_ms, on_unpause, k);
        }
        return 0;
    }
    if (k->resume != 0) /* the last call: nothing may touch the request afterwards */
        crest_loop_cancel(crest_req_loop(req), k->resume);
    if (event == CREST_BODY_END)
        return answer_count(req, k);
    if (event == CREST_ECANCELED)
        cancelled++;
    else if (event == CREST_ETIMEDOUT)
        timed_out++;
    else if (event == CREST_E2BIG)
        too_big++;
    return 0; /* crest answers the error itself (413, 408) */
}

static long query_long(crest_req_t *req, const char *name, long def) {
    crest_str_t v = crest_req_query_param(req, name);
    if (v.ptr == NULL || v.len == 0 || v.len > 12)
        return def;
    long n = 0;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return def;
        n = n * 10 + (v.ptr[i] - '0');
    }
    return n;
}

/* POST /count?pause=MS&stop=N: the body's size and CRC-32, read as it arrives. */
static int on_count(crest_req_t *req, void *data) {
    (void)data;
    count_t *k = crest_req_alloc(req, sizeof(*k));
    if (k == NULL)
        return CREST_ENOMEM;
    *k = (count_t){.sum = CRC_INIT,
                   .pause_ms = (int)query_long(req, "pause", 0),
                   .stop = (uint64_t)query_long(req, "stop", 0),
                   .req = req};
    return crest_req_body_stream(req, on_count_body, k);
}

/* POST /early: answered before the body is read (an app that refuses an upload at its head). */
static int on_early(crest_req_t *req, void *data) {
    (void)data;
    return crest_res_error(req, 403, "uploads are closed");
}

/* POST /echo: the body streamed back as it arrives (a chunked response). */
static int on_echo_body(crest_req_t *req, int event, const void *data, size_t len, void *arg) {
    (void)arg;
    if (event == CREST_BODY_DATA)
        return crest_res_write(req, data, len);
    if (event == CREST_BODY_END)
        return crest_res_end(req);
    return crest_res_abort(req);
}

static int on_echo(crest_req_t *req, void *data) {
    (void)data;
    int rc = crest_res_start(req, 200, "application/octet-stream");
    return rc ? rc : crest_req_body_stream(req, on_echo_body, NULL);
}

/* POST /parts?spill=N&max_part=N&dir=...: crest_req_parts_stream(); each part's name, size,
 * CRC-32 (read back from its file when spilled) and whether it was spilled. */
static void on_parts_done(crest_req_t *req, int rc, crest_part_t *parts, size_t count, void *arg) {
    (void)arg;
    if (rc != 0)
        return; /* crest answers: 400, 413, 408 */
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_puts(&b, "[");
    for (size_t i = 0; i < count; i++) {
        const crest_part_t *p = &parts[i];
        uint64_t sum = CRC_INIT;
        if (p->path != NULL) {
            int fd = open(p->path, O_RDONLY | O_CLOEXEC);
            char chunk[65536];
            ssize_t n;
            while (fd >= 0 && (n = read(fd, chunk, sizeof(chunk))) > 0)
                sum = crc(sum, chunk, (size_t)n);
            if (fd >= 0)
                close(fd);
        } else {
            sum = crc(sum, p->data.ptr, p->data.len);
        }
        crest_buf_printf(
            &b,
            "%s{\"name\":\"%.*s\",\"size\":%" PRIu64 ",\"sum\":\"%08" PRIx64 "\",\"spilled\":%s}",
            i ? "," : "", (int)p->name.len, p->name.ptr, p->size, sum, p->path ? "true" : "false");
    }
    crest_buf_puts(&b, "]");
    if (b.err)
        crest_res_status(req, 503);
    else
        crest_res_json(req, 200, b.ptr, b.len);
    crest_buf_free(&b);
}

static int on_parts(crest_req_t *req, void *data) {
    (void)data;
    crest_multipart_opts_t o;
    crest_multipart_opts_default(&o);
    o.spill_bytes = (size_t)query_long(req, "spill", 65536);
    o.max_part_size = (uint64_t)query_long(req, "max_part", 0);
    crest_str_t dir = crest_req_query_param(req, "dir");
    char path[256];
    if (dir.ptr != NULL && dir.len > 0 && dir.len < sizeof(path)) {
        crest_query_decode(dir, path, sizeof(path));
        o.tmp_dir = path; /* copied by crest_req_parts_stream */
    }
    return crest_req_parts_stream(req, &o, on_parts_done, NULL);
}

/* POST /events: crest_req_multipart_stream(); the events each part gave (BEGIN, how many DATA
 * calls, END) as "name:calls:bytes;" */
typedef struct {
    crest_buf_t out;
    uint64_t calls, bytes;
} events_t;

static int on_event(crest_req_t *req, crest_part_event_t ev, const crest_part_t *part,
                    const void *data, size_t len, void *arg) {
    (void)req, (void)data;
    events_t *e = arg;
    if (ev == CREST_PART_BEGIN) {
        e->calls = e->bytes = 0;
    } else if (ev == CREST_PART_DATA) {
        e->calls++;
        e->bytes += len;
    } else {
        crest_buf_printf(&e->out, "%.*s:%" PRIu64 ":%" PRIu64 ";", (int)part->name.len,
                         part->name.ptr, e->calls, e->bytes);
    }
    return 0;
}

static void on_events_done(crest_req_t *req, int rc, const char *why, void *arg) {
    events_t *e = arg;
    crest_buf_t out = e->out; /* e is request memory: gone once the request is answered */
    if (rc == 0)
        crest_res_send(req, 200, "text/plain", out.ptr ? out.ptr : "", out.len);
    else if (rc == CREST_EINVAL)
        crest_res_error(req, 400, why); /* the app's own answer to a malformed body */
    crest_buf_free(&out);
}

static int on_events(crest_req_t *req, void *data) {
    (void)data;
    events_t *e = crest_req_alloc(req, sizeof(*e));
    if (e == NULL)
        return CREST_ENOMEM;
    *e = (events_t){CREST_BUF_INIT, 0, 0};
    int rc = crest_req_multipart_stream(req, NULL, on_event, on_events_done, e);
    if (rc != 0)
        crest_buf_free(&e->out); /* done is never called */
    return rc;
}

/* GET /stats: what the body callbacks were told of errors. */
static int on_stats(crest_req_t *req, void *data) {
    (void)data;
    char body[128];
    int n =
        snprintf(body, sizeof(body),
                 "{\"cancelled\":%" PRIu64 ",\"timed_out\":%" PRIu64 ",\"too_big\":%" PRIu64 "}",
                 (uint64_t)cancelled, (uint64_t)timed_out, (uint64_t)too_big);
    return crest_res_json(req, 200, body, (size_t)n);
}

/* GET /metrics: crest's own (the test reads crest_buffered_peak_bytes). */
static int on_metrics(crest_req_t *req, void *data) {
    crest_buf_t b = CREST_BUF_INIT;
    int rc = crest_app_metrics(data, &b);
    rc = rc ? rc : crest_res_send(req, 200, "text/plain; version=0.0.4", b.ptr, b.len);
    crest_buf_free(&b);
    return rc;
}

/* Middleware: an upload needs "Authorization: Bearer ok" (it runs before the body is read). */
static int need_auth(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t a = crest_req_header(req, "authorization");
    if (crest_req_method(req) != CREST_METHOD_POST ||
        (a.len == 9 && memcmp(a.ptr, "Bearer ok", 9) == 0))
        return CREST_NEXT;
    return crest_res_error(req, 401, "no token");
}

static int on_small(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t b = crest_req_body(req);
    char out[32];
    int n = snprintf(out, sizeof(out), "%zu", b.len);
    return crest_res_send(req, 200, "text/plain", out, (size_t)n);
}

int main(int argc, char **argv) {
    cli_opts_t opts;
    int rc = cli_parse(argc, argv, 1, "upload_app", &opts);
    if (rc != CLI_RUN)
        return rc == CLI_EXIT_OK ? 0 : 2;
    crest_app_t *app = crest_app_new(&opts.app);
    if (app == NULL)
        return 1;
    const uint64_t gib = (uint64_t)1 << 30;
    rc = crest_app_use(app, "/auth", need_auth, NULL);
    rc = rc ? rc : crest_app_route_stream(app, "POST", "/count", on_count, NULL, gib);
    rc = rc ? rc : crest_app_route_stream(app, "PUT", "/count", on_count, NULL, gib);
    rc = rc ? rc : crest_app_route_stream(app, "GET", "/count", on_count, NULL, gib);
    rc = rc ? rc : crest_app_route_stream(app, "POST", "/auth/count", on_count, NULL, gib);
    rc = rc ? rc : crest_app_route_stream(app, "POST", "/limit", on_count, NULL, 1000);
    rc = rc ? rc : crest_app_route_stream(app, "POST", "/early", on_early, NULL, gib);
    rc = rc ? rc : crest_app_route_stream(app, "POST", "/echo", on_echo, NULL, gib);
    rc = rc ? rc : crest_app_route_stream(app, "POST", "/parts", on_parts, NULL, gib);
    rc = rc ? rc : crest_app_route_stream(app, "POST", "/events", on_events, NULL, gib);
    rc = rc ? rc : crest_app_route(app, "POST", "/small", on_small, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/stats", on_stats, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/metrics", on_metrics, app);
    if (rc != 0) {
        fprintf(stderr, "upload_app: %s\n", crest_strerror(rc));
        return 1;
    }
    rc = cli_serve(app, &opts);
    crest_app_free(app);
    return rc;
}
