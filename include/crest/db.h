/* One database API, two backends: SQLite (an embedded file, the default) and PostgreSQL.
 *
 * An application declares its statements once at start-up (crest_db_statement), then sends
 * batches of them (crest_db_query + crest_db_add + crest_db_arg_*) and reads the rows when the
 * batch's callback runs on the request's loop thread. Parameters are always bound, never pasted
 * into SQL. The same code runs on both backends:
 * - Statements are written in SQLite's dialect with `?` or `?N` placeholders; on PostgreSQL crest
 *   turns them into `$N`, and `INTEGER PRIMARY KEY AUTOINCREMENT` into a 64-bit identity column.
 *   Beyond that, write SQL both engines accept (RETURNING instead of last-insert-id, coalesce,
 *   LIMIT/OFFSET, BIGINT for integers wider than 32 bits on PostgreSQL).
 * - A batch is one transaction: it succeeds or fails whole. On PostgreSQL each statement sees
 *   what was committed when it began (READ COMMITTED) unless the batch asks for one snapshot
 *   (CREST_DB_SNAPSHOT); on SQLite a batch always reads one snapshot. A batch flagged
 *   CREST_DB_WRITE is committed durably before its callback runs (SQLite: synchronous=FULL;
 * PostgreSQL: synchronous_commit=on), so a 2xx sent from the callback survives kill -9 and, on
 * SQLite's default, power loss.
 *
 * Where a batch runs:
 * - SQLite, read batch: at once, on the calling loop thread, from that thread's own connection and
 *   cached statements (a point read takes microseconds: handing it to another thread would cost
 *   more). The file is in WAL mode, so readers never wait for the writer.
 * - SQLite, write batch: on the database's writer thread. Writers queued while a commit is under
 *   way share the next one (group commit): one fsync for all of them, each batch still its own
 *   all-or-nothing unit (a savepoint), so one batch failing never fails another. * - PostgreSQL: on
 * the loop thread's own connections (libpq, non-blocking, pipeline mode). Batches a loop thread
 * sends in one turn of its loop go out together, in one write, at the end of the turn; read batches
 * share one sync point and a batch that writes has its own, and a batch that fails never fails its
 * neighbours (those it aborted are sent again). Statements are prepared once per connection. A
 * batch waits at most opts.timeout_ms; while PostgreSQL is unreachable batches fail fast
 * (CREST_ECONNREFUSED) and crest reconnects by itself with backoff.
 *
 * Errors are CREST_E* codes; crest_db_error() gives the backend's message. Those that mean "try
 * again later" (answer 503 with Retry-After) are listed by crest_db_retryable(). */
#ifndef CREST_DB_H
#define CREST_DB_H

#include <stddef.h>
#include <stdint.h>

#include "crest/buf.h"
#include "crest/export.h"
#include "crest/http.h"

typedef struct crest_db_s crest_db_t;
typedef struct crest_db_sql_s crest_db_sql_t;
typedef struct crest_db_query_s crest_db_query_t;

typedef struct {
    int conns_per_loop;  /* PostgreSQL: connections per loop thread (default 1) */
    uint32_t timeout_ms; /* a batch not answered in this time fails with CREST_ETIMEDOUT; on
                            PostgreSQL also the server's statement_timeout (default 5000) */
    size_t max_queue;    /* batches waiting or in flight per loop thread (PostgreSQL), or waiting
                            for the writer thread (SQLite); past it crest_db_run fails with
                            CREST_EAGAIN (default 1024) */
} crest_db_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_db_opts_default(crest_db_opts_t *opts);

