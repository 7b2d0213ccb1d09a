/* Loading libpq at run time (see pq.h for why). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "crest/errno.h"
#include "db/pq.h"

crest__pq_t crest__pq;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char load_error[256]; /* written once, under `once` */

static void load(void) {
    /* The soname of libpq 5, the ABI every PostgreSQL release since 8.2 ships (Debian: libpq5).
     * RTLD_LOCAL: its symbols stay out of the process's global namespace. */
    void *lib = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        snprintf(load_error, sizeof(load_error),
                 "PostgreSQL needs libpq.so.5 (Debian package libpq5): %s", dlerror());
        return;
    }
#define CREST__PQ_LOAD(name)                                                                       \
    if (load_error[0] == '\0' && (*(void **)&crest__pq.name = dlsym(lib, #name)) == NULL)          \
        snprintf(load_error, sizeof(load_error), "libpq.so.5 lacks %s (libpq 14 or newer needed)", \
                 #name);
    CREST__PQ_FUNCS(CREST__PQ_LOAD)
#undef CREST__PQ_LOAD
    /* The library stays loaded for the life of the process, as a linked one would. */
}

int crest__pq_load(char *errmsg, size_t cap) {
    pthread_once(&once, load);
    if (load_error[0] == '\0')
        return 0;
    snprintf(errmsg, cap, "%s", load_error);
    return CREST_ENOTSUP;
}
