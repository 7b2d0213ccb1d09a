/* Real-time demo routes (CONTRACT.md "Real time"), written only against the public header.
 *
 * Chat rooms are pub/sub topics "room:<name>": a member's socket subscribes to its room, and each
 * message is published once, so members on every loop thread get the same frame. Every chat
 * message is also published to the topic "events" for the SSE stream at /events, with an id; the
 * last few are kept so that a browser reconnecting with Last-Event-ID gets what it missed: at most
 * HISTORY events and at most --sse-history bytes of them (1 MiB by default), the oldest dropped
 * first, so that large messages cannot make the history hold HISTORY times the message limit. A
 * replay gives what is still held.
 *
 * Presence. Announcing every join and leave to every member makes a room of N members cost
 * N^2/2 deliveries as it fills (10,000 members: 50 million frames and seconds of loop time), so
 * what a join or leave sends depends on the room's size on this instance:
 * - up to --chat-announce-max members (100 by default) each one is published to the room,
 *   {"type":"join"|"leave","room":R,"name":N}, as small rooms want to see who comes and goes;
 * - in a larger room a join or leave only marks the room, and a timer on the loop thread of the
 *   member that marked it first publishes {"type":"presence","room":R,"count":N}, the member
 *   count at that moment, at most once per --presence-interval (1 s) per room and always after
 *   the last change (trailing edge, so the final count is never lost). A member joining a large
 *   room gets that message at once, for itself alone.
 * A burst of N joins thus costs O(N) deliveries per interval instead of O(N^2). Clients keep the
 * count from the last presence message and apply join/leave while the room is small. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo_rt.h"

#define HISTORY 256  /* SSE events kept for Last-Event-ID */
#define MAX_FIELD 64 /* longest room or name, in bytes */
#define EVENTS_TOPIC "events"

typedef struct {
    uint64_t id;
    char *json; /* NULL once dropped */
    size_t len;
} event_t;

/* A room with members on this instance, for presence. Owner: the room table (rt->rooms), under
 * rt->rooms_lock; freed when it has no member and no presence timer pending (the timer holds it
 * until it fires). */
typedef struct room_s {
    struct room_s *next; /* hash chain */
    uint64_t hash;
    size_t members;
    int pending;                   /* a presence timer is armed */
    char topic[5 + MAX_FIELD + 1]; /* "room:" + room: the key */
    char *room_json;               /* the room as a JSON string literal */
    demo_rt_t *rt;
} room_t;

struct demo_rt_s {
    crest_pubsub_t *ps;
    crest_ws_opts_t echo;
    crest_ws_opts_t chat;
    uint32_t sse_keepalive_ms;
    pthread_mutex_t lock; /* guards the history and next_id: chat runs on every loop thread */
    uint64_t next_id;     /* the last id handed out */
    uint64_t oldest;      /* no event before this id is held */
    size_t history_bytes; /* the JSON held in history[] */
    size_t max_history;   /* its bound (--sse-history) */
    event_t history[HISTORY];
    /* Presence: rooms by topic (a chained hash table that doubles as it fills). */
    pthread_mutex_t rooms_lock;
    room_t **rooms;
    size_t nbuckets;
    size_t nrooms;
    size_t announce_max;  /* rooms up to this size get per-member join/leave */
    uint32_t presence_ms; /* at most one presence message per room per this */
};

/* One chat member; owned by its socket (freed in on_close). */
typedef struct {
    char topic[5 + MAX_FIELD + 1]; /* "room:" + room */
    char *room_json;               /* the room and name as JSON string literals */
    char *name_json;
    room_t *room; /* its entry in the room table, counted in room->members */
} member_t;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- /ws/echo ---- */

static void echo_message(crest_ws_t *ws, const void *data, size_t len, int binary) {
    crest_ws_send(ws, data, len, binary);
}

/* ---- /ws/chat ---- */

/* A chat name or room: percent-decoded from the query into out (MAX_FIELD + 2 bytes), or `dflt`
 * when empty. Both end up in every member's JSON, in the SSE stream and in the pub/sub topic's
 * name, so they are checked at the upgrade, before any 101, and a bad one is refused with 400:
 * at most MAX_FIELD bytes once decoded, valid UTF-8 (a browser's WebSocket and Python's
 * websockets close with 1007 on a text frame that is not, so one bad name would drop every such
 * member of the room), and no control characters, U+0000..U+001F and U+007F..U+009F (a NUL would
 * also cut the topic's name short and put the member in another room). Returns the length, or
 * -1 for a value that breaks the rule. */
