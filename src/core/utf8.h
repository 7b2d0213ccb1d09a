/* An incremental UTF-8 validator (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF).
 *
 * It lives in core, below every protocol, because more than one module checks text: the
 * WebSocket codec (text messages, close reasons) and the JSON string writer (core/buf.c). Bytes
 * in, verdict out: nothing here includes uv.h or allocates, so it is unit-tested
 * (tests/unit/test_utf8.c) and fuzzed (fuzz/ws) on plain memory. */
#ifndef CREST_CORE_UTF8_H
#define CREST_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The state is 0 between characters (CREST__UTF8_ACCEPT), CREST__UTF8_REJECT after an invalid
 * byte (sticky), anything else inside a character. Feed consecutive pieces of one text with the
 * state of the previous call: a character split between fragments is checked as a whole. */
#define CREST__UTF8_ACCEPT 0u
#define CREST__UTF8_REJECT 1u
uint32_t crest__utf8_feed(uint32_t state, const uint8_t *s, size_t n);

#endif
