"""What every workload of the showdown shares: the peers (bench/peers/*/*.peer.json), starting a
server pinned to its cores and stopping it by PID, its CPU time and memory from /proc, waiting
for the machine to be quiet, the load tools, the machine's description and the peers' versions.
Nothing here measures; workloads.py does."""

import glob
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEERS_DIR = os.path.join(ROOT, "bench", "peers")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Two cores: the server on CPU 0 (both cores for the two-core table), the load generator on
# CPU 1 (BENCH.md). With both cores given to the server, the load generator shares them.
SERVER_CPU = "0"
CLIENT_CPU = "1"
BOTH_CPUS = "0,1"


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---------------------------------------------------------------- peers ---------------------

class Peer:
    """One NAME.peer.json: a server program of bench/peers and what it serves."""

    def __init__(self, path):
        with open(path) as f:
            d = json.load(f)
        self.path = path
        self.dir = os.path.dirname(path)
        self.name = d["name"]
        self.stack = d["stack"]
        self.title = d.get("title", self.name)
        self.serves = list(d["serves"])
        self.start = list(d["start"])
        self.setup = d.get("setup")
        self.build = d.get("build")
        self.ready = d.get("ready", "/healthz")
        self.debs = d.get("debs", [])
        self.versions = d.get("versions", {})
        self.workers_hint = d.get("workers_hint", "")
        self.workers_max = int(d.get("workers_max", 2))
        self.changed_defaults = d.get("changed_defaults", [])
        self.env = d.get("env", {})
        self.warmup = int(d.get("warmup", 0))  # seconds of warm-up it needs at least (a JIT)
        # The workloads the tool measures it on, when not every one its `serves` allows (a
        # second peer.json of one program, kept out of the tables the first one is in).
        self.measure = d.get("measure")

    def command(self, port, workers, db):
        subst = {"{port}": str(port), "{workers}": str(workers), "{db}": db or "",
                 "{root}": ROOT, "{dir}": self.dir}
        out = []
        for a in self.start:
            for k, v in subst.items():
                a = a.replace(k, v)
            out.append(a)
        return out

    def __repr__(self):
        return "<peer %s>" % self.name


def load_peers(names=None):
    """Every peer, crest first, then by stack and name; only `names` when given."""
    peers = [Peer(p) for p in sorted(glob.glob(os.path.join(PEERS_DIR, "*", "*.peer.json")))]
    if names:
        want = set(names)
        unknown = want - {p.name for p in peers}
        if unknown:
            raise SystemExit("unknown peers: %s" % ", ".join(sorted(unknown)))
        peers = [p for p in peers if p.name in want]
    order = {"C": 0, "Node.js": 1, "Python": 2, "Java": 3}
    return sorted(peers, key=lambda p: (p.name != "crest", order.get(p.stack, 9), p.name))


def run_quiet(argv, cwd=None, timeout=1800, env=None):
    """Runs a set-up command; its output goes to the log only when it fails."""
    p = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=timeout, env=env)
    if p.returncode != 0:
        raise RuntimeError("%s (in %s) failed: %s" % (" ".join(argv), cwd or ".",
                                                     p.stderr.decode(errors="replace")[-2000:]))
    return p.stdout.decode(errors="replace")


