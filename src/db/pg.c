/* PostgreSQL behind crest/db.h: libpq in non-blocking pipeline mode on each loop thread.
 *
 * Connections. Each loop thread opens opts.conns_per_loop connections of its own the first time
 * it sends a batch, watches their sockets with a uv_poll_t and never blocks on them: connecting
 * is driven by PQconnectPoll, sending by PQflush when the socket is writable, reading by
 * PQconsumeInput. A host name in the URL is resolved once, in crest_db_open, and handed to libpq
 * as hostaddr (libpq would otherwise call getaddrinfo, which blocks, on every reconnect); host
 * stays set for TLS verification. GSSAPI encryption is off unless the URL asks for it, since
 * libpq's default ("prefer") can read Kerberos credentials synchronously.
 *
 * Pipelining. Batches are sent at the end of the loop's turn (a uv_check): all of a turn's
 * batches for one connection in one write. For each statement: its Parse the first time this
 * connection sees the statement (then it stays prepared, named "c<index>"), its Bind and Execute.
 * PostgreSQL runs everything up to a Sync as one implicit transaction and answers each Sync with
 * a flush of its output, so Syncs cost: the read batches of one turn share one Sync (one
 * transaction and one write each way for all the /db requests that came in that turn), while a
 * batch that writes, takes a lock or wants one snapshot has a Sync before and after it, so that it
 * commits alone and atomically (synchronous_commit=on is set for the session: the answer to its
 * Sync comes after the WAL is flushed). An error aborts the rest of its segment: the batch that
 * failed gets its error, and the read batches after it in the segment, which did nothing wrong,
 * are sent again (a read has no effect to undo), so one failing query never fails its neighbours
 * (sent again, a batch has a Sync of its own, so it is aborted at most once). A read batch is
 * complete once its last result is in, without waiting for the Sync. Results come back in the order
 * sent, so each connection keeps its batches in a FIFO and walks the expected results of the head
 * one by one (cursor_t).
 *
 * Failures. A batch is answered CREST_ETIMEDOUT once opts.timeout_ms passed (the server's own
 * statement_timeout is the same, so a slow statement is also cancelled there); its results are
 * dropped when they come. A connection that keeps its head batch unanswered for another timeout
 * is presumed dead and closed. A lost connection fails its batches with CREST_ECONNRESET and is
 * opened again with backoff (100 ms doubling to 2 s; while requests wait, at most 100 ms), and
 * batches sent while no connection is up wait for the next attempt and fail with
 * CREST_ECONNREFUSED when it fails: a request never hangs, and the first one after the server is
 * back succeeds. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "db/db.h"
#include "db/pq.h"
#include "http/http.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000
#define TICK_MS 100
/* The advisory lock CREST_DB_EXCLUSIVE batches take: "crest" in ASCII. */
#define EXCLUSIVE_KEY "427121013620"

enum { C_DOWN, C_CONNECTING, C_READY };

/* Where a connection is in the results of its head batch. */
enum { OP_BEGIN, OP_LOCK, OP_PREP, OP_EXEC, OP_COMMIT, OP_SYNC, OP_NEXT };
/* A read batch is sent again at most this often after neighbours' errors (then it fails). */
#define MAX_RESENDS 3
typedef struct {
    int op;
    int step;
} cursor_t;

typedef struct pg_loop_s pg_loop_t;

/* One connection of a loop thread. Owner: its pg_loop_t. */
typedef struct {
    pg_loop_t *pl;
    PGconn *conn;
    uv_poll_t *poll; /* watching PQsocket; a new handle when the socket changes */
    int fd;
    int events; /* what poll waits for */
    int state;
    unsigned char *prepared; /* per statement index: Parse sent on this connection */
    crest_db_query_t *head;  /* batches sent, oldest first */
    crest_db_query_t *tail;
    crest_db_query_t *pend_head; /* batches for the end of this turn, not sent yet */
    crest_db_query_t *pend_tail;
    size_t inflight;      /* batches sent or pending */
    cursor_t cur;         /* in head's results */
    int err;              /* head's first error */
    uint64_t retry_at;    /* C_DOWN: when to connect again */
    uint32_t backoff;     /* ms */
    uint64_t attempt_at;  /* when the last attempt began */
    uint64_t stuck_since; /* the head was answered by timeout then; 0 if not */
} pgc_t;

/* A loop thread's connections and waiting batches. Owner: the loop (an extension). */
struct pg_loop_s {
    crest__loop_ext_t ext;
    crest_db_t *db;
    crest_loop_t *loop;
    pgc_t *conns;
    int nconns;
    crest_db_query_t *wait_head; /* batches waiting for a connection */
    crest_db_query_t *wait_tail;
    size_t queued;       /* waiting and in flight (opts.max_queue) */
    uv_timer_t tick;     /* deadlines and reconnects, while anything needs them */
    uv_check_t flush;    /* end of the loop's turn: send what is pending */
    int closing;         /* handles left to close before the memory goes */
    const char **argbuf; /* parameter values of the statement being sent */
    size_t argcap;
    crest__ratelimit_t log_rl;
    int was_down; /* logged "unreachable" since the last success */
};

/* The database's state. Owner: the crest_db_t. */
typedef struct {
    const char **kw; /* connection parameters, NULL-terminated, for PQconnectStartParams */
    const char **val;
    char *store; /* the strings they point into */
    pthread_mutex_t sync_lock;
    PGconn *sync_conn; /* crest_db_run_sync's connection, guarded by sync_lock */
} pg_t;