static long chat_field(crest_str_t v, char *out, const char *dflt) {
    size_t n = crest_query_decode(v, out, MAX_FIELD + 2);
    if (n > MAX_FIELD)
        return -1;
    if (n == 0) {
        n = strlen(dflt);
        memcpy(out, dflt, n + 1);
    }
    if (crest_utf8_feed(CREST_UTF8_ACCEPT, out, n) != CREST_UTF8_ACCEPT)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        /* In valid UTF-8, U+0080..U+009F are C2 80..C2 9F. */
        if (c < 0x20 || c == 0x7f || (c == 0xc2 && (unsigned char)out[i + 1] <= 0x9f))
            return -1;
    }
    return (long)n;
}

static char *json_string(const char *s, size_t len) {
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_json_str(&b, s, len);
    crest_buf_append(&b, "", 1);
    if (b.err) {
        crest_buf_free(&b);
        return NULL;
    }
    return b.ptr;
}

static void announce(demo_rt_t *rt, const member_t *m, const char *type) {
    char mem[256];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_printf(&b, "{\"type\":\"%s\",\"room\":%s,\"name\":%s}", type, m->room_json,
                     m->name_json);
    if (!b.err)
        crest_pubsub_publish(rt->ps, m->topic, b.ptr, b.len, 0);
    crest_buf_free(&b);
}

/* ---- presence (see the top of the file) ---- */

static uint64_t topic_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The room for `topic`, created with room_json (copied) if missing; NULL when memory ran out.
 * Under rooms_lock. */
static room_t *room_get(demo_rt_t *rt, const char *topic, const char *room_json) {
    uint64_t h = topic_hash(topic);
    for (room_t *r = rt->rooms[h % rt->nbuckets]; r != NULL; r = r->next)
        if (r->hash == h && strcmp(r->topic, topic) == 0)
            return r;
    if (rt->nrooms >= rt->nbuckets) {
        size_t n = rt->nbuckets * 2;
        room_t **b = calloc(n, sizeof(*b));
        if (b != NULL) {
            for (size_t i = 0; i < rt->nbuckets; i++) {
                for (room_t *r = rt->rooms[i], *next; r != NULL; r = next) {
                    next = r->next;
                    r->next = b[r->hash % n];
                    b[r->hash % n] = r;
                }
            }
            free(rt->rooms);
            rt->rooms = b;
            rt->nbuckets = n;
        } /* else the chains just grow longer */
    }
    room_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->room_json = strdup(room_json)) == NULL) {
        free(r);
        return NULL;
    }
    r->hash = h;
    r->rt = rt;
    snprintf(r->topic, sizeof(r->topic), "%s", topic);
    r->next = rt->rooms[h % rt->nbuckets];
    rt->rooms[h % rt->nbuckets] = r;
    rt->nrooms++;
    return r;
}

/* Unlink and free a room that has no member and no timer. Under rooms_lock. */
static void room_put(demo_rt_t *rt, room_t *r) {
    if (r->members > 0 || r->pending)
        return;
    room_t **pp = &rt->rooms[r->hash % rt->nbuckets];
    while (*pp != r)
        pp = &(*pp)->next;
    *pp = r->next;
    rt->nrooms--;
    free(r->room_json);
    free(r);
}

static int presence_json(crest_buf_t *b, const room_t *r, size_t count) {
    crest_buf_printf(b, "{\"type\":\"presence\",\"room\":%s,\"count\":%zu}", r->room_json, count);
    return b->err;
}

/* The presence timer: publish the room's count now. Runs on the loop thread that armed it, or
 * early at a forced stop. */
static void on_presence(crest_loop_t *loop, void *arg) {
    (void)loop;
    room_t *r = arg;
    demo_rt_t *rt = r->rt;
    char mem[512];
    crest_buf_t b = CREST_BUF_ON(mem);
    pthread_mutex_lock(&rt->rooms_lock);
    r->pending = 0;
    size_t count = r->members;
    if (count > 0 && presence_json(&b, r, count) == 0)
        crest_pubsub_publish(rt->ps, r->topic, b.ptr, b.len, 0);
    room_put(rt, r);
    pthread_mutex_unlock(&rt->rooms_lock);
    crest_buf_free(&b);
}

/* A join or leave in a large room: arm the room's timer unless one is pending. Under
 * rooms_lock, on the loop thread of `loop`. */
