/* Cancellable timers (crest_loop_timer, crest_loop_cancel) on a bare loop: a cancelled timer never
 * runs, an id is good for one cancel, a callback may cancel others and itself, many timers stay
 * cheap to cancel, and crest_loop_after shares the code. The loop runs one turn at a time, a
 * bounded number of turns, with no sleeps: timers of 0 to a few milliseconds fire by themselves.
 * Memory of cancelled timers is checked by AddressSanitizer's leak check (make SAN=1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "internal.h"

typedef struct {
    crest_loop_t loop;
    int ran[64];
    int order[64];
    int norder;
    uint64_t ids[64];
    int cancel_rc[64];
} fixture_t;

static fixture_t *fx;

static int setup(void **state) {
    fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(crest__loop_init(&fx->loop, NULL, 0), 0);
    /* The inbox keeps a loop alive; these tests run turns until their timers are done. */
    uv_unref((uv_handle_t *)&fx->loop.inbox_async);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    crest__loop_dispose(&fx->loop);
    free(fx);
    return 0;
}

/* Run the loop until no timer is pending (bounded). */
static void run_until_idle(void) {
    for (int i = 0; i < 1000 && fx->loop.afters != NULL; i++)
        uv_run(&fx->loop.uv, UV_RUN_ONCE);
    assert_null(fx->loop.afters);
    uv_run(&fx->loop.uv, UV_RUN_NOWAIT); /* close callbacks: the memory goes */
}

static void on_count(crest_loop_t *loop, void *arg) {
    (void)loop;
    int i = (int)(intptr_t)arg;
    fx->ran[i]++;
    fx->order[fx->norder++] = i;
}

static void test_cancel_before_fire(void **state) {
    (void)state;
    uint64_t a = crest_loop_timer(&fx->loop, 0, on_count, (void *)0);
    uint64_t b = crest_loop_timer(&fx->loop, 1, on_count, (void *)1);
    assert_true(a != 0 && b != 0 && a != b);
    assert_int_equal(crest_loop_cancel(&fx->loop, a), 0);
    assert_int_equal(crest_loop_cancel(&fx->loop, a), CREST_ENOENT); /* one cancel per id */
    run_until_idle();
    assert_int_equal(fx->ran[0], 0);
    assert_int_equal(fx->ran[1], 1);
    assert_int_equal(fx->loop.timer_count, 0);
}

static void test_cancel_after_fire(void **state) {
    (void)state;
    uint64_t a = crest_loop_timer(&fx->loop, 0, on_count, (void *)0);
    run_until_idle();
    assert_int_equal(fx->ran[0], 1);
    assert_int_equal(crest_loop_cancel(&fx->loop, a), CREST_ENOENT);
    assert_int_equal(crest_loop_cancel(&fx->loop, 0), CREST_ENOENT);
    assert_int_equal(crest_loop_cancel(&fx->loop, a + 1000), CREST_ENOENT);
}

/* Timer 0 cancels timer 1 (due later), and itself. */
static void on_cancel_others(crest_loop_t *loop, void *arg) {
    int i = (int)(intptr_t)arg;
    fx->ran[i]++;
    fx->cancel_rc[1] = crest_loop_cancel(loop, fx->ids[1]);
    fx->cancel_rc[0] = crest_loop_cancel(loop, fx->ids[0]);
    /* A timer made inside a callback runs too. */
    fx->ids[2] = crest_loop_timer(loop, 0, on_count, (void *)2);
}

static void test_cancel_from_callback(void **state) {
    (void)state;
    fx->ids[0] = crest_loop_timer(&fx->loop, 0, on_cancel_others, (void *)0);
    fx->ids[1] = crest_loop_timer(&fx->loop, 5, on_count, (void *)1);
    run_until_idle();
    assert_int_equal(fx->ran[0], 1);
    assert_int_equal(fx->cancel_rc[1], 0);
    assert_int_equal(fx->cancel_rc[0], CREST_ENOENT); /* it is running: no longer pending */
    assert_int_equal(fx->ran[1], 0);
    assert_int_equal(fx->ran[2], 1);
}

/* Two timers due in the same turn: the first cancels the second, which must not run although
 * libuv had already found it due. */
static void on_cancel_next(crest_loop_t *loop, void *arg) {
    int i = (int)(intptr_t)arg;
    fx->ran[i]++;
    fx->cancel_rc[i] = crest_loop_cancel(loop, fx->ids[1 - i]);
}

static void test_cancel_due_in_same_turn(void **state) {
    (void)state;
    fx->ids[0] = crest_loop_timer(&fx->loop, 0, on_cancel_next, (void *)0);
    fx->ids[1] = crest_loop_timer(&fx->loop, 0, on_cancel_next, (void *)1);
    run_until_idle();
    assert_int_equal(fx->ran[0] + fx->ran[1], 1);
    assert_int_equal(fx->cancel_rc[0] + fx->cancel_rc[1], 0);
}

/* Many timers: every other one cancelled (in a scattered order, through table growth); the
 * rest run in the order of their delays. */
static int many_ran;
static uint64_t many_last;
static void on_many(crest_loop_t *loop, void *arg) {
    (void)loop;
    uint64_t ms = (uint64_t)(uintptr_t)arg;
    assert_true(ms % 2 == 0);
    assert_true(ms >= many_last);
    many_last = ms;
    many_ran++;
}

static void test_many_timers(void **state) {
    (void)state;
    enum { N = 5000 };
    uint64_t *ids = malloc(N * sizeof(*ids));
    assert_non_null(ids);
    for (uint64_t i = 0; i < N; i++) {
        ids[i] = crest_loop_timer(&fx->loop, i % 8, on_many, (void *)(uintptr_t)(i % 8));
        assert_true(ids[i] != 0);
    }
    assert_int_equal(fx->loop.timer_count, N);
    assert_true(fx->loop.timer_nbuckets >= N);
    for (uint64_t k = 0; k < N; k++) {
        uint64_t i = (k * 7919) % N; /* a permutation: 7919 is prime and does not divide N */
        if (i % 2 == 1)
            assert_int_equal(crest_loop_cancel(&fx->loop, ids[i]), 0);
    }
    run_until_idle();
    assert_int_equal(many_ran, N / 2);
    assert_int_equal(fx->loop.timer_count, 0);
    for (uint64_t i = 0; i < N; i++)
        assert_int_equal(crest_loop_cancel(&fx->loop, ids[i]), CREST_ENOENT);
    free(ids);
}

/* crest_loop_after is a timer without an id; a forced stop runs what is pending, cancelled
 * timers excepted. */
static void test_after_and_forced_fire(void **state) {
    (void)state;
    assert_int_equal(crest_loop_after(&fx->loop, 60000, on_count, (void *)0), 0);
    uint64_t b = crest_loop_timer(&fx->loop, 60000, on_count, (void *)1);
    uint64_t c = crest_loop_timer(&fx->loop, 60000, on_count, (void *)2);
    assert_int_equal(crest_loop_cancel(&fx->loop, c), 0);
    crest__loop_fire_timers(&fx->loop);
    assert_int_equal(fx->ran[0], 1);
    assert_int_equal(fx->ran[1], 1);
    assert_int_equal(fx->ran[2], 0);
    assert_int_equal(crest_loop_cancel(&fx->loop, b), CREST_ENOENT);
    run_until_idle();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cancel_before_fire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_after_fire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_due_in_same_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_timers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_and_forced_fire, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
