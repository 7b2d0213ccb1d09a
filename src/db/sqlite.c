/* SQLite behind crest/db.h: per-thread connections and statement caches, reads on the calling
 * loop thread, writes on one writer thread that commits them in groups.
 *
 * Durability. A 2xx on a write must survive kill -9 and restart (CONTRACT.md), and DESIGN.md asks
 * more: acknowledged writes survive a crash. In WAL mode a commit appends the transaction to the
 * -wal file with write(2) before sqlite3_step returns; once write(2) has returned, the bytes are
 * in the kernel's page cache and a killed process cannot lose them, whatever the synchronous
 * setting (even OFF). So kill -9 alone needs nothing special. Power loss or a kernel crash is
 * different: synchronous=NORMAL syncs the WAL only at checkpoints, so the last commits can vanish
 * with the page cache; synchronous=FULL fsyncs the WAL at every commit. The default here is FULL,
 * which makes a 2xx durable against both; "?synchronous=normal" in the URL opts out where only
 * process crashes matter. Commits therefore cost an fsync, which is why no write batch runs on a
 * loop thread.
 *
 * Group commit. SQLite has one writer at a time per file, and at FULL a commit is an fsync (a
 * millisecond or far more). Writers on many threads would queue for the lock and each pay its own
 * fsync. Instead one writer thread takes every write batch queued while it was busy and commits
 * them in one transaction: one fsync for the group. Each batch runs inside a savepoint, so one
 * that fails is rolled back alone and the others commit; a failed COMMIT fails them all. No batch
 * is answered before the COMMIT that holds it has returned, so a 2xx still means durable.
 *
 * Other writers (crest_db_run_sync at start-up, another process on the same file) still contend
 * for the file lock, and SQLITE_BUSY must not reach clients. Two measures: (1) every connection
 * sets a busy timeout (5 s): SQLite then sleeps and retries the lock itself instead of failing at
 * once; (2) write transactions start with "BEGIN IMMEDIATE", which takes the write lock up front.
 * Without (2) a deferred transaction that read first and then tries to write can get SQLITE_BUSY at
 * once, because in WAL mode a reader whose snapshot is older than the latest commit cannot be
 * upgraded, and the busy handler is not even called. Writers hold the lock for one short
 * transaction (a few ms), so a 5 s timeout is only reached under pathological load, and then the
 * client gets a 503 (EBUSY). Readers in WAL mode never take the write lock and never wait for a
 * writer. */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"

#define BUSY_TIMEOUT_MS 5000
#define TLS_SLOTS 4

typedef struct {
    sqlite3_stmt *st;
    int readonly;
} cached_t;

/* One thread's connection. Owner: its database (listed there); used only by the thread that made
 * it. */
typedef struct conn_s {
    sqlite3 *h;
    cached_t *cache; /* by statement index */
    int ncache;
    struct conn_s *next;
} conn_t;

/* A loop thread's count of write batches the writer has not yet handed back. Its finish waits
 * for them: their completions must be in the loop's inbox before it closes. Owner: the loop. */
typedef struct {
    crest__loop_ext_t ext;
    int unposted; /* guarded by sq->wlock */
} sq_loop_t;

typedef struct {
    char *path;
    int sync_full;
    uint64_t gen; /* unique per open: tells a thread's cached connection from a stale one */
    pthread_mutex_t lock;
    conn_t *conns; /* guarded by lock */
    /* The writer thread, started by the first write batch. */
    pthread_mutex_t wlock;
    pthread_cond_t wcond;    /* work queued, or stop */
    pthread_cond_t wposted;  /* a loop's unposted count fell */
    crest_db_query_t *whead; /* guarded by wlock */
    crest_db_query_t *wtail;
    size_t wqueued;
    int wstop;
    int wstarted;
    pthread_t wthread;
} sq_t;

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
    for (int i = 0; i < c->ncache; i++)
        sqlite3_finalize(c->cache[i].st);
    free(c->cache);
    sqlite3_close(c->h);
    free(c);
}

