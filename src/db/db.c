/* The database API's backend-neutral half: opening by URL, statements, building batches and
 * reading their results. sqlite.c and pg.c run the batches.
 *
 * A batch is one allocation for the common case (a few statements, arguments and values inline)
 * and grows into the heap only when it is larger: /db and a todo read cost one malloc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "db/sql.h"
#include "http/http.h"

void crest_db_opts_default(crest_db_opts_t *opts) {
    opts->conns_per_loop = 1;
    opts->timeout_ms = 5000;
    opts->max_queue = 1024;
}

int crest_db_open(const char *url, const crest_db_opts_t *opts, crest_db_t **out) {
    *out = NULL;
    crest_db_t *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return CREST_ENOMEM;
    if (opts != NULL)
        db->opts = *opts;
    else
        crest_db_opts_default(&db->opts);
    if (db->opts.conns_per_loop < 1)
        db->opts.conns_per_loop = 1;
    if (db->opts.timeout_ms == 0)
        db->opts.timeout_ms = 5000;
    if (db->opts.max_queue == 0)
        db->opts.max_queue = 1024;
    *out = db;
    if ((db->url = strdup(url)) == NULL)
        return CREST_ENOMEM;
    if (strncmp(url, "sqlite:", 7) == 0)
        return crest__sqlite_open(db, url);
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return crest__pg_open(db, url);
    snprintf(db->errmsg, sizeof(db->errmsg),
             "unknown database URL scheme (expected sqlite:PATH or postgres://...)");
    return CREST_EINVAL;
}

void crest_db_close(crest_db_t *db) {
    if (db == NULL)
        return;
    if (db->backend != NULL)
        db->backend->close(db);
    for (int i = 0; i < db->nsqls; i++) {
        free(db->sqls[i]->text);
        free(db->sqls[i]->pgtext);
        free(db->sqls[i]);
    }
    free(db->url);
    free(db);
}

const char *crest_db_backend(const crest_db_t *db) {
    return db->backend ? db->backend->name : "";
}

const char *crest_db_last_error(const crest_db_t *db) {
    return db->errmsg;
}

int crest_db_statement(crest_db_t *db, const char *sql, crest_db_sql_t **out) {
    *out = NULL;
    if (db->backend == NULL)
        return CREST_EINVAL;
    if (db->nsqls == CREST__DB_MAX_SQL) {
        snprintf(db->errmsg, sizeof(db->errmsg), "more than %d statements", CREST__DB_MAX_SQL);
        return CREST_E2BIG;
    }
    crest_db_sql_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->text = strdup(sql)) == NULL) {
        free(s);
        return CREST_ENOMEM;
    }
    /* The translation also counts the parameters, which both backends check arguments against. */
    crest_buf_t pg = CREST_BUF_INIT;
    const char *where = NULL;
    int wants_pg = strcmp(db->backend->name, "postgres") == 0;
    int rc = crest__sql_to_pg(sql, wants_pg ? &pg : NULL, &s->nparams, &where);
    if (rc == 0 && wants_pg) {
        rc = crest_buf_append(&pg, "", 1);
        s->pgtext = pg.ptr;
    } else {
        crest_buf_free(&pg);
    }
    if (rc != 0) {
        if (rc == CREST_EINVAL)
            snprintf(db->errmsg, sizeof(db->errmsg),
                     "bad parameter number at offset %td of \"%.80s\" (1 to %d)", where - sql, sql,
                     CREST__SQL_MAX_PARAMS);
        free(s->text);
        free(s);
        return rc;
    }
    s->index = db->nsqls;
    snprintf(s->pgname, sizeof(s->pgname), "c%d", s->index);
    db->sqls[db->nsqls++] = s;
    *out = s;
    return 0;
}

/* ---- building ---- */

