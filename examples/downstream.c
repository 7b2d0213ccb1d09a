/* Two downstream calls in parallel, each with a 200 ms timeout: GET /combined answers
 * {"a": A, "b": B, "timed_out": [...]}. bench/peers/README.md ("downstream") is its contract;
 * bench/peers/express/downstream.js and fastapi/downstream.py are its twins.
 * Env: PORT (8080), HOST (127.0.0.1), UPSTREAM_A, UPSTREAM_B. */
#include <crest.h>
#include <stdlib.h>

static crest_fetch_opts_t upstreams[2];

/* Both calls are done: each one's JSON body, or null (and its name in timed_out if it ran out of
 * time). 200 when one answered, else 504 if one timed out, else 502. */
static void on_both(const crest_fetch_res_t *res, size_t n, void *arg) {
    crest_buf_t b = CREST_BUF_INIT;
    int answered = 0, timeouts = 0;
    for (size_t i = 0; i < n; i++) {
        crest_json_t *doc = NULL;
        int ok = res[i].error == 0 && res[i].status / 100 == 2 &&
                 crest_json_parse(res[i].body.ptr, res[i].body.len, &doc) == 0;
        crest_json_free(doc);
        crest_buf_puts(&b, i == 0 ? "{\"a\":" : ",\"b\":");
        crest_buf_append(&b, ok ? res[i].body.ptr : "null", ok ? res[i].body.len : 4);
        answered += ok;
        timeouts |= (res[i].error == CREST_ETIMEDOUT) << i;
    }
    const char *late[] = {"", "\"a\"", "\"b\"", "\"a\",\"b\""};
    crest_buf_printf(&b, ",\"timed_out\":[%s]}", late[timeouts]);
    crest_res_send_buf(arg, answered ? 200 : timeouts ? 504 : 502, "application/json", &b);
}

static int combined(crest_req_t *req, void *data) {
    (void)data;
    return crest_fetch_all(crest_req_loop(req), upstreams, 2, on_both, req);
}

int main(void) {
    for (int i = 0; i < 2; i++) {
        upstreams[i] = crest_fetch_opts_default();
        upstreams[i].url = getenv(i == 0 ? "UPSTREAM_A" : "UPSTREAM_B");
        upstreams[i].timeout_ms = 200;
    }
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    crest_app_opts_env(&o); /* HOST, PORT */
    o.log = crest_log_stderr;
    crest_app_t *app = crest_app_new(&o);
    crest_app_on_error(app, crest_error_json, NULL);
    crest_app_route(app, "GET", "/combined", combined, NULL);
    crest_app_route(app, "GET", "/healthz", crest_healthz, NULL);
    int rc = crest_app_serve(app); /* a failed crest_app_route above is reported here */
    crest_app_free(app);
    return rc == 0 ? 0 : 1;
}
