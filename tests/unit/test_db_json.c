/* crest_db_json_row/rows: a row written as JSON by the table that documents it, on a real SQLite
 * file. SQLite hands integers over as integers and everything else as text; each field's type
 * decides how a cell is written (an integer cell in a string field is a string, a text "t" in a
 * boolean field is true), and NULL is null whatever the type. */
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

static const crest_field_t fields[] = {
    CREST_FIELD("id", CREST_T_INT, 0),       CREST_FIELD("name", CREST_T_STRING, 0),
    CREST_FIELD("price", CREST_T_NUMBER, 0), CREST_FIELD("count", CREST_T_NUMBER, 0),
    CREST_FIELD("code", CREST_T_STRING, 0),  CREST_FIELD("on", CREST_T_BOOL, 0),
    CREST_FIELD("pg", CREST_T_BOOL, 0),      CREST_FIELD("none", CREST_T_INT, 0),
    CREST_FIELD("meta", CREST_T_ANY, 0),     CREST_FIELD_END};
static const crest_schema_t schema = {.name = "Row", .fields = fields};

static void test_types(void **state) {
    (void)state;
    char dir[] = "/tmp/crest-db-json.XXXXXX", url[128], path[96];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.db", dir);
    snprintf(url, sizeof(url), "sqlite:%s", path);
    crest_db_t *db;
    crest_db_sql_t *sql;
    assert_int_equal(crest_db_open(url, NULL, &db), 0);
    assert_int_equal(crest_db_statement(db,
                                        "SELECT 7, 'say \"hi\"', 1.5, 3, 42, 1, 't', NULL, "
                                        "'{\"a\":[1]}' UNION ALL SELECT 8, '', 0.25, 0, 0, 0, "
                                        "'f', NULL, 'null'",
                                        &sql),
                     0);
    crest_db_query_t *q = crest_db_query(db, 0);
    crest_db_add(q, sql);
    assert_int_equal(crest_db_run_sync(q), 0);
    crest_buf_t b = CREST_BUF_INIT;
    assert_int_equal(crest_db_json_row(&b, q, 0, 0, &schema), 0);
    crest_buf_append(&b, "", 1);
    assert_string_equal(b.ptr, "{\"id\":7,\"name\":\"say \\\"hi\\\"\",\"price\":1.5,\"count\":3,"
                               "\"code\":\"42\",\"on\":true,\"pg\":true,\"none\":null,"
                               "\"meta\":{\"a\":[1]}}");
    b.len = 0;
    assert_int_equal(crest_db_json_rows(&b, q, 0, 1, &schema), 0);
    crest_buf_append(&b, "", 1);
    assert_true(strncmp(b.ptr, "[{\"id\":7,", 9) == 0);
    assert_int_equal(b.ptr[strlen(b.ptr) - 1], ']');
    assert_null(strstr(b.ptr, "\"id\":8")); /* max 1 row */
    b.len = 0;
    assert_int_equal(crest_db_json_rows(&b, q, 0, -1, &schema), 0);
    crest_buf_append(&b, "", 1);
    assert_non_null(strstr(b.ptr, ",{\"id\":8,\"name\":\"\",\"price\":0.25,\"count\":0,"
                                  "\"code\":\"0\",\"on\":false,\"pg\":false,\"none\":null,"
                                  "\"meta\":null}]"));
    crest_buf_free(&b);
    crest_db_query_free(q);
    crest_db_close(db);
    char p[128];
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffixes[i]);
        unlink(p);
    }
    rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_types)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