/* ---- errors ---- */

static int map_state(const char *sqlstate) {
    if (sqlstate == NULL)
        return CREST_ECONNRESET; /* libpq's own errors: the connection */
    if (strcmp(sqlstate, "23505") == 0)
        return CREST_EEXIST;
    if (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0 ||
        strcmp(sqlstate, "55P03") == 0)
        return CREST_EBUSY;
    if (strcmp(sqlstate, "57014") == 0)
        return CREST_ETIMEDOUT;
    if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P", 3) == 0)
        return CREST_ECONNRESET;
    if (strncmp(sqlstate, "53", 2) == 0)
        return CREST_EAGAIN;
    if (strncmp(sqlstate, "42", 2) == 0 || strncmp(sqlstate, "22", 2) == 0 ||
        strncmp(sqlstate, "23", 2) == 0)
        return CREST_EINVAL;
    return -EIO;
}

static int result_error(crest_db_query_t *q, const PGresult *r) {
    crest__db_set_error(q, crest__pq.PQresultErrorMessage(r));
    return map_state(crest__pq.PQresultErrorField(r, PG_DIAG_SQLSTATE));
}

/* ---- results ---- */

/* Keep rows [0, n) of r for step st (with st->limit: while under it; one row a result in
 * single-row mode). */
static int keep_rows(crest_db_query_t *q, db_step_t *st, const PGresult *r) {
    int n = crest__pq.PQntuples(r), ncols = crest__pq.PQnfields(r);
    for (int row = 0; row < n; row++) {
        if (st->limit && st->nrows > 0 && st->bytes >= st->limit) {
            st->cut = 1; /* dropped: see crest_db_limit_bytes */
            return 0;
        }
        if (crest__db_row_begin(q, st, ncols) != 0)
            return CREST_ENOMEM;
        for (int col = 0; col < ncols; col++) {
            if (crest__pq.PQgetisnull(r, row, col))
                crest__db_cell_null(q);
            else if (crest__db_cell_text(q, st, crest__pq.PQgetvalue(r, row, col),
                                         (size_t)crest__pq.PQgetlength(r, row, col)) != 0)
                return CREST_ENOMEM;
        }
    }
    const char *t = crest__pq.PQcmdTuples((PGresult *)r);
    if (t != NULL && *t)
        st->changes = strtoll(t, NULL, 10);
    return 0;
}

/* ---- the connection's results ---- */

static cursor_t first_op(const crest_db_query_t *q) {
    if (q->flags & CREST_DB_SNAPSHOT)
        return (cursor_t){OP_BEGIN, 0};
    if (q->flags & CREST_DB_EXCLUSIVE)
        return (cursor_t){OP_LOCK, 0};
    return (cursor_t){q->steps[0].prepare_sent ? OP_PREP : OP_EXEC, 0};
}

static cursor_t next_op(const crest_db_query_t *q, cursor_t c) {
    switch (c.op) {
    case OP_BEGIN:
        if (q->flags & CREST_DB_EXCLUSIVE)
            return (cursor_t){OP_LOCK, 0};
        return (cursor_t){q->steps[0].prepare_sent ? OP_PREP : OP_EXEC, 0};
    case OP_LOCK:
        return (cursor_t){q->steps[0].prepare_sent ? OP_PREP : OP_EXEC, 0};
    case OP_PREP:
        return (cursor_t){OP_EXEC, c.step};
    case OP_EXEC:
        if (c.step + 1 < q->nsteps)
            return (cursor_t){q->steps[c.step + 1].prepare_sent ? OP_PREP : OP_EXEC, c.step + 1};
        if (q->flags & CREST_DB_SNAPSHOT)
            return (cursor_t){OP_COMMIT, 0};
        return (cursor_t){q->seg_end ? OP_SYNC : OP_NEXT, 0};
    default:
        return (cursor_t){q->seg_end ? OP_SYNC : OP_NEXT, 0};
    }
}

/* The current operation just became the one libpq is reading: single-row mode must be chosen
 * now, before any of its rows are parsed. */
static void enter_op(pgc_t *c) {
    crest_db_query_t *q = c->head;
    if (q != NULL && c->cur.op == OP_EXEC && q->steps[c->cur.step].limit)
        crest__pq.PQsetSingleRowMode(c->conn);
}

static void queue_drop(pg_loop_t *pl) {
    pl->queued--;
}

static int is_read(const crest_db_query_t *q) {
    return !(q->flags & (CREST_DB_WRITE | CREST_DB_EXCLUSIVE | CREST_DB_SNAPSHOT));
}

static void pend(pgc_t *c, crest_db_query_t *q);

/* The head batch is over (its last result, or its Sync): answer it, or send it again when a
 * neighbour's error aborted it. */
static void head_done(pgc_t *c) {
    crest_db_query_t *q = c->head;
    c->head = q->next;
    if (c->head == NULL)
        c->tail = NULL;
    c->inflight--;
    c->stuck_since = 0;
    int err = c->err;
    c->err = 0;
    if (c->head != NULL) {
        c->cur = first_op(c->head);
        enter_op(c);
    }
    if (q->victim && !q->answered && is_read(q) && q->resent < MAX_RESENDS) {
        q->victim = 0;
        q->resent++;
        crest__db_clear_results(q);
        crest__db_set_error(q, NULL);
        pend(c, q);
        return;
    }
    queue_drop(c->pl);
    if (q->answered)
        crest_db_query_free(q);
    else
        crest__db_finish(q, err ? err : q->victim ? CREST_EAGAIN : 0);
}

