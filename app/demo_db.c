/* The demo app's database and CPU-work routes (CONTRACT.md), written only against crest.h and
 * once for both backends (crest/db.h: SQLite by default, PostgreSQL with --db postgres://...),
 * with crest_req_valid() for request bodies (crest/json.h: cJSON underneath, picked by
 * bench/json_pick.sh: about 4x faster than jansson and json-c at parsing and checking a todo body).
 *
 * Every route sends one batch (two for /updates and for the first slice of a long list) and
 * answers from its callback. Where a batch runs is crest's business (crest/db.h): on SQLite reads
 * run at once on the loop thread and writes on the database's writer thread, which commits
 * concurrent writes together; on PostgreSQL everything goes out pipelined on the loop thread's
 * connection. Either way a write is committed before its 2xx is sent.
 *
 * GET /api/todos reads a page in slices of about SLICE_BYTES (crest_db_limit_bytes): a page has
 * at most 1000 rows, but a row can hold a title of max_body bytes, so a page is never held whole.
 * The loop thread writes a slice and asks for the next only once the connection's output is down
 * to half of max_output (crest_res_buffered; crest_res_on_drain to wait for it). A slow reader
 * then holds that plus one slice, not the page.
 *
 * POST /work/hash runs PBKDF2 with up to --max-hash-rounds iterations on the worker pool.
 *
 * The database opens on a thread of its own while the app already serves (demo_db_open_start):
 * opening, declaring and seeding take several milliseconds (far more for a PostgreSQL server
 * across a network), and /plaintext, /healthz or the chat need none of it. Until the whole of it
 * is done, the database routes answer 503 with Retry-After: they see a database either not
 * there or complete, never half open, and a load balancer retries them. The listening line is
 * printed only then, so whoever waits for it (scripts, the tests) finds every route working. */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_db.h"

#define WORLD_ROWS 10000
#define MAX_QUERIES 500
#define SEED_ROWS_PER_INSERT 100

typedef struct {
    crest_db_sql_t *world_get, *world_set, *fortunes, *todo_page_end, *todo_slice, *todo_get,
        *todo_add, *todo_set, *todo_del;
} demo_sql_t;

/* A database route: the handler behind the gate that holds it back until the database is open. */
typedef struct {
    struct demo_db_s *d;
    crest_handler_cb cb;
} gate_t;

#define DB_ROUTES 10

struct demo_db_s {
    crest_db_t *db; /* written by the opening thread before `ready`, read by loops after it */
    demo_sql_t sql;
    long max_rounds;
    size_t low_water;  /* a streamed list reads its next slice while its output is at most this */
    _Atomic int ready; /* db and sql are complete (release/acquire) */
    int failed;        /* the open failed (read after the opening thread is joined) */
    gate_t gates[DB_ROUTES];
    /* The opening thread and what it needs. */
    pthread_t opener;
    int opener_started;
    crest_app_t *app;
    const cli_opts_t *opts;
    void (*on_ready)(void *arg);
    void *on_ready_arg;
};

/* ---- SQL: SQLite's dialect with ? placeholders; crest translates for PostgreSQL ---- */

static const char SQL_WORLD_GET[] = "SELECT id, randomNumber FROM World WHERE id = ?";
static const char SQL_WORLD_SET[] = "UPDATE World SET randomNumber = ? WHERE id = ?";
static const char SQL_FORTUNES[] = "SELECT id, message FROM Fortune";
/* A page's end: the ids of its limit-th row and of the row after it (OFFSET limit-1), from the
 * primary key alone (at most 1001 ids read, no titles). */
static const char SQL_TODO_PAGE_END[] = "SELECT id FROM todo WHERE id > ?1 ORDER BY id LIMIT 2 "
                                        "OFFSET ?2";
/* One slice of a page: the rows after the last one sent, up to the page's end. */
static const char SQL_TODO_SLICE[] = "SELECT id, title, done FROM todo WHERE id > ?1 AND id <= ?2 "
                                     "ORDER BY id LIMIT ?3";
static const char SQL_TODO_GET[] = "SELECT id, title, done FROM todo WHERE id = ?";
static const char SQL_TODO_ADD[] = "INSERT INTO todo (title, done) VALUES (?, ?) RETURNING id, "
                                   "title, done";
/* PUT and PATCH share one statement: a NULL parameter keeps the stored value. */
static const char SQL_TODO_SET[] = "UPDATE todo SET title = coalesce(?1, title), done = "
                                   "coalesce(?2, done) WHERE id = ?3 RETURNING id, title, done";
static const char SQL_TODO_DEL[] = "DELETE FROM todo WHERE id = ?";

/* The TechEmpower tables and the REST API's table. AUTOINCREMENT so that the id of a deleted
 * todo is never handed out again (a client holding its URL must keep getting 404). */
static const char *const SQL_SCHEMA[] = {
    "CREATE TABLE IF NOT EXISTS World (id INTEGER PRIMARY KEY, randomNumber INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS Fortune (id INTEGER PRIMARY KEY, message TEXT NOT NULL)",
    ("CREATE TABLE IF NOT EXISTS todo (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL,"
     " done INTEGER NOT NULL)"),
};
static const char SQL_COUNTS[] = "SELECT (SELECT count(*) FROM World), (SELECT count(*) FROM "
                                 "Fortune)";

static const char *const fortunes[] = {
    "fortune: No such file or directory",
    "A computer scientist is someone who fixes things that aren't broken.",
    "After enough decimal places, nobody gives a damn.",
    "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    "A computer program does what you tell it to do, not what you want it to do.",
    "Emacs is a nice operating system, but I prefer UNIX. \xe2\x80\x94 Tom Christaensen",
    "Any program that runs right is obsolete.",
    "A list is only as strong as its weakest link. \xe2\x80\x94 Donald Knuth",
    "Feature: A bug with seniority.",
    "Computers make very fast, very accurate mistakes.",
    "<script>alert(\"This should not be displayed in a browser alert box.\");</script>",
    "\xe3\x83\x95\xe3\x83\xac\xe3\x83\xbc\xe3\x83\xa0\xe3\x83\xaf\xe3\x83\xbc\xe3\x82\xaf\xe3\x81"
    "\xae"
    "\xe3\x83\x99\xe3\x83\xb3\xe3\x83\x81\xe3\x83\x9e\xe3\x83\xbc\xe3\x82\xaf",
};

