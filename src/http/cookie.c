/* Cookies (RFC 6265): reading the Cookie header, writing Set-Cookie.
 *
 * Reading is lenient, as browsers' own parsers are (RFC 6265 5.4 sends "name=value" pairs
 * joined by "; "): an odd pair is skipped rather than failing the whole header. Writing is
 * strict (4.1.1): crest refuses to send what a browser would reject or misread, and the secure
 * defaults (HttpOnly, SameSite=Lax, Secure over TLS) cost nothing to keep. */
#include <string.h>
#include <time.h>

#include "http/cond.h"
#include "http/http.h"
#include "http/web.h"

static int is_ows(char c) {
    return c == ' ' || c == '\t';
}

static crest_str_t trim(const char *s, const char *end) {
    while (s < end && is_ows(*s))
        s++;
    while (end > s && is_ows(end[-1]))
        end--;
    return (crest_str_t){s, (size_t)(end - s)};
}

int crest__cookie_find(crest_str_t header, const char *name, size_t nlen, crest_str_t *out) {
    const char *s = header.ptr, *end = header.ptr + header.len;
    if (s == NULL)
        return 0;
    while (s < end) {
        const char *semi = memchr(s, ';', (size_t)(end - s));
        const char *pe = semi ? semi : end;
        const char *eq = memchr(s, '=', (size_t)(pe - s));
        if (eq != NULL) {
            crest_str_t n = trim(s, eq), v = trim(eq + 1, pe);
            if (n.len == nlen && memcmp(n.ptr, name, nlen) == 0) {
                if (v.len >= 2 && v.ptr[0] == '"' && v.ptr[v.len - 1] == '"')
                    v = (crest_str_t){v.ptr + 1, v.len - 2};
                *out = v;
                return 1;
            }
        }
        s = semi ? semi + 1 : end;
    }
    return 0;
}

crest_str_t crest_req_cookie(const crest_req_t *req, const char *name) {
    size_t count = 0, nlen = strlen(name);
    const crest_header_t *h = crest_req_headers(req, &count);
    crest_str_t v = {NULL, 0};
    for (size_t i = 0; i < count; i++)
        if (crest__str_ieq(h[i].name, "cookie") && crest__cookie_find(h[i].value, name, nlen, &v))
            return v;
    return (crest_str_t){NULL, 0};
}

/* ---- Set-Cookie ---- */

static int is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* cookie-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E */
static int is_cookie_octet(unsigned char c) {
    return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

static int valid_value(const char *v) {
    size_t len = strlen(v);
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    for (size_t i = 0; i < len; i++)
        if (!is_cookie_octet((unsigned char)v[i]))
            return 0;
    return 1;
}

/* Path and Domain: any CHAR except CTLs or ';' (RFC 6265 4.1.1 av-octet). */
static int valid_av(const char *v) {
    for (; *v; v++)
        if ((unsigned char)*v < 0x20 || (unsigned char)*v >= 0x7f || *v == ';')
            return 0;
    return 1;
}

void crest_cookie_opts_default(crest_cookie_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->path = "/";
    o->max_age = -1;
    o->http_only = 1;
    o->secure = -1;
    o->same_site = CREST_SAMESITE_LAX;
}

int crest__cookie_format(crest_buf_t *b, const char *name, const char *value,
                         const crest_cookie_opts_t *o, int tls, int64_t now) {
    crest_cookie_opts_t def;
    if (o == NULL) {
        crest_cookie_opts_default(&def);
        o = &def;
    }
    if (name == NULL || value == NULL || *name == '\0')
        return CREST_EINVAL;
    for (const char *c = name; *c; c++)
        if (!is_tchar((unsigned char)*c))
            return CREST_EINVAL;
    if (!valid_value(value) || (o->path && !valid_av(o->path)) ||
        (o->domain && !valid_av(o->domain)) || (unsigned)o->same_site > CREST_SAMESITE_OMIT)
        return CREST_EINVAL;
    int secure = o->secure < 0 ? tls : o->secure != 0;
    /* Browsers drop SameSite=None without Secure, and a Partitioned cookie without it. */
    if (o->same_site == CREST_SAMESITE_NONE || o->partitioned)
        secure = 1;
    /* The prefixes of RFC 6265bis 4.1.3: a browser refuses such a cookie without these. */
    if (strncmp(name, "__Secure-", 9) == 0 && !secure)
        return CREST_EINVAL;
    if (strncmp(name, "__Host-", 7) == 0 &&
        (!secure || o->domain != NULL || o->path == NULL || strcmp(o->path, "/") != 0))
        return CREST_EINVAL;
    crest_buf_printf(b, "%s=%s", name, value);
    if (o->path)
        crest_buf_printf(b, "; Path=%s", o->path);
    if (o->domain)
        crest_buf_printf(b, "; Domain=%s", o->domain);
    if (o->max_age >= 0) {
        char date[32];
        int64_t at = o->max_age == 0 ? 0 : now + o->max_age; /* deleting: the epoch */
        crest__http_date_format(at, date, sizeof(date));
        crest_buf_printf(b, "; Max-Age=%lld; Expires=%s", (long long)o->max_age, date);
    }
    if (secure)
        crest_buf_puts(b, "; Secure");
    if (o->http_only)
        crest_buf_puts(b, "; HttpOnly");
    static const char *const same[] = {"; SameSite=Lax", "; SameSite=Strict", "; SameSite=None",
                                       ""};
    crest_buf_puts(b, same[o->same_site]);
    if (o->partitioned)
        crest_buf_puts(b, "; Partitioned");
    crest_buf_append(b, "", 1); /* NUL-terminated; not counted in len */
    b->len--;
    return b->err;
}

int crest_res_cookie(crest_req_t *req, const char *name, const char *value,
                     const crest_cookie_opts_t *opts) {
    if (req->started)
        return CREST_EALREADY;
    /* The request's own connection decides "came over TLS": HTTP/1.1 and HTTP/2 requests alike
     * keep their connection (req->conn), whose transport is TLS when c->tls is set. */
    int tls = req->conn != NULL && req->conn->tls != NULL;
    char mem[256];
    crest_buf_t b = CREST_BUF_ON(mem);
    int rc = crest__cookie_format(&b, name, value, opts, tls, (int64_t)time(NULL));
    if (rc == 0)
        rc = crest_res_header(req, "Set-Cookie", b.ptr);
    crest_buf_free(&b);
    return rc;
}
