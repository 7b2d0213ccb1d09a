/* libFuzzer target for the SQL placeholder translation (src/db/sql.c): any bytes, as a C string,
 * must scan without reading past the NUL, and counting alone must agree with translating.
 *
 * make fuzz   (build-fuzz/fuzz_sql; seeds in fuzz/sql/corpus) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "db/sql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    crest_buf_t out = CREST_BUF_INIT;
    int n1 = -1, n2 = -1;
    int rc1 = crest__sql_to_pg(s, &out, &n1, NULL);
    int rc2 = crest__sql_to_pg(s, NULL, &n2, NULL);
    if (rc1 != rc2 || (rc1 == 0 && n1 != n2))
        abort();
    /* The output never has a '?' outside quotes and comments that the input had as a
     * placeholder: translating it again finds no parameters. */
    if (rc1 == 0 && out.ptr != NULL && crest_buf_append(&out, "", 1) == 0) {
        int n3 = -1;
        if (crest__sql_to_pg(out.ptr, NULL, &n3, NULL) != 0 || n3 != 0)
            abort();
    }
    crest_buf_free(&out);
    free(s);
    return 0;
}
