/* WebSocket (RFC 6455) frame parser and writer. Text is checked with the UTF-8 validator of
 * core/utf8.h, included here for the codec's users.
 *
 * Bytes in, result out: nothing here includes uv.h or allocates, so the codec is unit-tested and
 * fuzzed on plain memory (tests/unit/test_ws_frame.c, fuzz/ws). */
#ifndef CREST_CODEC_WS_FRAME_H
#define CREST_CODEC_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "core/utf8.h"

enum {
    CREST__WS_CONT = 0x0,
    CREST__WS_TEXT = 0x1,
    CREST__WS_BINARY = 0x2,
    CREST__WS_CLOSE = 0x8,
    CREST__WS_PING = 0x9,
    CREST__WS_PONG = 0xA,
};

/* Close codes the server sends or checks (RFC 6455 section 7.4.1). */
enum {
    CREST__WS_NORMAL = 1000,
    CREST__WS_GOING_AWAY = 1001,
    CREST__WS_PROTOCOL_ERROR = 1002,
    CREST__WS_NO_STATUS = 1005,
    CREST__WS_ABNORMAL = 1006,
    CREST__WS_INVALID_DATA = 1007,
    CREST__WS_POLICY = 1008,
    CREST__WS_TOO_BIG = 1009,
    CREST__WS_INTERNAL = 1011,
};

/* ---- frame parser (server side: client frames must be masked) ---- */
typedef struct {
    /* Configuration. */
    uint64_t max_frame;        /* a frame longer than this is rejected with 1009 */
    unsigned allow_rsv1 : 1;   /* permessage-deflate negotiated: RSV1 marks a compressed message */
    unsigned require_mask : 1; /* server side: 1; the client side of the load tool: 0 */
    /* State. */
    uint8_t hdr[14];
    uint8_t hlen;
    uint8_t in_payload; /* header done, payload bytes follow */
    uint8_t opcode;
    uint8_t fin;
    uint8_t rsv1;
    uint8_t masked;
    uint8_t mask[4];
    uint8_t msg_opcode; /* TEXT or BINARY while a fragmented message is open, else 0 */
    uint8_t msg_rsv1;   /* the open message is compressed */
    uint64_t len;       /* payload length of the current frame */
    uint64_t done;      /* payload bytes delivered so far */
} crest__ws_parser_t;

/* One piece of a frame's payload, unmasked in place. A frame yields one or more chunks; the first
 * has `first` set, the last `last` set (a frame with an empty payload yields one chunk with both
 * set and len 0). `opcode` is the frame's own opcode (CONT for continuations); `msg_opcode` is the
 * data message's opcode (TEXT/BINARY) for data frames and continuations, the control opcode for
 * control frames. `fin` is the frame's FIN bit; `rsv1` that of its message. */
typedef struct {
    uint8_t *data;
    size_t len;
    uint8_t opcode;
    uint8_t msg_opcode;
    uint8_t fin;
    uint8_t rsv1;
    uint8_t first;
    uint8_t last;
    uint64_t frame_len;
} crest__ws_chunk_t;

void crest__ws_parser_init(crest__ws_parser_t *p, uint64_t max_frame, int allow_rsv1,
                           int require_mask);

/* Parse from data[0..len): returns 1 with *out set and *used the bytes taken (the chunk's payload
 * lies inside them, unmasked in place), 0 when every byte was taken and more are needed (*used ==
 * len), or a negative close code (-1002 protocol error, -1009 frame too big) after which the
 * parser must not be fed again. Call again with the rest until it returns 0. */
int crest__ws_parse(crest__ws_parser_t *p, uint8_t *data, size_t len, size_t *used,
                    crest__ws_chunk_t *out);

/* ---- writer ---- */
#define CREST__WS_MAX_HEADER 14

/* Write a frame header into out (at least CREST__WS_MAX_HEADER bytes); returns its length.
 * mask NULL: unmasked (server to client); else the 4-byte key is put in the header and the
 * caller masks the payload with crest__ws_mask. */
size_t crest__ws_header(uint8_t *out, int opcode, int fin, int rsv1, uint64_t len,
                        const uint8_t *mask);
/* XOR data with the key, starting at payload offset `off` (masking is its own inverse). */
void crest__ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t off);

/* Check a close frame's payload: returns 0 and sets *code (CREST__WS_NO_STATUS when empty),
 * *reason, *reason_len; or a negative close code: -1002 for a one-byte payload or a code that may
 * not be sent, -1007 for a reason that is not UTF-8. */
int crest__ws_close_payload(const uint8_t *p, size_t len, int *code, const char **reason,
                            size_t *reason_len);
/* Nonzero when `code` may appear in a close frame on the wire. */
int crest__ws_close_code_valid(int code);

#endif