static void on_result(pgc_t *c, PGresult *r) {
    crest_db_query_t *q = c->head;
    ExecStatusType s = crest__pq.PQresultStatus(r);
    if (s == PGRES_FATAL_ERROR) {
        if (c->cur.op == OP_PREP)
            c->prepared[q->steps[c->cur.step].sql->index] = 0; /* never made: Parse it again */
        const char *state = crest__pq.PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state != NULL && strcmp(state, "26000") == 0 && c->cur.op == OP_EXEC) {
            /* Its Parse went out in a segment that a neighbour's error aborted: Parse again. */
            c->prepared[q->steps[c->cur.step].sql->index] = 0;
            q->victim = 1;
        }
        if (c->err == 0 && !q->victim)
            c->err = result_error(q, r);
        return;
    }
    if (s == PGRES_PIPELINE_ABORTED) {
        if (c->cur.op == OP_PREP)
            c->prepared[q->steps[c->cur.step].sql->index] = 0;
        if (c->err == 0)
            q->victim = 1; /* a batch before it in the segment failed, not this one */
        return;
    }
    if (c->cur.op == OP_EXEC && c->err == 0 && !q->answered &&
        (s == PGRES_TUPLES_OK || s == PGRES_SINGLE_TUPLE || s == PGRES_COMMAND_OK)) {
        int rc = keep_rows(q, &q->steps[c->cur.step], r);
        if (rc != 0)
            c->err = rc;
    }
}

static void conn_lost(pgc_t *c, const char *why);
static void watch(pgc_t *c);

/* Read what the server sent and walk the results (loop thread). */
static void conn_read(pgc_t *c) {
    if (!crest__pq.PQconsumeInput(c->conn)) {
        conn_lost(c, crest__pq.PQerrorMessage(c->conn));
        return;
    }
    while (c->head != NULL && !crest__pq.PQisBusy(c->conn)) {
        PGresult *r = crest__pq.PQgetResult(c->conn);
        if (r == NULL) { /* the current operation's results are over */
            c->cur = next_op(c->head, c->cur);
            if (c->cur.op == OP_NEXT)
                head_done(c); /* a read batch sharing the Sync after it: complete now */
            else
                enter_op(c);
            continue;
        }
        if (crest__pq.PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            crest__pq.PQclear(r);
            head_done(c);
            continue;
        }
        on_result(c, r);
        crest__pq.PQclear(r);
    }
    /* A callback above may have lost the connection already (a send that failed). */
    if (c->conn != NULL && crest__pq.PQstatus(c->conn) == CONNECTION_BAD)
        conn_lost(c, crest__pq.PQerrorMessage(c->conn));
}

/* ---- sending ---- */

/* Step st's parameters in libpq's text format: integers written in decimal into ints (INT_TEXT
 * bytes each), text pointing into q's arena (NUL-terminated there), NULL for NULL. */
#define INT_TEXT 24
static void text_args(const crest_db_query_t *q, const db_step_t *st, const char **vals,
                      char *ints) {
    for (uint32_t a = 0; a < st->nargs; a++) {
        const db_arg_t *arg = &q->args[st->first_arg + a];
        if (arg->kind == ARG_INT) {
            snprintf(ints + a * INT_TEXT, INT_TEXT, "%lld", (long long)arg->i);
            vals[a] = ints + a * INT_TEXT;
        } else {
            vals[a] = arg->kind == ARG_TEXT ? crest__db_arg_text(q, arg) : NULL;
        }
    }
}