#define NFORTUNES (sizeof(fortunes) / sizeof(fortunes[0]))

/* A per-thread xorshift generator: rand() shares one state between threads behind a lock. */
static _Thread_local uint64_t rng_state;

static int random_id(void) {
    if (rng_state == 0)
        rng_state = (uint64_t)(uintptr_t)&rng_state ^ 0x9e3779b97f4a7c15ull;
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (int)(rng_state % WORLD_ROWS) + 1;
}

/* Create the tables and, when they are empty, fill them. Safe with several instances starting
 * at once on one PostgreSQL: the schema batch runs alone (CREST_DB_EXCLUSIVE), and the rows go in
 * with ON CONFLICT DO NOTHING, so a second instance seeding the same ids changes nothing. */
static int seed(crest_db_t *db) {
    crest_db_sql_t *st;
    crest_db_query_t *q = crest_db_query(db, CREST_DB_WRITE | CREST_DB_EXCLUSIVE);
    if (q == NULL)
        return CREST_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < sizeof(SQL_SCHEMA) / sizeof(SQL_SCHEMA[0]) && rc == 0; i++)
        if ((rc = crest_db_statement(db, SQL_SCHEMA[i], &st)) == 0)
            crest_db_add(q, st);
    if (rc == 0 && (rc = crest_db_statement(db, SQL_COUNTS, &st)) == 0)
        crest_db_add(q, st);
    if (rc == 0)
        rc = crest_db_run_sync(q);
    int empty = rc == 0 && (crest_db_int(q, 3, 0, 0) == 0 || crest_db_int(q, 3, 0, 1) == 0);
    if (rc != 0)
        fprintf(stderr, "crest: database schema: %s\n", crest_db_error(q));
    crest_db_query_free(q);
    if (rc != 0 || !empty)
        return rc;

    /* One transaction: 10,000 commits would be 10,000 fsyncs. Many rows per INSERT: 100 statements
     * instead of 10,000. */
    char sql[96 + SEED_ROWS_PER_INSERT * 8];
    crest_buf_t b = CREST_BUF_ON(sql);
    crest_buf_puts(&b, "INSERT INTO World (id, randomNumber) VALUES (?, ?)");
    for (int i = 1; i < SEED_ROWS_PER_INSERT; i++)
        crest_buf_puts(&b, ", (?, ?)");
    crest_buf_puts(&b, " ON CONFLICT DO NOTHING");
    crest_buf_append(&b, "", 1);
    crest_db_sql_t *world_add, *fortune_add;
    rc = b.err ? b.err : crest_db_statement(db, b.ptr, &world_add);
    crest_buf_free(&b); /* the statement keeps its own copy */
    if (rc != 0 ||
        (rc = crest_db_statement(db,
                                 "INSERT INTO Fortune (id, message) VALUES (?, ?) ON CONFLICT DO "
                                 "NOTHING",
                                 &fortune_add)) != 0)
        return rc;
    if ((q = crest_db_query(db, CREST_DB_WRITE)) == NULL)
        return CREST_ENOMEM;
    for (int id = 1; id <= WORLD_ROWS; id++) {
        if ((id - 1) % SEED_ROWS_PER_INSERT == 0)
            crest_db_add(q, world_add);
        crest_db_arg_int(q, id);
        crest_db_arg_int(q, random_id());
    }
    for (size_t i = 0; i < NFORTUNES; i++) {
        crest_db_add(q, fortune_add);
        crest_db_arg_int(q, (int64_t)i + 1);
        crest_db_arg_text(q, fortunes[i], strlen(fortunes[i]));
    }
    rc = crest_db_run_sync(q);
    if (rc != 0)
        fprintf(stderr, "crest: database seed: %s\n", crest_db_error(q));
    crest_db_query_free(q);
    return rc;
}

/* ---- helpers ---- */

static int send_error(crest_req_t *req, int status, const char *msg, const char *field) {
    char mem[256];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "{\"error\":");
    crest_buf_json_str(&b, msg, strlen(msg));
    if (field != NULL) {
        crest_buf_puts(&b, ",\"field\":");
        crest_buf_json_str(&b, field, strlen(field));
    }
    crest_buf_puts(&b, "}");
    return crest_res_send_buf(req, status, "application/json", &b);
}

/* A whole decimal number of at most `max`; -1 when `s` is not one (empty, a sign, other bytes,
 * or larger than max). */
static long long parse_num(crest_str_t s, long long max) {
    if (s.ptr == NULL || s.len == 0)
        return -1;
    long long v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return -1;
        v = v * 10 + (s.ptr[i] - '0');
        if (v > max)
            return -1;
    }
    return v;
}

/* TechEmpower: missing or not a number -> 1, else clamped to 1..500. */
static int queries_param(crest_req_t *req) {
    crest_str_t s = crest_req_query_param(req, "queries");
    if (s.ptr == NULL || s.len == 0)
        return 1;
    int digits = 1;
    for (size_t i = 0; i < s.len; i++)
        digits &= s.ptr[i] >= '0' && s.ptr[i] <= '9';
    if (!digits)
        return 1;
    long long v = parse_num(s, 1000000);
    if (v < 0 || v > MAX_QUERIES)
        return MAX_QUERIES; /* all digits but huge */
    return v < 1 ? 1 : (int)v;
}

/* A batch that failed: 503 with Retry-After when trying again may work (crest_db_retryable),
 * else 500. The backend's message stays out of the answer (it may quote SQL). When the client
 * left, this only frees the request. */
static void db_fail(crest_req_t *req, int status, const char *what) {
    if (status == CREST_ECANCELED) {
        crest_res_status(req, 503);
        return;
    }
    int retry = crest_db_retryable(status);
    char msg[96];
    snprintf(msg, sizeof(msg), "%s: %s", what, crest_strerror(status));
    if (retry)
        crest_res_header(req, "Retry-After", "1");
    send_error(req, retry ? 503 : 500, msg, NULL);
}

