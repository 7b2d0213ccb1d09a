/* SQLite behind crest/db.h: per-thread connections, per-connection statement caches.
 *
 * Durability. A 2xx on a write must survive kill -9 and restart (CONTRACT.md), and DESIGN.md asks
 * more: acknowledged writes survive a crash. In WAL mode a commit appends the transaction to the
 * -wal file with write(2) before sqlite3_step returns; once write(2) has returned, the bytes are
 * in the kernel's page cache and a killed process cannot lose them, whatever the synchronous
 * setting (even OFF). So kill -9 alone needs nothing special. Power loss or a kernel crash is
 * different: synchronous=NORMAL syncs the WAL only at checkpoints, so the last commits can vanish
 * with the page cache; synchronous=FULL fsyncs the WAL at every commit. The default here is FULL,
 * which makes a 2xx durable against both; "?synchronous=normal" in the URL opts out where only
 * process crashes matter. Commits therefore cost an fsync, which is why the demo runs every write
 * on the worker pool, never on a loop thread.
 *
 * Concurrent writers. SQLite has one writer at a time per file. Each thread has its own
 * connection, so writers on different threads contend for the file lock; SQLITE_BUSY must not
 * reach clients. Two measures: (1) every connection sets a busy timeout (5 s): SQLite then sleeps
 * and retries the lock itself instead of failing at once; (2) callers start write transactions
 * with "BEGIN IMMEDIATE", which takes the write lock up front. Without (2) a deferred transaction
 * that read first and then tries to write can get SQLITE_BUSY at once, because in WAL mode a
 * reader whose snapshot is older than the latest commit cannot be upgraded, and the busy handler
 * is not even called. Writers hold the lock for one short transaction (a few ms), so a 5 s
 * timeout is only reached under pathological load, and then the client gets a 503 (EBUSY).
 * Readers in WAL mode never take the write lock and never wait for a writer. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "crest.h"

#define BUSY_TIMEOUT_MS 5000
#define TLS_SLOTS 4

typedef struct {
    const char *sql; /* the caller's string: its address is the key */
    sqlite3_stmt *st;
} cached_t;

/* One thread's connection. Owner: its db (listed there); used only by the thread that made it. */
typedef struct conn_s {
    sqlite3 *h;
    cached_t *cache;
    size_t ncache;
    size_t cap;
    struct conn_s *next;
} conn_t;

struct crest_db_s {
    char *path;
    int sync_full;
    uint64_t gen; /* unique per open: tells a thread's cached connection from a stale one */
    pthread_mutex_t lock;
    conn_t *conns; /* guarded by lock */
    conn_t *first; /* the opening thread's connection */
};

/* Each thread remembers its connection to a few databases. The generation number, never reused,
 * keeps a slot from matching a closed database that a new one replaced at the same address. */
static _Thread_local struct {
    uint64_t gen;
    conn_t *conn;
} tls[TLS_SLOTS];
static _Thread_local unsigned tls_next;
static atomic_uint_fast64_t next_gen = 1;

static int map_rc(int rc) {
    switch (rc & 0xff) {
    case SQLITE_OK:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return CREST_EBUSY;
    case SQLITE_NOMEM:
        return CREST_ENOMEM;
    case SQLITE_CANTOPEN:
        return CREST_ENOENT;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
        return CREST_EACCES;
    case SQLITE_CONSTRAINT:
        return CREST_EEXIST;
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_FULL:
    case SQLITE_NOTADB:
        return -EIO;
    default:
        return CREST_EINVAL;
    }
}

static void conn_free(conn_t *c) {
    for (size_t i = 0; i < c->ncache; i++)
        sqlite3_finalize(c->cache[i].st);
    free(c->cache);
    sqlite3_close(c->h);
    free(c);
}

