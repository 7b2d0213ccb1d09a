/* The chain test app: middleware that answers later and resumes the chain, per-request storage,
 * routes that pass a request on, automatic OPTIONS, the error handler (JSON errors everywhere,
 * rejections by the parser included), head and done hooks, the framing headers crest_res_header
 * owns, a second finishing call, and a request nobody answers. Same flags as the demo. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../app/cli.h"

/* ---- /auth: a middleware that awaits something (a timer standing in for a database) ---- */

static void on_auth_checked(crest_loop_t *loop, void *arg) {
    (void)loop;
    crest_req_t *req = arg;
    crest_str_t token = crest_req_header(req, "Authorization");
    if (token.len == 11 && memcmp(token.ptr, "Bearer good", 11) == 0) {
        crest_req_set(req, "user", "alice");
        crest_req_next(req); /* the next middleware, then the route */
        return;
    }
    crest_res_header(req, "WWW-Authenticate", "Bearer");
    crest_res_error(req, 401, "a valid bearer token is required");
}

static int mw_auth(crest_req_t *req, void *data) {
    (void)data;
    /* 0 without answering: the chain waits; the head and body stay readable until resumed. */
    return crest_loop_after(crest_req_loop(req), 5, on_auth_checked, req);
}

/* Runs after mw_auth resumed the chain: storage set by the first is seen here. */
static int mw_after_auth(crest_req_t *req, void *data) {
    (void)data;
    const char *user = crest_req_get(req, "user");
    crest_req_set(req, "greeting", user ? "hello" : "who?");
    return CREST_NEXT;
}