/* crest_db_run failed before sending: the handler still owns req. */
static int db_refused(crest_req_t *req, int rc, const char *what) {
    if (rc == CREST_ENOMEM)
        return rc;
    db_fail(req, rc, what);
    return 0;
}

static void world_json(crest_buf_t *b, int64_t id, int64_t num, int comma) {
    crest_buf_printf(b, "%s{\"id\":%lld,\"randomNumber\":%lld}", comma ? "," : "", (long long)id,
                     (long long)num);
}

/* ---- TechEmpower ---- */

static void on_db_done(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    (void)arg;
    if (status != 0 || crest_db_rows(q, 0) != 1) {
        db_fail(req, status ? status : CREST_ENOENT, "db");
        return;
    }
    char mem[64];
    crest_buf_t b = CREST_BUF_ON(mem);
    world_json(&b, crest_db_int(q, 0, 0, 0), crest_db_int(q, 0, 0, 1), 0);
    crest_res_send_buf(req, 200, "application/json", &b);
}

static int on_db(crest_req_t *req, void *data) {
    demo_db_t *d = data;
    crest_db_query_t *q = crest_db_query(d->db, 0);
    if (q == NULL)
        return CREST_ENOMEM;
    crest_db_add(q, d->sql.world_get);
    crest_db_arg_int(q, random_id());
    int rc = crest_db_run(q, req, on_db_done, NULL);
    return rc == 0 ? 0 : db_refused(req, rc, "db");
}

/* n random rows in one batch: one round trip to PostgreSQL, not n. */
static crest_db_query_t *worlds_query(demo_db_t *d, int n) {
    crest_db_query_t *q = crest_db_query(d->db, 0);
    for (int i = 0; q != NULL && i < n; i++) {
        crest_db_add(q, d->sql.world_get);
        crest_db_arg_int(q, random_id());
    }
    return q;
}

static void on_queries_done(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    int n = (int)(intptr_t)arg;
    for (int i = 0; status == 0 && i < n; i++)
        if (crest_db_rows(q, i) != 1)
            status = CREST_ENOENT;
    if (status != 0) {
        db_fail(req, status, "queries");
        return;
    }
    char mem[4096];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "[");
    for (int i = 0; i < n; i++)
        world_json(&b, crest_db_int(q, i, 0, 0), crest_db_int(q, i, 0, 1), i > 0);
    crest_buf_puts(&b, "]");
    crest_res_send_buf(req, 200, "application/json", &b);
}

static int on_queries(crest_req_t *req, void *data) {
    int n = queries_param(req);
    crest_db_query_t *q = worlds_query(data, n);
    if (q == NULL)
        return CREST_ENOMEM;
    int rc = crest_db_run(q, req, on_queries_done, (void *)(intptr_t)n);
    return rc == 0 ? 0 : db_refused(req, rc, "queries");
}

/* /updates: read n rows (one batch), then write each a new number (one write batch, committed
 * before the answer). The rows are written in id order, so that two requests updating the same
 * rows take their locks in the same order and cannot deadlock on PostgreSQL. */
typedef struct {
    demo_db_t *d;
    int n;
    int id[MAX_QUERIES];
    int num[MAX_QUERIES];
    int order[MAX_QUERIES]; /* indexes of id[] by id */
} updates_t;

/* qsort has no context argument; each loop thread sorts one request at a time. */
static _Thread_local const updates_t *sort_ctx;

static int by_id(const void *a, const void *b) {
    int x = sort_ctx->id[*(const int *)a], y = sort_ctx->id[*(const int *)b];
    return (x > y) - (x < y);
}

static void on_updates_written(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    (void)q;
    updates_t *u = arg;
    if (status != 0) {
        db_fail(req, status, "updates");
        free(u);
        return;
    }
    char mem[4096];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "[");
    for (int i = 0; i < u->n; i++)
        world_json(&b, u->id[i], u->num[i], i > 0);
    crest_buf_puts(&b, "]");
    free(u);
    crest_res_send_buf(req, 200, "application/json", &b);
}

static void on_updates_read(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    updates_t *u = arg;
    for (int i = 0; status == 0 && i < u->n; i++)
        if (crest_db_rows(q, i) != 1)
            status = CREST_ENOENT;
    if (status != 0) {
        db_fail(req, status, "updates");
        free(u);
        return;
    }
    for (int i = 0; i < u->n; i++) {
        u->id[i] = (int)crest_db_int(q, i, 0, 0);
        u->num[i] = random_id();
        u->order[i] = i;
    }
    sort_ctx = u;
    qsort(u->order, (size_t)u->n, sizeof(u->order[0]), by_id);
    crest_db_query_t *w = crest_db_query(u->d->db, CREST_DB_WRITE);
    for (int k = 0; w != NULL && k < u->n; k++) {
        crest_db_add(w, u->d->sql.world_set);
        crest_db_arg_int(w, u->num[u->order[k]]);
        crest_db_arg_int(w, u->id[u->order[k]]);
    }
    int rc = w ? crest_db_run(w, req, on_updates_written, u) : CREST_ENOMEM;
    if (rc != 0) {
        db_fail(req, rc, "updates");
        free(u);
    }
}

static int on_updates(crest_req_t *req, void *data) {
    updates_t *u = malloc(sizeof(*u));
    if (u == NULL)
        return CREST_ENOMEM;
    u->d = data;
    u->n = queries_param(req);
    crest_db_query_t *q = worlds_query(data, u->n);
    int rc = q ? crest_db_run(q, req, on_updates_read, u) : CREST_ENOMEM;
    if (rc != 0)
        free(u);
    return rc == 0 ? 0 : db_refused(req, rc, "updates");
}

typedef struct {
    int64_t id;
    crest_str_t msg;
} fortune_t;

static int fortune_cmp(const void *a, const void *b) {
    const crest_str_t *x = &((const fortune_t *)a)->msg, *y = &((const fortune_t *)b)->msg;
    int c = memcmp(x->ptr, y->ptr, x->len < y->len ? x->len : y->len);
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static void html_escape(crest_buf_t *b, crest_str_t str) {
    const char *s = str.ptr, *end = str.ptr + str.len, *run = s;
    for (; s < end; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        }
        if (rep) {
            crest_buf_append(b, run, (size_t)(s - run));
            crest_buf_puts(b, rep);
            run = s + 1;
        }
    }
    crest_buf_append(b, run, (size_t)(s - run));
}

