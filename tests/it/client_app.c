/* The outbound client's integration-test app (tests/it/test_client.py): routes that call a
 * downstream server with crest_fetch and report what came back as JSON. Same flags as the demo.
 *
 *   GET|POST /fetch?url=U[&method=M][&timeout=MS][&connect_timeout=MS][&max=BYTES]
 *                  [&redirects=N][&ca=FILE][&hdr=NAME][&cancel=1]
 *       one fetch of U (a POST's body is sent on); 200 with the result, 504 when it timed out,
 *       502 for another error. The JSON: {"error","status","body","url","redirects","hdr","ms"}.
 *   GET /two?a=U&b=V[&timeout=MS]
 *       both at once; answers when both are done: {"a":{...},"b":{...},"ms"}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../../app/cli.h"

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A query parameter, decoded into req's memory; NULL when absent. */
static char *param(crest_req_t *req, const char *name) {
    crest_str_t v = crest_req_query_param(req, name);
    if (v.ptr == NULL)
        return NULL;
    char *out = crest_req_alloc(req, v.len + 1);
    if (out != NULL)
        crest_query_decode(v, out, v.len + 1);
    return out;
}

static long param_long(crest_req_t *req, const char *name, long def) {
    char *s = param(req, name);
    return s != NULL && *s ? strtol(s, NULL, 10) : def;
}

typedef struct call_s call_t;

typedef struct {
    crest_req_t *req;
    uint64_t start;
    int pending;
    int two;
    crest_buf_t out[2];
    int worst; /* the first error seen */
} job_t;

struct call_s {
    job_t *job;
    int slot;
    char *hdr; /* a response header to report */
};

static void describe(crest_buf_t *b, const crest_fetch_res_t *res, const char *hdr, uint64_t ms) {
    crest_buf_puts(b, "{\"error\":");
    crest_buf_json_str(b, res->error ? crest_strerror(res->error) : "",
                       res->error ? strlen(crest_strerror(res->error)) : 0);
    crest_buf_printf(b, ",\"code\":%d,\"status\":%d,\"body\":", res->error, res->status);
    crest_buf_json_str(b, res->body.ptr ? res->body.ptr : "", res->body.len);
    crest_buf_puts(b, ",\"url\":");
    crest_buf_json_str(b, res->url ? res->url : "", res->url ? strlen(res->url) : 0);
    crest_buf_printf(b, ",\"redirects\":%u,\"hdr\":", res->redirects);
    crest_str_t v = {NULL, 0};
    for (size_t i = 0; hdr != NULL && i < res->nheaders; i++)
        if (res->headers[i].name.len == strlen(hdr) &&
            strncasecmp(res->headers[i].name.ptr, hdr, strlen(hdr)) == 0)
            v = res->headers[i].value;
    if (v.ptr != NULL)
        crest_buf_json_str(b, v.ptr, v.len);
    else
        crest_buf_puts(b, "null");
    crest_buf_printf(b, ",\"ms\":%llu}", (unsigned long long)ms);
}

static void on_fetched(const crest_fetch_res_t *res, void *arg) {
    call_t *c = arg;
    job_t *j = c->job;
    describe(&j->out[c->slot], res, c->hdr, now_ms() - j->start);
    if (res->error && !j->worst)
        j->worst = res->error;
    free(c);
    if (--j->pending > 0)
        return;
    int status = j->worst == 0 ? 200 : j->worst == CREST_ETIMEDOUT ? 504 : 502;
    crest_buf_t body = CREST_BUF_INIT;
    if (j->two) {
        crest_buf_puts(&body, "{\"a\":");
        crest_buf_append(&body, j->out[0].ptr, j->out[0].len);
        crest_buf_puts(&body, ",\"b\":");
        crest_buf_append(&body, j->out[1].ptr, j->out[1].len);
        crest_buf_printf(&body, ",\"ms\":%llu}", (unsigned long long)(now_ms() - j->start));
        status = 200;
    } else {
        crest_buf_append(&body, j->out[0].ptr, j->out[0].len);
    }
    crest_res_send_buf(j->req, status, "application/json", &body); /* only frees, if aborted */
    crest_buf_free(&j->out[0]);
    crest_buf_free(&j->out[1]);
    free(j);
}

