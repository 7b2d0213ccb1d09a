/* Socket.IO internals shared by the Engine.IO layer (engine.c: sessions, transports, heartbeat)
 * and the Socket.IO layer above it (socket.c: namespaces, sockets, events, acks, rooms). */
#ifndef CREST_SIO_INTERNAL_H
#define CREST_SIO_INTERNAL_H

#include "crest/sio.h"
#include "http/http.h"
#include "pubsub/pubsub.h"

#define CREST__SIO_ID_LEN 20 /* session and socket ids: base64url characters */

typedef struct {
    char *name;
    crest_sio_event_cb cb;
    void *data;
} crest__sio_handler_t;

/* Made before the app runs, read-only while it runs. Owner: its server. */
struct crest_sio_nsp_s {
    struct crest_sio_nsp_s *next;
    crest_sio_t *io;
    char *name;
    size_t len;
    char *topic; /* the topic every socket of the namespace is subscribed to */
    crest_sio_connect_cb on_connect;
    void *connect_data;
    crest_sio_disconnect_cb on_disconnect;
    void *disconnect_data;
    crest__sio_handler_t *handlers;
    size_t nhandlers;
    _Atomic uint64_t sockets; /* now */
};

struct crest_sio_s {
    crest_app_t *app;
    crest__rt_t *rt;
    crest_pubsub_t *ps;
    crest_sio_opts_t opts;
    char *path;
    crest_ws_opts_t ws_opts; /* the WebSocket transport's */
    crest_sio_nsp_t *nsps;
    /* Counters (crest_sio_stats), any thread. */
    _Atomic uint64_t sessions;
    _Atomic uint64_t sockets;
    _Atomic uint64_t opened;
    _Atomic uint64_t moved;
    _Atomic uint64_t hopped;
    _Atomic uint64_t hop_seq;
    _Atomic uint64_t ping_timeouts;
    _Atomic uint64_t slow_closed;
    _Atomic uint64_t packets_in;
    _Atomic uint64_t packets_out;
    _Atomic uint64_t bad_packets;
    /* The cluster (cluster.c): the hub's Redis bridge when it has one, this instance's uid in the
     * adapter's messages, the adapter's key prefix. */
    crest__ps_bridge_t *bridge;
    char uid[8]; /* 6 characters */
    size_t uid_len;
    char *key;
    _Atomic uint64_t cluster_sent;
    _Atomic uint64_t cluster_received;
    _Atomic uint64_t cluster_refused;
};

typedef struct crest__eio_s crest__eio_t;

/* ---- engine.c: the Engine.IO layer ---- */

/* Write len (at most 32) random base64url characters and a NUL to out: a session's id (with
 * loop_index >= 0, its first two characters name that loop thread), a socket's id or the
 * cluster uid (loop_index -1). Returns 0, or CREST_EIO when the kernel gave no randomness. */
int crest__sio_random_id(char *out, size_t len, int loop_index);

/* The routes' handler (GET and POST at opts.path). */
int crest__eio_http(crest_req_t *req, void *data);
/* The WebSocket transport's callbacks (io->ws_opts). */
void crest__eio_ws_open(crest_ws_t *ws, crest_req_t *req);
void crest__eio_ws_message(crest_ws_t *ws, const void *data, size_t len, int binary);
void crest__eio_ws_close(crest_ws_t *ws, int code, const char *reason, size_t reason_len);

/* Send one MESSAGE packet to the session: text (a Socket.IO packet) or binary (an attachment).
 * Over polling it waits for the next GET (a slow consumer closes the session, later). Returns 0,
 * CREST_EPIPE when the session is closing, CREST_ENOMEM. */
int crest__eio_send(crest__eio_t *e, const void *data, size_t len, int binary);
/* Queue a published message for the session: its WebSocket frames (m->ws) borrowed, or its
 * polling payload (payload, plen bytes, `packets` packets) copied; crest__eio_push writes it.
 * Returns 1 when queued, 0 when dropped (the session is closing, or slow and closed at the
 * push). */
int crest__eio_share(crest__eio_t *e, crest__psmsg_t *m, const char *payload, size_t plen,
                     uint32_t packets);
void crest__eio_push(crest__eio_t *e);
/* Close the session (reason for its sockets' disconnect handlers); not in this call when called
 * from inside the session's own dispatch. */
void crest__eio_close(crest__eio_t *e, const char *reason);
crest_loop_t *crest__eio_loop(const crest__eio_t *e);
const char *crest__eio_transport(const crest__eio_t *e);
crest_sio_t *crest__eio_server(const crest__eio_t *e);
/* The session's Socket.IO state (socket.c's). */
struct crest__sio_sess_s *crest__eio_upper(crest__eio_t *e);

/* ---- socket.c: the Socket.IO layer ---- */

/* The Socket.IO state of a session, embedded in it. */
typedef struct crest__sio_sess_s {
    crest_sio_socket_t *socks;      /* its namespace memberships */
    struct crest__sio_part_s *part; /* a binary packet waiting for its attachments */
    uint8_t joined;                 /* some namespace was joined once (connect timeout) */
} crest__sio_sess_t;

/* A MESSAGE packet arrived for the session (text: a Socket.IO packet; binary: an attachment). A
 * malformed one closes the session. */
void crest__sio_message(crest__eio_t *e, crest__sio_sess_t *ss, const char *data, size_t len,
                        int binary);
/* The session is closing: every socket leaves with `reason`, pending acks are cancelled. */
void crest__sio_session_gone(crest__eio_t *e, crest__sio_sess_t *ss, const char *reason);

/* Deliver an EVENT to this instance's sockets in `rooms` (all of the namespace's when nrooms is
 * 0) except those in `except`: its data is `data` (a JSON array, binary arguments as
 * placeholders) and its attachments `bins`. Any thread. */
int crest__sio_broadcast_local(crest_sio_nsp_t *nsp, const crest_str_t *rooms, size_t nrooms,
                               const crest_str_t *except, size_t nexcept, const char *data,
                               size_t data_len, const crest_str_t *bins, uint32_t nbins);

/* ---- cluster.c: rooms across instances through @socket.io/redis-adapter's channels ---- */

/* Subscribe to the namespace's channels, when the server has a bridge (else nothing). */
int crest__sio_cluster_join(crest_sio_nsp_t *nsp);
/* Publish a broadcast to the other instances (nothing without a bridge). Any thread. */
void crest__sio_cluster_publish(crest_sio_nsp_t *nsp, const crest_str_t *rooms, size_t nrooms,
                                const crest_str_t *except, size_t nexcept, const char *data,
                                size_t data_len, const crest_str_t *bins, uint32_t nbins);

#endif
