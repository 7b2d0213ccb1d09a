/* The CPU worker pool: run work that would block a loop thread (hashing, compression, blocking
 * database calls) on threads of its own, and finish the request back on its loop thread.
 *
 * The pool is separate from the loop threads and from libuv's file-system/DNS pool, so a long job
 * neither stalls other connections nor file I/O. Its queue is bounded: when it is full a submit
 * fails with CREST_EAGAIN and the handler answers 503 (crest_work_busy). */
#ifndef CREST_WORK_H
#define CREST_WORK_H

#include <stddef.h>

#include "crest/app.h"
#include "crest/export.h"
#include "crest/http.h"

typedef struct {
    int workers;      /* worker threads; 0 (default) means the number of CPUs */
    size_t max_queue; /* jobs waiting for a worker (not counting running ones); default 1024 */
    int nice;         /* added to the workers' nice value (0-19); default 10. Workers also run as
                         SCHED_BATCH with a long time slice, so that a loop thread waking on a busy
                         CPU runs at once instead of waiting out a worker's slice (src/work/pool.c) */
} crest_work_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_work_opts_default(crest_work_opts_t *opts);

/* Give `app` a worker pool (NULL opts for the defaults) and start its threads. Call once, before
 * crest_app_run(), on the thread that builds the app. The app owns the pool: crest_app_run()
 * stops it after every loop thread has ended (jobs running finish, jobs still queued are
 * cancelled), and crest_app_free() stops it for an app that never ran. Returns 0, CREST_EEXIST
 * when the app already has one, CREST_EBUSY when the app is running, CREST_ENOMEM, or an error
 * from thread creation. */
CREST_API int crest_app_workers(crest_app_t *app, const crest_work_opts_t *opts);

/* The number of worker threads of the app's pool; 0 when it has none. Any thread. */
CREST_API int crest_app_worker_count(const crest_app_t *app);

/* Runs on a worker thread. It must not touch the request (it belongs to its loop thread): copy
 * what it needs into `arg` before submitting. */
typedef void (*crest_work_cb)(void *arg);

/* Runs on the loop thread that owns `req` once the work is over, and must make a finishing call
 * on req (crest_res_send*, crest_res_status, crest_res_end, ...), or go on with it: submit the
 * next job for req (a response produced in slices), or wait for a crest_res_on_drain callback
 * (then req's abort callback must be set anew: the job's is gone). `status` is 0 when work ran to
 * its end, or
 * CREST_ECANCELED when the client went away (work may or may not have run; answering then only
 * frees the request) or the app stopped first. In that last case, after a forced shutdown, done
 * runs on the thread that called crest_app_run(), after the loop threads have ended, and must
 * only release what it holds and finish the request. */
typedef void (*crest_work_done_cb)(crest_req_t *req, int status, void *arg);

/* Run work(arg) on the app's worker pool, then done(req, status, arg) on req's loop thread. Call
 * from req's loop thread (from a handler or later); the handler then returns 0 and answers in
 * done. This sets req's abort callback (replacing one set before): a client that leaves while
 * the job waits makes the job skip `work`. Returns 0 (done will be called exactly once, never
 * before this returns), CREST_EAGAIN when the queue is full (answer 503, see crest_work_busy),
 * CREST_ENOTSUP when the app has no pool, CREST_ECANCELED when it is stopping, CREST_ENOMEM. On
 * an error neither callback is called and the caller still owns req and arg. */
CREST_API int crest_work_submit(crest_req_t *req, crest_work_cb work, crest_work_done_cb done,
                                void *arg);

/* Answer the request 503 with `Retry-After: 1` and a JSON error body: the reply to a full queue.
 * Finishing call. */
CREST_API int crest_work_busy(crest_req_t *req);

#endif