/* Open the database named by `url` (NULL opts for the defaults):
 * - "sqlite:PATH[?synchronous=normal|full]": the file is created if missing (PATH relative to
 *   the working directory) and switched to WAL mode. synchronous=normal trades durability across
 *   power loss for faster commits; the default, full, survives both kill -9 and power loss.
 * - "postgres://..." or "postgresql://..." (libpq's URL syntax; sslmode and the other libpq
 *   parameters are honoured): checks that the server answers, with a blocking connection made
 *   here. Loop threads open their own connections when they first need them.
 * Call from any thread but a loop thread (it blocks). The handle is shared by all threads.
 * Returns 0 and *out, CREST_EINVAL for a malformed URL or an unknown scheme, or the error opening
 * the database (CREST_ECONNREFUSED when PostgreSQL does not answer). On an error *out is still
 * set unless memory ran out: read crest_db_last_error(*out) for the reason, then close it. */
CREST_API int crest_db_open(const char *url, const crest_db_opts_t *opts, crest_db_t **out);
/* Close every connection and free the handle, the statements and the writer thread. Call once no
 * thread uses it any more: after crest_app_run() has returned. NULL is a no-op. */
CREST_API void crest_db_close(crest_db_t *db);
/* "sqlite" or "postgres". */
CREST_API const char *crest_db_backend(const crest_db_t *db);
/* The message of the last error met by crest_db_open() or crest_db_statement() ("" if none). */
CREST_API const char *crest_db_last_error(const crest_db_t *db);

/* Declare one SQL statement (no trailing `;` needed, one statement only). `sql` is copied: a
 * buffer it was built in may be reused at once. It is prepared on each connection the first time
 * it runs there and reused after that (kept by handle, whatever the text's address was). Call at
 * start-up, before crest_app_run() (any thread may declare while none runs queries; not
 * concurrently with queries). The handle lives until crest_db_close(). Returns 0 and *out,
 * CREST_EINVAL for a placeholder numbering crest cannot translate (the message in
 * crest_db_last_error()), CREST_ENOMEM. The SQL itself is checked when it first runs. */
CREST_API int crest_db_statement(crest_db_t *db, const char *sql, crest_db_sql_t **out);

enum {
    /* The batch writes: it commits durably before its callback runs (see above). */
    CREST_DB_WRITE = 1 << 0,
    /* With CREST_DB_WRITE: run alone against every other instance on the same database (start-up
     * schema and seeding). SQLite's write lock already does that; on PostgreSQL the transaction
     * first takes an advisory lock. */
    CREST_DB_EXCLUSIVE = 1 << 1,
    /* A read batch whose statements must all see one snapshot (PostgreSQL: REPEATABLE READ, READ
     * ONLY; SQLite's batches always do). */
    CREST_DB_SNAPSHOT = 1 << 2,
};

/* A new, empty batch. Add statements with crest_db_add() and bind each one's parameters, in
 * order, with crest_db_arg_*() right after it. Building never fails by return value: an error
 * (memory, a parameter too many) is kept and returned by crest_db_run(). Returns NULL only when
 * memory ran out. Owner: the caller until crest_db_run(); use it on one thread. */
CREST_API crest_db_query_t *crest_db_query(crest_db_t *db, int flags);
/* Append a statement to the batch. */
CREST_API void crest_db_add(crest_db_query_t *q, const crest_db_sql_t *sql);
/* Bind the next parameter of the statement added last: an integer, text (copied; len bytes, no
 * NUL needed) or NULL. */
CREST_API void crest_db_arg_int(crest_db_query_t *q, int64_t v);
CREST_API void crest_db_arg_text(crest_db_query_t *q, const char *s, size_t len);
CREST_API void crest_db_arg_null(crest_db_query_t *q);
/* Keep the rows of the statement added last to about `bytes` of values: rows stop after the one
 * that reaches it (at least one row is kept) and crest_db_cut() says so. What lies beyond is never
 * held in memory: SQLite stops stepping, PostgreSQL's rows are read one at a time and dropped.
 * Use it with a LIMIT to read a long result in slices, each resuming after the last row kept. */
CREST_API void crest_db_limit_bytes(crest_db_query_t *q, size_t bytes);

