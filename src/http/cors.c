/* CORS (crest_app_cors; the Fetch standard's CORS protocol).
 *
 * The answer depends on the request's Origin: a listed origin is echoed (with credentials if
 * allowed), any other gets "*" when "*" is listed and nothing at all otherwise. Whenever a
 * specific origin is listed the answer differs by origin, so every response under the prefix says
 * Vary: Origin, those without an Origin too: a cache must not hand the answer made for one origin
 * (or for none) to another.
 *
 * A preflight is answered here with the methods the route really has, asked of the router, so
 * the list cannot drift from the routes. A preflight for a path with no route passes on and gets
 * the usual 404 (or the app's OPTIONS handler), without CORS headers.
 *
 * A response made before the chain reached this middleware (a request the parser rejected, an
 * earlier middleware's 429) still gets the headers: the middleware is also run from the head
 * hooks then (crest__app_use_every), so a browser can read every error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

typedef struct {
    char **origins; /* the specific ones ("*" is `any`) */
    size_t norigins;
    int any;
    int credentials;
    char *allow_headers;  /* "Access-Control-Allow-Headers: ...\r\n", or NULL: echo the request's */
    char *expose_headers; /* "Access-Control-Expose-Headers: ...\r\n", or NULL */
    char max_age[64];     /* "Access-Control-Max-Age: N\r\n" */
} cors_t;

void crest_cors_opts_default(crest_cors_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->max_age = 600;
}

static void cors_free(void *p) {
    cors_t *c = p;
    for (size_t i = 0; i < c->norigins; i++)
        free(c->origins[i]);
    free(c->origins);
    free(c->allow_headers);
    free(c->expose_headers);
    free(c);
}

