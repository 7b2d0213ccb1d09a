/* Socket.IO rooms across instances: crest speaks the protocol of npm @socket.io/redis-adapter 8
 * on the hub's Redis bridge, so that crest instances and Node.js socket.io servers on one Redis
 * serve the same rooms.
 *
 * Out: every broadcast is PUBLISHed once, as that adapter does, on "<key>#<nsp>#" (or
 * "<key>#<nsp>#<room>#" when it goes to exactly one room) with the msgpack of [uid, packet,
 * {rooms, except, flags}] (src/codec/sioad.c). In: the instance PSUBSCRIBEs "<key>#<nsp>#*" for
 * each namespace, drops what carries its own uid (its members had it when it was sent), and
 * delivers the rest to its members as a broadcast of its own, without sending it on.
 *
 * Only broadcasts travel. The adapter's requests (fetchSockets, serverSideEmit, remote
 * join/leave/disconnect, broadcasts with acks) go to "<key>-request#<nsp>#", which crest does not
 * subscribe to: a Node.js server counts the subscribers of that channel to know how many answers
 * to wait for, so a subscriber that never answers would make every such request time out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/sioad.h"
#include "sio/sio.h"

/* A message from another instance, on the bridge's thread. */
static void on_cluster(void *arg, const char *channel, size_t channel_len, const char *payload,
                       size_t len) {
    (void)channel;
    (void)channel_len;
    crest_sio_nsp_t *nsp = arg;
    crest_sio_t *io = nsp->io;
    crest__sioad_msg_t m;
    if (crest__sioad_decode(payload, len, &m) != 0) {
        atomic_fetch_add_explicit(&io->cluster_refused, 1, memory_order_relaxed);
        return;
    }
    if (m.uid.len == io->uid_len && memcmp(m.uid.ptr, io->uid, io->uid_len) == 0) {
        crest__sioad_msg_free(&m); /* ours, back from Redis */
        return;
    }
    /* Broadcasts are EVENTs (binary data included); anything else is not for us. */
    if (m.type == 2 && m.nsp.len == nsp->len && memcmp(m.nsp.ptr, nsp->name, nsp->len) == 0 &&
        m.json.len > 0) {
        if (crest__sio_broadcast_local(nsp, m.rooms, m.nrooms, m.except, m.nexcept, m.json.ptr,
                                       m.json.len, m.bins, m.nbins) == 0)
            atomic_fetch_add_explicit(&io->cluster_received, 1, memory_order_relaxed);
        else
            atomic_fetch_add_explicit(&io->cluster_refused, 1, memory_order_relaxed);
    }
    crest__sioad_msg_free(&m);
}

int crest__sio_cluster_join(crest_sio_nsp_t *nsp) {
    crest_sio_t *io = nsp->io;
    if (io->bridge == NULL)
        return 0;
    char *pattern = malloc(strlen(io->key) + nsp->len + 4);
    if (pattern == NULL)
        return CREST_ENOMEM;
    sprintf(pattern, "%s#%s#*", io->key, nsp->name);
    int rc = io->bridge->psubscribe(io->bridge, pattern, on_cluster, nsp);
    free(pattern);
    return rc;
}

void crest__sio_cluster_publish(crest_sio_nsp_t *nsp, const crest_str_t *rooms, size_t nrooms,
                                const crest_str_t *except, size_t nexcept, const char *data,
                                size_t data_len, const crest_str_t *bins, uint32_t nbins) {
    crest_sio_t *io = nsp->io;
    if (io->bridge == NULL)
        return;
    crest_str_t uid = {io->uid, io->uid_len}, name = {nsp->name, nsp->len};
    crest_str_t key = {io->key, strlen(io->key)};
    crest_buf_t msg = CREST_BUF_INIT, channel = CREST_BUF_INIT;
    if (crest__sioad_encode(&msg, uid, name, 2, data, data_len, bins, nbins, rooms, nrooms, except,
                            nexcept) == 0 &&
        crest__sioad_channel(&channel, key, name, rooms, nrooms) == 0) {
        io->bridge->publish_raw(io->bridge, channel.ptr, channel.len, msg.ptr, msg.len);
        atomic_fetch_add_explicit(&io->cluster_sent, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&io->cluster_refused, 1, memory_order_relaxed);
    }
    crest_buf_free(&msg);
    crest_buf_free(&channel);
}
