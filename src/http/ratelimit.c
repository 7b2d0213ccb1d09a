/* Rate limits per client address (crest_app_ratelimit).
 *
 * A token bucket per address, kept as one number: the time at which the bucket will be full again
 * ("theoretical arrival time", the GCRA form of a token bucket). A request costs one interval
 * T = 1/rate; it is allowed when the bucket, after paying, is no further than burst*T from full.
 * One 64-bit time per client instead of a count and a timestamp, and no timer: buckets refill by
 * the clock alone.
 *
 * The table is fixed at setup (max_clients entries), so a flood of distinct addresses cannot grow
 * memory: it is set-associative, WAYS entries per set chosen by a seeded hash of the address, and
 * a new address takes the entry of its set whose bucket is fullest (the smallest full-again time).
 * A full bucket holds no information (a newcomer starts full), so evicting one loses nothing; only
 * when every entry of the set is in debt does the eviction forgive the smallest debt.
 *
 * The table is shared by every loop thread (one limit per instance, whichever thread a connection
 * landed on). Each set is guarded by one of a fixed number of striped mutexes, so threads contend
 * only when they touch sets of the same stripe at the same moment; an uncontended mutex is one
 * atomic exchange.
 *
 * Headers: draft-ietf-httpapi-ratelimit-headers-11 (May 2026; the structured form of -08 to -11):
 *   RateLimit-Policy: "default";q=<burst>;w=<seconds to refill the burst>
 *   RateLimit: "default";r=<requests left>;t=<seconds until the next one is allowed>
 * t is the effective window of the draft: within t seconds the client can make no more than r
 * requests (a token bucket gains its next token after t). A 429 says Retry-After: t as well. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http.h"

#define WAYS 8
#define STRIPES 256

typedef struct {
    uint8_t ip[16];
    uint64_t full_at; /* ns (the loops' monotonic clock): the bucket is full from then on; 0: a
                         free entry */
} entry_t;

typedef struct {
    uint64_t interval;  /* ns per request: 1e9 / rate */
    uint64_t tolerance; /* ns of debt allowed: burst * interval */
    uint64_t seed;
    size_t set_mask;
    entry_t *entries; /* (set_mask + 1) * WAYS */
    pthread_mutex_t locks[STRIPES];
    char policy[128]; /* "RateLimit-Policy: ...\r\n" */
    size_t policy_len;
} limiter_t;

void crest_ratelimit_opts_default(crest_ratelimit_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->max_clients = 65536;
}

static void limiter_free(void *p) {
    limiter_t *l = p;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&l->locks[i]);
    free(l->entries);
    free(l);
}