static int conn_open(sq_t *sq, conn_t **out) {
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CREST_ENOMEM;
    /* NOMUTEX: a connection is never shared between threads, so SQLite's own per-connection
     * mutex would only cost time. */
    int rc = sqlite3_open_v2(
        sq->path, &c->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(c->h, BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->h,
                          sq->sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                          NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int err = map_rc(rc);
        sqlite3_close(c->h);
        free(c);
        return err;
    }
    pthread_mutex_lock(&sq->lock);
    c->next = sq->conns;
    sq->conns = c;
    pthread_mutex_unlock(&sq->lock);
    *out = c;
    return 0;
}

/* The calling thread's connection, opened on first use. */
static int conn_get(sq_t *sq, conn_t **out) {
    for (int i = 0; i < TLS_SLOTS; i++)
        if (tls[i].gen == sq->gen) {
            *out = tls[i].conn;
            return 0;
        }
    conn_t *c = NULL;
    int rc = conn_open(sq, &c);
    if (rc != 0)
        return rc;
    /* A thread using more databases than slots evicts one; that database opens another
     * connection if it comes back (the old one stays listed and is closed with its db). */
    unsigned slot = tls_next++ % TLS_SLOTS;
    tls[slot].gen = sq->gen;
    tls[slot].conn = c;
    *out = c;
    return 0;
}

/* The connection's prepared form of `sql`, prepared on first use. Kept by the handle's index,
 * never by the address of the application's text (which crest_db_statement copied): SQL built in
 * a reused buffer cannot find another statement's prepared form. */
static int stmt_get(conn_t *c, const crest_db_sql_t *sql, cached_t **out) {
    if (sql->index >= c->ncache) {
        int n = sql->index + 16;
        cached_t *cache = realloc(c->cache, (size_t)n * sizeof(*cache));
        if (cache == NULL)
            return CREST_ENOMEM;
        memset(cache + c->ncache, 0, (size_t)(n - c->ncache) * sizeof(*cache));
        c->cache = cache;
        c->ncache = n;
    }
    cached_t *ce = &c->cache[sql->index];
    if (ce->st == NULL) {
        int rc = sqlite3_prepare_v3(c->h, sql->text, -1, SQLITE_PREPARE_PERSISTENT, &ce->st, NULL);
        if (rc != SQLITE_OK)
            return map_rc(rc);
        ce->readonly = sqlite3_stmt_readonly(ce->st);
    }
    *out = ce;
    return 0;
}

static int exec(conn_t *c, const char *sql) {
    return map_rc(sqlite3_exec(c->h, sql, NULL, NULL, NULL));
}

static int fail(conn_t *c, crest_db_query_t *q, int rc) {
    crest__db_set_error(q, sqlite3_errmsg(c->h));
    return rc;
}

/* Keep the current row of st in q's results. */
static int keep_row(crest_db_query_t *q, db_step_t *step, sqlite3_stmt *st) {
    int ncols = sqlite3_column_count(st);
    if (crest__db_row_begin(q, step, ncols) != 0)
        return CREST_ENOMEM;
    for (int col = 0; col < ncols; col++) {
        switch (sqlite3_column_type(st, col)) {
        case SQLITE_INTEGER:
            crest__db_cell_int(q, sqlite3_column_int64(st, col));
            break;
        case SQLITE_NULL:
            crest__db_cell_null(q);
            break;
        default: {
            /* Text, blobs and reals (as SQLite renders them in text). */
            const char *p = (const char *)sqlite3_column_text(st, col);
            size_t n = (size_t)sqlite3_column_bytes(st, col);
            if (p == NULL && n > 0)
                return CREST_ENOMEM;
            if (crest__db_cell_text(q, step, p ? p : "", n) != 0)
                return CREST_ENOMEM;
        }
        }
    }
    return 0;
}

/* Run q's statements on c, keeping their rows. The caller owns the transaction. */
static int run_steps(conn_t *c, crest_db_query_t *q) {
    for (int i = 0; i < q->nsteps; i++) {
        db_step_t *step = &q->steps[i];
        cached_t *ce = NULL;
        int rc = stmt_get(c, step->sql, &ce);
        if (rc != 0)
            return fail(c, q, rc);
        if (!ce->readonly && !(q->flags & CREST_DB_WRITE)) {
            crest__db_set_error(q, "a statement that writes runs only in a CREST_DB_WRITE batch");
            return CREST_EINVAL;
        }
        sqlite3_stmt *st = ce->st;
        for (uint32_t a = 0; a < step->nargs && rc == 0; a++) {
            const db_arg_t *arg = &q->args[step->first_arg + a];
            int idx = (int)a + 1;
            if (arg->kind == ARG_INT)
                rc = sqlite3_bind_int64(st, idx, arg->i);
            else if (arg->kind == ARG_TEXT)
                rc = sqlite3_bind_text64(st, idx, crest__db_arg_text(q, arg), arg->len,
                                         SQLITE_STATIC, SQLITE_UTF8);
            else
                rc = sqlite3_bind_null(st, idx);
            rc = map_rc(rc);
        }
        while (rc == 0) {
            int s = sqlite3_step(st);
            if (s == SQLITE_DONE)
                break;
            if (s != SQLITE_ROW) {
                rc = fail(c, q, map_rc(s));
                break;
            }
            if (step->limit && step->bytes >= step->limit) {
                step->cut = 1; /* a row beyond the limit exists: leave it and the rest */
                break;
            }
            rc = keep_row(q, step, st);
        }
        step->changes = sqlite3_changes64(c->h);
        /* Reset ends the statement's read, so no snapshot outlives the batch. */
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Run q alone on the calling thread, in a transaction of its own. */
static int run_here(sq_t *sq, crest_db_query_t *q) {
    conn_t *c;
    int rc = conn_get(sq, &c);
    if (rc != 0)
        return rc;
    /* One statement is its own transaction; more share one (a write lock taken up front for a
     * write, one snapshot for reads). */
    int txn = q->nsteps > 1 || (q->flags & CREST_DB_WRITE);
    if (txn && (rc = exec(c, q->flags & CREST_DB_WRITE ? "BEGIN IMMEDIATE" : "BEGIN")) != 0)
        return fail(c, q, rc);
    rc = run_steps(c, q);
    if (txn) {
        if (rc == 0 && (rc = exec(c, "COMMIT")) != 0)
            fail(c, q, rc);
        if (rc != 0)
            exec(c, "ROLLBACK");
    }
    return rc;
}

/* ---- the writer thread ---- */

static void on_write_done(crest_loop_t *loop, void *arg) {
    (void)loop;
    crest_db_query_t *q = arg;
    crest__db_finish(q, q->status);
}

static void write_group(conn_t *c, crest_db_query_t *group) {
    int rc = exec(c, "BEGIN IMMEDIATE");
    for (crest_db_query_t *q = group; q != NULL; q = q->next) {
        if (rc != 0) {
            q->status = fail(c, q, rc);
            continue;
        }
        if ((q->status = exec(c, "SAVEPOINT batch")) == 0)
            q->status = run_steps(c, q);
        if (q->status != 0) {
            exec(c, "ROLLBACK TO batch");
            crest__db_clear_results(q);
        }
        exec(c, "RELEASE batch");
    }
    if (rc == 0 && (rc = exec(c, "COMMIT")) != 0) {
        const char *msg = sqlite3_errmsg(c->h);
        exec(c, "ROLLBACK");
        for (crest_db_query_t *q = group; q != NULL; q = q->next)
            if (q->status == 0) {
                q->status = rc;
                crest__db_set_error(q, msg);
                crest__db_clear_results(q);
            }
    }
}

static void *writer_main(void *arg) {
    sq_t *sq = arg;
    conn_t *c = NULL;
    int open_rc = conn_get(sq, &c);
    pthread_mutex_lock(&sq->wlock);
    for (;;) {
        while (sq->whead == NULL && !sq->wstop)
            pthread_cond_wait(&sq->wcond, &sq->wlock);
        if (sq->whead == NULL)
            break;
        crest_db_query_t *group = sq->whead;
        sq->whead = sq->wtail = NULL;
        sq->wqueued = 0;
        pthread_mutex_unlock(&sq->wlock);
        if (open_rc != 0) {
            for (crest_db_query_t *q = group; q != NULL; q = q->next)
                q->status = open_rc;
        } else {
            write_group(c, group);
        }
        /* Hand each back to its loop. The message lives in the batch: posting cannot fail for
         * want of memory, and cannot fail for a closed inbox either, since a loop's finish waits
         * for unposted batches before closing it. */
        pthread_mutex_lock(&sq->wlock);
        while (group != NULL) {
            crest_db_query_t *q = group;
            group = q->next;
            sq_loop_t *sl = q->ext;
            q->msg.cb = on_write_done;
            q->msg.arg = q;
            q->msg.borrowed = 1;
            crest__loop_post_msg(q->loop, &q->msg);
            sl->unposted--;
        }
        pthread_cond_broadcast(&sq->wposted);
    }
    pthread_mutex_unlock(&sq->wlock);
    return NULL;
}

static void loop_finish(crest__loop_ext_t *ext, crest_loop_t *loop) {
    (void)loop;
    sq_loop_t *sl = (sq_loop_t *)ext;
    sq_t *sq = (sq_t *)((crest_db_t *)ext->owner)->impl;
    /* Writes of aborted requests may still be on the writer: their completions must reach the
     * inbox before it closes (right after this), where they are delivered. */
    pthread_mutex_lock(&sq->wlock);
    while (sl->unposted > 0)
        pthread_cond_wait(&sq->wposted, &sq->wlock);
    pthread_mutex_unlock(&sq->wlock);
    free(sl);
}

static int queue_write(crest_db_query_t *q) {
    if (q->loop->finished)
        return CREST_ECANCELED;
    crest_db_t *db = q->db;
    sq_t *sq = db->impl;
    sq_loop_t *sl = (sq_loop_t *)crest__loop_ext_find(q->loop, db);
    if (sl == NULL) {
        if ((sl = calloc(1, sizeof(*sl))) == NULL)
            return CREST_ENOMEM;
        sl->ext.owner = db;
        sl->ext.finish = loop_finish;
        crest__loop_ext_add(q->loop, &sl->ext);
    }
    q->ext = sl;
    q->next = NULL;
    pthread_mutex_lock(&sq->wlock);
    if (sq->wqueued >= db->opts.max_queue) {
        pthread_mutex_unlock(&sq->wlock);
        return CREST_EAGAIN;
    }
    if (!sq->wstarted) {
        int rc = pthread_create(&sq->wthread, NULL, writer_main, sq);
        if (rc != 0) {
            pthread_mutex_unlock(&sq->wlock);
            return -rc;
        }
        sq->wstarted = 1;
    }
    if (sq->wtail)
        sq->wtail->next = q;
    else
        sq->whead = q;
    sq->wtail = q;
    sq->wqueued++;
    sl->unposted++;
    pthread_cond_signal(&sq->wcond);
    pthread_mutex_unlock(&sq->wlock);
    return 0;
}

/* ---- the backend ---- */

static int sq_run(crest_db_query_t *q) {
    if (q->flags & CREST_DB_WRITE)
        return queue_write(q);
    /* A read runs here, now: see crest/db.h. */
    int rc = run_here(q->db->impl, q);
    crest__db_finish(q, rc);
    return 0;
}

static int sq_run_sync(crest_db_query_t *q) {
    return run_here(q->db->impl, q);
}

static void sq_close(crest_db_t *db) {
    sq_t *sq = db->impl;
    if (sq == NULL)
        return;
    if (sq->wstarted) {
        pthread_mutex_lock(&sq->wlock);
        sq->wstop = 1;
        pthread_cond_signal(&sq->wcond);
        pthread_mutex_unlock(&sq->wlock);
        pthread_join(sq->wthread, NULL);
    }
    conn_t *c = sq->conns;
    while (c != NULL) {
        conn_t *next = c->next;
        conn_free(c);
        c = next;
    }
    /* Forget this thread's slot now; other threads' slots can never match again (gen). */
    for (int i = 0; i < TLS_SLOTS; i++)
        if (tls[i].gen == sq->gen)
            tls[i].gen = 0;
    pthread_mutex_destroy(&sq->lock);
    pthread_mutex_destroy(&sq->wlock);
    pthread_cond_destroy(&sq->wcond);
    pthread_cond_destroy(&sq->wposted);
    free(sq->path);
    free(sq);
    db->impl = NULL;
}

static const crest__db_backend_t sqlite_backend = {
    .name = "sqlite",
    .run = sq_run,
    .run_sync = sq_run_sync,
    .close = sq_close,
};

int crest__sqlite_open(crest_db_t *db, const char *url) {
    const char *path = url + 7;
    const char *q = strchr(path, '?');
    size_t plen = q ? (size_t)(q - path) : strlen(path);
    int sync_full = 1;
    if (q != NULL) {
        if (strcmp(q, "?synchronous=normal") == 0)
            sync_full = 0;
        else if (strcmp(q, "?synchronous=full") != 0)
            plen = 0;
    }
    if (plen == 0) {
        snprintf(db->errmsg, sizeof(db->errmsg),
                 "expected sqlite:PATH with at most ?synchronous=normal or ?synchronous=full");
        return CREST_EINVAL;
    }
    sq_t *sq = calloc(1, sizeof(*sq));
    if (sq == NULL || (sq->path = strndup(path, plen)) == NULL) {
        free(sq);
        return CREST_ENOMEM;
    }
    sq->sync_full = sync_full;
    sq->gen = atomic_fetch_add(&next_gen, 1);
    pthread_mutex_init(&sq->lock, NULL);
    pthread_mutex_init(&sq->wlock, NULL);
    pthread_cond_init(&sq->wcond, NULL);
    pthread_cond_init(&sq->wposted, NULL);
    db->impl = sq;
    db->backend = &sqlite_backend;
    conn_t *c;
    int rc = conn_get(sq, &c);
    if (rc == 0) {
        /* WAL is a property of the file, kept across opens: set it once here. */
        sqlite3_stmt *st;
        rc = map_rc(sqlite3_prepare_v2(c->h, "PRAGMA journal_mode=WAL", -1, &st, NULL));
        if (rc == 0) {
            if (sqlite3_step(st) != SQLITE_ROW ||
                strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
                rc = -EIO;
            sqlite3_finalize(st);
        }
        if (rc != 0)
            snprintf(db->errmsg, sizeof(db->errmsg), "%s", sqlite3_errmsg(c->h));
    } else {
        snprintf(db->errmsg, sizeof(db->errmsg), "cannot open %s", sq->path);
    }
    return rc;
}
