/* The demo app's database and CPU-work routes (CONTRACT.md), written only against crest.h, with
 * cJSON for request bodies (picked by bench/json_pick.sh: about 4x faster than jansson and json-c
 * at parsing and checking a todo body).
 *
 * Where each query runs, and why:
 * - loop thread: /db, /queries, /fortunes and GET /api/todos/{id}. They are reads of one row by
 *   primary key (or the 12-row Fortune table): a few microseconds each from a per-thread
 *   connection and a cached statement; 500 of them (the /queries cap) stay around a millisecond.
 *   Handing them to another thread would cost more than running them. WAL mode means they never
 *   wait for a writer.
 * - worker pool: everything that commits (/updates, POST, PUT, PATCH, DELETE): a commit at
 *   synchronous=FULL waits for an fsync, a millisecond to far more on a busy disk, and a write
 *   may wait for the single write lock behind other writers; either would stall every
 *   connection of the loop.
 * - worker pool, one slice at a time: GET /api/todos. A page has at most 1000 rows, but a row
 *   can hold a title of max_body bytes, so a page is never rendered whole: each job reads rows
 *   until it has about SLICE_BYTES of JSON (at least one row), the loop thread writes that and
 *   asks for the next slice only once the connection's output is down to half of max_output
 *   (crest_res_buffered; crest_res_on_drain to wait for it). A slow reader then holds that plus
 *   one slice, not the page (see "GET /api/todos" below). When the pool's queue is full a slice
 * runs on the loop thread instead: its cost is bounded the same way.
 * - worker pool: POST /work/hash, PBKDF2 with up to --max-hash-rounds iterations. */
#include <cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo_db.h"
#include "jsonscan.h"

struct demo_db_s {
    crest_db_t *db;
    long max_rounds;
    size_t low_water; /* a streamed list reads its next slice while its output is at most this */
};

/* ---- SQL (string literals: crest_db_prepare caches statements by address) ---- */

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
static const char SQL_TODO_ADD[] = "INSERT INTO todo (title, done) VALUES (?, ?)";
/* PUT and PATCH share one statement: a NULL parameter keeps the stored value. */
static const char SQL_TODO_SET[] = "UPDATE todo SET title = coalesce(?1, title), done = "
                                   "coalesce(?2, done) WHERE id = ?3 RETURNING id, title, done";
static const char SQL_TODO_DEL[] = "DELETE FROM todo WHERE id = ?";

/* The TechEmpower tables and the REST API's table. AUTOINCREMENT so that the id of a deleted
 * todo is never handed out again (a client holding its URL must keep getting 404). */
