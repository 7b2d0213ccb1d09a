/* A chat over Server-Sent Events: POST /messages is sent to every GET /events stream, and the
 * page comes from a static folder. bench/peers/README.md ("chat") is its contract;
 * bench/peers/express/chat.js and fastapi/chat.py are its twins.
 * Env: PORT (8080), HOST (127.0.0.1), PUBLIC_DIR (public). */
#include <crest.h>
#include <stdlib.h>
#include <sys/time.h>

static crest_pubsub_t *ps;

typedef struct {
    crest_str_t room, name, text;
} msg_t;

#define NONEMPTY(m) CREST_FIELD_STR(msg_t, m, CREST_REQUIRED | CREST_MIN, .min = 1)
static const crest_field_t msg_fields[] = {NONEMPTY(room), NONEMPTY(name), NONEMPTY(text),
                                           CREST_FIELD_END};
static const crest_schema_t msg_schema = {.name = "Message", .fields = msg_fields};

static int post_message(crest_req_t *req, void *data) {
    (void)data;
    msg_t m;
    int rc = crest_req_valid(req, &msg_schema, &m);
    if (rc != 0)
        return rc;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_puts(&b, "{\"type\":\"message\",\"room\":");
    crest_buf_json_str(&b, m.room.ptr, m.room.len);
    crest_buf_puts(&b, ",\"name\":");
    crest_buf_json_str(&b, m.name.ptr, m.name.len);
    crest_buf_puts(&b, ",\"text\":");
    crest_buf_json_str(&b, m.text.ptr, m.text.len);
    crest_buf_printf(&b, ",\"ts\":%lld}", (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000);
    crest_pubsub_publish(ps, "chat", b.ptr, b.len, 0); /* event "message", framed once */
    return crest_res_send_buf(req, 202, "application/json", &b);
}

static int events(crest_req_t *req, void *data) {
    (void)data;
    crest_sse_opts_t o;
    crest_sse_opts_default(&o); /* a keep-alive comment every 15 s */
    o.retry_ms = 3000;          /* the opening block: a client that read it is subscribed */
    crest_sse_t *sse = crest_sse_start(req, &o);
    if (sse != NULL)
        crest_sse_subscribe(sse, ps, "chat");
    return 0;
}

int main(void) {
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    crest_app_opts_env(&o); /* HOST, PORT */
    o.log = crest_log_stderr;
    crest_app_t *app = crest_app_new(&o);
    ps = crest_pubsub_new(app);
    const char *folder = getenv("PUBLIC_DIR");
    crest_app_on_error(app, crest_error_json, NULL);
    crest_app_static(app, "/", folder ? folder : "public", NULL); /* index.html at / */
    crest_app_route(app, "POST", "/messages", post_message, NULL);
    crest_app_route(app, "GET", "/events", events, NULL);
    crest_app_route(app, "GET", "/healthz", crest_healthz, NULL);
    int rc = crest_app_serve(app); /* a call above that failed is reported here */
    crest_pubsub_free(ps);
    crest_app_free(app);
    return rc == 0 ? 0 : 1;
}
