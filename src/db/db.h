/* What the database module's files share: the handle, statements, batches and their results,
 * and the interface each backend (sqlite.c, pg.c) implements. */
#ifndef CREST_DB_DB_H
#define CREST_DB_DB_H

#include <pthread.h>

#include "internal.h"

/* Statements a database can declare: a fixed table, so that loop threads can read it without a
 * lock while none is added (declaring happens at start-up). */
#define CREST__DB_MAX_SQL 256

struct crest_db_sql_s {
    int index;       /* in db->sqls, and in each connection's table of prepared statements */
    int nparams;     /* the largest parameter number */
    char *text;      /* as the application wrote it (SQLite runs it) */
    char *pgtext;    /* PostgreSQL's form (sql.h); NULL on SQLite */
    char pgname[16]; /* its prepared statement's name on every PostgreSQL connection */
};

enum { ARG_NULL, ARG_INT, ARG_TEXT };

typedef struct {
    int kind;
    int64_t i;  /* ARG_INT: the value; ARG_TEXT: the offset of the text in q->arena */
    size_t len; /* ARG_TEXT */
} db_arg_t;

/* One value of a result row. Text lives in q->arena at `off`. */
enum { CELL_NULL, CELL_INT, CELL_TEXT };
typedef struct {
    int kind;
    int64_t i; /* CELL_INT: the value; CELL_TEXT: the offset of the text in q->arena */
    size_t len;
} db_cell_t;

/* CELL_* of column col of row `row` of statement i (CELL_NULL for one that is not there). */
int crest__db_cell_kind(const crest_db_query_t *q, int i, int row, int col);

typedef struct {
    const crest_db_sql_t *sql;
    uint32_t first_arg;
    uint32_t nargs;
    size_t limit; /* crest_db_limit_bytes, 0 for none */
    /* Its result: */
    uint32_t first_cell;
    int nrows;
    int ncols;
    int cut;
    size_t bytes; /* of the values kept, for limit */
    int64_t changes;
    int prepare_sent; /* PostgreSQL: this batch carries the statement's Parse on its connection */
} db_step_t;

/* A batch. Owner: the application while it builds; then the backend until done runs (or the
 * caller of crest_db_run_sync), which frees it. */
struct crest_db_query_s {
    crest_db_t *db;
    int flags;
    int err; /* the first error while building */
    db_step_t *steps;
    int nsteps, capsteps;
    db_arg_t *args;
    uint32_t nargs, capargs;
    db_cell_t *cells;
    uint32_t ncells, capcells;
    crest_buf_t arena; /* argument and result text */
    char *errmsg;      /* the backend's message, malloc'd, or NULL */
    /* While running for a request: */
    crest_req_t *req;
    crest_loop_t *loop;
    crest_db_done_cb done;
    void *arg;
    int status;
    uint64_t started;              /* uv_hrtime() when run: the query time in /metrics */
    crest__msg_t msg;              /* delivery to the loop from another thread (SQLite's writer) */
    struct crest_db_query_s *next; /* in a backend's queue */
    uint64_t deadline;             /* PostgreSQL: uv_now() by which it must be answered */
    int answered; /* PostgreSQL: done already ran (timed out); results still to be read */
    void *ext;    /* the backend's per-loop state this batch counts against */
    int seg_end;  /* PostgreSQL: a Sync follows this batch */
    int victim;   /* PostgreSQL: aborted by a neighbour's error: to be sent again */
    int resent;   /* PostgreSQL: times it was sent again */
    db_step_t steps_mem[2];
    db_arg_t args_mem[4];
    db_cell_t cells_mem[4];
};

typedef struct {
    const char *name;
    /* Send q (for q->req, on its loop thread): 0, or an error and done is not called. */
    int (*run)(crest_db_query_t *q);
    int (*run_sync)(crest_db_query_t *q);
    void (*close)(crest_db_t *db);
} crest__db_backend_t;

struct crest_db_s {
    const crest__db_backend_t *backend;
    void *impl; /* the backend's state */
    crest_db_opts_t opts;
    char *url;
    crest_db_sql_t *sqls[CREST__DB_MAX_SQL];
    int nsqls;
    char errmsg[256]; /* crest_db_last_error */
};

int crest__sqlite_open(crest_db_t *db, const char *url);
int crest__pg_open(crest_db_t *db, const char *url);

/* Result building, for the backends. Return 0 or CREST_ENOMEM. */
int crest__db_row_begin(crest_db_query_t *q, db_step_t *st, int ncols);
int crest__db_cell_int(crest_db_query_t *q, int64_t v);
int crest__db_cell_text(crest_db_query_t *q, db_step_t *st, const char *p, size_t len);
void crest__db_cell_null(crest_db_query_t *q);
/* Forget the rows of every step (a batch run again after its transaction was rolled back). */
void crest__db_clear_results(crest_db_query_t *q);
/* Keep the backend's message for q (copied; NULL clears it). */
void crest__db_set_error(crest_db_query_t *q, const char *msg);
/* Run q's done callback on its loop thread with `status` (CREST_ECANCELED if the client left),
 * then free q. */
void crest__db_finish(crest_db_query_t *q, int status);
/* The text of argument a of q (ARG_TEXT). */
static inline const char *crest__db_arg_text(const crest_db_query_t *q, const db_arg_t *a) {
    return q->arena.ptr + a->i;
}

#endif
