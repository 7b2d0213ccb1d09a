/* A fixed set of worker threads around one mutex-guarded FIFO.
 *
 * Why our own threads and not libuv's uv_queue_work: libuv's pool is process-wide, 4 threads by
 * default, and also runs every file-system and getaddrinfo request. Hashing jobs of a second each
 * would sit in front of a static file's open() and stall it; a separate pool keeps CPU work and
 * I/O apart and lets the queue be bounded (libuv's is not), so overload turns into a 503 instead
 * of unbounded memory.
 *
 * Why one lock and one condition variable: a job here costs at least microseconds (anything
 * shorter belongs on the loop), so contention on a lock held for a few pointer stores is noise;
 * a lock-free queue would buy nothing measurable and cost clarity. */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "crest/errno.h"
#include "work/pool.h"

struct crest__pool_s {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    crest__job_t *head; /* guarded by lock: waiting jobs, FIFO */
    crest__job_t *tail;
    size_t queued;    /* guarded by lock */
    size_t max_queue; /* fixed */
    int stopping;     /* guarded by lock */
    int nthreads;     /* threads started */
    pthread_t *threads;
};

typedef struct {
    crest__pool_t *pool;
    int index;
    int nice;
} worker_arg_t;

static _Thread_local int worker_index = -1;

int crest__pool_worker_index(void) {
    return worker_index;
}

/* sched_setattr(2)'s argument; glibc has no wrapper for the call. */
struct sched_attr_v1 {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

/* Make this worker thread yield to loop threads. A loop thread sleeps most of the time and must
 * run the moment a packet wakes it; a worker computes for as long as its job lasts. Three hints
 * to the kernel, each best effort (a failure only costs latency):
 * - SCHED_BATCH: the thread is CPU-bound and mildly disfavoured at wake-up decisions;
 * - nice +N: under CFS (Linux < 6.6) a lower share, so a waking loop thread preempts it;
 * - a long time slice (sched_runtime, honoured for normal threads since Linux 6.12): under EEVDF
 *   a running thread keeps the CPU until the end of its slice (RUN_TO_PARITY) unless the waking
 *   one has a shorter slice (PREEMPT_SHORT). With workers at 20 ms and everything else at the
 *   default (about 1.5 ms on 2 CPUs), a loop thread no longer waits out a worker's slice at each
 *   wake-up; bench/cpu.sh measured /healthz p99 down from 13-20 ms to 4-12 ms on a busy machine.
 *   Older kernels ignore the field for normal threads. */
static void worker_sched(int nice) {
    struct sched_attr_v1 a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.sched_policy = SCHED_BATCH;
    a.sched_nice = nice;
    a.sched_runtime = 20 * 1000 * 1000;
    if (syscall(SYS_sched_setattr, 0, &a, 0) != 0 && nice > 0)
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice);
}

static void *worker_main(void *p) {
    worker_arg_t *wa = p;
    crest__pool_t *pool = wa->pool;
    worker_index = wa->index;
    /* Per thread: Linux applies scheduling attributes and nice values to one thread, and
     * lowering one's own priority needs no privilege. */
    worker_sched(wa->nice);
    free(wa);
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->wake, &pool->lock);
        /* Stopping wins over queued work: what is left is cancelled by crest__pool_free, so a
         * long queue does not delay shutdown by its whole length. */
        if (pool->stopping)
            break;
        crest__job_t *job = pool->head;
        pool->head = job->next;
        if (pool->head == NULL)
            pool->tail = NULL;
        pool->queued--;
        pthread_mutex_unlock(&pool->lock);
        job->next = NULL;
        job->run(job);
        pthread_mutex_lock(&pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

int crest__pool_new(int workers, size_t max_queue, crest__pool_t **out) {
    return crest__pool_new_nice(workers, max_queue, 0, out);
}

int crest__pool_new_nice(int workers, size_t max_queue, int nice, crest__pool_t **out) {
    *out = NULL;
    if (nice < 0)
        nice = 0;
    if (nice > 19)
        nice = 19;
    if (workers < 1)
        workers = 1;
    if (max_queue < 1)
        max_queue = 1;
    crest__pool_t *pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return CREST_ENOMEM;
    pool->threads = calloc((size_t)workers, sizeof(pthread_t));
    if (pool->threads == NULL) {
        free(pool);
        return CREST_ENOMEM;
    }
    pool->max_queue = max_queue;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    /* Workers never take signals: a process-directed SIGTERM must reach the thread that handles
     * it (crest_app_run's), not kill the process by default action in a worker that was created
     * before the app blocked it. Threads inherit the creator's mask, so block all around the
     * creation and restore. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (int i = 0; i < workers; i++) {
        worker_arg_t *wa = malloc(sizeof(*wa));
        if (wa == NULL) {
            rc = CREST_ENOMEM;
            break;
        }
        wa->pool = pool;
        wa->index = i;
        wa->nice = nice;
        int err = pthread_create(&pool->threads[i], NULL, worker_main, wa);
        if (err != 0) {
            free(wa);
            rc = -err;
            break;
        }
        pool->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        crest__pool_free(pool);
        return rc;
    }
    *out = pool;
    return 0;
}

int crest__pool_submit(crest__pool_t *pool, crest__job_t *job) {
    pthread_mutex_lock(&pool->lock);
    int rc = 0;
    if (pool->stopping)
        rc = CREST_ECANCELED;
    else if (pool->queued >= pool->max_queue)
        rc = CREST_EAGAIN;
    if (rc == 0) {
        job->next = NULL;
        if (pool->tail)
            pool->tail->next = job;
        else
            pool->head = job;
        pool->tail = job;
        pool->queued++;
        /* Signalled under the lock: the waiter cannot miss it between its check and its wait. */
        pthread_cond_signal(&pool->wake);
    }
    pthread_mutex_unlock(&pool->lock);
    return rc;
}

size_t crest__pool_queued(crest__pool_t *pool) {
    pthread_mutex_lock(&pool->lock);
    size_t n = pool->queued;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void crest__pool_free(crest__pool_t *pool) {
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    /* Every worker has exited: the queue is ours alone now. */
    crest__job_t *job = pool->head;
    pool->head = pool->tail = NULL;
    while (job != NULL) {
        crest__job_t *next = job->next;
        job->next = NULL;
        job->cancel(job);
        job = next;
    }
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}