static uint64_t mix(uint64_t x) { /* a 64-bit finaliser (MurmurHash3's fmix64 constants) */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_addr(const limiter_t *l, const uint8_t ip[16]) {
    uint64_t a, b;
    memcpy(&a, ip, 8);
    memcpy(&b, ip + 8, 8);
    return mix(mix(a ^ l->seed) ^ b);
}

typedef struct {
    int allowed;
    uint64_t remaining;
    uint64_t wait_ns; /* until the next request is allowed */
} verdict_t;

/* Charge one request to ip's bucket at time now. */
static void take(limiter_t *l, const uint8_t ip[16], uint64_t now, verdict_t *v) {
    size_t set = (size_t)hash_addr(l, ip) & l->set_mask;
    entry_t *e = &l->entries[set * WAYS];
    pthread_mutex_t *lock = &l->locks[set % STRIPES];
    pthread_mutex_lock(lock);
    entry_t *hit = NULL, *victim = &e[0];
    for (int i = 0; i < WAYS; i++) {
        if (e[i].full_at != 0 && memcmp(e[i].ip, ip, 16) == 0) {
            hit = &e[i];
            break;
        }
        if (e[i].full_at < victim->full_at)
            victim = &e[i];
    }
    if (hit == NULL) {
        hit = victim;
        memcpy(hit->ip, ip, 16);
        hit->full_at = now; /* a new client starts with a full bucket */
    }
    uint64_t base = hit->full_at > now ? hit->full_at : now;
    uint64_t debt = base + l->interval - now; /* after paying for this request */
    if (debt <= l->tolerance) {
        hit->full_at = base + l->interval;
        v->allowed = 1;
        v->remaining = (l->tolerance - debt) / l->interval;
        /* The next token arrives when the debt falls to the next multiple of the interval. */
        v->wait_ns = debt % l->interval ? debt % l->interval : l->interval;
    } else {
        v->allowed = 0;
        v->remaining = 0;
        v->wait_ns = debt - l->tolerance;
    }
    if (hit->full_at == 0)
        hit->full_at = 1; /* 0 marks a free entry */
    pthread_mutex_unlock(lock);
}

static int on_ratelimit(crest_req_t *req, void *data) {
    limiter_t *l = data;
    const crest__addr_t *client = crest__req_client_addr(req);
    verdict_t v;
    /* The loop's clock (ms, read once per loop turn) instead of a clock read per request: it is
     * at most a batch's time behind, which only makes the limit a hair stricter. */
    take(l, client->ip, uv_now(&req->loop->uv) * 1000000u + 1, &v);
    uint64_t secs = (v.wait_ns + 999999999u) / 1000000000u;
    if (secs == 0)
        secs = 1;
    /* Policy and state in one block, formatted by hand: this runs on every request. */
    char buf[256], num[24], *o = buf;
    memcpy(o, l->policy, l->policy_len);
    o += l->policy_len;
    static const char r_pre[] = "RateLimit: \"default\";r=";
    memcpy(o, r_pre, sizeof(r_pre) - 1);
    o += sizeof(r_pre) - 1;
    char *d = crest__fmt_u64(num + sizeof(num), v.remaining);
    memcpy(o, d, (size_t)(num + sizeof(num) - d));
    o += num + sizeof(num) - d;
    memcpy(o, ";t=", 3);
    o += 3;
    d = crest__fmt_u64(num + sizeof(num), secs);
    size_t secs_len = (size_t)(num + sizeof(num) - d);
    memcpy(o, d, secs_len);
    o += secs_len;
    memcpy(o, "\r\n", 2);
    o += 2;
    if (!v.allowed) {
        memcpy(o, "Retry-After: ", 13);
        o += 13;
        memcpy(o, d, secs_len);
        o += secs_len;
        memcpy(o, "\r\n", 2);
        o += 2;
    }
    int rc = crest__res_header_block(req, buf, (size_t)(o - buf));
    if (rc < 0)
        return rc;
    return v.allowed ? CREST_NEXT : crest_res_status(req, 429);
}

int crest_app_ratelimit(crest_app_t *app, const char *prefix, const crest_ratelimit_opts_t *opts) {
    if (app->rt.running)
        return CREST_EBUSY;
    if (opts == NULL || !(opts->rate > 0) || !isfinite(opts->rate))
        return CREST_EINVAL;
    double interval = 1e9 / opts->rate;
    if (interval < 1)
        interval = 1; /* a billion requests a second: no limit that matters */
    if (interval > 1e15)
        return CREST_EINVAL; /* slower than one request in 11 days */
    double capped = opts->rate < 1e9 ? opts->rate : 1e9;
    double burst = opts->burst ? (double)opts->burst : (double)(uint64_t)capped;
    if (burst < 1)
        burst = 1;
    if (burst * interval > 1e18) /* keep times far from overflowing 64 bits */
        burst = (double)(uint64_t)(1e18 / interval);
    size_t want = opts->max_clients ? opts->max_clients : 65536;
    size_t sets = 1;
    while (sets * WAYS < want && sets < ((size_t)1 << 28))
        sets <<= 1;
    limiter_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CREST_ENOMEM;
    /* calloc'd: pages are touched only as addresses arrive, and never more than this. */
    l->entries = calloc(sets * WAYS, sizeof(entry_t));
    if (l->entries == NULL) {
        free(l);
        return CREST_ENOMEM;
    }
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&l->locks[i], NULL);
    l->interval = (uint64_t)interval;
    l->tolerance = (uint64_t)(burst * (double)l->interval);
    l->set_mask = sets - 1;
    /* The seed keeps a client from choosing addresses that crowd one set. */
    l->seed = mix(uv_hrtime() ^ (uint64_t)(uintptr_t)l ^ ((uint64_t)getpid() << 32));
    uint64_t window = ((uint64_t)burst * l->interval + 999999999u) / 1000000000u;
    int n =
        snprintf(l->policy, sizeof(l->policy), "RateLimit-Policy: \"default\";q=%llu;w=%llu\r\n",
                 (unsigned long long)burst, (unsigned long long)(window ? window : 1));
    l->policy_len = (size_t)n;
    int rc = crest__app_own(app, l, limiter_free);
    return rc != 0 ? rc : crest_app_use(app, prefix, on_ratelimit, l);
}
