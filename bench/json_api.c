/* What crest's JSON layer costs over cJSON alone, on the todo bodies of bench/json_pick.c:
 *   cjson     cJSON_ParseWithLengthOpts, the two members' types checked, freed (no strictness);
 *   strict    cJSON plus the jsonscan pre-check (UTF-8, control characters, numbers, U+0000) and
 *             the trailing-bytes check, as the demo did by hand: crest_json_parse;
 *   accessors crest_json_parse + crest_json_get/str/bool;
 *   validate  crest_json_parse + crest_json_validate against a two-field table into a struct.
 * Nanoseconds per body, best of 5 runs of 300,000. Built against build/libcrest.a by
 * bench/json_api.sh. */
#include <cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "crest.h"

static const char *const bodies[] = {
    "{\"title\":\"buy milk\",\"done\":false}",
    "{\"title\": \"write the report for the quarterly review, with tables\", \"done\": true}",
    "{\"done\":true,\"title\":\"caf\\u00e9 \\\"quoted\\\" and escaped \\n "
    "text\",\"extra\":[1,2,3]}",
};
#define NBODIES (sizeof(bodies) / sizeof(bodies[0]))

typedef struct {
    crest_str_t title;
    int done;
} todo_t;
static const crest_field_t todo_fields[] = {CREST_FIELD_STR(todo_t, title, CREST_REQUIRED),
                                            CREST_FIELD_BOOL(todo_t, done, CREST_REQUIRED),
                                            CREST_FIELD_END};
static const crest_schema_t todo_schema = {.name = "Todo", .fields = todo_fields};

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int with_cjson(const char *s, size_t len) {
    const char *end;
    cJSON *v = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "title");
    cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "done");
    int ok = cJSON_IsString(t) && cJSON_IsBool(d);
    cJSON_Delete(v);
    return ok ? 0 : -1;
}

static int with_strict(const char *s, size_t len) {
    crest_json_t *v;
    if (crest_json_parse(s, len, &v) != 0)
        return -1;
    crest_json_free(v);
    return 0;
}

static int with_accessors(const char *s, size_t len) {
    crest_json_t *v;
    if (crest_json_parse(s, len, &v) != 0)
        return -1;
    int done;
    int ok = crest_json_str(crest_json_get(v, "title")).ptr != NULL &&
             crest_json_bool(crest_json_get(v, "done"), &done) == 0;
    crest_json_free(v);
    return ok ? 0 : -1;
}

static int with_validate(const char *s, size_t len) {
    crest_json_t *v;
    if (crest_json_parse(s, len, &v) != 0)
        return -1;
    todo_t t;
    int rc = crest_json_validate(v, &todo_schema, &t, NULL);
    crest_json_free(v);
    return rc;
}

static void run(const char *name, int (*fn)(const char *, size_t)) {
    size_t lens[NBODIES];
    for (size_t i = 0; i < NBODIES; i++)
        lens[i] = strlen(bodies[i]);
    double best = 1e30;
    int bad = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = now_ns();
        for (int i = 0; i < 300000; i++)
            bad |= fn(bodies[i % NBODIES], lens[i % NBODIES]) != 0;
        double ns = (now_ns() - t0) / 300000;
        if (ns < best)
            best = ns;
    }
    printf("| %s | %.0f | %s |\n", name, best, bad ? "no" : "yes");
}

int main(void) {
    printf("| layer | ns per body (best of 5 x 300k) | all accepted |\n|---|---|---|\n");
    run("cJSON alone", with_cjson);
    run("crest_json_parse (strict)", with_strict);
    run("+ accessors", with_accessors);
    run("+ crest_json_validate", with_validate);
    return 0;
}
