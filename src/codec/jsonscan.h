/* A pre-check of JSON text for what cJSON lets through but crest must not accept (crest_json_parse
 * in src/json/ runs it before cJSON; the demo app did so first, hence its 400/422 split).
 *
 * cJSON (crest's parser, picked for speed by bench/json_pick.sh) is lenient where RFC 8259 is
 * strict, and its strings are C strings:
 * - a raw control character (a byte below 0x20) inside a string is kept as it is; RFC 8259
 *   requires it to be escaped, so such a body is malformed (400);
 * - bytes that are not UTF-8 are kept as they are; RFC 8259 text is UTF-8, so such a body is
 *   malformed (400), wherever the bytes are;
 * - any byte up to 0x20 counts as whitespace between tokens; only space, tab, LF and CR do in
 *   JSON, so another control character there is malformed too (400);
 * - numbers are read by strtod: a leading zero ("01"), a point with no digit after it ("1.")
 *   pass; RFC 8259 forbids both, so the scanner checks every number's grammar (400);
 * - "\u0000" (and a raw NUL) ends the decoded C string: {"title":"abc\u0000def"} would be stored
 *   as "abc". The text is valid JSON, but a string must keep its full length or be refused, so
 *   the app answers 422 and names the top-level member that holds it.
 * The scanner finds these in one pass, incrementally (feed any split of the text and the verdict
 * is the same). It does not check the grammar: cJSON still does that after it.
 *
 * Bytes in, verdict out: no allocation, no crest runtime, so it is unit-tested
 * (tests/unit/test_jsonscan.c) and fuzzed (fuzz/jsonscan) on plain memory. */
#ifndef CREST_CODEC_JSONSCAN_H
#define CREST_CODEC_JSONSCAN_H

#include <stddef.h>
#include <stdint.h>

/* In rising rank: when a text has several of these, the verdict is the highest. */
enum {
    CREST__JSONSCAN_OK = 0, /* nothing of the above (the grammar is cJSON's to check) */
    CREST__JSONSCAN_NUL,    /* a string holds U+0000 (escaped or raw is CONTROL): refuse with 422 */
    CREST__JSONSCAN_NUMBER, /* a number outside RFC 8259's grammar that cJSON takes ("01", "1.",
                               "-01", "1.e5"): malformed */
    CREST__JSONSCAN_CONTROL,  /* a raw control character in a string, or outside one but whitespace
                               */
    CREST__JSONSCAN_BAD_UTF8, /* the text is not UTF-8 (including a character cut short at the end)
                               */
};

#define CREST__JSONSCAN_FIELD_MAX                                                                  \
    64 /* longest member name kept for the NUL verdict; longer is cut */

/* Owner: the caller (on its stack, usually). Fields are the scanner's own but `field`. */
typedef struct {
    int verdict;        /* the highest ranked so far (see found() in jsonscan.c) */
    uint32_t utf8;      /* crest_utf8_feed state over the whole text */
    size_t depth;       /* open objects and arrays */
    uint8_t started;    /* a byte other than whitespace was seen */
    uint8_t top_object; /* the text is an object: its members are the fields named */
    uint8_t want_key;   /* in the top-level object, the next string is a member name */
    uint8_t in_str;     /* inside a string */
    uint8_t in_key;     /* that string is a top-level member name */
    uint8_t esc;        /* after a backslash */
    uint8_t hex_left;   /* hex digits of a \u escape still due */
    uint8_t nul_in_key; /* the member name being read holds U+0000 */
    uint8_t num;        /* where in a number token (jsonscan.c's NUM_*), 0 outside one */
    uint16_t hex;       /* the \u escape's value so far */
    size_t key_len;
    char key[CREST__JSONSCAN_FIELD_MAX +
             1]; /* the current top-level member name, raw (escapes kept) */
    /* With CREST__JSONSCAN_NUL: the top-level member whose name or value holds it, raw and
     * NUL-terminated; "" when the text is not an object. */
    char field[CREST__JSONSCAN_FIELD_MAX + 1];
} crest__jsonscan_t;

void crest__jsonscan_init(crest__jsonscan_t *s);
/* Scan the next n bytes of the text. */
void crest__jsonscan_feed(crest__jsonscan_t *s, const void *data, size_t n);
/* The verdict for the whole text fed so far (CREST__JSONSCAN_*). */
int crest__jsonscan_end(crest__jsonscan_t *s);
/* init, feed and end at once. */
int crest__jsonscan(crest__jsonscan_t *s, const void *data, size_t n);

#endif