static int start(job_t *j, int slot, const crest_fetch_opts_t *o, const char *hdr, int cancel) {
    call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CREST_ENOMEM;
    c->job = j;
    c->slot = slot;
    c->hdr = (char *)hdr;
    crest_fetch_t *f = crest_fetch(crest_req_loop(j->req), o, on_fetched, c);
    if (f == NULL) {
        free(c);
        return CREST_ENOMEM;
    }
    j->pending++;
    if (cancel) {
        /* The callback comes later with CREST_ECANCELED; a second cancel is refused. */
        int rc = crest_fetch_cancel(f);
        int again = crest_fetch_cancel(f);
        if (rc != 0 || again != CREST_EALREADY)
            abort();
    }
    return 0;
}

static int on_fetch(crest_req_t *req, void *data) {
    (void)data;
    crest_fetch_opts_t o = crest_fetch_opts_default();
    o.url = param(req, "url");
    char *m = param(req, "method");
    if (m != NULL)
        o.method = m;
    o.timeout_ms = (uint32_t)param_long(req, "timeout", o.timeout_ms);
    o.connect_timeout_ms = (uint32_t)param_long(req, "connect_timeout", o.connect_timeout_ms);
    o.max_response = (size_t)param_long(req, "max", (long)o.max_response);
    o.max_redirects = (int)param_long(req, "redirects", 0);
    o.ca_file = param(req, "ca");
    crest_str_t body = crest_req_body(req);
    o.body = body.ptr;
    o.body_len = body.len;
    crest_header_t h[1] = {{{"X-Via", 5}, {"client_app", 10}}};
    o.headers = h;
    o.nheaders = 1;
    if (o.url == NULL)
        return crest_res_send(req, 400, "text/plain", "url?\n", 5);
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CREST_ENOMEM;
    j->req = req;
    j->start = now_ms();
    int rc = start(j, 0, &o, param(req, "hdr"), param_long(req, "cancel", 0) != 0);
    if (rc != 0)
        free(j);
    return rc;
}

static int on_two(crest_req_t *req, void *data) {
    (void)data;
    crest_fetch_opts_t o = crest_fetch_opts_default();
    o.timeout_ms = (uint32_t)param_long(req, "timeout", 200);
    char *a = param(req, "a"), *b = param(req, "b");
    if (a == NULL || b == NULL)
        return crest_res_send(req, 400, "text/plain", "a? b?\n", 6);
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CREST_ENOMEM;
    j->req = req;
    j->two = 1;
    j->start = now_ms();
    j->pending = 1; /* held until both are started */
    o.url = a;
    int rc = start(j, 0, &o, NULL, 0);
    o.url = b;
    rc = rc ? rc : start(j, 1, &o, NULL, 0);
    if (rc != 0 && j->pending == 1) {
        free(j);
        return rc;
    }
    j->pending--; /* both callbacks come later: never before crest_fetch returns */
    return 0;
}

int main(int argc, char **argv) {
    cli_opts_t opts;
    int rc = cli_parse(argc, argv, 1, "client_app", &opts);
    if (rc != CLI_RUN)
        return rc == CLI_EXIT_OK ? 0 : 2;
    crest_app_t *app = crest_app_new(&opts.app);
    if (app == NULL)
        return 1;
    rc = crest_app_route(app, "GET", "/fetch", on_fetch, NULL);
    rc = rc ? rc : crest_app_route(app, "POST", "/fetch", on_fetch, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/two", on_two, NULL);
    if (rc != 0) {
        fprintf(stderr, "client_app: %s\n", crest_strerror(rc));
        return 1;
    }
    rc = cli_serve(app, &opts);
    crest_app_free(app);
    return rc;
}
