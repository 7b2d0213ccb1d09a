// Writes tests/unit/sioad_vectors.h: messages of npm @socket.io/redis-adapter as the real
// notepack.io writes them, each with what a Node server makes of it (notepack.io's decoder, then
// socket.io-parser's Encoder: the JSON a client is sent, with {"_placeholder":true,"num":i} for
// each attachment, and the attachments), for test_sioad.c to check crest's codec against, both
// ways. Run from anywhere after `npm ci` in bench/peers/sio-redis:
//   node tests/it/sioad_vectors.js > tests/unit/sioad_vectors.h
// The output is deterministic: running it again must leave the file unchanged (git diff).
// With --corpus DIR it writes each message to DIR/<name> instead (the fuzz target's seeds):
//   node tests/it/sioad_vectors.js --corpus fuzz/sioad/corpus
'use strict';
const path = require('path');

const mods = path.join(__dirname, '..', '..', 'bench', 'peers', 'sio-redis', 'node_modules');
const encode = require(path.join(mods, 'notepack.io', 'lib', 'encode.js'));
const decode = require(path.join(mods, 'notepack.io', 'lib', 'decode.js'));
const { Encoder } = require(path.join(mods, 'socket.io-parser'));

const UID = 'aB3dE6';

// A message as the adapter's broadcast() publishes it.
function message(data, { nsp = '/', rooms = [], except = [], flags = {}, noNsp = false } = {}) {
    const packet = { type: 2, data };
    if (!noNsp) packet.nsp = nsp;
    return encode([UID, packet, { rooms, except, flags }]);
}

// A message whose data is given as raw msgpack bytes (for the forms notepack.io reads but does
// not write: float32, ext types, undefined, 64-bit extremes).
function rawMessage(dataBytes) {
    const head = encode([UID, { type: 2, data: null, nsp: '/' }, { rooms: [], except: [], flags: {} }]);
    const tail = encode({ rooms: [], except: [], flags: {} });
    // head is [uid, {type, data: nil, nsp}, opts]: cut at the nil (0xc0 after "data").
    const at = head.indexOf(Buffer.from([0xa4, 0x64, 0x61, 0x74, 0x61, 0xc0])) + 5;
    const rest = head.subarray(at + 1, head.length - tail.length);
    return Buffer.concat([head.subarray(0, at), Buffer.from(dataBytes), rest, tail]);
}

function f64(x) {
    const b = Buffer.alloc(9);
    b[0] = 0xcb;
    b.writeDoubleBE(x, 1);
    return [...b];
}

// [name, message, roundtrip]: roundtrip means crest's encoder, given the JSON and attachments
// below, must write these very bytes (the value survives JSON: no dates, ext, flags, ...).
const cases = [
    ['event', message(['chat', 'hello']), 1],
    ['no args', message(['ping']), 1],
    ['ints', message(['n', 0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32,
        2 ** 53 - 1, 2 ** 53, 2 ** 63, 2 ** 64 - 2048, -1, -32, -33, -128, -129, -32768, -32769,
        -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53) + 1, -(2 ** 63)]), 1],
    ['floats', message(['f', 1.5, -0.25, 0.1, 1e-7, 1.5e-7, 123456789.125, 5e-324,
        4503599627370495.5, 3.14159, -2.5e-10, 1 / 3]), 1],
    ['minus zero', message(['z', -0]), 1],
    ['strings', message(['s', '', 'a'.repeat(31), 'b'.repeat(32), 'c'.repeat(255),
        'd'.repeat(256), 'é€😀', 'ctl \u0001\b\f\n\r\t"\\\u001f\u007f end', 'x'.repeat(300)]), 1],
    ['nul in string', message(['s', 'a\u0000b']), 0],
    ['literals', message(['l', true, false, null, [], {}, [[[]]], { a: { b: { c: [1] } } }]), 1],
    ['undefined is nil', message(['u', undefined, { a: undefined, b: 1 }]), 1],
    ['binary', message(['bin', Buffer.from([1, 2, 3])]), 1],
    ['binary nested', message(['bin', { a: [Buffer.from('one'), { b: Buffer.from('two') }],
        c: Buffer.alloc(0), d: 'text' }, Buffer.alloc(300, 7), [Buffer.from([0])]]), 1],
    ['typed array', message(['bin', new Uint8Array([9, 8, 7])]), 1],
    ['rooms', message(['r', 1], { rooms: ['room1'] }), 1],
    ['rooms and except', message(['r'], { rooms: ['a', 'b', ''], except: ['x', 'é'] }), 1],
    ['numeric rooms', message(['r'], { rooms: [42, 2.5, -1], except: [7] }), 0],
    ['namespace', message(['e', 'x'], { nsp: '/admin', rooms: ['r'] }), 1],
    ['no namespace', message(['e'], { noNsp: true }), 0],
    ['flags', message(['e'], { flags: { volatile: true, local: true, compress: false, timeout: 5 } }), 0],
    ['flags false', message(['e'], { flags: { volatile: false, local: false } }), 0],
    ['array16 map16', message(['big', Array.from({ length: 20 }, (_, i) => i * 3),
        Object.fromEntries(Array.from({ length: 20 }, (_, i) => ['k' + i, i]))]), 1],
    ['dates', message(['d', new Date(0), new Date(1700000000123), new Date(-1),
        new Date(253402300800000), new Date(-62198755200000), new Date(8.64e15),
        new Date(17179869184000 + 5)]), 0],
    // Forms notepack.io reads but does not write.
    ['float32', rawMessage([0x94, 0xa1, 0x66, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xca, 0x3d, 0xcc,
        0xcc, 0xcd, 0xca, 0x7f, 0xc0, 0, 0]), 0],
    ['float64 extremes', rawMessage([0x98, 0xa1, 0x66, ...f64(1e21), ...f64(1e300), ...f64(NaN),
        ...f64(Infinity), ...f64(-Infinity), ...f64(1.5e-300), ...f64(-1.234e21)]), 0],
    ['int64 extremes', rawMessage([0x93, 0xa1, 0x69, 0xcf, 255, 255, 255, 255, 255, 255, 255, 255,
        0xd3, 0x80, 0, 0, 0, 0, 0, 0, 1]), 0],
    ['undefined ext', rawMessage([0x94, 0xa1, 0x75, 0xd4, 0, 0, 0x82, 0xa1, 0x61, 0xd4, 0, 0,
        0xa1, 0x62, 0x01, 0xc0]), 0],
    ['arraybuffer ext', rawMessage([0x93, 0xa1, 0x61, 0xc7, 3, 0, 1, 2, 3, 0xc8, 0, 1, 0, 0xff]), 0],
    ['other ext', rawMessage([0x95, 0xa1, 0x78, 0xd4, 5, 0x41, 0xd5, 0, 1, 2, 0xd8, 0xff,
        ...Array(16).fill(0x11), 0xc7, 2, 0x7f, 0xaa, 0xbb]), 0],
    ['date ext', rawMessage([0x94, 0xa1, 0x74, 0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00, 0xd7, 0, 0, 0,
        1, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0xc7, 12, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        0x80, 0, 0, 0]), 0],
];

