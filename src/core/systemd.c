/* The service manager's conventions, spoken directly instead of through libsystemd: they are a
 * handful of environment variables and one datagram, stable and documented (sd_listen_fds(3),
 * sd_notify(3)), and a library that links libsystemd drags it into every user's program, also
 * where no systemd runs (containers, other init systems). Everything here is a no-op when the
 * variables are absent.
 *
 * - Socket activation: LISTEN_PID is our pid and LISTEN_FDS sockets start at descriptor 3. They
 *   are used instead of binding (see crest__rt_listen for how loop threads share them).
 * - Notification: NOTIFY_SOCKET names an AF_UNIX datagram socket (a path, or an abstract name
 *   when it starts with '@'); READY=1, STOPPING=1 and WATCHDOG=1 are sent there, each in one
 *   non-blocking sendto() so that a manager that stopped reading can never stall us.
 * - Watchdog: WATCHDOG_USEC (for us when WATCHDOG_PID is our pid or unset) asks for WATCHDOG=1
 *   at least that often; we send it every half period.
 *
 * The variables are read once and removed from the environment, so that programs the
 * application starts do not take the sockets or the notifications for their own. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* The variable as a whole positive number, or 0 when absent or malformed. */
static unsigned long env_ulong(const char *name) {
    const char *s = getenv(name);
    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    return errno == 0 && *end == '\0' ? v : 0;
}

int crest__sd_listen_fds(crest__rt_t *rt) {
    unsigned long pid = env_ulong("LISTEN_PID");
    unsigned long n = env_ulong("LISTEN_FDS");
    /* Whatever they said, they were meant for this process only (a LISTEN_PID of another process
     * means they were inherited by mistake): remove them before anything can be started. */
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid == 0 || pid != (unsigned long)getpid() || n == 0)
        return 0;
    if (n > 1024)
        return CREST_EINVAL;
    for (int fd = CREST__SD_FDS_START; fd < CREST__SD_FDS_START + (int)n; fd++) {
        int type = 0, listening = 0;
        struct sockaddr_storage ss;
        socklen_t len = sizeof(type), alen = sizeof(ss);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
            getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening ||
            getsockname(fd, (struct sockaddr *)&ss, &alen) != 0 ||
            (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
            crest__log(rt, CREST_LOG_ERROR,
                       "socket activation: descriptor %d is not a listening TCP socket", fd);
            return CREST_EINVAL;
        }
        /* The manager passes them blocking and inheritable. Several loop threads may poll one
         * socket and race to accept: the losers must get EAGAIN, not block. */
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
            return -errno;
    }
    return (int)n;
}

void crest__sd_init(crest__sd_t *sd) {
    memset(sd, 0, sizeof(*sd));
    sd->fd = -1;
    const char *path = getenv("NOTIFY_SOCKET");
    size_t len = path ? strlen(path) : 0;
    if (len >= 2 && len < sizeof(sd->addr.sun_path) && (path[0] == '/' || path[0] == '@')) {
        memset(&sd->addr, 0, sizeof(sd->addr));
        sd->addr.sun_family = AF_UNIX;
        memcpy(sd->addr.sun_path, path, len);
        /* An abstract name has no terminating NUL: its length is the address length. */
        if (path[0] == '@')
            sd->addr.sun_path[0] = '\0';
        sd->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (sd->fd >= 0)
            sd->addrlen =
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    }
    unsigned long usec = env_ulong("WATCHDOG_USEC");
    unsigned long wpid = env_ulong("WATCHDOG_PID");
    const char *wpid_s = getenv("WATCHDOG_PID");
    if (sd->addrlen > 0 && usec > 0 && (wpid_s == NULL || wpid == (unsigned long)getpid()))
        sd->watchdog_ms = usec / 2000 > 0 ? usec / 2000 : 1;
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

void crest__sd_notify(const crest__sd_t *sd, const char *msg) {
    if (sd->addrlen == 0)
        return;
    /* Best effort: a full or vanished socket loses one message, which the manager tolerates
     * (a missed WATCHDOG=1 is covered by the next, half a period later). */
    ssize_t n = sendto(sd->fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL,
                       (const struct sockaddr *)&sd->addr, sd->addrlen);
    (void)n;
}

void crest__sd_close(crest__sd_t *sd) {
    if (sd->addrlen > 0)
        close(sd->fd);
    sd->addrlen = 0;
    sd->fd = -1;
}