crest_db_query_t *crest_db_query(crest_db_t *db, int flags) {
    crest_db_query_t *q = malloc(sizeof(*q));
    if (q == NULL)
        return NULL;
    /* Only the header is cleared: the inline arrays are written before they are read. */
    memset(q, 0, offsetof(crest_db_query_t, steps_mem));
    q->db = db;
    q->flags = flags;
    q->steps = q->steps_mem;
    q->capsteps = sizeof(q->steps_mem) / sizeof(q->steps_mem[0]);
    q->args = q->args_mem;
    q->capargs = sizeof(q->args_mem) / sizeof(q->args_mem[0]);
    q->cells = q->cells_mem;
    q->capcells = sizeof(q->cells_mem) / sizeof(q->cells_mem[0]);
    q->arena = (crest_buf_t)CREST_BUF_INIT;
    return q;
}

/* Double an inline-or-heap array to hold one more element. */
static int grow(void **arr, void *inline_mem, uint32_t *cap, size_t elem) {
    uint32_t ncap = *cap * 2;
    void *n = *arr == inline_mem ? malloc(ncap * elem) : realloc(*arr, ncap * elem);
    if (n == NULL)
        return CREST_ENOMEM;
    if (*arr == inline_mem)
        memcpy(n, inline_mem, *cap * elem);
    *arr = n;
    *cap = ncap;
    return 0;
}

void crest_db_add(crest_db_query_t *q, const crest_db_sql_t *sql) {
    if (q->err)
        return;
    if (q->nsteps > 0 &&
        q->steps[q->nsteps - 1].nargs < (uint32_t)q->steps[q->nsteps - 1].sql->nparams) {
        q->err = CREST_EINVAL; /* the previous statement lacks arguments */
        return;
    }
    if (q->nsteps == q->capsteps) {
        uint32_t cap = (uint32_t)q->capsteps;
        if ((q->err = grow((void **)&q->steps, q->steps_mem, &cap, sizeof(db_step_t))) != 0)
            return;
        q->capsteps = (int)cap;
    }
    db_step_t *st = &q->steps[q->nsteps++];
    memset(st, 0, sizeof(*st));
    st->sql = sql;
    st->first_arg = q->nargs;
}

static db_arg_t *next_arg(crest_db_query_t *q) {
    if (q->err)
        return NULL;
    db_step_t *st = q->nsteps ? &q->steps[q->nsteps - 1] : NULL;
    if (st == NULL || st->nargs == (uint32_t)st->sql->nparams) {
        q->err = CREST_EINVAL; /* no statement, or a parameter too many */
        return NULL;
    }
    if (q->nargs == q->capargs &&
        (q->err = grow((void **)&q->args, q->args_mem, &q->capargs, sizeof(db_arg_t))) != 0)
        return NULL;
    st->nargs++;
    return &q->args[q->nargs++];
}

void crest_db_arg_int(crest_db_query_t *q, int64_t v) {
    db_arg_t *a = next_arg(q);
    if (a != NULL)
        *a = (db_arg_t){ARG_INT, v, 0};
}

void crest_db_arg_text(crest_db_query_t *q, const char *s, size_t len) {
    db_arg_t *a = next_arg(q);
    if (a == NULL)
        return;
    /* NUL-terminated in the arena: libpq takes text parameters as C strings. */
    size_t off = q->arena.len;
    if (crest_buf_append(&q->arena, s, len) != 0 || crest_buf_append(&q->arena, "", 1) != 0) {
        q->err = CREST_ENOMEM;
        return;
    }
    *a = (db_arg_t){ARG_TEXT, (int64_t)off, len};
}

void crest_db_arg_null(crest_db_query_t *q) {
    db_arg_t *a = next_arg(q);
    if (a != NULL)
        *a = (db_arg_t){ARG_NULL, 0, 0};
}

void crest_db_limit_bytes(crest_db_query_t *q, size_t bytes) {
    if (q->err == 0 && q->nsteps > 0)
        q->steps[q->nsteps - 1].limit = bytes ? bytes : 1;
}

void crest_db_query_free(crest_db_query_t *q) {
    if (q == NULL)
        return;
    if (q->steps != q->steps_mem)
        free(q->steps);
    if (q->args != q->args_mem)
        free(q->args);
    if (q->cells != q->cells_mem)
        free(q->cells);
    crest_buf_free(&q->arena);
    free(q->errmsg);
    free(q);
}

