/* The process-wide budget for buffered bytes (see internal.h), and giving memory back.
 *
 * One atomic counter for the whole app: it moves only when bytes are buffered beyond the fast
 * path (a request that did not arrive whole, output the kernel did not take at once, a message
 * crossing threads), never for a request that is answered within its read, so the shared cache
 * line costs nothing measurable. */
#include <malloc.h>

#include "internal.h"

/* After a burst, glibc keeps the freed memory in its arenas (per thread, and above the dynamic
 * mmap threshold in the heap): measured, 2 to 5 GB stayed resident after an attack ended, and
 * malloc_trim brought it to 10 MB. So when the buffered bytes fall to a quarter of a high mark of
 * at least TRIM_MIN, a trim runs a second later (once, on the loop that saw the fall). */
#define TRIM_MIN (4 * 1024 * 1024)
#define TRIM_DELAY_MS 1000

static void raise_peak(crest__budget_t *b, int64_t now) {
    int64_t peak = atomic_load_explicit(&b->peak, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(
                             &b->peak, &peak, now, memory_order_relaxed, memory_order_relaxed))
        ;
}

int crest__mem_take(crest__rt_t *rt, size_t n) {
    crest__budget_t *b = &rt->mem;
    int64_t now =
        atomic_fetch_add_explicit(&b->used, (int64_t)n, memory_order_relaxed) + (int64_t)n;
    if (b->limit > 0 && now > b->limit) {
        atomic_fetch_sub_explicit(&b->used, (int64_t)n, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
        return CREST_ENOBUFS;
    }
    raise_peak(b, now);
    return 0;
}

void crest__mem_charge(crest__rt_t *rt, size_t n) {
    crest__budget_t *b = &rt->mem;
    raise_peak(b,
               atomic_fetch_add_explicit(&b->used, (int64_t)n, memory_order_relaxed) + (int64_t)n);
}

static void on_trim(crest_loop_t *loop, void *arg) {
    (void)arg;
    crest__budget_t *b = &loop->rt->mem;
    malloc_trim(0);
    /* The next burst is measured from what is held now. */
    atomic_store_explicit(&b->peak, atomic_load_explicit(&b->used, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&b->trim_pending, 0, memory_order_release);
}

void crest__mem_give(crest__rt_t *rt, crest_loop_t *loop, size_t n) {
    crest__budget_t *b = &rt->mem;
    int64_t now =
        atomic_fetch_sub_explicit(&b->used, (int64_t)n, memory_order_relaxed) - (int64_t)n;
    if (loop == NULL || loop->draining)
        return;
    int64_t peak = atomic_load_explicit(&b->peak, memory_order_relaxed);
    if (peak < TRIM_MIN || now > peak / 4)
        return;
    int expected = 0;
    if (atomic_compare_exchange_strong(&b->trim_pending, &expected, 1) &&
        crest_loop_after(loop, TRIM_DELAY_MS, on_trim, NULL) != 0)
        atomic_store(&b->trim_pending, 0);
}

int crest__mem_over(const crest__rt_t *rt) {
    const crest__budget_t *b = &rt->mem;
    return b->limit > 0 && atomic_load_explicit(&b->used, memory_order_relaxed) >= b->limit;
}
