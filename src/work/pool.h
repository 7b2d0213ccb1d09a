/* The CPU worker pool's engine: plain pthreads and a bounded FIFO, knowing nothing of requests or
 * loops (src/work/work.c adds those), so that it is unit-tested on its own. */
#ifndef CREST_WORK_POOL_H
#define CREST_WORK_POOL_H

#include <stddef.h>

typedef struct crest__job_s crest__job_t;

/* One unit of work. Owner: the submitter until it is handed to run or cancel, which then own it
 * (they usually free it or pass it on). */
struct crest__job_s {
    crest__job_t *next;
    /* Runs on a worker thread. */
    void (*run)(crest__job_t *job);
    /* Runs instead of `run` for a job still queued when the pool stops, on the stopping thread. */
    void (*cancel)(crest__job_t *job);
};

typedef struct crest__pool_s crest__pool_t;

/* Start `workers` threads (at least 1) with room for `max_queue` waiting jobs (at least 1).
 * Returns 0 and the pool in *out, CREST_ENOMEM, or a negative error from pthread_create. */
int crest__pool_new(int workers, size_t max_queue, crest__pool_t **out);
/* As crest__pool_new, the workers' nice value raised by `nice` (0 to 19; best effort). */
int crest__pool_new_nice(int workers, size_t max_queue, int nice, crest__pool_t **out);
/* Queue a job. Any thread. Returns 0 (exactly one of run or cancel will be called; a worker may
 * start run before this returns), CREST_EAGAIN when max_queue jobs are already waiting, or
 * CREST_ECANCELED once the pool is stopping. On an error the caller keeps the job. */
int crest__pool_submit(crest__pool_t *pool, crest__job_t *job);
/* Stop: jobs running finish, jobs still queued get cancel(), the threads are joined, the pool is
 * freed. Call from a thread that is not one of the pool's workers. NULL is a no-op. */
void crest__pool_free(crest__pool_t *pool);
/* Jobs waiting (not yet running). Any thread; a snapshot. */
size_t crest__pool_queued(crest__pool_t *pool);
/* The calling thread's worker number (0 .. workers-1), or -1 on a thread not of any pool. */
int crest__pool_worker_index(void);

#endif
