/* See sioad.h. libmsgpack (Debian's libmsgpackc) reads and writes the msgpack; this file maps its
 * values to and from the JSON text crest's Socket.IO layer holds.
 *
 * Before libmsgpack sees a message, check() walks it once. libmsgpack allocates a container's
 * items as soon as it reads the container's count, so five bytes declaring 2^32 - 1 items would
 * make it ask for about 100 GB: check() refuses any count larger than the bytes left (every item
 * takes at least one), which bounds what libmsgpack allocates by a small multiple of the
 * message's length. It also counts the nesting, so that a message nested too deep is told apart
 * from memory running out (libmsgpack reports both as a parse error), and it refuses trailing
 * bytes as notepack.io does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "codec/sioad.h"
#include "crest/json.h"

/* ---- the walk before libmsgpack ---- */

static uint32_t be16(const uint8_t *p) {
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Skip one value at *pp (before end) inside `depth` containers; 0 or CREST_EINVAL. */
static int skip(const uint8_t **pp, const uint8_t *end, int depth) {
    const uint8_t *p = *pp;
    if (p == end)
        return CREST_EINVAL;
    uint8_t b = *p++;
    size_t lenbytes = 0; /* a length or count field after the type byte */
    size_t fixed = 0;    /* bytes of a value whose size the type byte gives */
    enum { SCALAR, BYTES, EXT, ARRAY, MAP } kind = SCALAR;
    if (b <= 0x7f || b >= 0xe0) {
        /* positive and negative fixint */
    } else if (b <= 0x8f) {
        kind = MAP;
    } else if (b <= 0x9f) {
        kind = ARRAY;
    } else if (b <= 0xbf) {
        kind = BYTES; /* fixstr: its length is in the type byte */
    } else {
        switch (b) {
        case 0xc0: /* nil, false, true */
        case 0xc2:
        case 0xc3:
            break;
        case 0xc4: /* bin and str 8, 16, 32 */
        case 0xd9:
            kind = BYTES, lenbytes = 1;
            break;
        case 0xc5:
        case 0xda:
            kind = BYTES, lenbytes = 2;
            break;
        case 0xc6:
        case 0xdb:
            kind = BYTES, lenbytes = 4;
            break;
        case 0xc7: /* ext 8, 16, 32: the length, then a type byte and the data */
            kind = EXT, lenbytes = 1;
            break;
        case 0xc8:
            kind = EXT, lenbytes = 2;
            break;
        case 0xc9:
            kind = EXT, lenbytes = 4;
            break;
        case 0xcc: /* uint and int 8, 16, 32, 64, float 32, 64 */
        case 0xd0:
            fixed = 1;
            break;
        case 0xcd:
        case 0xd1:
            fixed = 2;
            break;
        case 0xca:
        case 0xce:
        case 0xd2:
            fixed = 4;
            break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
            fixed = 8;
            break;
        case 0xd4: /* fixext 1, 2, 4, 8, 16: a type byte and the data */
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
            fixed = 1 + ((size_t)1 << (b - 0xd4));
            break;
        case 0xdc: /* array and map 16, 32 */
            kind = ARRAY, lenbytes = 2;
            break;
        case 0xdd:
            kind = ARRAY, lenbytes = 4;
            break;
        case 0xde:
            kind = MAP, lenbytes = 2;
            break;
        case 0xdf:
            kind = MAP, lenbytes = 4;
            break;
        default: /* 0xc1 is never used */
            return CREST_EINVAL;
        }
    }
    if (lenbytes > (size_t)(end - p))
        return CREST_EINVAL;
    uint64_t n = lenbytes == 0   ? (b & (b >= 0xa0 ? 0x1f : 0x0f))
                 : lenbytes == 1 ? p[0]
                 : lenbytes == 2 ? be16(p)
                                 : be32(p);
    p += lenbytes;
    if (kind == BYTES)
        fixed = (size_t)n;
    else if (kind == EXT)
        fixed = (size_t)n + 1;
    if (fixed > (size_t)(end - p))
        return CREST_EINVAL;
    p += fixed;
    if (kind == ARRAY || kind == MAP) {
        uint64_t items = kind == MAP ? 2 * n : n;
        if (depth >= CREST__SIOAD_MAX_DEPTH || items > (size_t)(end - p))
            return CREST_EINVAL;
        for (uint64_t i = 0; i < items; i++) {
            int rc = skip(&p, end, depth + 1);
            if (rc)
                return rc;
        }
    }
    *pp = p;
    return 0;
}

static int check(const uint8_t *msg, size_t len) {
    const uint8_t *p = msg;
    int rc = skip(&p, msg + len, 0);
    return rc ? rc : p == msg + len ? 0 : CREST_EINVAL;
}

/* ---- msgpack -> JSON ---- */

typedef struct {
    crest_buf_t *json;
    crest_str_t *bins;
    uint32_t nbins;
    uint32_t cap;
} writer_t;

static int add_bin(writer_t *w, const char *ptr, size_t len) {
    if (w->nbins == w->cap) {
        uint32_t cap = w->cap ? w->cap * 2 : 4;
        crest_str_t *n = realloc(w->bins, cap * sizeof(*n));
        if (n == NULL)
            return CREST_ENOMEM;
        w->bins = n;
        w->cap = cap;
    }
    w->bins[w->nbins] = (crest_str_t){ptr, len};
    char ph[64];
    int n = snprintf(ph, sizeof(ph), "{\"_placeholder\":true,\"num\":%u}", (unsigned)w->nbins);
    w->nbins++;
    return crest_buf_append(w->json, ph, (size_t)n);
}

/* A number as JavaScript's Number.prototype.toString writes it (what JSON.stringify writes for a
 * finite number; NaN and the infinities become null). The digits are the fewest that read back as
 * the same double: glibc's printf rounds exactly, so the first precision whose text strtod maps
 * back to d is the shortest, and it is the closest such text, which is JavaScript's choice. */
static int put_num(crest_buf_t *b, double d) {
    char t[40];
    if (!isfinite(d))
        return crest_buf_append(b, "null", 4);
    if (d == 0) /* -0 too */
        return crest_buf_append(b, "0", 1);
    if (d == floor(d) && fabs(d) < 9007199254740992.0) {
        int n = snprintf(t, sizeof(t), "%lld", (long long)d);
        return crest_buf_append(b, t, (size_t)n);
    }
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec, d);
        if (strtod(e, NULL) == d)
            break;
    }
    /* e: [-]D[.DDD]e[+-]XX. Collect the digits and the exponent. */
    const char *s = e;
    int neg = *s == '-';
    s += neg;
    char dig[20];
    int k = 0;
    for (; *s != 'e'; s++)
        if (*s != '.')
            dig[k++] = *s;
    while (k > 1 && dig[k - 1] == '0')
        k--;
    int n = atoi(s + 1) + 1; /* the value is 0.DIGITS times 10^n */
    size_t o = 0;
    if (neg)
        t[o++] = '-';
    if (k <= n && n <= 21) {
        memcpy(t + o, dig, (size_t)k);
        o += (size_t)k;
        for (int i = k; i < n; i++)
            t[o++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(t + o, dig, (size_t)n);
        o += (size_t)n;
        t[o++] = '.';
        memcpy(t + o, dig + n, (size_t)(k - n));
        o += (size_t)(k - n);
    } else if (-6 < n && n <= 0) {
        t[o++] = '0';
        t[o++] = '.';
        for (int i = n; i < 0; i++)
            t[o++] = '0';
        memcpy(t + o, dig, (size_t)k);
        o += (size_t)k;
    } else {
        t[o++] = dig[0];
        if (k > 1) {
            t[o++] = '.';
            memcpy(t + o, dig + 1, (size_t)(k - 1));
            o += (size_t)(k - 1);
        }
        o += (size_t)snprintf(t + o, sizeof(t) - o, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
    }
    return crest_buf_append(b, t, o);
}

/* A JSON string as JSON.stringify writes it: '"', '\\' and the control characters escaped (the
 * short forms where JSON has them, else \u00xx in lower case), everything else as is. The text is
 * UTF-8 already (checked by the caller). */
static int put_str(crest_buf_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (crest_buf_append(b, "\"", 1))
        return b->err;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        crest_buf_append(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            el = 6;
        }
        crest_buf_append(b, esc, el);
    }
    crest_buf_append(b, s + run, n - run);
    return crest_buf_append(b, "\"", 1);
}

