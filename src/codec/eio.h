/* Engine.IO 4 and Socket.IO 5 packets, as npm engine.io-parser 5 and socket.io-parser 4 write
 * them (bytes in, result out; no uv.h), below the Socket.IO server (src/sio).
 *
 * Engine.IO carries packets over two transports. Over WebSocket each packet is one message: a
 * text message is "<type digit><data>", a binary message is a MESSAGE packet whose data is the
 * message's bytes. Over HTTP long-polling a body (a POST's, or a GET's answer) is a payload:
 * packets joined by the record separator 0x1e, each "<type digit><data>" or, for binary data,
 * "b" followed by the bytes in base64 (standard alphabet, padded).
 *
 * A Socket.IO packet is the data of one Engine.IO MESSAGE packet:
 *   <type digit>[<attachments>-][<namespace>,][<ack id>][<JSON>]
 * The namespace is present when it is not "/" (it starts with '/'); the attachments count only
 * for BINARY_EVENT and BINARY_ACK, whose binary arguments follow as that many Engine.IO binary
 * packets and stand in the JSON as {"_placeholder":true,"num":i}. The JSON itself is read by the
 * caller (crest/json.h); this codec only finds where it starts. */
#ifndef CREST_CODEC_EIO_H
#define CREST_CODEC_EIO_H

#include <stddef.h>
#include <stdint.h>

#include "crest/buf.h"
#include "crest/errno.h"

/* Engine.IO packet types: the digit that starts a text packet. */
enum {
    CREST__EIO_OPEN = 0,
    CREST__EIO_CLOSE = 1,
    CREST__EIO_PING = 2,
    CREST__EIO_PONG = 3,
    CREST__EIO_MESSAGE = 4,
    CREST__EIO_UPGRADE = 5,
    CREST__EIO_NOOP = 6
};

/* The record separator between packets of a polling payload. */
#define CREST__EIO_SEP '\x1e'

/* One Engine.IO packet of a payload. data points into the payload (for a binary packet, at its
 * decoded bytes). */
typedef struct {
    int type;   /* CREST__EIO_* (a binary packet is a MESSAGE) */
    int binary; /* the "b" form: data holds the decoded bytes */
    char *data;
    size_t len;
} crest__eio_packet_t;

/* The next packet of a polling payload p[0..n) at *off (start with *off = 0). A binary packet's
 * base64 is decoded in place (the bytes shrink), which is why p is writable. Returns 1 with *pkt
 * set and *off moved past the packet and its separator, 0 when *off == n (no packet left), or
 * CREST_EINVAL for a malformed packet: an empty one (two separators in a row, a trailing
 * separator, an empty payload), a type that is not a digit 0..6, "b" with base64 that is not
 * valid (bad characters, bad length, bad padding). "b" alone is an empty binary packet
 * (engine.io-parser writes it for an empty buffer). The packets before a malformed one are
 * returned first, one call each, as engine.io-parser's decodePayload does (engine.io handles
 * them, then closes on the error). On 0 or an error *off is left as it was; an error may have
 * overwritten part of a bad "b" packet. Keeps no state between calls: the trailing separator is
 * found at the end as p[n - 1] (which no in-place decode overwrites), and *off > n is refused. */
int crest__eio_next(char *p, size_t n, size_t *off, crest__eio_packet_t *pkt);

/* Append one packet to a polling payload being built in b: a separator first unless b is empty,
 * then the type digit and the data, or "b" and the base64 of the data when binary (type is then
 * ignored: a binary packet is a MESSAGE). Text data must not hold the separator byte (JSON
 * writes it escaped, as \u001e). Returns 0 or CREST_ENOMEM (b->err). */
int crest__eio_append(crest_buf_t *b, int type, const void *data, size_t len, int binary);

/* base64 with the standard alphabet and padding (RFC 4648 section 4). */
#define CREST__B64_LEN(n) ((((n) + 2) / 3) * 4)
/* Write the encoding of in[0..n) to out (CREST__B64_LEN(n) bytes, not NUL-terminated); returns
 * its length. */
size_t crest__b64_encode(const void *in, size_t n, char *out);
/* Decode in[0..n) into out (at most n / 4 * 3 bytes; out may be in itself); *out_len is set.
 * Returns 0, or CREST_EINVAL when n is not a multiple of 4, a character is outside the alphabet,
 * or the padding is misplaced (only at the end, at most two '=', and the bits it pads are 0). */
int crest__b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len);

/* Socket.IO packet types. */
enum {
    CREST__SIO_CONNECT = 0,
    CREST__SIO_DISCONNECT = 1,
    CREST__SIO_EVENT = 2,
    CREST__SIO_ACK = 3,
    CREST__SIO_CONNECT_ERROR = 4,
    CREST__SIO_BINARY_EVENT = 5,
    CREST__SIO_BINARY_ACK = 6
};

/* An ack id is at most 2^53 - 1 (a JavaScript safe integer); no id is -1. */
#define CREST__SIO_ID_MAX ((int64_t)9007199254740991)

/* A Socket.IO packet's parts; the strings point into the packet, except nsp when the packet names
 * no namespace (then a static "/"). */
typedef struct {
    int type;             /* CREST__SIO_* */
    uint32_t attachments; /* binary packets that follow (BINARY_EVENT, BINARY_ACK), else 0 */
    const char *nsp;      /* the namespace ("/" when the packet names none) */
    size_t nsp_len;
    int64_t id;       /* the ack id, -1 when absent */
    const char *json; /* what follows: JSON text, or nothing (json_len 0) */
    size_t json_len;
} crest__sio_packet_t;

/* Split the Socket.IO packet p[0..n). Returns 0, or CREST_EINVAL when it is malformed: empty, a
 * type that is not a digit 0..6; for the binary types an attachment count that is not digits
 * followed by '-', is 0 (socket.io-parser refuses it too) or is over max_attachments; an ack id
 * of more than 16 digits or over CREST__SIO_ID_MAX. The namespace runs from a '/' right after
 * the type (or the '-') to the first ',', or to the end of the packet when there is none
 * (socket.io-parser accepts that too; nothing follows it then). The ack id is the run of digits
 * '0'..'9' after that (socket.io-parser also reads a space as an id digit: "2 [..]" is id 0
 * there, no id and JSON " [..]" here; no encoder writes it). Leading zeros are accepted in the
 * count and the id, as Number() accepts them. The JSON is the rest, not checked here. */
int crest__sio_parse(const char *p, size_t n, uint32_t max_attachments, crest__sio_packet_t *out);

/* Append the head of a Socket.IO packet to b: the type digit, "<attachments>-" when
 * attachments > 0, "<nsp>," unless nsp is "/" (nsp_len 1) or empty, and the ack id unless it is
 * -1 (any negative id is written as none). The caller appends the JSON. BINARY_EVENT and
 * BINARY_ACK need attachments >= 1: socket.io-parser refuses such a packet without its count.
 * Returns 0 or CREST_ENOMEM (b->err, also when it was set before the call). */
int crest__sio_head(crest_buf_t *b, int type, uint32_t attachments, const char *nsp, size_t nsp_len,
                    int64_t id);

#endif
