/* Socket.IO: the server side of npm socket.io-client 4.x (Engine.IO 4, Socket.IO 5), so that
 * front ends written for a Node.js Socket.IO server talk to crest unchanged.
 *
 * crest_sio_new() adds the Engine.IO routes at opts.path (GET and POST: HTTP long-polling, and
 * the upgrade to WebSocket). A client session (an Engine.IO "sid") lives on one loop thread; a
 * polling request or WebSocket upgrade that arrives on another thread moves its connection to
 * the session's thread before it is answered, so every callback of a socket runs on that one
 * thread and nothing is locked on the way. Over HTTP/2, where a connection carries many streams
 * and cannot move, such a request hops instead: what it asks is carried to the session's thread
 * and the answer back.
 *
 * A client joins namespaces ("/" and the ones made with crest_sio_of()); each membership is a
 * crest_sio_socket_t with its own id, rooms and data. Events arrive as a JSON array of
 * arguments (crest/json.h); binary arguments are placeholders resolved with
 * crest_sio_event_bin(). Events go out with an argument list built with crest_sio_args_*.
 *
 * Rooms are pub/sub topics of the hub given to crest_sio_new(): a broadcast is encoded once
 * (one WebSocket frame sequence, one polling payload) and shared by every recipient on every
 * loop thread, as crest_pubsub_publish() is. Its topics are named "sio:" + namespace + ":" + room
 * and are never carried by the hub's own Redis bridge.
 *
 * Limits: a message over max_payload closes the session (over polling, the POST gets 413); a
 * polling session holds at most max_packets packets (and max_buffered bytes) for its next GET,
 * and a WebSocket session max_buffered bytes, beyond which it is a slow consumer and is closed
 * (the client reconnects); a session that answers no ping within ping_timeout_ms is closed; a
 * session that joins no namespace within connect_timeout_ms is closed. */
#ifndef CREST_SIO_H
#define CREST_SIO_H

#include <stddef.h>
#include <stdint.h>

#include "crest/app.h"
#include "crest/buf.h"
#include "crest/export.h"
#include "crest/http.h"
#include "crest/json.h"
#include "crest/pubsub.h"

typedef struct crest_sio_s crest_sio_t;
typedef struct crest_sio_nsp_s crest_sio_nsp_t;
typedef struct crest_sio_socket_s crest_sio_socket_t;
typedef struct crest_sio_event_s crest_sio_event_t;

typedef struct {
    const char *path;            /* the routes' path; default "/socket.io/" (copied) */
    uint32_t ping_interval_ms;   /* a ping to every session this often; default 25000 */
    uint32_t ping_timeout_ms;    /* time to answer it; default 20000 */
    uint32_t upgrade_timeout_ms; /* an unfinished upgrade to WebSocket is dropped; default 10000 */
    uint32_t connect_timeout_ms; /* a session in no namespace is closed; default 45000 */
    size_t max_payload;          /* largest message or polling POST body (maxHttpBufferSize);
                                    default 1000000; a POST over it gets 413 as it arrives */
    size_t max_buffered;      /* output one session may hold before it is a slow consumer (closed);
                                 default 1 MiB */
    size_t max_packets;       /* packets a polling session holds for its next GET; default 1024 */
    uint32_t max_attachments; /* binary attachments of one packet; default 10 */
    int polling;              /* accept the long-polling transport; default 1 */
    int websocket;            /* accept WebSocket (direct, or as an upgrade); default 1 */
    /* With a Redis bridge on the hub (crest_pubsub_redis() before crest_sio_new()), broadcasts
     * reach every instance on that Redis, Node.js socket.io servers using
     * @socket.io/redis-adapter with this key prefix included; default "socket.io" (copied). */
    const char *cluster_key;
} crest_sio_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_sio_opts_default(crest_sio_opts_t *opts);

/* A Socket.IO server on `app` whose rooms travel through the hub `ps` (both must outlive it). Adds
 * its routes and the namespace "/". `opts` is copied (NULL: the defaults). Call before
 * crest_app_run(). Returns the server, or NULL when memory ran out or the options are invalid
 * (a zero interval or limit, no transport). */
CREST_API crest_sio_t *crest_sio_new(crest_app_t *app, crest_pubsub_t *ps,
                                     const crest_sio_opts_t *opts);
/* Free the server after crest_app_run() has returned (its sessions are gone by then) and before
 * the hub and the app. crest_sio_free(NULL) does nothing. */
CREST_API void crest_sio_free(crest_sio_t *io);

/* The namespace `name` ("/" or "/name"), made on first use. Namespaces are made before
 * crest_app_run(); a client asking for another one gets CONNECT_ERROR "Invalid namespace".
 * Returns NULL when memory ran out or the name does not start with '/'. */
