/* What the WebSocket load tools (wsload.c, chatload.c, wsmembers.c) share: a growable output
 * buffer, client frames (masked, as RFC 6455 requires of clients) built with crest's own frame
 * codec, and writing a buffer out to a non-blocking socket. Each tool keeps its own connection
 * state machine; this is only the byte plumbing under it. */
#ifndef BENCH_WSMINI_H
#define BENCH_WSMINI_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "codec/ws_frame.h"

typedef struct {
    char *ptr;
    size_t len;
    size_t cap;
} wm_buf_t;

static inline uint64_t wm_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Room for `need` bytes; a load tool that runs out of memory has nothing better to do than stop. */
static inline void wm_reserve(wm_buf_t *b, size_t need) {
    if (need <= b->cap)
        return;
    size_t c = b->cap ? b->cap : 4096;
    while (c < need)
        c *= 2;
    char *p = realloc(b->ptr, c);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    b->ptr = p;
    b->cap = c;
}

static inline void wm_append(wm_buf_t *b, const void *p, size_t n) {
    wm_reserve(b, b->len + n);
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
}

static inline void wm_free(wm_buf_t *b) {
    free(b->ptr);
    *b = (wm_buf_t){NULL, 0, 0};
}

/* Append one final client frame: a random mask key, the payload masked in place. */
static inline void wm_frame(wm_buf_t *b, int opcode, const void *payload, size_t n) {
    uint8_t hdr[CREST__WS_MAX_HEADER];
    uint32_t r = (uint32_t)rand();
    uint8_t key[4] = {(uint8_t)r, (uint8_t)(r >> 8), (uint8_t)(r >> 16), (uint8_t)(r >> 24)};
    size_t h = crest__ws_header(hdr, opcode, 1, 0, n, key);
    wm_append(b, hdr, h);
    size_t at = b->len;
    wm_append(b, payload, n);
    crest__ws_mask((uint8_t *)b->ptr + at, n, key, 0);
}

/* Write what b holds to fd (non-blocking) and drop what was written. Returns 0 when all of it
 * went, 1 when the socket is full (the rest stays in b), or a negative errno. */
static inline int wm_flush(int fd, wm_buf_t *b) {
    size_t done = 0;
    int rc = 0;
    while (done < b->len) {
        ssize_t w = send(fd, b->ptr + done, b->len - done, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = errno == EAGAIN ? 1 : -errno;
            break;
        }
        done += (size_t)w;
    }
    memmove(b->ptr, b->ptr + done, b->len - done);
    b->len -= done;
    return rc;
}

#endif
