/* The web basics' test app (tests/it/test_web.py): cookies, form bodies, multipart uploads with
 * spilled files, content negotiation. Same flags as the demo. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../app/cli.h"

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

/* FNV-1a, 64 bits: the test computes the same over what it sent. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ULL;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

/* GET /cookie/set: three cookies (defaults; long-lived strict; a deletion), and a refused one. */
static int on_cookie_set(crest_req_t *req, void *data) {
    (void)data;
    crest_cookie_opts_t o;
    int rc = crest_res_cookie(req, "sid", "abc123", NULL);
    crest_cookie_opts_default(&o);
    o.max_age = 3600;
    o.same_site = CREST_SAMESITE_STRICT;
    o.http_only = 0;
    o.path = "/cookie";
    rc = rc ? rc : crest_res_cookie(req, "pref", "\"dark-mode\"", &o);
    crest_cookie_opts_default(&o);
    o.max_age = 0;
    rc = rc ? rc : crest_res_cookie(req, "old", "", &o);
    if (rc != 0)
        return rc;
    int bad = crest_res_cookie(req, "bad", "a;b", NULL);
    char body[64];
    int n = snprintf(body, sizeof(body), "set; bad value: %s", crest_strerror(bad));
    return crest_res_send(req, 200, "text/plain", body, (size_t)n);
}

/* GET /cookie/get?name=N: the cookie's value, 404 without it. */
static int on_cookie_get(crest_req_t *req, void *data) {
    (void)data;
    char name[64];
    crest_str_t q = crest_req_query_param(req, "name");
    crest_query_decode(q, name, sizeof(name));
    crest_str_t v = crest_req_cookie(req, name);
    if (v.ptr == NULL)
        return crest_res_status(req, 404);
    return crest_res_send(req, 200, "text/plain", v.ptr, v.len);
}

/* POST /form: "a=<first a>|all=<n>:<v>,<v>|fields=<name>=<value>;..." */
static int on_form(crest_req_t *req, void *data) {
    (void)data;
    crest_buf_t b = CREST_BUF_INIT;
    crest_str_t a = crest_req_form(req, "a");
    crest_buf_printf(&b, "a=%s|all=", a.ptr ? a.ptr : "(none)");
    crest_str_t all[4];
    int n = crest_req_form_all(req, "a", all, 4);
    crest_buf_printf(&b, "%d:", n);
    for (int i = 0; i < n && i < 4; i++)
        crest_buf_printf(&b, "%s%s", i ? "," : "", all[i].ptr);
    crest_buf_puts(&b, "|fields=");
    const crest_form_field_t *f;
    size_t count;
    if (crest_req_form_fields(req, &f, &count) != 0) {
        crest_buf_free(&b);
        return CREST_ENOMEM;
    }
    for (size_t i = 0; i < count; i++)
        crest_buf_printf(&b, "%s=%s;", f[i].name.ptr, f[i].value.ptr);
    int rc = crest_res_send_buf(req, 200, "text/plain", &b);
    return rc;
}

static void opts_from_query(crest_req_t *req, crest_multipart_opts_t *o) {
    crest_multipart_opts_default(o);
    o->max_parts = (uint32_t)query_long(req, "max_parts", o->max_parts);
    o->max_part_size = (uint64_t)query_long(req, "max_part", 0);
    o->max_header_bytes = (uint32_t)query_long(req, "max_header", o->max_header_bytes);
}

/* POST /upload: crest_req_parts; one JSON object per part: name, filename, type, size, path
 * (spilled) and the FNV-1a of its bytes (read back from the file when spilled). */
