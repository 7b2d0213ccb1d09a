/* coldstart: time from exec of a server to its first complete 200 response.
 *
 *   coldstart [-a ADDR] [-p PORT] [-u PATH] [-c CPU] [-t TIMEOUT_MS] [-o LOG] -- CMD [ARG...]
 *
 * Forks, pins the child to CPU (if -c), sends its stdout and stderr to LOG (default /dev/null)
 * and execs CMD. The parent polls in a tight loop: connect to ADDR:PORT, send
 * `GET PATH HTTP/1.1`, read; as soon as a whole 200 response has arrived it prints the
 * microseconds since the fork on stdout. Then it stops the server (SIGTERM to the child, and
 * SIGKILL to the child's process group if it has not exited within 5 s) and exits 0. Exits 1
 * when no 200 came within TIMEOUT_MS (default 10000) or the server exited first.
 *
 *   coldstart -w [-a ADDR] [-p PORT] [-u PATH] [-t TIMEOUT_MS] [-C]
 *
 * only waits for a server already started: until PATH answers 200 (or, with -C, until a TCP
 * connect succeeds, sending nothing), printing the microseconds waited. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpmini.h"

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void usage(void) {
    fprintf(stderr, "usage: coldstart [-a ADDR] [-p PORT] [-u PATH] [-c CPU] [-t TIMEOUT_MS] "
                    "[-o LOG] -- CMD [ARG...]\n"
                    "       coldstart -w [-C] [-a ADDR] [-p PORT] [-u PATH] [-t TIMEOUT_MS]\n");
    exit(2);
}

/* One attempt. Returns 1 on a complete 200, 0 when the server is not there (yet) or answered
 * something else, -1 when the deadline passed while waiting for bytes. */
static int try_once(const struct sockaddr_in *sa, const char *req, size_t req_len, int connect_only,
                    int64_t deadline) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("socket");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) != 0) {
        close(fd);
        return 0;
    }
    if (connect_only) {
        close(fd);
        return 1;
    }
    if (write(fd, req, req_len) != (ssize_t)req_len) {
        close(fd);
        return 0;
    }
    char buf[16384];
    size_t len = 0;
    int result = 0;
    for (;;) {
        int64_t left = deadline - now_us();
        if (left <= 0) {
            result = -1;
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left / 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* reset or closed before a whole response: retry */
        len += (size_t)n;
        int status = 0;
        long full = hm_response_complete(buf, len, &status);
        if (full < 0)
            break;
        if (full > 0) {
            result = status == 200;
            break;
        }
        if (len == sizeof buf - 1)
            break;
    }
    close(fd);
    return result;
}

static int wait_exit(pid_t pid, int64_t timeout_us) {
    int64_t end = now_us() + timeout_us;
    while (now_us() < end) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return 1;
        usleep(2000);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1", *path = "/plaintext", *log = "/dev/null";
    int port = 8080, cpu = -1, wait_only = 0, connect_only = 0;
    long timeout_ms = 10000;
    int opt;
    while ((opt = getopt(argc, argv, "+a:p:u:c:t:o:wCh")) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'u':
            path = optarg;
            break;
        case 'c':
            cpu = atoi(optarg);
            break;
        case 't':
            timeout_ms = atol(optarg);
            break;
        case 'o':
            log = optarg;
            break;
        case 'w':
            wait_only = 1;
            break;
        case 'C':
            connect_only = 1;
            break;
        default:
            usage();
        }
    }
    if ((!wait_only && optind >= argc) || (wait_only && optind < argc) || port <= 0 ||
        port > 65535 || timeout_ms <= 0)
        usage();

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "coldstart: bad address %s\n", addr);
        return 2;
    }
    char req[1024];
    int req_len =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n", path, addr, port);
    if (req_len <= 0 || (size_t)req_len >= sizeof req)
        usage();
    signal(SIGPIPE, SIG_IGN);

    if (wait_only) {
        int64_t t0 = now_us(), deadline = t0 + timeout_ms * 1000;
        while (now_us() < deadline) {
            if (try_once(&sa, req, (size_t)req_len, connect_only, deadline) == 1) {
                printf("%lld\n", (long long)(now_us() - t0));
                return 0;
            }
            usleep(1000); /* a server starting up on its own: no need to spin */
        }
        fprintf(stderr, "coldstart: nothing answered on %s:%d within %ld ms\n", addr, port,
                timeout_ms);
        return 1;
    }

    /* Someone already on the port would answer for the server under test. */
    if (try_once(&sa, req, (size_t)req_len, 1, now_us() + 1000000) == 1) {
        fprintf(stderr, "coldstart: %s:%d is already in use\n", addr, port);
        return 1;
    }

    int64_t t0 = now_us();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(cpu, &set);
            if (sched_setaffinity(0, sizeof set, &set) != 0) {
                perror("sched_setaffinity");
                _exit(127);
            }
        }
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvp(argv[optind], argv + optind);
        perror("exec");
        _exit(127);
    }
    setpgid(pid, pid); /* as in the child: whichever runs first */

    int64_t deadline = t0 + timeout_ms * 1000, elapsed = -1;
    while (now_us() < deadline) {
        int r = try_once(&sa, req, (size_t)req_len, 0, deadline);
        if (r == 1) {
            elapsed = now_us() - t0;
            break;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "coldstart: the server exited before answering (see %s)\n", log);
            return 1;
        }
        /* Tight loop by design: this runs on the other core. */
    }

    kill(pid, SIGTERM);
    if (!wait_exit(pid, 5000000)) {
        fprintf(stderr, "coldstart: server ignored SIGTERM; killing its process group\n");
        kill(-pid, SIGKILL);
        wait_exit(pid, 5000000);
    }
    if (elapsed < 0) {
        fprintf(stderr, "coldstart: no 200 from %s:%d%s within %ld ms\n", addr, port, path,
                timeout_ms);
        return 1;
    }
    printf("%lld\n", (long long)elapsed);
    return 0;
}