static void on_fortunes_done(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    (void)arg;
    if (status != 0) {
        db_fail(req, status, "fortunes");
        return;
    }
    fortune_t rows[64];
    size_t n = 0;
    static const char extra[] = "Additional fortune added at request time.";
    rows[n++] = (fortune_t){0, {extra, sizeof(extra) - 1}};
    /* The text stays valid until this callback returns: the page is rendered before then. */
    for (int r = 0; r < crest_db_rows(q, 0) && n < sizeof(rows) / sizeof(rows[0]); r++)
        rows[n++] = (fortune_t){crest_db_int(q, 0, r, 0), crest_db_text(q, 0, r, 1)};
    qsort(rows, n, sizeof(rows[0]), fortune_cmp);
    char mem[4096];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
                       "<tr><th>id</th><th>message</th></tr>");
    for (size_t i = 0; i < n; i++) {
        crest_buf_printf(&b, "<tr><td>%lld</td><td>", (long long)rows[i].id);
        html_escape(&b, rows[i].msg);
        crest_buf_puts(&b, "</td></tr>");
    }
    crest_buf_puts(&b, "</table></body></html>");
    crest_res_send_buf(req, 200, "text/html; charset=utf-8", &b);
}

static int on_fortunes(crest_req_t *req, void *data) {
    demo_db_t *d = data;
    crest_db_query_t *q = crest_db_query(d->db, 0);
    if (q == NULL)
        return CREST_ENOMEM;
    crest_db_add(q, d->sql.fortunes);
    int rc = crest_db_run(q, req, on_fortunes_done, NULL);
    return rc == 0 ? 0 : db_refused(req, rc, "fortunes");
}

/* ---- /api/todos ---- */

/* The id from the path; -1 when it is not a positive decimal number (answered 404: no todo has
 * such an id). */
static int64_t todo_id(crest_req_t *req) {
    long long v = parse_num(crest_req_param(req, "id"), (1ll << 53));
    return v >= 1 ? v : -1;
}

/* A checked todo body: title (malloc'd, NULL when absent) and done (-1 when absent). */
typedef struct {
    char *title;
    int done;
} todo_in_t;

static void todo_json(crest_buf_t *b, int64_t id, crest_str_t title, int done) {
    crest_buf_printf(b, "{\"id\":%lld,\"title\":", (long long)id);
    crest_buf_json_str(b, title.ptr, title.len);
    crest_buf_puts(b, done ? ",\"done\":true}" : ",\"done\":false}");
}

/* The todo in row 0 of statement i as the answer, or 404 when there is none. */
static void send_todo(crest_req_t *req, int status, crest_db_query_t *q, int i) {
    if (crest_db_rows(q, i) == 0) {
        send_error(req, 404, "no such todo", NULL);
        return;
    }
    char mem[512];
    crest_buf_t b = CREST_BUF_ON(mem);
    todo_json(&b, crest_db_int(q, i, 0, 0), crest_db_text(q, i, 0, 1),
              (int)crest_db_int(q, i, 0, 2));
    crest_res_send_buf(req, status, "application/json", &b);
}

/* A todo body as crest_req_valid() yields it; the two tables below are the whole of its checks
 * (types, presence; a title holding U+0000, raw control characters and bytes that are not UTF-8
 * are refused by the parse). */
typedef struct {
    crest_str_t title;
    int done;
} todo_body_t;

static const crest_field_t todo_fields[] = {
    CREST_FIELD_STR(todo_body_t, title, CREST_REQUIRED, .description = "what to do"),
    CREST_FIELD_BOOL(todo_body_t, done, CREST_REQUIRED), CREST_FIELD_END};
static const crest_field_t todo_patch_fields[] = {CREST_FIELD_STR(todo_body_t, title, 0),
                                                  CREST_FIELD_BOOL(todo_body_t, done, 0),
                                                  CREST_FIELD_END};
static const crest_schema_t demo_todo_in = {.name = "TodoIn", .fields = todo_fields};
static const crest_schema_t demo_todo_patch = {.name = "TodoPatch", .fields = todo_patch_fields};
/* For the OpenAPI document (/openapi.json) only: what the answers hold and the list's query. */
static const crest_field_t todo_out_fields[] = {
    CREST_FIELD("id", CREST_T_INT, CREST_REQUIRED),
    CREST_FIELD("title", CREST_T_STRING, CREST_REQUIRED),
    CREST_FIELD("done", CREST_T_BOOL, CREST_REQUIRED), CREST_FIELD_END};
static const crest_schema_t demo_todo = {.name = "Todo", .fields = todo_out_fields};
static const crest_field_t page_fields[] = {
    CREST_FIELD("limit", CREST_T_INT, CREST_MIN | CREST_MAX, .min = 1, .max = 1000,
                .description = "todos per page (default 100)"),
    CREST_FIELD("after", CREST_T_INT, CREST_MIN, .min = 0,
                .description = "the last id of the previous page"),
    CREST_FIELD_END};
static const crest_schema_t demo_page = {.name = "TodoPage", .fields = page_fields};

/* Parse and check a todo body into t. `partial` (PATCH): fields may be absent. On bad input it
 * answers the request itself (400 or 422, crest_res_error's shape) and sets *answered; returns 0
 * or CREST_ENOMEM. */
static int todo_body(crest_req_t *req, todo_in_t *t, int partial, int *answered) {
    todo_body_t in = {{NULL, 0}, -1}; /* absent fields keep these */
    int rc = crest_req_valid(req, partial ? &demo_todo_patch : &demo_todo_in, &in);
    *answered = rc == CREST_EINVAL;
    if (rc != 0)
        return *answered ? 0 : rc;
    if (in.title.ptr != NULL && (t->title = strdup(in.title.ptr)) == NULL)
        return CREST_ENOMEM;
    t->done = in.done;
    return 0;
}

