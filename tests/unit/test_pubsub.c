/* Pub/sub delivery (src/pubsub/pubsub.c) with fake subscribers on a real loop thread: a
 * subscriber that closes others during a broadcast, slices that let the loop serve its inbox in
 * between, per-sender order, the bounded queue, and loops skipped when they have no reader.
 *
 * The app runs one loop thread (listening on 127.0.0.1 port 0, never connected to); the test
 * thread talks to it only through crest_loop_post and waits on a condition variable, never a
 * sleep. A gate callback holds the loop busy so that messages pile up in its queue. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "http/http.h"
#include "pubsub/pubsub.h"

enum { MAXSUBS = 64, MAXMSGS = 64 };

typedef struct fake_s {
    crest__psub_t sub;
    int id;
    int got[MAXMSGS]; /* sequence numbers received, in order */
    int ngot;
    int flushes;
    int closed;
    int close_ids[4]; /* delivering to this one closes these (-1: none) */
} fake_t;

static struct {
    crest_app_t *app;
    crest_pubsub_t *ps;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int gate_open;
    int gate_held;
    int probe_ran_at; /* deliveries made when the probe ran; -1: not yet */
    int deliveries;
    fake_t fakes[MAXSUBS];
    int nfakes;
} g;

static crest_loop_t *loop0(void) {
    return &g.app->rt.loops[0];
}

/* Wait until pred() holds (evaluated under the lock), at most 10 s. */
static void wait_for(int (*pred)(void), const char *what) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&g.lock);
    while (!pred())
        if (pthread_cond_timedwait(&g.cond, &g.lock, &dl) != 0) {
            pthread_mutex_unlock(&g.lock);
            fail_msg("timed out waiting for %s", what);
        }
    pthread_mutex_unlock(&g.lock);
}

/* Run fn(arg) on the loop thread and wait for it. */
static int on_loop_done;
static int pred_on_loop_done(void) {
    return on_loop_done;
}
typedef struct {
    void (*fn)(void *);
    void *arg;
} call_t;
static void on_call(crest_loop_t *loop, void *arg) {
    (void)loop;
    call_t *c = arg;
    c->fn(c->arg);
    pthread_mutex_lock(&g.lock);
    on_loop_done = 1;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
}
static void on_loop(void (*fn)(void *), void *arg) {
    call_t c = {fn, arg};
    on_loop_done = 0;
    assert_int_equal(crest_loop_post(loop0(), on_call, &c), 0);
    wait_for(pred_on_loop_done, "a call on the loop thread");
}

/* ---- fake subscribers ---- */

static int fake_deliver(crest__psub_t *s, crest__psmsg_t *m) {
    fake_t *f = CREST__CONTAINER_OF(s, fake_t, sub);
    assert_false(f->closed);
    int seq = 0;
    /* The payload is the decimal sequence number after a 2-byte frame header. */
    for (size_t i = 2; i < m->ws_len; i++)
        seq = seq * 10 + (m->ws[i] - '0');
    if (f->ngot < MAXMSGS)
        f->got[f->ngot++] = seq;
    pthread_mutex_lock(&g.lock);
    g.deliveries++;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    /* What an app's on_close may do: close other members of the same room. */
    for (int i = 0; i < 4 && f->close_ids[i] >= 0; i++) {
        fake_t *o = &g.fakes[f->close_ids[i]];
        if (!o->closed) {
            o->closed = 1;
            crest__ps_unsubscribe_all(&o->sub);
        }
    }
    crest__ps_mark_dirty(s);
    return 1;
}

static void fake_flush(crest__psub_t *s) {
    fake_t *f = CREST__CONTAINER_OF(s, fake_t, sub);
    assert_false(f->closed);
    f->flushes++;
}

static void subscribe_all(void *arg) {
    const char *topic = arg;
    for (int i = 0; i < g.nfakes; i++)
        assert_int_equal(crest__ps_subscribe(g.ps, &g.fakes[i].sub, topic), 0);
}

static void unsubscribe_all(void *arg) {
    (void)arg;
    for (int i = 0; i < g.nfakes; i++)
        crest__ps_unsubscribe_all(&g.fakes[i].sub);
}

static void make_fakes(int n) {
    g.nfakes = n;
    for (int i = 0; i < n; i++) {
        fake_t *f = &g.fakes[i];
        memset(f, 0, sizeof(*f));
        f->id = i;
        f->sub.deliver = fake_deliver;
        f->sub.flush = fake_flush;
        f->sub.loop = loop0();
        for (int j = 0; j < 4; j++)
            f->close_ids[j] = -1;
    }
    g.deliveries = 0;
}

