/* Requests on the worker pool: a job carries its request to a worker and back to the request's
 * loop thread through that loop's inbox.
 *
 * Lifetimes. The job owns nothing of the request but a pointer; the request stays valid until the
 * done callback makes its finishing call (crest/http.h: an aborted request lives until then), so
 * nothing is freed twice and nothing is touched after it is freed:
 * - client leaves while the job waits: the abort callback (loop thread) sets `gone`; the worker
 *   sees it and skips the work; done still runs on the loop with CREST_ECANCELED and its
 *   finishing call frees the request.
 * - the loop has ended when the job completes (a forced shutdown closed its connections, or the
 *   request was aborted and the loop drained): crest_loop_post fails, the job is parked on the
 *   pool's orphan list and done runs at pool stop, after every loop thread has been joined.
 * - the pool stops with jobs still queued: they are cancelled and parked the same way. */
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "http/http.h"
#include "work/pool.h"

typedef struct work_pool_s work_pool_t;

typedef struct req_job_s {
    crest__job_t job;
    work_pool_t *owner;
    crest_req_t *req;
    crest_loop_t *loop;
    crest_work_cb work;
    crest_work_done_cb done;
    void *arg;
    atomic_int gone; /* set on the loop thread when the client left; read by the worker */
    int status;
    uint64_t submitted; /* uv_hrtime(): the job's time, queue included, for /metrics */
    struct req_job_s *next_orphan;
} req_job_t;

/* Owner: the app (app->rt.work). */
struct work_pool_s {
    crest__rt_ext_t ext; /* first: app->rt.work points here */
    crest__pool_t *pool;
    crest_app_t *app; /* the pool's metrics source is listed there */
    int workers;
    pthread_mutex_t orphans_lock;
    req_job_t *orphans; /* guarded by orphans_lock: completions no loop could take */
};

void crest_work_opts_default(crest_work_opts_t *opts) {
    opts->workers = 0;
    opts->max_queue = 1024;
    opts->nice = 10;
}

static void park(req_job_t *j, int status) {
    j->status = status;
    pthread_mutex_lock(&j->owner->orphans_lock);
    j->next_orphan = j->owner->orphans;
    j->owner->orphans = j;
    pthread_mutex_unlock(&j->owner->orphans_lock);
}

static void on_done(crest_loop_t *loop, void *arg) {
    req_job_t *j = arg;
    crest__http_loop_t *hl = crest__http_loop(loop);
    crest__count(&hl->mod[CREST__MOD_WORK_JOBS], 1);
    crest__hist_add(&hl->mod[CREST__MOD_WORK_HIST], uv_hrtime() - j->submitted);
    crest_req_t *req = j->req;
    int status = j->status;
    if (status == 0 && crest_req_aborted(req))
        status = CREST_ECANCELED;
    crest_req_on_abort(req, NULL, NULL);
    crest_work_done_cb done = j->done;
    void *uarg = j->arg;
    free(j);
    done(req, status, uarg);
}

static void on_run(crest__job_t *job) {
    req_job_t *j = CREST__CONTAINER_OF(job, req_job_t, job);
    if (atomic_load_explicit(&j->gone, memory_order_relaxed))
        j->status = CREST_ECANCELED;
    else
        j->work(j->arg);
    if (crest_loop_post(j->loop, on_done, j) != 0)
        park(j, j->status ? j->status : CREST_ECANCELED);
}

static void on_cancel(crest__job_t *job) {
    park(CREST__CONTAINER_OF(job, req_job_t, job), CREST_ECANCELED);
}

static void on_abort(crest_req_t *req, void *arg) {
    (void)req;
    req_job_t *j = arg;
    atomic_store_explicit(&j->gone, 1, memory_order_relaxed);
}

/* The pool's lines of crest_app_metrics; job counts and times are kept per loop thread (in
 * crest__http_loop_t.mod), where each job's completion runs. */
