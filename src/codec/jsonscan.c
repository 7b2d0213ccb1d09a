/* The JSON pre-check (see jsonscan.h). A hand-written byte loop rather than a second parser: it
 * only has to know whether a byte is inside a string, whether that string is a top-level member
 * name, and what a \u escape decodes to; the grammar stays cJSON's job. */
#include <string.h>

#include "codec/hex.h"
#include "codec/jsonscan.h"
#include "crest/buf.h"

void crest__jsonscan_init(crest__jsonscan_t *s) {
    memset(s, 0, sizeof(*s));
}

/* The verdicts rank OK < NUL < CONTROL < BAD_UTF8 and the highest found stands: a malformed text
 * is malformed whatever its strings hold (400 before 422), and a fixed rank, rather than "the
 * first found", keeps the verdict independent of how the text was split into pieces (the UTF-8
 * check runs over a whole piece before the byte loop does). */
static void found(crest__jsonscan_t *s, int verdict) {
    if (verdict > s->verdict)
        s->verdict = verdict;
}

static void found_nul(crest__jsonscan_t *s) {
    if (s->verdict != CREST__JSONSCAN_OK)
        return;
    s->verdict = CREST__JSONSCAN_NUL;
    if (s->in_key) {
        s->nul_in_key = 1; /* named when the name is complete */
    } else if (s->top_object) {
        memcpy(s->field, s->key, s->key_len);
        s->field[s->key_len] = '\0';
    }
}

/* One byte inside a string (the opening quote already taken). Every byte of a member name but
 * its closing quote is kept, raw, for the NUL verdict's field. */
static void string_byte(crest__jsonscan_t *s, uint8_t c) {
    if (s->hex_left) {
        int v = crest__hex_digit((unsigned char)c);
        if (v >= 0) {
            s->hex = (uint16_t)(s->hex * 16 + v);
            if (--s->hex_left == 0 && s->hex == 0)
                found_nul(s);
            goto keep;
        }
        /* Not a hex digit: cJSON rejects the escape; read on as ordinary string bytes so that a
         * quote still ends the string. */
        s->hex_left = 0;
    } else if (s->esc) {
        /* The byte after a backslash is escaped: a quote or backslash here neither ends the
         * string nor starts another escape. */
        s->esc = 0;
        if (c == 'u') {
            s->hex_left = 4;
            s->hex = 0;
        } else if (c < 0x20) {
            found(s, CREST__JSONSCAN_CONTROL);
        }
        goto keep;
    }
    if (c < 0x20) {
        found(s, CREST__JSONSCAN_CONTROL);
    } else if (c == '\\') {
        s->esc = 1;
    } else if (c == '"') {
        s->in_str = 0;
        if (s->in_key) {
            s->in_key = 0;
            if (s->nul_in_key && s->verdict == CREST__JSONSCAN_NUL) {
                memcpy(s->field, s->key, s->key_len);
                s->field[s->key_len] = '\0';
            }
            s->nul_in_key = 0;
        }
        return;
    }
keep:
    if (s->in_key && s->key_len < CREST__JSONSCAN_FIELD_MAX)
        s->key[s->key_len++] = (char)c;
}

/* Where in a number (RFC 8259 section 6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?).
 * The states after which the number may end are INT0, INT, FRAC and EXP. */
enum { NUM_NONE, NUM_MINUS, NUM_INT0, NUM_INT, NUM_POINT, NUM_FRAC, NUM_E, NUM_ESIGN, NUM_EXP };

static int num_may_end(uint8_t st) {
    return st == NUM_INT0 || st == NUM_INT || st == NUM_FRAC || st == NUM_EXP;
}

/* One byte while in a number: 1 when it belongs to it, 0 when it ends it (the number was
 * complete or not: checked here) and is a byte of the structure. */
