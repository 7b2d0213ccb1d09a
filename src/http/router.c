#include <stdlib.h>
#include <string.h>

#include "crest/errno.h"
#include "http/router.h"

/* Each node holds an edge label: static bytes for a static node, the parameter name for a
 * parameter node. Static children are kept in a small array, at most one per first byte, as in
 * any radix tree; a node also has at most one parameter child and one `*` child. */
enum { NODE_STATIC, NODE_PARAM, NODE_WILD };

typedef struct node_s {
    int kind;
    char *label;
    size_t len;
    struct node_s **kids;
    size_t nkids;
    struct node_s *param;
    struct node_s *wild;
    crest__route_t routes[CREST_METHOD__COUNT];
    unsigned methods; /* bit per method id with a route */
} node_t;

struct crest__router_s {
    node_t root;
    crest__route_t **slots; /* by slot - 1: the routes in the nodes (which never move) */
    size_t nslots;
};

static node_t *node_new(int kind, const char *label, size_t len) {
    node_t *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->kind = kind;
    n->label = malloc(len + 1);
    if (n->label == NULL) {
        free(n);
        return NULL;
    }
    memcpy(n->label, label, len);
    n->label[len] = '\0';
    n->len = len;
    return n;
}

static void node_free(node_t *n, int self) {
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i], 1);
    free(n->kids);
    if (n->param)
        node_free(n->param, 1);
    if (n->wild)
        node_free(n->wild, 1);
    for (int m = 0; m < CREST_METHOD__COUNT; m++)
        free(n->routes[m].pattern);
    free(n->label);
    if (self)
        free(n);
}

crest__router_t *crest__router_new(void) {
    return calloc(1, sizeof(crest__router_t));
}

void crest__router_free(crest__router_t *r) {
    if (r == NULL)
        return;
    node_free(&r->root, 0);
    free(r->slots);
    free(r);
}

static node_t *find_kid(const node_t *n, char c) {
    for (size_t i = 0; i < n->nkids; i++)
        if (n->kids[i]->label[0] == c)
            return n->kids[i];
    return NULL;
}

static int add_kid(node_t *n, node_t *kid) {
    node_t **k = realloc(n->kids, (n->nkids + 1) * sizeof(*k));
    if (k == NULL)
        return CREST_ENOMEM;
    n->kids = k;
    n->kids[n->nkids++] = kid;
    return 0;
}

/* Walk or grow the static path s from n; *out is the node where s ends. */
static int insert_static(node_t *n, const char *s, size_t len, node_t **out) {
    while (len > 0) {
        node_t *c = find_kid(n, s[0]);
        if (c == NULL) {
            node_t *kid = node_new(NODE_STATIC, s, len);
            if (kid == NULL || add_kid(n, kid) != 0) {
                if (kid)
                    node_free(kid, 1);
                return CREST_ENOMEM;
            }
            *out = kid;
            return 0;
        }
        size_t common = 0;
        while (common < c->len && common < len && c->label[common] == s[common])
            common++;
        if (common < c->len) {
            /* Split c: a new node takes the shared part, c keeps the rest below it. */
            node_t *mid = node_new(NODE_STATIC, c->label, common);
            char *rest = mid ? malloc(c->len - common + 1) : NULL;
            if (rest == NULL || add_kid(mid, c) != 0) {
                free(rest);
                if (mid) {
                    mid->nkids = 0;
                    node_free(mid, 1);
                }
                return CREST_ENOMEM;
            }
            memcpy(rest, c->label + common, c->len - common + 1);
            free(c->label);
            c->label = rest;
            c->len -= common;
            for (size_t i = 0; i < n->nkids; i++)
                if (n->kids[i] == c)
                    n->kids[i] = mid;
            c = mid;
        }
        n = c;
        s += common;
        len -= common;
    }
    *out = n;
    return 0;
}

int crest__router_add(crest__router_t *r, int method_id, const char *pattern, crest_handler_cb cb,
                      void *data) {
    if (method_id <= 0 || method_id >= CREST_METHOD__COUNT || pattern == NULL || cb == NULL ||
        pattern[0] != '/')
        return CREST_EINVAL;
    node_t *n = &r->root;
    const char *p = pattern;
    size_t nparams = 0;
    while (*p) {
        /* The static run up to the next segment that starts with ':' or '*'. */
        const char *q = p;
        while (*q && !((*q == ':' || *q == '*') && q > pattern && q[-1] == '/'))
            q++;
        if (q > p) {
            int rc = insert_static(n, p, (size_t)(q - p), &n);
            if (rc)
                return rc;
            p = q;
            continue;
        }
        const char *end = strchr(p, '/');
        size_t seg = end ? (size_t)(end - p) : strlen(p);
        if (*p == '*') {
            if (seg != 1 || end != NULL)
                return CREST_EINVAL; /* '*' only as a whole, last segment */
            if (n->wild == NULL && (n->wild = node_new(NODE_WILD, "*", 1)) == NULL)
                return CREST_ENOMEM;
            n = n->wild;
            p += 1;
        } else {
            if (seg < 2 || memchr(p + 1, ':', seg - 1) || memchr(p + 1, '*', seg - 1))
                return CREST_EINVAL;
            if (++nparams >= CREST__MAX_PARAMS)
                return CREST_EINVAL;
            if (n->param == NULL) {
                if ((n->param = node_new(NODE_PARAM, p + 1, seg - 1)) == NULL)
                    return CREST_ENOMEM;
            } else if (n->param->len != seg - 1 || memcmp(n->param->label, p + 1, seg - 1) != 0) {
                return CREST_EINVAL; /* one name per position keeps matching unambiguous */
            }
            n = n->param;
            p += seg;
        }
    }
    if (n->methods & (1u << method_id))
        return CREST_EEXIST;
    char *copy = strdup(pattern);
    crest__route_t **slots = copy ? realloc(r->slots, (r->nslots + 1) * sizeof(*slots)) : NULL;
    if (slots == NULL) {
        free(copy);
        return CREST_ENOMEM;
    }
    r->slots = slots;
    r->slots[r->nslots++] = &n->routes[method_id];
    n->routes[method_id].slot = (uint32_t)r->nslots;
    n->routes[method_id].pattern = copy;
    n->routes[method_id].cb = cb;
    n->routes[method_id].data = data;
    n->methods |= 1u << method_id;
    return 0;
}