static void publish_seq(const char *topic, int seq) {
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "%d", seq);
    assert_int_equal(crest_pubsub_publish(g.ps, topic, buf, (size_t)n, 0), 0);
}

static int want_deliveries;
static int pred_deliveries(void) {
    return g.deliveries >= want_deliveries;
}

/* ---- the gate: holds the loop thread inside a callback ---- */

static void on_gate(crest_loop_t *loop, void *arg) {
    (void)loop, (void)arg;
    pthread_mutex_lock(&g.lock);
    g.gate_held = 1;
    pthread_cond_broadcast(&g.cond);
    while (!g.gate_open)
        pthread_cond_wait(&g.cond, &g.lock);
    g.gate_held = 0;
    pthread_mutex_unlock(&g.lock);
}
static int pred_gate_held(void) {
    return g.gate_held;
}
static void gate_close(void) {
    g.gate_open = 0;
    assert_int_equal(crest_loop_post(loop0(), on_gate, NULL), 0);
    wait_for(pred_gate_held, "the gate");
}
static void gate_open(void) {
    pthread_mutex_lock(&g.lock);
    g.gate_open = 1;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
}

/* ---- set-up ---- */

static void *run_app(void *arg) {
    (void)arg;
    crest_app_run(g.app);
    return NULL;
}

static int setup(void **state) {
    (void)state;
    pthread_mutex_init(&g.lock, NULL);
    pthread_cond_init(&g.cond, NULL);
    crest_app_opts_t o;
    crest_app_opts_default(&o);
    o.port = 0;
    o.threads = 1;
    g.app = crest_app_new(&o);
    g.ps = crest_pubsub_new(g.app);
    if (g.app == NULL || g.ps == NULL || crest_app_listen(g.app) != 0)
        return -1;
    if (pthread_create(&g.thread, NULL, run_app, NULL) != 0)
        return -1;
    /* The loop thread runs once it answers a request (404: the app has no route). */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(crest_app_port(g.app))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    char buf[64];
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1 ||
        read(fd, buf, sizeof(buf)) <= 0)
        return -1;
    close(fd);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    crest_app_stop(g.app);
    pthread_join(g.thread, NULL);
    crest_pubsub_free(g.ps);
    crest_app_free(g.app);
    return 0;
}

/* ---- the cases ---- */

/* A subscriber whose delivery closes the next subscribers of the walk (and one further on): the
 * walk goes on past them, and nobody closed gets the message. The list is walked newest first,
 * so fake N-1 comes first and N-2 right after it. */
static void test_close_others_during_walk(void **state) {
    (void)state;
    enum { N = 10 };
    make_fakes(N);
    on_loop(subscribe_all, "room");
    g.fakes[N - 1].close_ids[0] = N - 2;
    g.fakes[N - 1].close_ids[1] = N - 3;
    g.fakes[N - 1].close_ids[2] = 2;
    publish_seq("room", 1);
    want_deliveries = N - 3;
    wait_for(pred_deliveries, "deliveries");
    on_loop(unsubscribe_all, NULL);
    for (int i = 0; i < N; i++) {
        int closed = i == N - 2 || i == N - 3 || i == 2;
        assert_int_equal(g.fakes[i].closed, closed);
        assert_int_equal(g.fakes[i].ngot, closed ? 0 : 1);
        assert_int_equal(g.fakes[i].flushes, closed ? 0 : 1);
    }
    assert_int_equal(g.deliveries, N - 3);
}

/* One broadcast to more subscribers than a slice takes: the loop runs a callback posted from the
 * first delivery before the broadcast is over, and every subscriber still gets it once. */
static void on_probe(crest_loop_t *loop, void *arg) {
    (void)loop, (void)arg;
    pthread_mutex_lock(&g.lock);
    g.probe_ran_at = g.deliveries;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
}
static int probe_deliver(crest__psub_t *s, crest__psmsg_t *m) {
    if (g.deliveries == 0)
        crest_loop_post(loop0(), on_probe, NULL);
    return fake_deliver(s, m);
}
static int pred_probe(void) {
    return g.probe_ran_at >= 0;
}

