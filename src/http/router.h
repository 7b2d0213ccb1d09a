/* The router: a radix tree over path bytes with `:param` segments and a trailing `*`. Built once
 * before the app runs, then only read (by every loop thread, without locks). No libuv. */
#ifndef CREST_HTTP_ROUTER_H
#define CREST_HTTP_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "crest/http.h"

#define CREST__MAX_PARAMS 16

typedef struct crest__router_s crest__router_t;

typedef struct {
    crest_handler_cb cb;
    void *data;
    char *pattern;     /* the route's template as added ("/api/todos/:id"), for logs and metrics */
    uint32_t slot;     /* 1, 2, ... in the order routes were added: indexes per-route metrics */
    uint64_t body_max; /* a route that streams its body (crest_app_route_stream): its limit */
} crest__route_t;

typedef struct {
    const crest__route_t *route; /* set when the result is 200 */
    unsigned allowed;            /* with 405: bit (1 << method id) for every method the path has */
    size_t nparams;
    crest_str_t names[CREST__MAX_PARAMS];
    crest_str_t values[CREST__MAX_PARAMS];
} crest__match_t;

crest__router_t *crest__router_new(void);
void crest__router_free(crest__router_t *r);
/* 0, CREST_EEXIST, CREST_EINVAL (malformed pattern, unknown method, a parameter name that differs
 * from another route's at the same position), CREST_ENOMEM. */
int crest__router_add(crest__router_t *r, int method_id, const char *pattern, crest_handler_cb cb,
                      void *data);
/* Match a path: 200 (m->route set; HEAD falls back to GET), 404, or 405 (m->allowed set: the
 * methods of every route whose pattern matches the path). Parameter values point into `path`.
 * Static segments win over parameters, parameters over `*`; a route whose pattern matches but
 * lacks the method does not hide a later one that has it. `skip` passes over that many routes
 * that would match first (the ones that returned CREST_NEXT); with skip > 0 there is no 405,
 * only 200 or 404. */
int crest__router_match(const crest__router_t *r, int method_id, const char *path, size_t len,
                        unsigned skip, crest__match_t *m);
/* Make the route in `slot` stream its request body, up to max bytes (before the app runs). */
void crest__router_set_body_max(crest__router_t *r, uint32_t slot, uint64_t max);
/* Routes added so far; slots run from 1 to this. */
size_t crest__router_routes(const crest__router_t *r);
/* The template of the route in `slot` (1 .. crest__router_routes); NULL for another slot. */
const char *crest__router_slot(const crest__router_t *r, uint32_t slot);
/* Write "GET, HEAD, POST" for an allowed mask into buf; returns the length. */
size_t crest__router_allow(unsigned allowed, char *buf, size_t size);

#endif