static int valid_value(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 ? *s != '\t' : (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static int add(crest_req_t *req, const char *s, size_t len) {
    return crest__res_header_block(req, s, len);
}

#define ADD_LIT(req, lit) add((req), (lit), sizeof(lit) - 1)

/* Access-Control-Request-Headers is echoed in a header of ours: only a list of field names. */
static int token_list(crest_str_t v) {
    for (size_t i = 0; i < v.len; i++) {
        char c = v.ptr[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~, \t", c) != NULL) ||
            c == '\0')
            return 0;
    }
    return 1;
}

static int on_cors(crest_req_t *req, void *data) {
    const cors_t *c = data;
    crest_str_t origin = crest_req_header(req, "Origin");
    const char *listed = NULL;
    for (size_t i = 0; origin.ptr && i < c->norigins && listed == NULL; i++)
        if (strlen(c->origins[i]) == origin.len &&
            strncasecmp(c->origins[i], origin.ptr, origin.len) == 0)
            listed = c->origins[i];
    int vary = c->norigins > 0;
    if (listed == NULL && !(origin.ptr && c->any)) {
        /* Not allowed (or not a CORS request): no CORS header; the browser refuses it. */
        int rc = vary ? ADD_LIT(req, "Vary: Origin\r\n") : 0;
        return rc < 0 ? rc : CREST_NEXT;
    }
    /* From the head hooks (a response made before the chain got here) only the headers of a
     * plain request are added: a preflight is answered by this middleware only. */
    int preflight = req->method == CREST_METHOD_OPTIONS && !req->in_head &&
                    crest_req_header(req, "Access-Control-Request-Method").ptr != NULL;
    char methods[128];
    if (preflight) {
        crest__match_t m;
        crest_str_t path = crest_req_path(req);
        const crest_app_t *app = crest__app_of(req->loop);
        int found = crest__router_match(app->router, CREST_METHOD_OTHER, path.ptr, path.len, 0, &m);
        if (found == 404 && crest__static_covers(req->loop, path))
            m.allowed = 1u << CREST_METHOD_GET; /* a static mount's files: GET (and HEAD) */
        else if (found == 404)
            return CREST_NEXT;
        /* HEAD rides on GET and is a simple method: the browser never asks for it. */
        crest__router_allow(m.allowed & ~(1u << CREST_METHOD_HEAD), methods, sizeof(methods));
    }
    crest_buf_t *b = &req->res_headers;
    if (req->started && !req->in_head)
        return CREST_NEXT;
    crest_buf_puts(b, "Access-Control-Allow-Origin: ");
    crest_buf_puts(b, listed ? listed : "*");
    crest_buf_append(b, "\r\n", 2);
    if (listed && c->credentials)
        crest_buf_puts(b, "Access-Control-Allow-Credentials: true\r\n");
    if (!preflight) {
        if (vary)
            crest_buf_puts(b, "Vary: Origin\r\n");
        if (c->expose_headers)
            crest_buf_puts(b, c->expose_headers);
        return b->err ? b->err : CREST_NEXT;
    }
    crest_buf_puts(b, "Access-Control-Allow-Methods: ");
    crest_buf_puts(b, methods);
    crest_buf_append(b, "\r\n", 2);
    crest_str_t asked = crest_req_header(req, "Access-Control-Request-Headers");
    if (c->allow_headers) {
        crest_buf_puts(b, c->allow_headers);
    } else if (asked.len && token_list(asked)) {
        crest_buf_puts(b, "Access-Control-Allow-Headers: ");
        crest_buf_append(b, asked.ptr, asked.len);
        crest_buf_append(b, "\r\n", 2);
    }
    crest_buf_puts(b, c->max_age);
    crest_buf_puts(b, vary ? "Vary: Origin, Access-Control-Request-Method, "
                             "Access-Control-Request-Headers\r\n"
                           : "Vary: Access-Control-Request-Method, "
                             "Access-Control-Request-Headers\r\n");
    if (b->err)
        return b->err;
    return crest_res_send(req, 204, NULL, NULL, 0);
}

static char *line(const char *name, const char *value) {
    size_t n = strlen(name) + strlen(value) + 5;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "%s: %s\r\n", name, value);
    return s;
}

int crest_app_cors(crest_app_t *app, const char *prefix, const crest_cors_opts_t *opts) {
    if (app->rt.running)
        return CREST_EBUSY;
    if (opts == NULL || (opts->norigins && opts->origins == NULL))
        return CREST_EINVAL;
    if ((opts->allow_headers && !valid_value(opts->allow_headers)) ||
        (opts->expose_headers && !valid_value(opts->expose_headers)))
        return CREST_EINVAL;
    for (size_t i = 0; i < opts->norigins; i++) {
        const char *o = opts->origins[i];
        /* An origin is "scheme://host[:port]" or "null": no spaces, commas or controls. */
        if (o == NULL || *o == '\0' || !valid_value(o) || strpbrk(o, " \t,") != NULL)
            return CREST_EINVAL;
    }
    cors_t *c = calloc(1, sizeof(*c));
    if (c == NULL ||
        (opts->norigins && (c->origins = calloc(opts->norigins, sizeof(char *))) == NULL)) {
        free(c);
        return CREST_ENOMEM;
    }
    int failed = 0;
    for (size_t i = 0; i < opts->norigins; i++) {
        if (strcmp(opts->origins[i], "*") == 0) {
            c->any = 1;
            continue;
        }
        size_t len = strlen(opts->origins[i]);
        while (len > 0 && opts->origins[i][len - 1] == '/')
            len--; /* "https://a.example/" names the origin "https://a.example" */
        char *copy = strndup(opts->origins[i], len);
        failed |= copy == NULL;
        if (copy)
            c->origins[c->norigins++] = copy;
    }
    c->credentials = opts->credentials;
    if (opts->allow_headers && *opts->allow_headers)
        failed |=
            (c->allow_headers = line("Access-Control-Allow-Headers", opts->allow_headers)) == NULL;
    if (opts->expose_headers && *opts->expose_headers)
        failed |= (c->expose_headers =
                       line("Access-Control-Expose-Headers", opts->expose_headers)) == NULL;
    snprintf(c->max_age, sizeof(c->max_age), "Access-Control-Max-Age: %u\r\n",
             (unsigned)opts->max_age);
    int rc = crest__app_own(app, c, cors_free);
    if (rc != 0)
        return rc;
    if (failed)
        return CREST_ENOMEM;
    return crest__app_use_every(app, prefix, on_cors, c);
}
