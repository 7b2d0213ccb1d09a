/* WebSocket frame codec. Written by hand: the frame format is the protocol's
 * core, the parser must work incrementally on whatever the kernel hands us (one byte or a hundred
 * frames) and unmask in place without copying, and no packaged library does that without its own
 * I/O layer. */
#include <string.h>

#include "codec/ws_frame.h"

/* ---- parser ---- */

void crest__ws_parser_init(crest__ws_parser_t *p, uint64_t max_frame, int allow_rsv1,
                           int require_mask) {
    memset(p, 0, sizeof(*p));
    p->max_frame = max_frame;
    p->allow_rsv1 = allow_rsv1 ? 1 : 0;
    p->require_mask = require_mask ? 1 : 0;
}

/* Check the first two header bytes as soon as they are there, so that garbage is refused before
 * waiting for a length that may never come. */
static int check_start(crest__ws_parser_t *p) {
    uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
    uint8_t opcode = b0 & 0x0F;
    int fin = b0 >> 7, rsv1 = (b0 >> 6) & 1, masked = b1 >> 7;
    if (b0 & 0x30)
        return -CREST__WS_PROTOCOL_ERROR; /* RSV2, RSV3: no extension of ours defines them */
    if (masked != p->require_mask)
        return -CREST__WS_PROTOCOL_ERROR; /* clients mask, servers do not (section 5.1) */
    if (opcode & 0x08) {
        if (opcode > CREST__WS_PONG)
            return -CREST__WS_PROTOCOL_ERROR; /* reserved control opcode */
        if (!fin || (b1 & 0x7F) > 125 || rsv1)
            return -CREST__WS_PROTOCOL_ERROR; /* control frames are short and unfragmented */
    } else if (opcode == CREST__WS_CONT) {
        if (p->msg_opcode == 0 || rsv1)
            return -CREST__WS_PROTOCOL_ERROR; /* nothing to continue; RSV1 only on the first */
    } else if (opcode == CREST__WS_TEXT || opcode == CREST__WS_BINARY) {
        if (p->msg_opcode != 0)
            return -CREST__WS_PROTOCOL_ERROR; /* a new message inside a fragmented one */
        if (rsv1 && !p->allow_rsv1)
            return -CREST__WS_PROTOCOL_ERROR;
    } else {
        return -CREST__WS_PROTOCOL_ERROR; /* reserved data opcode */
    }
    p->opcode = opcode;
    p->fin = (uint8_t)fin;
    p->rsv1 = (uint8_t)rsv1;
    p->masked = (uint8_t)masked;
    return 0;
}

int crest__ws_parse(crest__ws_parser_t *p, uint8_t *data, size_t len, size_t *used,
                    crest__ws_chunk_t *out) {
    size_t pos = 0;
    if (!p->in_payload) {
        while (p->hlen < 2 && pos < len)
            p->hdr[p->hlen++] = data[pos++];
        if (p->hlen < 2) {
            *used = pos;
            return 0;
        }
        if (p->hlen == 2 && pos > 0) { /* the first two bytes just arrived */
            int rc = check_start(p);
            if (rc < 0)
                return rc;
        }
        uint8_t len7 = p->hdr[1] & 0x7F;
        size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        size_t need = 2 + ext + (p->masked ? 4 : 0);
        while (p->hlen < need && pos < len)
            p->hdr[p->hlen++] = data[pos++];
        if (p->hlen < need) {
            *used = pos;
            return 0;
        }
        uint64_t n = len7;
        if (ext) {
            n = 0;
            for (size_t i = 0; i < ext; i++)
                n = (n << 8) | p->hdr[2 + i];
            if (ext == 8 && (n >> 63))
                return -CREST__WS_PROTOCOL_ERROR; /* the most significant bit must be 0 */
        }
        if (n > p->max_frame)
            return -CREST__WS_TOO_BIG;
        if (p->masked)
            memcpy(p->mask, p->hdr + 2 + ext, 4);
        p->len = n;
        p->done = 0;
        p->in_payload = 1;
        if (p->opcode == CREST__WS_TEXT || p->opcode == CREST__WS_BINARY) {
            p->msg_opcode = p->opcode;
            p->msg_rsv1 = p->rsv1;
        }
    }
    size_t avail = len - pos;
    if (avail > p->len - p->done)
        avail = (size_t)(p->len - p->done);
    if (avail == 0 && p->len > 0) {
        *used = pos;
        return 0;
    }
    int control = (p->opcode & 0x08) != 0;
    out->data = data + pos;
    out->len = avail;
    out->opcode = p->opcode;
    out->msg_opcode = control ? p->opcode : p->msg_opcode;
    out->fin = p->fin;
    out->rsv1 = control ? 0 : p->msg_rsv1;
    out->first = p->done == 0;
    out->frame_len = p->len;
    if (p->masked)
        crest__ws_mask(data + pos, avail, p->mask, p->done);
    p->done += avail;
    out->last = p->done == p->len;
    if (out->last) {
        p->in_payload = 0;
        p->hlen = 0;
        if (!control && p->fin) {
            p->msg_opcode = 0;
            p->msg_rsv1 = 0;
        }
    }
    *used = pos + avail;
    return 1;
}

/* ---- writer ---- */

size_t crest__ws_header(uint8_t *out, int opcode, int fin, int rsv1, uint64_t len,
                        const uint8_t *mask) {
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
    uint8_t m = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (uint8_t)(m | len);
    } else if (len <= 0xFFFF) {
        out[n++] = m | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = m | 127;
        for (int shift = 56; shift >= 0; shift -= 8)
            out[n++] = (uint8_t)(len >> shift);
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

void crest__ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t off) {
    size_t i = 0;
    unsigned phase = (unsigned)(off & 3);
    /* Whole words where possible: the key repeated from the current phase. */
    if (len >= 16) {
        uint8_t k8[8];
        for (int j = 0; j < 8; j++)
            k8[j] = mask[(phase + (unsigned)j) & 3];
        uint64_t k;
        memcpy(&k, k8, 8);
        for (; len - i >= 8; i += 8) {
            uint64_t w;
            memcpy(&w, data + i, 8);
            w ^= k;
            memcpy(data + i, &w, 8);
        }
    }
    for (; i < len; i++)
        data[i] ^= mask[(phase + i) & 3];
}

int crest__ws_close_code_valid(int code) {
    if (code >= 3000 && code <= 4999)
        return 1; /* registered (3xxx) and private (4xxx) codes */
    if (code < 1000 || code > 1014)
        return 0;
    /* 1004 is reserved; 1005 and 1006 are for reporting only and never sent. */
    return code != 1004 && code != 1005 && code != 1006;
}

int crest__ws_close_payload(const uint8_t *p, size_t len, int *code, const char **reason,
                            size_t *reason_len) {
    *reason = "";
    *reason_len = 0;
    if (len == 0) {
        *code = CREST__WS_NO_STATUS;
        return 0;
    }
    if (len == 1)
        return -CREST__WS_PROTOCOL_ERROR;
    int c = (p[0] << 8) | p[1];
    if (!crest__ws_close_code_valid(c))
        return -CREST__WS_PROTOCOL_ERROR;
    if (crest__utf8_feed(CREST__UTF8_ACCEPT, p + 2, len - 2) != CREST__UTF8_ACCEPT)
        return -CREST__WS_INVALID_DATA;
    *code = c;
    *reason = (const char *)p + 2;
    *reason_len = len - 2;
    return 0;
}