static void presence_mark(demo_rt_t *rt, room_t *r, crest_loop_t *loop) {
    if (r->pending)
        return;
    r->pending = 1;
    if (crest_loop_after(loop, rt->presence_ms, on_presence, r) != 0)
        r->pending = 0; /* out of memory: this change goes unannounced until the next one */
}

static void chat_open(crest_ws_t *ws, crest_req_t *req) {
    demo_rt_t *rt = crest_ws_opts(ws)->data;
    char room[MAX_FIELD + 2], name[MAX_FIELD + 2];
    /* on_chat has checked both before the upgrade. */
    long rl = chat_field(crest_req_query_param(req, "room"), room, "lobby");
    long nl = chat_field(crest_req_query_param(req, "name"), name, "anonymous");
    if (rl < 0 || nl < 0) {
        crest_ws_close(ws, 1008, "bad room or name");
        return;
    }
    member_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        crest_ws_close(ws, 1011, "out of memory");
        return;
    }
    memcpy(m->topic, "room:", 5);
    memcpy(m->topic + 5, room, (size_t)rl + 1); /* rl <= MAX_FIELD, and the NUL */
    m->room_json = json_string(room, (size_t)rl);
    m->name_json = json_string(name, (size_t)nl);
    *crest_ws_data(ws) = m;
    if (m->room_json == NULL || m->name_json == NULL ||
        crest_ws_subscribe(ws, rt->ps, m->topic) != 0) {
        crest_ws_close(ws, 1011, "out of memory");
        return;
    }
    char mem[512];
    crest_buf_t b = CREST_BUF_ON(mem);
    pthread_mutex_lock(&rt->rooms_lock);
    m->room = room_get(rt, m->topic, m->room_json);
    size_t count = m->room ? ++m->room->members : 0;
    int small = count <= rt->announce_max;
    if (m->room != NULL && !small) {
        presence_mark(rt, m->room, crest_ws_loop(ws));
        presence_json(&b, m->room, count);
    }
    pthread_mutex_unlock(&rt->rooms_lock);
    if (m->room == NULL) {
        crest_ws_close(ws, 1011, "out of memory");
    } else if (small) {
        announce(rt, m, "join");
    } else if (!b.err) {
        crest_ws_send(ws, b.ptr, b.len, 0); /* the newcomer's own count, at once */
    }
    crest_buf_free(&b);
}

/* Free a held event (under rt->lock). */
static void history_drop(demo_rt_t *rt, event_t *e) {
    if (e->json == NULL)
        return;
    rt->history_bytes -= e->len;
    free(e->json);
    e->json = NULL;
}

static void chat_error(crest_ws_t *ws, const char *msg) {
    char mem[256];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_puts(&b, "{\"type\":\"error\",\"error\":");
    crest_buf_json_str(&b, msg, strlen(msg));
    crest_buf_puts(&b, "}");
    if (!b.err)
        crest_ws_send(ws, b.ptr, b.len, 0);
    crest_buf_free(&b);
}

static void chat_message(crest_ws_t *ws, const void *data, size_t len, int binary) {
    demo_rt_t *rt = crest_ws_opts(ws)->data;
    member_t *m = *crest_ws_data(ws);
    if (binary || m == NULL)
        return;
    /* The same strict parse as the REST API's bodies (crest_json_parse): raw control characters
     * are malformed, and "\u0000", which would cut the text short, is refused. */
    crest_json_t *root = NULL;
    int rc = crest_json_parse(data, len, &root);
    if (rc == CREST_ENOTSUP) {
        chat_error(ws, "the text must not contain U+0000");
        return;
    }
    crest_str_t text = crest_json_str(crest_json_get(root, "text"));
    if (text.ptr == NULL) {
        crest_json_free(root);
        chat_error(ws, "send {\"text\":\"...\"} as JSON");
        return;
    }
    crest_buf_t b = CREST_BUF_INIT;
    crest_buf_printf(&b, "{\"type\":\"message\",\"room\":%s,\"name\":%s,\"text\":", m->room_json,
                     m->name_json);
    crest_buf_json_str(&b, text.ptr, text.len);
    crest_buf_printf(&b, ",\"ts\":%llu}", (unsigned long long)now_ms());
    crest_json_free(root);
    if (b.err) {
        crest_buf_free(&b);
        return;
    }
    crest_pubsub_publish(rt->ps, m->topic, b.ptr, b.len, 0);
    /* The same JSON for the SSE stream, with an id for Last-Event-ID. The history takes the
     * JSON; numbering and publishing under one lock keep ids in order on the stream. */
    size_t jlen = b.len;
    crest_buf_append(&b, "", 1);
    if (b.err) {
        crest_buf_free(&b);
        return;
    }
    char idstr[24];
    pthread_mutex_lock(&rt->lock);
    uint64_t id = ++rt->next_id;
    event_t *e = &rt->history[id % HISTORY];
    history_drop(rt, e); /* the event HISTORY ids back */
    if (rt->oldest + HISTORY <= id)
        rt->oldest = id - HISTORY + 1;
    e->id = id;
    e->json = b.ptr;
    e->len = jlen;
    rt->history_bytes += jlen;
    snprintf(idstr, sizeof(idstr), "%llu", (unsigned long long)id);
    crest_pubsub_publish_event(rt->ps, EVENTS_TOPIC, "message", idstr, e->json, jlen);
    /* Then the byte bound, oldest first; an event larger than the whole bound goes too (it was
     * published live, above, but a replay cannot give it). */
    while (rt->history_bytes > rt->max_history && rt->oldest <= id) {
        event_t *old = &rt->history[rt->oldest % HISTORY];
        if (old->id == rt->oldest)
            history_drop(rt, old);
        rt->oldest++;
    }
    pthread_mutex_unlock(&rt->lock);
}