static const char SQL_SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS World (id INTEGER PRIMARY KEY, randomNumber INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS Fortune (id INTEGER PRIMARY KEY, message TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS todo (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL,"
    " done INTEGER NOT NULL);";

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

#define WORLD_ROWS 10000
#define MAX_QUERIES 500

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

static int seed(crest_db_t *db) {
    int rc = crest_db_exec(db, SQL_SCHEMA);
    if (rc != 0)
        return rc;
    crest_db_stmt_t *st;
    static const char count_sql[] = "SELECT (SELECT count(*) FROM World), (SELECT count(*) FROM "
                                    "Fortune)";
    if ((rc = crest_db_prepare(db, count_sql, &st)) != 0)
        return rc;
    if ((rc = crest_db_step(st)) != CREST_DB_ROW)
        return rc < 0 ? rc : CREST_EINVAL;
    int64_t worlds = crest_db_col_int(st, 0), nfort = crest_db_col_int(st, 1);
    crest_db_reset(st);
    if (worlds > 0 && nfort > 0)
        return 0;
    /* One transaction: 10,000 commits would be 10,000 fsyncs. */
    if ((rc = crest_db_exec(db, "BEGIN IMMEDIATE")) != 0)
        return rc;
    static const char world_add[] = "INSERT OR REPLACE INTO World (id, randomNumber) VALUES (?, ?)";
    static const char fortune_add[] = "INSERT OR REPLACE INTO Fortune (id, message) VALUES (?, ?)";
    for (int id = 1; id <= WORLD_ROWS && rc == 0; id++) {
        if ((rc = crest_db_prepare(db, world_add, &st)) != 0)
            break;
        crest_db_bind_int(st, 1, id);
        crest_db_bind_int(st, 2, random_id());
        rc = crest_db_step(st) == CREST_DB_DONE ? 0 : CREST_EINVAL;
        crest_db_reset(st);
    }
    for (size_t i = 0; i < sizeof(fortunes) / sizeof(fortunes[0]) && rc == 0; i++) {
        if ((rc = crest_db_prepare(db, fortune_add, &st)) != 0)
            break;
        crest_db_bind_int(st, 1, (int64_t)i + 1);
        crest_db_bind_text(st, 2, fortunes[i], strlen(fortunes[i]));
        rc = crest_db_step(st) == CREST_DB_DONE ? 0 : CREST_EINVAL;
        crest_db_reset(st);
    }
    if (rc != 0) {
        crest_db_exec(db, "ROLLBACK");
        return rc;
    }
    return crest_db_exec(db, "COMMIT");
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

static int world_get(crest_db_t *db, int id, int *number) {
    crest_db_stmt_t *st;
    int rc = crest_db_prepare(db, SQL_WORLD_GET, &st);
    if (rc != 0)
        return rc;
    crest_db_bind_int(st, 1, id);
    rc = crest_db_step(st);
    if (rc == CREST_DB_ROW) {
        *number = (int)crest_db_col_int(st, 1);
        rc = 0;
    } else if (rc == CREST_DB_DONE) {
        rc = CREST_ENOENT;
    }
    crest_db_reset(st);
    return rc;
}

/* ---- worker-pool jobs ---- */

enum job_kind { JOB_UPDATES, JOB_TODO_ADD, JOB_TODO_SET, JOB_TODO_DEL, JOB_HASH };

/* Owner: the handler that submits it, then the pool, then on_job_done, which frees it. The worker
 * fills status/out/location; the loop thread only reads them after the job came back. */
typedef struct {
    enum job_kind kind;
    demo_db_t *d;
    int count;        /* /updates */
    int64_t id;       /* todos */
    char *title;      /* malloc'd or NULL (PATCH without title) */
    int done;         /* -1: unchanged (PATCH) */
    long rounds;      /* hash */
    char salt[65];    /* hash */
    size_t body_len;  /* hash */
    char *body;       /* hash: copy of the request body */
    int status;       /* HTTP status to answer */
    const char *type; /* its content type */
    char location[48];
    crest_buf_t out;
} job_t;

static void job_free(job_t *j) {
    crest_buf_free(&j->out);
    free(j->title);
    free(j->body);
    free(j);
}

static void job_fail(job_t *j, int rc, const char *what) {
    crest_buf_free(&j->out);
    /* A lock still held after the busy timeout is overload, not a bug: ask to retry. */
    j->status = rc == CREST_EBUSY ? 503 : 500;
    j->type = "application/json";
    crest_buf_printf(&j->out, "{\"error\":\"%s: %s\"}", what, crest_strerror(rc));
}

static void todo_json(crest_buf_t *b, int64_t id, crest_str_t title, int done) {
    crest_buf_printf(b, "{\"id\":%lld,\"title\":", (long long)id);
    crest_buf_json_str(b, title.ptr, title.len);
    crest_buf_puts(b, done ? ",\"done\":true}" : ",\"done\":false}");
}

static void run_updates(job_t *j) {
    crest_db_t *db = j->d->db;
    int ids[MAX_QUERIES], nums[MAX_QUERIES];
    /* BEGIN IMMEDIATE takes the write lock first (see src/db/sqlite.c): reading under a deferred
     * transaction and then writing could fail with SQLITE_BUSY without waiting. One transaction
     * for all rows: one fsync per request instead of one per row. */
    int rc = crest_db_exec(db, "BEGIN IMMEDIATE");
    for (int i = 0; i < j->count && rc == 0; i++) {
        ids[i] = random_id();
        rc = world_get(db, ids[i], &nums[i]);
        nums[i] = random_id();
    }
    for (int i = 0; i < j->count && rc == 0; i++) {
        crest_db_stmt_t *st;
        if ((rc = crest_db_prepare(db, SQL_WORLD_SET, &st)) != 0)
            break;
        crest_db_bind_int(st, 1, nums[i]);
        crest_db_bind_int(st, 2, ids[i]);
        rc = crest_db_step(st);
        crest_db_reset(st);
    }
    if (rc == 0)
        rc = crest_db_exec(db, "COMMIT");
    if (rc != 0) {
        crest_db_exec(db, "ROLLBACK");
        job_fail(j, rc, "update");
        return;
    }
    crest_buf_puts(&j->out, "[");
    for (int i = 0; i < j->count; i++)
        crest_buf_printf(&j->out, "%s{\"id\":%d,\"randomNumber\":%d}", i ? "," : "", ids[i],
                         nums[i]);
    crest_buf_puts(&j->out, "]");
    j->status = 200;
}

static void run_todo_add(job_t *j) {
    crest_db_stmt_t *st;
    int rc = crest_db_prepare(j->d->db, SQL_TODO_ADD, &st);
    if (rc == 0) {
        crest_db_bind_text(st, 1, j->title, strlen(j->title));
        crest_db_bind_int(st, 2, j->done);
        /* Autocommit: when step returns DONE the row is committed (and fsynced at FULL), so the
         * 201 sent after this is durable. */
        rc = crest_db_step(st);
        crest_db_reset(st);
    }
    if (rc < 0) {
        job_fail(j, rc, "insert");
        return;
    }
    int64_t id = crest_db_last_insert_id(j->d->db);
    snprintf(j->location, sizeof(j->location), "/api/todos/%lld", (long long)id);
    todo_json(&j->out, id, (crest_str_t){j->title, strlen(j->title)}, j->done);
    j->status = 201;
}

static void run_todo_set(job_t *j) {
    crest_db_stmt_t *st;
    int rc = crest_db_prepare(j->d->db, SQL_TODO_SET, &st);
    if (rc != 0) {
        job_fail(j, rc, "update");
        return;
    }
    if (j->title)
        crest_db_bind_text(st, 1, j->title, strlen(j->title));
    if (j->done >= 0)
        crest_db_bind_int(st, 2, j->done);
    crest_db_bind_int(st, 3, j->id);
    rc = crest_db_step(st);
    if (rc == CREST_DB_ROW) {
        todo_json(&j->out, crest_db_col_int(st, 0), crest_db_col_text(st, 1),
                  (int)crest_db_col_int(st, 2));
        /* RETURNING hands out the row before the statement ends; the autocommit happens when it
         * runs to DONE, which must come before the answer. */
        rc = crest_db_step(st);
        j->status = 200;
    } else if (rc == CREST_DB_DONE) {
        j->status = 404;
    }
    crest_db_reset(st);
    if (rc < 0) {
        job_fail(j, rc, "update");
        return;
    }
    if (j->status == 404) {
        crest_buf_puts(&j->out, "{\"error\":\"no such todo\"}");
    }
}

static void run_todo_del(job_t *j) {
    crest_db_stmt_t *st;
    int rc = crest_db_prepare(j->d->db, SQL_TODO_DEL, &st);
    if (rc == 0) {
        crest_db_bind_int(st, 1, j->id);
        rc = crest_db_step(st);
        crest_db_reset(st);
    }
    if (rc < 0) {
        job_fail(j, rc, "delete");
        return;
    }
    if (crest_db_changes(j->d->db) == 0) {
        j->status = 404;
        crest_buf_puts(&j->out, "{\"error\":\"no such todo\"}");
    } else {
        j->status = 204;
    }
}

static void run_hash(job_t *j) {
    unsigned char dk[32];
    if (PKCS5_PBKDF2_HMAC(j->body ? j->body : "", (int)j->body_len, (const unsigned char *)j->salt,
                          (int)strlen(j->salt), (int)j->rounds, EVP_sha256(), sizeof(dk),
                          dk) != 1) {
        job_fail(j, CREST_ENOMEM, "hash");
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

static void on_job(void *arg) {
    job_t *j = arg;
    j->type = "application/json";
    switch (j->kind) {
    case JOB_UPDATES:
        run_updates(j);
        break;
    case JOB_TODO_ADD:
        run_todo_add(j);
        break;
    case JOB_TODO_SET:
        run_todo_set(j);
        break;
    case JOB_TODO_DEL:
        run_todo_del(j);
        break;
    case JOB_HASH:
        run_hash(j);
        break;
    }
}

static void on_job_done(crest_req_t *req, int status, void *arg) {
    job_t *j = arg;
    if (status != 0 || j->status == 0) {
        /* The client left or the app stopped: this only frees the request. */
        crest_res_status(req, 503);
    } else if (j->status == 204) {
        crest_res_send(req, 204, NULL, NULL, 0);
    } else {
        if (j->location[0])
            crest_res_header(req, "Location", j->location);
        crest_res_send_buf(req, j->status, j->type, &j->out);
    }
    job_free(j);
}

static job_t *job_new(demo_db_t *d, enum job_kind kind) {
    job_t *j = calloc(1, sizeof(*j));
    if (j != NULL) {
        j->d = d;
        j->kind = kind;
        j->done = -1;
        j->out = (crest_buf_t)CREST_BUF_INIT;
    }
    return j;
}

static int submit(crest_req_t *req, job_t *j) {
    int rc = crest_work_submit(req, on_job, on_job_done, j);
    if (rc == 0)
        return 0;
    job_free(j);
    if (rc == CREST_EAGAIN)
        return crest_work_busy(req);
    return rc;
}

/* ---- TechEmpower ---- */

static int on_db(crest_req_t *req, void *data) {
    demo_db_t *d = data;
    int id = random_id(), num;
    int rc = world_get(d->db, id, &num);
    if (rc != 0)
        return rc;
    char mem[64];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_printf(&b, "{\"id\":%d,\"randomNumber\":%d}", id, num);
    return crest_res_send_buf(req, 200, "application/json", &b);
}

static int on_queries(crest_req_t *req, void *data) {
    demo_db_t *d = data;
    int n = queries_param(req);
    char mem[4096];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "[");
    for (int i = 0; i < n; i++) {
        int id = random_id(), num;
        int rc = world_get(d->db, id, &num);
        if (rc != 0) {
            crest_buf_free(&b);
            return rc;
        }
        crest_buf_printf(&b, "%s{\"id\":%d,\"randomNumber\":%d}", i ? "," : "", id, num);
    }
    crest_buf_puts(&b, "]");
    return crest_res_send_buf(req, 200, "application/json", &b);
}

static int on_updates(crest_req_t *req, void *data) {
    job_t *j = job_new(data, JOB_UPDATES);
    if (j == NULL)
        return CREST_ENOMEM;
    j->count = queries_param(req);
    return submit(req, j);
}

typedef struct {
    int64_t id;
    char *msg;
} fortune_t;

static int fortune_cmp(const void *a, const void *b) {
    return strcmp(((const fortune_t *)a)->msg, ((const fortune_t *)b)->msg);
}

static void html_escape(crest_buf_t *b, const char *s) {
    const char *run = s;
    for (; *s; s++) {
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

static int on_fortunes(crest_req_t *req, void *data) {
    demo_db_t *d = data;
    crest_db_stmt_t *st;
    int rc = crest_db_prepare(d->db, SQL_FORTUNES, &st);
    if (rc != 0)
        return rc;
    fortune_t rows[64];
    size_t n = 0;
    static char extra[] = "Additional fortune added at request time.";
    rows[n++] = (fortune_t){0, extra};
    /* Text columns die at the next step: copy them into the request's memory. */
    while ((rc = crest_db_step(st)) == CREST_DB_ROW && n < sizeof(rows) / sizeof(rows[0])) {
        crest_str_t m = crest_req_keep(req, crest_db_col_text(st, 1));
        if (m.ptr == NULL) {
            rc = CREST_ENOMEM;
            break;
        }
        rows[n++] = (fortune_t){crest_db_col_int(st, 0), (char *)m.ptr};
    }
    crest_db_reset(st);
    if (rc < 0)
        return rc;
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
    return crest_res_send_buf(req, 200, "text/html; charset=utf-8", &b);
}

/* ---- /api/todos ---- */

/* The id from the path; -1 when it is not a positive decimal number (answered 404: no todo has
 * such an id). */
static int64_t todo_id(crest_req_t *req) {
    long long v = parse_num(crest_req_param(req, "id"), (1ll << 53));
    return v >= 1 ? v : -1;
}

/* Parse and check a todo body into j. `partial` (PATCH): fields may be absent. Answers the
 * request itself on bad input and returns 1 then; 0 when j is filled. */
static int todo_body(crest_req_t *req, job_t *j, int partial, int *answered) {
    crest_str_t body = crest_req_body(req);
    /* What cJSON would let through (jsonscan.h): raw control characters and bytes that are not
     * UTF-8 make the text malformed; a string holding U+0000 would be cut short, so it is
     * refused below, once the body is known to be an object, naming its member. */
    jsonscan_t scan;
    int verdict = jsonscan(&scan, body.ptr, body.len);
    *answered = 1;
    if (verdict == JSONSCAN_CONTROL)
        return send_error(req, 400,
                          "malformed JSON: control characters must be escaped in strings and "
                          "only space, tab, CR and LF may separate tokens",
                          NULL);
    if (verdict == JSONSCAN_BAD_UTF8)
        return send_error(req, 400, "malformed JSON: the body is not valid UTF-8", NULL);
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(body.ptr ? body.ptr : "", body.len, &end, 0);
    int rc = 0;
    /* cJSON stops at the end of the first value; anything after it but whitespace is malformed. */
    if (v != NULL) {
        const char *stop = body.ptr + body.len;
        while (end < stop && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
            end++;
        if (end != stop) {
            cJSON_Delete(v);
            v = NULL;
        }
    }
    if (v == NULL)
        return send_error(req, 400, "malformed JSON", NULL);
    if (!cJSON_IsObject(v)) {
        rc = send_error(req, 422, "the body must be a JSON object", NULL);
        goto out;
    }
    if (verdict == JSONSCAN_NUL) {
        rc = send_error(req, 422, "strings must not contain U+0000", scan.field);
        goto out;
    }
    cJSON *title = cJSON_GetObjectItemCaseSensitive(v, "title");
    cJSON *done = cJSON_GetObjectItemCaseSensitive(v, "done");
    if (title == NULL && !partial) {
        rc = send_error(req, 422, "missing field", "title");
        goto out;
    }
    if (title != NULL && !cJSON_IsString(title)) {
        rc = send_error(req, 422, "must be a string", "title");
        goto out;
    }
    if (done == NULL && !partial) {
        rc = send_error(req, 422, "missing field", "done");
        goto out;
    }
    if (done != NULL && !cJSON_IsBool(done)) {
        rc = send_error(req, 422, "must be a boolean", "done");
        goto out;
    }
    if (title != NULL && (j->title = strdup(title->valuestring)) == NULL) {
        rc = CREST_ENOMEM;
        *answered = 0;
        goto out;
    }
    j->done = done == NULL ? -1 : cJSON_IsTrue(done);
    *answered = 0;
out:
    cJSON_Delete(v);
    return rc;
}

static int todo_write(crest_req_t *req, demo_db_t *d, enum job_kind kind, int need_id,
                      int partial) {
    job_t *j = job_new(d, kind);
    if (j == NULL)
        return CREST_ENOMEM;
    if (need_id && (j->id = todo_id(req)) < 0) {
        job_free(j);
        return send_error(req, 404, "no such todo", NULL);
    }
    if (kind != JOB_TODO_DEL) {
        int answered;
        int rc = todo_body(req, j, partial, &answered);
        if (answered || rc != 0) {
            job_free(j);
            return rc;
        }
    }
    return submit(req, j);
}

static int on_todo_add(crest_req_t *req, void *data) {
    return todo_write(req, data, JOB_TODO_ADD, 0, 0);
}

static int on_todo_put(crest_req_t *req, void *data) {
    return todo_write(req, data, JOB_TODO_SET, 1, 0);
}

static int on_todo_patch(crest_req_t *req, void *data) {
    return todo_write(req, data, JOB_TODO_SET, 1, 1);
}

static int on_todo_del(crest_req_t *req, void *data) {
    return todo_write(req, data, JOB_TODO_DEL, 1, 0);
}

static int on_todo_get(crest_req_t *req, void *data) {
    demo_db_t *d = data;
    int64_t id = todo_id(req);
    if (id < 0)
        return send_error(req, 404, "no such todo", NULL);
    crest_db_stmt_t *st;
    int rc = crest_db_prepare(d->db, SQL_TODO_GET, &st);
    if (rc != 0)
        return rc;
    crest_db_bind_int(st, 1, id);
    rc = crest_db_step(st);
    if (rc != CREST_DB_ROW) {
        crest_db_reset(st);
        return rc < 0 ? rc : send_error(req, 404, "no such todo", NULL);
    }
    char mem[512];
    crest_buf_t b = CREST_BUF_ON(mem);
    todo_json(&b, crest_db_col_int(st, 0), crest_db_col_text(st, 1), (int)crest_db_col_int(st, 2));
    crest_db_reset(st);
    return crest_res_send_buf(req, 200, "application/json", &b);
}

/* ---- GET /api/todos: pages in slices ----
 *
 * ?limit=N (1..1000, default 100) rows in id order after ?after=ID (default 0), and a
 * `Link: </api/todos?limit=N&after=LAST>; rel="next"` header while rows remain after the page.
 * The first job fixes the page's end (the id of its limit-th row), so the Link header, sent with
 * the head, and the rows agree; later slices read `id > cursor AND id <= end`, each in its own
 * short read transaction: a row written meanwhile appears at most once, in order, and never
 * beyond the page. A page that fits one slice is answered with Content-Length as before; a longer
 * one is streamed (chunked) slice by slice with backpressure:
 *
 *   job (worker: read rows into l->out up to SLICE_BYTES) -> list_done (loop: write the slice)
 *     -> output at most half of max_output? next job : wait for on_list_drain -> next job
 *
 * Owner of a list_t: the request. Exactly one of these holds it at a time: a worker job (its done
 * callback comes back to list_done, with CREST_ECANCELED if the client left), the drain wait (the
 * client leaving calls on_list_abort instead of the drain callback), or the loop thread's own
 * code between the two. Whoever finishes the request frees it. */

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
    int rows;         /* rows rendered so far */
    int has_next;     /* rows remain after the page: send Link */
    int bounds_known; /* the first job has run */
    int finished;     /* the closing ']' is in out */
    int started;      /* the response head went out (streamed) */
    int head_only;    /* HEAD: the head is all that is sent */
    int err;          /* a database error from the last job */
    crest_buf_t out;  /* the slice rendered by the last job, until written */
} list_t;

static void list_free(list_t *l) {
    crest_buf_free(&l->out);
    free(l);
}

/* Worker (or, when the queue is full, loop thread): render the next slice into l->out. */
static void list_run(void *arg) {
    list_t *l = arg;
    crest_db_t *db = l->d->db;
    crest_db_stmt_t *st;
    int rc;
    if (!l->bounds_known) {
        if ((rc = crest_db_prepare(db, SQL_TODO_PAGE_END, &st)) != 0) {
            l->err = rc;
            return;
        }
        crest_db_bind_int(st, 1, l->after);
        crest_db_bind_int(st, 2, l->limit - 1);
        l->end = INT64_MAX;
        if ((rc = crest_db_step(st)) == CREST_DB_ROW) {
            l->end = crest_db_col_int(st, 0);
            l->has_next = (rc = crest_db_step(st)) == CREST_DB_ROW;
        }
        crest_db_reset(st);
        if (rc < 0) {
            l->err = rc;
            return;
        }
        l->bounds_known = 1;
        l->cursor = l->after;
        l->remaining = l->limit;
        crest_buf_puts(&l->out, "[");
    }
    if ((rc = crest_db_prepare(db, SQL_TODO_SLICE, &st)) != 0) {
        l->err = rc;
        return;
    }
    crest_db_bind_int(st, 1, l->cursor);
    crest_db_bind_int(st, 2, l->end);
    crest_db_bind_int(st, 3, l->remaining);
    while (l->remaining > 0 && (rc = crest_db_step(st)) == CREST_DB_ROW) {
        if (l->rows++)
            crest_buf_puts(&l->out, ",");
        l->cursor = crest_db_col_int(st, 0);
        l->remaining--;
        todo_json(&l->out, l->cursor, crest_db_col_text(st, 1), (int)crest_db_col_int(st, 2));
        if (l->out.len >= SLICE_BYTES)
            break;
    }
    /* Reset ends the statement's read transaction: no snapshot is held between slices. */
    crest_db_reset(st);
    if (rc < 0) {
        l->err = rc;
        return;
    }
    if (rc == CREST_DB_DONE || l->remaining == 0) {
        crest_buf_puts(&l->out, "]");
        l->finished = 1;
    }
    if (l->out.err)
        l->err = l->out.err;
}

static void list_submit(list_t *l);
static void list_done(crest_req_t *req, int status, void *arg);

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

static int list_emit(list_t *l);

/* Some of the output has been written: write the slice a full buffer budget made wait, if any,
 * and read the next one if the output is low enough now (else wait again). */
static void on_list_drain(crest_req_t *req, void *arg) {
    crest_req_on_abort(req, NULL, NULL);
    list_t *l = arg;
    if (list_emit(l))
        list_submit(l);
}

/* After a slice was written: 1 when the next one may be read now (the connection's output is at
 * most half of max_output), 0 when the request now waits for the drain callback or is
 * finished. */
static int list_wait(list_t *l) {
    if (crest_res_buffered(l->req) <= l->d->low_water)
        return 1;
    int rc = crest_res_on_drain(l->req, on_list_drain, l);
    if (rc == CREST_EALREADY)
        return 1;
    if (rc != 0) {
        list_finish(l);
        return 0;
    }
    crest_req_on_abort(l->req, on_list_abort, l);
    return 0;
}

/* Send what the last job produced (loop thread). Returns 1 when the next slice is wanted now. */
static int list_emit(list_t *l) {
    crest_req_t *req = l->req;
    int rc;
    if (l->err) {
        if (!l->started) {
            /* A lock held past the busy timeout or memory running out is overload: retry. */
            int status = l->err == CREST_EBUSY || l->err == CREST_ENOMEM ? 503 : 500;
            char msg[96];
            snprintf(msg, sizeof(msg), "list: %s", crest_strerror(l->err));
            send_error(req, status, msg, NULL);
            list_free(l);
            return 0;
        }
        /* The head is out and cannot say so any more: cut the answer short (the chunked body
         * never ends), so that the client sees an error rather than a cut list for the page. */
        crest_res_abort(req);
        list_free(l);
        return 0;
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
            return 0;
        }
        if ((rc = crest_res_start(req, 200, "application/json")) != 0) {
            list_finish(l); /* not started: frees the request */
            return 0;
        }
        l->started = 1;
        if (l->head_only) {
            list_finish(l);
            return 0;
        }
    }
    if (l->out.len > 0) {
        rc = crest_res_write(req, l->out.ptr, l->out.len);
        if (rc == CREST_ENOBUFS)
            return list_wait(l); /* over the process's buffer budget: keep the slice, retry */
        crest_buf_free(&l->out);
        if (rc != 0) {
            list_finish(l);
            return 0;
        }
    }
    if (l->finished) {
        list_finish(l);
        return 0;
    }
    return list_wait(l);
}

static void list_submit(list_t *l) {
    for (;;) {
        int rc = crest_work_submit(l->req, list_run, list_done, l);
        if (rc == 0)
            return;
        if (rc != CREST_EAGAIN) {
            list_finish(l);
            return;
        }
        /* The queue is full: this slice is bounded (SLICE_BYTES, or one row), run it here. */
        list_run(l);
        if (!list_emit(l))
            return;
    }
}

static void list_done(crest_req_t *req, int status, void *arg) {
    (void)req;
    list_t *l = arg;
    if (status != 0) {
        list_finish(l); /* the client left or the app stopped: only frees the request */
        return;
    }
    if (list_emit(l))
        list_submit(l);
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
    l->head_only = crest_req_method(req) == CREST_METHOD_HEAD;
    l->out = (crest_buf_t)CREST_BUF_INIT;
    int rc = crest_work_submit(req, list_run, list_done, l);
    if (rc == 0)
        return 0;
    list_free(l);
    if (rc == CREST_EAGAIN)
        return crest_work_busy(req);
    return rc;
}

/* ---- /work/hash ---- */

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
    job_t *j = job_new(d, JOB_HASH);
    if (j == NULL)
        return CREST_ENOMEM;
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
    return submit(req, j);
}

/* ---- set-up ---- */

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
    rc = crest_db_open(opts->db_url, &d->db);
    if (rc == 0)
        rc = seed(d->db);
    if (rc != 0) {
        fprintf(stderr, "crest: database %s: %s%s%s\n", opts->db_url, crest_strerror(rc),
                d->db ? ": " : "", d->db ? crest_db_errmsg(d->db) : "");
        demo_db_free(d);
        return 1;
    }
    struct {
        const char *method, *path;
        crest_handler_cb cb;
    } routes[] = {
        {"GET", "/db", on_db},
        {"GET", "/queries", on_queries},
        {"GET", "/updates", on_updates},
        {"GET", "/fortunes", on_fortunes},
        {"GET", "/api/todos", on_todo_list},
        {"POST", "/api/todos", on_todo_add},
        {"GET", "/api/todos/:id", on_todo_get},
        {"PUT", "/api/todos/:id", on_todo_put},
        {"PATCH", "/api/todos/:id", on_todo_patch},
        {"DELETE", "/api/todos/:id", on_todo_del},
        {"POST", "/work/hash", on_hash},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        rc = crest_app_route(app, routes[i].method, routes[i].path, routes[i].cb, d);
        if (rc != 0) {
            fprintf(stderr, "crest: route %s %s: %s\n", routes[i].method, routes[i].path,
                    crest_strerror(rc));
            demo_db_free(d);
            return 1;
        }
    }
    *out = d;
    return 0;
}

void demo_db_free(demo_db_t *d) {
    if (d == NULL)
        return;
    crest_db_close(d->db);
    free(d);
}