static int on_upload(crest_req_t *req, void *data) {
    (void)data;
    crest_multipart_opts_t o;
    opts_from_query(req, &o);
    crest_part_t *parts;
    size_t n;
    if (crest_req_parts(req, &o, &parts, &n) != 0)
        return 0; /* answered: 400 or 413 */
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_puts(&b, "[");
    for (size_t i = 0; i < n; i++) {
        crest_part_t *p = &parts[i];
        uint64_t h = FNV_INIT;
        if (p->path != NULL) {
            int fd = open(p->path, O_RDONLY);
            if (fd < 0) {
                crest_buf_free(&b);
                return crest_res_status(req, 500);
            }
            char chunk[65536];
            ssize_t r;
            uint64_t total = 0;
            while ((r = read(fd, chunk, sizeof(chunk))) > 0) {
                h = fnv(h, chunk, (size_t)r);
                total += (uint64_t)r;
            }
            close(fd);
            if (total != p->size) {
                crest_buf_free(&b);
                return crest_res_status(req, 500);
            }
        } else {
            h = fnv(h, p->data.ptr, p->data.len);
        }
        crest_buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        crest_buf_json_str(&b, p->name.ptr, p->name.len);
        crest_buf_puts(&b, ",\"filename\":");
        if (p->filename.ptr != NULL)
            crest_buf_json_str(&b, p->filename.ptr, p->filename.len);
        else
            crest_buf_puts(&b, "null");
        crest_buf_puts(&b, ",\"type\":");
        crest_buf_json_str(&b, p->content_type.ptr, p->content_type.len);
        crest_buf_printf(&b, ",\"size\":%llu,\"fnv\":\"%016llx\",\"path\":",
                         (unsigned long long)p->size, (unsigned long long)h);
        if (p->path != NULL)
            crest_buf_json_str(&b, p->path, strlen(p->path));
        else
            crest_buf_puts(&b, "null");
        if (p->path == NULL && p->filename.ptr == NULL) {
            crest_buf_puts(&b, ",\"value\":");
            crest_buf_json_str(&b, p->data.ptr, p->data.len);
        }
        crest_buf_puts(&b, "}");
    }
    crest_buf_puts(&b, "]");
    /* ?keep=DEST: move the first spilled file there (the app takes it). */
    crest_str_t keep = crest_req_query_param(req, "keep");
    if (keep.ptr != NULL) {
        char dest[512];
        crest_query_decode(keep, dest, sizeof(dest));
        for (size_t i = 0; i < n; i++)
            if (parts[i].path != NULL) {
                if (crest_part_move(req, &parts[i], dest) != 0) {
                    crest_buf_free(&b);
                    return crest_res_status(req, 500);
                }
                break;
            }
    }
    return crest_res_send_buf(req, 200, "application/json", &b);
}

/* POST /parts: crest_req_multipart with a callback: "<name>:<bytes>:<chunks>;" per part. */
typedef struct {
    crest_buf_t out;
    size_t chunks;
} walk_t;

static int on_part(crest_req_t *req, crest_part_event_t ev, const crest_part_t *part,
                   const void *data, size_t len, void *arg) {
    (void)req;
    (void)data;
    (void)len;
    walk_t *w = arg;
    if (ev == CREST_PART_BEGIN)
        w->chunks = 0;
    else if (ev == CREST_PART_DATA)
        w->chunks++;
    else
        crest_buf_printf(&w->out, "%.*s:%llu:%zu;", (int)part->name.len, part->name.ptr,
                         (unsigned long long)part->size, w->chunks);
    return 0;
}

static int on_parts(crest_req_t *req, void *data) {
    (void)data;
    crest_multipart_opts_t o;
    opts_from_query(req, &o);
    walk_t w = {CREST_BUF_INIT, 0};
    const char *why = NULL;
    int rc = crest_req_multipart(req, &o, on_part, &w, &why);
    if (rc != 0) {
        crest_buf_free(&w.out);
        return crest_res_error(req, rc == CREST_E2BIG ? 413 : 400, why);
    }
    return crest_res_send_buf(req, 200, "text/plain", &w.out);
}

/* GET /neg: JSON, HTML or text by Accept; 406 when none. */
static int on_neg(crest_req_t *req, void *data) {
    (void)data;
    static const char *const types[] = {"application/json", "text/html", "text/plain"};
    static const char *const bodies[] = {"{\"kind\":\"json\"}", "<p>html</p>", "plain"};
    int i = crest_req_accepts(req, types, 3);
    crest_res_header(req, "Vary", "Accept");
    if (i < 0)
        return crest_res_status(req, 406);
    return crest_res_send(req, 200, types[i], bodies[i], strlen(bodies[i]));
}

static int on_lang(crest_req_t *req, void *data) {
    (void)data;
    static const char *const langs[] = {"en", "fr-CA", "de"};
    int i = crest_req_accepts_language(req, langs, 3);
    if (i < 0)
        return crest_res_status(req, 406);
    return crest_res_send(req, 200, "text/plain", langs[i], strlen(langs[i]));
}

int main(int argc, char **argv) {
    cli_opts_t opts;
    int rc = cli_parse(argc, argv, 1, "web_app", &opts);
    if (rc != CLI_RUN)
        return rc == CLI_EXIT_OK ? 0 : 2;
    crest_app_t *app = crest_app_new(&opts.app);
    if (app == NULL)
        return 1;
    rc = crest_app_route(app, "GET", "/cookie/set", on_cookie_set, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/cookie/get", on_cookie_get, NULL);
    rc = rc ? rc : crest_app_route(app, "POST", "/form", on_form, NULL);
    rc = rc ? rc : crest_app_route(app, "POST", "/upload", on_upload, NULL);
    rc = rc ? rc : crest_app_route(app, "POST", "/parts", on_parts, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/neg", on_neg, NULL);
    rc = rc ? rc : crest_app_route(app, "GET", "/lang", on_lang, NULL);
    if (rc != 0) {
        fprintf(stderr, "web_app: %s\n", crest_strerror(rc));
        return 1;
    }
    rc = cli_serve(app, &opts);
    crest_app_free(app);
    return rc;
}
