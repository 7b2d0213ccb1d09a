#include "internal.h"

/* A hashed timing wheel: slot = due tick modulo the slot count. A node due further out than one
 * turn of the wheel stays in its slot and is skipped until its turn comes, so any delay works;
 * connection timeouts (seconds) are far shorter than a turn (25.6 s) in the common case. */

static void wheel_on_tick(uv_timer_t *t);

static uint64_t wheel_now(const crest__wheel_t *w) {
    return uv_now(w->timer.loop) / CREST__WHEEL_TICK_MS;
}

void crest__wheel_init(crest__wheel_t *w, uv_loop_t *loop) {
    uv_timer_init(loop, &w->timer);
    uv_unref((uv_handle_t *)&w->timer); /* deadlines alone do not keep a loop alive */
    w->armed = 0;
    for (size_t i = 0; i < CREST__WHEEL_SLOTS; i++)
        w->slots[i].next = w->slots[i].prev = &w->slots[i];
    w->tick = wheel_now(w);
}

static void unlink_node(crest__wheel_node_t *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

void crest__wheel_arm(crest__wheel_t *w, crest__wheel_node_t *node, uint64_t ms) {
    if (node->next != NULL)
        unlink_node(node);
    else
        w->armed++;
    /* Round up so that a deadline never fires early. */
    node->due = wheel_now(w) + (ms + CREST__WHEEL_TICK_MS - 1) / CREST__WHEEL_TICK_MS + 1;
    crest__wheel_node_t *head = &w->slots[node->due % CREST__WHEEL_SLOTS];
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
    if (w->armed == 1 && !uv_is_active((uv_handle_t *)&w->timer)) {
        w->tick = wheel_now(w);
        uv_timer_start(&w->timer, wheel_on_tick, CREST__WHEEL_TICK_MS, CREST__WHEEL_TICK_MS);
    }
}

void crest__wheel_disarm(crest__wheel_t *w, crest__wheel_node_t *node) {
    if (node->next == NULL)
        return;
    unlink_node(node);
    if (--w->armed == 0)
        uv_timer_stop(&w->timer);
}

static void wheel_on_tick(uv_timer_t *t) {
    crest__wheel_t *w = CREST__CONTAINER_OF(t, crest__wheel_t, timer);
    uint64_t now = wheel_now(w);
    /* Catch up on ticks a busy loop missed, at most one full turn. */
    uint64_t from = w->tick + 1;
    if (now - w->tick > CREST__WHEEL_SLOTS)
        from = now - CREST__WHEEL_SLOTS + 1;
    for (uint64_t tick = from; tick <= now; tick++) {
        crest__wheel_node_t *head = &w->slots[tick % CREST__WHEEL_SLOTS];
        /* A callback may arm or disarm other nodes, even in this slot: detach the due nodes
         * one at a time and restart from the head after each callback. */
        for (;;) {
            crest__wheel_node_t *n = head->next;
            while (n != head && n->due > now)
                n = n->next;
            if (n == head)
                break;
            unlink_node(n);
            w->armed--;
            n->cb(n);
        }
    }
    w->tick = now;
    if (w->armed == 0)
        uv_timer_stop(&w->timer);
}

void crest__wheel_close(crest__wheel_t *w) {
    uv_close((uv_handle_t *)&w->timer, NULL);
}