static int utf8_ok(const char *s, size_t n) {
    return crest_utf8_feed(CREST_UTF8_ACCEPT, s, n) == CREST_UTF8_ACCEPT;
}

/* A time value in ms as Date.prototype.toJSON writes it: the ISO 8601 text
 * "YYYY-MM-DDTHH:mm:ss.sssZ" (a year outside 0..9999 as +YYYYYY or -YYYYYY), or null when the
 * time is outside JavaScript's range of +-8.64e15 ms (an Invalid Date). t is whole already. */
static int put_date(crest_buf_t *b, double t) {
    if (!(fabs(t) <= 8.64e15))
        return crest_buf_append(b, "null", 4);
    int64_t ms = (int64_t)t;
    int64_t days = ms / 86400000, rem = ms % 86400000;
    if (rem < 0) {
        rem += 86400000;
        days--;
    }
    /* Days since 1970-01-01 to a civil date, counting in 400-year eras from 0000-03-01 (whose
     * leap day falls at the end of each year, which keeps the month arithmetic regular). */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);
    char t8[48];
    int n;
    if (year >= 0 && year <= 9999)
        n = snprintf(t8, sizeof(t8), "\"%04lld", (long long)year);
    else
        n = snprintf(t8, sizeof(t8), "\"%c%06lld", year < 0 ? '-' : '+', llabs((long long)year));
    n += snprintf(t8 + n, sizeof(t8) - (size_t)n, "-%02lld-%02lldT%02lld:%02lld:%02lld.%03lldZ\"",
                  (long long)month, (long long)day, (long long)(rem / 3600000),
                  (long long)(rem / 60000 % 60), (long long)(rem / 1000 % 60),
                  (long long)(rem % 1000));
    return crest_buf_append(b, t8, (size_t)n);
}