// What a Node server does with the message (the adapter's onmessage, then socket.io-parser).
function expect(msg) {
    const [uid, packet, opts] = decode(msg);
    if (packet.nsp === undefined) packet.nsp = '/';
    const out = { uid, type: packet.type, nsp: packet.nsp, rooms: opts.rooms, except: opts.except,
        local: !!(opts.flags && opts.flags.local === true),
        volatile: !!(opts.flags && opts.flags.volatile === true) };
    const parts = new Encoder().encode({ type: packet.type, nsp: '/', data: packet.data });
    const head = parts[0];
    const m = /^(\d)(\d+-)?/.exec(head);
    out.json = head.slice(m[0].length);
    out.bins = parts.slice(1).map((b) => Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b));
    return out;
}

// A C string literal for the bytes of b (octal escapes: no digit can extend them).
function lit(b) {
    let s = '"';
    for (const c of b) {
        if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c && c !== 0x3f) s += String.fromCharCode(c);
        else s += '\\' + c.toString(8).padStart(3, '0');
    }
    return s + '"';
}

function strList(name, list) {
    // Rooms: a string, or a number as its JSON text; attachments: their bytes.
    const texts = list.map((r) => Buffer.isBuffer(r) ? r
        : Buffer.from(typeof r === 'string' ? r : JSON.stringify(r)));
    return `static const sioad_str_t ${name}[] = {${texts.map((t) => `{${lit(t)}, ${t.length}}`).join(', ') || '{0, 0}'}};\n`;
}

let out = `/* Generated by tests/it/sioad_vectors.js from npm notepack.io and socket.io-parser (the
 * versions in bench/peers/sio-redis/package-lock.json); do not edit. To regenerate, after npm ci
 * in bench/peers/sio-redis:
 *   node tests/it/sioad_vectors.js > tests/unit/sioad_vectors.h */
/* clang-format off */
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *ptr;
    size_t len;
} sioad_str_t;

typedef struct {
    const char *name;
    sioad_str_t msg;       /* the message as notepack.io writes it */
    int roundtrip;         /* crest's encoder must write msg again from json and bins */
    sioad_str_t uid, nsp, json;
    int type, local, volatile_;
    const sioad_str_t *bins, *rooms, *except;
    size_t nbins, nrooms, nexcept;
} sioad_vector_t;

`;
const corpus = process.argv[2] === '--corpus' ? process.argv[3] : null;
if (corpus) {
    const fs = require('fs');
    fs.mkdirSync(corpus, { recursive: true });
    for (const [name, msg] of cases) fs.writeFileSync(path.join(corpus, name.replace(/ /g, '-')), msg);
    process.exit(0);
}
const rows = [];
cases.forEach(([name, msg, roundtrip], i) => {
    const e = expect(msg);
    out += strList(`v${i}_bins`, e.bins);
    out += strList(`v${i}_rooms`, e.rooms);
    out += strList(`v${i}_except`, e.except);
    const s = (x) => { const b = Buffer.from(x); return `{${lit(b)}, ${b.length}}`; };
    rows.push(`    {${JSON.stringify(name)}, ${s(msg)}, ${roundtrip},\n     ${s(e.uid)}, ${s(e.nsp)},\n` +
        `     ${s(e.json)},\n     ${e.type}, ${+e.local}, ${+e.volatile}, v${i}_bins, v${i}_rooms, v${i}_except, ` +
        `${e.bins.length}, ${e.rooms.length}, ${e.except.length}},`);
});
out += `\nstatic const sioad_vector_t sioad_vectors[] = {\n${rows.join('\n')}\n};\n`;
process.stdout.write(out);