CREST_API crest_sio_nsp_t *crest_sio_of(crest_sio_t *io, const char *name);

/* ---- handlers (registered before crest_app_run(); they run on the socket's loop thread) ---- */

/* A client asks to join the namespace; auth is its handshake auth (a JSON object) or NULL. Return
 * NULL to accept (the socket is connected when this returns), or a message (a string that
 * outlives the call) to refuse with: CONNECT_ERROR {"message": ...}, and the socket is freed
 * afterwards without a disconnect call, so set its user data only when accepting. The handler
 * may join rooms and emit: what it sends reaches the client right after the connect answer. */
typedef const char *(*crest_sio_connect_cb)(crest_sio_socket_t *s, const crest_json_t *auth,
                                            void *data);
/* The socket left the namespace: `reason` is Socket.IO's ("client namespace disconnect",
 * "server namespace disconnect", "transport close", "transport error", "ping timeout", "server
 * shutting down"). The socket is freed when this returns: free its user data here. */
typedef void (*crest_sio_disconnect_cb)(crest_sio_socket_t *s, const char *reason, void *data);
/* An event arrived. `ev` (its name, arguments, binary attachments, ack id) is valid during the
 * call only. */
typedef void (*crest_sio_event_cb)(crest_sio_socket_t *s, crest_sio_event_t *ev, void *data);

CREST_API int crest_sio_on_connect(crest_sio_nsp_t *nsp, crest_sio_connect_cb cb, void *data);
CREST_API int crest_sio_on_disconnect(crest_sio_nsp_t *nsp, crest_sio_disconnect_cb cb, void *data);
/* Call cb for event `name` (copied) in this namespace; a later call for the same name replaces
 * it. Events without a handler are ignored (an ack they ask for is never sent). Returns 0,
 * CREST_EINVAL for an empty name, CREST_ENOMEM. */
CREST_API int crest_sio_on(crest_sio_nsp_t *nsp, const char *name, crest_sio_event_cb cb,
                           void *data);

/* ---- an arriving event ---- */

/* The event's name (NUL-terminated), or NULL for the arguments of an ack. */
CREST_API const char *crest_sio_event_name(const crest_sio_event_t *ev);
/* The arguments after the name, a JSON array (maybe empty). */
CREST_API const crest_json_t *crest_sio_event_args(const crest_sio_event_t *ev);
/* The argument at `i` (0-based), or NULL when there are fewer. */
CREST_API const crest_json_t *crest_sio_event_arg(const crest_sio_event_t *ev, size_t i);
/* If v (anywhere in the arguments) stands for a binary attachment, set *out to its bytes (valid
 * during the call) and return 0; else CREST_EINVAL. */
CREST_API int crest_sio_event_bin(const crest_sio_event_t *ev, const crest_json_t *v,
                                  crest_str_t *out);
/* The ack id the client waits on (answer with crest_sio_ack(), now or later), or -1. */
CREST_API int64_t crest_sio_event_ack_id(const crest_sio_event_t *ev);

/* ---- argument lists ----
 * A list of arguments for an emit or an ack, built in the caller's memory: JSON values, strings
 * and byte strings, in order. It is read, not taken, by the calls that send it: reuse it or
 * free it afterwards. */
typedef struct {
    crest_buf_t json; /* the arguments so far, as the text of a JSON array without its brackets */
    crest_buf_t bins; /* the byte strings, each its size_t length then its bytes */
    uint32_t nbins;
    int err; /* a call failed (out of memory): the list is not sent */
} crest_sio_args_t;

CREST_API void crest_sio_args_init(crest_sio_args_t *a);
/* Append one argument given as JSON text (len bytes; the caller vouches that it is one valid
 * JSON value without binary placeholders). Returns 0 or CREST_ENOMEM. */
CREST_API int crest_sio_args_json(crest_sio_args_t *a, const char *json, size_t len);
/* Append a string argument (UTF-8, escaped here). */
CREST_API int crest_sio_args_str(crest_sio_args_t *a, const char *s, size_t len);
/* Append a byte-string argument (copied; the client gets an ArrayBuffer or Buffer). */
CREST_API int crest_sio_args_bin(crest_sio_args_t *a, const void *data, size_t len);
CREST_API void crest_sio_args_free(crest_sio_args_t *a);

/* ---- sending ---- */

/* Send event `name` with `args` (NULL: none) to one socket. Socket's loop thread only. Returns
 * 0, CREST_EPIPE when the socket has left, CREST_EINVAL for an empty name or a failed list,
 * CREST_ENOMEM. A session that is over its limits by this is closed (later, not in this call). */
CREST_API int crest_sio_emit(crest_sio_socket_t *s, const char *name, const crest_sio_args_t *args);