/* Whether an ext value was written in its fixext form (prefix 0xd4..0xd8 for 1..16 bytes). Its
 * data points into the message just after the type byte; the byte before that is the prefix for
 * a fixext, and the low byte of the length (equal to the size, never 0xd4..0xd8 for these
 * sizes) for ext 8/16/32. */
static int is_fixext(const msgpack_object_ext *x) {
    const uint8_t *p = (const uint8_t *)x->ptr;
    switch (x->size) {
    case 1:
        return p[-2] == 0xd4;
    case 2:
        return p[-2] == 0xd5;
    case 4:
        return p[-2] == 0xd6;
    case 8:
        return p[-2] == 0xd7;
    case 16:
        return p[-2] == 0xd8;
    default:
        return 0;
    }
}

/* Whether an ext value was written as ext 8 (0xc7, a length byte, the type): the byte three
 * before its data is 0xc7. Only a fixext's could be anything, and ext 16/32 have a 0 there for a
 * size below 256. */
static int is_ext8(const msgpack_object_ext *x) {
    return !is_fixext(x) && x->size < 256 && ((const uint8_t *)x->ptr)[-3] == 0xc7;
}

static int is_undefined(const msgpack_object *o) {
    return o->type == MSGPACK_OBJECT_EXT && o->via.ext.type == 0 && is_fixext(&o->via.ext) &&
           o->via.ext.size == 1;
}