/* Runs on req's loop thread when the batch is over. `status` is 0 (committed, for a write batch;
 * read the results now: they and q are freed when this returns), CREST_ECANCELED when the client
 * went away (answering then only frees the request) or the app is stopping, or the batch's error
 * (CREST_ETIMEDOUT, CREST_ECONNREFUSED, CREST_ECONNRESET, CREST_EEXIST for a constraint, ...;
 * crest_db_error(q) has the backend's message). It must make a finishing call on req or go on
 * with it (another batch, a worker job). */
typedef void (*crest_db_done_cb)(crest_req_t *req, int status, crest_db_query_t *q, void *arg);

/* Send the batch for `req` from req's loop thread; done(req, status, q, arg) runs exactly once
 * afterwards on that thread. done MAY RUN BEFORE THIS RETURNS (a read batch on SQLite runs at
 * once): after the call, touch neither q nor req (return 0 from the handler). Returns 0, or an
 * error without calling done (the caller keeps req and the batch is freed): the error recorded
 * while building, CREST_EAGAIN when the queue is full (answer 503 with Retry-After),
 * CREST_ECANCELED while the app stops. */
CREST_API int crest_db_run(crest_db_query_t *q, crest_req_t *req, crest_db_done_cb done, void *arg);

/* Run the batch on the calling thread and wait for it (start-up, a worker job; never on a loop
 * thread: it blocks). Returns 0 or the error as above; read the results, then free q with
 * crest_db_query_free(). On PostgreSQL it uses a connection of its own, one at a time. */
CREST_API int crest_db_run_sync(crest_db_query_t *q);
/* Free a batch after crest_db_run_sync(), or one never run. NULL is a no-op. */
CREST_API void crest_db_query_free(crest_db_query_t *q);

/* ---- results, for statement `i` (0-based, in the order added) of a finished batch ---- */

/* Rows returned. */
CREST_API int crest_db_rows(const crest_db_query_t *q, int i);
/* Column `col` of row `row`: an integer (0 for NULL or text that is not a number), text (valid
 * while q is; "" for NULL), or whether it is NULL. */
CREST_API int64_t crest_db_int(const crest_db_query_t *q, int i, int row, int col);
CREST_API crest_str_t crest_db_text(const crest_db_query_t *q, int i, int row, int col);
CREST_API int crest_db_is_null(const crest_db_query_t *q, int i, int row, int col);
/* Rows inserted, changed or deleted by statement i. */
CREST_API int64_t crest_db_changes(const crest_db_query_t *q, int i);
/* 1 when statement i's rows were cut at its crest_db_limit_bytes(). */
CREST_API int crest_db_cut(const crest_db_query_t *q, int i);
/* The backend's message for the batch's error ("" when none). Valid while q is. */
CREST_API const char *crest_db_error(const crest_db_query_t *q);

/* 1 for the errors that mean "the database is busy or away, try again" (queue full, timeout,
 * unreachable, connection lost, lock contention, deadlock): answer 503 with Retry-After. */
CREST_API int crest_db_retryable(int err);

/* ---- answers ---- */

struct crest_schema_s; /* crest/json.h */
/* Append row `row` of statement i as a JSON object shaped by `schema` (crest/json.h): column k is
 * the k-th field, named by it and written as its type says (INT a number, BOOL true or false from
 * an integer, STRING a JSON string, NUMBER and the others the column's text as it is, NULL
 * null). The schema that validates and documents an object also writes it. Returns 0 or the
 * buffer's error (CREST_ENOMEM). */
CREST_API int crest_db_json_row(crest_buf_t *out, const crest_db_query_t *q, int i, int row,
                                const struct crest_schema_s *schema);
/* The rows of statement i, at most `max` of them (-1: all), as a JSON array of such objects. */
CREST_API int crest_db_json_rows(crest_buf_t *out, const crest_db_query_t *q, int i, int max,
                                 const struct crest_schema_s *schema);
/* Answer a batch's error (crest_db_done_cb's status) with crest_res_error(): 503 with
 * Retry-After for the errors worth retrying (crest_db_retryable) and for a stop, 500 otherwise,
 * with the backend's message. Finishing call. */
CREST_API int crest_db_res_error(crest_req_t *req, int status, const crest_db_query_t *q);

#endif