static void on_todo_written(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    int kind = (int)(intptr_t)arg;
    if (status != 0) {
        db_fail(req, status, "todo");
        return;
    }
    if (kind == 'D') {
        if (crest_db_changes(q, 0) == 0)
            send_error(req, 404, "no such todo", NULL);
        else
            crest_res_send(req, 204, NULL, NULL, 0);
        return;
    }
    if (kind == 'A' && crest_db_rows(q, 0) == 1) {
        char location[48];
        snprintf(location, sizeof(location), "/api/todos/%lld",
                 (long long)crest_db_int(q, 0, 0, 0));
        crest_res_header(req, "Location", location);
    }
    send_todo(req, kind == 'A' ? 201 : 200, q, 0);
}

/* POST ('A'), PUT and PATCH ('S'), DELETE ('D'): one write batch, answered once committed. */
static int todo_write(crest_req_t *req, demo_db_t *d, int kind, int partial) {
    int64_t id = 0;
    if (kind != 'A' && (id = todo_id(req)) < 0)
        return send_error(req, 404, "no such todo", NULL);
    todo_in_t t = {NULL, -1};
    if (kind != 'D') {
        int answered = 0;
        int rc = todo_body(req, &t, partial, &answered);
        if (answered || rc != 0) {
            free(t.title);
            return rc;
        }
    }
    crest_db_query_t *q = crest_db_query(d->db, CREST_DB_WRITE);
    if (q == NULL) {
        free(t.title);
        return CREST_ENOMEM;
    }
    if (kind == 'A') {
        crest_db_add(q, d->sql.todo_add);
        crest_db_arg_text(q, t.title, strlen(t.title));
        crest_db_arg_int(q, t.done);
    } else if (kind == 'S') {
        crest_db_add(q, d->sql.todo_set);
        if (t.title != NULL)
            crest_db_arg_text(q, t.title, strlen(t.title));
        else
            crest_db_arg_null(q);
        if (t.done >= 0)
            crest_db_arg_int(q, t.done);
        else
            crest_db_arg_null(q);
        crest_db_arg_int(q, id);
    } else {
        crest_db_add(q, d->sql.todo_del);
        crest_db_arg_int(q, id);
    }
    free(t.title);
    int rc = crest_db_run(q, req, on_todo_written, (void *)(intptr_t)kind);
    return rc == 0 ? 0 : db_refused(req, rc, "todo");
}

static int on_todo_add(crest_req_t *req, void *data) {
    return todo_write(req, data, 'A', 0);
}

static int on_todo_put(crest_req_t *req, void *data) {
    return todo_write(req, data, 'S', 0);
}

static int on_todo_patch(crest_req_t *req, void *data) {
    return todo_write(req, data, 'S', 1);
}

static int on_todo_del(crest_req_t *req, void *data) {
    return todo_write(req, data, 'D', 0);
}

static void on_todo_read(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    (void)arg;
    if (status != 0)
        db_fail(req, status, "todo");
    else
        send_todo(req, 200, q, 0);
}

static int on_todo_get(crest_req_t *req, void *data) {
    demo_db_t *d = data;
    int64_t id = todo_id(req);
    if (id < 0)
        return send_error(req, 404, "no such todo", NULL);
    crest_db_query_t *q = crest_db_query(d->db, 0);
    if (q == NULL)
        return CREST_ENOMEM;
    crest_db_add(q, d->sql.todo_get);
    crest_db_arg_int(q, id);
    int rc = crest_db_run(q, req, on_todo_read, NULL);
    return rc == 0 ? 0 : db_refused(req, rc, "todo");
}

/* ---- GET /api/todos: pages in slices ----
 *
 * ?limit=N (1..1000, default 100) rows in id order after ?after=ID (default 0), and a
 * `Link: </api/todos?limit=N&after=LAST>; rel="next"` header while rows remain after the page.
 * The first batch fixes the page's end (the id of its limit-th row) and reads the first slice
 * from the same snapshot, so the Link header, sent with the head, and the rows agree; later
 * slices read `id > cursor AND id <= end`, each its own batch: a row written meanwhile appears
 * at most once, in order, and never beyond the page. A page that fits one slice is answered with
 * Content-Length; a longer one is streamed (chunked) slice by slice with backpressure:
 *
 *   batch (rows up to SLICE_BYTES) -> on_list_rows (render) -> list_pump: write the slice
 *     -> output at most half of max_output? next batch : wait for on_list_drain -> list_pump
 *
 * On SQLite a read batch completes before crest_db_run returns, so list_pump loops instead of
 * recursing (l->pumping). Owner of a list_t: the request. Exactly one of these holds it at a
 * time: a batch in flight (its callback always comes), the drain wait (the client leaving calls
 * on_list_abort instead of the drain callback), or list_pump. Whoever finishes the request frees
 * it. */

#define SLICE_BYTES (64 * 1024)
#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define MAX_ID (1ll << 53) /* ids beyond this would not survive a JSON number as a double */

typedef struct {
    demo_db_t *d;
    crest_req_t *req;
    int64_t after;    /* the request's ?after */
    int limit;        /* the request's ?limit */
    int64_t cursor;   /* the last id rendered */
    int64_t end;      /* the page's last id (INT64_MAX while the page reaches the table's end) */
    int remaining;    /* rows the page may still have */
    int slice_rows;   /* rows to ask of the next slice (grows from a cut slice's size) */
    int asked;        /* rows the slice in flight asked for */
    int rows;         /* rows rendered so far */
    int has_next;     /* rows remain after the page: send Link */
    int bounds_known; /* the first batch came back */
    int finished;     /* the closing ']' is in out */
    int started;      /* the response head went out (streamed) */
    int head_only;    /* HEAD: the head is all that is sent */
    int pumping;      /* list_pump is on the stack: a batch that completes at once only says so */
    int came_back;    /* the batch list_pump sent has completed */
    int err;          /* the last batch's error */
    crest_buf_t out;  /* the slice rendered from the last batch, until written */
} list_t;

static void list_free(list_t *l) {
    crest_buf_free(&l->out);
    free(l);
}

/* Send the batch for the next slice (the first one also fixes the page's end). */
static int list_query(list_t *l);