/* The batch is complete and well formed: 0 or the error to return from run. */
static int ready(crest_db_query_t *q) {
    if (q->err)
        return q->err;
    if (q->nsteps == 0)
        return CREST_EINVAL;
    const db_step_t *last = &q->steps[q->nsteps - 1];
    if (last->nargs < (uint32_t)last->sql->nparams)
        return CREST_EINVAL;
    return 0;
}

/* The database lines of crest_app_metrics: batch times, kept per loop thread (where each batch's
 * completion runs) in crest__http_loop_t.mod. A database is opened without an app, so it is
 * listed on the app of the first loop that runs a batch. */
static void write_metrics(const crest_app_t *app, void *arg, crest_buf_t *b) {
    (void)arg;
    crest_buf_puts(b, "# HELP crest_db_query_duration_seconds Time from running a batch of "
                      "statements to its completion, queue included.\n"
                      "# TYPE crest_db_query_duration_seconds histogram\n");
    crest__mod_hist_write(app, b, "crest_db_query_duration_seconds", "", CREST__MOD_DB_HIST);
    crest_buf_printf(b,
                     "# HELP crest_db_queries_in_flight Batches run and not finished yet: waiting "
                     "for a connection or answered by the database now.\n"
                     "# TYPE crest_db_queries_in_flight gauge\n"
                     "crest_db_queries_in_flight %lld\n",
                     (long long)crest__mod_sum(app, CREST__MOD_DB_BUSY));
    int64_t conns = (int64_t)crest__mod_sum(app, CREST__MOD_DB_CONNS);
    if (conns > 0) { /* PostgreSQL: its pool of connections per loop thread */
        int64_t ready = (int64_t)crest__mod_sum(app, CREST__MOD_DB_READY);
        crest_buf_printf(b,
                         "# HELP crest_db_connections PostgreSQL connections of the loop threads: "
                         "ready for batches, or down and reconnecting.\n"
                         "# TYPE crest_db_connections gauge\n"
                         "crest_db_connections{state=\"ready\"} %lld\n"
                         "crest_db_connections{state=\"down\"} %lld\n",
                         (long long)ready, (long long)(conns - ready));
    }
}

int crest_db_run(crest_db_query_t *q, crest_req_t *req, crest_db_done_cb done, void *arg) {
    int rc = ready(q);
    if (rc == 0) {
        q->req = req;
        q->loop = crest_req_loop(req);
        q->started = uv_hrtime();
        crest__http_loop_t *hl = crest__http_loop(q->loop);
        crest__count(&hl->mod[CREST__MOD_DB_BUSY], 1);
        if (!atomic_load_explicit(&hl->mod[CREST__MOD_DB_LISTED], memory_order_relaxed) &&
            crest__metrics_add(crest__app_of(q->loop), write_metrics, NULL) == 0)
            atomic_store_explicit(&hl->mod[CREST__MOD_DB_LISTED], 1, memory_order_relaxed);
        q->done = done;
        q->arg = arg;
        rc = q->db->backend->run(q);
        if (rc != 0) /* done will not run */
            crest__count(&hl->mod[CREST__MOD_DB_BUSY], -1);
    }
    if (rc != 0)
        crest_db_query_free(q);
    return rc;
}

int crest_db_run_sync(crest_db_query_t *q) {
    int rc = ready(q);
    if (rc != 0)
        return rc;
    return q->db->backend->run_sync(q);
}

void crest__db_finish(crest_db_query_t *q, int status) {
    crest_req_t *req = q->req;
    crest__http_loop_t *hl = crest__http_loop(q->loop);
    crest__hist_add(&hl->mod[CREST__MOD_DB_HIST], uv_hrtime() - q->started);
    crest__count(&hl->mod[CREST__MOD_DB_BUSY], -1);
    if (crest_req_aborted(req))
        status = CREST_ECANCELED;
    q->done(req, status, q, q->arg);
    crest_db_query_free(q);
}

/* ---- results ---- */

int crest__db_row_begin(crest_db_query_t *q, db_step_t *st, int ncols) {
    if (st->nrows == 0) {
        st->first_cell = q->ncells;
        st->ncols = ncols;
    }
    while (q->ncells + (uint32_t)ncols > q->capcells)
        if (grow((void **)&q->cells, q->cells_mem, &q->capcells, sizeof(db_cell_t)) != 0)
            return CREST_ENOMEM;
    st->nrows++;
    return 0;
}

