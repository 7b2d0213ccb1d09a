/* The worker pool's engine (src/work/pool.c): every job runs once, the queue is bounded, a stop
 * cancels what is still queued and lets running jobs finish. No sleeps: a gate (mutex + condition
 * variable) holds a worker busy for as long as a test needs. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "internal.h"
#include "work/pool.h"

typedef struct {
    crest__job_t job;
    atomic_int *ran;
    atomic_int *cancelled;
    int index; /* worker index seen by run */
} count_job_t;

static void count_run(crest__job_t *j) {
    count_job_t *c = (count_job_t *)j;
    c->index = crest__pool_worker_index();
    atomic_fetch_add(c->ran, 1);
}

static void count_cancel(crest__job_t *j) {
    count_job_t *c = (count_job_t *)j;
    atomic_fetch_add(c->cancelled, 1);
}

static void test_every_job_runs_once(void **state) {
    (void)state;
    enum { N = 2000, WORKERS = 4 };
    crest__pool_t *pool;
    assert_int_equal(crest__pool_new(WORKERS, N, &pool), 0);
    atomic_int ran = 0, cancelled = 0;
    count_job_t *jobs = calloc(N, sizeof(*jobs));
    assert_non_null(jobs);
    for (int i = 0; i < N; i++) {
        jobs[i] = (count_job_t){{NULL, count_run, count_cancel}, &ran, &cancelled, -2};
        assert_int_equal(crest__pool_submit(pool, &jobs[i].job), 0);
    }
    /* Free waits for running jobs but cancels queued ones: wait for all to have run first. */
    while (atomic_load(&ran) < N)
        sched_yield();
    crest__pool_free(pool);
    assert_int_equal(atomic_load(&ran), N);
    assert_int_equal(atomic_load(&cancelled), 0);
    for (int i = 0; i < N; i++)
        assert_true(jobs[i].index >= 0 && jobs[i].index < WORKERS);
    assert_int_equal(crest__pool_worker_index(), -1);
    free(jobs);
}

/* A job that blocks its worker until the test opens the gate. */
typedef struct {
    crest__job_t job;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int started;
    int open;
} gate_job_t;

static void gate_run(crest__job_t *j) {
    gate_job_t *g = (gate_job_t *)j;
    pthread_mutex_lock(&g->lock);
    g->started = 1;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_cancel(crest__job_t *j) {
    (void)j;
    fail_msg("the gate job was cancelled");
}

static void gate_init(gate_job_t *g) {
    g->job = (crest__job_t){NULL, gate_run, gate_cancel};
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->started = g->open = 0;
}

static void gate_wait_started(gate_job_t *g) {
    pthread_mutex_lock(&g->lock);
    while (!g->started)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(gate_job_t *g) {
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

static void test_queue_is_bounded(void **state) {
    (void)state;
    crest__pool_t *pool;
    assert_int_equal(crest__pool_new(1, 2, &pool), 0);
    gate_job_t gate;
    gate_init(&gate);
    assert_int_equal(crest__pool_submit(pool, &gate.job), 0);
    gate_wait_started(&gate); /* the only worker is busy: the next jobs wait */
    atomic_int ran = 0, cancelled = 0;
    count_job_t jobs[3];
    for (int i = 0; i < 3; i++)
        jobs[i] = (count_job_t){{NULL, count_run, count_cancel}, &ran, &cancelled, -2};
    assert_int_equal(crest__pool_submit(pool, &jobs[0].job), 0);
    assert_int_equal(crest__pool_submit(pool, &jobs[1].job), 0);
    assert_int_equal(crest__pool_queued(pool), 2);
    assert_int_equal(crest__pool_submit(pool, &jobs[2].job), CREST_EAGAIN);
    gate_open(&gate);
    while (atomic_load(&ran) < 2)
        sched_yield();
    /* Room again once the queue drained. */
    assert_int_equal(crest__pool_submit(pool, &jobs[2].job), 0);
    while (atomic_load(&ran) < 3)
        sched_yield();
    crest__pool_free(pool);
    assert_int_equal(atomic_load(&cancelled), 0);
}

static void *free_thread(void *p) {
    crest__pool_free(p);
    return NULL;
}

static void test_stop_cancels_queued_and_finishes_running(void **state) {
    (void)state;
    crest__pool_t *pool;
    assert_int_equal(crest__pool_new(1, 2, &pool), 0);
    gate_job_t gate;
    gate_init(&gate);
    assert_int_equal(crest__pool_submit(pool, &gate.job), 0);
    gate_wait_started(&gate);
    atomic_int ran = 0, cancelled = 0;
    count_job_t jobs[3];
    for (int i = 0; i < 3; i++)
        jobs[i] = (count_job_t){{NULL, count_run, count_cancel}, &ran, &cancelled, -2};
    assert_int_equal(crest__pool_submit(pool, &jobs[0].job), 0);
    assert_int_equal(crest__pool_submit(pool, &jobs[1].job), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, free_thread, pool), 0);
    /* The queue is full, so a submit says EAGAIN until the stop begins, then ECANCELED. */
    int rc;
    while ((rc = crest__pool_submit(pool, &jobs[2].job)) == CREST_EAGAIN)
        sched_yield();
    assert_int_equal(rc, CREST_ECANCELED);
    gate_open(&gate); /* the running job finishes; the worker then sees the stop */
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&ran), 0);
    assert_int_equal(atomic_load(&cancelled), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_job_runs_once),
        cmocka_unit_test(test_queue_is_bounded),
        cmocka_unit_test(test_stop_cancels_queued_and_finishes_running),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
