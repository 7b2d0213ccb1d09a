/* The UTF-8 validator (see utf8.h). Hand-written: a table-free range check that never reads
 * past the bytes it is given and keeps its state in one integer, so that a character split
 * between two WebSocket fragments (or two reads) is checked as a whole. */
#include <string.h>

#include "core/utf8.h"
#include "crest/buf.h"

/* A state inside a character packs the number of continuation bytes still due (bits 16..) and the
 * range the next byte must fall in (lo in bits 8..15, hi in bits 0..7). The ranges exclude
 * overlong forms, surrogates (ED A0..BF) and code points above U+10FFFF in the byte after the lead,
 * so every later continuation byte is simply 80..BF. */
#define ST(rem, lo, hi) (((uint32_t)(rem) << 16) | ((uint32_t)(lo) << 8) | (uint32_t)(hi))

static uint32_t lead(uint8_t b) {
    if (b < 0x80)
        return CREST__UTF8_ACCEPT;
    if (b < 0xC2)
        return CREST__UTF8_REJECT; /* continuation byte, or C0/C1 (always overlong) */
    if (b < 0xE0)
        return ST(1, 0x80, 0xBF);
    if (b == 0xE0)
        return ST(2, 0xA0, 0xBF);
    if (b == 0xED)
        return ST(2, 0x80, 0x9F);
    if (b < 0xF0)
        return ST(2, 0x80, 0xBF);
    if (b == 0xF0)
        return ST(3, 0x90, 0xBF);
    if (b < 0xF4)
        return ST(3, 0x80, 0xBF);
    if (b == 0xF4)
        return ST(3, 0x80, 0x8F);
    return CREST__UTF8_REJECT;
}

uint32_t crest__utf8_feed(uint32_t state, const uint8_t *s, size_t n) {
    size_t i = 0;
    if (state == CREST__UTF8_REJECT)
        return state;
    while (i < n) {
        if (state == CREST__UTF8_ACCEPT) {
            /* Chat text is mostly ASCII: skip eight plain bytes at a time. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ull)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            state = lead(s[i++]);
            if (state == CREST__UTF8_REJECT)
                return state;
            continue;
        }
        uint8_t b = s[i++];
        uint8_t lo = (uint8_t)(state >> 8), hi = (uint8_t)state;
        if (b < lo || b > hi)
            return CREST__UTF8_REJECT;
        uint32_t rem = (state >> 16) - 1;
        state = rem ? ST(rem, 0x80, 0xBF) : CREST__UTF8_ACCEPT;
    }
    return state;
}

/* The public face of the same check, for applications (the demo app validates names, rooms and
 * JSON bodies with it) that see only include/crest.h. */
_Static_assert(CREST_UTF8_ACCEPT == CREST__UTF8_ACCEPT && CREST_UTF8_REJECT == CREST__UTF8_REJECT,
               "public and internal UTF-8 states agree");

uint32_t crest_utf8_feed(uint32_t state, const void *s, size_t n) {
    return crest__utf8_feed(state, s, n);
}
