/* The client's address behind trusted reverse proxies (crest_app_trust_proxy, crest_req_client).
 *
 * A proxy appends the address it received a request from to Forwarded (RFC 7239, "for=") or to
 * X-Forwarded-For, so the list reads left to right from the original client to the last proxy.
 * Only the entries added by proxies we trust can be believed: anything to their left may have been
 * written by the client itself. So the walk starts at the peer and goes right to left, and stops
 * at the first address that is not a trusted proxy: that is the client. An entry that is not an
 * address ("unknown", an obfuscated "_name", garbage) ends the walk at the trusted hop that wrote
 * it, which is the best we know. Without a trusted proxy, or from a peer that is not one, the
 * headers are ignored: any client could send them. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parse a bare address (no port, no brackets) of at most 45 characters. */
static int parse_bare(const char *s, size_t len, crest__addr_t *out) {
    char text[48];
    if (len == 0 || len >= sizeof(text))
        return CREST_EINVAL;
    memcpy(text, s, len);
    text[len] = '\0';
    memset(out, 0, sizeof(*out));
    if (memchr(text, ':', len) == NULL) {
        if (inet_pton(AF_INET, text, out->ip + 12) != 1)
            return CREST_EINVAL;
        memcpy(out->ip, v4_mapped_prefix, 12);
        out->family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, text, out->ip) != 1)
        return CREST_EINVAL;
    /* "::ffff:192.0.2.1" is the IPv4 client a dual-stack proxy saw: one client, one bucket. */
    out->family = memcmp(out->ip, v4_mapped_prefix, 12) == 0 ? 4 : 6;
    return 0;
}

static int all_digits(const char *s, size_t len) {
    if (len == 0 || len > 5)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int crest__addr_parse(const char *s, size_t len, crest__addr_t *out) {
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return CREST_EINVAL;
        size_t rest = len - (size_t)(close + 1 - s);
        if (rest != 0 && (close[1] != ':' || !all_digits(close + 2, rest - 1)))
            return CREST_EINVAL;
        size_t inner = (size_t)(close - s - 1);
        if (memchr(s + 1, ':', inner) == NULL)
            return CREST_EINVAL; /* brackets hold IPv6 only */
        return parse_bare(s + 1, inner, out);
    }
    const char *colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) == NULL) {
        /* One colon: IPv4 with a port (an IPv6 address has at least two). */
        if (!all_digits(colon + 1, len - (size_t)(colon + 1 - s)))
            return CREST_EINVAL;
        int rc = parse_bare(s, (size_t)(colon - s), out);
        return rc == 0 && out->family == 4 ? 0 : CREST_EINVAL;
    }
    return parse_bare(s, len, out);
}

int crest__cidr_match(const crest__cidr_t *blocks, size_t n, const crest__addr_t *a) {
    if (a->family == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const crest__cidr_t *b = &blocks[i];
        size_t whole = b->bits / 8u, rem = b->bits % 8u;
        if (memcmp(a->ip, b->ip, whole) != 0)
            continue;
        if (rem == 0 || ((a->ip[whole] ^ b->ip[whole]) & (uint8_t)(0xff00u >> rem)) == 0)
            return 1;
    }
    return 0;
}

/* ---- the walk over the forwarding headers ---- */

/* The right-most entries of the forwarding list, oldest overwritten first: a list longer than
 * this has more trusted hops than any real deployment, and the walk needs only its right end. */
#define MAX_HOPS 32

typedef struct {
    crest_str_t hop[MAX_HOPS]; /* hop[(first + i) % MAX_HOPS], i < n, left to right */
    size_t first;
    size_t n;
} hops_t;

static void hops_push(hops_t *h, const char *p, size_t len) {
    if (h->n < MAX_HOPS) {
        h->hop[(h->first + h->n++) % MAX_HOPS] = (crest_str_t){p, len};
    } else {
        h->hop[h->first] = (crest_str_t){p, len};
        h->first = (h->first + 1) % MAX_HOPS;
    }
}

static int is_ows(char c) {
    return c == ' ' || c == '\t';
}

static int name_is(const crest_str_t *name, const char *want) {
    size_t n = strlen(want);
    return name->len == n && strncasecmp(name->ptr, want, n) == 0;
}

/* X-Forwarded-For: "client, proxy1, proxy2". */
static void xff_hops(const char *p, size_t len, hops_t *h) {
    const char *end = p + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        const char *a = p, *b = stop;
        while (a < b && is_ows(*a))
            a++;
        while (b > a && is_ows(b[-1]))
            b--;
        if (b > a)
            hops_push(h, a, (size_t)(b - a));
        p = comma ? comma + 1 : end;
    }
}

/* Forwarded: elements separated by commas, each "pair;pair" with pair = token "=" (token or
 * quoted-string). Each element adds one hop: its for= value (quotes removed), or an empty hop
 * when it names none, which ends the walk. Returns the number of for= values seen. */