static int conn_open(crest_db_t *db, conn_t **out) {
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CREST_ENOMEM;
    /* NOMUTEX: a connection is never shared between threads, so SQLite's own per-connection
     * mutex would only cost time. */
    int rc = sqlite3_open_v2(
        db->path, &c->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(c->h, BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->h,
                          db->sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int err = map_rc(rc);
        sqlite3_close(c->h);
        free(c);
        return err;
    }
    pthread_mutex_lock(&db->lock);
    c->next = db->conns;
    db->conns = c;
    pthread_mutex_unlock(&db->lock);
    *out = c;
    return 0;
}

/* The calling thread's connection, opened on first use. */
static int conn_get(crest_db_t *db, conn_t **out) {
    for (int i = 0; i < TLS_SLOTS; i++)
        if (tls[i].gen == db->gen) {
            *out = tls[i].conn;
            return 0;
        }
    conn_t *c = NULL;
    int rc = conn_open(db, &c);
    if (rc != 0)
        return rc;
    /* A thread using more databases than slots evicts one; that database opens another
     * connection if it comes back (the old one stays listed and is closed with its db). */
    unsigned slot = tls_next++ % TLS_SLOTS;
    tls[slot].gen = db->gen;
    tls[slot].conn = c;
    *out = c;
    return 0;
}

int crest_db_open(const char *url, crest_db_t **out) {
    *out = NULL;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return CREST_ENOTSUP;
    if (strncmp(url, "sqlite:", 7) != 0)
        return CREST_EINVAL;
    const char *path = url + 7;
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    if (plen == 0)
        return CREST_EINVAL;
    int sync_full = 1;
    if (q != NULL) {
        if (strcmp(q, "?synchronous=normal") == 0)
            sync_full = 0;
        else if (strcmp(q, "?synchronous=full") != 0)
            return CREST_EINVAL;
    }
    crest_db_t *db = calloc(1, sizeof(*db));
    if (db == NULL || (db->path = strndup(path, plen)) == NULL) {
        free(db);
        return CREST_ENOMEM;
    }
    db->sync_full = sync_full;
    db->gen = atomic_fetch_add(&next_gen, 1);
    pthread_mutex_init(&db->lock, NULL);
    int rc = conn_get(db, &db->first);
    if (rc == 0) {
        /* WAL is a property of the file, kept across opens: set it once here. */
        sqlite3_stmt *st;
        rc = map_rc(sqlite3_prepare_v2(db->first->h, "PRAGMA journal_mode=WAL", -1, &st, NULL));
        if (rc == 0) {
            if (sqlite3_step(st) != SQLITE_ROW ||
                strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
                rc = -EIO;
            sqlite3_finalize(st);
        }
    }
    if (rc != 0) {
        crest_db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void crest_db_close(crest_db_t *db) {
    if (db == NULL)
        return;
    conn_t *c = db->conns;
    while (c != NULL) {
        conn_t *next = c->next;
        conn_free(c);
        c = next;
    }
    /* Forget this thread's slot now; other threads' slots can never match again (gen). */
    for (int i = 0; i < TLS_SLOTS; i++)
        if (tls[i].gen == db->gen)
            tls[i].gen = 0;
    pthread_mutex_destroy(&db->lock);
    free(db->path);
    free(db);
}

int crest_db_exec(crest_db_t *db, const char *sql) {
    conn_t *c = NULL;
    int rc = conn_get(db, &c);
    if (rc != 0)
        return rc;
    return map_rc(sqlite3_exec(c->h, sql, NULL, NULL, NULL));
}

int crest_db_prepare(crest_db_t *db, const char *sql, crest_db_stmt_t **out) {
    *out = NULL;
    conn_t *c = NULL;
    int rc = conn_get(db, &c);
    if (rc != 0)
        return rc;
    /* A linear scan: an app has a dozen statements, and comparing pointers is cheaper than
     * hashing them at that size. */
    for (size_t i = 0; i < c->ncache; i++)
        if (c->cache[i].sql == sql) {
            *out = (crest_db_stmt_t *)c->cache[i].st;
            return 0;
        }
    if (c->ncache == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        cached_t *n = realloc(c->cache, cap * sizeof(*n));
        if (n == NULL)
            return CREST_ENOMEM;
        c->cache = n;
        c->cap = cap;
    }
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v3(c->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK)
        return map_rc(rc);
    c->cache[c->ncache].sql = sql;
    c->cache[c->ncache].st = st;
    c->ncache++;
    *out = (crest_db_stmt_t *)st;
    return 0;
}

int crest_db_bind_int(crest_db_stmt_t *st, int idx, int64_t v) {
    return map_rc(sqlite3_bind_int64((sqlite3_stmt *)st, idx, v));
}

int crest_db_bind_text(crest_db_stmt_t *st, int idx, const char *s, size_t len) {
    return map_rc(
        sqlite3_bind_text64((sqlite3_stmt *)st, idx, s, len, SQLITE_TRANSIENT, SQLITE_UTF8));
}

int crest_db_step(crest_db_stmt_t *st) {
    int rc = sqlite3_step((sqlite3_stmt *)st);
    if (rc == SQLITE_ROW)
        return CREST_DB_ROW;
    if (rc == SQLITE_DONE)
        return CREST_DB_DONE;
    return map_rc(rc);
}

int64_t crest_db_col_int(crest_db_stmt_t *st, int col) {
    return sqlite3_column_int64((sqlite3_stmt *)st, col);
}

crest_str_t crest_db_col_text(crest_db_stmt_t *st, int col) {
    const unsigned char *p = sqlite3_column_text((sqlite3_stmt *)st, col);
    int n = sqlite3_column_bytes((sqlite3_stmt *)st, col);
    return (crest_str_t){p ? (const char *)p : "", p ? (size_t)n : 0};
}

void crest_db_reset(crest_db_stmt_t *st) {
    sqlite3_reset((sqlite3_stmt *)st);
    sqlite3_clear_bindings((sqlite3_stmt *)st);
}

int64_t crest_db_last_insert_id(crest_db_t *db) {
    conn_t *c = NULL;
    return conn_get(db, &c) == 0 ? sqlite3_last_insert_rowid(c->h) : 0;
}

int crest_db_changes(crest_db_t *db) {
    conn_t *c = NULL;
    return conn_get(db, &c) == 0 ? sqlite3_changes(c->h) : 0;
}

const char *crest_db_errmsg(crest_db_t *db) {
    conn_t *c = NULL;
    if (conn_get(db, &c) != 0)
        return "cannot open a connection";
    return sqlite3_errcode(c->h) == SQLITE_OK ? "" : sqlite3_errmsg(c->h);
}
