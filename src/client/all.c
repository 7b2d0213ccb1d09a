/* crest_fetch_all: several fetches at once, one callback when the last one is done. Each fetch's
 * result is valid only during its own callback, so it is copied here (status, headers and body
 * in one block per fetch) until the group's callback has run. */
#include <stdlib.h>
#include <string.h>

#include "crest.h"

typedef struct group group_t;
typedef struct {
    group_t *g;
    size_t i; /* the fetch's place in the options and the results */
} slot_t;
struct group {
    crest_fetch_res_t *res; /* n results, in the order of the options */
    void **blocks;          /* each result's copy of its headers, body and URL */
    slot_t *slots;
    size_t n, left; /* fetches still running */
    crest_fetch_all_cb cb;
    void *arg;
};

static void group_free(group_t *g) {
    for (size_t i = 0; i < g->n; i++)
        free(g->blocks[i]);
    free(g->blocks);
    free(g->slots);
    free(g->res);
    free(g);
}

/* Copy one result into a block of its own; out of memory, the result says so instead. */
static void keep(crest_fetch_res_t *dst, void **block, const crest_fetch_res_t *src) {
    *dst = *src;
    size_t url = src->url ? strlen(src->url) + 1 : 0, size = src->body.len + 1 + url;
    for (size_t i = 0; i < src->nheaders; i++)
        size += src->headers[i].name.len + src->headers[i].value.len + 2;
    size_t hdrs = src->nheaders * sizeof(crest_header_t);
    char *b = malloc(hdrs + size);
    if (b == NULL) {
        *dst = (crest_fetch_res_t){.error = CREST_ENOMEM};
        return;
    }
    *block = b;
    crest_header_t *h = (crest_header_t *)b;
    char *p = b + hdrs;
#define COPY(dst_, src_)                                                                           \
    do {                                                                                           \
        if ((src_).len > 0)                                                                        \
            memcpy(p, (src_).ptr, (src_).len);                                                     \
        (dst_) = (crest_str_t){p, (src_).len};                                                     \
        p += (src_).len;                                                                           \
        *p++ = '\0';                                                                               \
    } while (0)
    for (size_t i = 0; i < src->nheaders; i++) {
        COPY(h[i].name, src->headers[i].name);
        COPY(h[i].value, src->headers[i].value);
    }
    COPY(dst->body, src->body);
#undef COPY
    dst->headers = src->nheaders ? h : NULL;
    if (url) {
        memcpy(p, src->url, url);
        dst->url = p;
    }
}

static void on_one(const crest_fetch_res_t *res, void *arg) {
    slot_t *s = arg;
    group_t *g = s->g;
    keep(&g->res[s->i], &g->blocks[s->i], res);
    if (--g->left == 0) {
        g->cb(g->res, g->n, g->arg);
        group_free(g);
    }
}

int crest_fetch_all(crest_loop_t *loop, const crest_fetch_opts_t *opts, size_t n,
                    crest_fetch_all_cb cb, void *arg) {
    group_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return CREST_ENOMEM;
    g->res = calloc(n ? n : 1, sizeof(*g->res));
    g->blocks = calloc(n ? n : 1, sizeof(*g->blocks));
    g->slots = calloc(n ? n : 1, sizeof(*g->slots));
    if (g->res == NULL || g->blocks == NULL || g->slots == NULL) {
        free(g->res);
        free(g->blocks);
        free(g->slots);
        free(g);
        return CREST_ENOMEM;
    }
    g->n = n;
    g->cb = cb;
    g->arg = arg;
    /* No fetch calls back before crest_fetch returns, so the count only falls once this has
     * returned; a start that fails (out of memory) is that fetch's result at once. */
    for (size_t i = 0; i < n; i++) {
        g->slots[i] = (slot_t){g, i};
        if (crest_fetch(loop, &opts[i], on_one, &g->slots[i]) != NULL)
            g->left++;
        else
            g->res[i] = (crest_fetch_res_t){.error = CREST_ENOMEM};
    }
    if (g->left == 0) { /* nothing started: cb must not run before this returns */
        group_free(g);
        return CREST_ENOMEM;
    }
    return 0;
}
