/* The embedded database: SQLite with one connection per thread and cached prepared statements.
 *
 * Every thread that touches a database gets its own connection on first use (loop threads,
 * worker-pool threads, the main thread), so no lock is shared on the request path; statements
 * are prepared once per connection and reused. The file runs in WAL mode: readers never wait for
 * the writer and the writer never waits for readers, so point reads can run on a loop thread
 * while writes commit on the worker pool.
 *
 * Where to run what: a read of a few rows by primary key takes microseconds and belongs on the
 * loop thread; anything that commits (an fsync at synchronous=FULL: a millisecond or far more on
 * a busy disk) or scans belongs on the worker pool (crest/work.h).
 *
 * Objects returned here belong to the calling thread's connection: use a statement only on the
 * thread that prepared it. */
#ifndef CREST_DB_H
#define CREST_DB_H

#include <stddef.h>
#include <stdint.h>

#include "crest/export.h"
#include "crest/http.h"

typedef struct crest_db_s crest_db_t;
typedef struct crest_db_stmt_s crest_db_stmt_t;

/* What crest_db_step() returns besides errors. */
enum { CREST_DB_DONE = 0, CREST_DB_ROW = 1 };

/* Open the database named by `url`: "sqlite:PATH" (the file is created if missing; the path is
 * relative to the working directory). A query string sets options: "?synchronous=normal" trades
 * durability across power loss for faster commits (see db.c; the default, full, survives both
 * kill -9 and power loss). Switches the file to WAL mode. Call from any thread; the handle is
 * shared by all threads. Returns 0 and *out, CREST_ENOTSUP for another scheme (postgres:// is
 * not built yet), CREST_EINVAL for a malformed URL, or the error opening the file. */
CREST_API int crest_db_open(const char *url, crest_db_t **out);
/* Close every thread's connection and free the handle. Call once no thread uses it any more
 * (after crest_app_run() has returned). NULL is a no-op. */
CREST_API void crest_db_close(crest_db_t *db);

/* Run SQL without results (DDL, "BEGIN IMMEDIATE", "COMMIT") on the calling thread's connection.
 * Returns 0 or a negative error: CREST_EBUSY when the database stayed locked beyond the busy
 * timeout (5 s), CREST_EINVAL for an SQL error, CREST_ENOMEM, or -EIO. */
CREST_API int crest_db_exec(crest_db_t *db, const char *sql);

/* The calling thread's prepared statement for `sql`, prepared on first use and then reused: the
 * cache is keyed by the string's address, so pass a string that lives as long as the database (a
 * literal). Returns 0 and *out (reset, no bindings), or an error as crest_db_exec(). */
CREST_API int crest_db_prepare(crest_db_t *db, const char *sql, crest_db_stmt_t **out);
/* Bind parameter `idx` (1-based, as "?" numbering) to an integer or to text (copied). */
CREST_API int crest_db_bind_int(crest_db_stmt_t *st, int idx, int64_t v);
CREST_API int crest_db_bind_text(crest_db_stmt_t *st, int idx, const char *s, size_t len);
/* Run the statement to its next row: CREST_DB_ROW, CREST_DB_DONE, or a negative error (as
 * crest_db_exec()). After DONE or an error, call crest_db_reset() before reusing it. */
CREST_API int crest_db_step(crest_db_stmt_t *st);
/* Column `col` (0-based) of the current row. Text is valid until the next step or reset. */
CREST_API int64_t crest_db_col_int(crest_db_stmt_t *st, int col);
CREST_API crest_str_t crest_db_col_text(crest_db_stmt_t *st, int col);
/* Make the statement ready to run again and clear its bindings. */
CREST_API void crest_db_reset(crest_db_stmt_t *st);

/* The rowid of the calling thread's last INSERT, and the rows changed by its last statement. */
CREST_API int64_t crest_db_last_insert_id(crest_db_t *db);
CREST_API int crest_db_changes(crest_db_t *db);
/* The calling thread's last error message ("" if none). Valid until its next database call. */
CREST_API const char *crest_db_errmsg(crest_db_t *db);

#endif