static void test_slices_yield(void **state) {
    (void)state;
    enum { N = 40 };
    crest_pubsub_opts_t o;
    crest_pubsub_opts_default(&o);
    o.slice_subscribers = 8;
    assert_int_equal(crest_pubsub_set_opts(g.ps, &o), 0);
    make_fakes(N);
    for (int i = 0; i < N; i++)
        g.fakes[i].sub.deliver = probe_deliver;
    g.probe_ran_at = -1;
    on_loop(subscribe_all, "big");
    publish_seq("big", 7);
    want_deliveries = N;
    wait_for(pred_deliveries, "deliveries");
    wait_for(pred_probe, "the probe");
    on_loop(unsubscribe_all, NULL);
    crest_pubsub_opts_default(&o);
    assert_int_equal(crest_pubsub_set_opts(g.ps, &o), 0);
    /* The probe ran between two slices: after the first, before the last. */
    assert_true(g.probe_ran_at >= 8 && g.probe_ran_at < N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(g.fakes[i].ngot, 1);
        assert_int_equal(g.fakes[i].got[0], 7);
    }
}

/* A burst that piled up while the loop was busy reaches each subscriber in order, with one flush
 * per slice (the burst fits in one). */
static void test_burst_order_one_flush(void **state) {
    (void)state;
    enum { N = 5, M = 30 };
    make_fakes(N);
    on_loop(subscribe_all, "burst");
    gate_close();
    for (int i = 0; i < M; i++)
        publish_seq("burst", i);
    gate_open();
    want_deliveries = N * M;
    wait_for(pred_deliveries, "deliveries");
    on_loop(unsubscribe_all, NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(g.fakes[i].ngot, M);
        for (int j = 0; j < M; j++)
            assert_int_equal(g.fakes[i].got[j], j);
        assert_int_equal(g.fakes[i].flushes, 1);
    }
}

/* The queue holds at most queue_max_messages; the rest is dropped and counted. A topic without a
 * subscriber on the loop is not queued at all, nor one whose subscribers there are all slow. */
static void mark_slow(void *arg) {
    for (int i = 0; i < g.nfakes; i++)
        crest__ps_slow(&g.fakes[i].sub, *(int *)arg);
}

static void test_queue_bound_and_skips(void **state) {
    (void)state;
    enum { N = 3, LIMIT = 8, M = 20 };
    crest_pubsub_opts_t o;
    crest_pubsub_opts_default(&o);
    o.queue_max_messages = LIMIT;
    assert_int_equal(crest_pubsub_set_opts(g.ps, &o), 0);
    make_fakes(N);
    on_loop(subscribe_all, "q");
    crest_pubsub_stats_t s0, s;
    crest_pubsub_stats(g.ps, &s0);
    gate_close();
    publish_seq("nobody-listens", 1);
    crest_pubsub_stats(g.ps, &s);
    assert_int_equal(s.queued_messages, 0);
    assert_int_equal(s.slow_skipped, s0.slow_skipped);
    for (int i = 0; i < M; i++)
        publish_seq("q", i);
    crest_pubsub_stats(g.ps, &s);
    assert_int_equal(s.queued_messages, LIMIT);
    assert_int_equal(s.queue_dropped - s0.queue_dropped, M - LIMIT);
    assert_true(s.queued_bytes > 0 && s.queued_bytes == crest_pubsub_queued_bytes(g.ps));
    gate_open();
    want_deliveries = N * LIMIT;
    wait_for(pred_deliveries, "deliveries");
    on_loop(mark_slow, &(int){1});
    crest_pubsub_stats(g.ps, &s);
    assert_int_equal(s.queued_messages, 0);
    assert_int_equal(s.queued_bytes, 0);
    publish_seq("q", 99);
    crest_pubsub_stats(g.ps, &s);
    assert_int_equal(s.slow_skipped - s0.slow_skipped, 1);
    assert_int_equal(s.queued_messages, 0);
    on_loop(mark_slow, &(int){0});
    publish_seq("q", 100);
    want_deliveries = N * LIMIT + N;
    wait_for(pred_deliveries, "deliveries after the slow mark went");
    on_loop(unsubscribe_all, NULL);
    for (int i = 0; i < N; i++) {
        assert_int_equal(g.fakes[i].ngot, LIMIT + 1);
        for (int j = 0; j < LIMIT; j++)
            assert_int_equal(g.fakes[i].got[j], j);
        assert_int_equal(g.fakes[i].got[LIMIT], 100);
    }
    crest_pubsub_opts_default(&o);
    assert_int_equal(crest_pubsub_set_opts(g.ps, &o), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close_others_during_walk),
        cmocka_unit_test(test_slices_yield),
        cmocka_unit_test(test_burst_order_one_flush),
        cmocka_unit_test(test_queue_bound_and_skips),
    };
    return cmocka_run_group_tests_name("pubsub", tests, setup, teardown);
}
