/* One hexadecimal digit's value, for the parsers and decoders that read percent-encoding, chunk
 * sizes and \u escapes. Pure: no libuv, usable by every codec. */
#ifndef CREST_CODEC_HEX_H
#define CREST_CODEC_HEX_H

/* 0..15 for '0'-'9', 'a'-'f', 'A'-'F'; -1 for any other byte. */
static inline int crest__hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* ASCII letters to lower case; no other byte becomes 'a'..'f' */
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

#endif
