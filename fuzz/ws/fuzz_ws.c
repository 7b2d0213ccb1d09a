/* libFuzzer target for the WebSocket frame parser and the UTF-8 validator: the input (after a
 * first byte that picks the options and the split point) is parsed as client frames whole and
 * again in two pieces; frames, payloads and verdict must agree, every chunk must lie inside the
 * input, and the UTF-8 verdict of each text message must not depend on how it was split.
 *
 * clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *     -o /tmp/fuzz_ws fuzz/ws/fuzz_ws.c src/codec/ws_frame.c src/core/utf8.c */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    uint8_t *out;
    size_t n, cap;
    uint32_t utf8;  /* state over the text message in progress */
    uint32_t utf8b; /* the same text fed chunk by chunk */
} trace_t;

static void put(trace_t *t, const void *p, size_t n) {
    if (t->n + n > t->cap) {
        t->cap = (t->n + n) * 2 + 64;
        t->out = realloc(t->out, t->cap);
        if (t->out == NULL)
            abort();
    }
    memcpy(t->out + t->n, p, n);
    t->n += n;
}

static int feed(crest__ws_parser_t *p, trace_t *t, const uint8_t *in, size_t n) {
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        abort();
    memcpy(buf, in, n);
    size_t pos = 0;
    int rc;
    for (;;) {
        crest__ws_chunk_t ch;
        size_t used = 0;
        rc = crest__ws_parse(p, buf + pos, n - pos, &used, &ch);
        if (rc < 0) {
            put(t, &rc, sizeof(rc));
            break;
        }
        if (used > n - pos)
            abort();
        pos += used;
        if (rc == 0) {
            if (pos != n)
                abort();
            break;
        }
        if (ch.data < buf || ch.data + ch.len > buf + n || ch.len > ch.frame_len)
            abort();
        if (ch.msg_opcode & 0x08 && ch.frame_len > 125)
            abort();
        uint8_t h[4] = {ch.opcode, ch.fin, ch.first, ch.last};
        if (ch.first)
            put(t, h, 2);
        put(t, ch.data, ch.len);
        if (ch.msg_opcode == CREST__WS_TEXT) {
            if (ch.first && ch.opcode == CREST__WS_TEXT)
                t->utf8 = CREST__UTF8_ACCEPT;
            t->utf8 = crest__utf8_feed(t->utf8, ch.data, ch.len);
        }
    }
    free(buf);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint8_t cfg = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    uint64_t max = (cfg & 0x80) ? 64 : (1u << 20);
    int rsv1 = (cfg >> 6) & 1;
    size_t split = n ? (size_t)(cfg & 0x3F) * 131 % (n + 1) : 0;

    crest__ws_parser_t a, b;
    trace_t ta = {0}, tb = {0};
    crest__ws_parser_init(&a, max, rsv1, 1);
    crest__ws_parser_init(&b, max, rsv1, 1);
    int ra = feed(&a, &ta, in, n);
    int rb = feed(&b, &tb, in, split);
    if (rb >= 0)
        rb = feed(&b, &tb, in + split, n - split);
    if (ra != rb || ta.n != tb.n || (ta.n && memcmp(ta.out, tb.out, ta.n) != 0))
        abort();
    if ((ta.utf8 == CREST__UTF8_REJECT) != (tb.utf8 == CREST__UTF8_REJECT))
        abort();

    /* The validator alone: whole against split. */
    uint32_t w = crest__utf8_feed(CREST__UTF8_ACCEPT, in, n);
    uint32_t s =
        crest__utf8_feed(crest__utf8_feed(CREST__UTF8_ACCEPT, in, split), in + split, n - split);
    if (w != s)
        abort();
    /* Close payloads. */
    int code;
    const char *reason;
    size_t rl;
    if (n <= 125 && crest__ws_close_payload(in, n, &code, &reason, &rl) == 0 && n >= 2 &&
        !crest__ws_close_code_valid(code))
        abort();
    free(ta.out);
    free(tb.out);
    return 0;
}
