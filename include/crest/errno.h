/* Error codes. Every crest function that can fail returns 0 or one of these negative values.
 * They are the negated errno values libuv also uses on Unix, so a libuv error passes through
 * unchanged and crest_strerror() names either. */
#ifndef CREST_ERRNO_H
#define CREST_ERRNO_H

#include <errno.h>

#include "crest/export.h"

/* X(NAME, "message"), written once: the enum below and crest_strerror() both use it. */
#define CREST_ERRNO_MAP(X)                                                                         \
    X(ENOMEM, "out of memory")                                                                     \
    X(EINVAL, "invalid argument")                                                                  \
    X(EADDRINUSE, "address already in use")                                                        \
    X(EADDRNOTAVAIL, "address not available")                                                      \
    X(EACCES, "permission denied")                                                                 \
    X(EEXIST, "already exists")                                                                    \
    X(ENOENT, "no such file or directory")                                                         \
    X(EBUSY, "resource busy")                                                                      \
    X(EAGAIN, "resource temporarily unavailable")                                                  \
    X(ECANCELED, "operation canceled")                                                             \
    X(EPIPE, "broken pipe")                                                                        \
    X(ECONNRESET, "connection reset by peer")                                                      \
    X(ECONNREFUSED, "connection refused")                                                          \
    X(ETIMEDOUT, "timed out")                                                                      \
    X(E2BIG, "argument list too long")                                                             \
    X(EMFILE, "too many open files")                                                               \
    X(ENOTSUP, "operation not supported")                                                          \
    X(EALREADY, "operation already in progress")                                                   \
    X(ENOBUFS, "no buffer space available")                                                        \
    X(ENOTDIR, "not a directory")                                                                  \
    X(EIO, "i/o error")                                                                            \
    X(EPROTO, "protocol error")

enum {
#define CREST_ERRNO_ENUM(name, msg) CREST_##name = -name,
    CREST_ERRNO_MAP(CREST_ERRNO_ENUM)
#undef CREST_ERRNO_ENUM
};

/* The message for an error code: crest's, libuv's (which names the usual negated errno values),
 * "success" for 0, "unknown error" for anything else. Never NULL; the string is static (nothing
 * is allocated). Any thread. */
CREST_API const char *crest_strerror(int err);

#endif