/* The end of the request, whatever state it is in: a started response is ended (it only frees
 * the request if the client has gone), one never started gets 503 (the client left or the app
 * stopped: that too only frees it). */
static void list_finish(list_t *l) {
    if (l->started)
        crest_res_end(l->req);
    else
        crest_res_status(l->req, 503);
    list_free(l);
}

static void on_list_abort(crest_req_t *req, void *arg) {
    (void)req;
    list_finish(arg); /* the drain callback will not come */
}

static void list_pump(list_t *l);

static void on_list_drain(crest_req_t *req, void *arg) {
    crest_req_on_abort(req, NULL, NULL);
    list_pump(arg);
}

enum { EMIT_DONE, EMIT_WAIT, EMIT_NEXT };

/* After a slice was written: EMIT_NEXT when the next one may be read now (the connection's
 * output is at most half of max_output), else wait for the drain callback. */
static int list_wait(list_t *l) {
    if (crest_res_buffered(l->req) <= l->d->low_water)
        return EMIT_NEXT;
    int rc = crest_res_on_drain(l->req, on_list_drain, l);
    if (rc == CREST_EALREADY)
        return EMIT_NEXT;
    if (rc != 0) {
        list_finish(l);
        return EMIT_DONE;
    }
    crest_req_on_abort(l->req, on_list_abort, l);
    return EMIT_WAIT;
}

/* Send what the last batch produced (loop thread). */
static int list_emit(list_t *l) {
    crest_req_t *req = l->req;
    int rc;
    if (l->err == CREST_ECANCELED) {
        list_finish(l);
        return EMIT_DONE;
    }
    if (l->err) {
        if (!l->started) {
            db_fail(req, l->err, "list");
            list_free(l);
            return EMIT_DONE;
        }
        /* The head is out and cannot say so any more: cut the answer short (the chunked body
         * never ends), so that the client sees an error rather than a cut list for the page. */
        crest_res_abort(req);
        list_free(l);
        return EMIT_DONE;
    }
    if (!l->started) {
        if (l->has_next) {
            char link[96];
            snprintf(link, sizeof(link), "</api/todos?limit=%d&after=%lld>; rel=\"next\"", l->limit,
                     (long long)l->end);
            crest_res_header(req, "Link", link);
        }
        if (l->finished) {
            crest_res_send_buf(req, 200, "application/json", &l->out);
            list_free(l);
            return EMIT_DONE;
        }
        if ((rc = crest_res_start(req, 200, "application/json")) != 0) {
            list_finish(l); /* not started: frees the request */
            return EMIT_DONE;
        }
        l->started = 1;
        if (l->head_only) {
            list_finish(l);
            return EMIT_DONE;
        }
    }
    if (l->out.len > 0) {
        rc = crest_res_write(req, l->out.ptr, l->out.len);
        if (rc == CREST_ENOBUFS)
            return list_wait(l); /* over the process's buffer budget: keep the slice, retry */
        crest_buf_free(&l->out);
        if (rc != 0) {
            list_finish(l);
            return EMIT_DONE;
        }
    }
    if (l->finished) {
        list_finish(l);
        return EMIT_DONE;
    }
    return list_wait(l);
}

/* Write the slice in hand, then read and write more while the output allows (loop thread). */
static void list_pump(list_t *l) {
    for (;;) {
        if (list_emit(l) != EMIT_NEXT)
            return;
        l->pumping = 1;
        l->came_back = 0;
        int rc = list_query(l);
        l->pumping = 0;
        if (rc != 0)
            l->err = rc; /* not sent: emit the error */
        else if (!l->came_back)
            return; /* on_list_rows will call list_pump */
    }
}

static void on_list_rows(crest_req_t *req, int status, crest_db_query_t *q, void *arg) {
    (void)req;
    list_t *l = arg;
    int i = 0; /* the slice's statement */
    l->err = status;
    if (status == 0 && !l->bounds_known) {
        l->end = INT64_MAX;
        if (crest_db_rows(q, 0) >= 1)
            l->end = crest_db_int(q, 0, 0, 0);
        l->has_next = crest_db_rows(q, 0) == 2;
        l->bounds_known = 1;
        crest_buf_puts(&l->out, "[");
        i = 1;
    }
    if (status == 0) {
        int n = crest_db_rows(q, i);
        for (int r = 0; r < n; r++) {
            if (l->rows++)
                crest_buf_puts(&l->out, ",");
            l->cursor = crest_db_int(q, i, r, 0);
            todo_json(&l->out, l->cursor, crest_db_text(q, i, r, 1), (int)crest_db_int(q, i, r, 2));
        }
        l->remaining -= n;
        int cut = crest_db_cut(q, i);
        /* Rows asked next time: twice what fitted this time when the slice was cut (so that few
         * rows are read past the cut and dropped), else as many as remain. */
        l->slice_rows = cut ? 2 * (n > 0 ? n : 1) : l->remaining;
        /* Over when the page is full, or when a slice that was not cut brought fewer rows than
         * asked: nothing is left up to the page's end. */
        if (l->remaining <= 0 || (!cut && n < l->asked)) {
            crest_buf_puts(&l->out, "]");
            l->finished = 1;
        }
        if (l->out.err)
            l->err = l->out.err;
    }
    if (l->pumping)
        l->came_back = 1;
    else
        list_pump(l);
}

static int list_query(list_t *l) {
    demo_sql_t *s = &l->d->sql;
    crest_db_query_t *q = crest_db_query(l->d->db, l->bounds_known ? 0 : CREST_DB_SNAPSHOT);
    if (q == NULL)
        return CREST_ENOMEM;
    int64_t end = l->end;
    if (!l->bounds_known) {
        crest_db_add(q, s->todo_page_end);
        crest_db_arg_int(q, l->after);
        crest_db_arg_int(q, l->limit - 1);
        /* Same snapshot: the first `limit` rows after `after` end exactly at the page's end. */
        end = INT64_MAX;
    }
    int ask = l->slice_rows < l->remaining ? l->slice_rows : l->remaining;
    l->asked = ask > 0 ? ask : 1;
    crest_db_add(q, s->todo_slice);
    crest_db_arg_int(q, l->cursor);
    crest_db_arg_int(q, end);
    crest_db_arg_int(q, l->asked);
    crest_db_limit_bytes(q, SLICE_BYTES);
    return crest_db_run(q, l->req, on_list_rows, l);
}