static int on_auth_me(crest_req_t *req, void *data) {
    (void)data;
    char body[512];
    crest_str_t echo = crest_req_header(req, "X-Echo");
    crest_str_t q = crest_req_query_param(req, "q");
    int n = snprintf(body, sizeof(body), "%s %s path=%.*s q=%.*s echo=%.*s body=%zu",
                     (const char *)crest_req_get(req, "greeting"),
                     (const char *)crest_req_get(req, "user"), (int)crest_req_path(req).len,
                     crest_req_path(req).ptr, (int)q.len, q.ptr ? q.ptr : "", (int)echo.len,
                     echo.ptr ? echo.ptr : "", crest_req_body(req).len);
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

/* ---- routes that pass a request on ---- */

static int on_user_me(crest_req_t *req, void *data) {
    (void)data;
    if (crest_req_header(req, "X-Pass").ptr != NULL)
        return CREST_NEXT; /* the next route that matches: /users/:id */
    return crest_res_send(req, 200, "text/plain", "me", 2);
}

static int on_user(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t id = crest_req_param(req, "id");
    char body[64];
    int n = snprintf(body, sizeof(body), "user %.*s", (int)id.len, id.ptr);
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

static int on_pass(crest_req_t *req, void *data) {
    (void)req;
    (void)data;
    return CREST_NEXT; /* no later route: the error handler's 404 */
}

/* ---- the framing headers ---- */

static int last_rc; /* the result of the last checked call, for /last */

static int on_hdr(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t c = crest_req_query_param(req, "case");
    if (c.len == 5 && memcmp(c.ptr, "ctype", 5) == 0) {
        crest_res_header(req, "Content-Type", "text/html"); /* replaced by the finishing call's */
        return crest_res_json(req, 200, "{}", 2);
    }
    if (c.len == 6 && memcmp(c.ptr, "ctype0", 6) == 0) {
        crest_res_header(req, "Content-Type", "text/csv");
        return crest_res_send(req, 200, NULL, "a,b\n", 4); /* none named: the header's */
    }
    if (c.len == 5 && memcmp(c.ptr, "close", 5) == 0) {
        crest_res_header(req, "Connection", "close");
        return crest_res_send(req, 200, "text/plain", "bye", 3);
    }
    int rc[3] = {crest_res_header(req, "Content-Length", "5"),
                 crest_res_header(req, "transfer-encoding", "chunked"),
                 crest_res_header(req, "Date", "Thu, 01 Jan 1970 00:00:00 GMT")};
    char body[64];
    int n = snprintf(body, sizeof(body), "%s %s %s", crest_strerror(rc[0]), crest_strerror(rc[1]),
                     crest_strerror(rc[2]));
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

static int on_twice(crest_req_t *req, void *data) {
    (void)data;
    crest_res_send(req, 200, "text/plain", "first", 5);
    last_rc = crest_res_send(req, 500, "text/plain", "second", 6);
    return 0;
}

static int on_last(crest_req_t *req, void *data) {
    (void)data;
    const char *s = crest_strerror(last_rc);
    return crest_res_send(req, 200, "text/plain", s, strlen(s));
}

static void forget_abort(crest_req_t *req, void *arg) {
    (void)arg;
    crest_res_end(req); /* the client left (or the server stopped): the request is freed */
}

static int on_forget(crest_req_t *req, void *data) {
    (void)data;
    crest_req_on_abort(req, forget_abort, NULL);
    return 0; /* taken, never answered: reported after --unanswered-warn */
}

static int on_fail(crest_req_t *req, void *data) {
    (void)req;
    (void)data;
    return CREST_EIO; /* a handler's failure: the error handler's 500 */
}

/* ---- hooks ---- */

static void head_hook(crest_req_t *req, int status, void *data) {
    (void)data;
    char v[16];
    snprintf(v, sizeof(v), "%d", status);
    crest_res_header(req, "X-Seen-Status", v);
}

/* Finished responses, by the done hook: /done reports them (one loop thread in the tests). */
static unsigned done_count;
static int done_last_status;
static unsigned long long done_last_bytes;

static void done_hook(crest_req_t *req, const crest_res_info_t *info, void *data) {
    (void)req;
    (void)data;
    done_count++;
    done_last_status = info->status;
    done_last_bytes = (unsigned long long)info->body_bytes;
}

static int on_done(crest_req_t *req, void *data) {
    (void)data;
    char body[96];
    int n =
        snprintf(body, sizeof(body), "%u %d %llu", done_count, done_last_status, done_last_bytes);
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

int main(int argc, char **argv) {
    cli_opts_t opts;
    int rc = cli_parse(argc, argv, 1, "chain_app", &opts);
    if (rc != CLI_RUN)
        return rc == CLI_EXIT_OK ? 0 : 2;
    crest_app_t *app = crest_app_new(&opts.app);
    if (app == NULL)
        return 1;
    crest_cors_opts_t cors;
    crest_cors_opts_default(&cors);
    const char *origins[] = {"http://a.test"};
    cors.origins = origins;
    cors.norigins = 1;
    crest_app_on_error(app, crest_error_json, NULL);
    rc = crest_app_request_id(app);
    rc = rc ? rc : crest_app_cors(app, NULL, &cors);
    rc = rc ? rc : crest_app_on_head(app, head_hook, NULL);
    rc = rc ? rc : crest_app_on_done(app, done_hook, NULL);
    rc = rc ? rc : crest_app_use(app, "/auth", mw_auth, NULL);
    rc = rc ? rc : crest_app_use(app, "/auth", mw_after_auth, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/auth/me", on_auth_me, NULL);
    rc = rc ? rc : crest_app_route(app, "POST", "/auth/me", on_auth_me, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/users/me", on_user_me, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/users/:id", on_user, NULL);
    rc = rc ? rc : crest_app_route(app, "DELETE", "/users/:id", on_user, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/pass", on_pass, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/hdr", on_hdr, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/twice", on_twice, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/last", on_last, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/forget", on_forget, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/fail", on_fail, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/done", on_done, NULL);
    if (rc != 0) {
        fprintf(stderr, "chain_app: %s\n", crest_strerror(rc));
        return 1;
    }
    rc = cli_serve(app, &opts);
    crest_app_free(app);
    return rc;
}
