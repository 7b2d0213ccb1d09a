/* Which packaged JSON library parses crest's request bodies fastest? Each candidate parses the
 * same todo bodies (the shape /api/todos receives), checks the two fields' types the way the
 * handler must, and frees the tree; the figure is nanoseconds per body, best of 5 runs.
 * The libraries' headers clash (jansson and json-c both define json_object), so the file is built
 * once per library with -DPICK_JANSSON, -DPICK_JSONC or -DPICK_CJSON. Run: bench/json_pick.sh */
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const bodies[] = {
    "{\"title\":\"buy milk\",\"done\":false}",
    "{\"title\": \"write the report for the quarterly review, with tables\", \"done\": true}",
    "{\"done\":true,\"title\":\"caf\\u00e9 \\\"quoted\\\" and escaped \\n "
    "text\",\"extra\":[1,2,3]}",
};
#define NBODIES (sizeof(bodies) / sizeof(bodies[0]))

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#ifdef PICK_JANSSON
#include <jansson.h>
#define NAME "jansson " JANSSON_VERSION
#define PARSE with_jansson
static int with_jansson(const char *s, size_t len) {
    json_error_t err;
    json_t *v = json_loadb(s, len, 0, &err);
    if (v == NULL)
        return -1;
    json_t *t = json_object_get(v, "title"), *d = json_object_get(v, "done");
    int ok = json_is_string(t) && json_is_boolean(d) && json_string_length(t) > 0;
    json_decref(v);
    return ok ? 0 : -1;
}

#endif

#ifdef PICK_JSONC
#include <json-c/json.h>
#define NAME "json-c " JSON_C_VERSION
#define PARSE with_jsonc
static int with_jsonc(const char *s, size_t len) {
    /* json_tokener_parse wants NUL-terminated input; the verbose tokener takes a length. */
    json_tokener *tok = json_tokener_new();
    json_object *v = json_tokener_parse_ex(tok, s, (int)len);
    json_tokener_free(tok);
    if (v == NULL)
        return -1;
    json_object *t, *d;
    int ok = json_object_object_get_ex(v, "title", &t) &&
             json_object_object_get_ex(v, "done", &d) && json_object_is_type(t, json_type_string) &&
             json_object_is_type(d, json_type_boolean) && json_object_get_string_len(t) > 0;
    json_object_put(v);
    return ok ? 0 : -1;
}

#endif

#ifdef PICK_CJSON
#include <cJSON.h>
#define NAME "cJSON " CJSON_VERSION_STR
#define STR_(x) #x
#define XSTR_(x) STR_(x)
#define CJSON_VERSION_STR                                                                          \
    XSTR_(CJSON_VERSION_MAJOR) "." XSTR_(CJSON_VERSION_MINOR) "." XSTR_(CJSON_VERSION_PATCH)
#define PARSE with_cjson
static int with_cjson(const char *s, size_t len) {
    cJSON *v = cJSON_ParseWithLength(s, len);
    if (v == NULL)
        return -1;
    cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "title");
    cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "done");
    int ok = cJSON_IsString(t) && cJSON_IsBool(d) && t->valuestring[0] != '\0';
    cJSON_Delete(v);
    return ok ? 0 : -1;
}

#endif

int main(void) {
    enum { N = 300000 };
    size_t lens[NBODIES];
    for (size_t i = 0; i < NBODIES; i++)
        lens[i] = strlen(bodies[i]);
    double best = 1e30;
    int bad = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_ns();
        for (int i = 0; i < N; i++)
            bad |= PARSE(bodies[i % NBODIES], lens[i % NBODIES]) != 0;
        double ns = (now_ns() - t0) / N;
        if (ns < best)
            best = ns;
    }
    printf("| %s | %.0f | %s |\n", NAME, best, bad ? "no" : "yes");
    return 0;
}