int crest__db_cell_int(crest_db_query_t *q, int64_t v) {
    q->cells[q->ncells++] = (db_cell_t){CELL_INT, v, 0};
    return 0;
}

int crest__db_cell_text(crest_db_query_t *q, db_step_t *st, const char *p, size_t len) {
    size_t off = q->arena.len;
    if (crest_buf_append(&q->arena, p, len) != 0)
        return CREST_ENOMEM;
    q->cells[q->ncells++] = (db_cell_t){CELL_TEXT, (int64_t)off, len};
    st->bytes += len;
    return 0;
}

void crest__db_cell_null(crest_db_query_t *q) {
    q->cells[q->ncells++] = (db_cell_t){CELL_NULL, 0, 0};
}

void crest__db_clear_results(crest_db_query_t *q) {
    for (int i = 0; i < q->nsteps; i++) {
        db_step_t *st = &q->steps[i];
        st->first_cell = 0;
        st->nrows = st->ncols = st->cut = 0;
        st->bytes = 0;
        st->changes = 0;
    }
    q->ncells = 0;
}

void crest__db_set_error(crest_db_query_t *q, const char *msg) {
    free(q->errmsg);
    q->errmsg = msg && *msg ? strdup(msg) : NULL;
}

static const db_cell_t *cell(const crest_db_query_t *q, int i, int row, int col) {
    if (i < 0 || i >= q->nsteps)
        return NULL;
    const db_step_t *st = &q->steps[i];
    if (row < 0 || row >= st->nrows || col < 0 || col >= st->ncols)
        return NULL;
    return &q->cells[st->first_cell + (uint32_t)row * (uint32_t)st->ncols + (uint32_t)col];
}

int crest__db_cell_kind(const crest_db_query_t *q, int i, int row, int col) {
    const db_cell_t *c = cell(q, i, row, col);
    return c == NULL ? CELL_NULL : c->kind;
}

int crest_db_rows(const crest_db_query_t *q, int i) {
    return i >= 0 && i < q->nsteps ? q->steps[i].nrows : 0;
}

int64_t crest_db_int(const crest_db_query_t *q, int i, int row, int col) {
    const db_cell_t *c = cell(q, i, row, col);
    if (c == NULL || c->kind == CELL_NULL)
        return 0;
    if (c->kind == CELL_INT)
        return c->i;
    /* Text (PostgreSQL answers in text): a decimal integer, else 0. */
    const char *p = q->arena.ptr + c->i, *end = p + c->len;
    int neg = p < end && *p == '-';
    if (neg || (p < end && *p == '+'))
        p++;
    if (p == end)
        return 0;
    uint64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return neg ? (int64_t)(0 - v) : (int64_t)v;
}

crest_str_t crest_db_text(const crest_db_query_t *q, int i, int row, int col) {
    const db_cell_t *c = cell(q, i, row, col);
    if (c == NULL || c->kind != CELL_TEXT)
        return (crest_str_t){"", 0};
    return (crest_str_t){q->arena.ptr + c->i, c->len};
}

int crest_db_is_null(const crest_db_query_t *q, int i, int row, int col) {
    const db_cell_t *c = cell(q, i, row, col);
    return c == NULL || c->kind == CELL_NULL;
}

int64_t crest_db_changes(const crest_db_query_t *q, int i) {
    return i >= 0 && i < q->nsteps ? q->steps[i].changes : 0;
}

int crest_db_cut(const crest_db_query_t *q, int i) {
    return i >= 0 && i < q->nsteps ? q->steps[i].cut : 0;
}

const char *crest_db_error(const crest_db_query_t *q) {
    return q->errmsg ? q->errmsg : "";
}

int crest_db_retryable(int err) {
    switch (err) {
    case CREST_EAGAIN:
    case CREST_EBUSY:
    case CREST_ETIMEDOUT:
    case CREST_ECONNREFUSED:
    case CREST_ECONNRESET:
    case CREST_ENOMEM:
    case CREST_ENOBUFS:
        return 1;
    default:
        return 0;
    }
}
