/* The integration-test app of crest/json.h: a body validated into a struct (201 or crest's
 * 400/422), query and route parameters validated by tables, typed single accessors, route
 * parameters' percent-decoding, and the OpenAPI document written from the same tables. Each
 * answer echoes what the handler received, so the test sees the values, not only statuses. */
#include <stdio.h>
#include <string.h>

#include "../../app/cli.h"
#include "crest.h"

typedef struct {
    crest_str_t name;
    int64_t qty;
    double price;
    int gift;
    crest_str_t size;
    const crest_json_t *tags;
} item_t;

static const char *const sizes[] = {"S", "M", "L", NULL};
static const crest_field_t tag_item = {.type = CREST_T_STRING, .flags = CREST_MIN, .min = 1};
static const crest_field_t item_fields[] = {
    CREST_FIELD_STR(item_t, name, CREST_REQUIRED | CREST_MIN | CREST_MAX, .min = 1, .max = 10,
                    .description = "what it is"),
    CREST_FIELD_INT(item_t, qty, CREST_REQUIRED | CREST_MIN | CREST_MAX, .min = 1, .max = 99),
    CREST_FIELD_NUM(item_t, price, CREST_MIN, .min = 0),
    CREST_FIELD_BOOL(item_t, gift, 0),
    CREST_FIELD_STR(item_t, size, CREST_NULLABLE, .enums = sizes),
    CREST_FIELD_ARR(item_t, tags, CREST_MAX, &tag_item, .max = 3),
    CREST_FIELD_END};
static const crest_schema_t item_schema = {.name = "Item", .fields = item_fields, .strict = 1};

typedef struct {
    int64_t limit;
    int desc;
    crest_str_t q;
    const crest_json_t *tag;
} list_q_t;
static const crest_field_t tag_int = {.type = CREST_T_INT};
static const crest_field_t list_fields[] = {
    CREST_FIELD_INT(list_q_t, limit, CREST_MIN | CREST_MAX, .min = 1, .max = 100),
    CREST_FIELD_BOOL(list_q_t, desc, 0), CREST_FIELD_STR(list_q_t, q, CREST_MAX, .max = 5),
    CREST_FIELD_ARR(list_q_t, tag, 0, &tag_int), CREST_FIELD_END};
static const crest_schema_t list_query = {.name = "ListQuery", .fields = list_fields};

typedef struct {
    int64_t id;
} id_t_;
static const crest_field_t id_fields[] = {
    CREST_FIELD_INT(id_t_, id, CREST_REQUIRED | CREST_MIN, .min = 1), CREST_FIELD_END};
static const crest_schema_t id_params = {.fields = id_fields};

static void json_s(crest_buf_t *b, crest_str_t s) {
    if (s.ptr == NULL)
        crest_buf_puts(b, "null");
    else
        crest_buf_json_str(b, s.ptr, s.len);
}

static int on_create(crest_req_t *req, void *data) {
    (void)data;
    item_t it = {.qty = 0, .price = -1, .gift = -1};
    int rc = crest_req_valid(req, &item_schema, &it);
    if (rc != 0)
        return rc;
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_puts(&b, "{\"name\":");
    json_s(&b, it.name);
    crest_buf_printf(&b, ",\"qty\":%lld,\"price\":%g,\"gift\":%d,\"size\":", (long long)it.qty,
                     it.price, it.gift);
    json_s(&b, it.size);
    crest_buf_printf(&b, ",\"tags\":%zu}", crest_json_len(it.tags));
    return crest_res_send_buf(req, 201, "application/json", &b);
}

static int on_list(crest_req_t *req, void *data) {
    (void)data;
    list_q_t q = {.limit = 10, .desc = 0};
    int rc = crest_req_query_valid(req, &list_query, &q);
    if (rc != 0)
        return rc;
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_printf(&b, "{\"limit\":%lld,\"desc\":%d,\"q\":", (long long)q.limit, q.desc);
    json_s(&b, q.q);
    crest_buf_puts(&b, ",\"tag\":[");
    for (const crest_json_t *t = crest_json_first(q.tag); t; t = crest_json_next(t)) {
        int64_t v = 0;
        crest_json_int(t, &v);
        crest_buf_printf(&b, "%s%lld", t == crest_json_first(q.tag) ? "" : ",", (long long)v);
    }
    crest_buf_puts(&b, "]}");
    return crest_res_send_buf(req, 200, "application/json", &b);
}

