/* See eio.h. Engine.IO and Socket.IO packets are short text headers in front of data, so the
 * parsers are a few comparisons each; nothing here allocates except the appends into the caller's
 * buffer.
 *
 * base64 is written by hand rather than taken from OpenSSL: EVP_DecodeBlock skips whitespace,
 * neither reports how many '=' it met nor checks that the bits they pad are zero, and cannot be
 * told to decode over its own input. A polling payload's binary packets are decoded in place so
 * that a payload costs no second buffer, and a strict decoder means one encoding per byte string,
 * which keeps what crest accepts from drifting into what no client sends. */
#include <string.h>

#include "codec/eio.h"

/* ---- base64 ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A character's 6-bit value, or -1 when it is outside the alphabet ('=' included). */
static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

size_t crest__b64_encode(const void *in, size_t n, char *out) {
    const uint8_t *s = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

/* Each group of four characters is read whole before its (at most three) bytes are written, and
 * the output of group k ends at 3k + 3 <= 4k + 4, where group k + 1 starts: decoding over the
 * input never overwrites a character not yet read. */
int crest__b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len) {
    if (n % 4 != 0)
        return CREST_EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int pad = 0;
        if (i + 4 == n && in[i + 3] == '=')
            pad = in[i + 2] == '=' ? 2 : 1;
        int a = b64_value((unsigned char)in[i]);
        int b = b64_value((unsigned char)in[i + 1]);
        int c = pad == 2 ? 0 : b64_value((unsigned char)in[i + 2]);
        int d = pad ? 0 : b64_value((unsigned char)in[i + 3]);
        if ((a | b | c | d) < 0)
            return CREST_EINVAL;
        /* The bits a '=' pads are zero in the one canonical encoding (RFC 4648 section 3.5). */
        if ((pad == 2 && (b & 0x0f)) || (pad == 1 && (c & 0x03)))
            return CREST_EINVAL;
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2)
            out[o++] = (uint8_t)(v >> 8);
        if (pad < 1)
            out[o++] = (uint8_t)v;
    }
    *out_len = o;
    return 0;
}

/* ---- Engine.IO ---- */

/* Stateless between calls: the end of the payload is malformed when the byte before it is a
 * separator (a trailing one: the empty packet after it), which a binary packet's in-place decode
 * cannot fake, since its decoded bytes always end before its last base64 character. */
int crest__eio_next(char *p, size_t n, size_t *off, crest__eio_packet_t *pkt) {
    size_t at = *off;
    if (at > n)
        return CREST_EINVAL;
    if (at == n)
        return n == 0 || p[n - 1] == CREST__EIO_SEP ? CREST_EINVAL : 0;
    char *s = p + at;
    char *sep = memchr(s, CREST__EIO_SEP, n - at);
    size_t len = sep ? (size_t)(sep - s) : n - at;
    if (len == 0)
        return CREST_EINVAL;
    if (s[0] == 'b') {
        size_t dlen;
        if (crest__b64_decode(s + 1, len - 1, (uint8_t *)s + 1, &dlen) != 0)
            return CREST_EINVAL;
        pkt->type = CREST__EIO_MESSAGE;
        pkt->binary = 1;
        pkt->len = dlen;
    } else if (s[0] >= '0' && s[0] <= '6') {
        pkt->type = s[0] - '0';
        pkt->binary = 0;
        pkt->len = len - 1;
    } else {
        return CREST_EINVAL;
    }
    pkt->data = s + 1;
    *off = at + len + (sep != NULL);
    return 1;
}

int crest__eio_append(crest_buf_t *b, int type, const void *data, size_t len, int binary) {
    char head[2];
    size_t k = 0;
    if (b->len > 0)
        head[k++] = CREST__EIO_SEP;
    head[k++] = binary ? 'b' : (char)('0' + type);
    crest_buf_append(b, head, k);
    if (!binary)
        return crest_buf_append(b, data, len);
    /* Encoded through a stack block of whole 3-byte groups, so only the last block pads. */
    const uint8_t *s = data;
    char out[CREST__B64_LEN(768)];
    for (size_t i = 0; i < len && b->err == 0; i += 768) {
        size_t m = len - i < 768 ? len - i : 768;
        crest_buf_append(b, out, crest__b64_encode(s + i, m, out));
    }
    return b->err;
}

/* ---- Socket.IO ---- */

static int is_digit(char c) {
    return c >= '0' && c <= '9';
}

/* Decimal digits of v into out (at least 20 bytes); returns how many. */
static size_t put_u64(char *out, uint64_t v) {
    char tmp[20];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (size_t i = 0; i < k; i++)
        out[i] = tmp[k - 1 - i];
    return k;
}

int crest__sio_parse(const char *p, size_t n, uint32_t max_attachments, crest__sio_packet_t *out) {
    if (n == 0 || p[0] < '0' || p[0] > '6')
        return CREST_EINVAL;
    int type = p[0] - '0';
    size_t i = 1;
    uint32_t attachments = 0;
    if (type == CREST__SIO_BINARY_EVENT || type == CREST__SIO_BINARY_ACK) {
        /* Leading zeros are accepted (socket.io-parser reads the count with Number()); the value
         * is checked against the limit digit by digit, so no run of digits can overflow. Zero is
         * refused as socket.io-parser refuses it: a binary packet always carries a binary part. */
        size_t start = i;
        uint64_t v = 0;
        for (; i < n && is_digit(p[i]); i++) {
            v = v * 10 + (uint64_t)(p[i] - '0');
            if (v > max_attachments)
                return CREST_EINVAL;
        }
        if (i == start || i == n || p[i] != '-' || v == 0)
            return CREST_EINVAL;
        attachments = (uint32_t)v;
        i++;
    }
    out->nsp = "/";
    out->nsp_len = 1;
    if (i < n && p[i] == '/') {
        const char *comma = memchr(p + i, ',', n - i);
        size_t end = comma ? (size_t)(comma - p) : n;
        out->nsp = p + i;
        out->nsp_len = end - i;
        i = comma ? end + 1 : n;
    }
    int64_t id = -1;
    if (i < n && is_digit(p[i])) {
        /* 16 digits hold every id up to 2^53 - 1 (itself 16 digits long) and cannot overflow. */
        size_t start = i;
        uint64_t v = 0;
        for (; i < n && is_digit(p[i]); i++) {
            if (i - start == 16)
                return CREST_EINVAL;
            v = v * 10 + (uint64_t)(p[i] - '0');
        }
        if (v > (uint64_t)CREST__SIO_ID_MAX)
            return CREST_EINVAL;
        id = (int64_t)v;
    }
    out->type = type;
    out->attachments = attachments;
    out->id = id;
    out->json = p + i;
    out->json_len = n - i;
    return 0;
}

int crest__sio_head(crest_buf_t *b, int type, uint32_t attachments, const char *nsp, size_t nsp_len,
                    int64_t id) {
    char head[1 + 10 + 1];
    size_t k = 0;
    head[k++] = (char)('0' + type);
    if (attachments > 0) {
        char digits[20];
        size_t m = put_u64(digits, attachments);
        memcpy(head + k, digits, m);
        k += m;
        head[k++] = '-';
    }
    crest_buf_append(b, head, k);
    if (nsp_len > 0 && !(nsp_len == 1 && nsp[0] == '/')) {
        crest_buf_append(b, nsp, nsp_len);
        crest_buf_append(b, ",", 1);
    }
    if (id >= 0) {
        char digits[20];
        crest_buf_append(b, digits, put_u64(digits, (uint64_t)id));
    }
    return b->err;
}