static int send_batch(pgc_t *c, crest_db_query_t *q) {
    pg_loop_t *pl = c->pl;
    PGconn *conn = c->conn;
    if ((q->flags & CREST_DB_SNAPSHOT) &&
        !crest__pq.PQsendQueryParams(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0,
                                     NULL, NULL, NULL, NULL, 0))
        return CREST_ECONNRESET;
    if ((q->flags & CREST_DB_EXCLUSIVE) &&
        !crest__pq.PQsendQueryParams(conn, "SELECT pg_advisory_xact_lock(" EXCLUSIVE_KEY ")", 0,
                                     NULL, NULL, NULL, NULL, 0))
        return CREST_ECONNRESET;
    for (int i = 0; i < q->nsteps; i++) {
        db_step_t *st = &q->steps[i];
        const crest_db_sql_t *sql = st->sql;
        const char *name = sql->pgname;
        st->prepare_sent = 0;
        if (!c->prepared[sql->index]) {
            if (!crest__pq.PQsendPrepare(conn, name, sql->pgtext, 0, NULL))
                return CREST_ECONNRESET;
            c->prepared[sql->index] = 1;
            st->prepare_sent = 1;
        }
        if (st->nargs > pl->argcap) {
            const char **n = realloc(pl->argbuf, st->nargs * sizeof(*n));
            if (n == NULL)
                return CREST_ENOMEM;
            pl->argbuf = n;
            pl->argcap = st->nargs;
        }
        char small[8 * INT_TEXT], *ints = small;
        if (st->nargs > 8 && (ints = malloc((size_t)st->nargs * INT_TEXT)) == NULL)
            return CREST_ENOMEM;
        text_args(q, st, pl->argbuf, ints);
        int ok =
            crest__pq.PQsendQueryPrepared(conn, name, (int)st->nargs, pl->argbuf, NULL, NULL, 0);
        if (ints != small)
            free(ints);
        if (!ok)
            return CREST_ECONNRESET;
    }
    if ((q->flags & CREST_DB_SNAPSHOT) &&
        !crest__pq.PQsendQueryParams(conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
        return CREST_ECONNRESET;
    return 0;
}

/* Put q at the end of c's FIFO and send it, with a Sync after it unless `shared` (a read batch
 * that the next one may share a Sync with). Returns 0, or an error: the connection is then
 * unusable. */
static int send_one(pgc_t *c, crest_db_query_t *q, int shared) {
    q->next = NULL;
    q->seg_end = 0;
    int was_idle = c->head == NULL;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    int rc = send_batch(c, q);
    if (was_idle) {
        c->cur = first_op(q);
        c->err = 0;
        enter_op(c);
    }
    if (rc == 0 && !shared) {
        q->seg_end = 1;
        if (!crest__pq.PQpipelineSync(c->conn))
            rc = CREST_ECONNRESET;
    }
    return rc;
}

/* End the open read segment: the batch sent last gets the Sync. */
static int close_segment(pgc_t *c) {
    c->tail->seg_end = 1;
    return crest__pq.PQpipelineSync(c->conn) ? 0 : CREST_ECONNRESET;
}

/* Send every batch pending on c: read batches share a Sync, the others have their own. */
static void send_pending(pgc_t *c) {
    int open = 0; /* read batches sent since the last Sync */
    int rc = 0;
    while (c->pend_head != NULL && rc == 0) {
        crest_db_query_t *q = c->pend_head;
        /* A batch sent again goes alone: whatever else fails cannot abort it a second time. */
        int shared = is_read(q) && q->resent == 0;
        if (!shared && open) {
            open = 0;
            if ((rc = close_segment(c)) != 0)
                break; /* q is still pending: conn_lost moves it to the wait list */
        }
        c->pend_head = q->next;
        if (c->pend_head == NULL)
            c->pend_tail = NULL;
        rc = send_one(c, q, shared);
        open = shared;
    }
    if (rc == 0 && open)
        rc = close_segment(c);
    if (rc == CREST_ENOMEM) {
        /* What was sent cannot be taken back from libpq's buffer: the connection is unusable. */
        conn_lost(c, "out of memory while sending");
        return;
    }
    if (rc != 0) {
        conn_lost(c, crest__pq.PQerrorMessage(c->conn));
        return;
    }
    watch(c);
}

/* The end of the loop's turn: send what the turn's handlers asked for. A callback run from here
 * (a connection lost while sending) may add batches: go round again, since the check phase does
 * not come back before the loop next waits for events. */
static void on_flush(uv_check_t *h) {
    pg_loop_t *pl = CREST__CONTAINER_OF(h, pg_loop_t, flush);
    int left = 0;
    for (int round = 0; round < 8; round++) {
        left = 0;
        for (int i = 0; i < pl->nconns; i++) {
            pgc_t *c = &pl->conns[i];
            if (c->pend_head != NULL && c->state == C_READY) {
                send_pending(c);
                left = 1;
            }
        }
        if (!left)
            break;
    }
    if (!left)
        uv_check_stop(h);
}

/* Queue q on c (ready) for the end of this turn. */
static void pend(pgc_t *c, crest_db_query_t *q) {
    q->next = NULL;
    if (c->pend_tail)
        c->pend_tail->next = q;
    else
        c->pend_head = q;
    c->pend_tail = q;
    c->inflight++;
    uv_check_start(&c->pl->flush, on_flush);
}

/* ---- connecting ---- */

static void start_tick(pg_loop_t *pl);

static void poll_close_cb(uv_handle_t *h) {
    free(h);
}

static void unwatch(pgc_t *c) {
    if (c->poll != NULL) {
        uv_poll_stop(c->poll); /* before libpq closes the socket */
        uv_close((uv_handle_t *)c->poll, poll_close_cb);
        c->poll = NULL;
    }
    c->fd = -1;
}

static void fail_queue(crest_db_query_t *q, pg_loop_t *pl, int err, const char *msg) {
    while (q != NULL) {
        crest_db_query_t *next = q->next;
        queue_drop(pl);
        if (q->answered) {
            crest_db_query_free(q);
        } else {
            crest__db_set_error(q, msg);
            crest__db_finish(q, err);
        }
        q = next;
    }
}

static void conn_close(pgc_t *c) {
    unwatch(c);
    if (c->conn != NULL)
        crest__pq.PQfinish(c->conn);
    c->conn = NULL;
    memset(c->prepared, 0, CREST__DB_MAX_SQL);
}

/* Move c to state s, keeping the loop's count of ready connections (crest_app_metrics). */
static void set_state(pgc_t *c, int s) {
    int64_t delta = (s == C_READY) - (c->state == C_READY);
    if (delta != 0)
        crest__count(&crest__http_loop(c->pl->loop)->mod[CREST__MOD_DB_READY], delta);
    c->state = s;
}

static uint64_t now_ms(pg_loop_t *pl) {
    return uv_now(&pl->loop->uv);
}

static void schedule_retry(pgc_t *c) {
    pg_loop_t *pl = c->pl;
    set_state(c, C_DOWN);
    c->backoff = c->backoff ? c->backoff * 2 : RETRY_MIN_MS;
    if (c->backoff > RETRY_MAX_MS)
        c->backoff = RETRY_MAX_MS;
    c->retry_at = c->attempt_at + c->backoff;
    start_tick(pl);
}

static int any_up(pg_loop_t *pl) {
    for (int i = 0; i < pl->nconns; i++)
        if (pl->conns[i].state != C_DOWN)
            return 1;
    return 0;
}

static void log_line(pg_loop_t *pl, crest_log_level_t level, const char *what, const char *why) {
    /* libpq's messages end with a newline. */
    size_t n = why ? strcspn(why, "\n") : 0;
    crest__log_limited(pl->loop->rt, &pl->log_rl, level, "database: %s%s%.*s", what, n ? ": " : "",
                       (int)n, why ? why : "");
}

static void conn_lost(pgc_t *c, const char *why) {
    pg_loop_t *pl = c->pl;
    int was_ready = c->state == C_READY;
    char msg[256];
    snprintf(msg, sizeof(msg), "%s", why && *why ? why : "connection lost");
    crest_db_query_t *inflight = c->head;
    c->head = c->tail = NULL;
    c->inflight = 0;
    c->err = 0;
    /* Batches not sent yet lose nothing: they wait for a connection like new ones. */
    if (c->pend_head != NULL) {
        c->pend_tail->next = pl->wait_head;
        pl->wait_head = c->pend_head;
        if (pl->wait_tail == NULL)
            pl->wait_tail = c->pend_tail;
        c->pend_head = c->pend_tail = NULL;
    }
    c->stuck_since = 0;
    conn_close(c);
    schedule_retry(c);
    if (was_ready) {
        log_line(pl, CREST_LOG_WARN, "connection lost, reconnecting", msg);
        pl->was_down = 1;
        fail_queue(inflight, pl, CREST_ECONNRESET, msg);
    } else {
        if (!pl->was_down)
            log_line(pl, CREST_LOG_WARN, "cannot connect, retrying", msg);
        pl->was_down = 1;
    }
    /* Batches waiting for a connection: fail them unless another one may still take them. */
    if (!any_up(pl)) {
        crest_db_query_t *w = pl->wait_head;
        pl->wait_head = pl->wait_tail = NULL;
        fail_queue(w, pl, was_ready ? CREST_ECONNRESET : CREST_ECONNREFUSED, msg);
    }
}

static void flush_waiting(pg_loop_t *pl);
static void on_poll(uv_poll_t *h, int status, int events);

/* Watch the socket for what libpq needs: reading always once ready, writing while output is
 * left in libpq's buffer (or connecting asks for it). */
static void watch_events(pgc_t *c, int events) {
    int fd = crest__pq.PQsocket(c->conn);
    if (fd < 0) {
        conn_lost(c, "no socket");
        return;
    }
    if (c->poll == NULL || fd != c->fd) {
        unwatch(c);
        c->poll = malloc(sizeof(*c->poll));
        if (c->poll == NULL || uv_poll_init(&c->pl->loop->uv, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            conn_lost(c, "cannot watch the socket");
            return;
        }
        c->poll->data = c;
        c->fd = fd;
        c->events = 0;
    }
    if (events != c->events) {
        uv_poll_start(c->poll, events, on_poll);
        c->events = events;
    }
}

static void watch(pgc_t *c) {
    int rc = crest__pq.PQflush(c->conn);
    if (rc < 0) {
        conn_lost(c, crest__pq.PQerrorMessage(c->conn));
        return;
    }
    watch_events(c, UV_READABLE | (rc > 0 ? UV_WRITABLE : 0));
}

static void connect_step(pgc_t *c) {
    pg_loop_t *pl = c->pl;
    switch (crest__pq.PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING:
        watch_events(c, UV_READABLE);
        return;
    case PGRES_POLLING_WRITING:
        watch_events(c, UV_WRITABLE);
        return;
    case PGRES_POLLING_FAILED:
        conn_lost(c, crest__pq.PQerrorMessage(c->conn));
        return;
    default:
        break;
    }
    if (crest__pq.PQsetnonblocking(c->conn, 1) != 0 || !crest__pq.PQenterPipelineMode(c->conn)) {
        conn_lost(c, crest__pq.PQerrorMessage(c->conn));
        return;
    }
    set_state(c, C_READY);
    c->backoff = 0;
    if (pl->was_down)
        log_line(pl, CREST_LOG_INFO, "connected again", NULL);
    pl->was_down = 0;
    watch(c);
    if (c->state == C_READY)
        flush_waiting(pl);
}

static void conn_start(pgc_t *c) {
    pg_t *pg = c->pl->db->impl;
    c->attempt_at = now_ms(c->pl);
    set_state(c, C_CONNECTING);
    c->conn = crest__pq.PQconnectStartParams(pg->kw, pg->val, 0);
    if (c->conn == NULL) {
        conn_lost(c, "out of memory");
        return;
    }
    if (crest__pq.PQstatus(c->conn) == CONNECTION_BAD) {
        conn_lost(c, crest__pq.PQerrorMessage(c->conn));
        return;
    }
    connect_step(c);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    pgc_t *c = h->data;
    if (c->state == C_CONNECTING) {
        connect_step(c);
        return;
    }
    if (status < 0) {
        conn_lost(c, uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE) {
        watch(c);
        if (c->state != C_READY)
            return;
    }
    if (events & UV_READABLE)
        conn_read(c);
    if (c->state == C_READY && c->head == NULL && c->events != UV_READABLE)
        watch(c);
}

/* ---- the loop's queue ---- */

/* The ready connection with the fewest batches in flight, or NULL. */
static pgc_t *pick(pg_loop_t *pl) {
    pgc_t *best = NULL;
    for (int i = 0; i < pl->nconns; i++) {
        pgc_t *c = &pl->conns[i];
        if (c->state == C_READY && (best == NULL || c->inflight < best->inflight))
            best = c;
    }
    return best;
}

static void flush_waiting(pg_loop_t *pl) {
    pgc_t *c;
    while (pl->wait_head != NULL && (c = pick(pl)) != NULL) {
        crest_db_query_t *q = pl->wait_head;
        pl->wait_head = q->next;
        if (pl->wait_head == NULL)
            pl->wait_tail = NULL;
        pend(c, q);
    }
}

/* Time-outs and reconnects, every TICK_MS while anything is queued or a connection is down. */
static void on_tick(uv_timer_t *t) {
    pg_loop_t *pl = CREST__CONTAINER_OF(t, pg_loop_t, tick);
    uint64_t now = now_ms(pl);
    uint32_t timeout = pl->db->opts.timeout_ms;
    int needed = pl->queued > 0;
    /* Batches waiting for a connection past their time. */
    crest_db_query_t **pp = &pl->wait_head, *prev = NULL;
    while (*pp != NULL) {
        crest_db_query_t *q = *pp;
        if (now < q->deadline) {
            prev = q;
            pp = &q->next;
            continue;
        }
        *pp = q->next;
        if (pl->wait_tail == q)
            pl->wait_tail = prev;
        queue_drop(pl);
        crest__db_set_error(q, "no database connection in time");
        crest__db_finish(q, CREST_ETIMEDOUT);
    }
    for (int i = 0; i < pl->nconns; i++) {
        pgc_t *c = &pl->conns[i];
        if (c->state == C_DOWN) {
            needed = 1;
            if (now >= c->retry_at)
                conn_start(c);
            continue;
        }
        if (c->state == C_CONNECTING && now >= c->attempt_at + timeout) {
            conn_lost(c, "timed out connecting");
            continue;
        }
        /* Batches in flight past their time are answered now; their results will be dropped. */
        for (crest_db_query_t *q = c->head; q != NULL; q = q->next) {
            if (now < q->deadline)
                break;
            if (!q->answered) {
                q->answered = 1;
                if (q == c->head && c->stuck_since == 0)
                    c->stuck_since = now;
                crest__db_set_error(q, "the database did not answer in time");
                crest_req_t *req = q->req;
                int status = crest_req_aborted(req) ? CREST_ECANCELED : CREST_ETIMEDOUT;
                q->done(req, status, q, q->arg);
                if (c->state != C_READY)
                    break; /* the callback lost the connection: q is gone with it */
            }
        }
        if (c->stuck_since && now >= c->stuck_since + timeout)
            conn_lost(c, "no answer from the server");
    }
    if (!needed && pl->wait_head == NULL)
        uv_timer_stop(t);
}

static void start_tick(pg_loop_t *pl) {
    if (!uv_is_active((uv_handle_t *)&pl->tick))
        uv_timer_start(&pl->tick, on_tick, TICK_MS, TICK_MS);
}

static void handle_closed(uv_handle_t *h) {
    pg_loop_t *pl = h->data;
    if (--pl->closing == 0) {
        free(pl->argbuf);
        for (int i = 0; i < pl->nconns; i++)
            free(pl->conns[i].prepared);
        free(pl->conns);
        free(pl);
    }
}

/* The loop is done: every batch it holds is cancelled, every connection closed. */
static void loop_finish(crest__loop_ext_t *ext, crest_loop_t *loop) {
    pg_loop_t *pl = (pg_loop_t *)ext;
    for (int i = 0; i < pl->nconns; i++) {
        pgc_t *c = &pl->conns[i];
        crest_db_query_t *q = c->head;
        c->head = c->tail = NULL;
        conn_close(c);
        set_state(c, C_DOWN);
        fail_queue(q, pl, CREST_ECANCELED, "the server is stopping");
        q = c->pend_head;
        c->pend_head = c->pend_tail = NULL;
        fail_queue(q, pl, CREST_ECANCELED, "the server is stopping");
    }
    crest_db_query_t *w = pl->wait_head;
    pl->wait_head = pl->wait_tail = NULL;
    fail_queue(w, pl, CREST_ECANCELED, "the server is stopping");
    crest__count(&crest__http_loop(loop)->mod[CREST__MOD_DB_CONNS], -pl->nconns);
    pl->closing = 2;
    pl->tick.data = pl;
    pl->flush.data = pl;
    uv_close((uv_handle_t *)&pl->tick, handle_closed);
    uv_close((uv_handle_t *)&pl->flush, handle_closed);
}

static pg_loop_t *loop_state(crest_db_t *db, crest_loop_t *loop) {
    pg_loop_t *pl = (pg_loop_t *)crest__loop_ext_find(loop, db);
    if (pl != NULL)
        return pl;
    pl = calloc(1, sizeof(*pl));
    if (pl == NULL)
        return NULL;
    pl->conns = calloc((size_t)db->opts.conns_per_loop, sizeof(*pl->conns));
    if (pl->conns == NULL) {
        free(pl);
        return NULL;
    }
    pl->nconns = db->opts.conns_per_loop;
    for (int i = 0; i < pl->nconns; i++) {
        pgc_t *c = &pl->conns[i];
        c->pl = pl;
        c->fd = -1;
        c->state = C_DOWN;
        if ((c->prepared = calloc(CREST__DB_MAX_SQL, 1)) == NULL) {
            for (int j = 0; j < i; j++)
                free(pl->conns[j].prepared);
            free(pl->conns);
            free(pl);
            return NULL;
        }
    }
    pl->db = db;
    pl->loop = loop;
    uv_timer_init(&loop->uv, &pl->tick);
    uv_check_init(&loop->uv, &pl->flush);
    pl->ext.owner = db;
    pl->ext.finish = loop_finish;
    crest__loop_ext_add(loop, &pl->ext);
    crest__count(&crest__http_loop(loop)->mod[CREST__MOD_DB_CONNS], pl->nconns);
    return pl;
}

static int pg_run(crest_db_query_t *q) {
    if (q->loop->finished)
        return CREST_ECANCELED;
    pg_loop_t *pl = loop_state(q->db, q->loop);
    if (pl == NULL)
        return CREST_ENOMEM;
    if (pl->queued >= q->db->opts.max_queue)
        return CREST_EAGAIN;
    q->answered = 0;
    q->deadline = now_ms(pl) + q->db->opts.timeout_ms;
    pl->queued++;
    start_tick(pl);
    pgc_t *c = pick(pl);
    if (c != NULL) {
        pend(c, q);
        return 0;
    }
    q->next = NULL;
    if (pl->wait_tail)
        pl->wait_tail->next = q;
    else
        pl->wait_head = q;
    pl->wait_tail = q;
    /* Nobody is connecting: try now, unless an attempt began less than RETRY_MIN_MS ago (then
     * the tick tries then). A request waits at most that long for a server that is down. */
    uint64_t now = now_ms(pl);
    for (int i = 0; i < pl->nconns && !any_up(pl); i++) {
        pgc_t *d = &pl->conns[i];
        if (d->attempt_at == 0 || now >= d->attempt_at + RETRY_MIN_MS)
            conn_start(d); /* may fail every waiting batch, q included, at once */
        else if (d->retry_at > d->attempt_at + RETRY_MIN_MS)
            d->retry_at = d->attempt_at + RETRY_MIN_MS;
    }
    return 0;
}

/* ---- blocking use: start-up and worker threads ---- */

static int sync_exec(PGconn *conn, crest_db_query_t *q, const char *sql, int nargs,
                     const char *const *vals, db_step_t *st) {
    PGresult *r = crest__pq.PQexecParams(conn, sql, nargs, NULL, vals, NULL, NULL, 0);
    int rc = 0;
    ExecStatusType s = crest__pq.PQresultStatus(r);
    if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK)
        rc = st ? keep_rows(q, st, r) : 0;
    else
        rc = r ? result_error(q, r) : CREST_ENOMEM;
    crest__pq.PQclear(r);
    return rc;
}

static int pg_run_sync(crest_db_query_t *q) {
    pg_t *pg = q->db->impl;
    pthread_mutex_lock(&pg->sync_lock);
    if (pg->sync_conn == NULL || crest__pq.PQstatus(pg->sync_conn) != CONNECTION_OK) {
        crest__pq.PQfinish(pg->sync_conn);
        pg->sync_conn = crest__pq.PQconnectdbParams(pg->kw, pg->val, 0);
    }
    PGconn *conn = pg->sync_conn;
    int rc = 0;
    if (conn == NULL || crest__pq.PQstatus(conn) != CONNECTION_OK) {
        crest__db_set_error(q, conn ? crest__pq.PQerrorMessage(conn) : "out of memory");
        rc = CREST_ECONNREFUSED;
        goto out;
    }
    rc = sync_exec(
        conn, q, (q->flags & CREST_DB_SNAPSHOT) ? "BEGIN ISOLATION LEVEL REPEATABLE READ" : "BEGIN",
        0, NULL, NULL);
    if (rc == 0 && (q->flags & CREST_DB_EXCLUSIVE))
        rc = sync_exec(conn, q, "SELECT pg_advisory_xact_lock(" EXCLUSIVE_KEY ")", 0, NULL, NULL);
    for (int i = 0; i < q->nsteps && rc == 0; i++) {
        db_step_t *st = &q->steps[i];
        const char **vals = calloc(st->nargs ? st->nargs : 1, sizeof(*vals));
        char *ints = malloc((size_t)(st->nargs ? st->nargs : 1) * INT_TEXT);
        if (vals == NULL || ints == NULL) {
            free(vals);
            free(ints);
            rc = CREST_ENOMEM;
            break;
        }
        text_args(q, st, vals, ints);
        rc = sync_exec(conn, q, st->sql->pgtext, (int)st->nargs, vals, st);
        free(vals);
        free(ints);
    }
    if (rc == 0)
        rc = sync_exec(conn, q, "COMMIT", 0, NULL, NULL);
    else
        crest__pq.PQclear(crest__pq.PQexec(conn, "ROLLBACK"));
out:
    pthread_mutex_unlock(&pg->sync_lock);
    return rc;
}

/* ---- opening ---- */

static void pg_close(crest_db_t *db) {
    pg_t *pg = db->impl;
    if (pg == NULL)
        return;
    crest__pq.PQfinish(pg->sync_conn);
    pthread_mutex_destroy(&pg->sync_lock);
    free(pg->kw);
    free(pg->val);
    free(pg->store);
    free(pg);
    db->impl = NULL;
}

static const crest__db_backend_t pg_backend = {
    .name = "postgres",
    .run = pg_run,
    .run_sync = pg_run_sync,
    .close = pg_close,
};

/* Copy s into the store at *at; returns where it went. */
static const char *keep(char **at, const char *s) {
    size_t n = strlen(s) + 1;
    memcpy(*at, s, n);
    const char *p = *at;
    *at += n;
    return p;
}

/* The URL's parameters plus crest's: the session settings crest relies on (added to any options
 * the URL has), GSSAPI encryption off unless asked for, a resolved host address. */
static int build_params(crest_db_t *db, pg_t *pg, const char *url) {
    char *err = NULL;
    PQconninfoOption *opts = crest__pq.PQconninfoParse(url, &err);
    if (opts == NULL) {
        snprintf(db->errmsg, sizeof(db->errmsg), "%s", err ? err : "out of memory");
        db->errmsg[strcspn(db->errmsg, "\n")] = '\0';
        crest__pq.PQfreemem(err);
        return err ? CREST_EINVAL : CREST_ENOMEM;
    }
    const char *host = NULL, *hostaddr = NULL, *options = "", *gss = NULL, *app = NULL;
    size_t n = 0, bytes = 0;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        n++;
        bytes += strlen(o->keyword) + strlen(o->val) + 2;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "options") == 0)
            options = o->val;
        else if (strcmp(o->keyword, "gssencmode") == 0)
            gss = o->val;
        else if (strcmp(o->keyword, "application_name") == 0)
            app = o->val;
    }
    char resolved[INET6_ADDRSTRLEN] = "";
    if (host != NULL && hostaddr == NULL && host[0] != '/' && host[0] != '@' &&
        strchr(host, ',') == NULL) {
        struct addrinfo hints = {0}, *ai = NULL;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, NULL, &hints, &ai);
        if (rc != 0) {
            snprintf(db->errmsg, sizeof(db->errmsg), "cannot resolve %s: %s", host,
                     gai_strerror(rc));
            crest__pq.PQconninfoFree(opts);
            return CREST_ECONNREFUSED;
        }
        const void *addr = ai->ai_family == AF_INET6
                               ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
                               : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
        inet_ntop(ai->ai_family, addr, resolved, sizeof(resolved));
        freeaddrinfo(ai);
    }
    char session[160];
    snprintf(session, sizeof(session), "%s%s-c statement_timeout=%u -c synchronous_commit=on",
             options, *options ? " " : "", db->opts.timeout_ms);
    bytes += strlen(session) + strlen(resolved) + 64;
    pg->kw = calloc(n + 5, sizeof(*pg->kw));
    pg->val = calloc(n + 5, sizeof(*pg->val));
    pg->store = malloc(bytes);
    if (pg->kw == NULL || pg->val == NULL || pg->store == NULL) {
        crest__pq.PQconninfoFree(opts);
        return CREST_ENOMEM;
    }
    char *at = pg->store;
    size_t k = 0;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val == NULL || strcmp(o->keyword, "options") == 0)
            continue;
        pg->kw[k] = keep(&at, o->keyword);
        pg->val[k++] = keep(&at, o->val);
    }
    pg->kw[k] = "options";
    pg->val[k++] = keep(&at, session);
    if (gss == NULL) {
        pg->kw[k] = "gssencmode";
        pg->val[k++] = "disable";
    }
    if (app == NULL) {
        pg->kw[k] = "application_name";
        pg->val[k++] = "crest";
    }
    if (resolved[0]) {
        pg->kw[k] = "hostaddr";
        pg->val[k++] = keep(&at, resolved);
    }
    crest__pq.PQconninfoFree(opts);
    return 0;
}

int crest__pg_open(crest_db_t *db, const char *url) {
    int rc = crest__pq_load(db->errmsg, sizeof(db->errmsg));
    if (rc != 0)
        return rc;
    pg_t *pg = calloc(1, sizeof(*pg));
    if (pg == NULL)
        return CREST_ENOMEM;
    pthread_mutex_init(&pg->sync_lock, NULL);
    db->impl = pg;
    db->backend = &pg_backend;
    rc = build_params(db, pg, url);
    if (rc != 0)
        return rc;
    /* A first, blocking connection: a wrong URL or a server that is not there is reported at
     * start, with libpq's message. It stays for crest_db_run_sync. */
    pg->sync_conn = crest__pq.PQconnectdbParams(pg->kw, pg->val, 0);
    if (pg->sync_conn == NULL)
        return CREST_ENOMEM;
    if (crest__pq.PQstatus(pg->sync_conn) != CONNECTION_OK) {
        snprintf(db->errmsg, sizeof(db->errmsg), "%s", crest__pq.PQerrorMessage(pg->sync_conn));
        db->errmsg[strcspn(db->errmsg, "\n")] = '\0';
        return CREST_ECONNREFUSED;
    }
    return 0;
}