/* Called once with the client's ack (status 0, ev holds its arguments and attachments) or
 * without (status CREST_ETIMEDOUT when timeout_ms passed, CREST_ECANCELED when the socket left
 * first; ev is NULL then). On the socket's loop thread; s is valid during the call. */
typedef void (*crest_sio_ack_cb)(crest_sio_socket_t *s, int status, crest_sio_event_t *ev,
                                 void *arg);
/* As crest_sio_emit, asking the client for an ack: cb runs later, never before this returns (and
 * not at all when this fails). timeout_ms 0: no timeout. */
CREST_API int crest_sio_emit_ack(crest_sio_socket_t *s, const char *name,
                                 const crest_sio_args_t *args, uint32_t timeout_ms,
                                 crest_sio_ack_cb cb, void *arg);
/* Answer the client's ack `id` (crest_sio_event_ack_id) with `args` (NULL: none). Socket's loop
 * thread; once per id. Returns 0, CREST_EINVAL for id -1 or a failed list, CREST_EPIPE,
 * CREST_ENOMEM. */
CREST_API int crest_sio_ack(crest_sio_socket_t *s, int64_t id, const crest_sio_args_t *args);

/* Who a broadcast goes to: every socket of the namespace in any of `rooms` (all of the
 * namespace's sockets when nrooms is 0), except those in any of `except`. A socket's own id is
 * a room holding it alone, so `except` = {crest_sio_id(s)} leaves the sender out. */
typedef struct {
    const char *const *rooms;
    size_t nrooms;
    const char *const *except;
    size_t nexcept;
} crest_sio_to_t;

/* Send event `name` with `args` to the sockets `to` names (NULL: every socket of the namespace),
 * on every loop thread (and, with a cluster, every instance). Any thread; never calls back
 * before it returns. Each socket gets it once, however many of the rooms it is in. Returns 0
 * (also when nobody is there), CREST_EINVAL, CREST_ENOBUFS (the app's buffer budget is used up:
 * dropped), CREST_ENOMEM. */
CREST_API int crest_sio_broadcast(crest_sio_nsp_t *nsp, const crest_sio_to_t *to, const char *name,
                                  const crest_sio_args_t *args);

/* ---- sockets (on their loop thread) ---- */

/* Join or leave a room (copied). Joining twice is one membership; rooms are left when the socket
 * leaves. Returns 0, CREST_EINVAL for an empty name, CREST_ENOMEM; leave returns CREST_ENOENT
 * when the socket was not in the room. */
CREST_API int crest_sio_join(crest_sio_socket_t *s, const char *room);
CREST_API int crest_sio_leave(crest_sio_socket_t *s, const char *room);
/* Nonzero when the socket is in `room`. */
CREST_API int crest_sio_in(const crest_sio_socket_t *s, const char *room);
/* Per-socket user data: the address of a pointer that is NULL at first. */
CREST_API void **crest_sio_data(crest_sio_socket_t *s);
/* The socket's id (20 characters, NUL-terminated; the room that holds it alone). */
CREST_API const char *crest_sio_id(const crest_sio_socket_t *s);
/* Its namespace, and the loop thread it lives on. */
CREST_API crest_sio_nsp_t *crest_sio_socket_nsp(const crest_sio_socket_t *s);
CREST_API crest_loop_t *crest_sio_loop(const crest_sio_socket_t *s);
/* "polling" or "websocket": the transport the session uses now. */
CREST_API const char *crest_sio_transport(const crest_sio_socket_t *s);
/* Make the socket leave its namespace: the client gets DISCONNECT, the disconnect handler runs
 * later ("server namespace disconnect"), not in this call. Returns 0 or CREST_EALREADY. */
CREST_API int crest_sio_disconnect(crest_sio_socket_t *s);

/* Counters (summed over loop threads; a moment's snapshot). Any thread. */
typedef struct {
    uint64_t sessions;      /* now: Engine.IO sessions */
    uint64_t sockets;       /* now: namespace memberships */
    uint64_t opened;        /* sessions opened so far */
    uint64_t moved;         /* requests whose connection moved to the session's thread */
    uint64_t hopped;        /* HTTP/2 requests carried to the session's thread and back */
    uint64_t ping_timeouts; /* sessions closed for not answering a ping */
    uint64_t slow_closed;   /* sessions closed as slow consumers */
    uint64_t packets_in;    /* Socket.IO packets received */
    uint64_t packets_out;   /* Socket.IO packets sent to one socket (emits and acks) */
    uint64_t bad_packets;   /* sessions closed for a malformed packet */
} crest_sio_stats_t;

CREST_API void crest_sio_stats(const crest_sio_t *io, crest_sio_stats_t *out);

#endif