/* The single accessors: ?n (int 0..5, default 3), ?on (bool), ?s, every ?r. */
static int on_single(crest_req_t *req, void *data) {
    (void)data;
    int64_t n;
    int on;
    crest_str_t s, all[4];
    size_t count;
    int rc = crest_req_query_int(req, "n", 3, 0, 5, &n);
    rc = rc ? rc : crest_req_query_bool(req, "on", 0, &on);
    rc = rc ? rc : crest_req_query_str(req, "s", &s);
    rc = rc ? rc : crest_req_query_all(req, "r", all, 4, &count);
    if (rc != 0)
        return rc;
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_printf(&b, "{\"n\":%lld,\"on\":%d,\"s\":", (long long)n, on);
    json_s(&b, s);
    crest_buf_printf(&b, ",\"count\":%zu,\"r\":[", count);
    for (size_t i = 0; i < count && i < 4; i++) {
        crest_buf_puts(&b, i ? "," : "");
        json_s(&b, all[i]);
    }
    crest_buf_puts(&b, "]}");
    return crest_res_send_buf(req, 200, "application/json", &b);
}

/* A route parameter as crest_req_param hands it over, or 404 when it reads as absent. */
static int on_param(crest_req_t *req, void *data) {
    crest_str_t v = crest_req_param(req, data); /* "v", or "*" for the wildcard */
    if (v.ptr == NULL)
        return crest_res_error(req, 404, "no such value");
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_puts(&b, "{\"v\":");
    json_s(&b, v);
    crest_buf_printf(&b, ",\"len\":%zu}", v.len);
    return crest_res_send_buf(req, 200, "application/json", &b);
}

static int on_item(crest_req_t *req, void *data) {
    (void)data;
    id_t_ p = {0};
    int rc = crest_req_params_valid(req, &id_params, &p);
    if (rc != 0)
        return rc;
    int64_t again;
    if ((rc = crest_req_param_int(req, "id", 1, 1000, &again)) != 0)
        return rc;
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_printf(&b, "{\"id\":%lld}", (long long)p.id);
    return crest_res_send_buf(req, 200, "application/json", &b);
}

static int on_json(crest_req_t *req, void *data) {
    (void)data;
    const crest_json_t *root, *again;
    int rc = crest_req_json(req, &root);
    rc = rc ? rc : crest_req_json(req, &again); /* parsed once: the same root */
    if (rc != 0)
        return rc;
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_printf(&b, "{\"type\":%d,\"same\":%d,\"len\":%zu}", (int)crest_json_type(root),
                     root == again, crest_json_len(root));
    return crest_res_send_buf(req, 200, "application/json", &b);
}

int main(int argc, char **argv) {
    cli_opts_t opts;
    int rc = cli_parse(argc, argv, 1, "json_app", &opts);
    if (rc != CLI_RUN)
        return rc == CLI_EXIT_OK ? 0 : 2;
    crest_app_t *app = crest_app_new(&opts.app);
    if (app == NULL)
        return 1;
    crest_route_doc_t create = {.summary = "Create an item",
                                .tags = "items,write",
                                .body = &item_schema,
                                .response = &item_schema,
                                .status = 201};
    crest_route_doc_t list = {.summary = "List items", .tags = "items", .query = &list_query};
    crest_route_doc_t item = {.summary = "One item", .params = &id_params};
    crest_route_doc_t param = {.summary = "Echo a route parameter"};
    crest_openapi_info_t info = {.title = "json_app", .version = "1.2.3"};
    rc = crest_app_route_doc(app, "POST", "/items", on_create, NULL, &create);
    rc = rc ? rc : crest_app_route_doc(app, "GET", "/items", on_list, NULL, &list);
    rc = rc ? rc : crest_app_route_doc(app, "GET", "/items/:id", on_item, NULL, &item);
    rc = rc ? rc : crest_app_route_doc(app, "GET", "/p/:v", on_param, "v", &param);
    rc = rc ? rc : crest_app_route_doc(app, "GET", "/files/*", on_param, "*", &param);
    rc = rc ? rc : crest_app_route(app, "GET", "/single", on_single, NULL);
    rc = rc ? rc : crest_app_route(app, "POST", "/json", on_json, NULL);
    rc = rc ? rc : crest_app_serve_openapi(app, "/openapi.json", &info);
    if (rc != 0) {
        fprintf(stderr, "json_app: %s\n", crest_strerror(rc));
        return 1;
    }
    rc = cli_serve(app, &opts);
    crest_app_free(app);
    return rc;
}