/* What a search looks for: a node with one of the `want` methods, the `skip`+1-th such node in
 * matching order (a route that returned CREST_NEXT skips the ones before it). Every node the path
 * ends at adds its methods to `seen` (for the 405 answer's Allow). */
typedef struct {
    unsigned want;
    unsigned seen;
    unsigned skip;
} find_t;

static int take(const node_t *n, find_t *f) {
    if (n->methods == 0)
        return 0;
    f->seen |= n->methods;
    if ((n->methods & f->want) == 0)
        return 0;
    if (f->skip > 0) {
        f->skip--;
        return 0;
    }
    return 1;
}

/* Depth-first with backtracking: a static edge first, then the parameter, then `*`. A node the
 * path ends at that lacks the method does not stop the search: a later one that has it wins
 * (GET /users/me and POST /users/:id: POST /users/me is the second route's). */
static const node_t *match(const node_t *n, const char *p, size_t len, crest__match_t *m,
                           find_t *f) {
    if (len == 0) {
        if (take(n, f))
            return n;
        if (n->wild && n->wild->methods && m->nparams < CREST__MAX_PARAMS) {
            m->names[m->nparams] = (crest_str_t){"*", 1};
            m->values[m->nparams++] = (crest_str_t){p, 0};
            if (take(n->wild, f))
                return n->wild;
            m->nparams--;
        }
        return NULL;
    }
    const node_t *c = find_kid(n, p[0]);
    if (c && c->len <= len && memcmp(c->label, p, c->len) == 0) {
        const node_t *r = match(c, p + c->len, len - c->len, m, f);
        if (r)
            return r;
    }
    size_t saved = m->nparams;
    if (n->param && m->nparams < CREST__MAX_PARAMS) {
        const char *slash = memchr(p, '/', len);
        size_t seg = slash ? (size_t)(slash - p) : len;
        if (seg > 0) {
            m->names[m->nparams] = (crest_str_t){n->param->label, n->param->len};
            m->values[m->nparams++] = (crest_str_t){p, seg};
            const node_t *r = match(n->param, p + seg, len - seg, m, f);
            if (r)
                return r;
            m->nparams = saved;
        }
    }
    if (n->wild && n->wild->methods && m->nparams < CREST__MAX_PARAMS) {
        m->names[m->nparams] = (crest_str_t){"*", 1};
        m->values[m->nparams++] = (crest_str_t){p, len};
        if (take(n->wild, f))
            return n->wild;
        m->nparams = saved;
    }
    return NULL;
}

int crest__router_match(const crest__router_t *r, int method_id, const char *path, size_t len,
                        unsigned skip, crest__match_t *m) {
    m->route = NULL;
    m->allowed = 0;
    m->nparams = 0;
    find_t f = {0, 0, skip};
    if (method_id > 0 && method_id < CREST_METHOD__COUNT)
        f.want = 1u << method_id;
    if (method_id == CREST_METHOD_HEAD)
        f.want |= 1u << CREST_METHOD_GET; /* HEAD falls back to GET */
    const node_t *n = match(&r->root, path, len, m, &f);
    if (n != NULL) {
        int id = n->methods & (1u << method_id) ? method_id : CREST_METHOD_GET;
        m->route = &n->routes[id];
        return 200;
    }
    m->nparams = 0;
    if (f.seen == 0 || skip > 0)
        return 404; /* nothing at this path, or no later route for a request passed on */
    m->allowed = f.seen;
    if (m->allowed & (1u << CREST_METHOD_GET))
        m->allowed |= 1u << CREST_METHOD_HEAD;
    return 405;
}

void crest__router_set_body_max(crest__router_t *r, uint32_t slot, uint64_t max) {
    if (slot > 0 && slot <= r->nslots)
        r->slots[slot - 1]->body_max = max;
}

size_t crest__router_routes(const crest__router_t *r) {
    return r->nslots;
}

const char *crest__router_slot(const crest__router_t *r, uint32_t slot) {
    return slot == 0 || slot > r->nslots ? NULL : r->slots[slot - 1]->pattern;
}

size_t crest__router_allow(unsigned allowed, char *buf, size_t size) {
    size_t n = 0;
    for (int id = 1; id < CREST_METHOD__COUNT; id++) {
        if (!(allowed & (1u << id)))
            continue;
        const char *name = crest_method_name((crest_method_t)id);
        size_t len = strlen(name);
        if (n + len + 2 >= size)
            break;
        if (n) {
            buf[n++] = ',';
            buf[n++] = ' ';
        }
        memcpy(buf + n, name, len);
        n += len;
    }
    buf[n] = '\0';
    return n;
}