def apt_install(debs):
    """Installs the Debian packages not installed yet (apt-get update first, once)."""
    missing = [d for d in sorted(set(debs)) if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", d], capture_output=True).stdout != b"install ok installed"]
    if not missing:
        return
    log("installing %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_quiet(["apt-get", "update", "-qq"], env=env)
    run_quiet(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, env=env)


def _stamp(peer):
    """A digest of the peer folder's own files (not node_modules or build output) and its set-up
    commands: set-up and build run again only when it changes."""
    h = hashlib.sha256(json.dumps([peer.setup, peer.build]).encode())
    for dirpath, dirs, files in os.walk(peer.dir):
        dirs[:] = sorted(d for d in dirs if d not in ("node_modules", "out", "__pycache__"))
        for f in sorted(files):
            with open(os.path.join(dirpath, f), "rb") as fh:
                h.update(f.encode() + b"\0" + fh.read())
    return h.hexdigest()


def prepare(peer):
    """The peer's setup (npm ci, ...) and build, when its files changed since the last run
    (a stamp under bench/results/, which git ignores)."""
    if not peer.setup and not peer.build:
        return
    stamp_dir = os.path.join(ROOT, "bench", "results", ".stamps")
    stamp = os.path.join(stamp_dir, peer.name)
    digest = _stamp(peer)
    crest_build = peer.build and "make" in peer.build[0]  # crest's build is make's own business
    try:
        with open(stamp) as f:
            if f.read() == digest and not crest_build:
                return
    except OSError:
        pass
    if peer.setup and peer.setup[0] == "npm" and shutil.which("npm") is None:
        apt_install(["npm"])  # Debian's nodejs comes without it (NodeSource's includes it)
    for step in (peer.setup, peer.build):
        if step:
            run_quiet([a.replace("{root}", ROOT) for a in step], cwd=peer.dir)
    os.makedirs(stamp_dir, exist_ok=True)
    with open(stamp, "w") as f:
        f.write(digest)


def versions(peer):
    out = {}
    for what, argv in peer.versions.items():
        try:
            out[what] = run_quiet(argv, cwd=peer.dir, timeout=60).strip().splitlines()[0]
        except (RuntimeError, IndexError, OSError, subprocess.TimeoutExpired):
            out[what] = "?"
    return out


# ---------------------------------------------------------------- processes -----------------

def tree_pids(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for t in glob.glob("/proc/%d/task/*/children" % p):
            try:
                with open(t) as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    return out


def cpu_ticks(pid):
    """utime + stime of pid and its descendants, in clock ticks (children that exited and were
    waited for count in cutime/cstime: added too)."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total


def rss_kib(pid):
    """VmRSS of pid and its descendants, KiB."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def core_busy(cpus):
    """Busy ticks (all but idle and iowait) of the cores "0" or "0,1", from /proc/stat."""
    want = {"cpu" + c for c in cpus.split(",")}
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            v = line.split()
            if v and v[0] in want:
                n = [int(x) for x in v[1:]]
                total += sum(n) - n[3] - n[4]
    return total


def wait_quiet(cpus=BOTH_CPUS, busy_pct=15, settle_s=0.5, timeout_s=5):
    """Waits (at most timeout_s) until the cores have been under busy_pct % for settle_s: what
    the last server left behind (a JIT, a GC, PostgreSQL's checkpoint) does not count against
    the next. Returns the last share measured. What is still busy after timeout_s is another
    tenant of the machine, which waiting longer does not send away (each counted run's
    bottleneck and CPU shares are in its sample)."""
    n = len(cpus.split(","))
    end = time.monotonic() + timeout_s
    share = 100.0
    while time.monotonic() < end:
        b0 = core_busy(cpus)
        time.sleep(settle_s)
        share = 100.0 * (core_busy(cpus) - b0) / (CLK_TCK * settle_s * n)
        if share < busy_pct:
            break
    return share


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_status(port, path, timeout=2):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status
    except Exception:  # noqa: BLE001 (not up yet, or answering errors)
        return None


class Server:
    """A peer started pinned to `cpus`, its output in logdir/NAME.log. Use as a context manager:
    it is stopped (SIGTERM, then SIGKILL for it and its descendants) on exit. redis: a Redis URL
    given to the peer as REDIS_URL (crest's demo and the Socket.IO peer then span their rooms
    over every instance on it); without it REDIS_URL is not passed on, so that no instance joins
    a Redis by accident. tag: a suffix of the log's name (two instances of one peer)."""

    def __init__(self, peer, workers, cpus, logdir, db=None, ready_timeout=120, redis=None,
                 tag=""):
        self.peer = peer
        self.workers = workers
        self.cpus = cpus
        self.port = free_port()
        env = dict(os.environ, HOST="127.0.0.1", PORT=str(self.port), WORKERS=str(workers))
        env.update(peer.env)
        if db:
            env["DATABASE_URL"] = db
        env.pop("REDIS_URL", None)
        if redis:
            env["REDIS_URL"] = redis
        self.log_path = os.path.join(logdir, "%s-%d%s.log" % (peer.name, workers, tag))
        self.logf = open(self.log_path, "ab")
        argv = ["taskset", "-c", cpus] + peer.command(self.port, workers, db)
        self.t_exec = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=peer.dir, env=env, stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.pid = self.proc.pid
        end = time.monotonic() + ready_timeout
        while http_status(self.port, peer.ready) != 200:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("%s exited with %s before it was ready (see %s)"
                                   % (peer.name, self.proc.returncode, self.log_path))
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError("%s was not ready within %d s (see %s)"
                                   % (peer.name, ready_timeout, self.log_path))
            time.sleep(0.05)
        self.ready_s = time.monotonic() - self.t_exec

    def wait_for(self, path, timeout_s=60):
        """Waits until path answers 200 (a peer that is up before its database pool is: its
        /healthz may not wait for the database). False when it did not within timeout_s."""
        end = time.monotonic() + timeout_s
        while http_status(self.port, path) != 200:
            if time.monotonic() > end or not self.alive():
                return False
            time.sleep(0.1)
        return True

    def url(self, path=""):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def cpu_ticks(self):
        return cpu_ticks(self.pid)

    def rss_kib(self):
        return rss_kib(self.pid)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            pids = tree_pids(self.pid)
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                pass
            for p in pids:  # what SIGTERM left behind (workers of a killed master)
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.logf.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()
        return False


class Redis:
    """Debian's redis-server on 127.0.0.1 and a free port, pinned to `cpu`, no persistence
    (--save '' --appendonly no), every other setting its default (as bench/redis.sh), its folder
    and log in `folder`. Stopped by PID (stop(), or as a context manager)."""

    def __init__(self, folder, cpu=CLIENT_CPU, timeout_s=10):
        os.makedirs(folder, exist_ok=True)
        self.port = free_port()
        self.log_path = os.path.join(folder, "redis.log")
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpu, "redis-server", "--port", str(self.port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder, "--daemonize",
             "no", "--logfile", self.log_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        self.pid = self.proc.pid
        end = time.monotonic() + timeout_s
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError("redis-server did not answer PING within %d s (see %s)"
                                   % (timeout_s, self.log_path))
            time.sleep(0.05)
        self.url = "redis://127.0.0.1:%d" % self.port
        try:
            out = run_quiet(["redis-server", "--version"], timeout=10)
            self.version = out.split("v=")[1].split()[0]
        except (RuntimeError, IndexError, OSError, subprocess.TimeoutExpired):
            self.version = "?"

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()
        return False


# ---------------------------------------------------------------- the machine ---------------

def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    debian = "?"
    try:
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem, "kernel": platform.release(),
            "debian": debian, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def tool_versions():
    def first(argv):
        try:
            p = subprocess.run(argv, capture_output=True, timeout=10)
            return (p.stdout or p.stderr).decode(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    return {"wrk": first(["sh", "-c", "wrk -v 2>&1 | head -1"]),
            "python3": first(["/usr/bin/python3", "--version"]),
            "postgresql": first(["sh", "-c", "ls /usr/lib/postgresql | tail -1"])}


def build_tools(outdir):
    """The C load tools of bench/tools (coldstart, idleconn, wsload, wsmembers, chatrest,
    chatload), built into outdir; the WebSocket ones with crest's own frame codec compiled in."""
    os.makedirs(outdir, exist_ok=True)
    for t in ("coldstart", "idleconn"):
        run_quiet(["gcc", "-std=c11", "-O2", "-Wall", "-o", os.path.join(outdir, t),
                   os.path.join(ROOT, "bench", "tools", t + ".c")])
    for t in ("wsload", "wsmembers", "chatrest", "chatload"):
        run_quiet(["gcc", "-std=c11", "-O2", "-Wall", "-I" + os.path.join(ROOT, "src"),
                   "-I" + os.path.join(ROOT, "include"), "-o", os.path.join(outdir, t),
                   os.path.join(ROOT, "bench", "tools", t + ".c"),
                   os.path.join(ROOT, "src", "codec", "ws_frame.c"),
                   os.path.join(ROOT, "src", "core", "utf8.c"), "-lm"])
    return outdir
