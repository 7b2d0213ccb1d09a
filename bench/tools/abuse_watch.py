#!/usr/bin/env python3
"""abuse_watch: the observer of bench/abuse.sh. Samples a server and runs the bystander until
SIGTERM, then writes everything it saw as JSON.

  abuse_watch.py --pid PID --port PORT --out FILE [--src 127.0.0.9] [--rate 20]
                 [--path /healthz] [--timeout 2] [--log FILE]...

Every 100 ms it records VmRSS summed over PID and its descendants, their CPU time
(utime + stime, clock ticks), the sizes of the server's log files and the kernel's TCP buffer
memory (the `mem` pages of /proc/net/sockstat; not in any process's RSS).

The bystander sends RATE requests a second of GET PATH from the source address SRC and times
each one itself, from its scheduled start to the end of its response. It takes a free
keep-alive connection or opens one (at most 64), so a slow answer does not hold back later
requests: their latency is counted from when they were due, not from when a connection was
free. A request fails when no complete 200 arrives within TIMEOUT seconds or its connection
fails. As HTTP clients do, it closes connections idle for IDLE_MAX (4 s, below every peer's
keep-alive timeout) and retries a request once on a new connection when a reused one turns out
closed (EOF or reset before any byte of the answer): the server may close an idle connection
just as a request goes out. Prints "ready" once the first request has succeeded.

It also samples CPU 0's busy time (/proc/stat), so that the report can tell the server's share
of that core from other tenants'.

Standard library only.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree(pid):
    """pid and its descendants."""
    out = [pid]
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                for c in f.read().split():
                    out.extend(tree(int(c)))
        except OSError:
            pass
    return out


def rss_and_ticks(pid):
    rss = ticks = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                        break
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            pass
    return rss, ticks


def tcp_mem_pages():
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1])
    except (OSError, ValueError):
        pass
    return None


def cpu_busy_ticks(cpu):
    """The busy ticks of one CPU: all but idle and iowait."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu%d " % cpu):
                    v = [int(x) for x in line.split()[1:]]
                    return sum(v[:8]) - v[3] - v[4]
    except (OSError, ValueError):
        pass
    return None


def file_size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class Bystander:
    MAX_CONNS = 64
    IDLE_MAX = 4.0

    def __init__(self, port, src, path, timeout):
        self.port = port
        self.src = src
        self.timeout = timeout
        self.request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, port)).encode()
        self.idle = []  # [(reader, writer, idle since)], most recently used last
        self.open = 0
        self.results = []  # [due (wall clock), latency ms or None, outcome]
        self.ready = asyncio.Event()

    async def connect(self):
        self.open += 1
        try:
            return await asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.src, 0))
        except BaseException:
            self.open -= 1
            raise

    def drop(self, conn):
        self.open -= 1
        conn[1].transport.abort()

    async def exchange(self, conn):
        """One request on conn: the status, and whether the connection may be reused."""
        reader, writer = conn
        writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and "close" in value.lower():
                close = True
        if length:
            await reader.readexactly(length)
        return status, not close

    async def one(self, due_wall, due_mono):
        outcome, latency = "ok", None
        try:
            async with asyncio.timeout(self.timeout - (time.monotonic() - due_mono)):
                for attempt in (0, 1):
                    conn, reused = None, False
                    now = time.monotonic()
                    while self.idle:
                        reader, writer, since = self.idle.pop()
                        conn = (reader, writer)
                        if reader.at_eof() or writer.is_closing() or now - since > self.IDLE_MAX:
                            self.drop(conn)
                            conn = None
                        else:
                            reused = attempt == 0
                            break
                    if conn is None:
                        if self.open >= self.MAX_CONNS:
                            outcome = "no connection"
                            break
                        conn = await self.connect()
                    try:
                        status, keep = await self.exchange(conn)
                    except (asyncio.IncompleteReadError, ConnectionError) as e:
                        self.drop(conn)
                        stale = not isinstance(e, asyncio.IncompleteReadError) or not e.partial
                        if reused and stale:
                            continue  # closed as the request went out: once more, on a new one
                        raise
                    except BaseException:
                        self.drop(conn)
                        raise
                    latency = (time.monotonic() - due_mono) * 1000
                    if keep:
                        self.idle.append((conn[0], conn[1], time.monotonic()))
                    else:
                        self.drop(conn)
                    if status != 200:
                        outcome = "status %d" % status
                    break
        except TimeoutError:
            outcome = "timeout"
        except ConnectionResetError:
            outcome = "reset"
        except asyncio.IncompleteReadError:
            outcome = "closed"
        except OSError as e:
            outcome = "error %s" % (e.strerror or type(e).__name__)
        except ValueError:
            outcome = "bad response"
        if outcome != "ok":
            latency = None
        elif not self.ready.is_set():
            self.ready.set()
        self.results.append([round(due_wall, 4), None if latency is None else round(latency, 3),
                             outcome])

    async def run(self, rate, stop):
        period = 1.0 / rate
        start_wall, start_mono = time.time(), time.monotonic()
        tasks = set()
        k = 0
        while not stop.is_set():
            due = start_mono + k * period
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            t = asyncio.ensure_future(self.one(start_wall + k * period, due))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            k += 1
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout + 1)


async def sampler(pid, logs, samples, stop):
    period = 0.1
    start = time.monotonic()
    k = 0
    while not stop.is_set():
        rss, ticks = rss_and_ticks(pid)
        samples.append([round(time.time(), 4), rss, ticks, tcp_mem_pages(),
                        sum(file_size(p) for p in logs), cpu_busy_ticks(0)])
        k += 1
        delay = start + k * period - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--src", default="127.0.0.9")
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--path", default="/healthz")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--log", action="append", default=[])
    args = ap.parse_args()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    samples = []
    by = Bystander(args.port, args.src, args.path, args.timeout)

    async def announce():
        await by.ready.wait()
        print("ready", flush=True)

    announcer = asyncio.ensure_future(announce())
    await asyncio.gather(sampler(args.pid, args.log, samples, stop), by.run(args.rate, stop))
    announcer.cancel()
    with open(args.out, "w") as f:
        json.dump({"pid": args.pid, "port": args.port, "clk_tck": CLK_TCK, "rate": args.rate,
                   "timeout_s": args.timeout, "src": args.src, "path": args.path,
                   "sample_fields": ["t", "rss_kib", "cpu_ticks", "tcp_mem_pages", "log_bytes",
                                     "cpu0_busy_ticks"],
                   "samples": samples,
                   "bystander_fields": ["due", "latency_ms", "outcome"],
                   "bystander": by.results}, f)


if __name__ == "__main__":
    if sys.version_info < (3, 11):
        sys.exit("abuse_watch.py needs Python 3.11 or later (asyncio.timeout)")
    asyncio.run(main())
