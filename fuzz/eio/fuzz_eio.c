/* libFuzzer target for the Engine.IO / Socket.IO packet codec (src/codec/eio.c). The first byte
 * is the Socket.IO attachment limit; the rest is read as an Engine.IO polling payload (in a heap
 * block of exactly its size) and as one Socket.IO packet. Checks:
 *   - every packet lies inside the payload and *off only moves forward;
 *   - a payload read to its end without error is canonical: writing its packets back with
 *     crest__eio_append gives the same bytes (text is verbatim, base64 has one spelling);
 *   - a Socket.IO packet that parses, written back with crest__sio_head and its JSON, parses to
 *     the same parts (leading zeros and a spelt-out "/" may differ in bytes, not in meaning).
 *
 * make fuzz   (build-fuzz/fuzz_eio; seeds in fuzz/eio/corpus) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/eio.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_sio(const char *p, size_t n, uint32_t max) {
    char *b = malloc(n ? n : 1);
    if (n)
        memcpy(b, p, n);
    crest__sio_packet_t a;
    if (crest__sio_parse(b, n, max, &a) != 0) {
        free(b);
        return;
    }
    if (a.type < 0 || a.type > 6 || a.attachments > max || a.id < -1 || a.id > CREST__SIO_ID_MAX)
        abort();
    if ((a.type == CREST__SIO_BINARY_EVENT || a.type == CREST__SIO_BINARY_ACK) !=
        (a.attachments > 0))
        abort();
    if (a.json < b || a.json + a.json_len != b + n || a.nsp_len == 0 || a.nsp[0] != '/')
        abort();
    int nsp_in = a.nsp >= b && a.nsp + a.nsp_len <= b + n;
    if (!nsp_in && a.nsp_len != 1)
        abort();
    crest_buf_t w = CREST_BUF_INIT;
    crest__sio_head(&w, a.type, a.attachments, a.nsp, a.nsp_len, a.id);
    /* "2/,/x" names "/" and its JSON starts with '/': written back without the "/," the JSON
     * reads as a namespace. socket.io-parser has the same ambiguity, and no JSON starts with '/'.
     * (A JSON never starts with a digit here: the digits would have been read as the id.) */
    int ambiguous = a.json_len > 0 && a.json[0] == '/' && a.nsp_len == 1 && a.id < 0;
    if (a.json_len)
        crest_buf_append(&w, a.json, a.json_len);
    if (w.err)
        abort();
    crest__sio_packet_t c;
    if (!ambiguous) {
        if (crest__sio_parse(w.ptr, w.len, max, &c) != 0)
            abort();
        if (c.type != a.type || c.attachments != a.attachments || c.id != a.id ||
            c.nsp_len != a.nsp_len || memcmp(c.nsp, a.nsp, a.nsp_len) != 0 ||
            c.json_len != a.json_len || memcmp(c.json, a.json, a.json_len) != 0)
            abort();
    }
    crest_buf_free(&w);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint32_t max = data[0] == 0xff ? UINT32_MAX : data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    check_sio(in, n, max);

    char *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, in, n);
    crest_buf_t back = CREST_BUF_INIT;
    size_t off = 0;
    int rc;
    crest__eio_packet_t pkt;
    while ((rc = crest__eio_next(p, n, &off, &pkt)) == 1) {
        if (off > n || pkt.data < p || pkt.data + pkt.len > p + n)
            abort();
        if (pkt.type < 0 || pkt.type > 6 || (pkt.binary && pkt.type != CREST__EIO_MESSAGE))
            abort();
        crest__eio_append(&back, pkt.type, pkt.data, pkt.len, pkt.binary);
        if (!pkt.binary && pkt.type == CREST__EIO_MESSAGE)
            check_sio(pkt.data, pkt.len, max);
    }
    if (rc != 0 && rc != CREST_EINVAL)
        abort();
    if (rc == 0 && (back.err || back.len != n || memcmp(back.ptr, in, n) != 0))
        abort();
    crest_buf_free(&back);
    free(p);
    return 0;
}