static size_t forwarded_hops(const char *p, size_t len, hops_t *h) {
    const char *end = p + len;
    size_t found = 0;
    while (p < end) {
        crest_str_t for_val = {"", 0};
        int element_has_pairs = 0;
        while (p < end) { /* one pair */
            while (p < end && is_ows(*p))
                p++;
            const char *name = p;
            while (p < end && *p != '=' && *p != ';' && *p != ',')
                p++;
            crest_str_t key = {name, (size_t)(p - name)};
            while (key.len && is_ows(key.ptr[key.len - 1]))
                key.len--;
            crest_str_t val = {"", 0};
            if (p < end && *p == '=') {
                p++;
                if (p < end && *p == '"') {
                    const char *q = ++p;
                    while (p < end && *p != '"')
                        p += (*p == '\\' && p + 1 < end) ? 2 : 1;
                    val = (crest_str_t){q, (size_t)((p < end ? p : end) - q)};
                    if (p < end)
                        p++;
                    else
                        val.len = 0; /* no closing quote: not a value */
                    if (memchr(val.ptr, '\\', val.len))
                        val.len = 0; /* an escape has no place in an address */
                } else {
                    const char *q = p;
                    while (p < end && *p != ';' && *p != ',' && !is_ows(*p))
                        p++;
                    val = (crest_str_t){q, (size_t)(p - q)};
                }
            }
            if (key.len) {
                element_has_pairs = 1;
                if (name_is(&key, "for"))
                    for_val = val;
            }
            while (p < end && *p != ';' && *p != ',')
                p++; /* whatever follows a value up to the next separator */
            if (p < end && *p == ';') {
                p++;
                continue;
            }
            break;
        }
        if (element_has_pairs) {
            hops_push(h, for_val.ptr, for_val.len);
            found += for_val.len > 0;
        }
        if (p < end && *p == ',')
            p++;
    }
    return found;
}

void crest__client_pick(const crest__cidr_t *blocks, size_t n, const crest__addr_t *peer,
                        const crest_header_t *headers, size_t nheaders, crest__addr_t *out) {
    *out = *peer;
    if (n == 0 || !crest__cidr_match(blocks, n, peer))
        return;
    hops_t h = {.n = 0};
    size_t with_for = 0;
    for (size_t i = 0; i < nheaders; i++)
        if (name_is(&headers[i].name, "forwarded"))
            with_for += forwarded_hops(headers[i].value.ptr, headers[i].value.len, &h);
    if (with_for == 0) { /* no Forwarded that names a client: X-Forwarded-For */
        h.n = h.first = 0;
        for (size_t i = 0; i < nheaders; i++)
            if (name_is(&headers[i].name, "x-forwarded-for"))
                xff_hops(headers[i].value.ptr, headers[i].value.len, &h);
    }
    for (size_t i = h.n; i-- > 0;) {
        const crest_str_t *hop = &h.hop[(h.first + i) % MAX_HOPS];
        crest__addr_t a;
        if (crest__addr_parse(hop->ptr, hop->len, &a) != 0)
            return; /* the trusted hop in *out wrote something that is not an address */
        *out = a;
        if (!crest__cidr_match(blocks, n, &a))
            return;
    }
}

const crest__addr_t *crest__req_client_addr(crest_req_t *req) {
    if (req->client_known)
        return &req->client;
    const crest_app_t *app = crest__app_of(req->loop);
    if (app->nproxies == 0)
        return &req->peer;
    if (req->head == NULL) /* the headers are gone: the peer is all we know */
        return &req->peer;
    crest__client_pick(app->proxies, app->nproxies, &req->peer, req->head->headers,
                       req->head->num_headers, &req->client);
    req->client_known = 1;
    return &req->client;
}

size_t crest_req_client(const crest_req_t *req, char *buf, size_t cap) {
    /* The answer is kept with the request (so that a later call, after the handler returned and
     * the headers are gone, gives the same); the request is the caller's, not shared. */
    return crest__addr_format(crest__req_client_addr((crest_req_t *)req), buf, cap);
}

int crest_app_trust_proxy(crest_app_t *app, const char *proxy) {
    if (app->rt.running)
        return CREST_EBUSY;
    if (proxy == NULL)
        return CREST_EINVAL;
    const char *slash = strchr(proxy, '/');
    size_t alen = slash ? (size_t)(slash - proxy) : strlen(proxy);
    crest__addr_t a;
    /* A configured block is a bare address: no brackets, no port. */
    if (alen == 0 || proxy[0] == '[' || parse_bare(proxy, alen, &a) != 0)
        return CREST_EINVAL;
    int v4_text = memchr(proxy, ':', alen) == NULL;
    unsigned max = v4_text ? 32 : 128, bits = max;
    if (slash != NULL) {
        const char *d = slash + 1;
        if (!all_digits(d, strlen(d)) || strlen(d) > 3)
            return CREST_EINVAL;
        bits = (unsigned)atoi(d);
        if (bits > max)
            return CREST_EINVAL;
    }
    if (v4_text)
        bits += 96;
    crest__cidr_t b = {.bits = (uint8_t)bits};
    memcpy(b.ip, a.ip, 16);
    for (unsigned i = 0; i < 16; i++) { /* "10.1.2.3/8" means 10.0.0.0/8 */
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
        b.ip[i] &= (uint8_t)(0xff00u >> keep);
    }
    crest__cidr_t *p = realloc(app->proxies, (app->nproxies + 1) * sizeof(*p));
    if (p == NULL)
        return CREST_ENOMEM;
    app->proxies = p;
    p[app->nproxies++] = b;
    return 0;
}
