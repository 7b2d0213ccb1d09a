/* A REST resource: /api/todos with validation, bearer-token auth on writes, CORS and JSON errors
 * everywhere, on SQLite (or PostgreSQL: DATABASE_URL=postgres://...), with its OpenAPI document
 * at /openapi.json. bench/peers/README.md ("rest") is its contract; bench/peers/express/rest.js
 * and fastapi/rest.py are its twins.
 * Env: PORT (8080), HOST (127.0.0.1), DB_PATH (todos.db), API_TOKEN (secret), CORS_ORIGIN. */
#include <crest.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static crest_db_t *db;
static crest_db_sql_t *sql_page, *sql_get, *sql_add, *sql_set, *sql_del;
static char bearer[256];

typedef struct {
    crest_str_t title;
    int done;
} todo_in_t;

typedef struct {
    int64_t limit, after;
} page_t;

#define TITLE(flags)                                                                               \
    CREST_FIELD_STR(todo_in_t, title, (flags) | CREST_MIN | CREST_MAX, .min = 1, .max = 200)
static const crest_field_t todo_fields[] = {
    TITLE(CREST_REQUIRED), CREST_FIELD_BOOL(todo_in_t, done, CREST_REQUIRED), CREST_FIELD_END};
static const crest_field_t patch_fields[] = {TITLE(0), CREST_FIELD_BOOL(todo_in_t, done, 0),
                                             CREST_FIELD_END};
static const crest_field_t out_fields[] = {CREST_FIELD("id", CREST_T_INT, CREST_REQUIRED),
                                           CREST_FIELD("title", CREST_T_STRING, CREST_REQUIRED),
                                           CREST_FIELD("done", CREST_T_BOOL, CREST_REQUIRED),
                                           CREST_FIELD_END};
static const crest_field_t page_fields[] = {
    CREST_FIELD_INT(page_t, limit, CREST_MIN | CREST_MAX, .min = 1, .max = 1000),
    CREST_FIELD_INT(page_t, after, CREST_MIN, .min = 0), CREST_FIELD_END};
static const crest_schema_t todo_in = {.name = "TodoIn", .fields = todo_fields},
                            todo_patch = {.name = "TodoPatch", .fields = patch_fields},
                            todo = {.name = "Todo", .fields = out_fields},
                            page = {.name = "Page", .fields = page_fields};

/* The answer to a batch: its error, 404 for no row, or the row with `status` (204: no body). */
static void on_row(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    int ok = (int)(intptr_t)arg;
    crest_buf_t b = CREST_BUF_INIT;
    if (status != 0)
        crest_db_res_error(req, status, q);
    else if (crest_db_rows(q, 0) == 0 && crest_db_changes(q, 0) == 0)
        crest_res_error(req, 404, "no such todo");
    else if (ok == 204)
        crest_res_send(req, 204, NULL, NULL, 0);
    else {
        char where[64];
        if (ok == 201 && snprintf(where, sizeof(where), "/api/todos/%lld",
                                  (long long)crest_db_int(q, 0, 0, 0)) > 0)
            crest_res_header(req, "Location", where);
        crest_db_json_row(&b, q, 0, 0, &todo);
        crest_res_send_buf(req, ok, "application/json", &b);
    }
}

static void on_page(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    int limit = (int)(intptr_t)arg;
    if (status != 0)
        return (void)crest_db_res_error(req, status, q);
    if (crest_db_rows(q, 0) > limit) { /* one more than a page was asked for: there is a next */
        char link[96];
        snprintf(link, sizeof(link), "</api/todos?limit=%d&after=%lld>; rel=\"next\"", limit,
                 (long long)crest_db_int(q, 0, limit - 1, 0));
        crest_res_header(req, "Link", link);
    }
    crest_buf_t b = CREST_BUF_INIT;
    crest_db_json_rows(&b, q, 0, limit, &todo);
    crest_res_send_buf(req, 200, "application/json", &b);
}

/* Run statement `sql` with an optional todo (title, done: NULL for what it lacks), then id. */
static int run(crest_req_t *req, crest_db_sql_t *sql, const todo_in_t *t, int64_t id, int ok) {
    crest_db_query_t *q = crest_db_query(db, sql == sql_get ? 0 : CREST_DB_WRITE);
    if (q == NULL)
        return CREST_ENOMEM;
    crest_db_add(q, sql);
    if (t != NULL) {
        t->title.ptr ? crest_db_arg_text(q, t->title.ptr, t->title.len) : crest_db_arg_null(q);
        t->done >= 0 ? crest_db_arg_int(q, t->done) : crest_db_arg_null(q);
    }
    if (id > 0)
        crest_db_arg_int(q, id);
    return crest_db_run(q, req, on_row, (void *)(intptr_t)ok);
}

static int list(crest_req_t *req, void *data) {
    (void)data;
    page_t p = {100, 0};
    int rc = crest_req_query_valid(req, &page, &p);
    crest_db_query_t *q = rc == 0 ? crest_db_query(db, 0) : NULL;
    if (q == NULL)
        return rc ? rc : CREST_ENOMEM;
    crest_db_add(q, sql_page);
    crest_db_arg_int(q, p.after);
    crest_db_arg_int(q, p.limit + 1); /* one more: is there a next page? */
    return crest_db_run(q, req, on_page, (void *)(intptr_t)p.limit);
}

static int create(crest_req_t *req, void *data) {
    todo_in_t t = {{NULL, 0}, -1};
    int rc = crest_req_valid(req, &todo_in, &t);
    return rc ? rc : run(req, data, &t, 0, 201);
}

