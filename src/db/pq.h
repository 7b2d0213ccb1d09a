/* libpq, loaded when the first PostgreSQL database is opened instead of at exec.
 *
 * Why: libpq brings its whole dependency chain (Kerberos, LDAP, SASL, GnuTLS: some twenty
 * libraries) into every process that links it, and the dynamic loader's work for them was most
 * of crest's start-up time (exec -> first answer), paid even by an app on SQLite alone. So pg.c
 * calls libpq through this table of pointers, filled with dlsym() from libpq.so.5 once; the
 * types come from libpq-fe.h itself (typeof), so a mismatch cannot compile. */
#ifndef CREST_DB_PQ_H
#define CREST_DB_PQ_H

#include <libpq-fe.h>

/* Every libpq function crest calls. */
#define CREST__PQ_FUNCS(X)                                                                         \
    X(PQclear)                                                                                     \
    X(PQcmdTuples)                                                                                 \
    X(PQconnectPoll)                                                                               \
    X(PQconnectStartParams)                                                                        \
    X(PQconnectdbParams)                                                                           \
    X(PQconninfoFree)                                                                              \
    X(PQconninfoParse)                                                                             \
    X(PQconsumeInput)                                                                              \
    X(PQenterPipelineMode)                                                                         \
    X(PQerrorMessage)                                                                              \
    X(PQexec)                                                                                      \
    X(PQexecParams)                                                                                \
    X(PQfinish)                                                                                    \
    X(PQflush)                                                                                     \
    X(PQfreemem)                                                                                   \
    X(PQgetResult)                                                                                 \
    X(PQgetisnull)                                                                                 \
    X(PQgetlength)                                                                                 \
    X(PQgetvalue)                                                                                  \
    X(PQisBusy)                                                                                    \
    X(PQnfields)                                                                                   \
    X(PQntuples)                                                                                   \
    X(PQpipelineSync)                                                                              \
    X(PQresultErrorField)                                                                          \
    X(PQresultErrorMessage)                                                                        \
    X(PQresultStatus)                                                                              \
    X(PQsendPrepare)                                                                               \
    X(PQsendQueryParams)                                                                           \
    X(PQsendQueryPrepared)                                                                         \
    X(PQsetSingleRowMode)                                                                          \
    X(PQsetnonblocking)                                                                            \
    X(PQsocket)                                                                                    \
    X(PQstatus)

typedef struct {
#define CREST__PQ_MEMBER(name) __typeof__(name) *name;
    CREST__PQ_FUNCS(CREST__PQ_MEMBER)
#undef CREST__PQ_MEMBER
} crest__pq_t;

/* The table, valid once crest__pq_load() returned 0. */
extern crest__pq_t crest__pq;

/* Load libpq.so.5 and fill crest__pq, once per process (later calls return the first result).
 * Returns 0, or CREST_ENOTSUP with a line naming what is missing in errmsg (cap bytes). Any
 * thread. */
int crest__pq_load(char *errmsg, size_t cap);

#endif
