#!/usr/bin/python3
"""Writes the seed corpus of fuzz_sio (fuzz/sio/corpus/): each file is one byte choosing the read
size (see fuzz_sio.c), then the client's steps after the handshake, separated by "\\n~", each a
letter and its bytes. Files named regress-* are inputs the fuzzer found, kept as they were. Run
from anywhere: python3 fuzz/sio/seeds.py"""

import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SEP = b"\n~"
RS = b"\x1e"  # Engine.IO's packet separator in a polling payload


def ph(n):
    return '{"_placeholder":true,"num":%d}' % n


def post(*packets):
    """A polling POST of Engine.IO packets (str: as is, bytes: as is too)."""
    return b"P" + RS.join(p.encode() if isinstance(p, str) else p for p in packets)


def text(s):
    return b"f" + (s.encode() if isinstance(s, str) else s)


def raw(req):
    return b"H" + req.encode()


G = b"G"
T = b"T"


def t(bits):
    return b"T" + bytes([bits])


def seeds():
    s = {}
    s["connect-echo"] = [post("40"), G,
                         post('42["echo","a",1]', '421["echo",{"x":[1,2.5,null,true]}]'), G]
    s["binary"] = [post('40{"bin":1}'), G,
                   post('451-["echo",%s]' % ph(0), "bAQID"), G,
                   post('452-7["echo",%s,"x",%s]' % (ph(0), ph(1)), "bAAEC", "b"), G]
    s["admin"] = [post('40/admin,{"token":"secret"}', '40/admin,{"token":"x"}', "40/admin,",
                       "40/nope,"), G,
                  post('42/admin,5["echo",1]', '42/admin,["join","r"]', "41/admin,",
                       '42/admin,["echo"]'), G]
    s["rooms"] = [post('40{"room":"r"}'), G,
                  post('42["join","a","b"]', '42["to",["a","b"],["self"],{"v":1}]',
                       '42["to","a",[]]', '42["all"]', '42["leave","a"]', '42["to","r","b"]'), G]
    s["rooms-two-sessions"] = [b"Wx", text('40{"room":"r"}'), post('40{"room":"r"}'),
                               post('42["to","r",[],1]', '42["all"]'), G,
                               text('42["to",["r","s"],"self",2]'), G,
                               text('451-["to","r",[],%s]' % ph(0)), b"b\x01\x02", G]
    s["acks"] = [post("40"), post('42["ask",0]', '42["ask",1]'), G,
                 post('430["ok"]', '461-1[%s]' % ph(0), "bAA=="), G, T, G]
    s["ack-again-bye"] = [post("40"), post('42["ask"]'), G, post('430["again"]'), G,
                          post('431["bye"]'), G, T]
    s["heartbeat"] = [post("40"), t(2), G, post("3"), t(2), G, t(2), t(2), G]
    s["upgrade"] = [post("40"), G, b"W", text("2probe"), text("5"), text('42["echo",1]'),
                    text('451-["echo",%s]' % ph(0)), b"b\x00\x01", text('42["emit",3]'),
                    text("3"), b"c\x03\xe8"]
    s["upgrade-unannounced"] = [post("40"), b"W", text("2probe"), G, text("5"), b"b\x01",
                                text("42")]
    s["upgrade-timeout"] = [post("40"), b"W", text("2probe"), t(3), G, post('42["echo",1]'), G]
    s["upgrade-bad-probe"] = [post("40"), b"W", text("3probe"), G, b"W", text("5"), G]
    s["ws-only"] = [b"Wx", text("40"), text('42["emit",40]'), text('42["ask",1]'), t(7),
                    text("1")]
    s["ws-raw"] = [b"Wx", b"F\x81\x82\x00\x00\x00\x004\x30", b"F\x01\x81\x00\x00\x00\x004",
                   b"F\x80\x81\x00\x00\x00\x000", b"F\x89\x80\x00\x00\x00\x00"]
    s["slow-polling"] = [post("40"), post('42["emit",60]'), G, G]
    s["bye"] = [post("40", '40/admin,{"token":"secret"}'),
                post('42["bye"]', '421/admin,["bye"]'), G, T, G]
    s["later"] = [post("40"), post('421["later"]', '422["later"]'), t(4), G,
                  post('423["later"]'), b"X\x01", post("41"), G]
    # The client leaves "/" and "/admin": the disconnect handler's emit, join and disconnect
    # must be refused (a disconnect there once freed the socket twice).
    s["client-leaves"] = [post("40", '40/admin,{"token":"secret"}'), post("41", "41/admin,"), G]
    # crest_sio_disconnect() from the connect handler, which then accepts (the client gets
    # CONNECT then DISCONNECT) or refuses (the socket was freed with its leave still posted).
    s["kick"] = [post('40{"kick":1}'), G, T, G]
    s["kick-refuse"] = [post('40{"kick":1,"refuse":1}', '40/admin,{"kick":1,"token":"secret"}'),
                        G, T, G]
    s["refuse"] = [post('40{"refuse":1}', "40/admin,", '40/admin,{"token":1}', "40/nope,",
                        "40", '40{"ask":1}', "40"), G, T, G]
    s["errors"] = [post("4x"), G]
    s["empty-post"] = [b"P", G]
    s["bad-packets"] = [post("40"), post("6", "41", "5", "4", "b!!", "44"), G]
    s["bad-json"] = [post("40"), post('42["echo",1'), G]
    s["ack-no-id"] = [post("40"), post("43[1]"), G]
    s["attachment-first"] = [post("40"), post("bAQID"), G]
    s["text-while-parts"] = [post("40"), post('451-["echo",%s]' % ph(0), '42["echo"]'), G]
    s["too-many-parts"] = [post("40"), post('459-["echo"]'), G]
    s["close"] = [post("40", "1"), G, post("40")]
    s["close-packet"] = [post("1"), G]
    s["two-gets"] = [G, b"g", post("40")]
    s["abort-poll"] = [G, b"X\x00", post("40"), G]
    s["too-large"] = [post("40"), b"P" + b"4" + b"x" * 5000, G]
    s["connect-timeout"] = [t(7), post("40"), G]
    s["requests"] = [
        raw("GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: a\r\n\r\n"),
        raw("GET /socket.io/?EIO=4&transport=flash HTTP/1.1\r\nHost: a\r\n\r\n"),
        raw("GET /socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA HTTP/1.1\r\n"
            "Host: a\r\n\r\n"),
        raw("GET /socket.io/?EIO=4&transport=polling&sid=zz HTTP/1.1\r\nHost: a\r\n\r\n"),
        raw("PUT /socket.io/?EIO=4&transport=polling&sid=@ HTTP/1.1\r\nHost: a\r\n"
            "Content-Length: 0\r\n\r\n"),
        raw("POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: a\r\n"
            "Content-Length: 2\r\n\r\n40"),
        raw("POST /socket.io/?EIO=4&transport=polling&sid=@ HTTP/1.1\r\nHost: a\r\n"
            "Content-Length: 99999\r\n\r\n40"),
        raw("POST /socket.io/?EIO=4&transport=polling&sid=@ HTTP/1.1\r\nHost: a\r\n"
            "Transfer-Encoding: chunked\r\n\r\n2\r\n40\r\n0\r\n\r\n"),
        raw("GET /socket.io/?EIO=4&transport=websocket&sid=@ HTTP/1.1\r\nHost: a\r\n\r\n"),
        raw("POST /socket.io/?EIO=4&transport=websocket&sid=@ HTTP/1.1\r\nHost: a\r\n"
            "Content-Length: 0\r\n\r\n"),
        G,
    ]
    return s


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, steps in seeds().items():
        body = SEP.join(steps)
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(b"\x00" + body)
        # The same cut into small reads: parsers see every split.
        with open(os.path.join(OUT, name + "-split"), "wb") as f:
            f.write(b"\x01" + body)


if __name__ == "__main__":
    main()