static void chat_close(crest_ws_t *ws, int code, const char *reason, size_t reason_len) {
    (void)code, (void)reason, (void)reason_len;
    demo_rt_t *rt = crest_ws_opts(ws)->data;
    member_t *m = *crest_ws_data(ws);
    if (m == NULL)
        return;
    if (m->room != NULL) {
        pthread_mutex_lock(&rt->rooms_lock);
        int small = m->room->members <= rt->announce_max;
        m->room->members--;
        if (!small)
            presence_mark(rt, m->room, crest_ws_loop(ws));
        room_put(rt, m->room);
        pthread_mutex_unlock(&rt->rooms_lock);
        if (small)
            announce(rt, m, "leave");
    }
    free(m->room_json);
    free(m->name_json);
    free(m);
}

static int refuse_field(crest_req_t *req, const char *field) {
    char mem[256];
    crest_buf_t b = CREST_BUF_ON(mem);
    crest_buf_printf(&b,
                     "{\"error\":\"%s must be at most %d bytes of UTF-8 (percent-encoded in the "
                     "query) without control characters\",\"field\":\"%s\"}",
                     field, MAX_FIELD, field);
    return crest_res_send_buf(req, 400, "application/json", &b);
}

/* The chat upgrade names the loop thread that took the socket (X-Loop), so that tests and curious
 * people can see members spread over threads. */
static int on_chat(crest_req_t *req, void *data) {
    demo_rt_t *rt = data;
    char field[MAX_FIELD + 2];
    if (chat_field(crest_req_query_param(req, "room"), field, "lobby") < 0)
        return refuse_field(req, "room");
    if (chat_field(crest_req_query_param(req, "name"), field, "anonymous") < 0)
        return refuse_field(req, "name");
    char idx[16];
    snprintf(idx, sizeof(idx), "%d", crest_loop_index(crest_req_loop(req)));
    crest_res_header(req, "X-Loop", idx);
    crest_ws_upgrade(req, &rt->chat);
    return 0;
}

/* ---- /events ---- */

static int on_events(crest_req_t *req, void *data) {
    demo_rt_t *rt = data;
    crest_str_t last = crest_req_header(req, "Last-Event-ID");
    uint64_t from = 0;
    int replay = 0;
    if (last.ptr != NULL && last.len > 0 && last.len < 20) {
        replay = 1;
        for (size_t i = 0; i < last.len && replay; i++) {
            if (last.ptr[i] < '0' || last.ptr[i] > '9')
                replay = 0;
            from = from * 10 + (uint64_t)(last.ptr[i] - '0');
        }
    }
    crest_sse_opts_t o;
    crest_sse_opts_default(&o);
    o.retry_ms = 1000;
    if (rt->sse_keepalive_ms)
        o.keepalive_ms = rt->sse_keepalive_ms;
    crest_sse_t *s = crest_sse_start(req, &o);
    if (s == NULL)
        return 0;
    /* Subscribe first and replay under the lock: an event published meanwhile waits in the
     * loop's queue behind the replay, so nothing is lost or sent twice out of order. */
    pthread_mutex_lock(&rt->lock);
    if (crest_sse_subscribe(s, rt->ps, EVENTS_TOPIC) != 0) {
        pthread_mutex_unlock(&rt->lock);
        crest_sse_end(s);
        return 0;
    }
    if (replay) {
        uint64_t first = from + 1 > rt->oldest ? from + 1 : rt->oldest;
        for (uint64_t id = first; id <= rt->next_id; id++) {
            event_t *e = &rt->history[id % HISTORY];
            char idstr[24];
            snprintf(idstr, sizeof(idstr), "%llu", (unsigned long long)id);
            if (e->id == id && e->json)
                crest_sse_send(s, "message", idstr, e->json, e->len);
        }
    }
    pthread_mutex_unlock(&rt->lock);
    return 0;
}