/* GET and DELETE (no body), PUT and PATCH (a body, all or some fields) of one todo. */
static int one(crest_req_t *req, void *data) {
    todo_in_t t = {{NULL, 0}, -1};
    int64_t id;
    int m = crest_req_method(req), rc = crest_req_param_int(req, "id", 1, INT64_MAX, &id);
    if (rc == 0 && (m == CREST_METHOD_PUT || m == CREST_METHOD_PATCH))
        rc = crest_req_valid(req, m == CREST_METHOD_PUT ? &todo_in : &todo_patch, &t);
    if (rc != 0)
        return rc;
    int writes = m == CREST_METHOD_PUT || m == CREST_METHOD_PATCH;
    return run(req, data, writes ? &t : NULL, id, m == CREST_METHOD_DELETE ? 204 : 200);
}

/* Writes need the bearer token. */
static int auth(crest_req_t *req, void *data) {
    (void)data;
    crest_str_t got = crest_req_header(req, "Authorization");
    int m = crest_req_method(req);
    if (m == CREST_METHOD_GET || m == CREST_METHOD_HEAD ||
        (got.len == strlen(bearer) && memcmp(got.ptr, bearer, got.len) == 0))
        return CREST_NEXT;
    crest_res_header(req, "WWW-Authenticate", "Bearer");
    return crest_res_error(req, 401, "a valid bearer token is required");
}

static const char *env(const char *name, const char *def) {
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* The database, its table (made by whichever instance starts first) and the statements. */
static int open_db(void) {
    static const char *const sql[] = {
        "SELECT id, title, done FROM todos WHERE id > ? ORDER BY id LIMIT ?",
        "SELECT id, title, done FROM todos WHERE id = ?",
        "INSERT INTO todos (title, done) VALUES (?, ?) RETURNING id, title, done",
        "UPDATE todos SET title = coalesce(?, title), done = coalesce(?, done) WHERE id = ? "
        "RETURNING id, title, done",
        "DELETE FROM todos WHERE id = ?",
        "CREATE TABLE IF NOT EXISTS todos (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "title TEXT NOT NULL, done INTEGER NOT NULL)"};
    crest_db_sql_t *create,
        **handles[] = {&sql_page, &sql_get, &sql_add, &sql_set, &sql_del, &create};
    char url[4096];
    snprintf(url, sizeof(url), "sqlite:%s", env("DB_PATH", "todos.db"));
    int rc = crest_db_open(env("DATABASE_URL", url), NULL, &db);
    for (int i = 0; i < 6 && rc == 0; i++)
        rc = crest_db_statement(db, sql[i], handles[i]);
    crest_db_query_t *q = rc ? NULL : crest_db_query(db, CREST_DB_WRITE | CREST_DB_EXCLUSIVE);
    if (q != NULL) {
        crest_db_add(q, create);
        rc = crest_db_run_sync(q);
        crest_db_query_free(q);
    }
    if (rc != 0)
        fprintf(stderr, "rest: %s %s\n", crest_strerror(rc), db ? crest_db_last_error(db) : "");
    return rc;
}

int main(void) {
    snprintf(bearer, sizeof(bearer), "Bearer %s", env("API_TOKEN", "secret"));
    if (open_db() != 0)
        return 1;
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    crest_app_opts_env(&o); /* HOST, PORT */
    o.log = crest_log_stderr;
    crest_app_t *app = crest_app_new(&o);
    const char *origin = env("CORS_ORIGIN", NULL);
    crest_cors_opts_t cors;
    crest_cors_opts_default(&cors);
    cors.origins = &origin;
    cors.norigins = origin != NULL;
    cors.allow_headers = "Authorization, Content-Type";
    crest_app_on_error(app, crest_error_json, NULL);
    crest_app_cors(app, "/api", &cors);
    crest_app_use(app, "/api", auth, NULL);
    crest_app_route(app, "GET", "/healthz", crest_healthz, NULL);
    crest_route_doc_t d_list = {.summary = "A page of todos", .query = &page, .response = &todo},
                      d_add = {.summary = "Add a todo",
                               .body = &todo_in,
                               .response = &todo,
                               .status = 201},
                      d_get = {.summary = "A todo", .response = &todo},
                      d_put = {.summary = "Replace a todo", .body = &todo_in, .response = &todo},
                      d_patch = {.summary = "Change a todo",
                                 .body = &todo_patch,
                                 .response = &todo},
                      d_del = {.summary = "Delete a todo", .status = 204};
    crest_app_route_doc(app, "GET", "/api/todos", list, NULL, &d_list);
    crest_app_route_doc(app, "POST", "/api/todos", create, sql_add, &d_add);
    crest_app_route_doc(app, "GET", "/api/todos/:id", one, sql_get, &d_get);
    crest_app_route_doc(app, "PUT", "/api/todos/:id", one, sql_set, &d_put);
    crest_app_route_doc(app, "PATCH", "/api/todos/:id", one, sql_set, &d_patch);
    crest_app_route_doc(app, "DELETE", "/api/todos/:id", one, sql_del, &d_del);
    crest_openapi_info_t info = {.title = "todos", .version = "1.0.0"};
    crest_app_serve_openapi(app, "/openapi.json", &info);
    int rc = crest_app_serve(app); /* a call above that failed is reported here */
    crest_app_free(app);
    crest_db_close(db);
    return rc == 0 ? 0 : 1;
}