static int number_byte(crest__jsonscan_t *s, uint8_t c) {
    uint8_t st = s->num, next = NUM_NONE;
    if (c >= '0' && c <= '9') {
        if (st == NUM_MINUS)
            next = c == '0' ? NUM_INT0 : NUM_INT;
        else if (st == NUM_INT || st == NUM_FRAC || st == NUM_EXP)
            next = st;
        else if (st == NUM_POINT)
            next = NUM_FRAC;
        else if (st == NUM_E || st == NUM_ESIGN)
            next = NUM_EXP;
        /* NUM_INT0: a leading zero ("01") */
    } else if (c == '.') {
        if (st == NUM_INT0 || st == NUM_INT)
            next = NUM_POINT;
    } else if (c == 'e' || c == 'E') {
        if (st == NUM_INT0 || st == NUM_INT || st == NUM_FRAC)
            next = NUM_E;
    } else if (c == '+' || c == '-') {
        if (st == NUM_E)
            next = NUM_ESIGN;
    } else {
        if (!num_may_end(st))
            found(s, CREST__JSONSCAN_NUMBER);
        s->num = NUM_NONE;
        return 0;
    }
    if (next == NUM_NONE) {
        found(s, CREST__JSONSCAN_NUMBER);
        s->num = NUM_NONE; /* the rest of this token is cJSON's to refuse or the verdict's */
        return 1;
    }
    s->num = next;
    return 1;
}

static void structure_byte(crest__jsonscan_t *s, uint8_t c) {
    if (s->num != NUM_NONE && number_byte(s, c))
        return;
    if (c == '-' || (c >= '0' && c <= '9')) {
        s->num = c == '-' ? NUM_MINUS : c == '0' ? NUM_INT0 : NUM_INT;
        if (!s->started) {
            s->started = 1;
            s->top_object = 0;
        }
        return;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
        return;
    if (c < 0x20) {
        found(s, CREST__JSONSCAN_CONTROL);
        return;
    }
    if (!s->started) {
        s->started = 1;
        s->top_object = c == '{';
    }
    switch (c) {
    case '"':
        s->in_str = 1;
        s->in_key = s->want_key;
        s->want_key = 0;
        if (s->in_key)
            s->key_len = 0;
        break;
    case '{':
    case '[':
        s->depth++;
        s->want_key = s->top_object && s->depth == 1 && c == '{';
        break;
    case '}':
    case ']':
        if (s->depth > 0)
            s->depth--;
        s->want_key = 0;
        break;
    case ',':
        s->want_key = s->top_object && s->depth == 1;
        break;
    default:
        break;
    }
}

void crest__jsonscan_feed(crest__jsonscan_t *s, const void *data, size_t n) {
    const uint8_t *p = data;
    s->utf8 = crest_utf8_feed(s->utf8, p, n);
    if (s->utf8 == CREST_UTF8_REJECT)
        found(s, CREST__JSONSCAN_BAD_UTF8);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (!s->in_str) {
            structure_byte(s, c);
            continue;
        }
        /* Most of a body is string content that needs no look: skip to the next byte that
         * matters (a quote, a backslash, a control character) unless an escape is open. */
        if (!s->esc && !s->hex_left && !s->in_key) {
            while (i < n && p[i] >= 0x20 && p[i] != '"' && p[i] != '\\')
                i++;
            if (i == n)
                break;
            c = p[i];
        }
        string_byte(s, c);
    }
}

int crest__jsonscan_end(crest__jsonscan_t *s) {
    if (s->num != NUM_NONE && !num_may_end(s->num))
        found(s, CREST__JSONSCAN_NUMBER); /* "-" or "1." at the very end */
    if (s->utf8 != CREST_UTF8_ACCEPT)
        found(s, CREST__JSONSCAN_BAD_UTF8); /* a character cut short by the end of the text */
    return s->verdict;
}

int crest__jsonscan(crest__jsonscan_t *s, const void *data, size_t n) {
    crest__jsonscan_init(s);
    crest__jsonscan_feed(s, data, n);
    return crest__jsonscan_end(s);
}