int demo_rt_routes(crest_app_t *app, const cli_opts_t *opts, demo_rt_t **out) {
    *out = NULL;
    demo_rt_t *rt = calloc(1, sizeof(*rt));
    if (rt == NULL || (rt->ps = crest_pubsub_new(app)) == NULL) {
        free(rt);
        fprintf(stderr, "crest: out of memory\n");
        return 1;
    }
    pthread_mutex_init(&rt->lock, NULL);
    pthread_mutex_init(&rt->rooms_lock, NULL);
    rt->nbuckets = 64;
    rt->rooms = calloc(rt->nbuckets, sizeof(*rt->rooms));
    if (rt->rooms == NULL) {
        fprintf(stderr, "crest: out of memory\n");
        demo_rt_free(rt);
        return 1;
    }
    rt->announce_max = (size_t)opts->chat_announce_max;
    rt->presence_ms = opts->presence_interval_ms;
    rt->oldest = 1;
    rt->max_history = opts->sse_history_bytes;
    if (opts->redis_url != NULL) {
        crest_redis_opts_t ro;
        crest_redis_opts_default(&ro);
        if (opts->ws_max_message)
            ro.max_message = opts->ws_max_message;
        int rc = crest_pubsub_redis(rt->ps, opts->redis_url, &ro);
        if (rc != 0) {
            fprintf(stderr, "crest: --redis %s: %s\n", opts->redis_url, crest_strerror(rc));
            demo_rt_free(rt);
            return 1;
        }
    }
    crest_ws_opts_t base;
    crest_ws_opts_default(&base);
    if (opts->ws_max_message)
        base.max_message = opts->ws_max_message;
    if (opts->ws_max_buffered)
        base.max_buffered = opts->ws_max_buffered;
    if (opts->ws_ping_interval_ms)
        base.ping_interval_ms = opts->ws_ping_interval_ms;
    base.slow_policy = opts->ws_slow_close ? CREST_WS_SLOW_CLOSE : CREST_WS_SLOW_DROP;
    base.deflate = opts->ws_deflate;
    base.data = rt;
    rt->sse_keepalive_ms = opts->sse_keepalive_ms;
    rt->echo = base;
    rt->echo.on_message = echo_message;
    rt->chat = base;
    rt->chat.on_open = chat_open;
    rt->chat.on_message = chat_message;
    rt->chat.on_close = chat_close;

    int rc = crest_ws_route(app, "/ws/echo", &rt->echo);
    if (rc == 0)
        rc = crest_app_route(app, "GET", "/ws/chat", on_chat, rt);
    if (rc == 0)
        rc = crest_app_route(app, "GET", "/events", on_events, rt);
    if (rc != 0) {
        fprintf(stderr, "crest: real-time routes: %s\n", crest_strerror(rc));
        demo_rt_free(rt);
        return 1;
    }
    *out = rt;
    return 0;
}

void demo_rt_free(demo_rt_t *rt) {
    if (rt == NULL)
        return;
    crest_pubsub_free(rt->ps);
    for (size_t i = 0; i < HISTORY; i++)
        free(rt->history[i].json);
    /* Rooms left over only if the app never ran or a member's close did not come: every member
     * has left and every presence timer has fired once crest_app_run() returned. */
    for (size_t i = 0; rt->rooms != NULL && i < rt->nbuckets; i++) {
        for (room_t *r = rt->rooms[i], *next; r != NULL; r = next) {
            next = r->next;
            free(r->room_json);
            free(r);
        }
    }
    free(rt->rooms);
    pthread_mutex_destroy(&rt->rooms_lock);
    pthread_mutex_destroy(&rt->lock);
    free(rt);
}

crest_pubsub_t *demo_rt_pubsub(const demo_rt_t *rt) {
    return rt->ps;
}