/* An ext value as notepack.io's decoder reads it, then JSON.stringify. */
static int put_ext(writer_t *w, const msgpack_object_ext *x) {
    const uint8_t *p = (const uint8_t *)x->ptr;
    int fix = is_fixext(x);
    if (x->type == 0 && !fix)
        return add_bin(w, x->ptr, x->size); /* an ArrayBuffer */
    if (x->type == 0 && x->size == 1)
        return crest_buf_append(w->json, "null", 4); /* undefined, in an array */
    if (x->type == 0 && x->size == 8) { /* a date in ms: int32 high word, uint32 low word */
        double hi = (double)(int32_t)be32(p) * 4294967296.0;
        return put_date(w->json, trunc(hi + be32(p + 4)));
    }
    if (x->type == -1 && fix && x->size == 4) /* timestamp 32: seconds */
        return put_date(w->json, (double)be32(p) * 1e3);
    if (x->type == -1 && fix && x->size == 8) { /* timestamp 64: 30 bits of ns, 34 of s */
        uint32_t hi = be32(p), lo = be32(p + 4);
        double s = (double)(hi & 3) * 4294967296.0 + lo;
        return put_date(w->json, trunc(s * 1e3 + (double)(hi >> 2) / 1e6));
    }
    if (x->type == -1 && x->size == 12 && is_ext8(x)) { /* timestamp 96: ns, int64 s */
        double s = (double)(int32_t)be32(p + 4) * 4294967296.0 + be32(p + 8);
        return put_date(w->json, trunc(s * 1e3 + (double)be32(p) / 1e6));
    }
    if (x->type == -1 && is_ext8(x)) /* notepack reads 12 bytes whatever the length says */
        return CREST_EINVAL;
    char head[8];
    int n = snprintf(head, sizeof(head), "[%d,", x->type);
    crest_buf_append(w->json, head, (size_t)n);
    int rc = add_bin(w, x->ptr, x->size);
    return rc ? rc : crest_buf_append(w->json, "]", 1);
}

static int put_value(writer_t *w, const msgpack_object *o) {
    crest_buf_t *b = w->json;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return crest_buf_append(b, "null", 4);
    case MSGPACK_OBJECT_BOOLEAN:
        return o->via.boolean ? crest_buf_append(b, "true", 4) : crest_buf_append(b, "false", 5);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return put_num(b, (double)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return put_num(b, (double)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return put_num(b, o->via.f64);
    case MSGPACK_OBJECT_STR:
        if (!utf8_ok(o->via.str.ptr, o->via.str.size))
            return CREST_EINVAL;
        return put_str(b, o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return add_bin(w, o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_EXT:
        return put_ext(w, &o->via.ext);
    case MSGPACK_OBJECT_ARRAY: {
        crest_buf_append(b, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i > 0)
                crest_buf_append(b, ",", 1);
            int rc = put_value(w, &o->via.array.ptr[i]);
            if (rc)
                return rc;
        }
        return crest_buf_append(b, "]", 1);
    }
    case MSGPACK_OBJECT_MAP: {
        crest_buf_append(b, "{", 1);
        int first = 1;
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR ||
                !utf8_ok(kv->key.via.str.ptr, kv->key.via.str.size))
                return CREST_EINVAL;
            if (is_undefined(&kv->val)) /* JSON.stringify leaves the member out */
                continue;
            if (!first)
                crest_buf_append(b, ",", 1);
            first = 0;
            put_str(b, kv->key.via.str.ptr, kv->key.via.str.size);
            crest_buf_append(b, ":", 1);
            int rc = put_value(w, &kv->val);
            if (rc)
                return rc;
        }
        return crest_buf_append(b, "}", 1);
    }
    }
    return CREST_EINVAL;
}

/* ---- the message's shape ---- */