static int on_todo_list(crest_req_t *req, void *data) {
    long long limit = PAGE_DEFAULT, after = 0;
    crest_str_t v = crest_req_query_param(req, "limit");
    if (v.ptr != NULL && (limit = parse_num(v, PAGE_MAX)) < 1)
        return send_error(req, 400, "limit must be a whole number from 1 to 1000", "limit");
    v = crest_req_query_param(req, "after");
    if (v.ptr != NULL && (after = parse_num(v, MAX_ID)) < 0)
        return send_error(req, 400,
                          "after must be a whole number from 0 to 2^53 (the last id of the "
                          "previous page)",
                          "after");
    list_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CREST_ENOMEM;
    l->d = data;
    l->req = req;
    l->limit = (int)limit;
    l->after = after;
    l->cursor = after;
    l->remaining = (int)limit;
    l->slice_rows = (int)limit;
    l->head_only = crest_req_method(req) == CREST_METHOD_HEAD;
    l->out = (crest_buf_t)CREST_BUF_INIT;
    /* The batch may complete (and the request be answered) before crest_db_run returns. */
    int rc = list_query(l);
    if (rc == 0)
        return 0;
    list_free(l);
    return db_refused(req, rc, "list");
}

/* ---- /work/hash on the worker pool ---- */

/* Owner: the handler that submits it, then the pool, then on_hash_done, which frees it. The
 * worker fills out; the loop thread reads it only after the job came back. */
typedef struct {
    long rounds;
    char salt[65];
    size_t body_len;
    char *body; /* a copy of the request body */
    int status;
    crest_buf_t out;
} job_t;

static void job_free(job_t *j) {
    crest_buf_free(&j->out);
    free(j->body);
    free(j);
}

static void run_hash(void *arg) {
    job_t *j = arg;
    unsigned char dk[32];
    if (PKCS5_PBKDF2_HMAC(j->body ? j->body : "", (int)j->body_len, (const unsigned char *)j->salt,
                          (int)strlen(j->salt), (int)j->rounds, EVP_sha256(), sizeof(dk),
                          dk) != 1) {
        j->status = 500;
        crest_buf_puts(&j->out, "{\"error\":\"hash: out of memory\"}");
        return;
    }
    char hex[2 * sizeof(dk) + 1];
    for (size_t i = 0; i < sizeof(dk); i++)
        snprintf(hex + 2 * i, 3, "%02x", dk[i]);
    crest_buf_printf(&j->out,
                     "{\"algorithm\":\"PBKDF2-HMAC-SHA256\",\"rounds\":%ld,\"salt\":", j->rounds);
    crest_buf_json_str(&j->out, j->salt, strlen(j->salt));
    crest_buf_printf(&j->out, ",\"length\":%zu,\"digest\":\"%s\"}", sizeof(dk), hex);
    j->status = 200;
}

static void on_hash_done(crest_req_t *req, int status, void *arg) {
    job_t *j = arg;
    if (status != 0 || j->status == 0)
        crest_res_status(req, 503); /* the client left or the app stopped: only frees req */
    else
        crest_res_send_buf(req, j->status, "application/json", &j->out);
    job_free(j);
}

/* POST /work/hash?rounds=N[&salt=S]: PBKDF2-HMAC-SHA256 of the body, 32-byte key, hex.
 * rounds: default 1000, 1..--max-hash-rounds, else 400. salt: default "crest-work-hash", at most
 * 64 printable ASCII bytes, taken as sent (not percent-decoded). */
static int on_hash(crest_req_t *req, void *data) {
    demo_db_t *d = data;
    long rounds = 1000;
    crest_str_t r = crest_req_query_param(req, "rounds");
    if (r.ptr != NULL) {
        long long v = parse_num(r, d->max_rounds);
        if (v < 1) {
            char msg[96];
            snprintf(msg, sizeof(msg), "rounds must be a whole number from 1 to %ld",
                     d->max_rounds);
            return send_error(req, 400, msg, "rounds");
        }
        rounds = (long)v;
    }
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CREST_ENOMEM;
    j->out = (crest_buf_t)CREST_BUF_INIT;
    j->rounds = rounds;
    strcpy(j->salt, "crest-work-hash");
    crest_str_t s = crest_req_query_param(req, "salt");
    if (s.ptr != NULL) {
        int ok = s.len >= 1 && s.len < sizeof(j->salt);
        for (size_t i = 0; ok && i < s.len; i++)
            ok = s.ptr[i] > 0x20 && s.ptr[i] < 0x7f;
        if (!ok) {
            job_free(j);
            return send_error(req, 400, "salt must be 1 to 64 printable ASCII bytes", "salt");
        }
        memcpy(j->salt, s.ptr, s.len);
        j->salt[s.len] = '\0';
    }
    /* The body is a view into the connection's buffer, valid only during this call. */
    crest_str_t body = crest_req_body(req);
    if (body.len > 0) {
        if ((j->body = malloc(body.len)) == NULL) {
            job_free(j);
            return CREST_ENOMEM;
        }
        memcpy(j->body, body.ptr, body.len);
        j->body_len = body.len;
    }
    int rc = crest_work_submit(req, run_hash, on_hash_done, j);
    if (rc == 0)
        return 0;
    job_free(j);
    return rc == CREST_EAGAIN ? crest_work_busy(req) : rc;
}

/* ---- set-up ---- */

/* Until the database is open, its routes answer 503 (it comes within milliseconds, so a client
 * retrying after a second finds it). */
static int on_gate(crest_req_t *req, void *data) {
    const gate_t *g = data;
    if (!atomic_load_explicit(&g->d->ready, memory_order_acquire)) {
        crest_res_header(req, "Retry-After", "1");
        send_error(req, 503, "the database is opening", NULL);
        return 0;
    }
    return g->cb(req, g->d);
}

