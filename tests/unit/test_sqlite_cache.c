/* SQLite's statement cache against SQL the application builds in a buffer it then reuses: each
 * declared statement runs its own text, however the caller's memory was recycled. A real database
 * file in a temporary folder, driven through the public API with crest_db_run_sync (which runs on
 * the calling thread's connection and its cache of prepared statements, as a loop thread does). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "crest.h"

typedef struct {
    char dir[64];
    char path[128];
    crest_db_t *db;
} fixture_t;

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/crest-sqlite-cache.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    char url[160];
    snprintf(url, sizeof(url), "sqlite:%s", f->path);
    assert_int_equal(crest_db_open(url, NULL, &f->db), 0);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    crest_db_close(f->db);
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char p[160];
        snprintf(p, sizeof(p), "%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Run `sql` alone (no parameters) and check its single row's text column 0 and integer column 1. */
static void expect_row(crest_db_t *db, const crest_db_sql_t *sql, const char *text, int64_t n) {
    crest_db_query_t *q = crest_db_query(db, 0);
    assert_non_null(q);
    crest_db_add(q, sql);
    assert_int_equal(crest_db_run_sync(q), 0);
    assert_int_equal(crest_db_rows(q, 0), 1);
    crest_str_t s = crest_db_text(q, 0, 0, 0);
    assert_int_equal(s.len, strlen(text));
    assert_memory_equal(s.ptr, text, s.len);
    assert_int_equal(crest_db_int(q, 0, 0, 1), n);
    crest_db_query_free(q);
}

/* Two statements built one after the other in the same stack buffer: the same address, two
 * texts. Each runs its own, the first time (prepared) and again (cached), alone and together. */
static void test_same_buffer(void **state) {
    fixture_t *f = *state;
    char buf[64];
    crest_db_sql_t *a = NULL, *b = NULL;
    snprintf(buf, sizeof(buf), "SELECT '%s', %d", "first", 1);
    assert_int_equal(crest_db_statement(f->db, buf, &a), 0);
    snprintf(buf, sizeof(buf), "SELECT '%s', %d", "second", 2);
    assert_int_equal(crest_db_statement(f->db, buf, &b), 0);
    for (int round = 0; round < 2; round++) {
        expect_row(f->db, a, "first", 1);
        expect_row(f->db, b, "second", 2);
    }
    /* The caller's buffer changing after the declaration changes nothing. */
    snprintf(buf, sizeof(buf), "SELECT 'third', 3");
    expect_row(f->db, a, "first", 1);
    expect_row(f->db, b, "second", 2);

    crest_db_query_t *q = crest_db_query(f->db, 0);
    assert_non_null(q);
    crest_db_add(q, b);
    crest_db_add(q, a);
    crest_db_add(q, b);
    assert_int_equal(crest_db_run_sync(q), 0);
    assert_int_equal(crest_db_int(q, 0, 0, 1), 2);
    assert_int_equal(crest_db_int(q, 1, 0, 1), 1);
    assert_int_equal(crest_db_int(q, 2, 0, 1), 2);
    crest_db_query_free(q);
}

/* Heap buffers freed and allocated again (usually at the same address), with parameters and
 * writes: a table made, filled and read by statements whose texts were all built in turn. */
static void test_recycled_heap(void **state) {
    fixture_t *f = *state;
    static const char *const texts[] = {
        "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)",
        "INSERT INTO t (k, v) VALUES (?, ?)",
        "SELECT v, k FROM t WHERE k = ?",
        "SELECT v, k * 10 FROM t WHERE k = ?",
    };
    crest_db_sql_t *st[4];
    for (int i = 0; i < 4; i++) {
        char *p = malloc(128);
        assert_non_null(p);
        snprintf(p, 128, "%s", texts[i]);
        assert_int_equal(crest_db_statement(f->db, p, &st[i]), 0);
        memset(p, 'x', 127); /* whatever the block holds next is not SQL of ours */
        free(p);
    }
    crest_db_query_t *q = crest_db_query(f->db, CREST_DB_WRITE);
    assert_non_null(q);
    crest_db_add(q, st[0]);
    for (int k = 1; k <= 2; k++) {
        crest_db_add(q, st[1]);
        crest_db_arg_int(q, k);
        crest_db_arg_text(q, k == 1 ? "one" : "two", 3);
    }
    assert_int_equal(crest_db_run_sync(q), 0);
    assert_int_equal(crest_db_changes(q, 1), 1);
    crest_db_query_free(q);
    for (int round = 0; round < 2; round++) {
        q = crest_db_query(f->db, 0);
        assert_non_null(q);
        crest_db_add(q, st[2]);
        crest_db_arg_int(q, 2);
        crest_db_add(q, st[3]);
        crest_db_arg_int(q, 1);
        assert_int_equal(crest_db_run_sync(q), 0);
        crest_str_t v = crest_db_text(q, 0, 0, 0);
        assert_int_equal(v.len, 3);
        assert_memory_equal(v.ptr, "two", 3);
        assert_int_equal(crest_db_int(q, 0, 0, 1), 2);
        v = crest_db_text(q, 1, 0, 0);
        assert_memory_equal(v.ptr, "one", 3);
        assert_int_equal(crest_db_int(q, 1, 0, 1), 10);
        crest_db_query_free(q);
    }
}

/* The same text declared twice: two handles, each prepared and run on its own. */
static void test_same_text_twice(void **state) {
    fixture_t *f = *state;
    crest_db_sql_t *a = NULL, *b = NULL;
    assert_int_equal(crest_db_statement(f->db, "SELECT 'same', 7", &a), 0);
    assert_int_equal(crest_db_statement(f->db, "SELECT 'same', 7", &b), 0);
    assert_ptr_not_equal(a, b);
    expect_row(f->db, a, "same", 7);
    expect_row(f->db, b, "same", 7);
    expect_row(f->db, a, "same", 7);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_same_buffer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recycled_heap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_text_twice, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