static void write_metrics(const crest_app_t *app, void *arg, crest_buf_t *b) {
    work_pool_t *wp = arg;
    crest_buf_printf(b,
                     "# HELP crest_work_workers Worker threads of the CPU pool.\n"
                     "# TYPE crest_work_workers gauge\n"
                     "crest_work_workers %d\n"
                     "# HELP crest_work_queued_jobs Jobs waiting for a worker now.\n"
                     "# TYPE crest_work_queued_jobs gauge\n"
                     "crest_work_queued_jobs %zu\n"
                     "# HELP crest_work_jobs_total Jobs completed (or cancelled) and handed back.\n"
                     "# TYPE crest_work_jobs_total counter\n"
                     "crest_work_jobs_total %llu\n"
                     "# HELP crest_work_job_duration_seconds Time from a job's submission to its "
                     "completion on the loop, queue included.\n"
                     "# TYPE crest_work_job_duration_seconds histogram\n",
                     wp->workers, crest__pool_queued(wp->pool),
                     (unsigned long long)crest__mod_sum(app, CREST__MOD_WORK_JOBS));
    crest__mod_hist_write(app, b, "crest_work_job_duration_seconds", "", CREST__MOD_WORK_HIST);
}

static void pool_stop(crest__rt_ext_t *ext) {
    work_pool_t *wp = (work_pool_t *)ext;
    crest__metrics_remove(wp->app, write_metrics, wp);
    crest__pool_free(wp->pool); /* running jobs finish; queued ones are parked */
    /* Only this thread is left to deliver them: the loop threads have ended. */
    req_job_t *j = wp->orphans;
    wp->orphans = NULL;
    while (j != NULL) {
        req_job_t *next = j->next_orphan;
        j->done(j->req, CREST_ECANCELED, j->arg);
        free(j);
        j = next;
    }
    pthread_mutex_destroy(&wp->orphans_lock);
    free(wp);
}

int crest_app_workers(crest_app_t *app, const crest_work_opts_t *opts) {
    crest_work_opts_t o;
    if (opts == NULL) {
        crest_work_opts_default(&o);
        opts = &o;
    }
    if (app->rt.running)
        return CREST_EBUSY;
    if (app->rt.work != NULL)
        return CREST_EEXIST;
    int workers = opts->workers;
    if (workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        workers = n > 0 ? (int)n : 1;
    }
    work_pool_t *wp = calloc(1, sizeof(*wp));
    if (wp == NULL)
        return CREST_ENOMEM;
    int rc = crest__pool_new_nice(workers, opts->max_queue ? opts->max_queue : 1024, opts->nice,
                                  &wp->pool);
    if (rc != 0) {
        free(wp);
        return rc;
    }
    pthread_mutex_init(&wp->orphans_lock, NULL);
    wp->workers = workers;
    wp->app = app;
    crest__metrics_add(app, write_metrics, wp); /* ENOMEM only past 16 sources: then unlisted */
    wp->ext.stop = pool_stop;
    app->rt.work = &wp->ext;
    return 0;
}

int crest_app_worker_count(const crest_app_t *app) {
    return app->rt.work ? ((const work_pool_t *)app->rt.work)->workers : 0;
}

int crest_work_submit(crest_req_t *req, crest_work_cb work, crest_work_done_cb done, void *arg) {
    crest_loop_t *loop = crest_req_loop(req);
    work_pool_t *wp = (work_pool_t *)loop->rt->work;
    if (wp == NULL)
        return CREST_ENOTSUP;
    req_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CREST_ENOMEM;
    j->job.run = on_run;
    j->job.cancel = on_cancel;
    j->owner = wp;
    j->req = req;
    j->loop = loop;
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->submitted = uv_hrtime();
    /* Set before the submit: a worker may finish the job and post done before submit returns,
     * but done cannot run before this handler returns to the loop, so the order is safe. */
    crest_req_on_abort(req, on_abort, j);
    int rc = crest__pool_submit(wp->pool, &j->job);
    if (rc != 0) {
        crest_req_on_abort(req, NULL, NULL);
        free(j);
    }
    return rc;
}

int crest_work_busy(crest_req_t *req) {
    static const char body[] = "{\"error\":\"the worker queue is full; retry later\"}";
    crest_res_header(req, "Retry-After", "1");
    return crest_res_send(req, 503, "application/json", body, sizeof(body) - 1);
}
