/* The messages of npm @socket.io/redis-adapter 8, in both directions (bytes in, result out; no
 * uv.h), below the Socket.IO server's Redis link (src/sio). With it crest's rooms span crest
 * instances and Node.js socket.io servers on one Redis.
 *
 * A Node server's adapter publishes each broadcast on the channel "<prefix>#<nsp>#" (or
 * "<prefix>#<nsp>#<room>#" when it goes to exactly one room; the prefix is "socket.io" unless
 * configured) with the payload notepack.io writes for the JavaScript value
 *   [uid, {type, data, nsp}, {rooms: [...], except: [...], flags: {...}}]
 * uid: six characters naming the publishing server (a server drops its own messages); type: the
 * Socket.IO packet type (2, EVENT, even when data holds binary: socket.io-parser makes it a
 * BINARY_EVENT when it writes the packet to a client); data: ["event", ...args], in which binary
 * arguments are msgpack bin values anywhere in the tree.
 *
 * crest holds an event's data as what a client is sent: JSON text in which each byte string is
 * replaced by {"_placeholder":true,"num":i}, plus the byte strings (the attachments) in order.
 * This codec converts between the two, mapping values the way notepack.io's decoder and then
 * JSON.stringify would (msgpack/notepack.io's conventions in brackets):
 *   nil -> null; true, false; integers and floats -> numbers written as JavaScript writes them
 *   (shortest text that reads back the same double; NaN and infinities -> null; a 64-bit integer
 *   beyond 2^53 becomes the nearest double, as in JavaScript); str -> a JSON string (it must be
 *   UTF-8); bin -> a placeholder and an attachment; map -> an object (keys must be strings);
 *   [fixext 1 of type 0 is undefined] -> null in an array, the member left out in an object (as
 *   JSON.stringify does); [ext 8/16/32 of type 0 is an ArrayBuffer] -> a placeholder and an
 *   attachment; [ext of type -1 is a timestamp, fixext 8 of type 0 a date in ms] -> the date's ISO
 *   string, or null outside JavaScript's date range; any other ext -> [type, placeholder].
 * JavaScript orders an object's integer-like keys ("1", "42") before the others; this codec keeps
 * msgpack's order (the same members; only their order differs from what Node sends).
 *
 * Nesting: at most CREST__SIOAD_MAX_DEPTH containers, counting the message's outer array and the
 * packet's map, in both directions (so that crest never publishes what crest cannot read). The
 * limit is libmsgpack's: its reader keeps a fixed stack of 32 containers and refuses more. */
#ifndef CREST_CODEC_SIOAD_H
#define CREST_CODEC_SIOAD_H

#include <stddef.h>
#include <stdint.h>

#include "crest/buf.h"
#include "crest/errno.h"

/* Containers nested in one message (libmsgpack's MSGPACK_EMBED_STACK_SIZE). The event's data,
 * one level below the packet map, may thus nest 30 deep (the data array included). */
#define CREST__SIOAD_MAX_DEPTH 32

/* A decoded adapter message. Every crest_str_t except the rooms written from numbers points into
 * the message decoded: keep the message as long as these are used. Owner: the caller of
 * crest__sioad_decode, who frees it with crest__sioad_msg_free. */
typedef struct {
    crest_str_t uid;      /* the publisher's uid */
    int type;             /* packet.type (2 EVENT, 3 ACK, ...; 0..6) */
    crest_str_t nsp;      /* packet.nsp, "/" when absent */
    crest_buf_t json;     /* packet.data as JSON text with placeholders (len 0: no data) */
    crest_str_t *bins;    /* the byte strings, in placeholder order */
    uint32_t nbins;       /* ... as many as placeholders in json */
    crest_str_t *rooms;   /* opts.rooms: strings; a number is written as its JSON text */
    size_t nrooms;        /* (0: every socket of the namespace) */
    crest_str_t *except;  /* opts.except, the same way */
    size_t nexcept;       /* */
    int local, volatile_; /* opts.flags.local / .volatile are true; other flags are ignored */
    /* private */
    crest_buf_t text_; /* the rooms' numbers as text */
} crest__sioad_msg_t;

/* Decode the adapter message msg[0..len) (a PUBLISH payload) into *out (overwritten; free it with
 * crest__sioad_msg_free whatever this returns). Returns 0; CREST_EINVAL when msg is not an adapter
 * message: not exactly one msgpack value, not the shape above (an array of at least 3 items: a
 * string, a map with an integer type 0..6, a map; extra items are ignored as Node does), nesting
 * over CREST__SIOAD_MAX_DEPTH, a str that is not UTF-8, a map key that is not a str, a room that
 * is neither a str nor a number; CREST_ENOMEM. Pure: any thread. */
int crest__sioad_decode(const void *msg, size_t len, crest__sioad_msg_t *out);

/* Free what crest__sioad_decode allocated and zero *m. NULL does nothing. */
void crest__sioad_msg_free(crest__sioad_msg_t *m);

/* Append to out the message [uid, {type, data, nsp}, {rooms, except, flags: {}}] that a Node
 * adapter reads, byte for byte what notepack.io writes for that value. data is read from the JSON
 * text json[0..len) (len 0: the packet has no data member); each object in it whose member
 * "_placeholder" is true stands for the byte string bins[num] and becomes a bin value. Numbers
 * that are integers within [-2^63, 2^64) become msgpack integers, the others float64 (as notepack
 * does). Returns 0; CREST_EINVAL when json is malformed (crest_json_parse's rules), nests deeper
 * than CREST__SIOAD_MAX_DEPTH allows, or holds a placeholder whose num is not an integer below
 * nbins; CREST_ENOTSUP when a string in it holds U+0000 (crest's JSON reader refuses those);
 * CREST_ENOMEM (out->err is latched). On failure out is left as it was. The strings are copied.
 * Pure: any thread. */
int crest__sioad_encode(crest_buf_t *out, crest_str_t uid, crest_str_t nsp, int type,
                        const char *json, size_t len, const crest_str_t *bins, uint32_t nbins,
                        const crest_str_t *rooms, size_t nrooms, const crest_str_t *except,
                        size_t nexcept);

/* Append the channel a broadcast is published on: "<prefix>#<nsp>#", or "<prefix>#<nsp>#<room>#"
 * when nrooms is 1. Returns 0 or CREST_ENOMEM (out->err). */
int crest__sioad_channel(crest_buf_t *out, crest_str_t prefix, crest_str_t nsp,
                         const crest_str_t *rooms, size_t nrooms);

#endif