/* The member `key` of a map; with duplicates the last, as in the object notepack.io builds. */
static const msgpack_object *member(const msgpack_object *map, const char *key) {
    size_t kl = strlen(key);
    for (uint32_t i = map->via.map.size; i-- > 0;) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
            memcmp(k->via.str.ptr, key, kl) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

/* A list of rooms (absent: empty). A number is written as its JSON text at the end of m->text_;
 * its entry keeps ptr NULL until point_rooms, once text_ has stopped moving. */
static int read_rooms(crest__sioad_msg_t *m, const msgpack_object *o, crest_str_t **out,
                      size_t *n) {
    if (o == NULL || o->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return CREST_EINVAL;
    if (o->via.array.size == 0)
        return 0;
    *out = calloc(o->via.array.size, sizeof(**out));
    if (*out == NULL)
        return CREST_ENOMEM;
    *n = o->via.array.size;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *r = &o->via.array.ptr[i];
        if (r->type == MSGPACK_OBJECT_STR) {
            if (!utf8_ok(r->via.str.ptr, r->via.str.size))
                return CREST_EINVAL;
            (*out)[i] = (crest_str_t){r->via.str.ptr, r->via.str.size};
            continue;
        }
        size_t at = m->text_.len;
        if (r->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            put_num(&m->text_, (double)r->via.u64);
        else if (r->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            put_num(&m->text_, (double)r->via.i64);
        else if (r->type == MSGPACK_OBJECT_FLOAT32 || r->type == MSGPACK_OBJECT_FLOAT64)
            put_num(&m->text_, r->via.f64);
        else
            return CREST_EINVAL;
        if (m->text_.err)
            return m->text_.err;
        (*out)[i] = (crest_str_t){NULL, m->text_.len - at};
    }
    return 0;
}

/* Point the numbers' entries at their text, in the order read_rooms wrote them. */
static size_t point_rooms(crest__sioad_msg_t *m, crest_str_t *r, size_t n, size_t at) {
    for (size_t i = 0; i < n; i++)
        if (r[i].ptr == NULL) {
            r[i].ptr = m->text_.ptr + at;
            at += r[i].len;
        }
    return at;
}

static int is_true(const msgpack_object *o) {
    return o != NULL && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

static int decode_tree(const msgpack_object *root, crest__sioad_msg_t *m) {
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 3)
        return CREST_EINVAL;
    const msgpack_object *uid = &root->via.array.ptr[0];
    const msgpack_object *pkt = &root->via.array.ptr[1];
    const msgpack_object *opts = &root->via.array.ptr[2];
    if (uid->type != MSGPACK_OBJECT_STR || pkt->type != MSGPACK_OBJECT_MAP ||
        opts->type != MSGPACK_OBJECT_MAP || !utf8_ok(uid->via.str.ptr, uid->via.str.size))
        return CREST_EINVAL;
    m->uid = (crest_str_t){uid->via.str.ptr, uid->via.str.size};

    const msgpack_object *type = member(pkt, "type");
    if (type == NULL || type->type != MSGPACK_OBJECT_POSITIVE_INTEGER || type->via.u64 > 6)
        return CREST_EINVAL;
    m->type = (int)type->via.u64;
    const msgpack_object *nsp = member(pkt, "nsp");
    if (nsp == NULL || is_undefined(nsp)) {
        m->nsp = (crest_str_t){"/", 1};
    } else if (nsp->type == MSGPACK_OBJECT_STR && utf8_ok(nsp->via.str.ptr, nsp->via.str.size)) {
        m->nsp = (crest_str_t){nsp->via.str.ptr, nsp->via.str.size};
    } else {
        return CREST_EINVAL;
    }

    const msgpack_object *data = member(pkt, "data");
    if (data != NULL && !is_undefined(data)) {
        writer_t w = {&m->json, NULL, 0, 0};
        int rc = put_value(&w, data);
        m->bins = w.bins;
        m->nbins = w.nbins;
        if (rc == 0)
            rc = m->json.err;
        if (rc)
            return rc;
    }

    int rc = read_rooms(m, member(opts, "rooms"), &m->rooms, &m->nrooms);
    if (rc == 0)
        rc = read_rooms(m, member(opts, "except"), &m->except, &m->nexcept);
    if (rc)
        return rc;
    point_rooms(m, m->except, m->nexcept, point_rooms(m, m->rooms, m->nrooms, 0));
    const msgpack_object *flags = member(opts, "flags");
    if (flags != NULL && flags->type == MSGPACK_OBJECT_MAP) {
        m->local = is_true(member(flags, "local"));
        m->volatile_ = is_true(member(flags, "volatile"));
    }
    return 0;
}

int crest__sioad_decode(const void *msg, size_t len, crest__sioad_msg_t *out) {
    memset(out, 0, sizeof(*out));
    int rc = check(msg, len);
    if (rc)
        return rc;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 2048))
        return CREST_ENOMEM;
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(msg, len, &off, &zone, &root);
    if (ur == MSGPACK_UNPACK_SUCCESS)
        rc = decode_tree(&root, out);
    else /* the walk has checked the bytes: what is left is memory */
        rc = CREST_ENOMEM;
    msgpack_zone_destroy(&zone);
    return rc;
}

void crest__sioad_msg_free(crest__sioad_msg_t *m) {
    if (m == NULL)
        return;
    crest_buf_free(&m->json);
    crest_buf_free(&m->text_);
    free(m->bins);
    free(m->rooms);
    free(m->except);
    memset(m, 0, sizeof(*m));
}

/* ---- JSON -> msgpack ---- */

static int on_write(void *data, const char *buf, size_t len) {
    return crest_buf_append(data, buf, len);
}

typedef struct {
    msgpack_packer pk;
    const crest_str_t *bins;
    uint32_t nbins;
} packer_t;

static int pack_str(msgpack_packer *pk, const char *s, size_t n) {
    int rc = msgpack_pack_str(pk, n);
    return rc ? rc : msgpack_pack_str_body(pk, s, n);
}

/* A number as notepack.io writes it: an integer when it is one and fits 64 bits (uint for 0 and
 * up, the smallest form; -0 is 0), else a float64. libmsgpack picks the same smallest forms. */
static int pack_num(msgpack_packer *pk, double d) {
    if (d == floor(d) && d >= -9223372036854775808.0 && d < 18446744073709551616.0)
        return d >= 0 ? msgpack_pack_uint64(pk, (uint64_t)d) : msgpack_pack_int64(pk, (int64_t)d);
    return msgpack_pack_double(pk, d);
}

/* A value nested at `depth` containers of the message. Returns 0, CREST_EINVAL, or 1 when the
 * buffer's err is set (the caller reads it). */
static int pack_value(packer_t *p, const crest_json_t *v, int depth) {
    msgpack_packer *pk = &p->pk;
    switch (crest_json_type(v)) {
    case CREST_JSON_NULL:
        return msgpack_pack_nil(pk) ? 1 : 0;
    case CREST_JSON_BOOL: {
        int t = 0;
        crest_json_bool(v, &t);
        return (t ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) ? 1 : 0;
    }
    case CREST_JSON_NUMBER: {
        double d = 0;
        crest_json_num(v, &d);
        return pack_num(pk, d) ? 1 : 0;
    }
    case CREST_JSON_STRING: {
        crest_str_t s = crest_json_str(v);
        return pack_str(pk, s.ptr, s.len) ? 1 : 0;
    }
    case CREST_JSON_ARRAY:
        if (depth >= CREST__SIOAD_MAX_DEPTH)
            return CREST_EINVAL;
        if (msgpack_pack_array(pk, crest_json_len(v)))
            return 1;
        for (const crest_json_t *it = crest_json_first(v); it; it = crest_json_next(it)) {
            int rc = pack_value(p, it, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    case CREST_JSON_OBJECT: {
        int ph = 0;
        if (crest_json_bool(crest_json_get(v, "_placeholder"), &ph) == 0 && ph) {
            /* socket.io-parser's rule: any object whose _placeholder is true is one */
            double num = -1;
            if (crest_json_num(crest_json_get(v, "num"), &num) || !(num >= 0) ||
                !(num < p->nbins) || num != floor(num))
                return CREST_EINVAL;
            const crest_str_t *bin = &p->bins[(uint32_t)num];
            if (msgpack_pack_bin(pk, bin->len) || msgpack_pack_bin_body(pk, bin->ptr, bin->len))
                return 1;
            return 0;
        }
        if (depth >= CREST__SIOAD_MAX_DEPTH)
            return CREST_EINVAL;
        if (msgpack_pack_map(pk, crest_json_len(v)))
            return 1;
        for (const crest_json_t *it = crest_json_first(v); it; it = crest_json_next(it)) {
            crest_str_t k = crest_json_key(it);
            if (pack_str(pk, k.ptr, k.len))
                return 1;
            int rc = pack_value(p, it, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    }
    default:
        return CREST_EINVAL;
    }
}

static int pack_rooms(msgpack_packer *pk, const crest_str_t *r, size_t n) {
    if (msgpack_pack_array(pk, n))
        return 1;
    for (size_t i = 0; i < n; i++)
        if (pack_str(pk, r[i].ptr, r[i].len))
            return 1;
    return 0;
}

int crest__sioad_encode(crest_buf_t *out, crest_str_t uid, crest_str_t nsp, int type,
                        const char *json, size_t len, const crest_str_t *bins, uint32_t nbins,
                        const crest_str_t *rooms, size_t nrooms, const crest_str_t *except,
                        size_t nexcept) {
    if (out->err)
        return out->err;
    crest_json_t *doc = NULL;
    if (len > 0) {
        int rc = crest_json_parse(json, len, &doc);
        if (rc)
            return rc;
    }
    size_t start = out->len;
    packer_t p = {.bins = bins, .nbins = nbins};
    msgpack_packer_init(&p.pk, out, on_write);
    msgpack_packer *pk = &p.pk;
    /* The key order is socket.io's: the packet is built as {type, data} and the adapter sets nsp;
     * the options as {rooms, except, flags}. */
    int rc = msgpack_pack_array(pk, 3) || pack_str(pk, uid.ptr, uid.len) ||
             msgpack_pack_map(pk, doc ? 3 : 2) || pack_str(pk, "type", 4) ||
             msgpack_pack_int(pk, type);
    if (rc == 0 && doc != NULL) {
        rc = pack_str(pk, "data", 4);
        if (rc == 0)
            rc = pack_value(&p, doc, 2);
    }
    if (rc == 0)
        rc = pack_str(pk, "nsp", 3) || pack_str(pk, nsp.ptr, nsp.len) || msgpack_pack_map(pk, 3) ||
             pack_str(pk, "rooms", 5) || pack_rooms(pk, rooms, nrooms) ||
             pack_str(pk, "except", 6) || pack_rooms(pk, except, nexcept) ||
             pack_str(pk, "flags", 5) || msgpack_pack_map(pk, 0);
    crest_json_free(doc);
    if (rc == 1 || out->err)
        rc = out->err ? out->err : CREST_ENOMEM;
    if (rc)
        out->len = start;
    return rc;
}

int crest__sioad_channel(crest_buf_t *out, crest_str_t prefix, crest_str_t nsp,
                         const crest_str_t *rooms, size_t nrooms) {
    crest_buf_append(out, prefix.ptr, prefix.len);
    crest_buf_append(out, "#", 1);
    crest_buf_append(out, nsp.ptr, nsp.len);
    crest_buf_append(out, "#", 1);
    if (nrooms == 1) {
        crest_buf_append(out, rooms[0].ptr, rooms[0].len);
        crest_buf_append(out, "#", 1);
    }
    return out->err;
}
