/* The smallest crest program: one route, default options (127.0.0.1:8080, one loop per CPU).
 * Build: cc hello.c $(pkg-config --cflags --libs crest) -o hello */
#include <stdio.h>

#include <crest.h>

static int hello(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t name = crest_req_param(req, "name");
    char body[128];
    int n = snprintf(body, sizeof(body), "Hello, %.*s!\n", (int)name.len, name.ptr);
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

int main(void) {
    crest_app_t *app = crest_app_new(NULL);
    crest_app_route(app, "GET", "/hello/:name", hello, NULL);
    int rc = crest_app_run(app); /* until SIGINT or SIGTERM */
    if (rc != 0)
        fprintf(stderr, "hello: %s\n", crest_strerror(rc));
    crest_app_free(app);
    return rc == 0 ? 0 : 1;
}