int demo_db_routes(crest_app_t *app, const cli_opts_t *opts, demo_db_t **out) {
    *out = NULL;
    crest_work_opts_t wo;
    crest_work_opts_default(&wo);
    wo.workers = opts->workers;
    wo.max_queue = opts->work_queue;
    int rc = crest_app_workers(app, &wo);
    if (rc != 0) {
        fprintf(stderr, "crest: cannot start the worker pool: %s\n", crest_strerror(rc));
        return 1;
    }
    demo_db_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        fprintf(stderr, "crest: out of memory\n");
        return 1;
    }
    d->max_rounds = opts->max_hash_rounds;
    d->low_water = opts->app.max_output / 2;
    d->app = app;
    d->opts = opts;
    struct {
        const char *method, *path;
        crest_handler_cb cb;
        crest_route_doc_t doc; /* the OpenAPI document's (/openapi.json) */
    } routes[DB_ROUTES] = {
        {"GET", "/db", on_db, {.summary = "One random World row (TechEmpower)"}},
        {"GET", "/queries", on_queries, {.summary = "N random World rows (TechEmpower)"}},
        {"GET", "/updates", on_updates, {.summary = "N World rows updated (TechEmpower)"}},
        {"GET", "/fortunes", on_fortunes, {.summary = "The fortunes page (TechEmpower)"}},
        {"GET",
         "/api/todos",
         on_todo_list,
         {.summary = "A page of todos", .query = &demo_page, .response = &demo_todo}},
        {"POST",
         "/api/todos",
         on_todo_add,
         {.summary = "Add a todo", .body = &demo_todo_in, .response = &demo_todo, .status = 201}},
        {"GET", "/api/todos/:id", on_todo_get, {.summary = "A todo", .response = &demo_todo}},
        {"PUT",
         "/api/todos/:id",
         on_todo_put,
         {.summary = "Replace a todo", .body = &demo_todo_in, .response = &demo_todo}},
        {"PATCH",
         "/api/todos/:id",
         on_todo_patch,
         {.summary = "Change a todo", .body = &demo_todo_patch, .response = &demo_todo}},
        {"DELETE", "/api/todos/:id", on_todo_del, {.summary = "Delete a todo", .status = 204}},
    };
    for (size_t i = 0; i < DB_ROUTES; i++) {
        d->gates[i] = (gate_t){d, routes[i].cb};
        rc = crest_app_route_doc(app, routes[i].method, routes[i].path, on_gate, &d->gates[i],
                                 &routes[i].doc);
        if (rc != 0) {
            fprintf(stderr, "crest: route %s %s: %s\n", routes[i].method, routes[i].path,
                    crest_strerror(rc));
            demo_db_free(d);
            return 1;
        }
    }
    rc = crest_app_route(app, "POST", "/work/hash", on_hash, d);
    crest_openapi_info_t info = {.title = "crest demo", .version = crest_version()};
    rc = rc ? rc : crest_app_serve_openapi(app, "/openapi.json", &info);
    if (rc != 0) {
        fprintf(stderr, "crest: route POST /work/hash or /openapi.json: %s\n", crest_strerror(rc));
        demo_db_free(d);
        return 1;
    }
    *out = d;
    return 0;
}

/* Open, declare and seed; 0, or 1 after a one-line error on stderr. */
static int db_open(demo_db_t *d) {
    const cli_opts_t *opts = d->opts;
    int rc = crest_db_open(opts->db_url, &opts->db, &d->db);
    if (rc != 0) {
        fprintf(stderr, "crest: database %s: %s%s%s\n", opts->db_url, crest_strerror(rc),
                d->db && *crest_db_last_error(d->db) ? ": " : "",
                d->db ? crest_db_last_error(d->db) : "");
        return 1;
    }
    struct {
        const char *sql;
        crest_db_sql_t **st;
    } sqls[] = {
        {SQL_WORLD_GET, &d->sql.world_get},   {SQL_WORLD_SET, &d->sql.world_set},
        {SQL_FORTUNES, &d->sql.fortunes},     {SQL_TODO_PAGE_END, &d->sql.todo_page_end},
        {SQL_TODO_SLICE, &d->sql.todo_slice}, {SQL_TODO_GET, &d->sql.todo_get},
        {SQL_TODO_ADD, &d->sql.todo_add},     {SQL_TODO_SET, &d->sql.todo_set},
        {SQL_TODO_DEL, &d->sql.todo_del},
    };
    for (size_t i = 0; i < sizeof(sqls) / sizeof(sqls[0]) && rc == 0; i++)
        rc = crest_db_statement(d->db, sqls[i].sql, sqls[i].st);
    if (rc == 0)
        rc = seed(d->db);
    if (rc != 0) {
        fprintf(stderr, "crest: database %s: %s%s%s\n", opts->db_url, crest_strerror(rc),
                *crest_db_last_error(d->db) ? ": " : "", crest_db_last_error(d->db));
        return 1;
    }
    return 0;
}

static void *opener_main(void *arg) {
    demo_db_t *d = arg;
    if (db_open(d) != 0) {
        d->failed = 1;
        crest_app_stop(d->app);
        return NULL;
    }
    atomic_store_explicit(&d->ready, 1, memory_order_release);
    if (d->on_ready)
        d->on_ready(d->on_ready_arg);
    return NULL;
}

int demo_db_open_start(demo_db_t *d, void (*on_ready)(void *arg), void *arg) {
    d->on_ready = on_ready;
    d->on_ready_arg = arg;
    /* The thread inherits the caller's signal mask: crest_app_listen() blocked SIGINT and SIGTERM
     * there, so the signal thread alone takes them. */
    int rc = pthread_create(&d->opener, NULL, opener_main, d);
    if (rc != 0) {
        fprintf(stderr, "crest: cannot start a thread: %s\n", strerror(rc));
        return 1;
    }
    d->opener_started = 1;
    return 0;
}

int demo_db_open_wait(demo_db_t *d) {
    if (d->opener_started) {
        pthread_join(d->opener, NULL);
        d->opener_started = 0;
    }
    return d->failed;
}

void demo_db_free(demo_db_t *d) {
    if (d == NULL)
        return;
    demo_db_open_wait(d);
    crest_db_close(d->db);
    free(d);
}
